"""LEAP plugin: the importance method ``shap``, mean absolute SHAP value per feature or group.

The explainer is chosen for the model: ``TreeExplainer`` for tree ensembles, ``LinearExplainer``
for linear models, and the model-agnostic ``PermutationExplainer`` (on a small background
sample) for everything else. The model-agnostic explainer can be slow: it warns first, with an
estimate of the time (:class:`SlowExplanationWarning`). Progress shows as a bar when asked
for (``progress=True``), and otherwise as an INFO line of the ``leap.plugins.shap`` logger
every :data:`LOG_PERIOD` seconds.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils import check_random_state

from leap import MethodScores, hookimpl
from leap.errors import LeapError

__all__ = [
    "LOG_PERIOD",
    "METRIC",
    "QUANTITY",
    "SLOW_SECONDS",
    "ShapMethod",
    "SlowExplanationWarning",
    "choose_explainer",
    "estimate_seconds",
]

#: The metric name of the method's (single) result.
METRIC = "mean_abs_shap"
#: What one value of the result is, in words: the labels of figures and tables say this.
QUANTITY = "mean |SHAP|"
#: Seconds between two progress lines when no progress bar is shown.
LOG_PERIOD = 10.0
#: A model-agnostic explanation estimated to take longer than this many seconds warns first.
SLOW_SECONDS = 30.0
#: Rows of the timed model call behind the estimate (at most).
PROBE_ROWS = 2_000
#: Plugins log under the ``leap`` logger hierarchy, which the command line shows.
logger = logging.getLogger("leap.plugins.shap")


class SlowExplanationWarning(UserWarning):
    """The model-agnostic explainer is estimated to take long; the message says how long."""


class ShapMethod:
    """Importance as the mean absolute SHAP value of each feature (or group of features).

    For a group, the absolute SHAP values of its columns are summed per sample before
    averaging, so a group's importance equals the sum of its members' importances. For
    models with several outputs (class probabilities, log-odds per class) the absolute
    values are averaged over the outputs. ``importances`` has one column; ``baseline`` is
    ``None``; ``scoring`` and ``n_jobs`` do not apply and are ignored. ``max_samples``
    limits how many rows are explained (drawn with ``random_state``); ``n_repeats`` is the
    number of feature orderings the model-agnostic explainer tries per row (more: slower,
    less noisy; one is exact for additive models). ``progress=True`` shows a bar over the
    explained rows; without it, progress goes to the ``leap.plugins.shap`` logger (INFO,
    every :data:`LOG_PERIOD` seconds). The model-agnostic explainer first warns
    (:class:`SlowExplanationWarning`) when it is estimated to take over
    :data:`SLOW_SECONDS` seconds.

    Parameters
    ----------
    background_size : int
        Rows of ``X`` sampled as the background (reference) data of the linear and the
        model-agnostic explainers.
    """

    name = "shap"
    #: What one importance value is, for labels (``ImportanceResult.quantity``).
    quantity = QUANTITY

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
            kind, explain = choose_explainer(estimator, background, permutations=n_repeats)
            logger.debug("leap-shap: %s explainer for %s", kind, type(estimator).__name__)
            if kind == "permutation":
                _warn_if_slow(estimator, background, explained.shape[0], n_repeats)
            np.random.seed(rng.randint(np.iinfo(np.int32).max))  # noqa: NPY002
            magnitude = _explain_in_chunks(
                explain, explained, n_features, kind=kind, progress=progress
            )
        finally:
            np.random.set_state(state)  # noqa: NPY002
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
        max_evals = _max_evals(permutations, X.shape[1])
        explanation = explainer(X, max_evals=max_evals, silent=not progress)
        return explanation.values

    return "permutation", explain


def estimate_seconds(
    predict: Callable[[np.ndarray], Any], background: Any, n_rows: int, max_evals: int
) -> float:
    """Seconds the model-agnostic explainer will spend in ``predict`` for ``n_rows`` rows.

    ``shap.PermutationExplainer`` evaluates the model on about ``max_evals`` masked copies
    of each explained row, each against every background row; one timed ``predict`` call
    on up to :data:`PROBE_ROWS` background rows gives the cost per row. The explainer's own
    work (and, the first time in a process, the compilation of shap's numba kernels) comes
    on top.
    """
    data = np.asarray(background)
    per_row = max_evals * data.shape[0]
    probe = data[np.resize(np.arange(data.shape[0]), min(per_row, PROBE_ROWS))]
    start = time.perf_counter()
    predict(probe)
    elapsed = time.perf_counter() - start
    return elapsed / probe.shape[0] * per_row * n_rows


def _max_evals(permutations: int, n_features: int) -> int:
    return max(1, permutations) * (2 * n_features + 1)


def _warn_if_slow(estimator: Any, background: Any, n_rows: int, permutations: int) -> None:
    n_features = background.shape[1]
    max_evals = _max_evals(permutations, n_features)
    seconds = estimate_seconds(
        _model_function(estimator, background), background, n_rows, max_evals
    )
    logger.info("leap-shap: model-agnostic explanation estimated at %s", _duration(seconds))
    if seconds > SLOW_SECONDS:
        n_evaluated = n_rows * max_evals * background.shape[0]
        warnings.warn(
            f"leap-shap: the model-agnostic (permutation) explainer will evaluate "
            f"{type(estimator).__name__} on about {n_evaluated:,} rows ({n_rows} explained x "
            f"{max_evals} masked copies x {background.shape[0]} background rows): about "
            f"{_duration(seconds)} on this machine, estimated from one timed call; explain "
            f"fewer rows (max_samples), use a smaller background "
            f"(ShapMethod(background_size=...)) or fewer orderings (n_repeats) to go faster",
            SlowExplanationWarning,
            stacklevel=3,
        )


def _explain_in_chunks(
    explain: Callable[[Any], Any], X: Any, n_features: int, *, kind: str, progress: bool
) -> np.ndarray:
    """|SHAP| per row and feature, explained a chunk of rows at a time, reporting progress."""
    n_rows = X.shape[0]
    size = 512 if kind != "permutation" else max(1, min(16, n_rows // 50))
    report = _Progress(n_rows, bar=progress)
    parts = []
    try:
        for start in range(0, n_rows, size):
            rows = np.arange(start, min(start + size, n_rows))
            parts.append(_per_sample_magnitude(explain(_take(X, rows)), n_features))
            report.update(len(rows))
    finally:
        report.close()
    return np.vstack(parts) if parts else np.empty((0, n_features))


class _Progress:
    """A progress bar when asked for; otherwise a log line every :data:`LOG_PERIOD` seconds."""

    def __init__(self, total: int, *, bar: bool) -> None:
        self.total, self.done = total, 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="explaining rows", unit="row")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= LOG_PERIOD and self.done < self.total:
            self.last = now
            elapsed = now - self.start
            left = elapsed / self.done * (self.total - self.done)
            logger.info(
                "leap-shap: explained %d of %d rows (%d%%) in %s; about %s left",
                self.done,
                self.total,
                100 * self.done // self.total,
                _duration(elapsed),
                _duration(left),
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            return
        elapsed = time.monotonic() - self.start
        if elapsed >= LOG_PERIOD:
            logger.info("leap-shap: explained %d rows in %s", self.done, _duration(elapsed))


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "an unknown time"
    if seconds < 60:
        return f"{max(seconds, 0.0):.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


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
