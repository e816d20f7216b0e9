"""Pairwise overlap of Gaussian components and MixSim-style populations (Maitra & Melnykov 2010).

The overlap of components ``i`` and ``j`` of a mixture ``sum_k pi_k N(mu_k, Sigma_k)`` is the sum of
the two misclassification probabilities

    omega_{j|i} = P_{X ~ N(mu_i, Sigma_i)} [ pi_j phi(X; mu_j, Sigma_j) > pi_i phi(X; mu_i, Sigma_i) ],

and ``omega_ij = omega_{j|i} + omega_{i|j}``. Writing ``X = mu_i + Sigma_i^(1/2) Z`` and diagonalising
``Sigma_i^(1/2) Sigma_j^-1 Sigma_i^(1/2) = G diag(lambda) G^T`` with ``delta = G^T Sigma_i^(-1/2)
(mu_i - mu_j)`` and ``Y = G^T Z ~ N(0, I)``, the event is

    sum_l [ (1 - lambda_l) Y_l^2 - 2 lambda_l delta_l Y_l ]  >  c + sum_l lambda_l delta_l^2,
    c = 2 log(pi_i / pi_j) + log det Sigma_j - log det Sigma_i.

Each term with ``lambda_l != 1`` is ``(1 - lambda_l)`` times a non-central chi-square with one degree
of freedom and non-centrality ``(lambda_l delta_l / (1 - lambda_l))^2``, shifted by
``-lambda_l^2 delta_l^2 / (1 - lambda_l)``; a term with ``lambda_l = 1`` is a centred normal with
standard deviation ``2 |delta_l|``. The probability is obtained by inverting the characteristic function
of the sum (Gil-Pelaez 1951, the integral behind Imhof's 1961 and Davies' 1980 methods; MixSim uses
Davies' algorithm), integrated numerically with :func:`scipy.integrate.quad`.

:func:`mixsim` generates a population as MixSim does for a target maximum overlap (``MaxOmega``):
means uniform on the unit hypercube, covariances drawn from a Wishart distribution (eccentricity
limited as MixSim's ``ecc``), then all
covariances multiplied by the common factor that makes the largest pairwise overlap equal to the
target (found by Brent's root finder; the overlap grows with the factor). A draw whose overlap
cannot reach the target is replaced by a fresh one, as MixSim's ``resN``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize

from .params import GaussianMixtureParams

__all__ = ["max_overlap", "misclassification_probability", "mixsim", "overlap_matrix"]

# The inversion integral is taken in up to _DOUBLINGS pieces of doubling length, stopping where the modulus
# of the characteristic function (which bounds the integrand times u) has fallen below _TAIL; the rest
# is a Fourier integral (see _upper_tail).
_TAIL = 1e-13
_DOUBLINGS = 12
_PERIODS = 20


def _statistic(
    w_i: float, mu_i: np.ndarray, cov_i: np.ndarray, w_j: float, mu_j: np.ndarray, cov_j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients of ``Q = sum_l (a_l Y_l^2 + b_l Y_l)``, ``Y ~ N(0, I)``, and ``t``: ``omega_{j|i} = P(Q > t)``."""
    vals, vecs = np.linalg.eigh(cov_i)
    root = (vecs * np.sqrt(vals)) @ vecs.T
    inv_root = (vecs / np.sqrt(vals)) @ vecs.T
    chol_j = np.linalg.cholesky(cov_j)
    half = np.linalg.solve(chol_j, root)  # L_j^-1 Sigma_i^(1/2): half^T half = Sigma_i^(1/2) Sigma_j^-1 Sigma_i^(1/2)
    lam, g = np.linalg.eigh(half.T @ half)
    delta = g.T @ (inv_root @ (mu_i - mu_j))
    logdet_i = float(np.sum(np.log(vals)))
    logdet_j = 2.0 * float(np.sum(np.log(np.diag(chol_j))))
    t = 2.0 * math.log(w_i / w_j) + logdet_j - logdet_i + float(np.sum(lam * delta**2))
    return 1.0 - lam, -2.0 * lam * delta, t


def _upper_tail(a: np.ndarray, b: np.ndarray, t: float) -> float:
    """``P(sum_l a_l Y_l^2 + b_l Y_l > t)`` for independent standard normal ``Y_l`` (Gil-Pelaez inversion).

    The characteristic function of ``a Y^2 + b Y`` is ``(1 - 2iau)^(-1/2) exp(-b^2 u^2 / (2 (1 - 2iau)))``:
    a non-central chi-square term when ``a != 0`` and a normal one when ``a = 0``, without the
    cancellation that the shifted chi-square form suffers when ``a`` is small.
    """
    keep = (a != 0.0) | (b != 0.0)
    a, b = a[keep], b[keep]
    if a.size == 0:
        return float(t < 0.0)

    # As u grows, the phase of the characteristic function approaches -s u (s below) plus a constant; the
    # tail is a Fourier integral at frequency t + s of a slowly varying function, which QUADPACK's QAWF
    # integrates reliably however slowly the modulus decays.
    curved = a != 0.0
    s = float(np.sum(b[curved] ** 2 / (4.0 * a[curved])))
    freq = t + s

    def log_cf(u: float) -> complex:
        z = 1.0 - 2j * a * u
        return complex(np.sum(-0.5 * np.log(z) - b**2 * u**2 / (2.0 * z)))

    def integrand(u: float) -> float:
        lc = log_cf(u)
        return math.exp(lc.real) * math.sin(lc.imag - t * u) / u

    def sin_part(u: float) -> float:
        lc = log_cf(u)
        return math.exp(lc.real) * math.sin(lc.imag + s * u) / u

    def cos_part(u: float) -> float:
        lc = log_cf(u)
        return math.exp(lc.real) * math.cos(lc.imag + s * u) / u

    total, lo = 0.0, 0.0
    hi = 1.0 / max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), abs(t), 1e-12)
    # No piece spans more than _PERIODS periods of e^(-itu); since the first piece is at most 1/|t| long,
    # the doublings hold at most 2^_DOUBLINGS / (2 pi _PERIODS) such pieces in all.
    longest = _PERIODS * 2.0 * math.pi / abs(t) if t != 0.0 else math.inf
    for _ in range(_DOUBLINGS):
        cuts = np.linspace(lo, hi, 1 + max(1, math.ceil((hi - lo) / longest)))
        for left, right in zip(cuts[:-1], cuts[1:]):
            total += integrate.quad(integrand, left, right, limit=200, epsabs=1e-11, epsrel=1e-9)[0]
        if math.exp(log_cf(hi).real) < _TAIL:
            return float(min(max(0.5 + total / math.pi, 0.0), 1.0))
        lo, hi = hi, 2.0 * hi
    if freq == 0.0:
        total += integrate.quad(integrand, lo, np.inf, limit=200, epsabs=1e-12)[0]
    else:
        total += integrate.quad(sin_part, lo, np.inf, weight="cos", wvar=freq, limlst=200)[0]
        total -= integrate.quad(cos_part, lo, np.inf, weight="sin", wvar=freq, limlst=200)[0]
    return float(min(max(0.5 + total / math.pi, 0.0), 1.0))


def misclassification_probability(mixture: GaussianMixtureParams, i: int, j: int) -> float:
    """``omega_{j|i}``: probability that a draw from component ``i`` is assigned to component ``j``.

    Parameters
    ----------
    mixture : GaussianMixtureParams
        The mixture.
    i, j : int
        Distinct component indices.

    Returns
    -------
    float
        ``P_{X ~ N(mu_i, Sigma_i)}[pi_j phi_j(X) > pi_i phi_i(X)]``, in ``[0, 1]``.

    Raises
    ------
    ValueError
        If ``i == j`` or an index is out of range.
    """
    k = mixture.n_components
    if not (0 <= i < k and 0 <= j < k) or i == j:
        raise ValueError(f"i and j must be distinct component indices in [0, {k - 1}], got {i} and {j}.")
    w, mu, cov = mixture.weights, mixture.means, mixture.covariances
    return _upper_tail(*_statistic(w[i], mu[i], cov[i], w[j], mu[j], cov[j]))


def overlap_matrix(mixture: GaussianMixtureParams) -> np.ndarray:
    """All misclassification probabilities of a mixture.

    Parameters
    ----------
    mixture : GaussianMixtureParams
        The mixture.

    Returns
    -------
    numpy.ndarray, shape (K, K)
        ``out[i, j] = omega_{j|i}`` for ``i != j`` and ``out[i, i] = 1``, MixSim's ``OmegaMap``
        convention; the pairwise overlap is ``out[i, j] + out[j, i]``.
    """
    k = mixture.n_components
    out = np.eye(k)
    for i in range(k):
        for j in range(k):
            if i != j:
                out[i, j] = misclassification_probability(mixture, i, j)
    return out


def max_overlap(mixture: GaussianMixtureParams) -> float:
    """Largest pairwise overlap ``max_{i<j} omega_{j|i} + omega_{i|j}`` (MixSim's ``MaxOmega``).

    Parameters
    ----------
    mixture : GaussianMixtureParams
        A mixture with at least two components.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the mixture has a single component.
    """
    if mixture.n_components < 2:
        raise ValueError("the overlap needs at least two components.")
    omega = overlap_matrix(mixture)
    pair = omega + omega.T
    return float(np.max(pair[np.triu_indices(mixture.n_components, 1)]))


def mixsim(
    n_components: int,
    dim: int,
    max_omega: float = 0.1,
    random_state: int | np.random.Generator | None = None,
    *,
    pi_low: float = 1.0,
    ecc: float = 0.9,
    xtol: float = 1e-8,
    max_tries: int = 100,
) -> GaussianMixtureParams:
    """A random Gaussian mixture whose largest pairwise overlap equals ``max_omega`` (MixSim's rule).

    Parameters
    ----------
    n_components : int
        K >= 2.
    dim : int
        d >= 1.
    max_omega : float, default 0.1
        Target maximum pairwise overlap, in ``(0, 1)``.
    random_state : int, numpy.random.Generator or None, default None
        Seed or generator.
    pi_low : float, default 1.0
        Smallest mixing proportion relative to ``1/K``: ``1.0`` gives equal weights (MixSim's default
        ``PiLow = 1``); otherwise ``w = pi_low / K + (1 - pi_low) * Dirichlet(1, ..., 1)``.
    ecc : float, default 0.9
        Largest eccentricity ``sqrt(1 - lambda_min / lambda_max)`` of a covariance (MixSim's ``ecc``);
        wider Wishart draws have their eigenvalues pulled towards the largest.
    xtol : float, default 1e-8
        Absolute tolerance of the root finder on the log of the covariance scale.
    max_tries : int, default 100
        Number of fresh draws (MixSim's ``resN``) before giving up when the target cannot be reached.

    Returns
    -------
    GaussianMixtureParams
        Means uniform on ``[0, 1]^d``; covariances ``c W_k`` with ``W_k`` Wishart(``d + 1``, ``I``)
        draws divided by ``d + 1`` (eccentricity limited to ``ecc``) and ``c`` the common scale at
        which :func:`max_overlap` equals ``max_omega``.

    Raises
    ------
    ValueError
        If an argument is out of range, or the target is not reached in ``max_tries`` draws.
    """
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or n_components < 2:
        raise ValueError(f"n_components must be an integer >= 2, got {n_components!r}.")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}.")
    if not 0.0 < max_omega < 1.0:
        raise ValueError(f"max_omega must lie in (0, 1), got {max_omega!r}.")
    if not 0.0 < pi_low <= 1.0:
        raise ValueError(f"pi_low must lie in (0, 1], got {pi_low!r}.")
    if not 0.0 < ecc < 1.0:
        raise ValueError(f"ecc must lie in (0, 1), got {ecc!r}.")
    rng = np.random.default_rng(random_state)
    k, d = int(n_components), int(dim)
    for _ in range(max_tries):
        weights = pi_low / k + (1.0 - pi_low) * rng.dirichlet(np.ones(k))
        means = rng.uniform(0.0, 1.0, size=(k, d))
        base = np.stack([_limit_eccentricity(_wishart(d, rng), ecc) for _ in range(k)])
        log_scale = _scale_for(weights, means, base, max_omega, xtol)
        if log_scale is not None:
            return GaussianMixtureParams(weights, means, base * math.exp(log_scale), normalize=True)
    raise ValueError(
        f"max_omega = {max_omega} was not reached in {max_tries} draws (the overlap of components with these "
        "shapes stays below it however far the covariances are inflated); choose a smaller target or a smaller ecc."
    )


def _wishart(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Wishart(d + 1, I) draw divided by d + 1."""
    draws = rng.standard_normal((d + 1, d))
    return draws.T @ draws / (d + 1)


def _limit_eccentricity(cov: np.ndarray, ecc: float) -> np.ndarray:
    """Shrink the eigenvalue spread so that ``sqrt(1 - lambda_min / lambda_max) <= ecc`` (MixSim's ``ecc``).

    Eigenvalues are mapped affinely, keeping the largest, so that the smallest becomes
    ``lambda_max (1 - ecc^2)``; matrices already within the bound are returned unchanged.
    """
    vals, vecs = np.linalg.eigh(cov)
    top, bottom = vals[-1], vals[0]
    if math.sqrt(1.0 - bottom / top) <= ecc:
        return cov
    vals = top - (top - vals) * (ecc**2 * top) / (top - bottom)
    return (vecs * vals) @ vecs.T


def _scale_for(
    weights: np.ndarray, means: np.ndarray, base: np.ndarray, max_omega: float, xtol: float
) -> float | None:
    """``log c`` at which the maximum overlap of ``(weights, means, c * base)`` is ``max_omega``, or None."""

    def excess(log_scale: float) -> float:
        mix = GaussianMixtureParams(weights, means, base * math.exp(log_scale), normalize=True)
        return max_overlap(mix) - max_omega

    lo, hi = -2.0, 0.0
    while excess(lo) > 0.0:
        lo -= 2.0
    while excess(hi) < 0.0:
        lo, hi = hi, hi + 2.0
        if hi > 30.0:
            return None
    return float(optimize.brentq(excess, lo, hi, xtol=xtol))
