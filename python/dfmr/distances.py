"""L2 distances between Gaussian mixture densities (computed by the compiled core)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._native import _core, as_mixture_list, pack, resolve_threads
from .params import GaussianMixtureParams

__all__ = ["pairwise_l2", "pairwise_l2_scaled", "l2_distance"]


def pairwise_l2(mixtures: Sequence[GaussianMixtureParams], *, n_threads: int | None = None) -> np.ndarray:
    """L2 distances between every pair of mixture densities.

    ``||f - g||^2 = sum_ab w_a w_b N(mu_a; mu_b, S_a + S_b) + sum_ab v_a v_b N(nu_a; nu_b, P_a + P_b)
    - 2 sum_ab w_a v_b N(mu_a; nu_b, S_a + P_b)``, each sum accumulated in log space so that
    far-apart or very concentrated components neither overflow nor underflow.

    Parameters
    ----------
    mixtures : sequence of GaussianMixtureParams
        m mixtures of a common dimension; their numbers of components may differ.
    n_threads : int, optional
        Threads for the core; ``None`` uses every hardware thread.

    Returns
    -------
    ndarray of shape (m, m)
        Symmetric, exactly zero on the diagonal and between mixtures with identical
        parameters. See :func:`pairwise_l2_scaled` for densities so flat that their
        distances underflow.
    """
    scaled, exponent = pairwise_l2_scaled(mixtures, n_threads=n_threads)
    return np.ldexp(scaled, exponent)


def pairwise_l2_scaled(
    mixtures: Sequence[GaussianMixtureParams], *, n_threads: int | None = None
) -> tuple[np.ndarray, int]:
    """The distances of :func:`pairwise_l2` as ``(scaled, exponent)``, ``D = scaled * 2**exponent``.

    ``exponent`` is the power of two nearest the median norm ``||f_i||_2``. Very flat densities
    (many dimensions, wide components) have tiny norms, and their distances can underflow to 0
    in absolute terms, which would make every machine look alike; the scaled matrix keeps their
    relative sizes (entries beyond the double range saturate at the largest double). The DFMR
    centre and filter compare distances with each other, so they are computed on ``scaled``:
    where ``D`` is representable the two give exactly the same decisions.
    """
    mixtures = as_mixture_list(mixtures)
    scaled, exponent = _core.pairwise_l2_scaled(*pack(mixtures), resolve_threads(n_threads))
    return np.asarray(scaled), int(exponent)


def l2_distance(f: GaussianMixtureParams, g: GaussianMixtureParams) -> float:
    """L2 distance between two mixture densities; see :func:`pairwise_l2`."""
    return float(pairwise_l2([f, g], n_threads=1)[0, 1])
