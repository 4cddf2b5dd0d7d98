"""LEAP plugin: the importance method ``shap``, mean absolute SHAP value per feature or group.

The explainer is chosen for the model: ``TreeExplainer`` for tree ensembles, ``LinearExplainer``
for linear models, and the model-agnostic ``PermutationExplainer`` (on a small background
sample) for everything else.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils import check_random_state

from leap import MethodScores, hookimpl
from leap.errors import LeapError

__all__ = ["METRIC", "ShapMethod", "choose_explainer"]

#: The metric name of the method's (single) result.
METRIC = "mean_abs_shap"
logger = logging.getLogger(__name__)


class ShapMethod:
    """Importance as the mean absolute SHAP value of each feature (or group of features).

    For a group, the absolute SHAP values of its columns are summed per sample before
    averaging, so a group's importance equals the sum of its members' importances. For
    models with several outputs (class probabilities, log-odds per class) the absolute
    values are averaged over the outputs. ``importances`` has one column; ``baseline`` is
    ``None``; ``scoring`` and ``n_jobs`` do not apply and are ignored. ``max_samples``
    limits how many rows are explained (drawn with ``random_state``); ``n_repeats`` is the
    number of feature orderings the model-agnostic explainer tries per row (more: slower,
    less noisy; one is exact for additive models).

    Parameters
    ----------
    background_size : int
        Rows of ``X`` sampled as the background (reference) data of the linear and the
        model-agnostic explainers.
    """

    name = "shap"

    def __init__(self, background_size: int = 50) -> None:
        self.background_size = background_size

    def compute(
        self,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        groups: Sequence[Sequence[int]] | None = None,
        scoring: Any = None,
        n_repeats: int = 1,
        random_state: Any = None,
        sample_weight: Any = None,
        max_samples: float | int = 1.0,
        n_jobs: int | None = None,
        progress: bool = False,
    ) -> dict[str, MethodScores]:
        X = X if hasattr(X, "iloc") else np.asarray(X)
        rng = check_random_state(random_state)
        n_samples, n_features = X.shape
        rows = _explained_rows(n_samples, max_samples, rng)
        background = _take(X, np.sort(rng.permutation(n_samples)[: self.background_size]))
        explained = _take(X, rows) if rows is not None else X
        # shap's PermutationExplainer seeds and draws from NumPy's legacy global generator:
        # seed it from random_state for reproducibility, and leave it as we found it.
        state = np.random.get_state()  # noqa: NPY002
        try:
            kind, explain = choose_explainer(
                estimator, background, permutations=n_repeats, progress=progress
            )
            logger.debug("leap-shap: %s explainer for %s", kind, type(estimator).__name__)
            np.random.seed(rng.randint(np.iinfo(np.int32).max))  # noqa: NPY002
            values = explain(explained)
        finally:
            np.random.set_state(state)  # noqa: NPY002
        magnitude = _per_sample_magnitude(values, n_features)
        if groups is not None:
            magnitude = np.column_stack([magnitude[:, list(g)].sum(axis=1) for g in groups])
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            weights = weights[rows] if rows is not None else weights
        importance = np.average(magnitude, axis=0, weights=weights)
        return {METRIC: MethodScores(None, importance.reshape(-1, 1).astype(np.float64))}


def choose_explainer(
    estimator: Any, background: Any, *, permutations: int = 10, progress: bool = False
) -> tuple[str, Callable[[Any], np.ndarray]]:
    """Pick the SHAP explainer for ``estimator``; return its kind and a ``X -> values`` function.

    ``"tree"`` (``shap.TreeExplainer``, exact for tree ensembles), ``"linear"``
    (``shap.LinearExplainer`` on ``background``, for models with ``coef_`` and
    ``intercept_``), or ``"permutation"`` (``shap.PermutationExplainer`` on
    ``background``, any model with ``predict``, ``permutations`` forward-and-back
    feature orderings per explained row).
    """
    import shap

    try:
        tree = shap.TreeExplainer(estimator)
    except Exception:  # shap signals "not a tree model" with several exception types
        tree = None
    if tree is not None:
        return "tree", lambda X: tree.shap_values(X)
    if hasattr(estimator, "coef_") and hasattr(estimator, "intercept_"):
        linear = shap.LinearExplainer(estimator, shap.maskers.Independent(background))
        return "linear", lambda X: linear.shap_values(X)
    predict = _model_function(estimator, background)
    explainer = shap.PermutationExplainer(predict, shap.maskers.Independent(background))

    def explain(X: Any) -> np.ndarray:
        n_features = X.shape[1]
        max_evals = max(1, permutations) * (2 * n_features + 1)
        explanation = explainer(X, max_evals=max_evals, silent=not progress)
        return explanation.values

    return "permutation", explain


def _model_function(estimator: Any, background: Any) -> Callable[[np.ndarray], np.ndarray]:
    """What the model-agnostic explainer explains: class probabilities, else predictions."""
    columns = list(background.columns) if hasattr(background, "columns") else None
    if is_classifier(estimator) and hasattr(estimator, "predict_proba"):
        method = estimator.predict_proba
    elif callable(getattr(estimator, "predict", None)):
        method = estimator.predict
    else:
        raise LeapError(f"{type(estimator).__name__} has no predict(); SHAP cannot explain it")
    if columns is None:
        return method

    import pandas as pd

    # The masker hands over arrays; a model fitted on named columns wants them back.
    return lambda data: method(pd.DataFrame(data, columns=columns))


def _explained_rows(
    n_samples: int, max_samples: float | int, rng: np.random.RandomState
) -> np.ndarray | None:
    if isinstance(max_samples, numbers.Integral):
        if not 1 <= max_samples <= n_samples:
            raise LeapError(f"max_samples must be between 1 and {n_samples}, got {max_samples}")
        count = int(max_samples)
    else:
        if not 0.0 < max_samples <= 1.0:
            raise LeapError(f"max_samples as a fraction must be in (0, 1], got {max_samples}")
        count = max(1, int(max_samples * n_samples))
    if count == n_samples:
        return None
    return np.sort(rng.choice(n_samples, size=count, replace=False))


def _take(X: Any, rows: np.ndarray) -> Any:
    return X.iloc[rows] if hasattr(X, "iloc") else np.asarray(X)[rows]


def _per_sample_magnitude(values: Any, n_features: int) -> np.ndarray:
    """|SHAP| per sample and feature, averaged over the model's outputs: (n_samples, n_features)."""
    if isinstance(values, list):  # older shap: one array per output
        values = np.stack([np.asarray(v) for v in values], axis=-1)
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    if magnitude.ndim == 3:
        magnitude = magnitude.mean(axis=2)
    if magnitude.ndim != 2 or magnitude.shape[1] != n_features:
        raise LeapError(
            f"SHAP returned values of shape {np.shape(values)}; expected (n_samples, "
            f"{n_features}) or (n_samples, {n_features}, n_outputs)"
        )
    return magnitude


@hookimpl
def register_methods(register):
    register(ShapMethod())
