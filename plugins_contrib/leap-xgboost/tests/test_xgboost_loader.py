"""leap-xgboost: models saved in XGBoost's own formats come back as the scikit-learn wrappers,
classes restored, and give exactly the importances of the same model in memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xgboost as xgb
from leap_xgboost import XGBoostLoader, estimator_type
from sklearn.inspection import permutation_importance as sk_permutation_importance

import leap
from leap.errors import ModelError

RNG = np.random.RandomState(7)
X = RNG.normal(size=(150, 12))
Y3 = np.digitize(X[:, 2] + 0.8 * X[:, 5] + 0.3 * RNG.normal(size=150), [-0.6, 0.6])
Y2 = (X[:, 1] - X[:, 4] > 0).astype(int)
TARGET = 2.0 * X[:, 0] - X[:, 3] + 0.1 * RNG.normal(size=150)


def _importances(model, y, **kwargs):
    return leap.permutation_importance(model, X, y, n_repeats=3, random_state=0, **kwargs)


@pytest.fixture(scope="module")
def classifier():
    return xgb.XGBClassifier(n_estimators=8, max_depth=3, n_jobs=1, random_state=0).fit(X, Y3)


@pytest.mark.parametrize("suffix", [".ubj", ".json"])
def test_saved_classifier_has_the_importances_of_the_model_in_memory(tmp_path, classifier, suffix):
    path = tmp_path / f"model{suffix}"
    classifier.save_model(path)
    loaded = leap.Engine().load_model(path)
    assert type(loaded) is xgb.XGBClassifier
    assert loaded.n_classes_ == 3
    np.testing.assert_array_equal(loaded.classes_, classifier.classes_)
    np.testing.assert_array_equal(loaded.predict(X), classifier.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), classifier.predict_proba(X))

    for scoring in (None, "neg_log_loss"):
        ref = _importances(classifier, y=Y3, scoring=scoring)
        got = _importances(loaded, y=Y3, scoring=scoring)
        np.testing.assert_allclose(got.importances, ref.importances, rtol=0, atol=1e-12)
        assert got.baseline_score == ref.baseline_score
    sk = sk_permutation_importance(loaded, X, Y3, n_repeats=3, random_state=0)
    np.testing.assert_allclose(got.importances.shape, sk.importances.shape)
    ref = _importances(loaded, y=Y3)
    np.testing.assert_allclose(ref.importances, sk.importances, rtol=0, atol=1e-12)


def test_a_bare_booster_file_is_typed_by_its_objective(tmp_path):
    binary = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(X, Y2)
    regressor = xgb.XGBRegressor(n_estimators=5, max_depth=2, n_jobs=1).fit(X, TARGET)
    binary.get_booster().save_model(tmp_path / "binary.ubj")
    regressor.get_booster().save_model(tmp_path / "regressor.json")

    got = XGBoostLoader().load(tmp_path / "binary.ubj")
    assert type(got) is xgb.XGBClassifier and list(got.classes_) == [0, 1]
    ref, new = _importances(binary, y=Y2), _importances(got, y=Y2)
    np.testing.assert_allclose(new.importances, ref.importances, rtol=0, atol=1e-12)
    got = XGBoostLoader().load(tmp_path / "regressor.json")
    assert type(got) is xgb.XGBRegressor
    np.testing.assert_allclose(
        _importances(got, y=TARGET).importances,
        _importances(regressor, y=TARGET).importances,
        rtol=0,
        atol=1e-12,
    )


def test_estimator_type_prefers_the_wrappers_record():
    recorded = {"scikit_learn": '{"_estimator_type": "regressor"}'}
    assert estimator_type(recorded, "binary:logistic") == "regressor"
    assert estimator_type({}, "multi:softprob") == "classifier"
    assert estimator_type({}, "reg:squarederror") == "regressor"
    assert estimator_type({"scikit_learn": "not json"}, "count:poisson") == "regressor"
    with pytest.raises(ModelError, match="ranking"):
        estimator_type({}, "rank:pairwise")


def test_broken_files_give_one_line_errors(tmp_path):
    for name, content in (("bad.json", b'{"not": "a model"}'), ("bad.ubj", b"\x00\x01junk")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ModelError, match="not a readable XGBoost model") as raised:
            XGBoostLoader().load(path)
        assert "\n" not in str(raised.value)
    empty = tmp_path / "empty.ubj"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        XGBoostLoader().load(empty)


def test_importing_the_plugin_does_not_import_xgboost():
    code = "import sys, leap_xgboost; assert 'xgboost' not in sys.modules, 'xgboost imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
