"""Property-based tests: Byzantine machines send anything, the aggregators survive.

* Accepted-but-hostile local estimates (extreme scales, near-singular covariances, zero and
  subnormal weights, permutations, duplicated components, hundreds of components, the paper's
  attacks) mixed with honest ones: ``dfmr``, ``mr``, ``tkb`` and ``coat`` return a finite mixture
  whose weights sum to one and whose covariances are positive definite; distances are finite; a
  hostile machine far from every honest one is filtered out by DFMR.
* Malformed parameters (NaN, infinities, negative or non-normalised weights, wrong shapes,
  asymmetric, indefinite or singular covariances, ragged lists, strings, None, empty, values
  beyond :data:`dfmr.LIMITS`) raise :class:`dfmr.InvalidMixtureError` naming the field, and nothing else.
* :meth:`GaussianMixtureParams.load` on fuzzed bytes, truncated files and JSON with wrong types
  raises only :class:`InvalidMixtureError` (or returns a valid mixture).

Hypothesis profiles (registered here): ``ci`` (default; about 6,000 examples in total, ~20 s on
two cores, derandomised so that CI is reproducible) and ``nightly`` (ten times more, fresh random
examples, a few minutes), selected with ``DFMR_HYPOTHESIS_PROFILE=nightly``. Each test asks for a
multiple of the profile's ``max_examples`` (see :func:`examples`).
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest
from conftest import noisy_copies, random_mixture
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

import dfmr
from dfmr import LIMITS, GaussianMixtureParams, InvalidMixtureError

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, **_COMMON)
settings.register_profile("nightly", max_examples=2000, derandomize=False, **_COMMON)
PROFILE = os.environ.get("DFMR_HYPOTHESIS_PROFILE", "ci")
_BASE = settings.get_profile(PROFILE)


def examples(weight: float) -> settings:
    """The selected profile with ``weight`` times its base number of examples."""
    return settings(_BASE, max_examples=max(1, int(round(weight * _BASE.max_examples))))


AGGREGATORS = ("dfmr", "mr", "tkb", "coat")
SEEDS = st.integers(0, 2**32 - 1)

# --------------------------------------------------------------------------------------------------
# Strategies: honest machines
# --------------------------------------------------------------------------------------------------


@st.composite
def honest_setups(draw, min_dim: int = 1, max_dim: int = 4):
    """A small random truth (K = 2..3) and 4..7 noisy, label-permuted copies of it."""
    d = draw(st.integers(min_dim, max_dim), label="d")
    k = draw(st.integers(2, 3), label="K")
    m = draw(st.integers(4, 7), label="honest machines")
    rng = np.random.default_rng(draw(SEEDS, label="honest seed"))
    truth = random_mixture(rng, k, d, spread=3.0)
    return truth, noisy_copies(rng, truth, m)


# --------------------------------------------------------------------------------------------------
# Strategies: accepted hostile machines
# --------------------------------------------------------------------------------------------------

_TINY_WEIGHTS = st.sampled_from([0.0, 5e-324, 1e-310, 1e-300, 1e-30])
_WEIGHT_ENTRIES = st.one_of(st.floats(0.0, 1.0), _TINY_WEIGHTS, st.floats(1.0, 1e6))


@st.composite
def weight_vectors(draw, k: int) -> np.ndarray:
    """Non-negative weights with zeros, subnormals and wildly different sizes; sum 1 up to rounding."""
    w = np.array(draw(st.lists(_WEIGHT_ENTRIES, min_size=k, max_size=k)))
    if not math.fsum(w.tolist()) > 0.0 or not np.isfinite(w).all():
        w[draw(st.integers(0, k - 1))] = 1.0
    return w / math.fsum(w.tolist())


@st.composite
def extreme_means(draw, k: int, d: int, center: np.ndarray) -> np.ndarray:
    """Means at every accepted scale: at the honest centre, ordinary, far, at the corners of the limit box."""
    kind = draw(st.sampled_from(["centre", "ordinary", "far", "corner", "tiny", "mixed"]), label="means")
    rng = np.random.default_rng(draw(SEEDS))
    big = LIMITS.max_abs_mean
    if kind == "centre":
        return np.tile(center, (k, 1))
    if kind == "ordinary":
        return center + 3.0 * rng.standard_normal((k, d))
    if kind == "far":
        exponent = draw(st.floats(0.0, 50.0))
        direction = rng.standard_normal((k, d))
        direction /= np.abs(direction).max(axis=1, keepdims=True)
        return direction * 10.0**exponent
    if kind == "corner":
        return rng.choice([-big, big], size=(k, d))
    if kind == "tiny":
        return rng.standard_normal((k, d)) * 1e-300
    exponents = rng.uniform(-300.0, 50.0, size=(k, d))
    return rng.choice([-1.0, 1.0], size=(k, d)) * 10.0**exponents


def _spd(rng: np.random.Generator, d: int, log10_low: float, log10_cond: float, rotate: bool) -> np.ndarray:
    """SPD matrix with eigenvalues spanning exactly ``10**log10_low * [1, 10**log10_cond]``."""
    u = rng.uniform(0.0, 1.0, d)
    if d >= 2:
        u[:2] = 0.0, 1.0
    else:
        u[0] = 0.0
    eig = 10.0 ** (log10_low + log10_cond * u)
    if not rotate:
        return np.diag(eig)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    s = (q * eig) @ q.T
    return 0.5 * (s + s.T)


def _min_log10_scale(d: int, log10_cond: float) -> float:
    """Smallest ``log10_low`` whose matrices (any ``u``) respect ``LIMITS.max_log_peak_density``, with a margin."""
    # -0.5 * (d log 2 pi + ln 10 * sum_i (low + cond u_i)) <= limit holds for every u if it holds for u = 0.
    need = (-2.0 * (LIMITS.max_log_peak_density - 1.0) / d - math.log(2.0 * math.pi)) / math.log(10.0)
    return max(-49.9, need)


@st.composite
def extreme_covariances(draw, k: int, d: int) -> np.ndarray:
    """Covariances at every accepted scale and conditioning, axis-aligned or rotated."""
    rotate = draw(st.booleans(), label="rotated") and d > 1
    max_cond = 11.9 if rotate else 11.99  # rounding of 10**x; rotation perturbs eigenvalues by ~eps * cond
    shared = draw(st.booleans(), label="one covariance for all")
    rng = np.random.default_rng(draw(SEEDS))
    covs = []
    for _ in range(1 if shared else k):
        log10_cond = draw(st.sampled_from([0.0, max_cond]) | st.floats(0.0, max_cond))
        low = _min_log10_scale(d, log10_cond)
        log10_low = draw(st.sampled_from([low, 49.9 - log10_cond]) | st.floats(low, 49.9 - log10_cond))
        covs.append(_spd(rng, d, log10_low, log10_cond, rotate))
    return np.array(covs * k if shared else covs)


@st.composite
def hostile_mixtures(draw, truth: GaussianMixtureParams) -> GaussianMixtureParams:
    """One accepted but hostile local estimate of dimension ``truth.dim``."""
    d = truth.dim
    kind = draw(
        st.sampled_from(["extreme", "extreme", "copy_with_junk", "many", "near_singular", "attack", "spike"]),
        label="hostile kind",
    )
    event(f"hostile kind: {kind}")
    center = truth.weights @ truth.means
    if kind == "extreme":
        k = draw(st.integers(1, 5))
        return GaussianMixtureParams(
            draw(weight_vectors(k)), draw(extreme_means(k, d, center)), draw(extreme_covariances(k, d)),
            normalize=True,
        )
    if kind == "copy_with_junk":
        # a permuted honest-looking copy with duplicated components (weights split) and
        # zero- or subnormal-weight components at extreme places
        order = draw(st.permutations(range(truth.n_components)))
        dup = draw(st.integers(0, truth.n_components - 1))
        junk = draw(st.integers(1, 3))
        w = np.r_[truth.weights[order], truth.weights[dup]]
        w[-1] /= 2.0
        w[order.index(dup)] /= 2.0
        w = np.r_[w, draw(st.lists(_TINY_WEIGHTS, min_size=junk, max_size=junk))]
        means = np.r_[truth.means[order], truth.means[dup][None], draw(extreme_means(junk, d, center))]
        covs = np.r_[truth.covariances[order], truth.covariances[dup][None], draw(extreme_covariances(junk, d))]
        return GaussianMixtureParams(w / math.fsum(w.tolist()), means, covs, normalize=True)
    if kind == "many":
        k = draw(st.integers(20, 300 if d <= 4 else 40), label="many components")
        rng = np.random.default_rng(draw(SEEDS))
        spread = 10.0 ** draw(st.floats(-3.0, 50.0))
        means = np.clip(center + spread * rng.standard_normal((k, d)), -LIMITS.max_abs_mean, LIMITS.max_abs_mean)
        low = _min_log10_scale(d, 0.0)
        scales = 10.0 ** rng.uniform(low, 49.9, size=k)
        return GaussianMixtureParams(rng.dirichlet(np.full(k, 0.3)), means, scales[:, None, None] * np.eye(d),
                                     normalize=True)
    if kind == "near_singular":
        # honest means, every covariance at the condition-number limit
        k = truth.n_components
        rng = np.random.default_rng(draw(SEEDS))
        low = draw(st.floats(_min_log10_scale(d, 11.99), 0.0))
        covs = np.array([_spd(rng, d, low, 11.99, rotate=False) for _ in range(k)])
        return GaussianMixtureParams(truth.weights, truth.means, covs)
    if kind == "attack":
        attack = draw(st.sampled_from(["mean", "cov", "weight"]))
        level = draw(st.sampled_from(["machine", "component"]))
        attacked, bad = dfmr.simulate.attack([truth, truth], 0.5, kind=attack, level=level, random_state=draw(SEEDS))
        return attacked[int(bad[0])]
    # spike: all mass at one point with the most concentrated covariance accepted
    k = draw(st.integers(1, 3))
    low = _min_log10_scale(d, 0.0)
    point = draw(extreme_means(1, d, center))
    return GaussianMixtureParams(np.full(k, 1.0 / k), np.tile(point, (k, 1)), np.tile(10.0**low * np.eye(d), (k, 1, 1)),
                                 normalize=True)


@st.composite
def byzantine_setups(draw, min_dim: int = 1, max_dim: int = 4):
    """Honest machines plus a strict minority of hostile ones, at random positions."""
    truth, honest = draw(honest_setups(min_dim, max_dim))
    n_bad = draw(st.integers(1, len(honest) - 1), label="hostile machines")
    bad = [draw(hostile_mixtures(truth)) for _ in range(n_bad)]
    machines = honest + bad
    order = draw(st.permutations(range(len(machines))))
    machines = [machines[i] for i in order]
    is_bad = np.array([i >= len(honest) for i in order])
    return truth, machines, is_bad


# --------------------------------------------------------------------------------------------------
# Checks on aggregation results
# --------------------------------------------------------------------------------------------------


def assert_valid_mixture(mix: GaussianMixtureParams, d: int, max_components: int | None = None) -> None:
    assert isinstance(mix, GaussianMixtureParams)
    assert mix.dim == d
    assert 1 <= mix.n_components
    if max_components is not None:
        assert mix.n_components <= max_components
    for arr in (mix.weights, mix.means, mix.covariances, mix.cholesky_factors):
        assert np.all(np.isfinite(arr))
    assert np.all(mix.weights >= 0.0)
    assert abs(math.fsum(mix.weights.tolist()) - 1.0) <= 1e-12
    cov = mix.covariances
    np.testing.assert_array_equal(cov, np.swapaxes(cov, 1, 2))
    np.linalg.cholesky(cov)  # raises if any covariance is not numerically positive definite
    assert np.all(np.diagonal(mix.cholesky_factors, axis1=1, axis2=2) > 0.0)


def assert_valid_distances(D: np.ndarray, m: int) -> None:
    assert D.shape == (m, m)
    assert np.all(np.isfinite(D)) and np.all(np.isfinite(D**2))
    assert np.all(D >= 0.0)
    np.testing.assert_array_equal(D, D.T)
    np.testing.assert_array_equal(np.diag(D), 0.0)


def run_aggregator(name: str, machines: list[GaussianMixtureParams], k: int) -> dfmr.AggregationResult:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the reduced mixture has", category=RuntimeWarning)
        if name == "coat":
            return dfmr.coat(machines, n_threads=1)
        return getattr(dfmr, name)(machines, k, n_threads=1)


def check_result(name: str, res: dfmr.AggregationResult, machines: list[GaussianMixtureParams], k: int) -> None:
    m, d = len(machines), machines[0].dim
    assert res.method == name and res.n_machines == m
    assert_valid_mixture(res.mixture, d, None if name == "coat" else k)
    retained = np.asarray(res.retained)
    assert retained.size >= 1 and np.all(np.diff(retained) > 0) and 0 <= retained.min() and retained.max() < m
    if name in ("dfmr", "coat"):
        assert_valid_distances(res.distances, m)
        assert res.center in retained
    if name != "coat":
        assert math.isfinite(res.objective)
        assert np.all(np.isfinite(res.reduction.objective_trace))
        assert np.all(np.isfinite(res.reduction.assignment))
    # the aggregate is usable: its log-density is finite on ordinary points (never NaN or +inf)
    X = np.vstack([machines[i].means for i in retained] + [np.zeros((1, d))])
    assert np.all(np.isfinite(res.mixture.logpdf(X)))


def far_hostile_premise(D: np.ndarray, is_bad: np.ndarray, kappa: float) -> bool:
    """Every hostile machine is farther than ``kappa * H`` from every honest one, ``H`` the largest honest distance."""
    honest = ~is_bad
    h = D[np.ix_(honest, honest)].max()
    return bool(D[np.ix_(is_bad, honest)].min() > kappa * h)


def assert_far_hostile_filtered(res: dfmr.AggregationResult, is_bad: np.ndarray) -> None:
    """Under :func:`far_hostile_premise` with an honest strict majority the centre is honest (its median
    distance is at most ``H``, a hostile one's exceeds it) and the radius is at most ``H``, so every
    hostile machine lies beyond ``kappa * radius``."""
    assert not is_bad[res.center]
    assert not np.any(is_bad[res.retained]), f"retained hostile machines {np.flatnonzero(is_bad)[:5]}"


# --------------------------------------------------------------------------------------------------
# Properties: aggregation of accepted hostile estimates
# --------------------------------------------------------------------------------------------------


@examples(3.0)
@given(setup=byzantine_setups())
def test_aggregators_survive_accepted_hostile_estimates(setup):
    truth, machines, is_bad = setup
    note(f"m = {len(machines)}, hostile at {np.flatnonzero(is_bad).tolist()}, "
         f"K = {[f.n_components for f in machines]}")
    k = truth.n_components
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        results = {name: run_aggregator(name, machines, k) for name in AGGREGATORS}
    for name, res in results.items():
        check_result(name, res, machines, k)
    D = results["dfmr"].distances
    np.testing.assert_array_equal(results["coat"].distances, D)
    if far_hostile_premise(D, is_bad, results["dfmr"].filter.threshold):
        event("all hostile machines far")
        assert_far_hostile_filtered(results["dfmr"], is_bad)
        assert results["coat"].center == results["dfmr"].center


@st.composite
def far_setups(draw):
    """Honest machines plus hostile ones that sit far from them: displaced, spiked or flattened."""
    truth, honest = draw(honest_setups())
    d, k = truth.dim, truth.n_components
    rng = np.random.default_rng(draw(SEEDS))
    bad = []
    for _ in range(draw(st.integers(1, len(honest) - 1))):
        kind = draw(st.sampled_from(["displaced", "spiked", "flattened", "extreme"]))
        event(f"far kind: {kind}")
        if kind == "displaced":
            shift = rng.choice([-1.0, 1.0], size=d) * 10.0 ** draw(st.floats(2.0, 50.0))
            bad.append(GaussianMixtureParams(truth.weights, truth.means + shift, truth.covariances))
        elif kind == "spiked":
            scale = 10.0 ** draw(st.floats(_min_log10_scale(d, 0.0), -4.0))
            bad.append(GaussianMixtureParams(truth.weights, truth.means, np.tile(scale * np.eye(d), (k, 1, 1))))
        elif kind == "flattened":
            scale = 10.0 ** draw(st.floats(6.0, 49.9))
            bad.append(GaussianMixtureParams(truth.weights, truth.means, np.tile(scale * np.eye(d), (k, 1, 1))))
        else:
            bad.append(draw(hostile_mixtures(truth)))
    machines = honest + bad
    is_bad = np.r_[np.zeros(len(honest), bool), np.ones(len(bad), bool)]
    order = np.array(draw(st.permutations(range(len(machines)))))
    return truth, [machines[i] for i in order], is_bad[order]


@examples(1.5)
@given(setup=far_setups())
def test_dfmr_filters_hostile_estimates_far_from_every_honest_one(setup):
    truth, machines, is_bad = setup
    res = run_aggregator("dfmr", machines, truth.n_components)
    check_result("dfmr", res, machines, truth.n_components)
    if far_hostile_premise(res.distances, is_bad, res.filter.threshold):
        event("premise holds")
        assert_far_hostile_filtered(res, is_bad)
    else:
        event("premise fails (a hostile machine is not far)")


def test_far_hostile_strategy_is_not_vacuous():
    """The premise of the filtering property holds in most generated examples."""
    outcomes = []

    @settings(_BASE, max_examples=60, derandomize=True, database=None)
    @given(setup=far_setups())
    def collect(setup):
        truth, machines, is_bad = setup
        D = dfmr.pairwise_l2(machines, n_threads=1)
        outcomes.append(far_hostile_premise(D, is_bad, len(machines) ** 0.1))

    collect()
    assert len(outcomes) >= 30 and np.mean(outcomes) > 0.6, f"premise held in {np.mean(outcomes):.0%}"


@examples(0.4)
@given(setup=byzantine_setups(min_dim=5, max_dim=50))
def test_aggregators_survive_hostile_estimates_in_high_dimension(setup):
    truth, machines, is_bad = setup
    k = truth.n_components
    for name in AGGREGATORS:
        check_result(name, run_aggregator(name, machines, k), machines, k)


@pytest.mark.parametrize("d, k_bad", [(50, 200), (10, 300), (2, 1000)])
def test_largest_accepted_hostile_estimates(d, k_bad):
    """Hundreds of components at the extremes of every limit, with honest machines (deterministic)."""
    rng = np.random.default_rng(d)
    truth = random_mixture(rng, 3, d, spread=3.0)
    honest = noisy_copies(rng, truth, 5)
    big = LIMITS.max_abs_mean
    low = 10.0 ** _min_log10_scale(d, 12.0)
    covs = np.array([np.diag(np.r_[low, np.full(d - 1, low * 0.999e12)]) if j % 3 == 0 else
                     np.eye(d) * (1e50 if j % 3 == 1 else 10.0 ** _min_log10_scale(d, 0.0)) for j in range(k_bad)])
    hostile = [
        GaussianMixtureParams(np.r_[np.zeros(k_bad - 1), 1.0], rng.choice([-big, big], size=(k_bad, d)), covs),
        GaussianMixtureParams(np.full(k_bad, 1.0 / k_bad), rng.choice([-big, big, 0.0], size=(k_bad, d)), covs,
                              normalize=True),
    ]
    machines = honest + hostile
    is_bad = np.r_[np.zeros(5, bool), np.ones(2, bool)]
    results = {name: run_aggregator(name, machines, 3) for name in AGGREGATORS}
    for name, res in results.items():
        check_result(name, res, machines, 3)
    # In high dimension noisy honest copies are nearly as far from each other as from a flat
    # hostile density, so the filtering guarantee is only checked where its premise holds.
    if far_hostile_premise(results["dfmr"].distances, is_bad, results["dfmr"].filter.threshold):
        assert_far_hostile_filtered(results["dfmr"], is_bad)


def test_pools_larger_than_the_component_limit_are_reduced():
    """MR pools every component of every machine; the pool may exceed LIMITS.max_components."""
    rng = np.random.default_rng(5)
    k = 600
    machines = [GaussianMixtureParams(rng.dirichlet(np.ones(k)), rng.standard_normal((k, 2)),
                                      np.tile(np.eye(2), (k, 1, 1)), normalize=True) for _ in range(3)]
    for name in ("mr", "tkb", "dfmr"):
        res = run_aggregator(name, machines, 4)
        check_result(name, res, machines, 4)


def test_merging_components_1e50_apart_gives_a_positive_definite_covariance():
    """Moment matching two accepted components 2e50 apart with covariances of 1e-50: the rank-one spread
    (~1e100) swamps the rest, which is pure rounding noise; the core regularises instead of failing."""
    tiny = 1e-50 * np.eye(3)
    a = GaussianMixtureParams([0.5, 0.5], [[1e50] * 3, [-1e50] * 3], np.array([tiny, tiny]))
    res = run_aggregator("mr", [a, a], 1)
    check_result("mr", res, [a, a], 1)
    np.testing.assert_allclose(res.mixture.means, 0.0, atol=1e36)
    np.testing.assert_allclose(res.mixture.covariances[0], np.full((3, 3), 1e100), rtol=1e-12)


def test_subnormal_weights_do_not_collapse_a_reduced_covariance():
    """A reduced component that receives only subnormal mass (weights 5e-324 of 1e-30-sized components)."""
    d = 2
    lone = GaussianMixtureParams([1.0 - 5e-324, 5e-324], [[0.0, 0.0], [1e-20, 1e-20]],
                                 np.array([np.eye(d), 1e-30 * np.eye(d)]))
    start = GaussianMixtureParams([0.5, 0.5], [[0.0, 0.0], [1e-20, 1e-20]], np.array([np.eye(d), 1e-30 * np.eye(d)]))
    res = dfmr.reduction.reduce(dfmr.reduction.pool([lone]), 2, [start], n_threads=1)
    assert_valid_mixture(res.mixture, d, 2)
    assert res.mixture.n_components == 2
    small = int(np.argmin(res.mixture.covariances[:, 0, 0]))
    np.testing.assert_allclose(res.mixture.covariances[small], 1e-30 * np.eye(d), rtol=1e-6)


# --------------------------------------------------------------------------------------------------
# Properties: distances at extreme accepted scales against scipy
# --------------------------------------------------------------------------------------------------


@st.composite
def gaussian_pairs(draw):
    d = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(SEEDS))
    out = []
    for _ in range(2):
        log10_cond = draw(st.floats(0.0, 6.0))
        log10_low = draw(st.floats(_min_log10_scale(d, log10_cond), 49.9 - log10_cond))
        out.append(_spd(rng, d, log10_low, log10_cond, rotate=d > 1))
    base = rng.standard_normal(d) * 10.0 ** draw(st.floats(-10.0, 49.0))
    offset = rng.standard_normal(d) * 10.0 ** draw(st.floats(-60.0, 49.0))
    m1, m2 = np.clip(base, -1e50, 1e50), np.clip(base + offset, -1e50, 1e50)
    return (GaussianMixtureParams([1.0], m1[None], out[0][None]), GaussianMixtureParams([1.0], m2[None], out[1][None]))


@examples(3.0)
@given(pair=gaussian_pairs())
def test_l2_distance_of_single_gaussians_at_extreme_scales_matches_scipy(pair):
    f, g = pair
    m1, m2, s1, s2 = f.means[0], g.means[0], f.covariances[0], g.covariances[0]
    log_ff = multivariate_normal(m1, 2.0 * s1).logpdf(m1)
    log_gg = multivariate_normal(m2, 2.0 * s2).logpdf(m2)
    log_fg = multivariate_normal(m2, s1 + s2).logpdf(m1)
    top = max(log_ff, log_gg)
    bracket = math.exp(log_ff - top) + math.exp(log_gg - top) - 2.0 * math.exp(log_fg - top)
    D = dfmr.pairwise_l2([f, g], n_threads=1)
    assert_valid_distances(D, 2)
    if bracket > 0.1:  # no catastrophic cancellation in the reference: compare log-distances
        expected = 0.5 * top + 0.5 * math.log(bracket)
        assert math.log(D[0, 1]) == pytest.approx(expected, rel=1e-8, abs=1e-8)
    else:
        assert D[0, 1] <= math.exp(0.5 * top) * math.sqrt(max(bracket, 0.0) + 1e-6)


# --------------------------------------------------------------------------------------------------
# Properties: malformed parameters raise InvalidMixtureError naming the field, and nothing else
# --------------------------------------------------------------------------------------------------


@st.composite
def valid_parameters(draw, max_k: int = 3, max_d: int = 3):
    k = draw(st.integers(1, max_k))
    d = draw(st.integers(1, max_d))
    rng = np.random.default_rng(draw(SEEDS))
    w = rng.dirichlet(np.ones(k))
    mu = rng.standard_normal((k, d)) * 10.0 ** draw(st.floats(-5.0, 5.0))
    covs = np.array([_spd(rng, d, draw(st.floats(-5.0, 5.0)), draw(st.floats(0.0, 6.0)), rotate=d > 1)
                     for _ in range(k)])
    return {"weights": w, "means": mu, "covariances": covs}


_NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def malformed_parameters(draw):
    """A valid parameter set with one corruption; returns (kwargs, normalize, field the message must name)."""
    p = draw(valid_parameters())
    w, mu, cov = p["weights"].copy(), p["means"].copy(), p["covariances"].copy()
    k, d = mu.shape
    rng = np.random.default_rng(draw(SEEDS))
    kind = draw(st.sampled_from([
        "nonfinite", "negative_weight", "weight_sum", "zero_weights", "wrong_k", "weights_2d", "means_wrong_d",
        "asymmetric", "indefinite", "singular", "mean_too_large", "eigen_too_small", "eigen_too_large",
        "ill_conditioned", "too_concentrated", "not_numbers", "ragged", "empty", "too_many_components",
    ]), label="corruption")
    event(f"corruption: {kind}")
    field = None
    if kind == "nonfinite":
        field = draw(st.sampled_from(["weights", "means", "covariances"]))
        arr = {"weights": w, "means": mu, "covariances": cov}[field]
        arr.flat[draw(st.integers(0, arr.size - 1))] = draw(_NONFINITE)
    elif kind == "negative_weight":
        field = "weights"
        w[draw(st.integers(0, k - 1))] = -draw(st.floats(5e-324, 1e300))
    elif kind == "weight_sum":
        field = "weights"
        factor = draw(st.floats(0.0, 0.998) | st.floats(1.002, 1e300))
        w = w * factor
    elif kind == "zero_weights":
        field = "weights"
        w[:] = 0.0
    elif kind == "wrong_k":
        field = draw(st.sampled_from(["means", "covariances"]))
        extra = draw(st.booleans())
        if field == "means":
            mu = np.r_[mu, mu[:1]] if extra or k == 1 else mu[:-1]
        else:
            cov = np.r_[cov, cov[:1]] if extra or k == 1 else cov[:-1]
    elif kind == "weights_2d":
        field = "weights"
        w = w[None, :] if draw(st.booleans()) else np.tile(w, (2, 1)).T
    elif kind == "means_wrong_d":
        field = "covariances"  # d is read from the means; the covariances then have the wrong shape
        mu = np.c_[mu, mu[:, :1]]
    elif kind == "asymmetric":
        field = "covariances"
        if d == 1:  # widen to d = 2 (diagonal covariances) so that there is an off-diagonal entry
            mu, cov = np.c_[mu, mu], cov * np.eye(2)
        j = draw(st.integers(0, k - 1))
        cov[j, 0, 1] += abs(cov[j, 0, 1]) * draw(st.floats(1e-6, 1.0)) + 1e-6 * abs(cov[j]).max()
    elif kind == "indefinite":
        field = "covariances"
        j = draw(st.integers(0, k - 1))
        eig, vec = np.linalg.eigh(cov[j])
        eig[0] = -draw(st.floats(1e-300, 1e3)) * eig[-1]
        cov[j] = 0.5 * ((vec * eig) @ vec.T + ((vec * eig) @ vec.T).T)
    elif kind == "singular":
        field = "covariances"
        j = draw(st.integers(0, k - 1))
        b = rng.standard_normal((d, d - 1)) if d > 1 else np.zeros((1, 1))
        cov[j] = b @ b.T
    elif kind == "mean_too_large":
        field = "means"
        sign = draw(st.sampled_from([-1.0, 1.0]))
        mu.flat[draw(st.integers(0, mu.size - 1))] = sign * draw(st.floats(1.01e50, 1e308))
    elif kind == "eigen_too_small":
        field = "covariances"
        cov[draw(st.integers(0, k - 1))] = np.eye(d) * draw(st.floats(1e-300, 9.9e-51))
    elif kind == "eigen_too_large":
        field = "covariances"
        cov[draw(st.integers(0, k - 1))] = np.eye(d) * draw(st.floats(1.01e50, 1e308))
    elif kind == "ill_conditioned":
        field = "covariances"
        if d == 1:  # a 1 x 1 covariance has condition number 1: widen to d = 2
            mu, cov, d = np.c_[mu, mu], cov * np.eye(2), 2
        cov[draw(st.integers(0, k - 1))] = _spd(rng, d, 0.0, draw(st.floats(12.1, 30.0)), rotate=False)
    elif kind == "too_concentrated":
        field = "covariances"
        dd = draw(st.integers(30, 60))
        scale = 10.0 ** draw(st.floats(-49.0, -25.0))
        mu, cov = np.zeros((k, dd)), np.tile(np.eye(dd), (k, 1, 1))
        cov[draw(st.integers(0, k - 1))] = scale * np.eye(dd)
        if -0.5 * dd * math.log(2 * math.pi * scale) <= LIMITS.max_log_peak_density:
            cov[0] = 1e-50 * np.eye(dd)
    elif kind == "not_numbers":
        field = draw(st.sampled_from(["weights", "means", "covariances"]))
        junk = draw(st.sampled_from(["string", "numeric strings", "none", "dict", "bools", "complex", "object"]))
        value = {"weights": w, "means": mu, "covariances": cov}[field]
        if junk == "string":
            value = str(value.tolist())
        elif junk == "numeric strings":
            value = np.array(value, dtype=str).tolist()
        elif junk == "none":
            value = None
        elif junk == "dict":
            value = {"values": value.tolist()}
        elif junk == "bools":
            value = (value > 0).tolist()
        elif junk == "complex":
            value = value.astype(complex)
        else:
            flat = value.ravel().tolist()
            flat[draw(st.integers(0, len(flat) - 1))] = draw(st.sampled_from([None, "1.0", [1.0], {}]))
            value = np.array(flat, dtype=object).reshape(value.shape).tolist()
        if field == "weights":
            w = value
        elif field == "means":
            mu = value
        else:
            cov = value
    elif kind == "ragged":
        field = draw(st.sampled_from(["means", "covariances"]))
        if field == "means":
            mu = mu.tolist()
            mu[-1] = mu[-1] + [0.0]
            if k == 1:
                mu = [mu[0], [0.0]]
        else:
            cov = cov.tolist()
            cov[-1][-1] = cov[-1][-1] + [0.0]
    elif kind == "empty":
        field = draw(st.sampled_from(["weights", "means", "covariances"]))
        if field == "weights":
            w = []
        elif field == "means":
            mu = []
        else:
            cov = []
    else:  # too_many_components
        field = "weights"
        n = LIMITS.max_components + draw(st.integers(1, 50))
        w, mu, cov = np.full(n, 1.0 / n), np.zeros((n, 1)), np.ones((n, 1, 1))
    normalize = draw(st.booleans())
    return {"weights": w, "means": mu, "covariances": cov}, normalize, field


@examples(8.0)
@given(case=malformed_parameters())
def test_malformed_parameters_raise_only_invalid_mixture_error(case):
    kwargs, normalize, field = case
    with pytest.raises(InvalidMixtureError) as info:
        GaussianMixtureParams(**kwargs, normalize=normalize)
    assert str(info.value).startswith(f"{field}: "), str(info.value)


_JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


def _assert_accepted_or_invalid(build) -> GaussianMixtureParams | None:
    """``build()`` returns a valid mixture or raises InvalidMixtureError; anything else fails the test."""
    try:
        mix = build()
    except InvalidMixtureError as exc:
        assert str(exc)
        return None
    assert_valid_mixture(mix, mix.dim)
    return mix


@examples(4.0)
@given(weights=JSON_VALUES | st.lists(st.floats(), max_size=4), means=JSON_VALUES, covariances=JSON_VALUES,
       normalize=st.booleans())
def test_arbitrary_values_raise_only_invalid_mixture_error(weights, means, covariances, normalize):
    _assert_accepted_or_invalid(lambda: GaussianMixtureParams(weights, means, covariances, normalize=normalize))


@st.composite
def accepted_mixtures(draw):
    p = draw(valid_parameters(max_k=4, max_d=4))
    return GaussianMixtureParams(**p, normalize=True)


@examples(1.5)
@given(mix=accepted_mixtures())
def test_accepted_parameters_are_a_fixed_point_of_validation_and_serialisation(mix):
    again = GaussianMixtureParams(mix.weights, mix.means, mix.covariances)
    assert again == mix
    back = GaussianMixtureParams.from_dict(json.loads(json.dumps(mix.to_dict())))
    assert back == mix
    np.testing.assert_array_equal(back.cholesky_factors, mix.cholesky_factors)


# --------------------------------------------------------------------------------------------------
# Properties: GaussianMixtureParams.load on hostile files
# --------------------------------------------------------------------------------------------------


def _load_only_documented_error(path, content: bytes) -> GaussianMixtureParams | None:
    path.write_bytes(content)
    return _assert_accepted_or_invalid(lambda: GaussianMixtureParams.load(path))


@examples(2.0)
@given(content=st.binary(max_size=600))
def test_load_of_random_bytes(tmp_path, content):
    _load_only_documented_error(tmp_path / "fuzz.json", content)


@examples(2.0)
@given(mix=accepted_mixtures(), data=st.data())
def test_load_of_truncated_files_raises(tmp_path, mix, data):
    path = tmp_path / "mix.json"
    mix.save(path)
    raw = path.read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    path.write_bytes(raw[:cut])
    with pytest.raises(InvalidMixtureError):
        GaussianMixtureParams.load(path)


@examples(2.0)
@given(mix=accepted_mixtures(), data=st.data())
def test_load_of_corrupted_files(tmp_path, mix, data):
    """Byte flips, insertions and deletions anywhere in a valid file."""
    raw = bytearray(json.dumps(mix.to_dict()).encode())
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "digit"]))
        if op == "flip":
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del raw[pos]
        else:
            raw[pos:pos] = data.draw(st.sampled_from([b"9", b"e300", b"-", b"e-400", b"0000"]))
    loaded = _load_only_documented_error(tmp_path / "edited.json", bytes(raw))
    if loaded is not None:
        event("a corrupted file still held a valid mixture")


@examples(2.5)
@given(mix=accepted_mixtures(), data=st.data())
def test_load_of_json_with_wrong_types(tmp_path, mix, data):
    """One field, or one nested element of it, replaced by an arbitrary JSON value."""
    doc = mix.to_dict()
    key = data.draw(st.sampled_from(["weights", "means", "covariances", "format", "version"]), label="key")
    value = data.draw(JSON_VALUES, label="replacement")
    if key in ("weights", "means", "covariances") and data.draw(st.booleans(), label="nested"):
        node = doc[key]
        while isinstance(node, list) and node and isinstance(node[0], list) and data.draw(st.booleans()):
            node = node[data.draw(st.integers(0, len(node) - 1))]
        node[data.draw(st.integers(0, len(node) - 1))] = value
    else:
        doc[key] = value
    content = json.dumps(doc).encode()  # NaN / Infinity become JSON extensions the loader must refuse
    loaded = _load_only_documented_error(tmp_path / "typed.json", content)
    if loaded is not None:
        event("replacement still valid")


@examples(1.0)
@given(doc=JSON_VALUES)
def test_load_of_arbitrary_json_documents(tmp_path, doc):
    _load_only_documented_error(tmp_path / "doc.json", json.dumps(doc).encode())
