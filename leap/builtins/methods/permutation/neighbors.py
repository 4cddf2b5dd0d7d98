"""Fast path for k-nearest-neighbours models (classifiers and regressors).

Supported: ``KNeighborsClassifier`` and ``KNeighborsRegressor`` with ``weights="uniform"`` or
``"distance"``, the Minkowski metrics (Euclidean, Manhattan, any ``p >= 1``), every
``algorithm``, single-output targets.

Work is done on *reduced* distances ``ρ(x, y) = Σ_c |x_c - y_c|^p`` (the squared distance
for Euclidean). Permuting a group ``G`` of columns changes a query's ``ρ`` to training point
``t`` by ``Σ_{c∈G} |x'_c - y_tc|^p - |x_c - y_tc|^p``, a few operations per point. Each
query keeps its ``L`` nearest training points sorted by the unpermuted ``ρ``; after a
permutation they are rescored in that order until no remaining point (kept or not) can
enter the new ``k`` nearest. Two lower bounds on a remaining point's new ``ρ`` are used, the
larger wins, and both are tight *per row*:

- the triangle inequality: the row moved by ``δ = ‖x'_G - x_G‖_p``, so a point at old
  distance ``d`` is now at least ``d - δ`` away (independent of the column's range, hence
  robust to heavy tails);
- the column range: ``|x' - y|^p - |x - y|^p`` is monotone in ``y``, so over the training
  values ``y ∈ [min, max]`` of the column it is smallest at an end.

Rows whose kept candidates run out (heavy tails: a row that receives an extreme value moves
far from all of them) scan every training point: where it fits in half the data's own
memory, a one-byte lower bound of every unpermuted reduced distance is kept (a power of
2^(1/16) times the row's farthest kept candidate, rounded down), so a point costs ``O(g)``
(its bound plus its change) and only points that the bound cannot exclude are computed
directly. Without those bounds such rows are recomputed at the model's cost, and a
copy in which most rows would run out (a cost estimate made before the scan) is handed to
the model whole. Rows that cannot be certified (below) get the model's own outputs, except
exact ties on small integer features: there every distance is exact and scikit-learn's
choice among tied points follows from its heap search, which :func:`_replay` repeats.

Thread count: scikit-learn's brute-force search (every Euclidean k-NN) splits the training
points between OpenMP threads for small queries and breaks *exact* ties differently for
each thread count, so its ``permutation_importance`` differs between ``n_jobs=1`` (the
caller's threads) and ``n_jobs=-1`` (process workers of ``cpu_count() // n_jobs`` threads).
The runner sets the copies' thread count (:func:`copy_threads`) around every model call, and
this path computes the unpermuted rows' outputs the same way, so LEAP matches scikit-learn
called with the same ``n_jobs``. The strategy depends on the call's size too, so model
calls are kept to a size searched like one copy (:func:`call_rows`).

Exactness: every reduced distance here and in scikit-learn's own computation (Gram matrix
or direct, any algorithm) is within a rigorous rounding bound ``E`` of the exact value, so
any two computations differ by at most ``2E``. Around the ``k``-th distance ``v`` the points
with ``ρ < v - 4E`` are in every correct neighbour set, those with ``ρ > v + 4E`` in none;
the ones in between form the *band*. With uniform weights the class votes are certified
when the whole band is chosen or all its points share a class (regressors: share a target
value); a label alone is also certified when no choice from the band can change the
winning class. With distance weights the set must be certain, no distance may be near zero,
and the label needs a margin larger than the weights' rounding bound; a label alone is also
certified across a band where the range of totals the band allows settles it
(:func:`_band_weights`).

Probabilities and regression values follow scikit-learn's arithmetic in neighbour order, so
they differ from the model's only by rounding: of the weights ``1 / d`` (both computations
round their distances, a Gram-matrix distance by about ``√n u (|x|² + |y|²)`` against
``d²``; measured at most half of that on bounded, Gaussian, Student t and integer data with
435 features) and of sums in another order where neighbours tie. A row is served where
four times that estimate of the weights' relative difference is at most
:data:`VALUE_ROUNDING` (a neighbour nearly on top of the row makes it large), else the
model answers; :meth:`NeighborsPath.jitter` moves the unpermuted rows' values by the same
estimate, so the method's rounding guard replays the scorer on them and hands every copy to
the model if the score could move by more than 1e-13 (large targets, say).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import sklearn
from sklearn.neighbors import (
    KNeighborsClassifier,
    KNeighborsRegressor,
    KNeighborsTransformer,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
)
from sklearn.pipeline import Pipeline

from leap.builtins.methods.permutation._jit import compiled
from leap.builtins.methods.permutation.fastpaths import quietly, thread_limits

_U = np.finfo(np.float64).eps / 2
#: Models whose outputs can depend on the number of OpenMP threads (see :func:`copy_threads`).
_THREAD_SENSITIVE = (
    KNeighborsClassifier,
    KNeighborsRegressor,
    KNeighborsTransformer,
    RadiusNeighborsClassifier,
    RadiusNeighborsRegressor,
)
_CHUNK_BYTES = 2**17  # distance rows computed at a time: keeps the set-up memory small
_REL = 1e-10  # relative slack on bounds computed with pow/sqrt (a few ulps each)
#: One-byte lower bounds of reduced distances: code ``c`` stands for ``ref * _SCALE[c]``
#: (``ref``: the row's farthest kept candidate), 0 for zero, 1-254 for 2^((c - 1) / 16), a
#: step of 4.4 %; ``_KEPT`` (255) marks a kept candidate.
_SCALE = np.concatenate([[0.0], 2.0 ** (np.arange(254) / 16.0), [np.inf]])
_KEPT = 255
#: Exact one-byte codes (small integer features): code ``c`` < 254 stands for the reduced
#: distance ``off + c`` exactly (``off``: the row's nearest), 254 for at least ``off + 254``.
_STEPS = np.concatenate([np.arange(255.0), [np.inf]])
_EXACT_CODES = 254
#: Largest ``k`` whose neighbours scikit-learn orders by insertion sort (its
#: ``simultaneous_sort`` switches to introsort above 15), which the replay repeats.
_INSERTION_K = 15
#: Training points per block of the replay's skip test (a divisor of OpenMP's chunks of 256).
_REPLAY_BLOCK = 8
#: Largest estimated relative difference of a row's distance weights from scikit-learn's at
#: which its distance-weighted values are served (see the module docstring).
VALUE_ROUNDING = 1e-13


def _reduced_block(A, B, p, out):
    """Loop kernel (compiled by numba): ``out[i, t] = Σ_c |A[i, c] - B[t, c]|^p``."""
    for i in range(A.shape[0]):
        for t in range(B.shape[0]):
            s = 0.0
            for c in range(A.shape[1]):
                a = abs(A[i, c] - B[t, c])
                s += a if p == 1.0 else a**p
            out[i, t] = s


def _reduced_block_numpy(A, B, p, out):
    """Vectorised twin of :func:`_reduced_block` (same column order of summation)."""
    out[:] = 0.0
    for c in range(A.shape[1]):
        a = np.abs(A[:, c, None] - B[None, :, c])
        out += a if p == 1.0 else a**p


def _scan(cand_idx, cand_d, Yg, old, new, todo, p, M, delta, E, n_t, best_d, best_i, status):
    """Loop kernel (compiled by numba): the ``kk`` nearest points of each row to scan.

    ``Yg``: ``Y[:, cols].T`` and ``old``: ``X[:, cols]``, both contiguous. ``status``: 1 the
    scan proved that no other point is nearer than ``best_d[..., -1]`` (minus the rounding
    margins); 3 the kept candidates ran out.
    """
    R, m = todo.shape
    L = cand_idx.shape[1]
    g = Yg.shape[0]
    kk = best_d.shape[2]
    for r in range(R):
        for i in range(m):
            if not todo[r, i]:
                continue
            bd = best_d[r, i]
            bi = best_i[r, i]
            bd[:] = np.inf
            bi[:] = -1
            e, shift, reach = E[r, i], M[r, i], delta[r, i]
            worst = np.inf  # bd[kk - 1]
            done = L >= n_t
            for j in range(L + 1):
                b = cand_d[i, min(j, L - 1)]
                b0 = b - e  # the exact old value is at least this
                lb = b0 - shift
                if p == 1.0:
                    tri = b0 - reach
                elif p == 2.0:  # sqrt, not a power: several times faster
                    root = np.sqrt(b0 if b0 > 0.0 else 0.0) - reach
                    tri = root * root if root > 0.0 else 0.0
                else:
                    root = (b0 if b0 > 0.0 else 0.0) ** (1.0 / p) - reach
                    tri = root**p if root > 0.0 else 0.0
                if tri > lb:
                    lb = tri
                if lb - 3.0 * e - _REL * abs(b) > worst:
                    done = True
                    break
                if j == L:
                    break
                t = cand_idx[i, j]
                dn = b
                for c in range(g):
                    yv = Yg[c, t]
                    a = abs(new[r, i, c] - yv)
                    o = abs(old[i, c] - yv)
                    if p == 2.0:
                        dn += a * a - o * o
                    elif p == 1.0:
                        dn += a - o
                    else:
                        dn += a**p - o**p
                if dn < worst:
                    pos = kk - 1
                    while pos > 0 and bd[pos - 1] > dn:
                        bd[pos] = bd[pos - 1]
                        bi[pos] = bi[pos - 1]
                        pos -= 1
                    bd[pos] = dn
                    bi[pos] = t
                    worst = bd[kk - 1]
            status[r, i] = 1 if done else 3


def _scan_all(cand_idx, cand_d, low, scale, ref, off, Y, X, cols, Yg, new, todo, p, E, row, best_d, best_i):  # fmt: skip  # noqa: E501
    """Loop kernel (compiled by numba): the ``kk`` nearest of *all* training points per row.

    Kept candidates are rescored from their old reduced distance (``O(g)`` each); every other
    point ``t`` is excluded by its lower bound ``off[i] + ref[i] * scale[low[i, t]]`` plus its
    change (``O(g)``), or else its distance is computed directly (``O(n_features)``). ``low`` is
    :data:`_KEPT` for kept candidates; ``Yg`` is ``Y[:, cols].T`` (contiguous); ``row``:
    scratch space of one row.
    """
    R, m = todo.shape
    L = cand_idx.shape[1]
    g = cols.shape[0]
    kk = best_d.shape[2]
    n_t, n_f = Y.shape
    for i in range(m):
        for r in range(R):
            if not todo[r, i]:
                continue
            bd = best_d[r, i]
            bi = best_i[r, i]
            bd[:] = np.inf
            bi[:] = -1
            e = E[r, i]
            for j in range(L):
                t = cand_idx[i, j]
                dn = cand_d[i, j]
                for c in range(g):
                    yv = Yg[c, t]
                    a = abs(new[r, i, c] - yv)
                    o = abs(X[i, cols[c]] - yv)
                    if p == 2.0:
                        dn += a * a - o * o
                    elif p == 1.0:
                        dn += a - o
                    else:
                        dn += a**p - o**p
                if dn < bd[kk - 1]:
                    pos = kk - 1
                    while pos > 0 and bd[pos - 1] > dn:
                        bd[pos] = bd[pos - 1]
                        bi[pos] = bi[pos - 1]
                        pos -= 1
                    bd[pos] = dn
                    bi[pos] = t
            filled = False
            for t in range(n_t):
                code = low[i, t]
                if code == 255:  # a kept candidate, already scored
                    continue
                b = off[i] + ref[i] * scale[code]
                dn = b
                for c in range(g):
                    yv = Yg[c, t]
                    a = abs(new[r, i, c] - yv)
                    o = abs(X[i, cols[c]] - yv)
                    if p == 2.0:
                        dn += a * a - o * o
                    elif p == 1.0:
                        dn += a - o
                    else:
                        dn += a**p - o**p
                if dn - 3.0 * e - _REL * abs(b) > bd[kk - 1]:
                    continue
                if not filled:  # the permuted row, for direct distances
                    for c in range(n_f):
                        row[c] = X[i, c]
                    for c in range(g):
                        row[cols[c]] = new[r, i, c]
                    filled = True
                dn = 0.0
                for c in range(n_f):
                    a = abs(row[c] - Y[t, c])
                    if p == 2.0:
                        dn += a * a
                    elif p == 1.0:
                        dn += a
                    else:
                        dn += a**p
                if dn < bd[kk - 1]:
                    pos = kk - 1
                    while pos > 0 and bd[pos - 1] > dn:
                        bd[pos] = bd[pos - 1]
                        bi[pos] = bi[pos - 1]
                        pos -= 1
                    bd[pos] = dn
                    bi[pos] = t


def _scan_all_numpy(cand_idx, cand_d, low, scale, ref, off, Y, X, cols, Yg, new, todo, p, E, row, best_d, best_i):  # fmt: skip  # noqa: E501
    """Vectorised twin of :func:`_scan_all` (same sums in the same order, same exclusions)."""
    L = cand_idx.shape[1]
    kk = best_d.shape[2]
    n_t = Y.shape[0]

    def power(a):
        return a * a if p == 2.0 else (a if p == 1.0 else a**p)

    for r in range(todo.shape[0]):
        rows = np.flatnonzero(todo[r])
        if rows.size == 0:
            continue
        everyone = np.broadcast_to(np.arange(n_t), (rows.size, n_t))
        idx = np.concatenate([cand_idx[rows], everyone], axis=1)
        bound = off[rows, None] + ref[rows, None] * scale[low[rows]]
        d = np.concatenate([cand_d[rows], bound], axis=1)
        start = d.copy()
        for c, col in enumerate(cols):
            yv = Y[idx, col]
            a = np.abs(new[r, rows, c][:, None] - yv)
            d += power(a) - power(np.abs(X[rows, col][:, None] - yv))
        kept = d[:, :L]
        top = np.sort(kept, axis=1)[:, kk - 1] if L >= kk else np.full(rows.size, np.inf)
        rest = d[:, L:]
        slack = 3.0 * E[r, rows][:, None] + _REL * np.abs(start[:, L:])
        with np.errstate(invalid="ignore"):  # kept candidates: inf - inf
            maybe = np.isfinite(start[:, L:]) & ~(rest - slack > top[:, None])
        ri, ti = np.nonzero(maybe)
        if ri.size:
            Xr = X[rows[ri]].copy()
            Xr[:, cols] = new[r, rows[ri]]
            direct = np.zeros(ri.size)
            for c in range(X.shape[1]):
                direct += power(np.abs(Xr[:, c] - Y[ti, c]))
            rest[ri, ti] = direct
        rest[~maybe] = np.inf
        d[:, L:] = rest
        order = np.argsort(d, axis=1, kind="stable")[:, :kk]
        best_d[r, rows] = np.take_along_axis(d, order, axis=1)
        best_i[r, rows] = np.take_along_axis(idx, order, axis=1)


def _replay(rows_r, rows_i, cand_idx, cand_d, low, scale, ref, off, exact, Y, X, Yg, old, new, p, bounds, merged, order, blow, B, ylo, yhi, d0, known, ready, heaps, heap_idx, best_d, best_i):  # fmt: skip  # noqa: E501
    """Loop kernel (compiled by numba): scikit-learn's brute-force search replayed for the
    rows ``(rows_r[q], rows_i[q])`` of the copies, with exact arithmetic (small integers).

    scikit-learn pushes the training points of each range ``bounds[s]:bounds[s + 1]``
    (one per OpenMP thread; one range when it searches in one pass per row), in index
    order, onto a max-heap of ``k`` (``sklearn.utils._heap.heap_push``: a point enters when
    strictly nearer than the root, and sifts down from it); where ``merged``, the ranges'
    heaps are then pushed, in range and heap order, onto the row's; for ``order`` it sorts
    that heap by insertion (``simultaneous_sort`` for ``k <= 15``). Its choice among exactly
    tied points follows from that sequence, which is repeated here. A point's reduced
    distance is its unpermuted one (exact from the kept candidates and exact codes) plus
    its change; a point known only by a lower bound is skipped where that bound cannot
    enter the heap, else its distance is computed directly and kept for the next copies of
    the same query row (rows come sorted by query row). Writes the ``k`` neighbours in
    scikit-learn's order (``heaps``: scratch, one heap per range and the merged one), and
    ``inf`` after them. ``Yg``: ``Y[:, cols].T`` and ``old``: ``X[:, cols]``, contiguous.

    The training points come in blocks of ``B`` (``B`` divides the ranges' chunks of 256):
    ``blow[i, b]`` is at most the least unpermuted distance of block ``b``, and ``ylo``/``yhi`` its
    least and largest values in each column of the group. A permuted column's change to
    ``|x - y|^p`` is monotone in ``y`` on either side of both values, so its least over the
    block is taken at ``ylo`` or ``yhi``; a block whose least distance plus least change
    cannot enter the heap is skipped whole (its points would not enter either).
    """
    n_t, n_f = Y.shape
    g = Yg.shape[0]
    L = cand_idx.shape[1]
    n_ranges = bounds.shape[0] - 1
    k = heaps.shape[1]
    n_heaps = n_ranges + 1 if merged else 1
    for q in range(rows_r.shape[0]):
        r = rows_r[q]
        i = rows_i[q]
        xo = old[i]
        xn = new[r, i]
        if q == 0 or rows_i[q - 1] != i:  # rows of one query row share what is known
            ready[:] = False  # a block's distances are read from its codes when first needed
            for j in range(L):
                d0[cand_idx[i, j]] = cand_d[i, j]
                known[cand_idx[i, j]] = True
        heaps[:] = np.inf
        heap_idx[:] = 0
        for s in range(n_heaps):
            merging = s == n_ranges  # the ranges' heaps, pushed onto the last one
            hv = heaps[s]
            hi = heap_idx[s]
            u = 0 if merging else bounds[s]
            stop = n_ranges * k if merging else bounds[s + 1]
            while u < stop:
                if merging:
                    dn = heaps[u // k, u % k]
                    t = heap_idx[u // k, u % k]
                    u += 1
                else:
                    t = u
                    u += 1
                    if t % B == 0 or t == bounds[s]:  # a block begins
                        blk = t // B
                        least = blow[i, blk]
                        for c in range(g):
                            a_lo = abs(xn[c] - ylo[c, blk])
                            o_lo = abs(xo[c] - ylo[c, blk])
                            a_hi = abs(xn[c] - yhi[c, blk])
                            o_hi = abs(xo[c] - yhi[c, blk])
                            if p == 2.0:
                                least += min(a_lo * a_lo - o_lo * o_lo, a_hi * a_hi - o_hi * o_hi)
                            else:
                                least += min(a_lo - o_lo, a_hi - o_hi)
                        if least >= hv[0]:
                            u = min((blk + 1) * B, stop)
                            continue
                        if not ready[blk]:
                            for v in range(blk * B, min((blk + 1) * B, n_t)):
                                code = low[i, v]
                                if code != 255:  # kept candidates are set already
                                    d0[v] = off[i] + ref[i] * scale[code]
                                    known[v] = exact and code < 254
                            ready[blk] = True
                    change = 0.0
                    for c in range(g):
                        yv = Yg[c, t]
                        a = abs(xn[c] - yv)
                        o = abs(xo[c] - yv)
                        change += a * a - o * o if p == 2.0 else a - o
                    dn = d0[t] + change
                    if not known[t] and dn < hv[0]:  # a lower bound that may enter
                        exact_d = 0.0  # the unpermuted distance, kept for the next copies
                        for c in range(n_f):
                            a = abs(X[i, c] - Y[t, c])
                            exact_d += a * a if p == 2.0 else a
                        d0[t] = exact_d
                        known[t] = True
                        dn = exact_d + change
                if dn >= hv[0]:
                    continue
                cur = 0  # heap_push: sift the new value down from the root
                while True:
                    left = 2 * cur + 1
                    right = left + 1
                    if left >= k:
                        break
                    if right >= k:
                        if hv[left] > dn:
                            swap = left
                        else:
                            break
                    elif hv[left] >= hv[right]:
                        if dn < hv[left]:
                            swap = left
                        else:
                            break
                    elif dn < hv[right]:
                        swap = right
                    else:
                        break
                    hv[cur] = hv[swap]
                    hi[cur] = hi[swap]
                    cur = swap
                hv[cur] = dn
                hi[cur] = t
        hv = heaps[n_heaps - 1]
        hi = heap_idx[n_heaps - 1]
        if order:  # insertion sort, as simultaneous_sort for k <= 15
            for a in range(1, k):
                v = hv[a]
                t = hi[a]
                b = a
                while b > 0 and hv[b - 1] > v:
                    hv[b] = hv[b - 1]
                    hi[b] = hi[b - 1]
                    b -= 1
                hv[b] = v
                hi[b] = t
        for j in range(k):
            best_d[r, i, j] = hv[j]
            best_i[r, i, j] = hi[j]
        for j in range(k, best_d.shape[2]):
            best_d[r, i, j] = np.inf


def _scan_numpy(cand_idx, cand_d, Yg, old, new, todo, p, M, delta, E, n_t, best_d, best_i, status):  # fmt: skip  # noqa: E501
    """Vectorised twin of :func:`_scan`: every kept candidate rescored, same bounds."""
    L = cand_idx.shape[1]
    kk = best_d.shape[2]
    for r in range(todo.shape[0]):
        rows = np.flatnonzero(todo[r])
        if rows.size == 0:
            continue
        ci = cand_idx[rows]
        d = cand_d[rows].copy()
        for c in range(Yg.shape[0]):
            yv = Yg[c][ci]
            a = np.abs(new[r, rows, c][:, None] - yv)
            o = np.abs(old[rows, c][:, None] - yv)
            d += a * a - o * o if p == 2.0 else (a - o if p == 1.0 else a**p - o**p)
        top = np.argsort(d, axis=1, kind="stable")[:, :kk]
        bd = np.full((rows.size, kk), np.inf)
        bi = np.full((rows.size, kk), -1, dtype=best_i.dtype)
        bd[:, : top.shape[1]] = np.take_along_axis(d, top, axis=1)
        bi[:, : top.shape[1]] = np.take_along_axis(ci, top, axis=1)
        best_d[r, rows] = bd
        best_i[r, rows] = bi
        done = np.full(rows.size, L >= n_t)
        if L < n_t:
            b = cand_d[rows, L - 1]
            e = E[r, rows]
            lb = _lower_numpy(b - e, M[r, rows], delta[r, rows], p) - 3.0 * e - _REL * np.abs(b)
            done = lb > bd[:, kk - 1]
        status[r, rows] = np.where(done, 1, 3)


def _lower_numpy(b, M, delta, p):
    """Lower bound on a point's new reduced distance from its old one ``b`` (see module)."""
    b0 = np.maximum(b, 0.0)
    if p == 1.0:
        tri = b - delta
    else:
        root = b0 ** (1.0 / p) - delta
        tri = np.where(root > 0.0, np.maximum(root, 0.0) ** p, 0.0)
    return np.maximum(b - M, tri)


def _band(bd, lab, v, e4, k, C):
    """A band's parts: points surely in (``in_a``) and in the band (``in_b``), the classes
    one-hot, band points per class, band size and how many of the band are taken."""
    in_a = bd < (v - e4)[:, None]
    in_b = ~in_a & (bd <= (v + e4)[:, None])
    onehot = lab[..., None] == np.arange(C)
    b_c = (onehot & in_b[..., None]).sum(axis=1)
    return in_a, in_b, onehot, b_c, in_b.sum(axis=1), k - in_a.sum(axis=1)


def _band_votes(bd, lab, v, e4, k, C):
    """Class votes of rows whose k-th distance has a band of near-equal points.

    Returns ``(votes, exact, ranged, winner)``: ``votes`` are exact where ``exact`` (the band
    is taken whole or has one class); ``ranged``: no choice from the band changes the
    winning class ``winner`` (ties to the first class, as scikit-learn).
    """
    in_a, _, onehot, b_c, n_b, r_take = _band(bd, lab, v, e4, k, C)
    a_c = (onehot & in_a[..., None]).sum(axis=1)
    whole = n_b == r_take
    one_class = b_c.max(axis=1) == n_b
    exact = whole | one_class
    take_b = np.where(whole[:, None], b_c, r_take[:, None] * (b_c == n_b[:, None]))
    votes = a_c + take_b
    lo = a_c + np.maximum(0, r_take[:, None] - (n_b[:, None] - b_c))
    hi = a_c + np.minimum(r_take[:, None], b_c)
    winner = np.argmax(lo, axis=1)
    lo_w = lo[np.arange(len(lo)), winner][:, None]
    cls = np.arange(C)[None, :]
    before, after = cls < winner[:, None], cls > winner[:, None]
    ranged = np.all(np.where(before, lo_w > hi, True) & np.where(after, lo_w >= hi, True), axis=1)
    return votes, exact, ranged, winner


def _band_weights(bd, lab, v, e4, rel, k, C, p):
    """Distance-weighted labels of rows whose k-th distance has a band of near-equal points.

    Returns ``(ranged, winner)``: ``ranged`` where the winning class ``winner`` leads every
    other class by more than the weights' rounding bound (``rel``, relative, per weight)
    whichever points of the band the model takes: a class's total is at least its sure
    points' weights plus the band's least weight for each band point it must get, and at
    most those plus the band's largest weight for each it can get.
    """
    in_a, in_b, onehot, b_c, n_b, r_take = _band(bd, lab, v, e4, k, C)
    n_b = n_b[:, None]
    with np.errstate(divide="ignore"):
        w = 1.0 / (bd if p == 1.0 else np.sqrt(bd) if p == 2.0 else bd ** (1.0 / p))
    sure = (onehot * np.where(in_a, w, 0.0)[..., None]).sum(axis=1)
    w_lo = np.where(in_b, w, np.inf).min(axis=1)[:, None]
    w_hi = np.where(in_b, w, 0.0).max(axis=1)[:, None]
    lo = sure + w_lo * np.maximum(0, r_take[:, None] - (n_b - b_c))
    hi = sure + w_hi * np.minimum(r_take[:, None], b_c)
    winner = np.argmax(lo, axis=1)
    at = np.arange(len(lo))
    lead = lo[at, winner].copy()
    hi[at, winner] = -np.inf
    bound = 4.0 * (rel + k * _U) * (sure.sum(axis=1) + r_take * w_hi[:, 0])
    return lead - hi.max(axis=1) > bound, winner


def copy_threads(estimator: Any, n_jobs: int | None) -> int | None:
    """OpenMP threads with which scikit-learn's ``permutation_importance`` predicts a copy.

    Only for models whose outputs depend on it: scikit-learn's brute-force neighbour search
    (``ArgKmin``, every Euclidean k-NN) splits the training points between threads for
    queries of fewer than about ``4 × 256 × threads`` rows and then breaks *exact* ties
    (integer features, duplicated rows) differently for each thread count. Its copies are
    predicted in the calling thread for ``n_jobs`` of one job, and in joblib's process
    workers otherwise, which run ``OMP_NUM_THREADS`` (or ``inner_max_num_threads``, else
    ``cpu_count() // n_jobs``) threads. ``None``: the caller's own setting (one job, a
    thread backend), or a model whose outputs do not depend on it.
    """
    from joblib import cpu_count, effective_n_jobs
    from joblib.parallel import get_active_backend

    core = estimator
    while isinstance(core, Pipeline):
        core = core.steps[-1][1]
    if not isinstance(core, _THREAD_SENSITIVE):
        return None
    n = effective_n_jobs(n_jobs)
    backend, _ = get_active_backend()
    if n == 1 or type(backend).__name__ != "LokyBackend":
        return None
    explicit = getattr(backend, "inner_max_num_threads", None)
    if explicit is not None:
        return int(explicit)
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(cpu_count() // n, 1)


def _whole_numbers(A: np.ndarray) -> bool:
    """Whether every value of ``A`` is a whole number (checked a block of rows at a time)."""
    step = max(1, _CHUNK_BYTES // max(1, A.itemsize * A.shape[1]))
    return all(
        np.array_equal(block, np.round(block))
        for block in (A[start : start + step] for start in range(0, A.shape[0], step))
    )


def _split_rows(n_fit: int, n_rows: int, threads: int) -> int | None:
    """``None`` when scikit-learn's brute-force search of ``n_rows`` query rows among
    ``n_fit`` points with ``threads`` OpenMP threads scans every point in one pass per row
    (its ``parallel_on_X`` strategy); else it splits the points between threads (its
    ``parallel_on_Y``, see ``BaseDistancesReduction``; one thread too, whose heap is then
    pushed onto the row's), which it keeps doing for calls of up to the returned number of
    rows, and a row's answer does not depend on the other rows of such a call."""
    chunk = int(sklearn.get_config().get("pairwise_dist_chunk_size", 256))
    if n_fit < n_rows or 4 * chunk * threads < n_rows:
        return None
    return min(n_fit, 4 * chunk * threads)


def _thread_ranges(n_fit: int, n_rows: int, threads: int) -> tuple[np.ndarray, bool]:
    """Bounds of the ranges of training points scikit-learn's brute-force search gives its
    OpenMP threads for ``n_rows`` query rows, and whether their heaps are then pushed onto
    the row's (``parallel_on_Y``, :func:`_split_rows`): chunks of
    ``pairwise_dist_chunk_size`` points shared out by OpenMP's static schedule (the first
    ``n_chunks % n_threads`` threads take one chunk more); one range, used directly, when
    it searches in one pass per row."""
    if _split_rows(n_fit, n_rows, threads) is None:
        return np.array([0, n_fit]), False
    chunk = min(n_fit, int(sklearn.get_config().get("pairwise_dist_chunk_size", 256)))
    n_chunks = -(-n_fit // chunk)
    team = min(n_chunks, threads)
    share, extra = divmod(n_chunks, team)
    first = [s * share + min(s, extra) for s in range(team + 1)]
    return np.minimum(np.array(first) * chunk, n_fit), True


def call_rows(estimator: Any, n_rows: int, threads: int | None) -> int | None:
    """Most rows a call of ``estimator`` may have for each row to get the answer it gets in
    a copy of ``n_rows`` rows predicted with ``threads`` OpenMP threads (``None``: this
    thread's setting); ``None`` when any call size does. Only k-NN models whose brute-force
    search splits the training points between threads are limited (:func:`_split_rows`):
    a larger call, e.g. stacked copies, would be searched in one pass per row and break
    exact ties otherwise."""
    core = estimator
    while isinstance(core, Pipeline):
        core = core.steps[-1][1]
    if not isinstance(core, KNeighborsClassifier | KNeighborsRegressor):
        return None
    if getattr(core, "_fit_method", None) != "brute":
        return None
    if _votes_in_one_pass(core):
        return None
    if threads is not None:
        with thread_limits(threads, "openmp"):
            return _split_rows(int(core.n_samples_fit_), n_rows, _search_threads())
    return _split_rows(int(core.n_samples_fit_), n_rows, _search_threads())


def _search_threads() -> int:
    """The OpenMP threads scikit-learn's neighbour search uses if called now, here: its
    OpenMP setting, at most the CPUs unless ``OMP_NUM_THREADS`` is set."""
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    return int(_openmp_effective_n_threads())


def _votes_in_one_pass(model: Any) -> bool:
    """Whether a k-NN classifier's uniform votes (``predict``, ``predict_proba``) come from
    scikit-learn's ``ArgKminClassMode``, which always searches in one pass per row
    (``parallel_on_X``); otherwise they come from ``kneighbors``, whose strategy depends on
    the call (:func:`_split_rows`). Not for Euclidean distances (excluded there)."""
    from sklearn.metrics._pairwise_distances_reduction import ArgKminClassMode

    if not isinstance(model, KNeighborsClassifier) or model.weights != "uniform":
        return False
    if getattr(model, "_fit_method", None) != "brute" or model.outputs_2d_:
        return False
    try:  # predict_proba's metric (``predict`` checks the model's own first)
        from sklearn.neighbors._classification import _adjusted_metric

        adjusted, _ = _adjusted_metric(model.metric, dict(model.metric_params or {}), model.p)
    except ImportError:
        return False
    rows = model._fit_X[:1]
    metrics = (model.metric, adjusted)
    return all(ArgKminClassMode.is_usable_for(rows, model._fit_X, m) for m in metrics)


def _searches_by_heap(model: Any, X: np.ndarray) -> bool:
    """Whether scikit-learn finds ``model``'s neighbours of copies like ``X`` by its
    brute-force heap search (``ArgKmin``, or ``ArgKminClassMode``), which :func:`_replay`
    repeats, and numba is on to run the replay."""
    from sklearn.metrics._pairwise_distances_reduction import ArgKmin

    if compiled(_replay) is None or model._fit_method != "brute":
        return False
    rows = np.ascontiguousarray(X[:1])
    return bool(ArgKmin.is_usable_for(rows, model._fit_X, model.effective_metric_))


def _metric_power(estimator: Any) -> float | None:
    """The Minkowski ``p`` of a fitted k-NN model, or ``None`` for other metrics."""
    metric = getattr(estimator, "effective_metric_", None)
    params = getattr(estimator, "effective_metric_params_", None) or {}
    params = {key: value for key, value in params.items() if value is not None}
    if metric in ("euclidean", "l2") and not params:
        return 2.0
    if metric in ("manhattan", "cityblock", "l1") and not params:
        return 1.0
    if metric == "minkowski" and set(params) == {"p"}:
        p = float(params["p"])
        if np.isfinite(p) and p >= 1.0:
            return p
    return None


class NeighborsPath:
    """Outputs of a k-NN model (Minkowski metric, uniform or distance weights) on copies."""

    #: A copy in which more than this share of the rows would likely need the model goes to
    #: the model whole, without a scan.
    MODEL_SHARE = 0.5
    #: Lower bounds of every distance (one byte each) are kept when they take at most this
    #: share of X's bytes.
    LOW_BOUND_SHARE = 0.5
    #: Candidates kept per row beside those lower bounds (rows that run out scan them all).
    KEEP_WITH_BOUNDS = 48
    #: Fewest rows asked of the model in one call (see :meth:`outputs_many`).
    ASK_ROWS = 64

    def __init__(
        self, model: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray], p: float
    ) -> None:
        Y = np.ascontiguousarray(model._fit_X)
        self.model = model
        self.X = X
        self.Y = Y
        self.p = float(p)
        self.k = int(model.n_neighbors)
        self.classifier = isinstance(model, KNeighborsClassifier)
        self.distance = model.weights == "distance"
        self._lock = threading.Lock()
        self.base_outputs = dict(base_outputs)  # the caller's (its names say what to serve)
        # Rows a permutation leaves unchanged keep the model's outputs computed as the copies'
        # (see copy_threads): on first use, with the thread setting the copies run with.
        self._copy_base: dict[str, np.ndarray] | None = None
        self.y_fit = np.asarray(model._y)
        self.n_classes = len(model.classes_) if self.classifier else 0
        self.rows_by_model = 0  # rows evaluated by the model itself (for tests and docs)
        self.rows_run_out = 0  # rows whose kept candidates ran out (likewise)
        self.rows_replayed = 0  # rows whose neighbours were found by the replay (likewise)
        m, n_f = X.shape
        n_t = Y.shape[0]
        self.c_err = 8.0 * (n_f + 8) * _U
        # Small integer features (p = 1 or 2): every distance is computed exactly, in any
        # order, so a row's outputs cannot depend on the other rows of a call.
        self.y_min = Y.min(axis=0)
        self.y_max = Y.max(axis=0)
        big = max(-X.min(), X.max(), -self.y_min.min(), self.y_max.max())
        self.integral = bool(
            self.p in (1.0, 2.0)
            and n_f * (2.0 * big + 1.0) ** 2 < 2.0**50
            and _whole_numbers(X)
            and _whole_numbers(Y)
        )
        if self.p == 2.0:
            self.x_norm = np.einsum("ij,ij->i", X, X)
            y_norm = np.einsum("ij,ij->i", Y, Y)
            self.y_norm = y_norm
            self.y_norm_max = float(y_norm.max())
        # Candidates kept per row: enough for pruning, within half of X's own memory. Where
        # it fits in LOW_BOUND_SHARE of X's memory, also a one-byte lower bound of every
        # reduced distance: a row whose candidates run out then scans every training point
        # at O(g) each instead of recomputing its distances at O(n_features). With small
        # integer features whose kept candidates span at most 253, the codes are the exact
        # distances above the row's nearest (:data:`_STEPS`), which the replay of
        # scikit-learn's search reads (:meth:`_replay`).
        self.low: np.ndarray | None = None
        budget = (X.nbytes // 2) // max(1, m * 12)
        if m * n_t <= self.LOW_BOUND_SHARE * X.nbytes:
            self.low = np.empty((m, n_t), dtype=np.uint8)
            budget = self.KEEP_WITH_BOUNDS
        n_keep = int(min(n_t, max(4 * (self.k + 1), 48, budget)))
        self.cand_idx = np.empty((m, n_keep), dtype=np.int32)
        self.cand_d = np.empty((m, n_keep))
        self.low_ref = np.ones(m)
        self.low_off = np.zeros(m)
        self.exact_codes = False
        # The replay's least unpermuted distance per block of training points (see _replay),
        # rounded down to float32: half the memory of the one-byte codes.
        starts = np.arange(0, n_t, _REPLAY_BLOCK)
        self.block_low = None
        if self.integral and self.low is not None:
            self.block_low = np.empty((m, starts.size), dtype=np.float32)
        step = max(1, _CHUNK_BYTES // (8 * n_t))
        block = compiled(_reduced_block) or _reduced_block_numpy
        for start in range(0, m, step):
            stop = min(m, start + step)
            if self.p == 2.0:
                d = self.x_norm[start:stop, None] + y_norm[None, :] - 2.0 * (X[start:stop] @ Y.T)
            else:
                d = np.empty((stop - start, n_t))
                block(X[start:stop], Y, self.p, d)
            if n_keep < n_t:
                keep = np.argpartition(d, n_keep - 1, axis=1)[:, :n_keep]
            else:
                keep = np.broadcast_to(np.arange(n_t), d.shape)
            kd = np.take_along_axis(d, keep, axis=1)
            order = np.argsort(kd, axis=1, kind="stable")
            self.cand_idx[start:stop] = np.take_along_axis(keep, order, axis=1)
            self.cand_d[start:stop] = np.take_along_axis(kd, order, axis=1)
            if start == 0 and self.integral and self.low is not None:
                spread = self.cand_d[:stop, -1] - self.cand_d[:stop, 0]
                self.exact_codes = bool(np.median(spread) <= _EXACT_CODES - 1)
            if self.exact_codes:
                self.low_off[start:stop] = self.cand_d[start:stop, 0]
            else:
                self.low_ref[start:stop] = np.maximum(self.cand_d[start:stop, -1], 1e-300)
            if self.block_low is not None:
                least = np.minimum.reduceat(d, starts, axis=1)
                low32 = least.astype(np.float32)
                self.block_low[start:stop] = np.where(
                    low32 > least, np.nextafter(low32, np.float32(-np.inf)), low32
                )
            if self.low is not None:
                self.low[start:stop] = self._lower_codes(d, start, stop)
                np.put_along_axis(self.low[start:stop], keep[:, :n_keep], _KEPT, axis=1)
        self.low_scale = _STEPS if self.exact_codes else _SCALE
        self.replay_ready = self.integral and self.low is not None and _searches_by_heap(model, X)
        self.one_pass_votes = _votes_in_one_pass(model)
        # Room beyond k+1 for a band of tied points (integer features, duplicated rows).
        gaps = self.cand_d[:, min(self.k, n_keep - 1)] - self.cand_d[:, self.k - 1]
        tied = np.mean(gaps <= 4.0 * self._base_error(np.arange(m))) > 0.02
        self.kk = int(min(n_t, self.k + (6 if tied else 1), n_keep))

    def _lower_codes(self, d: np.ndarray, start: int, stop: int) -> np.ndarray:
        """One-byte lower bounds (see :data:`_SCALE`, or exact codes, :data:`_STEPS`) of the
        exact reduced distances of rows ``start:stop``, whose computed values are ``d``."""
        if self.exact_codes:  # exact arithmetic: d are the exact distances
            above = d - self.low_off[start:stop, None]
            return np.clip(above, 0, _EXACT_CODES, out=above).astype(np.uint8)
        if self.p == 2.0:
            err = self.c_err * (2.0 * self.x_norm[start:stop] + 2.0 * self.y_norm_max)[:, None]
        else:
            err = self.c_err * 2.0 * np.abs(d)
        v = d - err - _REL * np.abs(d)
        ref = self.low_ref[start:stop, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            steps = np.floor(16.0 * np.log2(v / ref))
        code = np.where(v >= ref, np.clip(steps, 0, 253) + 1, 0).astype(np.uint8)
        # The logarithm's rounding may land one step too high: step down where it did.
        code[(code > 0) & (ref * _SCALE[code] > v)] -= 1
        return code

    def _base_error(self, rows: np.ndarray) -> np.ndarray:
        """Rounding bound of the unpermuted reduced distances of ``rows``."""
        if self.p == 2.0:
            return self.c_err * (2.0 * self.x_norm[rows] + 2.0 * self.y_norm_max)
        last = self.cand_d[rows, min(self.k, self.cand_d.shape[1] - 1)]
        return self.c_err * 2.0 * np.abs(last)

    def agrees_with_model(self, n_rows: int = 64) -> bool:
        """Self-check on the first rows: where the kept candidates certify a neighbour set,
        it is the one the model finds."""
        rows = np.arange(min(n_rows, self.X.shape[0]))
        k = self.k
        theirs = quietly(self.model.kneighbors, self.X[rows], None, False)
        e = self._base_error(rows)
        cand_d = self.cand_d[rows]
        if cand_d.shape[1] > k:
            certain = cand_d[:, k] - cand_d[:, k - 1] > 4.0 * e
        else:
            certain = np.ones(rows.size, dtype=bool)
        mine = np.sort(self.cand_idx[rows, :k], axis=1)
        return bool(np.array_equal(mine[certain], np.sort(theirs, axis=1)[certain]))

    def values_servable(self) -> bool:
        """Whether distance-weighted values (probabilities, regression) are worth serving.

        A row is served where its weights' estimated rounding is at most
        :data:`VALUE_ROUNDING` (see the module docstring); estimated on the unpermuted rows,
        when fewer than half qualify the model takes every copy through LEAP's ordinary
        batches instead. Uniform weights and labels alone always qualify.
        """
        values = not self.classifier or "predict_proba" in self.base_outputs
        if not (self.distance and values):
            return True
        return bool(np.mean(self._unpermuted_rounding() <= VALUE_ROUNDING) >= 0.5)

    def _weight_rounding(self, d: np.ndarray, idx: np.ndarray, x_norm: Any) -> np.ndarray:
        """Estimated relative difference of each row's distance weights from scikit-learn's
        (see the module docstring), from its sorted reduced distances ``d`` to neighbours
        ``idx`` (the last axis; at least ``k``) and, for Euclidean, its squared norm."""
        k = min(self.k, d.shape[-1])
        if self.p == 2.0:  # the size of the terms the distance was computed from
            size = np.maximum(x_norm, 0.0) + self.y_norm[idx[..., :k]].max(axis=-1)
        else:
            size = np.abs(d[..., k - 1])
        nearest = np.maximum(d[..., 0], 1e-300)
        with np.errstate(invalid="ignore"):  # rows not scanned: inf / inf
            return 4.0 * np.sqrt(self.X.shape[1]) * _U * size / (self.p * nearest)

    def _unpermuted_rounding(self) -> np.ndarray:
        """:meth:`_weight_rounding` of the unpermuted rows."""
        return self._weight_rounding(self.cand_d, self.cand_idx, getattr(self, "x_norm", None))

    def jitter(self, signs: np.ndarray) -> dict[str, np.ndarray] | None:
        """Served values on the unpermuted rows moved by ``signs`` times their estimated
        rounding; ``None`` where every served value is bitwise the model's (labels, vote
        shares, uniform means of neighbours in a certain order). See
        :func:`~leap.builtins.methods.permutation.method.rounding_is_harmless`.
        """
        k = min(self.k, self.cand_d.shape[1])
        if self.classifier:
            if not (self.distance and "predict_proba" in self.base_outputs):
                return None
            t = np.minimum(self._unpermuted_rounding(), VALUE_ROUNDING)
            proba = np.asarray(self.base_outputs["predict_proba"], dtype=np.float64)
            return {"predict_proba": proba + (2.0 * signs * t)[:, None] * proba * (1.0 - proba)}
        y = self.y_fit[self.cand_idx[:, :k]].astype(np.float64)  # (m, k)
        pred = np.asarray(self.base_outputs["predict"], dtype=np.float64)
        # Sums in another order: only where neighbours with different targets nearly tie.
        gaps = np.diff(self.cand_d[:, :k], axis=1)
        near = gaps <= 4.0 * self._base_error(np.arange(len(pred)))[:, None]
        reordered = np.any(near & (np.diff(y, axis=1) != 0.0), axis=1)
        size = 2.0 * k * _U * np.abs(y).max(axis=1) * reordered
        if self.distance:
            t = np.minimum(self._unpermuted_rounding(), VALUE_ROUNDING)
            size = size + 2.0 * t * np.abs(y - pred[:, None]).max(axis=1)
        elif not reordered.any():
            return None
        return {"predict": pred + signs * size}

    def unaffected(self, cols: np.ndarray) -> bool:
        """Distances always depend on every column."""
        return False

    def _bounds(self, cols, old, new):
        """Per copy and row: range bound ``M``, shift ``δ`` and rounding bound ``E``."""
        p = self.p
        lo, hi = self.y_min[cols], self.y_max[cols]
        diff = np.abs(new - old[None])
        if p == 2.0:
            total = new + old[None]
            span = np.maximum(np.abs(total - 2.0 * lo), np.abs(total - 2.0 * hi))
            M = (diff * span).sum(axis=2)
            delta = np.sqrt((diff * diff).sum(axis=2))
            E = self.c_err * (
                2.0 * self.x_norm[None, :] + (new * new).sum(axis=2) + 2.0 * self.y_norm_max
            )
        else:

            def change(y):
                return np.abs(new - y) ** p - np.abs(old[None] - y) ** p

            M = -np.minimum(np.minimum(change(lo), change(hi)), 0.0).sum(axis=2)
            delta = (diff**p).sum(axis=2) ** (1.0 / p)
            far = self.cand_d[:, min(self.kk, self.cand_d.shape[1]) - 1]
            upper = (np.maximum(far, 0.0)[None] ** (1.0 / p) + delta) ** p
            E = self.c_err * 2.0 * upper * (1.0 + 1e-6)
        M = M * (1.0 + 1e-9) + 1e-300
        delta = delta * (1.0 + 1e-9)
        return M, delta, E

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy, and whether each copy was answered (exactly)."""
        return self.outputs_many([cols], orders)[0]

    def outputs_many(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """:meth:`outputs` of many groups. Rows the model must answer alone (exact
        arithmetic, see :meth:`_finish`) are asked together for several groups, about a
        quarter of a copy's rows per call (at least :data:`ASK_ROWS`): a call's set-up
        costs as much as a few dozen rows."""
        answers, asks, waiting = [], [], 0
        batch = max(self.ASK_ROWS, self.X.shape[0] // 4)
        for cols in groups:
            outputs, ask = self._group(np.asarray(cols, dtype=np.int64), orders)
            answers.append((outputs, np.ones(orders.shape[0], dtype=bool)))
            if ask is not None:
                asks.append(ask)
                waiting += int(ask[2].sum())
            if waiting >= batch:
                self._ask_rows(asks)
                asks, waiting = [], 0
        self._ask_rows(asks)
        return answers

    def _group(self, cols: np.ndarray, orders: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
        """One group's outputs, and the rows still to be asked of the model (or ``None``)."""
        X = self.X
        R, m = orders.shape
        kk = self.kk
        old = np.ascontiguousarray(X[:, cols])
        new = np.ascontiguousarray(old[orders])  # (R, m, g)
        changed = np.any(new.view(np.uint64) != old.view(np.uint64)[None], axis=2)
        M, delta, E = self._bounds(cols, old, new)
        # Cost estimate: a row whose kept candidates cannot absorb its shift, against its
        # unpermuted (kk)-th distance, will likely need the model; when that is most of a
        # copy, the model takes the whole copy (one call instead of scan plus call).
        reach = _lower_numpy(self.cand_d[:, -1][None] - E, M, delta, self.p) - 3.0 * E
        short = self.cand_d.shape[1] < self.Y.shape[0]
        likely_fail = changed & (reach <= self.cand_d[:, kk - 1][None]) & short
        whole = likely_fail.sum(axis=1) > self.MODEL_SHARE * m
        if self.low is not None:  # rows that run out scan every point at O(g): no hand-over
            whole[:] = False
        todo = changed & ~whole[:, None]
        best_d = np.full((R, m, kk), np.inf)
        best_i = np.zeros((R, m, kk), dtype=np.int32)
        status = np.zeros((R, m), dtype=np.int8)
        Yg = np.ascontiguousarray(self.Y[:, cols].T)  # a group's training values, in cache
        kernel = compiled(_scan) or _scan_numpy
        kernel(
            self.cand_idx, self.cand_d, Yg, old, new, todo, self.p, M, delta, E,
            self.Y.shape[0], best_d, best_i, status,
        )  # fmt: skip
        over = status == 3  # kept candidates ran out: every training point is scanned
        self.rows_run_out += int(over.sum())
        if self.low is not None and over.any():
            full_scan = compiled(_scan_all) or _scan_all_numpy
            full_scan(
                self.cand_idx, self.cand_d, self.low, self.low_scale, self.low_ref,
                self.low_off, self.Y, X, cols, Yg, new, over, self.p, E,
                np.empty(X.shape[1]), best_d, best_i,
            )  # fmt: skip
            status[over] = 1
        for r in range(R):  # (without lower bounds) rescored against all points at full cost
            rows = np.flatnonzero(status[r] == 3)
            if rows.size:
                self._rescore(r, rows, cols, new, best_d, best_i, status)
        return self._finish(cols, old, new, todo, whole, changed, E, best_d, best_i, status)

    def _finish(self, cols, old, new, todo, whole, changed, E, best_d, best_i, status):
        """Certified outputs of the scanned rows, the model's for whole copies it must
        answer, and the rows it must answer alone (``(cols, new, need, outputs)`` or
        ``None``; see :meth:`_ask_rows`)."""
        R, m = todo.shape
        scale = None
        if self.p == 2.0:  # squared norm of each permuted row
            scale = self.x_norm[None] + (new * new).sum(axis=2) - (old * old).sum(axis=1)[None]
        if self.p == 2.0:
            # Certification compares points within the kk-th distance of the permuted row
            # (every other point is farther by more than the global bound): their norms are
            # at most (|x'| + that distance)², far below the largest training norm on
            # heavy-tailed data, and bound the rounding.
            with np.errstate(invalid="ignore"):
                reach_norm = (
                    np.sqrt(np.maximum(scale, 0.0)) + np.sqrt(np.maximum(best_d[..., -1], 0.0))
                ) ** 2
            local = self.c_err * (
                2.0 * self.x_norm[None, :] + (new * new).sum(axis=2) + 2.0 * reach_norm
            )
            E = np.where(np.isfinite(local), np.minimum(E, local), E)
        outputs, certified = self._certify(best_d, best_i, status == 1, E, scale)
        # Rows not certified (ties, near-ties, near-duplicates) are the model's own outputs.
        # With exact arithmetic (small integer features) a row's output does not depend on
        # the other rows of a call, so those rows alone are asked; otherwise a Gram-matrix
        # distance's last bits may depend on the call's shape, so the model gets the whole
        # copy, as scikit-learn would. Copies handed over by the cost estimate go whole too.
        need = todo & ~certified
        if need.any() and self._replays():
            self._replay_rows(cols, new, need, E, scale, best_d, best_i, outputs)
        full = whole & changed.any(axis=1)
        if not self.integral:
            full |= need.any(axis=1)
            need[full] = False
        copy_base = self._unpermuted_outputs()
        keep = ~todo
        for name in outputs:
            base = copy_base[name]
            shape = (R, m) + (1,) * (base.ndim - 1)
            out = outputs[name]
            np.copyto(out, np.broadcast_to(base, out.shape), where=keep.reshape(shape))
        if full.any():
            self._ask_copies(cols, new, full, outputs)
        return outputs, ((cols, new, need, outputs) if need.any() else None)

    def _replays(self) -> bool:
        """Whether rows whose tied neighbours the certificate cannot settle are answered by
        replaying scikit-learn's search (:func:`_replay`) instead of asking the model: small
        integer features (exact distances) and its brute-force heap search. Vote counts
        (uniform classifiers) do not depend on the neighbours' order; other outputs take
        them in its order, which the replay repeats up to :data:`_INSERTION_K` neighbours."""
        if not self.replay_ready:
            return False
        if self.one_pass_votes:
            return True
        ordered = not (self.classifier and not self.distance)  # votes: any order
        return self.k <= _INSERTION_K or not ordered

    def _replay_rows(self, cols, new, need, E, scale, best_d, best_i, outputs) -> None:
        """Neighbours of the rows ``need`` as scikit-learn finds them (:func:`_replay`), their
        outputs, and ``need`` cleared where those are certified (labels of distance-weighted
        votes still need their margin)."""
        rows_r, rows_i = np.nonzero(need)
        self.replayed(cols, new, rows_r, rows_i, best_d, best_i)
        self.rows_replayed += rows_r.size
        sub = (rows_r, rows_i)
        exact = self._exact_votes()
        found, certified = self._certify(
            best_d[sub][None], best_i[sub][None], np.ones((1, rows_r.size), dtype=bool),
            np.zeros((1, rows_r.size)) if exact else E[sub][None],
            None if scale is None else scale[sub][None], exact_votes=exact,
        )  # fmt: skip
        for name, values in found.items():
            outputs[name][sub] = values[0]
        need[sub] = ~certified[0]

    def _exact_votes(self) -> bool:
        """Whether a replayed row's distance-weighted vote is scikit-learn's own, bitwise.

        Replayed neighbours come in scikit-learn's order with exact reduced distances; for
        p = 1 and 2 the weights (``1 / d``, ``d`` its square root for p = 2) are then
        correctly rounded alike, and with fewer than eight neighbours NumPy sums a row of
        weights in neighbour order, as :meth:`_certify` adds them. So the vote totals are
        bitwise scikit-learn's, and its label needs no margin (ties included).
        """
        return self.classifier and self.distance and self.k < 8 and self.p in (1.0, 2.0)

    def replayed(self, cols, new, rows_r, rows_i, best_d, best_i) -> None:
        """:func:`_replay` of rows ``(rows_r, rows_i)`` of the copies with values ``new`` in
        columns ``cols``, with the OpenMP thread count model calls run with now."""
        old = np.ascontiguousarray(self.X[:, cols])  # the group's columns, contiguous
        Yg = np.ascontiguousarray(self.Y[:, cols].T)
        starts = np.arange(0, Yg.shape[1], _REPLAY_BLOCK)
        y_lo = np.minimum.reduceat(Yg, starts, axis=1)
        y_hi = np.maximum.reduceat(Yg, starts, axis=1)
        by_row = np.argsort(rows_i, kind="stable")  # the kernel reuses a query row's distances
        rows_r, rows_i = rows_r[by_row], rows_i[by_row]
        n_t = self.Y.shape[0]
        bounds, merged = np.array([0, n_t]), False  # ArgKminClassMode: one pass per row
        if not self.one_pass_votes:
            bounds, merged = _thread_ranges(n_t, self.X.shape[0], self._openmp_threads())
        n_heaps = bounds.size if merged else 1
        compiled(_replay)(
            rows_r, rows_i, self.cand_idx, self.cand_d, self.low, self.low_scale, self.low_ref,
            self.low_off, self.exact_codes, self.Y, self.X, Yg, old, new, self.p, bounds, merged,
            not (self.classifier and not self.distance), self.block_low, _REPLAY_BLOCK, y_lo,
            y_hi, np.empty(n_t), np.empty(n_t, dtype=np.bool_),
            np.empty(starts.size, dtype=np.bool_), np.empty((n_heaps, self.k)),
            np.empty((n_heaps, self.k), dtype=np.int64), best_d, best_i,
        )  # fmt: skip

    def _unpermuted_outputs(self) -> dict[str, np.ndarray]:
        """The model's outputs on the unpermuted rows, computed as the copies' are."""
        if self._copy_base is not None:  # set once; no lock to wait for a model call
            return self._copy_base
        with self._lock:
            if self._copy_base is None:
                self._copy_base = {
                    name: np.asarray(quietly(getattr(self.model, name), self.X))
                    for name in self.base_outputs
                }
            return self._copy_base

    def _openmp_threads(self) -> int:
        """The OpenMP thread count model calls run with now (see :func:`copy_threads`)."""
        return _search_threads()

    def _ask_copies(self, cols, new, full, outputs) -> None:
        """The model's own outputs for the whole copies ``full``, each alone (as
        scikit-learn calls it), with the calling thread's OpenMP setting: the runner sets
        it to the one scikit-learn's copies would see (:func:`copy_threads`), which decides
        how exact ties are broken."""
        m = self.X.shape[0]
        with self._lock if self._openmp_threads() > 1 else nullcontext():
            for r in np.flatnonzero(full):
                copy = self.X.copy()
                copy[:, cols] = new[r]
                self.rows_by_model += m
                for name in outputs:
                    outputs[name][r] = quietly(getattr(self.model, name), copy)

    def _ask_rows(self, asks: list) -> None:
        """The model's own outputs for the rows ``need`` of each ``(cols, new, need,
        outputs)``, asked together (exact arithmetic: a row's answer does not depend on
        the others of a call). Each gets the answer it would get inside its whole copy:
        fewer rows can change scikit-learn's search strategy, so where the whole copy's
        search is sequential they are asked with one thread, and where it splits the
        training points between threads no call has more rows than keeps it so
        (:func:`call_rows`). Calls with several OpenMP
        threads run one at a time (LEAP's threads already share the cores); one-thread
        calls run side by side.
        """
        if not asks:
            return
        where = [np.nonzero(need) for _, _, need, _ in asks]
        stacked = np.empty((sum(r.size for r, _ in where), self.X.shape[1]))
        start = 0
        for (cols, new, _, _), (r_idx, i_idx) in zip(asks, where, strict=True):
            rows = stacked[start : start + r_idx.size]
            np.take(self.X, i_idx, axis=0, out=rows, mode="clip")  # "raise" would buffer
            rows[:, cols] = new[r_idx, i_idx]
            start += r_idx.size
        self.rows_by_model += stacked.shape[0]
        threads = self._openmp_threads()
        split = _split_rows(self.Y.shape[0], self.X.shape[0], threads)
        one = threads > 1 and split is None
        step = split or stacked.shape[0]  # more rows would make the search sequential
        with self._lock if threads > 1 else nullcontext():
            with thread_limits(1, "openmp") if one else nullcontext():
                answers = {
                    name: np.concatenate([
                        quietly(getattr(self.model, name), stacked[at : at + step])
                        for at in range(0, stacked.shape[0], step)
                    ])
                    for name in asks[0][3]
                }  # fmt: skip
        start = 0
        for (_, _, _, outputs), (r_idx, i_idx) in zip(asks, where, strict=True):
            for name, answer in answers.items():
                outputs[name][r_idx, i_idx] = answer[start : start + r_idx.size]
            start += r_idx.size

    def _rescore(self, r, rows, cols, new, best_d, best_i, status) -> None:
        """The ``kk`` nearest of all training points for ``rows`` of copy ``r`` (status 1)."""
        n_t = self.Y.shape[0]
        kk = best_d.shape[2]
        step = max(1, _CHUNK_BYTES // (8 * n_t))
        block = compiled(_reduced_block) or _reduced_block_numpy
        for start in range(0, rows.size, step):
            part = rows[start : start + step]
            Xr = self.X[part].copy()
            Xr[:, cols] = new[r, part]
            if self.p == 2.0:
                xn = np.einsum("ij,ij->i", Xr, Xr)
                d = xn[:, None] + self.y_norm[None, :] - 2.0 * (Xr @ self.Y.T)
            else:
                d = np.empty((part.size, n_t))
                block(Xr, self.Y, self.p, d)
            top = np.argpartition(d, kk - 1, axis=1)[:, :kk] if kk < n_t else None
            if top is None:
                top = np.broadcast_to(np.arange(n_t), d.shape)
            top_d = np.take_along_axis(d, top, axis=1)
            order = np.argsort(top_d, axis=1, kind="stable")
            best_d[r, part] = np.take_along_axis(top_d, order, axis=1)
            best_i[r, part] = np.take_along_axis(top, order, axis=1)
        status[r, rows] = 1

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _certify(self, best_d, best_i, scanned, E, x_norm, exact_votes=False):
        """Outputs from the scanned neighbours, and which rows they certify (with
        ``exact_votes``, distance-weighted labels of replayed rows: see
        :meth:`_exact_votes`)."""
        k = self.k
        n_t = self.Y.shape[0]
        kk = best_d.shape[2]
        v = best_d[..., k - 1]
        e4 = 4.0 * E
        complete = scanned & ((kk >= n_t) | (best_d[..., kk - 1] > v + e4))
        # The whole band is chosen when no point after the k-th is within 4E of it.
        whole_band = (best_d[..., k] > v + e4) if kk > k else np.ones(v.shape, dtype=bool)
        idx = np.where(scanned[..., None], best_i, 0)
        outputs: dict[str, np.ndarray] = {}
        if self.distance:
            w = np.maximum(best_d[..., :k], 0.0)  # reduced distances, then weights in place
            if self.p == 2.0:
                np.sqrt(w, out=w)
            elif self.p != 1.0:
                np.power(w, 1 / self.p, out=w)
            sure = complete & (best_d[..., 0] > 2.0 * e4)  # no neighbour near zero
            ok = sure & whole_band
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(1.0, w, out=w)
            w[~sure] = 1.0
            nearest = np.maximum(best_d[..., 0], 1e-300)
            # Labels: rigorous relative bound of each weight (ours vs scikit-learn's).
            rel = 2.0 * (2.0 * E) / (self.p * nearest) + 8.0 * _U
            # Probabilities and regression values: served where the weights' estimated
            # rounding is small (not next to a near-duplicate neighbour; see the module).
            fine = np.ones(ok.shape, dtype=bool)  # labels alone: not needed
            if not self.classifier or "predict_proba" in self.base_outputs:
                fine = self._weight_rounding(best_d, idx, x_norm) <= VALUE_ROUNDING
            smooth = ok & fine
        if self.classifier:
            C = self.n_classes
            if not self.distance:
                lab = self.y_fit[idx]  # (R, m, kk) encoded classes
                onehot = lab[..., None] == np.arange(C)
                counts = onehot[..., :k, :].sum(axis=2)
                winner = np.argmax(counts, axis=2)
                certified = complete & whole_band
                banded = np.nonzero(complete & ~whole_band)
                if banded[0].size:
                    votes, exact_votes, ranged, w_r = _band_votes(
                        best_d[banded], lab[banded], v[banded], e4[banded], k, C
                    )
                    counts[banded] = votes
                    winner[banded] = np.where(exact_votes, np.argmax(votes, axis=1), w_r)
                    ok_b = exact_votes
                    if "predict_proba" not in self.base_outputs:
                        ok_b = exact_votes | ranged
                    certified[banded] = ok_b
                counts = counts.astype(np.float64)
                proba = counts / np.maximum(counts.sum(axis=2, keepdims=True), 1.0)
            else:
                # Each class's total adds its neighbours' weights in neighbour order, from
                # zero, as scikit-learn's vote does.
                lab = self.y_fit[idx[..., :k]].reshape(-1, k)
                sums = np.zeros((*idx.shape[:2], C))
                flat = sums.reshape(-1, C)
                at = np.arange(flat.shape[0])
                w_flat = w.reshape(-1, k)
                for q in range(k):
                    flat[at, lab[:, q]] += w_flat[:, q]
                total = sums.sum(axis=2, keepdims=True)
                proba = sums / np.where(total == 0.0, 1.0, total)
                winner = np.argmax(sums, axis=2)
                margin_ok = np.ones(ok.shape, dtype=bool)
                if exact_votes:
                    # scikit-learn takes the first largest total (``weighted_mode``); a
                    # version voting by the largest probability would agree where the
                    # division by the total makes no new tie.
                    margin_ok = winner == np.argmax(proba, axis=2)
                elif C > 1:  # the best total against the next best
                    best = flat[at, winner.reshape(-1)].copy()
                    flat[at, winner.reshape(-1)] = -np.inf
                    second = flat.max(axis=1)
                    flat[at, winner.reshape(-1)] = best
                    bound = 4.0 * (rel + k * _U) * total[..., 0]
                    margin_ok = (best - second).reshape(ok.shape) > bound
                certified = ok
                if "predict" in self.base_outputs:
                    certified = certified & margin_ok
                    banded = np.nonzero(sure & ~whole_band)
                    if "predict_proba" not in self.base_outputs and banded[0].size:
                        ranged, w_r = _band_weights(
                            best_d[banded], self.y_fit[idx[banded]], v[banded], e4[banded],
                            rel[banded], k, C, self.p,
                        )  # fmt: skip
                        winner[banded] = np.where(ranged, w_r, winner[banded])
                        certified[banded] = ranged
                if "predict_proba" in self.base_outputs:
                    certified = certified & smooth
            if "predict_proba" in self.base_outputs:
                outputs["predict_proba"] = proba
            if "predict" in self.base_outputs:
                outputs["predict"] = self.model.classes_[winner]
            return outputs, certified
        y2 = self.y_fit.reshape((-1, 1)) if self.y_fit.ndim == 1 else self.y_fit
        vals = y2[idx[..., :k]]  # (R, m, k, 1)
        # A band of points that all share one target value gives the same mean whichever
        # the model chooses; with distance weights only with exact arithmetic, where the
        # band's points tie exactly (equal weights).
        if not self.distance:
            certified = complete & whole_band
            banded = np.nonzero(complete & ~whole_band)
        else:
            certified = smooth
            banded = np.nonzero(sure & fine & ~whole_band) if self.integral else ()
        if banded and banded[0].size:
            bd, yb = best_d[banded], self.y_fit[idx[banded]]
            vb, eb = v[banded][:, None], e4[banded][:, None]
            in_b = (bd >= vb - eb) & (bd <= vb + eb)
            ref = yb[np.arange(len(yb)), np.argmax(in_b, axis=1)][:, None]
            certified[banded] = np.all(np.where(in_b, yb == ref, True), axis=1)
        if not self.distance:
            pred = np.mean(vals, axis=2)
        else:
            denom = np.sum(w, axis=2)
            pred = (np.sum(vals[..., 0] * w, axis=2) / denom)[..., None]
        outputs["predict"] = pred[..., 0] if self.y_fit.ndim == 1 else pred
        return outputs, certified


def knn_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> NeighborsPath | None:
    """Factory: a :class:`NeighborsPath` for single-output Minkowski k-NN models."""
    cls = type(estimator)
    if cls is KNeighborsClassifier:
        allowed = {"predict", "predict_proba"}
    elif cls is KNeighborsRegressor:
        allowed = {"predict"}
    else:
        return None
    if not set(base_outputs) <= allowed or not base_outputs:
        return None
    if estimator.weights not in ("uniform", "distance") or getattr(estimator, "outputs_2d_", False):
        return None
    if np.ndim(getattr(estimator, "_y", None)) != 1:
        return None
    p = _metric_power(estimator)
    if p is None:
        return None
    Y = getattr(estimator, "_fit_X", None)
    if not isinstance(Y, np.ndarray) or Y.dtype != np.float64 or Y.ndim != 2:
        return None
    if X.dtype != np.float64 or Y.shape[1] != X.shape[1] or X.shape[0] == 0:
        return None
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        return None
    if not 1 <= estimator.n_neighbors <= Y.shape[0]:
        return None
    path = NeighborsPath(estimator, X, base_outputs, p)
    if not path.agrees_with_model() or not path.values_servable():
        return None
    return path
