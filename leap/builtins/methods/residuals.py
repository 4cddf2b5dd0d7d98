"""The pieces of the ``conditional`` method: cross-fitted residuals and the shifted model.

See :mod:`leap.builtins.methods.conditional` for the method. This module imports NumPy and
scikit-learn; the plugin module imports it only when the method runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

RESPONSE_METHODS = ("predict", "predict_proba", "decision_function", "predict_log_proba")


def ridge_residuals(
    X: np.ndarray,
    groups: Sequence[np.ndarray],
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
) -> np.ndarray:
    """Out-of-fold residuals of ridge fits of each group on the other (standardised) columns.

    With ``A`` the correlation matrix of the training rows and ``Θ = (A + αI)⁻¹``, the ridge
    fit of block ``G`` on the rest has residuals ``Xs Θ[:, G] Θ[G, G]⁻¹`` (standardised
    units): one eigendecomposition per fold serves every group and penalty. The penalty
    of each group minimises its squared out-of-fold error.
    """
    from threadpoolctl import threadpool_limits

    # The matrices are small (features × features): BLAS threads cost more than they save,
    # and on a busy machine they spin against each other (an eigh of 435 columns took 2 s
    # with two threads under load, 0.14 s with one).
    with threadpool_limits(limits=1, user_api="blas"):
        return _ridge_residuals(X, groups, folds, alphas)


def _ridge_residuals(
    X: np.ndarray,
    groups: Sequence[np.ndarray],
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
) -> np.ndarray:
    n = X.shape[0]
    sizes = [g.size for g in groups]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    errors = np.zeros((len(alphas), len(groups)))
    fitted_folds = []
    for train, test in folds:
        mean = X[train].mean(axis=0)
        scale = X[train].std(axis=0)
        scale[scale == 0] = 1.0
        Xs_train = (X[train] - mean) / scale
        Xs_test = (X[test] - mean) / scale
        eigval, eigvec = np.linalg.eigh(Xs_train.T @ Xs_train / len(train))
        eigval = np.clip(eigval, 0.0, None)
        projected = Xs_test @ eigvec
        fitted_folds.append((test, mean, scale, eigval, eigvec, projected))
        for a, alpha in enumerate(alphas):
            for g, r in enumerate(_block_residuals(eigval, eigvec, projected, groups, alpha)):
                errors[a, g] += float(np.sum(r * r))
    best = np.argmin(errors, axis=0)
    out = np.empty((n, int(offsets[-1])))
    for test, _, scale, eigval, eigvec, projected in fitted_folds:
        for a in np.unique(best):
            chosen = [g for g in range(len(groups)) if best[g] == a]
            blocks = _block_residuals(
                eigval, eigvec, projected, [groups[g] for g in chosen], alphas[a]
            )
            for g, r in zip(chosen, blocks, strict=True):
                out[np.ix_(test, np.arange(offsets[g], offsets[g + 1]))] = r * scale[groups[g]]
    return out


def _block_residuals(
    eigval: np.ndarray,
    eigvec: np.ndarray,
    projected: np.ndarray,
    groups: Sequence[np.ndarray],
    alpha: float,
) -> list[np.ndarray]:
    inverse = (eigvec / (eigval + alpha)) @ eigvec.T  # Θ = (A + αI)⁻¹
    scaled = (projected / (eigval + alpha)) @ eigvec.T  # Xs_test Θ
    blocks = []
    for cols in groups:
        if cols.size == 1:
            j = int(cols[0])
            blocks.append(scaled[:, [j]] / inverse[j, j])
        else:
            blocks.append(np.linalg.solve(inverse[np.ix_(cols, cols)], scaled[:, cols].T).T)
    return blocks


def regressor_residuals(
    X: np.ndarray,
    groups: Sequence[np.ndarray],
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    regressor: Any,
) -> np.ndarray:
    """Out-of-fold residuals of ``regressor`` fitted per group on the other columns."""
    from sklearn.base import clone

    n, p = X.shape
    pieces = []
    for cols in groups:
        others = np.setdiff1d(np.arange(p), cols)
        target = X[:, cols]
        resid = target - target.mean(axis=0)
        if others.size:
            fitted = np.empty_like(target)
            for train, test in folds:
                model = clone(regressor)
                model.fit(
                    X[np.ix_(train, others)], target[train] if cols.size > 1 else target[train, 0]
                )
                pred = np.asarray(model.predict(X[np.ix_(test, others)]), dtype=np.float64)
                fitted[test] = pred.reshape(len(test), cols.size)
            resid = target - fitted
        pieces.append(resid)
    return np.hstack(pieces) if pieces else np.empty((n, 0))


class ResidualShift:
    """The model, seen through ``[X | residuals]``: shown residuals move the group's columns.

    A matrix ``Z`` of stacked copies holds the data in its first ``n_features`` columns
    and, after them, each group's residuals (unpermuted, or permuted in the group being
    disturbed). The model gets ``X + (shown residuals - own residuals)`` on the groups'
    columns: bitwise ``X`` where nothing was permuted, ``fitted + residual[order]``
    (to rounding) where a group was. Response methods, ``score`` and every other attribute
    are the model's.
    """

    def __init__(
        self,
        estimator: Any,
        n_features: int,
        targets: np.ndarray,
        residuals: np.ndarray,
        columns: Any = None,
    ) -> None:
        self.estimator = estimator
        self.n_features = int(n_features)
        self.targets = np.asarray(targets, dtype=np.intp)
        self.residuals = np.asarray(residuals, dtype=np.float64)
        self.columns = columns

    def inputs(self, Z: Any) -> Any:
        """The model's input for ``Z`` (shape ``(copies × rows, n_features + residuals)``)."""
        Z = np.asarray(Z, dtype=np.float64)
        m = self.residuals.shape[0]
        if m == 0 or Z.shape[0] % m:
            raise ValueError(f"{Z.shape[0]} rows are not whole copies of {m} rows")
        p = self.n_features
        copies = Z.shape[0] // m
        X = Z[:, :p].copy()
        shown = Z[:, p:]
        changed = np.zeros(shown.shape[1], dtype=bool)
        for c in range(copies):  # per copy: a 2-D compare, much faster than one 3-D one
            changed |= (shown[c * m : (c + 1) * m] != self.residuals).any(axis=0)
        for k in np.flatnonzero(changed):  # the permuted groups' columns only
            shift = shown[:, k].reshape(copies, m) - self.residuals[:, k]
            X[:, self.targets[k]] += shift.ravel()
        if self.columns is not None:
            import pandas as pd

            return pd.DataFrame(X, columns=self.columns, copy=False)
        return X

    def score(self, Z: Any, y: Any, sample_weight: Any = None) -> Any:
        """The model's own ``score`` on the copies' inputs."""
        if sample_weight is None:
            return self.estimator.score(self.inputs(Z), y)
        return self.estimator.score(self.inputs(Z), y, sample_weight=sample_weight)

    def __sklearn_tags__(self) -> Any:
        return self.estimator.__sklearn_tags__()

    def __getattr__(self, name: str) -> Any:
        state = self.__dict__
        if "estimator" not in state or name.startswith("__"):
            raise AttributeError(name)
        attribute = getattr(state["estimator"], name)
        if name not in RESPONSE_METHODS:
            return attribute

        def respond(Z: Any, **params: Any) -> Any:
            return attribute(self.inputs(Z), **params)

        respond.__name__ = name
        return respond


def linear_shift_path(estimator: Any, X: np.ndarray, shift: ResidualShift, base: Any) -> Any:
    """The permutation method's certified linear-label fast path, for conditional copies.

    A conditional copy changes a linear classifier's decision by ``Σ w_j a_j Δr_j`` over the
    group's columns, where ``Δr`` is the shown residual minus the row's own and ``a_j`` the
    per-column factor of the pipeline's standard scalers: the same update the fast path
    makes for a permuted column. So the path is built on ``[X_scaled | residuals × a]``
    with the coefficients repeated for the residual columns, the model's own decisions and
    labels. Its rounding bound covers the extra roundings of ``x + Δr`` and the scaling
    (a few units in the last place of terms its bound already sums, against ``2(n + 4)``
    of them), and copies it cannot certify go to the model. ``None`` unless the model is
    a linear classifier (possibly after ``StandardScaler`` steps) read through ``predict``.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from leap.builtins.methods.permutation.fastpaths import FACTORY_THREADS, reduce_model
    from leap.builtins.methods.permutation.linear import LinearPath, linear_path

    if set(base) != {"predict"}:
        return None
    factor = np.ones(X.shape[1])
    if type(estimator) is Pipeline:
        for _, step in estimator.steps[:-1]:
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            if type(step) is not StandardScaler:
                return None
            if step.with_std:
                factor = factor / step.scale_
    reduced = reduce_model(estimator, X)
    if reduced is None:
        return None
    core, Xt = reduced
    with FACTORY_THREADS:  # as every factory (see build_fast_path)
        checked = linear_path(core, Xt, base)
    if checked is None or checked.classes is None:
        return None
    W = checked.coef
    intercept = np.broadcast_to(np.asarray(core.intercept_, dtype=np.float64), (W.shape[0],))
    scaled = shift.residuals * factor[shift.targets]
    return LinearPath(
        np.hstack([Xt, scaled]),
        np.hstack([W, W[:, shift.targets]]),
        intercept,
        checked.decision,
        checked.base,
        checked.classes,
    )


def plan_copies(ctx: Any, estimator: Any, scoring: Any, fast: bool = True) -> None:
    """Replay recognised scorers on batched outputs, as the ``permutation`` method does.

    Of the model-aware fast paths only the linear-label one applies (see
    :func:`linear_shift_path`); the others are certified for row permutations of a
    column, which a conditional copy is not.
    """
    from sklearn.metrics import accuracy_score

    from leap.builtins.methods.permutation.method import replay_plan
    from leap.builtins.methods.permutation.scoring import (
        ScorerPlan,
        mixin_score_metric,
        plan_scorer,
        share_rows,
    )

    if scoring is None:  # the model's own score: replay it when it is the mixin's
        metric = mixin_score_metric(estimator)
        plan = (
            None if metric is None else ScorerPlan(("predict",), metric, metric is accuracy_score)
        )
    else:
        plan = plan_scorer(ctx.scorer, ctx.estimator)
    base = replay_plan(ctx, plan, getattr(estimator, "classes_", None))
    if base is None:
        return
    shift = ctx.estimator
    if fast and all(isinstance(v, np.ndarray) for v in base.values()):
        X = np.ascontiguousarray(ctx.X[:, : shift.n_features])
        ctx.fast = linear_shift_path(estimator, X, shift, base)
    share_rows(ctx, base)


def numeric_matrix(X: Any) -> np.ndarray:
    from sklearn.utils import check_array

    from leap.errors import LeapError

    try:
        values = check_array(np.asarray(X) if hasattr(X, "iloc") else X, dtype=np.float64)
    except ValueError as exc:
        raise LeapError(f"the conditional method needs a finite numeric matrix: {exc}") from None
    return values
