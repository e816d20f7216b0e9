"""Which sites support which output component, and the rule that a component needs half of them.

Real federations hold sites that see only some of the clusters (a hospital without a
paediatric ward). An aggregate component is then legitimately built from fewer than all
sites, but a cluster reported by a minority only (attackers inventing a subpopulation) must
never take an output slot. The rule, used by :func:`dfmr.robust_dfmr`, by :func:`dfmr.mr`,
:func:`dfmr.dfmr`, :func:`dfmr.tkb` and by the estimator: site ``i`` supports output
component ``c`` when one of its pooled components sends most of its mass to ``c`` in the
reduction's transport plan; ``c`` is supported when its sites hold at least half of the votes
(one per site, or :func:`dfmr.robust_dfmr`'s votes, where a group of near-identical estimates
is one vote). When the reduction outputs an unsupported component, the pooled components that
built it are left out and the reduction is run again, until every output component is
supported (:func:`reduce_supported`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .params import GaussianMixtureParams
from .reduction import ReductionResult, default_starts, kl_cost, reduce

__all__ = ["SUPPORT_FRACTION", "support_matrix", "supported", "reduce_supported", "enforce", "support_note"]

SUPPORT_FRACTION = 0.5  # at least half of the votes: a minority never holds an output slot alone


def support_matrix(owner: np.ndarray, assignment: np.ndarray, n_machines: int,
                   costs: np.ndarray | None = None) -> np.ndarray:
    """``S[i, c]``: whether a pooled component of machine ``i`` sends most of its mass to ``c``.

    A component the reduction trimmed (TKB) sends nothing: with ``costs`` (its KL cost to each
    output component) it supports the cheapest, as MR would have sent it; without, nothing.

    Parameters
    ----------
    owner : ndarray of int, shape (N,)
        The machine of every pooled component.
    assignment : ndarray of shape (N, K)
        The reduction's transport plan (:attr:`dfmr.reduction.ReductionResult.assignment`).
    n_machines : int
        m, the number of rows of the result.
    costs : ndarray of shape (N, K), optional
        ``KL(pooled_n || output_k)`` (:func:`dfmr.reduction.kl_cost`), for trimmed components.

    Returns
    -------
    ndarray of bool, shape (m, K)
    """
    assignment = np.asarray(assignment, dtype=np.float64)
    owner = np.asarray(owner, dtype=np.intp)
    out = np.zeros((int(n_machines), assignment.shape[1]), dtype=bool)
    sent = assignment.sum(axis=1)
    rows = np.flatnonzero(sent > 0)
    out[owner[rows], np.argmax(assignment[rows], axis=1)] = True
    if costs is not None:
        # Trimming leaves out the costliest mass whatever its site: a trimmed honest component
        # still belongs to the cluster it is nearest to.
        rows = np.flatnonzero(sent <= 0)
        out[owner[rows], np.argmin(np.asarray(costs)[rows], axis=1)] = True
    return out


def supported(support: np.ndarray, votes: np.ndarray, total: float | None = None) -> np.ndarray:
    """Per output component: whether its supporting sites hold at least half of the votes.

    ``votes`` has one entry per machine (1 each, or :func:`dfmr.robust_dfmr`'s); ``total`` is
    the mass the half is taken of (default: the sum of ``votes``).
    """
    votes = np.asarray(votes, dtype=np.float64)
    total = float(votes.sum()) if total is None else float(total)
    return votes @ support >= SUPPORT_FRACTION * total - 1e-9


def reduce_supported(
    pooled: GaussianMixtureParams,
    owner: np.ndarray,
    votes: np.ndarray,
    n_components: int,
    starts: Sequence[GaussianMixtureParams],
    *,
    first: ReductionResult | None = None,
    **options,
) -> tuple[ReductionResult, np.ndarray]:
    """MR of ``pooled`` whose every output component is supported by half of the votes.

    The pooled components sent mostly to an unsupported output component are left out and the
    rest reduced again (their weights renormalised), until every output component is supported.
    When that ends without K supported components (K above the number of clusters a majority
    sees), the first reduction is returned unchanged.

    Parameters
    ----------
    pooled : GaussianMixtureParams
        The pool; ``owner[n]`` is the machine of its component ``n``.
    owner, votes : ndarray
        Machine of each pooled component; vote of each machine (length m).
    n_components : int
        K.
    starts : sequence of GaussianMixtureParams
        Starts of the reduction; a rerun adds the start seeded from the pooled components
        still in (:func:`dfmr.reduction.default_starts`), as the given ones may hold the
        components left out.
    first : ReductionResult, optional
        The reduction of the full pool if already computed.
    **options
        ``tol``, ``max_iter``, ``n_threads`` of :func:`dfmr.reduction.reduce`.

    Returns
    -------
    (ReductionResult, ndarray of bool of shape (N,))
        The reduction (its ``assignment`` has a row per pooled component; those left out send
        nothing) and the mask of the pooled components it used.
    """
    owner = np.asarray(owner, dtype=np.intp)
    votes = np.asarray(votes, dtype=np.float64)
    keep = np.ones(pooled.n_components, dtype=bool)

    def run(mask: np.ndarray) -> ReductionResult:
        sub = _subpool(pooled, mask)
        seeded = [] if mask.all() else default_starts([sub], n_components)
        return reduce(sub, n_components, [*starts, *seeded], **options)

    red = first = run(keep) if first is None else first
    total = float(votes.sum())
    trimmed = options.get("trim", 0.0) > 0.0
    while True:
        sub = _subpool(pooled, keep)
        costs = kl_cost(sub, red.mixture) if trimmed else None
        support = support_matrix(owner[keep], red.assignment, votes.size, costs)
        ok = supported(support, votes, total)
        rows = np.flatnonzero(keep)
        sent = red.assignment.sum(axis=1) > 0
        nearest = np.where(sent, np.argmax(red.assignment, axis=1),
                           np.argmin(costs, axis=1) if trimmed else 0)
        drop = (sent | trimmed) & ~ok[nearest]
        if ok.all():
            break
        left = keep.copy()
        left[rows[drop]] = False
        if (not drop.any() or drop.all() or red.mixture.n_components < n_components
                or not pooled.weights[left].sum() > 0):
            # No K components that half of the votes support exist (K above the clusters a
            # majority sees: a split of theirs is a minority's): the reduction as it was.
            return first, np.ones(pooled.n_components, dtype=bool)
        keep = left
        red = run(keep)
    if not keep.all():
        # The plan over the whole pool: the components left out send nothing.
        plan = np.zeros((pooled.n_components, red.assignment.shape[1]))
        plan[keep] = red.assignment
        red = replace(red, assignment=plan)
    return red, keep


def _subpool(pooled: GaussianMixtureParams, mask: np.ndarray) -> GaussianMixtureParams:
    """The pooled components in ``mask``, weights renormalised."""
    w = pooled.weights[mask]
    return GaussianMixtureParams._from_core(w / w.sum(), pooled.means[mask], pooled.covariances[mask])


def enforce(
    red: ReductionResult,
    mixtures: Sequence[GaussianMixtureParams],
    retained: np.ndarray,
    sizes: np.ndarray | None,
    n_components: int,
    apply: bool = True,
    **options,
) -> tuple[ReductionResult, np.ndarray]:
    """The support of MR, DFMR or TKB's reduction ``red`` of the retained machines, and the rule.

    The pool is the retained machines' components in order, weighted ``w_ik n_i / sum n_j``
    (``sizes``) or ``w_ik / |R|``; each retained machine is one vote. The rule is enforced
    (:func:`reduce_supported`) only when a retained machine fitted fewer than K components: sites
    that see only some of the clusters, outside the paper's model, where a cluster that only a
    minority reports must not take a slot. With K components everywhere, the paper's methods
    are left as they are (their breakdown under attack is part of what they are).

    With ``apply=False`` (the paper's methods, unless asked) only the support is computed.

    Returns the reduction (``red`` itself, or the supported one) and the support (m, K_out).
    """
    m = len(mixtures)
    retained = np.asarray(retained, dtype=np.intp)
    counts = np.array([mixtures[i].n_components for i in retained])
    owner = np.repeat(retained, counts)
    votes = np.zeros(m)
    votes[retained] = 1.0
    share = np.full(retained.size, 1.0 / retained.size) if sizes is None else sizes[retained] / sizes[retained].sum()
    kept = [mixtures[i] for i in retained]
    pooled = GaussianMixtureParams._from_core(
        np.repeat(share, counts) * np.concatenate([f.weights for f in kept]),
        np.concatenate([f.means for f in kept]), np.concatenate([f.covariances for f in kept]))

    def support_of(r: ReductionResult) -> np.ndarray:
        trimmed = options.get("trim", 0.0) > 0.0
        return support_matrix(owner, r.assignment, m, kl_cost(pooled, r.mixture) if trimmed else None)

    support = support_of(red)
    if not apply or counts.min() >= n_components or supported(support, votes).all():
        return red, support
    red, _ = reduce_supported(pooled, owner, votes, n_components, default_starts(kept, n_components), first=red,
                              **options)
    return red, support_of(red)


def support_note(support: np.ndarray | None) -> str | None:
    """The summary's line: how many sites support each output component (None without support)."""
    if support is None or support.size == 0:
        return None
    m = support.shape[0]
    counts = ", ".join(f"{c + 1}: {int(n)}" for c, n in enumerate(support.sum(axis=0)))
    return (f"Support (sites whose components built each output component, of {m}; at least half of the "
            f"votes needed, result.support lists them): {counts}.")
