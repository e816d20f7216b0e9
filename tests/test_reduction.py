"""Mixture reduction (MR) and the trimmed k-barycenter (TKB): the compiled core against the reference.

The first group checks the reference (KL against analytic values and integration, the MM
iteration's invariants, exhaustive search); the second group checks ``dfmr.reduction`` /
``dfmr.mr`` / ``dfmr.tkb`` against it (a missing core or name fails the import, it is never skipped).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref
from conftest import assert_mixture_close, fixture_estimates, noisy_copies, random_mixture, random_spd
from scipy import integrate

import dfmr
from dfmr import GaussianMixtureParams
from dfmr import reduction as core_reduction

RTOL_PARAMS = 1e-8
RTOL_OBJ = 1e-10


# ---------------------------------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------------------------------


def structured_case(seed: int, k: int = 3, d: int = 3, m: int = 8, noise: float = 0.3) -> list[GaussianMixtureParams]:
    """Local estimates scattered around one truth (labels permuted), as on honest machines."""
    rng = np.random.default_rng(seed)
    truth = random_mixture(rng, k, d, spread=2.5)
    return noisy_copies(rng, truth, m, noise)


def unstructured_case(seed: int, k: int = 3, d: int = 3, m: int = 6) -> list[GaussianMixtureParams]:
    """Unrelated random mixtures with 2 to 4 components (a harder pool, more iterations)."""
    rng = np.random.default_rng(10_000 + seed)
    ks = [k] + [int(x) for x in rng.integers(max(1, k - 1), k + 2, size=m - 1)]
    return [random_mixture(rng, kk, d, spread=2.0) for kk in ks]


def case(kind: str, seed: int) -> list[GaussianMixtureParams]:
    """One named case: ``structured``, ``unstructured`` or ``shipped`` (the 20 real local estimates)."""
    if kind == "structured":
        return structured_case(seed)
    if kind == "unstructured":
        return unstructured_case(seed)
    if kind == "shipped":
        return fixture_estimates()
    raise ValueError(kind)


def starts_of(mixtures: list[GaussianMixtureParams], k: int) -> list[GaussianMixtureParams]:
    """The default starts: every local estimate with ``k`` components."""
    return [mix for mix in mixtures if mix.n_components == k]


def n_components_of(kind: str) -> int:
    return 5 if kind == "shipped" else 3


def assert_trace_non_increasing(trace: np.ndarray) -> None:
    trace = np.asarray(trace, dtype=float)
    slack = 1e-13 * np.maximum(np.abs(trace[:-1]), 1.0)
    increases = np.diff(trace) > slack
    assert not increases.any(), f"objective increased at steps {np.flatnonzero(increases) + 1}: {trace}"


def assert_results_agree(
    core_res: object, ref_res: ref.ReferenceResult, check_plan: bool = True, check_trace: bool = True
) -> None:
    """Core result (ReductionResult or AggregationResult) against the reference result.

    ``check_trace=False`` when several starts reach the same optimum (their final objectives
    agree to rounding), so that which of them wins, and hence the trace, is not determined.
    """
    assert core_res.objective == pytest.approx(ref_res.objective, rel=RTOL_OBJ, abs=1e-15)
    assert core_res.n_iter == ref_res.n_iter
    assert core_res.converged == ref_res.converged
    order = assert_mixture_close(core_res.mixture, ref_res.mixture, rtol=RTOL_PARAMS, atol=RTOL_PARAMS)
    if check_plan:
        plan = np.asarray(core_res.assignment)
        assert plan.shape == ref_res.assignment.shape
        np.testing.assert_allclose(plan[:, order], ref_res.assignment, rtol=RTOL_PARAMS, atol=1e-14)
    if check_plan and check_trace:
        np.testing.assert_allclose(core_res.objective_trace, ref_res.objective_trace, rtol=RTOL_OBJ, atol=1e-15)


def far_component_start(start: GaussianMixtureParams, shift: float = 1e3) -> GaussianMixtureParams:
    """``start`` with its first component moved far from every pooled component."""
    means = start.means.copy()
    means[0] += shift
    return GaussianMixtureParams(start.weights, means, start.covariances)


def duplicated_component_start(start: GaussianMixtureParams) -> GaussianMixtureParams:
    """``start`` whose second component is an exact copy of its first (exact cost ties)."""
    means, covs = start.means.copy(), start.covariances.copy()
    means[1], covs[1] = means[0], covs[0]
    return GaussianMixtureParams(start.weights, means, covs)


# ---------------------------------------------------------------------------------------------------------------------
# The reference itself
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_reference_kl_1d_analytic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m1, m2 = rng.normal(size=2)
    s1, s2 = np.exp(rng.normal(size=2))  # standard deviations
    expected = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    assert ref.kl_gauss(m1, s1**2, m2, s2**2) == pytest.approx(expected, rel=1e-13)


def test_reference_kl_1d_matches_integration() -> None:
    m1, s1, m2, s2 = 0.3, 0.8, -0.5, 1.7  # means and standard deviations

    def integrand(x: float) -> float:
        log_p = -0.5 * ((x - m1) / s1) ** 2 - math.log(s1 * math.sqrt(2 * math.pi))
        log_q = -0.5 * ((x - m2) / s2) ** 2 - math.log(s2 * math.sqrt(2 * math.pi))
        return math.exp(log_p) * (log_p - log_q)

    val, _ = integrate.quad(integrand, m1 - 40 * s1, m1 + 40 * s1, points=[m1, m2], epsabs=0, epsrel=1e-13, limit=200)
    assert ref.kl_gauss(m1, s1**2, m2, s2**2) == pytest.approx(val, rel=1e-11)


def test_reference_kl_of_diagonal_gaussians_is_sum_over_coordinates() -> None:
    rng = np.random.default_rng(1)
    d = 6
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    v1, v2 = np.exp(rng.normal(size=d)), np.exp(rng.normal(size=d))
    per_coord = [ref.kl_gauss(m1[i], v1[i], m2[i], v2[i]) for i in range(d)]
    assert ref.kl_gauss(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(math.fsum(per_coord), rel=1e-12)
    assert ref.kl_gauss(m1, np.diag(v1), m1, np.diag(v1)) == pytest.approx(0.0, abs=1e-14)


def test_reference_kl_cost_matrix_matches_pairwise_kl() -> None:
    rng = np.random.default_rng(2)
    pooled = random_mixture(rng, 7, 4)
    target = random_mixture(rng, 3, 4)
    cost = ref.kl_cost_matrix(pooled, target)
    expected = [
        [ref.kl_gauss(pooled.means[n], pooled.covariances[n], target.means[k], target.covariances[k]) for k in range(3)]
        for n in range(7)
    ]
    np.testing.assert_allclose(cost, expected, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9])
def test_reference_trimmed_assignment_keeps_cheapest_mass(alpha: float) -> None:
    rng = np.random.default_rng(3)
    weights = rng.dirichlet(np.ones(12))
    cost = rng.exponential(size=(12, 3))
    pi = ref.assign(cost, weights, alpha)
    kept = pi.sum(axis=1)
    assert kept.sum() == pytest.approx(1 - alpha, abs=1e-14)
    assert np.all(kept <= weights + 1e-16)
    cmin = cost.min(axis=1)
    # Every partly kept component is at least as cheap as every fully dropped one.
    assert cmin[kept > 0].max() <= cmin[kept == 0].min(initial=np.inf)
    assert np.all(pi[np.arange(12), cost.argmin(axis=1)] == kept)


def test_reference_ties_split_equally() -> None:
    cost = np.array([[1.0, 1.0, 2.0], [0.5, 3.0, 0.5], [2.0, 1.0, 1.0 + 1e-15]])
    pi = ref.assign(cost, np.array([0.2, 0.3, 0.5]))
    np.testing.assert_array_equal(pi, [[0.1, 0.1, 0.0], [0.15, 0.0, 0.15], [0.0, 0.5, 0.0]])


@pytest.mark.parametrize("trim", [0.0, 0.3])
@pytest.mark.parametrize("seed", range(8))
def test_reference_trace_non_increasing(seed: int, trim: float) -> None:
    for mixes in (structured_case(seed), unstructured_case(seed)):
        res = ref.reduce_numpy(ref.pool(mixes), 3, starts_of(mixes, 3), trim=trim)
        assert_trace_non_increasing(res.objective_trace)
        assert res.objective == res.objective_trace[-1]
        assert len(res.objective_trace) == res.n_iter + 1


@pytest.mark.parametrize("trim", [0.0, 0.3])
def test_reference_fixed_point_is_moment_matched(trim: float) -> None:
    mixes = unstructured_case(4)
    pooled = ref.pool(mixes)
    res = ref.reduce_numpy(pooled, 3, starts_of(mixes, 3), trim=trim, tol=1e-13, max_iter=500)
    assert res.converged
    mu, sigma, keep = ref.moment_match(pooled.means, pooled.covariances, res.assignment)
    assert keep.all()
    np.testing.assert_allclose(mu, res.mixture.means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, res.mixture.covariances, rtol=1e-12, atol=1e-12)


def test_reference_copies_reduce_to_the_mixture() -> None:
    rng = np.random.default_rng(5)
    truth = random_mixture(rng, 3, 4, spread=2.0)
    mixes = [truth.permute(rng.permutation(3)) for _ in range(5)]
    res = ref.mr_numpy(mixes, 3)
    assert abs(res.objective) <= 1e-12
    assert_mixture_close(res.mixture, truth, rtol=1e-12, atol=1e-12)


def test_reference_reaches_bruteforce_optimum() -> None:
    mixes = structured_case(6, k=2, d=2, m=4, noise=0.3)
    best, best_mixture = ref.reduce_bruteforce(ref.pool(mixes), 2)
    res = ref.mr_numpy(mixes, 2)
    assert res.objective == pytest.approx(best, rel=1e-12)
    assert_mixture_close(res.mixture, best_mixture, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# The compiled core against the reference
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["unstructured", "shipped"])
def test_core_pool_matches_reference(kind: str) -> None:
    mixes = case(kind, 0)
    pooled, expected = core_reduction.pool(mixes), ref.pool(mixes)
    np.testing.assert_allclose(pooled.weights, expected.weights, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(pooled.means, expected.means)
    np.testing.assert_array_equal(pooled.covariances, expected.covariances)
    assert pooled.weights.sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.parametrize("kind", ["structured", "unstructured", "shipped"])
def test_core_kl_cost_matches_reference(kind: str) -> None:
    mixes = case(kind, 1)
    pooled = ref.pool(mixes)
    for target in (mixes[0], mixes[-1]):
        cost = np.asarray(core_reduction.kl_cost(pooled, target))
        assert cost.shape == (pooled.n_components, target.n_components)
        np.testing.assert_allclose(cost, ref.kl_cost_matrix(pooled, target), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("scale", [1e-6, 1e6])
def test_core_kl_cost_scale_invariant(scale: float) -> None:
    """KL is invariant under x -> a x; the core must not lose accuracy at extreme scales."""
    rng = np.random.default_rng(8)
    pooled = random_mixture(rng, 6, 5)
    target = random_mixture(rng, 3, 5)

    def scaled(mix: GaussianMixtureParams) -> GaussianMixtureParams:
        return GaussianMixtureParams(mix.weights, scale * mix.means, scale**2 * mix.covariances)

    cost = np.asarray(core_reduction.kl_cost(scaled(pooled), scaled(target)))
    np.testing.assert_allclose(cost, ref.kl_cost_matrix(pooled, target), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("trim", [0.0, 0.25, 0.5])
@pytest.mark.parametrize(("kind", "seed"), [("structured", 0), ("structured", 1), ("unstructured", 2), ("shipped", 0)])
def test_core_reduce_matches_reference_from_one_start(kind: str, seed: int, trim: float) -> None:
    mixes = case(kind, seed)
    k = n_components_of(kind)
    pooled = ref.pool(mixes)
    start = starts_of(mixes, k)[-1]
    core_res = core_reduction.reduce(pooled, k, [start], trim=trim)
    ref_res = ref.reduce_numpy(pooled, k, start, trim=trim)
    assert_results_agree(core_res, ref_res)
    assert core_res.start_index == 0


@pytest.mark.parametrize(("kind", "seed"), [("structured", 3), ("unstructured", 4), ("unstructured", 5)])
def test_core_reduce_multi_start_matches_reference(kind: str, seed: int) -> None:
    mixes = case(kind, seed)
    pooled = ref.pool(mixes)
    starts = starts_of(mixes, 3)
    core_res = core_reduction.reduce(pooled, 3, starts)
    ref_res = ref.reduce_numpy(pooled, 3, starts)
    runner_up = np.sort(ref_res.start_objectives)[1] if len(starts) > 1 else np.inf
    unambiguous = runner_up > ref_res.objective * (1 + 1e-8)
    assert_results_agree(core_res, ref_res, check_trace=unambiguous)
    np.testing.assert_allclose(core_res.start_objectives, ref_res.start_objectives, rtol=RTOL_OBJ, atol=1e-15)
    objs = np.asarray(core_res.start_objectives)
    assert objs[core_res.start_index] == objs.min()
    assert core_res.objective == objs.min()
    if unambiguous:
        assert core_res.start_index == ref_res.start_index
    # Each start separately agrees with the reference, trace included.
    for i in (0, len(starts) - 1):
        single = core_reduction.reduce(pooled, 3, [starts[i]])
        assert_results_agree(single, ref.reduce_numpy(pooled, 3, starts[i]))


@pytest.mark.parametrize("trim", [0.0, 0.3])
@pytest.mark.parametrize("seed", range(15))
def test_core_trace_never_increases(seed: int, trim: float) -> None:
    for mixes in (structured_case(seed), unstructured_case(seed)):
        res = core_reduction.reduce(ref.pool(mixes), 3, starts_of(mixes, 3), trim=trim)
        trace = np.asarray(res.objective_trace)
        assert trace.ndim == 1 and len(trace) == res.n_iter + 1
        assert_trace_non_increasing(trace)
        assert res.objective == pytest.approx(trace[-1], rel=1e-15, abs=1e-300)
        assert np.asarray(res.start_objectives).min() == pytest.approx(res.objective, rel=1e-15, abs=1e-300)


@pytest.mark.parametrize("trim", [0.0, 0.3])
@pytest.mark.parametrize("kind", ["unstructured", "shipped"])
def test_core_fixed_point_is_moment_matched(kind: str, trim: float) -> None:
    mixes = case(kind, 4)
    k = n_components_of(kind)
    pooled = ref.pool(mixes)
    res = core_reduction.reduce(pooled, k, starts_of(mixes, k), trim=trim, tol=1e-13, max_iter=500)
    assert res.converged
    plan = np.asarray(res.assignment)
    mu, sigma, keep = ref.moment_match(pooled.means, pooled.covariances, plan)
    assert keep.all()
    np.testing.assert_allclose(res.mixture.means, mu, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res.mixture.covariances, sigma, rtol=1e-10, atol=1e-10)
    # The plan is the trimmed/plain assignment for the returned mixture.
    expected_plan = ref.assign(ref.kl_cost_matrix(pooled, res.mixture), pooled.weights, trim)
    np.testing.assert_allclose(plan, expected_plan, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("trim", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("seed", range(4))
def test_core_weights_are_normalised_column_sums(seed: int, trim: float) -> None:
    mixes = unstructured_case(seed)
    res = core_reduction.reduce(ref.pool(mixes), 3, starts_of(mixes, 3), trim=trim)
    plan = np.asarray(res.assignment)
    assert res.mixture.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert plan.sum() == pytest.approx(1.0 - trim, abs=1e-12)
    np.testing.assert_allclose(res.mixture.weights, plan.sum(axis=0) / (1.0 - trim), rtol=1e-12)
    assert np.all(plan >= 0)


@pytest.mark.parametrize("trim", [0.0, 0.3])
@pytest.mark.parametrize(("kind", "seed"), [("structured", 7), ("unstructured", 7), ("shipped", 0)])
def test_core_invariant_to_order_of_pooled_components(kind: str, seed: int, trim: float) -> None:
    mixes = case(kind, seed)
    k = n_components_of(kind)
    pooled = ref.pool(mixes)
    perm = np.random.default_rng(seed).permutation(pooled.n_components)
    starts = starts_of(mixes, k)
    res = core_reduction.reduce(pooled, k, starts, trim=trim)
    res_perm = core_reduction.reduce(pooled.permute(perm), k, starts, trim=trim)
    assert res_perm.objective == pytest.approx(res.objective, rel=RTOL_OBJ)
    order = assert_mixture_close(res_perm.mixture, res.mixture, rtol=RTOL_PARAMS, atol=RTOL_PARAMS)
    np.testing.assert_allclose(np.asarray(res_perm.assignment)[:, order], np.asarray(res.assignment)[perm], atol=1e-12)


@pytest.mark.parametrize("method", ["mr", "tkb"])
@pytest.mark.parametrize(("kind", "seed"), [("structured", 8), ("unstructured", 8), ("shipped", 0)])
def test_core_invariant_to_order_of_machines(kind: str, seed: int, method: str) -> None:
    mixes = case(kind, seed)
    k = n_components_of(kind)
    perm = np.random.default_rng(seed).permutation(len(mixes))
    run = getattr(dfmr, method)
    res = run(mixes, k)
    res_perm = run([mixes[i] for i in perm], k)
    assert res_perm.objective == pytest.approx(res.objective, rel=RTOL_OBJ)
    assert_mixture_close(res_perm.mixture, res.mixture, rtol=RTOL_PARAMS, atol=RTOL_PARAMS)


@pytest.mark.parametrize(
    ("kind", "seed"), [("structured", 9), ("unstructured", 9), ("unstructured", 10), ("shipped", 0)]
)
def test_core_mr_matches_reference(kind: str, seed: int) -> None:
    mixes = case(kind, seed)
    k = n_components_of(kind)
    res, expected = dfmr.mr(mixes, k), ref.mr_numpy(mixes, k)
    assert_results_agree(res, expected, check_plan=False)
    np.testing.assert_array_equal(res.retained, np.arange(len(mixes)))


@pytest.mark.parametrize("alpha", [0.1, 0.5])
@pytest.mark.parametrize(("kind", "seed"), [("structured", 11), ("unstructured", 11), ("shipped", 0)])
def test_core_tkb_matches_reference(kind: str, seed: int, alpha: float) -> None:
    mixes = case(kind, seed)
    k = n_components_of(kind)
    res, expected = dfmr.tkb(mixes, k, alpha=alpha), ref.tkb_numpy(mixes, k, alpha)
    assert_results_agree(res, expected, check_plan=False)
    np.testing.assert_array_equal(res.retained, np.arange(len(mixes)))


def test_core_tkb_default_alpha_is_one_half() -> None:
    mixes = structured_case(12)
    assert dfmr.tkb(mixes, 3).objective == pytest.approx(ref.tkb_numpy(mixes, 3, 0.5).objective, rel=RTOL_OBJ)


@pytest.mark.parametrize(("kind", "seed"), [("structured", 13), ("unstructured", 13), ("shipped", 0)])
def test_core_tkb_with_alpha_zero_is_mr(kind: str, seed: int) -> None:
    mixes = case(kind, seed)
    k = n_components_of(kind)
    res_tkb, res_mr = dfmr.tkb(mixes, k, alpha=0.0), dfmr.mr(mixes, k)
    assert res_tkb.objective == pytest.approx(res_mr.objective, rel=1e-12)
    assert res_tkb.n_iter == res_mr.n_iter
    assert_mixture_close(res_tkb.mixture, res_mr.mixture, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_core_copies_reduce_to_the_mixture(seed: int) -> None:
    """Brute-force truth: m relabelled copies of f pool to f, which has objective 0 (KL >= 0)."""
    rng = np.random.default_rng(20 + seed)
    truth = random_mixture(rng, 4, 5, spread=2.0)
    mixes = [truth.permute(rng.permutation(4)) for _ in range(7)]
    res = dfmr.mr(mixes, 4)
    assert abs(res.objective) <= 1e-12
    assert_mixture_close(res.mixture, truth, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("seed", "k", "m", "noise"), [(30, 2, 4, 0.3), (31, 2, 4, 1.0), (32, 3, 3, 0.5)])
def test_core_reaches_bruteforce_optimum(seed: int, k: int, m: int, noise: float) -> None:
    mixes = structured_case(seed, k=k, d=2, m=m, noise=noise)
    best, best_mixture = ref.reduce_bruteforce(ref.pool(mixes), k)
    res = dfmr.mr(mixes, k)
    assert res.objective >= best * (1 - 1e-12)  # nothing can beat the global optimum
    if noise <= 0.5:  # well separated: MR finds it
        assert res.objective == pytest.approx(best, rel=1e-10)
        assert_mixture_close(res.mixture, best_mixture, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("trim", [0.0, 0.3])
@pytest.mark.parametrize("kind", ["structured", "shipped"])
def test_core_drops_component_nobody_is_assigned_to(kind: str, trim: float) -> None:
    mixes = case(kind, 14)
    k = n_components_of(kind)
    pooled = ref.pool(mixes)
    start = far_component_start(starts_of(mixes, k)[0])
    assert ref.kl_cost_matrix(pooled, start)[:, 0].min() > 1e3  # nobody prefers the far component
    res = core_reduction.reduce(pooled, k, [start], trim=trim)
    assert res.mixture.n_components == k - 1
    assert np.asarray(res.assignment).shape == (pooled.n_components, k - 1)
    assert res.mixture.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert_results_agree(res, ref.reduce_numpy(pooled, k, start, trim=trim))


def test_core_max_iter_zero_returns_the_assigned_start() -> None:
    mixes = structured_case(15)
    pooled = ref.pool(mixes)
    start = starts_of(mixes, 3)[2]
    res = core_reduction.reduce(pooled, 3, [start], max_iter=0)
    assert res.n_iter == 0 and len(res.objective_trace) == 1
    assert_results_agree(res, ref.reduce_numpy(pooled, 3, start, max_iter=0))


def test_core_drops_component_that_is_empty_in_the_final_assignment() -> None:
    """DESIGN.md: components that receive no weight are dropped -- also in the last assignment.

    With ``max_iter=0`` the result is the start with weights from the first assignment; a
    start component that nobody is assigned to has weight 0 and must not be returned.
    """
    mixes = structured_case(15)
    pooled = ref.pool(mixes)
    start = far_component_start(starts_of(mixes, 3)[0])
    res = core_reduction.reduce(pooled, 3, [start], max_iter=0)
    assert np.all(res.mixture.weights > 0), f"zero-weight component returned: weights {res.mixture.weights}"
    assert res.mixture.n_components == 2
    assert_results_agree(res, ref.reduce_numpy(pooled, 3, start, max_iter=0))


def test_core_exact_ties_split_equally() -> None:
    mixes = structured_case(16)
    pooled = ref.pool(mixes)
    start = duplicated_component_start(starts_of(mixes, 3)[0])
    res = core_reduction.reduce(pooled, 3, [start])
    expected = ref.reduce_numpy(pooled, 3, start)
    assert expected.mixture.n_components == 3
    assert_results_agree(res, expected)
    # The two copies of the duplicated component stay identical and share the weight equally.
    mu = res.mixture.means
    gaps = {(i, j): np.linalg.norm(mu[i] - mu[j]) for i in range(3) for j in range(i + 1, 3)}
    i, j = min(gaps, key=gaps.__getitem__)
    assert res.mixture.weights[i] == pytest.approx(res.mixture.weights[j], rel=1e-14)
    np.testing.assert_allclose(mu[i], mu[j], rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(res.mixture.covariances[i], res.mixture.covariances[j], rtol=1e-14, atol=1e-14)


def test_core_thread_count_does_not_change_results() -> None:
    mixes = unstructured_case(17, m=12)
    pooled = ref.pool(mixes)
    starts = starts_of(mixes, 3) + [random_mixture(np.random.default_rng(s), 3, 3) for s in range(6)]
    one = core_reduction.reduce(pooled, 3, starts, n_threads=1)
    two = core_reduction.reduce(pooled, 3, starts, n_threads=2)
    assert one.objective == two.objective and one.start_index == two.start_index
    np.testing.assert_array_equal(one.start_objectives, two.start_objectives)
    np.testing.assert_array_equal(one.mixture.means, two.mixture.means)
    np.testing.assert_array_equal(one.mixture.covariances, two.mixture.covariances)
    np.testing.assert_array_equal(one.assignment, two.assignment)


@pytest.mark.parametrize("max_iter", [2, 3, 100])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_core_shared_trajectories_are_bit_identical_to_full_runs(max_iter: int, n_threads: int) -> None:
    # Well-separated clusters: the starts reach the same transport plans and are cut short;
    # the attacked copies and overlapping random mixtures reach many different optima.
    rng = np.random.default_rng(5)
    separated = GaussianMixtureParams(np.full(3, 1 / 3), 12.0 * np.eye(3), np.array([np.eye(3)] * 3))
    copies = noisy_copies(rng, separated, 20, noise=0.1)
    attacked = [GaussianMixtureParams(f.weights, f.means + 40.0, f.covariances) if i % 4 == 0 else f
                for i, f in enumerate(copies)]
    overlapping = [random_mixture(np.random.default_rng(s), 3, 3) for s in range(20)]
    cut = {}
    for name, mixes in (("separated", copies), ("attacked", attacked), ("overlapping", overlapping)):
        shared = core_reduction.reduce_mixtures(mixes, 3, max_iter=max_iter, n_threads=n_threads)
        full = core_reduction.reduce_mixtures(mixes, 3, max_iter=max_iter, n_threads=n_threads,
                                              share_trajectories=False)
        assert full.n_starts_cut == 0
        cut[name] = shared.n_starts_cut
        assert shared.objective == full.objective and shared.start_index == full.start_index
        assert shared.n_iter == full.n_iter and shared.converged == full.converged
        np.testing.assert_array_equal(shared.start_objectives, full.start_objectives)
        np.testing.assert_array_equal(shared.start_n_iter, full.start_n_iter)
        np.testing.assert_array_equal(shared.objective_trace, full.objective_trace)
        np.testing.assert_array_equal(shared.assignment, full.assignment)
        np.testing.assert_array_equal(shared.mixture.weights, full.mixture.weights)
        np.testing.assert_array_equal(shared.mixture.means, full.mixture.means)
        np.testing.assert_array_equal(shared.mixture.covariances, full.mixture.covariances)
    if n_threads == 1:  # with one thread every later start sees the first start finished
        assert cut["separated"] > 0


def test_random_spd_helper_is_well_conditioned() -> None:
    s = random_spd(np.random.default_rng(0), 6, scale=2.0, cond=5.0)
    eig = np.linalg.eigvalsh(s)
    assert eig.min() >= 2.0 * (1 - 1e-12) and eig.max() <= 10.0 * (1 + 1e-12)
