"""Inference over the held-out data: one-sided tests, intervals and Benjamini–Hochberg q-values.

An importance method that can say how each held-out row's loss changed when a feature (or
group) was disturbed hands over *per-row differences*: for row ``i``, the row's share of the
undisturbed score minus its share of the disturbed score, averaged over the repeats, so that
their (weighted) mean is the importance. The tests here treat the rows, or the participants
when ids are known (rows of one participant are not independent), as the sample:

- the test of "importance > 0" is a one-sided Student t-test of the mean difference over the
  units (Chamma et al., NeurIPS 2023, use the same per-sample test for conditional
  permutation importance);
- the interval is the two-sided Student t interval of that mean, at the result's level;
- q-values are Benjamini–Hochberg adjusted p-values over the measurable rows of one result.

What is tested is the *model's reliance* on a feature on these data, not the feature's
association with the label; see ``docs/interpreting.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Units a test can be over.
ROW_UNIT = "row"
PARTICIPANT_UNIT = "participant"


@dataclass
class Inference:
    """Per-row (of a result) test of "importance > 0" over held-out units.

    Attributes
    ----------
    mean : ndarray of shape (n_rows,)
        Mean difference over the units (the importance, up to rounding).
    se : ndarray of shape (n_rows,)
        Standard error of ``mean``.
    df : int
        Degrees of freedom of the t statistic (units minus one).
    p_value : ndarray of shape (n_rows,)
        One-sided p-value; NaN for unmeasurable rows.
    unit : str
        ``"row"`` or ``"participant"``: what the sample of the test is.
    n_units : int
        Number of rows or participants the test is over.
    """

    mean: np.ndarray
    se: np.ndarray
    df: int
    p_value: np.ndarray
    unit: str
    n_units: int

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided Student-t interval of :attr:`mean` at ``level`` (NaN where undefined)."""
        from scipy import stats

        if self.df < 1:
            nan = np.full(self.mean.shape, np.nan)
            return nan, nan.copy()
        half = stats.t.ppf(0.5 + level / 2.0, self.df) * self.se
        low, high = self.mean - half, self.mean + half
        undefined = np.isnan(self.p_value)
        low[undefined] = np.nan
        high[undefined] = np.nan
        return low, high

    def describe(self) -> dict[str, Any]:
        """The test's description, for a result's ``params``."""
        return {"test": "one-sided t", "unit": self.unit, "n_units": self.n_units}


@dataclass
class UnitMoments:
    """Per row of a result: the mean and spread of its values over the test's units.

    All a one-sided t-test and its interval need, so a method can reduce each group's
    per-row differences as soon as they are known instead of holding them all
    (:class:`UnitTally`).

    Attributes
    ----------
    mean, sd : ndarray of shape (n_rows,)
        Mean and standard deviation (``ddof=1``; NaN with fewer than two units) of the
        values over the units.
    unit : str
        ``"row"`` or ``"participant"``.
    n_units : int
        Number of units.
    """

    mean: np.ndarray
    sd: np.ndarray
    unit: str
    n_units: int


class UnitTally:
    """Reduces per-row differences, one row of a result at a time, to :class:`UnitMoments`.

    ``n_data_rows`` differences per row of the result (the data rows the method used).
    With participant ids (one per data row, two or more participants) the units are the
    participants, each the weighted mean of its rows (a participant whose rows weigh
    nothing in total is left out); otherwise the units are the data rows, each difference
    scaled by ``w / mean(w)`` so that the plain mean over rows is the weighted mean.
    """

    def __init__(
        self, n_rows: int, n_data_rows: int, participants: Any = None, sample_weight: Any = None
    ) -> None:
        n = n_data_rows
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"{w.shape[0]} weights for {n} rows of differences")
        self.unit, self.n_units = ROW_UNIT, n
        self._weights = w
        self._scale = None if sample_weight is None else w / w.mean()
        if participants is not None:
            ids = np.asarray(participants)
            if ids.shape[0] != n:
                raise ValueError(f"{ids.shape[0]} participant ids for {n} rows of differences")
            _, codes = np.unique(ids.astype(str), return_inverse=True)
            codes = codes.reshape(-1)
            if codes.max(initial=-1) >= 1:  # two or more participants
                self.unit = PARTICIPANT_UNIT
                self._total = np.bincount(codes, weights=w)
                self._members = [np.flatnonzero(codes == j) for j in range(self._total.size)]
                self.n_units = int((self._total != 0).sum())
        self.mean = np.full(n_rows, np.nan)
        self.sd = np.full(n_rows, np.nan)

    def values(self, differences: np.ndarray) -> np.ndarray:
        """The units' values for one row of differences (shape ``(n_data_rows,)``);
        NaN for a participant whose rows weigh nothing."""
        d = np.asarray(differences, dtype=np.float64)
        if self.unit == PARTICIPANT_UNIT:
            w = self._weights
            sums = np.array([d[m] @ w[m] for m in self._members])
            with np.errstate(invalid="ignore", divide="ignore"):
                return sums / self._total
        return d if self._scale is None else d * self._scale

    def add(self, index: int, differences: np.ndarray) -> None:
        """Reduce row ``index`` of the result's differences."""
        v = self.values(differences)
        if self.unit == PARTICIPANT_UNIT:
            v = v[self._total != 0]
        if v.size:
            self.mean[index] = v.mean()
        if v.size >= 2:
            self.sd[index] = v.std(ddof=1)

    def moments(self) -> UnitMoments:
        """The moments of every row added so far (NaN for rows not added)."""
        return UnitMoments(self.mean, self.sd, self.unit, self.n_units)


def unit_means(
    differences: np.ndarray, participants: Any = None, sample_weight: Any = None
) -> tuple[np.ndarray, str]:
    """Per-unit values of per-row differences (see :class:`UnitTally`): ``(values, unit)``.

    ``differences`` has shape ``(n_rows_of_result, n_data_rows)``; ``values`` has shape
    ``(n_rows_of_result, n_units)``, participants in sorted order of their ids.
    """
    d = np.asarray(differences, dtype=np.float64)
    tally = UnitTally(d.shape[0], d.shape[1], participants, sample_weight)
    if tally.unit == ROW_UNIT and sample_weight is None:
        return d, ROW_UNIT
    return np.array([tally.values(row) for row in d]).reshape(d.shape[0], -1), tally.unit


def unit_moments(
    differences: np.ndarray, participants: Any = None, sample_weight: Any = None
) -> UnitMoments:
    """:class:`UnitMoments` of per-row differences of shape ``(n_rows_of_result, n_data_rows)``."""
    d = np.asarray(differences, dtype=np.float64)
    tally = UnitTally(d.shape[0], d.shape[1], participants, sample_weight)
    for i, row in enumerate(d):
        tally.add(i, row)
    return tally.moments()


def one_sided_test(values: np.ndarray, unit: str = ROW_UNIT, measurable: Any = None) -> Inference:
    """One-sided t-test of "mean > 0" for each row of ``values`` (shape ``(n_rows, n_units)``)."""
    v = np.asarray(values, dtype=np.float64)
    n_rows, n = v.shape
    mean = v.mean(axis=1) if n else np.full(n_rows, np.nan)
    sd = v.std(axis=1, ddof=1) if n >= 2 else np.full(n_rows, np.nan)
    return t_test(UnitMoments(mean, sd, unit, n), measurable)


def t_test(moments: UnitMoments, measurable: Any = None) -> Inference:
    """One-sided t-test of "mean > 0" for each row of a result, from its unit moments.

    A row whose values are all zero gets p = 1 (no evidence); a row with zero spread and a
    positive mean gets p = 0. Rows marked not ``measurable`` get NaN.
    """
    from scipy import stats

    n = moments.n_units
    mean = np.asarray(moments.mean, dtype=np.float64)
    if n >= 2:
        se = np.asarray(moments.sd, dtype=np.float64) / math.sqrt(n)
    else:
        se = np.full(mean.shape, np.nan)
    p = np.full(mean.shape, np.nan)
    if n >= 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            t = mean / se
        p = stats.t.sf(t, n - 1)
        flat = se == 0
        p[flat] = np.where(mean[flat] > 0, 0.0, 1.0)
    if measurable is not None:
        p[~np.asarray(measurable, dtype=bool)] = np.nan
    return Inference(mean, se, max(n - 1, 0), p, moments.unit, n)


def bh_qvalues(p_values: Any) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values); NaN entries stay NaN, uncounted.

    ``q_i = min_{k ≥ rank(i)} min(1, m p_(k) / k)`` over the ``m`` finite p-values.
    Rejecting every ``q ≤ α`` controls the false discovery rate at ``α`` for independent
    or positively dependent tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if m == 0:
        return q
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return q


def infer(
    differences: np.ndarray,
    *,
    participants: Any = None,
    sample_weight: Any = None,
    measurable: Any = None,
) -> Inference:
    """:func:`t_test` over the units formed from per-row ``differences``."""
    return t_test(unit_moments(differences, participants, sample_weight), measurable)


def t_interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Student-t confidence interval of the mean of each row of ``values`` (NaN if < 2 values)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    n = values.shape[1] if values.ndim == 2 else 0
    if n < 2:
        nan = np.full(values.shape[0], np.nan)
        return nan, nan.copy()
    mean = values.mean(axis=1)
    half = stats.t.ppf(0.5 + level / 2.0, n - 1) * values.std(axis=1, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


def includes_zero(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """True where ``low ≤ 0 ≤ high``, and where the interval is undefined (NaN)."""
    low, high = np.asarray(low), np.asarray(high)
    undefined = np.isnan(low) | np.isnan(high)
    with np.errstate(invalid="ignore"):
        return undefined | ((low <= 0.0) & (high >= 0.0))
