"""The contracts of plugin components, and the data they exchange.

Plugins need not inherit from anything here: any object with these attributes works
(:class:`typing.Protocol`). The built-ins in :mod:`leap.builtins` are examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from leap.data.layout import SensorLayout
from leap.errors import ConfigError

if TYPE_CHECKING:
    from leap.data.result import ImportanceResult
    from leap.data.stats import UnitMoments


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


@dataclass(frozen=True)
class MethodSettings:
    """The settings of one importance-method run, passed to the method as keywords.

    Attributes
    ----------
    scoring : str, callable, list, tuple, dict or None
        A scikit-learn scorer name, a scorer, several of them, or ``None`` (the model's
        own ``score``).
    n_repeats : int
        Permutations per feature or group.
    random_state : int, RandomState or None
        Seed, as scikit-learn's ``random_state``.
    sample_weight : array-like or None
        Row weights for the scorer.
    max_samples : float or int
        Fraction (at most 1.0) or number of rows drawn for each repeat.
    n_jobs : int or None
        Parallel jobs (``-1``: all cores).
    progress : bool or str
        Show a progress bar; the engine passes what the bar counts as a label
        (``"features"``, ``"sensor pairs"``, ``"sensors"``, ``"groups"``), which is true
        as a bool, so methods that only test it keep working.
    """

    scoring: Any = None
    n_repeats: int = 5
    random_state: Any = None
    sample_weight: Any = None
    max_samples: float | int = 1.0
    n_jobs: int | None = None
    progress: bool | str = False

    def replace(self, **changes: Any) -> MethodSettings:
        """A copy with ``changes``; :class:`ConfigError` names an unknown setting."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(
                f"unknown method setting {unknown[0]!r}; known: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def method_keywords(self) -> dict[str, Any]:
        """The keywords a method's ``compute`` receives (besides ``groups``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def several_metrics(self) -> bool:
        """Whether ``scoring`` names several metrics (then results come as a dict)."""
        return isinstance(self.scoring, list | tuple | set | dict)

    def describe(self) -> dict[str, Any]:
        """The settings recorded with a result (plain values only)."""
        seed = self.random_state
        return {
            "n_repeats": self.n_repeats,
            "random_state": seed if isinstance(seed, int | None) else "object",
            "max_samples": self.max_samples,
        }


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
    ``unit_moments`` (a :class:`leap.data.stats.UnitMoments`) may stand in for
    ``row_differences``: their mean and spread over the test's units, already formed with
    the run's weights, and over participants for a method that declares ``participants``
    among its ``options`` (the engine then passes the ids). It is used when given.
    """

    baseline: float | None
    importances: np.ndarray
    row_differences: np.ndarray | None = None
    rows: np.ndarray | None = None
    measurable: np.ndarray | None = None
    unit_moments: UnitMoments | None = None


@runtime_checkable
class ModelLoader(Protocol):
    """Loads a fitted model from a file.

    A loader may declare ``options``: the keywords its ``load`` accepts besides the path;
    the only one the engine passes today is ``trusted`` (types a user trusts in a file,
    for loaders that check the types they build, such as leap-skops'). A loader that reads
    files beside the model defines ``companion_files(path) -> list[Path]``, so that a
    SHA-256-verified private copy of the model gets them too.
    """

    name: str
    suffixes: tuple[str, ...]

    def load(self, path: Path) -> Any:
        """Return the fitted estimator stored at ``path``."""


@runtime_checkable
class MatrixReader(Protocol):
    """Reads a feature matrix and its label (and participant ids) from a file.

    A reader may declare ``options``, the keywords its ``read`` accepts besides these:
    ``header`` (``False``: the first row is data) and ``max_cells`` (a cap on rows ×
    columns); the engine passes them only to readers that declare them.
    """

    name: str
    suffixes: tuple[str, ...]

    def read(
        self, path: Path, *, label: str | int, layout: SensorLayout, participant: str | None
    ) -> FeatureMatrix:
        """Return the matrix at ``path``; ``label`` is a column name or index."""


@runtime_checkable
class ImportanceMethod(Protocol):
    """Computes importances of columns, or of groups of columns, for a fitted estimator.

    A method may declare ``quantity``: what one importance value is, in words (e.g.
    ``"mean |SHAP|"``); labels then say that instead of "drop in the score when permuted".
    It may declare ``options``, keywords its ``compute`` accepts besides these; the only
    one the engine passes today is ``participants`` (one id per row of ``X``, or ``None``).
    """

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
    """Draws an importance result into a file (format chosen by the path's suffix).

    ``options`` declares the keywords ``render`` accepts besides ``title``; the engine
    passes only those of the run's settings (``aggregate``, ``k``, ``figures``, ...). A
    renderer may also define ``applies(result) -> bool`` (default: always), which decides
    whether ``--figures all`` includes it for a result.
    """

    name: str
    suffixes: tuple[str, ...]
    options: tuple[str, ...]

    def render(
        self, result: ImportanceResult, path: Path | None, *, title: str, **options: Any
    ) -> Any:
        """Draw ``result``; save to ``path`` when given; return the figure (or document)."""
