"""Built-in ``permutation`` method: scikit-learn's permutation importance, exactly.

Every column (or group of columns) gets a fresh ``RandomState(seed)`` with ``seed`` drawn
once from ``random_state``, as in :func:`sklearn.inspection.permutation_importance`, so the
numbers are identical to scikit-learn's.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import check_scoring
from sklearn.utils import check_array, check_random_state
from sklearn.utils.random import sample_without_replacement
from tqdm.auto import tqdm

from leap.components import MethodScores
from leap.hookspecs import hookimpl


class PermutationMethod:
    """Permutation importance (Breiman 2001), numerically equal to scikit-learn's."""

    name = "permutation"

    def compute(
        self,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        groups: Sequence[Sequence[int]] | None = None,
        scoring: Any = None,
        n_repeats: int = 5,
        random_state: Any = None,
        sample_weight: Any = None,
        max_samples: float | int = 1.0,
        n_jobs: int | None = None,
        progress: bool = False,
    ) -> dict[str, MethodScores]:
        if not hasattr(X, "iloc"):
            X = check_array(X, ensure_all_finite="allow-nan", dtype=None)
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max + 1)
        n_samples = X.shape[0]
        if not isinstance(max_samples, numbers.Integral):
            max_samples = int(max_samples * n_samples)
        elif max_samples > n_samples:
            raise ValueError("max_samples must be <= n_samples")
        columns = [[j] for j in range(X.shape[1])] if groups is None else [list(g) for g in groups]
        scorer = check_scoring(estimator, scoring=scoring)
        baseline = _score(scorer, estimator, X, y, sample_weight)
        jobs = (
            delayed(_permuted_scores)(
                estimator, X, y, sample_weight, cols, seed, n_repeats, scorer, max_samples
            )
            for cols in columns
        )
        scores = list(
            tqdm(
                Parallel(n_jobs=n_jobs, return_as="generator")(jobs),
                total=len(columns),
                disable=not progress,
                desc="permuting",
                unit="col",
            )
        )
        if isinstance(baseline, dict):
            return {
                name: MethodScores(
                    baseline[name], baseline[name] - np.array([s[name] for s in scores])
                )
                for name in baseline
            }
        return {metric_name(scoring): MethodScores(baseline, baseline - np.array(scores))}


def _permuted_scores(estimator, X, y, sample_weight, cols, seed, n_repeats, scorer, max_samples):
    rng = check_random_state(seed)
    if max_samples < X.shape[0]:
        rows = sample_without_replacement(X.shape[0], max_samples, random_state=rng)
        X_perm = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
        y = y.iloc[rows] if hasattr(y, "iloc") else np.asarray(y)[rows]
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight)[rows]
    else:
        X_perm = X.copy()
    order = np.arange(X_perm.shape[0])
    scores = []
    for _ in range(n_repeats):
        rng.shuffle(order)
        if hasattr(X_perm, "iloc"):
            for col in cols:
                values = X_perm.iloc[order, col]
                values.index = X_perm.index
                X_perm[X_perm.columns[col]] = values
        else:
            X_perm[:, cols] = X_perm[order][:, cols]
        scores.append(_score(scorer, estimator, X_perm, y, sample_weight))
    if isinstance(scores[0], dict):
        return {name: np.array([s[name] for s in scores]) for name in scores[0]}
    return np.array(scores)


def _score(scorer, estimator, X, y, sample_weight):
    if sample_weight is not None:
        return scorer(estimator, X, y, sample_weight=sample_weight)
    return scorer(estimator, X, y)


def metric_name(scoring: Any) -> str:
    """A name for a single metric: the scoring string, the scorer's function, or ``score``."""
    if isinstance(scoring, str):
        return scoring
    if scoring is None:
        return "score"
    return getattr(getattr(scoring, "_score_func", scoring), "__name__", "score")


@hookimpl(trylast=True)
def register_methods(register):
    register(PermutationMethod())
