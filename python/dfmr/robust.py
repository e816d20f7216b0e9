"""Screened DFMR: Byzantine-robust aggregation beyond the paper (:func:`robust_dfmr`).

:func:`dfmr.dfmr` keeps or drops whole machines by their L2 distance to a centre. L2 barely
sees a tiny or very flat extra component, a scaled covariance or skewed weights, and a
machine-level rule needs an honest majority of *machines*, which the paper's own
component-level attack destroys. :func:`robust_dfmr` screens in three stages, each decision
recorded with its rule and statistic (:class:`Decision`):

1. **Hygiene** (before any O(K^2 d^3) work): estimates of another dimension than the majority,
   estimates with more than ``max_components_factor * K`` components (their cost grows as
   ``K_i^2 d^3``) are dropped. Never fatal.
2. **Alignment and votes**: every machine's components are matched one-to-one to the K slots
   of a robust reference mixture by the reduction's own cost ``KL(N_ik || G_k)`` (an optimal
   assignment); components left unmatched (a sixth tiny or flat component) are dropped. The
   reference starts at the COAT centre and is replaced, per slot, by the vote-weighted
   coordinate-wise median of the aligned components, then by the vote-weighted mean of the
   components that pass the tests; the alignment is repeated against each new reference.
   Honest estimates scatter at their sampling error, so machines that agree far more closely
   (a group whose within-group scatter is below half its honest lower quantile, Bonferroni
   over every group; bit-identical copies always) are evidence of collusion, not a majority:
   each such group is one vote, in every median, quantile and majority, and weighs one machine
   in the pool. Nobody is dropped for it: a copier neither evicts the machine it copied nor
   doubles its weight.
3. **Calibrated tests per aligned slot**: a component estimated from ``n_i w_k`` points
   scatters around the truth at its sampling error, and the KL divergence splits into the
   log-likelihood-ratio statistics of that error:
   ``T_mean = n_i w_k (mu_ik - mu_k)' S_k^-1 (mu_ik - mu_k)`` (chi2, d df),
   ``T_cov = n_i w_k [tr(S_k^-1 S_ik) - d - log det(S_k^-1 S_ik)]`` (chi2, d(d+1)/2 df) and
   ``T_weight = 2 n_i [w_ik log(w_ik/w_k) + (1-w_ik) log((1-w_ik)/(1-w_k))]`` (chi2, 1 df),
   with the reference's weight ``w_k``, never the machine's own. Overlapping components
   scatter more than these complete-data formulas say, and the most overlapped slots most, so
   each part of each slot is divided by an inflation factor. When the mixture has at most 60
   parameters, the factor comes from the mixture's information
   matrix (inference's :func:`dfmr.information.expected_information` at the robust centre):
   the honest law of a slot's statistic is ``sum_l lambda_l chi2_1`` (eigenvalues of the
   slot's block of the statistic's form times the estimate's covariance), evaluated by a
   saddlepoint approximation, and the factor maps that law's tail onto the chi2 cut-off, times
   the machines' excess scatter over it (a vote-weighted quantile across machines: with
   server sizes the lower quartile, clipped to [1, 4], the sampling law being a ceiling up to
   a misspecification allowance; without, the median of the votes, which 40% cannot move
   beyond the honest quantiles 1/6 and 5/6, and which is then the scale ``1 / n`` itself).
   Otherwise (beyond 60 parameters the information would cost ~1 s, for K = 5, d = 10) it is a
   lower quantile of the statistics across machines over its chi2 value, per slot (for parts
   of at least 3 df, where m values give a steady quantile) and pooled over slots (the
   larger), never below the factor of the parts' sum (whose many degrees of freedom make it
   steady with few machines) and, with server sizes, never below 1 nor above 4.
   A component fails when a part exceeds the chi2 quantile at ``level / (3 m K)`` (Bonferroni
   over parts, machines and slots): it alone is dropped. The machine is then almost surely not
   honest, so its other components are kept only if every part is within its 1% quantile
   (``suspect``): a coalition cannot sacrifice one component and keep the others just inside the
   family-wise cut-offs. A machine whose surviving components
   jointly fail a part (means or covariances summed over slots; the weights by their
   multinomial likelihood ratio over every slot) is dropped whole: this catches small
   deviations spread over every component. Slots of overlapping components err together (one
   misassigned point moves both means), so the sum is wider than chi2 with the summed df: its
   law is again a weighted chi2 sum, from the joint covariance of the slots when the
   information is at hand, and it gets its own robust factor. Each slot keeps at least a
   majority of the machines (the least deviant ones). Before these decisions the scale is
   re-estimated from the machines that passed every per-component test, when that is tighter
   (:func:`_reweighted_test`): 40% of the votes far out in one part (the paper's weight attack)
   move the vote median to the honest 5/6 quantile, and a liar a few standard errors out would
   pass at that scale.

The kept components are pooled (component ``(i, k)`` with weight ``v_i w_ik / sum_j v_j`` over
the machines ``j`` that kept slot k, so a dropped component does not bias the slot's weight)
and reduced by MR. The weights sum to one, so a machine that failed any weight test has a corrupt
weight vector: its components that passed inform the means and covariances only, with their
slot's estimated weight instead of its own (:func:`_pooled_weights`); a slot's mass is Huber's
M-estimate over the others (the pooled mean while all lie within 2.5 calibrated standard errors;
a liar that passed the tests 3 to 4 standard errors out pulls less). The pooled components are
reduced by MR started from their slot-wise moment match and from each machine kept whole
(the best objective). Every output component must be supported by at least half of the votes
(:mod:`dfmr.support`: a machine supports the component its pooled components are sent to): if
the best optimum breaks this rule (on real data honest machines split clusters differently),
the best objective among the runs that meet it is returned; only when none does, the slot-wise
moment match. ``result.support`` says which machine supports which output component. With no
attack every machine is kept and the result is MR over all machines, up to Huber's slot masses
(equal to MR's while every machine lies within 2.5 standard errors).

Consistency with DFMR's machines (``consistency_check``): the per-component tests sit at the
family-wise level, so a coalition can keep every member just inside every cut-off while all are off
in one direction. Step 5 is calibrated only by what such a coalition cannot move. The ball is DFMR's
radius from the core's filter exactly (``kappa`` times the median distance from DFMR's COAT centre
machine), re-centred once on the pool of the machines DFMR keeps (:func:`_contrast_set`). The kept
components of the machines outside it (at least two) are pooled and contrasted with those inside,
Hausman's way: under H0 their difference errs with ``Var(B) - Var(A)`` (:func:`_consistency`), at a
scale the honest majority inside sets (without server sizes the vote median of the statistics against
the inside pool, every machine outside counted above it, never looser than the screening's). Each
outside machine weighs by the inverse of its own scatter orthogonal to the common shift (honest
extremes beside a tight coalition), and the variance along the shift is widened by the scatter of the
machines inside along it (:func:`_orthogonal_excess`). If the contrast rejects, the aggregate is the
same pooling over the machines inside the ball only (rule ``consistency``).

Sites that see only some of the clusters fit fewer components (``K_i < K``). When the machines
with K components hold fewer than half of the votes, the reference is not their COAT centre
but the MR of every machine whose output components are all supported: a cluster that only a
minority reports (attackers adding one of their own) never becomes a slot.

Sample sizes: what the server knows is authoritative. Sizes given as ``n_samples`` set the
tests (``n_i``) and the pool weights (``v_i = n_i``). Sizes the estimates record about
themselves are claims, untrusted: every machine is then tested at the size ``n_cal`` its votes
calibrate (the scale above, from the median of the votes, never from a median of claims), and
a claim may only tighten its machine's test (to ``max(n_cal, claim / 4)``, 4 the
misspecification allowance). When the machines that claim a size hold a majority of the votes,
the claims weigh the pool, each capped at 5 times the vote median of the claims
(``v_i = min(claim_i, 5 median)``, the median where a machine claims nothing): sites of unequal
size are pooled by size, and a liar weighs at most five median machines. Otherwise a claim
only shrinks its weight (``v_i = min(1, 4 claim / n_cal)``). The result and the summary say
which held (:attr:`Screening.size_source`, ``calibrated_n``, ``claim_cap``, ``pool_sizes``).
"""

from __future__ import annotations

import functools
import math
import textwrap
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq, linear_sum_assignment
from scipy.special import xlogy
from scipy.stats import chi2

from ._validation import check_int
from .aggregate import AggregationResult
from .covariance import CovarianceModel, get_model, majority_covariance_type
from .distances import l2_distance, pairwise_l2_scaled
from .filtering import center_index, default_threshold, filter_row
from .params import GaussianMixtureParams
from .reduction import ReductionResult, _component_kl_cost, default_starts, kl_cost, reduce
from .sites import check_site_weights, finish, merged_by_slot, neutralised
from .sizes import CLAIM_CAP
from .support import SUPPORT_FRACTION, reduce_supported, support_matrix
from .support import supported as support_rule

__all__ = ["Decision", "Screening", "RobustAggregationResult", "leave_out", "robust_dfmr", "screening_summary_lines"]

PARTS = ("mean", "covariance", "weight")
_CALIBRATION_QUANTILE = 0.25  # at most half the values attacked: this is at most the honest median
# Without server sizes no floor of 1 holds the scale up: a coalition below the honest values
# could drag a lower quantile to zero. The median of the votes stays between the honest
# quantiles 1/6 and 5/6 with 40% of the votes attacked, whichever side they take.
_UNSIZED_QUANTILE = 0.5
# The sampling law is a ceiling: honest scatter over the information's (or chi2's) law may
# exceed 1 by misspecification (the sandwich variance) and overlap, but not by more than this.
_EXCESS_CEILING = 4.0
_MAX_VOTE_GROUP = 64  # the largest group of near-identical estimates searched around each machine
_MEMBER_QUANTILE = 0.01  # a member of a merged group lies this far inside its honest law
_TIGHT = 0.5  # "far more closely": a merged group's scatter is below half its honest lower quantile
_ALIGNMENT_ROUNDS = 3
_SUSPECT_LEVEL = 0.01  # per-part level for the other components of a machine that failed a test
_SLOT_FACTOR_MIN_DF = 3  # per-slot empirical inflation only for parts with at least this many df
# The information floor costs ~_INFORMATION_DRAWS * p^2 flops: used while p is small, which is
# also where the per-part df are few and the empirical quantiles unsteady.
_INFORMATION_MAX_PARAMS = 60
_INFORMATION_DRAWS = 20_000
# A single machine outside the radius is left to the machine-level tests, which it passed: contrasted alone
# at the radius's selection it falls back in 3 of 40 clean federations of 6 (measured, 1-D). Machines, not
# votes: a group merged for agreeing more closely than sampling error allows is one vote but is contrasted.
_MIN_CONTRAST_MACHINES = 2
# Huber's constant for the slots' weights: 99.8% efficient at the normal; a liar 3 to 4 standard errors out
# (the paper's Dirichlet weights that pass the tests) weighs 0.6 to 0.8 (measured in bench_covariance_models.py).
_HUBER_C = 2.5
_HUBER_ITER = 200
_HUBER_NOTE = 0.8  # the notes name the machines whose weight in a slot's mass this estimate cut below 0.8


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
        ``"dimension"``, ``"n_components"``, ``"unmatched"``, ``"mean"``,
        ``"covariance"``, ``"weight"``, ``"suspect mean"``, ``"suspect covariance"``, ``"suspect weight"``
        (another component of the machine failed; this one exceeds the part's 1% quantile),
        ``"machine mean"``, ``"machine covariance"`` or ``"machine weight"``.
    statistic : float
        The value the rule compared (a chi2 statistic after inflation for the tests; the
        dimension, the cost ratio ``K_i^2 / K^2``, ...).
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
        The sample sizes given by the server, or else claimed by the estimates (NaN: none, or
        dropped in hygiene).
    n_samples_known : bool
        True when the server gave the sizes (``size_source == "server"``).
    level : float
        Family-wise level of the tests.
    relaxed_slots : tuple of int
        Slots where the tests failed a majority of machines and the least deviant were kept.
    notes : tuple of str
        Remarks for the summary (assumptions, fall-backs).
    votes : ndarray of shape (m,)
        Each machine's share of a vote: 1 / the size of its group of near-identical estimates
        (copies included), 0 when dropped in hygiene. Its pool weight is scaled by it.
    vote_groups : tuple of tuple of int
        The groups of more than one machine that agree far more closely than sampling error
        allows (or are copies); each counts as one vote and weighs one machine.
    size_source : str
        ``"server"`` (given by the caller: authoritative), ``"claimed"`` (recorded by some
        estimates: untrusted, they only tighten) or ``"unknown"``.
    calibrated_n : float
        Without server sizes: the effective sample size the machines' votes calibrate (the
        median of their statistics over the sampling law); NaN with server sizes.
    test_n : ndarray of shape (m,)
        The size each machine was tested at, in the units of ``n_samples`` with server sizes
        and of ``1 / calibrated_n`` otherwise (above 1 only where a claim tightened the test).
    claim_cap : float
        Without server sizes, when the machines that claim a size hold a majority of the votes:
        the cap on every claim in the pool weights, ``5 x`` the vote median of the claims; NaN
        otherwise (server sizes, or claims from a minority, which then only shrink weights).
    pool_sizes : ndarray of shape (m,)
        The size each machine's components were pooled with (``v_i`` before the votes): the
        server's sizes; else the capped claims (the median claim where none); else 1, below 1
        only where a claim shrank the weight. NaN where dropped in hygiene.
    estimates : tuple of GaussianMixtureParams, optional
        The estimates as screened (``alignment`` indexes their components): the machines' own,
        read in the covariance model, and under free site proportions each site at its own
        K_i (:func:`dfmr.sites.merged_by_slot`). :func:`leave_out` pools them again.
    consistency : str
        The consistency check between the screened aggregate and the aggregate over the machines
        DFMR's filter also keeps (:func:`robust_dfmr`'s ``consistency_check``): ``"off"``,
        ``"no contrast"`` (fewer than two votes outside DFMR's radius, or no DFMR filter
        applies), ``"passed"`` (the screened aggregate is returned) or ``"rejected"`` (the
        aggregate over the kept components of the machines inside DFMR's radius is returned; the
        others are dropped with rule ``consistency``).
    consistency_statistic : float
        The contrast's statistic: the largest per-slot statistic over its cut-off's scale, or the
        joint one, whichever has the smaller p-value (NaN when not computed).
    consistency_p_value : float
        Its Bonferroni-adjusted p-value (over the slots tested and the joint test; NaN when not computed).
    consistency_machines : tuple of int
        The machines with a kept component outside DFMR's radius (the contrasted ones).
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
    votes: np.ndarray | None = None
    vote_groups: tuple[tuple[int, ...], ...] = ()
    size_source: str = "server"
    calibrated_n: float = math.nan
    test_n: np.ndarray | None = None
    claim_cap: float = math.nan
    pool_sizes: np.ndarray | None = None
    estimates: tuple[GaussianMixtureParams, ...] | None = None
    consistency: str = "off"
    consistency_statistic: float = math.nan
    consistency_p_value: float = math.nan
    consistency_machines: tuple[int, ...] = ()

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
) -> tuple[np.ndarray, str, list[str]]:
    """Per-machine sample sizes (NaN where none) and their source.

    ``"server"``: given by the caller, authoritative. ``"claimed"``: recorded by (some of) the
    estimates themselves, untrusted: a claim may only make its machine's test stricter or its
    weight smaller. ``"unknown"``: none at all.
    """
    m = len(mixtures)
    if n_samples is not None:
        n = np.asarray(n_samples, dtype=np.float64)
        if n.ndim == 0:
            n = np.full(m, float(n))
        if n.shape != (m,) or not np.all(np.isfinite(n)) or np.any(n < 1):
            raise ValueError(f"n_samples must hold one finite sample size >= 1 per machine ({m}), got {n_samples!r}.")
        return n, "server", []
    n = np.array([np.nan if f.n_samples is None else float(f.n_samples) for f in mixtures])
    calibrated = ("the tests are calibrated by the scatter of the machines' votes (the median of their "
                  "statistics over the sampling law), which a minority cannot move")
    if not np.isfinite(n).any():
        return n, "unknown", [f"No sample sizes were given or recorded: {calibrated}."]
    return n, "claimed", [
        f"Sample sizes are only claimed by the estimates (untrusted; none were given by the server): {calibrated}. "
        f"A claim can only make its machine's test stricter (size max(calibrated, claim / {_EXCESS_CEILING:g})) "
        f"or its pool weight smaller (min(1, {_EXCESS_CEILING:g} x claim / calibrated))."
    ]



def _claimed_pool_sizes(claims: np.ndarray, votes: np.ndarray, unit: float) -> tuple[np.ndarray, float]:
    """Pool sizes from claimed sizes (untrusted), and the cap applied (NaN when none was).

    When the machines that claim a size hold a majority of the votes, the vote median of the
    claims is between honest claims, and each claim weighs up to :data:`CLAIM_CAP` times it
    (a machine without a claim weighs as the median). Otherwise every machine weighs 1 (the
    calibrated size) and a claim below the calibrated size over the misspecification allowance
    only shrinks its weight (``min(1, allowance x claim / calibrated n)``).
    """
    has = np.isfinite(claims) & (votes > 0)
    if votes[has].sum() <= 0.5 * votes.sum():
        return np.fmin(1.0, claims * unit * _EXCESS_CEILING), math.nan
    median = float(_weighted_quantile(claims[has], votes[has], 0.5))
    cap = CLAIM_CAP * median
    return np.where(np.isfinite(claims), np.fmin(claims, cap), median), cap


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
    return alive, decisions, d


def _exact_copies(mixtures: list[GaussianMixtureParams], alive_idx: np.ndarray) -> np.ndarray:
    """Group label per alive machine: the first alive machine with a bit-identical estimate."""
    seen: dict[bytes, int] = {}
    labels = np.empty(alive_idx.size, dtype=np.intp)
    for a, i in enumerate(alive_idx):
        f = mixtures[i]
        labels[a] = seen.setdefault(f.weights.tobytes() + f.means.tobytes() + f.covariances.tobytes(), a)
    return labels


def _weighted_quantile(x: np.ndarray, u: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` along axis 0 of ``x`` with weights ``u`` (numpy's linear rule for equal weights).

    The sorted values sit at positions ``(cum_j - u_j) / (total - u_last)`` in [0, 1] and are
    interpolated linearly; equal weights give positions ``j / (r - 1)``, numpy's default.
    """
    x = np.asarray(x, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 1 and not (u > 0).all():
        # A zero weight is no observation (its position would shift every other's): left out.
        x, u = x[u > 0], u[u > 0]
    if x.shape[0] == 1:
        return x[0].copy()
    if np.all(u == u[0]):  # one vote each, the common case: numpy's own rule
        return _linear_quantile(x, q)
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    us = u[order]
    cum = np.cumsum(us, axis=0)
    pos = (cum - us) / (cum[-1] - us[-1])
    # np.interp(q, pos[:, c], xs[:, c]) for every column c at once.
    r = x.shape[0]
    lo = np.clip((pos <= q).sum(axis=0) - 1, 0, r - 2)[None]
    p0, p1 = np.take_along_axis(pos, lo, axis=0)[0], np.take_along_axis(pos, lo + 1, axis=0)[0]
    x0, x1 = np.take_along_axis(xs, lo, axis=0)[0], np.take_along_axis(xs, lo + 1, axis=0)[0]
    gap = p1 - p0
    frac = np.clip(np.divide(q - p0, gap, out=np.ones_like(gap), where=gap > 0), 0.0, 1.0)
    return x0 + frac * (x1 - x0)


def _linear_quantile(x: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(x, q, axis=0)`` (the linear rule) bit for bit, for float64 ``x`` and ``q`` in [0, 1].

    numpy's quantile costs ~30 us a call in argument handling; the screening asks for ~100 small
    quantiles per call. The same order statistics, the same interpolation (numpy's ``_lerp``:
    ``a + (b - a) t``, or ``b - (b - a)(1 - t)`` for ``t >= 0.5``) and NaN where a column holds one.
    """
    r = x.shape[0]
    xs = np.sort(x, axis=0)
    virtual = (r - 1) * float(q)
    below = math.floor(virtual)
    if virtual >= r - 1:
        a = b = xs[-1]
        t = virtual + 1.0  # numpy's gamma against its index -1 (irrelevant: a == b)
    else:
        a, b = xs[below], xs[below + 1]
        t = virtual - below
    diff = b - a
    out = a + diff * t if t < 0.5 else b - diff * (1.0 - t)
    nan = np.isnan(xs[-1])
    if np.any(nan):
        out = np.where(nan, np.nan, out)
    return out


def _vote_features(w, mu, cov, present, ref_w, ref_mu, ref_cov, parts) -> np.ndarray:
    """Each machine's aligned estimate as a vector whose squared distances are the tests' statistics at n = 1.

    Per slot: ``sqrt(w_k) L_k^-1 mu`` (means), ``sqrt(w_k / 2) L_k^-1 S L_k^-T`` on and (times
    sqrt 2) above the diagonal (covariances: the statistic's second-order form), ``w / sqrt(w_k)``
    (weights, the form of the information's weight block). Empty slots take the reference.
    """
    m, k, d = mu.shape
    # L_k^-1 once per slot, then products (m K solves cost 4x more; the features agree to rounding,
    # ~1e-15 relative, far below any threshold they are compared with).
    inv_chol = np.linalg.inv(np.linalg.cholesky(ref_cov))
    fill_mu = np.where(present[..., None], mu, ref_mu[None])
    blocks = [(np.einsum("kab,mkb->mka", inv_chol, fill_mu) * np.sqrt(ref_w)[None, :, None]).reshape(m, -1)]
    if "covariance" in parts:
        fill_cov = np.where(present[..., None, None], cov, ref_cov[None])
        white = inv_chol[None] @ fill_cov @ np.swapaxes(inv_chol, -1, -2)[None]
        rows, cols, off = _upper_triangle(d)
        blocks.append((white[..., rows, cols] * off * np.sqrt(ref_w / 2.0)[None, :, None]).reshape(m, -1))
    if "weight" in parts:
        blocks.append(np.where(present, w, ref_w[None]) / np.sqrt(ref_w)[None])
    return np.hstack(blocks)


def _median(x: np.ndarray) -> np.ndarray:
    """``np.median(x, axis=-1)`` bit for bit (the middle value, or the mean ``(a + b) / 2`` of the two
    middle ones; NaN where a row holds one), without its per-call overhead."""
    n = x.shape[-1]
    xs = np.sort(x, axis=-1)
    half = n // 2
    out = xs[..., half] if n % 2 else (xs[..., half - 1] + xs[..., half]) / 2.0
    nan = np.isnan(xs[..., -1])
    return np.where(nan, np.nan, out) if np.any(nan) else out


@functools.lru_cache(maxsize=64)
def _upper_triangle(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows and columns of the upper triangle of a d x d matrix (``np.triu_indices``, slow to build
    each round) and the weight of each entry in a Frobenius norm of the triangle (sqrt 2 off the diagonal)."""
    rows, cols = np.triu_indices(d)
    off = np.where(rows == cols, 1.0, math.sqrt(2.0))
    for arr in (rows, cols, off):
        arr.setflags(write=False)
    return rows, cols, off


def _vote_groups(features: np.ndarray, lam: np.ndarray, level: float, exact: np.ndarray) -> np.ndarray:
    """Group label per alive machine: machines agreeing far more closely than sampling error allows.

    ``features`` are scaled so that an honest machine's vector scatters with covariance of
    eigenvalues ``lam`` (:func:`_vote_features` times ``sqrt(n / scale)``). For each machine and
    its g - 1 nearest neighbours the within-group sum of squares, ``sum_{a<b} D_ab / g``, is
    ``sum_l lam_l chi2_{g-1}`` for honest machines (approximated by ``c chi2_{f (g-1)}`` with
    Satterthwaite's ``c``, ``f``); the largest group below half its lower quantile at ``level`` over
    the number of groups of that size (Bonferroni over every subset) is a candidate. A tight core
    makes every group around it tight (and a core at the honest consensus is close to every
    honest machine), so the candidate loses, one by one, its loosest member while any member's
    distance to the mean of the others is above half the lower ``_MEMBER_QUANTILE`` of its
    honest law, ``(1 + 1/(g-1)) c chi2_f``. The rest is merged, as is every bit-identical copy.
    An honest machine merged by chance loses weight, not its place.
    """
    ma = features.shape[0]
    parent = exact.copy()

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    g_max = min(max(2, ma // 2), _MAX_VOTE_GROUP, ma)
    lam = lam[lam > 0]
    if ma >= 2 and lam.size:
        c = float(np.sum(lam**2) / np.sum(lam))
        f = float(np.sum(lam) ** 2 / np.sum(lam**2))
        sq = np.einsum("ij,ij->i", features, features)
        dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * features @ features.T, 0.0)
        sizes = np.arange(2, g_max + 1)
        log_subsets = math.lgamma(ma + 1) - np.array([math.lgamma(g + 1) + math.lgamma(ma - g + 1) for g in sizes])
        alpha = np.exp(np.maximum(math.log(level) - log_subsets, -690.0))
        # The law's scale can only shrink by the machines' own scatter: the median over machines
        # of the median distance to the others, over an honest pair's median, if below 1 (an
        # honest majority keeps it near or above that; colluders cannot make honest machines
        # look tight by inflating the calibrated scale).
        off = dist[~np.eye(ma, dtype=bool)].reshape(ma, ma - 1)
        shrink = min(1.0, float(_median(_median(off))) / (2.0 * _weighted_chi2_isf(0.5, lam)))
        cut = _TIGHT * shrink * c * _chi2("ppf", tuple(alpha.tolist()), tuple((f * (sizes - 1)).tolist()))
        member_law = _TIGHT * shrink * c * _chi2("ppf", _MEMBER_QUANTILE, f)
        orders = np.argsort(dist, axis=1, kind="stable")[:, :g_max]  # each machine's nearest, itself first
        subs = dist[orders[:, :, None], orders[:, None, :]]
        # pairs[a, g - 1]: the sum over the pairs among machine a's first g.
        pairs = np.cumsum(np.tril(subs, -1).sum(axis=2), axis=1)
        tight = pairs[:, 1:] / sizes[None, :] < cut[None, :]
        for a in np.flatnonzero(tight.any(axis=1)):
            order, sub = orders[a], subs[a]
            group = list(range(int(np.flatnonzero(tight[a])[-1]) + 2))
            while len(group) >= 2:
                g = len(group)
                block = sub[np.ix_(group, group)]
                rows = block.sum(axis=1)
                # Each member's squared distance to the mean of the others.
                loo = rows / (g - 1) - (block.sum() / 2.0 - rows) / (g - 1) ** 2
                worst = int(np.argmax(loo))
                if loo[worst] < (1.0 + 1.0 / (g - 1)) * member_law:
                    break
                del group[worst]
            members = [int(order[j]) for j in group]
            for b in members[1:] if len(members) >= 2 else ():
                ra, rb = root(members[0]), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(ma)], dtype=np.intp)


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


@dataclass(frozen=True)
class _Components:
    """Every alive machine's components, concatenated once per call (machine i's are rows
    ``offsets[i]:offsets[i + 1]``, none for machines dropped in hygiene): the alignment costs of all
    machines come from one core call, and each round's aligned arrays are gathered, not rebuilt."""

    offsets: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    cholesky: np.ndarray
    logdet: np.ndarray

    @classmethod
    def of(cls, mixtures: list[GaussianMixtureParams], alive_idx: np.ndarray) -> _Components:
        sizes = np.zeros(len(mixtures), dtype=np.intp)
        sizes[alive_idx] = [mixtures[i].n_components for i in alive_idx]
        alive = [mixtures[i] for i in alive_idx]
        chol = np.concatenate([f.cholesky_factors for f in alive])
        return cls(np.concatenate([[0], np.cumsum(sizes)]), np.concatenate([f.weights for f in alive]),
                   np.concatenate([f.means for f in alive]), np.concatenate([f.covariances for f in alive]), chol,
                   2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1))


def _align(components: _Components, alive_idx: np.ndarray, reference: GaussianMixtureParams, cap: float,
           alignment: np.ndarray) -> None:
    """Per alive machine, slot -> its component (or -1) minimising the summed capped KL cost, one-to-one
    (rows of ``alignment``, in place)."""
    # One call for every machine's components (the cost is computed component by component).
    cost = np.minimum(_component_kl_cost(components.means, components.covariances, reference), min(cap, 1e300))
    for i in alive_idx:
        rows, cols = linear_sum_assignment(cost[components.offsets[i]:components.offsets[i + 1]])
        alignment[i] = -1
        alignment[i, cols] = rows


def _stack(components: _Components, alignment: np.ndarray) -> tuple[np.ndarray, ...]:
    """Aligned weights (m, K), means (m, K, d), covariances (m, K, d, d) and log-dets (NaN where empty)."""
    present = alignment >= 0
    idx = np.where(present, components.offsets[:-1, None] + alignment, 0)
    return (np.where(present, components.weights[idx], np.nan),
            np.where(present[..., None], components.means[idx], np.nan),
            np.where(present[..., None, None], components.covariances[idx], np.nan),
            np.where(present, components.logdet[idx], np.nan))


def _zero_nan(x: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(x)`` for arrays whose only non-finite entries are NaN (several times faster)."""
    return np.where(np.isnan(x), 0.0, x)


def _raw_statistics(
    w: np.ndarray, mu: np.ndarray, cov: np.ndarray, logdet: np.ndarray, n: np.ndarray,
    ref_w: np.ndarray, ref_mu: np.ndarray, ref_cov: np.ndarray, own_counts: bool = False,
) -> dict[str, np.ndarray]:
    """Uncorrected likelihood-ratio statistics of every aligned component against the reference.

    A component stands for ``n_i w_k`` points (the reference's weight); with ``own_counts``
    (free site proportions, :mod:`dfmr.sites`) for ``n_i w_ik``, the points the site saw in it.
    """
    d = mu.shape[2]
    chol = np.linalg.cholesky(ref_cov)  # (K, d, d)
    ref_logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    # Empty slots (NaN) count 0 here and are set to NaN at the end; present ones are finite.
    diff = _zero_nan(mu - ref_mu[None])  # (m, K, d)
    z = np.linalg.solve(chol[None], diff[..., None])[..., 0]
    maha = np.einsum("mkd,mkd->mk", z, z)
    # tr(S_k^-1 S_ik) = ||L_k^-1 L_ik||_F^2 is more stable, but S_ik itself is at hand: solve twice.
    inv = np.linalg.inv(ref_cov)
    trace = np.einsum("kab,mkba->mk", inv, _zero_nan(cov))
    wi = _zero_nan(w)
    n_slot = n[:, None] * (wi if own_counts else ref_w[None, :])
    empty = np.isnan(w)
    stats = {
        "mean": n_slot * maha,
        "covariance": n_slot * np.maximum(trace - d - (logdet - ref_logdet[None]), 0.0),
    }
    w0 = ref_w[None, :]
    if ref_w.size > 1:
        lr = xlogy(wi, wi) - xlogy(wi, w0) + xlogy(1 - wi, 1 - wi) - xlogy(1 - wi, 1 - w0)
        stats["weight"] = 2.0 * n[:, None] * np.maximum(lr, 0.0)
    else:
        stats["weight"] = np.zeros_like(wi)
    for arr in stats.values():
        arr[empty] = np.nan
    return stats


@functools.lru_cache(maxsize=1024)
def _chi2(fn: str, x: float | tuple[float, ...], df: float | tuple[float, ...]) -> float | np.ndarray:
    """``chi2.<fn>(x, df)`` memoised (scipy's per-call overhead was a third of the screening's time,
    and the rounds, the machine-level laws and later calls ask for the same values): a float, or a
    read-only array for tuples."""
    out = getattr(chi2, fn)(np.asarray(x), np.asarray(df))
    if out.ndim == 0:
        return float(out)
    out.setflags(write=False)
    return out


def _chi2_ppf(q: float, df: int) -> float:
    """chi2.ppf, memoised."""
    return _chi2("ppf", q, df)


def _inflation(stats: np.ndarray, df: int, floor: float | None, votes: np.ndarray, q: float) -> float:
    """Quantile ``q`` of the statistics (all machines and slots, weighted by votes) over chi2's, at least ``floor``.

    Pooled over slots: with m machines a per-slot quantile of chi2 variables is too noisy
    (the 1-df weight statistics most of all).
    """
    stats = np.asarray(stats).reshape(stats.shape[0], -1)
    ok = np.isfinite(stats)
    vals = stats[ok]
    u = np.broadcast_to(votes[:, None], stats.shape)[ok]
    s = float(_weighted_quantile(vals, u, q) / _chi2_ppf(q, df)) if vals.size else 1.0
    if not np.isfinite(s) or s <= 0:
        s = 1.0
    return s if floor is None else max(s, floor)


def _slot_inflations(stats: np.ndarray, df: int, votes: np.ndarray, q: float) -> np.ndarray:
    """:func:`_inflation` of every slot's column of ``stats`` (m, K), without a floor: one quantile
    over the columns at once when no component is missing (quantiles are column by column)."""
    if not np.isfinite(stats).all():
        return np.array([_inflation(stats[:, j], df, None, votes, q) for j in range(stats.shape[1])])
    s = _weighted_quantile(stats, votes, q) / _chi2_ppf(q, df)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


def _weighted_chi2_sf(x: float, lam: np.ndarray) -> float:
    """``P(sum_j lam_j Z_j^2 > x)`` for independent standard normals: Lugannani-Rice saddlepoint.

    Accurate to a few per cent of the probability far into the tail (where the tests' Bonferroni
    levels sit) and exact in shape for equal weights up to that error; ``lam`` must be >= 0.
    """
    if x <= 0.0:
        return 1.0
    lam = lam[lam > 1e-12 * lam.max()] if lam.size else lam
    if not lam.size:
        return 0.0  # no positive weight: the law is a point mass at 0
    mean = float(lam.sum())
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
    # norm.sf(w) + norm.pdf(w) (1/u - 1/w), with the math module's erfc (scipy's per-call
    # overhead dominated the tests' cost).
    tail = 0.5 * math.erfc(w / math.sqrt(2.0)) + math.exp(-0.5 * w * w) / math.sqrt(2.0 * math.pi) * (1.0 / u - 1.0 / w)
    return float(min(max(tail, 0.0), 1.0))


def _weighted_chi2_isf(alpha: float, lam: np.ndarray) -> float:
    """The ``x`` with :func:`_weighted_chi2_sf` ``(x, lam) = alpha`` (memoised: the rounds and the
    machine-level laws ask for the same weights again)."""
    return _weighted_chi2_isf_of(float(alpha), tuple(np.asarray(lam, dtype=float).ravel().tolist()))


@functools.lru_cache(maxsize=4096)
def _weighted_chi2_isf_of(alpha: float, weights: tuple[float, ...]) -> float:
    lam = np.array(weights)
    mean = float(lam.sum())
    if not mean > 0.0:
        # A statistic whose law has no positive weight (its slot's information is 0, e.g. a reference
        # component of weight ~1e-18 that an over-fitted local EM emptied) is 0 almost surely.
        return 0.0
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
    from .information import expected_information, per_component_covariance

    # (A model without per-component covariance parameters, e.g. EEE, has no covariance part: its
    # factor is computed with one df and dropped below.)

    k, d = reference.n_components, reference.dim
    fisher = expected_information(reference, _INFORMATION_DRAWS, kind="opg", random_state=0)
    # In the reference's covariance model, as the per-slot statistics see it: weights, means and each
    # component's own covariance parameters move, the shared ones are the reference's (B_own (B' I B)^-1
    # B_own'; B (B' I B)^-1 B' for VVV, VVI, VII, whose covariance parameters are all a component's own).
    V = per_component_covariance(reference, fisher)
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
        out["covariance"] += (0.5 * w[j] * np.trace(dup.T @ np.kron(prec, prec) @ dup @ V[sig, sig])
                              / max(dfs["covariance"], 1))
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


def _moment_centre(w: np.ndarray, mu: np.ndarray, cov: np.ndarray, use: np.ndarray, votes: np.ndarray,
                   fallback: GaussianMixtureParams,
                   weight_use: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot: ``votes``-weighted mean weight, mean and covariance over the machines in ``use``; the
    weight over those also in ``weight_use`` (when any is), see :func:`_weight_corrupt`."""
    k = w.shape[1]
    ref_w, ref_mu, ref_cov = fallback.weights.copy(), fallback.means.copy(), fallback.covariances.copy()
    for j in range(k):
        rows = use[:, j]
        if rows.any():
            u = votes[rows] / votes[rows].sum()
            ref_w[j] = u @ w[rows, j]
            ref_mu[j] = u @ mu[rows, j]
            ref_cov[j] = np.einsum("r,rab->ab", u, cov[rows, j])
            rows_w = rows if weight_use is None else rows & weight_use[:, j]
            if rows_w.any() and not (rows_w == rows).all():
                ref_w[j] = votes[rows_w] @ w[rows_w, j] / votes[rows_w].sum()
    return ref_w / ref_w.sum(), ref_mu, ref_cov


def _weight_corrupt(stats: dict[str, np.ndarray], cut: dict[str, float]) -> np.ndarray:
    """Per machine: did any of its slots fail the weight test? Then its whole weight vector is a lie.

    The weights sum to one: a skew of one slot is a skew of the others, and a liar can sacrifice
    one slot's weight and keep the others just inside their cut-offs (the paper's Dirichlet weight
    attack does so by chance). An honest machine fails with probability at most ``level``. Such a
    machine's components that pass may still inform the means and covariances, but its weights
    enter neither the centre's nor the aggregate's weights.
    """
    if "weight" not in stats:
        return np.zeros(next(iter(stats.values())).shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        return (stats["weight"] > cut["weight"]).any(axis=1)


def _median_centre(w: np.ndarray, mu: np.ndarray, cov: np.ndarray, present: np.ndarray, votes: np.ndarray,
                   fallback: GaussianMixtureParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot: vote-weighted coordinate-wise medians (breakdown 1/2 of the votes); a non-definite
    median covariance keeps the fallback."""
    k = w.shape[1]
    ref_w, ref_mu, ref_cov = fallback.weights.copy(), fallback.means.copy(), fallback.covariances.copy()
    if present.any() and (present == present[:, :1]).all():
        # Every slot has the same machines (the common case): the medians of all slots at once.
        rows = present[:, 0]
        u = votes[rows]
        ref_w = _weighted_quantile(w[rows], u, 0.5)
        ref_mu = _weighted_quantile(mu[rows], u, 0.5)
        med = _weighted_quantile(cov[rows], u, 0.5)
        med = 0.5 * (med + np.swapaxes(med, 1, 2))
        definite = np.linalg.eigvalsh(med)[:, 0] > 0
        ref_cov[definite] = med[definite]
    else:
        for j in range(k):
            rows = present[:, j]
            if not rows.any():
                continue
            u = votes[rows]
            ref_w[j] = _weighted_quantile(w[rows, j], u, 0.5)
            ref_mu[j] = _weighted_quantile(mu[rows, j], u, 0.5)
            med = _weighted_quantile(cov[rows, j], u, 0.5)
            med = 0.5 * (med + med.T)
            if np.linalg.eigvalsh(med)[0] > 0:
                ref_cov[j] = med
    total = ref_w.sum()
    return (ref_w / total if total > 0 else fallback.weights.copy()), ref_mu, ref_cov


def _initial_reference(mixtures: list[GaussianMixtureParams], alive_idx: np.ndarray, k: int, votes: np.ndarray,
                       n_threads: int | None) -> tuple[GaussianMixtureParams, int | None, np.ndarray | None]:
    """The COAT centre among the machines with exactly K components (L2 distances), when they
    hold half of the votes; else MR of all whose every component half of the votes support.

    Sites that see only some of the clusters fit fewer components; then the machines with K
    components may be a minority (attackers adding a cluster of their own), whose centre must
    not be the reference: the supported MR of every machine is (:mod:`dfmr.support`).
    """
    full = [int(i) for i in alive_idx if mixtures[i].n_components == k]
    if full and votes[full].sum() >= SUPPORT_FRACTION * votes[alive_idx].sum() - 1e-9:
        scaled, exponent = pairwise_l2_scaled([mixtures[i] for i in full], n_threads=n_threads)
        c = full[center_index(scaled)]
        return mixtures[c], c, np.ldexp(scaled, exponent)
    alive = [mixtures[i] for i in alive_idx]
    share = np.repeat(votes[alive_idx] / votes[alive_idx].sum(), [f.n_components for f in alive])
    pooled = GaussianMixtureParams._from_core(share * np.concatenate([f.weights for f in alive]),
                                              np.concatenate([f.means for f in alive]),
                                              np.concatenate([f.covariances for f in alive]))
    owner = np.repeat(alive_idx, [f.n_components for f in alive])
    red, _ = reduce_supported(pooled, owner, votes, k, default_starts(alive, k), n_threads=n_threads)
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
    site_weights: str = "shared",
    covariance_type: str | None = None,
    consistency_check: bool = True,
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
        Sample size of every machine, known to the server: authoritative for the tests and
        the pool weights. ``None`` calibrates the tests by the machines' votes and reads
        :attr:`GaussianMixtureParams.n_samples` (recorded by :func:`dfmr.fit_local`) as an
        untrusted claim that can only tighten its machine's test or shrink its weight.
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
    site_weights : {"shared", "free"}, default "shared"
        ``"shared"``: the paper's iid sites. ``"free"``: sites share the components, not the
        proportions (:mod:`dfmr.sites`): the centre sees means and covariances only, the weight
        tests are off, a component is tested at the points behind it (``n_i pi_ik``), and the
        weights are a robust average of the kept sites' own (``result.site_weights``).
    covariance_type : str, optional
        The covariance model of the screening and of the aggregate (:func:`dfmr.covariance.get_model`'s
        names); None: the model a strict majority of the estimates claim, else full
        (:func:`dfmr.covariance.majority_covariance_type`). Estimates outside it are read as their
        projection onto it; the aggregate belongs to it.
    consistency_check : bool, default True
        A Hausman-type test of the screened aggregate against the same aggregation over the machines
        inside DFMR's ball (the core's filter exactly: ``kappa = m ** 0.1`` times the ``floor(m/2)``-th
        L2 distance from DFMR's centre machine, the ball re-centred on the pool of DFMR's machines): the
        kept components of the machines outside, pooled, must agree with those inside within sampling
        error (per slot and jointly, Bonferroni at ``level / m``; the scale from the machines inside; the
        variance widened by the outside machines' own scatter orthogonal to their common shift, at most
        4-fold). A coalition each of whose members passes its own tests but all off in one direction
        fails it; then the aggregate over the machines inside is returned and the others are dropped
        (rule ``consistency``). The outcome is in ``screening.consistency`` (and ``_statistic``,
        ``_p_value``, ``_machines``). False: no check.

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
    free = check_site_weights(site_weights) == "free"
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
    n, size_source, notes = _sample_sizes(mixtures, n_samples)
    n[~alive] = np.nan
    server = size_source == "server"
    # Server sizes are authoritative for the tests and the pool; otherwise every machine is
    # tested at one size calibrated from the votes (claims only tighten, see _test).
    n_base = np.where(alive, n if server else 1.0, np.nan)

    # The covariance model a strict majority of the estimates claim (else full): every estimate is
    # read in it (one outside it, as its projection: it can move the aggregate only through the
    # model's parameters, which the tests see); its per-component covariance parameters are tested
    # per slot, its shared ones once per machine.
    model = get_model(majority_covariance_type([mixtures[i].covariance_type for i in alive_idx], d)
                      if covariance_type is None else covariance_type, d)
    constrained = model.name != get_model("full", d).name
    if constrained:
        mixtures = [_in_model(f, model) if alive[i] else f for i, f in enumerate(mixtures)]
    exact = _exact_copies(mixtures, alive_idx)
    # Free proportions: the centre sees means and covariances only, and no weight is tested.
    reference, centre, distances = _initial_reference(neutralised(mixtures) if free else mixtures, alive_idx, k,
                                                      _votes_of(exact, alive_idx, m), n_threads)
    # The machines the distances are between (the K-component ones), for DFMR's filter in the consistency check.
    full = [int(i) for i in alive_idx if mixtures[i].n_components == k] if distances is not None else []
    own_df, shared_df = model.covariance_df(d)
    dfs = {"mean": d, "covariance": own_df, "weight": 1 if k > 1 and not free else 0}
    parts = [p for p in PARTS if dfs[p] > 0]
    m_alive = alive_idx.size
    n_tests = len(parts) * m_alive * k
    cut_raw = {p: _chi2("isf", level / n_tests, dfs[p]) for p in parts}
    shared_alpha = level / (m_alive * (len(parts) + 1))
    # The information in the model's parametrisation, for every model: the per-slot statistics see a
    # component's own covariance parameters (the V letters; information.per_component_covariance).
    use_information = model.n_parameters(k, d) <= _INFORMATION_MAX_PARAMS
    joint: dict[str, np.ndarray] | None = None
    labels = exact
    cal = _Calibration(votes=_votes_of(labels, alive_idx, m), quantile=_CALIBRATION_QUANTILE if server
                       else _UNSIZED_QUANTILE, floors={p: 1.0 for p in parts} if server else None,
                       ceiling=_EXCESS_CEILING, claims=None if server else n, own_counts=free)

    size_weight = np.where(alive, n, 0.0) if server else np.ones(m)
    alignment = np.full((m, k), -1, dtype=np.intp)
    components = _Components.of(mixtures, alive_idx)
    view, merges = list(mixtures), [[] for _ in range(m)]  # the estimates as screened (free: merged per slot)
    ref_w, ref_mu, ref_cov = reference.weights, reference.means, reference.covariances
    for round_ in range(_ALIGNMENT_ROUNDS):
        ref = GaussianMixtureParams._from_core(ref_w, ref_mu, model.project(ref_cov) if constrained else ref_cov,
                                               covariance_type=model.name)
        if round_ == 1 and use_information:
            # After one round the reference is the mean of components that passed: a robust
            # truth at which the information of the mixture says how far honest estimates scatter.
            _, joint = _information_inflation(ref, dfs)
        cap = _alignment_cap(ref)
        if free:  # each site at its own K_i: components it split over one slot merged (dfmr.sites)
            for i in alive_idx:
                view[i], merges[i] = merged_by_slot(mixtures[i], ref, cap)
                if merges[i] and constrained:
                    view[i] = _in_model(view[i], model)
            components = _Components.of(view, alive_idx)
        _align(components, alive_idx, ref, cap, alignment)
        w, mu, cov, logdet = _stack(components, alignment)
        present = ~np.isnan(w)
        # Median centre, then the mean of the components that pass against it.
        ref_w, ref_mu, ref_cov = _median_centre(w, mu, cov, present, cal.votes, ref)
        test_ref_cov, test_cov, test_logdet = _model_view(model, constrained, ref_cov, cov, logdet, present)
        stats, passed, inflation, unit, n_test = _test(w, mu, test_cov, test_logdet, n_base, ref_w, ref_mu,
                                                       test_ref_cov, dfs, parts, cut_raw, cal, present, joint)
        # Machines agreeing far more closely than sampling error allows share one vote. Their
        # honest law needs the information's shape when it is used (complete-data chi2 would
        # overstate the df of overlapping slots and merge honest machines): from round 1 on.
        if joint is not None or not use_information:
            feats = _vote_features(w[alive_idx], mu[alive_idx], test_cov[alive_idx], present[alive_idx], ref_w,
                                   ref_mu, test_ref_cov, parts)
            # Without the information every df of a part is one unit eigenvalue of its law (a
            # constrained model's covariance features span only its per-component df).
            lam = (np.ones(k * sum(dfs[p] for p in parts)) if joint is None else
                   np.concatenate([np.clip(np.linalg.eigvals(joint[p]).real, 0.0, None) for p in parts]))
            feats *= np.sqrt(n_base[alive_idx] / (1.0 if server else unit))[:, None]
            labels = _vote_groups(feats, lam, level, exact)
            cal.votes = _votes_of(labels, alive_idx, m)
        if shared_df > 0:
            # The per-slot tests do not see the shared parameters: machines whose shared parameters
            # fail against the median centre stay out of the mean centre.
            shared, cut_shared = _shared_test(model, view, alignment, present, n_test / (1.0 if server else unit),
                                              ref_w, test_ref_cov, cal.votes, shared_alpha, shared_df)
            for i, value in shared.items():
                if value > cut_shared:
                    passed[i] = False
        median_ref = GaussianMixtureParams._from_core(ref_w, ref_mu, ref_cov)
        # With server sizes the mean is size-weighted: a vote-weighted mean errs like its small
        # sites, and a site of 20,000 tested at its own size against it would fail for the
        # centre's error, not its own. Equal sizes: the vote-weighted mean.
        honest_w = ~_weight_corrupt(stats, cut_raw)
        ref_w, ref_mu, ref_cov = _moment_centre(w, mu, cov, passed, cal.votes * size_weight, median_ref,
                                                passed & honest_w[:, None])
    test_ref_cov, test_cov, test_logdet = _model_view(model, constrained, ref_cov, cov, logdet, present)
    stats, passed, inflation, unit, n_test = _test(w, mu, test_cov, test_logdet, n_base, ref_w, ref_mu, test_ref_cov,
                                                   dfs, parts, cut_raw, cal, present, joint, fixed_unit=unit)
    stats, passed, inflation, unit, n_test = _reweighted_test(w, mu, test_cov, test_logdet, n_base, ref_w, ref_mu,
                                                              test_ref_cov, dfs, parts, cut_raw, cal, present, joint,
                                                              (stats, passed, inflation, unit, n_test))
    # From here on the estimates are read as screened; the sites' own go to finish() (claims, proportions).
    originals, mixtures = mixtures, view
    merged = [f"{i}: {' + '.join(map(str, g))}" for i in range(m) for g in merges[i]]
    if merged:
        notes.append(
            "Free proportions: components a site split over one slot were merged (moment match) before the "
            "tests, and the decisions number the merged estimate's components (site: original components) "
            + "; ".join(merged) + "."
        )
    reference = GaussianMixtureParams._from_core(ref_w, ref_mu, ref_cov)
    calibrated_n = math.nan if server else 1.0 / unit
    # Pool weights: server sizes as given; otherwise equal, and a claim below the calibrated
    # size over the misspecification allowance only shrinks its machine's weight.
    pool_size, claim_cap = (n, math.nan) if server else _claimed_pool_sizes(n, cal.votes, unit)
    pool_weight = np.where(alive, pool_size, 0.0) * cal.votes
    if math.isfinite(claim_cap):
        notes.append(
            f"The claimed sizes weigh the pool, each capped at {CLAIM_CAP:g}x the median claim "
            f"({claim_cap:.4g}); a machine without a claim weighs as the median claim."
        )
    groups = [alive_idx[labels == g].tolist() for g in np.unique(labels) if np.sum(labels == g) > 1]
    if groups:
        notes.append(
            "Machines " + "; ".join(", ".join(map(str, g)) for g in groups) + " agree far more closely than "
            "sampling error allows (or are copies): each group counts as one vote and weighs one machine."
        )
    vote_mass = float(cal.votes.sum())
    majority = math.floor(vote_mass / 2.0 + 1e-9) + 1

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
    # A machine that failed a per-component test at the Bonferroni level is, almost surely, not
    # an honest one: its other components must look clean at an ordinary level, not merely fall
    # inside the family-wise cut-off (a coalition keeps its other components just inside it).
    suspect_cut = {p: _chi2("isf", _SUSPECT_LEVEL, dfs[p]) for p in parts}
    for i in alive_idx:
        if not (present[i] & ~passed[i]).any():
            continue
        for j in np.flatnonzero(kept[i]):
            for p in parts:
                if stats[p][i, j] > suspect_cut[p]:
                    kept[i, j] = False
                    decisions.append(Decision(int(i), int(alignment[i, j]), j, f"suspect {p}",
                                              float(stats[p][i, j]), suspect_cut[p]))
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
    # In the units of the other tests: without server sizes the statistics at n = 1 over the calibrated scale.
    n_machine_tests = len(parts) + (1 if shared_df > 0 else 0)
    alpha_machine = level / (m_alive * n_machine_tests)
    if shared_df > 0:
        shared, cut_shared = _shared_test(model, mixtures, alignment, kept, n_test / (1.0 if server else unit),
                                          ref_w, test_ref_cov, cal.votes, alpha_machine, shared_df)
        for i, value in shared.items():
            machine_stat[i] = np.nansum([machine_stat[i], value])
            if kept[i].any() and value > cut_shared:
                kept[i] = False
                decisions.append(Decision(i, None, None, "machine covariance", value, cut_shared))
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
                laws[key] = (_chi2("ppf", _CALIBRATION_QUANTILE, df_i), _chi2("isf", alpha_machine, df_i))
            else:
                block = joint[p].shape[0] // k
                # The statistic divides each slot's terms by that slot's factor: scale A's rows. A V is
                # the law at n; without server sizes the statistics are computed at n = 1 and the
                # factor holds the unit scale 1 / n itself: only its excess over the unit widens the law.
                factor = np.full(len(slots_i), weight_scale[i]) if p == "weight" else inflation[p][list(slots_i)]
                lam = _joint_eigenvalues(joint[p], slots_i, block, (1.0 if server else unit) / factor)
                laws[key] = (_weighted_chi2_isf(1.0 - _CALIBRATION_QUANTILE, lam),
                             _weighted_chi2_isf(alpha_machine, lam))
        vals = np.array([v / laws[keys[i]][0] for i, (v, _, _) in sums[p].items()])
        u = cal.votes[np.fromiter(sums[p], dtype=np.intp)]
        s_rel = min(max(1.0, float(_weighted_quantile(vals, u, _CALIBRATION_QUANTILE))), _EXCESS_CEILING)
        for i, (value, _, _) in sums[p].items():
            cut_i = s_rel * laws[keys[i]][1]
            if kept[i].any() and value > cut_i:
                kept[i] = False
                decisions.append(Decision(i, None, None, f"machine {p}", value, cut_i))
    # Every slot keeps a majority of the machines: restore the least deviant if the tests took more.
    relaxed = []
    total = sum(stats[p] for p in parts)
    for j in range(k):
        if cal.votes[kept[:, j]].sum() >= majority - 1e-9:
            continue
        rows = np.flatnonzero(present[:, j])
        order = rows[np.argsort(total[rows, j], kind="stable")]
        reached = np.cumsum(cal.votes[order]) >= majority - 1e-9
        restore = order if not reached.any() else order[: int(np.argmax(reached)) + 1]
        kept[restore, j] = True
        relaxed.append(j)
    if relaxed:
        notes.append(
            f"Slot(s) {', '.join(map(str, relaxed))}: the tests rejected a majority of machines; "
            "the least deviant majority was kept (the calibration may not hold, e.g. a wrong K)."
        )

    contrast, total_votes = _Contrast("off"), vote_mass
    if consistency_check:
        inside = _contrast_set(distances, full, m, centre, neutralised(mixtures) if free else mixtures, kept,
                               w, mu, cov, pool_weight, median_ref, free)
        contrast, kept, total_votes = _apply_consistency(
            inside, kept, w, mu, test_cov, pool_weight, n_test, unit, inflation, joint, parts, dfs, ref_w,
            ref_mu, test_ref_cov, level, cal.votes, vote_mass, decisions, notes, cal.own_counts, test_logdet,
            server)
    slot_w = _pooled_weights(w, kept, pool_weight, decisions, notes, ref_w, inflation.get("weight"), n_test)
    mixture, red, support = _aggregate(mixtures, components, alignment, kept, pool_weight, k, tol, max_iter, n_threads,
                                       cal.votes, total_votes, notes, model, slot_w)
    retained = np.flatnonzero(kept.any(axis=1))
    infl = {p: inflation[p] for p in parts}
    screening = Screening(
        decisions=tuple(decisions), reference=reference, alignment=alignment, kept=kept,
        statistics={p: stats[p] for p in parts}, degrees_of_freedom={p: dfs[p] for p in parts}, inflation=infl,
        cutoffs=cut_raw, machine_statistic=machine_stat, n_samples=np.where(alive, n, np.nan),
        n_samples_known=server, level=float(level), relaxed_slots=tuple(relaxed), notes=tuple(notes),
        votes=np.where(alive, cal.votes, 0.0), vote_groups=tuple(tuple(g) for g in groups),
        size_source=size_source, calibrated_n=calibrated_n, test_n=np.where(alive, n_test, np.nan),
        claim_cap=claim_cap, pool_sizes=np.where(alive, pool_size, np.nan), estimates=tuple(mixtures),
        consistency=contrast.status, consistency_statistic=contrast.statistic,
        consistency_p_value=contrast.p_value, consistency_machines=contrast.machines,
    )
    result = RobustAggregationResult(
        mixture=mixture, method="robust_dfmr", n_machines=m, retained=retained, center=centre,
        distances=None, objective=None if red is None else red.objective,
        n_iter=0 if red is None else red.n_iter, converged=True if red is None else red.converged,
        reduction=red, n_components_requested=k, screening=screening, support=support,
        n_samples=np.where(alive, pool_size, 0.0) if server or math.isfinite(claim_cap) else None,
    )
    # Honest-looking under "shared": kept, or dropped for their weights only (a case mix of their own).
    other = {x.machine for x in decisions if x.rule not in ("weight", "machine weight")}
    honest = np.array([i for i in alive_idx if kept[i].any() or i not in other], dtype=np.intp)
    return finish(result, originals, site_weights, n_samples, pool_weight=pool_weight, honest=honest)


@dataclass(frozen=True)
class _Contrast:
    """The outcome of :func:`_consistency`: the status, the statistic, its p-value, the contrasted machines."""

    status: str
    statistic: float = math.nan
    p_value: float = math.nan
    machines: tuple[int, ...] = ()
    cutoff: float = math.nan  # the statistic's value at which the adjusted p-value is ``level``
    excess: float = math.nan  # the outside machines' scatter over the law, >= 1: the statistic is divided by it


def _contrast_set(distances: np.ndarray | None, full: list[int], m: int, centre: int | None,
                  mixtures: list[GaussianMixtureParams], kept: np.ndarray, w: np.ndarray, mu: np.ndarray,
                  cov: np.ndarray, weight: np.ndarray, fallback: GaussianMixtureParams,
                  free: bool = False) -> np.ndarray | None:
    """The machines inside DFMR's radius around the pool of DFMR's own machines: mask of shape (m,),
    or None without DFMR's filter (fewer than half of the votes on machines with K components).

    The radius is DFMR's own, from the core's filter exactly (:func:`dfmr.filtering.filter_row` on the
    COAT centre machine's row of the pairwise L2 distances, ``kappa = m ** 0.1`` for the m estimates
    given): ``kappa`` times the median distance from the machine whose median distance is smallest,
    the scale a 30-40% coalition moves least (a coalition far out does not lengthen an honest
    machine's median distance), and DFMR's centre machine is one a coalition of less than half cannot
    be (its own median distance is to the honest machines). A ball around the screening's median
    centre with a radius from that centre's distances let coalitions that pulled the median sit inside
    (issue 20's black-box search, 3.58x at rate 0.3). Around the centre *machine* itself the ball is
    lopsided by that machine's sampling error: the honest machines it drops lie on the far side and
    their mean differs from the kept ones' by more than sampling error (no attack: 1-3 fallbacks in 40
    federations of 6 and 20, adjusted p down to 2e-8). So the ball is re-centred once, on the pool
    (slot-wise, ``weight``-weighted) of the kept components of the machines DFMR keeps, whose error is
    that of a mean over them. Under free site proportions (``free``) it sees means and covariances only
    (``mixtures`` neutralised by the caller).
    """
    if distances is None or len(full) < 2 or centre is None or centre not in full:
        return None
    row_of_centre = full.index(centre)
    decision = filter_row(row_of_centre, distances[row_of_centre], default_threshold(m))
    dfmr_in = np.zeros(m, dtype=bool)
    dfmr_in[np.asarray(full, dtype=np.intp)[decision.retained]] = True
    c_w, c_mu, c_cov = _moment_centre(w, mu, cov, kept & dfmr_in[:, None], weight, fallback)
    if free:
        c_w = np.full(c_w.size, 1.0 / c_w.size)
    pool = GaussianMixtureParams._from_core(c_w, c_mu, c_cov)
    row = np.array([l2_distance(pool, mixtures[i]) for i in full])
    inside = np.zeros(m, dtype=bool)
    inside[np.asarray(full, dtype=np.intp)[row <= decision.cutoff]] = True
    return inside


def _consistency(
    kept: np.ndarray, inside: np.ndarray, w: np.ndarray, mu: np.ndarray, cov: np.ndarray, weight: np.ndarray,
    votes: np.ndarray, n_test: np.ndarray, unit: float, inflation: dict[str, np.ndarray],
    joint: dict | None, parts: list[str], dfs: dict[str, int], ref_w: np.ndarray, ref_mu: np.ndarray,
    ref_cov: np.ndarray, level: float, own_counts: bool, logdet: np.ndarray, sized: bool = True,
) -> _Contrast:
    """Hausman-type test of the screened aggregate against the one over the machines DFMR also keeps.

    Per slot j, ``O`` are the kept components of the machines outside DFMR's radius and ``B`` those
    inside. Under H0 (every kept component honest) each is the truth plus sampling error of covariance
    ``s V / n_i`` (``V`` the per-observation inverse information, ``s`` the tests' scale: the excess
    over the law with server sizes, the calibrated ``1 / n`` without; ``n_i`` the size machine i is
    tested at, which a claim can only raise), so the pool-weighted means of the two groups differ by
    an error of covariance ``s V (c_O + c_B)``, ``c_X = sum_X u_i^2 / n_i / (sum_X u_i)^2`` (``u`` the
    pool weights). This is the efficient-estimator contrast ``Var(A - B) = Var(B) - Var(A)`` with A
    the pool of both groups: a coalition each of whose members sits inside its own cut-off, all off
    in one direction, is a contrast of sqrt(|O|) times their shift. The statistic is the tests' own
    (:func:`_raw_statistics` of O's mean against B's at ``n = 1 / (c_O + c_B)``), whose honest law is
    ``s sum_l lambda_l chi2_1`` (the information's eigenvalues, as the per-slot tests) or, beyond the
    information's size, chi2 after the parts' factors. Every slot with both groups is tested, and all
    of them jointly (the joint ``A V`` of those slots); Bonferroni over these tests at ``level``.
    ``own_counts``: free site proportions, a component stands for the points behind it (``n w_ik``).
    ``sized`` (server sizes): the scale ``s`` is the screening's excess (a lower quartile within [1, 4]);
    otherwise the calibrated ``1 / n`` is replaced by the one the machines inside set (:func:`_inside_scale`),
    when tighter: a coalition outside lifts the screening's median and loosens every test (issue 20's search:
    calibrated n 373 for sites of 1,000). The outside machines' excess scatter widens the variance
    (:func:`_orthogonal_excess`).
    """
    outside = kept & ~inside[:, None]
    machines = tuple(int(i) for i in np.flatnonzero(outside.any(axis=1)))
    within = kept & inside[:, None]
    k, d = w.shape[1], mu.shape[2]
    slots = [j for j in range(k) if outside[:, j].any() and within[:, j].any()]
    if not slots or len(machines) < _MIN_CONTRAST_MACHINES:
        return _Contrast("no contrast", machines=machines)
    # O's pooled component per slot (a pseudo-machine) and B's (the reference); other slots: the screening's.
    o_w, o_mu, o_cov = np.full((1, k), np.nan), np.full((1, k, d), np.nan), np.full((1, k, d, d), np.nan)
    b_w, b_mu, b_cov = ref_w.copy(), ref_mu.copy(), ref_cov.copy()
    spread = np.zeros(k)
    for j in range(k):
        for group, is_o in ((outside[:, j], True), (within[:, j], False)):
            if not group.any() or (is_o and j not in slots):
                continue
            u = weight[group] / weight[group].sum()
            gw, gmu, gcov = u @ w[group, j], u @ mu[group, j], np.einsum("r,rab->ab", u, cov[group, j])
            if is_o:
                o_w[0, j], o_mu[0, j], o_cov[0, j] = gw, gmu, gcov
            else:
                b_w[j], b_mu[j], b_cov[j] = gw, gmu, gcov
            if j in slots:
                spread[j] += float(np.sum(u**2 / n_test[group]))
    o_logdet = np.full((1, k), np.nan)
    o_logdet[0, slots] = np.linalg.slogdet(o_cov[0, slots])[1]
    raw = _raw_statistics(o_w, o_mu, o_cov, o_logdet, np.ones(1), b_w, b_mu, b_cov, own_counts)
    n_eff = np.zeros(k)
    n_eff[slots] = 1.0 / spread[slots]
    # Per slot: the honest law of a statistic at the scale s = 1 (weights of chi2_1 terms, or chi2's df),
    # and the statistic's standardisation (over s, or over the parts' factors).
    if joint is not None:
        blocks = {p: joint[p].shape[0] // k for p in parts}
        laws: list = [np.concatenate([_joint_eigenvalues(joint[p], (j,), blocks[p]) / (
            (1.0 - ref_w[j]) if p == "weight" else 1.0) for p in parts]) for j in range(k)]

        def standard(stats: dict[str, np.ndarray], j) -> np.ndarray:
            return sum(stats[p][..., j] for p in parts) / unit

    else:
        df = sum(dfs[p] for p in parts)
        laws = [df] * k

        def standard(stats: dict[str, np.ndarray], j) -> np.ndarray:
            return sum(stats[p][..., j] / inflation[p][j] for p in parts)

    # The scale: without server sizes the calibrated 1 / n is a median over every machine's votes, which a
    # coalition far out lifts (its statistics sit above the median; those against a centre it pulled too):
    # here it is the median of the votes with every machine outside DFMR's radius counted above it, of
    # the statistics against B (the pool of DFMR's machines): what the honest majority inside sets.
    # With server sizes the screening's excess (a lower quartile within [1, 4]) is kept.
    scale = unit if sized else _inside_scale(kept, inside, w, mu, cov, logdet, n_test, votes, b_w, b_mu,
                                                          b_cov, laws, joint is not None, parts, own_counts, unit)

    def scaled(stats: dict[str, np.ndarray], j) -> np.ndarray:
        return standard(stats, j) * (unit / scale)

    # The outside machines err unequally: honest extremes beyond the radius (selected for a large error)
    # next to a coalition's tight members. Each is weighed by the inverse of its own excess (its scatter
    # orthogonal to the common shift over the law's, within [1, 4]): the pool's variance is then
    # s / sum(u_i / v_i)-type instead of the unweighted pool's, widened by its noisiest member.
    v = _orthogonal_excess(outside, slots, w, mu, cov, weight, n_test, scale, b_w, b_mu, b_cov, laws, parts,
                           per_machine=True)
    spread = np.zeros(k)
    for j in slots:
        grp = outside[:, j]
        u = weight[grp] / v[grp]
        u = u / u.sum()
        o_w[0, j], o_mu[0, j], o_cov[0, j] = u @ w[grp, j], u @ mu[grp, j], np.einsum("r,rab->ab", u, cov[grp, j])
        spread[j] = float(np.sum(u**2 * v[grp] / n_test[grp]))
        grp = within[:, j]
        u = weight[grp] / weight[grp].sum()
        spread[j] += float(np.sum(u**2 / n_test[grp]))
    o_logdet[0, slots] = np.linalg.slogdet(o_cov[0, slots])[1]
    raw = _raw_statistics(o_w, o_mu, o_cov, o_logdet, np.ones(1), b_w, b_mu, b_cov, own_counts)
    n_eff[slots] = 1.0 / spread[slots]
    # Along the common shift the honest machines' scatter may exceed the law's share of it (the dominant
    # error mode of an overlapping mixture: honest machines beyond the radius share it, all on one side of
    # it in 4 of 40 clean federations of 20). The machines inside say by how much: their mean square along
    # the shift over the law's, within [1, 4], widens the contrast; a coalition outside cannot move it.
    excess = _orthogonal_excess(outside, slots, w, mu, cov, weight, n_test, scale, b_w, b_mu, b_cov, laws, parts,
                                along_inside=within)
    tests: list[tuple[float, float, np.ndarray | int]] = []  # (statistic over its scale, p-value, law)
    for j in slots:
        t = float(scaled(raw, j)[0]) * n_eff[j] / excess
        tests.append((t, _weighted_chi2_sf(t, laws[j]) if joint is not None else float(_chi2("sf", t, laws[j])),
                      laws[j]))
    if len(slots) > 1:
        t = sum(float(scaled(raw, j)[0]) * n_eff[j] for j in slots) / excess
        if joint is not None:
            lam = np.concatenate([_joint_eigenvalues(joint[p], tuple(slots), blocks[p], (
                1.0 / (1.0 - ref_w[slots]) if p == "weight" else None)) for p in parts])
            tests.append((t, _weighted_chi2_sf(t, lam), lam))
        else:
            tests.append((t, float(_chi2("sf", t, df * len(slots))), df * len(slots)))
    t, p, law = min(tests, key=lambda x: x[1])
    alpha = level / len(tests)
    cut = _chi2("isf", alpha, law) if isinstance(law, int) else _weighted_chi2_isf(alpha, law)
    return _Contrast("rejected" if p * len(tests) < level else "passed", t, min(1.0, p * len(tests)), machines,
                     float(cut), excess)


def _inside_scale(kept, inside, w, mu, cov, logdet, n_test, votes, b_w, b_mu, b_cov, laws, has_joint, parts,
                  own_counts, unit) -> float:
    """The contrast's scale ``1 / n`` without server sizes, from the machines inside DFMR's radius.

    The statistics of every kept component against B (the pool of the machines inside), over their
    honest law's median: the vote median of these ratios, every component outside the radius counted
    above it (a coalition outside cannot lift it; honest extremes outside are above it anyway), at its
    upper confidence bound as the screening's scale (:func:`_test`), never above that scale.
    """
    k = w.shape[1]
    raw = _raw_statistics(w, mu, cov, logdet, n_test, b_w, b_mu, b_cov, own_counts)
    total = sum(raw[p] for p in parts)
    mid = np.array([_weighted_chi2_isf(0.5, laws[j]) if has_joint else _chi2("ppf", 0.5, laws[j]) for j in range(k)])
    ratio = total / mid[None, :]
    use = kept & inside[:, None] & np.isfinite(ratio)
    u = np.broadcast_to(votes[:, None], ratio.shape)
    mass = float(u[kept & np.isfinite(ratio)].sum())
    vals, wts = ratio[use], u[use]
    if vals.size == 0 or mass <= 0.0:
        return unit
    order = np.argsort(vals, kind="stable")
    cum = np.cumsum(wts[order])
    at = int(np.searchsorted(cum, 0.5 * mass - 1e-12))
    value = float(vals[order][min(at, vals.size - 1)])
    df_sum = float(np.mean([np.sum(laws[j]) if has_joint else laws[j] for j in range(k)]))
    x_q = _chi2("ppf", 0.5, df_sum)
    rel_sd = math.sqrt(0.25 / max(mass, 1.0)) / (x_q * _chi2("pdf", x_q, df_sum))
    value *= 1.0 + 2.0 * rel_sd
    if not (np.isfinite(value) and value > 0.0):
        return unit
    return min(value, unit)


def _orthogonal_excess(outside, slots, w, mu, cov, weight, n_test, scale, b_w, b_mu, b_cov, laws, parts,
                       per_machine: bool = False, along_inside: np.ndarray | None = None) -> float | np.ndarray:
    """The outside machines' excess scatter around their pool ORTHOGONAL to their common shift, over its
    law (>= 1, at most ``_EXCESS_CEILING``).

    The machines outside DFMR's radius are selected as extreme and honest estimates are skewed (a
    variance, a weight, overlapping means), so their pooled mean errs by more than the sampling law says;
    their scatter around it says by how much (Hotelling's two-sample idea) and widens the contrast's
    variance. Only the scatter orthogonal to the shift of their pool from B counts: colluders sent apart
    along their own shift, or honest machines on the far side of a coalition, would otherwise buy the
    coalition its own variance. In the tests' whitened coordinates (:func:`_vote_features`, the weights
    over ``sqrt(1 - w_k)`` as the binomial statistic), each machine at its test size over the contrast's
    ``scale``; the law's expectation loses one direction of each slot's. One machine outside: no widening.
    ``per_machine``: each machine's own ratio (shape (m,), 1 for the machines inside), within the same bounds.
    ``along_inside`` (a mask of kept components inside the ball): instead, the scatter ALONG the common shift
    of those machines around B, over the law's share of that direction (the widening along it, >= 1).
    """
    members = np.flatnonzero(outside[:, slots].any(axis=1))
    if members.size < 2:
        return np.ones(outside.shape[0]) if per_machine else 1.0
    k, d = w.shape[1], mu.shape[2]

    def features(mask: np.ndarray) -> np.ndarray:
        """The vote features of the components in ``mask``, the weights' columns (the last k) over
        ``sqrt(1 - w_k)``."""
        f = _vote_features(np.where(mask, w, np.nan), mu, cov, mask, b_w, b_mu, b_cov, parts)
        if "weight" in parts:
            f[:, f.shape[1] - k:] /= np.sqrt(1.0 - b_w)[None]
        return f

    use = np.zeros_like(outside)
    use[:, slots] = outside[:, slots]
    feats = features(use)
    ref = _vote_features(b_w[None], b_mu[None], b_cov[None], np.ones((1, k), dtype=bool), b_w, b_mu, b_cov, parts)[0]
    col_slot = [np.repeat(np.arange(k), d)]
    if "covariance" in parts:
        col_slot.append(np.repeat(np.arange(k), d * (d + 1) // 2))
    if "weight" in parts:
        col_slot.append(np.arange(k))
        ref[ref.size - k:] /= np.sqrt(1.0 - b_w)
    col_slot = np.concatenate(col_slot)
    dev = np.zeros((members.size, feats.shape[1]))
    shift = np.zeros(feats.shape[1])
    expected, law = 0.0, np.zeros(members.size)
    for j in slots:
        cols = col_slot == j
        grp = outside[:, j]
        u = weight[grp] / weight[grp].sum()
        centre = u @ feats[grp][:, cols]
        shift[cols] = centre - ref[cols]
        rows = np.flatnonzero(grp[members])
        dev[np.ix_(rows, np.flatnonzero(cols))] = (feats[members[rows]][:, cols] - centre) * np.sqrt(
            n_test[members[rows]] / scale)[:, None]
        # Removing one direction out of the slot's columns removes its share of the law on average.
        share = float(np.sum(laws[j])) * (1.0 - 1.0 / max(int(cols.sum()), 2))
        law[rows] += share
        expected += share * rows.size
    norm = float(np.linalg.norm(shift))
    if norm > 0.0:
        g = shift / norm
        dev = dev - np.outer(dev @ g, g)
    scatter = np.sum(dev**2, axis=1)
    if along_inside is not None:
        # Along the shift: the mean square of the projections of the machines INSIDE (honest, whatever
        # the coalition outside does) over the law's share of that direction.
        rows = np.flatnonzero(along_inside[:, slots].any(axis=1))
        if norm == 0.0 or rows.size < 2:
            return 1.0
        inner = np.zeros_like(along_inside)
        inner[:, slots] = along_inside[:, slots]
        fin = features(inner)
        proj = ((fin[rows] - ref[None]) * np.sqrt(n_test[rows] / scale)[:, None]) @ g
        per_direction = np.zeros(feats.shape[1])
        for j in slots:
            cols = col_slot == j
            per_direction[cols] = float(np.sum(laws[j])) / cols.sum()
        expect = float(np.sum(g**2 * per_direction))
        return float(np.clip(np.mean(proj**2) / expect, 1.0, _EXCESS_CEILING)) if expect > 0.0 else 1.0
    if per_machine:
        ratio = np.ones(outside.shape[0])
        ratio[members] = np.where(law > 0.0, scatter / np.where(law > 0.0, law, 1.0), 1.0) * (
            members.size / (members.size - 1.0))
        return np.clip(ratio, 1.0, _EXCESS_CEILING)
    if expected <= 0.0:
        return 1.0
    return min(max(1.0, float(scatter.sum()) / expected * members.size / (members.size - 1.0)), _EXCESS_CEILING)


def _apply_consistency(inside, kept, w, mu, cov, pool_weight, n_test, unit, inflation, joint, parts, dfs,
                       ref_w, ref_mu, ref_cov, level, votes, vote_mass, decisions, notes, own_counts,
                       logdet, sized=True):
    """Run :func:`_consistency`; if it rejects, keep only the machines inside DFMR's radius.

    Returns the outcome, the kept mask and the votes the aggregate's majority rule counts (those of
    the machines inside the radius when they alone are pooled). The machines dropped are recorded
    (rule ``consistency``, the contrast's statistic and cut-off) and the notes say why.
    """
    if inside is None:
        return _Contrast("no contrast"), kept, vote_mass
    # At the machine-level tests' family-wise level: the machines outside the radius are selected as extreme.
    alpha = level / max(int(np.count_nonzero(votes)), 1)
    contrast = _consistency(kept, inside, w, mu, cov, pool_weight, votes, n_test, unit, inflation, joint,
                            parts, dfs, ref_w, ref_mu, ref_cov, alpha, own_counts, logdet, sized)
    if contrast.status != "rejected":
        return contrast, kept, vote_mass
    restricted = kept & inside[:, None]
    if not (restricted.any(axis=0) | ~kept.any(axis=0)).all():
        notes.append("The consistency check rejected, but a slot has no kept component inside DFMR's radius: "
                     "the screened aggregate is returned.")
        return _Contrast("passed", contrast.statistic, contrast.p_value, contrast.machines, contrast.cutoff), kept, \
            vote_mass
    for i in contrast.machines:
        decisions.append(Decision(int(i), None, None, "consistency", contrast.statistic, contrast.cutoff))
    notes.append(
        f"Consistency check: the kept components of machines {', '.join(map(str, contrast.machines))} (outside "
        f"DFMR's radius) disagree with those inside it beyond sampling error (statistic {contrast.statistic:.4g}, "
        f"adjusted p-value {contrast.p_value:.3g} < {alpha:.3g}): the aggregate is over the machines inside the radius."
    )
    return contrast, restricted, float(votes[inside].sum())


@dataclass
class _Calibration:
    """What scales the tests: the machines' votes, the quantile, the scale's bounds, the claimed sizes.

    ``votes[i]`` is 1 / (size of machine i's group of near-identical estimates), 0 when dropped
    in hygiene. ``floors`` (server sizes only) hold every factor at 1 or more; ``ceiling`` bounds
    the machines' excess scatter over the sampling law. ``claims`` (no server sizes) are the
    sizes the estimates record, NaN where none.
    """

    votes: np.ndarray
    quantile: float
    floors: dict[str, float] | None
    ceiling: float
    claims: np.ndarray | None
    own_counts: bool = False  # free site proportions: test component (i, k) at n_i w_ik, not n_i w_k


def _votes_of(labels: np.ndarray, alive_idx: np.ndarray, m: int) -> np.ndarray:
    """Per machine: 1 / the size of its group (``labels`` over the alive machines), 0 when not alive."""
    votes = np.zeros(m)
    # Labels are positions among the alive machines (a group's first member).
    votes[alive_idx] = 1.0 / np.bincount(labels, minlength=labels.size)[labels]
    return votes


def _test(w, mu, cov, logdet, n_base, ref_w, ref_mu, ref_cov, dfs, parts, cut_raw, cal, present, joint,
          fixed_unit=None):
    """Inflation-corrected statistics, the pass mask, the factors, the unit scale and the test sizes.

    The factor of a part is an array over slots: slots differ in how much they overlap the
    others, so a factor pooled over slots under-corrects the most overlapped slot. With the
    information matrix (``joint``, see :func:`_information_inflation`) the honest law of slot
    j's statistic is ``sum_l lambda_jl chi2_1`` (eigenvalues of slot j's block of ``A V``:
    unequal when the component errs more in the direction of its neighbour); the factor maps
    that law's tail at the test's level onto the chi2 cut-off, times the machines' excess
    scatter over it (a vote-weighted quantile of the sum of the parts over its law: with server
    sizes at least 1 and at most ``cal.ceiling``; without, it is the scale ``1 / n`` itself).
    Without the information, the factor is the larger of the part's factor pooled over slots
    (steady) and the slot's own (a lower quantile of its m statistics), at most ``cal.ceiling``
    times the unit scale.

    Without server sizes, when the machines carrying a claimed size hold a majority of the
    votes, the vote median of the claims over ``ceiling`` bounds the calibrated size from below:
    an honest majority's claims say how loose the tests may be at most.

    ``n_base`` are the sizes the statistics are computed with (the server's, or 1). A claimed
    size tightens its machine's test: it is tested at ``max(1, claim / (ceiling x calibrated n))``
    times the base (the claim over the largest misspecification allowance), never looser.
    ``fixed_unit`` replaces the estimated scale: the final test against the mean of the passing
    components uses the scale estimated against the vote median (high breakdown), so a scale
    loosened by an attack cannot loosen itself further through the mean it let in.
    """
    raw = _raw_statistics(w, mu, cov, logdet, n_base, ref_w, ref_mu, ref_cov, cal.own_counts)
    k = w.shape[1]
    stats, inflation = {}, {}
    passed = present.copy()
    low = None if cal.floors is None else min(cal.floors.values())
    if joint is None:
        # The sum of the parts has many more df than a 1-df part, so its quantile is far steadier
        # with few machines; it is a floor under every part's own factor.
        unit = _inflation(sum(raw[p] for p in parts), sum(dfs[p] for p in parts), low, cal.votes, cal.quantile)
        if cal.floors is not None:
            unit = min(unit, cal.ceiling)
    else:
        lams = {}
        for p in parts:
            block = joint[p].shape[0] // k  # a slot's coordinates (vech: more than a constrained model's df)
            for j in range(k):
                lam = _joint_eigenvalues(joint[p], (j,), block)
                # The binomial statistic of one slot: 1 / (w (1 - w)) where the form has 1 / w.
                lams[p, j] = lam / (1.0 - ref_w[j]) if p == "weight" else lam
        # The machines' excess scatter over the information's law, from the sum of the parts
        # (many more df than a 1-df part: a far steadier quantile with few machines).
        lower = np.array([_weighted_chi2_isf(1.0 - cal.quantile,
                                             np.concatenate([lams[p, j] for p in parts])) for j in range(k)])
        ratio = sum(raw[p] for p in parts) / lower[None, :]
        ok = np.isfinite(ratio)
        u = np.broadcast_to(cal.votes[:, None], ratio.shape)[ok]
        unit = float(_weighted_quantile(ratio[ok], u, cal.quantile)) if ok.any() else 1.0
        if not (np.isfinite(unit) and unit > 0):
            unit = 1.0
        if cal.floors is not None:
            unit = min(max(unit, 1.0), cal.ceiling)
    if cal.floors is None:
        # The votes' median is a sample quantile: calibrate at its upper confidence bound (two
        # asymptotic sd, sqrt(q (1 - q) / N) / (x_q f(x_q)) relative, N the votes times the slots,
        # f the chi2 density of a slot's summed df), never tighter than the machines can tell.
        df_sum = sum(dfs[p] for p in parts)
        x_q = _chi2("ppf", cal.quantile, df_sum)
        n_values = max(float(cal.votes.sum()) * k, 1.0)
        rel_sd = math.sqrt(cal.quantile * (1.0 - cal.quantile) / n_values) / (x_q * _chi2("pdf", x_q, df_sum))
        unit *= 1.0 + 2.0 * rel_sd
        if cal.claims is not None:
            has = np.isfinite(cal.claims) & (cal.votes > 0)
            if cal.votes[has].sum() > 0.5 * cal.votes.sum():
                unit = min(unit, cal.ceiling / float(_weighted_quantile(cal.claims[has], cal.votes[has], 0.5)))
    if fixed_unit is not None:
        unit = fixed_unit
    top = cal.ceiling * (1.0 if cal.floors is not None else unit)
    for p in parts:
        if joint is None:
            floor_p = None if cal.floors is None else cal.floors[p]
            part = max(_inflation(raw[p], dfs[p], floor_p, cal.votes, _CALIBRATION_QUANTILE), unit)
            # A slot's own lower quantile of m values is steady only with a few df; for the 1-df
            # weights an attacker holding a slot's upper half could move it several-fold.
            factor = np.full(k, part) if dfs[p] < _SLOT_FACTOR_MIN_DF else np.maximum(
                part, _slot_inflations(raw[p], dfs[p], cal.votes, _CALIBRATION_QUANTILE))
            factor = np.minimum(factor, max(top, unit))
        else:
            alpha = _chi2("sf", cut_raw[p], dfs[p])
            tail = np.array([_weighted_chi2_isf(alpha, lams[p, j]) for j in range(k)])
            factor = unit * tail / cut_raw[p]
        inflation[p] = factor
    tighten = np.ones_like(n_base)
    if cal.claims is not None:
        tighten = np.fmax(1.0, cal.claims * unit / cal.ceiling)
    for p in parts:
        with np.errstate(divide="ignore", invalid="ignore"):  # a factor 0: the point-mass law above
            stats[p] = raw[p] * tighten[:, None] / inflation[p][None, :]
        passed &= ~(stats[p] > cut_raw[p])
    return stats, passed, inflation, unit, n_base * tighten


def _reweighted_test(w, mu, cov, logdet, n_base, ref_w, ref_mu, ref_cov, dfs, parts, cut_raw, cal, present, joint,
                     first):
    """The final test rerun at the scale of the machines it passed whole, when that scale is tighter.

    The scale is a vote median over every machine: 40% of the votes, each far out in one part
    only (the weights of the paper's weight attack), move it to the honest 5/6 quantile (the
    calibrated size at 0.6 of the truth, m = 20, K = 3, d = 3), and a liar a few standard errors
    out then passes. The machines that failed a test at the family-wise level are almost surely
    not honest (probability ``level``); the median over the others is the honest one, moved only
    by the liars that passed (reweighting after a high-breakdown start, as reweighted MCD does).
    It only tightens: taking it when looser would let a coalition loosen the tests by failing
    on purpose. With nobody failing it is the first scale exactly, and so are the results. At
    most 40% of the remaining votes are liars' whatever they send, so the honest quantiles that
    bound the median (1/6 and 5/6) are those of the first scale: a coalition that sends values
    below the honest ones can pull it no lower than it could pull the first.

    ``first`` is :func:`_test`'s output at the first scale; returns it, or the rerun's.
    """
    _, passed, _, unit, _ = first
    clean = (passed | ~present).all(axis=1) & present.any(axis=1)
    votes = np.where(clean, cal.votes, 0.0)
    if votes.sum() == cal.votes.sum() or votes.sum() <= 0.5 * cal.votes.sum():
        return first
    inner = _Calibration(votes=votes, quantile=cal.quantile, floors=cal.floors, ceiling=cal.ceiling,
                         claims=cal.claims, own_counts=cal.own_counts)
    rerun = _test(w, mu, cov, logdet, n_base, ref_w, ref_mu, ref_cov, dfs, parts, cut_raw, inner, present, joint)
    if not rerun[3] < unit:
        return first
    return rerun


def _in_model(mixture: GaussianMixtureParams, model: CovarianceModel) -> GaussianMixtureParams:
    """``mixture`` if it claims ``model``, else the mixture with its covariances projected onto the model."""
    if mixture.covariance_type == model.name:
        return mixture
    return GaussianMixtureParams._from_core(mixture.weights, mixture.means, model.project(mixture.covariances),
                                            covariance_type=model.name)


def _model_view(
    model: CovarianceModel, constrained: bool, ref_cov: np.ndarray, cov: np.ndarray, logdet: np.ndarray,
    present: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference and aligned covariances the per-slot tests compare, with their log-dets.

    Full model: as they are. A constrained model: the reference projected onto the model, and
    every machine's components with their own per-component parts and the reference's shared
    parts (:meth:`~dfmr.covariance.CovarianceModel.combine`), so that the per-slot covariance
    statistic sees only the per-component parameters (its df ``covariance_df(d)[0]``).
    """
    if not constrained:
        return ref_cov, cov, logdet
    ref = model.project(ref_cov)
    out, out_logdet = cov.copy(), logdet.copy()
    for i in np.flatnonzero(present.any(axis=1)):
        slots = np.flatnonzero(present[i])
        out[i, slots] = model.combine(cov[i, slots], ref[slots])
        out_logdet[i, slots] = np.linalg.slogdet(out[i, slots])[1]
    return ref, out, out_logdet


def _shared_test(
    model: CovarianceModel, mixtures: list[GaussianMixtureParams], alignment: np.ndarray, use: np.ndarray,
    n_test: np.ndarray, ref_w: np.ndarray, ref_cov: np.ndarray, votes: np.ndarray, alpha: float, df: int,
) -> tuple[dict[int, float], float]:
    """The shared covariance statistics (:func:`_shared_statistics`) of the machines with a component in
    ``use``, and their cut-off: the chi2 quantile at ``alpha`` with their df, widened by the machines' own
    scatter over the law (a vote-weighted lower quantile, within [1, ceiling]) as the other machine-level tests.
    """
    shared = _shared_statistics(model, mixtures, alignment, use, n_test, ref_w, ref_cov)
    if not shared:
        return shared, math.inf
    vals = np.array([v / _chi2_ppf(_CALIBRATION_QUANTILE, df) for v in shared.values()])
    u = votes[np.fromiter(shared, dtype=np.intp)]
    s_rel = min(max(1.0, float(_weighted_quantile(vals, u, _CALIBRATION_QUANTILE))), _EXCESS_CEILING)
    return shared, s_rel * _chi2("isf", alpha, df)


def _shared_statistics(
    model: CovarianceModel, mixtures: list[GaussianMixtureParams], alignment: np.ndarray, kept: np.ndarray,
    n_test: np.ndarray, ref_w: np.ndarray, ref_cov: np.ndarray,
) -> dict[int, float]:
    """Per machine with kept components: the likelihood-ratio statistic of its shared covariance parameters.

    ``sum_k n_i w_k [tr(S_k^-1 C_ik) - d - log det(S_k^-1 C_ik)]`` over its aligned slots, ``C`` the
    reference's covariances with the machine's shared parts (:meth:`~dfmr.covariance.CovarianceModel.combine`),
    ``S`` the reference projected onto the model (``ref_cov``): chi2 with ``covariance_df(d)[1]`` df.
    """
    d = ref_cov.shape[-1]
    out: dict[int, float] = {}
    for i in np.flatnonzero(kept.any(axis=1)):
        slots = np.flatnonzero(alignment[i] >= 0)
        own = mixtures[i].covariances[alignment[i, slots]]
        C = model.combine(ref_cov[slots], own)
        ratio = np.linalg.solve(ref_cov[slots], C)
        dev = np.trace(ratio, axis1=1, axis2=2) - d - np.linalg.slogdet(ratio)[1]
        out[int(i)] = float(n_test[i] * np.sum(ref_w[slots] * np.maximum(dev, 0.0)))
    return out


def _huber_location(x: np.ndarray, se: np.ndarray, v: np.ndarray, c: float = _HUBER_C) -> tuple[float, np.ndarray]:
    """Huber's M-estimate of the common location of ``x`` (standard errors ``se``; ``v`` the prior weights,
    proportional to ``1 / se^2`` for honest values), and each value's final weight ``min(1, c / |r_i|)``.

    The root of ``sum_i v_i se_i psi((x_i - m) / se_i) = 0``, ``psi(r) = max(-c, min(c, r))``: the
    ``v``-weighted mean when every value lies within ``c`` standard errors of it, and no value moves
    it by more than ``c`` standard errors times its share beyond that. The objective is convex, so the
    root is unique; iteratively reweighted means from the weighted mean reach it.
    """
    m = float(v @ x / v.sum())
    u = np.ones_like(x)
    for _ in range(_HUBER_ITER):
        r = np.abs(x - m) / se
        u = np.minimum(1.0, c / np.maximum(r, c))
        new = float((v * u) @ x / (v * u).sum())
        done = abs(new - m) <= 1e-15
        m = new
        if done:
            break
    return m, np.minimum(1.0, c / np.maximum(np.abs(x - m) / se, c))


def _pooled_weights(w: np.ndarray, kept: np.ndarray, pool_weight: np.ndarray, decisions: Sequence[Decision],
                    notes: list[str], ref_w: np.ndarray, weight_inflation: np.ndarray | None,
                    n_test: np.ndarray) -> np.ndarray:
    """The aligned weights (m, K) that the pool gives the kept components.

    A machine with a weight decision (:func:`_weight_corrupt`: any slot's weight, or its other
    slots' at the suspect level, or its multinomial statistic) keeps the components that passed,
    for their means and covariances, but carries no information about the weights. The others'
    weights passed the family-wise tests, yet a liar 3 to 4 standard errors out passes them too
    (the paper's Dirichlet weights: one or two of 8 liars among 20 machines). Each slot's mass is
    therefore Huber's M-estimate over the weight-clean machines that kept it
    (:func:`_huber_location`, at their calibrated standard errors ``sqrt(w_k (1 - w_k) f_k / n_i)``,
    ``f_k`` the weight test's inflation): the pool-weighted mean when all lie within
    :data:`_HUBER_C` standard errors, a bounded pull for each one beyond. The weight-clean machines'
    weights are scaled per slot to that mass (their shares within the slot, which weigh the means
    and covariances, unchanged), and a weight-corrupt machine's component gets the mass itself (as
    :mod:`dfmr.sites`'s ``"free"`` mode gives components the proportions of others).
    """
    out = w.copy()
    if weight_inflation is None:  # no weight test (free proportions, K = 1): the machines' own weights
        return out
    corrupt = sorted({x.machine for x in decisions if x.rule.endswith("weight")})
    liars = [i for i in corrupt if kept[i].any()]
    clean = np.ones(w.shape[0], dtype=bool)
    clean[corrupt] = False
    light = set()
    for j in range(w.shape[1]):
        rows = np.flatnonzero(kept[:, j] & clean)
        if rows.size == 0:
            continue
        x, v = w[rows, j], pool_weight[rows]
        se = np.sqrt(ref_w[j] * (1.0 - ref_w[j]) * weight_inflation[j] / n_test[rows])
        mass, u = _huber_location(x, se, v)
        out[rows, j] = x * (mass / (v @ x / v.sum()))
        out[liars, j] = mass
        light.update(rows[u < _HUBER_NOTE].tolist())
    if liars:
        notes.append(
            f"Machines {', '.join(map(str, liars))} failed a weight test: their components that passed enter the "
            "pool with their slot's estimated weight, not their own."
        )
    if light:
        notes.append(
            "Slot weights: Huber's estimate over the machines that passed every weight test; machines "
            f"{', '.join(map(str, sorted(light)))} weigh less in a slot's weight (more than "
            f"{_HUBER_C / _HUBER_NOTE:.3g} standard errors out)."
        )
    return out


def _pool(components: _Components, alignment: np.ndarray, kept: np.ndarray,
          pool_weight: np.ndarray, slot_w: np.ndarray) -> tuple[np.ndarray, ...]:
    """The kept components slot by slot: component (i, k) of every machine i that kept slot k, with
    weight ``v_i slot_w[i, k] / sum_j v_j`` over those machines (renormalised; ``slot_w`` the aligned
    weights, see :func:`_pooled_weights`), its Cholesky factor, owner and slot."""
    rows = [np.flatnonzero(kept[:, j]) for j in range(kept.shape[1])]
    filled = [j for j in range(kept.shape[1]) if rows[j].size]
    owner = np.concatenate([rows[j] for j in filled])
    slot_of = np.concatenate([np.full(rows[j].size, j) for j in filled])
    share = np.concatenate([pool_weight[rows[j]] / pool_weight[rows[j]].sum() for j in filled])
    idx = components.offsets[owner] + alignment[owner, slot_of]
    comp_w = share * slot_w[owner, slot_of]
    return (comp_w / comp_w.sum(), components.means[idx], components.covariances[idx], components.cholesky[idx],
            owner, slot_of)


def _aggregate(mixtures, components, alignment, kept, pool_weight, k, tol, max_iter, n_threads, votes, total_votes,
               notes, model, slot_w):
    """MR of the kept components (slot weights unbiased by drops), or their slot-wise moment match."""
    d = components.means.shape[1]
    comp_w, comp_mu, comp_cov, comp_chol, owner, slot_of = _pool(components, alignment, kept, pool_weight, slot_w)
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
    pooled = GaussianMixtureParams._from_validated(comp_w, comp_mu, comp_cov, comp_chol)

    m = kept.shape[0]

    def supported(r) -> bool:
        """Every output component draws mass from half of the votes (:mod:`dfmr.support`)."""
        return r.mixture.n_components == start.n_components and bool(
            support_rule(support_matrix(owner, r.assignment, m), votes, total_votes).all())

    # MR from the slot-wise start and from every machine kept whole (its aligned components, as
    # dfmr.mr starts from the estimates): the best objective. A slot-wise start alone can stop at
    # a poor optimum (wine at K = 4: 0.28 nat held out once the pool weights differ by 14 / 13).
    whole = np.flatnonzero(kept.all(axis=1))
    starts = [start] + [mixtures[i]._subset(alignment[i]) for i in whole]
    red = _best_supported(pooled, k, starts, supported, tol=tol, max_iter=max_iter, n_threads=n_threads,
                          covariance_type=model.name)
    if red is not None:
        mixture = red.mixture
    else:
        notes.append(
            "The reduction would have built a component from fewer than half of the machines' votes; "
            "the slot-wise moment match of the kept components is returned instead."
        )
        # In the model: its M-step on the slots' matched scatters (the identity for full covariances).
        mixture = GaussianMixtureParams._from_core(start.weights, start.means, model.m_step(
            start.weights[:, None, None] * start.covariances, start.weights), covariance_type=model.name)
        red = None
    support = kept[:, slots] if red is None else support_matrix(owner, red.assignment, m)
    if mixture.n_components < k:
        warnings.warn(
            f"the aggregate has {mixture.n_components} components, fewer than the {k} requested.",
            RuntimeWarning, stacklevel=3,
        )
    return mixture, red, support


def _best_supported(pooled: GaussianMixtureParams, k: int, starts: list[GaussianMixtureParams], supported,
                    **options) -> ReductionResult | None:
    """MR of ``pooled`` from every start: the best objective among the optima that ``supported`` accepts
    (None if none does).

    On real data honest machines split clusters differently, and the best optimum may build a
    component of a minority. One multi-start call gives every start's final objective (the same
    number a run from that start alone reaches); the starts are then rerun alone in the order of
    their objectives (ties: the earlier start) until one's optimum meets the rule: the first that
    does has the best objective among those that do, without running them all.
    """
    red = reduce(pooled, k, starts, **options)
    if supported(red):
        return red
    for s in np.argsort(red.start_objectives, kind="stable"):
        run = reduce(pooled, k, [starts[s]], **options)
        if supported(run):
            return run
    return None


def leave_out(result: RobustAggregationResult, machine: int, *, tol: float = 1e-5, max_iter: int = 100,
              n_threads: int | None = 1) -> GaussianMixtureParams:
    """The aggregate of ``result`` without ``machine``, every other screening decision kept.

    The kept components of the other machines are pooled and reduced again exactly as
    :func:`robust_dfmr` pooled them (same alignment, pool weights and votes; the majority rule
    over the remaining votes). The jackknife of :func:`dfmr.inference.infer` uses it: a
    replicate then measures the pool's sampling error, not a test flipping at its cut-off when
    the reference moves. Rerun on the leave-one-out set, a site of 12,000 points sitting near
    its cut-off can lose a component in one replicate, and the unequal-size jackknife multiplies
    that jump by ``N / n_i - 1`` (up to 240 for a site of 200 points).

    Parameters
    ----------
    result : RobustAggregationResult
        A result of :func:`robust_dfmr` (its ``screening.estimates`` are pooled).
    machine : int
        The machine left out.
    tol, max_iter, n_threads
        As in :func:`robust_dfmr`.

    Returns
    -------
    GaussianMixtureParams

    Raises
    ------
    ValueError
        If the result carries no screened estimates, or nothing is left to pool.
    """
    scr = result.screening
    if scr.estimates is None or scr.votes is None or scr.pool_sizes is None:
        raise ValueError("the result carries no screened estimates to pool again.")
    m = result.n_machines
    if not 0 <= int(machine) < m:
        raise ValueError(f"machine must lie in 0..{m - 1}, got {machine!r}.")
    kept = scr.kept.copy()
    kept[int(machine)] = False
    if not kept.any():
        raise ValueError("no kept component is left without that machine.")
    votes = np.array(scr.votes, dtype=np.float64)
    votes[int(machine)] = 0.0
    alive_idx = np.flatnonzero(scr.votes > 0)
    mixtures = list(scr.estimates)
    pool_weight = np.where(scr.votes > 0, np.nan_to_num(scr.pool_sizes), 0.0) * scr.votes
    mix = result.mixture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate short of a component is the caller's to judge
        components = _Components.of(mixtures, alive_idx)
        slot_w = _pooled_weights(_stack(components, scr.alignment)[0], kept, pool_weight, scr.decisions, [],
                                 scr.reference.weights, None if scr.test_n is None else scr.inflation.get("weight"),
                                 scr.test_n)
        mixture, _, _ = _aggregate(mixtures, components, scr.alignment, kept, pool_weight,
                                   int(result.n_components_requested), tol, max_iter, n_threads, votes,
                                   float(votes.sum()), [], get_model(mix.covariance_type, mix.dim), slot_w)
    return mixture


def screening_summary_lines(result: AggregationResult, width: int) -> list[str]:
    """The 'Screening decisions' block of :func:`dfmr.summary.aggregation_summary` for robust_dfmr."""
    scr = getattr(result, "screening", None)
    if scr is None:
        return []
    lines = ["", "Screening decisions".center(width).rstrip(), "=" * width]
    size = {"server": "given by the server",
            "claimed": f"only claimed by the estimates (untrusted), calibrated n {scr.calibrated_n:.4g}" + (
                "" if not math.isfinite(scr.claim_cap) else
                f"; pool weights from the claims capped at {CLAIM_CAP:g}x the median claim ({scr.claim_cap:.4g})"),
            "unknown": f"unknown, calibrated n {scr.calibrated_n:.4g}"}[scr.size_source]
    cut = ", ".join(f"{p} {scr.cutoffs[p]:.4g} (df {scr.degrees_of_freedom[p]})" for p in scr.cutoffs)
    infl = ", ".join(f"{p} {np.min(v):.3g}" + ("" if np.ptp(v) == 0 else f"-{np.max(v):.3g}")
                     for p, v in scr.inflation.items())
    check = {"off": "off", "no contrast": "no contrast (fewer than two votes outside DFMR's radius)",
             "passed": "passed", "rejected": "rejected: the aggregate is over the machines inside DFMR's radius"}.get(
        scr.consistency, scr.consistency)
    if scr.consistency in ("passed", "rejected"):
        check += (f" (machines outside the radius {', '.join(map(str, scr.consistency_machines))}; statistic "
                  f"{scr.consistency_statistic:.4g}, adjusted p-value {scr.consistency_p_value:.3g})")
    for text in (f"Sample sizes: {size}; family-wise level {scr.level:g}",
                 f"Per-component chi2 cut-offs: {cut}", f"Inflation factor per part (over slots): {infl}",
                 f"Consistency with DFMR's machines: {check}"):
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
        "Rules: dimension (not the majority d), n_components (cost K_i^2/K^2 above the budget), "
        "unmatched (weight of a component no slot took), mean / "
        "covariance / weight (chi2 statistic of the aligned component), suspect mean / covariance / weight "
        "(another component of the machine failed; this one is beyond the 1% quantile), "
        "machine mean / covariance / weight "
        "(the part over all its kept components), consistency (outside DFMR's radius, and the pooled components "
        "outside it disagree with those inside beyond sampling error)."
    )
    for text in (rules, *scr.notes):
        lines += textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)
    return lines
