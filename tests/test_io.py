"""Tests of dfmr.io: loading local estimates from untrusted files, saving estimates and results."""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

import dfmr
from dfmr import simulate
from dfmr.io import LoadedMixtures, SkippedMixtureWarning, load_mixtures, save_mixtures, save_result
from dfmr.params import GaussianMixtureParams, InvalidMixtureError


def valid_mixtures(m: int = 4) -> list[GaussianMixtureParams]:
    return simulate.local_estimates_fixture()[:m]


def assert_same_mixture(a: GaussianMixtureParams, b: GaussianMixtureParams) -> None:
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.means, b.means)
    np.testing.assert_array_equal(a.covariances, b.covariances)


def assert_round_trip(loaded: GaussianMixtureParams, saved: GaussianMixtureParams) -> None:
    """Means and covariances come back bit for bit; weights up to 2 ulp.

    GaussianMixtureParams divides the weights by their sum on construction, and the sum of
    already-divided weights can be 1 +- 1 ulp, so the last bit of a weight may move on reload.
    """
    np.testing.assert_allclose(loaded.weights, saved.weights, rtol=5e-16, atol=0)
    np.testing.assert_array_equal(loaded.means, saved.means)
    np.testing.assert_array_equal(loaded.covariances, saved.covariances)


def write_npz(path: Path, **arrays: object) -> None:
    np.savez(path, **arrays)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


# Writers of corrupt or malformed local-estimate files: name -> function(path_without_suffix) -> file written.
def _truncated_json(base: Path) -> Path:
    path = base.with_suffix(".json")
    path.write_text(json.dumps(valid_mixtures(1)[0].to_dict())[:150])
    return path


def _nan_json(base: Path) -> Path:
    d = valid_mixtures(1)[0].to_dict()
    d["means"][0][0] = float("nan")
    path = base.with_suffix(".json")
    path.write_text(json.dumps(d))
    return path


def _infinite_json(base: Path) -> Path:
    path = base.with_suffix(".json")
    text = json.dumps(valid_mixtures(1)[0].to_dict())
    path.write_text(text.replace("[[", "[[1e999, ", 1))
    return path


def _not_a_mapping_json(base: Path) -> Path:
    path = base.with_suffix(".json")
    path.write_text("[1, 2, 3]")
    return path


def _huge_integer_json(base: Path) -> Path:
    d = valid_mixtures(1)[0].to_dict()
    text = json.dumps(d).replace("[[", "[[" + "9" * 5000 + ", ", 1)
    path = base.with_suffix(".json")
    path.write_text(text)
    return path


def _empty_json(base: Path) -> Path:
    path = base.with_suffix(".json")
    path.write_bytes(b"")
    return path


def _non_pd_json(base: Path) -> Path:
    mix = valid_mixtures(1)[0]
    cov = mix.covariances.copy()
    cov[2] = -cov[2]
    path = base.with_suffix(".json")
    fields = {"weights": mix.weights.tolist(), "means": mix.means.tolist(), "covariances": cov.tolist()}
    path.write_text(json.dumps(fields))
    return path


def _negative_weight_npz(base: Path) -> Path:
    mix = valid_mixtures(1)[0]
    w = mix.weights.copy()
    w[0], w[1] = -0.1, w[1] + w[0] + 0.1
    path = base.with_suffix(".npz")
    write_npz(path, weights=w, means=mix.means, covariances=mix.covariances)
    return path


def _garbage_npz(base: Path) -> Path:
    path = base.with_suffix(".npz")
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    return path


def _truncated_npz(base: Path) -> Path:
    mix = valid_mixtures(1)[0]
    path = base.with_suffix(".npz")
    write_npz(path, weights=mix.weights, means=mix.means, covariances=mix.covariances)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def _wrong_shapes_npz(base: Path) -> Path:
    mix = valid_mixtures(1)[0]
    path = base.with_suffix(".npz")
    write_npz(path, weights=mix.weights, means=mix.means[:, :3], covariances=mix.covariances)
    return path


def _missing_key_npz(base: Path) -> Path:
    mix = valid_mixtures(1)[0]
    path = base.with_suffix(".npz")
    write_npz(path, weights=mix.weights, means=mix.means)
    return path


def _pickled_npz(base: Path) -> Path:
    mix = valid_mixtures(1)[0]
    path = base.with_suffix(".npz")
    write_npz(path, weights=np.array([{"evil": 1}], dtype=object), means=mix.means, covariances=mix.covariances)
    return path


def _npy_named_npz(base: Path) -> Path:
    path = base.with_suffix(".npz")
    path.write_bytes(npy_bytes(valid_mixtures(1)[0].weights))
    return path


def _lying_header_npz(base: Path) -> Path:
    """A weights member whose header announces 10**12 doubles but which holds 16 bytes."""
    mix = valid_mixtures(1)[0]
    header = BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    path = base.with_suffix(".npz")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("weights.npy", header.getvalue() + b"\x00" * 16)
        zf.writestr("means.npy", npy_bytes(mix.means))
        zf.writestr("covariances.npy", npy_bytes(mix.covariances))
    return path


def _complex_npz(base: Path) -> Path:
    mix = valid_mixtures(1)[0]
    path = base.with_suffix(".npz")
    write_npz(path, weights=mix.weights.astype(complex), means=mix.means, covariances=mix.covariances)
    return path


def _wrong_dimension_json(base: Path) -> Path:
    path = base.with_suffix(".json")
    GaussianMixtureParams([1.0], [[0.0, 0.0]], [np.eye(2)]).save(path)
    return path


def _unsupported_suffix(base: Path) -> Path:
    path = base.with_suffix(".txt")
    path.write_text(json.dumps(valid_mixtures(1)[0].to_dict()))
    return path


CORRUPT: dict[str, Callable[[Path], Path]] = {
    "truncated_json": _truncated_json,
    "nan_json": _nan_json,
    "infinite_json": _infinite_json,
    "not_a_mapping_json": _not_a_mapping_json,
    "huge_integer_json": _huge_integer_json,
    "empty_json": _empty_json,
    "non_pd_json": _non_pd_json,
    "negative_weight_npz": _negative_weight_npz,
    "garbage_npz": _garbage_npz,
    "truncated_npz": _truncated_npz,
    "wrong_shapes_npz": _wrong_shapes_npz,
    "missing_key_npz": _missing_key_npz,
    "pickled_npz": _pickled_npz,
    "npy_named_npz": _npy_named_npz,
    "lying_header_npz": _lying_header_npz,
    "complex_npz": _complex_npz,
    "wrong_dimension_json": _wrong_dimension_json,
}


def test_save_mixtures_then_load_directory_round_trips_exactly(tmp_path):
    mixtures = simulate.local_estimates_fixture()
    paths = save_mixtures(mixtures, tmp_path / "estimates")
    assert [p.name for p in paths] == [f"machine_{i:03d}.json" for i in range(20)]
    loaded = load_mixtures(tmp_path / "estimates")
    assert isinstance(loaded, LoadedMixtures)
    got, names, skipped = loaded
    assert names == [p.name for p in paths]
    assert skipped == []
    for a, b, path in zip(got, mixtures, paths):
        assert_round_trip(a, b)
        assert_same_mixture(a, GaussianMixtureParams.load(path))  # exactly what GaussianMixtureParams reads


def test_save_mixtures_refuses_to_mix_with_existing_machine_files(tmp_path):
    save_mixtures(valid_mixtures(3), tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_mixtures(valid_mixtures(2), tmp_path)


def test_save_mixtures_overwrite_leaves_exactly_the_new_set(tmp_path):
    save_mixtures(valid_mixtures(3), tmp_path)
    (tmp_path / "notes.txt").write_text("kept")
    save_mixtures(valid_mixtures(2), tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["machine_000.json", "machine_001.json", "notes.txt"]
    assert len(load_mixtures(tmp_path).mixtures) == 2


def test_save_mixtures_rejects_non_mixtures(tmp_path):
    with pytest.raises(TypeError, match=r"mixtures\[1\]"):
        save_mixtures([valid_mixtures(1)[0], {"weights": [1.0]}], tmp_path)


def test_load_single_mixture_npz(tmp_path):
    mix = valid_mixtures(1)[0]
    write_npz(tmp_path / "one.npz", weights=mix.weights, means=mix.means, covariances=mix.covariances)
    got, names, skipped = load_mixtures(tmp_path / "one.npz")
    assert names == ["one.npz"] and skipped == []
    assert_same_mixture(got[0], mix)


def test_load_stacked_npz_yields_one_mixture_per_entry(tmp_path):
    fixture = Path(dfmr.__file__).parent / "data" / "local_estimates_K5_d10_m20.npz"
    got, names, skipped = load_mixtures(fixture)
    assert names == [f"local_estimates_K5_d10_m20.npz[{i}]" for i in range(20)]
    assert skipped == []
    for a, b in zip(got, simulate.local_estimates_fixture()):
        assert_same_mixture(a, b)


def test_stacked_npz_with_one_bad_entry_skips_only_that_entry(tmp_path):
    mixtures = valid_mixtures(3)
    covs = np.stack([m.covariances for m in mixtures])
    covs[1, 0] = -covs[1, 0]
    write_npz(
        tmp_path / "stack.npz",
        weights=np.stack([m.weights for m in mixtures]),
        means=np.stack([m.means for m in mixtures]),
        covariances=covs,
    )
    with pytest.warns(SkippedMixtureWarning, match=r"stack\.npz\[1\]"):
        got, names, skipped = load_mixtures(tmp_path)
    assert names == ["stack.npz[0]", "stack.npz[2]"]
    assert [s[0] for s in skipped] == ["stack.npz[1]"]
    assert "not positive definite" in skipped[0][1]
    assert_same_mixture(got[1], mixtures[2])


def test_stacked_npz_with_inconsistent_machine_counts_is_invalid(tmp_path):
    mixtures = valid_mixtures(3)
    write_npz(
        tmp_path / "stack.npz",
        weights=np.stack([m.weights for m in mixtures]),
        means=np.stack([m.means for m in mixtures[:2]]),
        covariances=np.stack([m.covariances for m in mixtures]),
    )
    with pytest.raises(InvalidMixtureError, match=r"stack\.npz: expected one mixture .* or m stacked"):
        load_mixtures(tmp_path, on_error="raise")


def test_directory_files_are_sorted_by_name_and_other_files_ignored(tmp_path):
    mixtures = valid_mixtures(3)
    mixtures[2].save(tmp_path / "a.json")
    mixtures[0].save(tmp_path / "c.json")
    m = mixtures[1]
    write_npz(tmp_path / "b.npz", weights=m.weights, means=m.means, covariances=m.covariances)
    (tmp_path / "README.txt").write_text("not an estimate")
    (tmp_path / "sub.json").mkdir()
    got, names, skipped = load_mixtures(tmp_path)
    assert names == ["a.json", "b.npz", "c.json"]
    assert skipped == []
    for a, b in zip(got, [mixtures[2], mixtures[1], mixtures[0]]):
        assert_round_trip(a, b)


def test_files_given_explicitly_keep_their_order(tmp_path):
    paths = save_mixtures(valid_mixtures(3), tmp_path)
    got, names, _ = load_mixtures([paths[2], str(paths[0])])
    assert names == ["machine_002.json", "machine_000.json"]
    assert_round_trip(got[0], valid_mixtures(3)[2])


def test_inputs_sharing_a_file_name_are_named_by_path(tmp_path):
    a = save_mixtures(valid_mixtures(1), tmp_path / "a")[0]
    b = save_mixtures(valid_mixtures(1), tmp_path / "b")[0]
    _, names, _ = load_mixtures([a, b])
    assert names == [str(a), str(b)]


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_file_is_skipped_by_name_with_a_warning(tmp_path, kind):
    mixtures = valid_mixtures(3)
    save_mixtures(mixtures, tmp_path)
    bad = CORRUPT[kind](tmp_path / f"zz_{kind}")
    with pytest.warns(SkippedMixtureWarning) as record:
        got, names, skipped = load_mixtures(sorted(tmp_path.iterdir()))
    assert names == [f"machine_{i:03d}.json" for i in range(3)]
    for a, b in zip(got, mixtures):
        assert_round_trip(a, b)
    assert [name for name, _ in skipped] == [bad.name]
    assert skipped[0][1]
    assert any(bad.name in str(w.message) for w in record)


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_file_raises_invalid_mixture_error_on_request(tmp_path, kind):
    save_mixtures(valid_mixtures(2), tmp_path)
    bad = CORRUPT[kind](tmp_path / f"zz_{kind}")
    with pytest.raises(InvalidMixtureError, match=bad.name.replace(".", r"\.")):
        load_mixtures(sorted(tmp_path.iterdir()), on_error="raise")


def test_invalid_mixture_error_is_a_value_error():
    assert issubclass(InvalidMixtureError, ValueError)


def test_mangled_bytes_only_ever_raise_invalid_mixture_error(tmp_path):
    """Truncations, bit flips and splices of valid files: each either loads or raises InvalidMixtureError."""
    rng = np.random.default_rng(1)
    mix = valid_mixtures(1)[0]
    json_raw = json.dumps(mix.to_dict()).encode()
    buf = BytesIO()
    np.savez_compressed(buf, weights=mix.weights, means=mix.means, covariances=mix.covariances)
    sources = {".json": json_raw, ".npz": buf.getvalue()}
    outcomes = {"loaded": 0, "rejected": 0}
    for trial in range(400):
        suffix = ".json" if trial % 2 else ".npz"
        raw = bytearray(sources[suffix])
        op = trial % 5
        if op == 0:
            raw = raw[: rng.integers(0, len(raw))]
        elif op in (1, 2):
            for pos in rng.integers(0, len(raw), size=1 + op * 3):
                raw[pos] ^= 1 << int(rng.integers(0, 8))
        elif op == 3:
            start = int(rng.integers(0, len(raw)))
            raw[start:start + 32] = rng.bytes(32)
        else:
            raw = raw + rng.bytes(int(rng.integers(1, 64)))
        path = tmp_path / f"f{trial}{suffix}"
        path.write_bytes(bytes(raw))
        try:
            load_mixtures(path, on_error="raise")
            outcomes["loaded"] += 1
        except InvalidMixtureError:
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 100


def test_file_above_the_size_limit_is_skipped(tmp_path):
    path = save_mixtures(valid_mixtures(1), tmp_path)[0]
    with pytest.warns(SkippedMixtureWarning, match="above the limit"):
        got, _, skipped = load_mixtures(path, max_bytes=100)
    assert got == [] and skipped[0][0] == path.name


def test_npz_whose_arrays_inflate_beyond_the_limit_is_skipped(tmp_path):
    d = 30
    path = tmp_path / "bomb.npz"
    covariances = np.broadcast_to(np.eye(d), (400, d, d))
    np.savez_compressed(path, weights=np.full(400, 1 / 400), means=np.zeros((400, d)), covariances=covariances)
    limit = 20 * path.stat().st_size
    assert 400 * d * d * 8 > limit  # compressed small, uncompressed above the limit
    with pytest.raises(InvalidMixtureError, match="exceed the limit"):
        load_mixtures(path, on_error="raise", max_bytes=limit)


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mixtures([tmp_path / "nope.json"])


def test_empty_directory_gives_no_mixtures(tmp_path):
    assert load_mixtures(tmp_path) == ([], [], [])


def test_on_error_must_be_skip_or_raise(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        load_mixtures(tmp_path, on_error="ignore")


def test_normalize_rescales_weights_off_by_rounding(tmp_path):
    mix = valid_mixtures(1)[0]
    d = mix.to_dict()
    d["weights"] = (mix.weights * (1 + 1e-5)).tolist()
    (tmp_path / "rounded.json").write_text(json.dumps(d))
    with pytest.warns(SkippedMixtureWarning, match="normalize=True"):
        assert load_mixtures(tmp_path).mixtures == []
    got = load_mixtures(tmp_path, normalize=True).mixtures
    np.testing.assert_allclose(got[0].weights, mix.weights, rtol=1e-12)


def test_minority_dimension_is_rejected_not_the_majority(tmp_path):
    save_mixtures(valid_mixtures(3), tmp_path)
    GaussianMixtureParams([1.0], [[0.0, 0.0]], [np.eye(2)]).save(tmp_path / "aa_small.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedMixtureWarning)
        _, names, skipped = load_mixtures(tmp_path)
    assert len(names) == 3
    assert skipped == [("aa_small.json", "dimension d = 2 differs from d = 10 of the other estimates.")]


@pytest.fixture(scope="module")
def attacked() -> list[GaussianMixtureParams]:
    return simulate.attack(simulate.local_estimates_fixture(), 0.2, kind="mean", random_state=0)[0]


def test_save_result_round_trips_a_dfmr_result(tmp_path, attacked):
    res = dfmr.dfmr(attacked, 5)
    names = [f"m{i}" for i in range(len(attacked))]
    save_result(res, tmp_path / "r.json", names=names)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["method"] == "dfmr"
    assert data["names"] == names
    assert data["n_machines"] == 20
    assert data["retained"] == res.retained.tolist()
    assert data["center"] == res.center
    np.testing.assert_array_equal(np.array(data["distances"]), res.distances)
    assert data["threshold"] == res.filter.threshold
    assert data["radius"] == res.filter.radius
    assert data["cutoff"] == res.filter.cutoff
    assert data["objective"] == res.objective
    assert data["n_iter"] == res.n_iter
    assert data["converged"] == res.converged
    assert data["n_components_requested"] == 5
    assert_round_trip(GaussianMixtureParams.from_dict(data["mixture"]), res.mixture)


@pytest.mark.parametrize("method", ["mr", "coat", "tkb"])
def test_save_result_writes_null_for_fields_a_method_does_not_compute(tmp_path, attacked, method):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = dfmr.coat(attacked) if method == "coat" else getattr(dfmr, method)(attacked, 5)
    save_result(res, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["method"] == method
    assert data["names"] is None and data["threshold"] is None and data["cutoff"] is None
    assert (data["center"] is None) == (method != "coat")
    assert (data["objective"] is None) == (method == "coat")
    assert_round_trip(GaussianMixtureParams.from_dict(data["mixture"]), res.mixture)


def test_save_result_rejects_names_of_the_wrong_length(tmp_path, attacked):
    res = dfmr.coat(attacked)
    with pytest.raises(ValueError, match="one per machine"):
        save_result(res, tmp_path / "r.json", names=["only one"])


def test_save_result_round_trips_robust_dfmrs_size_source_and_votes(tmp_path, attacked):
    # Two copies of machine 3: one vote between them; no sizes given or recorded.
    copied = list(attacked) + [attacked[3]]
    res = dfmr.robust_dfmr(copied, 5)
    scr = res.screening
    save_result(res, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())["screening"]
    assert data["size_source"] == scr.size_source == "unknown" and data["n_samples_known"] is False
    assert data["calibrated_n"] == scr.calibrated_n > 0
    assert data["votes"] == scr.votes.tolist()
    assert [3, 20] in data["vote_groups"] and data["votes"][3] == data["votes"][20] == 0.5
    assert data["vote_groups"] == [list(g) for g in scr.vote_groups]
    # With the server's sizes: said so, and no calibrated size.
    save_result(dfmr.robust_dfmr(attacked, 5, n_samples=5000), tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())["screening"]
    assert data["size_source"] == "server" and data["n_samples_known"] is True and data["calibrated_n"] is None
