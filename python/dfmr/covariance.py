"""Covariance models: scikit-learn's four types and mclust's fourteen, one registry.

mclust (Banfield & Raftery 1993; Celeux & Govaert 1995) writes a component covariance as
``Sigma_k = lambda_k D_k A_k D_k^T``: volume ``lambda_k = det(Sigma_k)^(1/d)``, shape ``A_k`` (diagonal,
``det A_k = 1``) and orientation ``D_k`` (orthogonal). A model names, in that order, whether each of
the three is Equal across components, Variable, or the Identity: EII, VII, EEI, VEI, EVI, VVI, EEE,
VEE, EVE, VVE, EEV, VEV, EVV, VVV, and in one dimension E and V. scikit-learn's ``covariance_type``
names four of them: "full" = VVV, "tied" = EEE, "diag" = VVI, "spherical" = VII.

Each model is one :class:`CovarianceModel`, found by :func:`get_model` (either family's names;
in one dimension every model is E or V by its volume letter, and "tied" is E, the other three V).
Every model answers the same questions:

* :meth:`~CovarianceModel.m_step`: the constrained M-step. Given per-component weighted scatter
  matrices ``W_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T`` and counts ``n_k``, the covariances that
  minimise ``sum_k [n_k log det Sigma_k + tr(W_k Sigma_k^-1)]`` within the model. A conjugate
  penalty ``a [tr(S Sigma_k^-1) + log det Sigma_k]`` per component (dfmr's local estimate) is the
  same problem with ``W_k + 2 a S`` and ``n_k + 2 a``, so the callers pass augmented scatters and
  counts and every model keeps its closed form. Closed forms where mclust has them (EII, VII, EEI,
  EVI, VVI, EEE, EEV, EVV, VVV, E, V); VEI, VEE and VEV alternate between the volumes and the shared
  shape (or shape and orientation), each step exact; EVE and VVE alternate between the shapes (and
  volumes) and a common orientation, lowered by sweeps of plane rotations, each the exact
  (over-relaxed) minimiser in its plane (mclust 6 uses two majorise-minimise steps of Browne &
  McNicholas (2014) there, without the volumes in VVE's, which 6.0.0 leaves out). The iterative
  ones start from ``start`` (the covariances before, so that EM stays monotone: every inner step
  lowers the objective from there) and then take at most 3 rounds (a
  generalised EM step), else from identity shapes (VEI, VEE, VEV) or the eigenvectors of the pooled
  covariance (EVE, VVE), to a relative change below ``1e-12``. The M-step is computed by the
  compiled core (``dfmr::constrained_m_step``, cpp/src/covariance.cpp), the one implementation that
  local EM and the reduction's MM update share.
* :meth:`~CovarianceModel.n_parameters`: free parameters as mclust's ``nMclustParams`` (covariance
  part as ``nVarParams``, plus ``K d`` means and ``K - 1`` weights), which are also scikit-learn's
  ``_n_parameters`` for its four types.
* :meth:`~CovarianceModel.to_sklearn` / :meth:`~CovarianceModel.from_sklearn`: scikit-learn's
  layouts (full (K, d, d), tied (d, d), diag (K, d), spherical (K,)); :func:`sklearn_layout` says
  which layout a name asks for (the other mclust models use "full").
* :meth:`~CovarianceModel.to_mclust` / :meth:`~CovarianceModel.from_mclust`: mclust's
  ``$parameters$variance`` list for the model (``sigma`` d x d x G and the model's own fields:
  ``sigmasq``, ``Sigma``, ``cholSigma``, ``cholsigma``, ``scale``, ``shape``, ``orientation``).
* :meth:`~CovarianceModel.contains`: whether covariances belong to the model.

How the layers ask the registry (covariances are always carried as (K, d, d) arrays between layers;
the model only constrains them and describes them):

* local EM (:mod:`dfmr.local`): ``get_model(covariance_type, d)`` once; each M-step passes the
  penalty-augmented scatters and counts and the covariances before to ``model.m_step``;
  ``model.n_parameters(K, d)`` sets the convergence scale.
* aggregation: each MM iteration's moment-matched scatter ``sum_n pi_nk (Sigma_n + (mu_n - mu_k)
  (mu_n - mu_k)^T)`` with counts ``sum_n pi_nk`` is the same M-step problem: the C++ core applies
  the same constrained M-step there.
* inference and screening: ``model.n_covariance_parameters(K, d)`` degrees of freedom; the model's
  free parametrisation is ``to_mclust``'s fields (log volumes, log shapes, orientation angles).
* estimator, io, CLI, R: ``get_model`` validates the user's name; ``sklearn_layout(name)`` and
  ``to_sklearn`` give the attribute shapes; files store ``model.name``; the R package writes
  ``to_mclust`` as ``$parameters$variance`` and reads ``from_mclust``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "MODEL_NAMES",
    "SKLEARN_TYPES",
    "UNIVARIATE_MODEL_NAMES",
    "CovarianceModel",
    "get_model",
    "majority_covariance_type",
    "mclust_model",
    "sklearn_layout",
]

MODEL_NAMES = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
UNIVARIATE_MODEL_NAMES = ("E", "V")
# scikit-learn's covariance_type -> mclust model (d >= 2) and 1-D model.
SKLEARN_TYPES = {"full": ("VVV", "V"), "tied": ("EEE", "E"), "diag": ("VVI", "V"), "spherical": ("VII", "V")}
_LINEAR_MODELS = frozenset({"EII", "VII", "EEI", "VVI", "EEE", "VVV", "E", "V"})
_LAYOUT_OF_MODEL = {"VVV": "full", "EEE": "tied", "VVI": "diag", "VII": "spherical", "E": "tied", "V": "full"}

def _diag_matrices(values: np.ndarray) -> np.ndarray:
    """(..., d) -> (..., d, d) diagonal matrices."""
    out = np.zeros(values.shape + values.shape[-1:])
    idx = np.arange(values.shape[-1])
    out[..., idx, idx] = values
    return out


def _geometric_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(np.mean(np.log(values), axis=axis))


def _logdet(matrices: np.ndarray) -> np.ndarray:
    sign, logdet = np.linalg.slogdet(matrices)
    return np.where(sign > 0, logdet, -np.inf)


def _normalized(values: np.ndarray) -> np.ndarray:
    """Positive values scaled to a geometric mean of one (determinant one, as a shape), last axis."""
    return values / _geometric_mean(values)[..., None]


def _shared_orientation(covariances: np.ndarray) -> np.ndarray:
    """Orthogonal D diagonalising every Sigma_k of a model with a common orientation.

    The eigenvectors of ``sum_k c_k Sigma_k / det(Sigma_k)^(1/d)``, eigenvalues decreasing, with
    unequal weights ``c_k = 1 / (k + pi)``: when the Sigma_k share their eigenvectors, so does the
    sum, and unequal weights make its eigenvalues distinct unless the components are all equal on
    some plane (where any basis serves). (The C++ M-step of EVE and VVE starts from the same
    orientation.)
    """
    K, d = covariances.shape[0], covariances.shape[-1]
    weights = 1.0 / (np.arange(K) + math.pi) / np.exp(_logdet(covariances) / d)
    _, vectors = np.linalg.eigh(np.einsum("k,kij->ij", weights, covariances))
    return vectors[:, ::-1]


_ITERATIVE = ("VEI", "VEE", "EVE", "VVE", "VEV")


@dataclass(frozen=True)
class CovarianceModel:
    """One covariance model: its constrained M-step, parameter count and layouts.

    Obtain instances with :func:`get_model`. ``name`` is mclust's model name; ``volume``, ``shape``
    and ``orientation`` are its letters ("E", "V" or "I"; shape and orientation are "" for the
    one-dimensional models E and V); ``iterative`` says whether the M-step iterates (VEI, VEE, EVE,
    VVE, VEV).
    """

    name: str
    iterative: bool = False

    @property
    def volume(self) -> str:
        return self.name[0]

    @property
    def shape(self) -> str:
        return self.name[1:2]

    @property
    def orientation(self) -> str:
        return self.name[2:3]

    @property
    def univariate(self) -> bool:
        return len(self.name) == 1

    @property
    def sklearn_layouts(self) -> tuple[str, ...]:
        """scikit-learn layouts that hold every covariance of the model ("full" always does)."""
        layouts = ["full"]
        if self.volume == "E" and "V" not in self.name:
            layouts.append("tied")
        if self.univariate or self.orientation == "I":
            layouts.append("diag")
            if self.univariate or self.shape == "I":
                layouts.append("spherical")
        return tuple(layouts)

    def n_covariance_parameters(self, n_components: int, dim: int) -> int:
        """Free parameters of the K covariances (mclust's ``nVarParams``).

        Volume: 1 (E) or K (V); shape: 0 (I), ``d - 1`` (E) or ``K (d - 1)`` (V); orientation: 0 (I),
        ``d (d - 1) / 2`` (E) or ``K d (d - 1) / 2`` (V).
        """
        self._check_dim(dim)
        count = {"E": 1, "V": n_components, "I": 0, "": 0}
        return (count[self.volume] + count[self.shape] * (dim - 1)
                + count[self.orientation] * dim * (dim - 1) // 2)

    def covariance_df(self, dim: int) -> tuple[int, int]:
        """Free covariance parameters ``(own, shared)``: those of one component alone (its V letters) and
        those shared by all components (its E letters), so that ``n_covariance_parameters(K, d) = K own +
        shared``. The screening tests of :func:`dfmr.robust_dfmr` test ``own`` per component and ``shared``
        once per machine (e.g. VII (1, 0), VVI (d, 0), EEE (0, d (d + 1) / 2), VEV (1 + d (d - 1) / 2, d - 1)).
        """
        self._check_dim(dim)
        sizes = (1, dim - 1, dim * (dim - 1) // 2)
        letters = (self.volume, self.shape, self.orientation)
        return (sum(n for letter, n in zip(letters, sizes) if letter == "V"),
                sum(n for letter, n in zip(letters, sizes) if letter == "E"))

    def combine(self, varying: np.ndarray, shared: np.ndarray) -> np.ndarray:
        """Covariances (K, d, d) of the model with the per-component parts (V letters) of ``varying`` and
        the shared parts (E letters) of ``shared``, both (K, d, d) stacks decomposed as :meth:`project` does.

        Screening uses it to test the two kinds of parameter separately: ``combine(machine, reference)``
        differs from the reference only in the machine's per-component parts, ``combine(reference,
        machine)`` only in its shared parts. A shape taken from another stack than the orientation is
        that stack's covariances' normalised diagonal along the orientation.
        """
        cov_v, cov_s = self._check_covariances(varying), self._check_covariances(shared)
        if cov_v.shape != cov_s.shape:
            raise ValueError(f"varying and shared must have the same shape, got {cov_v.shape} and {cov_s.shape}.")
        parts_v, parts_s = self._decompose(cov_v), self._decompose(cov_s)
        scale = parts_v[0] if self.volume == "V" else parts_s[0]
        orientation = parts_v[2] if (self.orientation or "V") == "V" else parts_s[2]
        if self.shape == "I":
            shape = parts_v[1]
        else:
            # The shape source's covariances along the chosen orientation: no pairing of axes by their
            # order (which two estimates of a common orientation need not share), and the source's
            # own shape when the orientation is its own.
            source = cov_v if (self.shape or "V") == "V" else cov_s
            shape = _normalized(np.einsum("kij,kil,klj->kj", orientation, source, orientation))
        return np.einsum("kij,kj,klj->kil", orientation, scale[:, None] * shape, orientation)

    @property
    def linear(self) -> bool:
        """Whether the model's covariances form a linear space (EII, VII, EEI, VVI, EEE, VVV, E, V): its
        free parameters are then covariance entries (:meth:`linear_basis`)."""
        return self.name in _LINEAR_MODELS

    def linear_basis(self, n_components: int, dim: int) -> np.ndarray:
        """``B`` with ``vech(Sigma_1), ..., vech(Sigma_K) = B @ theta`` for the model's free parameters ``theta``.

        ``vech`` is the row-major upper triangle (``Sigma[i, j]``, ``i <= j``; the order of
        :func:`dfmr.information.param_names`). The parameters (:meth:`parameter_names`): VVV every
        component's entries, EEE the shared matrix's, VVI every component's variances, EEI the
        shared variances, VII one variance per component, EII one shared variance (V and E in one
        dimension: per component, shared). The information in the model's parametrisation is
        ``B' I B`` (exact: the map is linear).

        Returns
        -------
        ndarray of shape (K d (d + 1) / 2, n_covariance_parameters(K, d))

        Raises
        ------
        ValueError
            For the models whose covariances are not a linear space (VEI, EVI, VEE, EVE, VVE, EEV, VEV, EVV).
        """
        if not self.linear:
            raise ValueError(f"covariance model {self.name} is not linear in its covariance entries; "
                             "its parameters (volumes, shapes, orientations) have no linear basis.")
        self._check_dim(dim)
        k, d = int(n_components), int(dim)
        rows, cols = np.triu_indices(d)
        q = rows.size
        if self.orientation == "I":
            # Diagonal models: a variance per coordinate (shape E/V) or one per matrix (shape I).
            per = np.eye(q)[:, rows == cols] if self.shape != "I" else (rows == cols).astype(float)[:, None]
        else:
            per = np.eye(q)  # EEE, VVV, E, V: every entry
        if self.volume == "V":
            return np.kron(np.eye(k), per)
        return np.tile(per, (k, 1))

    # ------------------------------------------------------------------ chart of a non-linear model
    #
    # A model whose covariances are not a linear space (VEI, EVI, VEE, EVE, VVE, EEV, VEV, EVV) is
    # parametrised locally around one of its members Sigma_k = lambda_k D_k diag(A_k) D_k' by: the
    # volumes lambda (1 if shared, K if not), the shapes' first d - 1 entries (A_d = 1 / prod of the
    # others: det A = 1), and for each orientation a rotation D = D_hat expm(S(phi)), S skew with
    # upper entries phi, phi = 0 at the member. The chart has exactly n_covariance_parameters(K, d)
    # coordinates (mclust's nVarParams); information and delta method work through its Jacobian.

    def _chart_counts(self, n_components: int) -> tuple[int, int, int]:
        """How many volumes, shapes and orientations the chart has (1 when shared, K when not, 0 for I)."""
        count = {"E": 1, "V": int(n_components), "I": 0, "": 0}
        return count[self.volume], count[self.shape], count[self.orientation]

    def _chart_base(self, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(scale, shape, orientation)`` of covariances that are a member of the model (else ValueError)."""
        cov = self._check_covariances(covariances)
        scale, shape, orientation = self._decompose(cov)
        rebuilt = np.einsum("kij,kj,klj->kil", orientation, scale[:, None] * shape, orientation)
        if not np.allclose(rebuilt, cov, rtol=1e-6, atol=1e-9 * np.abs(cov).max()):
            raise ValueError(f"the covariances are not members of model {self.name} (to a relative 1e-6); "
                             "its chart (volumes, shapes, orientations) is defined at a member only.")
        return scale, shape, orientation

    def chart_point(self, covariances: np.ndarray) -> np.ndarray:
        """Chart coordinates of a member of the model: its volumes, shapes' first ``d - 1`` entries and
        zero rotations (see :meth:`chart_jacobian`).

        Returns
        -------
        ndarray of shape (n_covariance_parameters(K, d),)
        """
        scale, shape, _ = self._chart_base(covariances)
        K, d = shape.shape
        nv, ns, no = self._chart_counts(K)
        return np.concatenate([scale[:nv], shape[:ns, : d - 1].ravel(), np.zeros(no * (d * (d - 1) // 2))])

    def chart_covariances(self, covariances: np.ndarray, coordinates: ArrayLike) -> np.ndarray:
        """The model's covariances (K, d, d) at chart ``coordinates`` of the chart centred at the member
        ``covariances`` (whose orientations are the rotations' origin; :meth:`chart_point` gives its own
        coordinates)."""
        from scipy.linalg import expm

        _, shape0, orientation = self._chart_base(covariances)
        K, d = shape0.shape
        nv, ns, no = self._chart_counts(K)
        r, c = np.triu_indices(d, 1)
        x = np.asarray(coordinates, dtype=np.float64)
        if x.shape != (nv + ns * (d - 1) + no * r.size,):
            raise ValueError(f"coordinates must have shape ({nv + ns * (d - 1) + no * r.size},), got {x.shape}.")
        volumes, shapes = x[:nv], x[nv: nv + ns * (d - 1)].reshape(ns, d - 1)
        angles = x[nv + ns * (d - 1):].reshape(no, r.size)
        out = np.empty((K, d, d))
        for k in range(K):
            a = np.ones(d) if ns == 0 else shapes[min(k, ns - 1)]
            a = a if ns == 0 else np.append(a, 1.0 / np.prod(a))
            rot = orientation[k]
            if no:
                skew = np.zeros((d, d))
                skew[r, c] = angles[min(k, no - 1)]
                rot = rot @ expm(skew - skew.T)
            out[k] = volumes[min(k, nv - 1)] * (rot * a) @ rot.T
        return out

    def chart_jacobian(self, covariances: np.ndarray) -> np.ndarray:
        """``J = d(vech Sigma_1, ..., vech Sigma_K) / d(chart)`` at the member ``covariances``, analytically.

        Columns as :meth:`parameter_names`; rows as :meth:`linear_basis`. For a linear model this is
        :meth:`linear_basis`. With ``Sigma = lambda D diag(A) D'``: ``d/d lambda = D A D'``, ``d/d A_j =
        lambda D (e_j e_j' - A_d / A_j e_d e_d') D'`` (``A_d = 1 / prod``), ``d/d phi_ij = lambda D (G A
        - A G) D'`` with ``G = e_i e_j' - e_j e_i'`` (the derivative of ``expm`` at 0). A shared
        parameter's column sums its components' derivatives.

        Returns
        -------
        ndarray of shape (K d (d + 1) / 2, n_covariance_parameters(K, d))
        """
        if self.linear:
            cov = self._check_covariances(covariances)
            return self.linear_basis(cov.shape[0], cov.shape[-1])
        scale, shape, orientation = self._chart_base(covariances)
        K, d = shape.shape
        nv, ns, no = self._chart_counts(K)
        rows, cols = np.triu_indices(d)
        r, c = np.triu_indices(d, 1)
        q = rows.size
        s0, o0 = nv, nv + ns * (d - 1)
        jac = np.zeros((K * q, o0 + no * r.size))
        for k in range(K):
            D, A, lam = orientation[k], shape[k], scale[k]
            block = slice(k * q, (k + 1) * q)
            jac[block, min(k, nv - 1)] += ((D * A) @ D.T)[rows, cols]
            if ns:
                for j in range(d - 1):
                    e = np.zeros(d)
                    e[j], e[d - 1] = 1.0, -A[d - 1] / A[j]
                    jac[block, s0 + min(k, ns - 1) * (d - 1) + j] += lam * ((D * e) @ D.T)[rows, cols]
            if no:
                for m, (i, j) in enumerate(zip(r, c)):
                    G = np.zeros((d, d))
                    G[i, j], G[j, i] = 1.0, -1.0
                    turn = lam * (D @ (G * A - A[:, None] * G) @ D.T)
                    jac[block, o0 + min(k, no - 1) * r.size + m] += turn[rows, cols]
        return jac

    def parameter_names(self, n_components: int, dim: int) -> list[str]:
        """Names of the free covariance parameters, in the columns' order of :meth:`linear_basis` (a linear
        model: covariance entries) or of :meth:`chart_jacobian` (the others: ``lambda`` volumes, ``A`` shapes'
        first ``d - 1`` entries, ``rot`` rotation angles ``phi_ij``, ``i < j``), 1-based, ``[k]`` per component."""
        if not self.linear:
            self._check_dim(dim)
            nv, ns, no = self._chart_counts(n_components)
            r, c = np.triu_indices(dim, 1)

            def tag(k: int, count: int) -> str:
                return "" if count == 1 else f"[{k + 1}]"
            return ([f"lambda{tag(k, nv)}" for k in range(nv)]
                    + [f"A{tag(k, ns)}[{j + 1}]" for k in range(ns) for j in range(dim - 1)]
                    + [f"rot{tag(k, no)}[{i + 1},{j + 1}]" for k in range(no) for i, j in zip(r, c)])
        basis = self.linear_basis(n_components, dim)
        rows, cols = np.triu_indices(dim)
        q = rows.size
        shared = self.volume == "E"
        names = []
        for col in range(basis.shape[1]):
            first = int(np.flatnonzero(basis[:, col])[0])
            k, entry = divmod(first, q)
            prefix = "" if shared else f"[{k + 1}]"
            if self.orientation == "I" and self.shape == "I":
                names.append(f"sigma2{prefix}")
            else:
                names.append(f"Sigma{prefix}[{rows[entry] + 1},{cols[entry] + 1}]")
        return names

    def own_columns(self, n_components: int, dim: int) -> np.ndarray:
        """Which free covariance parameters (columns of :meth:`chart_jacobian`, :meth:`parameter_names`)
        belong to one component alone: those of the model's V letters (volumes, shapes, orientations).

        The others (E letters) are shared by all components. A per-slot screening statistic compares a
        machine's component with the reference's through :meth:`combine` (the machine's V letters, the
        reference's E letters), so to first order it moves only these coordinates, ``covariance_df(d)[0]``
        of them per component. Linear models: all columns (VVV, VVI, VII, V) or none (EEE, EEI, EII, E).

        Returns
        -------
        ndarray of bool, shape (n_covariance_parameters(K, d),)
        """
        self._check_dim(dim)
        k, d = int(n_components), int(dim)
        if self.linear:
            return np.full(self.n_covariance_parameters(k, d), self.volume == "V")
        nv, ns, no = self._chart_counts(k)
        sizes = (nv, ns * (d - 1), no * (d * (d - 1) // 2))
        return np.concatenate([np.full(size, letter == "V")
                               for letter, size in zip((self.volume, self.shape, self.orientation), sizes)])

    def n_parameters(self, n_components: int, dim: int) -> int:
        """Free parameters of a K-component mixture with this model (mclust's ``nMclustParams``).

        The covariance part (:meth:`n_covariance_parameters`), ``K d`` means and ``K - 1`` weights.
        """
        return self.n_covariance_parameters(n_components, dim) + n_components * dim + n_components - 1

    def m_step(self, scatter: np.ndarray, counts: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """The model's covariances minimising ``sum_k [n_k log det Sigma_k + tr(W_k Sigma_k^-1)]``.

        Parameters
        ----------
        scatter : ndarray, shape (..., K, d, d)
            Weighted scatter matrices ``W_k`` about the component means (plus ``2 a S`` under a
            conjugate penalty); any leading dimensions are independent mixtures.
        counts : ndarray, shape (..., K)
            Positive (augmented) counts ``n_k``.
        start : ndarray, shape (..., K, d, d), optional
            Covariances of the model to start the iterative models from (the previous EM
            iterate); ignored by closed forms.

        Returns
        -------
        ndarray, shape (..., K, d, d)
            Symmetric covariances of the model; positive definite when the scatters are (and, for
            the diagonal models, when their diagonals are positive). Without a penalty a component
            may be empty or hold too few points (a zero count or a singular scatter): the
            constrained optimum then does not exist, and the iterative models give NaN
            covariances for that mixture (the closed forms what their arithmetic gives, e.g.
            0 / 0), which lets local EM drop that run.
        """
        scatter = np.asarray(scatter, dtype=np.float64)
        counts = np.asarray(counts, dtype=np.float64)
        if scatter.ndim < 3 or scatter.shape[-1] != scatter.shape[-2] or counts.shape != scatter.shape[:-2]:
            raise ValueError(f"scatter must have shape (..., K, d, d) and counts (..., K); got {scatter.shape} "
                             f"and {counts.shape}.")
        self._check_dim(scatter.shape[-1])
        from ._native import _core  # the compiled core imports this module's users; import it late

        K, d = scatter.shape[-3], scatter.shape[-1]
        flat_s = None
        if start is not None and self.iterative:
            flat_s = np.asarray(start, dtype=np.float64).reshape(-1, K, d, d)
        out = _core.m_step(self.name, scatter.reshape(-1, K, d, d), counts.reshape(-1, K), flat_s)
        return out.reshape(scatter.shape)

    def _check_dim(self, dim: int) -> None:
        if self.univariate != (dim == 1):
            raise ValueError(f"covariance model {self.name} is for {'d = 1' if self.univariate else 'd >= 2'}, "
                             f"got d = {dim}; get_model(name, d) resolves a name for the data's dimension.")

    def _decompose(self, covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``scale`` (K,), ``shape`` (K, d), ``orientation`` (K, d, d) with Sigma_k = scale_k O_k diag(shape_k) O_k^T.

        Parts the model shares are taken once for all components (the geometric mean of the volumes,
        the shared orientation, the normalised mean shape), so that a covariance outside the model
        does not come back unchanged (:meth:`contains`).
        """
        K, d = covariances.shape[0], covariances.shape[-1]
        scale = np.exp(_logdet(covariances) / d)
        if self.volume == "E":
            scale = np.full(K, _geometric_mean(scale))
        if self.orientation == "V":
            _, vectors = np.linalg.eigh(covariances)
            orientation = vectors[..., ::-1]
        elif self.orientation == "E":
            orientation = np.repeat(_shared_orientation(covariances)[None], K, axis=0)
        else:
            orientation = np.repeat(np.eye(d)[None], K, axis=0)
        shape = np.einsum("kij,kil,klj->kj", orientation, covariances, orientation)
        shape = _normalized(shape)
        if self.shape == "I":
            shape = np.ones((K, d))
        elif self.shape == "E":
            shape = np.repeat(_normalized(shape.mean(axis=0))[None], K, axis=0)
        return scale, shape, orientation

    def _check_covariances(self, covariances: np.ndarray) -> np.ndarray:
        cov = np.asarray(covariances, dtype=np.float64)
        if cov.ndim != 3 or cov.shape[1] != cov.shape[2] or cov.shape[0] == 0:
            raise ValueError(f"covariances must have shape (K, d, d), got {cov.shape}.")
        self._check_dim(cov.shape[1])
        return cov

    def project(self, covariances: np.ndarray) -> np.ndarray:
        """The covariances rebuilt from the model's own parameters (:meth:`to_mclust`'s fields).

        A member of the model comes back unchanged up to rounding; anything else comes back changed.
        """
        cov = self._check_covariances(covariances)
        scale, shape, orientation = self._decompose(cov)
        return np.einsum("kij,kj,klj->kil", orientation, scale[:, None] * shape, orientation)

    def contains(self, covariances: np.ndarray, rtol: float = 1e-8) -> bool:
        """Whether ``covariances`` (K, d, d) belong to the model, up to ``rtol`` of their largest entry."""
        cov = self._check_covariances(covariances)
        return bool(np.max(np.abs(self.project(cov) - cov)) <= rtol * np.max(np.abs(cov)))

    def to_sklearn(self, covariances: np.ndarray, layout: str | None = None) -> np.ndarray:
        """Covariances (K, d, d) of this model in a scikit-learn layout.

        Parameters
        ----------
        covariances : ndarray, shape (K, d, d)
        layout : {"full", "tied", "diag", "spherical"}, optional
            Default: the model's own (:func:`sklearn_layout` of its name). Must be one of
            :attr:`sklearn_layouts` (able to hold every covariance of the model).

        Returns
        -------
        ndarray
            (K, d, d) full, (d, d) tied, (K, d) diag or (K,) spherical.
        """
        cov = self._check_covariances(covariances)
        layout = self._check_layout(layout)
        if layout == "full":
            return cov.copy()
        if layout == "tied":
            return cov[0].copy()
        diag = np.diagonal(cov, axis1=1, axis2=2)
        return diag.copy() if layout == "diag" else diag.mean(axis=1)

    def from_sklearn(
        self, covariances: np.ndarray, n_components: int, dim: int, layout: str | None = None
    ) -> np.ndarray:
        """Covariances in a scikit-learn layout as a (K, d, d) stack (inverse of :meth:`to_sklearn`)."""
        layout = self._check_layout(layout)
        arr = np.asarray(covariances, dtype=np.float64)
        expected = {"full": (n_components, dim, dim), "tied": (dim, dim), "diag": (n_components, dim),
                    "spherical": (n_components,)}[layout]
        if arr.shape != expected:
            raise ValueError(f"{layout} covariances must have shape {expected}, got {arr.shape}.")
        if layout == "full":
            return arr.copy()
        if layout == "tied":
            return np.repeat(arr[None], n_components, axis=0)
        if layout == "diag":
            return _diag_matrices(arr)
        return arr[:, None, None] * np.eye(dim)

    def _check_layout(self, layout: str | None) -> str:
        layout = _LAYOUT_OF_MODEL.get(self.name, "full") if layout is None else layout
        if layout not in self.sklearn_layouts:
            raise ValueError(f"covariance model {self.name} cannot be held in scikit-learn's {layout!r} layout; "
                             f"possible: {', '.join(self.sklearn_layouts)}.")
        return layout

    def mclust_name(self, n_components: int) -> str:
        """The name mclust gives this model with ``n_components`` components: its own, or for one
        component mclust's single-component name (X, XII, XXI or XXX), as ``Mclust()`` reports it."""
        if n_components != 1:
            return self.name
        if self.univariate:
            return "X"
        return "XII" if self.shape == "I" else "XXI" if self.orientation == "I" else "XXX"

    def to_mclust(self, covariances: np.ndarray) -> dict[str, Any]:
        """mclust's ``$parameters$variance`` list of this model for covariances (K, d, d) of the model.

        The fields, their order and their shapes are those of ``Mclust()``'s result for the model
        (mclust 6; for VVI those of ``me()``, without the copy of ``scale`` as ``sigmasq`` that some
        ``Mclust()`` paths add), so that mclust's model-specific functions (``dens``, ``cdens``, ``estep``,
        ``predict``) read them. Arrays in R's layout (``sigma`` d x d x G, ``shape`` d x G,
        ``orientation`` d x d (x G)); ``scale`` and ``sigmasq`` are scalars for an equal volume, else
        length G. ``cholSigma`` and ``cholsigma`` are upper factors (``R^T R = Sigma``, R's ``chol``).
        By model: E ``sigmasq``; V ``sigmasq``, ``scale``; EII ``sigma``, ``Sigma``, ``sigmasq``,
        ``scale``; VII ``sigma``, ``sigmasq``, ``scale``; EEI ``sigma``,
        ``Sigma``, ``scale``, ``shape``; EEE ``sigma``, ``Sigma``, ``cholSigma``; VVV ``sigma``,
        ``cholsigma``; the others ``sigma``, ``scale``, ``shape`` and ``orientation`` (unless I). One
        component (:meth:`mclust_name`): X ``sigmasq``; XII ``sigmasq``, ``Sigma``, ``sigma``,
        ``scale``; XXI ``Sigma``, ``sigma``, ``scale``, ``shape``; XXX ``Sigma``, ``cholSigma``,
        ``cholsigma``, ``sigma``.
        """
        cov = self._check_covariances(covariances)
        K, d = cov.shape[0], cov.shape[1]
        scale, shape, orientation = self._decompose(cov)
        name = self.mclust_name(K)
        volume = scale[0] if self.volume == "E" or K == 1 else scale.copy()
        out: dict[str, Any] = {"modelName": name, "d": d, "G": K}
        if self.univariate:
            out["sigmasq"] = volume
            if name == "V":
                out["scale"] = scale.copy()
            return out
        sigma = np.ascontiguousarray(np.moveaxis(cov, 0, 2))
        upper = np.swapaxes(np.linalg.cholesky(cov), 1, 2)
        if name == "XII":
            return out | {"sigmasq": volume, "Sigma": cov[0].copy(), "sigma": sigma, "scale": volume}
        if name == "XXI":
            return out | {"Sigma": cov[0].copy(), "sigma": sigma, "scale": volume, "shape": shape[0].copy()}
        if name == "XXX":
            return out | {"Sigma": cov[0].copy(), "cholSigma": upper[0].copy(), "cholsigma": upper[0].copy(),
                          "sigma": sigma}
        out["sigma"] = sigma
        if name == "VVV":
            out["cholsigma"] = np.ascontiguousarray(np.moveaxis(upper, 0, 2))
            return out
        if name in ("EII", "EEI", "EEE"):
            out["Sigma"] = cov[0].copy()
        if name == "EEE":
            out["cholSigma"] = upper[0].copy()
            return out
        if self.shape == "I":
            out["sigmasq"] = volume
        out["scale"] = volume
        if self.shape != "I":
            out["shape"] = shape[0].copy() if self.shape == "E" else np.ascontiguousarray(shape.T)
        if self.orientation == "E":
            out["orientation"] = orientation[0].copy()
        elif self.orientation == "V":
            out["orientation"] = np.ascontiguousarray(np.moveaxis(orientation, 0, 2))
        return out

    def from_mclust(self, variance: Mapping[str, Any], n_components: int | None = None, dim: int | None = None,
                    rtol: float = 1e-8) -> np.ndarray:
        """Covariances (K, d, d) from mclust's ``$parameters$variance`` of this model (:meth:`to_mclust`).

        Read from the model's own fields, those mclust's density functions use: ``sigmasq`` (E, V, X,
        EII, VII, XII), ``cholSigma`` or ``Sigma`` (EEE, XXX), ``cholsigma`` or ``sigma`` (VVV), else
        ``scale``, ``shape`` and ``orientation`` (mclust's ``decomp2sigma``); a field shared by the
        components may be given once (a scalar ``scale``, a length-d ``shape``, a d x d
        ``orientation``). When ``sigma`` is there too it must agree with them (to ``rtol`` of the
        largest entry), so that an edited object whose fields contradict each other is refused
        rather than read one way or the other; the covariances must be positive definite and belong
        to the model.

        Parameters
        ----------
        variance : mapping
            mclust's list; ``modelName`` (optional) must be this model's name, or its
            single-component name (:meth:`mclust_name`) when there is one component.
        n_components, dim : int, optional
            K and d when known from the means and weights (checked against ``variance$G`` and
            ``variance$d``); otherwise read from those fields (or from ``sigma``).
        rtol : float
            Relative tolerance of the agreement with ``sigma`` and of the membership check.

        Raises
        ------
        ValueError
            If ``modelName`` is another model, a field is missing, malformed or not finite, the
            fields disagree, or the covariances do not belong to the model.
        """
        K, d = _mclust_dims(variance, n_components, dim)
        model = variance.get("modelName")
        if model is not None and str(np.asarray(model).reshape(-1)[0]) not in (self.name, self.mclust_name(K)):
            raise ValueError(f"variance$modelName is {model!r}, not {self.mclust_name(K)}.")
        self._check_dim(d)
        fields = _McLustFields(variance, K, d)
        name = self.mclust_name(K)
        if name in ("E", "V", "X", "EII", "VII", "XII"):
            cov = fields.per_component("sigmasq")[:, None, None] * np.eye(d)
        elif name in ("EEE", "XXX"):
            # a plain list(sigma) of one component is read as XXX: from sigma when Sigma is not there
            cov = (_from_cholesky(fields.stack("cholSigma")) if "cholSigma" in fields
                   else fields.stack("sigma" if model is None and "Sigma" not in fields else "Sigma"))
        elif name == "VVV":
            cov = _from_cholesky(fields.stack("cholsigma")) if "cholsigma" in fields else fields.stack("sigma")
        else:
            scale, shape = fields.per_component("scale"), fields.shape_matrix()
            if self.orientation == "I" or name == "XXI":
                cov = _diag_matrices(scale[:, None] * shape.T)
            else:
                orient = fields.stack("orientation")
                cov = np.einsum("kij,jk,klj->kil", orient, scale * shape, orient)
        if "sigma" in fields and d > 1:
            sigma = fields.stack("sigma")
            if np.max(np.abs(sigma - cov)) > rtol * max(np.max(np.abs(cov)), np.finfo(np.float64).tiny):
                raise ValueError(f"variance$sigma contradicts the {name} model's own fields.")
        smallest = np.linalg.eigvalsh(0.5 * (cov + np.swapaxes(cov, 1, 2)))[:, 0]
        if np.any(smallest <= 0):  # the model's decomposition (and membership) needs positive definite matrices
            j = int(np.argmax(smallest <= 0))
            raise ValueError(f"covariances: matrix {j} is not positive definite (smallest eigenvalue "
                             f"{smallest[j]:.3g}).")
        if not self.contains(cov, rtol):
            raise ValueError(f"the covariances in variance do not belong to the {self.name} model.")
        return cov


def _mclust_dims(variance: Mapping[str, Any], n_components: int | None, dim: int | None) -> tuple[int, int]:
    """K and d of an mclust variance list: the caller's, checked against ``G`` and ``d`` when present."""
    known = {"G": n_components, "d": dim}
    for key in ("G", "d"):
        if variance.get(key) is None:
            continue
        value = np.asarray(variance[key]).reshape(-1)
        if value.size != 1 or value.dtype.kind not in "iuf" or not np.isfinite(value[0]) or value[0] < 1 or \
                value[0] != int(value[0]):
            raise ValueError(f"variance${key}: expected a positive integer, got {variance[key]!r}.")
        if known[key] is not None and int(value[0]) != known[key]:
            raise ValueError(f"variance${key} = {int(value[0])} but the means and weights give {key} = {known[key]}.")
        known[key] = int(value[0])
    if (known["G"] is None or known["d"] is None) and variance.get("sigma") is not None:
        sigma = np.asarray(variance["sigma"])
        known["d"] = known["d"] or sigma.shape[0]
        known["G"] = known["G"] or (sigma.shape[2] if sigma.ndim == 3 else 1)
    if known["G"] is None or known["d"] is None:
        raise ValueError("variance: G and d are missing (and there is no sigma to read them from).")
    return known["G"], known["d"]


class _McLustFields:
    """The numeric fields of an mclust variance list, checked and shaped for K components in d dimensions."""

    def __init__(self, variance: Mapping[str, Any], K: int, d: int) -> None:
        self._variance, self._K, self._d = variance, K, d

    def __contains__(self, name: str) -> bool:
        return self._variance.get(name) is not None

    def get(self, name: str) -> np.ndarray:
        if name not in self:
            raise ValueError(f"variance${name} is missing (needed by its covariance model).")
        try:
            arr = np.asarray(self._variance[name], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"variance${name}: not numeric ({exc}).") from None
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"variance${name} contains NA, NaN or infinity.")
        return arr

    def per_component(self, name: str) -> np.ndarray:
        """A scalar (equal across components) or K values, as a length-K vector."""
        flat = self.get(name).reshape(-1)
        if flat.size not in (1, self._K):
            raise ValueError(f"variance${name}: expected 1 or G = {self._K} values, got {flat.size}.")
        return np.broadcast_to(flat, (self._K,)).copy()

    def shape_matrix(self) -> np.ndarray:
        """``shape`` as a d x K matrix (a length-d vector is shared by all components)."""
        arr, d, K = self.get("shape"), self._d, self._K
        if arr.size == d:
            return np.repeat(arr.reshape(d, 1), K, axis=1)
        if arr.shape != (d, K):
            raise ValueError(f"variance$shape: expected d = {d} values or a d x G matrix, got shape {arr.shape}.")
        return arr

    def stack(self, name: str) -> np.ndarray:
        """A d x d x K array (or one d x d matrix, shared) as a K x d x d stack."""
        arr, d, K = self.get(name), self._d, self._K
        if arr.shape == (d, d, K):
            return np.ascontiguousarray(np.moveaxis(arr, 2, 0))
        if arr.shape == (d, d) or (d == 1 and arr.size == 1):
            return np.repeat(arr.reshape(1, d, d), K, axis=0)
        if d == 1 and arr.size == K:
            return arr.reshape(K, 1, 1)
        raise ValueError(f"variance${name}: expected a {d} x {d} x {K} array, got shape {arr.shape}.")


def _from_cholesky(upper: np.ndarray) -> np.ndarray:
    """``R^T R`` for a stack of upper-triangular factors (R's ``chol`` convention)."""
    upper = np.triu(upper)
    return np.einsum("kji,kjl->kil", upper, upper)


_REGISTRY = {name: CovarianceModel(name, name in _ITERATIVE) for name in MODEL_NAMES + UNIVARIATE_MODEL_NAMES}


def get_model(covariance_type: str, dim: int) -> CovarianceModel:
    """The covariance model named ``covariance_type`` for ``dim``-dimensional data.

    Parameters
    ----------
    covariance_type : str
        scikit-learn's "full", "tied", "diag" or "spherical" (= VVV, EEE, VVI, VII), or an mclust model
        name (EII, VII, EEI, VEI, EVI, VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV, VVV; E, V when d = 1).
        In one dimension only E and V exist: "tied" is E, the other scikit-learn names are V, and an
        mclust model is the one-dimensional model of its volume letter (its shape and orientation
        have nothing to constrain).
    dim : int
        Dimension d >= 1 of the data.

    Returns
    -------
    CovarianceModel

    Raises
    ------
    ValueError
        For an unknown name, or E and V with d >= 2.
    """
    if not isinstance(covariance_type, str) or not (
        covariance_type in SKLEARN_TYPES or covariance_type in _REGISTRY
    ):
        raise ValueError(
            f"covariance_type must be one of {', '.join(SKLEARN_TYPES)} or an mclust model name "
            f"({', '.join(MODEL_NAMES + UNIVARIATE_MODEL_NAMES)}), got {covariance_type!r}."
        )
    if covariance_type in SKLEARN_TYPES:
        multivariate, univariate = SKLEARN_TYPES[covariance_type]
        return _REGISTRY[univariate if dim == 1 else multivariate]
    if dim == 1:
        return _REGISTRY[covariance_type[0]]
    if covariance_type in UNIVARIATE_MODEL_NAMES:
        raise ValueError(f"covariance model {covariance_type} is for one-dimensional data, got d = {dim}; "
                         "use EII or VII (or 'spherical') instead.")
    return _REGISTRY[covariance_type]


# mclust's names for one component, which Mclust() reports whatever model was asked for when G = 1
# (univariate, spherical, diagonal, ellipsoidal), and the model each is read as.
_SINGLE_COMPONENT = {"X": "V", "XII": "VII", "XXI": "VVI", "XXX": "VVV"}


def mclust_model(model_name: str, dim: int) -> CovarianceModel:
    """The model behind an mclust ``modelName`` (of a fitted object) for ``dim``-dimensional data.

    Like :func:`get_model` for mclust's fourteen names and E, V, and also for mclust's
    single-component names X, XII, XXI and XXX (read as V, VII, VVI and VVV, which they equal when
    there is one component).

    Raises
    ------
    ValueError
        For a name that is not mclust's, or one for the other dimension.
    """
    if not isinstance(model_name, str) or model_name not in _REGISTRY and model_name not in _SINGLE_COMPONENT:
        raise ValueError(f"{model_name!r} is not an mclust covariance model name.")
    model = _REGISTRY[_SINGLE_COMPONENT.get(model_name, model_name)]
    if model.univariate != (dim == 1):
        raise ValueError(f"mclust model {model_name} is for {'d = 1' if model.univariate else 'd >= 2'}, "
                         f"got d = {dim}.")
    return model


def sklearn_layout(covariance_type: str) -> str:
    """The scikit-learn layout a name asks for: its own for scikit-learn's names, "tied" for E and
    EEE, "diag" for VVI, "spherical" for VII, "full" for the other mclust models (and V).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    get_model(covariance_type, 2 if covariance_type not in UNIVARIATE_MODEL_NAMES else 1)
    return covariance_type if covariance_type in SKLEARN_TYPES else _LAYOUT_OF_MODEL.get(covariance_type, "full")


def majority_covariance_type(covariance_types: Sequence[str], dim: int) -> str:
    """The covariance model an aggregate of estimates claiming ``covariance_types`` belongs to.

    The model named by a strict majority of the claims, else full (VVV; V when ``dim`` = 1). A
    claim is attacker-controlled, so a minority of machines cannot change the model of the
    aggregate, and without a majority the aggregate keeps the one model that holds every estimate.

    Parameters
    ----------
    covariance_types : sequence of str
        The model each estimate claims (any name :func:`get_model` accepts; invalid names count as
        claims for no model).
    dim : int
        Dimension d of the aggregate.

    Returns
    -------
    str
        mclust's name of the model for dimension ``dim``.
    """
    names = []
    for claim in covariance_types:
        try:
            names.append(get_model(claim, dim).name)
        except ValueError:
            names.append(None)
    for name in set(names) - {None}:
        if 2 * names.count(name) > len(names):
            return name
    return get_model("full", dim).name
