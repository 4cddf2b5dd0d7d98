"""Permuted copies of the data, built without re-copying the whole matrix per column.

A task keeps one buffer of ``B`` stacked copies of the used rows and, per copy, overwrites
only the permuted columns (and restores them afterwards), instead of copying the whole
matrix for every column as scikit-learn does. ``B`` is bounded by :data:`MAX_BATCH_BYTES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Cap on the bytes of one batch of stacked permuted copies (per worker). A batch holds as
#: many copies as fit, at least one, and no more than needed to reach
#: :data:`TARGET_BATCH_ROWS` rows, beyond which one call per batch saves nothing. So a
#: worker holds at most ``max(MAX_BATCH_BYTES, one copy)`` of permuted data, about what
#: scikit-learn holds (one copy of the data per column).
MAX_BATCH_BYTES = 2**20

#: Rows per batched prediction call at which per-call overhead stops mattering.
TARGET_BATCH_ROWS = 1024


def copies_per_batch(n_rows: int, row_bytes: int, max_bytes: int = MAX_BATCH_BYTES) -> int:
    """How many permuted copies of ``n_rows`` rows one batch holds."""
    by_bytes = max(1, max_bytes // max(1, n_rows * row_bytes))
    by_rows = max(1, -(-TARGET_BATCH_ROWS // max(1, n_rows)))
    return int(min(by_bytes, by_rows))


def row_nbytes(X: Any) -> int:
    """Approximate bytes of one row of ``X``."""
    if isinstance(X, pd.DataFrame):
        return int(sum(np.dtype(d).itemsize if isinstance(d, np.dtype) else 8 for d in X.dtypes))
    return int(X.shape[1] * X.dtype.itemsize)


def _homogeneous_numpy(X: pd.DataFrame) -> np.dtype | None:
    dtypes = set(X.dtypes)
    if len(dtypes) == 1:
        (dtype,) = dtypes
        if isinstance(dtype, np.dtype) and dtype.kind in "biufc":
            return dtype
    return None


class CopyStack:
    """Builds batches of permuted copies of ``X`` (ndarray or DataFrame).

    Parameters
    ----------
    X : ndarray or DataFrame of shape (n_rows, n_features)
        The used rows, unpermuted.
    capacity : int
        Maximum number of copies per batch.
    """

    def __init__(self, X: Any, capacity: int) -> None:
        self.X = X
        self.capacity = max(1, int(capacity))
        self.n_rows = X.shape[0]
        self._frame = isinstance(X, pd.DataFrame)
        self._values = None
        if not self._frame:
            self._values = X
        elif _homogeneous_numpy(X) is not None:
            self._values = X.to_numpy()
        self._buffer: np.ndarray | None = None

    def batch(self, specs: Sequence[tuple[np.ndarray, np.ndarray]]) -> Any:
        """The copies ``specs`` (``(columns, order)`` pairs) stacked row-wise.

        The returned object is valid until the next call.
        """
        if len(specs) > self.capacity:
            raise ValueError("more copies than the batch capacity")
        if self._values is None:
            return self._frame_batch(specs)
        m = self.n_rows
        values = self._values
        if self._buffer is None:
            self._buffer = np.tile(values, (self.capacity, 1))
            self._patched: list[np.ndarray] = []
        buffer = self._buffer
        for s, cols in enumerate(self._patched):  # restore what the last batch changed
            if cols is not None:
                buffer[s * m : (s + 1) * m, cols] = values[:, cols]
        self._patched = []
        for s, (cols, order) in enumerate(specs):
            buffer[s * m : (s + 1) * m, cols] = values[np.ix_(order, cols)]
            self._patched.append(cols)
        out = buffer[: len(specs) * m]
        if self._frame:
            return pd.DataFrame(out, columns=self.X.columns, copy=False)
        return out

    def _frame_batch(self, specs: Sequence[tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
        m = self.n_rows
        b = len(specs)
        base = np.tile(np.arange(m), b)
        take: dict[int, np.ndarray] = {}
        for s, (cols, order) in enumerate(specs):
            for c in np.asarray(cols).tolist():
                idx = take.setdefault(c, base.copy())
                idx[s * m : (s + 1) * m] = order
        columns = {}
        for c in range(self.X.shape[1]):
            columns[c] = self.X.iloc[:, c].array.take(take.get(c, base))
        frame = pd.DataFrame(columns)
        frame.columns = self.X.columns
        return frame


class WorkingCopy:
    """One copy of ``X`` whose columns are permuted in place and restored (opaque scorers)."""

    def __init__(self, X: Any) -> None:
        self.X = X
        self.data = X.copy()
        self._frame = isinstance(X, pd.DataFrame)

    def permute(self, cols: np.ndarray, order: np.ndarray) -> Any:
        """The copy with ``cols`` showing the rows ``order``; other columns untouched."""
        if self._frame:
            for c in np.asarray(cols).tolist():
                self.data.isetitem(c, self.X.iloc[:, c].array.take(order))
        else:
            self.data[:, cols] = self.X[np.ix_(order, cols)]
        return self.data

    def restore(self, cols: np.ndarray) -> None:
        """Put the original values of ``cols`` back."""
        if self._frame:
            for c in np.asarray(cols).tolist():
                self.data.isetitem(c, self.X.iloc[:, c].array.copy())
        else:
            self.data[:, cols] = self.X[:, cols]
