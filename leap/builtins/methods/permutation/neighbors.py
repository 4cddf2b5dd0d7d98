"""Fast path for k-nearest-neighbours models (uniform weights, Euclidean distance).

Permuting a group of columns changes a query's squared distance to training point ``t`` by
``Σ_c (x'_c - y_tc)² - (x_c - y_tc)²``, and by at most ``M`` (a bound from the column's
range) for every ``t``. Each query keeps its nearest training points sorted by the
unpermuted distance; after a permutation only those within ``M`` of the new (k+1)-th
distance can enter the neighbourhood, so a handful are rescored instead of all of them (a
row that runs out of kept candidates is rescored against all training points). Rows whose
values did not change keep the model's own outputs.

Exactness: every distance here and in scikit-learn's own computation is within a rigorous
rounding bound ``E`` of the exact distance. The neighbour set is certified when the k-th and
(k+1)-th distances are more than ``4E`` apart (for regressors, also the order within the k,
which fixes the summation order of their mean); then any correct computation finds the same
set. A copy with an uncertified row (a tie, or a near-tie) is evaluated by the model itself,
so ties are broken exactly as scikit-learn breaks them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from leap.builtins.methods.permutation._jit import compiled
from leap.builtins.methods.permutation.fastpaths import quietly

_U = np.finfo(np.float64).eps / 2
_CHUNK_BYTES = 2**19  # distance rows computed at a time: keeps the set-up memory small


def _scan(cand_idx, cand_d, Y, X, cols, new, changed, M, E, k, ordered, neigh, status):
    """Loop kernel (compiled by numba): certified k nearest neighbours of changed rows.

    ``status``: 0 row unchanged, 1 certified (``neigh`` holds the neighbours), 2 tie or
    near-tie, 3 the kept candidates ran out (the row must be rescored against all points).
    """
    R, m = changed.shape
    L = cand_idx.shape[1]
    n_t = Y.shape[0]
    g = cols.shape[0]
    kk = min(k + 1, n_t)
    best_d = np.empty(kk)
    best_i = np.empty(kk, dtype=np.int64)
    for r in range(R):
        for i in range(m):
            if not changed[r, i]:
                status[r, i] = 0
                continue
            for q in range(kk):
                best_d[q] = np.inf
                best_i[q] = -1
            stopped = False
            for j in range(L):
                base = cand_d[i, j]
                if base - M[r, i] - 3.0 * E[r, i] > best_d[kk - 1]:
                    stopped = True
                    break
                t = cand_idx[i, j]
                dn = base
                for c in range(g):
                    yv = Y[t, cols[c]]
                    a = new[r, i, c] - yv
                    b = X[i, cols[c]] - yv
                    dn += a * a - b * b
                if dn < best_d[kk - 1]:
                    pos = kk - 1
                    while pos > 0 and best_d[pos - 1] > dn:
                        best_d[pos] = best_d[pos - 1]
                        best_i[pos] = best_i[pos - 1]
                        pos -= 1
                    best_d[pos] = dn
                    best_i[pos] = t
            if not stopped and L < n_t:  # ran out of kept candidates
                status[r, i] = 3
                continue
            ok = True
            if kk > k and best_d[k] - best_d[k - 1] <= 4.0 * E[r, i]:
                ok = False
            if ordered:
                for q in range(k - 1):
                    if best_d[q + 1] - best_d[q] <= 4.0 * E[r, i]:
                        ok = False
            status[r, i] = 1 if ok else 2
            for q in range(k):
                neigh[r, i, q] = best_i[q]


def _scan_numpy(cand_idx, cand_d, Y, X, cols, new, changed, M, E, k, ordered, neigh, status):
    """Vectorised twin of :func:`_scan` (same certification, all kept candidates rescored)."""
    n_t = Y.shape[0]
    L = cand_idx.shape[1]
    kk = min(k + 1, n_t)
    status[:] = 0
    for r in range(changed.shape[0]):
        rows = np.flatnonzero(changed[r])
        if rows.size == 0:
            continue
        ci = cand_idx[rows]
        d = cand_d[rows].copy()
        for c, col in enumerate(cols):
            yv = Y[ci, col]
            a = new[r, rows, c][:, None] - yv
            b = X[rows, col][:, None] - yv
            d += a * a - b * b
        top = np.argsort(d, axis=1, kind="stable")[:, :kk]
        best_d = np.take_along_axis(d, top, axis=1)
        best_i = np.take_along_axis(ci, top, axis=1)
        e = E[r, rows]
        over = np.zeros(rows.size, dtype=bool)
        if L < n_t:
            over = cand_d[rows, L - 1] - M[r, rows] - 3.0 * e <= best_d[:, kk - 1]
        ok = np.ones(rows.size, dtype=bool)
        if kk > k:
            ok &= best_d[:, k] - best_d[:, k - 1] > 4.0 * e
        if ordered and k > 1:
            ok &= np.all(np.diff(best_d[:, :k], axis=1) > 4.0 * e[:, None], axis=1)
        status[r, rows] = np.where(over, 3, np.where(ok, 1, 2))
        neigh[r, rows] = best_i[:, :k]


class NeighborsPath:
    """Outputs of a uniform-weight Euclidean k-NN model on permuted copies."""

    def __init__(self, model: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]):
        Y = np.ascontiguousarray(model._fit_X)
        self.model = model
        self.X = X
        self.Y = Y
        self.k = int(model.n_neighbors)
        self.classifier = isinstance(model, KNeighborsClassifier)
        self.base_outputs = {name: np.asarray(v) for name, v in base_outputs.items()}
        self.y_fit = np.asarray(model._y)
        self.x_norm = np.einsum("ij,ij->i", X, X)
        y_norm = np.einsum("ij,ij->i", Y, Y)
        self.y_norm = y_norm
        self.y_norm_max = float(y_norm.max())
        self.y_min = Y.min(axis=0)
        self.y_max = Y.max(axis=0)
        self.c_err = 8.0 * (X.shape[1] + 8) * _U
        n_t = Y.shape[0]
        n_keep = min(n_t, max(4 * (self.k + 1), 48))
        m = X.shape[0]
        self.cand_idx = np.empty((m, n_keep), dtype=np.int64)
        self.cand_d = np.empty((m, n_keep))
        step = max(1, _CHUNK_BYTES // (8 * n_t))
        for start in range(0, m, step):
            stop = min(m, start + step)
            d = self.x_norm[start:stop, None] + y_norm[None, :] - 2.0 * (X[start:stop] @ Y.T)
            if n_keep < n_t:
                keep = np.argpartition(d, n_keep - 1, axis=1)[:, :n_keep]
            else:
                keep = np.broadcast_to(np.arange(n_t), d.shape)
            kd = np.take_along_axis(d, keep, axis=1)
            order = np.argsort(kd, axis=1, kind="stable")
            self.cand_idx[start:stop] = np.take_along_axis(keep, order, axis=1)
            self.cand_d[start:stop] = np.take_along_axis(kd, order, axis=1)
        self.base_neigh = None
        if not self.classifier:
            self.base_neigh = quietly(model.kneighbors, X, None, False)

    def agrees_with_model(self, n_rows: int = 64) -> bool:
        """Self-check on the first rows: where the kept candidates certify a neighbour set,
        it is the one the model finds."""
        rows = slice(0, min(n_rows, self.X.shape[0]))
        k = self.k
        if self.base_neigh is not None:
            theirs = self.base_neigh[rows]
        else:
            theirs = quietly(self.model.kneighbors, self.X[rows], None, False)
        e = self.c_err * (2.0 * self.x_norm[rows] + 2.0 * self.y_norm_max)
        cand_d = self.cand_d[rows]
        if cand_d.shape[1] > k:
            certain = cand_d[:, k] - cand_d[:, k - 1] > 4.0 * e
        else:
            certain = np.ones(cand_d.shape[0], dtype=bool)
        mine = np.sort(self.cand_idx[rows, :k], axis=1)
        return bool(np.array_equal(mine[certain], np.sort(theirs, axis=1)[certain]))

    def _rescore(self, r, rows, cols, new, E, neigh, status) -> None:
        """Certified neighbours of ``rows`` against every training point (or status 2).

        Beyond a quarter of the rows the copy is left to the model (as costly, and exact).
        """
        if rows.size > max(1, self.X.shape[0] // 4):
            status[r, rows] = 2
            return
        k, n_t = self.k, self.Y.shape[0]
        kk = min(k + 1, n_t)
        Xr = self.X[rows].copy()
        Xr[:, cols] = new[r, rows]
        d = np.einsum("ij,ij->i", Xr, Xr)[:, None] + self.y_norm[None, :] - 2.0 * (Xr @ self.Y.T)
        top = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        top_d = np.take_along_axis(d, top, axis=1)
        order = np.argsort(top_d, axis=1, kind="stable")
        best_d = np.take_along_axis(top_d, order, axis=1)
        best_i = np.take_along_axis(top, order, axis=1)
        e = E[r, rows]
        ok = np.ones(rows.size, dtype=bool)
        if kk > k:
            ok &= best_d[:, k] - best_d[:, k - 1] > 4.0 * e
        if not self.classifier and k > 1:
            ok &= np.all(np.diff(best_d[:, :k], axis=1) > 4.0 * e[:, None], axis=1)
        status[r, rows] = np.where(ok, 1, 2)
        neigh[r, rows] = best_i[:, :k]

    def unaffected(self, cols: np.ndarray) -> bool:
        """Distances always depend on every column."""
        return False

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy, and whether each copy was fully certified."""
        X = self.X
        cols = np.asarray(cols, dtype=np.int64)
        R, m = orders.shape
        old = X[:, cols]
        new = np.ascontiguousarray(old[orders])  # (R, m, g)
        changed = np.any(new.view(np.uint64) != old.view(np.uint64)[None], axis=2)
        total = new + old[None]
        span = np.maximum(
            np.abs(total - 2.0 * self.y_min[cols]), np.abs(total - 2.0 * self.y_max[cols])
        )
        M = (np.abs(new - old[None]) * span).sum(axis=2) * (1.0 + 1e-9) + 1e-300
        E = self.c_err * (
            2.0 * self.x_norm[None, :] + (new * new).sum(axis=2) + 2.0 * self.y_norm_max
        )
        hopeless = np.zeros(R, dtype=bool)
        if self.cand_d.shape[1] < self.Y.shape[0]:
            # A row whose change bound exceeds the margin of its kept candidates will likely
            # need rescoring against every point; when many do (a large group), the model
            # is as fast: hand the whole copy over without trying.
            margin = self.cand_d[:, -1] - self.cand_d[:, min(self.k, self.cand_d.shape[1] - 1)]
            hopeless = ((margin[None, :] <= M) & changed).sum(axis=1) > m // 4
            changed[hopeless] = False
        neigh = np.zeros((R, m, self.k), dtype=np.int64)
        status = np.zeros((R, m), dtype=np.int8)
        kernel = compiled(_scan) or _scan_numpy
        kernel(
            self.cand_idx, self.cand_d, self.Y, X, cols, new, changed, M, E,
            self.k, not self.classifier, neigh, status,
        )  # fmt: skip
        for r in range(R):
            over = np.flatnonzero(status[r] == 3)
            if over.size:
                self._rescore(r, over, cols, new, E, neigh, status)
        exact = ~np.any(status >= 2, axis=1) & ~hopeless
        certified = status == 1
        outputs = {}
        if self.classifier:
            n_classes = len(self.model.classes_)
            votes = self.y_fit[neigh]  # (R, m, k) encoded labels
            counts = (votes[..., None] == np.arange(n_classes)).sum(axis=2).astype(np.float64)
            if "predict_proba" in self.base_outputs:
                proba = counts / counts.sum(axis=2, keepdims=True)
                outputs["predict_proba"] = np.where(
                    certified[..., None], proba, self.base_outputs["predict_proba"][None]
                )
            if "predict" in self.base_outputs:
                labels = self.model.classes_[np.argmax(counts, axis=2)]
                outputs["predict"] = np.where(certified, labels, self.base_outputs["predict"][None])
        else:
            y2 = self.y_fit.reshape((-1, 1)) if self.y_fit.ndim == 1 else self.y_fit
            preds = np.repeat(self.base_outputs["predict"][None], R, axis=0)
            for r in np.flatnonzero(exact & certified.any(axis=1)):
                full = self.base_neigh.copy()
                full[certified[r]] = neigh[r, certified[r]]
                preds[r] = np.mean(y2[full], axis=1).ravel()
            outputs["predict"] = preds
        return outputs, exact


def knn_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> NeighborsPath | None:
    """Factory: a :class:`NeighborsPath` for uniform-weight Euclidean k-NN models."""
    cls = type(estimator)
    if cls is KNeighborsClassifier:
        allowed = {"predict", "predict_proba"}
    elif cls is KNeighborsRegressor:
        allowed = {"predict"}
    else:
        return None
    if not set(base_outputs) <= allowed or not base_outputs:
        return None
    if estimator.weights != "uniform" or getattr(estimator, "outputs_2d_", False):
        return None
    if np.ndim(getattr(estimator, "_y", None)) != 1:
        return None
    if getattr(estimator, "effective_metric_", None) != "euclidean":
        return None
    if getattr(estimator, "effective_metric_params_", None):
        return None
    Y = getattr(estimator, "_fit_X", None)
    if not isinstance(Y, np.ndarray) or Y.dtype != np.float64 or Y.ndim != 2:
        return None
    if X.dtype != np.float64 or Y.shape[1] != X.shape[1]:
        return None
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        return None
    if not 1 <= estimator.n_neighbors <= Y.shape[0]:
        return None
    path = NeighborsPath(estimator, X, base_outputs)
    return path if path.agrees_with_model() else None
