"""SelectByImportance: scikit-learn compatibility, what it keeps, and where it measures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from leap import LeapError, SelectByImportance, SensorLayout
from leap.workflows.demo import make_leap_dataset
from leap.workflows.selection import (
    SelectionError,
    neg_log_loss,
    resolve_groups,
    sensor_columns,
    validation_split,
)

# Five LEAP sensors × two dims = 10 channels → 45 channel-pair features; the planted pairs
# sit on four sensors, Right_Wrist carries nothing (as in the full demo set).
LAYOUT = SensorLayout(dims=("x_acc", "z_gyro"))
PLANTED = (
    "Left_Ankle.x_acc|Right_Ankle.x_acc",
    "Left_Wrist.z_gyro|Sacrum.x_acc",
    "Right_Ankle.z_gyro|Sacrum.z_gyro",
)
PLANTED_SENSORS = {"Left_Ankle", "Right_Ankle", "Left_Wrist", "Sacrum"}


@pytest.fixture(scope="module")
def data():
    return make_leap_dataset(
        n_participants=12, windows_per_participant=20, layout=LAYOUT, planted=PLANTED
    )


def _selector(**kwargs) -> SelectByImportance:
    kwargs.setdefault("layout", LAYOUT)
    kwargs.setdefault("n_repeats", 3)
    kwargs.setdefault("random_state", 0)
    return SelectByImportance(LogisticRegression(max_iter=1000), **kwargs)


# Every check passes for these settings, so none is marked as an expected failure. The
# sensor-pair and sensor groupings are left out: they need the layout's column count, and
# the checks feed data of many widths (1, 2, 3, 10, ... columns).
@parametrize_with_checks(
    [
        SelectByImportance(LogisticRegression(), n_repeats=2),
        SelectByImportance(LogisticRegression(), k=1, cv=2, scoring="neg_log_loss"),
        SelectByImportance(Ridge(), threshold=-1.0, n_repeats=2),
    ]
)
@pytest.mark.filterwarnings("ignore:No features were selected:UserWarning")
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_top_k_features_are_the_planted_pairs(data):
    selector = _selector(k=3).fit(data.X, data.y, participants=data.participants)
    assert set(selector.selected_units_) == set(PLANTED)
    assert set(selector.get_feature_names_out()) == set(PLANTED)
    assert selector.transform(data.X).shape == (len(data.y), 3)
    np.testing.assert_array_equal(
        selector.transform(data.X), data.X[:, selector.get_support(indices=True)]
    )


def test_whole_sensor_pairs_are_kept_together(data):
    selector = _selector(groups="sensor_pair", k=3).fit(
        data.X, data.y, participants=data.participants
    )
    assert set(selector.selected_units_) == {
        "Left_Ankle|Right_Ankle",
        "Left_Wrist|Sacrum",
        "Right_Ankle|Sacrum",
    }
    # Two dims per sensor: 2 × 2 channel pairs between two sensors, 3 pairs kept.
    kept = selector.get_feature_names_out()
    assert len(kept) == 12
    assert set(PLANTED) <= set(kept)
    for name in kept:
        a, b = (channel.split(".")[0] for channel in name.split("|"))
        assert f"{a}|{b}" in selector.selected_units_


def test_sensors_keep_what_the_kept_sensors_can_measure(data):
    selector = _selector(groups="sensor", k=4).fit(data.X, data.y, participants=data.participants)
    assert set(selector.selected_units_) == PLANTED_SENSORS
    assert selector.unit_names_ == list(LAYOUT.sensors)
    expected = sensor_columns(LAYOUT, sorted(PLANTED_SENSORS))
    np.testing.assert_array_equal(selector.get_support(indices=True), expected)
    # 4 sensors × 2 dims = 8 channels → 28 pairs, none involving Right_Wrist.
    assert len(expected) == 28
    assert not any("Right_Wrist" in n for n in selector.get_feature_names_out())


def test_threshold_keeps_units_above_it_and_combines_with_k(data):
    selector = _selector(groups="sensor", threshold=0.05).fit(data.X, data.y, data.participants)
    means = dict(zip(selector.unit_names_, selector.importances_.importances_mean, strict=True))
    assert set(selector.selected_units_) == {s for s, m in means.items() if m > 0.05}
    assert set(selector.selected_units_) == PLANTED_SENSORS
    both = _selector(groups="sensor", threshold=0.05, k=2).fit(data.X, data.y, data.participants)
    assert both.selected_units_ == selector.selected_units_[:2]
    assert sorted(means, key=means.get, reverse=True)[:2] == both.selected_units_


def test_custom_groups_by_name_and_index(data):
    groups = {"ankles": [PLANTED[0]], "wrist_sacrum": [PLANTED[1], 0], "noise": [1, 2]}
    selector = _selector(groups=groups, k=1).fit(data.X, data.y, data.participants)
    assert selector.unit_names_ == ["ankles", "wrist_sacrum", "noise"]
    assert selector.selected_units_ in (["ankles"], ["wrist_sacrum"])
    assert selector.importances_.importances.shape == (3, 3)


def test_importances_come_from_held_out_participants_only(data, monkeypatch):
    from leap.engine import Engine

    seen = []
    original = Engine.compute

    def spy(self, estimator, X, y, **kwargs):
        seen.append(X.copy())
        return original(self, estimator, X, y, **kwargs)

    monkeypatch.setattr(Engine, "compute", spy)
    selector = _selector(k=3).fit(data.X, data.y, participants=data.participants)
    held_out = {row.tobytes() for row in seen[0]}
    is_val = np.array([row.tobytes() in held_out for row in data.X])
    val_people = set(data.participants[is_val])
    assert len(val_people) == 3  # 25 % of 12 participants
    assert not val_people & set(data.participants[~is_val])
    # The model that was permuted was fitted on exactly the other rows.
    refit = LogisticRegression(max_iter=1000).fit(data.X[~is_val], data.y[~is_val])
    np.testing.assert_allclose(selector.estimator_.coef_, refit.coef_, rtol=0, atol=1e-12)


def test_cross_fitting_pools_the_repeats_of_every_fold(data):
    selector = _selector(k=3, cv=3).fit(data.X, data.y, participants=data.participants)
    assert selector.importances_.importances.shape == (LAYOUT.n_features, 3 * 3)
    assert len(selector.estimators_) == 3
    assert set(selector.selected_units_) == set(PLANTED)


def test_inside_pipeline_and_grid_search(data):
    pipe = Pipeline(
        [("select", _selector(scoring="neg_log_loss")), ("model", LogisticRegression())]
    )
    search = GridSearchCV(pipe, {"select__k": [1, 3, 20]}, cv=GroupKFold(3))
    search.fit(data.X, data.y, groups=data.participants)
    assert search.best_params_ == {"select__k": 3}
    names = search.best_estimator_[:-1].get_feature_names_out()
    assert set(names) == set(PLANTED)


def test_participants_are_routed_through_a_pipeline(data):
    with sklearn.config_context(enable_metadata_routing=True):
        selector = _selector(k=3).set_fit_request(participants=True)
        pipe = Pipeline([("select", selector), ("model", LogisticRegression())])
        pipe.fit(data.X, data.y, participants=data.participants)
    assert set(pipe[0].selected_units_) == set(PLANTED)


def test_dataframe_names_are_kept():
    frame = pd.DataFrame(
        np.random.default_rng(0).normal(size=(60, 3)), columns=["signal", "n1", "n2"]
    )
    y = (frame["signal"] > 0).astype(int)
    selector = SelectByImportance(LogisticRegression(), k=1, random_state=0).fit(frame, y)
    assert list(selector.get_feature_names_out()) == ["signal"]
    assert selector.selected_units_ == ["signal"]
    assert list(selector.set_output(transform="pandas").transform(frame).columns) == ["signal"]


def test_without_k_or_threshold_keeps_positive_importance(data):
    selector = _selector().fit(data.X, data.y, data.participants)
    mean = selector.importances_.importances_mean
    np.testing.assert_array_equal(selector.support_, mean > 0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"k": 100}, "k=100 is more than the 45 candidate units"),
        ({"k": -1}, "k must be a non-negative integer"),
        ({"k": 2.5}, "k must be a non-negative integer"),
        ({"threshold": "mean"}, "threshold must be a number"),
        ({"groups": "channels"}, "unknown grouping 'channels'; built-in: sensor_pair, sensor"),
        ({"groups": {"a": ["no_such_feature"]}}, "unknown feature 'no_such_feature'"),
        ({"groups": {"a": []}}, "group 'a' is empty"),
        ({"groups": [[0, 99]]}, "column index 99 is out of range for 45 features"),
        ({"validation_size": 1.5}, "validation_size must be a fraction"),
        ({"n_repeats": 0}, "n_repeats must be a positive integer"),
        ({"cv": 1}, "cv must be None or an integer of at least 2"),
        ({"layout": "LEAP"}, "layout must be a SensorLayout"),
    ],
)
def test_bad_settings_raise_one_line_errors(data, settings, message):
    with pytest.raises(SelectionError, match=message) as info:
        _selector(**settings).fit(data.X, data.y)
    assert isinstance(info.value, LeapError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_grouping_needs_the_layout_width(data):
    with pytest.raises(SelectionError, match="needs the layout's 435 columns"):
        SelectByImportance(LogisticRegression(), groups="sensor").fit(data.X, data.y)
    with pytest.raises(SelectionError, match="one id per row"):
        _selector().fit(data.X, data.y, participants=data.participants[:-1])
    with pytest.raises(SelectionError, match="at least 2 participants"):
        _selector().fit(data.X, data.y, participants=np.zeros(len(data.y)))


def test_unfitted_selector_refuses_to_transform(data):
    with pytest.raises(sklearn.exceptions.NotFittedError):
        _selector().transform(data.X)


def test_pair_groups_cover_every_feature_once():
    groups = resolve_groups("sensor_pair", SensorLayout().n_features, layout=SensorLayout())
    assert len(groups.names) == 15  # 10 sensor pairs + 5 within-sensor
    columns = sorted(c for g in groups.indices for c in g)
    assert columns == list(range(435))
    assert groups.names[0] == "Left_Ankle|Left_Ankle"
    assert len(groups.indices[groups.names.index("Left_Ankle|Right_Ankle")]) == 36


def test_validation_split_is_by_participant_and_stratified_otherwise():
    y = np.tile([0, 1], 20)
    train, val = validation_split(
        y, participants=None, validation_size=0.25, random_state=0, stratify=True
    )
    assert len(val) == 10 and np.bincount(y[val]).tolist() == [5, 5]
    people = np.repeat(np.arange(8), 5)
    train, val = validation_split(
        y, participants=people, validation_size=0.25, random_state=0, stratify=True
    )
    assert not set(people[train]) & set(people[val])
    with pytest.raises(SelectionError, match="n_samples=1"):
        validation_split(
            y[:1], participants=None, validation_size=0.25, random_state=0, stratify=True
        )


@pytest.mark.parametrize("labels", [np.array([0, 1, 2]), np.array(["a", "b", "c"])])
def test_neg_log_loss_equals_scikit_learn_and_tolerates_absent_classes(labels):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    y = np.repeat(labels, 30)
    model = LogisticRegression().fit(X, y)
    for rows in (slice(None), slice(0, 40)):  # the second lacks the third class
        expected = -log_loss(y[rows], model.predict_proba(X[rows]), labels=model.classes_)
        np.testing.assert_allclose(
            neg_log_loss(model, X[rows], y[rows]), expected, rtol=0, atol=1e-12
        )
    with pytest.raises(SelectionError, match="not fitted on"):
        neg_log_loss(model, X[:2], np.array([labels[0], "zzz"], dtype=object))
    with pytest.raises(SelectionError, match="not fitted on"):
        neg_log_loss(model, X[:1], np.array([labels[-1] * 2]))  # 4 or "cc"
