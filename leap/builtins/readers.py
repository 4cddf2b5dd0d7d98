"""Built-in feature-matrix readers: ``.npy`` (the original LEAP layout), ``.npz``,
``.csv`` and ``.parquet``. None of them runs code from the file."""

from __future__ import annotations

import csv
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from leap.components import FeatureMatrix
from leap.data.layout import SensorLayout
from leap.errors import InputFileError, MatrixError, one_line
from leap.hookspecs import hookimpl

PARTICIPANT_COLUMN = "participant"
LABEL_COLUMN = "label"


class NpyReader:
    """``.npy`` arrays: the original LEAP layout or a plain numeric matrix.

    Columns are named by width: ``layout features + label + participant`` (the original
    LEAP file; any object array is read this way), ``layout features + label``, or
    ``x0 … x{n-2}, label`` otherwise. Object
    arrays are decoded with a restricted unpickler that only accepts numpy arrays of
    plain Python and numpy scalars, so no code from the file can run.
    """

    name = "npy"
    suffixes = (".npy",)

    def read(
        self, path: Path, *, label: str | int, layout: SensorLayout, participant: str | None
    ) -> FeatureMatrix:
        array = load_npy(path)
        if array.ndim != 2:
            raise MatrixError(f"{path} holds a {array.ndim}-d array; a 2-d matrix is needed")
        width = array.shape[1]
        if width < 2 or array.shape[0] == 0:
            raise MatrixError(
                f"{path} holds a {array.shape[0]} × {width} array; a matrix needs at least one "
                f"row, one feature column and the label column"
            )
        # Object arrays come from the LEAP pipeline (features, label, participant id).
        if width == layout.n_features + 2 or (array.dtype == object and width > 2):
            names = [*_feature_names(layout, width - 2), LABEL_COLUMN, PARTICIPANT_COLUMN]
        elif width == layout.n_features + 1:
            names = [*layout.feature_names, LABEL_COLUMN]
        else:
            names = [*(f"x{i}" for i in range(width - 1)), LABEL_COLUMN]
        frame = pd.DataFrame(array, columns=names)
        matrix = split_frame(frame, path, label=label, participant=participant)
        matrix.names_from_file = False
        return matrix


class NpzReader:
    """``.npz`` archives with arrays ``X`` and ``y``; optional ``feature_names`` and
    ``participants`` (or ``groups``)."""

    name = "npz"
    suffixes = (".npz",)

    def read(
        self, path: Path, *, label: str | int, layout: SensorLayout, participant: str | None
    ) -> FeatureMatrix:
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise InputFileError(
                f"{path} is not a readable .npz archive: {one_line(exc)}"
            ) from None
        if not isinstance(label, str):
            raise MatrixError(
                f"label {label!r}: in an .npz the label is chosen by array name, not position; "
                f"arrays: {', '.join(sorted(arrays)) or 'none'}"
            )
        label_key = "y" if label == LABEL_COLUMN else label
        missing = [k for k in ("X", label_key) if k not in arrays]
        if missing:
            raise MatrixError(
                f"{path} lacks the array(s) {', '.join(missing)}; found: "
                f"{', '.join(sorted(arrays)) or 'none'} (an .npz needs X and y, or the "
                f"label array named by --label)"
            )
        X, y = arrays["X"], arrays[label_key]
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise MatrixError(
                f"{path}: X must be 2-d and y 1-d with as many rows, got X{X.shape} y{y.shape}"
            )
        if X.shape[1] == 0:
            raise MatrixError(f"{path}: X has no feature columns (shape {X.shape})")
        names = arrays.get("feature_names")
        if names is not None and names.shape != (X.shape[1],):
            raise MatrixError(
                f"{path}: feature_names must hold one name per column of X ({X.shape[1]}), "
                f"got an array of shape {names.shape}"
            )
        if names is None:
            names = layout.feature_names if X.shape[1] == layout.n_features else None
        names = (
            [str(n) for n in names] if names is not None else [f"x{i}" for i in range(X.shape[1])]
        )
        groups = arrays.get("participants", arrays.get("groups"))
        if groups is not None and groups.shape != (len(X),):
            raise MatrixError(
                f"{path}: participant ids must hold one id per row of X ({len(X)}), got an "
                f"array of shape {groups.shape}"
            )
        frame = pd.DataFrame(X, columns=names)
        frame[LABEL_COLUMN] = y
        if groups is not None:
            frame[PARTICIPANT_COLUMN] = groups
        matrix = split_frame(frame, path, label=LABEL_COLUMN, participant=participant)
        matrix.names_from_file = "feature_names" in arrays
        if label_key != "y":
            matrix.label_name = label_key
        return matrix


class CsvReader:
    """``.csv`` with a header row; the label (and participant) chosen by column name."""

    name = "csv"
    suffixes = (".csv",)

    def read(
        self, path: Path, *, label: str | int, layout: SensorLayout, participant: str | None
    ) -> FeatureMatrix:
        try:
            frame = pd.read_csv(path, encoding="utf-8", **_EXACT_FLOATS)
        except pd.errors.EmptyDataError:
            raise InputFileError(f"{path} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, csv.Error) as exc:
            raise InputFileError(f"{path} is not a readable CSV: {one_line(exc)}") from None
        _check_csv_complete(path, frame)
        return split_frame(frame, path, label=label, participant=participant)


# pandas < 3 parses floats with a fast routine that can miss the nearest float64 by one
# unit; "round_trip" gives the exact number (pandas 3 is exact by default).
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


def _check_csv_complete(path: Path, frame: pd.DataFrame) -> None:
    """Raise :class:`InputFileError` when the last row was cut short (no final newline)."""
    if frame.shape[0] == 0 or not frame.iloc[-1].isna().any():
        return
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 1))
        if fh.read(1) in (b"\n", b"\r", b""):
            return
    n_values = int(frame.iloc[-1].notna().sum())
    raise InputFileError(
        f"{path} looks truncated: its last line (row {frame.shape[0] - 1}) has no line end "
        f"and only {n_values} of {frame.shape[1]} values; was the file fully written?"
    )


class ParquetReader:
    """``.parquet`` tables; the label (and participant) chosen by column name."""

    name = "parquet"
    suffixes = (".parquet", ".pq")

    def read(
        self, path: Path, *, label: str | int, layout: SensorLayout, participant: str | None
    ) -> FeatureMatrix:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputFileError(
                f"{path} is not a readable Parquet file: {one_line(exc)}"
            ) from None
        return split_frame(frame, path, label=label, participant=participant)


def _feature_names(layout: SensorLayout, width: int) -> list[str]:
    return layout.feature_names if width == layout.n_features else [f"x{i}" for i in range(width)]


def split_frame(
    frame: pd.DataFrame, path: Path, *, label: str | int, participant: str | None
) -> FeatureMatrix:
    """Split a table into features, label and participant ids, checking every value.

    ``label`` is a column name or a (possibly negative) position; ``participant`` names
    the id column (default ``participant`` when the table has one).
    """
    if frame.shape[0] == 0:
        raise MatrixError(f"{path} has no rows")
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise MatrixError(f"{path} has duplicate column names: {', '.join(dupes[:5])}")
    label_name = _label_column(columns, label, path)
    if participant is not None and participant not in columns:
        raise MatrixError(
            f"participant column {participant!r} not found in {path}; "
            f"available: {_listing(columns)}"
        )
    part_name = participant or (PARTICIPANT_COLUMN if PARTICIPANT_COLUMN in columns else None)
    if part_name == label_name:
        part_name = None
    feature_cols = [c for c in columns if c not in (label_name, part_name)]
    if not feature_cols:
        raise MatrixError(f"{path} has no feature columns besides the label")
    X = _numeric(frame[feature_cols], path)
    y = _label_values(frame[label_name].to_numpy(), path, label_name)
    participants = frame[part_name].to_numpy() if part_name else None
    return FeatureMatrix(X, y, feature_cols, participants, label_name)


def load_npy(path: Path) -> np.ndarray:
    """Load an ``.npy`` file; object arrays through a restricted unpickler."""
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = header(fh)
        except Exception as exc:  # numpy parses the header text: any failure means a bad file
            raise InputFileError(f"{path} is not a valid .npy file: {one_line(exc)}") from None
        if not dtype.hasobject:
            # Compare sizes before numpy allocates what a damaged header may promise.
            needed = math.prod(shape) * dtype.itemsize
            available = path.stat().st_size - fh.tell()
            if needed > available:
                raise InputFileError(
                    f"{path} is truncated: its header promises a {shape} array of {dtype} "
                    f"({needed} bytes) but only {available} bytes follow; was the file fully "
                    f"written?"
                )
            fh.seek(0)
            try:
                return np.load(fh, allow_pickle=False)
            except (ValueError, EOFError, OSError) as exc:
                raise InputFileError(
                    f"{path} is truncated or corrupt (expected shape {shape}): {one_line(exc)}"
                ) from None
        try:
            array = _SafeArrayUnpickler(fh).load()
        except pickle.UnpicklingError as exc:
            raise InputFileError(f"{path}: {exc}") from None
        except Exception as exc:
            raise InputFileError(f"{path} has a corrupt object array: {one_line(exc)}") from None
    if not isinstance(array, np.ndarray):
        raise InputFileError(f"{path} does not hold an array")
    return array


class _SafeArrayUnpickler(pickle.Unpickler):
    """Accepts only what ``np.save`` writes for an object array of plain values."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from an object array: only numbers and "
            f"strings are accepted in a feature matrix"
        )


def _label_column(columns: list[str], label: str | int, path: Path) -> str:
    if isinstance(label, int) and not isinstance(label, bool):
        if not -len(columns) <= label < len(columns):
            raise MatrixError(
                f"label index {label} is out of range for {path}, which has {len(columns)} "
                f"columns (valid: {-len(columns)} to {len(columns) - 1})"
            )
        return columns[label]
    if isinstance(label, str) and label.lstrip("-").isdigit() and label not in columns:
        return _label_column(columns, int(label), path)
    if label not in columns:
        raise MatrixError(f"label {label!r} not found in {path}; available: {_listing(columns)}")
    return str(label)


def _numeric(features: pd.DataFrame, path: Path) -> np.ndarray:
    for col in features.columns:
        series = features[col]
        if series.dtype.kind in "biuf" or (
            series.dtype.kind == "O" and pd.api.types.infer_dtype(series) in _NUMERIC_KINDS
        ):
            continue
        bad = ~series.map(_is_number_like).to_numpy(dtype=bool)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise MatrixError(
                f"{path}: feature column {col!r} holds a non-numeric value "
                f"{str(series.iloc[row])[:30]!r} (row {row})"
            )
    try:
        X = features.to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError, OverflowError) as exc:
        raise MatrixError(
            f"{path}: the feature columns cannot be read as numbers: {one_line(exc)}"
        ) from None
    finite = np.isfinite(X)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        names = list(dict.fromkeys(features.columns[c] for c in cols))
        where = sorted(set(rows.tolist()))
        raise MatrixError(
            f"{path}: {len(rows)} NaN or infinite value(s) in column(s) {_listing(names, 3)} "
            f"at row(s) {_listing(where, 6)}; impute or drop them before the analysis"
        )
    return X


# What pandas infers for object columns that hold only real numbers (and missing values).
_NUMERIC_KINDS = {"floating", "integer", "mixed-integer-float", "boolean", "empty"}


def _is_number_like(value: Any) -> bool:
    """A real number, a missing value (reported later) or a string holding a number."""
    if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return value is None or value is pd.NA


def _label_values(values: np.ndarray, path: Path, name: str) -> np.ndarray:
    if values.dtype == object:
        numeric = pd.to_numeric(pd.Series(values), errors="coerce")
        if numeric.notna().all():
            values = numeric.to_numpy()
            if np.all(values == np.round(values)):
                values = values.astype(np.int64)
        else:
            values = values.astype(str)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise MatrixError(f"{path}: the label column {name!r} holds NaN or infinite values")
    return values


def _listing(names: list[str], limit: int = 12) -> str:
    """Comma list of ``names``; long lists keep their head and tail (labels sit at the end)."""
    names = [str(n) for n in names]
    if len(names) <= limit:
        return ", ".join(names)
    half = limit // 2
    return f"{', '.join(names[:half])}, …, {', '.join(names[-half:])} ({len(names)} in all)"


@hookimpl(trylast=True)
def register_readers(register):
    for reader in (NpyReader(), NpzReader(), CsvReader(), ParquetReader()):
        register(reader)
