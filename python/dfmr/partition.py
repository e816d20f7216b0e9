"""Splitting one data set across machines."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._validation import check_int

__all__ = ["split"]


def split(X: ArrayLike, n_machines: int, random_state: int | np.random.Generator | None = None) -> list[np.ndarray]:
    """Shuffle the rows of ``X`` and split them across machines as evenly as possible.

    The pieces are the only copy made: an array ``X`` is not copied before being dealt out.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Data, one observation per row.
    n_machines : int
        Number of machines, between 1 and ``n``.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator for the shuffle.

    Returns
    -------
    list of numpy.ndarray
        ``n_machines`` arrays of shape ``(n_i, d)``; the ``n_i`` differ by at most one.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D or ``n_machines`` is not an integer in ``[1, n]``.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of shape (n, d), got shape {X.shape}.")
    n = X.shape[0]
    n_machines = check_int(n_machines, "n_machines", 1, n)
    order = np.random.default_rng(random_state).permutation(n)
    return [X[idx] for idx in np.array_split(order, n_machines)]
