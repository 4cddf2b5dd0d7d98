"""Batched scorers (R², errors, log loss, Brier, ROC AUC, average precision) equal
scikit-learn's permutation importance in every repeat."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from leap.builtins.methods.permutation import batched
from leap.builtins.methods.permutation.method import PermutationMethod

REGRESSION = [
    "r2",
    "neg_mean_squared_error",
    "neg_mean_absolute_error",
    "neg_root_mean_squared_error",
    None,
]
BINARY = ["neg_log_loss", "neg_brier_score", "roc_auc", "average_precision"]


def _leap(model, X, y, scoring, seed, sample_weight=None, n_repeats=4):
    scores = PermutationMethod().compute(
        model,
        X,
        y,
        scoring=scoring,
        n_repeats=n_repeats,
        random_state=seed,
        sample_weight=sample_weight,
    )
    return next(iter(scores.values()))


def _check(model, X, y, scoring, seed, sample_weight=None, expect_batched=True, n_repeats=4):
    used = []
    original = batched.BatchedScorer.scores

    def spy(self, outputs, ctx):
        values = original(self, outputs, ctx)
        used.append(not self.failed)
        return values

    batched.BatchedScorer.scores = spy
    try:
        ours = _leap(model, X, y, scoring, seed, sample_weight, n_repeats)
    finally:
        batched.BatchedScorer.scores = original
    ref = permutation_importance(
        model,
        X,
        y,
        scoring=scoring,
        n_repeats=n_repeats,
        random_state=seed,
        sample_weight=sample_weight,
    )
    np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=1e-12)
    if expect_batched:
        assert used and all(used)


def _data(seed, n=120, p=6, discrete=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    if discrete:
        X = np.round(X)
        X[n // 2 :] = X[: n - n // 2]  # duplicated rows: ties in the outputs
    return X


@pytest.mark.parametrize("scoring", REGRESSION)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_regression(scoring, seed, weighted):
    X = _data(seed)
    rng = np.random.default_rng(seed + 10)
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(size=X.shape[0])
    w = rng.uniform(0.5, 2.0, size=y.shape[0]) if weighted else None
    for model in (Ridge(alpha=1.0), LinearRegression()):
        model.fit(X, y)
        _check(model, X, y, scoring, seed, w, expect_batched=scoring is not None or not weighted)


def test_regression_forest_and_constant_target():
    X = _data(3, discrete=True)
    y = X[:, 0] * 2 + X[:, 1]
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, y)
    for scoring in REGRESSION[:4]:
        _check(model, X, y, scoring, 3)
    constant = np.full(X.shape[0], 1.5)
    model = Ridge().fit(X, y)  # predictions vary, the target does not: R² is 0
    _check(model, X, constant, "r2", 4)


@pytest.mark.parametrize("scoring", BINARY)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_binary(scoring, seed, weighted, discrete):
    X = _data(seed, discrete=discrete)
    rng = np.random.default_rng(seed + 20)
    y = (X[:, 0] + X[:, 1] + rng.normal(size=X.shape[0]) > 0).astype(int)
    w = rng.uniform(0.5, 2.0, size=y.shape[0]) if weighted else None
    for model in (
        LogisticRegression(max_iter=500),
        RandomForestClassifier(n_estimators=5, random_state=seed),
    ):
        model.fit(X, y)
        _check(model, X, y, scoring, seed, w)


def test_string_labels_and_saturated_probabilities():
    X = _data(5)
    y = np.where(X[:, 0] > 0, "walk", "run")
    model = LogisticRegression(C=1e6, max_iter=2000).fit(X * 50, y)  # probabilities 0 and 1
    for scoring in ["neg_log_loss", "roc_auc"]:
        _check(model, X * 50, y, scoring, 5)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_log_loss(seed, weighted):
    X = _data(seed, discrete=seed == 1)
    rng = np.random.default_rng(seed + 30)
    y = np.digitize(X[:, 0] + X[:, 1] + 0.5 * rng.normal(size=X.shape[0]), [-0.7, 0.7])
    w = rng.uniform(0.5, 2.0, size=y.shape[0]) if weighted else None
    for model in (
        LogisticRegression(max_iter=500),
        RandomForestClassifier(n_estimators=5, random_state=seed),
    ):
        model.fit(X, y)
        _check(model, X, y, "neg_log_loss", seed, w)
        _check(model, X, y, "neg_brier_score", seed, w)
        _check(model, X, y, "roc_auc_ovr", seed, w)
        if w is None:
            _check(model, X, y, "roc_auc_ovo", seed, w, expect_batched=False)


class _Float32Proba:
    """A classifier whose probabilities are float32 (as XGBoost's): left to the scorer."""

    _estimator_type = "classifier"

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_

    def __sklearn_tags__(self):
        return self.model.__sklearn_tags__()

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.model.predict(X)

    def predict_proba(self, X):
        return self.model.predict_proba(X).astype(np.float32)


def test_float32_probabilities_fall_back():
    X = _data(7)
    y = np.digitize(X[:, 0] + X[:, 1], [-0.7, 0.7])
    model = _Float32Proba(LogisticRegression(max_iter=500).fit(X, y))
    for scoring in ["neg_log_loss", "neg_brier_score"]:
        ours = _leap(model, X, y, scoring, 7)
        ref = permutation_importance(model, X, y, scoring=scoring, n_repeats=4, random_state=7)
        np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("classes", [2, 3])
def test_float32_log_loss_is_batched_in_float32(seed, weighted, classes):
    """float32 probabilities (XGBoost's): the batched log loss repeats scikit-learn's
    float32 arithmetic, so every repeat equals it, saturated probabilities included."""
    X = _data(seed, discrete=seed == 1)
    rng = np.random.default_rng(seed + 40)
    edges = [0.0] if classes == 2 else [-0.7, 0.7]
    y = np.digitize(X[:, 0] + X[:, 1] + 0.3 * rng.normal(size=X.shape[0]), edges)
    w = rng.uniform(0.5, 2.0, size=y.shape[0]) if weighted else None
    model = _Float32Proba(LogisticRegression(C=1e4, max_iter=2000).fit(3 * X, y))
    _check(model, X, y, "neg_log_loss", seed, w)


@pytest.mark.parametrize("scoring", ["r2", "neg_mean_squared_error", "accuracy"])
def test_row_differences_are_kept_as_group_means(scoring):
    X = _data(8)
    rng = np.random.default_rng(8)
    w = rng.uniform(0.5, 2.0, size=X.shape[0])
    if scoring == "accuracy":
        y = (X[:, 0] > 0).astype(int)
        model = LogisticRegression(max_iter=500).fit(X, y)
    else:
        y = X @ rng.normal(size=X.shape[1])
        model = Ridge().fit(X, y)
    X = X.copy()
    X[:, 3] = 1.0  # a constant column: answered without predicting
    (ours,) = (
        PermutationMethod(keep_row_differences=True)
        .compute(model, X, y, scoring=scoring, n_repeats=4, random_state=8, sample_weight=w)
        .values()
    )
    assert ours.row_differences is not None
    means = np.average(ours.row_differences, axis=1, weights=w)
    np.testing.assert_allclose(means, ours.importances.mean(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        ours.unit_moments.mean, ours.importances.mean(axis=1), rtol=0, atol=1e-12
    )


@pytest.mark.slow
def test_process_workers(monkeypatch):
    from leap.builtins.methods.permutation import runner

    monkeypatch.setattr(runner, "pool_pays", lambda *args: True)  # force the process pool
    X = _data(9)
    y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression(max_iter=500).fit(X, y)
    for scoring in ["neg_log_loss", "roc_auc"]:
        ours = PermutationMethod().compute(
            model, X, y, scoring=scoring, n_repeats=3, random_state=9, n_jobs=2
        )[scoring]
        ref = permutation_importance(model, X, y, scoring=scoring, n_repeats=3, random_state=9)
        np.testing.assert_allclose(ours.importances, ref.importances, rtol=0, atol=1e-12)


def test_rank_roc_auc_equals_the_curve_with_ties():
    """The batched ROC AUC (Mann–Whitney ranks) equals scikit-learn's trapezoid."""
    from sklearn.metrics import roc_auc_score

    from leap.builtins.methods.permutation.batched import _roc_auc_ranks

    rng = np.random.default_rng(3)
    for trial in range(60):
        m = int(rng.integers(5, 200))
        t = (rng.random(m) < 0.4).astype(float)
        if t.sum() in (0, m):
            continue
        scores = rng.normal(size=(3, m)) if trial % 2 else rng.integers(0, 3, (3, m)) * 1.0
        expected = [roc_auc_score(t, s) for s in scores]
        np.testing.assert_allclose(_roc_auc_ranks(t, scores), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("scoring", ["r2", "neg_mean_squared_error", "neg_mean_absolute_error"])
def test_stacked_row_shares_equal_the_per_copy_shares(scoring):
    from sklearn.linear_model import Ridge
    from sklearn.metrics import check_scoring

    from leap.builtins.methods.permutation.scoring import plan_scorer, row_shares_for

    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    model = Ridge().fit(X, y)
    scorer = check_scoring(model, scoring=scoring)
    shares = row_shares_for(scorer, plan_scorer(scorer, model))
    predictions = rng.normal(size=(4, 50))
    one_by_one = np.stack([shares(y, {"predict": p}, None) for p in predictions])
    assert np.array_equal(shares.stacked(y, predictions, None), one_by_one)


class _Float32Regressor:
    """A regressor whose predictions are float32 (as XGBoost's)."""

    _estimator_type = "regressor"

    def __init__(self, model):
        self.model = model

    def __sklearn_tags__(self):
        return self.model.__sklearn_tags__()

    def fit(self, X, y):
        return self

    def predict(self, X):
        return self.model.predict(X).astype(np.float32)


@pytest.mark.parametrize("scoring", ["r2", "neg_mean_squared_error", "neg_mean_absolute_error"])
@pytest.mark.parametrize("target", ["float64", "int64", "float32"])
def test_float32_predictions_are_batched_as_the_metric_casts_them(scoring, target):
    """float32 predictions against a float64 target: the metric computes in float64, so
    does the batched one; with an integer or float32 target it keeps float32 (replayed)."""
    X = _data(9)
    y = (3 * X[:, 0] - X[:, 1]).round().astype(target)
    model = _Float32Regressor(Ridge().fit(X, y))
    _check(model, X, y, scoring, 9, expect_batched=target == "float64")
