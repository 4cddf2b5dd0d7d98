"""The linear fast path under every scorer: labels bitwise, values within their bound.

Regressors and classifiers (LinearRegression, Ridge, Lasso, ElasticNet, SGD models,
BayesianRidge, LogisticRegression, LinearSVC, RidgeClassifier) on bounded, Gaussian,
heavy-tailed and tied data, against scikit-learn's ``permutation_importance``; the rounding
guard that hands large-scale targets to the model; and the bound itself, checked against
the model's own outputs on materialised copies.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.decomposition import PCA
from sklearn.inspection import permutation_importance
from sklearn.linear_model import (
    BayesianRidge,
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import LinearSVC

from leap.builtins.methods.permutation.linear import LinearPath, linear_path
from leap.builtins.methods.permutation.method import PermutationMethod
from leap.builtins.methods.permutation.mlp import MLPPath


def _data(kind: str, seed: int = 0, n: int = 150, p: int = 12):
    rng = np.random.default_rng(seed)
    if kind == "bounded":
        X = np.tanh(rng.normal(size=(n, p)))
    elif kind == "gauss":
        X = rng.normal(size=(n, p))
    elif kind == "t2":
        X = rng.standard_t(2, size=(n, p))
    else:  # tied: few values, duplicate rows, a constant column
        X = rng.integers(0, 3, size=(n, p)).astype(float)
        X[n // 2 :] = X[: n - n // 2]
        X[:, -1] = 1.0
    signal = X[:, 0] - X[:, 1] + 0.5 * np.tanh(X[:, 2]) + rng.normal(0, 0.5, n)
    return X, signal


def _parity(model, X, y, scoring, seed=0):
    kwargs = dict(scoring=scoring, n_repeats=4, random_state=seed)
    expected = permutation_importance(model, X, y, **kwargs).importances
    (got,) = PermutationMethod().compute(model, X, y, **kwargs).values()
    assert_allclose(got.importances, expected, rtol=0, atol=1e-12)


KINDS = ["bounded", "gauss", "t2", "tied"]
REGRESSORS = [
    LinearRegression(),
    Ridge(),
    Lasso(alpha=0.01),
    ElasticNet(alpha=0.01),
    SGDRegressor(random_state=0),
    BayesianRidge(),
    make_pipeline(StandardScaler(), Ridge()),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", REGRESSORS, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("scoring", ["r2", "neg_mean_squared_error", "neg_mean_absolute_error"])
def test_regressors_match_sklearn(kind, model, scoring, chosen_path):
    X, s = _data(kind)
    model.fit(X[:90], s[:90])
    _parity(model, X[90:], s[90:], scoring)
    assert chosen_path[0] in (LinearPath, None)  # the guard may hand a scale it cannot bound


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "scoring",
    [
        "neg_log_loss",
        "roc_auc",
        "average_precision",
        "neg_brier_score",
        "balanced_accuracy",
        "f1",
        "accuracy",
    ],
)
def test_binary_logistic_under_every_scorer(kind, scoring, chosen_path):
    X, s = _data(kind, seed=1)
    y = (s > np.median(s)).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X[:90], y[:90])
    for seed in range(2):
        _parity(model, X[90:], y[90:], scoring, seed)
    assert chosen_path[0] is LinearPath


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "model",
    [
        LogisticRegression(max_iter=1000),
        make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=1000)),
        LinearSVC(),
        RidgeClassifier(),
        SGDClassifier(random_state=0),
    ],
    ids=lambda m: type(m).__name__,
)
def test_multiclass_labels_and_probabilities(kind, model, chosen_path):
    X, s = _data(kind, seed=2)
    y = np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s)
    model.fit(X[:90], y[:90])
    scorers = ["accuracy", "balanced_accuracy"]
    if hasattr(model, "predict_proba"):
        scorers += ["neg_log_loss", "roc_auc_ovr"]
    for scoring in scorers:
        _parity(model, X[90:], y[90:], scoring)
    assert set(chosen_path) == {LinearPath}


def test_values_within_their_bound_of_the_model():
    """Decision values and probabilities of permuted copies lie within the served bound."""
    X, s = _data("t2", seed=3, n=120)
    y = np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    base = {name: getattr(model, name)(X) for name in ("decision_function", "predict_proba")}
    path = linear_path(model, X, base)
    assert path is not None
    orders = np.stack([np.random.default_rng(r).permutation(len(X)) for r in range(3)])
    for cols in (np.array([0]), np.array([1, 4])):
        d, bound, _ = path._decisions(cols, orders)
        proba, err = path._link(d, bound)
        for r in range(3):
            Xr = X.copy()
            Xr[:, cols] = X[orders[r]][:, cols]
            assert np.all(np.abs(model.decision_function(Xr) - d[r]) <= bound[r])
            assert np.all(np.abs(model.predict_proba(Xr) - proba[r]) <= err[r])
        outs, exact = path.outputs(cols, orders)
        assert outs["predict_proba"].shape == (3, len(X), 3) and exact.dtype == bool


def test_large_targets_go_to_the_model(chosen_path):
    """A mean squared error of targets in the thousands magnifies rounding beyond 1e-12:
    the model answers, bitwise."""
    X, s = _data("gauss", seed=4)
    model = Ridge().fit(X[:90], 5000.0 * s[:90])
    kwargs = dict(scoring="neg_mean_squared_error", n_repeats=3, random_state=0)
    expected = permutation_importance(model, X[90:], 5000.0 * s[90:], **kwargs).importances
    (got,) = PermutationMethod().compute(model, X[90:], 5000.0 * s[90:], **kwargs).values()
    assert np.array_equal(got.importances, expected)
    assert chosen_path == [None]
    # R² is scale-free: the same model keeps its fast path.
    _parity(model, X[90:], 5000.0 * s[90:], "r2")
    assert chosen_path[1] is LinearPath


def test_ties_in_decision_values_keep_the_model_ranking():
    """Duplicate rows tie exactly; ROC AUC after permutation still equals scikit-learn's."""
    X, s = _data("tied", seed=5)
    y = (s > np.median(s)).astype(int)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    for seed in range(3):
        _parity(model, X, y, "roc_auc", seed)


class _Shifted(Ridge):
    def predict(self, X):
        return super().predict(X) + 1.0


def test_subclasses_that_change_predict_get_no_path():
    X, s = _data("gauss")
    model = _Shifted().fit(X, s)
    assert linear_path(model, X, {"predict": model.predict(X)}) is None
    plain = Ridge().fit(X, s)
    assert linear_path(plain, X, {"predict": plain.predict(X)}) is not None
    assert linear_path(plain, X, {"predict": plain.predict(X) + 1e-3}) is None  # not its own


@pytest.mark.parametrize("classes", [2, 3, 5])
@pytest.mark.parametrize("kind", ["gauss", "tied"])
def test_compiled_labels_equal_the_numpy_block(classes, kind):
    """The compiled label loop gives the NumPy block's labels and certificates."""
    X, s = _data(kind, seed=6, n=120)
    y = np.searchsorted(np.quantile(s, np.linspace(0, 1, classes + 1)[1:-1]), s)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    path = linear_path(model, X, {"predict": model.predict(X)})
    if path.label_kernel is None:
        pytest.skip("numba is not installed")
    orders = np.stack([np.random.default_rng(r).permutation(len(X)) for r in range(4)])
    groups = [np.array([c]) for c in range(X.shape[1])]
    compiled = path.outputs_many(groups, orders)
    path.label_kernel = None
    plain = path.outputs_many(groups, orders)
    for (out_c, exact_c), (out_p, exact_p) in zip(compiled, plain, strict=True):
        assert np.array_equal(exact_c, exact_p)
        assert np.array_equal(out_c["predict"][exact_c], out_p["predict"][exact_p])


@pytest.mark.parametrize("kind", ["gauss", "t2", "tied"])
@pytest.mark.parametrize(
    ("model", "task", "scoring"),
    [
        (make_pipeline(StandardScaler(), PCA(6), Ridge()), "regression", "r2"),
        (
            make_pipeline(PCA(6, whiten=True), LinearRegression()),
            "regression",
            "neg_mean_absolute_error",
        ),
        (make_pipeline(StandardScaler(), PCA(6), LogisticRegression()), "binary", "accuracy"),
        (make_pipeline(PCA(8), LogisticRegression(max_iter=1000)), "multiclass", "neg_log_loss"),
        (
            make_pipeline(PCA(8), LogisticRegression(max_iter=1000)),
            "multiclass",
            "balanced_accuracy",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v[-1]).__name__,
)
def test_linear_models_behind_a_pca(kind, model, task, scoring, chosen_path):
    """A PCA then a linear model is a network without hidden layers: the MLP path's
    projected first layer serves it, exactly."""
    X, s = _data(kind, seed=7)
    y = {"regression": s, "binary": (s > np.median(s)).astype(int)}.get(
        task, np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s)
    )
    model.fit(X[:90], y[:90])
    for seed in range(2):
        _parity(model, X[90:], y[90:], scoring, seed)
    assert set(chosen_path) == {MLPPath}
