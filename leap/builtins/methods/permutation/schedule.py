"""The permutations scikit-learn applies, computed once and shared by every column.

:func:`sklearn.inspection.permutation_importance` draws one ``seed`` from ``random_state``
and gives every column a fresh ``RandomState(seed)``. That generator first draws the row
subset (when ``max_samples`` is below the number of rows), then shuffles an index array in
place once per repeat, and each repeat permutes the *already permuted* column again. So all
columns see the same sequence of row orders: repeat ``r`` shows column ``j`` as
``X_sub[orders[r], j]``, where ``orders[r]`` composes the first ``r + 1`` shuffles.

Invalid arguments fail as they fail in scikit-learn, with the same exception and message:
:func:`check_arguments` applies scikit-learn's own parameter constraints, and the rest of the
run skips the nested validation scikit-learn skips (:func:`nested_validation_skipped`).
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.random import sample_without_replacement

#: The name scikit-learn's messages give the function whose arguments they check.
CALLER_NAME = "permutation_importance"


@dataclass(frozen=True)
class Schedule:
    """Row subset and cumulative row orders, exactly as scikit-learn draws them.

    Attributes
    ----------
    seed : int
        The seed every column's ``RandomState`` starts from.
    rows : ndarray of shape (max_samples,) or None
        The rows used (``None``: all rows, in their order).
    orders : ndarray of shape (n_repeats, n_used_rows)
        ``orders[r]`` maps each row of the used data to the row whose values it shows in
        repeat ``r``.
    """

    seed: int
    rows: np.ndarray | None
    orders: np.ndarray

    @property
    def n_repeats(self) -> int:
        """Number of repeats."""
        return self.orders.shape[0]


def check_arguments(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    scoring: Any,
    n_repeats: Any,
    n_jobs: Any,
    random_state: Any,
    sample_weight: Any,
    max_samples: Any,
) -> None:
    """Raise what :func:`sklearn.inspection.permutation_importance` raises for bad arguments.

    The checks are scikit-learn's own: the parameter constraints its ``validate_params``
    decorator holds, checked by its ``validate_parameter_constraints``, so the exception
    (``InvalidParameterError``, a ``ValueError`` and a ``TypeError``) and its message are
    those of the installed scikit-learn, and ``sklearn.set_config(skip_parameter_validation=
    True)`` skips them as it skips scikit-learn's. The checks that follow in scikit-learn's
    function body (``check_array``, ``max_samples`` against the number of rows, the scorer)
    are made where LEAP reaches the same step: :func:`resolve_max_samples`, and the scorer
    itself.
    """
    import sklearn
    from sklearn.inspection import permutation_importance
    from sklearn.utils._param_validation import validate_parameter_constraints

    if sklearn.get_config()["skip_parameter_validation"]:
        return
    constraints = getattr(permutation_importance, "_skl_parameter_constraints", None)
    if not isinstance(constraints, dict):  # a scikit-learn without the decorator's record
        return
    params = {
        "estimator": estimator,
        "X": X,
        "y": y,
        "scoring": scoring,
        "n_repeats": n_repeats,
        "n_jobs": n_jobs,
        "random_state": random_state,
        "sample_weight": sample_weight,
        "max_samples": max_samples,
    }
    validate_parameter_constraints(constraints, params, caller_name=CALLER_NAME)


@contextlib.contextmanager
def nested_validation_skipped() -> Iterator[None]:
    """Skip the parameter validation of the scikit-learn functions called inside, as
    :func:`sklearn.inspection.permutation_importance` does (``prefer_skip_nested_validation``).

    Its arguments are validated once, up front (:func:`check_arguments`); the scorers and
    metrics it calls then skip their own parameter checks, so an invalid ``y`` fails where
    and how it fails in scikit-learn (and each of the many scorer calls is cheaper). The
    setting is scikit-learn's thread-local configuration: it applies in this thread.
    """
    import sklearn

    with sklearn.config_context(skip_parameter_validation=True):
        yield


def resolve_max_samples(max_samples: float | int, n_samples: int) -> int:
    """The number of rows ``max_samples`` stands for, with scikit-learn's rules and messages.

    An int must not exceed ``n_samples``; a float is a fraction of the rows, rounded down
    (scikit-learn's range checks, :func:`check_arguments`, come first).
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Real):
        raise ValueError(f"max_samples must be an int or a float, got {max_samples!r}")
    if not isinstance(max_samples, numbers.Integral):
        return int(max_samples * n_samples)
    if max_samples > n_samples:
        raise ValueError("max_samples must be <= n_samples")
    return int(max_samples)


def draw_seed(random_state: Any) -> int:
    """Draw the one seed scikit-learn takes from ``random_state``."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max + 1))


def make_schedule(seed: int, n_samples: int, n_repeats: int, max_samples: int) -> Schedule:
    """Replay one column's ``RandomState(seed)``: row subset, then ``n_repeats`` shuffles."""
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, numbers.Integral) or n_repeats < 1:
        raise ValueError(f"n_repeats must be an int >= 1, got {n_repeats!r}")
    rng = check_random_state(seed)
    rows = None
    if max_samples < n_samples:
        rows = sample_without_replacement(n_samples, max_samples, random_state=rng)
    m = n_samples if rows is None else len(rows)
    shuffling = np.arange(m)
    current = np.arange(m)
    orders = np.empty((n_repeats, m), dtype=np.intp)
    for r in range(n_repeats):
        rng.shuffle(shuffling)
        current = current[shuffling]
        orders[r] = current
    return Schedule(seed, rows, orders)


def take_rows(data: Any, rows: np.ndarray | None) -> Any:
    """``data`` restricted to ``rows`` the way scikit-learn indexes it (``None``: as is)."""
    if rows is None or data is None:
        return data
    return _safe_indexing(data, rows, axis=0)
