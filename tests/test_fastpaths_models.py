"""Fast paths for kernel SVMs, MLPs and projections: equal to scikit-learn, certified.

Every case compares :class:`PermutationMethod` with
:func:`sklearn.inspection.permutation_importance` at ``rtol=0, atol=1e-12`` over seeds,
data distributions (bounded, Gaussian, heavy-tailed, discrete with ties, duplicated rows,
constant columns), scorers, binary and multiclass targets; and checks that the fast path
was built, so that the comparison exercises it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.decomposition import PCA
from sklearn.inspection import permutation_importance
from sklearn.metrics import make_scorer, roc_auc_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, NuSVC, NuSVR

from leap.builtins.methods.permutation.fastpaths import order_certified
from leap.builtins.methods.permutation.method import PermutationMethod
from leap.builtins.methods.permutation.mlp import MLPPath, mlp_path
from leap.builtins.methods.permutation.svm import KernelPath, kernel_path

DISTRIBUTIONS = ("bounded", "gauss", "student_t", "discrete", "duplicates", "constant")


def make_data(kind: str, seed: int, n: int = 150, p: int = 8, classes: int = 2):
    """Features of one distribution and a target (``classes=0``: regression)."""
    rng = np.random.default_rng(seed)
    if kind == "bounded":
        X = np.tanh(rng.normal(size=(n, p)))
    elif kind == "student_t":
        X = rng.standard_t(2, size=(n, p))
    elif kind in ("discrete", "duplicates"):
        X = rng.integers(0, 3, size=(n, p)).astype(float)
    else:
        X = rng.normal(size=(n, p))
    if kind == "duplicates":
        X[n // 2 :] = X[: n - n // 2]
    if kind == "constant":
        X[:, 2] = 1.5
    signal = X[:, 0] - X[:, 1] + 0.5 * X[:, 3] + rng.normal(0, 0.5, n)
    if classes == 0:
        return X, signal
    cuts = np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])
    return X, np.digitize(signal, cuts)


def assert_parity(model, X, y, scoring, seed=0, n_repeats=3, **kwargs):
    expected = permutation_importance(
        model, X, y, scoring=scoring, n_repeats=n_repeats, random_state=seed, **kwargs
    )
    got = PermutationMethod().compute(
        model, X, y, scoring=scoring, n_repeats=n_repeats, random_state=seed, **kwargs
    )
    (scores,) = got.values()
    assert_allclose(scores.importances, expected.importances, rtol=0, atol=1e-12)


def _split(X, y, fraction=0.6):
    cut = int(len(X) * fraction)
    return X[:cut], y[:cut], X[cut:], y[cut:]


def rotate(cases: list[tuple]) -> list[tuple]:
    """Each case on two distributions, so that every distribution meets several cases."""
    return [
        (*case, DISTRIBUTIONS[(i + shift) % len(DISTRIBUTIONS)])
        for i, case in enumerate(cases)
        for shift in (0, 3)
    ]


SVM_CASES = rotate(
    [
        (SVC(), 2, None),
        (SVC(), 3, "balanced_accuracy"),
        (SVC(kernel="poly", degree=3), 3, "accuracy"),
        (SVC(kernel="sigmoid", gamma=0.05), 2, "roc_auc"),
        (SVC(kernel="linear"), 2, "average_precision"),
        (NuSVC(nu=0.3), 3, "f1_macro"),
        (make_pipeline(StandardScaler(), SVC()), 2, "roc_auc"),
        (SVR(), 0, "r2"),
        (NuSVR(kernel="poly", degree=2), 0, "neg_mean_absolute_error"),
    ]
)


def _case_id(v):
    return str(v).replace("\n", "").replace(" ", "") if not isinstance(v, int) else str(v)


@pytest.mark.parametrize(("model", "classes", "scoring", "kind"), SVM_CASES, ids=_case_id)
def test_kernel_svms_equal_sklearn(model, classes, scoring, kind, chosen_path):
    X, y = make_data(kind, seed=3, classes=classes)
    X_train, y_train, X_test, y_test = _split(X, y)
    model.fit(X_train, y_train)
    for seed in (0, 7):
        assert_parity(model, X_test, y_test, scoring, seed=seed)
    assert set(chosen_path) == {KernelPath}


def test_svc_ovr_and_ovo_decision_functions(chosen_path):
    X, y = make_data("gauss", seed=5, classes=4)
    X_train, y_train, X_test, y_test = _split(X, y)

    def ovr_auc(y_true, decision):  # a rank metric on every column of the decision function
        return roc_auc_score(np.eye(decision.shape[1])[y_true], decision, average="macro")

    for shape in ("ovr", "ovo"):
        model = SVC(decision_function_shape=shape).fit(X_train, y_train)
        assert_parity(model, X_test, y_test, "accuracy")
        if shape == "ovr":
            auc = make_scorer(ovr_auc, response_method="decision_function")
            assert_parity(model, X_test, y_test, auc)
    assert set(chosen_path) == {KernelPath}


def test_kernel_path_certifies_most_copies_and_hands_off_the_rest():
    X, y = make_data("gauss", seed=2)
    X_train, y_train, X_test, _ = _split(X, y)
    model = SVC().fit(X_train, y_train)
    path = kernel_path(model, X_test, {"predict": model.predict(X_test)})
    orders = np.array([np.random.default_rng(r).permutation(len(X_test)) for r in range(4)])
    certified = [path.outputs(np.array([c]), orders)[1].mean() for c in range(X.shape[1])]
    assert np.mean(certified) > 0.9
    # Decision values are served within their bound, and the bound is small.
    dec, err, changed = path._decisions(np.array([0]), orders)
    assert err.shape == (4, len(X_test), 1) and np.all(err[changed] < 1e-9)
    permuted = X_test.copy()
    permuted[:, 0] = X_test[orders[1], 0]
    assert np.all(np.abs(dec[1, :, 0] - model.decision_function(permuted)) <= err[1, :, 0])


def test_kernel_path_declines_what_it_cannot_serve():
    X, y = make_data("gauss", seed=4)
    model = SVC(probability=True) if hasattr(SVC(), "probability") else SVC()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(X, y)
    assert kernel_path(model, X, {"predict_proba": model.predict_proba(X)}) is None
    tie_breaking = SVC(break_ties=True).fit(X, np.arange(len(X)) % 3)
    assert kernel_path(tie_breaking, X, {"predict": tie_breaking.predict(X)}) is None
    precomputed = SVC(kernel="precomputed").fit(X @ X.T, y)
    assert kernel_path(precomputed, X @ X.T, {"predict": precomputed.predict(X @ X.T)}) is None


MLP_CASES = rotate(
    [
        (MLPClassifier((16,), max_iter=400, random_state=0), 2, None),
        (MLPClassifier((12, 6), activation="tanh", max_iter=400, random_state=0), 3, "f1_macro"),
        (MLPClassifier((10,), activation="logistic", max_iter=400, random_state=0), 2, "roc_auc"),
        (MLPClassifier((16,), max_iter=400, random_state=1), 3, "neg_log_loss"),
        (MLPClassifier((16,), max_iter=400, random_state=2), 2, "neg_brier_score"),
        (MLPRegressor(hidden_layer_sizes=(16,), max_iter=600, random_state=0), 0, "r2"),
        (
            MLPRegressor(
                hidden_layer_sizes=(8,), activation="identity", max_iter=600, random_state=0
            ),
            0,
            None,
        ),
    ]
)


@pytest.mark.parametrize(("model", "classes", "scoring", "kind"), MLP_CASES, ids=_case_id)
def test_mlps_equal_sklearn(model, classes, scoring, kind, chosen_path):
    X, y = make_data(kind, seed=11, classes=classes)
    X_train, y_train, X_test, y_test = _split(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the small fits
        model.fit(X_train, y_train)
    for seed in (0, 5):
        assert_parity(model, X_test, y_test, scoring, seed=seed)
    assert set(chosen_path) == {MLPPath}


def test_mlp_path_certifies_labels_and_rejects_other_outputs():
    X, y = make_data("gauss", seed=9, classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPClassifier((16,), max_iter=300, random_state=0).fit(X, y)
    path = mlp_path(model, X, {"predict": model.predict(X)})
    orders = np.array([np.random.default_rng(r).permutation(len(X)) for r in range(3)])
    outs, exact = path.outputs(np.array([0, 1]), orders)
    assert exact.mean() > 0.5
    for r in np.flatnonzero(exact):
        permuted = X.copy()
        permuted[:, [0, 1]] = X[orders[r]][:, [0, 1]]
        assert np.array_equal(outs["predict"][r], model.predict(permuted))
    assert mlp_path(model, X, {"predict_log_proba": model.predict_log_proba(X)}) is None


def test_mlp_groups_answered_together_equal_each_alone(monkeypatch, kernels):
    """Many groups through the network in shared blocks (blocks smaller than a group, so
    groups share and span blocks): the same outputs and certificates as one at a time, and
    certified labels and probabilities are the model's."""
    from leap.builtins.methods.permutation import mlp

    X, y = make_data("student_t", seed=3, classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPClassifier((16, 8), max_iter=300, random_state=0).fit(X, y)
    base = {"predict": model.predict(X), "predict_proba": model.predict_proba(X)}
    path = mlp_path(model, X, base)
    orders = np.array([np.random.default_rng(r).permutation(len(X)) for r in range(3)])
    groups = [np.array([0]), np.array([1, 4]), np.array([2]), np.array([3, 5, 6])]
    alone = [path.outputs(cols, orders) for cols in groups]
    monkeypatch.setattr(mlp, "_BLOCK_ELEMENTS", 16 * 37)  # 37 rows per block
    together = path.outputs_many(groups, orders)
    certified = 0
    for cols, (outs, exact), (outs_1, exact_1) in zip(groups, together, alone, strict=True):
        assert np.array_equal(exact, exact_1)
        for name in outs:
            assert np.array_equal(outs[name], outs_1[name])
        for r in np.flatnonzero(exact):
            certified += 1
            permuted = X.copy()
            permuted[:, cols] = X[orders[r]][:, cols]
            assert np.array_equal(outs["predict"][r], model.predict(permuted))
            assert np.max(np.abs(outs["predict_proba"][r] - model.predict_proba(permuted))) < 1e-12
    assert certified > 0


def test_order_certified_ties_and_points():
    values = np.array([[[0.0], [1.0], [1.0], [2.0]]])
    exact_points = np.zeros_like(values)
    assert order_certified(values, exact_points).tolist() == [True]  # exact ties are kept
    fuzzy = exact_points.copy()
    fuzzy[0, 1] = 1e-15  # one of the tied values may differ: the order is not certain
    assert order_certified(values, fuzzy).tolist() == [False]
    apart = np.array([[[0.0], [1.0], [1.0 + 1e-9], [2.0]]])
    assert order_certified(apart, np.full_like(apart, 1e-12)).tolist() == [True]


@pytest.mark.parametrize(
    ("steps", "classes", "scoring", "kind"),
    [
        ([PCA(4)], 3, None, "gauss"),
        ([StandardScaler(), PCA(5, whiten=True)], 2, "neg_log_loss", "student_t"),
        ([PCA(3)], 2, "roc_auc", "discrete"),
        ([StandardScaler(), PCA(4)], 0, "r2", "constant"),
    ],
    ids=str,
)
def test_pca_then_mlp_equal_sklearn(steps, classes, scoring, kind, chosen_path):
    X, y = make_data(kind, seed=21, classes=classes)
    X_train, y_train, X_test, y_test = _split(X, y)
    final = (
        MLPRegressor(hidden_layer_sizes=(12,), max_iter=600, random_state=0)
        if classes == 0
        else MLPClassifier((12,), max_iter=400, random_state=0)
    )
    model = make_pipeline(*steps, final)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train, y_train)
    for seed in (0, 4):
        assert_parity(model, X_test, y_test, scoring, seed=seed)
    assert set(chosen_path) == {MLPPath}


def test_pca_in_front_of_other_models_uses_the_general_path(chosen_path):
    X, y = make_data("gauss", seed=22)
    model = make_pipeline(PCA(3), SVC()).fit(X, y)
    assert_parity(model, X, y, None)
    assert chosen_path == [None]


@pytest.mark.parametrize(
    "model",
    [SVR(C=10.0), MLPRegressor(hidden_layer_sizes=(20,), max_iter=300, random_state=0)],
    ids=lambda m: type(m).__name__,
)
def test_rounding_guard_hands_large_targets_to_the_model(model, chosen_path):
    """Served values within ~1e-15 relative still move a squared error of targets in the
    thousands past 1e-12: such runs go to the model, bitwise; R² keeps the fast path."""
    X, y = make_data("gauss", seed=8, classes=0)
    X_train, y_train, X_test, y_test = _split(X, 3000.0 * y)
    model.set_params(**({"epsilon": 300.0, "C": 3e4} if isinstance(model, SVR) else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train, y_train)
    kwargs = dict(scoring="neg_mean_squared_error", n_repeats=3, random_state=0)
    expected = permutation_importance(model, X_test, y_test, **kwargs).importances
    (got,) = PermutationMethod().compute(model, X_test, y_test, **kwargs).values()
    assert np.array_equal(got.importances, expected)
    assert chosen_path == [None]
    assert_parity(model, X_test, y_test, "r2")
    assert chosen_path[1] in (KernelPath, MLPPath)


def test_kernel_jitter_leaves_the_path_intact():
    """The guard's replay must not disturb what the path serves afterwards."""
    X, y = make_data("t2", seed=9, classes=0)
    model = SVR().fit(X, y)
    path = kernel_path(model, X, {"predict": model.predict(X)})
    before = path.Q.copy()
    path.jitter(np.ones(len(X)))
    assert np.array_equal(path.Q, before)
