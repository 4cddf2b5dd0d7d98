"""Per-participant importances: is a result true for every participant, or only on average?

The importance method runs once per participant, on that participant's rows only (the
permutation shuffles rows within the participant), with the same settings as the pooled
run. The spread of those per-participant means, and a confidence interval over
participants, sit next to the pooled result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from tqdm.auto import tqdm

from leap.data.files import atomic_path
from leap.data.grouping import Grouping
from leap.data.result import FEATURE_LEVEL, ImportanceResult, includes_zero, t_interval
from leap.errors import MatrixError, one_line

PARTICIPANT_PREFIX = "participant_"
MIN_ROWS = 2


@dataclass
class ParticipantSpread:
    """Importances computed separately for each participant.

    Attributes
    ----------
    names : list of str
        The rows (features or groups), in the pooled result's order.
    participants : list of str
        Participant ids that were analysed, in column order of ``values``.
    values : ndarray of shape (n_rows, n_participants)
        Mean importance over repeats, computed on each participant's rows alone.
    n_samples : ndarray of shape (n_participants,)
        Rows per participant.
    baselines : ndarray of shape (n_participants,)
        Undisturbed score per participant.
    level : str
        ``"feature"`` or the grouping name, as in :attr:`ImportanceResult.level`.
    ci_level : float
        Confidence level of the interval over participants.
    skipped : dict of str to str
        Participants left out, and why (too few rows, a score that cannot be computed).
    """

    names: list[str]
    participants: list[str]
    values: np.ndarray
    n_samples: np.ndarray
    baselines: np.ndarray
    level: str = FEATURE_LEVEL
    ci_level: float = 0.95
    skipped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.shape != (len(self.names), len(self.participants)):
            raise ValueError(
                f"values must have shape (n_rows, n_participants) = "
                f"({len(self.names)}, {len(self.participants)}), got {self.values.shape}"
            )

    @property
    def n_participants(self) -> int:
        """Number of participants analysed."""
        return len(self.participants)

    @property
    def mean(self) -> np.ndarray:
        """Mean over participants of the per-participant importance."""
        return self.values.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation over participants (``ddof=1``; NaN for one participant)."""
        if self.n_participants < 2:
            return np.full(len(self.names), np.nan)
        return self.values.std(axis=1, ddof=1)

    @property
    def min(self) -> np.ndarray:
        """Smallest per-participant importance."""
        return self.values.min(axis=1)

    @property
    def max(self) -> np.ndarray:
        """Largest per-participant importance."""
        return self.values.max(axis=1)

    def confidence_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """Student-t interval of the mean over participants (NaN for fewer than two)."""
        return t_interval(self.values, self.ci_level)

    def summary(self) -> pd.DataFrame:
        """One row per feature or group: mean, std, min, max and CI over participants."""
        low, high = self.confidence_interval()
        return pd.DataFrame(
            {
                "level": self.level,
                "feature": self.names,
                "participant_mean": self.mean,
                "participant_std": self.std,
                "participant_min": self.min,
                "participant_max": self.max,
                "ci_low": low,
                "ci_high": high,
                "ci_includes_zero": includes_zero(low, high),
                "ci_level": self.ci_level,
                "n_participants": self.n_participants,
                "n_positive": (self.values > 0).sum(axis=1),
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """:meth:`summary` plus one column per participant (``participant_<id>``)."""
        per = pd.DataFrame(
            self.values, columns=[f"{PARTICIPANT_PREFIX}{p}" for p in self.participants]
        )
        return pd.concat([self.summary(), per], axis=1)


def compute_spreads(
    engine: Any,
    estimator: Any,
    X: Any,
    y: Any,
    participants: Sequence[Any] | np.ndarray,
    groupings: Sequence[Grouping | None],
    *,
    names: Sequence[str],
    method: str = "permutation",
    scoring: Any = None,
    n_repeats: int = 5,
    random_state: Any = None,
    max_samples: float | int = 1.0,
    n_jobs: int | None = None,
    ci_level: float = 0.95,
    progress: bool = False,
) -> list[ParticipantSpread]:
    """Run the importance method on each participant's rows, for each grouping.

    Parameters
    ----------
    engine : Engine
        Provides the importance method (``engine.compute``).
    estimator, X, y
        The fitted model, its input (array or DataFrame) and the labels.
    participants : array of shape (n_samples,)
        Participant id per row.
    groupings : list of Grouping or None
        ``None`` stands for the single features (named by ``names``).
    names : list of str
        Feature names, used for the ``None`` grouping.

    Returns
    -------
    list of ParticipantSpread, one per grouping, in order.
    """
    ids = np.asarray(participants)
    if len(ids) != _n_rows(X):
        raise MatrixError(f"{len(ids)} participant ids for {_n_rows(X)} rows")
    labels = ids.astype(str)
    order = _participant_order(ids)
    per_level: list[list[np.ndarray]] = [[] for _ in groupings]
    kept: list[str] = []
    sizes: list[int] = []
    baselines: list[float] = []
    skipped: dict[str, str] = {}
    for pid in tqdm(order, disable=not progress, desc="participants", unit="participant"):
        rows = np.flatnonzero(labels == pid)
        if len(rows) < MIN_ROWS:
            skipped[pid] = f"only {len(rows)} row(s)"
            continue
        X_p = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
        y_p = y.iloc[rows] if hasattr(y, "iloc") else np.asarray(y)[rows]
        samples = min(max_samples, len(rows)) if isinstance(max_samples, int) else max_samples
        try:
            with warnings.catch_warnings():
                # An undefined score is reported below as the reason to leave them out.
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                found = [
                    _first(
                        engine.compute(
                            estimator,
                            X_p,
                            y_p,
                            method=method,
                            groups=None if g is None else g.indices,
                            group_names=None if g is None else g.names,
                            feature_names=list(names),
                            scoring=scoring,
                            n_repeats=n_repeats,
                            random_state=random_state,
                            max_samples=samples,
                            n_jobs=n_jobs,
                        )
                    )
                    for g in groupings
                ]
        except (ValueError, ZeroDivisionError) as exc:
            # e.g. a score undefined on one class only (ROC AUC); the others still count.
            skipped[pid] = f"{type(exc).__name__}: {one_line(exc)[:200]}"
            continue
        base = math.nan if found[0].baseline_score is None else found[0].baseline_score
        undefined_base = found[0].baseline_score is not None and not np.isfinite(base)
        if undefined_base or not all(np.isfinite(r.importances).all() for r in found):
            skipped[pid] = "the score is undefined on these rows (e.g. only one class)"
            continue
        for bucket, result in zip(per_level, found, strict=True):
            bucket.append(result.importances_mean)
        kept.append(pid)
        sizes.append(len(rows))
        baselines.append(base)
    if not kept:
        reasons = "; ".join(f"{p}: {r}" for p, r in list(skipped.items())[:3])
        raise MatrixError(f"no participant could be analysed on their own rows ({reasons})")
    return [
        ParticipantSpread(
            names=list(names) if g is None else list(g.names),
            participants=kept,
            values=np.column_stack(bucket),
            n_samples=np.asarray(sizes),
            baselines=np.asarray(baselines, dtype=np.float64),
            level=FEATURE_LEVEL if g is None else g.name,
            ci_level=ci_level,
            skipped=dict(skipped),
        )
        for g, bucket in zip(groupings, per_level, strict=True)
    ]


def spread_from_differences(
    names: Sequence[str],
    differences: np.ndarray,
    participants: Sequence[Any] | np.ndarray,
    *,
    sample_weight: Any = None,
    level: str = FEATURE_LEVEL,
    ci_level: float = 0.95,
) -> ParticipantSpread:
    """Per-participant importances from one pooled run's per-row differences, no reruns.

    Each participant's value is the (weighted) mean of the per-row differences of their
    rows (``MethodScores.row_differences``, rows as given to the method): what the model
    loses on that participant's rows when the feature is disturbed across everyone's
    rows. :func:`compute_spreads` instead disturbs within each participant's rows only;
    the two agree when the feature's distribution is alike across participants. The
    per-participant baselines are not known here (NaN).
    """
    from leap.data.stats import unit_means

    ids = np.asarray(participants)
    d = np.asarray(differences, dtype=np.float64)
    if ids.shape[0] != d.shape[1]:
        raise MatrixError(f"{ids.shape[0]} participant ids for {d.shape[1]} rows of differences")
    order = _participant_order(ids)
    labels = ids.astype(str)
    values, _ = unit_means(d, labels, sample_weight)  # columns in sorted label order
    position = {label: i for i, label in enumerate(sorted(set(labels)))}
    columns = [position[p] for p in order]
    return ParticipantSpread(
        names=list(names),
        participants=order,
        values=values[:, columns]
        if len(order) > 1
        else np.average(d, axis=1, weights=sample_weight)[:, np.newaxis],
        n_samples=np.array([int((labels == p).sum()) for p in order]),
        baselines=np.full(len(order), np.nan),
        level=level,
        ci_level=ci_level,
    )


def spreads_frame(result: ImportanceResult) -> pd.DataFrame:
    """Every spread of ``result`` and its grouped results, one table (a ``level`` column)."""
    frames = [
        r.spread.to_frame()
        for r in (result, *result.groups.values())
        if isinstance(r.spread, ParticipantSpread)
    ]
    if not frames:
        raise MatrixError("this result has no per-participant importances")
    return pd.concat(frames, ignore_index=True)


def write_spreads_csv(result: ImportanceResult, path: str | Path) -> Path:
    """Write :func:`spreads_frame` to ``path`` atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        spreads_frame(result).to_csv(tmp, index=False, float_format="%.17g")
    return path


def _first(results: ImportanceResult | dict[str, ImportanceResult]) -> ImportanceResult:
    """The result of the first metric (``Engine.compute`` gives a dict for several)."""
    return next(iter(results.values())) if isinstance(results, dict) else results


def _n_rows(X: Any) -> int:
    return int(X.shape[0])


def _participant_order(ids: np.ndarray) -> list[str]:
    unique = list(pd.unique(pd.Series(ids)))
    try:
        unique.sort()
    except TypeError:
        unique.sort(key=str)
    return [str(u) for u in unique]
