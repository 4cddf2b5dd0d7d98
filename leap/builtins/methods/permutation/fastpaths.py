"""Model-aware shortcuts: outputs of permuted copies without calling the model.

A fast path is an object built for one fitted model and one data set by a *factory*. The
factory returns ``None`` unless it can guarantee the exact outputs the model's own methods
would return; at run time the fast path may still decline single copies (``exact`` false),
which are then evaluated by the model. Add your own by passing factories to
:class:`~leap.builtins.methods.permutation.method.PermutationMethod`
(``fast_paths=[mine, *DEFAULT_FAST_PATHS]``).

Pipelines whose steps before the last are per-element scalers are reduced to their last
step: such a step maps every value through its own column's function, so permuting rows of
a column before or after it gives bitwise the same matrix. A ``PCA`` just before the last
step is a linear projection: permuted input columns move the projected row by a rank-``g``
change. Factories that handle it carry a ``with_projection(model, X, projection,
base_outputs)`` attribute, called with the scaled input and a :class:`Projection`.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler


@runtime_checkable
class FastPath(Protocol):
    """Outputs of permuted copies of one data set for one model, equal to the model's."""

    def unaffected(self, cols: np.ndarray) -> bool:
        """True when permuting ``cols`` cannot change any output (no prediction needed)."""

    def outputs(
        self, cols: np.ndarray, orders: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Outputs of the copies in which ``cols`` show the rows ``orders[r]``.

        Returns ``(outputs, exact)``: ``outputs[method]`` has shape
        ``(n_copies, n_rows, ...)``; ``exact[r]`` is false for a copy whose outputs could not
        be certified, which the caller recomputes with the model.

        A fast path may also define ``outputs_many(groups, orders)`` returning one such
        pair per group, to answer many groups in one vectorised pass.
        """


#: A factory: ``factory(estimator, X, base_outputs)`` returns a :class:`FastPath`, or
#: ``None`` when it cannot guarantee exact outputs. ``X`` is the (reduced) model's input as
#: a numeric ndarray; ``base_outputs`` maps each needed response method to the model's own
#: output on the unpermuted data.
FastPathFactory = Callable[[Any, np.ndarray, Mapping[str, np.ndarray]], "FastPath | None"]

#: Scalers whose ``transform`` maps each value through a function of its column alone.
ELEMENTWISE_SCALERS = (StandardScaler, MinMaxScaler, MaxAbsScaler, RobustScaler)


def quietly(method: Callable, *args: Any) -> Any:
    """Call a model method on LEAP's internal arrays without its input warnings.

    Fast paths call the final step of a pipeline on plain arrays; a model fitted on a
    DataFrame would warn that the array has no feature names, which is expected here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return method(*args)


_CONTROLLER: list = []  # [ThreadpoolController, len(sys.modules) when it was made]
_CONTROLLER_LOCK = threading.Lock()


def thread_limits(limits: int, user_api: str | None = None) -> Any:
    """``threadpoolctl`` limits (a context manager) through one controller per process.

    Making a controller scans every loaded library, milliseconds each time, and a run
    limits threads dozens of times. It is made again when modules were imported since
    (one may have loaded another OpenMP or BLAS library).
    """
    with _CONTROLLER_LOCK:
        if not _CONTROLLER or _CONTROLLER[1] != len(sys.modules):
            from threadpoolctl import ThreadpoolController

            _CONTROLLER[:] = [ThreadpoolController(), len(sys.modules)]
        controller = _CONTROLLER[0]
    return controller.limit(limits=limits, user_api=user_api)


class OneBlasThread:
    """Context manager: BLAS runs single-threaded while any fast-path call is inside it.

    Fast paths run in LEAP's own worker threads and make many small matrix products; a
    multi-threaded BLAS spins up its team for each of them, which on a busy machine costs
    ten times the product itself. The limit is process-wide (that is how BLAS libraries
    work), so it is reference-counted: the first thread in sets it, the last one out
    restores the original. Outputs do not change: each product is computed either way
    within the bounds the fast paths certify.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._limiter: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._limiter = thread_limits(1, "blas")
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]  # a fresh, unlimited state after unpickling


#: Factories run on one BLAS thread (:func:`build_fast_path`): on a busy machine a thread
#: team costs twenty times one product of the held-out rows with a model's weights, and
#: every product a factory makes is checked within its path's rounding bound either way.
FACTORY_THREADS = OneBlasThread()


#: Rows of ``|X|`` made at a time by :func:`abs_product` (a small temporary at any width).
_ABS_ROWS = 64


def abs_product(X: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``|X| @ A`` made in blocks of rows, without a temporary of ``X``'s size.

    Fast paths use it for the sizes of their rounding bounds, which tolerate the product's
    own rounding many times over.
    """
    out = np.empty((X.shape[0], *A.shape[1:]))
    for start in range(0, X.shape[0], _ABS_ROWS):
        out[start : start + _ABS_ROWS] = np.abs(X[start : start + _ABS_ROWS]) @ A
    return out


def abs_column_max(X: np.ndarray) -> np.ndarray:
    """``max |X|`` per column, without a temporary of ``X``'s size; NaN where a column has
    one, so ``np.isfinite(abs_column_max(X)).all()`` tells whether ``X`` is finite."""
    if X.shape[0] == 0:
        return np.zeros(X.shape[1])
    return np.maximum(X.max(axis=0), -X.min(axis=0))


def order_certified(values: np.ndarray, halfwidth: np.ndarray) -> np.ndarray:
    """Per copy: the order of every output column is the model's, ties included.

    ``values`` and ``halfwidth`` have shape ``(n_copies, n_rows, n_columns)``: the model's
    value lies within ``halfwidth`` of ``values``, and a half-width of 0 means ``values``
    *is* the model's value. If, in each column sorted by value, neighbours' intervals are
    disjoint (or both are exact points), no value the model may compute can reorder or
    tie what is apart, nor untie what is tied; so rank-based scores (ROC AUC, average
    precision) see the model's ranking exactly. Intervals of non-neighbours cannot overlap
    when neighbours' do not.
    """
    if values.shape[1] < 2:
        return np.ones(values.shape[0], dtype=bool)
    order = np.argsort(values, axis=1, kind="stable")
    v = np.take_along_axis(values, order, axis=1)
    h = np.take_along_axis(halfwidth, order, axis=1)
    gap = v[:, 1:] - v[:, :-1]
    apart = gap > (h[:, 1:] + h[:, :-1]) * (1.0 + 1e-6)
    points = (h[:, 1:] == 0) & (h[:, :-1] == 0)
    return np.all(apart | points, axis=(1, 2))


def reduce_model(estimator: Any, X: Any) -> tuple[Any, np.ndarray] | None:
    """The model a fast path sees, and its input: ``(final_step, transformed X)``.

    ``None`` when ``estimator`` is a pipeline with a step that is not a per-element scaler,
    or when ``X`` is not a plain numeric matrix.
    """
    core = estimator
    steps = []
    if type(estimator) is Pipeline:
        *front, (_, core) = estimator.steps
        for _, step in front:
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            if type(step) not in ELEMENTWISE_SCALERS:
                return None
            steps.append(step)
        if core is None or isinstance(core, str):
            return None
    if isinstance(X, pd.DataFrame):
        if not all(isinstance(d, np.dtype) and d.kind == "f" for d in X.dtypes):
            return None
        if len(set(X.dtypes)) != 1:
            return None
    Xt = X
    for step in steps:
        Xt = step.transform(Xt)
    Xt = Xt.to_numpy() if isinstance(Xt, pd.DataFrame) else np.asarray(Xt)
    if Xt.ndim != 2 or Xt.shape != tuple(X.shape) or Xt.dtype.kind != "f":
        return None
    return core, np.ascontiguousarray(Xt)


@dataclass(frozen=True)
class Projection:
    """A fitted ``PCA`` between the (scaled) input and the model: ``x -> (x C^T - m C^T) / s``.

    ``transformed`` is the PCA's own output on the unpermuted rows (what the model sees).
    """

    components: np.ndarray  # (k, p)
    scale: np.ndarray  # (k,), ones without whitening
    mean: np.ndarray  # (p,)
    transformed: np.ndarray  # (n_rows, k)


def reduce_projection(estimator: Any, X: Any) -> tuple[Any, np.ndarray, Projection] | None:
    """``(final step, scaled X, projection)`` for a pipeline ``scalers..., PCA, model``.

    ``None`` for any other model, or when ``X`` is not a plain numeric matrix.
    """
    from sklearn.decomposition import PCA

    if type(estimator) is not Pipeline or len(estimator.steps) < 2:
        return None
    *front, (_, pca), (_, core) = estimator.steps
    if type(pca) is not PCA or core is None or isinstance(core, str):
        return None
    components = getattr(pca, "components_", None)
    if not isinstance(components, np.ndarray) or components.dtype != np.float64:
        return None
    reduced = reduce_model(Pipeline([*front, ("model", core)]) if front else core, X)
    if reduced is None:
        return None
    _, Xs = reduced
    if components.shape[1] != Xs.shape[1]:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        transformed = np.asarray(pca.transform(Xs), dtype=np.float64)
    scale = np.ones(components.shape[0])
    if pca.whiten:
        scale = np.sqrt(pca.explained_variance_)
        scale[scale < np.finfo(scale.dtype).eps] = np.finfo(scale.dtype).eps
    mean = np.asarray(pca.mean_, dtype=np.float64)
    return core, Xs, Projection(components, scale, mean, transformed)


def build_fast_path(
    factories: tuple[FastPathFactory, ...],
    estimator: Any,
    X: Any,
    base_outputs: Mapping[str, np.ndarray],
) -> FastPath | None:
    """The first fast path a factory builds for ``estimator`` on ``X``, or ``None``."""
    if not factories:
        return None
    with FACTORY_THREADS:
        return _first_path(factories, estimator, X, base_outputs)


def _first_path(
    factories: tuple[FastPathFactory, ...],
    estimator: Any,
    X: Any,
    base_outputs: Mapping[str, np.ndarray],
) -> FastPath | None:
    reduced = reduce_model(estimator, X)
    if reduced is None:
        projected = reduce_projection(estimator, X)
        if projected is None:
            return None
        core, Xs, projection = projected
        for factory in factories:
            with_projection = getattr(factory, "with_projection", None)
            if with_projection is not None:
                path = with_projection(core, Xs, projection, base_outputs)
                if path is not None:
                    return path
        return None
    core, Xc = reduced
    for factory in factories:
        path = factory(core, Xc, base_outputs)
        if path is not None:
            return path
    return None
