"""leap-skops: .skops files load without running code, untrusted types are refused by name,
and a skops model gives exactly the importances of its pickled original."""

from __future__ import annotations

import inspect

import joblib
import numpy as np
import pytest
import skops.io as sio
from leap_skops import TRUST_OPTION, TRUSTED_ENV, SkopsLoader
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from leap import Engine, SensorLayout, analyze_permutation_importance, permutation_importance
from leap.errors import LeapError, ModelError
from leap.workflows.demo import make_leap_dataset

LAYOUT = SensorLayout.create(("Left_Ankle", "Right_Ankle", "Sacrum"), ("x_acc", "y_acc"))
PLANTED = (LAYOUT.feature_names[7], LAYOUT.feature_names[12])


@pytest.fixture(scope="module")
def data():
    return make_leap_dataset(8, 20, layout=LAYOUT, planted=PLANTED, random_state=3)


def _analyze(engine, model_path, matrix_path, out):
    return analyze_permutation_importance(
        model_path,
        matrix_path,
        save_csv_path=out,
        layout=LAYOUT,
        n_repeats=4,
        random_state=0,
        renderers=[],
        engine=engine,
    )


def test_skops_pipeline_matches_its_pickled_original(tmp_path, data, monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(data.X, data.y)
    joblib.dump(model, tmp_path / "model.pkl")
    sio.dump(model, tmp_path / "model.skops")
    np.savez(tmp_path / "features.npz", X=data.X, y=data.y)

    engine = Engine()
    ref = _analyze(engine, tmp_path / "model.pkl", tmp_path / "features.npz", tmp_path / "a.csv")
    got = _analyze(engine, tmp_path / "model.skops", tmp_path / "features.npz", tmp_path / "b.csv")
    assert got.baseline_score == ref.baseline_score
    np.testing.assert_allclose(got.importances, ref.importances, rtol=0, atol=1e-12)
    top_two = {ref.feature_names[i] for i in np.argsort(-ref.importances_mean)[:2]}
    assert top_two == set(PLANTED)


def test_untrusted_types_are_refused_by_name_until_allowed(tmp_path, data, monkeypatch):
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(data.X, data.y)
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted, "skops trusts every type in a forest: this test needs a new example"

    with pytest.raises(ModelError) as refused:
        Engine().load_model(path)
    message = str(refused.value)
    assert "\n" not in message
    assert all(name in message for name in untrusted)
    assert f"{TRUSTED_ENV}={','.join(untrusted)}" in message
    assert " ".join(f"{TRUST_OPTION} {name}" for name in untrusted) in message

    # allowed through the environment (the option the message names) ...
    monkeypatch.setenv(TRUSTED_ENV, " , ".join(untrusted))
    loaded = Engine().load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(data.X), forest.predict_proba(data.X))
    # ... or on the loader itself; a partial allowance is still refused
    monkeypatch.delenv(TRUSTED_ENV)
    assert SkopsLoader(trusted=untrusted).load(path).n_estimators == 3
    with pytest.raises(ModelError, match=untrusted[-1]):
        SkopsLoader(trusted=untrusted[:-1]).load(path)


def test_broken_files_give_one_line_errors(tmp_path, data):
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(ModelError, match="not a readable skops file"):
        SkopsLoader().load(bad)
    empty = tmp_path / "empty.skops"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        SkopsLoader().load(empty)
    unfitted = tmp_path / "unfitted.skops"
    sio.dump(LogisticRegression(), unfitted)
    with pytest.raises(LeapError, match="not been fitted"):
        Engine().load_model(unfitted)


def test_a_random_forest_loads_once_its_tree_type_is_trusted(tmp_path, data, monkeypatch):
    """What --trust TYPE (configuration key trust) hands the loader: load(path, trusted=...)."""
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(data.X, data.y)
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    assert sio.get_untrusted_types(file=path) == ["sklearn.tree._tree.Tree"]

    loader = SkopsLoader()
    with pytest.raises(ModelError, match=f"{TRUST_OPTION} sklearn.tree._tree.Tree"):
        loader.load(path)
    loaded = loader.load(path, trusted=["sklearn.tree._tree.Tree"])
    assert not loader.trusted  # trusting one file does not trust the next
    np.testing.assert_array_equal(loaded.predict_proba(data.X), forest.predict_proba(data.X))
    ref = permutation_importance(forest, data.X, data.y, n_repeats=3, random_state=0)
    got = permutation_importance(loaded, data.X, data.y, n_repeats=3, random_state=0)
    np.testing.assert_allclose(got.importances, ref.importances, rtol=0, atol=1e-12)
    # the three sources add up: loader, environment, this load's keyword
    monkeypatch.setenv(TRUSTED_ENV, "some.other.Type")
    assert SkopsLoader(trusted=["x.Y"]).load(path, trusted=[" sklearn.tree._tree.Tree "])


def test_the_engine_hands_trust_to_the_loader(tmp_path, data, monkeypatch):
    """Engine.load_model(path, trust=[...]) is what --trust TYPE and the trust key call."""
    if "trust" not in inspect.signature(Engine.load_model).parameters:
        pytest.skip("this LEAP's Engine.load_model takes no trust yet")
    monkeypatch.delenv(TRUSTED_ENV, raising=False)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(data.X, data.y)
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    with pytest.raises(ModelError, match=TRUST_OPTION):
        Engine().load_model(path)
    loaded = Engine().load_model(path, trust=["sklearn.tree._tree.Tree"])
    np.testing.assert_array_equal(loaded.predict(data.X), forest.predict(data.X))
