"""leap-lightgbm: LightGBM text models come back as the scikit-learn wrappers, class labels
restored from the sidecar, and give exactly the importances of the same model in memory."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from leap_lightgbm import LightGBMLoader, save_model, sidecar_path
from sklearn.inspection import permutation_importance as sk_permutation_importance

import leap
from leap.errors import ModelError

RNG = np.random.RandomState(11)
X = RNG.normal(size=(150, 10))
CODES = np.digitize(X[:, 2] + 0.8 * X[:, 5] + 0.3 * RNG.normal(size=150), [-0.6, 0.6])
#: activity labels as a study names them: neither 0-based nor numbers at all
LABELS = np.array(["sit", "stand", "walk"])[CODES]
STEPS = np.array([1, 2, 3])[CODES]
TARGET = 2.0 * X[:, 0] - X[:, 3] + 0.1 * RNG.normal(size=150)
FIT = {"n_estimators": 8, "num_leaves": 7, "min_child_samples": 5, "n_jobs": 1, "verbose": -1}


def _importances(model, y, data=X, **kwargs):
    return leap.permutation_importance(model, data, y, n_repeats=3, random_state=0, **kwargs)


@pytest.mark.parametrize("y", [LABELS, STEPS, (CODES > 0).astype(int)], ids=["str", "1-3", "0/1"])
def test_saved_classifier_has_the_importances_of_the_model_in_memory(tmp_path, y):
    model = lgb.LGBMClassifier(**FIT).fit(X, y)
    path = save_model(model, tmp_path / "model.txt")
    assert sidecar_path(path).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # classes known: no warning
        loaded = leap.Engine().load_model(path)
    assert type(loaded) is lgb.LGBMClassifier
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.classes_.dtype == model.classes_.dtype and loaded.n_classes_ == model.n_classes_
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))

    for scoring in (None, "neg_log_loss"):
        ref = _importances(model, y, scoring=scoring)
        got = _importances(loaded, y, scoring=scoring)
        np.testing.assert_allclose(got.importances, ref.importances, rtol=0, atol=1e-12)
        assert got.baseline_score == ref.baseline_score
    sk = sk_permutation_importance(loaded, X, y, n_repeats=3, random_state=0)
    got = _importances(loaded, y)
    np.testing.assert_allclose(got.importances, sk.importances, rtol=0, atol=1e-12)


def test_regressor_and_named_columns(tmp_path):
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    model = lgb.LGBMRegressor(**FIT).fit(frame, TARGET)
    path = save_model(model, tmp_path / "regressor.txt")
    loaded = LightGBMLoader().load(path)
    assert type(loaded) is lgb.LGBMRegressor
    assert list(loaded.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    ref, got = _importances(model, TARGET, frame), _importances(loaded, TARGET, frame)
    np.testing.assert_allclose(got.importances, ref.importances, rtol=0, atol=1e-12)


def test_without_sidecar_classes_are_the_codes_and_a_warning_says_so(tmp_path):
    model = lgb.LGBMClassifier(**FIT).fit(X, CODES)
    path = tmp_path / "bare.txt"
    model.booster_.save_model(path)
    with pytest.warns(UserWarning, match=r"leap_lightgbm\.save_model"):
        loaded = LightGBMLoader().load(path)
    np.testing.assert_array_equal(loaded.classes_, [0, 1, 2])
    np.testing.assert_allclose(
        _importances(loaded, CODES).importances,
        _importances(model, CODES).importances,
        rtol=0,
        atol=1e-12,
    )
    # labels given on the loader instead
    labelled = lgb.LGBMClassifier(**FIT).fit(X, LABELS)
    labelled.booster_.save_model(path)
    loaded = LightGBMLoader(classes=["sit", "stand", "walk"]).load(path)
    np.testing.assert_array_equal(loaded.predict(X), labelled.predict(X))
    with pytest.raises(ModelError, match="3 classes, but 2 class labels"):
        LightGBMLoader(classes=["sit", "walk"]).load(path)


def test_a_sidecar_of_another_model_is_refused(tmp_path):
    first = save_model(lgb.LGBMClassifier(**FIT).fit(X, LABELS), tmp_path / "model.txt")
    other = lgb.LGBMClassifier(**{**FIT, "n_estimators": 3}).fit(X, LABELS)
    other.booster_.save_model(first)  # the model changed, its sidecar did not
    with pytest.raises(ModelError, match="describes another model"):
        LightGBMLoader().load(first)
    sidecar_path(first).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModelError, match=r"not written by leap_lightgbm\.save_model"):
        LightGBMLoader().load(first)


def test_broken_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("these are my notes, not a model\n")
    with pytest.raises(ModelError, match="not a readable LightGBM text model") as raised:
        LightGBMLoader().load(bad)
    assert "\n" not in str(raised.value)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ModelError, match="empty"):
        LightGBMLoader().load(empty)


def test_importing_the_plugin_does_not_import_lightgbm():
    code = "import sys, leap_lightgbm; assert 'lightgbm' not in sys.modules, 'lightgbm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_early_stopping_and_categorical_columns_survive_the_text_format(tmp_path):
    frame = pd.DataFrame(X[:, :4], columns=["a", "b", "c", "d"])
    frame["site"] = pd.Categorical(np.array(["ankle", "hip", "wrist"])[CODES])
    y = (frame["site"] == "hip") | (frame["a"] > 1.0)
    with warnings.catch_warnings():  # eval_set: deprecated in 4.7, the only way in 4.0
        warnings.simplefilter("ignore", FutureWarning)
        stopped = lgb.LGBMClassifier(**{**FIT, "n_estimators": 200}).fit(
            frame[:100],
            y[:100],
            eval_set=[(frame[100:], y[100:])],
            callbacks=[lgb.early_stopping(3, verbose=False)],
        )
    assert stopped.best_iteration_ < 200
    loaded = LightGBMLoader().load(save_model(stopped, tmp_path / "stopped.txt"))
    np.testing.assert_array_equal(loaded.predict_proba(frame), stopped.predict_proba(frame))
    np.testing.assert_array_equal(loaded.predict(frame), stopped.predict(frame))


def test_a_verified_copy_keeps_the_classes_of_its_sidecar(tmp_path):
    """--expect-sha256 loads a private copy; the sidecar goes along, so 1..3 stay 1..3."""
    import hashlib

    model = lgb.LGBMClassifier(**FIT).fit(X, STEPS)
    path = save_model(model, tmp_path / "model.txt")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sidecar was found: no fallback warning
        loaded = leap.Engine().load_model(path, expect_sha256=digest)
    np.testing.assert_array_equal(loaded.classes_, [1, 2, 3])
