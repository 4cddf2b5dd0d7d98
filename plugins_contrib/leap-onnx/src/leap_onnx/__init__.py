"""LEAP plugin: a model loader for ``.onnx`` files, run with onnxruntime.

The loaded model is wrapped in :class:`OnnxClassifier` or :class:`OnnxRegressor`, small
scikit-learn-compatible estimators (``predict``, ``predict_proba``, ``classes_``,
``n_features_in_``, estimator tags), so LEAP's importance methods and scikit-learn's
scorers work on models trained anywhere that exports ONNX.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from leap import hookimpl
from leap.errors import InputFileError, ModelError, one_line

__all__ = ["OnnxClassifier", "OnnxLoader", "OnnxRegressor", "from_onnx"]

#: ai.onnx.ml attributes that carry class labels, in the order they are looked for.
_LABEL_ATTRIBUTES = ("classlabels_strings", "classlabels_int64s", "classlabels_ints")
#: ONNX tensor element types → NumPy dtypes, for the model's input.
_INPUT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class _OnnxEstimator(BaseEstimator):
    """An ONNX model behind the scikit-learn estimator API (prediction only)."""

    def fit(self, X: Any, y: Any = None) -> _OnnxEstimator:
        """ONNX models arrive trained; refitting is not supported."""
        raise NotImplementedError(
            f"{type(self).__name__} wraps a trained ONNX model; it cannot fit"
        )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_bytes_")

    def _set_model(self, data: bytes, source: str) -> None:
        self.model_bytes_ = data
        self.source_ = source
        session = self._session()
        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(
                f"{source} has {len(inputs)} inputs ({names}); LEAP feeds one feature matrix, "
                f"so export the model with a single 2-D input"
            )
        self.input_name_ = inputs[0].name
        if inputs[0].type not in _INPUT_DTYPES:
            raise ModelError(f"{source} takes {inputs[0].type} input; LEAP feeds numbers")
        self.input_dtype_ = np.dtype(_INPUT_DTYPES[inputs[0].type])
        shape = inputs[0].shape
        if len(shape) == 2 and isinstance(shape[1], int):
            self.n_features_in_ = shape[1]
        self.output_names_ = [o.name for o in session.get_outputs()]

    def _session(self) -> Any:
        session = getattr(self, "_session_cache", None)
        if session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(
                    self.model_bytes_, sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelError(
                    f"onnxruntime cannot run {self.source_}: {one_line(exc)}"
                ) from None
            self._session_cache = session
        return session

    def _run(self, X: Any) -> dict[str, Any]:
        X = np.asarray(X, dtype=self.input_dtype_)
        if X.ndim != 2:
            raise ValueError(f"expected a 2-D feature matrix, got shape {X.shape}")
        n_expected = getattr(self, "n_features_in_", None)
        if n_expected is not None and X.shape[1] != n_expected:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_expected} features as input"
            )
        outputs = self._session().run(None, {self.input_name_: X})
        return dict(zip(self.output_names_, outputs, strict=True))

    def __getstate__(self) -> dict[str, Any]:
        # An InferenceSession cannot be pickled; it is rebuilt from the bytes on first use
        # (this is what lets joblib and Dask ship the model to other processes).
        state = super().__getstate__()
        state.pop("_session_cache", None)
        return state


class OnnxRegressor(RegressorMixin, _OnnxEstimator):
    """An ONNX regression model; ``predict`` returns float64."""

    def predict(self, X: Any) -> np.ndarray:
        """Predict targets (the model's first output, as float64)."""
        out = np.asarray(self._run(X)[self.output_names_[0]], dtype=np.float64)
        return out.ravel() if out.ndim == 2 and out.shape[1] == 1 else out


class OnnxClassifier(ClassifierMixin, _OnnxEstimator):
    """An ONNX classification model with its class labels in ``classes_``."""

    def predict(self, X: Any) -> np.ndarray:
        """Predict class labels (the model's label output, or the most probable class)."""
        outputs = self._run(X)
        if self.label_output_ is not None:
            labels = np.asarray(outputs[self.label_output_]).ravel()
            return labels.astype(self.classes_.dtype, copy=False)
        return self.classes_[np.argmax(self._proba(outputs), axis=1)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        return self._proba(self._run(X))

    def _proba(self, outputs: dict[str, Any]) -> np.ndarray:
        if self.proba_output_ is None:
            raise AttributeError(f"{self.source_} has no probability output")
        value = outputs[self.proba_output_]
        if isinstance(value, list):  # ZipMap: one {label: probability} dict per row
            keys = [k.item() if isinstance(k, np.generic) else k for k in self.classes_]
            return np.array([[row[k] for k in keys] for row in value], dtype=np.float64)
        return np.asarray(value, dtype=np.float64)


def from_onnx(data: bytes, source: str = "<bytes>") -> OnnxClassifier | OnnxRegressor:
    """Wrap a serialized ONNX model as a classifier (if it declares class labels) or regressor.

    Class labels come from the ``classlabels_*`` attribute of an ``ai.onnx.ml`` node
    (what skl2onnx and most converters write), else from a ``classes`` entry (a JSON
    list) in the model's metadata.
    """
    import onnx

    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise ModelError(
            f"{source} is not a readable ONNX model ({type(exc).__name__}: "
            f"{one_line(exc) or 'no details'})"
        ) from None
    if not proto.graph.output:
        raise ModelError(f"{source} is not a readable ONNX model (it has no outputs)")
    classes = _class_labels(proto)
    if classes is None:
        model: OnnxClassifier | OnnxRegressor = OnnxRegressor()
        model._set_model(data, source)
        return model
    model = OnnxClassifier()
    model._set_model(data, source)
    model.classes_ = classes
    kinds = {o.name: o.type.WhichOneof("value") for o in proto.graph.output}
    elem = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    integer_or_string = {
        onnx.TensorProto.INT64,
        onnx.TensorProto.INT32,
        onnx.TensorProto.STRING,
    }
    model.label_output_ = next(
        (
            n
            for n in model.output_names_
            if kinds[n] == "tensor_type" and elem[n] in integer_or_string
        ),
        None,
    )
    model.proba_output_ = next(
        (n for n in model.output_names_ if n != model.label_output_ and kinds[n] != "map_type"),
        None,
    )
    if model.label_output_ is None and model.proba_output_ is None:
        raise ModelError(f"{source} declares classes but has neither a label nor a score output")
    return model


def _class_labels(proto: Any) -> np.ndarray | None:
    import onnx

    found: dict[str, np.ndarray] = {}
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.name in _LABEL_ATTRIBUTES and node.domain == "ai.onnx.ml":
                values = onnx.helper.get_attribute_value(attr)
                labels = (
                    np.array([v.decode("utf-8") for v in values], dtype=object)
                    if attr.name == "classlabels_strings"
                    else np.array(values, dtype=np.int64)
                )
                # ZipMap defines the order of the probability columns a user sees: prefer it.
                if node.op_type == "ZipMap" or "labels" not in found:
                    found["labels"] = labels
    if "labels" in found:
        return found["labels"]
    meta = {p.key: p.value for p in proto.metadata_props}
    if "classes" in meta:
        try:
            return np.array(json.loads(meta["classes"]))
        except (json.JSONDecodeError, TypeError):
            raise ModelError("the model's 'classes' metadata is not a JSON list") from None
    return None


class OnnxLoader:
    """Loads ``.onnx`` models into :class:`OnnxClassifier` / :class:`OnnxRegressor`."""

    name = "onnx"
    suffixes = (".onnx",)

    def load(self, path: Path) -> OnnxClassifier | OnnxRegressor:
        """Read ``path`` and wrap it for scoring."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
        return from_onnx(data, str(path))


@hookimpl
def register_loaders(register):
    register(OnnxLoader())
