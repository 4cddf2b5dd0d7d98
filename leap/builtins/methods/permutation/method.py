"""The ``permutation`` method: scikit-learn's permutation importance, exactly, faster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.utils import check_array

from leap.builtins.methods.permutation.batched import build_batched
from leap.builtins.methods.permutation.boosting import boosting_path
from leap.builtins.methods.permutation.copies import MAX_BATCH_BYTES, copies_per_batch, row_nbytes
from leap.builtins.methods.permutation.fastpaths import FastPath, FastPathFactory, build_fast_path
from leap.builtins.methods.permutation.linear import linear_path
from leap.builtins.methods.permutation.mlp import mlp_path
from leap.builtins.methods.permutation.native_boosters import native_booster_path
from leap.builtins.methods.permutation.neighbors import knn_path
from leap.builtins.methods.permutation.runner import (
    Context,
    constant_columns,
    run_all,
    same_score,
    weighted_score,
)
from leap.builtins.methods.permutation.schedule import (
    check_arguments,
    draw_seed,
    make_schedule,
    nested_validation_skipped,
    resolve_max_samples,
    take_rows,
)
from leap.builtins.methods.permutation.scoring import (
    AccuracyCounter,
    RowShares,
    measurable_groups,
    plan_scorer,
    score_outputs,
    share_rows,
)
from leap.builtins.methods.permutation.svm import kernel_path
from leap.builtins.methods.permutation.trees import tree_path
from leap.components import MethodScores
from leap.errors import LeapError

#: The built-in fast paths, tried in this order.
DEFAULT_FAST_PATHS: tuple[FastPathFactory, ...] = (
    linear_path,
    knn_path,
    tree_path,
    kernel_path,
    mlp_path,
    boosting_path,
    native_booster_path,
)

__all__ = [
    "DEFAULT_FAST_PATHS",
    "MAX_BATCH_BYTES",
    "FastPath",
    "FastPathFactory",
    "PermutationMethod",
    "metric_name",
]


class PermutationMethod:
    """Permutation importance (Breiman 2001), numerically equal to scikit-learn's.

    Parameters
    ----------
    fast_paths : sequence of callables, optional
        Fast-path factories tried in order (default :data:`DEFAULT_FAST_PATHS`; ``()``
        disables them). See :mod:`leap.builtins.methods.permutation.fastpaths`.
    max_batch_bytes : int
        Cap on the bytes of stacked permuted copies per ``predict`` call and worker
        (default :data:`~leap.builtins.methods.permutation.copies.MAX_BATCH_BYTES`, 1 MiB; a batch
        always holds at least one copy).
    keep_row_differences : bool
        Also return the ``(groups, rows)`` table of per-row differences
        (``MethodScores.row_differences``), for analyses of one's own; by default only
        their moments over the test's units are kept (``MethodScores.unit_moments``), which
        is all the tests of importance need and costs no table the size of ``X``.

    ``compute`` takes ``participants`` (one id per row of ``X``, declared in
    :attr:`options`): the moments are then over participants, as the engine's tests are.
    """

    name = "permutation"
    options = ("participants",)

    def __init__(
        self,
        fast_paths: Sequence[FastPathFactory] | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        keep_row_differences: bool = False,
    ) -> None:
        self.fast_paths = tuple(DEFAULT_FAST_PATHS if fast_paths is None else fast_paths)
        self.max_batch_bytes = int(max_batch_bytes)
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
    ) -> dict[str, MethodScores]:
        """Importances of each column (or group of columns) of ``X`` for ``estimator``.

        Returns one :class:`~leap.components.MethodScores` per metric: keyed by
        :func:`metric_name` of ``scoring`` for one metric, by the metric names for several.
        ``importances`` has shape ``(n_groups, n_repeats)``: baseline score minus the score
        with the group permuted, as in scikit-learn; invalid arguments raise the exception
        scikit-learn raises, with its message (:func:`.schedule.check_arguments`).
        """
        check_arguments(
            estimator, X, y, scoring=scoring, n_repeats=n_repeats, n_jobs=n_jobs,
            random_state=random_state, sample_weight=sample_weight, max_samples=max_samples,
        )  # fmt: skip
        with nested_validation_skipped():
            return self._compute(
                estimator, X, y, groups=groups, scoring=scoring, n_repeats=n_repeats,
                random_state=random_state, sample_weight=sample_weight,
                max_samples=max_samples, n_jobs=n_jobs, progress=progress,
                participants=participants,
            )  # fmt: skip

    def _compute(
        self,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        groups: Sequence[Sequence[int]] | None,
        scoring: Any,
        n_repeats: int,
        random_state: Any,
        sample_weight: Any,
        max_samples: float | int,
        n_jobs: int | None,
        progress: bool | str,
        participants: Any,
    ) -> dict[str, MethodScores]:
        if not hasattr(X, "iloc"):
            X = check_array(X, ensure_all_finite="allow-nan", dtype=None)
        seed = draw_seed(random_state)
        n_samples, n_features = X.shape
        n_used = resolve_max_samples(max_samples, n_samples)
        schedule = make_schedule(seed, n_samples, n_repeats, n_used)
        column_groups = check_groups(groups, n_features)
        if participants is not None and len(participants) != n_samples:
            raise LeapError(f"{len(participants)} participant ids for the {n_samples} rows of X")
        scorer = check_scoring(estimator, scoring=scoring)
        baseline = weighted_score(scorer, estimator, X, y, sample_weight)

        X_used = take_rows(X, schedule.rows)
        y_used = take_rows(y, schedule.rows)
        w_used = take_rows(sample_weight, schedule.rows)
        if schedule.rows is None:
            sub_score = baseline
        else:
            sub_score = weighted_score(scorer, estimator, X_used, y_used, w_used)
        capacity = copies_per_batch(X_used.shape[0], row_nbytes(X_used), self.max_batch_bytes)
        if not last_bit_in_reach(sub_score):
            # Only bitwise scores are within 1e-12 of scikit-learn's: the model predicts
            # each copy alone, as there (some models' last bits depend on the call's shape).
            capacity = 1
        ctx = Context(
            estimator, X_used, y_used, w_used, schedule.orders, scorer, sub_score,
            constant=constant_columns(X_used), capacity=capacity,
        )  # fmt: skip
        self._plan(ctx)
        shares = RowShares(
            ctx.sub_score, len(column_groups), participants=take_rows(participants, schedule.rows),
            sample_weight=w_used, keep=self.keep_row_differences,
        )  # fmt: skip
        permuted = run_all(ctx, column_groups, n_jobs=n_jobs, progress=progress, shares=shares)

        if isinstance(baseline, dict):
            return {
                name: MethodScores(
                    baseline[name],
                    baseline[name] - np.array([[s[name] for s in g] for g in permuted]),
                )
                for name in baseline
            }
        scores = MethodScores(
            baseline,
            baseline - np.array(permuted),
            row_differences=shares.table,
            rows=schedule.rows,
            measurable=measurable_groups(ctx.constant, column_groups),
            unit_moments=shares.moments(),
        )
        return {metric_name(scoring): scores}

    def _plan(self, ctx: Context) -> None:
        """Decide how copies are scored: replayed outputs (fast path or batches) or opaque."""
        base = replay_plan(ctx, plan_scorer(ctx.scorer, ctx.estimator))
        if base is None:
            return
        if all(isinstance(v, np.ndarray) for v in base.values()):
            fast = build_fast_path(self.fast_paths, ctx.estimator, ctx.X, base)
            # A recognised metric reads either values or their order: certify what it reads.
            reads_order = ctx.batched is not None and ctx.batched.reads_order
            if hasattr(fast, "order_matters") and ctx.batched is not None:
                fast.order_matters = reads_order  # type: ignore[union-attr]
            if fast is not None and (reads_order or rounding_is_harmless(ctx, fast, base)):
                ctx.fast = fast
        share_rows(ctx, base)  # per-row differences for the tests, when the score allows


#: How far the score may move when a fast path's values move by their typical rounding.
ROUNDING_SLACK = 1e-13
_EPS = float(np.finfo(np.float64).eps)


def _values(score: Any) -> list:
    return list(score.values()) if isinstance(score, dict) else [score]


def last_bit_in_reach(score: Any) -> bool:
    """Whether one unit in the last place of ``score`` (every metric of it) is far below
    1e-12. Above about 45 it is not: a permuted copy's score, which may be many times
    larger, computed in any other order than scikit-learn's (a batched scorer, a fast
    path's values) could differ from it by more than 1e-12, so only bitwise paths qualify.
    """
    return all(abs(float(b)) * _EPS <= ROUNDING_SLACK / 10 for b in _values(score))


def rounding_is_harmless(ctx: Context, fast: Any, base: dict[str, np.ndarray]) -> bool:
    """Whether a fast path whose continuous values are not bitwise the model's may be used.

    Such a path (one with a ``jitter(signs)`` method: its outputs on the unpermuted rows
    moved by a typical rounding in the directions ``signs``) is certified to stay within a
    rigorous bound of the model's values; how much that moves the score depends on the
    scorer and on the scale of the data (a mean squared error of targets in the thousands
    magnifies it a million-fold). The scorer is replayed on the moved outputs (all up, all
    down, random signs); if any score moves by more than :data:`ROUNDING_SLACK`, or the
    score is so large (above about 45) that one unit in its last place approaches 1e-12,
    the model answers instead, so scores stay within 1e-12 of scikit-learn's.
    """
    jitter = getattr(fast, "jitter", None)
    if jitter is None or ctx.plan is None:
        return True
    reference = _values(ctx.sub_score)
    if not last_bit_in_reach(ctx.sub_score):
        return False
    m = ctx.orders.shape[1]
    directions = (np.ones(m), -np.ones(m), np.random.default_rng(0).choice([-1.0, 1.0], m))
    for signs in directions:
        moved = jitter(signs)
        if moved is None:
            return True
        outputs = {**base, **moved}
        try:
            score = score_outputs(
                ctx.scorer, ctx.plan, ctx.estimator, ctx.X, ctx.y, ctx.sample_weight, outputs
            )
        except Exception:  # the scorer refuses moved values (e.g. probabilities off 1)
            return False
        for a, b in zip(_values(score), reference, strict=True):
            if not abs(float(a) - float(b)) <= ROUNDING_SLACK:
                return False
    return True


def replay_plan(ctx: Context, plan: Any, classes: Any = None) -> dict[str, np.ndarray] | None:
    """Adopt ``plan`` for scoring copies from their outputs, where that is exact.

    The scorer replayed on the model's own outputs of the unpermuted rows must give the
    scorer's own value; then ``ctx.plan`` is set, plain accuracy gets its vectorised
    counter, and other recognised metrics their batched scorer, each checked the same
    way. Returns the model's outputs on the unpermuted rows (by response method), or
    ``None`` when copies must be scored by the scorer itself. ``classes`` defaults to the
    estimator's.
    """
    if plan is None:
        return None
    base = {name: getattr(ctx.estimator, name)(ctx.X) for name in plan.methods}
    try:
        replayed = score_outputs(
            ctx.scorer, plan, ctx.estimator, ctx.X, ctx.y, ctx.sample_weight, base
        )
    except Exception:  # the scorer does more than the plan says: treat it as opaque
        return None
    if not same_score(replayed, ctx.sub_score):
        return None
    ctx.plan = plan
    if plan.plain_accuracy:
        if classes is None:
            classes = getattr(ctx.estimator, "classes_", None)
        counter = AccuracyCounter.create(ctx.y, ctx.sample_weight, classes)
        labels = np.asarray(base["predict"])
        if counter is not None and labels.ndim == 1:
            if same_score(counter(labels[np.newaxis])[0], ctx.sub_score):
                ctx.accuracy = counter
    if ctx.accuracy is None and last_bit_in_reach(ctx.sub_score):
        batched = build_batched(ctx.scorer, plan, ctx.estimator, ctx.y, ctx.sample_weight)
        if batched is not None and batched.agrees(base[batched.method], ctx.sub_score):
            ctx.batched = batched
    return base


def check_groups(groups: Sequence[Sequence[int]] | None, n_features: int) -> list[np.ndarray]:
    """The groups as index arrays (each column alone when ``None``), checked."""
    if groups is None:
        return [np.array([j], dtype=np.intp) for j in range(n_features)]
    checked = []
    for i, group in enumerate(groups):
        cols = list(dict.fromkeys(int(c) for c in group))
        if not cols:
            raise LeapError(f"group {i} is empty; give every group at least one column")
        bad = [c for c in cols if not 0 <= c < n_features]
        if bad:
            raise LeapError(
                f"group {i} names column {bad[0]}, outside 0..{n_features - 1} of the matrix"
            )
        checked.append(np.array(cols, dtype=np.intp))
    return checked


def metric_name(scoring: Any) -> str:
    """A name for a single metric: the scoring string, the scorer's function, or ``score``."""
    if isinstance(scoring, str):
        return scoring
    if scoring is None:
        return "score"
    return getattr(getattr(scoring, "_score_func", scoring), "__name__", "score")
