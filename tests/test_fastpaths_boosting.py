"""Boosted trees (scikit-learn's, XGBoost, LightGBM) and trees on missing values.

Each model's fast path re-predicts only the rows a permutation may change; the numbers must
equal scikit-learn's ``permutation_importance`` to 1e-12 in every repeat, with the compiled
kernels and their NumPy twins, with and without LEAP's re-walk, in threads and processes.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from leap.builtins.methods.permutation import boosting
from leap.builtins.methods.permutation.boosting import RepredictPath, boosting_path
from leap.builtins.methods.permutation.method import DEFAULT_FAST_PATHS, PermutationMethod
from leap.builtins.methods.permutation.native_boosters import native_booster_path
from leap.builtins.methods.permutation.scoring import plan_scorer


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """Both implementations' model calls with one OpenMP thread (numbers unchanged).

    On a shared machine a thread team per HistGradientBoosting call costs far more than
    the prediction of these small data sets.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def _data(seed=0, n=120, p=8, nan=0.0, task="binary"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 3] = rng.integers(0, 4, n)  # ties
    signal = X[:, 0] - X[:, 1] + 0.5 * X[:, 3] + rng.normal(0, 0.5, n)
    if nan:
        X[rng.random(X.shape) < nan] = np.nan
    if task == "regression":
        return X, signal
    if task == "multiclass":
        return X, np.searchsorted(np.quantile(signal, [1 / 3, 2 / 3]), signal)
    return X, (signal > 0).astype(int)


def _path(factory, model, X, scoring):
    plan = plan_scorer(check_scoring(model, scoring), model)
    base = {name: getattr(model, name)(X) for name in plan.methods}
    return factory(model, X, base)


def assert_parity(model, X, y, scoring=None, fast_paths=None, seeds=(0,), **kwargs):
    for seed in seeds:
        expected = permutation_importance(
            model, X, y, scoring=scoring, n_repeats=3, random_state=seed, **kwargs
        )
        got = PermutationMethod(fast_paths=fast_paths).compute(
            model, X, y, scoring=scoring, n_repeats=3, random_state=seed, **kwargs
        )
        (scores,) = got.values()
        assert_allclose(scores.importances, expected.importances, rtol=0, atol=1e-12)


GB, HGB = GradientBoostingClassifier, HistGradientBoostingClassifier
SKLEARN_CASES = [
    (GB(n_estimators=15, random_state=0), "binary", 0.0, None),
    (GB(n_estimators=10, random_state=0), "multiclass", 0.0, "neg_log_loss"),
    (GB(n_estimators=10, init="zero", random_state=0), "binary", 0.0, "roc_auc"),
    (GradientBoostingRegressor(n_estimators=15, random_state=0), "regression", 0.0, None),
    (HGB(max_iter=15, random_state=0), "binary", 0.1, None),
    (HGB(max_iter=10, random_state=0), "multiclass", 0.1, "neg_log_loss"),
    (HGB(max_iter=15, categorical_features=[3], random_state=0), "binary", 0.05, "roc_auc"),
    (HistGradientBoostingRegressor(max_iter=15, random_state=0), "regression", 0.1, "r2"),
    (DecisionTreeClassifier(max_depth=5, random_state=0), "multiclass", 0.1, None),
    (DecisionTreeRegressor(random_state=0), "regression", 0.1, None),
    (RandomForestClassifier(8, random_state=0), "binary", 0.1, "neg_log_loss"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "task", "nan", "scoring"),
    SKLEARN_CASES,
    ids=[f"{type(c[0]).__name__}-{c[1]}-{c[3]}" for c in SKLEARN_CASES],
)
def test_sklearn_boosting_and_trees_with_nan(model, task, nan, scoring):
    X, y = _data(1, nan=nan, task=task)
    model = clone(model).fit(X, y)
    path = _path(boosting_path, model, X, scoring)
    assert isinstance(path, RepredictPath)
    assert path.refine  # LEAP's walk reproduces the model's leaves
    assert_parity(model, X, y, scoring)


@pytest.mark.parametrize("index", [1, 4, 6])
def test_numpy_kernels_give_the_same_numbers(index, kernels):
    model, task, nan, scoring = SKLEARN_CASES[index]
    X, y = _data(2, nan=nan, task=task)
    model = clone(model).fit(X, y)
    assert_parity(model, X, y, scoring, seeds=(1,))


def test_joint_groups_equal_the_general_path():
    """Groups: the general path (tested against scikit-learn elsewhere) is the reference."""
    X, y = _data(2, nan=0.1)
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)
    groups = [[0, 1], [2, 3, 4], [5], [6, 7, 0]]
    for max_samples in (1.0, 0.6):
        kwargs = dict(groups=groups, n_repeats=3, random_state=4, max_samples=max_samples)
        (fast,) = PermutationMethod().compute(model, X, y, **kwargs).values()
        (plain,) = PermutationMethod(fast_paths=()).compute(model, X, y, **kwargs).values()
        assert_allclose(fast.importances, plain.importances, rtol=0, atol=1e-12)


def test_without_the_rewalk_every_changed_row_is_repredicted(monkeypatch, kernels):
    X, y = _data(3, task="multiclass")
    model = GradientBoostingClassifier(n_estimators=8, random_state=0).fit(X, y)
    monkeypatch.setattr(boosting, "walk_agrees", lambda *args: False)
    path = _path(boosting_path, model, X, None)
    assert isinstance(path, RepredictPath) and not path.refine
    assert_parity(model, X, y, "neg_log_loss", fast_paths=(boosting_path,))


def test_rewalk_selects_a_subset_of_the_changed_rows():
    X, y = _data(4)
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(X, y)
    path = _path(boosting_path, model, X, None)
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(3)])
    refined = path.affected(np.array([0]), orders)
    path.refine = False
    coarse = path.affected(np.array([0]), orders)
    assert np.all(coarse >= refined) and refined.sum() < coarse.sum()
    # rows outside the selection keep their outputs: check against the model on each copy
    for r, order in enumerate(orders):
        Xp = X.copy()
        Xp[:, 0] = X[order, 0]
        moved = model.predict_proba(Xp) != model.predict_proba(X)
        assert not np.any(moved.any(axis=1) & ~refined[r])


@pytest.mark.slow
def test_process_workers_and_pickled_paths():
    X, y = _data(5, nan=0.1)
    model = HistGradientBoostingClassifier(max_iter=8, random_state=0).fit(X, y)
    path = _path(boosting_path, model, X, None)
    clone_path = pickle.loads(pickle.dumps(path))
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(2)])
    a, _ = path.outputs(np.array([1, 2]), orders)
    b, _ = clone_path.outputs(np.array([1, 2]), orders)
    assert np.array_equal(a["predict"], b["predict"])
    with joblib.parallel_config(backend="loky"):
        assert_parity(model, X, y, seeds=(1,), n_jobs=2)


def test_declined_models():
    X, y = _data(6)
    custom_init = GradientBoostingClassifier(
        n_estimators=5, init=LogisticRegression(), random_state=0
    ).fit(X, y)
    assert _path(boosting_path, custom_init, X, None) is None  # the init reads X
    finite_tree = DecisionTreeClassifier(random_state=0).fit(X, y)
    assert _path(boosting_path, finite_tree, X, None) is None  # the tree path's job
    assert _path(boosting_path, SVC().fit(X, y), X, None) is None
    assert _path(native_booster_path, SVC().fit(X, y), X, None) is None
    assert_parity(custom_init, X, y, seeds=(0,))


def test_scaled_pipeline_is_reduced_to_the_booster():
    X, y = _data(7)
    model = make_pipeline(
        StandardScaler(), GradientBoostingClassifier(n_estimators=8, random_state=0)
    ).fit(X, y)
    assert_parity(model, X, y, "neg_log_loss")


def test_boosting_paths_are_default():
    assert boosting_path in DEFAULT_FAST_PATHS
    assert native_booster_path in DEFAULT_FAST_PATHS


@pytest.mark.slow
def test_native_libraries_are_not_imported_for_other_models():
    code = (
        "import sys, numpy as np\n"
        "from sklearn.ensemble import GradientBoostingClassifier\n"
        "from leap.builtins.methods.permutation.method import PermutationMethod\n"
        "X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)\n"
        "m = GradientBoostingClassifier(n_estimators=3).fit(X, y)\n"
        "PermutationMethod().compute(m, X, y, n_repeats=2, random_state=0)\n"
        "assert 'xgboost' not in sys.modules and 'lightgbm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- XGBoost and LightGBM (where installed) ---------------------------------------------


def _xgboost():
    return pytest.importorskip("xgboost")


def _lightgbm():
    return pytest.importorskip("lightgbm")


@pytest.mark.parametrize(
    ("kind", "task", "nan", "scoring"),
    [
        ("clf", "binary", 0.0, None),
        ("clf", "multiclass", 0.1, "neg_log_loss"),
        ("clf", "multiclass", 0.1, None),
        ("reg", "regression", 0.1, None),
    ],
)
def test_xgboost(kind, task, nan, scoring):
    xgboost = _xgboost()
    X, y = _data(8, nan=nan, task=task)
    cls = xgboost.XGBClassifier if kind == "clf" else xgboost.XGBRegressor
    model = cls(n_estimators=12, max_depth=4, random_state=0, n_jobs=1).fit(X, y)
    path = _path(native_booster_path, model, X, scoring)
    assert isinstance(path, RepredictPath) and path.refine
    assert_parity(model, X, y, scoring)


@pytest.mark.parametrize(
    ("kind", "task", "nan", "scoring"),
    [
        ("clf", "binary", 0.1, "roc_auc"),
        ("clf", "multiclass", 0.0, None),
        ("reg", "regression", 0.1, "r2"),
    ],
)
def test_lightgbm(kind, task, nan, scoring):
    lightgbm = _lightgbm()
    X, y = _data(9, nan=nan, task=task)
    cls = lightgbm.LGBMClassifier if kind == "clf" else lightgbm.LGBMRegressor
    model = cls(n_estimators=12, num_leaves=8, min_child_samples=5, verbose=-1, n_jobs=1)
    model.fit(X, y)
    path = _path(native_booster_path, model, X, scoring)
    assert isinstance(path, RepredictPath) and path.refine
    assert_parity(model, X, y, scoring)


def test_xgboost_categorical_splits_are_repredicted():
    xgboost = _xgboost()
    X, y = _data(10)
    types = ["q"] * X.shape[1]
    types[3] = "c"
    model = xgboost.XGBClassifier(
        n_estimators=8, max_depth=3, enable_categorical=True, feature_types=types, n_jobs=1
    ).fit(X, y)
    path = _path(native_booster_path, model, X, None)
    assert isinstance(path, RepredictPath) and path.table.special.any()
    assert_parity(model, X, y, seeds=(0,))


# --- the cost model of the general path -------------------------------------------------


def test_pool_pays_only_for_long_jobs():
    from leap.builtins.methods.permutation.runner import POOL_OVERHEAD_SECONDS, pool_pays

    assert not pool_pays(0.001, 50, 2)
    assert not pool_pays(1.0, 100, 1)
    assert pool_pays(4 * POOL_OVERHEAD_SECONDS, 2, 2)


class _Hidden(ClassifierMixin, BaseEstimator):
    """A model no fast path knows: it hides its inner estimator."""

    def __init__(self, inner=None):
        self.inner = inner

    def fit(self, X, y):
        self.model_ = clone(self.inner).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)


def test_small_jobs_run_in_this_thread(monkeypatch):
    from leap.builtins.methods.permutation import runner

    preferred = []
    original = runner.Parallel

    def recording(*args, **kwargs):
        preferred.append(kwargs.get("prefer"))
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "Parallel", recording)
    X, y = _data(11)
    model = _Hidden(LogisticRegression()).fit(X, y)  # no fast path: the general path
    expected = permutation_importance(model, X, y, n_repeats=3, random_state=0).importances
    for config in ({}, {"backend": "threading"}):
        with joblib.parallel_config(**config):
            got = PermutationMethod().compute(model, X, y, n_repeats=3, random_state=0, n_jobs=2)
        assert_allclose(got["score"].importances, expected, rtol=0, atol=1e-12)
    assert preferred[0] == "threads"  # too small for a pool; the explicit backend is kept


def test_lightgbm_linear_trees_are_left_to_the_model():
    lightgbm = _lightgbm()
    X, y = _data(12, task="regression")
    model = lightgbm.LGBMRegressor(n_estimators=5, linear_tree=True, verbose=-1, n_jobs=1)
    model.fit(X, y)
    assert _path(native_booster_path, model, X, None) is None  # leaves read other columns
    assert_parity(model, X, y, seeds=(0,))


def test_hist_categorical_splits_are_walked_and_cover_every_changed_row(kernels):
    rng = np.random.default_rng(13)
    X = rng.integers(0, 6, size=(150, 6)).astype(float)
    X[rng.random(X.shape) < 0.05] = np.nan
    y = ((X[:, 0] == 2) | (X[:, 1] > 3) | (X[:, 2] == 5)).astype(int)
    model = HGB(max_iter=10, categorical_features=[0, 2, 4], random_state=0).fit(X, y)
    path = _path(boosting_path, model, X, "roc_auc")
    assert path.refine and np.any(path.table.cat_row >= 0)
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(3)])
    for j in range(X.shape[1]):
        affected = path.affected(np.array([j]), orders)
        for r, order in enumerate(orders):
            Xp = X.copy()
            Xp[:, j] = X[order, j]
            moved = (model.predict_proba(Xp) != model.predict_proba(X)).any(axis=1)
            assert not np.any(moved & ~affected[r])
    assert_parity(model, X, y, "roc_auc")


# --- leaf values summed in the model's own order (SumPath) ------------------------------


def _distribution(name, rng, n, p):
    if name == "gauss":
        return rng.normal(size=(n, p))
    if name == "t2":
        return rng.standard_t(2, size=(n, p))
    return rng.integers(0, 5, size=(n, p)).astype(float)  # discrete: many ties


def _target(X, task, rng):
    signal = X[:, 0] - np.tanh(X[:, 1]) + 0.3 * X[:, 2] + rng.normal(0, 0.3, X.shape[0])
    if task == "regression":
        return signal
    if task == "multiclass":
        return np.searchsorted(np.quantile(signal, [1 / 3, 2 / 3]), signal)
    return (signal > np.median(signal)).astype(int)


SUM_CASES = [
    (GB(n_estimators=12, random_state=0), "binary", "gauss", None),
    (GB(n_estimators=8, random_state=0), "multiclass", "t2", "neg_log_loss"),
    (GB(n_estimators=8, random_state=0), "multiclass", "discrete", None),
    (GB(n_estimators=8, init="zero", random_state=0), "multiclass", "gauss", "neg_log_loss"),
    (GB(n_estimators=8, learning_rate=0.37, random_state=0), "binary", "t2", "roc_auc"),
    (GradientBoostingRegressor(n_estimators=10, random_state=0), "regression", "t2", "r2"),
    (GradientBoostingRegressor(n_estimators=6, loss="huber", random_state=0), "regression",
     "gauss", None),
    (HGB(max_iter=10, random_state=0), "binary", "t2", None),
    (HGB(max_iter=8, random_state=0), "multiclass", "discrete", "neg_log_loss"),
    (HGB(max_iter=8, categorical_features=[0, 2], random_state=0), "multiclass", "discrete",
     None),
    (HistGradientBoostingRegressor(max_iter=10, random_state=0), "regression", "gauss", None),
    (HistGradientBoostingRegressor(max_iter=8, loss="poisson", random_state=0), "poisson",
     "gauss", None),
]  # fmt: skip


def _sum_case(case, seed=0, nan=0.0, n=110, p=7):
    model, task, distribution, scoring = case
    rng = np.random.default_rng(seed)
    X = _distribution(distribution, rng, n, p)
    if task == "poisson":
        y = rng.poisson(np.exp(0.5 * np.tanh(X[:, 0]))).astype(float)
    else:
        y = _target(X, task, rng)
    if nan:
        X[rng.random(X.shape) < nan] = np.nan
    return clone(model).fit(X, y), X, y, scoring


@pytest.mark.parametrize(
    "case",
    SUM_CASES,
    ids=[f"{type(c[0]).__name__}-{c[1]}-{c[2]}-{c[3]}" for c in SUM_CASES],
)
def test_sums_of_leaf_values_are_the_models_outputs(case):
    """Per copy, every output of the summing path equals the model's, bit for bit."""
    model, X, y, scoring = _sum_case(case)
    path = _path(boosting_path, model, X, scoring)
    assert isinstance(path, boosting.SumPath)
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(3)])
    for cols in ([0], [1, 2], [3], [0, 4, 6]):
        outs, exact = path.outputs(np.array(cols), orders)
        assert exact.all()
        for r, order in enumerate(orders):
            Xp = X.copy()
            Xp[:, cols] = X[order][:, cols]
            for name, value in outs.items():
                own = getattr(model, name)(Xp)
                assert value[r].dtype == own.dtype
                assert np.array_equal(value[r], own), (name, cols, r)
    assert_parity(model, X, y, scoring, seeds=(0, 3))


@pytest.mark.parametrize("index", [1, 8, 9])
def test_sums_with_numpy_kernels_and_missing_values(index, kernels):
    model, X, y, scoring = _sum_case(SUM_CASES[index], seed=5, nan=0.0 if index == 1 else 0.1)
    path = _path(boosting_path, model, X, scoring)
    assert isinstance(path, boosting.SumPath)
    assert_parity(model, X, y, scoring, seeds=(2,))


def test_sums_that_do_not_reproduce_the_model_are_not_used(monkeypatch):
    """A sum one ulp off (a build that fuses the multiply-add, say): the model re-predicts."""
    model, X, y, scoring = _sum_case(SUM_CASES[1])
    original = boosting.sum_leaves
    monkeypatch.setattr(boosting, "sum_leaves", lambda *args: np.nextafter(original(*args), np.inf))
    path = _path(boosting_path, model, X, scoring)
    assert isinstance(path, RepredictPath) and not isinstance(path, boosting.SumPath)
    assert_parity(model, X, y, scoring, seeds=(0,))


def test_unknown_categories_and_tied_labels_are_left_to_the_model(kernels):
    rng = np.random.default_rng(14)
    X = rng.integers(0, 4, size=(120, 4)).astype(float)
    y = ((X[:, 0] == 2) | (X[:, 1] > 2)).astype(int)
    model = HGB(max_iter=8, categorical_features=[0], random_state=0).fit(X, y)
    X_new = X.copy()
    X_new[::5, 0] = 7  # a category the model has not seen
    path = _path(boosting_path, model, X_new, None)
    assert isinstance(path, boosting.SumPath)
    assert_parity(model, X_new, y, None, seeds=(0, 1))
    link = boosting.RawLink(model, "hist", classifier=True)
    raw = np.array([[0.0], [1e-300], [-0.0]])
    assert link.tied(raw).tolist() == [True, False, True]
    multi = boosting.RawLink(model, "gb", classifier=True)
    assert multi.tied(np.array([[1.0, 1.0, 0.0], [1.0, 2.0, 2.0], [3.0, 2.0, 1.0]])).tolist() == [
        True,
        True,
        False,
    ]


def test_summing_path_answers_group_by_group():
    """One group's outputs at a time: memory holds one group's copies, not all of them."""
    model, X, _, scoring = _sum_case(SUM_CASES[1])
    path = _path(boosting_path, model, X, scoring)
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(2)])
    answers = path.outputs_many([np.array([0]), np.array([1])], orders)
    assert not isinstance(answers, list)
    first, _ = next(iter(answers))
    assert first["predict_proba"].shape == (2, X.shape[0], 3)


@pytest.mark.parametrize(
    ("model", "task", "scoring"),
    [
        (DecisionTreeClassifier(random_state=0), "multiclass", None),
        (DecisionTreeRegressor(max_depth=6, random_state=0), "regression", "r2"),
        (RandomForestClassifier(6, random_state=0), "binary", "neg_log_loss"),
    ],
)
def test_trees_on_missing_values_take_the_tree_path(model, task, scoring, kernels):
    """The tree path sends NaN where ``missing_go_to_left`` says; its leaves are ``apply``'s."""
    from leap.builtins.methods.permutation.trees import TreePath, tree_path

    X, y = _data(15, nan=0.15, task=task)
    model = clone(model).fit(X, y)
    path = _path(tree_path, model, X, scoring)
    assert isinstance(path, TreePath)
    assert path.nan_left.any() and not path.nan_left.all()
    assert_parity(model, X, y, scoring, seeds=(0, 1))
    X_inf = X.copy()
    X_inf[0, 0] = np.inf  # the model refuses it; so does the path
    assert tree_path(model, X_inf, {"predict": np.zeros(X.shape[0])}) is None


@pytest.mark.parametrize(
    ("kind", "task", "nan", "scoring"),
    [
        ("clf", "binary", 0.1, "roc_auc"),
        ("clf", "multiclass", 0.1, "neg_log_loss"),
        ("reg", "regression", 0.0, "r2"),
    ],
)
def test_xgboost_margins_summed_by_leap_are_transformed_by_the_library(kind, task, nan, scoring):
    """float32 margins summed tree by tree; the wrapper itself turns them into outputs."""
    xgboost = _xgboost()
    X, y = _data(16, nan=nan, task=task)
    cls = xgboost.XGBClassifier if kind == "clf" else xgboost.XGBRegressor
    model = cls(n_estimators=10, max_depth=4, random_state=0, n_jobs=1).fit(X, y)
    path = _path(native_booster_path, model, X, scoring)
    assert isinstance(path, boosting.SumPath) and path.values.dtype == np.float32
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(2)])
    for cols in ([0], [1, 3]):
        outs, _ = path.outputs(np.array(cols), orders)
        for r, order in enumerate(orders):
            Xp = X.copy()
            Xp[:, cols] = X[order][:, cols]
            for name, value in outs.items():
                assert np.array_equal(value[r], getattr(model, name)(Xp), equal_nan=True)
    assert_parity(model, X, y, scoring, seeds=(0, 2))


def test_xgboost_early_stopping_is_not_summed():
    """The wrapper predicts with the best iteration's trees: the sums are not certified."""
    xgboost = _xgboost()
    X, y = _data(17)
    model = xgboost.XGBClassifier(
        n_estimators=40, max_depth=3, early_stopping_rounds=2, random_state=0, n_jobs=1
    ).fit(X[:80], y[:80], eval_set=[(X[80:], y[80:])], verbose=False)
    assert model.best_iteration + 1 < model.get_booster().num_boosted_rounds()
    path = _path(native_booster_path, model, X, None)
    assert isinstance(path, RepredictPath) and not isinstance(path, boosting.SumPath)
    assert_parity(model, X, y, None, seeds=(0,))


@pytest.mark.parametrize("objective", ["regression", "huber", "poisson"])
def test_lightgbm_regression_sums_only_where_the_prediction_is_the_raw_score(objective):
    lightgbm = _lightgbm()
    X, y = _data(18, nan=0.1, task="regression")
    if objective == "poisson":
        y = np.exp(y / 4)
    model = lightgbm.LGBMRegressor(
        n_estimators=12, num_leaves=8, min_child_samples=5, objective=objective, verbose=-1,
        n_jobs=1,
    ).fit(X, y)  # fmt: skip
    path = _path(native_booster_path, model, X, "r2")
    assert isinstance(path, RepredictPath)
    assert isinstance(path, boosting.SumPath) == (objective != "poisson")  # exp transform
    assert_parity(model, X, y, "r2", seeds=(0, 1))


@pytest.mark.parametrize(
    "params", [{}, {"zero_as_missing": True}, {"use_missing": False}], ids=["nan", "zero", "none"]
)
def test_lightgbm_missing_values_follow_each_splits_missing_type(params, kernels):
    """NaN rows are walked by the split's rule, not all sent to the model; none is missed."""
    lightgbm = _lightgbm()
    X, y = _data(19, nan=0.15)
    X[::9, 2] = 0.0  # zeros for the "Zero" rule
    model = lightgbm.LGBMClassifier(
        n_estimators=10, num_leaves=8, min_child_samples=5, verbose=-1, n_jobs=1, **params
    ).fit(X, y)
    path = _path(native_booster_path, model, X, None)
    assert path.refine  # LEAP's walk reaches LightGBM's own leaves, NaN rows included
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(3)])
    coarse = fine = 0
    for j in range(X.shape[1]):
        affected = path.affected(np.array([j]), orders)
        fine += affected.sum()
        for r, order in enumerate(orders):
            Xp = X.copy()
            Xp[:, j] = X[order, j]
            changed = Xp[:, j] != X[:, j]
            coarse += (changed | (np.isnan(Xp[:, j]) != np.isnan(X[:, j]))).sum()
            moved = (model.predict_proba(Xp) != model.predict_proba(X)).any(axis=1)
            assert not np.any(moved & ~affected[r])
    assert fine < coarse / 2
    assert_parity(model, X, y, None, seeds=(0,))


@pytest.mark.parametrize(
    ("objective", "link"), [("reg:squarederror", "Identity"), ("count:poisson", "XGBoostMargins")]
)
def test_xgboost_regressors_use_the_margin_itself_where_it_is_the_prediction(objective, link):
    xgboost = _xgboost()
    X, y = _data(20, nan=0.1, task="regression")
    y = np.exp(y / 4) if objective == "count:poisson" else y
    model = xgboost.XGBRegressor(
        n_estimators=10, max_depth=4, objective=objective, random_state=0, n_jobs=1
    ).fit(X, y)
    path = _path(native_booster_path, model, X, "r2")
    assert isinstance(path, boosting.SumPath) and type(path.link).__name__ == link
    assert_parity(model, X, y, "r2", seeds=(0, 1))


XGB_SUM_CASES = [
    ("multiclass", "gauss", 0.0),
    ("multiclass", "discrete", 0.0),
    ("multiclass", "t2", 0.15),
    ("binary", "discrete", 0.1),
    ("binary", "t2", 0.0),
    ("regression", "gauss", 0.1),
]


@pytest.mark.parametrize(("task", "distribution", "nan"), XGB_SUM_CASES)
def test_xgboost_kernel_sums_are_the_models_margins_bit_for_bit(task, distribution, nan, kernels):
    """Every row's re-summed margin (shared walk prefix, restart from the partial sums of
    the first moved tree's class) is the model's own float32 margin of the permuted copy;
    the outputs of every copy are the model's, for single columns and groups."""
    xgboost = _xgboost()
    rng = np.random.default_rng(21)
    X = _distribution(distribution, rng, 140, 6)
    y = _target(X, task, rng)
    if nan:
        X[rng.random(X.shape) < nan] = np.nan
    cls = xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier
    model = cls(n_estimators=12, max_depth=4, random_state=0, n_jobs=1).fit(X, y)
    scoring = {"multiclass": "neg_log_loss", "binary": None, "regression": "r2"}[task]
    path = _path(native_booster_path, model, X, scoring)
    assert isinstance(path, boosting.SumPath) and path.values.dtype == np.float32
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(3)])
    groups = [np.array([j]) for j in range(X.shape[1])] + [np.array([0, 2]), np.array([1, 3, 5])]
    answers = list(path.outputs_many(groups, orders))
    assert len(answers) == len(groups)
    for cols, (outs, exact) in zip(groups, answers, strict=True):
        assert exact.all()
        raw, _, undecided = path._sums(cols, orders)
        for r, order in enumerate(orders):
            Xp = X.copy()
            Xp[:, cols] = X[order][:, cols]
            margin = np.asarray(model.predict(Xp, output_margin=True)).reshape(raw[r].shape)
            decided = ~undecided[r]
            assert np.array_equal(raw[r][decided], margin[decided]), (cols, r)
            for name, value in outs.items():
                own = getattr(model, name)(Xp)
                assert value[r].dtype == own.dtype and np.array_equal(value[r], own), (cols, r)
    assert_parity(model, X, y, scoring, seeds=(1,))


def test_partial_sums_end_in_the_sums_and_chains_link_each_class():
    rng = np.random.default_rng(3)
    values = rng.normal(size=40).astype(np.float32)
    init = np.array([0.5, -0.25, 0.125], dtype=np.float32)
    tree_class = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    leaves = rng.integers(0, 40, size=(25, tree_class.size))
    prefix = boosting.partial_sums(values, init, tree_class, leaves)
    total = boosting.sum_leaves(values, init, tree_class, leaves)
    for k, last in enumerate([9, 7, 8]):
        assert np.array_equal(prefix[:, last], total[:, k])
    prev_same, next_same = boosting.class_chains(tree_class)
    assert prev_same.tolist() == [-1, -1, -1, 0, 1, 2, 3, 4, 5, 6]
    assert next_same.tolist() == [3, 4, 5, 6, 7, 8, 9, -1, -1, -1]


def test_xgboost_link_is_called_once_for_several_groups(monkeypatch):
    """The wrapper transforms the moved rows of LINK_GROUPS groups in one call."""
    xgboost = _xgboost()
    X, y = _data(22, p=12, task="multiclass")
    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3, random_state=0, n_jobs=1)
    model.fit(X, y)
    path = _path(native_booster_path, model, X, "neg_log_loss")
    assert isinstance(path, boosting.SumPath)
    calls = []
    original = path.link.outputs
    monkeypatch.setattr(path.link, "outputs", lambda raw, m: calls.append(1) or original(raw, m))
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(2)])
    groups = [np.array([j]) for j in range(X.shape[1])]
    assert len(list(path.outputs_many(groups, orders))) == len(groups)
    assert len(calls) == -(-len(groups) // boosting.LINK_GROUPS)


def test_walk_agreement_is_the_same_with_both_kernels(kernels):
    """The unpermuted walk reaches the model's leaves; one wrong leaf turns it down."""
    xgboost = _xgboost()
    X, y = _data(23, nan=0.1, task="multiclass")
    model = xgboost.XGBClassifier(n_estimators=6, max_depth=3, random_state=0, n_jobs=1)
    path = _path(native_booster_path, model.fit(X, y), X, None)
    assert path.refine and boosting.walk_agrees(path.table, X, path.leaves)
    wrong = path.leaves.copy()
    wrong[7, 4] = next(n for n in np.flatnonzero(path.table.left == -1) if n != wrong[7, 4])
    assert not boosting.walk_agrees(path.table, X, wrong)


# --- memory: small buffers and kept partial sums give the same numbers ------------------


def _assert_outputs_are_the_models(path, model, X, groups, n_copies=3):
    orders = np.stack([np.random.default_rng(r).permutation(X.shape[0]) for r in range(n_copies)])
    for cols, (outs, exact) in zip(groups, path.outputs_many(groups, orders), strict=True):
        assert exact.all()
        for r, order in enumerate(orders):
            Xp = X.copy()
            Xp[:, cols] = X[order][:, cols]
            for name, value in outs.items():
                own = getattr(model, name)(Xp)
                assert value[r].dtype == own.dtype and np.array_equal(value[r], own)


def test_a_two_row_buffer_of_repredicted_rows_gives_the_models_outputs(monkeypatch):
    """The buffer cap (a share of X's bytes) only splits the model's calls."""
    monkeypatch.setattr(boosting, "REPREDICT_BUFFER_SHARE", 10**9)
    X, y = _data(3, task="multiclass")
    model = GradientBoostingClassifier(n_estimators=8, random_state=0).fit(X, y)
    monkeypatch.setattr(boosting, "walk_agrees", lambda *args: False)
    path = _path(boosting_path, model, X, "neg_log_loss")
    assert type(path) is RepredictPath and path.max_rows == 2
    groups = [np.array([0]), np.array([1, 3]), np.array([5, 6, 7])]
    _assert_outputs_are_the_models(path, model, X, groups)
    assert_parity(model, X, y, "neg_log_loss", fast_paths=(boosting_path,))


@pytest.mark.parametrize("every", [1, 3, 1000])
def test_partial_sums_kept_every_few_trees_give_the_same_sums(monkeypatch, every, kernels):
    """Restarting from an earlier kept sum re-adds the same leaves in the same order."""
    monkeypatch.setattr(boosting, "PARTIAL_SUMS_EVERY", every)
    model, X, y, scoring = _sum_case(SUM_CASES[8], seed=4, nan=0.1)
    path = _path(boosting_path, model, X, scoring)
    assert isinstance(path, boosting.SumPath)
    assert path.prefix.shape[1] == np.count_nonzero(path.prefix_col >= 0)
    full = boosting.partial_sums(path.values, path.init, path.tree_class, path.leaves)
    kept = path.prefix_col >= 0
    assert np.array_equal(path.prefix, full[:, kept])
    _assert_outputs_are_the_models(path, model, X, [np.array([j]) for j in range(X.shape[1])])
    assert_parity(model, X, y, scoring, seeds=(1,))


def test_hist_walk_input_is_the_encoding_in_the_columns_of_x():
    """Categorical columns that the model moves first are put back in place (in place)."""
    rng = np.random.default_rng(15)
    X = rng.normal(size=(130, 6))
    X[:, [2, 4]] = rng.integers(0, 5, size=(130, 2))
    y = ((X[:, 2] == 1) | (X[:, 0] > 0.5) | (X[:, 4] > 3)).astype(int)
    model = HGB(max_iter=8, categorical_features=[2, 4], random_state=0).fit(X, y)
    before = X.copy()
    path = _path(boosting_path, model, X, None)
    assert np.array_equal(X, before)  # the caller's data is not reordered
    assert path.refine and not np.shares_memory(path.Xw, X)
    numerical = [0, 1, 3, 5]
    assert np.array_equal(path.Xw[:, numerical], X[:, numerical])
    codes = model._preprocessor.transform(X)
    assert np.array_equal(path.Xw[:, [2, 4]], codes[:, :2])
    plain = HGB(max_iter=8, random_state=0).fit(X, y)
    assert _path(boosting_path, plain, X, None).Xw is X  # no encoding: X itself
    assert_parity(model, X, y, "roc_auc")


def test_path_index_pairs_are_the_paths_that_test_the_columns():
    """Merged row slices give each (row, tree) pair once, tree by tree."""
    from leap.builtins.methods.permutation.trees import PathIndex

    X, y = _data(16, n=90, p=5)
    forest = RandomForestClassifier(6, max_features=None, random_state=0).fit(X, y)
    table = boosting.sklearn_tree_table(forest.estimators_)
    leaves = forest.apply(X) + table.roots
    index = PathIndex(table.left, table.right, table.feature, table.roots, leaves, X.shape[1])
    for cols in ([0], [3], [1, 2], list(range(X.shape[1]))):
        rows, trees = index.pairs(np.array(cols))
        assert np.all(np.diff(trees) >= 0) and rows.dtype == trees.dtype == index.pair_type
        expected = set()
        for t, est in enumerate(forest.estimators_):
            path = est.decision_path(X)
            tested = (est.tree_.children_left >= 0) & np.isin(est.tree_.feature, cols)
            for i in range(X.shape[0]):
                if tested[path[i].indices].any():
                    expected.add((i, t))
        got = list(zip(rows.tolist(), trees.tolist(), strict=True))
        assert len(got) == len(set(got)) and set(got) == expected
