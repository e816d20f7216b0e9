"""Screened DFMR: Byzantine-robust aggregation beyond the paper (:func:`robust_dfmr`).

:func:`dfmr.dfmr` keeps or drops whole machines by their L2 distance to a centre. L2 barely
sees a tiny or very flat extra component, a scaled covariance or skewed weights, and a
machine-level rule needs an honest majority of *machines*, which the paper's own
component-level attack destroys. :func:`robust_dfmr` screens in three stages, each decision
recorded with its rule and statistic (:class:`Decision`):

1. **Hygiene** (before any O(K^2 d^3) work): estimates of another dimension than the majority,
   estimates with more than ``max_components_factor * K`` components (their cost grows as
   ``K_i^2 d^3``), and exact copies of an earlier machine's estimate are dropped. Never fatal.
2. **Alignment**: every machine's components are matched one-to-one to the K slots of a robust
   reference mixture by the reduction's own cost ``KL(N_ik || G_k)`` (an optimal assignment);
   components left unmatched (a sixth tiny or flat component) are dropped. The reference
   starts at the COAT centre and is replaced, per slot, by the coordinate-wise median of the
   aligned components, then by the mean of the components that pass the tests; the alignment
   is repeated against each new reference.
3. **Calibrated tests per aligned slot**: a component estimated from ``n_i w_k`` points
   scatters around the truth at its sampling error, and the KL divergence splits into the
   log-likelihood-ratio statistics of that error:
   ``T_mean = n_i w_k (mu_ik - mu_k)' S_k^-1 (mu_ik - mu_k)`` (chi2, d df),
   ``T_cov = n_i w_k [tr(S_k^-1 S_ik) - d - log det(S_k^-1 S_ik)]`` (chi2, d(d+1)/2 df) and
   ``T_weight = 2 n_i [w_ik log(w_ik/w_k) + (1-w_ik) log((1-w_ik)/(1-w_k))]`` (chi2, 1 df),
   with the reference's weight ``w_k``, never the machine's own. Overlapping components
   scatter more than these complete-data formulas say, and the most overlapped slots most, so
   each part of each slot is divided by an inflation factor. When sample sizes are known and
   the mixture has at most 60 parameters, the factor comes from the mixture's information
   matrix (inference's :func:`dfmr.information.expected_information` at the robust centre):
   the honest law of a slot's statistic is ``sum_l lambda_l chi2_1`` (eigenvalues of the
   slot's block of the statistic's form times the estimate's covariance), evaluated by a
   saddlepoint approximation, and the factor maps that law's tail onto the chi2 cut-off, times
   the machines' excess scatter over it (a lower quantile across machines, at least 1).
   Otherwise (beyond 60 parameters the information would cost ~1 s, for K = 5, d = 10) it is a
   lower quantile of the statistics across machines over its chi2 value, per slot (for parts
   of at least 3 df, where m values give a steady quantile) and pooled over slots (the
   larger), never below the factor of the parts' sum (whose many degrees of freedom make it
   steady with few machines) and, when sample sizes are known, never below 1.
   A component fails when a part exceeds the chi2 quantile at ``level / (3 m K)`` (Bonferroni
   over parts, machines and slots): it alone is dropped. A machine whose surviving components
   jointly fail a part (means or covariances summed over slots; the weights by their
   multinomial likelihood ratio over every slot) is dropped whole: this catches small
   deviations spread over every component. Slots of overlapping components err together (one
   misassigned point moves both means), so the sum is wider than chi2 with the summed df: its
   law is again a weighted chi2 sum, from the joint covariance of the slots when the
   information is at hand, and it gets its own robust factor. Each slot keeps at least a
   majority of the machines (the least deviant ones).

The kept components are pooled (component ``(i, k)`` with weight ``v_i w_ik / sum_j v_j`` over
the machines ``j`` that kept slot k, so a dropped component does not bias the slot's weight)
and reduced by MR started from their slot-wise moment match; if an output component would
draw its mass from fewer than a majority of machines, the slot-wise moment match is returned
instead. With no attack every machine is kept and the result is MR over all machines.

Sample sizes calibrate the tests only. A machine's claim cannot loosen its own test (the test
uses ``max(n_i, median n)``) nor raise its weight in the pool (``v_i = min(n_i, median n)``).
When no sample size is known, equal sizes are assumed and the tests are calibrated entirely by
the scatter across machines (the summary says so).
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq, linear_sum_assignment
from scipy.special import xlogy
from scipy.stats import chi2, norm

from ._validation import check_int
from .aggregate import AggregationResult
from .distances import pairwise_l2_scaled
from .filtering import center_index
from .params import GaussianMixtureParams
from .reduction import kl_cost, reduce, reduce_mixtures

__all__ = ["Decision", "Screening", "RobustAggregationResult", "robust_dfmr", "screening_summary_lines"]

PARTS = ("mean", "covariance", "weight")
_CALIBRATION_QUANTILE = 0.25  # at most half the values attacked: this is at most the honest median
_ALIGNMENT_ROUNDS = 3
_SLOT_FACTOR_MIN_DF = 3  # per-slot empirical inflation only for parts with at least this many df
# The information floor costs ~_INFORMATION_DRAWS * p^2 flops: used while p is small, which is
# also where the per-part df are few and the empirical quantiles unsteady.
_INFORMATION_MAX_PARAMS = 60
_INFORMATION_DRAWS = 20_000


@dataclass(frozen=True)
class Decision:
    """One screening decision.

    Attributes
    ----------
    machine : int
        Index of the machine in the input list.
    component : int or None
        The machine's own component index; None when the whole machine is dropped.
    slot : int or None
        The reference slot the component was aligned to (None: unmatched or whole machine).
    rule : str
        ``"dimension"``, ``"n_components"``, ``"duplicate"``, ``"unmatched"``, ``"mean"``,
        ``"covariance"``, ``"weight"``, ``"machine mean"``, ``"machine covariance"`` or ``"machine weight"``.
    statistic : float
        The value the rule compared (a chi2 statistic after inflation for the tests; the
        dimension, the cost ratio ``K_i^2 / K^2``, the index of the copied machine, ...).
    cutoff : float
        The limit it exceeded.
    """

    machine: int
    component: int | None
    slot: int | None
    rule: str
    statistic: float
    cutoff: float

    def describe(self) -> str:
        """One line in words."""
        what = f"machine {self.machine}" if self.component is None else (
            f"machine {self.machine} component {self.component}"
            + ("" if self.slot is None else f" (slot {self.slot})")
        )
        return f"{what}: {self.rule} {self.statistic:.4g} > {self.cutoff:.4g}"


@dataclass(frozen=True)
class Screening:
    """Everything :func:`robust_dfmr` decided, and the statistics it decided on.

    Attributes
    ----------
    decisions : tuple of Decision
        Every dropped machine and component, in the order of the stages.
    reference : GaussianMixtureParams
        The robust centre mixture the components were aligned to and tested against.
    alignment : ndarray of shape (m, K)
        ``alignment[i, k]`` = machine i's component in slot k, or -1.
    kept : ndarray of bool, shape (m, K)
        Whether that aligned component entered the pool.
    statistics : dict of str to ndarray of shape (m, K)
        Inflation-corrected statistics per part (NaN where no component was aligned).
    degrees_of_freedom : dict of str to int
        Their chi2 degrees of freedom.
    inflation : dict of str to ndarray of shape (K,)
        The inflation factor per part and slot (``statistics * inflation`` are the raw statistics).
    cutoffs : dict of str to float
        The chi2 quantiles the parts were compared with.
    machine_statistic : ndarray of shape (m,)
        Sum of the machine-level statistics per machine (NaN where none was computed).
    n_samples : ndarray of shape (m,)
        The sample sizes used (NaN: dropped in hygiene).
    n_samples_known : bool
        False when equal sample sizes were assumed.
    level : float
        Family-wise level of the tests.
    relaxed_slots : tuple of int
        Slots where the tests failed a majority of machines and the least deviant were kept.
    notes : tuple of str
        Remarks for the summary (assumptions, fall-backs).
    """

    decisions: tuple[Decision, ...]
    reference: GaussianMixtureParams
    alignment: np.ndarray
    kept: np.ndarray
    statistics: dict[str, np.ndarray]
    degrees_of_freedom: dict[str, int]
    inflation: dict[str, np.ndarray]
    cutoffs: dict[str, float]
    machine_statistic: np.ndarray
    n_samples: np.ndarray
    n_samples_known: bool
    level: float
    relaxed_slots: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()

    def dropped_machines(self) -> np.ndarray:
        """Sorted indices of machines none of whose components entered the pool."""
        return np.flatnonzero(~self.kept.any(axis=1))


@dataclass(frozen=True, repr=False)
class RobustAggregationResult(AggregationResult):
    """An :class:`~dfmr.aggregate.AggregationResult` with the screening decisions of :func:`robust_dfmr`."""

    screening: Screening | None = field(default=None, repr=False)


def _check_inputs(mixtures: Sequence[GaussianMixtureParams], n_components: int) -> list[GaussianMixtureParams]:
    if isinstance(mixtures, GaussianMixtureParams):
        raise TypeError("mixtures: expected a sequence of GaussianMixtureParams, got a single mixture; "
                        "wrap it in a list.")
    try:
        out = list(mixtures)
    except TypeError:
        raise TypeError(
            f"mixtures: expected a sequence of GaussianMixtureParams, got {type(mixtures).__name__}."
        ) from None
    if not out:
        raise ValueError("mixtures: need at least one mixture, got none.")
    for i, f in enumerate(out):
        if not isinstance(f, GaussianMixtureParams):
            raise TypeError(f"mixtures[{i}]: expected GaussianMixtureParams, got {type(f).__name__}.")
    check_int(n_components, "n_components", 1)
    return out


def _sample_sizes(
    mixtures: list[GaussianMixtureParams], n_samples: Sequence[float] | np.ndarray | float | None
) -> tuple[np.ndarray, bool, list[str]]:
    """Per-machine sample sizes (NaN where unknown) and whether any is known."""
    m = len(mixtures)
    notes: list[str] = []
    if n_samples is not None:
        n = np.asarray(n_samples, dtype=np.float64)
        if n.ndim == 0:
            n = np.full(m, float(n))
        if n.shape != (m,) or not np.all(np.isfinite(n)) or np.any(n < 1):
            raise ValueError(f"n_samples must hold one finite sample size >= 1 per machine ({m}), got {n_samples!r}.")
        return n, True, notes
    n = np.array([np.nan if f.n_samples is None else float(f.n_samples) for f in mixtures])
    known = np.isfinite(n)
    if not known.any():
        notes.append(
            "No sample sizes were given or recorded: equal sizes are assumed and the tests are calibrated "
            "by the scatter of the estimates across machines alone."
        )
        return np.ones(m), False, notes
    if not known.all():
        missing = np.flatnonzero(~known)
        n[missing] = np.median(n[known])
        notes.append(
            f"Machines {', '.join(map(str, missing))} carry no sample size: the median of the others is assumed."
        )
    return n, True, notes



def _hygiene(
    mixtures: list[GaussianMixtureParams], n_components: int, max_components_factor: float
) -> tuple[np.ndarray, list[Decision], int]:
    """Alive mask after the dimension, size and duplicate rules (no O(K^2 d^3) work)."""
    m = len(mixtures)
    alive = np.ones(m, dtype=bool)
    decisions: list[Decision] = []
    dims = [f.dim for f in mixtures]
    counts = Counter(dims)
    top = max(counts.values())
    d = next(x for x in dims if counts[x] == top)  # ties: the dimension of the earliest machine
    for i, f in enumerate(mixtures):
        if f.dim != d:
            alive[i] = False
            decisions.append(Decision(i, None, None, "dimension", float(f.dim), float(d)))
    limit = max_components_factor * n_components
    for i in np.flatnonzero(alive):
        k_i = mixtures[i].n_components
        if k_i > limit:
            alive[i] = False
            # The cost of everything after hygiene grows as K_i^2 d^3; report it relative to K^2 d^3.
            decisions.append(Decision(int(i), None, None, "n_components", (k_i / n_components) ** 2,
                                      max_components_factor**2))
    seen: dict[bytes, int] = {}
    for i in np.flatnonzero(alive):
        f = mixtures[i]
        key = f.weights.tobytes() + f.means.tobytes() + f.covariances.tobytes()
        if key in seen:
            alive[i] = False
            decisions.append(Decision(int(i), None, None, "duplicate", float(seen[key]), float("nan")))
        else:
            seen[key] = int(i)
    return alive, decisions, d


def _alignment_cap(reference: GaussianMixtureParams) -> float:
    """Half the smallest KL divergence between two reference slots (infinite for K = 1).

    Costs are capped there before the assignment: a far component (a mean attacked to 1e2 away)
    costs ~1e8 to one slot and ~1e9 to another, and those differences would otherwise outweigh
    the honest components' costs and displace them. Capped, a far component is equally bad
    everywhere and the honest ones decide.
    """
    if reference.n_components == 1:
        return math.inf
    cost = kl_cost(reference, reference)
    np.fill_diagonal(cost, np.inf)
    return 0.5 * float(cost.min())


def _align(mixture: GaussianMixtureParams, reference: GaussianMixtureParams, cap: float) -> np.ndarray:
    """Slot -> component of ``mixture`` (or -1) minimising the summed capped KL cost, one-to-one."""
    cost = np.minimum(kl_cost(mixture, reference), min(cap, 1e300))  # (K_i, K)
    rows, cols = linear_sum_assignment(cost)
    out = np.full(reference.n_components, -1, dtype=np.intp)
    out[cols] = rows
    return out


def _stack(mixtures: list[GaussianMixtureParams], alignment: np.ndarray, d: int) -> tuple[np.ndarray, ...]:
    """Aligned weights (m, K), means (m, K, d), covariances (m, K, d, d) and log-dets (NaN where empty)."""
    m, k = alignment.shape
    w = np.full((m, k), np.nan)
    mu = np.full((m, k, d), np.nan)
    cov = np.full((m, k, d, d), np.nan)
    logdet = np.full((m, k), np.nan)
    for i in range(m):
        slots = np.flatnonzero(alignment[i] >= 0)
        if slots.size == 0:
            continue
        comp = alignment[i, slots]
        f = mixtures[i]
        w[i, slots] = f.weights[comp]
        mu[i, slots] = f.means[comp]
        cov[i, slots] = f.covariances[comp]
        logdet[i, slots] = 2.0 * np.log(np.diagonal(f.cholesky_factors[comp], axis1=1, axis2=2)).sum(axis=1)
    return w, mu, cov, logdet


def _raw_statistics(
    w: np.ndarray, mu: np.ndarray, cov: np.ndarray, logdet: np.ndarray, n: np.ndarray,
    ref_w: np.ndarray, ref_mu: np.ndarray, ref_cov: np.ndarray,
) -> dict[str, np.ndarray]:
    """Uncorrected likelihood-ratio statistics of every aligned component against the reference."""
    d = mu.shape[2]
    chol = np.linalg.cholesky(ref_cov)  # (K, d, d)
    ref_logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    diff = np.nan_to_num(mu - ref_mu[None])  # (m, K, d)
    z = np.linalg.solve(chol[None], diff[..., None])[..., 0]
    maha = np.einsum("mkd,mkd->mk", z, z)
    # tr(S_k^-1 S_ik) = ||L_k^-1 L_ik||_F^2 is more stable, but S_ik itself is at hand: solve twice.
    inv = np.linalg.inv(ref_cov)
    trace = np.einsum("kab,mkba->mk", inv, np.nan_to_num(cov))
    n_slot = n[:, None] * ref_w[None, :]
    empty = np.isnan(w)
    stats = {
        "mean": n_slot * maha,
        "covariance": n_slot * np.maximum(trace - d - (logdet - ref_logdet[None]), 0.0),
    }
    wi = np.nan_to_num(w)
    w0 = ref_w[None, :]
    if ref_w.size > 1:
        lr = xlogy(wi, wi) - xlogy(wi, w0) + xlogy(1 - wi, 1 - wi) - xlogy(1 - wi, 1 - w0)
        stats["weight"] = 2.0 * n[:, None] * np.maximum(lr, 0.0)
    else:
        stats["weight"] = np.zeros_like(wi)
    for arr in stats.values():
        arr[empty] = np.nan
    return stats


def _inflation(stats: np.ndarray, df: int, floor: float | None) -> float:
    """A lower quantile of the statistics (all machines and slots) over its chi2 quantile, at least ``floor``.

    Pooled over slots: with m machines a per-slot quantile of chi2 variables is too noisy
    (the 1-df weight statistics most of all).
    """
    vals = stats[np.isfinite(stats)]
    s = float(np.quantile(vals, _CALIBRATION_QUANTILE) / chi2.ppf(_CALIBRATION_QUANTILE, df)) if vals.size else 1.0
    if not np.isfinite(s) or s <= 0:
        s = 1.0
    return s if floor is None else max(s, floor)


def _weighted_chi2_sf(x: float, lam: np.ndarray) -> float:
    """``P(sum_j lam_j Z_j^2 > x)`` for independent standard normals: Lugannani-Rice saddlepoint.

    Accurate to a few per cent of the probability far into the tail (where the tests' Bonferroni
    levels sit) and exact in shape for equal weights up to that error; ``lam`` must be >= 0.
    """
    lam = lam[lam > 1e-12 * lam.max()]
    mean = float(lam.sum())
    if x <= 0.0:
        return 1.0
    if abs(x - mean) <= 1e-6 * mean:
        x = mean * (1.0 + 1e-6)  # the formula's removable singularity at the mean

    def slope(t: float) -> float:  # K'(t) - x, increasing in t
        return float(np.sum(lam / (1.0 - 2.0 * lam * t))) - x

    top = 0.5 / float(lam.max())
    if x > mean:
        # K'(t) -> inf at the pole t = top: approach it by halving the gap until K'(t) > x.
        lo, gap = 0.0, top
        while True:
            gap *= 0.5
            hi = top - gap
            if slope(hi) > 0.0:
                break
            lo = hi
    else:
        hi, lo = 0.0, -1.0 / mean
        while slope(lo) >= 0.0:
            lo *= 2.0
    t = brentq(slope, lo, hi, xtol=1e-300, rtol=1e-14, maxiter=500)
    one = 1.0 - 2.0 * lam * t
    cgf = -0.5 * float(np.sum(np.log(one)))
    w = math.copysign(math.sqrt(max(2.0 * (t * x - cgf), 0.0)), t)
    u = t * math.sqrt(float(np.sum(2.0 * lam**2 / one**2)))
    return float(min(max(norm.sf(w) + norm.pdf(w) * (1.0 / u - 1.0 / w), 0.0), 1.0))


def _weighted_chi2_isf(alpha: float, lam: np.ndarray) -> float:
    """The ``x`` with :func:`_weighted_chi2_sf` ``(x, lam) = alpha``."""
    lam = np.asarray(lam, dtype=float)
    mean = float(lam.sum())
    # Union bound: sum lam_j Z_j^2 > mean * c needs some Z_j^2 > c, so the tail there is <= alpha.
    upper = mean * float(chi2.isf(alpha / lam.size, 1)) * (1.0 + 1e-9) + 1e-300
    lower = mean * 1e-12
    if _weighted_chi2_sf(upper, lam) > alpha:  # only through the approximation's own error
        return upper
    return float(brentq(lambda x: _weighted_chi2_sf(x, lam) - alpha, lower, upper, rtol=1e-10, maxiter=500))


def _joint_eigenvalues(joint: np.ndarray, slots: tuple[int, ...], block: int,
                       row_scale: np.ndarray | None = None) -> np.ndarray:
    """Eigenvalues of the slots' rows and columns of ``A V`` (real and >= 0: similar to a PSD matrix).

    ``row_scale`` (one value per slot) divides a slot's rows, i.e. its block of ``A``, as a
    statistic divided slot by slot by its factor does.
    """
    idx = np.concatenate([np.arange(j * block, (j + 1) * block) for j in slots])
    sub = joint[np.ix_(idx, idx)]
    if row_scale is not None:
        sub = np.repeat(row_scale, block)[:, None] * sub
    return np.clip(np.linalg.eigvals(sub).real, 0.0, None)


def _information_inflation(
    reference: GaussianMixtureParams, dfs: dict[str, int],
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Per part: the expected complete-data statistic under the mixture's true scatter, over its df.

    The inverse per-observation Fisher information ``V`` of the reference (inference's
    :func:`dfmr.information.expected_information`, seeded Monte Carlo) is n times the covariance
    of an estimate; e.g. ``E[T_mean] = w_k tr(S_k^-1 V_mu_k)``, which is ``d`` without overlap.
    Averaged over slots, as the empirical factors are pooled.

    Also returned, per part, the matrix ``A V`` whose eigenvalues ``lambda`` give the honest
    distribution of a machine's statistic summed over slots, ``sum_j lambda_j chi2_1``: ``A``
    is the block-diagonal quadratic form of the statistic (``w_k S_k^-1`` for the means,
    ``w_k D'(S_k^-1 x S_k^-1)D / 2`` for the covariances, ``diag(1/w)`` for the weights) and ``V``
    the joint covariance of the slots' estimates, so slots that err together (one misassigned
    point moves both means of an overlapping pair) give one large eigenvalue rather than two
    independent chi2 terms. Rows and columns are ordered slot by slot.
    """
    from .information import expected_information

    k, d = reference.n_components, reference.dim
    V = np.linalg.pinv(expected_information(reference, _INFORMATION_DRAWS, kind="opg", random_state=0))
    w = reference.weights
    rows, cols = np.triu_indices(d)
    q = rows.size
    dup = np.zeros((d * d, q))
    dup[rows * d + cols, np.arange(q)] = 1.0
    dup[cols * d + rows, np.arange(q)] = 1.0
    # Variance of each weight: w_1..w_{K-1} are free, w_K = 1 - their sum.
    ones = np.ones(k - 1)
    var_w = np.append(np.diag(V)[: k - 1], ones @ V[: k - 1, : k - 1] @ ones)
    out = {"mean": 0.0, "covariance": 0.0, "weight": 0.0}
    form_mu = np.zeros((k * d, k * d))
    form_sig = np.zeros((k * q, k * q))
    for j in range(k):
        prec = np.linalg.inv(reference.covariances[j])
        mu = slice(k - 1 + j * d, k - 1 + (j + 1) * d)
        sig = slice(k - 1 + k * d + j * q, k - 1 + k * d + (j + 1) * q)
        form_mu[j * d:(j + 1) * d, j * d:(j + 1) * d] = w[j] * prec
        form_sig[j * q:(j + 1) * q, j * q:(j + 1) * q] = 0.5 * w[j] * (dup.T @ np.kron(prec, prec) @ dup)
        out["mean"] += w[j] * np.trace(prec @ V[mu, mu]) / dfs["mean"]
        out["covariance"] += 0.5 * w[j] * np.trace(dup.T @ np.kron(prec, prec) @ dup @ V[sig, sig]) / dfs["covariance"]
        if k > 1:
            out["weight"] += var_w[j] / (w[j] * (1 - w[j]))
    mu_all = slice(k - 1, k - 1 + k * d)
    sig_all = slice(k - 1 + k * d, k - 1 + k * d + k * q)
    joint = {"mean": form_mu @ V[mu_all, mu_all], "covariance": form_sig @ V[sig_all, sig_all]}
    if k > 1:
        # All K weights from the K - 1 free ones (w_K = 1 - their sum).
        free_to_all = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])
        joint["weight"] = np.diag(1.0 / w) @ free_to_all @ V[: k - 1, : k - 1] @ free_to_all.T
    factors = {p: out[p] / k for p in dfs if dfs[p] > 0}
    return factors, {p: joint[p] for p in factors}


def _moment_centre(w: np.ndarray, mu: np.ndarray, cov: np.ndarray, use: np.ndarray,
                   fallback: GaussianMixtureParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot: mean weight, mean of means and mean covariance over the machines in ``use``."""
    k = w.shape[1]
    ref_w, ref_mu, ref_cov = fallback.weights.copy(), fallback.means.copy(), fallback.covariances.copy()
    for j in range(k):
        rows = use[:, j]
        if rows.any():
            ref_w[j] = w[rows, j].mean()
            ref_mu[j] = mu[rows, j].mean(axis=0)
            ref_cov[j] = cov[rows, j].mean(axis=0)
    return ref_w / ref_w.sum(), ref_mu, ref_cov


def _median_centre(w: np.ndarray, mu: np.ndarray, cov: np.ndarray, present: np.ndarray,
                   fallback: GaussianMixtureParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot: coordinate-wise medians (breakdown 1/2); a non-definite median covariance keeps the fallback."""
    k = w.shape[1]
    ref_w, ref_mu, ref_cov = fallback.weights.copy(), fallback.means.copy(), fallback.covariances.copy()
    for j in range(k):
        rows = present[:, j]
        if not rows.any():
            continue
        ref_w[j] = np.median(w[rows, j])
        ref_mu[j] = np.median(mu[rows, j], axis=0)
        med = np.median(cov[rows, j], axis=0)
        med = 0.5 * (med + med.T)
        if np.linalg.eigvalsh(med)[0] > 0:
            ref_cov[j] = med
    total = ref_w.sum()
    return (ref_w / total if total > 0 else fallback.weights.copy()), ref_mu, ref_cov


def _initial_reference(mixtures: list[GaussianMixtureParams], alive_idx: np.ndarray, k: int,
                       n_threads: int | None) -> tuple[GaussianMixtureParams, int | None, np.ndarray | None]:
    """The COAT centre among the machines with exactly K components (L2 distances), or MR of all."""
    full = [int(i) for i in alive_idx if mixtures[i].n_components == k]
    if len(full) >= 1:
        scaled, exponent = pairwise_l2_scaled([mixtures[i] for i in full], n_threads=n_threads)
        c = full[center_index(scaled)]
        return mixtures[c], c, np.ldexp(scaled, exponent)
    red = reduce_mixtures([mixtures[i] for i in alive_idx], k, n_threads=n_threads)
    return red.mixture, None, None


def robust_dfmr(
    mixtures: Sequence[GaussianMixtureParams],
    n_components: int,
    *,
    n_samples: Sequence[float] | np.ndarray | float | None = None,
    level: float = 0.001,
    max_components_factor: float = 4.0,
    tol: float = 1e-5,
    max_iter: int = 100,
    n_threads: int | None = None,
) -> RobustAggregationResult:
    """Screened DFMR: hygiene, alignment to a robust centre, calibrated per-component tests, then MR.

    See the module docstring for the method. ``dfmr.dfmr`` stays the paper's method; this is
    the aggregator for untrusted machines.

    Parameters
    ----------
    mixtures : sequence of GaussianMixtureParams
        The m local estimates. They may differ in dimension and number of components: those
        that do not fit are dropped and reported, never fatal.
    n_components : int
        K, the number of components of the aggregate.
    n_samples : array_like of shape (m,) or float, optional
        Sample size of every machine. ``None`` reads :attr:`GaussianMixtureParams.n_samples`
        (recorded by :func:`dfmr.fit_local`); when no estimate carries one, equal sizes are
        assumed and said so. Sizes calibrate the tests; a machine's claim can neither loosen
        its own test nor raise its weight above the median machine's.
    level : float, default 0.001
        Family-wise level of the per-component tests (Bonferroni over parts, machines, slots):
        the chance that an honest machine loses a component when the calibration holds.
    max_components_factor : float, default 4.0
        Estimates with more than ``max_components_factor * K`` components are dropped before
        any computation (their cost grows as ``K_i^2 d^3``).
    tol, max_iter : float, int
        Convergence control of the final reduction.
    n_threads : int, optional
        Threads for distances and reduction; ``None`` uses all.

    Returns
    -------
    RobustAggregationResult
        ``method="robust_dfmr"``; ``retained`` are the machines with at least one pooled
        component, ``center`` the COAT machine the alignment started from, ``screening`` every
        decision (:class:`Screening`).

    Raises
    ------
    ValueError
        If no estimate survives hygiene, or an argument is malformed.
    """
    mixtures = _check_inputs(mixtures, n_components)
    k = int(n_components)
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must lie in (0, 1), got {level!r}.")
    if not (np.isfinite(max_components_factor) and max_components_factor >= 1.0):
        raise ValueError(f"max_components_factor must be a finite number >= 1, got {max_components_factor!r}.")
    m = len(mixtures)
    alive, decisions, d = _hygiene(mixtures, k, max_components_factor)
    alive_idx = np.flatnonzero(alive)
    if alive_idx.size == 0:
        raise ValueError("no local estimate survives the dimension and size checks: " +
                         "; ".join(x.describe() for x in decisions))
    n, n_known, notes = _sample_sizes(mixtures, n_samples)
    n[~alive] = np.nan
    med_n = float(np.median(n[alive]))
    n_test = np.where(alive, np.maximum(n, med_n), np.nan)  # a small claim cannot loosen a test
    pool_weight = np.where(alive, np.minimum(n, med_n), 0.0)  # nor a large one buy weight

    reference, centre, distances = _initial_reference(mixtures, alive_idx, k, n_threads)
    dfs = {"mean": d, "covariance": d * (d + 1) // 2, "weight": 1 if k > 1 else 0}
    parts = [p for p in PARTS if dfs[p] > 0]
    m_alive = alive_idx.size
    n_tests = len(parts) * m_alive * k
    cut_raw = {p: float(chi2.isf(level / n_tests, dfs[p])) for p in parts}
    floors = {p: 1.0 for p in parts} if n_known else None
    use_information = n_known and (k - 1) + k * d + k * d * (d + 1) // 2 <= _INFORMATION_MAX_PARAMS
    majority = m_alive // 2 + 1
    joint: dict[str, np.ndarray] | None = None

    alignment = np.full((m, k), -1, dtype=np.intp)
    ref_w, ref_mu, ref_cov = reference.weights, reference.means, reference.covariances
    for round_ in range(_ALIGNMENT_ROUNDS):
        ref = GaussianMixtureParams._from_core(ref_w, ref_mu, ref_cov)
        if round_ == 1 and use_information:
            # After one round the reference is the mean of components that passed: a robust
            # truth at which the information of the mixture says how far honest estimates scatter.
            info, joint = _information_inflation(ref, dfs)
            floors = {p: max(1.0, info[p]) for p in parts}
        cap = _alignment_cap(ref)
        for i in alive_idx:
            alignment[i] = _align(mixtures[i], ref, cap)
        w, mu, cov, logdet = _stack(mixtures, alignment, d)
        present = ~np.isnan(w)
        # Median centre, then the mean of the components that pass against it.
        ref_w, ref_mu, ref_cov = _median_centre(w, mu, cov, present, ref)
        stats, passed, inflation = _test(w, mu, cov, logdet, n_test, ref_w, ref_mu, ref_cov, dfs, parts,
                                         cut_raw, floors, present, joint)
        median_ref = GaussianMixtureParams._from_core(ref_w, ref_mu, ref_cov)
        ref_w, ref_mu, ref_cov = _moment_centre(w, mu, cov, passed, median_ref)
    stats, passed, inflation = _test(w, mu, cov, logdet, n_test, ref_w, ref_mu, ref_cov, dfs, parts, cut_raw,
                                     floors, present, joint)
    reference = GaussianMixtureParams._from_core(ref_w, ref_mu, ref_cov)

    # Components the alignment left out.
    for i in alive_idx:
        matched = set(alignment[i][alignment[i] >= 0].tolist())
        for j in range(mixtures[i].n_components):
            if j not in matched:
                decisions.append(Decision(int(i), j, None, "unmatched", float(mixtures[i].weights[j]), 0.0))
    # Per-component decisions (the first failing part is the reason).
    kept = passed.copy()
    for i in alive_idx:
        for j in range(k):
            if not present[i, j] or passed[i, j]:
                continue
            for p in parts:
                if stats[p][i, j] > cut_raw[p]:
                    decisions.append(Decision(int(i), int(alignment[i, j]), j, p, float(stats[p][i, j]), cut_raw[p]))
                    break
    # Machine-level tests per part: small deviations spread over every component (a shift of
    # all means) add up. Means and covariances sum over the surviving slots. Weights sum to one,
    # so a skew of one is a skew of all: the weights of every aligned slot, renormalised, give
    # the multinomial likelihood-ratio statistic (K_i - 1 df; the per-slot binomial ones are
    # dependent), and failing it costs the machine all its components.
    sums: dict[str, dict[int, tuple[float, int, tuple[int, ...]]]] = {p: {} for p in parts}
    weight_scale: dict[int, float] = {}
    for i in alive_idx:
        cols = np.flatnonzero(kept[i])
        if cols.size == 0:
            continue
        for p in parts:
            if p != "weight":
                sums[p][int(i)] = (float(stats[p][i, cols].sum()), cols.size * dfs[p], tuple(cols.tolist()))
        slots = np.flatnonzero(present[i])
        if "weight" in parts and slots.size > 1:
            wi = w[i, slots] / w[i, slots].sum()
            w0 = ref_w[slots] / ref_w[slots].sum()
            lr = 2.0 * n_test[i] * float(np.sum(xlogy(wi, wi) - xlogy(wi, w0)))
            # One factor for the multinomial statistic: the slots' factors, weighted as its terms.
            scale = float(np.sum(ref_w[slots] * inflation["weight"][slots]) / np.sum(ref_w[slots]))
            sums["weight"][int(i)] = (max(lr, 0.0) / scale, slots.size - 1, tuple(slots.tolist()))
            weight_scale[int(i)] = scale
    machine_stat = np.full(m, np.nan)
    for i in alive_idx:
        if any(int(i) in sums[p] for p in parts):
            machine_stat[i] = sum(sums[p][int(i)][0] for p in parts if int(i) in sums[p])
    n_machine_tests = len(parts)
    alpha_machine = level / (m_alive * n_machine_tests)
    for p in parts:
        if not sums[p]:
            continue
        # Slots of an overlapping mixture err together (one misassigned point moves both means),
        # so a sum over slots is wider than chi2 with the summed df. With the information matrix
        # at hand, the honest law of the sum is sum_j lambda_j chi2_1 (eigenvalues of the joint
        # A V of the machine's slots, over the part's inflation); otherwise chi2 with the summed
        # df. Either way a robust factor from the machines' own scatter may widen it further.
        laws: dict[tuple, tuple[float, float]] = {}
        keys = {}
        for i, (_, df_i, slots_i) in sums[p].items():
            key = (slots_i, weight_scale.get(i)) if p == "weight" else slots_i
            keys[i] = key
            if key in laws:
                continue
            if joint is None:
                laws[key] = (float(chi2.ppf(_CALIBRATION_QUANTILE, df_i)), float(chi2.isf(alpha_machine, df_i)))
            else:
                block = 1 if p == "weight" else dfs[p]
                # The statistic divides each slot's terms by that slot's factor: scale A's rows.
                factor = np.full(len(slots_i), weight_scale[i]) if p == "weight" else inflation[p][list(slots_i)]
                lam = _joint_eigenvalues(joint[p], slots_i, block, 1.0 / factor)
                laws[key] = (_weighted_chi2_isf(1.0 - _CALIBRATION_QUANTILE, lam),
                             _weighted_chi2_isf(alpha_machine, lam))
        vals = np.array([v / laws[keys[i]][0] for i, (v, _, _) in sums[p].items()])
        s_rel = max(1.0, float(np.quantile(vals, _CALIBRATION_QUANTILE)))
        for i, (value, _, _) in sums[p].items():
            cut_i = s_rel * laws[keys[i]][1]
            if kept[i].any() and value > cut_i:
                kept[i] = False
                decisions.append(Decision(i, None, None, f"machine {p}", value, cut_i))
    # Every slot keeps a majority of the machines: restore the least deviant if the tests took more.
    relaxed = []
    total = sum(stats[p] for p in parts)
    for j in range(k):
        if kept[:, j].sum() >= majority:
            continue
        rows = np.flatnonzero(present[:, j])
        order = rows[np.argsort(total[rows, j], kind="stable")]
        restore = order[: min(majority, rows.size)]
        kept[restore, j] = True
        relaxed.append(j)
    if relaxed:
        notes.append(
            f"Slot(s) {', '.join(map(str, relaxed))}: the tests rejected a majority of machines; "
            "the least deviant majority was kept (the calibration may not hold, e.g. a wrong K)."
        )

    mixture, red = _aggregate(mixtures, alignment, kept, pool_weight, k, tol, max_iter, n_threads, majority, notes)
    retained = np.flatnonzero(kept.any(axis=1))
    infl = {p: inflation[p] for p in parts}
    screening = Screening(
        decisions=tuple(decisions), reference=reference, alignment=alignment, kept=kept,
        statistics={p: stats[p] for p in parts}, degrees_of_freedom={p: dfs[p] for p in parts}, inflation=infl,
        cutoffs=cut_raw, machine_statistic=machine_stat, n_samples=np.where(alive, n, np.nan),
        n_samples_known=n_known, level=float(level), relaxed_slots=tuple(relaxed), notes=tuple(notes),
    )
    return RobustAggregationResult(
        mixture=mixture, method="robust_dfmr", n_machines=m, retained=retained, center=centre,
        distances=None, objective=None if red is None else red.objective,
        n_iter=0 if red is None else red.n_iter, converged=True if red is None else red.converged,
        reduction=red, n_components_requested=k, screening=screening,
    )


def _test(w, mu, cov, logdet, n_test, ref_w, ref_mu, ref_cov, dfs, parts, cut_raw, floors, present, joint):
    """Inflation-corrected statistics, the pass mask (every part below its cut-off) and the factors.

    The factor of a part is an array over slots: slots differ in how much they overlap the
    others, so a factor pooled over slots under-corrects the most overlapped slot. With the
    information matrix (``joint``, see :func:`_information_inflation`) the honest law of slot
    j's statistic is ``sum_l lambda_jl chi2_1`` (eigenvalues of slot j's block of ``A V``:
    unequal when the component errs more in the direction of its neighbour); the factor maps
    that law's tail at the test's level onto the chi2 cut-off, times the machines' excess
    scatter over it (a lower quantile, at least 1). Without it, the factor is the larger of
    the part's factor pooled over slots (steady) and the slot's own (a lower quantile of its m
    statistics).
    """
    raw = _raw_statistics(w, mu, cov, logdet, n_test, ref_w, ref_mu, ref_cov)
    k = w.shape[1]
    stats, inflation = {}, {}
    passed = present.copy()
    if joint is None:
        # The sum of the parts has many more df than a 1-df part, so its quantile is far steadier
        # with few machines; it is a floor under every part's own factor.
        low = None if floors is None else min(floors.values())
        pooled = _inflation(sum(raw[p] for p in parts), sum(dfs[p] for p in parts), low)
    if joint is not None:
        lams = {}
        for p in parts:
            block = 1 if p == "weight" else dfs[p]
            for j in range(k):
                lam = _joint_eigenvalues(joint[p], (j,), block)
                # The binomial statistic of one slot: 1 / (w (1 - w)) where the form has 1 / w.
                lams[p, j] = lam / (1.0 - ref_w[j]) if p == "weight" else lam
        # The machines' excess scatter over the information's law, from the sum of the parts
        # (many more df than a 1-df part: a far steadier lower quantile with few machines).
        lower = np.array([_weighted_chi2_isf(1.0 - _CALIBRATION_QUANTILE,
                                             np.concatenate([lams[p, j] for p in parts])) for j in range(k)])
        ratio = sum(raw[p] for p in parts) / lower[None, :]
        ratio = ratio[np.isfinite(ratio)]
        excess = max(1.0, float(np.quantile(ratio, _CALIBRATION_QUANTILE))) if ratio.size else 1.0
    for p in parts:
        if joint is None:
            part = max(_inflation(raw[p], dfs[p], None if floors is None else floors[p]), pooled)
            # A slot's own lower quantile of m values is steady only with a few df; for the 1-df
            # weights an attacker holding a slot's upper half could move it several-fold.
            factor = np.full(k, part) if dfs[p] < _SLOT_FACTOR_MIN_DF else np.array(
                [max(part, _inflation(raw[p][:, j], dfs[p], None)) for j in range(k)])
        else:
            alpha = float(chi2.sf(cut_raw[p], dfs[p]))
            tail = np.array([_weighted_chi2_isf(alpha, lams[p, j]) for j in range(k)])
            factor = excess * tail / cut_raw[p]
        inflation[p] = factor
        stats[p] = raw[p] / factor[None, :]
        passed &= ~(stats[p] > cut_raw[p])
    return stats, passed, inflation


def _aggregate(mixtures, alignment, kept, pool_weight, k, tol, max_iter, n_threads, majority, notes):
    """MR of the kept components (slot weights unbiased by drops), or their slot-wise moment match."""
    m = len(mixtures)
    d = mixtures[int(np.flatnonzero(kept.any(axis=1))[0])].dim
    comp_w, comp_mu, comp_cov, owner, slot_of = [], [], [], [], []
    for j in range(k):
        rows = np.flatnonzero(kept[:, j])
        if rows.size == 0:
            continue
        v = pool_weight[rows] / pool_weight[rows].sum()
        for i, vi in zip(rows, v):
            c = alignment[i, j]
            comp_w.append(vi * mixtures[i].weights[c])
            comp_mu.append(mixtures[i].means[c])
            comp_cov.append(mixtures[i].covariances[c])
            owner.append(i)
            slot_of.append(j)
    comp_w = np.asarray(comp_w)
    comp_w = comp_w / comp_w.sum()
    comp_mu = np.asarray(comp_mu).reshape(-1, d)
    comp_cov = np.asarray(comp_cov).reshape(-1, d, d)
    owner = np.asarray(owner)
    slot_of = np.asarray(slot_of)
    # Slot-wise moment match: the start of MR, and the answer when MR would break the majority rule.
    slots = np.unique(slot_of)
    mm_w = np.empty(slots.size)
    mm_mu = np.empty((slots.size, d))
    mm_cov = np.empty((slots.size, d, d))
    for s, j in enumerate(slots):
        sel = slot_of == j
        p = comp_w[sel]
        mm_w[s] = p.sum()
        mm_mu[s] = p @ comp_mu[sel] / p.sum()
        dev = comp_mu[sel] - mm_mu[s]
        mm_cov[s] = (np.einsum("n,nab->ab", p, comp_cov[sel]) + np.einsum("n,na,nb->ab", p, dev, dev)) / p.sum()
    start = GaussianMixtureParams._from_core(mm_w, mm_mu, mm_cov)
    pooled = GaussianMixtureParams._from_core(comp_w, comp_mu, comp_cov)
    red = reduce(pooled, k, [start], tol=tol, max_iter=max_iter, n_threads=n_threads)
    contributors = [np.unique(owner[red.assignment[:, c] > 0]).size for c in range(red.mixture.n_components)]
    if red.mixture.n_components == start.n_components and min(contributors) >= min(majority, m):
        mixture = red.mixture
    else:
        notes.append(
            "The reduction would have built a component from fewer than a majority of machines; "
            "the slot-wise moment match of the kept components is returned instead."
        )
        mixture, red = start, None
    if mixture.n_components < k:
        warnings.warn(
            f"the aggregate has {mixture.n_components} components, fewer than the {k} requested.",
            RuntimeWarning, stacklevel=3,
        )
    return mixture, red


def screening_summary_lines(result: AggregationResult, width: int) -> list[str]:
    """The 'Screening decisions' block of :func:`dfmr.summary.aggregation_summary` for robust_dfmr."""
    scr = getattr(result, "screening", None)
    if scr is None:
        return []
    lines = ["", "Screening decisions".center(width).rstrip(), "=" * width]
    size = "known" if scr.n_samples_known else "unknown (equal sizes assumed)"
    cut = ", ".join(f"{p} {scr.cutoffs[p]:.4g} (df {scr.degrees_of_freedom[p]})" for p in scr.cutoffs)
    infl = ", ".join(f"{p} {np.min(v):.3g}" + ("" if np.ptp(v) == 0 else f"-{np.max(v):.3g}")
                     for p, v in scr.inflation.items())
    for text in (f"Sample sizes: {size}; family-wise level {scr.level:g}",
                 f"Per-component chi2 cut-offs: {cut}", f"Inflation factor per part (over slots): {infl}"):
        lines += textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)
    lines.append("-" * width)
    header = f"{'machine':>7} {'comp':>4} {'slot':>4}  {'rule':<12} {'statistic':>11} {'cut-off':>11}"
    lines.append(header)
    for x in scr.decisions:
        comp = "all" if x.component is None else str(x.component)
        slot = "-" if x.slot is None else str(x.slot)
        stat = f"{x.statistic:.4g}"
        cut_s = "-" if not math.isfinite(x.cutoff) else f"{x.cutoff:.4g}"
        lines.append(f"{x.machine:>7} {comp:>4} {slot:>4}  {x.rule:<12} {stat:>11} {cut_s:>11}")
    if not scr.decisions:
        lines.append("(no machine or component dropped)")
    lines.append("=" * width)
    rules = (
        "Rules: dimension (not the majority d), n_components (cost K_i^2/K^2 above the budget), duplicate "
        "(copy of the machine in 'statistic'), unmatched (weight of a component no slot took), mean / "
        "covariance / weight (chi2 statistic of the aligned component), machine mean / covariance / weight "
        "(the part over all its kept components)."
    )
    for text in (rules, *scr.notes):
        lines += textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)
    return lines
