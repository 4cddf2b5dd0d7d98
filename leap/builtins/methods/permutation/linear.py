"""Fast path for linear models: ``coef_ · Δx`` updates of the decision, certified.

Permuting a group of columns changes each row's decision function by
``Σ_c coef_[:, c] * (x_new[c] - x_old[c])``; the update costs O(rows × group size) instead
of a full matrix product. Floating-point rounding makes the updated value differ slightly
from what the model would compute on the permuted matrix, so every changed row gets a
rigorous bound ``E`` on the difference between the two (both are sums of the same
products, each within ``γ_n Σ|terms|`` of the exact value, whatever the summation order).

What is served, from that one update:

- labels (``predict`` of a classifier), certified when the updated decision is farther
  than ``E`` from the decision boundary (``0`` for binary problems, the runner-up class
  otherwise);
- decision values (``decision_function``, ``predict`` of a regressor) within ``E``;
- probabilities of ``LogisticRegression`` (the logistic function, or the softmax for
  several classes) within ``E/4`` (binary) or ``max E/2`` (softmax), their Lipschitz
  constants, plus the functions' own rounding.

Continuous values are therefore not bitwise the model's, but within ~1e-14 of them, and
scores computed from them (R², log loss, Brier) within 1e-12 of scikit-learn's. Rank-based
scores (ROC AUC, average precision) read only the order of the values, and that order is
certified: no two values whose intervals overlap (ties included) may be reordered
(:func:`~leap.builtins.methods.permutation.fastpaths.order_certified`). A copy with any
uncertified row is handed back to the model; an unpermuted row keeps the model's own
outputs bitwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model._base import LinearClassifierMixin, LinearModel
from sklearn.linear_model._ridge import _RidgeClassifierMixin
from sklearn.utils.extmath import softmax

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
_BLOCK_BYTES = 2**18  # size of one (copies × rows × columns × outputs) array in a block


class LinearPath:
    """Outputs of a linear model on permuted copies (see module docstring).

    ``decision`` is the model's own decision (or regression output) on ``X``, shaped
    ``(rows, outputs)``; ``base_outputs`` the model's outputs to serve, by method name;
    ``classes`` the labels of a classifier (``None`` for a regressor); ``link`` is
    ``"logistic"`` or ``"softmax"`` when ``predict_proba`` is served; ``flat`` whether
    decision values are returned as one column (``(rows,)``).
    """

    def __init__(
        self,
        X: np.ndarray,
        coef: np.ndarray,
        intercept: np.ndarray,
        decision: np.ndarray,
        base_outputs: Mapping[str, np.ndarray],
        classes: np.ndarray | None = None,
        link: str | None = None,
        flat: bool = True,
    ) -> None:
        self.X = X
        self.one_thread = OneBlasThread()
        self.coef = coef  # (n_outputs, n_features)
        self.decision = decision  # (n_rows, n_outputs), the model's own values
        self.base = {name: np.asarray(out) for name, out in base_outputs.items()}
        self.classes = classes
        self.link = link
        self.flat = flat
        # Σ_k |x_k w_k| + |b| per row and output: scale of the rounding of each decision.
        self.magnitude = abs_product(X, np.abs(coef).T) + np.abs(intercept)
        self.gamma_base = 2.0 * (X.shape[1] + 4) * _U
        self.used = np.any(coef != 0, axis=0)
        self.column_max = abs_column_max(X)
        # Labels only: single columns in one compiled pass per block (same arithmetic).
        self.label_kernel = None
        if classes is not None and set(self.base) == {"predict"}:
            self.label_kernel = compiled(_labels_loop)
            flat_d = decision[:, 0] > 0
            self.base_index = flat_d.astype(np.intp) if coef.shape[0] == 1 else decision.argmax(1)

    def unaffected(self, cols: np.ndarray) -> bool:
        """A column with zero coefficients adds exact zeros: outputs cannot change."""
        return not bool(np.any(self.used[cols]))

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of each copy, and whether every changed row was certified."""
        with self.one_thread:
            return self._serve(*self._decisions(cols, orders))

    def outputs_many(
        self, groups: list[np.ndarray], orders: np.ndarray
    ) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
        """:meth:`outputs` of many groups; single columns in blocks, in one pass each."""
        with self.one_thread:
            answers: list = [None] * len(groups)
            single = [i for i, cols in enumerate(groups) if len(cols) == 1]
            for i, cols in enumerate(groups):
                if len(cols) != 1:
                    answers[i] = self._serve(*self._decisions(cols, orders))
            n_copies, m = orders.shape
            per_column = 8 * n_copies * m * (1 if self.label_kernel else self.coef.shape[0])
            width = max(1, _BLOCK_BYTES // per_column)
            for start in range(0, len(single), width):
                block = single[start : start + width]
                cols = np.array([int(groups[i][0]) for i in block])
                if self.label_kernel is not None:
                    outs, exact = self._block_labels(cols, orders)
                else:
                    outs, exact = self._serve(*self._block(cols, orders))
                for q, i in enumerate(block):
                    part = slice(q * n_copies, (q + 1) * n_copies)
                    answers[i] = ({name: out[part] for name, out in outs.items()}, exact[part])
            return answers

    #: False when the scorer reads values only, not their order (set by the planner).
    order_matters = True

    def jitter(self, signs: np.ndarray) -> dict[str, np.ndarray] | None:
        """The served outputs on the unpermuted rows with each row's decision moved by
        ``signs`` times a typical rounding (``4 u √(n + 1) Σ|x w|``); ``None`` when only
        labels are served, which are bitwise the model's. See
        :func:`~leap.builtins.methods.permutation.method.rounding_is_harmless`."""
        if set(self.base) == {"predict"} and self.classes is not None:
            return None
        typical = 4.0 * _U * np.sqrt(self.X.shape[1] + 1.0) * self.magnitude
        d = (self.decision + signs[:, None] * typical)[None]
        outs = {}
        for name, base in self.base.items():
            if name == "predict_proba":
                outs[name] = self._link(d, np.zeros_like(d))[0][0]
            elif name == "predict" and self.classes is not None:
                outs[name] = base
            else:
                outs[name] = d[0, :, 0] if self.flat else d[0]
        return outs

    def _decisions(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decisions ``(copies, rows, outputs)``, their bounds, and which rows changed."""
        old = self.X[:, cols]  # (m, g)
        new = old[orders]  # (R, m, g)
        changed = np.any(new.view(np.uint64) != old.view(np.uint64)[None], axis=2)
        W = self.coef[:, cols]  # (C, g)
        d = self.decision[None] + (new - old[None]) @ W.T
        spread = (np.abs(new) + np.abs(old)[None]) @ np.abs(W).T
        gamma = self.gamma_base + 2.0 * len(cols) * _U
        bound = gamma * (2.0 * self.magnitude[None] + 2.0 * spread + np.abs(d))
        return d, bound, changed

    def _block_labels(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Labels of :meth:`_block`'s copies by the compiled loop: same values, bounds and
        tie rule as :meth:`_serve`, without the block's temporaries."""
        assert self.label_kernel is not None and self.classes is not None
        W = np.ascontiguousarray(self.coef[:, cols].T)  # (b, C)
        old = np.ascontiguousarray(self.X[:, cols].T)  # (b, m)
        gamma = self.gamma_base + 2.0 * _U
        reach = self.column_max[cols][:, None] * np.abs(W)
        index, exact = self.label_kernel(
            old, np.ascontiguousarray(orders), W, self.decision, self.magnitude, reach,
            gamma, self.base_index,
        )  # fmt: skip
        b, R, m = index.shape
        return {"predict": self.classes.take(index.reshape(b * R, m))}, exact.reshape(b * R)

    def _block(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_decisions` of each of ``cols`` permuted alone, stacked column-major.

        Copy ``r`` of column ``q`` is row ``q * n_copies + r``. The bound uses
        ``|x_new|, |x_old| <= max |x_c|``, so its part other than ``|d|`` depends on the row
        and column only.
        """
        R = orders.shape[0]
        W = self.coef[:, cols].T  # (b, C)
        old = self.X[:, cols].T  # (b, m)
        new = old[:, orders]  # (b, R, m)
        delta = new - old[:, None]
        changed = new.view(np.uint64) != old.view(np.uint64)[:, None]
        d = delta[..., None] * W[:, None, None, :]  # (b, R, m, C)
        d += self.decision[None, None]
        gamma = self.gamma_base + 2.0 * _U
        reach = self.column_max[cols][:, None] * np.abs(W)  # (b, C)
        fixed = 2.0 * self.magnitude[None] + 4.0 * reach[:, None, :]  # (b, m, C)
        bound = np.abs(d)
        bound += fixed[:, None]
        bound *= gamma
        b, m = len(cols), orders.shape[1]
        shape = (b * R, m, W.shape[1])
        return d.reshape(shape), bound.reshape(shape), changed.reshape(b * R, m)

    def _serve(
        self, d: np.ndarray, bound: np.ndarray, changed: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of copies with decisions ``d`` (each within ``bound``), certified."""
        keep = ~changed
        bound[keep] = 0.0  # an unpermuted row's decision is the model's own, bitwise
        exact = np.ones(d.shape[0], dtype=bool)
        outs: dict[str, np.ndarray] = {}
        for name in self.base:
            if name == "predict" and self.classes is not None:
                outs[name], certain = self._labels(d, bound, keep)
            elif name == "predict_proba":
                outs[name], certain = self._proba(d, bound, keep)
            else:  # decision values: decision_function, or a regressor's predict
                outs[name] = d[..., 0] if self.flat else d
                certain = self._order(d, bound)
            exact &= certain
        return outs, exact

    def _order(self, values: np.ndarray, bound: np.ndarray) -> np.ndarray:
        """Per copy: the order of the values is certified, or the scorer does not read it."""
        if self.order_matters:
            return order_certified(values, bound)
        return np.ones(values.shape[0], dtype=bool)

    def _labels(
        self, d: np.ndarray, bound: np.ndarray, keep: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self.classes is not None
        if d.shape[2] == 1:
            certain = np.abs(d[..., 0]) > bound[..., 0]
            index = (d[..., 0] > 0).view(np.int8)
        else:
            index = np.argmax(d, axis=2)
            lead = np.take_along_axis(d - bound, index[..., None], axis=2)[..., 0]
            rest = d + bound
            np.put_along_axis(rest, index[..., None], -np.inf, axis=2)
            certain = lead > rest.max(axis=2)
        labels = self.classes.take(index)
        labels[keep] = np.broadcast_to(self.base["predict"], keep.shape)[keep]
        return labels, np.all(certain | keep, axis=1)

    def _proba(
        self, d: np.ndarray, bound: np.ndarray, keep: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        proba, err = self._link(d, bound)
        proba[keep] = np.broadcast_to(self.base["predict_proba"], proba.shape)[keep]
        err[keep] = 0.0
        return proba, self._order(proba, err)

    def _link(self, d: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities from decisions ``d`` within ``bound``, and their own bounds."""
        if self.link == "logistic":
            p = expit(d[..., 0])
            # expit is 1/4-Lipschitz; each side rounds expit and 1 - p by a few ulps.
            return np.stack([1.0 - p, p], axis=2), np.repeat(0.25 * bound + 8.0 * _U, 2, axis=2)
        n_classes = d.shape[2]
        proba = softmax(d.reshape(-1, n_classes)).reshape(d.shape)
        # Row sums of the softmax's Jacobian are 2 p (1 - p) <= 1/2 (max norm).
        err = 0.5 * bound.max(axis=2, keepdims=True) + 2.0 * (n_classes + 8) * _U
        return proba, np.broadcast_to(err, proba.shape).copy()


def _labels_loop(old, orders, W, decision, magnitude, reach, gamma, base_index):
    """Loop kernel (compiled by numba) of :meth:`LinearPath._block_labels`.

    For column ``q`` permuted by ``orders[r]``: each changed row's decisions
    ``decision + Δx · W[q]`` with bounds ``γ (|d| + 2 Σ|x w| + 4 max|x_q| |W[q]|)``, its
    label (the first largest decision; ``d > 0`` for one output) and whether the bound
    certifies it; unchanged rows keep the model's label. ``exact[q, r]``: all certified.
    """
    b, m = old.shape
    R = orders.shape[0]
    C = W.shape[1]
    index = np.empty((b, R, m), dtype=np.intp)
    exact = np.ones((b, R), dtype=np.bool_)
    d = np.empty(C)
    e = np.empty(C)
    for q in range(b):
        for r in range(R):
            ok = True
            for i in range(m):
                delta = old[q, orders[r, i]] - old[q, i]
                if delta == 0.0:
                    index[q, r, i] = base_index[i]
                    continue
                for c in range(C):
                    d[c] = delta * W[q, c] + decision[i, c]
                    e[c] = gamma * (abs(d[c]) + (2.0 * magnitude[i, c] + 4.0 * reach[q, c]))
                if C == 1:
                    index[q, r, i] = 1 if d[0] > 0 else 0
                    ok = ok and abs(d[0]) > e[0]
                    continue
                top = 0
                for c in range(1, C):
                    if d[c] > d[top]:
                        top = c
                index[q, r, i] = top
                lead = d[top] - e[top]
                for c in range(C):
                    if c != top and not lead > d[c] + e[c]:
                        ok = False
            exact[q, r] = ok
    return index, exact


def _plain_classifier(estimator: Any, methods: set[str]) -> str | None:
    """``link`` ("" without probabilities) when a classifier's methods are the plain linear
    ones for every method read, else ``None``."""
    from sklearn.linear_model import LogisticRegression

    cls = type(estimator)
    if not (
        isinstance(estimator, LinearClassifierMixin)
        and cls.decision_function is LinearClassifierMixin.decision_function
    ):
        return None
    if "predict" in methods:
        if cls.predict is _RidgeClassifierMixin.predict:
            # Ridge classifiers threshold differently only for multilabel targets.
            binarizer = getattr(estimator, "_label_binarizer", None)
            if binarizer is None or binarizer.y_type_.startswith("multilabel"):
                return None
        elif cls.predict is not LinearClassifierMixin.predict:
            return None
    if "predict_proba" not in methods:
        return ""
    if getattr(cls, "predict_proba", None) is not LogisticRegression.predict_proba:
        return None
    return "logistic" if len(estimator.classes_) == 2 else "softmax"


def _plain_regressor(estimator: Any) -> bool:
    """``predict`` is ``X @ coef_ + intercept_`` on dense input (scikit-learn's own code)."""
    from sklearn.linear_model import ElasticNet, SGDRegressor

    cls = type(estimator)
    if isinstance(estimator, SGDRegressor):
        return cls.predict is SGDRegressor.predict and (
            cls._decision_function is SGDRegressor._decision_function
        )
    if not isinstance(estimator, LinearModel) or isinstance(estimator, LinearClassifierMixin):
        return False
    plain = (LinearModel._decision_function, ElasticNet._decision_function)
    if cls._decision_function not in plain:
        return False
    # ``predict`` is LinearModel's, or a subclass's that only calls it / _decision_function
    # (documentation-only overrides, BayesianRidge without ``return_std``).
    owner = next(k for k in cls.__mro__ if "predict" in vars(k))
    return owner.__module__.startswith("sklearn.linear_model.") and owner.__name__ in _REGRESSORS


#: Classes whose own ``predict`` (when they define one) returns ``self._decision_function(X)``.
_REGRESSORS = frozenset(
    {"LinearModel", "MultiOutputLinearModel", "Ridge", "RidgeCV", "BayesianRidge", "ARDRegression"}
)
_METHODS = frozenset({"predict", "decision_function", "predict_proba"})


def linear_path(
    estimator: Any, X: np.ndarray, base_outputs: Mapping[str, np.ndarray]
) -> LinearPath | None:
    """Factory: a :class:`LinearPath` for a fitted linear classifier or regressor."""
    methods = set(base_outputs)
    if not methods or not methods <= _METHODS:
        return None
    if X.dtype != np.float64 or X.ndim != 2 or not np.isfinite(abs_column_max(X)).all():
        return None
    coef = getattr(estimator, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or coef.ndim > 2:
        return None
    W = np.atleast_2d(coef)
    if W.shape[1] != X.shape[1] or not np.all(np.isfinite(W)):
        return None
    n_out = W.shape[0]
    intercept = np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64)
    if intercept.size not in (1, n_out) or not np.all(np.isfinite(intercept)):
        return None
    intercept = np.broadcast_to(intercept.reshape(-1), (n_out,))
    link = _plain_classifier(estimator, methods)
    if link is not None:
        classes = np.asarray(getattr(estimator, "classes_", []))
        if len(classes) != (2 if n_out == 1 else n_out):
            return None
        decision = np.asarray(quietly(estimator.decision_function, X), dtype=np.float64)
        flat = n_out == 1
    elif methods == {"predict"} and _plain_regressor(estimator):
        classes, link = None, ""
        decision = np.asarray(base_outputs["predict"], dtype=np.float64)
        flat = decision.ndim == 1
    else:
        return None
    decision = decision.reshape(X.shape[0], n_out)
    path = LinearPath(X, W, intercept, decision, base_outputs, classes, link or None, flat)
    # The model's own values must be the linear function they are assumed to be.
    mine = X @ W.T + intercept
    if not np.all(np.abs(mine - decision) <= 2.0 * path.gamma_base * path.magnitude):
        return None
    d, computed = decision[None].copy(), np.zeros((1, X.shape[0]), dtype=bool)
    for name, base in base_outputs.items():
        base = np.asarray(base)
        if name == "predict_proba":
            proba, err = path._link(d, np.zeros_like(d))
            if base.shape != proba.shape[1:] or not np.all(np.abs(proba[0] - base) <= err[0]):
                return None
        elif name == "predict" and classes is not None:
            labels, _ = path._labels(d, np.zeros_like(d), computed)
            if base.shape != (X.shape[0],) or not np.array_equal(labels[0], base):
                return None
        elif base.shape != (d[0, :, 0].shape if flat else d[0].shape):
            return None
    return path


def linear_projected_path(
    estimator: Any, X: np.ndarray, projection: Projection, base_outputs: Mapping[str, np.ndarray]
) -> Any:
    """Factory for ``PCA`` then a linear model: the model is a network without hidden
    layers, so the MLP path's projected first layer and its bounds serve it
    (:mod:`~leap.builtins.methods.permutation.mlp`). Regressors' ``predict``, and
    ``LogisticRegression``'s labels and probabilities; other outputs get no path."""
    from types import SimpleNamespace

    from leap.builtins.methods.permutation.mlp import checked_network

    methods = set(base_outputs)
    coef = getattr(estimator, "coef_", None)
    if not methods or not isinstance(coef, np.ndarray) or coef.dtype != np.float64:
        return None
    if methods == {"predict"} and _plain_regressor(estimator):
        out, extra = "identity", {}
    elif methods <= {"predict", "predict_proba"}:
        # Labels through probabilities: LogisticRegression only (p > 1/2 iff decision > 0).
        out = _plain_classifier(estimator, methods | {"predict_proba"}) or ""
        if out not in ("logistic", "softmax"):
            return None
        extra = {"classes_": estimator.classes_, "_label_binarizer": True}
    else:
        return None
    W = np.atleast_2d(coef)
    intercept = np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64).reshape(-1)
    if intercept.size not in (1, W.shape[0]):
        return None
    network = SimpleNamespace(
        coefs_=[np.ascontiguousarray(W.T)],
        intercepts_=[np.broadcast_to(intercept, (W.shape[0],)).copy()],
        activation="identity",
        out_activation_=out,
        **extra,
    )
    return checked_network(network, estimator, X, base_outputs, projection)


linear_path.with_projection = linear_projected_path  # type: ignore[attr-defined]  # read by fastpaths
