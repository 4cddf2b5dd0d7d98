"""The built-in ``permutation`` method returns exactly scikit-learn's permutation importances.

Every test compares all raw repeats (and their mean and standard deviation) with
:func:`sklearn.inspection.permutation_importance` at ``atol=1e-12, rtol=0``, over several
seeds, estimator families, scorers, sample weights, ``max_samples`` and data formats.
"""

from __future__ import annotations

from contextlib import nullcontext

import joblib
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.metrics import check_scoring, fbeta_score, log_loss, make_scorer
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from leap.builtins.methods.permutation.method import PermutationMethod, metric_name
from leap.errors import LeapError

N_REPEATS = 4
SEEDS = [0, 1, 2]


def _data(seed: int, n: int = 60, p: int = 6):
    """Features (column 2 constant), a binary, a 3-class and a continuous target, weights."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 2] = 0.75
    X[:, 4] = np.round(X[:, 4])  # few distinct values: many rows keep theirs
    binary = (X[:, 0] + X[:, 1] ** 2 + rng.normal(0, 0.5, n) > 1).astype(int)
    three = np.digitize(X[:, 0] + X[:, 3], [-0.5, 0.5])
    continuous = 2 * X[:, 0] + X[:, 1] - X[:, 3] + rng.normal(0, 0.2, n)
    weights = rng.uniform(0.5, 2.0, n)
    return X, binary, three, continuous, weights


def assert_same_as_sklearn(estimator, X, y, **kwargs):
    """Run both implementations with the same arguments and compare every number."""
    kwargs.setdefault("n_repeats", N_REPEATS)
    expected = permutation_importance(estimator, X, y, **kwargs)
    got = PermutationMethod().compute(estimator, X, y, **kwargs)
    scoring = kwargs.get("scoring")
    if isinstance(scoring, list | tuple | dict):
        assert set(got) == set(expected)
        pairs = [(got[name], expected[name]) for name in expected]
    else:
        assert list(got) == [metric_name(scoring)]
        pairs = [(got[metric_name(scoring)], expected)]
    for mine, theirs in pairs:
        assert mine.importances.shape == theirs.importances.shape
        assert_allclose(mine.importances, theirs.importances, rtol=0, atol=1e-12)
        assert_allclose(mine.importances.mean(axis=1), theirs.importances_mean, rtol=0, atol=1e-12)
        assert_allclose(mine.importances.std(axis=1), theirs.importances_std, rtol=0, atol=1e-12)
    return got


CLASSIFIERS = {
    "logistic": LogisticRegression(),
    "ridge_classifier": RidgeClassifier(),
    "scaled_logistic": make_pipeline(StandardScaler(), LogisticRegression(C=0.5)),
    "knn": KNeighborsClassifier(5),
    "scaled_knn": make_pipeline(MinMaxScaler(), KNeighborsClassifier(4)),
    "knn_kd_tree": KNeighborsClassifier(3, algorithm="kd_tree"),
    "random_forest": RandomForestClassifier(15, random_state=0),
    "extra_trees": ExtraTreesClassifier(10, random_state=0, n_jobs=2),
    "decision_tree": DecisionTreeClassifier(max_depth=4, random_state=0),
    "gradient_boosting": GradientBoostingClassifier(n_estimators=10, random_state=0),
    "svc": SVC(),
}

REGRESSORS = {
    "ridge": Ridge(),
    "knn": KNeighborsRegressor(3),
    "scaled_knn": make_pipeline(StandardScaler(), KNeighborsRegressor(4)),
    "random_forest": RandomForestRegressor(10, random_state=0),
    "extra_trees": ExtraTreesRegressor(10, random_state=0),
    "gradient_boosting": GradientBoostingRegressor(n_estimators=10, random_state=0),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_binary_classifiers_default_score(name, seed):
    X, y, _, _, _ = _data(seed)
    model = clone(CLASSIFIERS[name]).fit(X, y)
    assert_same_as_sklearn(model, X, y, random_state=seed)


@pytest.mark.parametrize("name", ["logistic", "scaled_knn", "random_forest", "decision_tree"])
def test_multiclass_classifiers(name):
    X, _, y, _, _ = _data(3)
    model = clone(CLASSIFIERS[name]).fit(X, y)
    assert_same_as_sklearn(model, X, y, random_state=7)
    assert_same_as_sklearn(model, X, y, random_state=8, scoring="f1_macro")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressors(name, seed):
    X, _, _, y, _ = _data(seed)
    model = clone(REGRESSORS[name]).fit(X, y)
    assert_same_as_sklearn(model, X, y, random_state=seed)
    assert_same_as_sklearn(model, X, y, random_state=seed, scoring="neg_mean_absolute_error")


def _opaque_scorer(estimator, X, y):
    """A plain callable scorer: LEAP cannot see what it reads, so it gets real matrices."""
    return float(np.mean(estimator.predict(X) == y)) + 0.001 * float(np.asarray(X)[:, 0].sum())


SCORINGS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "roc_auc": "roc_auc",
    "neg_log_loss": "neg_log_loss",
    "f1": "f1",
    "fbeta_scorer": make_scorer(fbeta_score, beta=2),
    "opaque_callable": _opaque_scorer,
    "list": ["accuracy", "roc_auc", "neg_brier_score"],
    "dict": {
        "acc": "accuracy",
        "logloss": make_scorer(log_loss, greater_is_better=False, response_method="predict_proba"),
    },
}


@pytest.mark.parametrize("scoring", sorted(SCORINGS))
@pytest.mark.parametrize("name", ["logistic", "knn", "random_forest"])
def test_scorers(name, scoring):
    X, y, _, _, _ = _data(4)
    model = clone(CLASSIFIERS[name]).fit(X, y)
    assert_same_as_sklearn(model, X, y, random_state=11, scoring=SCORINGS[scoring])


def test_multi_metric_is_keyed_by_metric_names():
    X, y, _, _, _ = _data(5)
    model = LogisticRegression().fit(X, y)
    got = assert_same_as_sklearn(model, X, y, random_state=0, scoring=("accuracy", "roc_auc"))
    assert set(got) == {"accuracy", "roc_auc"}
    assert all(v.importances.shape == (X.shape[1], N_REPEATS) for v in got.values())


@pytest.mark.parametrize(
    ("weighted", "max_samples"),
    [(True, 1.0), (False, 40), (True, 0.5), (False, 1), (True, 60)],
)
@pytest.mark.parametrize("name", ["logistic", "knn", "random_forest", "svc"])
def test_sample_weight_and_max_samples(name, weighted, max_samples):
    X, y, _, _, w = _data(6)
    model = clone(CLASSIFIERS[name]).fit(X, y)
    weights = w if weighted else None
    for seed in (0, 1):
        assert_same_as_sklearn(
            model, X, y, random_state=seed, sample_weight=weights, max_samples=max_samples
        )


def test_random_state_instance_is_consumed_like_sklearn():
    X, y, _, _, _ = _data(7)
    model = LogisticRegression().fit(X, y)
    expected = permutation_importance(
        model, X, y, n_repeats=3, random_state=np.random.RandomState(5)
    )
    got = PermutationMethod().compute(
        model, X, y, n_repeats=3, random_state=np.random.RandomState(5)
    )["score"]
    assert_allclose(got.importances, expected.importances, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["scaled_logistic", "random_forest", "knn", "svc"])
def test_dataframe_fitted_models(name):
    X, y, _, _, w = _data(8)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    model = clone(CLASSIFIERS[name]).fit(frame, y)
    target = pd.Series(y, index=frame.index + 100)
    assert_same_as_sklearn(model, frame, target, random_state=1)
    assert_same_as_sklearn(model, frame, target, random_state=2, sample_weight=w, max_samples=0.8)


def test_dataframe_with_mixed_dtypes():
    X, y, _, _, _ = _data(9)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["f4"] = frame["f4"].astype(np.int64)
    frame["f5"] = frame["f5"].astype(np.float32)
    model = LogisticRegression().fit(frame, y)
    assert_same_as_sklearn(model, frame, y, random_state=3)
    assert_same_as_sklearn(model, frame, y, random_state=3, scoring="roc_auc", max_samples=30)


def test_constant_columns_have_exactly_zero_importance():
    X, y, _, _, _ = _data(10)
    model = RandomForestClassifier(10, random_state=0).fit(X, y)
    got = assert_same_as_sklearn(model, X, y, random_state=0)["score"]
    assert np.all(got.importances[2] == 0.0)


def test_n_jobs_gives_the_same_numbers():
    X, y, _, _, _ = _data(11)
    method = PermutationMethod()
    threads = joblib.parallel_config(backend="threading")
    for model, context in ((KNeighborsClassifier(3), nullcontext()), (SVC(), threads)):
        model.fit(X, y)
        expected = permutation_importance(model, X, y, n_repeats=3, random_state=4)
        # A fast path runs in threads; model calls in processes unless a context says so.
        with context:
            got = method.compute(model, X, y, n_repeats=3, random_state=4, n_jobs=2)
        assert_allclose(got["score"].importances, expected.importances, rtol=0, atol=1e-12)


# --- groups ---------------------------------------------------------------------------


def _reference_grouped(
    estimator, X, y, groups, *, n_repeats, random_state, max_samples=1.0, wrap=lambda a: a
):
    """Straightforward joint permutation, mirroring scikit-learn's loop per group.

    ``wrap`` turns the permuted ndarray into what the model takes (e.g. a DataFrame).
    """
    scorer = check_scoring(estimator)
    seed = np.random.RandomState(random_state).randint(np.iinfo(np.int32).max + 1)
    baseline = scorer(estimator, wrap(X), y)
    n = X.shape[0]
    n_used = max_samples if isinstance(max_samples, int) else int(max_samples * n)
    out = np.empty((len(groups), n_repeats))
    for g, cols in enumerate(groups):
        rng = np.random.RandomState(seed)
        if n_used < n:
            from sklearn.utils.random import sample_without_replacement

            rows = sample_without_replacement(n, n_used, random_state=rng)
            X_perm, y_used = X[rows].copy(), y[rows]
        else:
            X_perm, y_used = X.copy(), y
        order = np.arange(X_perm.shape[0])
        for r in range(n_repeats):
            rng.shuffle(order)
            X_perm[:, cols] = X_perm[order][:, cols]  # one row order for every column
            out[g, r] = baseline - scorer(estimator, wrap(X_perm), y_used)
    return out


@pytest.mark.parametrize("name", ["logistic", "knn", "random_forest", "svc"])
def test_single_column_groups_equal_plain(name):
    X, y, _, _, _ = _data(12)
    model = clone(CLASSIFIERS[name]).fit(X, y)
    method = PermutationMethod()
    plain = method.compute(model, X, y, n_repeats=3, random_state=2)["score"]
    single = method.compute(
        model, X, y, n_repeats=3, random_state=2, groups=[[j] for j in range(X.shape[1])]
    )["score"]
    assert np.array_equal(plain.importances, single.importances)


@pytest.mark.parametrize("max_samples", [1.0, 45])
@pytest.mark.parametrize("name", ["logistic", "scaled_knn", "random_forest", "svc"])
def test_joint_groups_match_reference(name, max_samples):
    X, y, _, _, _ = _data(13)
    model = clone(CLASSIFIERS[name]).fit(X, y)
    groups = [[0, 1], [2], [3, 4, 5], [1, 3], [5, 0, 2]]
    expected = _reference_grouped(
        model, X, y, groups, n_repeats=3, random_state=5, max_samples=max_samples
    )
    got = PermutationMethod().compute(
        model, X, y, n_repeats=3, random_state=5, groups=groups, max_samples=max_samples
    )["score"]
    assert_allclose(got.importances, expected, rtol=0, atol=1e-12)


def test_joint_groups_on_dataframe_match_reference():
    X, y, _, _, _ = _data(14)
    frame = pd.DataFrame(X, columns=list("abcdef"))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y)
    groups = [[0, 3], [1, 2, 4]]

    expected = _reference_grouped(
        model,
        X,
        y,
        groups,
        n_repeats=4,
        random_state=1,
        wrap=lambda a: pd.DataFrame(a, columns=frame.columns),
    )
    got = PermutationMethod().compute(model, frame, y, n_repeats=4, random_state=1, groups=groups)[
        "score"
    ]
    assert_allclose(got.importances, expected, rtol=0, atol=1e-12)


def test_bad_groups_and_arguments_are_rejected():
    X, y, _, _, _ = _data(15)
    model = LogisticRegression().fit(X, y)
    method = PermutationMethod()
    with pytest.raises(LeapError, match="outside"):
        method.compute(model, X, y, groups=[[0, 99]])
    with pytest.raises(LeapError, match="empty"):
        method.compute(model, X, y, groups=[[]])
    with pytest.raises(ValueError, match="max_samples"):
        method.compute(model, X, y, max_samples=X.shape[0] + 1)
    with pytest.raises(ValueError, match="max_samples"):
        method.compute(model, X, y, max_samples=1.5)
    with pytest.raises(ValueError, match="n_repeats"):
        method.compute(model, X, y, n_repeats=0)


@pytest.mark.parametrize(
    "model",
    [KNeighborsClassifier(5), RandomForestClassifier(20, random_state=0), LogisticRegression()],
    ids=["knn", "random_forest", "logistic"],
)
def test_sensor_and_sensor_pair_groups_on_leap_features(model, leap_data):
    """Large joint groups (all channel pairs of a sensor, or of a sensor pair)."""
    from leap.data.grouping import sensor_grouping, sensor_pair_grouping

    X, y = leap_data.X, leap_data.y
    model = clone(model).fit(X[::2], y[::2])
    for grouping in (sensor_grouping(leap_data.layout), sensor_pair_grouping(leap_data.layout)):
        groups = [list(ix) for ix in grouping.indices]
        expected = _reference_grouped(model, X, y, groups, n_repeats=2, random_state=3)
        got = PermutationMethod().compute(model, X, y, n_repeats=2, random_state=3, groups=groups)[
            "score"
        ]
        assert_allclose(got.importances, expected, rtol=0, atol=1e-12)
