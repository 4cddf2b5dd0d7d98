"""Feature selection by permutation importance: a scikit-learn compatible selector.

:class:`SelectByImportance` fits a clone of an estimator on part of the data it is given,
measures permutation importances on the held-out rest (never on the rows the clone was
trained on), and keeps the top-k features, the features above a threshold, or whole
sensor pairs or sensors of a :class:`~leap.data.layout.SensorLayout`. Because everything it
learns comes from the data passed to :meth:`~SelectByImportance.fit`, it can sit inside a
:class:`~sklearn.pipeline.Pipeline` that is cross-validated without leaking the test folds
into the selection.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.feature_selection import SelectorMixin
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from leap.data.grouping import BUILTIN_GROUPINGS, GroupingError, resolve_grouping
from leap.data.layout import SensorLayout
from leap.data.result import ImportanceResult
from leap.errors import LeapError


class SelectionError(LeapError, ValueError):
    """A selection setting does not fit the data; also a ``ValueError``, as scikit-learn expects."""


@dataclass(frozen=True)
class FeatureGroups:
    """Candidate units of a selection and how kept units map back to feature columns.

    Attributes
    ----------
    names : list of str
        One name per unit (a feature, ``Left_Ankle|Sacrum``, ``Sacrum`` or a user's name).
    indices : list of list of int
        The feature columns of each unit; permuted together when measuring importance.
    rule : str
        ``"union"``: keep every column of every kept unit. ``"all_sensors"`` (units are
        sensors): keep a column only when *all* its sensors are kept, i.e. the features
        that are still measurable when only the kept sensors are worn.
    column_sensors : list of tuple of str
        For ``"all_sensors"``: the sensors each column needs.
    """

    names: list[str]
    indices: list[list[int]]
    rule: str = "union"
    column_sensors: tuple[tuple[str, ...], ...] = ()

    def support(self, kept: np.ndarray, n_features: int) -> np.ndarray:
        """Boolean column mask for the kept units (``kept`` is a boolean mask over units)."""
        mask = np.zeros(n_features, dtype=bool)
        if self.rule == "all_sensors":
            chosen = {self.names[i] for i in np.flatnonzero(kept)}
            for col, sensors in enumerate(self.column_sensors):
                mask[col] = all(s in chosen for s in sensors)
            return mask
        for i in np.flatnonzero(kept):
            mask[self.indices[i]] = True
        return mask


def sensor_columns(layout: SensorLayout, sensors: Sequence[str]) -> list[int]:
    """Columns of ``layout`` whose two channels both sit on one of ``sensors``.

    These are the features that can still be computed when only ``sensors`` are worn; in
    layout order they are exactly the features of ``SensorLayout(sensors, layout.dims)``
    (with ``sensors`` in the layout's order).
    """
    keep = set(sensors)
    return [k for k, p in enumerate(layout.pairs) if p.sensor_a in keep and p.sensor_b in keep]


def resolve_groups(
    groups: Any,
    n_features: int,
    *,
    layout: SensorLayout | None = None,
    feature_names: Sequence[str] | None = None,
) -> FeatureGroups:
    """Turn a ``groups`` setting into :class:`FeatureGroups` for ``n_features`` columns.

    ``groups`` is ``None`` (every column is a unit) or anything
    :func:`leap.data.grouping.resolve_grouping` takes: ``"sensor_pair"``, ``"sensor"`` (kept
    under the ``all_sensors`` rule), a mapping ``{name: [column indices or feature names]}``
    or a list of index lists.
    """
    names = list(feature_names) if feature_names is not None else None
    if names is None and layout is not None and layout.n_features == n_features:
        names = list(layout.feature_names)
    if groups is None:
        return FeatureGroups(
            names or [f"x{i}" for i in range(n_features)], [[j] for j in range(n_features)]
        )
    if isinstance(groups, str) and groups in BUILTIN_GROUPINGS:
        layout = layout or SensorLayout()
        if layout.n_features != n_features:
            raise SelectionError(
                f"groups={groups!r} needs the layout's {layout.n_features} columns "
                f"({layout.describe()}), but X has {n_features}; pass a matching layout"
            )
    if isinstance(groups, Mapping | str) or _is_index_lists(groups):
        try:
            grouping = resolve_grouping(
                groups, layout=layout, feature_names=names, n_features=n_features
            )
        except GroupingError as exc:
            raise SelectionError(str(exc)) from None
    else:
        raise SelectionError(
            f"groups must be None, {', '.join(map(repr, BUILTIN_GROUPINGS))}, a mapping or a "
            f"list of index lists; got {groups!r}"
        )
    if grouping.name == "sensor" and layout is not None:
        column_sensors = tuple((p.sensor_a, p.sensor_b) for p in layout.pairs)
        return FeatureGroups(grouping.names, grouping.indices, "all_sensors", column_sensors)
    return FeatureGroups(grouping.names, grouping.indices)


def _is_index_lists(groups: Any) -> bool:
    return isinstance(groups, Sequence) and all(
        isinstance(g, Sequence) and not isinstance(g, str) for g in groups
    )


def validation_split(
    y: np.ndarray,
    *,
    participants: np.ndarray | None,
    validation_size: float,
    random_state: Any,
    stratify: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, validation)`` of one internal split.

    By participant when ids are given (no participant on both sides), stratified by class
    when ``stratify`` and every class has two members or more, else a plain shuffle split.
    """
    n = len(y)
    if n < 2:
        raise SelectionError(
            f"importance-based selection needs at least 2 samples to hold some out; "
            f"got n_samples={n}"
        )
    dummy = np.zeros((n, 1))
    if participants is not None:
        if len(np.unique(participants)) < 2:
            raise SelectionError(
                "the internal validation split is by participant and needs at least 2 "
                "participants; got 1"
            )
        splitter: Any = GroupShuffleSplit(
            n_splits=1, test_size=validation_size, random_state=random_state
        )
        return next(splitter.split(dummy, y, participants))
    n_val = int(np.ceil(validation_size * n))
    if stratify:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and len(counts) <= min(n_val, n - n_val):
            splitter = StratifiedShuffleSplit(
                n_splits=1, test_size=validation_size, random_state=random_state
            )
            return next(splitter.split(dummy, y))
    splitter = ShuffleSplit(n_splits=1, test_size=validation_size, random_state=random_state)
    return next(splitter.split(dummy))


def neg_log_loss(estimator: Any, X: Any, y: Any) -> float:
    """Negative log-loss over the classes ``estimator`` was fitted on (a scorer).

    Equals scikit-learn's ``log_loss(y, predict_proba(X), labels=classes_)`` with the sign
    flipped, but does not fail when ``y`` lacks some of the model's classes (e.g. a held-out
    participant with one class), and skips per-call validation, which dominates the cost of
    scoring thousands of permuted copies.
    """
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    classes = np.asarray(estimator.classes_)
    y = np.asarray(y)
    try:
        column = np.searchsorted(classes, y)
    except TypeError:  # labels of another type than the model's classes
        column = np.full(len(y), len(classes))
    known = column < len(classes)
    known[known] = classes[column[known]] == y[known]
    if not known.all():
        raise SelectionError(
            f"y holds the label {y[~known][0]!r}, which the model was not fitted on"
        )
    proba = proba / proba.sum(axis=1, keepdims=True)
    eps = np.finfo(proba.dtype).eps
    picked = np.clip(proba[np.arange(len(y)), column], eps, 1.0 - eps)
    return float(np.mean(np.log(picked)))


def resolve_scoring(scoring: Any) -> Any:
    """``scoring`` as given, with ``"neg_log_loss"`` made robust to absent classes."""
    return neg_log_loss if scoring == "neg_log_loss" else scoring


def cross_fit_splits(
    X: np.ndarray,
    y: np.ndarray,
    *,
    participants: np.ndarray | None,
    n_splits: int,
    random_state: Any,
    stratify: bool,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row indices ``(train, validation)`` of ``n_splits`` folds that cover every row once.

    By participant when ids are given, stratified (shuffled) for classifiers when every
    class has ``n_splits`` members, else shuffled plain folds.
    """
    n = len(y)
    if n < n_splits:
        raise SelectionError(f"cv={n_splits} needs at least {n_splits} samples; got n_samples={n}")
    if participants is not None:
        n_groups = len(np.unique(participants))
        if n_groups < n_splits:
            raise SelectionError(
                f"cv={n_splits} folds by participant need at least {n_splits} participants; "
                f"got {n_groups}"
            )
        return list(GroupKFold(n_splits=n_splits).split(X, y, participants))
    if stratify and np.unique(y, return_counts=True)[1].min() >= n_splits:
        splitter: Any = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
        return list(splitter.split(X, y))
    return list(KFold(n_splits, shuffle=True, random_state=random_state).split(X))


def _pooled(results: list[ImportanceResult]) -> ImportanceResult:
    """One result whose repeats are the repeats of every split, side by side."""
    if len(results) == 1:
        return results[0]
    baselines = [r.baseline_score for r in results]
    known = [b for b in baselines if b is not None]
    return dataclasses.replace(
        results[0],
        importances=np.hstack([r.importances for r in results]),
        baseline_score=float(np.mean(known)) if len(known) == len(baselines) else None,
    )


class SelectByImportance(SelectorMixin, MetaEstimatorMixin, BaseEstimator):
    """Keep the features (or sensor pairs, or sensors) a model's predictions depend on.

    :meth:`fit` splits the data it is given into a training part and a validation part
    (by participant when ``participants`` are passed), fits a clone of ``estimator`` on the
    training part and measures permutation importances on the validation part with
    :func:`leap.permutation_importance`. Units are then kept by rank (``k``), by importance
    (``threshold``), or both. Nothing outside the data passed to :meth:`fit` is used, so
    the selector can be cross-validated inside a :class:`~sklearn.pipeline.Pipeline`.

    Parameters
    ----------
    estimator : estimator object
        An unfitted scikit-learn estimator (cloned; the original is never fitted).
    k : int, optional
        Keep the ``k`` most important units (features, sensor pairs or sensors).
    threshold : float, optional
        Keep units whose mean importance is strictly greater than ``threshold``. With
        neither ``k`` nor ``threshold``, units with a positive mean importance are kept.
        With both, the top ``k`` among those above the threshold are kept.
    groups : None, "sensor_pair", "sensor", mapping or list of index lists
        The units of selection. ``None``: single columns. ``"sensor_pair"``: every sensor
        pair of ``layout`` (its channel pairs are permuted and kept together). ``"sensor"``: every
        sensor, importance measured by permuting all features that involve it; a feature is
        kept when *all* its sensors are kept, so the output holds exactly what the kept
        sensors can measure. A mapping ``{name: [indices or feature names]}`` or a list of
        index lists defines other units (kept columns are the union of kept units).
    layout : SensorLayout, optional
        Names the columns as channel pairs; needed for ``"sensor_pair"``/``"sensor"``
        (default: the 5-sensor × 6-dim LEAP layout).
    scoring : str or callable, optional
        A scikit-learn scorer; default the estimator's ``score``. A continuous metric
        (``"neg_log_loss"``, ``"roc_auc"``) ranks more steadily than accuracy, which moves
        in steps of one validation row. ``"neg_log_loss"`` is computed with the classes
        the model knows, so it works when a validation part lacks a class.
    n_repeats : int
        Permutations per unit.
    validation_size : float
        Fraction of rows (or of participants) held out for the importances.
    cv : int, optional
        Instead of one split, cross-fit: split into ``cv`` folds (by participant when
        given, else stratified for classifiers), fit a clone on all folds but one, measure
        importances on the one left out, and pool the importances of all folds as repeats.
        Every row then serves for validation once: steadier rankings, ``cv`` times the fits.
    random_state : int, RandomState or None
        Seeds the split and the permutations.
    n_jobs : int, optional
        Parallel jobs for the permutations.

    Attributes
    ----------
    estimators_ : list of estimator
        The clones fitted on the training part of each split, with all features.
    estimator_ : estimator
        The first (with ``cv=None`` the only) of ``estimators_``.
    importances_ : ImportanceResult
        Importances of the units on the validation part(s); with ``cv``, the repeats of
        every split side by side (``n_repeats * cv`` columns).
    unit_names_ : list of str
        The candidate units, in column/layout order.
    ranking_ : ndarray of int
        Unit indices, most important first (ties in unit order).
    selected_units_ : list of str
        The kept units, most important first.
    support_ : ndarray of bool
        The kept feature columns.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from leap.workflows.demo import make_leap_dataset
    >>> data = make_leap_dataset(n_participants=12, windows_per_participant=20)
    >>> selector = SelectByImportance(
    ...     LogisticRegression(max_iter=500), groups="sensor", k=4, random_state=0
    ... ).fit(data.X, data.y, participants=data.participants)
    >>> sorted(selector.selected_units_)
    ['Left_Ankle', 'Left_Wrist', 'Right_Ankle', 'Sacrum']
    """

    def __init__(
        self,
        estimator: Any,
        *,
        k: int | None = None,
        threshold: float | None = None,
        groups: Any = None,
        layout: SensorLayout | None = None,
        scoring: Any = None,
        n_repeats: int = 5,
        validation_size: float = 0.25,
        cv: int | None = None,
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.k = k
        self.threshold = threshold
        self.groups = groups
        self.layout = layout
        self.scoring = scoring
        self.n_repeats = n_repeats
        self.validation_size = validation_size
        self.cv = cv
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any, participants: Any = None) -> SelectByImportance:
        """Measure importances on a held-out part of ``X`` and choose the units to keep.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        participants : array-like of shape (n_samples,), optional
            Participant id per row; the internal split then holds out whole participants.
        """
        self._check_settings()
        X, y = validate_data(self, X, y)
        if is_classifier(self.estimator):
            check_classification_targets(y)
        if participants is not None:
            participants = np.asarray(participants)
            if participants.shape != (X.shape[0],):
                raise SelectionError(
                    f"participants must have one id per row ({X.shape[0]}), "
                    f"got shape {participants.shape}"
                )
        names = getattr(self, "feature_names_in_", None)
        units = resolve_groups(
            self.groups,
            X.shape[1],
            layout=self.layout,
            feature_names=None if names is None else [str(n) for n in names],
        )
        if self.k is not None and self.k > len(units.names):
            raise SelectionError(
                f"k={self.k} is more than the {len(units.names)} candidate units; "
                f"choose k <= {len(units.names)}"
            )
        splits = self._splits(X, y, participants)
        self.estimators_ = []
        results = []
        for train, val in splits:
            fitted = clone(self.estimator).fit(X[train], y[train])
            self.estimators_.append(fitted)
            results.append(self._importances(fitted, units, X[val], y[val]))
        self.estimator_ = self.estimators_[0]
        self.importances_ = _pooled(results)
        mean = self.importances_.importances_mean
        self.unit_names_ = list(units.names)
        self.ranking_ = np.lexsort((np.arange(len(mean)), -mean))
        kept = np.ones(len(mean), dtype=bool)
        if self.threshold is not None or self.k is None:
            kept &= mean > (0.0 if self.threshold is None else self.threshold)
        if self.k is not None:
            top = np.zeros(len(mean), dtype=bool)
            top[[i for i in self.ranking_ if kept[i]][: self.k]] = True
            kept &= top
        self.selected_units_ = [units.names[i] for i in self.ranking_ if kept[i]]
        self.support_ = units.support(kept, X.shape[1])
        return self

    def _splits(self, X: np.ndarray, y: np.ndarray, participants: np.ndarray | None) -> list:
        if self.cv is None:
            return [
                validation_split(
                    y,
                    participants=participants,
                    validation_size=self.validation_size,
                    random_state=self.random_state,
                    stratify=is_classifier(self.estimator),
                )
            ]
        return cross_fit_splits(
            X,
            y,
            participants=participants,
            n_splits=self.cv,
            random_state=self.random_state,
            stratify=is_classifier(self.estimator),
        )

    def _importances(
        self, fitted: Any, units: FeatureGroups, X: np.ndarray, y: np.ndarray
    ) -> ImportanceResult:
        from leap.engine import get_engine

        single = all(len(cols) == 1 for cols in units.indices) and self.groups is None
        result = get_engine().compute(
            fitted,
            X,
            y,
            scoring=resolve_scoring(self.scoring),
            n_repeats=self.n_repeats,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            groups=None if single else dict(zip(units.names, units.indices, strict=True)),
            layout=self._matching_layout(X.shape[1]) if single else None,
        )
        if not isinstance(result, ImportanceResult):
            raise SelectionError("scoring must name a single metric for feature selection")
        if single and list(result.feature_names) != units.names:
            result.feature_names = list(units.names)
        return result

    def _matching_layout(self, n_features: int) -> SensorLayout | None:
        layout = self.layout
        if layout is None and isinstance(self.groups, str):
            layout = SensorLayout()
        if layout is not None and layout.n_features == n_features:
            return layout
        return None

    def _check_settings(self) -> None:
        if self.k is not None and (
            not isinstance(self.k, numbers.Integral) or isinstance(self.k, bool) or self.k < 0
        ):
            raise SelectionError(f"k must be a non-negative integer or None, got {self.k!r}")
        if self.threshold is not None and not isinstance(self.threshold, numbers.Real):
            raise SelectionError(f"threshold must be a number or None, got {self.threshold!r}")
        if not isinstance(self.n_repeats, numbers.Integral) or self.n_repeats < 1:
            raise SelectionError(f"n_repeats must be a positive integer, got {self.n_repeats!r}")
        if self.cv is not None and (
            not isinstance(self.cv, numbers.Integral) or isinstance(self.cv, bool) or self.cv < 2
        ):
            raise SelectionError(f"cv must be None or an integer of at least 2, got {self.cv!r}")
        if not isinstance(self.validation_size, numbers.Real) or not (
            0.0 < self.validation_size < 1.0
        ):
            raise SelectionError(
                f"validation_size must be a fraction between 0 and 1, got {self.validation_size!r}"
            )
        if self.layout is not None and not isinstance(self.layout, SensorLayout):
            raise SelectionError(f"layout must be a SensorLayout, got {type(self.layout).__name__}")

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the kept features (the layout's channel-pair names when X had none)."""
        check_is_fitted(self, "support_")
        if input_features is None and not hasattr(self, "feature_names_in_"):
            layout = self._matching_layout(self.n_features_in_)
            if layout is not None:
                return np.asarray(layout.feature_names, dtype=object)[self.support_]
        names = _check_feature_names_in(self, input_features)
        return names[self.support_]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags
