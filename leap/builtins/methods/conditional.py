"""Built-in ``conditional`` method: conditional permutation importance (CPI).

Plain permutation shows the model a feature's values from other rows, which breaks the
feature's relation to the *other* features too: with correlated sensors the copies hold
combinations that never occur, and a sensor that merely echoes an informative one is
credited (Strobl et al. 2008; Hooker, Mentch & Zhou 2021). Conditional permutation
(Chamma et al., NeurIPS 2023; Watson & Wright 2021) permutes only what the other features
cannot explain. For each feature or group ``G``:

1. a model of ``X[:, G]`` from the other columns gives fitted values and residuals, both
   cross-fitted (each row's fit comes from a model that did not see it);
2. a copy shows ``fitted + residual[order]``: the residual is permuted, the part the other
   features explain stays with its row;
3. the copy is scored as in the ``permutation`` method, with the same row orders.

The importance then measures what the model loses when it is denied the information in
``G`` that the other features do not carry; a proxy of an informative feature scores
about zero. By default the model of ``G`` is a ridge regression on the standardised other
columns with its penalty chosen per group by K-fold cross-validation; all groups' fits come
from one eigendecomposition per fold (the ridge fit of a block on the rest is a block of
the inverse of the penalised correlation matrix). Any scikit-learn regressor can be given
instead (``ConditionalMethod(regressor=...)``; a group of several columns needs one that
predicts several outputs).

The copies reuse the ``permutation`` method's machinery: the runner permutes residual
columns appended to the data, and the model is called through :class:`ResidualShift`, which
adds what changed onto the group's own columns. So copies are batched into few model calls,
recognised scorers are replayed, groups run in parallel, and per-row differences feed the
tests of :mod:`leap.data.stats`. Of the model-aware fast paths, the certified linear-label
one applies (linear classifiers, possibly after standard scalers: a conditional copy moves
their decision by the same kind of update as a permuted column does); the others (trees,
k-NN, boosting, SVM, MLP) assume a copy's values are a row permutation of the column's,
so those models are called on batched copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leap.hookspecs import hookimpl

#: Ridge penalties tried, on the scale of the correlation matrix of the other columns
#: (10^-3 to 10^2, half a decade apart).
DEFAULT_ALPHAS = tuple(10.0 ** (k / 2.0 - 3.0) for k in range(11))
#: Folds of the cross-fitting (and of the penalty's selection).
DEFAULT_FOLDS = 5
#: Cap on the bytes of stacked copies per model call, as the permutation method's (1 MiB).
#: Larger batches were measured slower: the model's own BLAS call on a bigger block
#: spun two threads against a busy machine (27 ms a call for 3 copies vs 3 ms for one).
MAX_BATCH_BYTES = 2**20


class ConditionalMethod:
    """Conditional permutation importance: permute each group's residual given the others.

    Parameters
    ----------
    regressor : scikit-learn regressor or None
        Model of a group's columns from the other columns, fitted per group and fold.
        ``None``: standardised ridge regression with the penalty chosen from ``alphas``
        by cross-validation, per group.
    alphas : sequence of float
        Penalties the default ridge chooses from (ignored with ``regressor``).
    cv : int
        Number of folds for cross-fitting (at least 2).
    max_batch_bytes : int or None
        Cap on the bytes of stacked copies per model call (default
        :data:`MAX_BATCH_BYTES`).
    fast_paths : bool
        Use the certified linear-label fast path where it applies (linear classifiers
        scored on labels); ``False`` hands every copy to the model.
    keep_row_differences : bool
        Also return the ``(groups, rows)`` per-row differences, as the ``permutation``
        method's option of that name; by default only their moments are kept.
    """

    name = "conditional"
    options = ("participants",)

    def __init__(
        self,
        regressor: Any = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        cv: int = DEFAULT_FOLDS,
        max_batch_bytes: int | None = None,
        fast_paths: bool = True,
        keep_row_differences: bool = False,
    ) -> None:
        if int(cv) < 2:
            raise ValueError(f"cv must be at least 2, got {cv}")
        self.regressor = regressor
        self.alphas = tuple(float(a) for a in alphas)
        self.cv = int(cv)
        self.max_batch_bytes = max_batch_bytes
        self.fast_paths = bool(fast_paths)
        self.keep_row_differences = bool(keep_row_differences)

    def compute(
        self,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        groups: Sequence[Sequence[int]] | None = None,
        scoring: Any = None,
        n_repeats: int = 5,
        random_state: Any = None,
        sample_weight: Any = None,
        max_samples: float | int = 1.0,
        n_jobs: int | None = None,
        progress: bool | str = False,
        participants: Any = None,
    ) -> dict[str, Any]:
        """Conditional importances of each column (or group) of ``X`` for ``estimator``.

        Returns one :class:`~leap.components.MethodScores` per metric, as the
        ``permutation`` method does: ``importances`` of shape ``(n_groups, n_repeats)``
        (baseline score minus the score of the conditionally permuted copy), the moments
        of the per-row differences (over ``participants`` when given) where the scorer is
        a mean over rows, and which groups are measurable.
        """
        import numpy as np
        import pandas as pd
        from sklearn.metrics import check_scoring

        from leap.builtins.methods.permutation.copies import copies_per_batch, row_nbytes
        from leap.builtins.methods.permutation.method import check_groups, metric_name
        from leap.builtins.methods.permutation.runner import (
            Context,
            constant_columns,
            run_all,
            weighted_score,
        )
        from leap.builtins.methods.permutation.schedule import (
            draw_seed,
            make_schedule,
            resolve_max_samples,
            take_rows,
        )
        from leap.builtins.methods.permutation.scoring import RowShares, measurable_groups
        from leap.builtins.methods.residuals import ResidualShift, numeric_matrix, plan_copies
        from leap.components import MethodScores

        columns = X.columns if isinstance(X, pd.DataFrame) else None
        values = numeric_matrix(X)
        n_samples, n_features = values.shape
        seed = draw_seed(random_state)
        n_used = resolve_max_samples(max_samples, n_samples)
        schedule = make_schedule(seed, n_samples, n_repeats, n_used)
        column_groups = check_groups(groups, n_features)
        if n_samples < 2 * self.cv:
            from leap.errors import LeapError

            raise LeapError(
                f"the conditional method needs at least {2 * self.cv} rows for its "
                f"{self.cv}-fold residual models, got {n_samples}"
            )
        residuals = self.residuals(values, column_groups, seed=seed)

        rows = schedule.rows
        used = values if rows is None else values[rows]
        shown = residuals if rows is None else residuals[rows]
        targets = np.concatenate(column_groups)
        shift = ResidualShift(estimator, n_features, targets, shown, columns)
        scorer = check_scoring(shift, scoring=scoring)
        Z = np.hstack([used, shown])
        y_used = take_rows(y, rows)
        w_used = take_rows(sample_weight, rows)
        sub_score = weighted_score(scorer, shift, Z, y_used, w_used)
        if rows is None:
            baseline = sub_score
        else:
            full = check_scoring(estimator, scoring=scoring)
            baseline = weighted_score(full, estimator, X, y, sample_weight)
        ctx = Context(
            shift, Z, y_used, w_used, schedule.orders, scorer, sub_score,
            constant=constant_columns(Z),
            capacity=copies_per_batch(Z.shape[0], row_nbytes(Z),
                                      self.max_batch_bytes or MAX_BATCH_BYTES),
        )  # fmt: skip
        plan_copies(ctx, estimator, scoring, fast=self.fast_paths)
        blocks, start = [], n_features
        for cols in column_groups:
            blocks.append(np.arange(start, start + cols.size, dtype=np.intp))
            start += cols.size
        shares = RowShares(
            ctx.sub_score, len(blocks), participants=take_rows(participants, rows),
            sample_weight=w_used, keep=self.keep_row_differences,
        )  # fmt: skip
        permuted = run_all(ctx, blocks, n_jobs=n_jobs, progress=progress, shares=shares)
        measurable = measurable_groups(constant_columns(used), column_groups)
        if isinstance(baseline, dict):
            return {
                name: MethodScores(
                    baseline[name],
                    baseline[name] - np.array([[s[name] for s in g] for g in permuted]),
                    rows=rows,
                    measurable=measurable,
                )
                for name in baseline
            }
        scores = MethodScores(
            baseline,
            baseline - np.array(permuted, dtype=np.float64),
            row_differences=shares.table,
            rows=rows,
            measurable=measurable,
            unit_moments=shares.moments(),
        )
        return {metric_name(scoring): scores}

    def residuals(self, X: Any, groups: Sequence[Any], *, seed: int) -> Any:
        """Cross-fitted residuals of each group's columns given the others.

        Returns shape ``(n_rows, total columns of all groups)``, group after group, in
        the units of ``X``.
        """
        from sklearn.model_selection import KFold

        from leap.builtins.methods.residuals import regressor_residuals, ridge_residuals

        folds = list(KFold(self.cv, shuffle=True, random_state=seed).split(X))
        if self.regressor is None:
            return ridge_residuals(X, groups, folds, self.alphas)
        return regressor_residuals(X, groups, folds, self.regressor)


@hookimpl(trylast=True)
def register_methods(register: Any) -> None:
    register(ConditionalMethod())
