"""Fast path for multi-layer perceptrons (``MLPClassifier``, ``MLPRegressor``), certified.

An MLP's first layer is linear: ``z = x W + b``. Permuting a group of columns moves a row's
pre-activations by ``Σ_c (x'_c - x_c) W[c]``, one row of ``W`` per permuted column, so the
first layer costs O(group size × hidden units) per row instead of O(features × hidden
units); the rest of the network runs as in scikit-learn (same activation functions) on the
updated hidden layer.

Rounding makes every value differ slightly from the model's. LEAP carries a rigorous
bound through the network: the first layer's error is within ``γ Σ|x_c W_cu| + |b_u|``
for both computations (any summation order), an activation adds at most its Lipschitz
constant times the incoming error plus its own rounding, and each further layer maps an
error vector ``e`` to ``e |W|`` plus its own summation error. Labels are certified when
the winning probability beats the runner-up (or ``0.5`` for a binary output) by more than
twice the bound; a copy with an uncertified row goes to the model. Probabilities and
regression outputs are served within the bound (about 1e-14), and their order — which
rank scores read — is certified too
(:func:`~leap.builtins.methods.permutation.fastpaths.order_certified`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from leap.builtins.methods.permutation._jit import compiled
from leap.builtins.methods.permutation.fastpaths import (
    OneBlasThread,
    Projection,
    abs_column_max,
    abs_product,
    order_certified,
    quietly,
)

_U = np.finfo(np.float64).eps / 2  # unit roundoff
#: Lipschitz constant of each hidden activation, and whether it is computed exactly.
_LIPSCHITZ = {"identity": (1.0, True), "relu": (1.0, True), "tanh": (1.0, False)}
_LIPSCHITZ["logistic"] = (0.25, False)
_BLOCK_ELEMENTS = 2**16  # (rows × hidden units) per block


def _first_layer(Z1, rows, diff, W, out):
    """Loop kernel (compiled by numba): ``out = Z1[rows] + diff @ W``, with no temporary
    the size of ``out`` (the bound of :meth:`MLPPath._growth` holds in any order)."""
    n, h = out.shape
    for j in range(n):
        r = rows[j]
        for u in range(h):
            out[j, u] = Z1[r, u]
        for c in range(diff.shape[1]):
            d = diff[j, c]
            for u in range(h):
                out[j, u] += d * W[c, u]


def _first_layer_numpy(Z1, rows, diff, W, out):
    """Vectorised twin of :func:`_first_layer`."""
    np.take(Z1, rows, axis=0, out=out)
    out += diff @ W


class MLPPath:
    """Outputs of a fitted MLP on permuted copies (see module docstring)."""

    def __init__(
        self,
        model: Any,
        X: np.ndarray,
        base_outputs: Mapping[str, np.ndarray],
        projection: Projection | None = None,
    ) -> None:
        from sklearn.neural_network._base import ACTIVATIONS

        self.X = X
        self.one_thread = OneBlasThread()
        self.coefs = [np.asarray(W, dtype=np.float64) for W in model.coefs_]
        # |W1| (features × units) is as large as the rows' first layer for a wide input:
        # without a projection only a group's rows of it are made, when needed.
        self.abs_coefs = [
            None if i == 0 and projection is None else np.abs(W) for i, W in enumerate(self.coefs)
        ]
        self.intercepts = [np.asarray(b, dtype=np.float64) for b in model.intercepts_]
        self.hidden = ACTIVATIONS[model.activation]
        self.hidden_name = model.activation
        self.output = ACTIVATIONS[model.out_activation_]
        self.output_name = model.out_activation_
        self.classes = (
            getattr(model, "classes_", None) if hasattr(model, "_label_binarizer") else None
        )
        self.base = {name: np.asarray(out) for name, out in base_outputs.items()}
        W1, b1 = self.coefs[0], self.intercepts[0]
        self.col_max = abs_column_max(X)
        self.projection = projection
        p = X.shape[1]
        if projection is None:
            self.W_in = W1  # (p, h): how one input column moves the first layer
            self.Z1 = X @ W1 + b1
            gamma = 2.0 * (p + 4) * _U
            self.row_err = 2.0 * gamma * (abs_product(X, np.abs(W1)) + np.abs(b1))
        else:
            # z = ((x C^T - m C^T) / s) W1 + b1; the PCA's own output is the model's input.
            C, scale = projection.components, projection.scale
            self.W_in = (C.T / scale) @ W1
            T = np.abs(projection.transformed)
            self.Z1 = projection.transformed @ W1 + b1
            k = C.shape[0]
            gamma_p, gamma_k = 2.0 * (p + 4) * _U, 2.0 * (k + 4) * _U
            A = (abs_product(X, np.abs(C).T) + np.abs(projection.mean) @ np.abs(C).T) / scale
            self.abs_C_scaled = np.abs(C) / scale[:, None]  # (k, p)
            self.row_err = 2.0 * (
                (2.0 * gamma_p * A + (4.0 * _U + 2.0 * gamma_k) * T) @ self.abs_coefs[0]
                + 2.0 * gamma_k * np.abs(b1)
            )
        self.used = np.any(self.W_in != 0, axis=1)
        self.row_err_max = self.row_err.max(axis=1)
        del self.row_err  # only its row maxima are used
        self.Z1_max = np.abs(self.Z1).max(axis=1)
        self.W_in_max = np.abs(self.W_in).max(axis=1)
        self.stacked = [None] + [np.hstack([W, np.abs(W)]) for W in self.coefs[1:]]
        self.col_sums = [None] + [np.abs(W).sum(axis=0) for W in self.coefs[1:]]

    def unaffected(self, cols: np.ndarray) -> bool:
        """A column whose first-layer weights are all zero adds exact zeros."""
        return not bool(np.any(self.used[cols]))

    #: False when the scorer reads values only, not their order (set by the planner).
    order_matters = True

    def jitter(self, signs: np.ndarray) -> dict[str, np.ndarray] | None:
        """Served outputs on the unpermuted rows with the first layer moved by ``signs``
        times a typical rounding (``4 u √(n + 1)`` of its terms' size); ``None`` when only
        labels are served. See
        :func:`~leap.builtins.methods.permutation.method.rounding_is_harmless`."""
        if self.classes is not None and set(self.base) == {"predict"}:
            return None
        n = self.X.shape[1] if self.projection is None else self.projection.transformed.shape[1]
        gamma = 2.0 * (n + 4) * _U  # row_err_max is 2 gamma times the terms' size
        typical = 4.0 * _U * np.sqrt(n + 1.0) * self.row_err_max / (2.0 * gamma)
        out, _ = self._forward(self.Z1 + (signs * typical)[:, None], np.zeros(len(signs)))
        if self.classes is None:
            return {"predict": out.reshape(self.base["predict"].shape)}
        proba = np.column_stack([1 - out[:, 0], out[:, 0]]) if out.shape[1] == 1 else out
        return {**self.base, "predict_proba": proba} if "predict_proba" in self.base else None

    def _forward(self, Z: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs and their bounds from first-layer ``Z`` (rows, units), each within ``e``.

        ``e`` is one bound per row for all of its units; it stays a per-row number through
        the hidden layers, which keeps the bound to one extra matrix product per layer.
        """
        n_layers = len(self.coefs)
        lip, exact = _LIPSCHITZ[self.hidden_name]
        nonnegative = self.hidden_name in ("relu", "logistic")
        E = e[:, None]
        for i in range(1, n_layers):
            # A row whose relu units are all certainly below 0 is exactly 0 in both
            # computations, so the next layer gets exactly its bias.
            idle = (Z.max(axis=1) + e < 0) if self.hidden_name == "relu" else None
            self.hidden(Z)  # in place, scikit-learn's own function
            e = lip * e if exact else lip * e + 8.0 * _U  # |tanh|, |logistic| <= 1
            W, b = self.coefs[i], self.intercepts[i]
            k = W.shape[1]
            gamma = 2.0 * (W.shape[0] + 6) * _U
            if nonnegative:
                both = Z @ self.stacked[i]  # a @ [W, |W|] in one product (a >= 0)
                z, size = both[:, :k] + b, both[:, k:]
            else:
                z, size = Z @ W + b, np.abs(Z) @ self.abs_coefs[i]
            E = e[:, None] * ((1.0 + gamma) * self.col_sums[i]) + gamma * (size + np.abs(b))
            if idle is not None:
                E[idle] = 0.0
            Z = z
            if i < n_layers - 1:
                e = E.max(axis=1)
        self.output(Z)
        name = self.output_name
        if name == "logistic":
            E = 0.25 * E + 4.0 * _U
        elif name == "softmax":
            E = np.broadcast_to(0.5 * E.max(axis=1, keepdims=True), Z.shape) + (Z.shape[1] + 8) * _U
        return Z, E

    def _spread(self, cols: np.ndarray) -> float:
        """Error added to every first-layer unit of a row whose ``cols`` moved."""
        reach = (2.0 * self.col_max[cols]) @ self.W_in_max[cols]  # bound on |Z - Z1|
        return float(self._growth(cols).max() + 2.0 * _U * reach)

    def _growth(self, cols: np.ndarray) -> np.ndarray:
        """Extra first-layer error (per unit) when ``cols`` take other rows' values."""
        p, g = self.X.shape[1], len(cols)
        if self.projection is None:
            gamma = 2.0 * (p + g + 4) * _U
            return 4.0 * gamma * ((2.0 * self.col_max[cols]) @ np.abs(self.coefs[0][cols]))
        k = self.projection.components.shape[0]
        gamma_p, gamma_k, gamma_g = (2.0 * (n + 4) * _U for n in (p, k, g))
        reach = self.abs_C_scaled[:, cols] @ self.col_max[cols]  # (k,)
        per_unit = reach @ self.abs_coefs[0]  # (h,)
        return 2.0 * per_unit * (gamma_p + 4.0 * _U + 2.0 * gamma_k + 2.0 * (gamma_k + gamma_g))

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy, and whether every changed row was certified."""
        return self.outputs_many([cols], orders)[0]

    def outputs_many(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """:meth:`outputs` of many groups: their changed rows go through the network
        together, in blocks; each group is then certified alone."""
        with self.one_thread:
            out, err, changed = self._network(groups, orders)
            R = orders.shape[0]
            return [
                self._serve(out[at : at + R], err[at : at + R], changed[at : at + R])
                for at in range(0, len(groups) * R, R)
            ]

    def _network(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's outputs and bounds on every changed row of each group's copies
        (the groups' copies stacked), and which rows changed."""
        R, m = orders.shape
        G = len(groups)
        n_out = self.coefs[-1].shape[1]
        out = np.empty((G * R, m, n_out))
        err = np.zeros((G * R, m, n_out))
        changed = np.empty((G * R, m), dtype=bool)
        moves = []  # per group: its columns, changed (copy, row), their moves, extra error
        for q, cols in enumerate(groups):
            old = self.X[:, cols]
            new = old[orders]  # (R, m, g)
            changed[q * R : (q + 1) * R] = np.any(
                new.view(np.uint64) != old.view(np.uint64)[None], axis=2
            )
            c, rows = np.nonzero(changed[q * R : (q + 1) * R])
            moves.append((cols, c + q * R, rows, new[c, rows] - old[rows], self._spread(cols)))
        step = max(1, _BLOCK_ELEMENTS // self.coefs[0].shape[1])
        copy_of = np.concatenate([c for _, c, _, _, _ in moves])
        row_of = np.concatenate([rows for _, _, rows, _, _ in moves])
        spread = np.concatenate([np.full(len(rows), s) for _, _, rows, _, s in moves])
        ends = np.cumsum([len(rows) for _, _, rows, _, _ in moves])
        first_layer = compiled(_first_layer) or _first_layer_numpy
        for start in range(0, len(row_of), step):
            stop = min(start + step, len(row_of))
            rows = row_of[start:stop]
            Z = np.empty((stop - start, self.Z1.shape[1]))
            first = int(np.searchsorted(ends, start, side="right"))
            for q in range(first, G):  # the groups with rows in this block
                begin = 0 if q == 0 else int(ends[q - 1])
                if begin >= stop:
                    break
                lo, hi = max(begin, start), min(int(ends[q]), stop)
                cols, _, _, diff, _ = moves[q]
                first_layer(
                    self.Z1, rows[lo - start : hi - start], diff[lo - begin : hi - begin],
                    self.W_in[cols], Z[lo - start : hi - start],
                )  # fmt: skip
            e = self.row_err_max[rows] + spread[start:stop] + 2.0 * _U * self.Z1_max[rows]
            c = copy_of[start:stop]
            out[c, rows], err[c, rows] = self._forward(Z, e)
        return out, err, changed

    def _serve(
        self, out: np.ndarray, err: np.ndarray, changed: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One group's outputs from the network's (unchanged rows: the model's own), and
        whether each copy is certified."""
        R, m, n_out = out.shape
        keep = ~changed
        exact = np.ones(R, dtype=bool)
        outs: dict[str, np.ndarray] = {}
        if self.classes is None:  # regressor: predict is the output layer
            base = self.base["predict"].reshape(m, n_out)
            out[keep] = np.broadcast_to(base, out.shape)[keep]
            err[keep] = 0.0
            if self.order_matters:
                exact &= order_certified(out, err)
            outs["predict"] = out[..., 0] if self.base["predict"].ndim == 1 else out
            return outs, exact
        if n_out == 1:
            proba = np.stack([1 - out[..., 0], out[..., 0]], axis=2)
            err = np.concatenate([err, err], axis=2)
        else:
            proba = out
        if "predict_proba" in self.base:
            proba[keep] = np.broadcast_to(self.base["predict_proba"], proba.shape)[keep]
            err[keep] = 0.0
            if self.order_matters:
                exact &= order_certified(proba, err)
            outs["predict_proba"] = proba
        if "predict" in self.base:
            if n_out == 1:
                p1 = out[..., 0]
                certain = np.abs(p1 - 0.5) > 2.0 * err[..., 0]
                index = (p1 > 0.5).astype(np.intp)
            else:
                index = np.argmax(out, axis=2)
                top = np.take_along_axis(out, index[..., None], axis=2)[..., 0]
                rest = out.copy()
                np.put_along_axis(rest, index[..., None], -np.inf, axis=2)
                # inf - inf (an overflowing activation) is NaN: not certain, the model answers
                with np.errstate(invalid="ignore"):
                    certain = top - rest.max(axis=2) > 4.0 * err.max(axis=2)
            labels = self.classes.take(index)
            labels[keep] = np.broadcast_to(self.base["predict"], keep.shape)[keep]
            exact &= np.all(certain | keep, axis=1)
            outs["predict"] = labels
        return outs, exact


def mlp_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> MLPPath | None:
    """Factory: an :class:`MLPPath` for a fitted, dense, float64 MLP."""
    return _build(estimator, X, base_outputs, None)


def mlp_projected_path(
    estimator: Any, X: np.ndarray, projection: Projection, base_outputs: Mapping[str, np.ndarray]
) -> MLPPath | None:
    """Factory for ``PCA`` then an MLP: permuted input columns move the first layer by
    ``Δx (C^T / s) W``, a rank-``g`` change of the projected rows."""
    return _build(estimator, X, base_outputs, projection)


mlp_path.with_projection = mlp_projected_path  # type: ignore[attr-defined]  # read by fastpaths


def _build(
    estimator: Any,
    X: np.ndarray,
    base_outputs: Mapping[str, np.ndarray],
    projection: Projection | None,
) -> MLPPath | None:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = type(estimator)
    if cls not in (MLPClassifier, MLPRegressor):
        return None
    allowed = {"predict", "predict_proba"} if cls is MLPClassifier else {"predict"}
    if not base_outputs or not set(base_outputs) <= allowed:
        return None
    if estimator.activation not in _LIPSCHITZ:
        return None
    if cls is MLPClassifier:
        binarizer = getattr(estimator, "_label_binarizer", None)
        if binarizer is None or binarizer.y_type_ not in ("binary", "multiclass"):
            return None
        if estimator.out_activation_ not in ("logistic", "softmax"):
            return None
    elif estimator.out_activation_ != "identity":
        return None
    return checked_network(estimator, estimator, X, base_outputs, projection)


def checked_network(
    network: Any,
    estimator: Any,
    X: np.ndarray,
    base_outputs: Mapping[str, np.ndarray],
    projection: Projection | None,
) -> MLPPath | None:
    """An :class:`MLPPath` for ``network`` (``coefs_``, ``intercepts_``, ``activation``,
    ``out_activation_``, and ``classes_`` with ``_label_binarizer`` for a classifier) whose
    outputs on ``X`` must be ``estimator``'s own, within the path's bound; else ``None``."""
    coefs = getattr(network, "coefs_", None)
    if not coefs or any(np.asarray(W).dtype != np.float64 for W in coefs):
        return None
    width = X.shape[1] if projection is None else projection.transformed.shape[1]
    if coefs[0].shape[0] != width or X.dtype != np.float64 or X.shape[0] == 0:
        return None
    if not np.isfinite(abs_column_max(X)).all():
        return None
    path = MLPPath(network, X, base_outputs, projection)
    # The model's own outputs on the unpermuted rows must lie within the bound.
    out, err = path._forward(path.Z1.copy(), path.row_err_max + 2.0 * _U * path.Z1_max)
    if path.classes is None:
        base = np.asarray(base_outputs["predict"], dtype=np.float64).reshape(out.shape)
        return path if np.all(np.abs(base - out) <= err) else None
    seen = X if projection is None else projection.transformed  # what the model reads
    proba = None
    if "predict_proba" not in base_outputs:
        proba = quietly(estimator.predict_proba, seen)
    proba = np.asarray(base_outputs.get("predict_proba", proba), dtype=np.float64)
    mine = np.column_stack([1 - out[:, 0], out[:, 0]]) if out.shape[1] == 1 else out
    bound = np.column_stack([err[:, 0], err[:, 0]]) if out.shape[1] == 1 else err
    if proba.shape != mine.shape or not np.all(np.abs(proba - mine) <= bound):
        return None
    if "predict" in base_outputs:
        index = (proba[:, 1] > 0.5).astype(np.intp) if out.shape[1] == 1 else proba.argmax(1)
        if not np.array_equal(estimator.classes_.take(index), np.asarray(base_outputs["predict"])):
            return None
    return path
