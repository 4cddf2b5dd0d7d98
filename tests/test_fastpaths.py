"""The speed-ups of the ``permutation`` method: taken where they apply, exact where taken.

Covers the model-aware fast paths (linear labels, k-nearest neighbours, trees) with their
NumPy fallbacks, ties and near-ties, constant and never-split columns, the batch byte cap,
the joblib backend, the progress bar and third-party fast paths.
"""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from joblib._parallel_backends import ThreadingBackend
from numpy.testing import assert_allclose
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesRegressor, RandomForestClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import RobustScaler, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeRegressor

from leap.builtins.methods.permutation._jit import numba_enabled
from leap.builtins.methods.permutation.copies import CopyStack, copies_per_batch
from leap.builtins.methods.permutation.linear import LinearPath
from leap.builtins.methods.permutation.method import PermutationMethod
from leap.builtins.methods.permutation.neighbors import NeighborsPath, knn_path
from leap.builtins.methods.permutation.svm import KernelPath
from leap.builtins.methods.permutation.trees import TreePath, tree_path


def assert_parity(model, X, y, **kwargs):
    kwargs.setdefault("n_repeats", 4)
    kwargs.setdefault("random_state", 0)
    expected = permutation_importance(model, X, y, **kwargs)
    got = PermutationMethod().compute(model, X, y, **kwargs)
    (scores,) = got.values()
    assert_allclose(scores.importances, expected.importances, rtol=0, atol=1e-12)
    return scores


def _blobs(seed=0, n=80, p=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    y = (X[:, 0] - X[:, 1] + rng.normal(0, 0.7, n) > 0).astype(int)
    return X, y


@pytest.mark.parametrize(
    ("model", "scoring", "expected"),
    [
        (LogisticRegression(), None, LinearPath),
        (make_pipeline(StandardScaler(), RidgeClassifier()), "accuracy", LinearPath),
        (LogisticRegression(), "roc_auc", LinearPath),  # decision values, order certified
        (LogisticRegression(), "neg_log_loss", LinearPath),  # probabilities within 1e-14
        (GaussianNB(), None, None),  # no fast path knows it
        (KNeighborsClassifier(5), "roc_auc", NeighborsPath),
        (make_pipeline(RobustScaler(), KNeighborsClassifier(3)), None, NeighborsPath),
        (KNeighborsClassifier(5, weights="distance"), None, NeighborsPath),
        (KNeighborsClassifier(5, metric="manhattan"), None, NeighborsPath),
        (RandomForestClassifier(10, random_state=0), "neg_log_loss", TreePath),
        (SVC(), None, KernelPath),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str | None | type) else str(v),
)
def test_fast_paths_are_taken_only_where_they_apply(model, scoring, expected, chosen_path):
    X, y = _blobs(1)
    model.fit(X, y)
    assert_parity(model, X, y, scoring=scoring)
    assert chosen_path == [expected]


@pytest.mark.parametrize("model", [KNeighborsRegressor(3), DecisionTreeRegressor(max_depth=5)])
def test_regressor_fast_paths(model, kernels, chosen_path):
    X, _ = _blobs(2)
    target = X[:, 0] * 3 + X[:, 2]
    model.fit(X, target)
    assert_parity(model, X, target, scoring="neg_mean_squared_error", max_samples=60)
    assert chosen_path[0] is not None


# --- k-nearest neighbours ---------------------------------------------------------------


def _tied_data(seed=0):
    """Integer features with duplicated rows: many exactly equal distances."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(70, 4)).astype(float)
    X = np.vstack([X, X[:20]])  # duplicate rows
    y = (X[:, 0] + X[:, 1] + rng.integers(0, 2, size=len(X)) > 2).astype(int)
    return X, y


@pytest.mark.parametrize("scoring", [None, "roc_auc", "neg_log_loss"])
def test_knn_classifier_with_ties_and_duplicates(scoring, kernels, chosen_path):
    X, y = _tied_data()
    model = KNeighborsClassifier(4).fit(X, y)  # even k: class votes can tie too
    for seed in range(3):
        assert_parity(model, X, y, scoring=scoring, random_state=seed)
    assert chosen_path[0] is NeighborsPath


def test_knn_regressor_with_ties(kernels):
    X, _ = _tied_data(1)
    target = X @ np.array([1.0, -2.0, 0.5, 3.0])
    model = KNeighborsRegressor(3).fit(X, target)
    for seed in range(3):
        assert_parity(model, X, target, random_state=seed)


def test_knn_ties_are_handed_back_to_the_model(kernels):
    X, y = _tied_data(2)
    model = KNeighborsClassifier(4).fit(X, y)
    path = knn_path(model, X, {"predict": model.predict(X)})
    orders = np.stack([np.random.default_rng(s).permutation(len(X)) for s in range(4)])
    path.outputs(np.array([0]), orders)
    assert path.rows_by_model > 0  # equidistant neighbours: not certified, the model decides


def test_knn_rescores_all_points_when_kept_candidates_run_out(kernels, chosen_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))
    X[:, 0] *= 1000.0  # one column dominates: permuting it moves every distance a lot
    y = (X[:, 0] > 0).astype(int) ^ (X[:, 1] > 1).astype(int)
    model = KNeighborsClassifier(5).fit(X, y)
    assert_parity(model, X, y, n_repeats=3)
    assert chosen_path == [NeighborsPath]


@pytest.mark.skipif(not numba_enabled(), reason="numba is not installed")
def test_knn_kernels_agree(monkeypatch):
    X, y = _blobs(4, n=120, p=20)
    model = KNeighborsClassifier(5).fit(X, y)
    base = {"predict": model.predict(X), "predict_proba": model.predict_proba(X)}
    orders = np.stack([np.random.default_rng(s).permutation(len(X)) for s in range(4)])
    compiled, exact_c = knn_path(model, X, base).outputs(np.array([0]), orders)
    monkeypatch.setenv("LEAP_DISABLE_NUMBA", "1")
    plain, exact_p = knn_path(model, X, base).outputs(np.array([0]), orders)
    assert np.array_equal(exact_c, exact_p) and exact_c.any()
    for name in base:
        assert np.array_equal(compiled[name][exact_c], plain[name][exact_c])


# --- linear classifiers -----------------------------------------------------------------


def test_linear_labels_on_the_decision_boundary(chosen_path):
    """Rows whose decision is exactly 0 cannot be certified: the model labels them."""
    rng = np.random.default_rng(5)
    X = rng.integers(-2, 3, size=(60, 3)).astype(float)
    y = (X[:, 0] > X[:, 1]).astype(int)
    model = LogisticRegression().fit(X, y)
    model.coef_ = np.array([[1.0, -1.0, 0.0]])
    model.intercept_ = np.array([0.0])
    scores = assert_parity(model, X, y)
    assert chosen_path == [LinearPath]
    assert np.all(scores.importances[2] == 0.0)  # zero coefficient: labels cannot change
    path = LinearPath(
        X, model.coef_, model.intercept_, model.decision_function(X)[:, None],
        {"predict": model.predict(X)}, model.classes_,
    )  # fmt: skip
    orders = np.stack([np.random.default_rng(s).permutation(len(X)) for s in range(4)])
    _, exact = path.outputs(np.array([0]), orders)
    assert not exact.all()


def test_multiclass_linear_labels(chosen_path):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(90, 4))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.6, 0.6])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    for seed in range(3):
        assert_parity(model, X, y, random_state=seed, scoring="balanced_accuracy")
    assert chosen_path[0] is LinearPath


# --- trees ------------------------------------------------------------------------------


def test_columns_no_tree_splits_on_are_zero_without_prediction(kernels, monkeypatch):
    X, y = _blobs(7)
    X_fit = X.copy()
    X_fit[:, 3] = 0.0  # constant while fitting: no tree can split on it
    model = RandomForestClassifier(8, random_state=0).fit(X_fit, y)
    asked = []
    original = TreePath.outputs

    def outputs(self, cols, orders):
        asked.extend(np.asarray(cols).tolist())
        return original(self, cols, orders)

    monkeypatch.setattr(TreePath, "outputs", outputs)
    scores = assert_parity(model, X, y)
    assert np.all(scores.importances[3] == 0.0)
    assert 3 not in asked and set(asked) == {0, 1, 2, 4}


def test_tree_kernels_agree_with_the_model(kernels):
    X, _ = _blobs(8, n=100)
    target = X[:, 0] - 2 * X[:, 1] + X[:, 2] ** 2
    model = ExtraTreesRegressor(12, random_state=0).fit(X, target)
    path = tree_path(model, X, {"predict": model.predict(X)})
    orders = np.stack([np.random.default_rng(s).permutation(len(X)) for s in range(3)])
    out, exact = path.outputs(np.array([1, 2]), orders)
    assert exact.all()
    for r in range(3):
        permuted = X.copy()
        permuted[:, [1, 2]] = X[orders[r]][:, [1, 2]]
        assert np.array_equal(out["predict"][r], model.predict(permuted))


# --- constant columns, batches and the general path ---------------------------------------


class CountingClassifier(ClassifierMixin, BaseEstimator):
    """A classifier no fast path knows, counting the rows it is asked to predict."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.calls_ = []
        return self

    def predict(self, X):
        X = np.asarray(X)
        self.calls_.append(X.shape[0])
        return self.classes_[(X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)]


def test_constant_columns_need_no_prediction():
    X, y = _blobs(9, n=40, p=6)
    X[:, 2:] = 1.25  # four constant columns
    model = CountingClassifier().fit(X, y)
    expected = permutation_importance(model, X, y, n_repeats=3, random_state=0)
    model.calls_.clear()
    got = PermutationMethod().compute(model, X, y, n_repeats=3, random_state=0)["score"]
    assert_allclose(got.importances, expected.importances, rtol=0, atol=1e-12)
    assert np.all(got.importances[2:] == 0.0)
    # baseline + unpermuted outputs + 2 columns × 3 copies (batched): far fewer than 2 + 18
    assert sum(model.calls_) == 2 * 40 + 2 * 3 * 40
    assert len(model.calls_) <= 4


@pytest.mark.parametrize("max_batch_bytes", [1, 2**20, 2**30])
def test_batch_cap_changes_calls_not_numbers(max_batch_bytes):
    X, y = _blobs(10, n=30, p=4)
    model = CountingClassifier().fit(X, y)
    expected = permutation_importance(model, X, y, n_repeats=5, random_state=3)
    model.calls_.clear()
    got = PermutationMethod(max_batch_bytes=max_batch_bytes).compute(
        model, X, y, n_repeats=5, random_state=3
    )["score"]
    assert_allclose(got.importances, expected.importances, rtol=0, atol=1e-12)
    capacity = copies_per_batch(30, X.shape[1] * 8, max_batch_bytes)
    assert max(model.calls_) <= max(30, capacity * 30)
    assert max(model.calls_) * 8 * X.shape[1] <= max(max_batch_bytes, 30 * 8 * X.shape[1])


def test_copies_per_batch():
    assert copies_per_batch(100, 80, max_bytes=1) == 1
    assert copies_per_batch(100, 80, max_bytes=8000 * 3) == 3
    assert copies_per_batch(100, 8, max_bytes=2**30) == 11  # enough to reach 1024 rows
    assert copies_per_batch(5000, 8, max_bytes=2**30) == 1


@pytest.mark.parametrize("kind", ["array", "frame", "mixed_frame"])
def test_copy_stack_restores_what_the_last_batch_permuted(kind):
    rng = np.random.default_rng(11)
    values = rng.normal(size=(6, 3))
    X = values
    if kind != "array":
        X = pd.DataFrame(values, columns=["a", "b", "c"])
        if kind == "mixed_frame":
            X["c"] = np.arange(6)
    stack = CopyStack(X, capacity=2)
    order = np.array([5, 4, 3, 2, 1, 0])
    stack.batch([(np.array([0]), order), (np.array([1, 2]), order)])
    second = np.asarray(stack.batch([(np.array([2]), order)]), dtype=float)
    reference = np.asarray(X, dtype=float)
    expected = reference.copy()
    expected[:, 2] = reference[order, 2]
    assert np.array_equal(second, expected)


def test_dataframe_batches_keep_dtypes():
    X, y = _blobs(12, n=30, p=3)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["c"] = pd.Categorical(np.where(X[:, 2] > 0, "hi", "lo"))
    seen = []

    class FrameModel(CountingClassifier):
        def predict(self, X):
            seen.append(X["c"].dtype)
            return self.classes_[(X["a"].to_numpy() > 0).astype(int)]

    model = FrameModel().fit(frame, y)
    assert_parity(model, frame, y)
    assert all(isinstance(d, pd.CategoricalDtype) for d in seen)


# --- joblib, progress, third-party fast paths ----------------------------------------------


class RecordingBackend(ThreadingBackend):
    used = 0

    def configure(self, *args, **kwargs):
        RecordingBackend.used += 1
        return super().configure(*args, **kwargs)


def test_joblib_context_backend_is_used():
    joblib.register_parallel_backend("leap-recording", RecordingBackend)
    X, y = _blobs(13)
    model = KNeighborsClassifier(3).fit(X, y)
    RecordingBackend.used = 0
    with joblib.parallel_config(backend="leap-recording", n_jobs=2):
        assert_parity(model, X, y)
    assert RecordingBackend.used >= 1


@pytest.mark.slow
def test_model_calls_in_worker_processes():
    X, y = _blobs(14)
    model = SVC().fit(X, y)
    assert_parity(model, X, y, n_jobs=2, scoring="accuracy")


def test_progress_bar_only_when_asked(capsys):
    X, y = _blobs(15)
    model = LogisticRegression().fit(X, y)
    method = PermutationMethod()
    method.compute(model, X, y, n_repeats=2, progress=False)
    assert "permuting" not in capsys.readouterr().err
    method.compute(model, X, y, n_repeats=2, progress=True)
    err = capsys.readouterr().err
    assert "permuting" in err and f"{X.shape[1]}/{X.shape[1]}" in err


class ModelCallingPath:
    """A third-party fast path: asks the model per copy, certifies only even repeats."""

    calls = 0

    def __init__(self, model, X, base_outputs):
        self.model, self.X, self.methods = model, X, list(base_outputs)

    def unaffected(self, cols):
        return False

    def outputs(self, cols, orders):
        ModelCallingPath.calls += 1
        outs = {name: [] for name in self.methods}
        for order in orders:
            permuted = self.X.copy()
            permuted[:, cols] = self.X[order][:, cols]
            for name in self.methods:
                outs[name].append(getattr(self.model, name)(permuted))
        exact = np.arange(len(orders)) % 2 == 0
        return {k: np.stack(v) for k, v in outs.items()}, exact


def test_third_party_fast_path():
    X, y = _blobs(16)
    model = SVC().fit(X, y)
    method = PermutationMethod(fast_paths=[ModelCallingPath])
    expected = permutation_importance(model, X, y, n_repeats=4, random_state=2, scoring="f1")
    ModelCallingPath.calls = 0
    got = method.compute(model, X, y, n_repeats=4, random_state=2, scoring="f1")["f1"]
    assert ModelCallingPath.calls == X.shape[1]
    assert_allclose(got.importances, expected.importances, rtol=0, atol=1e-12)


def test_performance_doc_snippet_runs():
    text = (Path(__file__).resolve().parents[1] / "docs" / "performance.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "performance.md", "exec"), {})  # our own docs


@pytest.mark.parametrize("minimum", [0.0, 1e9], ids=["threads", "this-thread"])
def test_short_fast_path_runs_stay_in_this_thread(minimum, monkeypatch, chosen_path):
    """The first groups of a fast path are timed here; a run whose rest would take less
    than THREADS_MIN_SECONDS stays in this thread (one job), else it goes to threads.
    Either way the numbers are scikit-learn's. (No timing trial against the model: on a
    busy machine it may drop the fast path for so small a model, which is not tested
    here.)"""
    from leap.builtins.methods.permutation import runner

    jobs = []
    original = runner.Parallel

    def recording(*args, **kwargs):
        jobs.append(kwargs.get("n_jobs"))
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "Parallel", recording)
    monkeypatch.setattr(runner, "THREADS_MIN_SECONDS", minimum)
    monkeypatch.setattr(runner, "FAST_PATH_TRIAL_GROUPS", 10**9)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 40))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    expected = permutation_importance(model, X, y, n_repeats=3, random_state=0, n_jobs=2)
    got = PermutationMethod().compute(model, X, y, n_repeats=3, random_state=0, n_jobs=2)
    assert_allclose(got["score"].importances, expected.importances, rtol=0, atol=1e-12)
    assert chosen_path == [LinearPath]
    assert jobs == [2 if minimum == 0.0 else 1]
