"""Checks that a model, a feature matrix, a layout and a scorer fit together.

Each ``check_*`` function raises a :class:`~leap.errors.LeapError` subclass with one
actionable line, before any permutation work starts. :meth:`leap.engine.Engine.analyze`
runs them all (:func:`check_pair`); ``leap doctor`` runs them one by one and reports
every problem it finds.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np

from leap.components import FeatureMatrix
from leap.data.layout import SensorLayout
from leap.errors import ConfigError, LayoutError, MatrixError, ModelError

#: Scorers that only work when the label has exactly two classes.
BINARY_ONLY_SCORERS = frozenset(
    {
        "f1",
        "precision",
        "recall",
        "jaccard",
        "roc_auc",
        "positive_likelihood_ratio",
        "neg_negative_likelihood_ratio",
    }
)
#: Of those, the ones whose positive class is the label value 1.
POS_LABEL_SCORERS = frozenset({"f1", "precision", "recall", "jaccard"})
#: Scorers for which a constant regression target makes the score meaningless.
VARIANCE_SCORERS = frozenset({None, "r2", "explained_variance"})


def model_kind(model: Any) -> str:
    """``module.Class`` of ``model``, for messages."""
    return f"{type(model).__module__}.{type(model).__qualname__}"


def check_predict(model: Any, source: Any = "the model") -> None:
    """Raise :class:`ModelError` unless ``model`` is a fitted model with a callable ``predict``.

    Every model a loader returns goes through this check, so loaders need not repeat it.
    """
    if not callable(getattr(model, "predict", None)):
        raise ModelError(
            f"{source} holds a {model_kind(model)}, not a fitted model with a predict() method "
            f"(LEAP needs a classifier or regressor, or a Pipeline ending in one)"
        )
    if callable(getattr(model, "fit", None)) and hasattr(model, "get_params"):
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(model)
        except NotFittedError:
            raise ModelError(
                f"{source} holds a {model_kind(model)} that has not been fitted"
            ) from None
        except TypeError:
            pass


def check_width(n_columns: int, layout: SensorLayout, model: Any = None) -> None:
    """Check the matrix width against the layout and the model's ``n_features_in_``.

    The message always states the three numbers: matrix columns, layout features and
    the number of features the model was fitted on.
    """
    n_model = getattr(model, "n_features_in_", None)
    n_model = int(n_model) if isinstance(n_model, int | np.integer) else None
    layout_ok = n_columns == layout.n_features
    model_ok = n_model is None or n_model == n_columns
    if layout_ok and model_ok:
        return
    fitted = (
        f"the model was fitted on {n_model}"
        if n_model is not None
        else "the model does not record how many features it was fitted on"
    )
    head = (
        f"the feature matrix has {n_columns} feature columns, the layout expects "
        f"{layout.n_features} ({layout.describe()}) and {fitted}"
    )
    if model_ok:
        raise LayoutError(
            f"{head}; pass sensors and dims (--sensors/--dims, or layout=) that match the data"
        )
    if layout_ok:
        raise MatrixError(f"{head}; is this the matrix the model was trained on?")
    raise MatrixError(f"{head}; check the label column and that this matrix belongs to this model")


def check_feature_names(matrix: FeatureMatrix, model: Any) -> None:
    """Raise :class:`MatrixError` when the file's column names differ from ``feature_names_in_``.

    Only names that come from the file are compared (a ``.npy`` has none); the model's
    names are first checked for consistency (:func:`check_model_feature_names`).
    """
    expected = check_model_feature_names(model, matrix.n_features)
    if expected is None or not getattr(matrix, "names_from_file", True):
        return
    found = [str(n) for n in matrix.feature_names]
    if expected == found or len(expected) != len(found):
        return
    if sorted(expected) == sorted(found):
        first = next(i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
        raise MatrixError(
            f"the feature matrix has the model's feature names in a different order (column "
            f"{first} is {found[first]!r}, the model expects {expected[first]!r}); reorder the "
            f"columns as in the model's feature_names_in_"
        )
    missing = [n for n in expected if n not in set(found)]
    extra = [n for n in found if n not in set(expected)]
    raise MatrixError(
        f"the feature matrix's column names differ from the model's feature_names_in_: "
        f"{len(missing)} expected name(s) missing (e.g. {_listing(missing)}), "
        f"{len(extra)} unexpected (e.g. {_listing(extra)}); rename the columns or use the "
        f"matrix the model was trained with"
    )


def check_model_feature_names(model: Any, n_columns: int | None = None) -> list[str] | None:
    """The model's ``feature_names_in_`` as a list of str, or None when it has none.

    Raises :class:`ModelError` when the attribute is not a flat sequence of distinct
    strings, or disagrees in length with ``n_features_in_`` or with the matrix's
    ``n_columns`` (the model would be handed a table it cannot accept).
    """
    try:
        names = getattr(model, "feature_names_in_", None)
    except Exception as exc:  # a property that raises
        raise ModelError(
            f"the model's feature_names_in_ cannot be read ({type(exc).__name__})"
        ) from None
    if names is None:
        return None
    kind = type(names).__name__
    if isinstance(names, str | bytes) or not hasattr(names, "__len__"):
        raise ModelError(
            f"the model's feature_names_in_ is a {kind}, not a list of column names; the "
            f"model file is damaged or was edited"
        )
    try:
        array = np.asarray(names, dtype=object)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1:
        raise ModelError(
            f"the model's feature_names_in_ ({kind}) is not a flat list of column names; "
            f"the model file is damaged or was edited"
        )
    odd = [i for i, n in enumerate(array) if not isinstance(n, str)]
    if odd:
        raise ModelError(
            f"the model's feature_names_in_ holds a {type(array[odd[0]]).__name__} at "
            f"position {odd[0]}, not a column name; the model file is damaged or was edited"
        )
    found = [str(n) for n in array]
    if len(set(found)) != len(found):
        twice = next(n for i, n in enumerate(found) if n in found[:i])  # rare: error path only
        raise ModelError(
            f"the model's feature_names_in_ names the column {twice[:40]!r} twice; the model "
            f"file is damaged or was edited"
        )
    n_model = getattr(model, "n_features_in_", None)
    if isinstance(n_model, int | np.integer) and int(n_model) != len(found):
        raise ModelError(
            f"the model's feature_names_in_ lists {len(found)} names but its n_features_in_ is "
            f"{int(n_model)}; the model file is damaged or was edited"
        )
    if n_columns is not None and n_columns != len(found):
        raise MatrixError(
            f"the feature matrix has {n_columns} feature columns but the model's "
            f"feature_names_in_ lists {len(found)}; is this the matrix the model was trained on?"
        )
    return found


def check_label(model: Any, y: np.ndarray, label_name: str = "label", scoring: Any = None) -> None:
    """Raise :class:`MatrixError` for a label the analysis cannot use with ``model``.

    A classifier needs at least two classes in the label, and label values among its
    ``classes_``; a regressor scored by r2 needs a label that is not constant.
    """
    values = _unique(y)
    n_rows = len(y)
    if is_classifier(model) and len(values) < 2:
        raise MatrixError(
            f"the label {label_name!r} has a single class ({_value(values)}) in all {n_rows} "
            f"rows; a classifier's importances need at least two classes (is --label the "
            f"right column?)"
        )
    classes = getattr(model, "classes_", None)
    if is_classifier(model) and classes is not None and len(values):
        try:
            known = np.isin(values, np.asarray(classes))
        except (TypeError, ValueError):
            known = np.zeros(len(values), dtype=bool)
        if not known.any():
            raise MatrixError(
                f"none of the label {label_name!r} values ({_listing(values.tolist())}) are "
                f"among the model's classes ({_listing(np.asarray(classes).tolist())}); "
                f"is --label the right column, encoded as in training?"
            )
    if is_regressor(model) and len(values) < 2 and _scorer_name(scoring) in VARIANCE_SCORERS:
        raise MatrixError(
            f"the label {label_name!r} is constant ({_value(values)}) in all {n_rows} rows, "
            f"so r2 is undefined; choose a label that varies or another scoring"
        )


def check_scoring(model: Any, scoring: Any, y: np.ndarray | None = None) -> None:
    """Raise :class:`ConfigError` when a scorer does not fit the model's task.

    Checks named scorers only (a callable is trusted): the name exists; a classification
    metric is not used on a regressor nor a regression metric on a classifier; the model
    has the method the scorer calls (``predict_proba``/``decision_function``); two-class
    metrics are not used on more classes.
    """
    if scoring is None or callable(scoring):
        return
    if isinstance(scoring, dict):
        names = [v for v in scoring.values() if isinstance(v, str)]
    elif isinstance(scoring, str):
        names = [scoring]
    elif isinstance(scoring, Sequence | set | frozenset):
        names = [s for s in scoring if isinstance(s, str)]
    else:
        return
    for name in names:
        _check_one_scorer(model, name, y)


def check_pair(
    model: Any,
    matrix: FeatureMatrix,
    layout: SensorLayout,
    scoring: Any = None,
) -> None:
    """Every check between a loaded model and a read matrix, raising the first problem."""
    check_predict(model)
    check_width(matrix.n_features, layout, model)
    check_feature_names(matrix, model)
    check_label(model, matrix.y, matrix.label_name, scoring)
    check_scoring(model, scoring, matrix.y)


def _check_one_scorer(model: Any, name: str, y: np.ndarray | None) -> None:
    from sklearn.metrics import get_scorer, get_scorer_names

    known = get_scorer_names()
    if name not in known:
        # A prefix or a common abbreviation first ("acc": accuracy, not jaccard), then spelling.
        wanted = name.strip().lower()
        aliases = {
            "acc": "accuracy",
            "auc": "roc_auc",
            "mse": "neg_mean_squared_error",
            "rmse": "neg_root_mean_squared_error",
            "mae": "neg_mean_absolute_error",
            "mape": "neg_mean_absolute_percentage_error",
        }
        close = [aliases[wanted]] if wanted in aliases else []
        for prefix in (wanted, f"neg_{wanted}"):
            close += sorted((k for k in known if k.startswith(prefix)), key=len)[:3]
        close = list(dict.fromkeys(close))[:3] or difflib.get_close_matches(wanted, known, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "see sklearn.metrics"
        raise ConfigError(f"unknown scoring {name!r}; {hint} (get_scorer_names() lists all)")
    scorer = get_scorer(name)
    module = getattr(getattr(scorer, "_score_func", None), "__module__", "") or ""
    task = "regression" if module.endswith("_regression") else "classification"
    kind = type(model).__name__
    if task == "classification" and is_regressor(model):
        raise ConfigError(
            f"scoring {name!r} is a classification metric but the model ({kind}) is a "
            f"regressor; use a regression scorer such as r2 or neg_mean_squared_error"
        )
    if task == "regression" and is_classifier(model):
        raise ConfigError(
            f"scoring {name!r} is a regression metric but the model ({kind}) is a "
            f"classifier; use a classification scorer such as accuracy or balanced_accuracy"
        )
    methods = getattr(scorer, "_response_method", "predict")
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if not any(_has_method(model, m) for m in methods):
        raise ConfigError(
            f"scoring {name!r} needs the model's {' or '.join(methods)}, which {kind} does "
            f"not have; choose a scorer that uses predict (e.g. accuracy or r2)"
        )
    if y is None or not is_classifier(model):
        return
    classes = _unique(y)
    if name in BINARY_ONLY_SCORERS and len(classes) > 2:
        better = [s for s in (f"{name}_macro", f"{name}_ovr") if s in known]
        hint = f"use {better[0]} instead" if better else "choose a multi-class scorer"
        raise ConfigError(
            f"scoring {name!r} works with two classes only, but the label has "
            f"{len(classes)}; {hint}"
        )
    if name in POS_LABEL_SCORERS and len(classes) == 2 and not np.isin(1, classes).item():
        raise ConfigError(
            f"scoring {name!r} takes the class 1 as positive, but the label's classes are "
            f"{_listing(classes.tolist())}; use {name}_macro or encode the positive class as 1"
        )


def model_task(model: Any) -> str | None:
    """``"classifier"``, ``"regressor"``, or None when the model does not say.

    Asks scikit-learn's tags, then the older ``_estimator_type`` attribute, so objects
    that are not scikit-learn estimators (a wrapped ONNX model, say) work too.
    """
    from sklearn.base import is_classifier, is_regressor

    try:
        if is_classifier(model):
            return "classifier"
        if is_regressor(model):
            return "regressor"
    except Exception:  # no __sklearn_tags__: not a scikit-learn estimator
        pass
    kind = getattr(model, "_estimator_type", None)
    return kind if kind in ("classifier", "regressor") else None


def is_classifier(model: Any) -> bool:
    """Whether ``model`` declares itself a classifier (see :func:`model_task`)."""
    return model_task(model) == "classifier"


def is_regressor(model: Any) -> bool:
    """Whether ``model`` declares itself a regressor (see :func:`model_task`)."""
    return model_task(model) == "regressor"


def _has_method(model: Any, method: str) -> bool:
    try:
        return callable(getattr(model, method, None))
    except Exception:  # available_if raises AttributeError subclasses; be lenient
        return False


def _unique(y: Any) -> np.ndarray:
    try:
        return np.unique(np.asarray(y))
    except TypeError:  # mixed types, e.g. numbers and strings in one object column
        return np.unique(np.asarray(y).astype(str))


def _scorer_name(scoring: Any) -> Any:
    return scoring if scoring is None or isinstance(scoring, str) else "other"


def _value(values: np.ndarray) -> str:
    return repr(values[0].item()) if len(values) else "no value"


def _listing(names: Sequence[Any], limit: int = 4) -> str:
    names = list(names)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "") or "none"
