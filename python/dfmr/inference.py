"""Standard errors, confidence intervals and per-machine tests for an aggregated mixture.

Two ways to get the covariance of the aggregate's parameters (named as in
:mod:`dfmr.information`: all K weights, means ``mu[k][j]``, covariance entries
``Sigma[k][i,j]``, ``i <= j``):

``"information"``
    The distributed observed information. Every *retained* machine evaluates the observed
    information of its own data at the aggregate (``-sum_i Hessian log f(x_i)``, Louis' form;
    ``kind="opg"`` uses the outer product of scores instead) and sends that ``p x p`` matrix and
    its ``n``; the server adds them up and inverts. A filtered (possibly Byzantine) machine
    never enters. The covariance of ``w_K = 1 - sum_{k<K} w_k`` follows by the (exact, linear)
    delta method, and each covariance entry is one parameter (the symmetric parametrisation).
    *Valid* when the aggregate behaves like the MLE of the retained data: MR over all machines
    (asymptotically the global MLE), with honest machines (measured coverage 0.94-0.96, widths
    within 5% of the estimates' real spread). *Not valid* for DFMR: its filter drops honest
    machines depending on the data and ties the estimate to the centre machine's noise, so
    its estimates vary 1.3-1.4x as much as MR's, which the retained machines' information does
    not see (measured coverage 0.91-0.92 at the 95% level, 0.4 N(-2, 1) + 0.6 N(2, 1.5), 10
    machines of 1,000 points; see vignettes/inference.md).

``"jackknife"``
    The machine-level jackknife: the whole aggregator (filter included) is rerun on each of the
    m leave-one-machine-out sets of local estimates, each result is aligned to the aggregate,
    and ``V = (m - 1) / m sum_i (theta_(i) - mean)(theta_(i) - mean)^T``; intervals use Student's
    t with ``m - 1`` degrees of freedom. When the aggregator pooled the machines by unequal
    sizes ``n_i`` (the server's, or capped claims), the delete-a-group jackknife for unequal
    groups (Busing, Meijer & van der Leeden 1999) replaces it: pseudo-values
    ``h_i theta - (h_i - 1) theta_(i)``, ``h_i = N / n_i``, each leave-one-out aggregate pooled
    with the remaining sizes (equal sizes give the formula above). For :func:`dfmr.robust_dfmr`
    the leave-one-out aggregates keep the full fit's screening decisions and pool the other
    machines' kept components again (:func:`dfmr.robust.leave_out`; ``rescreen=True`` reruns
    the screening). It needs no data, only the
    local estimates, and accounts for what the aggregator really does. *Valid* for DFMR (with or
    without Byzantine machines that the filter removes: measured coverage 0.94-0.97) and for MR;
    it needs enough machines (m >= 10 or so), and is the default for every aggregator except ``"mr"``. Its width varies
    between data sets more than the information's (leaving one machine out can change what the
    filter keeps); its median width is 1.1-1.25x the ideal normal interval's.

``"bootstrap"``
    The machine-level parametric bootstrap: each retained machine's estimate is redrawn from its
    normal approximation ``N(theta, I_1^-1 / n_i)`` at the aggregate (``I_1`` the per-observation
    information: the retained machines' summed information over their ``n``, or Monte Carlo from
    the aggregate), the filtered machines' estimates are kept as they are, and the whole
    aggregator is rerun ``n_boot`` times; normal quantiles. It needs the machines' sample sizes.
    Measured on the DFMR 1-D set-up above (``tests/benchmarks/bench_coverage.py``): coverage as
    the jackknife's with widths close to the ideal and far less variable between data sets.

Per-machine diagnostics (:class:`MachineTests`): each local estimate is aligned to the
aggregate (the reduction's transport plan when the machine was retained, else minimum KL
cost) and compared with it by the Wald statistic
``W_i = (theta_i - theta) ' I_1 (theta_i - theta) / c_i``, ``I_1`` the per-observation
information at the aggregate and ``c_i = 1/n_i - 1/N_R`` (machine retained: it is part of the
aggregate) or ``1/n_i + 1/N_R`` (not retained), ``N_R`` the retained machines' total ``n``.
Under "this machine is honest", ``W_i`` is approximately chi-squared with ``p`` degrees of
freedom; the p-values are adjusted for the m tests by
:func:`statsmodels.stats.multitest.multipletests` (Holm by default).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

from . import information as info
from .aggregate import AggregationResult
from .covariance import get_model
from .params import GaussianMixtureParams

__all__ = ["METHODS", "SCALES", "MachineTests", "MixtureInferenceResult", "default_method", "infer", "machine_tests"]

METHODS = ("information", "jackknife", "bootstrap")
SCALES = ("natural", "link")


def default_method(aggregator: str) -> str:
    """The interval method that covers for an aggregator: ``"information"`` for MR, else ``"jackknife"``.

    Parameters
    ----------
    aggregator : str
        ``"dfmr"``, ``"mr"``, ``"coat"``, ``"tkb"``, ...

    Returns
    -------
    str
    """
    return "information" if aggregator == "mr" else "jackknife"


@dataclass(frozen=True)
class MachineTests:
    """Wald tests of "machine i's estimate is consistent with the aggregate", one per machine.

    Attributes
    ----------
    statistic : ndarray of shape (m,)
        ``W_i`` (``inf`` for an estimate whose number of components differs from the aggregate's).
    df : int
        Degrees of freedom ``p`` of the chi-squared reference.
    pvalues : ndarray of shape (m,)
        Unadjusted p-values.
    pvalues_adjusted : ndarray of shape (m,)
        Adjusted for the m tests.
    reject : ndarray of bool, shape (m,)
        ``pvalues_adjusted < alpha``.
    method : str
        The :func:`~statsmodels.stats.multitest.multipletests` method (``"holm"`` by default).
    alpha : float
        Family-wise level of ``reject``.
    n_samples : ndarray of int, shape (m,)
        The ``n_i`` used.
    retained : ndarray of bool, shape (m,)
        Whether the machine entered the aggregate.
    """

    statistic: np.ndarray
    df: int
    pvalues: np.ndarray
    pvalues_adjusted: np.ndarray
    reject: np.ndarray
    method: str
    alpha: float
    n_samples: np.ndarray
    retained: np.ndarray

    def frame(self) -> pd.DataFrame:
        """The tests as a table, one row per machine."""
        return pd.DataFrame(
            {
                "retained": self.retained, "n": self.n_samples, "wald": self.statistic, "pvalue": self.pvalues,
                "pvalue_adj": self.pvalues_adjusted, "reject": self.reject,
            },
            index=pd.RangeIndex(len(self.statistic), name="machine"),
        )


def _as_n_samples(n_samples: int | ArrayLike, m: int) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(n_samples), (m,)).astype(np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 1) or np.any(arr != np.round(arr)):
        raise ValueError(f"n_samples must be positive integers, one per machine or one for all; got {n_samples!r}.")
    return arr.astype(np.int64)


def machine_tests(
    result: AggregationResult,
    mixtures: Sequence[GaussianMixtureParams],
    information_per_obs: ArrayLike,
    n_samples: int | ArrayLike,
    *,
    method: str = "holm",
    alpha: float = 0.05,
) -> MachineTests:
    """Per-machine Wald tests against the aggregate (see the module docstring).

    Parameters
    ----------
    result : AggregationResult
        The aggregation of ``mixtures``.
    mixtures : sequence of GaussianMixtureParams
        The m local estimates, in machine order.
    information_per_obs : array_like of shape (p, p)
        Per-observation information at ``result.mixture`` (e.g. the retained machines' summed
        information divided by their total ``n``, or :func:`dfmr.information.expected_information`).
    n_samples : int or array_like of int
        Each machine's number of observations (one value: all equal).
    method : str, default "holm"
        Any method of :func:`statsmodels.stats.multitest.multipletests`.
    alpha : float, default 0.05
        Family-wise error rate for ``reject``.

    Returns
    -------
    MachineTests
    """
    mixtures = list(mixtures)
    m = len(mixtures)
    if m != result.n_machines:
        raise ValueError(f"the aggregation received {result.n_machines} estimates, but {m} mixtures were given.")
    n = _as_n_samples(n_samples, m)
    ref = result.mixture
    theta = info.to_vector(ref)
    fisher = np.asarray(information_per_obs, dtype=np.float64)
    if fisher.shape != (theta.size, theta.size):
        raise ValueError(f"information_per_obs must have shape ({theta.size}, {theta.size}), got {fisher.shape}.")
    kept = result.kept
    total = float(n[kept].sum())
    stat = np.empty(m)
    for i, local in enumerate(mixtures):
        aligned = info.align_to(local, ref, info.plan_rows(result, mixtures, i))
        if aligned is None:
            stat[i] = np.inf
            continue
        delta = info.to_vector(aligned) - theta
        scale = 1.0 / n[i] + (-1.0 if kept[i] else 1.0) / total
        quad = float(delta @ fisher @ delta)
        # scale <= 0 only for the sole retained machine (COAT's centre), whose estimate is the aggregate.
        stat[i] = quad / scale if scale > 0 else 0.0
    # An honest estimate of the aggregate's covariance model errs only along the model's free
    # parameters: chi2 with their number of df (p for full covariances).
    df = get_model(ref.covariance_type, ref.dim).n_parameters(ref.n_components, ref.dim)
    pvalues = stats.chi2.sf(stat, df)
    reject, adjusted, _, _ = multipletests(pvalues, alpha=alpha, method=method)
    return MachineTests(
        statistic=stat, df=int(df), pvalues=pvalues, pvalues_adjusted=adjusted, reject=reject,
        method=method, alpha=float(alpha), n_samples=n, retained=kept,
    )


class MixtureInferenceResult:
    """Estimates, standard errors and intervals of an aggregated mixture, in statsmodels' conventions.

    Built by :func:`infer` (or ``DistributedGaussianMixture.infer``). The reported parameters are
    all K weights, the means and the upper-triangle covariance entries (names as in
    :func:`dfmr.information.full_param_names`); their covariance ``A V A'`` comes from the free
    parametrisation's ``V`` by the delta method, ``A = dfmr.information.full_jacobian(K, d)``.

    Attributes
    ----------
    mixture : GaussianMixtureParams
        The aggregate.
    method : str
        ``"information"``, ``"jackknife"`` or ``"bootstrap"``.
    aggregator : str
        The aggregation method.
    use_t : bool
        Intervals and p-values from Student's t with ``df_resid`` degrees of freedom (jackknife)
        rather than the normal distribution.
    df_resid : float
        ``m - 1`` for the jackknife, ``inf`` otherwise.
    nobs : int or None
        Total observations behind the estimate (retained machines), when known.
    n_machines : int
        Machines that sent an estimate.
    retained : ndarray of int
        Machines whose estimates (and information) entered.
    kind : str or None
        ``"observed"`` or ``"opg"`` for the information method.
    machine_tests : MachineTests or None
        Per-machine Wald diagnostics (None when the machines' sample sizes are unknown).
    jackknife_failed : ndarray of int
        Leave-one-out sets (jackknife) or bootstrap replicates whose aggregate had fewer
        components; they are left out.
    """

    def __init__(
        self,
        mixture: GaussianMixtureParams,
        cov_free: np.ndarray,
        *,
        method: str,
        aggregator: str,
        n_machines: int,
        retained: np.ndarray,
        nobs: int | None = None,
        df_resid: float = np.inf,
        kind: str | None = None,
        machine_tests: MachineTests | None = None,
        jackknife_failed: np.ndarray | None = None,
    ) -> None:
        k, d = mixture.n_components, mixture.dim
        self.mixture = mixture
        self.method = method
        self.aggregator = aggregator
        self.n_machines = int(n_machines)
        self.retained = np.asarray(retained, dtype=np.intp)
        self.nobs = nobs
        self.df_resid = float(df_resid)
        self.use_t = bool(np.isfinite(self.df_resid))
        self.kind = kind
        self.machine_tests = machine_tests
        self.jackknife_failed = np.zeros(0, np.intp) if jackknife_failed is None else jackknife_failed
        self.param_names = info.full_param_names(k, d)
        a = info.full_jacobian(k, d)
        cov = a @ cov_free @ a.T
        self._cov = 0.5 * (cov + cov.T)  # exactly symmetric, as a covariance matrix is
        self._params = info.to_full_vector(mixture)
        # A weight or a variance is positive by construction: a test of "= 0" says nothing there.
        rows, cols = np.triu_indices(d)
        diag = np.tile(rows == cols, k)
        self._testable = np.concatenate([np.zeros(k, bool), np.ones(k * d, bool), ~diag])

    # ---------------------------------------------------------------------- statsmodels protocol

    @property
    def params(self) -> pd.Series:
        """The estimate, as a named vector."""
        return pd.Series(self._params, index=self.param_names, name="params")

    @property
    def bse(self) -> pd.Series:
        """Standard errors."""
        return pd.Series(np.sqrt(np.clip(np.diag(self._cov), 0.0, None)), index=self.param_names, name="bse")

    def cov_params(self) -> pd.DataFrame:
        """Covariance matrix of the estimate (singular along the weights: they sum to one)."""
        return pd.DataFrame(self._cov, index=self.param_names, columns=self.param_names)

    def _quantile(self, alpha: float) -> float:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}.")
        dist = stats.t(self.df_resid) if self.use_t else stats.norm
        return float(dist.ppf(1.0 - alpha / 2.0))

    def conf_int(self, alpha: float = 0.05, scale: str = "natural") -> pd.DataFrame:
        """Confidence intervals of level ``1 - alpha``.

        Parameters
        ----------
        alpha : float, default 0.05
        scale : {"natural", "link"}, default "natural"
            ``"natural"``: ``params -/+ q * bse`` for every parameter. ``"link"``: the weights'
            intervals are formed on the logit scale and the variances' (diagonal covariance
            entries) on the log scale, with the delta-method standard errors
            ``bse / (w (1 - w))`` and ``bse / sigma^2``, and transformed back, so that they stay
            inside (0, 1) and (0, inf); means and off-diagonal entries as ``"natural"``. A
            parameter with a zero standard error gets the point interval.

        Returns
        -------
        pandas.DataFrame
            Columns ``lower`` and ``upper``, one row per parameter.
        """
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(repr, SCALES))}; got {scale!r}.")
        q, est, se = self._quantile(alpha), self._params, self.bse.to_numpy()
        lower, upper = est - q * se, est + q * se
        if scale == "link":
            weight = np.arange(est.size) < self.mixture.n_components
            variance = ~(self._testable | weight)
            for mask, link, inverse, slope in (
                (weight, special.logit, special.expit, lambda t: t * (1.0 - t)),
                (variance, np.log, np.exp, lambda t: t),
            ):
                idx = np.flatnonzero(mask)
                t, spread = est[idx], se[idx] > 0
                half = np.zeros_like(t)
                half[spread] = q * se[idx][spread] / slope(t[spread])
                with np.errstate(divide="ignore"):
                    eta = link(t)
                lower[idx] = np.where(spread, inverse(eta - half), t)
                upper[idx] = np.where(spread, inverse(eta + half), t)
        return pd.DataFrame({"lower": lower, "upper": upper}, index=self.param_names)

    @property
    def tvalues(self) -> pd.Series:
        """``params / bse`` for means and off-diagonal covariances; NaN for weights and variances."""
        bse = self.bse.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(self._testable, self._params / bse, np.nan)
        return pd.Series(t, index=self.param_names, name="tvalues")

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of "parameter = 0" where that is meaningful (see :attr:`tvalues`)."""
        dist = stats.t(self.df_resid) if self.use_t else stats.norm
        return pd.Series(2.0 * dist.sf(np.abs(self.tvalues.to_numpy())), index=self.param_names, name="pvalues")

    # ---------------------------------------------------------------------- shaped like the estimate

    def _shaped(self, values: np.ndarray) -> dict[str, np.ndarray]:
        k, d = self.mixture.n_components, self.mixture.dim
        rows, cols = np.triu_indices(d)
        cov = np.zeros((k, d, d))
        vech = values[k + k * d:].reshape(k, rows.size)
        cov[:, rows, cols] = vech
        cov[:, cols, rows] = vech
        return {"weights": values[:k].copy(), "means": values[k: k + k * d].reshape(k, d), "covariances": cov}

    def standard_errors(self) -> dict[str, np.ndarray]:
        """Standard errors shaped like the estimate.

        Returns
        -------
        dict
            ``weights`` (K,), ``means`` (K, d), ``covariances`` (K, d, d), components in the
            aggregate's order.
        """
        return self._shaped(self.bse.to_numpy())

    def confidence_intervals(
        self, level: float = 0.95, scale: str = "natural"
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Intervals shaped like the estimate: ``{"weights"|"means"|"covariances": (lower, upper)}``.

        Parameters
        ----------
        level : float, default 0.95
            Coverage in (0, 1).
        scale : {"natural", "link"}, default "natural"
            See :meth:`conf_int`; ``"link"`` keeps weights in (0, 1) and variances positive.

        Returns
        -------
        dict
        """
        ci = self.conf_int(1.0 - level, scale)
        lower, upper = self._shaped(ci["lower"].to_numpy()), self._shaped(ci["upper"].to_numpy())
        return {key: (lower[key], upper[key]) for key in lower}

    def summary(self, alpha: float = 0.05, covariances: bool = False, aggregation: AggregationResult | None = None):
        """The report, built with statsmodels' summary tables (text; also ``as_html()``, ``as_latex()``).

        Parameters
        ----------
        alpha : float, default 0.05
            Intervals of level ``1 - alpha``.
        covariances : bool, default False
            Also list the covariance entries.
        aggregation : AggregationResult, optional
            Adds the aggregation's settings and per-machine table.

        Returns
        -------
        dfmr.summary.Report
        """
        from .summary import inference_summary

        return inference_summary(self, aggregation, alpha=alpha, covariances=covariances)

    def __repr__(self) -> str:
        return (
            f"MixtureInferenceResult(method={self.method!r}, aggregator={self.aggregator!r}, "
            f"n_params={len(self.param_names)}, retained={self.retained.size} of {self.n_machines})"
        )


# ------------------------------------------------------------------------------ the two methods


def _rerun(result: AggregationResult, n_components: int) -> Callable[[list[GaussianMixtureParams]], Any]:
    """The aggregator of ``result`` with its settings, for leave-one-out sets."""
    from . import aggregate
    from .filtering import default_threshold

    method = result.method
    # ``n_samples``: the leave-one-out sizes when the aggregate was pooled by size (else the
    # estimates' claims, as the aggregator read them).
    if method == "dfmr":
        # The default kappa = m ** 0.1 depends on m: a leave-one-out set gets its own default.
        fixed = result.filter.threshold != default_threshold(result.n_machines)
        threshold = result.filter.threshold if fixed else None
        return lambda mixes, n_samples=None: aggregate.dfmr(mixes, n_components, threshold, n_threads=1,
                                                            n_samples=n_samples)
    if method == "mr":
        return lambda mixes, n_samples=None: aggregate.mr(mixes, n_components, n_threads=1, n_samples=n_samples)
    if method == "tkb":
        return lambda mixes, n_samples=None: aggregate.tkb(mixes, n_components, result.alpha, n_threads=1,
                                                           n_samples=n_samples)
    if method == "coat":
        return lambda mixes, n_samples=None: aggregate.coat(mixes, n_threads=1, n_samples=n_samples)
    raise ValueError(f"no known way to rerun aggregator {method!r}: pass aggregate=.")


def _pooled_sizes(result: AggregationResult) -> np.ndarray | None:
    """The sizes the aggregator pooled the machines with (the server's, or capped claims), or None."""
    if result.n_samples is None:
        return None
    sizes = np.asarray(result.n_samples, dtype=np.float64)
    return None if np.ptp(sizes[sizes > 0]) == 0 else sizes


def _takes_sizes(aggregate: Callable[..., Any]) -> bool:
    try:
        return "n_samples" in inspect.signature(aggregate).parameters
    except (TypeError, ValueError):
        return False


def _jackknife(
    mixtures: list[GaussianMixtureParams],
    reference: GaussianMixtureParams,
    aggregate: Callable[..., Any] | None,
    sizes: np.ndarray | None = None,
    replicate: Callable[[int], GaussianMixtureParams] | None = None,
) -> tuple[np.ndarray, int, np.ndarray]:
    """Jackknife covariance of the free parameters, number of replicates used, failed replicates.

    Equal sizes (``sizes=None``): the delete-one-machine jackknife,
    ``V = (r - 1) / r sum_i (theta_(i) - mean)(theta_(i) - mean)'``. Unequal sizes ``n_i`` (the
    weights the aggregator pooled the machines with): the delete-a-group jackknife for unequal
    groups (Busing, Meijer & van der Leeden 1999). With ``h_i = N / n_i`` the pseudo-values
    ``p_i = h_i theta - (h_i - 1) theta_(i)`` have the size-weighted mean
    ``theta_J = sum n_i p_i / sum n_i`` and ``V = (1 / r) sum_i (p_i - theta_J)(p_i - theta_J)' / (h_i - 1)``;
    equal sizes give the formula above. Leaving out a site of 200 points then counts for a
    site of 200, not as much as leaving out one of 20,000 (the equal-size formula made the
    intervals of such federations 1.7-1.9x too wide). ``aggregate`` receives the leave-one-out
    sizes as ``n_samples=`` when it takes that argument. ``replicate(i)``, when given, is the
    leave-one-out aggregate instead (robust_dfmr's screening kept: :func:`dfmr.robust.leave_out`).
    """
    m = len(mixtures)
    sized = sizes is not None and _takes_sizes(aggregate)
    replicates, used, failed = [], [], []
    for i in range(m):
        rest = mixtures[:i] + mixtures[i + 1:]
        with warnings.catch_warnings():
            # A leave-one-out reduction that drops a component is reported as a failed replicate.
            warnings.simplefilter("ignore", RuntimeWarning)
            if replicate is not None:
                out = replicate(i)
            else:
                out = aggregate(rest, n_samples=np.delete(sizes, i)) if sized else aggregate(rest)
        mix = out.mixture if isinstance(out, AggregationResult) else out
        aligned = info.align_to(mix, reference)
        if aligned is None:
            failed.append(i)
        else:
            replicates.append(info.to_vector(aligned))
            used.append(i)
    r = len(replicates)
    if r < 2:
        raise ValueError(f"the jackknife needs at least 2 usable leave-one-out aggregates, got {r}.")
    theta = np.asarray(replicates)
    if sizes is None:
        centred = theta - theta.mean(axis=0)
        return (r - 1) / r * centred.T @ centred, r, np.asarray(failed, dtype=np.intp)
    n = np.asarray(sizes, dtype=np.float64)[used]
    weighed = n > 0  # a machine dropped before pooling (size 0) has no influence to measure
    n, theta = n[weighed], theta[weighed]
    h = float(np.sum(sizes)) / n
    pseudo = h[:, None] * info.to_vector(reference)[None, :] - (h - 1.0)[:, None] * theta
    centred = pseudo - (n @ pseudo) / n.sum()
    return (centred / (h - 1.0)[:, None]).T @ centred / n.size, r, np.asarray(failed, dtype=np.intp)


def _bootstrap(
    result: AggregationResult,
    mixtures: list[GaussianMixtureParams],
    per_obs: np.ndarray,
    n: np.ndarray,
    aggregate: Callable[[list[GaussianMixtureParams]], Any],
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Machine-level parametric bootstrap covariance of the free parameters, and failed replicates."""
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 2):
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}.")
    ref = result.mixture
    k, d = ref.n_components, ref.dim
    theta = info.to_vector(ref)
    root = np.linalg.cholesky(_invert_information(per_obs, "per-observation"))
    replicates, failed = [], []
    for b in range(int(n_boot)):
        sim = list(mixtures)
        for i in result.retained:
            sim[int(i)] = _draw_estimate(theta, root / np.sqrt(n[int(i)]), k, d, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = aggregate(sim)
        aligned = info.align_to(out.mixture if isinstance(out, AggregationResult) else out, ref)
        if aligned is None:
            failed.append(b)
        else:
            replicates.append(info.to_vector(aligned))
    if len(replicates) < 2:
        raise ValueError("fewer than 2 bootstrap aggregates kept every component.")
    return np.cov(np.asarray(replicates).T).reshape(theta.size, theta.size), np.asarray(failed, dtype=np.intp)


def _draw_estimate(
    theta: np.ndarray, root: np.ndarray, k: int, d: int, rng: np.random.Generator, tries: int = 100
) -> GaussianMixtureParams:
    """A local estimate drawn from its normal approximation ``N(theta, root root')``, redrawn until valid."""
    for _ in range(tries):
        try:
            return info.from_vector(theta + root @ rng.standard_normal(theta.size), k, d)
        except ValueError:  # a weight outside (0, 1) or a covariance that is not positive definite
            continue
    raise ValueError(
        f"no valid mixture in {tries} draws around the aggregate: the machines are too small for the bootstrap."
    )


def _checked_info(machine: int, entry: tuple[ArrayLike, int], p: int) -> tuple[np.ndarray, int]:
    """A machine's (matrix, n), checked: what a machine sends is untrusted input."""
    try:
        matrix, n = entry
    except (TypeError, ValueError):
        raise ValueError(f"machine {machine}: expected (matrix, n), got {type(entry).__name__}.") from None
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (p, p):
        raise ValueError(f"machine {machine}: information matrix of shape {matrix.shape}, expected ({p}, {p}).")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"machine {machine}: the information matrix has NaN or infinite entries.")
    if not np.allclose(matrix, matrix.T, rtol=1e-8, atol=1e-8 * max(1.0, float(np.abs(matrix).max()))):
        raise ValueError(f"machine {machine}: the information matrix is not symmetric.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"machine {machine}: n must be a positive integer, got {n!r}.")
    return matrix, int(n)


def _invert_information(total: np.ndarray, kind: str) -> np.ndarray:
    total = 0.5 * (total + total.T)
    try:
        chol = np.linalg.cholesky(total)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"the summed {kind} information is not positive definite at the aggregate (too little data "
            "per parameter, or the aggregate is far from the data's maximum); try kind='opg' or method='jackknife'."
        ) from None
    inv_chol = np.linalg.inv(chol)
    return inv_chol.T @ inv_chol


def _model_covariance(mixture: GaussianMixtureParams, total: np.ndarray, kind: str) -> np.ndarray:
    """Covariance of the free parameter vector from the summed information, in the mixture's covariance
    model: ``I^-1`` for full covariances, else ``B (B' I B)^-1 B'`` (:func:`dfmr.information.model_jacobian`)."""
    if mixture.covariance_type == get_model("full", mixture.dim).name:
        return _invert_information(total, kind)
    try:
        B = info.model_jacobian(mixture)
    except ValueError as exc:
        raise ValueError(f"method='information': {exc} Use method='jackknife' for this model.") from None
    return B @ _invert_information(B.T @ total @ B, kind) @ B.T


def infer(
    result: AggregationResult,
    mixtures: Sequence[GaussianMixtureParams],
    data: Sequence[ArrayLike] | None = None,
    *,
    method: str | None = None,
    machine_infos: Sequence[tuple[np.ndarray, int] | None] | None = None,
    n_samples: int | ArrayLike | None = None,
    kind: str = "observed",
    aggregate: Callable[[list[GaussianMixtureParams]], Any] | None = None,
    multitest_method: str = "holm",
    alpha: float = 0.05,
    n_mc: int = 20_000,
    random_state: int | np.random.Generator | None = 0,
    n_boot: int = 200,
    rescreen: bool = False,
) -> MixtureInferenceResult:
    """Standard errors, intervals and per-machine tests for an aggregation (see the module docstring).

    Parameters
    ----------
    result : AggregationResult
        The aggregation of ``mixtures``.
    mixtures : sequence of GaussianMixtureParams
        The m local estimates it received, in machine order.
    data : sequence of array_like, optional
        Each machine's observations (machine order). Only the retained machines' are read, to
        compute their information at the aggregate. Give ``machine_infos`` instead when the
        machines computed it themselves.
    method : {"information", "jackknife", "bootstrap"}, optional
        ``None`` uses :func:`default_method` of the aggregator.
    machine_infos : sequence of (matrix, n) or None, optional
        What each machine sent (:func:`dfmr.information.machine_information`); entries of
        machines that were not retained may be None and are ignored in any case.
    n_samples : int or array_like of int, optional
        Machines' sample sizes for the per-machine tests when neither ``data`` nor
        ``machine_infos`` give them; without any, no tests are computed.
    kind : {"observed", "opg"}, default "observed"
        Information form (:func:`dfmr.information.information`).
    aggregate : callable, optional
        ``mixtures -> AggregationResult`` rerun by the jackknife; default: ``result``'s method with
        its settings.
    multitest_method : str, default "holm"
        Adjustment of the per-machine p-values.
    alpha : float, default 0.05
        Family-wise level of the per-machine rejections.
    n_mc : int, default 20000
        Monte Carlo draws for the per-observation information of the per-machine tests when
        the machines' information is not available.
    random_state : int, numpy.random.Generator or None, default 0
        Seed of that Monte Carlo and of the bootstrap.
    n_boot : int, default 200
        Bootstrap replicates (``method="bootstrap"``).
    rescreen : bool, default False
        For a :func:`dfmr.robust_dfmr` result, whether the jackknife reruns ``aggregate`` (the
        screening included) on every leave-one-out set. False: each replicate pools the other
        machines' kept components again, the screening's decisions kept
        (:func:`dfmr.robust.leave_out`): a test flipping at its cut-off would otherwise move a
        replicate by a whole component, and the unequal-size jackknife multiplies that jump by
        ``N / n_i - 1``. Ignored for the other aggregators.

    Returns
    -------
    MixtureInferenceResult
    """
    mixtures = list(mixtures)
    m = len(mixtures)
    if m != result.n_machines:
        raise ValueError(f"the aggregation received {result.n_machines} estimates, but {m} mixtures were given.")
    method = default_method(result.method) if method is None else method
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}.")
    ref = result.mixture
    if machine_infos is None and data is not None:
        if len(data) != m:
            raise ValueError(f"data must hold one array per machine ({m}), got {len(data)}.")
        machine_infos = [
            info.machine_information(data[i], ref, kind) if i in set(result.retained.tolist()) else None
            for i in range(m)
        ]
    if machine_infos is not None:
        if len(machine_infos) != m:
            raise ValueError(f"machine_infos must hold one entry per machine ({m}), got {len(machine_infos)}.")
        p = info.n_params(ref.n_components, ref.dim)
        machine_infos = [
            None if entry is None else _checked_info(i, entry, p) for i, entry in enumerate(machine_infos)
        ]
        kept = [machine_infos[int(i)] for i in result.retained]
        if any(entry is None for entry in kept):
            raise ValueError("every retained machine must send its information matrix.")
        total_info = sum(mat for mat, _ in kept)
        nobs = int(sum(n for _, n in kept))
        if n_samples is None and all(entry is not None for entry in machine_infos):
            n_samples = [n for _, n in machine_infos]
        if n_samples is None and data is not None:
            n_samples = [len(x) for x in data]
    else:
        total_info, nobs = None, None

    per_obs = None
    if n_samples is not None:
        per_obs = (
            total_info / nobs if total_info is not None
            else info.expected_information(ref, n_mc, kind="opg", random_state=random_state)
        )
    if method == "information":
        if total_info is None:
            raise ValueError("method='information' needs the retained machines' data or machine_infos.")
        cov_free, df_resid, failed = _model_covariance(ref, total_info, kind), np.inf, None
    elif method == "bootstrap":
        if per_obs is None:
            raise ValueError("method='bootstrap' needs the machines' sample sizes (data, machine_infos or n_samples).")
        run = aggregate if aggregate is not None else _rerun(result, ref.n_components)
        cov_free, failed = _bootstrap(
            result, mixtures, per_obs, _as_n_samples(n_samples, m), run, n_boot, np.random.default_rng(random_state)
        )
        df_resid = np.inf
    else:
        from .robust import RobustAggregationResult, leave_out

        replicate, run = None, aggregate
        if not rescreen and isinstance(result, RobustAggregationResult) and result.screening.estimates is not None:
            replicate = partial(leave_out, result)
        elif run is None:
            run = _rerun(result, ref.n_components)
        cov_free, used, failed = _jackknife(mixtures, ref, run, _pooled_sizes(result), replicate)
        df_resid = used - 1

    tests = None
    if per_obs is not None:
        tests = machine_tests(result, mixtures, per_obs, n_samples, method=multitest_method, alpha=alpha)
    if nobs is None and n_samples is not None:
        nobs = int(_as_n_samples(n_samples, m)[result.kept].sum())
    return MixtureInferenceResult(
        ref, cov_free, method=method, aggregator=result.method, n_machines=m, retained=result.retained,
        nobs=nobs, df_resid=df_resid, kind=kind if method == "information" else None, machine_tests=tests,
        jackknife_failed=failed,
    )
