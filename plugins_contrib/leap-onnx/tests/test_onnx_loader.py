"""leap-onnx: ONNX models exported by skl2onnx score exactly like their scikit-learn originals.

The data are small integers and the models are trees with pure leaves, so float32 inference
in onnxruntime gives the very predictions float64 scikit-learn gives (thresholds and leaf
values are exactly representable), and therefore the very same permutation importances.
"""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import onnx
import pytest
from leap_onnx import OnnxClassifier, OnnxLoader, OnnxRegressor, from_onnx
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.base import is_classifier, is_regressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

from leap import Engine, SensorLayout, analyze_permutation_importance
from leap.errors import LeapError, ModelError

LAYOUT = SensorLayout.create(("Left_Ankle", "Right_Ankle", "Sacrum"), ("x_acc", "y_acc"))
ACTIVITIES = np.array(["sit", "stand", "walk"])


def _features(n: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 8, size=(n, LAYOUT.n_features)).astype(float)


def _labels(X: np.ndarray) -> np.ndarray:
    steps = (X[:, 0] > 3).astype(int) + (X[:, 4] > 4) + (X[:, 9] > 5)
    return ACTIVITIES[np.minimum(steps, 2)]


def _targets(X: np.ndarray) -> np.ndarray:
    return 3 * X[:, 0] - 2 * X[:, 4] + X[:, 9] * X[:, 2]


def _export(model, X: np.ndarray, path, zipmap: bool = True):
    options = None if zipmap else {id(model): {"zipmap": False}}
    proto = to_onnx(model, X[:1].astype(np.float32), options=options, target_opset=17)
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.mark.parametrize("zipmap", [True, False])
@pytest.mark.parametrize("label_kind", ["str", "int"])
def test_classifier_keeps_labels_predictions_and_estimator_api(tmp_path, zipmap, label_kind):
    X = _features()
    y = _labels(X) if label_kind == "str" else np.searchsorted(ACTIVITIES, _labels(X)) + 10
    model = DecisionTreeClassifier(random_state=0).fit(X, y)
    wrapped = OnnxLoader().load(_export(model, X, tmp_path / "m.onnx", zipmap=zipmap))

    assert isinstance(wrapped, OnnxClassifier) and is_classifier(wrapped)
    check_is_fitted(wrapped)
    assert wrapped.n_features_in_ == LAYOUT.n_features
    assert list(wrapped.classes_) == list(model.classes_)
    X_new = _features(seed=1)
    np.testing.assert_array_equal(wrapped.predict(X_new), model.predict(X_new))
    np.testing.assert_allclose(wrapped.predict_proba(X_new), model.predict_proba(X_new), atol=1e-6)
    assert wrapped.score(X_new, model.predict(X_new)) == 1.0
    # picklable (for joblib and Dask workers): the session is rebuilt from the bytes
    again = pickle.loads(pickle.dumps(wrapped))
    np.testing.assert_array_equal(again.predict(X_new), model.predict(X_new))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_onnx_and_pickle_give_identical_importances(tmp_path, kind):
    X = _features()
    if kind == "classifier":
        y = _labels(X)
        model = DecisionTreeClassifier(random_state=0).fit(X, y)
    else:
        y = _targets(X)
        model = RandomForestRegressor(n_estimators=4, random_state=0).fit(X, y)
    joblib.dump(model, tmp_path / "model.pkl")
    _export(model, X, tmp_path / "model.onnx")
    np.savez(tmp_path / "features.npz", X=X, y=y)

    engine = Engine()
    loaded = engine.load_model(tmp_path / "model.onnx")
    assert is_classifier(loaded) if kind == "classifier" else is_regressor(loaded)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))

    runs = {}
    for suffix in ("pkl", "onnx"):
        runs[suffix] = analyze_permutation_importance(
            tmp_path / f"model.{suffix}",
            tmp_path / "features.npz",
            save_csv_path=tmp_path / f"importance_{suffix}.csv",
            layout=LAYOUT,
            n_repeats=3,
            random_state=7,
            renderers=[],
            engine=engine,
        )
    ref, got = runs["pkl"], runs["onnx"]
    assert got.baseline_score == ref.baseline_score
    np.testing.assert_allclose(got.importances, ref.importances, rtol=0, atol=1e-12)
    informative = {0, 4, 9} if kind == "classifier" else {0, 2, 4, 9}
    top = np.argsort(-ref.importances_mean)[: len(informative)]
    assert set(top.tolist()) == informative  # the columns the label depends on come first


def _custom_model(path, *, inputs: int = 1, classes: list[str] | None = None):
    """A hand-built ONNX graph (like a network exported from another framework)."""
    weights = helper.make_tensor("W", TensorProto.FLOAT, [2, 2], [1.0, -1.0, -1.0, 1.0])
    names = [f"x{i}" for i in range(inputs)]
    nodes = [helper.make_node("MatMul", [names[0], "W"], ["logits"])]
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    if inputs == 2:
        nodes.append(helper.make_node("Add", ["probabilities", "x1"], ["summed"]))
    graph = helper.make_graph(
        nodes,
        "custom",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2]) for n in names],
        [
            helper.make_tensor_value_info(
                "summed" if inputs == 2 else "probabilities", TensorProto.FLOAT, [None, 2]
            )
        ],
        [weights],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    if classes is not None:
        helper.set_model_props(proto, {"classes": '["' + '", "'.join(classes) + '"]'})
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())
    return path


def test_model_from_another_framework_with_classes_metadata(tmp_path):
    X = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 3.0]])
    wrapped = OnnxLoader().load(_custom_model(tmp_path / "net.onnx", classes=["left", "right"]))
    assert is_classifier(wrapped)
    assert list(wrapped.predict(X)) == ["left", "right", "right"]
    np.testing.assert_allclose(wrapped.predict_proba(X).sum(axis=1), 1.0, atol=1e-6)

    as_regressor = OnnxLoader().load(_custom_model(tmp_path / "reg.onnx"))
    assert isinstance(as_regressor, OnnxRegressor)
    assert as_regressor.predict(X).shape == (3, 2)


def test_unusable_files_raise_one_line_model_errors(tmp_path):
    with pytest.raises(ModelError, match="2 inputs"):
        OnnxLoader().load(_custom_model(tmp_path / "two.onnx", inputs=2))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot an onnx model at all")
    with pytest.raises(LeapError, match=r"garbage\.onnx"):
        Engine().load_model(garbage)
    with pytest.raises(ModelError, match="readable ONNX"):
        from_onnx(b"", "empty.onnx")
    with pytest.raises(NotImplementedError, match="cannot fit"):
        OnnxRegressor().fit(np.zeros((2, 2)), np.zeros(2))
