"""The contracts of plugin components, and the data they exchange.

Plugins need not inherit from anything here: any object with these attributes works
(:class:`typing.Protocol`). The built-ins in :mod:`leap.plugins` are examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from leap.data.layout import SensorLayout
from leap.data.result import ImportanceResult


@dataclass
class FeatureMatrix:
    """A feature matrix as read from a file.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,)
    feature_names : list of str
    participants : ndarray of shape (n_samples,) or None
        Participant (subject) id per row, where the file carries one.
    label_name : str
    names_from_file : bool
        Whether ``feature_names`` were read from the file (a CSV header) rather than
        made up (``.npy`` has no names); only real names are compared with a model's
        ``feature_names_in_``.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    participants: np.ndarray | None = None
    label_name: str = "label"
    names_from_file: bool = True

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return self.X.shape[1]


class MethodScores(NamedTuple):
    """What an importance method returns per metric.

    ``importances`` has shape (n_groups, n_repeats): the decrease in score when each
    group (by default each column) is disturbed; ``baseline`` is the undisturbed score.

    The optional fields feed the tests of ``leap.data.stats`` (all ``None`` when the method
    cannot give them, e.g. for a scorer that is not a mean over rows):
    ``row_differences`` has shape (n_groups, n_rows): per row of the data used, the row's
    share of the undisturbed score minus its share of the disturbed one, averaged over
    repeats (its weighted mean is the group's mean importance); ``rows`` are the indices
    of those rows in the ``X`` given (``None``: all rows, in order); ``measurable`` is
    false for a group whose columns are all constant over those rows.
    """

    baseline: float | None
    importances: np.ndarray
    row_differences: np.ndarray | None = None
    rows: np.ndarray | None = None
    measurable: np.ndarray | None = None


@runtime_checkable
class ModelLoader(Protocol):
    """Loads a fitted model from a file."""

    name: str
    suffixes: tuple[str, ...]

    def load(self, path: Path) -> Any:
        """Return the fitted estimator stored at ``path``."""


@runtime_checkable
class MatrixReader(Protocol):
    """Reads a feature matrix and its label (and participant ids) from a file."""

    name: str
    suffixes: tuple[str, ...]

    def read(
        self, path: Path, *, label: str | int, layout: SensorLayout, participant: str | None
    ) -> FeatureMatrix:
        """Return the matrix at ``path``; ``label`` is a column name or index."""


@runtime_checkable
class ImportanceMethod(Protocol):
    """Computes importances of columns, or of groups of columns, for a fitted estimator."""

    name: str

    def compute(
        self,
        estimator: Any,
        X: Any,
        y: Any,
        *,
        groups: Sequence[Sequence[int]] | None,
        scoring: Any,
        n_repeats: int,
        random_state: Any,
        sample_weight: np.ndarray | None,
        max_samples: float | int,
        n_jobs: int | None,
        progress: bool,
    ) -> dict[str, MethodScores]:
        """Return one :class:`MethodScores` per metric name.

        ``groups`` lists the column indices disturbed together (``None``: each column alone).
        """


@runtime_checkable
class Renderer(Protocol):
    """Draws an importance result into a file (format chosen by the path's suffix)."""

    name: str
    suffixes: tuple[str, ...]

    def render(
        self, result: ImportanceResult, path: Path | None, *, title: str, **options: Any
    ) -> Any:
        """Draw ``result``; save to ``path`` when given; return the figure (or document).

        ``options`` are renderer-specific keywords (e.g. the heatmap's ``aggregate``).
        """
