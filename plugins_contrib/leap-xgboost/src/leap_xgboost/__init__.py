"""LEAP plugin: a model loader for XGBoost's own model formats (``.ubj``, ``.json``).

A file written by ``XGBClassifier.save_model`` / ``XGBRegressor.save_model`` (or by
``Booster.save_model``) comes back as the scikit-learn wrapper, ``XGBClassifier`` or
``XGBRegressor``, loaded by XGBoost itself (``load_model``), so its predictions, the
scorers and LEAP's boosting fast paths work as on the model in memory. XGBoost is imported
when a file is loaded, not when LEAP starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leap import hookimpl
from leap.errors import InputFileError, ModelError, one_line

__all__ = ["CLASSIFIER_OBJECTIVES", "XGBoostLoader", "estimator_type", "first_line"]

#: Objective prefixes of classification models (the rest, but ranking, are regressions).
CLASSIFIER_OBJECTIVES = ("binary:", "multi:")
#: Objective prefixes of models that are neither a classifier nor a regressor.
UNSUPPORTED_OBJECTIVES = ("rank:",)


def estimator_type(attributes: dict[str, str], objective: str) -> str:
    """``"classifier"`` or ``"regressor"``: what the file's model is.

    XGBoost's scikit-learn wrapper records its type in the booster attribute
    ``scikit_learn`` when it saves; a file saved from a bare ``Booster`` has no such record,
    and its objective decides (``binary:*`` and ``multi:*`` are classifiers).
    """
    recorded = attributes.get("scikit_learn")
    if recorded:
        try:
            kind = json.loads(recorded).get("_estimator_type")
        except (ValueError, AttributeError):
            kind = None
        if kind in ("classifier", "regressor"):
            return kind
    if objective.startswith(UNSUPPORTED_OBJECTIVES):
        raise ModelError(
            f"the model's objective is {objective!r}: a ranking model has no score LEAP "
            f"can permute against; LEAP analyses classifiers and regressors"
        )
    return "classifier" if objective.startswith(CLASSIFIER_OBJECTIVES) else "regressor"


def first_line(exc: BaseException) -> str:
    """The first line of an error (XGBoost appends a native stack trace), else its type."""
    lines = str(exc).strip().splitlines()
    return one_line(lines[0]) if lines else type(exc).__name__


class XGBoostLoader:
    """Loads XGBoost models saved in XGBoost's formats, as ``XGBClassifier``/``XGBRegressor``.

    Classifiers get back what XGBoost restores: ``n_classes_`` (from the model's
    ``num_class``, 2 for ``binary:*``) and ``classes_ = arange(n_classes_)``. XGBoost trains
    classifiers on labels encoded ``0 .. n_classes - 1``, so the label column of the feature
    matrix must hold those codes (as it did in training).
    """

    name = "xgboost"
    suffixes = (".ubj", ".json")

    def load(self, path: Path) -> Any:
        """Return the fitted scikit-learn wrapper of the XGBoost model in ``path``."""
        import xgboost as xgb

        path = Path(path)
        try:
            data = bytearray(path.read_bytes())
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
        if not data:
            raise ModelError(f"{path} is empty; save XGBoost models with model.save_model")
        try:
            booster = xgb.Booster(model_file=data)
            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        except (xgb.core.XGBoostError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"{path} is not a readable XGBoost model ({first_line(exc)}); save models "
                f"with model.save_model('model.ubj') or model.save_model('model.json')"
            ) from None
        try:
            kind = estimator_type(booster.attributes(), objective)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        model = xgb.XGBClassifier() if kind == "classifier" else xgb.XGBRegressor()
        try:
            model.load_model(data)
        except (xgb.core.XGBoostError, TypeError, ValueError) as exc:
            raise ModelError(
                f"{path}: XGBoost cannot load it as an {type(model).__name__}: {first_line(exc)}"
            ) from None
        return model


@hookimpl
def register_loaders(register):
    register(XGBoostLoader())
