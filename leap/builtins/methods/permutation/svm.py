"""Fast path for kernel SVMs (``SVC``, ``NuSVC``, ``SVR``, ``NuSVR``): kernel updates, certified.

An SVM's output is ``Σ_k a_k K(x, s_k) + b`` over its support vectors ``s_k``. The kernel
depends on ``x`` through one number per support vector: the squared distance
``Q = |x - s_k|²`` (RBF) or the dot product ``Q = x · s_k`` (linear, polynomial, sigmoid).
Permuting a group of columns changes that number by a sum over the group only,
``Σ_c (x'_c - s_kc)² - (x_c - s_kc)²`` or ``Σ_c (x'_c - x_c) s_kc``, so a permuted row costs
O(support vectors × group size) instead of O(support vectors × features).

Rounding makes the updated values differ slightly from libsvm's. Both ``Q`` values are
within a rigorous bound of the exact one (sums of nonnegative terms ``(|x_c| + |s_kc|)²``,
or of ``|x_c s_kc|``, bound every summation order, BLAS's included); the bound carries
through the kernel function (``exp``, ``tanh``, integer powers: their derivatives are
bounded on the interval) and the weighted sum to a bound ``E`` on each decision value. A
label is certified when every pairwise decision is farther than ``E`` from 0 (libsvm votes
on the signs); a copy with an uncertified row goes to the model. Decision values are
served within ``E`` of the model's, and their order — which rank scores read — is certified
too (:func:`~leap.builtins.methods.permutation.fastpaths.order_certified`). Probabilities
(Platt scaling with pairwise coupling, an iteration whose stopping rule is not continuous)
are not served: those scorers use the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from leap.builtins.methods.permutation.fastpaths import (
    OneBlasThread,
    abs_column_max,
    abs_product,
    order_certified,
    quietly,
)

_U = np.finfo(np.float64).eps / 2  # unit roundoff
_BLOCK_ELEMENTS = 2**14  # (rows × support vectors) per block of kernel values
_TYPICAL_SHARE = 1e-3  # typical rounding, as a share of the rigorous bound (see jitter)


class KernelPath:
    """``predict`` / ``decision_function`` of a fitted libsvm model on permuted copies."""

    def __init__(
        self,
        model: Any,
        X: np.ndarray,
        base_outputs: Mapping[str, np.ndarray],
        pair_coef: np.ndarray,
        intercept: np.ndarray,
    ) -> None:
        self.X = X
        self.one_thread = OneBlasThread()
        self.S = np.ascontiguousarray(model.support_vectors_, dtype=np.float64)
        self.kernel = model.kernel
        self.gamma = float(model._gamma)
        self.coef0 = float(model.coef0)
        self.degree = int(model.degree)
        self.A = pair_coef  # (n_pairs, n_sv)
        self.A2 = np.ascontiguousarray(np.vstack([pair_coef, np.abs(pair_coef)]).T)
        self.intercept = intercept
        self.classes = getattr(model, "classes_", None)
        self.regressor = self.classes is None
        self.ovr = (
            not self.regressor and len(self.classes) > 2 and model.decision_function_shape == "ovr"
        )
        self.base = {name: np.asarray(out) for name, out in base_outputs.items()}
        self.col_max = abs_column_max(X)
        # Largest |s_kc| per column: Σ_c (|x_c| + s_max_c)² (or Σ_c |x_c| s_max_c) bounds the
        # terms of every support vector's squared distance (dot product) at once, with no
        # (rows × support vectors) array besides Q itself.
        self.s_max = np.abs(self.S).max(axis=0)
        self.Q = X @ self.S.T
        if self.kernel == "rbf":
            self.Q *= -2.0
            self.Q += np.einsum("ij,ij->i", X, X)[:, None]
            self.Q += np.einsum("ij,ij->i", self.S, self.S)[None, :]
            self.reach = (
                np.einsum("ij,ij->i", X, X)
                + 2.0 * abs_product(X, self.s_max)
                + float(self.s_max @ self.s_max)
            )
        else:
            self.reach = abs_product(X, self.s_max)  # per row

    #: False when the scorer reads values only, not their order (set by the planner).
    order_matters = True

    def jitter(self, signs: np.ndarray) -> dict[str, np.ndarray] | None:
        """Served values on the unpermuted rows moved by ``signs`` times a typical rounding;
        ``None`` for labels only. See
        :func:`~leap.builtins.methods.permutation.method.rounding_is_harmless`.

        The rigorous bound sums worst cases over features and support vectors; measured
        differences from libsvm are 1e-6 to 1e-4 of it (SVR, 20 and 435 features), so a
        thousandth of it stands for the typical rounding.
        """
        name = "predict" if self.regressor else "decision_function"
        if name not in self.base:
            return None
        _, err = self._block(self.Q.copy(), self.reach, 0)  # _block works in place
        typical = _TYPICAL_SHARE * err.sum(axis=1)
        base = np.asarray(self.base[name], dtype=np.float64)
        moved = signs * typical
        return {name: base + (moved[:, None] if base.ndim == 2 else moved)}

    def unaffected(self, cols: np.ndarray) -> bool:
        """A column that is zero in every support vector cannot change a dot product."""
        if self.kernel == "rbf":
            return False
        return not bool(np.any(self.S[:, cols] != 0))

    def _kernel(self, Q: np.ndarray) -> np.ndarray:
        g, r = self.gamma, self.coef0
        if self.kernel == "rbf":
            np.multiply(Q, -g, out=Q)  # in place: no temporary of the block's size
            return np.exp(Q, out=Q)
        if self.kernel == "linear":
            return Q
        t = Q * g + r
        if self.kernel == "poly":
            return t**self.degree
        return np.tanh(t, out=t)

    def _error(self, total: np.ndarray, Q: np.ndarray, reach: np.ndarray, g: int) -> np.ndarray:
        """Bound on |libsvm's decision - ours|, from Σ_k |a_k| K_k (``total``) or ``Q``."""
        n_sv, p = self.S.shape
        dq = 8.0 * (p + 4 * g + 8) * _U * reach  # per row: |Q_model - Q_ours|
        sum_err = 2.0 * (n_sv + 4) * _U
        if self.kernel == "rbf":
            a = self.gamma * dq[:, None]
            return total * (1.02 * a + 4.0 * _U + sum_err)
        if self.kernel == "linear":
            return total * sum_err + np.abs(self.A).sum(axis=1)[None] * dq[:, None]
        # |t_model - t_ours| <= dt; bound the kernel's change by its derivative on the interval.
        dt = self.gamma * dq + 4.0 * _U * (self.gamma * reach + abs(self.coef0))
        t_hi = np.abs(Q * self.gamma + self.coef0) + dt[..., None]
        if self.kernel == "poly":
            d = self.degree
            dk = d * t_hi ** max(d - 1, 0) * dt[..., None] + 2.0 * (d + 2) * _U * t_hi**d
        else:
            dk = dt[..., None] + 4.0 * _U
        kern = self._kernel(Q.copy())
        return (dk + sum_err * np.abs(kern)) @ np.abs(self.A).T

    def _decisions(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairwise decisions (copies, rows, pairs), their bounds, and the changed rows."""
        old = self.X[:, cols]
        new = old[orders]  # (R, m, g)
        changed = np.any(new.view(np.uint64) != old.view(np.uint64)[None], axis=2)
        R, m = changed.shape
        n_pairs, n_sv = self.A.shape
        g = len(cols)
        Sg = self.S[:, cols]  # (n_sv, g)
        top = self.col_max[cols] + self.s_max[cols]
        growth = float(top @ top)
        if self.kernel != "rbf":
            growth = float(self.col_max[cols] @ self.s_max[cols])
        dec = np.zeros((R, m, n_pairs))
        err = np.zeros((R, m, n_pairs))
        step = max(1, _BLOCK_ELEMENTS // max(1, n_sv))
        for r in range(R):
            rows = np.flatnonzero(changed[r])
            for start in range(0, len(rows), step):
                idx = rows[start : start + step]
                diff = new[r, idx] - old[idx]  # (b, g)
                if self.kernel == "rbf":
                    both = new[r, idx] + old[idx]
                    if g == 1:
                        delta = both[:, :1] - 2.0 * Sg[:, 0][None, :]
                        delta *= diff[:, :1]  # in place: one (rows × vectors) array, not two
                    else:
                        delta = np.einsum("bc,bkc->bk", diff, both[:, None, :] - 2.0 * Sg[None])
                else:
                    delta = diff @ Sg.T
                Q = self.Q[idx]  # a copy (fancy index), updated in place
                Q += delta
                del delta
                dec[r, idx], err[r, idx] = self._block(Q, self.reach[idx] + growth, g)
                del Q  # not alive beside the next block's arrays
        return dec, err, changed

    def _block(self, Q: np.ndarray, reach: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Decisions (rows, pairs) from kernel arguments ``Q`` (rows, support vectors)."""
        n_pairs = self.A.shape[0]
        if self.kernel in ("rbf", "linear"):
            kern = self._kernel(Q)
            both_sums = kern @ self.A2  # (b, 2 * n_pairs)
            dec = both_sums[:, :n_pairs] + self.intercept
            err = self._error(both_sums[:, n_pairs:], Q, reach, g)
        else:
            err = self._error(None, Q, reach, g)
            dec = self._kernel(Q) @ self.A.T + self.intercept
        err += 4.0 * _U * (np.abs(dec) + np.abs(self.intercept))
        return dec, err

    def _labels(self, dec: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """libsvm's one-vs-one vote (ties to the first class) and whether it is certified."""
        certain = np.all(np.abs(dec) > err, axis=2)
        n_classes = len(self.classes)
        if n_classes == 2:
            return self.classes.take((dec[..., 0] > 0).astype(np.intp)), certain
        votes = np.zeros((*dec.shape[:2], n_classes), dtype=np.intp)
        p = 0
        for i in range(n_classes):
            for j in range(i + 1, n_classes):
                win = dec[..., p] > 0
                votes[..., i] += win
                votes[..., j] += ~win
                p += 1
        return self.classes.take(np.argmax(votes, axis=2)), certain

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy, and whether every changed row was certified."""
        with self.one_thread:
            return self._outputs(cols, orders)

    def _outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        dec, err, changed = self._decisions(cols, orders)
        outs: dict[str, np.ndarray] = {}
        exact = np.ones(orders.shape[0], dtype=bool)
        keep = ~changed
        if self.regressor:
            values = dec[..., 0]
            values[keep] = np.broadcast_to(self.base["predict"], keep.shape)[keep]
            spread = np.where(changed, err[..., 0], 0.0)
            if self.order_matters:
                exact &= order_certified(values[..., None], spread[..., None])
            return {"predict": values}, exact
        if "predict" in self.base:
            labels, certain = self._labels(dec, err)
            exact &= np.all(certain | keep, axis=1)
            labels[keep] = np.broadcast_to(self.base["predict"], keep.shape)[keep]
            outs["predict"] = labels
        if "decision_function" in self.base:
            base = self.base["decision_function"]
            if self.ovr:
                from sklearn.utils.multiclass import _ovr_decision_function

                certain = np.all(np.abs(dec) > err, axis=2)
                exact &= np.all(certain | keep, axis=1)
                R, m, n_pairs = dec.shape
                flat = dec.reshape(R * m, n_pairs)
                values = _ovr_decision_function(flat < 0, -flat, len(self.classes))
                values = values.reshape(R, m, -1)
                spread = np.broadcast_to(err.sum(axis=2, keepdims=True), values.shape)
            else:
                values = dec if base.ndim == 2 else dec[..., 0]
                spread = err if base.ndim == 2 else err[..., 0]
            values[keep] = np.broadcast_to(base, values.shape)[keep]
            spread = np.where(changed.reshape(changed.shape + (1,) * (values.ndim - 2)), spread, 0)
            shaped = values if values.ndim == 3 else values[..., None]
            if self.order_matters:
                exact &= order_certified(shaped, spread.reshape(shaped.shape))
            outs["decision_function"] = values
        return outs, exact


def _pair_coefficients(model: Any) -> np.ndarray:
    """One row of support-vector weights per one-vs-one pair (zeros outside the pair)."""
    dual = np.asarray(model.dual_coef_, dtype=np.float64)
    n_sv = dual.shape[1]
    counts = np.asarray(model.n_support_)
    if len(counts) <= 2 or dual.shape[0] == 1:
        return dual[:1].copy()
    starts = np.concatenate([[0], np.cumsum(counts)])
    n_classes = len(counts)
    rows = []
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            row = np.zeros(n_sv)
            si = slice(starts[i], starts[i + 1])
            sj = slice(starts[j], starts[j + 1])
            row[si] = dual[j - 1, si]
            row[sj] = dual[i, sj]
            rows.append(row)
    return np.array(rows)


def kernel_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> KernelPath | None:
    """Factory: a :class:`KernelPath` for a dense, fitted SVC/NuSVC/SVR/NuSVR."""
    from sklearn.svm import SVC, SVR, NuSVC, NuSVR

    cls = type(estimator)
    if cls not in (SVC, NuSVC, SVR, NuSVR):
        return None
    classifier = cls in (SVC, NuSVC)
    allowed = {"predict", "decision_function"} if classifier else {"predict"}
    if not base_outputs or not set(base_outputs) <= allowed:
        return None
    if getattr(estimator, "_sparse", True) or estimator.kernel not in (
        "rbf",
        "linear",
        "poly",
        "sigmoid",
    ):
        return None
    if classifier and getattr(estimator, "break_ties", False):
        return None
    if X.dtype != np.float64 or X.shape[0] == 0 or not np.isfinite(abs_column_max(X)).all():
        return None
    S = getattr(estimator, "support_vectors_", None)
    if not isinstance(S, np.ndarray) or S.ndim != 2 or S.shape[1] != X.shape[1]:
        return None
    if S.shape[0] == 0:
        return None
    if estimator.kernel == "poly" and int(estimator.degree) != estimator.degree:
        return None
    pairs = _pair_coefficients(estimator)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64).ravel()
    if pairs.shape[0] != intercept.shape[0]:
        return None
    path = KernelPath(estimator, X, base_outputs, pairs, intercept)
    # Check the model's own arithmetic on the unpermuted rows: same decisions within the
    # bound, same labels.
    dec, err = path._block(path.Q.copy(), path.reach, 0)
    raw = quietly(estimator._decision_function, X) if classifier else None
    if classifier:
        raw = np.asarray(raw, dtype=np.float64).reshape(X.shape[0], -1)
        if cls in (SVC, NuSVC) and len(estimator.classes_) == 2:
            raw = raw.reshape(-1, 1)
    else:
        raw = np.asarray(base_outputs["predict"], dtype=np.float64).reshape(-1, 1)
    if raw.shape != dec.shape or not np.all(np.abs(raw - dec) <= err):
        return None
    if "predict" in base_outputs and classifier:
        labels, _ = path._labels(raw[None], np.zeros_like(raw)[None])
        if not np.array_equal(labels[0], np.asarray(base_outputs["predict"])):
            return None
    return path
