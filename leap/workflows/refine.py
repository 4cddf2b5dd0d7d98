"""Leakage-free refinement: how many features, and which sensors, a model really needs.

:func:`refine` cross-validates a *procedure*, not a fixed feature list: in every training
fold it ranks the features by permutation importance (measured on a validation part of
that training fold only), retrains a clone of the estimator on the top ``k`` features for
a grid of ``k``, and eliminates sensors backwards (drop the least important sensor, refit,
repeat); each candidate is scored on the fold's untouched test part. The test fold never
influences which features or sensors are tried on it, so the scores are honest estimates
of what the procedure delivers on new participants.

The number of features and of sensors is then chosen by the one-standard-error rule (the
smallest model whose mean score is within one standard error of the best), and the same
procedure is run once on all the data to name the recommended features and sensors.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.metrics import check_scoring
from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut, StratifiedKFold
from sklearn.utils import check_array
from tqdm.auto import tqdm

from leap.components import FeatureMatrix
from leap.data.files import atomic_path
from leap.data.layout import SensorLayout
from leap.errors import LeapError
from leap.figures import new_figure, plain_text, save_figure
from leap.workflows.selection import SelectByImportance, resolve_scoring, sensor_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVE_TOP_K = "top_k"
CURVE_SENSORS = "sensors"
FOLD_PREFIX = "score_fold_"
SENSOR_SEPARATOR = ";"
MATRIX_SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
_BLUE, _ORANGE, _VERMILLION, _GREY = "#0072B2", "#E69F00", "#D55E00", "#555555"


class RefineError(LeapError):
    """The refinement cannot run with these data or settings."""


@dataclass
class RefineResult:
    """The cross-validated curves and the recommendation of :func:`refine`.

    Attributes
    ----------
    curve : DataFrame
        One row per candidate: ``curve`` (``top_k`` or ``sensors``), ``n_features``,
        ``n_sensors``, ``sensors`` (``;``-joined: the sensors the candidate needs, from the
        ranking on all data), ``mean_score``, ``std_score`` (``ddof=1``), ``sem_score``
        (std / √folds), ``stability`` (top_k: mean share of a fold's top-k found in the
        all-data top-k; sensors: share of folds that reached the same sensor set),
        ``best``, ``choice`` (the one-standard-error choice) and ``score_fold_1`` … .
    k : int
        Chosen number of features.
    features : list of str
        The recommended features: the top ``k`` of the ranking on all data.
    sensors : tuple of str or None
        The recommended sensor set (None when sensor elimination did not run).
    feature_ranking : list of str
        All features, most important first, ranked on all data.
    sensor_path : list of tuple of str
        The backward elimination on all data: all sensors first, one fewer each step.
    scoring : str
        Name of the metric (greater is better).
    cv : str
        How the folds were made.
    feature_names : list of str
        The input's feature names, in column order.
    layout : SensorLayout or None
        The layout behind the sensor curve.
    fold_rankings : list of list of str
        Each training fold's feature ranking (most important first), for inspection.
    params : dict
        Settings of the run.
    """

    curve: pd.DataFrame
    k: int
    features: list[str]
    sensors: tuple[str, ...] | None
    feature_ranking: list[str]
    sensor_path: list[tuple[str, ...]]
    scoring: str
    cv: str
    feature_names: list[str]
    layout: SensorLayout | None = None
    fold_rankings: list[list[str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_folds(self) -> int:
        """Number of cross-validation folds."""
        return sum(c.startswith(FOLD_PREFIX) for c in self.curve.columns)

    def _row(self, curve: str, which: str) -> pd.Series | None:
        rows = self.curve[self.curve["curve"] == curve]
        if rows.empty:
            return None
        if which == "full":
            return rows.loc[rows["n_features"].idxmax()]
        return rows[rows[which]].iloc[0]

    @property
    def full_model(self) -> pd.Series:
        """The curve row of the model on all features."""
        return self._row(CURVE_TOP_K, "full")

    @property
    def chosen_k(self) -> pd.Series:
        """The curve row of the one-standard-error choice of ``k``."""
        return self._row(CURVE_TOP_K, "choice")

    @property
    def chosen_sensors(self) -> pd.Series | None:
        """The curve row of the chosen sensor set (None without sensor elimination)."""
        return self._row(CURVE_SENSORS, "choice")

    def columns(self, keep: str = "features") -> list[int]:
        """Column indices of the reduced matrix: the recommended ``features`` or ``sensors``."""
        if keep == "features":
            position = {n: i for i, n in enumerate(self.feature_names)}
            return sorted(position[n] for n in self.features)
        if keep == "sensors":
            if self.sensors is None or self.layout is None:
                raise RefineError(
                    "no sensor recommendation: sensor elimination needs the layout's columns"
                )
            return sensor_columns(self.layout, self.sensors)
        raise RefineError(f"keep must be 'features' or 'sensors', got {keep!r}")

    def summary(self) -> dict[str, Any]:
        """The recommendation as plain JSON-able data."""
        full, k_row, s_row = self.full_model, self.chosen_k, self.chosen_sensors

        def score(row: pd.Series) -> dict[str, float]:
            return {k: float(row[k]) for k in ("mean_score", "std_score", "sem_score")}

        out: dict[str, Any] = {
            "scoring": self.scoring,
            "cv": self.cv,
            "n_folds": self.n_folds,
            "rule": "one standard error: the smallest candidate within one SE of the best",
            "full_model": {"n_features": int(full["n_features"]), **score(full)},
            "top_k": {"k": self.k, **score(k_row), "features": list(self.features)},
            "sensors": None,
            "feature_ranking": list(self.feature_ranking),
            "params": self.params,
        }
        if s_row is not None and self.sensors is not None:
            dropped = [next(iter(set(a) - set(b))) for a, b in itertools.pairwise(self.sensor_path)]
            out["sensors"] = {
                "n_sensors": len(self.sensors),
                "n_features": int(s_row["n_features"]),
                **score(s_row),
                "sensors": list(self.sensors),
                "elimination_order": dropped,
            }
        return out

    def to_csv(self, path: str | Path) -> Path:
        """Write the curve to ``path`` atomically; return the path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self.curve.to_csv(tmp, index=False, float_format="%.17g")
        return path

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`summary` to ``path`` atomically; return the path."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")
        return path

    def plot(self, path: str | Path | None = None, *, title: str | None = None) -> Figure:
        """Score against the number of features (and of sensors), 1-SE choices marked.

        Saves to ``path`` (``.png``/``.svg``/``.pdf``) when given; never opens a window.
        """
        sensors = self.curve[self.curve["curve"] == CURVE_SENSORS]
        n_panels = 2 if not sensors.empty else 1
        fig = new_figure(6.4 * n_panels, 4.8)
        axes = fig.subplots(1, n_panels, squeeze=False)[0]
        self._plot_top_k(axes[0])
        if n_panels == 2:
            self._plot_sensors(axes[1], sensors)
        fig.suptitle(
            title or f"Cross-validated {self.scoring}, {self.cv}",
            fontsize="large",
            fontweight="bold",
        )
        if path is not None:
            path = Path(path)
            suffix = path.suffix.lower()
            if suffix not in (".png", ".svg", ".pdf"):
                raise RefineError(f"the plot is written as .png, .svg or .pdf, not {path.name}")
            save_figure(plain_text(fig), path, dpi=150)
        return plain_text(fig)

    def _plot_top_k(self, ax: Any) -> None:
        rows = self.curve[self.curve["curve"] == CURVE_TOP_K]
        x = rows["n_features"].to_numpy()
        _curve_with_band(ax, x, rows, "features")
        full, chosen = self.full_model, self.chosen_k
        ax.axhline(
            full["mean_score"],
            color=_GREY,
            linestyle=":",
            linewidth=1.2,
            label=f"all {int(full['n_features'])} features: {full['mean_score']:.3f}",
        )
        _mark_choice(
            ax,
            chosen["n_features"],
            chosen["mean_score"],
            f"1-SE choice: k = {self.k} ({chosen['mean_score']:.3f})",
        )
        if x.max() / max(x.min(), 1) > 20:
            ax.set_xscale("log")
            ticks = [t for t in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if t < x.max()]
            ticks = [t for t in ticks if t < 0.8 * x.max()] + [int(x.max())]
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel("Number of features kept (top k by importance, ranked in each fold)")
        ax.set_ylabel(f"Mean {self.scoring} ± 1 SE over folds")
        ax.set_title("Top-k features")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")

    def _plot_sensors(self, ax: Any, rows: pd.DataFrame) -> None:
        x = rows["n_sensors"].to_numpy()
        _curve_with_band(ax, x, rows, "sensors")
        chosen = self.chosen_sensors
        if chosen is None:
            return
        _mark_choice(
            ax,
            chosen["n_sensors"],
            chosen["mean_score"],
            f"1-SE choice: {int(chosen['n_sensors'])} sensors ({chosen['mean_score']:.3f})",
        )
        labels = {len(self.sensor_path[0]): f"{len(self.sensor_path[0])}\n(all)"}
        for before, after in itertools.pairwise(self.sensor_path):
            gone = next(iter(set(before) - set(after))).replace("_", " ")
            labels[len(after)] = f"{len(after)}\n− {gone}"
        ax.set_xticks(x, [labels.get(int(v), str(int(v))) for v in x])
        ax.set_xlim(x.max() + 0.5, x.min() - 0.5)
        ax.set_xlabel("Sensors worn (backward elimination: the least important one out)")
        ax.set_ylabel(f"Mean {self.scoring} ± 1 SE over folds")
        ax.set_title("Sensors")
        ax.grid(True, alpha=0.3)
        kept = ", ".join(s.replace("_", " ") for s in self.sensors or ())
        ax.legend(loc="lower left", fontsize="small", title=f"kept: {kept}", title_fontsize="small")


def _mark_choice(ax: Any, x: float, y: float, label: str) -> None:
    """The 1-SE choice: a large vermillion star, drawn above the curve."""
    ax.plot(
        [x],
        [y],
        marker="*",
        markersize=17,
        color=_VERMILLION,
        markeredgecolor="black",
        linestyle="none",
        zorder=5,
        label=label,
    )


def _curve_with_band(ax: Any, x: np.ndarray, rows: pd.DataFrame, what: str) -> None:
    mean = rows["mean_score"].to_numpy()
    sem = rows["sem_score"].to_numpy()
    ax.fill_between(x, mean - sem, mean + sem, color=_BLUE, alpha=0.18, linewidth=0)
    ax.plot(x, mean, marker="o", markersize=4, color=_BLUE, label=f"mean over folds ({what})")
    best = rows[rows["best"]].iloc[0]
    ax.axhline(
        best["mean_score"] - best["sem_score"],
        color=_ORANGE,
        linestyle="--",
        linewidth=1.2,
        label=f"best − 1 SE: {best['mean_score'] - best['sem_score']:.3f}",
    )


def default_k_grid(n_features: int) -> list[int]:
    """Every k up to 10, then about ten steps spaced evenly on a log scale up to all."""
    small = list(range(1, min(10, n_features) + 1))
    if n_features <= 10:
        return small
    large = np.unique(np.round(np.geomspace(10, n_features, 11)).astype(int))
    return sorted({*small, *(int(v) for v in large), n_features})


def refine(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    participants: Any = None,
    feature_names: Sequence[str] | None = None,
    layout: SensorLayout | None = None,
    k_grid: Sequence[int] | None = None,
    sensors: bool | None = None,
    cv: Any = 5,
    scoring: Any = None,
    rank_scoring: Any = "auto",
    n_repeats: int = 5,
    validation_size: float = 0.25,
    inner_cv: int | None = None,
    random_state: int | None = 0,
    n_jobs: int | None = None,
    progress: bool = False,
) -> RefineResult:
    """Cross-validate top-k feature selection and backward sensor elimination, leak-free.

    Parameters
    ----------
    estimator : estimator object
        A scikit-learn estimator; fitted or not, only clones are trained.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    participants : array-like of shape (n_samples,), optional
        Participant id per row. When given, folds hold out whole participants
        (:class:`~sklearn.model_selection.GroupKFold`, or ``cv="logo"`` for
        :class:`~sklearn.model_selection.LeaveOneGroupOut`), and so does the validation part
        used for the importances inside every training fold.
    feature_names : list of str, optional
        Column names (default: the DataFrame's columns, the layout's names, or ``x0`` …).
    layout : SensorLayout, optional
        The channel-pair layout of the columns (default: the LEAP layout).
    k_grid : list of int, optional
        Numbers of features to try (default :func:`default_k_grid`); all features are
        always added, as the reference.
    sensors : bool, optional
        Run backward sensor elimination. Default: when the columns match the layout.
    cv : int, "logo", splitter or iterable of (train, test) index arrays
        Number of folds (default 5); stratified, shuffled folds without participants.
    scoring : str or callable, optional
        A scikit-learn scorer (greater is better) for the curve; default the estimator's
        ``score``.
    rank_scoring : "auto", str or callable
        The metric of the permutation importances that rank features and sensors.
        ``"auto"``: ``"neg_log_loss"`` for a classifier with ``predict_proba`` (a smooth
        metric ranks far more steadily than accuracy on a small validation part),
        otherwise ``scoring``.
    n_repeats : int
        Permutations per feature (or sensor) when ranking.
    validation_size : float
        Fraction of each training fold (or of its participants) held out for ranking.
    inner_cv : int, optional
        Rank with importances cross-fitted over this many folds of the training fold
        instead of one validation split (see :class:`~leap.workflows.selection.SelectByImportance`).
    random_state : int or None
        Seeds the folds, the internal splits and the permutations.
    n_jobs : int, optional
        Folds run in parallel with joblib (``-1``: all cores). Any joblib backend set with
        :func:`joblib.parallel_config` applies, e.g. Dask's.
    progress : bool
        Show a progress bar over the folds.

    Returns
    -------
    RefineResult
    """
    try:
        estimator = clone(estimator)
    except Exception as exc:
        raise RefineError(
            f"refine retrains the model, so it must be a scikit-learn estimator that can be "
            f"cloned; {type(exc).__name__}: {exc}"
        ) from None
    if feature_names is None and hasattr(X, "columns"):
        feature_names = [str(c) for c in X.columns]
    X = check_array(X, dtype=np.float64)
    y = np.asarray(y)
    n_samples, n_features = X.shape
    if y.shape != (n_samples,):
        raise RefineError(f"y must have one value per row of X ({n_samples}), got {y.shape}")
    if participants is not None:
        participants = np.asarray(participants)
        if participants.shape != (n_samples,):
            raise RefineError(
                f"participants must have one id per row of X ({n_samples}), "
                f"got {participants.shape}"
            )
    layout = layout or SensorLayout()
    matches = layout.n_features == n_features
    if sensors is None:
        sensors = matches and len(layout.sensors) > 1
    elif sensors and not matches:
        raise RefineError(
            f"sensor elimination needs the layout's {layout.n_features} columns "
            f"({layout.describe()}), but X has {n_features}; pass the matching layout"
        )
    if feature_names is None:
        feature_names = layout.feature_names if matches else [f"x{i}" for i in range(n_features)]
    feature_names = [str(n) for n in feature_names]
    if len(feature_names) != n_features:
        raise RefineError(f"{len(feature_names)} feature names for {n_features} columns")
    grid = _check_grid(k_grid, n_features)
    splits, cv_text = _folds(cv, estimator, X, y, participants, random_state)
    scorer = check_scoring(estimator, scoring=resolve_scoring(scoring))
    if rank_scoring == "auto":
        proba = is_classifier(estimator) and hasattr(estimator, "predict_proba")
        rank_scoring = "neg_log_loss" if proba else scoring
    settings = {
        "scoring": rank_scoring,
        "n_repeats": n_repeats,
        "validation_size": validation_size,
        "cv": inner_cv,
        "random_state": random_state,
    }
    jobs = [(train, test) for train, test in splits] + [(np.arange(n_samples), None)]
    fold_layout = layout if sensors else None
    common = {"grid": grid, "layout": fold_layout, "scorer": scorer, "settings": settings}
    if effective_n_jobs(n_jobs) == 1:
        # In this process the bar moves with every fit, not once per fold.
        steps = 1 + len(grid) + (2 * (len(layout.sensors) - 1) if fold_layout else 0)
        runs = []
        with tqdm(
            total=len(jobs) * steps,
            disable=not progress,
            desc="refine (model fits: folds, then all data)",
            unit="fit",
        ) as bar:
            for number, (train, test) in enumerate(jobs, start=1):
                runs.append(
                    _run_fold(estimator, X, y, participants, train, test, tick=bar.update, **common)
                )
                bar.update(number * steps - bar.n)  # a sensor path may end early
    else:
        runs = list(
            tqdm(
                Parallel(n_jobs=n_jobs, return_as="generator")(
                    delayed(_run_fold)(estimator, X, y, participants, train, test, **common)
                    for train, test in jobs
                ),
                total=len(jobs),
                disable=not progress,
                desc="refine (folds in parallel, then all data)",
                unit="fold",
            )
        )
    folds, full = runs[:-1], runs[-1]
    ranking = [feature_names[j] for j in full["ranking"]]
    curve = _top_k_rows(grid, folds, full["ranking"], layout if matches else None, feature_names)
    if sensors:
        curve = pd.concat([curve, _sensor_rows(folds, full["sensor_path"], layout)])
    curve = _mark_choices(curve.reset_index(drop=True))
    k = int(curve.loc[(curve["curve"] == CURVE_TOP_K) & curve["choice"], "n_features"].iloc[0])
    chosen_sensors = None
    if sensors:
        m = int(curve.loc[(curve["curve"] == CURVE_SENSORS) & curve["choice"], "n_sensors"].iloc[0])
        chosen_sensors = next(s for s in full["sensor_path"] if len(s) == m)
    return RefineResult(
        curve=curve,
        k=k,
        features=ranking[:k],
        sensors=chosen_sensors,
        feature_ranking=ranking,
        sensor_path=list(full.get("sensor_path", [])),
        scoring=_metric_name(scoring, estimator),
        cv=cv_text,
        feature_names=feature_names,
        layout=layout if sensors else None,
        fold_rankings=[[feature_names[j] for j in f["ranking"]] for f in folds],
        params={
            "scoring": _metric_name(scoring, estimator),
            "rank_scoring": _metric_name(rank_scoring, estimator),
            "n_repeats": n_repeats,
            "validation_size": validation_size,
            "inner_cv": inner_cv,
            "random_state": random_state,
            "n_samples": int(n_samples),
            "n_features": int(n_features),
            "n_participants": None if participants is None else len(np.unique(participants)),
            "k_grid": grid,
            "estimator": type(estimator).__name__,
        },
    )


def _run_fold(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    participants: np.ndarray | None,
    train: np.ndarray,
    test: np.ndarray | None,
    *,
    grid: list[int],
    layout: SensorLayout | None,
    scorer: Any,
    settings: dict[str, Any],
    tick: Callable[[int], Any] | None = None,
) -> dict[str, Any]:
    """Rank on ``train`` only; score every candidate on ``test`` (no scores when None).

    ``tick(1)`` is called after every model fit, for a progress bar.
    """
    advance = tick or (lambda _n: None)
    X_train, y_train = X[train], y[train]
    p_train = None if participants is None else participants[train]

    def score(columns: list[int]) -> float:
        if test is None:
            return np.nan
        model = clone(estimator).fit(X_train[:, columns], y_train)
        return float(scorer(model, X[test][:, columns], y[test]))

    def scored(columns: list[int]) -> float:
        value = score(columns)
        advance(1)
        return value

    selector = SelectByImportance(estimator, **settings).fit(X_train, y_train, p_train)
    advance(1)
    ranking = selector.ranking_
    top_k = [scored(sorted(ranking[:k])) for k in grid]
    out: dict[str, Any] = {"ranking": ranking, "top_k": top_k}
    if layout is not None:
        current = list(layout.sensors)
        path, scores = [tuple(current)], [top_k[-1]]
        while len(current) > 1:
            columns = sensor_columns(layout, current)
            sub = SensorLayout(sensors=tuple(current), dims=layout.dims)
            step = SelectByImportance(estimator, groups="sensor", layout=sub, **settings)
            step.fit(X_train[:, columns], y_train, p_train)
            advance(1)
            current.remove(sub.sensors[step.ranking_[-1]])
            columns = sensor_columns(layout, current)
            if not columns:
                break
            path.append(tuple(current))
            scores.append(scored(columns))
        out.update(sensor_path=path, sensors=scores)
    return out


def _top_k_rows(
    grid: list[int],
    folds: list[dict[str, Any]],
    full_ranking: np.ndarray,
    layout: SensorLayout | None,
    feature_names: list[str],
) -> pd.DataFrame:
    scores = np.array([f["top_k"] for f in folds], dtype=np.float64).T
    rows = []
    for i, k in enumerate(grid):
        final = set(full_ranking[:k].tolist())
        overlap = [len(final & set(f["ranking"][:k].tolist())) / k for f in folds]
        needed = _sensors_needed(layout, full_ranking[:k]) if layout is not None else None
        rows.append(
            {
                "curve": CURVE_TOP_K,
                "n_features": k,
                "n_sensors": len(needed) if needed is not None else pd.NA,
                "sensors": SENSOR_SEPARATOR.join(needed) if needed is not None else "",
                **_stats(scores[i]),
                "stability": float(np.mean(overlap)),
                **_fold_columns(scores[i]),
            }
        )
    return pd.DataFrame(rows)


def _sensors_needed(layout: SensorLayout, columns: np.ndarray) -> list[str]:
    used = {s for j in columns for s in (layout.pairs[j].sensor_a, layout.pairs[j].sensor_b)}
    return [s for s in layout.sensors if s in used]


def _sensor_rows(
    folds: list[dict[str, Any]], full_path: list[tuple[str, ...]], layout: SensorLayout
) -> pd.DataFrame:
    scores = np.array([f["sensors"] for f in folds], dtype=np.float64).T
    rows = []
    for i, final in enumerate(full_path):
        same = [set(f["sensor_path"][i]) == set(final) for f in folds]
        rows.append(
            {
                "curve": CURVE_SENSORS,
                "n_features": len(sensor_columns(layout, final)),
                "n_sensors": len(final),
                "sensors": SENSOR_SEPARATOR.join(final),
                **_stats(scores[i]),
                "stability": float(np.mean(same)),
                **_fold_columns(scores[i]),
            }
        )
    return pd.DataFrame(rows)


def _stats(scores: np.ndarray) -> dict[str, float]:
    std = float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
    return {
        "mean_score": float(np.mean(scores)),
        "std_score": std,
        "sem_score": std / np.sqrt(len(scores)),
    }


def _fold_columns(scores: np.ndarray) -> dict[str, float]:
    return {f"{FOLD_PREFIX}{i + 1}": float(s) for i, s in enumerate(scores)}


def _mark_choices(curve: pd.DataFrame) -> pd.DataFrame:
    """Flag the best row and the one-standard-error choice of each curve."""
    curve["best"] = False
    curve["choice"] = False
    for name, size in ((CURVE_TOP_K, "n_features"), (CURVE_SENSORS, "n_sensors")):
        rows = curve[curve["curve"] == name]
        if rows.empty:
            continue
        best = rows["mean_score"].idxmax()
        bar = rows.at[best, "mean_score"] - rows.at[best, "sem_score"]
        within = rows[rows["mean_score"] >= bar - 1e-12]
        choice = within[size].astype(int).idxmin()
        curve.loc[best, "best"] = True
        curve.loc[choice, "choice"] = True
    order = [c for c in curve.columns if not c.startswith(FOLD_PREFIX)]
    order = [c for c in order if c not in ("best", "choice")] + ["best", "choice"]
    return curve[order + [c for c in curve.columns if c.startswith(FOLD_PREFIX)]]


def _check_grid(k_grid: Sequence[int] | None, n_features: int) -> list[int]:
    if k_grid is None:
        return default_k_grid(n_features)
    grid = set()
    for k in k_grid:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n_features:
            raise RefineError(f"every k must be an integer from 1 to {n_features}, got {k!r}")
        grid.add(int(k))
    return sorted(grid | {n_features})


def _folds(
    cv: Any,
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    participants: np.ndarray | None,
    random_state: int | None,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    n_groups = None if participants is None else len(np.unique(participants))
    if isinstance(cv, str):
        if cv.lower() != "logo":
            raise RefineError(f"cv must be a number of folds or 'logo', got {cv!r}")
        if participants is None:
            raise RefineError("cv='logo' (leave one participant out) needs participant ids")
        splitter: Any = LeaveOneGroupOut()
        text = f"leave one participant out, {n_groups} folds"
    elif isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        if cv < 2:
            raise RefineError(f"cv needs at least 2 folds, got {cv}")
        if participants is not None and n_groups is not None:
            if n_groups < 2:
                raise RefineError("grouped cross-validation needs at least 2 participants")
            n = min(int(cv), n_groups)
            splitter = GroupKFold(n_splits=n)
            text = f"GroupKFold, {n} folds by participant"
        elif is_classifier(estimator):
            splitter = StratifiedKFold(n_splits=int(cv), shuffle=True, random_state=random_state)
            text = f"StratifiedKFold, {int(cv)} folds"
        else:
            splitter = KFold(n_splits=int(cv), shuffle=True, random_state=random_state)
            text = f"KFold, {int(cv)} folds"
    elif hasattr(cv, "split"):
        splitter = cv
        text = type(cv).__name__
    else:
        splits = [(np.asarray(a), np.asarray(b)) for a, b in cv]
        return _check_splits(splits), f"{len(splits)} given splits"
    try:
        splits = list(splitter.split(X, y, participants))
    except ValueError as exc:
        raise RefineError(f"cannot make the folds: {exc}") from None
    return _check_splits(splits), text


def _check_splits(splits: list[tuple[np.ndarray, np.ndarray]]) -> list:
    if len(splits) < 2:
        raise RefineError(
            f"refine needs at least 2 folds for a standard error; got {len(splits)} split(s)"
        )
    return splits


def _metric_name(scoring: Any, estimator: Any = None) -> str:
    if isinstance(scoring, str):
        return scoring
    if scoring is None:
        if is_classifier(estimator):
            return "accuracy"
        return "r2" if is_regressor(estimator) else "score"
    return getattr(getattr(scoring, "_score_func", scoring), "__name__", "score")


def write_matrix(
    matrix: FeatureMatrix,
    columns: Sequence[int],
    path: str | Path,
    layout: SensorLayout | None = None,
) -> Path:
    """Write ``matrix`` reduced to ``columns`` atomically, in the format of ``path``'s suffix.

    ``.csv``/``.parquet``: feature columns by name, then the label, then ``participant``.
    ``.npz``: arrays ``X``, ``y``, ``feature_names`` (and ``participants``). ``.npy``: when
    ``layout`` is given and the columns are exactly its features, the original LEAP layout
    (features, label, participant id) readable with that layout; otherwise features then
    label (a plain ``.npy`` cannot carry feature names or participant ids).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MATRIX_SUFFIXES:
        raise RefineError(
            f"cannot write a matrix as {path.name}; use one of {', '.join(MATRIX_SUFFIXES)}"
        )
    columns = list(columns)
    if not columns:
        raise RefineError("no columns to write: the reduced matrix would be empty")
    X = matrix.X[:, columns]
    names = [matrix.feature_names[j] for j in columns]
    with atomic_path(path) as tmp:
        if suffix in (".csv", ".parquet"):
            frame = pd.DataFrame(X, columns=names)
            frame[matrix.label_name] = matrix.y
            if matrix.participants is not None:
                frame["participant"] = matrix.participants
            if suffix == ".csv":
                frame.to_csv(tmp, index=False, float_format="%.17g")
            else:
                frame.to_parquet(tmp, index=False)
        elif suffix == ".npz":
            arrays: dict[str, np.ndarray] = {
                "X": X,
                "y": _plain(matrix.y),
                "feature_names": np.asarray(names, dtype=str),
            }
            if matrix.participants is not None:
                arrays["participants"] = _plain(matrix.participants)
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
        else:
            full_layout = layout is not None and names == list(layout.feature_names)
            if full_layout and matrix.participants is not None:
                array = np.empty((X.shape[0], X.shape[1] + 2), dtype=object)
                array[:, :-2] = X
                array[:, -2] = matrix.y
                array[:, -1] = matrix.participants
            elif matrix.y.dtype.kind in "biuf":
                array = np.column_stack([X, matrix.y.astype(np.float64)])
            else:
                array = np.empty((X.shape[0], X.shape[1] + 1), dtype=object)
                array[:, :-1] = X
                array[:, -1] = matrix.y
            with open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=array.dtype == object)
    return path


def _plain(values: np.ndarray) -> np.ndarray:
    """An array ``np.load(allow_pickle=False)`` can read back: no object dtype."""
    values = np.asarray(values)
    return values.astype(str) if values.dtype == object else values
