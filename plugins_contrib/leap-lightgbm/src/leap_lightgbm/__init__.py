"""LEAP plugin: a model loader for LightGBM's own text model format (``.txt``).

``lgb.Booster(model_file=...)`` reads the trees; the loader wraps the booster back into the
scikit-learn estimator, ``LGBMClassifier`` or ``LGBMRegressor``, so the scorers and LEAP's
boosting fast paths work as on the model in memory. The text format keeps the trees but not
the classifier's class labels (the wrapper encodes labels as ``0 .. n_classes - 1`` before
training): :func:`save_model` writes them beside the model, in ``<model file>.leap.json``.
LightGBM is imported when a file is loaded, not when LEAP starts.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leap import hookimpl
from leap.errors import InputFileError, ModelError, one_line

__all__ = [
    "CLASSIFIER_OBJECTIVES",
    "SIDECAR_SUFFIX",
    "LightGBMLoader",
    "save_model",
    "sidecar_path",
    "wrap_booster",
]

#: LightGBM objectives (canonical names, as model files store them) of classifiers.
CLASSIFIER_OBJECTIVES = frozenset({"binary", "multiclass", "multiclassova"})
#: Objectives of ranking models: neither a classifier nor a regressor.
RANKING_OBJECTIVES = frozenset({"lambdarank", "rank_xendcg"})
#: Appended to the model file's name for the file holding what the text format does not.
SIDECAR_SUFFIX = ".leap.json"
SIDECAR_FORMAT = "leap-lightgbm/1"


def sidecar_path(path: str | Path) -> Path:
    """Where :func:`save_model` keeps the classes of the model saved at ``path``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def save_model(model: Any, path: str | Path) -> Path:
    """Save a fitted ``LGBMClassifier``/``LGBMRegressor`` as LightGBM text, with its classes.

    Writes ``path`` with ``model.booster_.save_model`` and, beside it,
    ``<path>.leap.json``: the estimator type, the class labels and their dtype, and the
    SHA-256 digest of the model text (so a sidecar that belongs to another file is
    refused). Returns ``path``.
    """
    import lightgbm as lgb

    if not isinstance(model, lgb.LGBMModel):
        raise TypeError(f"save_model takes a fitted LGBMClassifier or LGBMRegressor, got {model!r}")
    path = Path(path)
    model.booster_.save_model(path)
    record: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "estimator_type": "classifier" if isinstance(model, lgb.LGBMClassifier) else "regressor",
        "model_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    if isinstance(model, lgb.LGBMClassifier):
        classes = np.asarray(model.classes_)
        record["classes"] = classes.tolist()
        record["classes_dtype"] = classes.dtype.str if classes.dtype.kind in "biufUS" else "object"
    sidecar_path(path).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return path


def wrap_booster(booster: Any, kind: str, classes: Sequence[Any] | np.ndarray | None = None) -> Any:
    """The fitted ``LGBMClassifier`` (``kind="classifier"``) or ``LGBMRegressor`` of ``booster``.

    LightGBM offers no public way to hand a booster to its scikit-learn wrapper, so this
    sets the state ``fit`` leaves behind; the loader then checks on a probe that the
    wrapper's outputs are the booster's own. ``classes`` defaults to
    ``0 .. n_classes - 1``, the codes the booster predicts.
    """
    import lightgbm as lgb
    from sklearn.preprocessing import LabelEncoder

    model = lgb.LGBMClassifier() if kind == "classifier" else lgb.LGBMRegressor()
    n_features = booster.num_feature()
    names = booster.feature_name()
    model._Booster = booster
    model._n_features = n_features
    model.n_features_in_ = n_features
    model._fitted_with_feature_names = names != [f"Column_{i}" for i in range(n_features)]
    model._objective = booster.params.get("objective")
    model._best_iteration = booster.best_iteration
    model._best_score = booster.best_score
    model._evals_result = {}
    model.set_params(n_estimators=booster.current_iteration())
    if kind == "classifier":
        n_classes = booster.num_model_per_iteration() if model._objective != "binary" else 2
        classes = np.arange(n_classes) if classes is None else np.asarray(classes)
        if classes.ndim != 1 or len(classes) != n_classes:
            raise ModelError(
                f"the model has {n_classes} classes, but {len(classes)} class labels were given"
            )
        encoder = LabelEncoder()
        encoder.classes_ = classes
        model._le = encoder
        model._classes = classes
        model._n_classes = n_classes
        model._class_map = {c: i for i, c in enumerate(classes.tolist())}
    model.fitted_ = True
    return model


def estimator_kind(objective: str | None) -> str:
    """``"classifier"`` or ``"regressor"`` for a LightGBM objective; ranking is refused."""
    if objective in RANKING_OBJECTIVES:
        raise ModelError(
            f"the model's objective is {objective!r}: a ranking model has no score LEAP can "
            f"permute against; LEAP analyses classifiers and regressors"
        )
    return "classifier" if objective in CLASSIFIER_OBJECTIVES else "regressor"


class LightGBMLoader:
    """Loads LightGBM text models as ``LGBMClassifier``/``LGBMRegressor``, classes restored.

    The classes come from ``<model file>.leap.json`` (:func:`save_model`), when present and
    written for this very file; otherwise they are the codes ``0 .. n_classes - 1`` the
    booster predicts, which are the labels whenever the model was trained on such codes
    (a warning says so, as nothing in the file can confirm it).

    Parameters
    ----------
    classes : sequence, optional
        Class labels to use instead (``classes_`` order: sorted, as the wrapper sorts them).
    """

    name = "lightgbm"
    suffixes = (".txt",)

    def __init__(self, classes: Sequence[Any] | None = None) -> None:
        self.classes = None if classes is None else list(classes)

    def companion_files(self, path: Path) -> list[Path]:
        """The sidecar of ``path``: LEAP copies it along when it loads a verified copy."""
        return [sidecar_path(path)]

    def load(self, path: Path) -> Any:
        """Return the fitted scikit-learn wrapper of the LightGBM model in ``path``."""
        import lightgbm as lgb

        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
        if not data.strip():
            raise ModelError(f"{path} is empty; save LightGBM models with booster.save_model")
        try:
            booster = lgb.Booster(model_str=data.decode("utf-8"))
        except (lgb.basic.LightGBMError, UnicodeDecodeError, ValueError) as exc:
            raise ModelError(
                f"{path} is not a readable LightGBM text model ({one_line(exc) or 'no details'}); "
                f"save models with model.booster_.save_model('model.txt')"
            ) from None
        record = self._sidecar(path, data)
        try:
            kind = record.get("estimator_type") or estimator_kind(booster.params.get("objective"))
            classes = self.classes if self.classes is not None else record.get("classes")
            if classes is not None and record.get("classes_dtype") not in (None, "object"):
                classes = np.asarray(classes, dtype=np.dtype(record["classes_dtype"]))
            elif classes is not None:
                classes = np.array(classes, dtype=object)
            model = wrap_booster(booster, kind, classes)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        if kind == "classifier" and classes is None:
            warnings.warn(
                f"{path.name} has no {sidecar_path(path).name} beside it, so its classes are "
                f"taken to be the codes 0..{len(model.classes_) - 1} the booster predicts; if "
                f"the model was trained on other labels, save it with leap_lightgbm.save_model",
                UserWarning,
                stacklevel=2,
            )
        _check_wrapper(model, booster, path)
        return model

    def _sidecar(self, path: Path, data: bytes) -> dict[str, Any]:
        side = sidecar_path(path)
        if not side.is_file():
            return {}
        try:
            record = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{side} is not readable JSON ({one_line(exc)})") from None
        if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
            raise ModelError(f"{side} was not written by leap_lightgbm.save_model")
        if record.get("model_sha256") != hashlib.sha256(data).hexdigest():
            raise ModelError(
                f"{side} describes another model than {path.name} (the digest differs); "
                f"save the two together with leap_lightgbm.save_model, or delete {side.name}"
            )
        if record.get("estimator_type") not in ("classifier", "regressor"):
            raise ModelError(f"{side}: estimator_type must be 'classifier' or 'regressor'")
        return record


def _check_wrapper(model: Any, booster: Any, path: Path) -> None:
    """The wrapper must answer exactly as the booster does (guards LightGBM's internals)."""
    probe = np.linspace(-2.0, 2.0, 3 * model.n_features_in_).reshape(3, -1)
    raw = np.asarray(booster.predict(probe), dtype=np.float64)
    with warnings.catch_warnings():  # a model fitted on named columns, probed with an array
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        if hasattr(model, "classes_"):
            proba = np.column_stack([1.0 - raw, raw]) if raw.ndim == 1 else raw
            ok = np.array_equal(model.predict_proba(probe), proba) and np.array_equal(
                model.predict(probe), model.classes_[np.argmax(proba, axis=1)]
            )
        else:
            ok = np.array_equal(model.predict(probe), raw)
    if not ok:
        raise ModelError(
            f"{path}: this LightGBM version's scikit-learn wrapper does not answer as the "
            f"loaded booster does; leap-lightgbm needs an update for it"
        )


@hookimpl
def register_loaders(register):
    register(LightGBMLoader())
