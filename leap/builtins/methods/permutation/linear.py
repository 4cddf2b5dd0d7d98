"""Fast path for the labels of linear classifiers: ``coef_ · Δx`` updates, certified.

Permuting a group of columns changes each row's decision function by
``Σ_c coef_[:, c] * (x_new[c] - x_old[c])``; the update costs O(rows × group size) instead
of a full matrix product. Floating-point rounding makes the updated value differ slightly
from what ``decision_function`` would compute on the permuted matrix, so every changed row
gets a rigorous bound ``E`` on the difference between the two (both are sums of the same
products, each within ``γ_n Σ|terms|`` of the exact value, whatever the summation order).
A label is certified when the updated decision is farther than ``E`` from the decision
boundary (``0`` for binary problems, the runner-up class otherwise); a copy with any
uncertified row is handed back to the model. Only ``predict`` (labels) is served: scores of
probabilities or decision values would see the rounding itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.linear_model._base import LinearClassifierMixin
from sklearn.linear_model._ridge import _RidgeClassifierMixin

from leap.builtins.methods.permutation.fastpaths import OneBlasThread, quietly

_U = np.finfo(np.float64).eps / 2  # unit roundoff
_BLOCK_BYTES = 2**18  # size of one (copies × rows × columns) array when columns are batched


class LinearLabels:
    """``predict`` of a linear classifier on permuted copies (see module docstring)."""

    def __init__(
        self,
        X: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        decision: np.ndarray,
        classes: np.ndarray,
        base_labels: np.ndarray,
    ) -> None:
        self.X = X
        self.one_thread = OneBlasThread()
        self.coef = coef  # (n_classes or 1, n_features)
        self.decision = decision  # (n_rows, n_classes or 1), the model's own values
        self.classes = classes
        self.base_labels = base_labels
        abs_coef = np.abs(coef)
        # Σ_k |x_k w_k| + |b| per row and class: scale of the rounding of each decision.
        self.magnitude = np.abs(X) @ abs_coef.T + np.abs(intercept)
        self.gamma_base = 2.0 * (X.shape[1] + 4) * _U
        self.used = np.any(coef != 0, axis=0)
        self.column_max = np.abs(X).max(axis=0)

    def unaffected(self, cols: np.ndarray) -> bool:
        """A column with zero coefficients adds exact zeros: labels cannot change."""
        return not bool(np.any(self.used[cols]))

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Labels of each copy, and whether every changed row was certified."""
        with self.one_thread:
            return self._outputs(cols, orders)

    def _outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        old = self.X[:, cols]  # (m, g)
        new = old[orders]  # (R, m, g)
        changed = np.any(new.view(np.uint64) != old.view(np.uint64)[None], axis=2)
        W = self.coef[:, cols]  # (C, g)
        d = self.decision[None] + (new - old[None]) @ W.T  # (R, m, C)
        spread = (np.abs(new) + np.abs(old)[None]) @ np.abs(W).T
        gamma = self.gamma_base + 2.0 * len(cols) * _U
        bound = gamma * (2.0 * self.magnitude[None] + 2.0 * spread + np.abs(d))
        if d.shape[2] == 1:
            d, bound = d[:, :, 0], bound[:, :, 0]
            certain = np.abs(d) > bound
            index = (d > 0).astype(np.intp)
        else:
            index = np.argmax(d, axis=2)
            lead = np.take_along_axis(d - bound, index[..., None], axis=2)[..., 0]
            rest = d + bound
            np.put_along_axis(rest, index[..., None], -np.inf, axis=2)
            certain = lead > rest.max(axis=2)
        # An unchanged row has the unpermuted row's decision: its label is the model's.
        exact = np.all(certain | ~changed, axis=1)
        labels = self.classes.take(index)
        labels[~changed] = np.broadcast_to(self.base_labels, changed.shape)[~changed]
        return {"predict": labels}, exact

    def outputs_many(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """:meth:`outputs` of many groups; single columns in blocks, in one pass each."""
        with self.one_thread:
            return self._outputs_many(groups, orders)

    def _outputs_many(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        answers: list = [None] * len(groups)
        single = [i for i, cols in enumerate(groups) if len(cols) == 1]
        for i, cols in enumerate(groups):
            if len(cols) != 1:
                answers[i] = self._outputs(cols, orders)
        n_copies, m = orders.shape
        width = max(1, _BLOCK_BYTES // (8 * n_copies * m * self.coef.shape[0]))
        for start in range(0, len(single), width):
            block = single[start : start + width]
            cols = np.array([int(groups[i][0]) for i in block])
            labels, exact = self._block(cols, orders)
            for q, i in enumerate(block):
                answers[i] = ({"predict": labels[:, :, q]}, exact[:, q])
        return answers

    def _block(self, cols: np.ndarray, orders: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels (copies, rows, columns) when each of ``cols`` is permuted alone."""
        if self.coef.shape[0] != 1:
            answers = [self._outputs(np.array([c]), orders) for c in cols]
            labels = np.stack([out["predict"] for out, _ in answers], axis=2)
            return labels, np.stack([exact for _, exact in answers], axis=1)
        # Binary: the bound of the module docstring with |x_new|, |x_old| <= max |x_c|, so
        # the threshold a decision must clear depends on the row and column only.
        w = self.coef[0, cols]  # (b,)
        gamma = self.gamma_base + 2.0 * _U
        reach = self.column_max[cols] * np.abs(w)
        threshold = (gamma / (1.0 - gamma)) * (
            2.0 * self.magnitude[:, :1] + 4.0 * reach[None, :]
        )  # (m, b)
        old = self.X[:, cols]  # (m, b)
        new = old[orders]  # (R, m, b)
        d = (new - old[None]) * w
        d += self.decision[None, :, :1]
        uncertain = np.abs(d) <= threshold[None]
        if uncertain.any():
            # An unchanged row keeps the unpermuted row's decision: its label is the model's.
            changed = new.view(np.uint64) != old.view(np.uint64)[None]
            uncertain &= changed
        exact = ~uncertain.any(axis=1)  # (R, b)
        return self.classes.take((d > 0).view(np.int8)), exact


def linear_labels(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> LinearLabels | None:
    """Factory: a :class:`LinearLabels` when only ``predict`` of a linear classifier is read."""
    if set(base_outputs) != {"predict"}:
        return None
    cls = type(estimator)
    if not (
        isinstance(estimator, LinearClassifierMixin)
        and cls.decision_function is LinearClassifierMixin.decision_function
    ):
        return None
    if cls.predict is _RidgeClassifierMixin.predict:
        # Ridge classifiers threshold differently only for multilabel targets.
        binarizer = getattr(estimator, "_label_binarizer", None)
        if binarizer is None or binarizer.y_type_.startswith("multilabel"):
            return None
    elif cls.predict is not LinearClassifierMixin.predict:
        return None
    coef = getattr(estimator, "coef_", None)
    classes = getattr(estimator, "classes_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or classes is None:
        return None
    if X.dtype != np.float64 or not np.all(np.isfinite(X)):
        return None
    W = np.atleast_2d(coef)
    n_out = W.shape[0]
    classes = np.asarray(classes)
    if W.ndim != 2 or W.shape[1] != X.shape[1] or len(classes) != (2 if n_out == 1 else n_out):
        return None
    intercept = np.broadcast_to(np.asarray(estimator.intercept_, dtype=np.float64), (n_out,))
    decision = np.asarray(quietly(estimator.decision_function, X), dtype=np.float64).reshape(
        -1, n_out
    )
    base = np.asarray(base_outputs["predict"])
    index = (decision[:, 0] > 0).astype(np.intp) if n_out == 1 else np.argmax(decision, axis=1)
    if base.shape != (X.shape[0],) or not np.array_equal(classes.take(index), base):
        return None
    return LinearLabels(X, W, intercept, decision, classes, base)
