"""Simulation set-up of the paper: shipped population, Byzantine attacks, oracle; ``split`` is dfmr.partition's.

The attacks follow DESIGN.md ("Byzantine attacks used in the paper's experiments"). One rule
covers both levels: attacking a set of components of one machine's mixture

- *mean*: replaces each chosen ``mu_k`` with a fresh ``N(0, 100^2 I)`` draw;
- *cov*: replaces each chosen ``Sigma_k`` with ``Sigma_k + B B^T``, a fresh ``d x d`` matrix ``B`` of
  ``N(0, 1)`` draws per component;
- *weight*: draws ``v ~ Dirichlet(a)`` with each ``a_k`` uniform on ``{10, ..., 19}`` (one ``a_k``
  per component of the machine), sets ``w_k = v_k`` for the chosen components and renormalises
  the whole weight vector to sum to one.

A machine-level attack chooses all components of the machine, so its weight attack replaces the
weights with ``v`` itself. A component-level attack chooses one component ``k``; its weight attack
changes ``w_k`` to ``v_k`` and rescales all weights by the common factor that restores the sum,
so the untouched weights keep their ratios.
"""

from __future__ import annotations

import math
from fractions import Fraction
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .params import GaussianMixtureParams
from .partition import split  # re-exported: dfmr.simulate.split is the documented name

if TYPE_CHECKING:
    from .aggregate import AggregationResult

__all__ = [
    "ATTACK_KINDS", "ATTACK_LEVELS", "attack", "local_estimates_fixture", "oracle", "population", "split",
    "study", "report",
]

ATTACK_KINDS = ("mean", "cov", "weight")
ATTACK_LEVELS = ("machine", "component")

_MEAN_ATTACK_SD = 100.0
_DIRICHLET_LOW, _DIRICHLET_HIGH = 10, 19  # inclusive range of the Dirichlet concentrations

_LOCAL_ESTIMATES = "local_estimates_K5_d10_m20"


def _load_arrays(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = resources.files(__package__).joinpath("data")
    available = sorted(p.name[: -len(".npz")] for p in data.iterdir() if p.name.endswith(".npz"))
    if name not in available:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(available)}.")
    with data.joinpath(f"{name}.npz").open("rb") as fh, np.load(fh) as npz:
        return npz["weights"], npz["means"], npz["covariances"]


def population(name: str = "mixsim_K5_d10_omega0.1_seed1") -> GaussianMixtureParams:
    """A population mixture shipped with the package.

    Parameters
    ----------
    name : str, default "mixsim_K5_d10_omega0.1_seed1"
        Name of the data file (without ``.npz``) in ``dfmr/data``. The default is the paper's
        simulation population (MixSim, K = 5, d = 10, MaxOmega 0.1).

    Returns
    -------
    GaussianMixtureParams

    Raises
    ------
    ValueError
        If no data file has that name; the message lists the available names.
    """
    weights, means, covariances = _load_arrays(name)
    return GaussianMixtureParams(weights, means, covariances)


def local_estimates_fixture() -> list[GaussianMixtureParams]:
    """The paper's 20 local pMLE estimates, before any attack.

    Each was fitted to 5,000 points of :func:`population` (m = 20 machines, N = 100,000).

    Returns
    -------
    list of GaussianMixtureParams
        20 mixtures with K = 5 components in d = 10 dimensions.
    """
    weights, means, covariances = _load_arrays(_LOCAL_ESTIMATES)
    return [GaussianMixtureParams(w, mu, cov) for w, mu, cov in zip(weights, means, covariances)]


def _attack_components(
    mixture: GaussianMixtureParams, components: np.ndarray, kind: str, rng: np.random.Generator
) -> GaussianMixtureParams:
    """``mixture`` with the given components attacked (the rule in the module docstring)."""
    weights = mixture.weights.copy()
    means = mixture.means.copy()
    covariances = mixture.covariances.copy()
    d = mixture.dim
    if kind == "mean":
        means[components] = rng.normal(0.0, _MEAN_ATTACK_SD, size=(len(components), d))
    elif kind == "cov":
        for k in components:
            b = rng.standard_normal((d, d))
            covariances[k] += b @ b.T
    else:
        concentration = rng.integers(_DIRICHLET_LOW, _DIRICHLET_HIGH + 1, size=mixture.n_components)
        weights[components] = rng.dirichlet(concentration)[components]
        weights /= weights.sum()
    return GaussianMixtureParams(weights, means, covariances)


def _n_attacked(rate: float, m: int) -> int:
    # floor(rate * m) of the decimal rate the user wrote: in binary, 0.29 * 100 == 28.999999999999996.
    return math.floor(Fraction(str(rate)) * m)


def attack(
    mixtures: list[GaussianMixtureParams],
    rate: float,
    kind: str = "mean",
    level: str = "machine",
    random_state: int | np.random.Generator | None = None,
) -> tuple[list[GaussianMixtureParams], np.ndarray]:
    """Corrupt local estimates as in the paper's Byzantine-failure experiments.

    Parameters
    ----------
    mixtures : list of GaussianMixtureParams
        The ``m`` local estimates; they are not modified.
    rate : float
        Failure rate ``alpha`` in ``[0, 1)``.
    kind : {"mean", "cov", "weight"}, default "mean"
        What is corrupted (see the module docstring).
    level : {"machine", "component"}, default "machine"
        ``"machine"``: ``floor(alpha m)`` machines, chosen without replacement, have all their
        components attacked. ``"component"``: for each component position ``k`` separately,
        ``floor(alpha m_k)`` of the ``m_k`` machines that have a ``k``-th component are chosen
        and only their ``k``-th component is attacked (``m_k = m`` when all machines have the
        same number of components); a machine may be chosen for several ``k``.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator; a fixed seed reproduces the attack.

    Returns
    -------
    attacked : list of GaussianMixtureParams
        The ``m`` estimates after the attack; unattacked machines are the input objects.
    bad : numpy.ndarray of int
        Sorted indices of the machines with at least one attacked component.

    Raises
    ------
    ValueError
        If ``mixtures`` is empty, ``rate`` is outside ``[0, 1)``, or ``kind`` or ``level`` is unknown.
    TypeError
        If an element of ``mixtures`` is not a :class:`GaussianMixtureParams` or ``rate`` is not
        a number.

    Notes
    -----
    ``floor(alpha m)`` is computed for the decimal value of ``rate`` (``str(rate)``), so that
    ``rate=0.29`` with ``m=100`` attacks 29 machines although ``0.29 * 100 < 29`` in binary
    floating point.
    """
    mixtures = list(mixtures)
    if not mixtures:
        raise ValueError("mixtures is empty; there is nothing to attack.")
    for i, mix in enumerate(mixtures):
        if not isinstance(mix, GaussianMixtureParams):
            raise TypeError(f"mixtures[{i}] must be a GaussianMixtureParams, got {type(mix).__name__}.")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"rate must be a number in [0, 1), got {rate!r}.")
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must lie in [0, 1), got {rate!r}.")
    if kind not in ATTACK_KINDS:
        raise ValueError(f"unknown attack kind {kind!r}; allowed: {', '.join(map(repr, ATTACK_KINDS))}.")
    if level not in ATTACK_LEVELS:
        raise ValueError(f"unknown attack level {level!r}; allowed: {', '.join(map(repr, ATTACK_LEVELS))}.")

    rng = np.random.default_rng(random_state)
    m = len(mixtures)
    attacked = list(mixtures)
    if level == "machine":
        bad = np.sort(rng.choice(m, size=_n_attacked(rate, m), replace=False))
        for i in bad:
            attacked[i] = _attack_components(mixtures[i], np.arange(mixtures[i].n_components), kind, rng)
        return attacked, bad.astype(np.intp)

    hit: set[int] = set()
    for k in range(max(mix.n_components for mix in mixtures)):
        candidates = np.array([i for i, mix in enumerate(mixtures) if mix.n_components > k], dtype=np.intp)
        chosen = np.sort(rng.choice(candidates, size=_n_attacked(rate, len(candidates)), replace=False))
        for i in chosen:
            attacked[i] = _attack_components(attacked[i], np.array([k]), kind, rng)
        hit.update(int(i) for i in chosen)
    return attacked, np.array(sorted(hit), dtype=np.intp)


def oracle(mixtures: list[GaussianMixtureParams], bad: ArrayLike, n_components: int) -> AggregationResult:
    """Mixture reduction over the machines known to be good (the paper's oracle baseline).

    Parameters
    ----------
    mixtures : list of GaussianMixtureParams
        All ``m`` local estimates, attacked ones included.
    bad : array_like of int
        Indices of the Byzantine machines, e.g. the second output of :func:`attack`.
    n_components : int
        Number of components of the aggregate.

    Returns
    -------
    AggregationResult
        The result of :func:`dfmr.mr` on the good machines, in their original order. Its
        machine indices (``retained``, ``distances``) refer to positions in that list of good
        machines, not to positions in ``mixtures``.

    Raises
    ------
    ValueError
        If an index in ``bad`` is out of range or no machine is good.
    """
    from .aggregate import mr

    mixtures = list(mixtures)
    m = len(mixtures)
    bad = np.asarray(bad, dtype=np.intp).ravel()
    if bad.size and (bad.min() < 0 or bad.max() >= m):
        raise ValueError(f"bad contains machine indices outside [0, {m - 1}].")
    good = np.setdiff1d(np.arange(m), bad)
    if good.size == 0:
        raise ValueError("every machine is marked bad; the oracle has nothing to aggregate.")
    return mr([mixtures[i] for i in good], n_components)


# The study (dfmr.study) builds on the functions above; importing it last lets it import them from here.
from .study import report, study  # noqa: E402
