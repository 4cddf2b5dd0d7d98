"""Check a model/matrix pair without running the analysis: ``leap doctor MODEL MATRIX``.

:func:`diagnose` runs every check the analysis would run (loader, reader, label, classes,
width against the layout and the model, feature names, scorer) and, when they pass,
scores the unpermuted matrix once. It collects every problem instead of stopping at the
first, so a user can fix them all in one go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from leap import checks
from leap.components import FeatureMatrix
from leap.data.layout import SensorLayout
from leap.engine import Engine, get_engine, model_input
from leap.errors import LeapError, one_line


@dataclass(frozen=True)
class Finding:
    """One check: its topic (``model``, ``matrix``, ``width`` …), outcome and message."""

    topic: str
    ok: bool
    message: str

    def line(self) -> str:
        """The finding as one line of the ``leap doctor`` report."""
        return f"{'ok' if self.ok else 'PROBLEM':<8} {self.topic:<8} {self.message}"


@dataclass
class Diagnosis:
    """Everything :func:`diagnose` found, in the order it checked."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        """The failed checks."""
        return [f for f in self.findings if not f.ok]

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.problems

    def summary(self) -> str:
        """One closing line: OK, or how many problems were found."""
        if self.ok:
            return "OK: no problems found; `leap analyze` should run on this pair."
        n = len(self.problems)
        return f"{n} problem{'s' if n > 1 else ''} found; fix {'them' if n > 1 else 'it'} first."

    def lines(self) -> list[str]:
        """The report: one line per finding, then the summary."""
        return [f.line() for f in self.findings] + [self.summary()]

    def _run(self, topic: str, check: Callable[[], str | None]) -> bool:
        try:
            message = check()
        except LeapError as exc:
            self.findings.append(Finding(topic, False, str(exc)))
            return False
        if message:
            self.findings.append(Finding(topic, True, message))
        return True


def diagnose(
    model_path: str | Path,
    feature_matrix: str | Path,
    *,
    label: str | int = "label",
    layout: SensorLayout | None = None,
    scoring: str | list[str] | None = None,
    loader: str | None = None,
    reader: str | None = None,
    participant: str | None = None,
    expect_sha256: str | None = None,
    trust: tuple[str, ...] = (),
    header: bool | None = None,
    max_cells: int | None = None,
    engine: Engine | None = None,
) -> Diagnosis:
    """Check that ``model_path`` and ``feature_matrix`` can be analysed together.

    Loading the model unpickles it (which runs code from the file, as the analysis
    would); pass ``expect_sha256`` to refuse an unexpected file first. Nothing is written.

    Returns
    -------
    Diagnosis
        Every finding; ``Diagnosis.ok`` is False when any check failed.
    """
    engine = engine or get_engine()
    layout = layout or SensorLayout()
    report = Diagnosis()
    loaded: dict[str, Any] = {}

    def load() -> str:
        model = loaded["model"] = engine.load_model(model_path, loader, expect_sha256, trust=trust)
        return f"{model_path}: {_describe_model(model)}" + (
            " (SHA-256 as expected)" if expect_sha256 else ""
        )

    def read() -> str:
        matrix = loaded["matrix"] = engine.read_matrix(
            feature_matrix, label, reader, layout, participant, header=header, max_cells=max_cells
        )
        return f"{feature_matrix}: {_describe_matrix(matrix)}"

    report._run("model", load)
    report._run("matrix", read)
    model, matrix = loaded.get("model"), loaded.get("matrix")
    if matrix is not None:
        report._run("width", lambda: _width(matrix, layout, model))
    if model is not None and matrix is not None:
        report._run("names", lambda: _names(matrix, model))
        report._run("label", lambda: _label(model, matrix, scoring))
    if model is not None:
        y = matrix.y if matrix is not None else None
        report._run("scoring", lambda: _scoring(model, scoring, y))
    if model is not None and matrix is not None and report.ok:
        report._run("trial", lambda: _trial(model, matrix, scoring))
    return report


def _describe_model(model: Any) -> str:
    parts = [checks.model_kind(model)]
    n_in = getattr(model, "n_features_in_", None)
    if n_in is not None:
        parts.append(f"fitted on {n_in} features")
    classes = getattr(model, "classes_", None)
    if classes is not None:
        parts.append(f"classes {checks._listing(np.asarray(classes).tolist())}")
    return ", ".join(parts)


def _describe_matrix(matrix: FeatureMatrix) -> str:
    n_rows, n_cols = matrix.X.shape
    text = f"{n_rows} rows × {n_cols} feature columns, label {matrix.label_name!r}"
    if matrix.participants is not None:
        text += f", {len(np.unique(matrix.participants.astype(str)))} participants"
    return text


def _width(matrix: FeatureMatrix, layout: SensorLayout, model: Any) -> str:
    checks.check_width(matrix.n_features, layout, model)
    n_model = getattr(model, "n_features_in_", None)
    model_part = f" = the model's {n_model}" if n_model is not None else ""
    return (
        f"{matrix.n_features} feature columns = the layout's {layout.n_features} "
        f"({layout.describe()}){model_part}"
    )


def _names(matrix: FeatureMatrix, model: Any) -> str:
    checks.check_feature_names(matrix, model)
    if getattr(model, "feature_names_in_", None) is None:
        return "not compared: the model was fitted without feature names"
    if not matrix.names_from_file:
        return "not compared: the file has no column names (the model's are used in order)"
    return "the column names equal the model's feature_names_in_"


def _label(model: Any, matrix: FeatureMatrix, scoring: Any) -> str:
    checks.check_label(model, matrix.y, matrix.label_name, scoring)
    values, counts = np.unique(matrix.y.astype(str), return_counts=True)
    if len(values) > 6:
        return f"{matrix.label_name!r} has {len(values)} distinct values"
    shown = ", ".join(f"{v} ({c} rows)" for v, c in zip(values, counts, strict=True))
    return f"{matrix.label_name!r} values: {shown}"


def _scoring(model: Any, scoring: Any, y: np.ndarray | None) -> str:
    checks.check_scoring(model, scoring, y)
    if scoring is None:
        task = checks.model_task(model)
        default = {"classifier": "accuracy", "regressor": "r2"}.get(task) if task else None
        return f"the model's own score() of {type(model).__name__}" + (
            f" ({default})" if default else ""
        )
    return f"{scoring} fits {type(model).__name__}"


def _trial(model: Any, matrix: FeatureMatrix, scoring: Any) -> str:
    """Score the unpermuted matrix once: the first thing the analysis does."""
    from sklearn.metrics import check_scoring

    try:
        scorer = check_scoring(model, scoring=scoring)
        score = scorer(model, model_input(model, matrix), matrix.y)
    except Exception as exc:  # whatever the model raises, report it as a problem
        raise LeapError(
            f"scoring the unpermuted matrix failed: {type(exc).__name__}: {one_line(exc)[:300]}"
        ) from exc
    if isinstance(score, dict):
        shown = ", ".join(f"{k} = {v:.4g}" for k, v in score.items())
    else:
        shown = f"{scoring or 'score'} = {float(score):.4g}"
    return f"baseline {shown} on {matrix.X.shape[0]} rows"
