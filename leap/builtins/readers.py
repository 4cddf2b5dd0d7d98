"""Built-in feature-matrix readers: ``.npy`` (the original LEAP layout), ``.npz``,
``.csv`` and ``.parquet``. None of them runs code from the file.

Every reader takes two optional keywords besides the reader protocol's: ``max_cells``
(the cap on rows × columns, default :data:`DEFAULT_MAX_CELLS` or ``$LEAP_MAX_CELLS``),
checked from the file's header before anything large is allocated; and, for CSV,
``header`` (``None``: the first row holds names and must not look like data; ``True``:
it holds names, whatever they look like; ``False``: there is no header row).
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from leap.builtins.safe_pickle import UnsafePickleError, load_object_array
from leap.components import FeatureMatrix
from leap.data.layout import SensorLayout
from leap.errors import ConfigError, InputFileError, MatrixError, one_line
from leap.hookspecs import hookimpl

if TYPE_CHECKING:
    import pandas as pd

PARTICIPANT_COLUMN = "participant"
LABEL_COLUMN = "label"
#: Most cells (rows × columns) a reader reads unless told otherwise: 800 MB of float64.
DEFAULT_MAX_CELLS = 100_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_CELLS`.
MAX_CELLS_ENV = "LEAP_MAX_CELLS"
#: An object array's pickle (or a Parquet table in memory) may take this many bytes per
#: cell on average, plus :data:`SLACK_BYTES`; more means a bomb or a lying header.
BYTES_PER_CELL = 64
SLACK_BYTES = 2**20
#: Longest text label accepted (class names are short; see ``_label_values``).
MAX_LABEL_CHARS = 256
#: dtype kinds a matrix file may hold: numbers, text, bytes, dates, objects (pickled).
_DTYPE_KINDS = frozenset("biufcUSMmO")


class NpyReader:
    """``.npy`` arrays: the original LEAP layout or a plain numeric matrix.

    Columns are named by width: ``layout features + label + participant`` (the original
    LEAP file; any object array is read this way), ``layout features + label``, or
    ``x0 … x{n-2}, label`` otherwise. The header is checked before anything is allocated
    (:func:`read_npy_stream`); object arrays are decoded by
    :mod:`leap.builtins.safe_pickle`, which accepts plain values only and never unpickles.
    """

    name = "npy"
    suffixes = (".npy",)
    options = ("max_cells",)

    def read(
        self,
        path: Path,
        *,
        label: str | int,
        layout: SensorLayout,
        participant: str | None,
        max_cells: int | None = None,
    ) -> FeatureMatrix:
        import pandas as pd

        array = load_npy(path, max_cells=max_cells)
        if array.ndim != 2:
            raise MatrixError(f"{path} holds a {array.ndim}-d array; a 2-d matrix is needed")
        width = array.shape[1]
        if width < 2 or array.shape[0] == 0:
            raise MatrixError(
                f"{path} holds a {array.shape[0]} × {width} array; a matrix needs at least one "
                f"row, one feature column and the label column"
            )
        # Object arrays come from the LEAP pipeline (features, label, participant id).
        names = _positional_names(layout, width, with_participant=array.dtype == object)
        try:
            frame = pd.DataFrame(array, columns=names)
        except UnicodeError as exc:  # lone surrogates in a text array (pyarrow strings)
            reason = exc.reason
            raise MatrixError(f"{path} holds text that is not valid Unicode ({reason})") from None
        matrix = split_frame(frame, path, label=label, participant=participant)
        matrix.names_from_file = False
        return matrix


def _positional_names(layout: SensorLayout, width: int, with_participant: bool) -> list[str]:
    """Column names for a table without names: features, label (and participant id)."""
    if width == layout.n_features + 2 or (with_participant and width > 2):
        return [*_feature_names(layout, width - 2), LABEL_COLUMN, PARTICIPANT_COLUMN]
    if width == layout.n_features + 1:
        return [*layout.feature_names, LABEL_COLUMN]
    return [*(f"x{i}" for i in range(width - 1)), LABEL_COLUMN]


class NpzReader:
    """``.npz`` archives with arrays ``X`` and ``y``; optional ``feature_names`` and
    ``participants`` (or ``groups``).

    Only the members needed are read, each through the same checks as an ``.npy`` file
    (object members through :mod:`leap.builtins.safe_pickle`); a member's header is
    compared with the size the archive declares before its data is decompressed.
    """

    name = "npz"
    suffixes = (".npz",)
    options = ("max_cells",)

    def read(
        self,
        path: Path,
        *,
        label: str | int,
        layout: SensorLayout,
        participant: str | None,
        max_cells: int | None = None,
    ) -> FeatureMatrix:
        import pandas as pd

        limit = max_cells_limit(max_cells)
        try:
            with zipfile.ZipFile(path) as archive:
                members = _npz_members(archive, path)
                names_found = ", ".join(sorted(members)) or "none"
                if not isinstance(label, str):
                    raise MatrixError(
                        f"label {label!r}: in an .npz the label is chosen by array name, not "
                        f"position; arrays: {names_found}"
                    )
                label_key = "y" if label == LABEL_COLUMN else label
                missing = [k for k in ("X", label_key) if k not in members]
                if missing:
                    raise MatrixError(
                        f"{path} lacks the array(s) {', '.join(missing)}; found: {names_found} "
                        f"(an .npz needs X and y, or the label array named by --label)"
                    )
                group_key = next((k for k in ("participants", "groups") if k in members), None)
                arrays = {}
                for key in ("X", label_key, "feature_names", group_key):
                    if key not in members:
                        continue
                    with archive.open(members[key]) as stream:
                        arrays[key] = read_npy_stream(
                            stream, f"{path}[{key}]", size=members[key].file_size, max_cells=limit
                        )
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as exc:
            raise InputFileError(
                f"{path} is not a readable .npz archive: {one_line(exc)}"
            ) from None
        except NotImplementedError as exc:  # a compression method zipfile lacks
            raise InputFileError(f"{path} uses an unsupported compression: {exc}") from None
        X, y = arrays["X"], arrays[label_key]
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise MatrixError(
                f"{path}: X must be 2-d and y 1-d with as many rows, got X{X.shape} y{y.shape}"
            )
        if X.shape[1] == 0 or X.shape[0] == 0:
            raise MatrixError(f"{path}: X has no rows or no feature columns (shape {X.shape})")
        names = arrays.get("feature_names")
        if names is not None and names.shape != (X.shape[1],):
            raise MatrixError(
                f"{path}: feature_names must hold one name per column of X ({X.shape[1]}), "
                f"got an array of shape {names.shape}"
            )
        if names is None:
            names = layout.feature_names if X.shape[1] == layout.n_features else None
        names = (
            [_text(n) for n in names] if names is not None else [f"x{i}" for i in range(X.shape[1])]
        )
        groups = arrays.get(group_key) if group_key else None
        if groups is not None and groups.shape != (len(X),):
            raise MatrixError(
                f"{path}: participant ids must hold one id per row of X ({len(X)}), got an "
                f"array of shape {groups.shape}"
            )
        frame = pd.DataFrame(X, columns=names)
        if frame.shape[1] != X.shape[1]:  # pragma: no cover - pandas keeps every column
            raise MatrixError(f"{path}: X cannot be read as a table")
        frame[LABEL_COLUMN] = y
        if groups is not None:
            frame[PARTICIPANT_COLUMN] = groups
        matrix = split_frame(frame, path, label=LABEL_COLUMN, participant=participant)
        matrix.names_from_file = "feature_names" in arrays
        if label_key != "y":
            matrix.label_name = label_key
        return matrix


def _npz_members(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name (``X.npy`` -> ``X``), refusing repeated names."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if info.is_dir():
            continue
        key = info.filename.removesuffix(".npy")
        if key in members:
            raise InputFileError(f"{path} holds two members named {info.filename!r}")
        members[key] = info
    return members


def _text(value: Any) -> str:
    """A name or id as text: bytes are decoded as UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise MatrixError(f"the name or id {value[:30]!r} is not UTF-8 text") from None
    return str(value)


class CsvReader:
    """``.csv`` with a header row; the label (and participant) chosen by column name.

    The first row is the header. A first row that looks like data (every cell a number,
    or mostly numbers with decimals) is refused, since it would silently become the
    column names and be lost as data: pass ``header=False`` (CLI ``--no-header``) to read
    it as data, the columns then named as in a ``.npy`` (layout features, ``label``,
    ``participant``, or ``x0 …``), or ``header=True`` to keep it as names. Repeated
    column names, NUL bytes (a binary or UTF-16 file) and more than ``max_cells`` cells
    are refused.
    """

    name = "csv"
    suffixes = (".csv",)
    options = ("header", "max_cells")

    def read(
        self,
        path: Path,
        *,
        label: str | int,
        layout: SensorLayout,
        participant: str | None,
        header: bool | None = None,
        max_cells: int | None = None,
    ) -> FeatureMatrix:
        import pandas as pd

        limit = max_cells_limit(max_cells)
        _refuse_nul_bytes(path)
        first = _csv_first_row(path)
        width = len(first)
        if width > limit:
            raise InputFileError(_too_many_cells(path, f"a row of {width:,} columns", limit))
        if header is None:
            _refuse_data_header(path, first)
        if header is not False:
            _refuse_duplicate_names(path, first)
        max_rows = limit // width
        try:
            frame = pd.read_csv(
                path,
                encoding="utf-8",
                header=None if header is False else 0,
                nrows=max_rows + 1,
                **_exact_floats(),
            )
        except pd.errors.EmptyDataError:
            raise InputFileError(f"{path} is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError, csv.Error) as exc:
            raise InputFileError(f"{path} is not a readable CSV: {one_line(exc)}") from None
        if len(frame) > max_rows:
            raise InputFileError(
                _too_many_cells(path, f"more than {max_rows:,} rows of {width:,} columns", limit)
            )
        _check_csv_complete(path, frame)
        if header is False:
            names = _positional_names(layout, frame.shape[1], with_participant=False)
            frame = frame.set_axis(names, axis=1)
        matrix = split_frame(frame, path, label=label, participant=participant)
        matrix.names_from_file = header is not False
        return matrix


def _refuse_nul_bytes(path: Path) -> None:
    with open(path, "rb") as fh:
        offset = 0
        while chunk := fh.read(2**20):
            where = chunk.find(b"\x00")
            if where >= 0:
                raise InputFileError(
                    f"{path} holds a NUL byte (at byte {offset + where}): a binary file, or "
                    f"text saved as UTF-16? Save it as UTF-8 CSV"
                )
            offset += len(chunk)


def _csv_first_row(path: Path) -> list[str]:
    """The first non-blank row's cells as text (BOM removed), split as pandas splits them."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for row in csv.reader(fh):
                if row:
                    return row
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path} is not a readable CSV: {one_line(exc)}") from None
    raise InputFileError(f"{path} is empty")


def looks_like_number(text: str) -> bool:
    """Whether a header cell reads as a number (``nan``/``inf`` words count as names)."""
    word = text.strip().lower().lstrip("+-")
    if word in ("nan", "inf", "infinity", ""):
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _refuse_data_header(path: Path, first: list[str]) -> None:
    numbers = [c for c in first if looks_like_number(c)]
    decimals = [c for c in numbers if not c.strip().lstrip("+-").isdigit()]
    if len(numbers) == len(first) or (2 * len(numbers) > len(first) and decimals):
        example = (decimals or numbers)[0]
        raise MatrixError(
            f"{path}: the first row looks like data, not column names ({len(numbers)} of "
            f"{len(first)} cells are numbers, e.g. {example[:20]!r}); no header? Read it with "
            f"--no-header (header=False) to keep that row as data, or --header (header=True) "
            f"if these really are the names"
        )


def _refuse_duplicate_names(path: Path, names: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise MatrixError(
                f"{path} has the column name {name[:40]!r} twice (columns {seen[name]} and "
                f"{i}); rename one, since a repeated name cannot be told apart"
            )
        seen[name] = i


def _exact_floats() -> dict[str, str]:
    """pandas < 3 parses floats with a fast routine that can miss the nearest float64 by one
    unit; "round_trip" gives the exact number (pandas 3 is exact by default)."""
    import pandas as pd

    return {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}


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
    """``.parquet`` tables; the label (and participant) chosen by column name.

    The row and column counts in the file's metadata are checked against ``max_cells``
    before any data is read, and the table is read in batches whose memory may not exceed
    :data:`BYTES_PER_CELL` per cell (dictionary-encoded text can expand a small file).
    """

    name = "parquet"
    suffixes = (".parquet", ".pq")
    options = ("max_cells",)

    def read(
        self,
        path: Path,
        *,
        label: str | int,
        layout: SensorLayout,
        participant: str | None,
        max_cells: int | None = None,
    ) -> FeatureMatrix:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        limit = max_cells_limit(max_cells)
        try:
            schema = pq.read_schema(path)
            # Text stays dictionary-encoded while read, so a repeated long string is held once.
            text = [
                f.name
                for f in schema
                if pa.types.is_string(f.type)
                or pa.types.is_binary(f.type)
                or pa.types.is_large_string(f.type)
                or pa.types.is_large_binary(f.type)
            ]
            with pq.ParquetFile(path, read_dictionary=text) as table_file:
                meta = table_file.metadata
                cells = meta.num_rows * max(meta.num_columns, 1)
                if cells > limit:
                    raise InputFileError(
                        _too_many_cells(
                            path, f"{meta.num_rows:,} rows × {meta.num_columns:,} columns", limit
                        )
                    )
                budget = BYTES_PER_CELL * cells + SLACK_BYTES
                batches, used = [], 0
                for batch in table_file.iter_batches(batch_size=65536):
                    used += batch.nbytes
                    if used > budget:
                        raise InputFileError(
                            f"{path} expands to more than {budget:,} bytes in memory for "
                            f"{cells:,} cells (over {BYTES_PER_CELL} bytes per cell): a "
                            f"compression bomb, or very long text cells"
                        )
                    batches.append(batch)
                table = pa.Table.from_batches(batches, schema=table_file.schema_arrow)
            frame = table.to_pandas()
            for name in text:  # categories back to plain values: references, not copies
                if name in frame and isinstance(frame[name].dtype, pd.CategoricalDtype):
                    frame[name] = frame[name].astype(object)
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
    participants = _participant_ids(frame[part_name].to_numpy(), path) if part_name else None
    return FeatureMatrix(X, y, feature_cols, participants, label_name)


def _participant_ids(values: np.ndarray, path: Path) -> np.ndarray:
    """Participant ids with bytes decoded as UTF-8, so ``b"p01"`` matches ``"p01"``."""
    if values.dtype.kind == "S" or (
        values.dtype == object and any(isinstance(v, bytes) for v in values)
    ):
        decoded = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            try:
                decoded[i] = value.decode("utf-8") if isinstance(value, bytes) else value
            except UnicodeDecodeError:
                raise MatrixError(
                    f"{path}: the participant id in row {i} ({value[:20]!r}) is not UTF-8 text"
                ) from None
        return decoded
    return values


def max_cells_limit(value: int | None = None) -> int:
    """The cap on cells read: ``value``, else ``$LEAP_MAX_CELLS``, else the default.

    Raises
    ------
    ConfigError
        When the value (or the variable) is not a positive integer.
    """
    where = "max_cells"
    if value is None:
        text = os.environ.get(MAX_CELLS_ENV, "").strip().replace("_", "")
        if not text:
            return DEFAULT_MAX_CELLS
        where = MAX_CELLS_ENV
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(
                f"{MAX_CELLS_ENV}={text[:30]!r} is not a whole number of cells"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{where} must be a positive whole number of cells, got {value!r}")
    return int(value)


def _too_many_cells(where: Any, what: str, limit: int) -> str:
    return (
        f"{where} holds {what}, more cells than the limit of {limit:,} (rows × columns); "
        f"raise it with {MAX_CELLS_ENV} (or the reader's max_cells) if the matrix is real"
    )


def check_matrix_dtype(dtype: np.dtype, where: Any) -> None:
    """Raise :class:`InputFileError` for a dtype a feature matrix cannot have.

    Refused: structured dtypes (fields, object fields included), subarray dtypes, void,
    zero-size items (``|V0``, ``<U0``: any shape costs no bytes, so a tiny file could
    declare an enormous array), metadata, and text wider than :data:`MAX_LABEL_CHARS`.
    """
    if dtype.names is not None or dtype.fields is not None:
        raise InputFileError(f"{where} has a structured dtype (fields); a plain matrix is needed")
    if dtype.subdtype is not None:
        raise InputFileError(f"{where} has a subarray dtype {dtype.str}; a plain matrix is needed")
    if dtype.itemsize == 0:
        raise InputFileError(f"{where} has the zero-size dtype {dtype.str}")
    if dtype.kind not in _DTYPE_KINDS:
        raise InputFileError(f"{where} has dtype {dtype.str}, not numbers or text")
    if dtype.metadata:
        raise InputFileError(f"{where} has a dtype with metadata")
    chars = dtype.itemsize // 4 if dtype.kind == "U" else dtype.itemsize
    if dtype.kind in "US" and chars > (
        MAX_LABEL_CHARS if dtype.kind == "U" else 4 * MAX_LABEL_CHARS
    ):
        # A compressed .npz member could otherwise inflate to cells × a huge width.
        raise InputFileError(
            f"{where} has text cells {chars:,} {'characters' if dtype.kind == 'U' else 'bytes'} "
            f"wide ({dtype.str}); names, labels and ids are at most {MAX_LABEL_CHARS} characters"
        )


def load_npy(path: Path, *, max_cells: int | None = None) -> np.ndarray:
    """Load an ``.npy`` file without trusting it (see :func:`read_npy_stream`)."""
    with open(path, "rb") as fh:
        return read_npy_stream(
            fh, path, size=os.fstat(fh.fileno()).st_size, max_cells=max_cells_limit(max_cells)
        )


def read_npy_stream(fh: IO[bytes], where: Any, *, size: int, max_cells: int) -> np.ndarray:
    """Read one ``.npy`` array from ``fh``, which holds ``size`` bytes in all.

    The header is parsed by numpy (a literal, never evaluated as code); its dtype must
    pass :func:`check_matrix_dtype` and its shape at most ``max_cells`` cells, whose bytes
    must all be present, before anything is allocated. Object arrays are decoded by
    :func:`leap.builtins.safe_pickle.load_object_array`, never by an unpickler.
    """
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(fh)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unknown format version {version}")
        read_header = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(fh)
        start = fh.tell()
    except Exception as exc:  # numpy parses the header text: any failure means a bad file
        raise InputFileError(f"{where} is not a valid .npy file: {one_line(exc)}") from None
    if any(n < 0 for n in shape):
        raise InputFileError(f"{where} declares a negative shape {shape}")
    check_matrix_dtype(dtype, where)
    count = math.prod(shape)
    # max(shape) too: an empty array may still declare dimensions numpy cannot index
    if max(count, *shape, 0) > max_cells:
        raise InputFileError(
            _too_many_cells(where, f"a {shape} array ({count:,} cells)", max_cells)
        )
    available = size - start
    if dtype.hasobject:
        if dtype != np.dtype(object):  # pragma: no cover - fields are refused above
            raise InputFileError(f"{where} has a dtype with object fields")
        if count > available:  # every pickled cell takes at least one byte
            raise InputFileError(
                f"{where} is truncated or lies: its header declares {count:,} object cells but "
                f"only {available:,} bytes follow"
            )
        limit = BYTES_PER_CELL * count + SLACK_BYTES
        data = fh.read(min(available, limit + 1))
        if len(data) > limit:
            raise InputFileError(
                f"{where} has more than {limit:,} bytes of pickle for {count:,} object cells "
                f"(over {BYTES_PER_CELL} bytes per cell)"
            )
        try:
            return load_object_array(data, shape=shape)
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{where}: {exc}") from None
    needed = count * dtype.itemsize
    if needed > available:
        raise InputFileError(
            f"{where} is truncated: its header promises a {shape} array of {dtype} "
            f"({needed} bytes) but only {available} bytes follow; was the file fully "
            f"written?"
        )
    buffer = bytearray(needed)
    view, filled = memoryview(buffer), 0
    while filled < needed:
        chunk = fh.readinto(view[filled:])
        if not chunk:
            raise InputFileError(
                f"{where} is truncated: only {filled} of the {needed} bytes its header "
                f"promises could be read"
            )
        filled += chunk
    array = np.frombuffer(buffer, dtype=dtype)
    array = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


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
    import pandas as pd

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
    import pandas as pd

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
    import pandas as pd

    if values.dtype == object:
        lengths = [len(v) if isinstance(v, str | bytes) else 0 for v in values]
        longest = int(np.argmax(lengths)) if lengths else 0
        if lengths and lengths[longest] > MAX_LABEL_CHARS:
            # numpy text arrays are fixed-width: one long cell would be paid on every row
            raise MatrixError(
                f"{path}: the label column {name!r} holds a value of {lengths[longest]:,} "
                f"characters (row {longest}); labels are class names of at most "
                f"{MAX_LABEL_CHARS}"
            )
        numeric = pd.to_numeric(pd.Series(values), errors="coerce")
        if numeric.notna().all():
            values = numeric.to_numpy()
            if np.all(values == np.round(values)):
                values = values.astype(np.int64)
        else:
            values = np.array([_text(v) for v in values], dtype=str)
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
