"""The permutations scikit-learn applies, computed once and shared by every column.

:func:`sklearn.inspection.permutation_importance` draws one ``seed`` from ``random_state``
and gives every column a fresh ``RandomState(seed)``. That generator first draws the row
subset (when ``max_samples`` is below the number of rows), then shuffles an index array in
place once per repeat, and each repeat permutes the *already permuted* column again. So all
columns see the same sequence of row orders: repeat ``r`` shows column ``j`` as
``X_sub[orders[r], j]``, where ``orders[r]`` composes the first ``r + 1`` shuffles.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.random import sample_without_replacement


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


def resolve_max_samples(max_samples: float | int, n_samples: int) -> int:
    """The number of rows ``max_samples`` stands for, with scikit-learn's rules."""
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Real):
        raise ValueError(f"max_samples must be an int or a float, got {max_samples!r}")
    if isinstance(max_samples, numbers.Integral):
        if not 1 <= max_samples <= n_samples:
            raise ValueError(
                f"max_samples must be in [1, n_samples={n_samples}], got {max_samples}"
            )
        return int(max_samples)
    if not 0.0 < max_samples <= 1.0:
        raise ValueError(f"a float max_samples must be in (0, 1], got {max_samples}")
    return int(max_samples * n_samples)


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
