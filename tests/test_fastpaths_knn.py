"""The k-NN fast path gives the model's own outputs, on any data, metric, weight, algorithm.

Two kinds of checks: copy by copy (every answered copy's labels are bitwise the model's
``predict`` on that permuted copy, probabilities and regression values within 1e-12), and
end to end against :func:`sklearn.inspection.permutation_importance`. Plus a smoke test of
the benchmark matrix (tiny sizes, no timing).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.inspection import permutation_importance
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from leap.builtins.methods.permutation._jit import numba_enabled
from leap.builtins.methods.permutation.method import PermutationMethod
from leap.builtins.methods.permutation.neighbors import NeighborsPath, knn_path

ROOT = Path(__file__).resolve().parents[1]


def make_X(kind: str, seed: int, n: int = 90, p: int = 30) -> np.ndarray:
    """Feature matrices of several distributions (see the ids of ``DISTRIBUTIONS``)."""
    rng = np.random.default_rng(seed)
    if kind == "bounded":
        X = np.tanh(rng.normal(0.0, 0.8, size=(n, p)))
    elif kind == "gauss":
        X = rng.normal(size=(n, p))
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    elif kind == "t2":
        X = rng.standard_t(2, size=(n, p))
    elif kind == "discrete":
        X = rng.integers(0, 3, size=(n, p)).astype(float)
    elif kind == "duplicates":
        X = rng.normal(size=(n // 3, p))
        X = np.vstack([X, X, X[: n - 2 * (n // 3)]])
    elif kind == "constant":
        X = rng.normal(size=(n, p))
        X[:, [1, 4]] = 0.5
    else:
        raise ValueError(kind)
    return X


def split(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training rows and held-out query rows (alternate rows)."""
    return X[::2], X[1::2]


DISTRIBUTIONS = ["bounded", "gauss", "t2", "discrete", "duplicates", "constant"]


def make_y(X: np.ndarray, seed: int, task: str) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    s = np.tanh(X[:, 0]) - np.tanh(X[:, 2]) + rng.normal(0.0, 0.5, len(X))
    if task == "reg":
        return s
    if task == "binary":
        return (s > np.median(s)).astype(int)
    return np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s)


@pytest.fixture(autouse=True)
def _one_thread():
    """scikit-learn's k-NN with one OpenMP thread: its thread team per call is slow on a
    busy machine, and the outputs do not depend on it."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def assert_copies_match(model, X, groups=None, n_repeats=4, seed=0, methods=None):
    """Every copy the path answers equals the model's own outputs on that copy."""
    if methods is None:
        methods = ["predict", "predict_proba"] if hasattr(model, "classes_") else ["predict"]
    base = {name: getattr(model, name)(X) for name in methods}
    path = knn_path(model, X, base)
    values = "predict_proba" in methods or not hasattr(model, "classes_")
    if path is None and model.weights == "distance" and values:
        return None, 0  # distance-weighted values next to near-duplicates: the model's
    assert isinstance(path, NeighborsPath)
    rng = np.random.default_rng(seed)
    orders = np.stack([rng.permutation(len(X)) for _ in range(n_repeats)])
    if groups is None:
        groups = [[0], [1], [2], [X.shape[1] - 1], [0, 3], list(range(X.shape[1]))]
    mine: dict[str, list] = {name: [] for name in methods}
    copies = []
    for cols in groups:
        cols = np.asarray(cols)
        outs, exact = path.outputs(cols, orders)
        for r in np.flatnonzero(exact):
            Xp = X.copy()
            Xp[:, cols] = X[orders[r]][:, cols]
            copies.append(Xp)
            for name in methods:
                mine[name].append(outs[name][r])
    answered = len(copies)
    if answered:  # one model call for all copies: a row's output does not depend on the others
        stacked = np.vstack(copies)
        for name in methods:
            theirs = getattr(model, name)(stacked)
            ours = np.concatenate(mine[name])
            if name == "predict" and hasattr(model, "classes_"):
                np.testing.assert_array_equal(ours, theirs)
            else:
                assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    return path, answered


@pytest.mark.parametrize("kind", DISTRIBUTIONS)
@pytest.mark.parametrize(
    "make_model",
    [
        lambda: KNeighborsClassifier(5),
        lambda: KNeighborsClassifier(4, weights="distance"),
        lambda: KNeighborsRegressor(5),
        lambda: KNeighborsRegressor(3, weights="distance"),
    ],
    ids=["clf-uniform", "clf-distance", "reg-uniform", "reg-distance"],
)
def test_copies_equal_the_models_outputs_on_every_distribution(kind, make_model, kernels):
    model = make_model()
    task = "reg" if isinstance(model, KNeighborsRegressor) else "multi"
    for seed in range(2):
        X_fit, X = split(make_X(kind, seed, n=180))
        model.fit(X_fit, make_y(X_fit, seed, task))
        _, answered = assert_copies_match(model, X, seed=seed)
        # Exact duplicates, and exact ties under distance weights, are the model's to break.
        assert (
            answered > 0
            or kind == "duplicates"
            or (kind, model.weights)
            == (
                "discrete",
                "distance",
            )
        )


@pytest.mark.parametrize(
    ("metric", "p"),
    [("euclidean", 2), ("manhattan", 2), ("minkowski", 1), ("minkowski", 3), ("minkowski", 1.5)],
)
@pytest.mark.parametrize("algorithm", ["brute", "kd_tree", "ball_tree"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_metrics_weights_and_algorithms(metric, p, algorithm, weights):
    X_fit, X = split(make_X("gauss", 3, n=140, p=12))
    for model, task in [
        (KNeighborsClassifier(3, metric=metric, p=p, algorithm=algorithm, weights=weights), "bi"),
        (KNeighborsRegressor(4, metric=metric, p=p, algorithm=algorithm, weights=weights), "reg"),
    ]:
        model.fit(X_fit, make_y(X_fit, 3, "binary" if task == "bi" else "reg"))
        _, answered = assert_copies_match(model, X, n_repeats=3)
        assert answered > 0


@pytest.mark.parametrize("k", [1, 2, 7])
@pytest.mark.parametrize("methods", [["predict"], ["predict_proba"], ["predict", "predict_proba"]])
def test_classifier_k_and_response_methods_on_tied_data(k, methods, kernels):
    X_fit, X = split(make_X("discrete", 5, n=160, p=12))
    model = KNeighborsClassifier(k).fit(X_fit, make_y(X_fit, 5, "multi"))
    assert_copies_match(model, X, methods=methods)


def test_ties_and_near_ties_are_answered_by_the_model():
    X_fit, X = split(make_X("discrete", 7, n=160, p=12))
    model = KNeighborsClassifier(4).fit(X_fit, make_y(X_fit, 7, "binary"))
    path, answered = assert_copies_match(model, X)
    assert path.rows_by_model > 0 and answered > 0


def test_a_copy_the_model_would_do_faster_is_handed_over():
    X = make_X("gauss", 8, n=120, p=6)
    X[:, 0] *= 1000.0  # permuting it moves every distance far beyond the kept candidates
    model = KNeighborsClassifier(5).fit(X, make_y(X, 8, "binary"))
    path, answered = assert_copies_match(model, X, groups=[[0]], n_repeats=3)
    assert answered == 3 and path.rows_by_model >= 0.5 * 3 * len(X)


@pytest.mark.parametrize("kind", ["gauss", "t2", "discrete", "duplicates"])
@pytest.mark.parametrize("scoring", [None, "neg_log_loss", "roc_auc"])
def test_classifier_importances_equal_scikit_learns(kind, scoring):
    full = make_X(kind, 11, n=160)
    X_fit, X = split(full)
    y_fit, y = split(make_y(full, 11, "binary"))
    for weights in ["uniform", "distance"]:
        model = make_pipeline(StandardScaler(), KNeighborsClassifier(5, weights=weights))
        model.fit(X_fit, y_fit)
        for seed in range(2):
            kwargs = dict(scoring=scoring, n_repeats=3, random_state=seed)
            expected = permutation_importance(model, X, y, **kwargs).importances
            (got,) = PermutationMethod().compute(model, X, y, **kwargs).values()
            assert_allclose(got.importances, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["bounded", "t2", "discrete", "constant"])
def test_regressor_importances_equal_scikit_learns(kind):
    full = make_X(kind, 12, n=160)
    X_fit, X = split(full)
    y_fit, y = split(make_y(full, 12, "reg"))
    for weights in ["uniform", "distance"]:
        model = KNeighborsRegressor(4, weights=weights, p=1 if kind == "t2" else 2).fit(
            X_fit, y_fit
        )
        kwargs = dict(scoring="r2", n_repeats=3, random_state=1)
        expected = permutation_importance(model, X, y, **kwargs).importances
        got = PermutationMethod().compute(model, X, y, **kwargs)["r2"].importances
        assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "model",
    [
        KNeighborsClassifier(3, metric="chebyshev"),
        KNeighborsClassifier(3, weights=lambda d: np.ones_like(d)),
        KNeighborsClassifier(3, metric="minkowski", p=2, metric_params={"w": np.ones(4)}),
    ],
    ids=["chebyshev", "callable-weights", "weighted-minkowski"],
)
def test_unsupported_models_get_no_path(model):
    X = make_X("gauss", 13, n=40, p=4)
    y = make_y(X, 13, "binary")
    model.fit(X, y)
    assert knn_path(model, X, {"predict": model.predict(X)}) is None
    expected = permutation_importance(model, X, y, n_repeats=2, random_state=0).importances
    (got,) = PermutationMethod().compute(model, X, y, n_repeats=2, random_state=0).values()
    assert_allclose(got.importances, expected, rtol=0, atol=1e-12)


@pytest.mark.skipif(not numba_enabled(), reason="numba is not installed")
def test_compiled_and_numpy_kernels_agree(monkeypatch):
    X = make_X("t2", 14, n=100, p=10)
    model = KNeighborsClassifier(5).fit(X, make_y(X, 14, "multi"))
    base = {"predict": model.predict(X), "predict_proba": model.predict_proba(X)}
    orders = np.stack([np.random.default_rng(s).permutation(len(X)) for s in range(4)])
    compiled, exact_c = knn_path(model, X, base).outputs(np.array([0]), orders)
    monkeypatch.setenv("LEAP_DISABLE_NUMBA", "1")
    plain, exact_p = knn_path(model, X, base).outputs(np.array([0]), orders)
    assert np.array_equal(exact_c, exact_p) and exact_c.any()
    for name in base:
        assert np.array_equal(compiled[name][exact_c], plain[name][exact_c])


@pytest.mark.slow
def test_benchmark_matrix_runs(tmp_path):
    out = tmp_path / "bench.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_permutation.py"),
        "--rows", "60", "--no-memory", "--output", str(out),
        "--select", "knn-distance-reg/t2", "logreg-acc-binary/demo", "wrapped-logreg/*",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    table = out.read_text(encoding="utf-8").splitlines()
    assert table[1].startswith("| workload | model |")
    rows = [line for line in table[3:] if line.startswith("| ")]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "knn-distance-reg/t2",
        "logreg-acc-binary/demo",
        "wrapped-logreg/gauss",
    ]
    for r in rows:
        assert float(r.split(" | ")[8]) <= 1e-12  # max abs diff
    listed = subprocess.run(
        [*cmd[:2], "--list"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    names = listed.stdout.split()
    assert len(names) == len(set(names)) and "knn-uniform-clf/discrete" in names


def tied_threads_data(seed: int = 21):
    """Small integers, more than 256 training rows: scikit-learn's brute-force search splits
    the training points between threads and breaks exact ties by thread count."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(640, 30)).astype(float)
    y = (X[:, 0] + X[:, 1] - X[:, 2] + rng.normal(0.0, 0.7, len(X))).round()
    return X[:600], X[600:], y[:600], y[600:]


@pytest.mark.parametrize("kind", ["clf", "reg"])
def test_importances_match_scikit_learn_called_with_the_same_n_jobs(kind):
    """With two OpenMP threads in this process and ``n_jobs=2`` (process workers of
    ``cpu_count() // 2`` threads), LEAP reproduces whichever answer scikit-learn gives."""
    from threadpoolctl import threadpool_limits

    X_fit, X, y_fit, y = tied_threads_data()
    if kind == "clf":  # labels that differ between tied points
        labels = np.random.default_rng(21).integers(0, 3, 640)
        y_fit, y = labels[:600], labels[600:]
        model = KNeighborsClassifier(5).fit(X_fit, y_fit)
    else:
        model = KNeighborsRegressor(5).fit(X_fit, y_fit)
    with threadpool_limits(limits=2, user_api="openmp"):
        # The data exercise the tie-breaking: one and two threads answer differently.
        Xp = X.copy()
        Xp[:, 0] = X[::-1, 0]
        two = model.predict(Xp)
        with threadpool_limits(limits=1, user_api="openmp"):
            one = model.predict(Xp)
        assert not np.array_equal(one, two)
        for n_jobs in [None, 2]:
            kwargs = dict(n_repeats=3, random_state=0, n_jobs=n_jobs)
            expected = permutation_importance(model, X, y, **kwargs).importances
            (got,) = PermutationMethod().compute(model, X, y, **kwargs).values()
            assert_allclose(got.importances, expected, rtol=0, atol=1e-12)


def test_copy_threads_follow_joblib_workers(monkeypatch):
    """The copies' OpenMP threads: the caller's for one job, joblib's worker limit otherwise,
    and no limit at all for models whose outputs do not depend on it."""
    from joblib import cpu_count, parallel_config
    from sklearn.linear_model import LogisticRegression

    from leap.builtins.methods.permutation.neighbors import copy_threads

    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(3))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert copy_threads(knn, None) is None and copy_threads(knn, 1) is None
    assert copy_threads(knn, 2) == max(cpu_count() // 2, 1)
    assert copy_threads(LogisticRegression(), 2) is None
    with parallel_config(backend="threading"):
        assert copy_threads(knn, 2) is None
    with parallel_config(backend="loky", inner_max_num_threads=3):
        assert copy_threads(knn, 2) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert copy_threads(knn, 2) == 5


@pytest.mark.parametrize("bounds", [True, False], ids=["lower-bounds", "candidates-only"])
@pytest.mark.parametrize("kind", ["t2", "discrete", "duplicates"])
def test_rows_that_run_out_scan_every_point(kind, bounds, kernels, monkeypatch):
    """With the one-byte lower bounds of every distance (rows that run out scan every point at
    O(g)) and without them (such rows are recomputed in full), copies equal the model's."""
    monkeypatch.setattr(NeighborsPath, "LOW_BOUND_SHARE", 10.0 if bounds else 0.0)
    monkeypatch.setattr(NeighborsPath, "KEEP_WITH_BOUNDS", 0)  # few candidates: rows run out
    X_fit, X = split(make_X(kind, 16, n=240, p=12))
    for model, task in [(KNeighborsClassifier(5), "multi"), (KNeighborsRegressor(4), "reg")]:
        model.fit(X_fit, make_y(X_fit, 16, task))
        path, answered = assert_copies_match(model, X, seed=16)
        assert (path.low is not None) == bounds and answered > 0
        assert kind != "t2" or path.rows_run_out > 0


@pytest.mark.parametrize("kind", DISTRIBUTIONS)
@pytest.mark.parametrize(
    ("metric", "p"), [("euclidean", 2), ("manhattan", 1), ("minkowski", 3)], ids=["l2", "l1", "p3"]
)
def test_importances_equal_scikit_learns_across_metrics(kind, metric, p):
    full = make_X(kind, 17, n=120, p=10)
    X_fit, X = split(full)
    for make, task in [(KNeighborsClassifier, "multi"), (KNeighborsRegressor, "reg")]:
        y_fit, y = split(make_y(full, 17, task))
        for weights in ["uniform", "distance"]:
            model = make(5, metric=metric, p=p, weights=weights).fit(X_fit, y_fit)
            kwargs = dict(n_repeats=2, random_state=3)
            expected = permutation_importance(model, X, y, **kwargs).importances
            (got,) = PermutationMethod().compute(model, X, y, **kwargs).values()
            assert_allclose(got.importances, expected, rtol=0, atol=1e-12)


def no_trial(monkeypatch):
    """No timing trial against the model: on a busy machine it may drop a fast path for a
    small model, and these tests check which path the rounding guard chooses."""
    from leap.builtins.methods.permutation import runner

    monkeypatch.setattr(runner, "FAST_PATH_TRIAL_GROUPS", 10**9)


@pytest.mark.parametrize("kind", ["bounded", "gauss", "t2"])
def test_distance_weighted_values_are_served_with_many_features(kind, chosen_path, monkeypatch):
    """With hundreds of features a Gram-matrix distance rounds by ~1e-15 of itself: the
    weights' values are served (within 1e-12 of the model's) and the importances under
    value scorers equal scikit-learn's."""
    no_trial(monkeypatch)
    full = make_X(kind, 21, n=240, p=300)
    X_fit, X = split(full)
    y_fit, y = split(make_y(full, 21, "reg"))
    reg = KNeighborsRegressor(5, weights="distance").fit(X_fit, y_fit)
    path, answered = assert_copies_match(reg, X, n_repeats=3)
    assert path is not None and answered == 3 * 6
    assert path.jitter(np.ones(len(X)))["predict"].shape == y.shape
    clf = KNeighborsClassifier(5, weights="distance").fit(X_fit, (y_fit > 0).astype(int))
    path, answered = assert_copies_match(clf, X, n_repeats=3)
    assert path is not None and answered == 3 * 6
    for model, target, scoring in [
        (reg, y, "r2"),
        (reg, y, "neg_mean_absolute_error"),
        (clf, (y > 0).astype(int), "neg_log_loss"),
        (clf, (y > 0).astype(int), "neg_brier_score"),
    ]:
        kwargs = dict(scoring=scoring, n_repeats=3, random_state=2)
        model.fit(X_fit[:, :40], y_fit if model is reg else (y_fit > 0).astype(int))
        expected = permutation_importance(model, X[:, :40], target, **kwargs).importances
        (got,) = PermutationMethod().compute(model, X[:, :40], target, **kwargs).values()
        assert_allclose(got.importances, expected, rtol=0, atol=1e-12)
    assert set(chosen_path) == {NeighborsPath}


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_large_targets_under_squared_error_go_to_the_model(weights, chosen_path, monkeypatch):
    """Values within ~1e-15 of the model's still move a squared error of targets in the
    millions by more than 1e-12: the rounding guard hands such runs to the model (bitwise),
    while R² keeps the path. Uniform means tie-ordered on discrete data count too."""
    no_trial(monkeypatch)
    kind = "gauss" if weights == "distance" else "discrete"
    full = make_X(kind, 22, n=200, p=30)
    X_fit, X = split(full)
    y_fit, y = split(1e6 * make_y(full, 22, "reg"))
    model = KNeighborsRegressor(4, weights=weights).fit(X_fit, y_fit)
    kwargs = dict(scoring="neg_mean_squared_error", n_repeats=3, random_state=0)
    expected = permutation_importance(model, X, y, **kwargs).importances
    (got,) = PermutationMethod().compute(model, X, y, **kwargs).values()
    assert np.array_equal(got.importances, expected)
    assert chosen_path == [None]
    kwargs["scoring"] = "r2"
    expected = permutation_importance(model, X, y, **kwargs).importances
    (got,) = PermutationMethod().compute(model, X, y, **kwargs).values()
    assert_allclose(got.importances, expected, rtol=0, atol=1e-12)
    assert chosen_path[1] is NeighborsPath


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_rows_asked_together_for_many_groups_equal_one_group_at_a_time(weights):
    """On tied integer data the rows the model must answer are asked in one call for
    several groups; each copy gets what it gets alone: the same labels, values within
    1e-12 (the model orders exactly tied neighbours, and so rounds their sum, by the
    call's size)."""
    X_fit, X = split(make_X("discrete", 23, n=200, p=20))
    y_fit = make_y(X_fit, 23, "reg")
    for model in [
        KNeighborsRegressor(4, weights=weights).fit(X_fit, y_fit),
        KNeighborsClassifier(4, weights=weights).fit(X_fit, (y_fit > 0).astype(int)),
    ]:
        methods = ["predict"]
        if isinstance(model, KNeighborsClassifier):
            methods.append("predict_proba")
        base = {name: getattr(model, name)(X) for name in methods}
        path = knn_path(model, X, base)
        assert path is not None and path.integral
        rng = np.random.default_rng(0)
        orders = np.stack([rng.permutation(len(X)) for _ in range(3)])
        groups = [np.array([j]) for j in range(X.shape[1])] + [np.array([0, 5, 7])]
        together = path.outputs_many(groups, orders)
        assert path.rows_by_model > 0
        for cols, (outs, exact) in zip(groups, together, strict=True):
            alone, exact_alone = path.outputs(cols, orders)
            assert np.array_equal(exact, exact_alone)
            for name in methods:
                assert_allclose(outs[name], alone[name], rtol=0, atol=1e-12)
                if name == "predict" and len(methods) == 2:
                    assert np.array_equal(outs[name], alone[name])


def test_distance_weighted_band_of_one_target_on_integer_data():
    """Exactly tied neighbours at the k-th distance that share one target give the same
    distance-weighted value whichever the model picks: served, equal to the model's."""
    X_fit, X = split(make_X("discrete", 24, n=240, p=12))
    y_fit = np.round(make_y(X_fit, 24, "reg"))  # a few integer targets
    model = KNeighborsRegressor(4, weights="distance").fit(X_fit, y_fit)
    path, answered = assert_copies_match(model, X, n_repeats=3)
    assert path is not None and answered == 3 * 6


@pytest.mark.parametrize("kind", ["bounded", "t2", "discrete", "duplicates"])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_one_byte_lower_bounds_are_lower_bounds(kind, p, monkeypatch):
    """Every decoded bound is at most the exact reduced distance (long double), and within
    a step of 2^(1/16) of it above the row's farthest kept candidate."""
    from leap.builtins.methods.permutation.neighbors import _KEPT, _SCALE

    monkeypatch.setattr(NeighborsPath, "LOW_BOUND_SHARE", 10.0)

    X_fit, X = split(make_X(kind, 25, n=300, p=15))
    model = KNeighborsRegressor(3, p=p).fit(X_fit, make_y(X_fit, 25, "reg"))
    path = knn_path(model, X, {"predict": model.predict(X)})
    assert path is not None and path.low is not None
    diff = np.abs(X.astype(np.longdouble)[:, None, :] - X_fit.astype(np.longdouble)[None])
    exact = (diff**p).sum(axis=2)
    bound = path.low_off[:, None] + path.low_ref[:, None] * path.low_scale[path.low]
    other = path.low != _KEPT
    assert np.all(bound[other] <= exact[other])
    if path.exact_codes:  # small integers: the codes are the distances above the nearest
        assert kind == "discrete" and p in (1, 2)
        coded = other & (path.low < 254)
        assert np.all(bound[coded] == exact[coded]) and coded.sum() > other.sum() / 2
        return
    assert path.low_scale is _SCALE
    far = other & (exact > 1.2 * path.low_ref[:, None])
    assert np.all(bound[far] >= exact[far] * 2.0 ** (-1.0 / 16) * (1 - 1e-6))


def tie_heavy(seed: int, n_fit: int, n: int, p: int, levels: int = 3):
    """Small integer features with many exactly tied distances."""
    rng = np.random.default_rng(seed)
    X_fit = rng.integers(0, levels, size=(n_fit, p)).astype(float)
    X = rng.integers(0, levels, size=(n, p)).astype(float)
    y = X_fit[:, :4].sum(axis=1) + rng.normal(0.0, 0.5, n_fit)
    return X_fit, X, y


@pytest.mark.skipif(not numba_enabled(), reason="the replay runs compiled only")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("metric_p", [1, 2])
@pytest.mark.parametrize("k", [1, 4, 5, 15])
def test_replay_finds_scikit_learns_neighbours_in_its_order(threads, metric_p, k, monkeypatch):
    """On exactly tied distances the replay of scikit-learn's heap search picks the same
    neighbours, in the same order, as ``kneighbors`` itself, with its training points in
    one range (one thread, or one pass per row) or split between threads (600 points: three
    chunks of 256 shared unevenly by two threads)."""
    from threadpoolctl import threadpool_limits

    monkeypatch.setattr(NeighborsPath, "LOW_BOUND_SHARE", 10.0)

    X_fit, X, y = tie_heavy(31 + k, 600, 40, 24)
    model = KNeighborsRegressor(k, p=metric_p).fit(X_fit, y)
    with threadpool_limits(threads, user_api="openmp"):
        path = knn_path(model, X, {"predict": model.predict(X)})
        assert path is not None and path.replay_ready and path.exact_codes
        cols = np.array([3, 7])
        rng = np.random.default_rng(k)
        new = np.stack([X[rng.permutation(len(X))][:, cols] for _ in range(3)])
        R, m = new.shape[:2]
        best_d = np.full((R, m, path.kk), np.inf)
        best_i = np.zeros((R, m, path.kk), dtype=np.int32)
        rows_r, rows_i = np.nonzero(np.ones((R, m), dtype=bool))
        path.replayed(cols, new, rows_r, rows_i, best_d, best_i)
        for r in range(R):
            copy = X.copy()
            copy[:, cols] = new[r]
            dist, theirs = model.kneighbors(copy)
            assert np.array_equal(best_i[r, :, :k], theirs)
            mine = np.sqrt(best_d[r, :, :k]) if metric_p == 2 else best_d[r, :, :k]
            assert np.array_equal(mine, dist)


def test_thread_ranges_follow_openmps_static_schedule():
    from leap.builtins.methods.permutation.neighbors import _thread_ranges

    def ranges(*args):
        bounds, merged = _thread_ranges(*args)
        return bounds.tolist(), merged

    assert ranges(600, 40, 1) == ([0, 600], True)  # one thread, heap pushed onto the row's
    assert ranges(600, 40, 2) == ([0, 512, 600], True)  # chunks 2 + 1
    assert ranges(600, 40, 3) == ([0, 256, 512, 600], True)
    assert ranges(600, 40, 8) == ([0, 256, 512, 600], True)  # a team of 3
    assert ranges(200, 40, 2) == ([0, 200], True)  # one chunk
    assert ranges(600, 700, 2) == ([0, 600], False)  # more queries than points: one pass
    assert ranges(3000, 2100, 2) == ([0, 3000], False)  # more than 4 chunks per thread


def built_paths(monkeypatch) -> list:
    """The k-NN paths built from now on, as they are built."""
    paths = []
    build = NeighborsPath.__init__

    def keep(self, *args):
        build(self, *args)
        paths.append(self)

    monkeypatch.setattr(NeighborsPath, "__init__", keep)
    return paths


@pytest.mark.skipif(not numba_enabled(), reason="the replay runs compiled only")
@pytest.mark.parametrize("n_jobs", [1, -1])
@pytest.mark.parametrize(
    "make",
    [
        lambda: KNeighborsRegressor(5),
        lambda: KNeighborsRegressor(4, weights="distance", p=1),
        lambda: KNeighborsClassifier(5),
        lambda: KNeighborsClassifier(6, p=1),
        lambda: KNeighborsClassifier(5, weights="distance"),
    ],
    ids=["reg", "reg-distance-l1", "clf", "clf-l1", "clf-distance"],
)
def test_tied_integer_rows_are_replayed_not_asked(make, n_jobs, monkeypatch):
    """End to end on tie-heavy integer data, with scikit-learn's own thread count (two
    OpenMP threads split the training points for ``n_jobs=1``): importances equal, and the
    rows the certificate cannot settle are replayed, not asked of the model."""
    from threadpoolctl import threadpool_limits

    no_trial(monkeypatch)
    X_fit, X, y = tie_heavy(5, 300, 120, 100)
    model = make()
    target = y if isinstance(model, KNeighborsRegressor) else (y > np.median(y)).astype(int)
    model.fit(X_fit, target)
    y_test = X[:, :4].sum(axis=1) + np.random.default_rng(6).normal(0.0, 0.5, len(X))
    if isinstance(model, KNeighborsClassifier):
        y_test = (y_test > np.median(y)).astype(int)
    paths = built_paths(monkeypatch)
    with threadpool_limits(2, user_api="openmp"):
        theirs = permutation_importance(
            model, X, y_test, n_repeats=4, random_state=3, n_jobs=n_jobs
        )
        (ours,) = (
            PermutationMethod()
            .compute(model, X, y_test, n_repeats=4, random_state=3, n_jobs=n_jobs)
            .values()
        )
    assert_allclose(ours.importances, theirs.importances, rtol=0, atol=1e-12)
    assert len(paths) == 1 and paths[0].rows_replayed > 0
    assert paths[0].rows_by_model <= paths[0].rows_replayed // 10


def assert_same_importances(model, X, y, random_state, n_repeats=3):
    """LEAP's importances (one job) are bitwise scikit-learn's."""
    kwargs = dict(n_repeats=n_repeats, random_state=random_state, n_jobs=1)
    theirs = permutation_importance(model, X, y, **kwargs)
    (ours,) = PermutationMethod().compute(model, X, y, **kwargs).values()
    assert_array_equal(ours.importances, theirs.importances)


@pytest.mark.skipif(not numba_enabled(), reason="the replay runs compiled only")
@pytest.mark.parametrize("k, metric_p", [(2, 2), (4, 1), (7, 2), (8, 2)])
def test_replayed_distance_votes_are_the_models_with_exact_ties(k, metric_p, monkeypatch):
    """Three classes on integer data where every training point comes twice, with two
    classes: vote totals tie exactly. A replayed row's label is computed as scikit-learn's
    weighted vote, bitwise, so no margin is needed and no row is asked of the model for
    k < 8; with k = 8 NumPy sums a row of weights pairwise, so those labels still get a
    margin (and the model where it fails)."""
    no_trial(monkeypatch)
    A, X, y = tie_heavy(11, 120, 80, 60)
    c = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    X_fit, target = np.vstack([A, A]), np.concatenate([c, (c + 1) % 3])
    model = KNeighborsClassifier(k, weights="distance", p=metric_p).fit(X_fit, target)
    y_test = model.predict(X)
    y_test[::7] = (y_test[::7] + 1) % 3  # some wrong labels: accuracy below 1
    paths = built_paths(monkeypatch)
    assert_same_importances(model, X, y_test, random_state=2)
    (path,) = paths
    assert path.rows_replayed > 0
    if k < 8:
        assert path.rows_by_model == 0
    if k % 2 == 0:  # the totals do tie exactly: labels decided by the first largest
        dist, idx = model.kneighbors(X)
        totals = np.zeros((len(X), 3))
        for q in range(k):
            totals[np.arange(len(X)), target[idx[:, q]]] += 1.0 / dist[:, q]
        top = np.sort(totals, axis=1)
        assert (top[:, -1] == top[:, -2]).mean() > 0.05


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_stacked_copies_keep_the_copies_search_strategy(weights):
    """Two OpenMP threads split 300 training points between them for a copy of 150 rows,
    but search stacked copies (more rows than points) in one pass per row, which breaks
    exact ties otherwise: calls are kept to a size searched like one copy."""
    from threadpoolctl import threadpool_limits

    from leap.builtins.methods.permutation.neighbors import call_rows

    X_fit, X, y = tie_heavy(0, 300, 150, 120, levels=5)
    model = KNeighborsRegressor(5, weights=weights).fit(X_fit, y)
    assert call_rows(model, 150, 2) == 300 and call_rows(model, 400, 1) is None
    assert call_rows(KNeighborsClassifier(5, p=1).fit(X_fit, y > 6), 150, 2) is None
    y_test = X[:, :4].sum(axis=1)
    method = PermutationMethod(fast_paths=())
    with threadpool_limits(2, user_api="openmp"):
        theirs = permutation_importance(model, X, y_test, n_repeats=5, random_state=0, n_jobs=1)
        (ours,) = method.compute(model, X, y_test, n_repeats=5, random_state=0, n_jobs=1).values()
    assert_allclose(ours.importances, theirs.importances, rtol=0, atol=1e-12)


def test_band_weights_hold_for_every_choice_from_the_band():
    """Brute force over random bands, exactly tied (integer distances) or within ``e4``: a
    label certified by :func:`_band_weights` is the weighted vote's first largest total for
    every choice of the band's points the model could make."""
    from itertools import combinations

    from leap.builtins.methods.permutation.neighbors import _band_weights

    rng = np.random.default_rng(0)
    certified = 0
    for case in range(1500):
        k, C, p = int(rng.integers(2, 8)), int(rng.integers(2, 4)), [1.0, 2.0][case % 2]
        n_a = int(rng.integers(0, k))
        n_b = int(rng.integers(k - n_a + 1, k - n_a + 5))
        v = float(rng.integers(5, 40))
        e4 = 0.0 if case % 3 else 1e-9 * v
        sure_d = np.sort(rng.integers(1, int(v) - 1, size=n_a).astype(float))
        band_d = v + rng.uniform(-e4, e4, size=n_b)
        bd = np.concatenate([sure_d, np.sort(band_d), [v + 5.0]])
        lab = rng.integers(0, C, size=bd.size)
        ranged, winner = _band_weights(
            bd[None], lab[None], np.array([v]), np.array([e4]), np.array([8 * 2.0**-53]),
            k, C, p,
        )  # fmt: skip
        if not ranged[0]:
            continue
        certified += 1
        w = 1.0 / (bd if p == 1.0 else np.sqrt(bd))
        for chosen in combinations(range(n_a, n_a + n_b), k - n_a):
            totals = np.zeros(C)
            for q in [*range(n_a), *chosen]:
                totals[lab[q]] += w[q]
            assert np.argmax(totals) == winner[0]
    assert certified > 300  # the certificate is used, not vacuous


@pytest.mark.parametrize("k, metric_p", [(3, 2), (5, 2), (5, 1), (8, 1)])
def test_distance_weighted_labels_certified_across_a_tied_band(k, metric_p, monkeypatch, kernels):
    """On tie-heavy integer data with the replay off, rows whose k-th distance is exactly
    tied are served by the band's range of totals where it settles the label: those labels
    equal the model's, copy by copy, and end to end the importances equal scikit-learn's."""
    from leap.builtins.methods.permutation import neighbors

    monkeypatch.setattr(NeighborsPath, "_replays", lambda self: False)
    calls = []
    band = neighbors._band_weights

    def spy(*args):
        ranged, winner = band(*args)
        calls.append(int(ranged.sum()))
        return ranged, winner

    monkeypatch.setattr(neighbors, "_band_weights", spy)
    X_fit, X, y = tie_heavy(40 + k, 300, 90, 40)
    target = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    model = KNeighborsClassifier(k, weights="distance", p=metric_p).fit(X_fit, target)
    _, answered = assert_copies_match(model, X, methods=["predict"], n_repeats=3)
    assert answered > 0 and sum(calls) > 0
    no_trial(monkeypatch)
    y_test = model.predict(X)
    y_test[::5] = (y_test[::5] + 1) % 3
    assert_same_importances(model, X, y_test, random_state=4)
