"""Tests of dfmr.simulate: shipped data, splitting, and the paper's Byzantine attacks."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import dfmr
from dfmr.params import GaussianMixtureParams
from dfmr.simulate import _attack_components, attack, local_estimates_fixture, population, split

DATA = Path(dfmr.__file__).parent / "data"


def random_mixture(rng: np.random.Generator, k: int, d: int) -> GaussianMixtureParams:
    factors = rng.normal(size=(k, d, d))
    covariances = factors @ np.swapaxes(factors, 1, 2) + np.eye(d)
    return GaussianMixtureParams(rng.dirichlet(np.ones(k)), rng.normal(size=(k, d)), covariances, normalize=True)


def random_mixtures(m: int, k: int = 3, d: int = 2, seed: int = 0) -> list[GaussianMixtureParams]:
    rng = np.random.default_rng(seed)
    return [random_mixture(rng, k, d) for _ in range(m)]


def changed(before: GaussianMixtureParams, after: GaussianMixtureParams) -> dict[str, np.ndarray]:
    """Per field, a boolean per component: did it change?

    Weights count as unchanged up to 1e-13 relative: rebuilding a GaussianMixtureParams divides the
    weights by their sum, which moves the last bit when that sum is 1 +- 1 ulp.
    """
    return {
        "weights": ~np.isclose(before.weights, after.weights, rtol=1e-13, atol=0.0),
        "means": np.any(before.means != after.means, axis=1),
        "covariances": np.any(before.covariances != after.covariances, axis=(1, 2)),
    }


# --- shipped data and splitting ------------------------------------------------------------------


def test_population_is_the_shipped_mixsim_file():
    with np.load(DATA / "mixsim_K5_d10_omega0.1_seed1.npz") as raw:
        expected = GaussianMixtureParams(raw["weights"], raw["means"], raw["covariances"])
    pop = population()
    assert (pop.n_components, pop.dim) == (5, 10)
    assert pop == expected


def test_population_rejects_unknown_names_and_lists_the_available_ones():
    with pytest.raises(ValueError, match="mixsim_K5_d10_omega0.1_seed1"):
        population("no_such_population")
    with pytest.raises(ValueError, match="unknown data set"):
        population("../params")


def test_local_estimates_fixture_holds_twenty_five_component_estimates():
    estimates = local_estimates_fixture()
    with np.load(DATA / "local_estimates_K5_d10_m20.npz") as raw:
        assert len(estimates) == raw["weights"].shape[0] == 20
        for i, est in enumerate(estimates):
            assert (est.n_components, est.dim) == (5, 10)
            np.testing.assert_allclose(est.weights, raw["weights"][i], rtol=1e-12)
            np.testing.assert_array_equal(est.means, raw["means"][i])
            np.testing.assert_allclose(est.covariances, raw["covariances"][i], rtol=1e-12)


@pytest.mark.parametrize(("n", "n_machines"), [(10, 3), (100, 20), (7, 7), (5, 1)])
def test_split_shuffles_every_row_into_balanced_parts(n, n_machines):
    X = np.arange(2 * n, dtype=float).reshape(n, 2)
    parts = split(X, n_machines, random_state=0)
    sizes = [len(p) for p in parts]
    assert len(parts) == n_machines
    assert max(sizes) - min(sizes) <= 1
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)[:, 0]), X[:, 0])
    assert all(p.shape[1] == 2 for p in parts)


def test_split_shuffles_rows_and_is_reproducible():
    X = np.arange(200, dtype=float).reshape(100, 2)
    parts = split(X, 4, random_state=1)
    assert not np.array_equal(np.concatenate(parts), X)
    for p, q in zip(parts, split(X, 4, random_state=1)):
        np.testing.assert_array_equal(p, q)


def test_split_rejects_bad_arguments():
    X = np.zeros((5, 2))
    with pytest.raises(ValueError, match="2-D"):
        split(np.zeros(5), 2)
    for bad in (0, 6, 2.0, True):
        with pytest.raises(ValueError, match="n_machines"):
            split(X, bad)


# --- machine-level attacks -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mean", "cov", "weight"])
@pytest.mark.parametrize(
    ("rate", "m", "expected"),
    [(0.1, 20, 2), (0.25, 20, 5), (0.4, 20, 8), (0.29, 100, 29), (0.99, 10, 9), (0.05, 10, 0)],
)
def test_machine_attack_corrupts_exactly_floor_of_rate_times_m_machines(kind, rate, m, expected):
    mixtures = random_mixtures(m)
    attacked, bad = attack(mixtures, rate, kind=kind, level="machine", random_state=3)
    touched = [i for i in range(m) if attacked[i] != mixtures[i]]
    assert len(bad) == expected
    assert touched == bad.tolist()
    assert np.issubdtype(bad.dtype, np.integer)


@pytest.mark.parametrize("kind", ["mean", "cov", "weight"])
def test_machine_attack_leaves_the_other_machines_untouched_and_the_input_unchanged(kind):
    mixtures = local_estimates_fixture()
    originals = list(mixtures)
    snapshot = [(mix.weights.copy(), mix.means.copy(), mix.covariances.copy()) for mix in mixtures]
    attacked, bad = attack(mixtures, 0.3, kind=kind, random_state=4)
    assert len(attacked) == len(mixtures)
    for i in set(range(len(mixtures))) - set(bad.tolist()):
        assert attacked[i] is mixtures[i]
    assert all(a is b for a, b in zip(mixtures, originals))
    for mix, (w, mu, cov) in zip(mixtures, snapshot):
        np.testing.assert_array_equal(mix.weights, w)
        np.testing.assert_array_equal(mix.means, mu)
        np.testing.assert_array_equal(mix.covariances, cov)


def test_machine_mean_attack_replaces_every_mean_with_normal_draws_of_sd_100():
    mixtures = local_estimates_fixture()
    attacked, bad = attack(mixtures, 0.4, kind="mean", random_state=5)
    draws = np.concatenate([attacked[i].means.ravel() for i in bad])
    assert draws.size == 8 * 5 * 10
    # 400 N(0, 100^2) draws: the sample sd has standard error about 3.5, the mean about 5.
    assert 85.0 < draws.std() < 115.0
    assert abs(draws.mean()) < 25.0
    for i in bad:
        flags = changed(mixtures[i], attacked[i])
        assert flags["means"].all() and not flags["weights"].any() and not flags["covariances"].any()


def test_machine_cov_attack_adds_a_full_rank_psd_matrix_to_every_covariance():
    mixtures = local_estimates_fixture()
    attacked, bad = attack(mixtures, 0.4, kind="cov", random_state=6)
    d = mixtures[0].dim
    added = np.concatenate([attacked[i].covariances - mixtures[i].covariances for i in bad])
    assert added.shape == (8 * 5, d, d)
    for delta in added:
        np.testing.assert_allclose(delta, delta.T, atol=1e-10)
        assert np.linalg.eigvalsh(delta).min() > -1e-8
        # B is a square Gaussian matrix, so B B^T has full rank almost surely.
        assert np.linalg.matrix_rank(delta) == d
    # A fresh B per component: no two additions coincide.
    assert all(not np.allclose(p, q) for p, q in itertools.combinations(added, 2))
    # tr(B B^T) is chi-square with d^2 = 100 degrees of freedom; the mean of 40 has sd about 2.2.
    assert 90.0 < np.trace(added, axis1=1, axis2=2).mean() < 110.0
    for i in bad:
        flags = changed(mixtures[i], attacked[i])
        assert flags["covariances"].all() and not flags["weights"].any() and not flags["means"].any()


def test_machine_weight_attack_draws_weights_from_the_dirichlet_support():
    mixtures = local_estimates_fixture()
    attacked, bad = attack(mixtures, 0.4, kind="weight", random_state=7)
    for i in bad:
        w = attacked[i].weights
        assert w.sum() == pytest.approx(1.0, abs=1e-12)
        # With every concentration in [10, 19], a weight below 0.02 or above 0.6 has probability < 1e-6.
        assert np.all(w > 0.02) and np.all(w < 0.6)
        flags = changed(mixtures[i], attacked[i])
        assert flags["weights"].any() and not flags["means"].any() and not flags["covariances"].any()


def test_weight_attack_variance_matches_the_dirichlet_with_random_concentrations():
    # For K = 2, w_0 | a ~ Beta(a_0, a_1) with a_0, a_1 independent uniform on {10, ..., 19}.
    a0, a1 = (g.ravel().astype(float) for g in np.meshgrid(np.arange(10, 20), np.arange(10, 20)))
    total = a0 + a1
    cond_mean = a0 / total
    expected_var = np.mean(a0 * a1 / (total**2 * (total + 1))) + np.var(cond_mean)
    mix = random_mixtures(1, k=2)[0]
    rng = np.random.default_rng(8)
    draws = np.array([_attack_components(mix, np.arange(2), "weight", rng).weights[0] for _ in range(4000)])
    assert draws.mean() == pytest.approx(0.5, abs=0.01)
    assert draws.var() == pytest.approx(expected_var, rel=0.1)


# --- component-level attacks ---------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field"), [("mean", "means"), ("cov", "covariances")])
def test_component_attack_hits_floor_of_rate_times_m_machines_per_component(kind, field):
    mixtures = local_estimates_fixture()
    attacked, bad = attack(mixtures, 0.3, kind=kind, level="component", random_state=9)
    flags = np.array([changed(a, b)[field] for a, b in zip(mixtures, attacked)])  # (m, K)
    np.testing.assert_array_equal(flags.sum(axis=0), [6] * 5)
    np.testing.assert_array_equal(bad, np.flatnonzero(flags.any(axis=1)))
    for a, b in zip(mixtures, attacked):
        for other in {"weights", "means", "covariances"} - {field}:
            assert not changed(a, b)[other].any()


def test_component_mean_attack_draws_fresh_normal_means_only_for_the_hit_components():
    mixtures = local_estimates_fixture()
    attacked, _ = attack(mixtures, 0.4, kind="mean", level="component", random_state=10)
    hit = np.array([changed(a, b)["means"] for a, b in zip(mixtures, attacked)])
    draws = np.concatenate([attacked[i].means[k] for i, k in zip(*np.nonzero(hit))])
    assert hit.sum() == 8 * 5
    assert 85.0 < draws.std() < 115.0
    for i, k in zip(*np.nonzero(~hit)):
        np.testing.assert_array_equal(attacked[i].means[k], mixtures[i].means[k])


def test_component_cov_attack_adds_a_psd_matrix_to_the_hit_component():
    mix = random_mixtures(1, k=3, d=4)[0]
    out = _attack_components(mix, np.array([1]), "cov", np.random.default_rng(11))
    delta = out.covariances[1] - mix.covariances[1]
    assert np.linalg.eigvalsh(delta).min() > -1e-10
    assert np.linalg.matrix_rank(delta) == 4
    np.testing.assert_array_equal(out.covariances[[0, 2]], mix.covariances[[0, 2]])


def test_component_weight_attack_rescales_the_untouched_weights_by_one_common_factor():
    mix = random_mixtures(1, k=4)[0]
    rng = np.random.default_rng(12)
    for k in range(4):
        out = _attack_components(mix, np.array([k]), "weight", rng)
        others = np.arange(4) != k
        ratio = out.weights[others] / mix.weights[others]
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)
        assert out.weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert out.weights[k] != mix.weights[k]
        # w_k was set to v_k in (0, 1) before dividing by the sum 1 - w_k + v_k = 1 / ratio.
        assert 0.0 < out.weights[k] / ratio[0] < 1.0
        np.testing.assert_array_equal(out.means, mix.means)
        np.testing.assert_array_equal(out.covariances, mix.covariances)


def test_component_weight_attack_changes_only_weights_of_the_reported_machines():
    mixtures = local_estimates_fixture()
    attacked, bad = attack(mixtures, 0.2, kind="weight", level="component", random_state=13)
    weights_changed = [i for i, (a, b) in enumerate(zip(mixtures, attacked)) if changed(a, b)["weights"].any()]
    assert weights_changed == bad.tolist()
    # Four machines per component, five components: between 4 and 20 distinct machines.
    assert 4 <= len(bad) <= 20
    for a, b in zip(mixtures, attacked):
        assert b.weights.sum() == pytest.approx(1.0, abs=1e-12)
        assert not changed(a, b)["means"].any() and not changed(a, b)["covariances"].any()


def test_component_attack_chooses_among_the_machines_that_have_the_component():
    rng = np.random.default_rng(14)
    mixtures = [random_mixture(rng, 2 if i % 2 else 4, 2) for i in range(12)]
    attacked, _ = attack(mixtures, 0.5, kind="mean", level="component", random_state=15)
    per_component = np.zeros(4, dtype=int)
    for a, b in zip(mixtures, attacked):
        flags = changed(a, b)["means"]
        per_component[: len(flags)] += flags
    # Components 0 and 1 exist on all 12 machines, components 2 and 3 on the 6 four-component ones.
    np.testing.assert_array_equal(per_component, [6, 6, 3, 3])


# --- shared behaviour ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["machine", "component"])
@pytest.mark.parametrize("kind", ["mean", "cov", "weight"])
def test_attack_is_reproducible_with_a_seed(kind, level):
    mixtures = local_estimates_fixture()
    first, bad1 = attack(mixtures, 0.3, kind=kind, level=level, random_state=16)
    second, bad2 = attack(mixtures, 0.3, kind=kind, level=level, random_state=16)
    other, _ = attack(mixtures, 0.3, kind=kind, level=level, random_state=17)
    np.testing.assert_array_equal(bad1, bad2)
    assert first == second
    assert first != other


@pytest.mark.parametrize("level", ["machine", "component"])
@pytest.mark.parametrize("kind", ["mean", "cov", "weight"])
def test_attack_at_rate_zero_returns_the_mixtures_unchanged(kind, level):
    mixtures = local_estimates_fixture()
    attacked, bad = attack(mixtures, 0.0, kind=kind, level=level, random_state=18)
    assert all(a is b for a, b in zip(attacked, mixtures))
    assert bad.size == 0 and np.issubdtype(bad.dtype, np.integer)


def test_attack_rejects_bad_arguments():
    mixtures = random_mixtures(4)
    for rate in (1.0, -0.1, float("nan"), 1.5):
        with pytest.raises(ValueError, match="rate"):
            attack(mixtures, rate)
    with pytest.raises(TypeError, match="rate"):
        attack(mixtures, "0.1")
    with pytest.raises(ValueError, match="'mean', 'cov', 'weight'"):
        attack(mixtures, 0.5, kind="scale")
    with pytest.raises(ValueError, match="'machine', 'component'"):
        attack(mixtures, 0.5, level="cluster")
    with pytest.raises(ValueError, match="empty"):
        attack([], 0.5)
    with pytest.raises(TypeError, match=r"mixtures\[1\]"):
        attack([mixtures[0], "not a mixture"], 0.5)
