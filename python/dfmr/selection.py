"""Choosing the number of components and the covariance model from distributed data (BIC, ICL).

mclust's ``Mclust(x)`` fits G = 1..9 under every covariance model and keeps the best BIC; here the
data are spread over machines, some of which lie. A candidate is a pair (K, covariance model).

**Two rounds (exact).** Round 1: every site fits every candidate of the grid on its own data (the plain
MLE, not the local estimate's penalised one: :func:`fit_grid_local`; one task per machine) and sends the
fits; the server aggregates each candidate (robust DFMR by default) and sends the aggregates back.
Round 2: each site returns, for every candidate, its log-likelihood ``l_ij`` of aggregate ``j`` on its
own data (and, for ICL, its classification entropy ``e_ij = sum_x -log max_k z_k(x)``, mclust's ``icl``).
The server then calls :func:`criterion_table`: it flags sites whose values are implausible
(:func:`flag_sites`), drops them from every candidate, and sums exactly over the others,

    BIC_j = -2 sum_i l_ij + p_j log N,    ICL_j = BIC_j + 2 sum_i e_ij,

``p_j`` the candidate's free parameters (mclust's ``nMclustParams``), ``N`` the kept sites' trusted
sizes; scikit-learn's sign (lower is better; mclust reports ``-BIC``). With no site flagged the sum is
the pooled log-likelihood at the aggregate's parameters, i.e. the centralised BIC of those parameters.
Cost: the grid's local fits, one aggregation per candidate, then one pass over each site's data per
candidate (an E-step), and (J + m) numbers sent per site.

**One round (approximate).** When sites cannot be asked twice, the server has only what they sent
once: their local fits ``theta_ij`` of every candidate, their own log-likelihoods ``l_i(theta_ij)``
and their sizes. :func:`one_round_loglik` approximates the site's log-likelihood of the aggregate
``theta_j`` through one density per site, the site's fit ``theta_i*`` of smallest AIC over the grid
(``surrogate="aic"``, the default; ``p_j`` from the aggregates, not from the sites' tags):

    l_i(theta_j) ~ l_i(theta_i*) - n_i KL(f_theta_i* || f_theta_j),

the expectation of ``l_i(theta_j) - l_i(theta_i*)`` when the site's data follow ``theta_i*``. AIC
estimates the expected KL from the truth, so ``theta_i*`` is the site's best density estimate among what
it sent. The contrasts between candidates are then cross-entropies under one distribution per site,
estimated on the same quasi-random points for every candidate (common random numbers), and the
optimism of ``l_i(theta_i*)`` (about ``p*/2``) is common to all candidates: it shifts every
candidate's level, not the choice. When ``f_theta_j = f_theta_i*`` the value is exact, and for a
candidate of the same model near it both sides are the same quadratic in ``theta_j - theta_i*`` (the
site's score is zero at its MLE), with the expected information in place of the observed.
``surrogate="own"`` (the rule before) takes each candidate's own site fit, ``l_i(theta_ij) - n_i
KL(f_theta_ij || f_theta_j)``: unbiased to first order while the candidate's model is regular
(K <= K0), but above K0 the site's fit also fits its own noise, more than
``n_i KL`` to the aggregate takes back, and that optimism, a nat or so per site at K0 + 1, differs
between candidates and leaked into the choice (K0 + 1 where the two rounds chose K0 on populations with
a small cluster; vignettes/model_selection.md). The site's BIC choice as the one density instead (tried)
is under-fitted where one site alone picks a smaller K than the pooled data, and loses K0 there; AIC
keeps the small cluster in most sites' choice. The KL is a quasi-Monte Carlo average over about
``n_draws`` points of the site's density, stratified over its components (server time ``m J n_draws``
density evaluations with ``m n_draws`` draws, no extra round); with plain random draws its error, not
the approximation's, decided between K0 and K0 + 1. The vignette reports how far it lands from the
exact value. A site's KL term is capped at the median over the sites plus 5 spreads, so that a site far
from an aggregate lowers that candidate no more than a plausible site could; a site capped at more than
half the candidates (a liar whose every fit carries a far component, or an honest site whose density
is far from every aggregate's) is dropped from every candidate, as the two rounds' flags drop a site.
:func:`one_round_table` is the server's side of the one round (the flags of the values the sites
reported, then :func:`criterion_table`).

**Flagging (both ways).** A site's per-observation values ``a_ij = l_ij / n_i`` are means of ``n_i``
observations, so honest sites scatter around a common value with standard deviation ``s_j /
sqrt(n_i)``. The test works on ``sqrt(n_i) (value - centre)`` for the level ``a_ir`` of the
reference candidate ``r`` (the one with the highest median level) and for the contrasts ``a_ij - a_ir``
of every other candidate (contrasts between candidates are what a choice depends on, their sampling
spread is much smaller than the levels', and any pairwise contrast is bounded by two contrasts against
``r``; a lie on one level shows in its contrast). For each such column: centre and scale from the median
and MAD, then the size-weighted mean and standard deviation of the sites within 3.5 MAD-scales, then of
those within the final cut, until that set settles (with few sites the MAD alone is noisy); then each
site is tested against that set without itself, as an externally studentised residual (exactly Student-t
with the set's size minus 2 degrees of freedom for normal values, which matters with few small sites), and
flagged when it exceeds the quantile at ``level / (2 m C)`` (Bonferroni over the ``m`` sites and ``C``
columns) or is not finite. A contrast must also be material: further from that set's mean than
``|p_j - p_r| log(N) / (2 N)`` per observation (what, shared by all ``N`` observations, moves the two
BICs by their penalty difference), since per-point contrasts are heavy-tailed where a candidate has a
component of a few points' weight. Entropies are bounded, not normal: they are tested against
Hoeffding's bound instead (:func:`flag_sites`). A flagged site is dropped from every candidate. What an
unflagged liar can do is bounded: it moves a contrast by at most ``t s / sqrt(n_i)`` per observation
plus the material amount, i.e. ``t s sqrt(n_i)`` log-likelihood units plus its share ``n_i / N`` of
the penalty difference ``|p_j - p_r| log(N) / 2``. The test assumes the honest sites sample one population (the method's
assumption).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from scipy.special import logsumexp

from .covariance import MODEL_NAMES, UNIVARIATE_MODEL_NAMES, get_model
from .local import fit_local_detailed
from .params import GaussianMixtureParams

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CRITERIA",
    "SELECTIONS",
    "Candidate",
    "SCORES_FORMAT",
    "best_index",
    "candidate_digest",
    "candidate_grid",
    "criterion_table",
    "fit_grid",
    "fit_grid_local",
    "flag_sites",
    "is_grid",
    "local_choice",
    "one_round_loglik",
    "one_round_table",
    "validate",
    "project_to_model",
    "read_site_scores",
    "site_scores",
    "site_values",
    "split_starts",
]

CRITERIA = ("bic", "icl")
SELECTIONS = ("two_rounds", "one_round")
_COLUMNS = ("n_components", "covariance_type", "log_likelihood", "n_parameters", "bic", "icl",
            "n_machines_kept", "flagged_sites")
# Sites within this many MAD-scales of the median give the efficient centre and scale of a column.
_INNER = 3.5
_MAD = 1.482602218505602  # 1 / Phi^-1(3/4): the MAD of a normal sample estimates its standard deviation
_KL_CAP = 5.0  # one_round_loglik: a site's KL term is capped at the median over sites plus this many spreads
# Rows per block when a site evaluates candidates on its data (bounded memory: rows x K doubles).
_BLOCK_ROWS = 65536
# A grid candidate with given starts (fit_grid_local) runs at most n_init // this many starts (at least 2).
_WARM_RUNS_DIVISOR = 4
_DEFAULT_N_INIT = inspect.signature(fit_local_detailed).parameters["n_init"].default
_DEFAULT_TOL = inspect.signature(fit_local_detailed).parameters["tol"].default
# The grid's screen (fit_grid_local): a screened run stops once its projected remaining gain (and its last
# gain) is below this many nats per data point: scikit-learn's GaussianMixture default tol, which is on the
# change of the mean log-likelihood per point.
_SCREEN_GAIN_PER_POINT = 1e-3
# Candidates refined to the default rule after the screen: the best this many by the site's own BIC.
_REFINE = 2
# Penalty multiplier of the local fits of a grid of several candidates (fit_grid_local): 0, the plain MLE, whose
# likelihood the criteria score, as mclust's do (the local estimate's penalty widens clusters much tighter than
# the data's spread, and the choice then follows the widening; vignettes/model_selection.md).
_SELECTION_PENALTY = 0.0


@dataclass(frozen=True)
class Candidate:
    """One candidate model: ``n_components`` components with covariance model ``covariance_type``
    (spelt as the user gave it)."""

    n_components: int
    covariance_type: str

    def n_parameters(self, dim: int) -> int:
        """Free parameters of the candidate in ``dim`` dimensions (mclust's ``nMclustParams``)."""
        return get_model(self.covariance_type, dim).n_parameters(self.n_components, dim)


# ------------------------------------------------------------------------------------------- the grid

def is_grid(n_components: Any, covariance_type: Any) -> bool:
    """Whether the estimator's ``n_components`` / ``covariance_type`` ask for a choice among candidates
    (anything but one integer with one model name)."""
    single_k = isinstance(n_components, numbers.Integral) and not isinstance(n_components, bool)
    return not (single_k and isinstance(covariance_type, str) and covariance_type != "all")


def _components(n_components: Any) -> list[int]:
    if isinstance(n_components, numbers.Integral) and not isinstance(n_components, bool):
        values = [n_components]
    elif isinstance(n_components, (str, bytes)) or not isinstance(n_components, Iterable):
        raise ValueError(f"n_components must be a positive integer or a sequence of them (e.g. range(1, 10)), "
                         f"got {n_components!r}.")
    else:
        values = list(n_components)
    if not values or not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1 for k in values):
        raise ValueError("n_components must be a positive integer or a non-empty sequence of them, "
                         f"got {n_components!r}.")
    if len(set(values)) != len(values):
        raise ValueError(f"n_components lists a value twice: {values}.")
    return [int(k) for k in values]


def _types(covariance_type: Any, dim: int | None) -> list[str]:
    if isinstance(covariance_type, str):
        if covariance_type == "all":
            return list(UNIVARIATE_MODEL_NAMES if dim == 1 else MODEL_NAMES)
        names = [covariance_type]
    elif isinstance(covariance_type, Iterable):
        names = list(covariance_type)
    else:
        names = []
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"covariance_type must be a model name, a sequence of them or 'all', got {covariance_type!r}.")
    for name in names:
        get_model(name, 2 if dim is None and name not in UNIVARIATE_MODEL_NAMES else (dim or 1))
    if len(set(names)) != len(names):
        raise ValueError(f"covariance_type lists a name twice: {names}.")
    return names


def candidate_grid(n_components: Any, covariance_type: Any, dim: int | None = None) -> list[Candidate]:
    """The candidates of a grid, K varying slowest within each model (mclust's order of ``G`` and
    ``modelNames`` transposed: models outer, K inner), names spelt as given.

    Parameters
    ----------
    n_components : int or sequence of int
        Numbers of components, e.g. ``range(1, 10)``.
    covariance_type : str or sequence of str
        Model names (:func:`dfmr.covariance.get_model`); "all" is mclust's 14 models (E and V when
        ``dim == 1``).
    dim : int, optional
        Dimension of the data; with ``dim`` given, names that denote the same model in that
        dimension (in 1-D "full", "diag" and "spherical" are all V) are kept once, the first spelling.

    Returns
    -------
    list of Candidate

    Raises
    ------
    ValueError
        For an invalid or repeated value.
    """
    ks, names = _components(n_components), _types(covariance_type, dim)
    if dim is not None:
        seen: dict[str, str] = {}
        for name in names:
            seen.setdefault(get_model(name, dim).name, name)
        names = list(seen.values())
    return [Candidate(k, name) for name in names for k in ks]


# ------------------------------------------------------------------------------------- site side

def site_values(X: ArrayLike, candidates: Sequence[GaussianMixtureParams]) -> tuple[np.ndarray, np.ndarray]:
    """What a site returns in the second round: its log-likelihood and classification entropy of every
    candidate on its own data.

    Parameters
    ----------
    X : array_like, shape (n, d)
        The site's data.
    candidates : sequence of GaussianMixtureParams
        The aggregates the server sent.

    Returns
    -------
    loglik : ndarray, shape (J,)
        ``sum_x log f_j(x)``.
    entropy : ndarray, shape (J,)
        ``sum_x -log max_k z_jk(x)``, ``z`` the posterior probabilities under candidate ``j`` (the
        term that mclust's ``icl`` adds to the BIC).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    loglik, entropy = np.zeros(len(candidates)), np.zeros(len(candidates))
    for j, mix in enumerate(candidates):
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            log_f, ent = _point_values(mix, X[start:start + _BLOCK_ROWS])
            loglik[j] += log_f.sum()
            entropy[j] += ent.sum()
    return loglik, entropy


def _point_values(mixture: GaussianMixtureParams, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point of ``X``: ``log f(x)`` and ``-log max_k z_k(x)`` under ``mixture`` (the terms that
    :func:`site_values` sums and :func:`one_round_loglik` integrates)."""
    with np.errstate(divide="ignore"):
        joint = mixture.component_logpdf(X) + np.log(mixture.weights)
    total = logsumexp(joint, axis=1)
    return total, total - joint.max(axis=1)


def split_starts(mixture: GaussianMixtureParams) -> list[GaussianMixtureParams]:
    """The ``K`` mixtures of ``K + 1`` components made by splitting one component of ``mixture`` in two.

    Component ``k`` (weight ``w``, mean ``mu``, covariance ``Sigma`` with largest eigenvalue ``lambda``
    along ``v``) becomes two of weight ``w / 2``, means ``mu +- a v`` and covariance ``Sigma - a^2 v v^T``,
    ``a^2 = 2 lambda / pi``: the moments of the two halves of the Gaussian cut at its mean across ``v``.
    The split keeps the mixture's mean and covariance (each pair has the moments of the component).
    These are greedy EM's starts (Vlassis & Likas 2002; Verbeek, Vlassis & Kröse 2003): the fit of K
    components seeds K + 1 (:func:`fit_grid_local`).
    """
    out = []
    for k in range(mixture.n_components):
        eigval, eigvec = np.linalg.eigh(mixture.covariances[k])
        shift = math.sqrt(2.0 * eigval[-1] / math.pi) * eigvec[:, -1]
        pair_cov = mixture.covariances[k] - np.outer(shift, shift)
        keep = np.delete(np.arange(mixture.n_components), k)
        w = mixture.weights[k] / 2.0
        out.append(GaussianMixtureParams(
            np.concatenate([mixture.weights[keep], [w, w]]),
            np.vstack([mixture.means[keep], mixture.means[k] + shift, mixture.means[k] - shift]),
            np.concatenate([mixture.covariances[keep], [pair_cov, pair_cov]]), normalize=True))
    return out


def fit_grid_local(
    X: ArrayLike, candidates: Sequence[Candidate], random_state: int | np.random.Generator | None = None, *,
    warm_start: bool = True, refine: int | None = _REFINE, penalty: float | None = None, **local_kwargs: Any,
) -> list[Any]:
    """First round on one site: the MLE of every candidate (:func:`dfmr.local.fit_local_detailed`; ``penalty``).

    With ``warm_start`` (the default) neighbouring candidates seed each other: the candidates are fitted
    model by model, the model with the most parameters first, K increasing; a candidate's given starts
    (``init`` of :func:`dfmr.local.fit_local_detailed`) are the :func:`split_starts` of the same model's
    fit at K - 1 (when K - 1 is in the grid) and the first model's fit at the same K (its covariances
    projected onto the model); they compete with k-means++ seeds in the first screening group. Candidates
    with no neighbour in the grid (K = 1, and every K of a grid with gaps in the first model) run
    ``n_init`` k-means++ starts as a single fit does. Without ``warm_start`` every candidate is a single
    fit (``refine`` is then ignored).

    ``refine`` sets how much EM the grid spends (its cost goal, issue 22):

    - an int ``R`` (default 2): screen, then refine. Every warm candidate is first fitted cheaply: it
      runs only its best screened start, which stops as scikit-learn's runs do, once its projected
      remaining gain and its last gain are below 1e-3 nats per data point (``tol`` is raised to
      ``2e-3 n / p`` for the candidate's ``p`` free parameters when that is larger). Then, of the ``R``
      candidates with the lowest BIC on the site's own data (``-2 loglik + p log n``), the warm ones are
      refitted by the default rule (``tol``, at most ``max(2, n_init // 4)`` starts) with their screened
      fit among the given starts, and the better fit is kept. Candidates with no neighbour are fitted by
      the default rule from the start (so a one-candidate grid is a single fit). Why: the crawl of EM
      in over-fitted candidates (a redundant component; hundreds of iterations, several starts to
      different maxima) is most of a full grid's time and does not change which candidate wins, while
      the candidates that can win get the fit that the default rule gives.
    - ``None``: every candidate by the default rule (a warm one with at most ``max(2, n_init // 4)``
      starts), the previous behaviour.

    ``penalty`` is the multiplier ``c`` of the local penalty scale ``a_n = c n^(-1/2)`` (DESIGN.md's local
    estimate has ``c = 1``). ``None`` (the default): 0 when the grid has several candidates, 1 for a single
    candidate (nothing is chosen: it is the local estimate). Why the plain MLE for a choice: the criteria
    score the likelihood, as mclust's ``mclustBIC`` on the pooled data does, and the penalty adds
    ``2 a_n S_x`` (``S_x`` the whole site's sample covariance) to every component's scatter ``n_k Sigma_k``,
    so a cluster much tighter than the data's spread is widened many times over (1-D clusters of sd 0.0002
    in data of sd 0.09: sd 0.0016 in every local fit and in the aggregate) and two close tight clusters are
    merged; the exact sum over the sites then prefers too few or too many components where the pooled
    likelihood does not. A candidate whose every start collapses a component without the penalty (mclust's
    "singular" fit) is the penalised MLE (``c = 1``) instead, from the same starts.

    Every candidate draws its random numbers from one generator seeded by ``random_state``, in the order
    fitted, so the grid is reproducible as a whole. Returns the :class:`dfmr.local.LocalFit` of each
    candidate, in the order of ``candidates``.
    """
    rng = np.random.default_rng(random_state)
    if penalty is None:
        penalty = _SELECTION_PENALTY if len(candidates) > 1 else 1.0
    if isinstance(penalty, bool) or not (isinstance(penalty, numbers.Real) and math.isfinite(penalty) and penalty >= 0):
        raise ValueError(f"penalty must be None or a finite number >= 0, got {penalty!r}.")
    if not warm_start:
        return [_fit_candidate(X, c.n_components, rng, penalty, covariance_type=c.covariance_type, **local_kwargs)
                for c in candidates]
    if refine is not None and (isinstance(refine, bool) or not isinstance(refine, numbers.Integral) or refine < 0):
        raise ValueError(f"refine must be None or an integer >= 0, got {refine!r}.")
    n_init = int(local_kwargs.pop("n_init", _DEFAULT_N_INIT))
    warm_runs = max(2, n_init // _WARM_RUNS_DIVISOR)
    n, dim = (np.shape(X)[0], np.shape(X)[1]) if np.ndim(X) == 2 else (np.shape(X)[0], 1)
    types = list(dict.fromkeys(c.covariance_type for c in candidates))
    first = max(types, key=lambda t: (get_model(t, dim).n_parameters(2, dim), -types.index(t)))
    order = sorted(range(len(candidates)),
                   key=lambda j: (candidates[j].covariance_type != first, types.index(candidates[j].covariance_type),
                                  candidates[j].n_components))
    fits: dict[tuple[int, str], Any] = {}
    given: dict[tuple[int, str], list[GaussianMixtureParams]] = {}
    for j in order:
        k, name = candidates[j].n_components, candidates[j].covariance_type
        init = list(split_starts(fits[k - 1, name].mixture)) if (k - 1, name) in fits else []
        if name != first and (k, first) in fits:
            init.append(fits[k, first].mixture)
        given[k, name] = init
        kwargs = dict(local_kwargs)
        if not init:
            runs = n_init
        elif refine is None:
            runs = warm_runs
        else:
            runs = 1
            p = get_model(name, dim).n_parameters(k, dim)
            kwargs["tol"] = max(float(kwargs.get("tol", _DEFAULT_TOL)), 2.0 * _SCREEN_GAIN_PER_POINT * n / p)
        fits[k, name] = _fit_candidate(X, k, rng, penalty, covariance_type=name, init=init, n_init=runs, **kwargs)
    if refine:
        for k, name in _best_by_site_bic(fits, n, dim, refine):
            if not given[k, name]:
                continue  # a candidate with no neighbour was fitted by the default rule already
            screened = fits[k, name]
            refined = _fit_candidate(X, k, rng, penalty, covariance_type=name,
                                     init=[screened.mixture, *given[k, name]], n_init=warm_runs, **local_kwargs)
            if refined.penalized_loglik >= screened.penalized_loglik:
                fits[k, name] = refined
    return [fits[c.n_components, c.covariance_type] for c in candidates]


def _fit_candidate(X: ArrayLike, k: int, rng: np.random.Generator, penalty: float, **kwargs: Any) -> Any:
    """One grid candidate at penalty multiplier ``penalty``; where every start collapses a component (possible
    only without a penalty: mclust's "singular" fits), the penalised MLE of DESIGN.md from the same starts."""
    try:
        return fit_local_detailed(X, k, rng, penalty=penalty, **kwargs)
    except ValueError:
        if penalty > 0:
            raise
        # Invalid data or arguments raise again here, with the penalised fit's message.
        return fit_local_detailed(X, k, rng, penalty=1.0, **kwargs)


def _best_by_site_bic(fits: dict[tuple[int, str], Any], n: int, dim: int, count: int) -> list[tuple[int, str]]:
    """The ``count`` candidates with the lowest BIC on the site's own data (ties: the order of ``fits``)."""
    bic = {key: -2.0 * fit.loglik + get_model(key[1], dim).n_parameters(key[0], dim) * math.log(n)
           for key, fit in fits.items()}
    return sorted(bic, key=bic.__getitem__)[:count]


# ------------------------------------------------------------------------ the second round from files

SCORES_FORMAT = "dfmr-site-scores"
# A score file holds two numbers per candidate; anything near this size is not one.
_MAX_SCORES_BYTES = 16 * 2**20


def candidate_digest(mixture: GaussianMixtureParams) -> str:
    """SHA-256 of a candidate's model, shape and parameters (the bytes of its float64 arrays).

    A site records it next to its values, so that the server can check that the site scored the very
    aggregate it sent (a stale or altered candidate file gives another digest).
    """
    h = hashlib.sha256(f"{mixture.covariance_type}|{mixture.n_components}|{mixture.dim}|".encode())
    for array in (mixture.weights, mixture.means, mixture.covariances):
        h.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
    return h.hexdigest()


def site_scores(X: ArrayLike, candidates: Sequence[GaussianMixtureParams], names: Sequence[str]) -> dict[str, Any]:
    """A site's second-round message as a JSON-ready dict (what ``dfmr score`` writes).

    Parameters
    ----------
    X : array_like, shape (n, d)
        The site's data.
    candidates : sequence of GaussianMixtureParams
        The aggregates the server sent.
    names : sequence of str
        Their names (``dfmr aggregate --out-dir`` writes ``K<k>_<model>.json``; the name is the stem).

    Returns
    -------
    dict
        ``{"format": "dfmr-site-scores", "version": 1, "n_samples": n, "scores": [{"candidate", "n_components",
        "covariance_type", "digest", "log_likelihood", "entropy"}, ...]}``, values of :func:`site_values`.
    """
    if len(names) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(names)} names.")
    X = np.asarray(X, dtype=np.float64)
    loglik, entropy = site_values(X, candidates)
    scores = [{"candidate": str(name), "n_components": mix.n_components, "covariance_type": mix.covariance_type,
               "digest": candidate_digest(mix), "log_likelihood": float(ll), "entropy": float(e)}
              for name, mix, ll, e in zip(names, candidates, loglik, entropy)]
    return {"format": SCORES_FORMAT, "version": 1, "n_samples": int(X.shape[0]), "scores": scores}


def read_site_scores(
    paths: Sequence[str | os.PathLike[str]], candidates: Sequence[GaussianMixtureParams], names: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
    """The server's side of ``dfmr choose``: the sites' score files as the arrays of :func:`criterion_table`.

    Each file is untrusted. A file that cannot be read, is not a score file, lacks a candidate, scored
    another version of one (its digest differs from :func:`candidate_digest` of the server's), or gives
    a value that is not a number, yields a row of NaN: :func:`criterion_table` then flags that site.

    Parameters
    ----------
    paths : sequence of path
        One score file per site (written by ``dfmr score``, :func:`site_scores`).
    candidates : sequence of GaussianMixtureParams
        The aggregates the server sent, in the order of the table.
    names : sequence of str
        Their names, as the sites recorded them.

    Returns
    -------
    loglik, entropy : ndarray, shape (m, J)
    claimed : ndarray, shape (m,)
        The sizes the sites claim (NaN where unusable); untrusted.
    problems : list of str or None
        Why a site's row is NaN, else None.
    """
    digests = {str(name): candidate_digest(mix) for name, mix in zip(names, candidates)}
    m, J = len(paths), len(candidates)
    loglik, entropy, claimed = np.full((m, J), np.nan), np.full((m, J), np.nan), np.full(m, np.nan)
    problems: list[str | None] = []
    for i, path in enumerate(paths):
        try:
            loglik[i], entropy[i], claimed[i] = _parse_scores(path, digests, list(map(str, names)))
            problems.append(None)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))
    return loglik, entropy, claimed, problems


def _parse_scores(path: str | os.PathLike[str], digests: dict[str, str],
                  names: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    with open(path, "rb") as fh:
        raw = fh.read(_MAX_SCORES_BYTES + 1)
    if len(raw) > _MAX_SCORES_BYTES:
        raise ValueError(f"larger than {_MAX_SCORES_BYTES} bytes, not a score file")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SCORES_FORMAT or not isinstance(doc.get("scores"), list):
        raise ValueError(f"not a {SCORES_FORMAT} file (written by 'dfmr score')")
    found: dict[str, tuple[float, float]] = {}
    for entry in doc["scores"]:
        name = str(entry["candidate"])
        if name in digests and entry.get("digest") != digests[name]:
            raise ValueError(f"candidate {name} was scored in another version than the server's")
        found[name] = (float(entry["log_likelihood"]), float(entry["entropy"]))
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(f"no score for candidate(s) {', '.join(missing)}")
    values = np.array([found[name] for name in names], dtype=np.float64)
    n = doc.get("n_samples")
    claimed = float(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else math.nan
    return values[:, 0], values[:, 1], claimed


# ----------------------------------------------------------------------------------- server side

def project_to_model(mixture: GaussianMixtureParams, covariance_type: str) -> GaussianMixtureParams:
    """The aggregate constrained to ``covariance_type`` (and tagged with it): the model's M-step on the
    components' scatters ``w_k Sigma_k`` and weights ``w_k``.

    This is the covariance model's moment match of the reduced components (the minimiser of
    ``sum_k w_k KL(N(mu_k, Sigma_k) || N(mu_k, S_k))`` over the model's ``S``), for aggregators that do
    not constrain their reduction to the model themselves; the mixture is returned unchanged when it
    is tagged with the model already.
    """
    model = get_model(covariance_type, mixture.dim)
    if mixture.covariance_type == model.name:
        return mixture
    w, cov = mixture.weights, mixture.covariances
    if not model.contains(cov):
        cov = model.m_step(w[:, None, None] * cov, w)
    return GaussianMixtureParams(w, mixture.means, cov, covariance_type=model.name)


def _column_flags(values: np.ndarray, root_n: np.ndarray, floor: float, level: float,
                  material: np.ndarray | None = None) -> np.ndarray:
    """Which sites are implausible in each column of ``values`` (m, C), each test at ``level`` (two-sided).

    First the honest-looking set ``S`` of each column: the median and MAD, then the size-weighted mean and
    standard deviation of the sites within ``_INNER`` MAD-scales, then, until the set settles, of the sites
    within the Student-t cut (with few sites the MAD alone is noisy). Then every site is tested against
    ``S`` without itself (``S_i``), as an externally studentised residual: with ``v_j`` a mean of ``n_j``
    observations of spread ``s``, ``sqrt(n_i) (v_i - mean_i) / (s_i sqrt(1 + n_i / N_i))`` is Student-t
    with ``|S_i| - 1`` degrees of freedom for an honest site when the values are normal (``mean_i`` and
    ``s_i`` the size-weighted mean and standard deviation over ``S_i``, ``N_i`` its total size). The
    exact null distribution matters with few sites: a scale from 3 or 4 sites, with the site's own value
    in it, made honest small sites fail the previous normal-like cut (issue 22: 2 of 5 sites of 180 rows).
    A value that is not finite is always flagged; a column with fewer than 3 finite sites flags nothing else.
    With ``material`` (one per column), a finite value is flagged only if it is also further than
    ``material[c]`` from the set's mean (per observation; :func:`flag_sites`).
    """
    m, C = values.shape
    flags = ~np.isfinite(values)
    material = np.zeros(C) if material is None else material
    weights = root_n**2
    for c in range(C):
        v = values[:, c]
        ok = np.isfinite(v)
        if ok.sum() < 3:
            continue
        cut = stats.t.isf(level / 2, df=ok.sum() - 1)
        centre = np.median(v[ok])
        mad = max(_MAD * np.median(np.abs(v - centre)[ok] * root_n[ok]), floor)
        inner = ok & (np.abs(v - centre) * root_n <= _INNER * mad)
        for _ in range(20):
            mean = np.average(v[inner], weights=weights[inner])
            spread = max(math.sqrt(np.sum(weights[inner] * (v[inner] - mean) ** 2) / max(inner.sum() - 1, 1)), floor)
            with np.errstate(invalid="ignore"):
                within = ok & (np.abs(v - mean) * root_n / spread <= cut)
            if np.array_equal(within, inner) or 2 * within.sum() <= ok.sum():
                break
            inner = within
        # Leave-one-out sums over the set (values centred on the set's mean, so the sums do not cancel).
        u = np.where(inner, v - mean, 0.0)
        w_in = np.where(inner, weights, 0.0)
        W, A, B = w_in.sum(), (w_in * u).sum(), (w_in * u * u).sum()
        W_i, A_i, B_i = W - w_in, A - w_in * u, B - w_in * u * u
        size_i = inner.sum() - inner.astype(int)
        testable = ok & (size_i >= 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_i = A_i / W_i
            s_i = np.sqrt(np.maximum(B_i - A_i * mean_i, 0.0) / (size_i - 1))
            s_i = np.maximum(s_i, floor)
            z = np.abs(np.where(ok, v - mean, 0.0) - mean_i) * root_n / (s_i * np.sqrt(1.0 + weights / W_i))
            cut_i = stats.t.isf(level / 2, df=np.maximum(size_i - 1, 1))
        flags[:, c] |= testable & ~(z <= cut_i) & ~(np.abs(v - mean - mean_i) <= material[c])
    return flags


def flag_sites(
    site_loglik: ArrayLike, n_samples: ArrayLike, site_entropy: ArrayLike | None = None, *, level: float = 0.001,
    n_components: ArrayLike | None = None, n_parameters: ArrayLike | None = None,
) -> np.ndarray:
    """Sites whose second-round values are implausible against the others (see the module docstring).

    Parameters
    ----------
    site_loglik : array_like, shape (m, J)
        Each site's log-likelihood (a sum over its points) of each candidate.
    n_samples : array_like, shape (m,)
        Trusted sizes of the sites.
    site_entropy : array_like, shape (m, J), optional
        Each site's classification entropy of each candidate, tested when given: a per-observation
        entropy lies in ``[0, log K]``, so it is bounded rather than normal (most points have none, a few
        much), and a site is flagged when its value is outside that range or further from the median
        site than twice Hoeffding's bound ``log K sqrt(log(4 m J / level) / (2 n_i))``.
    level : float, default 0.001
        Chance that some honest site is flagged when the per-observation values are normal (Bonferroni
        over sites and columns; the columns are correlated, so the true chance is lower). Measured on
        skewed contrasts (K = 3 against 4 where 3 is true, 8 or 16 sites): no false flag in 100
        replicates each, where 0.01 flagged some site in 3-5 of 100.
    n_components : array_like of int, shape (J,), optional
        The candidates' K, for the entropy test (without it only non-finite or negative entropies flag).
    n_parameters : array_like of int, shape (J,), optional
        The candidates' free parameters ``p_j``. When given, a site's contrast of candidate ``j`` against
        the reference ``r`` must also be *material* to be flagged: further from the honest sites' mean
        than ``|p_j - p_r| log(N) / (2 N)`` per observation (``N`` the sites' total trusted size), the
        deviation that, made by every site in proportion to its size, would move the two BICs by their
        penalty difference. A minority of sites holding a fraction ``phi`` of the data, unflagged, then
        moves a BIC contrast by at most ``phi`` times the penalty difference beyond the sampling cut. Why:
        per-observation contrasts are heavy-tailed where a candidate has a component of a few points'
        weight, and the one site holding such a point can be 10 MAD-scales out by half a nat (issue 22:
        one honest site of 288, K = 7 with a component of weight 1.4e-4 against K = 6, in 1-D, where
        the penalty difference was 30 and the deviation 1 on the BIC scale).

    Returns
    -------
    ndarray of bool, shape (m,)
        True for a flagged site.
    """
    ll = np.asarray(site_loglik, dtype=np.float64)
    n = np.asarray(n_samples, dtype=np.float64)
    m, J = ll.shape
    a = ll / n[:, None]
    finite_rows = np.all(np.isfinite(a), axis=1)
    ref = int(np.argmax(np.median(a[finite_rows], axis=0))) if finite_rows.any() else 0
    columns = [a[:, [ref]], np.delete(a - a[:, [ref]], ref, axis=1)]
    values = np.concatenate(columns, axis=1)
    flagged = ~np.all(np.isfinite(values), axis=1)
    if site_entropy is not None:
        e = np.asarray(site_entropy, dtype=np.float64) / n[:, None]
        flagged |= ~np.all(np.isfinite(e) & (e >= 0), axis=1)
        if n_components is not None:
            log_k = np.log(np.asarray(n_components, dtype=np.float64))
            bound = 2 * log_k[None, :] * np.sqrt(math.log(4 * m * J / level) / (2 * n[:, None]))
            with np.errstate(invalid="ignore"):
                far = (e > log_k + 1e-12) | (np.abs(e - np.nanmedian(e, axis=0)) > bound)
            flagged |= np.any(far, axis=1)
    if m < 3:
        # Two sites cannot outvote each other: only impossible values are flagged.
        return flagged
    root_n = np.sqrt(n)
    typical = np.median(np.abs(a[finite_rows])) if finite_rows.any() else 1.0
    floor = 1e-9 * (1.0 + typical) * float(np.median(root_n))
    material = None
    if n_parameters is not None:
        p = np.asarray(n_parameters, dtype=np.float64)
        if p.shape != (J,):
            raise ValueError(f"n_parameters must hold {J} counts, got shape {p.shape}.")
        # The level column's difference is 0: a lie shared by every candidate cannot change the choice.
        material = np.abs(np.concatenate([[0.0], np.delete(p - p[ref], ref)])) * math.log(n.sum()) / (2 * n.sum())
    return flagged | np.any(_column_flags(values, root_n, floor, level / (m * values.shape[1]), material), axis=1)


def _check_level(level: Any) -> float:
    if not (isinstance(level, numbers.Real) and 0 < level < 1):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}.")
    return float(level)


def _candidate_rows(candidates: Sequence[Any], n_features: int | None) -> tuple[list[tuple[int, str]], int]:
    rows, dims = [], set()
    for c in candidates:
        if isinstance(c, GaussianMixtureParams):
            rows.append((c.n_components, str(getattr(c, "covariance_type", None) or "full")))
            dims.add(c.dim)
        elif isinstance(c, Candidate):
            rows.append((c.n_components, c.covariance_type))
        elif isinstance(c, Sequence) and len(c) == 2 and not isinstance(c, str):
            rows.append((_components(c[0])[0], _types(c[1], n_features)[0]))
        else:
            raise ValueError("a candidate must be a (n_components, covariance_type) pair or a fitted mixture, "
                             f"got {c!r}.")
    if n_features is not None:
        dims.add(int(n_features))
    if len(dims) != 1:
        raise ValueError("n_features is needed when the candidates are (n_components, covariance_type) pairs"
                         if not dims else f"the candidates differ in dimension ({sorted(dims)}).")
    return rows, dims.pop()


def criterion_table(
    candidates: Sequence[Any],
    site_loglik: ArrayLike,
    n_samples: ArrayLike,
    criterion: str = "bic",
    *,
    site_entropy: ArrayLike | None = None,
    n_features: int | None = None,
    level: float = 0.001,
    flagged: ArrayLike | None = None,
) -> pd.DataFrame:
    """The server's side of model selection: flag implausible sites, then BIC and ICL of every candidate.

    Parameters
    ----------
    candidates : sequence
        The J candidates: (n_components, covariance_type) pairs (then ``n_features`` is needed) or
        the fitted aggregates (``GaussianMixtureParams``; the covariance model is their
        ``covariance_type`` tag, "full" when they carry none).
    site_loglik : array_like, shape (m, J)
        What the sites returned: site ``i``'s log-likelihood (a sum over its points) of candidate ``j``
        on its own data. Untrusted: a non-finite or implausible row flags the site.
    n_samples : array_like, shape (m,)
        The sites' sizes as the server knows them (trusted).
    criterion : {"bic", "icl"}, default "bic"
        The criterion that :func:`best_index` (and the estimator) minimises; recorded in
        ``table.attrs["criterion"]``.
    site_entropy : array_like, shape (m, J), optional
        Site ``i``'s classification entropy ``sum_x -log max_k z_k(x)`` of candidate ``j``; needed for
        ICL (the ``icl`` column is NaN without it).
    n_features : int, optional
        Dimension of the data, when the candidates are pairs.
    level : float, default 0.001
        Level of the flagging test (:func:`flag_sites`).
    flagged : array_like of bool, shape (m,), optional
        Sites the caller has already flagged (then no test is run here, but a site with a value that is
        not finite is still flagged): the one-round selection tests the values the sites reported, not
        its approximations (whose Monte Carlo error the sampling-theory test does not know), and
        :func:`one_round_loglik` gives a site whose density is implausible a row of NaN.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, in the given order: n_components, covariance_type, log_likelihood (summed
        over the kept sites), n_parameters, bic (``-2 log L + p log N``, lower is better), icl (``bic + 2
        sum of entropies``), n_machines_kept, flagged_sites (tuple of site indices, the same for every row).
        ``attrs``: "criterion", "best" (the row index of the smallest criterion, the first on ties), "n_samples"
        (N, summed over the kept sites).

    Raises
    ------
    ValueError
        For malformed input, or if more than half the sites are flagged.
    """
    import pandas as pd

    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))}, got {criterion!r}.")
    level = _check_level(level)
    rows, dim = _candidate_rows(candidates, n_features)
    J = len(rows)
    try:
        ll = np.asarray(site_loglik, dtype=np.float64)
        n = np.asarray(n_samples, dtype=np.float64)
        ent = None if site_entropy is None else np.asarray(site_entropy, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"site values and sizes must be numeric arrays: {exc}") from exc
    if ll.ndim != 2 or ll.shape[1] != J or ll.shape[0] == 0:
        raise ValueError(f"site_loglik must have shape (m, {J}) (one column per candidate), got {ll.shape}.")
    m = ll.shape[0]
    if n.shape != (m,) or not np.all(np.isfinite(n)) or np.any(n < 1):
        raise ValueError(f"n_samples must hold {m} finite sizes >= 1, got {np.asarray(n_samples)!r}.")
    if ent is not None and ent.shape != ll.shape:
        raise ValueError(f"site_entropy must have the shape of site_loglik {ll.shape}, got {ent.shape}.")
    if criterion == "icl" and ent is None:
        raise ValueError("criterion='icl' needs site_entropy.")
    # A log-likelihood above 0 is possible for concentrated data; +inf or NaN is not a value: flag it.
    n_params = np.array([get_model(t, dim).n_parameters(k, dim) for k, t in rows])
    if flagged is None:
        flagged = flag_sites(ll, n, ent, level=level, n_components=[k for k, _ in rows], n_parameters=n_params)
    else:
        flagged = np.asarray(flagged, dtype=bool)
        if flagged.shape != (m,):
            raise ValueError(f"flagged must hold {m} booleans, got shape {flagged.shape}.")
        # A value that is not a number never enters a sum (one_round_loglik marks implausible sites so).
        flagged = flagged | ~np.all(np.isfinite(ll), axis=1)
        if ent is not None:
            flagged |= ~np.all(np.isfinite(ent) & (ent >= 0), axis=1)
    if 2 * flagged.sum() > m:
        raise ValueError(f"{flagged.sum()} of {m} sites sent implausible values; no majority to choose with.")
    kept = ~flagged
    N = float(n[kept].sum())
    loglik = ll[kept].sum(axis=0)
    bic = -2.0 * loglik + n_params * math.log(N)
    icl = bic + 2.0 * ent[kept].sum(axis=0) if ent is not None else np.full(J, np.nan)
    flagged_sites = tuple(int(i) for i in np.flatnonzero(flagged))
    table = pd.DataFrame({
        "n_components": [k for k, _ in rows],
        "covariance_type": [t for _, t in rows],
        "log_likelihood": loglik,
        "n_parameters": n_params,
        "bic": bic,
        "icl": icl,
        "n_machines_kept": int(kept.sum()),
        "flagged_sites": [flagged_sites] * J,
    }, columns=list(_COLUMNS))
    table.attrs.update(criterion=criterion, best=best_index(table, criterion), n_samples=N)
    return table


def best_index(table: pd.DataFrame, criterion: str | None = None) -> int:
    """Row of the smallest criterion (``table.attrs["criterion"]`` by default); the first on ties."""
    column = criterion or table.attrs.get("criterion", "bic")
    values = table[column].to_numpy(dtype=np.float64)
    if not np.any(np.isfinite(values)):
        raise ValueError(f"no candidate has a finite {column}.")
    return int(np.nanargmin(np.where(np.isfinite(values), values, np.inf)))


def one_round_loglik(
    aggregates: Sequence[GaussianMixtureParams],
    local_fits: Sequence[Sequence[GaussianMixtureParams]],
    local_loglik: ArrayLike,
    n_samples: ArrayLike,
    *,
    n_draws: int = 2000,
    random_state: int | np.random.Generator | None = 0,
    surrogate: str = "aic",
) -> tuple[np.ndarray, np.ndarray]:
    """One-round approximation of what the sites would return in round 2 (see the module docstring).

    Parameters
    ----------
    aggregates : sequence of GaussianMixtureParams, length J
        The server's aggregate of each candidate.
    local_fits : sequence of m sequences of J GaussianMixtureParams
        Site ``i``'s own fit of candidate ``j``.
    local_loglik : array_like, shape (m, J)
        Site ``i``'s log-likelihood of its own fit ``j`` on its data (sent with the fits; untrusted).
    n_samples : array_like, shape (m,)
        Trusted sizes.
    n_draws : int, default 2000
        About how many quasi-random points of each site's fit give its KL (and entropy): each component
        gets a power of two of at least 16 points near ``w_k n_draws`` (:func:`_quasi_random_draws`).
    random_state : int, Generator or None, default 0
        Seed of the draws.
    surrogate : {"aic", "own"}, default "aic"
        The site density the KL is taken from. "aic": one fit per site for every candidate, the site's fit
        ``theta_i*`` of smallest AIC (``-2 l_i(theta_ij) + 2 p_j``, ``p_j`` from the server's aggregate, not from
        the site's tags) over the grid: then ``l_i(theta_i*) - n_i KL(f_theta_i* || f_theta_j)``, the contrasts
        between candidates are cross-entropies under one density per site (the same draws for every candidate) and
        the optimism of the site's fit is common to all candidates. "own": site ``i``'s own fit ``theta_ij`` of each
        candidate ``j`` (the rule before; its optimism above K0 differs between candidates).

    Returns
    -------
    loglik : ndarray, shape (m, J)
        ``l_i(theta_i*) - n_i KL(f_theta_i* || f_theta_j)`` ("aic"; ``theta_ij`` in place of ``theta_i*``
        with "own"), the KL term of each candidate capped at its median over the sites plus 5 MAD-scales
        (a site whose fit is far from the aggregate, as a liar's can be, then lowers that candidate's value
        no more than a plausible site could; the spread is the MAD-scale, at least ``sqrt(p_j / 2)``, the
        sampling spread of ``n KL`` for the candidate's ``p_j`` parameters). A site capped at more than half
        the candidates has a row of NaN (:func:`criterion_table` flags it; not with fewer than 3 sites):
        its values would be mostly the caps, not its own. Why: a liar whose every fit carries a far
        component (the "add" attack) is capped at every candidate, and the caps differ between candidates
        by more than the penalties between them, so its capped values still chose (issue 22: twelve of
        64 such sites, K0 = 1, made the one round choose K = 7); an honest site capped at most candidates
        (its density far from every aggregate's) speaks through the caps too, and is dropped as well.
    entropy : ndarray, shape (m, J)
        ``n_i`` times the expectation of ``-log max_k z_jk(x)`` under ``f_theta_i*`` (``f_theta_ij`` with
        "own"; same draws).
    """
    if surrogate not in ("own", "aic"):
        raise ValueError(f"surrogate must be 'own' or 'aic', got {surrogate!r}.")
    ll = np.asarray(local_loglik, dtype=np.float64)
    n = np.asarray(n_samples, dtype=np.float64)
    m, J = len(local_fits), len(aggregates)
    if ll.shape != (m, J) or n.shape != (m,) or any(len(fits) != J for fits in local_fits):
        raise ValueError(f"local_fits must be {m} x {J} mixtures, local_loglik ({m}, {J}) and n_samples ({m},).")
    rng = np.random.default_rng(random_state)
    kl, entropy = np.empty((m, J)), np.empty((m, J))
    if surrogate == "own":
        for i in range(m):
            for j in range(J):
                own = local_fits[i][j]
                draws, weights = _quasi_random_draws(own, n_draws, rng)
                log_agg, ent = _point_values(aggregates[j], draws)
                kl[i, j] = n[i] * weights @ (own.logpdf(draws) - log_agg)
                entropy[i, j] = n[i] * weights @ ent
        level = ll
    else:
        star = aic_surrogate(aggregates, ll)
        for i in range(m):
            ref = local_fits[i][star[i]]
            draws, weights = _quasi_random_draws(ref, n_draws, rng)
            log_ref = ref.logpdf(draws)
            for j in range(J):
                log_agg, ent = _point_values(aggregates[j], draws)
                kl[i, j] = n[i] * weights @ (log_ref - log_agg)
                entropy[i, j] = n[i] * weights @ ent
        level = ll[np.arange(m), star][:, None]
    # The cap: the median over the sites plus _KL_CAP spreads, the spread the MAD-scale but at least sqrt(p / 2),
    # the standard deviation of n KL between a p-parameter MLE and its truth (2 n KL is chi-square(p)), which the
    # MAD of a few sites (or of equal sites) can underrate.
    rows, dim = _candidate_rows(aggregates, None)
    p = np.array([get_model(t, dim).n_parameters(k, dim) for k, t in rows], dtype=np.float64)
    centre = np.median(kl, axis=0)
    cap = centre + _KL_CAP * np.maximum(_MAD * np.median(np.abs(kl - centre), axis=0), np.sqrt(p / 2.0))
    with np.errstate(invalid="ignore"):
        capped = ~(kl <= cap)
    values = level - np.minimum(kl, cap)
    if m >= 3:  # two sites cannot outvote each other
        values[2 * capped.sum(axis=1) > J] = np.nan
    return values, entropy


def one_round_table(
    candidates: Sequence[Any],
    aggregates: Sequence[GaussianMixtureParams],
    local_fits: Sequence[Sequence[GaussianMixtureParams]],
    local_loglik: ArrayLike,
    n_samples: ArrayLike,
    criterion: str = "bic",
    *,
    n_features: int | None = None,
    level: float = 0.001,
    random_state: int | np.random.Generator | None = 0,
    surrogate: str = "aic",
) -> pd.DataFrame:
    """The server's side of the one-round selection: :func:`criterion_table` of :func:`one_round_loglik`.

    The values the sites reported are tested as round-2 values are (:func:`flag_sites`), not the
    approximations (whose quasi-Monte Carlo error that test does not know): with ``surrogate="aic"`` the
    one reported value that enters, each site's log-likelihood of its fit of smallest AIC (the level of all
    its candidates, so a lie there cannot move a choice, only the ``log_likelihood`` column); with "own"
    every candidate's (with the candidates' parameter counts for materiality). Why not every candidate's
    with "aic": the sites' own fits differ between sites far more than sampling does (which clusters a
    site merges below K0, where its spare components go above it), and that test flagged 14 of 52
    honest sites in one replicate of issue 22's full grid. A site whose density is implausible
    (:func:`one_round_loglik`'s NaN row) is flagged too. ``candidates`` and ``n_features`` are
    :func:`criterion_table`'s (the table spells the models as they do), the other arguments
    :func:`one_round_loglik`'s.
    """
    rows, dim = _candidate_rows(candidates, n_features)
    p = [get_model(t, dim).n_parameters(k, dim) for k, t in rows]
    own = np.asarray(local_loglik, dtype=np.float64)
    n = np.asarray(n_samples, dtype=np.float64)
    if own.ndim != 2 or own.shape[1] != len(rows) or n.shape != (own.shape[0],):
        raise ValueError(f"local_loglik must have shape (m, {len(rows)}) and n_samples (m,), got {own.shape} "
                         f"and {n.shape}.")
    if surrogate == "aic":
        # Only the level l_i(theta_i*) enters (the same for every candidate): it is the one value to test.
        star = aic_surrogate(aggregates, own)
        flagged = flag_sites(own[np.arange(len(n)), star][:, None], n, level=_check_level(level))
    else:
        flagged = flag_sites(own, n, level=_check_level(level), n_parameters=p)
    ll, ent = one_round_loglik(aggregates, local_fits, own, n, random_state=random_state, surrogate=surrogate)
    return criterion_table(candidates, ll, n, criterion, site_entropy=ent, n_features=n_features, level=level,
                           flagged=flagged)


def aic_surrogate(aggregates: Sequence[GaussianMixtureParams], local_loglik: ArrayLike) -> np.ndarray:
    """Per site, the index of its fit of smallest AIC, ``-2 l_i(theta_ij) + 2 p_j``, over the J candidates.

    ``p_j`` (free parameters) comes from the server's aggregate ``j`` (its K and covariance model), not
    from anything a site claims; a non-finite ``l_ij`` is never chosen (a site with no finite value gets
    index 0, and its row stays non-finite for the flags). Ties go to the first candidate.
    """
    ll = np.asarray(local_loglik, dtype=np.float64)
    rows, dim = _candidate_rows(aggregates, None)
    p = np.array([get_model(t, dim).n_parameters(k, dim) for k, t in rows], dtype=np.float64)
    aic = np.where(np.isfinite(ll), -2.0 * ll + 2.0 * p, np.inf)
    return np.argmin(aic, axis=1)


def _quasi_random_draws(
    mixture: GaussianMixtureParams, n_draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Points and weights whose weighted mean estimates an expectation under ``mixture``.

    Stratified over the components (component ``k`` gets its exact weight ``w_k``, shared by its points)
    and, within a component, scrambled Sobol points mapped through the normal quantile and the
    component's Cholesky factor. For the smooth integrands of :func:`one_round_loglik` (log-density ratios
    of nearby mixtures) this is far more precise than plain draws: on 24 sites of 1,000 points (issue 22)
    the spread of a site's term around the exact value fell from 1.5-2.3 nats (2,000 plain draws) to
    0.2-0.7 at the same cost, which made the Monte Carlo error, not the approximation, decide between
    K0 and K0 + 1. Each component gets a power of two of at least 16 points (Sobol's balance), about
    ``w_k n_draws``.
    """
    from scipy.stats import qmc

    points, weights = [], []
    chol = mixture.cholesky_factors
    for k in np.flatnonzero(mixture.weights > 0):
        size = 2 ** max(4, round(math.log2(max(mixture.weights[k] * n_draws, 1.0))))
        u = qmc.Sobol(mixture.dim, scramble=True, seed=rng).random(size)
        z = stats.norm.ppf(np.clip(u, 1e-12, 1.0 - 1e-12))
        points.append(mixture.means[k] + z @ chol[k].T)
        weights.append(np.full(size, mixture.weights[k] / size))
    w = np.concatenate(weights)
    return np.vstack(points), w / w.sum()


# ------------------------------------------------------------------------------- the estimator's grid

def _fit_machine_grid(
    X: np.ndarray, index: int, seed: np.random.SeedSequence, grid: tuple[tuple[int, str], ...], n_init: int,
    max_iter: int, tol: float, need: int,
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray, int, bool, float]], int]:
    """Round 1 on machine ``index`` (one task): every candidate's local fit as plain arrays, with its EM
    iterations, convergence and log-likelihood on the machine's data; and the machine's rows."""
    from .sources import InvalidDataError

    if X.shape[0] < need:
        raise InvalidDataError(f"it has {X.shape[0]} rows; the grid needs at least {need} (its largest K, and "
                               f"more than d = {X.shape[1]}). Use fewer machines.")
    fits = fit_grid_local(X, [Candidate(k, t) for k, t in grid], np.random.default_rng(seed),
                          n_init=n_init, max_iter=max_iter, tol=tol)
    out = [(np.array(f.mixture.weights), np.array(f.mixture.means), np.array(f.mixture.covariances),
            int(f.n_iter), bool(f.converged), float(f.loglik)) for f in fits]
    return out, int(X.shape[0])


def _site_values_task(X: np.ndarray, candidates: tuple[GaussianMixtureParams, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Round 2 on one machine."""
    return site_values(X, candidates)


@dataclass
class GridFit:
    """What :func:`fit_grid` hands back to the estimator."""

    table: Any
    best: int
    candidates: list[Candidate]
    aggregations: list[Any]
    local: list[GaussianMixtureParams]
    indices: np.ndarray
    sizes: list[int]
    n_iter: np.ndarray
    converged: np.ndarray
    failed: dict[int, str]


def fit_grid(
    est: Any, parts: list[Any], seeds: list[np.random.SeedSequence], n_jobs: int, dim: int | None = None
) -> GridFit:
    """The estimator's grid: round 1 (local fits of every candidate, one task per machine), one
    aggregation per candidate, then round 2 (``est.selection == "two_rounds"``: every machine's
    log-likelihood and entropy of every aggregate, one task per machine) or the one-round
    approximation, and :func:`criterion_table`. ``est`` is a :class:`dfmr.DistributedGaussianMixture`
    (its hyper-parameters and its ``_aggregate`` and ``_map_machines``-style settings are used)."""
    from .estimator import _rebuild
    from .executor import MachineTask, map_machines

    candidates = candidate_grid(est.n_components, est.covariance_type, dim)
    grid = tuple((c.n_components, c.covariance_type) for c in candidates)
    need = max(c.n_components for c in candidates)
    settings = (grid, int(est.n_init), int(est.max_iter), float(est.tol), need)
    engine_kw = dict(backend=est.backend, n_jobs=n_jobs, client=est.client, progress=bool(est.progress),
                     timeout=est.timeout, total_timeout=est.total_timeout)
    out = map_machines(_fit_machine_grid, [MachineTask(i, data, (i, seed, *settings))
                                           for i, (data, seed) in enumerate(zip(parts, seeds))],
                       desc="local grid fits", **engine_kw)
    indices = np.array(out.succeeded, dtype=np.intp)
    results = [out.results[i] for i in indices]
    sizes = [int(r[1]) for r in results]
    dim_set = {r[0][0][1].shape[-1] for r in results}
    if len(dim_set) > 1:
        raise ValueError(f"the machines' data differ in the number of columns ({sorted(dim_set)}); "
                         "all must share one d.")
    dim = dim_set.pop()
    names = [get_model(c.covariance_type, dim).name for c in candidates]
    local = [[_rebuild(i, *r[0][j][:3], names[j]) for j in range(len(grid))] for i, r in zip(indices, results)]

    def aggregate(j: int) -> Any:
        c = candidates[j]
        result = est._aggregate([fits[j] for fits in local], n_jobs, sizes, n_components=c.n_components,
                                covariance_type=c.covariance_type)
        mixture = project_to_model(result.mixture, c.covariance_type)
        return result if mixture is result.mixture else dataclasses.replace(result, mixture=mixture)

    # The candidates' aggregations are independent and spend much of their time in NumPy and the C++ core,
    # which release the GIL: n_jobs threads (one, in order, for the serial engine).
    with ThreadPoolExecutor(max_workers=max(1, min(n_jobs, len(candidates)))) as pool:
        aggregations = list(pool.map(aggregate, range(len(candidates))))
    aggregates = [a.mixture for a in aggregations]
    if est.selection == "two_rounds":
        second = map_machines(_site_values_task, [MachineTask(int(i), parts[i], (tuple(aggregates),)) for i in indices],
                              desc="site criteria", **engine_kw)
        # A machine that fails in round 2 sent nothing: its NaN row flags it (dropped from every candidate).
        ll = np.array([r[0] if r is not None else np.full(len(grid), np.nan) for r in second.results])
        ent = np.array([r[1] if r is not None else np.full(len(grid), np.nan) for r in second.results])
        table = criterion_table(grid, ll, sizes, est.criterion, site_entropy=ent, n_features=dim)
    else:
        own = np.array([[r[0][j][5] for j in range(len(grid))] for r in results])
        table = one_round_table(grid, aggregates, local, own, sizes, est.criterion, n_features=dim)
    best = table.attrs["best"]
    n_iter = np.array([r[0][best][3] for r in results], dtype=np.intp)
    converged = np.array([r[0][best][4] for r in results], dtype=bool)
    return GridFit(table, best, candidates, aggregations, [fits[best] for fits in local], indices, sizes, n_iter,
                   converged, out.failures)


def validate(n_components: Any, covariance_type: Any, criterion: Any, selection: Any) -> None:
    """Check the estimator's selection hyper-parameters (a ValueError naming the parameter)."""
    if is_grid(n_components, covariance_type):
        candidate_grid(n_components, covariance_type)
    else:
        _components(n_components)
        _types(covariance_type, None)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))}, got {criterion!r}.")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(map(repr, SELECTIONS))}, got {selection!r}.")


def local_choice(
    X: ArrayLike, n_components: Any, covariance_type: Any = "full", criterion: str = "bic",
    random_state: int | np.random.Generator | None = None, **local_kwargs: Any,
) -> tuple[pd.DataFrame, list[GaussianMixtureParams]]:
    """One machine's own choice (as mclust's ``Mclust`` on its data): every candidate of the grid fitted to
    ``X`` (:func:`fit_grid_local`: the plain MLE for several candidates), its BIC and ICL on ``X``.

    Returns the :func:`criterion_table` (one site, nothing flagged) and the fitted mixtures in grid order.
    """
    X = np.asarray(X, dtype=np.float64)
    X = X[:, None] if X.ndim == 1 else X
    candidates = candidate_grid(n_components, covariance_type, X.shape[1])
    fits = fit_grid_local(X, candidates, random_state, **local_kwargs)
    mixtures = [f.mixture for f in fits]
    loglik, entropy = site_values(X, mixtures)
    table = criterion_table([(c.n_components, c.covariance_type) for c in candidates], loglik[None], [X.shape[0]],
                            criterion, site_entropy=entropy[None], n_features=X.shape[1])
    return table, mixtures
