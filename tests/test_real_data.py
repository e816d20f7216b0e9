"""The real-data vignette (scikit-learn's digits over Byzantine machines) gives sane, robust answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "vignettes" / "real_data_digits.py"


def load_vignette():
    spec = importlib.util.spec_from_file_location("real_data_digits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_dfmr_resists_the_attack_that_ruins_mr():
    results = load_vignette().run(splits=1)
    assert set(results) == {"global", "DFMR", "MR", "TKB", "COAT", "oracle"}
    for ari, loglik in results.values():
        assert ari.shape == loglik.shape == (1,)
        assert np.all((ari >= -1) & (ari <= 1)) and np.all(np.isfinite(loglik))
    # Two of six machines send means drawn from N(0, 100^2 I): MR averages them in, DFMR filters them.
    assert results["DFMR"][1][0] > results["MR"][1][0] + 0.5
    # The digits are clusters: a clean fit labels them far better than chance.
    assert results["global"][0][0] > 0.3
