"""Scoring permuted copies from precomputed model outputs, with the scorer's own code.

A scikit-learn scorer reads the estimator only through its response methods (``predict``,
``predict_proba``, ``decision_function``, ``predict_log_proba``) or, for ``scoring=None``,
through ``score``, which for classifiers and regressors is ``accuracy_score`` or
``r2_score`` of ``predict``. When the scorer is one of those, LEAP computes the outputs of
many permuted copies at once (batched or by a fast path) and hands each copy's outputs to
the *unchanged* scorer through :class:`Replay`, a stand-in for the estimator that answers the
response methods from the outputs and everything else from the estimator. The scorer code
that turns outputs into a number is scikit-learn's own, so the number is the same.

Any other callable is "opaque": it gets the real estimator and a real permuted matrix.

Per-row shares. For scorers that are a (weighted) mean over rows, :func:`row_shares_for`
gives each row's share of the score, so that the weighted mean of the shares is the score:
accuracy (the row is right or wrong), balanced accuracy (the same, weighted by one over
the size of the row's class), mean squared and absolute error, and R² (an affine function
of the mean squared error, ``1 - e_i² Σw / Σw (y - ȳ)²``). A copy then also carries its
shares (:class:`RowScore`), and the method can hand per-row differences to the tests of
:mod:`leap.data.stats`. Scorers that are not a mean over rows (ROC AUC, F1, log loss with
its clipping, several metrics at once, opaque callables) get no shares, and the result no
p-value: resampling the rows would need the scorer once per resample and copy, a cost
LEAP does not impose silently.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import sklearn
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import type_of_target

from leap.data.stats import UnitMoments, UnitTally

RESPONSE_METHODS = ("predict", "predict_proba", "decision_function", "predict_log_proba")

try:  # private scikit-learn classes; without them every scorer is treated as opaque
    from sklearn.metrics._scorer import (
        _BaseScorer,
        _MultimetricScorer,
        _PassthroughScorer,
        _Scorer,
    )
    from sklearn.utils.validation import _check_response_method
except ImportError:  # pragma: no cover - depends on the scikit-learn version
    _Scorer = None


class UnplannedCall(RuntimeError):
    """A scorer asked a :class:`Replay` for an output that was not computed."""


@dataclass(frozen=True)
class ScorerPlan:
    """What a recognised scorer reads from the estimator.

    Attributes
    ----------
    methods : tuple of str
        Response methods whose outputs the scorer reads.
    score_metric : callable or None
        For ``scoring=None``: the metric ``estimator.score`` applies to ``predict``.
    plain_accuracy : bool
        The score is ``accuracy_score(y, predict(X), sample_weight=w)`` and nothing else,
        so it can be computed for many copies at once.
    row_shares : callable or None
        ``row_shares(y, outputs, sample_weight)``: each row's share of the score (see
        :func:`row_shares_for`); ``None`` when the score is not a mean over rows.
    """

    methods: tuple[str, ...]
    score_metric: Callable | None = None
    plain_accuracy: bool = False
    row_shares: Callable | None = None


def plan_scorer(scorer: Any, estimator: Any) -> ScorerPlan | None:
    """The outputs ``scorer`` reads from ``estimator``; ``None`` when it is opaque."""
    if _Scorer is None or sklearn.get_config().get("enable_metadata_routing", False):
        return None
    try:
        if isinstance(scorer, _MultimetricScorer):
            subs = list(scorer._scorers.values())
            if not subs or not all(_is_plain(s) for s in subs):
                return None
            methods = {_method_name(estimator, s) for s in subs}
            return ScorerPlan(tuple(sorted(methods)))
        if _is_plain(scorer):
            method = _method_name(estimator, scorer)
            accuracy = (
                method == "predict"
                and scorer._score_func is accuracy_score
                and scorer._sign == 1
                and not scorer._kwargs
            )
            return ScorerPlan((method,), plain_accuracy=accuracy)
        if type(scorer) is _PassthroughScorer and scorer._estimator is estimator:
            metric = mixin_score_metric(estimator)
            if metric is None:
                return None
            return ScorerPlan(("predict",), metric, plain_accuracy=metric is accuracy_score)
    except (AttributeError, TypeError, ValueError):
        return None
    return None


def _is_plain(scorer: Any) -> bool:
    return (
        isinstance(scorer, _Scorer)
        and type(scorer)._score is _Scorer._score
        and type(scorer).__call__ is _BaseScorer.__call__
        and not hasattr(scorer, "_metadata_request")
    )


def _method_name(estimator: Any, scorer: Any) -> str:
    name = _check_response_method(estimator, scorer._response_method).__name__
    if name not in RESPONSE_METHODS:
        raise ValueError(name)
    return name


def _delegating_score_classes() -> tuple[type, ...]:
    """scikit-learn classes whose ``score(X, y, sample_weight)`` only calls the mixin's
    (for an ``X`` that is not ``None``)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.neighbors import KNeighborsClassifier, RadiusNeighborsClassifier

    return (KNeighborsClassifier, RadiusNeighborsClassifier, DummyClassifier, DummyRegressor)


def mixin_score_metric(estimator: Any) -> Callable | None:
    """The metric of ``predict`` that ``estimator.score`` computes, if it is a plain one."""
    if isinstance(estimator, Pipeline):
        if inspect.getattr_static(type(estimator), "score", None) is not inspect.getattr_static(
            Pipeline, "score"
        ):
            return None
        final = estimator.steps[-1][1]
        if final is None or isinstance(final, str):
            return None
        return mixin_score_metric(final)
    delegating = _delegating_score_classes()
    for klass in type(estimator).__mro__:
        if "score" not in vars(klass):
            continue
        if klass in delegating:
            continue
        if klass is ClassifierMixin:
            return accuracy_score
        if klass is RegressorMixin:
            return r2_score
        return None
    return None


class Replay:
    """Stands in for a fitted estimator inside a scorer, answering with given outputs.

    Response methods return the precomputed arrays (whatever ``X`` they are given); they
    exist exactly when the estimator has them. ``score`` applies ``score_metric`` to
    ``predict``, as :class:`~sklearn.base.ClassifierMixin` and
    :class:`~sklearn.base.RegressorMixin` do. Every other attribute is the estimator's.
    """

    __slots__ = ("_leap_estimator", "_leap_metric", "_leap_outputs")

    def __init__(
        self,
        estimator: Any,
        outputs: Mapping[str, np.ndarray],
        score_metric: Callable | None = None,
    ) -> None:
        self._leap_estimator = estimator
        self._leap_outputs = outputs
        self._leap_metric = score_metric

    def __getattr__(self, name: str) -> Any:
        estimator = self._leap_estimator
        if name in RESPONSE_METHODS:
            getattr(estimator, name)  # AttributeError exactly when the estimator lacks it
            outputs = self._leap_outputs

            def respond(X, **params):
                if name not in outputs:
                    raise UnplannedCall(name)
                return outputs[name]

            respond.__name__ = name
            return respond
        if name == "score" and self._leap_metric is not None:
            metric = self._leap_metric

            def score(X, y, sample_weight=None):
                return metric(y, self.predict(X), sample_weight=sample_weight)

            return score
        return getattr(estimator, name)


def score_outputs(
    scorer: Any,
    plan: ScorerPlan,
    estimator: Any,
    X: Any,
    y: Any,
    sample_weight: Any,
    outputs: Mapping[str, np.ndarray],
) -> Any:
    """The scorer's value for one copy whose outputs are ``outputs``."""
    stand_in = Replay(estimator, outputs, plan.score_metric)
    if sample_weight is not None:
        value = scorer(stand_in, X, y, sample_weight=sample_weight)
    else:
        value = scorer(stand_in, X, y)
    if plan.row_shares is not None and not isinstance(value, dict):
        return RowScore(value, plan.row_shares(y, outputs, sample_weight))
    return value


class RowScore(float):
    """A copy's score that also carries each row's share of it (``rows``).

    A slot, not an instance dictionary: a run holds one per copy (groups × repeats), and a
    dictionary each would weigh more than the shares of a few hundred groups.
    """

    __slots__ = ("rows",)
    rows: np.ndarray

    def __new__(cls, value: float, rows: np.ndarray) -> RowScore:
        score = super().__new__(cls, value)
        score.rows = rows
        return score

    def __reduce__(self) -> tuple:
        return (RowScore, (float(self), self.rows))


def _matches(y: Any, out: Mapping[str, Any]) -> np.ndarray:
    return (np.asarray(out["predict"]) == np.asarray(y)).astype(np.float64)


def _balanced(y: Any, out: Mapping[str, Any], w: Any) -> np.ndarray:
    y = np.asarray(y)
    w = np.ones(y.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    _, codes = np.unique(y, return_inverse=True)
    class_weight = np.bincount(codes, weights=w)
    return _matches(y, out) * w.sum() / (class_weight.size * class_weight[codes])


def _errors(y: Any, out: Mapping[str, Any], power: int) -> np.ndarray:
    e = np.abs(np.asarray(y, dtype=np.float64) - np.asarray(out["predict"], dtype=np.float64))
    e = e**power
    return e.mean(axis=1) if e.ndim == 2 else e


class _R2Shares:
    """R²'s per-row shares ``1 - e² Σw / Σw (y - ȳ)²``; the factor is computed once per
    target (a run scores thousands of copies of the same rows)."""

    def __init__(self) -> None:
        self._for: tuple[Any, Any, float] | None = None

    def __call__(self, y: Any, out: Mapping[str, Any], w: Any) -> np.ndarray:
        return 1.0 - _errors(y, out, 2) * self.factor(y, w)

    def factor(self, y: Any, w: Any) -> float:
        """``Σw / Σw (y - ȳ)²`` of this target and weights (cached)."""
        if self._for is None or self._for[0] is not y or self._for[1] is not w:
            y64 = np.asarray(y, dtype=np.float64)
            w64 = np.ones(y64.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
            total = np.sum(w64 * (y64 - np.average(y64, weights=w64)) ** 2)
            with np.errstate(divide="ignore", invalid="ignore"):  # constant y: checked
                self._for = (y, w, w64.sum() / total)
        return self._for[2]


#: Metric → per-row shares ``f(y, outputs, sample_weight)`` (before the scorer's sign), or
#: a class whose instances are such functions (one per run).
_ROW_SHARES: dict[Callable, Callable] = {
    accuracy_score: lambda y, out, w: _matches(y, out),
    balanced_accuracy_score: _balanced,
    mean_squared_error: lambda y, out, w: _errors(y, out, 2),
    mean_absolute_error: lambda y, out, w: _errors(y, out, 1),
    r2_score: _R2Shares,
}


def row_shares_for(scorer: Any, plan: ScorerPlan) -> Callable | None:
    """``f(y, outputs, sample_weight)`` giving each row's share of ``scorer``'s value.

    ``None`` unless the scorer is a known mean over rows of ``predict`` with default
    keywords. Callers check the shares against the scorer on real outputs before use.
    """
    if plan.score_metric is not None:
        metric, sign = plan.score_metric, 1.0
    elif plan.methods == ("predict",) and _Scorer is not None and _is_plain(scorer):
        if scorer._kwargs:
            return None
        metric, sign = scorer._score_func, float(scorer._sign)
    else:
        return None
    shares = _ROW_SHARES.get(metric)
    if shares is None:
        return None
    if metric is r2_score and not (sign == 1.0):
        return None
    if isinstance(shares, type):
        shares = shares()  # one per plan: what it caches is this run's

    def row_shares(y: Any, outputs: Mapping[str, Any], sample_weight: Any) -> np.ndarray:
        return sign * shares(y, outputs, sample_weight)

    power = {mean_squared_error: 2, mean_absolute_error: 1, r2_score: 2}.get(metric)
    r2_shares: Any = shares  # an _R2Shares for R²
    if power is not None:

        def stacked(y: Any, predictions: np.ndarray, sample_weight: Any) -> np.ndarray:
            """Shares of many copies' 1-D predictions ``(copies, rows)`` at once, with the
            per-copy arithmetic element by element."""
            e = np.abs(np.asarray(y, dtype=np.float64)[np.newaxis] - predictions) ** power
            if metric is r2_score:
                return sign * (1.0 - e * r2_shares.factor(y, sample_weight))
            return sign * e

        row_shares.stacked = stacked  # type: ignore[attr-defined]  # read by BatchedScorer
    return row_shares


def shares_match(shares: np.ndarray, sample_weight: Any, score: Any) -> bool:
    """Whether the weighted mean of ``shares`` is ``score`` (to rounding)."""
    try:
        value = float(score)
        mean = float(np.average(shares, weights=sample_weight))
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    return bool(np.isfinite(mean)) and abs(mean - value) <= 1e-9 * max(1.0, abs(value))


class AccuracyCounter:
    """``accuracy_score`` of many label vectors against one ``y``, in one pass.

    Only built when scikit-learn's checks cannot fail or change the labels: ``y`` is a
    binary or multiclass vector and every prediction is one of ``classes``, themselves
    binary or multiclass labels. Unweighted accuracy is an exact count divided by the number
    of rows, which is what ``numpy.average`` of the boolean matches computes; weighted
    accuracy calls ``numpy.average`` per copy, as scikit-learn does.
    """

    def __init__(self, y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        self.y = y
        self.sample_weight = sample_weight
        self.row_shares = False  # set: :meth:`scores` also carries each row's match

    @classmethod
    def create(cls, y: Any, sample_weight: Any, classes: Any) -> AccuracyCounter | None:
        """A counter for ``y``, or ``None`` when the shortcut is not provably equal."""
        if y is None or classes is None:
            return None
        try:
            y_arr = np.asarray(y)
            classes = np.asarray(classes)
            if y_arr.ndim != 1 or classes.ndim != 1 or y_arr.shape[0] == 0:
                return None
            if type_of_target(y_arr) not in ("binary", "multiclass"):
                return None
            if type_of_target(classes) not in ("binary", "multiclass"):
                return None
            if (y_arr.dtype.kind in "OUS") != (classes.dtype.kind in "OUS"):
                return None
            w = None
            if sample_weight is not None:
                w = np.asarray(sample_weight)
                if w.shape != y_arr.shape or w.dtype.kind not in "biuf":
                    return None
        except (TypeError, ValueError):
            return None
        return cls(y_arr, w)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Accuracy of each row of ``labels`` (shape ``(n_copies, n_rows)``)."""
        matches = labels == self.y[np.newaxis, :]
        if self.sample_weight is None:
            return matches.sum(axis=1) / matches.shape[1]
        return np.array([float(np.average(row, weights=self.sample_weight)) for row in matches])

    def scores(self, labels: np.ndarray) -> list[float]:
        """:meth:`__call__` as floats, each a :class:`RowScore` when :attr:`row_shares`."""
        values = self(labels)
        if not self.row_shares:
            return [float(v) for v in values]
        matches = (labels == self.y[np.newaxis, :]).astype(np.float64)
        return [RowScore(v, row) for v, row in zip(values, matches, strict=True)]


def share_rows(ctx: Any, base: Mapping[str, Any]) -> bool:
    """Make the copies of ``ctx`` carry per-row shares, when its scorer is a mean over rows.

    ``ctx`` is a planned :class:`~.runner.Context` (``ctx.plan`` set) and ``base`` the
    model's outputs on its unpermuted rows. The shares are checked against the scorer's
    own value on ``base`` first; on success ``ctx.plan`` gains them, ``ctx.sub_score``
    becomes a :class:`RowScore` (so groups answered without predicting carry them too) and
    the accuracy counter reports them. Returns whether shares are on.
    """
    if ctx.plan is None:
        return False
    shares_of = row_shares_for(ctx.scorer, ctx.plan)
    if shares_of is None:
        return False
    try:
        shares = np.asarray(shares_of(ctx.y, base, ctx.sample_weight), dtype=np.float64)
    except (TypeError, ValueError, KeyError):
        return False
    if shares.ndim != 1 or not shares_match(shares, ctx.sample_weight, ctx.sub_score):
        return False
    ctx.plan = replace(ctx.plan, row_shares=shares_of)
    ctx.sub_score = RowScore(ctx.sub_score, shares)
    if ctx.accuracy is not None:
        ctx.accuracy.row_shares = True
    if getattr(ctx, "batched", None) is not None:
        ctx.batched.row_shares = True
    return True


class RowShares:
    """Reduces each group's per-row shares, once all its repeats are scored, to the
    moments the tests of importance need (:class:`~leap.data.stats.UnitTally`).

    A group's difference per row is the row's unpermuted share minus its mean permuted
    share over the repeats; only its (weighted) mean and spread over the units are kept,
    not a ``(groups × rows)`` table, unless ``keep`` asks for that table too
    (:attr:`table`). Nothing is reduced when the unpermuted score carries no shares (a
    scorer that is not a mean over rows) or any copy's score lacks them.
    """

    def __init__(
        self,
        sub_score: Any,
        n_groups: int,
        *,
        participants: Any = None,
        sample_weight: Any = None,
        keep: bool = False,
    ) -> None:
        base = getattr(sub_score, "rows", None)
        self._base = base
        self._tally = None
        self.table: np.ndarray | None = None
        if isinstance(base, np.ndarray):
            self._tally = UnitTally(n_groups, base.shape[0], participants, sample_weight)
            if keep:
                self.table = np.empty((n_groups, base.shape[0]))

    def adopt(self, index: int, scores: list) -> list:
        """The completed group ``index``'s ``scores``, reduced (plain floats from now on)."""
        if self._tally is None:
            return scores
        mean = _mean_shares(scores)
        if mean is None:
            self._tally = self.table = None
            return scores
        differences = self._base - mean
        self._tally.add(index, differences)
        if self.table is not None:
            self.table[index] = differences
        return [float(score) for score in scores]

    def moments(self) -> UnitMoments | None:
        """The moments of every group (``None`` when the shares were not all there)."""
        return None if self._tally is None else self._tally.moments()


def _mean_shares(scores: list) -> np.ndarray | None:
    """The mean over repeats of a group's per-row shares (``None`` if any is missing)."""
    first = scores[0] if scores else None
    if isinstance(first, MeanRowScore) and all(
        isinstance(s, MeanRowScore) and s.rows is first.rows for s in scores
    ):
        return first.rows
    rows = [getattr(score, "rows", None) for score in scores]
    present = [r for r in rows if r is not None]
    if not rows or len(present) != len(rows):
        return None
    total = np.zeros(present[0].shape[0])
    for r in present:
        total += r
    return total / len(scores)


class MeanRowScore(RowScore):
    """A copy's score whose ``rows`` are its group's mean shares over repeats (shared)."""

    __slots__ = ()

    def __reduce__(self) -> tuple:
        return (MeanRowScore, (float(self), self.rows))


def compact_shares(scores: list) -> list:
    """A group's scores with one mean of their per-row shares in place of one per repeat.

    Once every repeat is scored, only the mean over repeats is needed
    (:class:`RowShares`); it is computed here, where the copies were scored, so the
    scores carry one row vector per group, not one per copy. Other lists are returned as
    is.
    """
    if not scores or isinstance(scores[0], MeanRowScore):
        return scores
    found = [getattr(score, "rows", None) for score in scores]
    if any(r is found[0] for r in found[1:]):  # the unpermuted score, repeated: no cost
        return scores
    mean = _mean_shares(scores)  # None where any copy carries no shares
    return scores if mean is None else [MeanRowScore(float(score), mean) for score in scores]


def measurable_groups(
    constant: np.ndarray | None, groups: Sequence[np.ndarray]
) -> np.ndarray | None:
    """Per group: not every column is constant over the rows (``None``: unknown)."""
    if constant is None:
        return None
    return np.array([not bool(constant[cols].all()) for cols in groups], dtype=bool)
