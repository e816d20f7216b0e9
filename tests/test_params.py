"""Unit tests of :class:`dfmr.GaussianMixtureParams`: validation rules and their messages, the numeric
limits, ``normalize``, immutability, serialisation round trips, densities and sampling."""

from __future__ import annotations

import copy
import json
import math
import pickle
from dataclasses import fields

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import dfmr
from dfmr import LIMITS, GaussianMixtureParams, InvalidMixtureError
from dfmr.params import NumericLimits

W = [0.2, 0.3, 0.5]
MU = [[0.0, 1.0], [-2.0, 3.0], [4.0, -1.0]]
COV = [[[2.0, 0.3], [0.3, 1.0]], [[0.5, -0.1], [-0.1, 0.7]], [[1.0, 0.0], [0.0, 1.0]]]


def _valid() -> dict:
    return {"weights": np.array(W), "means": np.array(MU), "covariances": np.array(COV)}


def _with(field: str, value) -> dict:
    kwargs = _valid()
    kwargs[field] = value
    return kwargs


def _cov_with(k: int, matrix) -> np.ndarray:
    cov = np.array(COV)
    cov[k] = matrix
    return cov


def _rotated(eigenvalues, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues),) * 2))
    s = (q * np.asarray(eigenvalues)) @ q.T
    return 0.5 * (s + s.T)


# --------------------------------------------------------------------------------------------------
# Validation: every rule raises InvalidMixtureError whose message names the field and the reason.
# --------------------------------------------------------------------------------------------------

MALFORMED = {
    # shapes and types
    "weights_2d": (_with("weights", np.array([W])), r"^weights: expected a 1-D array"),
    "weights_scalar": (_with("weights", 1.0), r"^weights: expected a 1-D array"),
    "weights_empty": (_with("weights", []), r"^weights: a mixture needs at least one component"),
    "weights_none": (_with("weights", None), r"^weights: expected an array of real numbers, got NoneType"),
    "weights_string": (_with("weights", "0.2 0.3 0.5"), r"^weights: expected an array of real numbers, got str"),
    "weights_numeric_strings": (_with("weights", ["0.2", "0.3", "0.5"]),
                                r"^weights: expected real numbers, got strings"),
    "weights_bool": (_with("weights", [True, False, False]), r"^weights: expected real numbers, got booleans"),
    "weights_complex": (_with("weights", [0.2 + 0j, 0.3, 0.5]), r"^weights: expected real numbers, got complex"),
    "weights_dict": (_with("weights", {"a": 1.0}), r"^weights: expected an array of real numbers, got dict"),
    "weights_mixed_objects": (_with("weights", [0.2, None, 0.5]), r"^weights: ragged or non-numeric data"),
    "weights_huge_int": (_with("weights", [10**400, 0, 0]), r"^weights: an entry is too large"),
    "means_ragged": (_with("means", [[0.0, 1.0], [2.0], [3.0, 4.0]]), r"^means: cannot be read as an array"),
    "means_wrong_k": (_with("means", np.array(MU)[:2]), r"^means: expected shape \(K, d\) = \(3, d\), got \(2, 2\)"),
    "means_3d": (_with("means", np.array(MU)[:, :, None]), r"^means: expected shape"),
    "means_d0": (_with("means", np.zeros((3, 0))), r"^means: dimension d = 0"),
    "means_strings": (_with("means", [["a", "b"]] * 3), r"^means: expected real numbers, got strings"),
    "cov_wrong_d": (_with("covariances", np.ones((3, 3, 3))),
                    r"^covariances: expected shape \(K, d, d\) = \(3, 2, 2\)"),
    "cov_not_square": (_with("covariances", np.ones((3, 2, 3))), r"^covariances: expected shape"),
    "cov_wrong_k": (_with("covariances", np.array(COV)[:2]), r"^covariances: expected shape"),
    "cov_empty": (_with("covariances", []), r"^covariances: expected shape"),
    "cov_ragged": (_with("covariances", [[[1.0, 0.0], [0.0]]] * 3), r"^covariances: cannot be read as an array"),
    # finiteness
    "weights_nan": (_with("weights", [0.2, math.nan, 0.5]),
                    r"^weights: contains NaN or infinity \(first at index \(1,\)\)"),
    "means_inf": (_with("means", [[0.0, 1.0], [-2.0, math.inf], [4.0, -1.0]]),
                  r"^means: contains NaN or infinity \(first at index \(1, 1\)\)"),
    "cov_nan": (_with("covariances", _cov_with(2, [[1.0, math.nan], [math.nan, 1.0]])),
                r"^covariances: contains NaN or infinity \(first at index \(2, 0, 1\)\)"),
    "cov_neg_inf": (_with("covariances", _cov_with(0, [[-math.inf, 0.0], [0.0, 1.0]])), r"^covariances: contains NaN"),
    # weights
    "weights_negative": (_with("weights", [-0.2, 0.7, 0.5]), r"^weights: weight 0 is negative"),
    "weights_sum": (_with("weights", [0.2, 0.3, 0.6]), r"^weights: sum to 1\.1.*normalize=True"),
    "weights_zero": (_with("weights", [0.0, 0.0, 0.0]), r"^weights: sum to 0\.0"),
    # covariances
    "cov_asymmetric": (_with("covariances", _cov_with(1, [[0.5, -0.1], [0.1, 0.7]])),
                       r"^covariances: matrix 1 is not symmetric"),
    "cov_indefinite": (_with("covariances", _cov_with(2, [[1.0, 2.0], [2.0, 1.0]])),
                       r"^covariances: matrix 2 is not positive definite \(smallest eigenvalue -1"),
    "cov_singular": (_with("covariances", _cov_with(0, [[1.0, 1.0], [1.0, 1.0]])),
                     r"^covariances: matrix 0 is not positive definite"),
    "cov_negative_definite": (_with("covariances", _cov_with(0, -np.eye(2))),
                              r"^covariances: matrix 0 is not positive"),
    "cov_zero": (_with("covariances", np.zeros((3, 2, 2))), r"^covariances: matrix 0 is not positive definite"),
    # numeric limits
    "means_too_large": (_with("means", [[0.0, 1.0], [-2.0, -1.01e50], [4.0, -1.0]]),
                        r"^means: \|mean\| = 1\.01e\+50 exceeds the limit 1e\+50"),
    "cov_eigen_too_small": (_with("covariances", _cov_with(0, np.diag([1e-51, 1e-45]))),
                            r"^covariances: matrix 0 has eigenvalues in \[1e-51, 1e-45\], outside"),
    "cov_eigen_too_large": (_with("covariances", _cov_with(1, _rotated([2e50, 1e45]))),
                            r"^covariances: matrix 1 has (eigenvalues|an entry)"),
    "cov_entry_huge": (_with("covariances", _cov_with(1, np.diag([1e300, 1e300]))),
                       r"^covariances: matrix 1 has an entry of size 1e\+300"),
    "cov_entry_near_overflow": (_with("covariances", _cov_with(0, [[1e308, 1e308], [1e308, 1.7e308]])),
                                r"^covariances: matrix 0 has an entry"),
    "cov_ill_conditioned": (_with("covariances", _cov_with(2, _rotated([1.0, 1e13]))),
                            r"^covariances: matrix 2 has condition number 1(\.0\d)?e\+13 > 1e\+12"),
    "too_many_components": ({"weights": np.full(1001, 1 / 1001), "means": np.zeros((1001, 1)),
                             "covariances": np.ones((1001, 1, 1))}, r"^weights: K = 1001 exceeds the limit of 1000"),
    "too_many_dims": ({"weights": [1.0], "means": np.zeros((1, 1001)), "covariances": np.eye(1001)[None]},
                      r"^means: dimension d = 1001 must be between 1 and 1000"),
    "too_concentrated": ({"weights": [1.0], "means": np.zeros((1, 40)), "covariances": (1e-20 * np.eye(40))[None]},
                         r"^covariances: matrix 0 is so concentrated .* exp\(884\.3\) > exp\(700\)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_parameters_raise_invalid_mixture_error_naming_the_field(case):
    kwargs, pattern = MALFORMED[case]
    with pytest.raises(InvalidMixtureError, match=pattern):
        GaussianMixtureParams(**kwargs)


def test_invalid_mixture_error_is_a_value_error():
    assert issubclass(InvalidMixtureError, ValueError)
    with pytest.raises(ValueError):
        GaussianMixtureParams([0.5], [[0.0]], [[[1.0]]])


def test_the_valid_base_case_is_accepted():
    mix = GaussianMixtureParams(**_valid())
    assert (mix.n_components, mix.dim) == (3, 2)
    np.testing.assert_array_equal(mix.weights, W)
    np.testing.assert_array_equal(mix.means, MU)
    np.testing.assert_array_equal(mix.covariances, COV)
    np.testing.assert_allclose(mix.cholesky_factors @ np.swapaxes(mix.cholesky_factors, 1, 2), COV, rtol=1e-15)
    assert np.all(np.triu(mix.cholesky_factors, 1) == 0)


@pytest.mark.parametrize(
    "weights, means, covariances, k, d",
    [
        ([1.0], [1.0, 2.0, 3.0], np.eye(3), 1, 3),  # one component: means (d,), covariances (d, d)
        ([0.4, 0.6], [-1.0, 1.0], [2.0, 0.5], 2, 1),  # d = 1: means (K,), covariances (K,) of variances
        ([1.0], [5.0], [[3.0]], 1, 1),
        ([0.4, 0.6], [[-1.0], [1.0]], [[[2.0]], [[0.5]]], 2, 1),
    ],
)
def test_documented_shape_shorthands(weights, means, covariances, k, d):
    mix = GaussianMixtureParams(weights, means, covariances)
    assert mix.weights.shape == (k,) and mix.means.shape == (k, d) and mix.covariances.shape == (k, d, d)
    np.testing.assert_array_equal(mix.means.ravel(), np.ravel(means))


def test_integer_float32_and_big_integer_inputs_become_float64():
    mix = GaussianMixtureParams(np.array([1, 0]), np.array([[1], [2**70]]), np.array([[[2]], [[3]]], dtype=np.float32))
    assert mix.weights.dtype == mix.means.dtype == mix.covariances.dtype == np.float64
    assert mix.means[1, 0] == float(2**70)
    assert mix.weights.tolist() == [1.0, 0.0]


def test_values_exactly_at_the_limits_are_accepted():
    # Accepted values come back as given: nothing clipped, rescaled or regularised on the way in.
    big = LIMITS.max_abs_mean
    k_max = LIMITS.max_components
    cases = [
        ([0.5, 0.5], [[big, -big], [-big, big]], np.array([np.diag([1e-50, 1e-39]), np.diag([1e39, 1e50])]), False),
        ([1.0], [[0.0, 0.0]], np.diag([1.0, LIMITS.max_condition])[None], False),
        (np.full(k_max, 1.0 / k_max), np.zeros((k_max, 1)), np.ones((k_max, 1, 1)), True),
    ]
    for weights, means, covariances, normalize in cases:
        mix = GaussianMixtureParams(weights, means, covariances, normalize=normalize)
        np.testing.assert_allclose(mix.weights, weights, rtol=4 * np.finfo(float).eps, atol=0)
        np.testing.assert_array_equal(mix.means, means)
        np.testing.assert_array_equal(mix.covariances, covariances)


def test_peak_density_limit_is_sharp():
    # -0.5 * log det(2 pi s I_d) = limit  <=>  s = exp(-2 limit / d) / (2 pi)
    d = 30
    s = math.exp(-2.0 * LIMITS.max_log_peak_density / d) / (2.0 * math.pi)
    GaussianMixtureParams([1.0], np.zeros((1, d)), (s * 1.0001 * np.eye(d))[None])
    with pytest.raises(InvalidMixtureError, match=r"^covariances: matrix 0 is so concentrated"):
        GaussianMixtureParams([1.0], np.zeros((1, d)), (s * 0.9999 * np.eye(d))[None])


def test_limits_are_documented_and_frozen():
    doc = NumericLimits.__doc__
    for f in fields(NumericLimits):
        assert f.name in doc, f"LIMITS.{f.name} is not documented"
    with pytest.raises(AttributeError):
        LIMITS.max_abs_mean = 1e300  # type: ignore[misc]
    assert dfmr.LIMITS is LIMITS


def test_peak_density_limit_keeps_squared_distances_finite():
    """The most concentrated accepted mixtures (peak density at the limit, in d = 50) against a flat one."""
    d = 50
    s = math.exp(-2.0 * LIMITS.max_log_peak_density / d) / (2.0 * math.pi) * 1.0001
    sharp = GaussianMixtureParams([1.0], np.zeros((1, d)), (s * np.eye(d))[None])
    sharp2 = GaussianMixtureParams([0.5, 0.5], np.zeros((2, d)), np.array([s * np.eye(d), 1.5 * s * np.eye(d)]))
    flat = GaussianMixtureParams([1.0], np.full((1, d), 1e50), (1e50 * np.eye(d))[None])
    D = dfmr.pairwise_l2([sharp, sharp2, flat])
    assert np.all(np.isfinite(D)) and np.all(np.isfinite(D**2))
    # ||sharp||^2 = (4 pi s)^(-d/2): the distance to a density that is negligible everywhere.
    log_norm_sq = -0.5 * d * math.log(4.0 * math.pi * s)
    assert math.log(D[0, 2]) == pytest.approx(0.5 * log_norm_sq, rel=1e-12)
    assert D[0, 1] > 0


def test_symmetry_tolerance_and_exact_symmetrisation():
    s = np.array([[2.0, 0.3], [0.3 * (1 + 1e-9), 1.0]])
    mix = GaussianMixtureParams([1.0], [[0.0, 0.0]], s[None])
    c = mix.covariances[0]
    assert c[0, 1] == c[1, 0]
    assert c[0, 1] == pytest.approx(0.3, rel=1e-9)
    with pytest.raises(InvalidMixtureError, match="not symmetric"):
        GaussianMixtureParams([1.0], [[0.0, 0.0]], np.array([[[2.0, 0.3], [0.3 * (1 + 1e-6), 1.0]]]))


# --------------------------------------------------------------------------------------------------
# normalize
# --------------------------------------------------------------------------------------------------


def test_weights_within_rounding_are_accepted_and_rescaled():
    w = np.array([0.2, 0.3, 0.5]) * (1 + 3e-9)
    mix = GaussianMixtureParams(w, MU, COV)
    assert math.fsum(mix.weights) == pytest.approx(1.0, abs=2e-16)
    np.testing.assert_allclose(mix.weights, W, rtol=1e-15)


def test_normalize_rescales_transmission_rounding():
    w = [0.2004, 0.3, 0.5]  # three decimals too many: sums to 1.0004
    with pytest.raises(InvalidMixtureError, match=r"weights: sum to 1\.0004.*Pass normalize=True"):
        GaussianMixtureParams(w, MU, COV)
    mix = GaussianMixtureParams(w, MU, COV, normalize=True)
    np.testing.assert_allclose(mix.weights, np.array(w) / 1.0004, rtol=1e-15)
    assert abs(math.fsum(mix.weights) - 1.0) <= 2e-16
    low = GaussianMixtureParams(np.float32([0.2, 0.3, 0.5]) * np.float32(0.9995), MU, COV, normalize=True)
    np.testing.assert_allclose(low.weights, W, rtol=1e-6)


def test_normalize_refuses_what_is_not_rounding():
    with pytest.raises(InvalidMixtureError, match=r"weights: sum to 1\.002.*tolerance 0\.001\)\.$"):
        GaussianMixtureParams([0.202, 0.3, 0.5], MU, COV, normalize=True)
    with pytest.raises(InvalidMixtureError, match=r"weight 1 is negative"):
        GaussianMixtureParams([0.5, -1e-12, 0.5], MU, COV, normalize=True)


def test_rescaling_is_idempotent():
    """Validating accepted weights again never changes them (else save/load would not be exact)."""
    rng = np.random.default_rng(1)
    for _ in range(500):
        k = int(rng.integers(2, 30))
        w = rng.dirichlet(np.ones(k)) * (1 + rng.uniform(-5e-4, 5e-4))
        mix = GaussianMixtureParams(w, np.zeros((k, 1)), np.ones(k), normalize=True)
        again = GaussianMixtureParams(mix.weights, mix.means, mix.covariances)
        np.testing.assert_array_equal(again.weights, mix.weights)


# --------------------------------------------------------------------------------------------------
# Immutability
# --------------------------------------------------------------------------------------------------


def test_arrays_are_private_read_only_copies():
    kwargs = _valid()
    mix = GaussianMixtureParams(**kwargs)
    kwargs["weights"][0] = 99.0
    kwargs["means"][:] = 7.0
    kwargs["covariances"][:] = 0.0
    np.testing.assert_array_equal(mix.weights, W)
    np.testing.assert_array_equal(mix.means, MU)
    np.testing.assert_array_equal(mix.covariances, COV)
    for arr in (mix.weights, mix.means, mix.covariances, mix.cholesky_factors):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0.0


def test_attributes_cannot_be_rebound():
    mix = GaussianMixtureParams(**_valid())
    with pytest.raises(AttributeError):
        mix.weights = np.ones(3) / 3  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        mix._weights = np.ones(3) / 3
    with pytest.raises(AttributeError, match="immutable"):
        del mix._means
    with pytest.raises(AttributeError):
        mix.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="re-initialised"):
        mix.__init__([1.0], [[0.0, 0.0]], np.eye(2)[None])
    np.testing.assert_array_equal(mix.weights, W)
    with pytest.raises(TypeError):
        hash(mix)


@pytest.mark.parametrize("clone", [lambda m: pickle.loads(pickle.dumps(m)), copy.deepcopy, copy.copy])
def test_copies_and_pickles_stay_equal_and_read_only(clone):
    mix = GaussianMixtureParams(**_valid())
    other = clone(mix)
    assert other == mix
    np.testing.assert_array_equal(other.cholesky_factors, mix.cholesky_factors)
    for arr in (other.weights, other.means, other.covariances, other.cholesky_factors):
        assert not arr.flags.writeable


def test_permute():
    mix = GaussianMixtureParams(**_valid())
    p = mix.permute([2, 0, 1])
    np.testing.assert_array_equal(p.weights, np.array(W)[[2, 0, 1]])
    np.testing.assert_array_equal(p.covariances, np.array(COV)[[2, 0, 1]])
    np.testing.assert_array_equal(p.cholesky_factors, mix.cholesky_factors[[2, 0, 1]])
    X = np.random.default_rng(0).standard_normal((20, 2))
    np.testing.assert_allclose(p.logpdf(X), mix.logpdf(X), rtol=1e-14)
    assert not p.weights.flags.writeable
    for bad in ([0, 0, 1], [0, 1], [0, 1, 3], [0.0, 1.0, 2.0], [[0, 1, 2]]):
        with pytest.raises(ValueError, match="permutation"):
            mix.permute(bad)


def test_permute_keeps_mixtures_built_by_the_core_valid():
    """A reduced covariance beyond the input limits (two components 1e50 apart merged) can still be permuted."""
    a = GaussianMixtureParams([0.5, 0.5], [[-1e50, 0.0], [1e50, 0.0]], np.array([np.eye(2), np.eye(2)]))
    res = dfmr.mr([a, a, a], 1)
    assert res.mixture.covariances[0, 0, 0] > LIMITS.max_eigenvalue
    assert res.mixture.permute([0]) == res.mixture


# --------------------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------------------


def _awkward() -> GaussianMixtureParams:
    """Floats that do not survive a careless text round trip."""
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(4))
    mu = rng.standard_normal((4, 3)) * np.array([1e-300, 1.0 / 3.0, 1e49])
    mu[0, 0] = -0.0
    cov = np.array([_rotated(np.exp(rng.uniform(-10, 10, 3)), seed=i) for i in range(4)])
    return GaussianMixtureParams(w, mu, cov, normalize=True)


def test_to_dict_from_dict_round_trip_is_exact():
    mix = _awkward()
    d = mix.to_dict()
    assert d["format"] == "dfmr.GaussianMixtureParams" and d["version"] == 1
    assert isinstance(d["weights"], list) and isinstance(d["covariances"][0][0][0], float)
    back = GaussianMixtureParams.from_dict(json.loads(json.dumps(d)))
    assert back == mix
    np.testing.assert_array_equal(back.cholesky_factors, mix.cholesky_factors)
    assert math.copysign(1.0, back.means[0, 0]) == -1.0


def test_save_load_round_trip_is_exact(tmp_path):
    mix = _awkward()
    path = tmp_path / "mix.json"
    mix.save(path)
    back = GaussianMixtureParams.load(path)
    assert back == mix
    assert GaussianMixtureParams.load(str(path)) == mix
    json.loads(path.read_text(encoding="utf-8"))  # plain JSON: no NaN/Infinity extensions


@pytest.mark.parametrize(
    "doc, pattern",
    [
        ([1, 2], r"expected a mapping .*; got list"),
        ({"weights": [1.0], "means": [[0.0]]}, r"missing field\(s\): covariances"),
        ({"format": "other", "weights": [1.0], "means": [[0.0]], "covariances": [[[1.0]]]}, r"format: expected"),
        ({"version": 4, "weights": [1.0], "means": [[0.0]], "covariances": [[[1.0]]]}, r"expected 1, 2 or 3, got 4"),
        ({"version": True, "weights": [1.0], "means": [[0.0]], "covariances": [[[1.0]]]}, r"version: expected 1, 2 or"),
        ({"weights": {"0": 1.0}, "means": [[0.0]], "covariances": [[[1.0]]]}, r"^weights: expected an array"),
        ({"weights": [1.0], "means": [[0.0]], "covariances": [[["1"]]]}, r"^covariances: expected real numbers"),
    ],
)
def test_from_dict_rejects_other_documents(doc, pattern):
    with pytest.raises(InvalidMixtureError, match=pattern):
        GaussianMixtureParams.from_dict(doc)


def test_from_dict_accepts_a_document_without_format_and_version():
    mix = GaussianMixtureParams.from_dict({"weights": [1.0], "means": [[0.0]], "covariances": [[[2.0]]]})
    assert mix.covariances[0, 0, 0] == 2.0


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"", r"not a valid JSON mixture file"),
        (b"\xff\xfe\x00garbage", r"not a valid JSON mixture file"),
        (b'{"weights": [NaN], "means": [[0]], "covariances": [[[1]]]}', r"non-finite constant NaN"),
        (b'{"weights": [1.0], "means": [[Infinity]], "covariances": [[[1]]]}', r"non-finite constant Infinity"),
        (b'{"weights": [1.0], "means": [[1e999]], "covariances": [[[1]]]}', r"means: contains NaN or infinity"),
        (b'{"weights": [1.0], "means": [[0]], "covariances": [[[-1]]]}', r"covariances: matrix 0 is not positive"),
        (b"[" * 100_000 + b"]" * 100_000, r"not a valid JSON mixture file"),
        (b'{"weights": [' + b"9" * 5000 + b"]}", r"not a valid JSON mixture file"),
        (b'{"weights": [' + b"9" * 400 + b'], "means": [[0]], "covariances": [[[1]]]}',
         r"weights: an entry is too large"),
    ],
)
def test_load_rejects_bad_files_with_the_path_in_the_message(tmp_path, content, pattern):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InvalidMixtureError, match=pattern) as info:
        GaussianMixtureParams.load(path)
    assert str(path) in str(info.value)


def test_load_of_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        GaussianMixtureParams.load(tmp_path / "absent.json")


# --------------------------------------------------------------------------------------------------
# Densities and sampling
# --------------------------------------------------------------------------------------------------


def _scipy_logpdf(mix: GaussianMixtureParams, X: np.ndarray) -> np.ndarray:
    comps = np.array([multivariate_normal(m, s).logpdf(X) for m, s in zip(mix.means, mix.covariances)]).reshape(
        mix.n_components, -1
    )
    with np.errstate(divide="ignore"):
        return np.logaddexp.reduce(comps + np.log(mix.weights)[:, None], axis=0)


@pytest.mark.parametrize("seed", range(5))
def test_logpdf_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    d, k = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    w = rng.dirichlet(np.ones(k))
    mu = 3.0 * rng.standard_normal((k, d))
    cov = np.array([_rotated(np.exp(rng.uniform(-2, 2, d)), seed=seed * 10 + j) for j in range(k)])
    mix = GaussianMixtureParams(w, mu, cov, normalize=True)
    X = 4.0 * rng.standard_normal((50, d))
    expected = _scipy_logpdf(mix, X)
    np.testing.assert_allclose(mix.logpdf(X), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mix.pdf(X), np.exp(expected), rtol=1e-10, atol=1e-300)
    comp = mix.component_logpdf(X)
    assert comp.shape == (50, k)
    for j in range(k):
        np.testing.assert_allclose(comp[:, j], multivariate_normal(mu[j], mix.covariances[j]).logpdf(X), rtol=1e-10)


def test_logpdf_is_finite_where_the_density_underflows():
    mix = GaussianMixtureParams([0.3, 0.7, 0.0], [[0.0], [1.0], [5.0]], [[[1.0]], [[1e-6]], [[1.0]]])
    X = np.array([[1e3], [-1e6], [1.0]])
    lp = mix.logpdf(X)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(lp, _scipy_logpdf(mix, X), rtol=1e-12)
    assert mix.pdf(X)[1] == 0.0
    # the zero-weight component never contributes
    np.testing.assert_allclose(mix.logpdf([[5.0]]), np.log(0.3 * math.exp(-12.5) / math.sqrt(2 * math.pi)
                                                              + 0.7 * 0.0), rtol=1e-12)


def test_logpdf_at_extreme_accepted_scales():
    mix = GaussianMixtureParams([0.5, 0.5], [[1e50, -1e50], [-1e50, 1e50]],
                                np.array([np.diag([1e-50, 1e-40]), np.diag([1e40, 1e50])]))
    X = np.array([[0.0, 0.0], [1e50, -1e50], [-1e50, 1e50]])
    lp = mix.logpdf(X)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(lp[1], math.log(0.5) - math.log(2 * math.pi) - 0.5 * math.log(1e-90), rtol=1e-12)


def test_logpdf_rejects_the_wrong_dimension():
    mix = GaussianMixtureParams(**_valid())
    with pytest.raises(ValueError, match=r"X must have shape \(n, 2\)"):
        mix.logpdf(np.zeros((4, 3)))
    assert mix.logpdf(np.zeros((0, 2))).shape == (0,)


def test_sample_moments_and_labels():
    mix = GaussianMixtureParams(**_valid())
    n = 200_000
    X, labels = mix.sample(n, random_state=42)
    assert X.shape == (n, 2) and labels.shape == (n,)
    freq = np.bincount(labels, minlength=3) / n
    np.testing.assert_allclose(freq, W, atol=4 * math.sqrt(0.25 / n))
    mean = mix.weights @ mix.means
    centred = mix.means - mean
    cov = np.einsum("k,kij->ij", mix.weights, mix.covariances + centred[:, :, None] * centred[:, None, :])
    np.testing.assert_allclose(X.mean(axis=0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(X.T), cov, rtol=0.03, atol=0.03)
    for j in range(3):
        Xj = X[labels == j]
        np.testing.assert_allclose(Xj.mean(axis=0), MU[j], atol=0.03)
        np.testing.assert_allclose(np.cov(Xj.T), COV[j], atol=0.04)


def test_sample_is_reproducible_and_validates_n():
    mix = GaussianMixtureParams(**_valid())
    a, la = mix.sample(10, random_state=7)
    b, lb = mix.sample(10, random_state=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert mix.sample(0)[0].shape == (0, 2)
    zero_weight = GaussianMixtureParams([0.0, 1.0], [[0.0], [9.0]], [1.0, 1.0])
    assert np.all(zero_weight.sample(1000, random_state=0)[1] == 1)
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="non-negative integer"):
            mix.sample(bad)
