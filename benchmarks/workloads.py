"""The benchmark matrix: model families × data distributions × scorers.

Every workload is one :class:`Workload` entry in :data:`WORKLOADS`. To add a model family,
append entries (``across(...)`` makes one per distribution); to add a distribution, add a
generator to :data:`DISTRIBUTIONS`. Names are ``family/distribution`` and must be unique;
``bench_permutation.py --select 'knn-*'`` picks workloads by shell-style pattern.

Every data set has 435 columns (LEAP's channel pairs of 5 IMUs × 6 channels); 30 % of the
rows are held out (stratified for classification) and the importances are computed on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier

N_FEATURES = 435
TEST_SIZE = 0.3
N_REPEATS = 5
#: Columns the label depends on (the same indices for every distribution).
INFORMATIVE = np.arange(0, N_FEATURES, 29)[:12]


# --- data distributions -----------------------------------------------------------------


def demo_features(n: int, rng: np.random.Generator) -> np.ndarray:
    """The demo's features: bounded tanh values, participant offsets, 75 constant columns."""
    from leap.workflows.demo import make_leap_dataset

    seed = int(rng.integers(2**31))
    return make_leap_dataset(
        n_participants=max(2, n // 30), windows_per_participant=30, random_state=seed
    ).X[:n]


def gaussian(n: int, rng: np.random.Generator) -> np.ndarray:
    """Z-scored Gaussian features (no constant columns)."""
    X = rng.normal(size=(n, N_FEATURES))
    return (X - X.mean(axis=0)) / X.std(axis=0)


def student_t2(n: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed features: Student t with 2 degrees of freedom (infinite variance)."""
    return rng.standard_t(2, size=(n, N_FEATURES))


def discrete(n: int, rng: np.random.Generator) -> np.ndarray:
    """Many ties: integer values 0..4 (e.g. Likert-like or binned features)."""
    return rng.integers(0, 5, size=(n, N_FEATURES)).astype(np.float64)


#: ``name -> generator(n_rows, rng)`` returning an ``(n_rows, 435)`` float64 matrix.
DISTRIBUTIONS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "demo": demo_features,
    "gauss": gaussian,
    "t2": student_t2,
    "discrete": discrete,
}


def make_target(X: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
    """A label that depends on :data:`INFORMATIVE` columns, through a bounded transform.

    ``task``: ``"binary"``, ``"multiclass"`` (3 balanced classes) or ``"regression"``.
    """
    Z = X[:, INFORMATIVE]
    Z = (Z - np.nanmedian(Z, axis=0)) / (np.nanstd(Z, axis=0) + 1e-12)
    Z = np.nan_to_num(Z, nan=0.0)  # a missing value carries no signal
    signal = np.tanh(Z) @ np.linspace(2.0, 0.5, len(INFORMATIVE))
    signal = signal + rng.normal(0.0, 0.5, size=len(signal))
    if task == "regression":
        return signal
    if task == "binary":
        return (signal > np.median(signal)).astype(np.int64)
    if task == "multiclass":
        return np.searchsorted(np.quantile(signal, [1 / 3, 2 / 3]), signal).astype(np.int64)
    raise ValueError(f"unknown task {task!r}")


def held_out(distribution: str, task: str, rows: int, seed: int = 0):
    """``X_train, X_test, y_train, y_test`` for one distribution and task."""
    rng = np.random.default_rng(seed)
    X = DISTRIBUTIONS[distribution](rows, rng)
    y = make_target(X, task, rng)
    expected = {"binary": 2, "multiclass": 3}.get(task)
    if expected is not None and len(np.unique(y)) != expected:
        raise ValueError(f"{distribution}/{task}: the target has {len(np.unique(y))} classes")
    stratify = None if task == "regression" else y
    return train_test_split(X, y, test_size=TEST_SIZE, random_state=seed, stratify=stratify)


# --- models -----------------------------------------------------------------------------


class Wrapped(ClassifierMixin, BaseEstimator):
    """A model LEAP knows nothing about: delegates to an inner estimator (no fast path)."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner

    def fit(self, X, y):
        self.model_ = clone(self.inner).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


@dataclass(frozen=True)
class Workload:
    """One row of the matrix.

    Attributes
    ----------
    name : str
        Unique, ``family/distribution``.
    make_model : callable
        Returns a fresh unfitted estimator.
    distribution : str
        Key of :data:`DISTRIBUTIONS`.
    task : str
        ``binary``, ``multiclass`` or ``regression`` (see :func:`make_target`).
    scoring : str or None
        Passed to both implementations (``None``: the estimator's ``score``).
    rows : int
        Rows before the 30 % hold-out (``--quick`` divides them by 5).
    target : float
        The ratio the project aims for (issue 15); 0.95 means "never slower".
    """

    name: str
    make_model: Callable[[], Any]
    distribution: str
    task: str
    scoring: str | None = None
    rows: int = 1500
    target: float = 0.95


ALL = tuple(DISTRIBUTIONS)


def gaussian_nan(n: int, rng: np.random.Generator) -> np.ndarray:
    """Z-scored Gaussian features with 10 % missing values (for models that take NaN)."""
    X = gaussian(n, rng)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


# Not in ALL: only models that accept missing values use it.
DISTRIBUTIONS["gauss-nan"] = gaussian_nan


def across(
    distributions: Iterable[str],
    family: str,
    make_model: Callable[[], Any],
    task: str,
    scoring: str | None = None,
    rows: int = 1500,
    target: float = 0.95,
) -> list[Workload]:
    """One workload per distribution, named ``family/distribution``."""
    return [
        Workload(f"{family}/{d}", make_model, d, task, scoring, rows, target) for d in distributions
    ]


def _lr() -> LogisticRegression:
    return LogisticRegression(max_iter=2000)


def _xgb(kind: str) -> Any:
    import xgboost

    cls = xgboost.XGBClassifier if kind == "clf" else xgboost.XGBRegressor
    return cls(n_estimators=100, max_depth=6, random_state=0)


def _lgbm(kind: str) -> Any:
    import lightgbm

    cls = lightgbm.LGBMClassifier if kind == "clf" else lightgbm.LGBMRegressor
    return cls(n_estimators=100, random_state=0, verbose=-1)


#: Every other column of the discrete data is categorical for the categorical HGB.
_CATEGORICAL = np.arange(0, N_FEATURES, 2)


WORKLOADS: list[Workload] = [
    # k-nearest neighbours: every distribution, both weights, classifier and regressor
    *across(ALL, "knn-uniform-clf", lambda: KNeighborsClassifier(5), "multiclass", target=10),
    *across(
        ALL,
        "knn-distance-clf",
        lambda: KNeighborsClassifier(5, weights="distance"),
        "multiclass",
        target=10,
    ),
    *across(ALL, "knn-uniform-reg", lambda: KNeighborsRegressor(5), "regression", target=10),
    *across(
        ALL,
        "knn-distance-reg",
        lambda: KNeighborsRegressor(5, weights="distance"),
        "regression",
        target=10,
    ),
    *across(
        ["demo", "t2"],
        "knn-manhattan-clf",
        lambda: KNeighborsClassifier(5, p=1),
        "binary",
        target=10,
    ),
    # linear models
    *across(ALL, "logreg-acc-binary", _lr, "binary", "accuracy", rows=3000, target=20),
    *across(ALL, "logreg-acc-3class", _lr, "multiclass", "accuracy", rows=3000, target=20),
    *across(["demo", "gauss", "t2"], "logreg-logloss", _lr, "binary", "neg_log_loss", 3000, 10),
    *across(["demo", "gauss", "t2"], "logreg-rocauc", _lr, "binary", "roc_auc", 3000, 10),
    *across(["gauss", "t2"], "ridge-r2", lambda: Ridge(1.0), "regression", "r2", 3000, 10),
    *across(
        ["gauss", "discrete"],
        "linearsvc-3class",
        lambda: LinearSVC(dual="auto"),
        "multiclass",
        "accuracy",
        3000,
        10,
    ),
    # kernel SVMs
    *across(["demo", "gauss"], "svc-rbf", lambda: SVC(), "binary", "accuracy", 600, 10),
    *across(
        ["demo", "t2"],
        "svc-rbf-scaled",
        lambda: make_pipeline(StandardScaler(), SVC()),
        "binary",
        "accuracy",
        600,
        10,
    ),
    # neural networks
    *across(
        ["gauss"],
        "mlp100",
        lambda: MLPClassifier((100,), max_iter=300, random_state=0),
        "multiclass",
        "accuracy",
        1500,
        3,
    ),
    *across(
        ["t2"],
        "mlp100-pca",
        lambda: make_pipeline(
            StandardScaler(), PCA(40), MLPClassifier((100,), max_iter=300, random_state=0)
        ),
        "multiclass",
        "accuracy",
        1500,
        3,
    ),
    *across(["gauss"], "svr-rbf", lambda: SVR(), "regression", "r2", 600, 10),
    # forests
    *across(
        ["demo", "gauss"],
        "rf100",
        lambda: RandomForestClassifier(100, random_state=0),
        "binary",
        "accuracy",
    ),
    *across(
        ["t2"],
        "et100",
        lambda: ExtraTreesClassifier(100, random_state=0),
        "multiclass",
        "accuracy",
    ),
    *across(
        ["gauss"],
        "rf100-reg",
        lambda: RandomForestRegressor(100, random_state=0),
        "regression",
        "r2",
    ),
    # boosted trees (issue 16)
    *across(
        ["demo", "gauss", "t2"],
        "gb100",
        lambda: GradientBoostingClassifier(n_estimators=100, random_state=0),
        "binary",
        "accuracy",
        target=10,
    ),
    *across(
        ["gauss"],
        "gb100-3class",
        lambda: GradientBoostingClassifier(n_estimators=100, random_state=0),
        "multiclass",
        "neg_log_loss",
        target=10,
    ),
    *across(
        ["t2"],
        "gb100-reg",
        lambda: GradientBoostingRegressor(n_estimators=100, random_state=0),
        "regression",
        "r2",
        target=10,
    ),
    *across(
        ["demo", "gauss-nan", "t2"],
        "hgb",
        lambda: HistGradientBoostingClassifier(random_state=0),
        "binary",
        "accuracy",
        target=10,
    ),
    *across(
        ["gauss-nan"],
        "hgb-3class",
        lambda: HistGradientBoostingClassifier(random_state=0),
        "multiclass",
        "neg_log_loss",
        target=10,
    ),
    *across(
        ["discrete"],
        "hgb-categorical",
        lambda: HistGradientBoostingClassifier(categorical_features=_CATEGORICAL, random_state=0),
        "binary",
        "roc_auc",
        target=10,
    ),
    *across(
        ["gauss-nan"],
        "hgb-reg",
        lambda: HistGradientBoostingRegressor(random_state=0),
        "regression",
        "r2",
        target=10,
    ),
    *across(
        ["gauss-nan"],
        "tree-nan",
        lambda: DecisionTreeClassifier(random_state=0),
        "multiclass",
        "accuracy",
        target=10,
    ),
    *across(["demo", "gauss-nan"], "xgb100", lambda: _xgb("clf"), "binary", "accuracy", target=5),
    *across(["gauss"], "xgb100-3class", lambda: _xgb("clf"), "multiclass", "neg_log_loss", 1500, 5),
    *across(["t2"], "xgb100-reg", lambda: _xgb("reg"), "regression", "r2", target=5),
    *across(["demo", "gauss-nan"], "lgbm100", lambda: _lgbm("clf"), "binary", "accuracy", target=5),
    *across(["t2"], "lgbm100-reg", lambda: _lgbm("reg"), "regression", "r2", target=5),
    # a model LEAP cannot look inside: the general path
    *across(["gauss"], "wrapped-svc", lambda: Wrapped(SVC()), "binary", "accuracy", 600),
    *across(["gauss"], "wrapped-logreg", lambda: Wrapped(_lr()), "binary", "accuracy", 3000),
]


def check_names(workloads: Iterable[Workload]) -> None:
    """Raise ``ValueError`` on duplicated names or unknown distributions."""
    seen: set[str] = set()
    for w in workloads:
        if w.name in seen:
            raise ValueError(f"duplicated workload name {w.name!r}")
        if w.distribution not in DISTRIBUTIONS:
            raise ValueError(f"{w.name}: unknown distribution {w.distribution!r}")
        seen.add(w.name)
