"""Property tests of the built-in readers: any file gives a correct matrix or a LeapError.

Round trips check the "correct" half (random shapes, dtypes, names and label positions
come back exactly); junk and damaged files check that nothing but a LeapError escapes a
reader. The readers are called directly, not through the engine, whose safety net would
otherwise turn a reader's crash into an error message and hide it.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import string
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from leap import Engine, FeatureMatrix, SensorLayout
from leap.errors import LeapError, MatrixError

LAYOUT = SensorLayout(sensors=("a", "b"), dims=("x", "y"))  # 6 features
SUFFIXES = (".npy", ".npz", ".csv", ".parquet")
EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Round trips write and read a pandas table per example (~10 ms): fewer, to keep the suite fast.
FEW_EXAMPLES = settings(EXAMPLES, max_examples=150)

_engine = Engine(load_entry_points=False)
READERS = {suffix: _engine.readers.for_path(Path(f"m{suffix}")) for suffix in SUFFIXES}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hypothesis_readers")


def read(
    path: Path, label: str | int = "label", participant: str | None = None, **options: Any
) -> Any:
    """The reader's result, or the LeapError it raised; any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy/pandas may warn about odd input; fine here
        try:
            return READERS[path.suffix].read(
                path, label=label, layout=LAYOUT, participant=participant, **options
            )
        except LeapError as exc:
            assert str(exc) and "\n" not in str(exc)
            return exc


def check_matrix(matrix: FeatureMatrix) -> None:
    """What every FeatureMatrix promises: finite float64 features, one label per row."""
    assert matrix.X.dtype == np.float64 and matrix.X.ndim == 2
    assert np.isfinite(matrix.X).all()
    assert matrix.X.shape[1] == len(matrix.feature_names) >= 1
    assert matrix.y.shape == (matrix.X.shape[0],) and matrix.X.shape[0] >= 1
    if matrix.participants is not None:
        assert len(matrix.participants) == matrix.X.shape[0]


# -- strategies ----------------------------------------------------------------------------
finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)
safe_names = st.text(string.ascii_letters + string.digits + "_.|-", min_size=1, max_size=12)
# Words pandas reads as something else in a CSV (missing, boolean or infinite values);
# a word label or participant id is never one of them.
NOT_WORDS = {"na", "nan", "null", "none", "true", "false", "inf", "infinity"}
word_labels = st.text(string.ascii_letters, min_size=1, max_size=6).filter(
    lambda s: s.lower() not in NOT_WORDS
)


@st.composite
def tables(draw: st.DrawFn, names: st.SearchStrategy[str], numeric_dtypes: bool) -> dict:
    """A feature table with a label column at a random position (and maybe participants)."""
    n_rows = draw(st.integers(1, 8))
    n_features = draw(st.integers(1, 5))
    has_participant = draw(st.booleans())
    n_cols = n_features + 1 + has_participant
    columns = draw(
        st.lists(
            names.filter(lambda s: s not in ("participant",)),
            min_size=n_cols,
            max_size=n_cols,
            unique=True,
        )
    )
    label_name, features = columns[0], columns[1 : n_features + 1]
    frame = {}
    for name in features:
        dtype = draw(st.sampled_from(["float64", "int64", "float32", "bool"]))
        if not numeric_dtypes:
            dtype = draw(st.sampled_from(["float64", "int64"]))
        elements = {
            "float64": finite_floats,
            "float32": st.floats(allow_nan=False, allow_infinity=False, width=32),
            "int64": int64s,
            "bool": st.booleans(),
        }[dtype]
        frame[name] = np.array(draw(st.lists(elements, min_size=n_rows, max_size=n_rows)), dtype)
    labels = draw(st.sampled_from([st.integers(-5, 5), word_labels]))  # classes: ints or words
    frame[label_name] = draw(st.lists(labels, min_size=n_rows, max_size=n_rows))
    if has_participant:
        frame["participant"] = draw(st.lists(word_labels, min_size=n_rows, max_size=n_rows))
    order = draw(st.permutations(list(frame)))
    table = pd.DataFrame({name: frame[name] for name in order})
    return {"frame": table, "label": label_name, "features": features}


def assert_round_trip(matrix: Any, table: dict) -> None:
    assert isinstance(matrix, FeatureMatrix), matrix
    check_matrix(matrix)
    frame, features = table["frame"], [c for c in table["frame"].columns if c in table["features"]]
    assert matrix.feature_names == features
    np.testing.assert_array_equal(matrix.X, frame[features].to_numpy(dtype=np.float64))
    assert [str(v) for v in matrix.y] == [str(v) for v in frame[table["label"]]]
    assert matrix.label_name == table["label"]
    if "participant" in frame:
        assert [str(p) for p in matrix.participants] == list(frame["participant"])
    else:
        assert matrix.participants is None


# -- round trips ---------------------------------------------------------------------------
@FEW_EXAMPLES
@given(table=tables(safe_names, numeric_dtypes=False), by_position=st.booleans())
def test_csv_round_trip(folder: Path, table: dict, by_position: bool) -> None:
    path = folder / "table.csv"
    table["frame"].to_csv(path, index=False)
    label = list(table["frame"].columns).index(table["label"]) if by_position else table["label"]
    assert_round_trip(read(path, label=label, header=True), table)
    # Without header=True, a header that looks like numbers is refused, never half-read.
    outcome = read(path, label=label)
    if isinstance(outcome, LeapError):
        assert "no header?" in str(outcome)
    else:
        assert_round_trip(outcome, table)


@FEW_EXAMPLES
@given(table=tables(st.text(min_size=1, max_size=8), numeric_dtypes=True))
def test_parquet_round_trip(folder: Path, table: dict) -> None:
    path = folder / "table.parquet"
    table["frame"].to_parquet(path)
    assert_round_trip(read(path, label=table["label"]), table)


@EXAMPLES
@given(
    X=hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.int8, np.int64, np.uint16, np.bool_]),
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
        elements={"allow_nan": False, "allow_infinity": False},
    ),
    named=st.booleans(),
    label_array=st.sampled_from(["y", "target"]),
)
def test_npz_round_trip(folder: Path, X: np.ndarray, named: bool, label_array: str) -> None:
    path = folder / "arrays.npz"
    y = np.arange(X.shape[0]) % 2
    names = [f"f{i}" for i in range(X.shape[1])]
    extra = {"feature_names": np.array(names)} if named else {}
    np.savez(path, X=X, **{label_array: y}, **extra)
    matrix = read(path, label="label" if label_array == "y" else label_array)
    assert isinstance(matrix, FeatureMatrix), matrix
    check_matrix(matrix)
    np.testing.assert_array_equal(matrix.X, X.astype(np.float64))
    np.testing.assert_array_equal(matrix.y, y)
    assert matrix.names_from_file is named
    if named:
        assert matrix.feature_names == names


@EXAMPLES
@given(
    array=hnp.arrays(
        st.sampled_from([np.float64, np.float32, np.int16, np.int64, np.bool_]),
        st.tuples(st.integers(1, 6), st.sampled_from([2, 3, 4, 5, 7, 8])),
        elements={"allow_nan": False, "allow_infinity": False},
    )
)
def test_npy_round_trip(folder: Path, array: np.ndarray) -> None:
    path = folder / "matrix.npy"
    np.save(path, array)
    matrix = read(path)
    assert isinstance(matrix, FeatureMatrix), matrix
    check_matrix(matrix)
    width = array.shape[1]
    n_features = width - 2 if width == LAYOUT.n_features + 2 else width - 1
    np.testing.assert_array_equal(matrix.X, array[:, :n_features].astype(np.float64))
    np.testing.assert_array_equal(matrix.y.astype(np.float64), array[:, n_features])
    assert not matrix.names_from_file
    if n_features == LAYOUT.n_features:
        assert matrix.feature_names == LAYOUT.feature_names


@EXAMPLES
@given(
    features=hnp.arrays(
        np.float64, st.tuples(st.integers(1, 5), st.just(LAYOUT.n_features)), elements=finite_floats
    ),
    labels=st.lists(st.sampled_from([0, 1, 2]), min_size=5, max_size=5),
    ids=st.lists(word_labels, min_size=5, max_size=5),
)
def test_npy_leap_object_layout(folder: Path, features: np.ndarray, labels, ids) -> None:
    """The original LEAP file: an object array of features, label and participant id."""
    n = features.shape[0]
    table = np.empty((n, LAYOUT.n_features + 2), dtype=object)
    table[:, :-2] = features
    table[:, -2] = labels[:n]
    table[:, -1] = ids[:n]
    path = folder / "leap.npy"
    np.save(path, table, allow_pickle=True)
    matrix = read(path)
    assert isinstance(matrix, FeatureMatrix), matrix
    np.testing.assert_array_equal(matrix.X, features)
    assert matrix.y.tolist() == labels[:n]
    assert matrix.participants.tolist() == ids[:n]
    assert matrix.feature_names == LAYOUT.feature_names


# -- anything else: a matrix or a LeapError ------------------------------------------------
ODD_DTYPES = [
    np.float64, np.float16, np.int8, np.uint64, np.bool_, np.complex128, "datetime64[s]",
    "timedelta64[ms]", "U3", "S3", object,
]  # fmt: skip
odd_objects = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=3),
    st.booleans(),
    st.complex_numbers(),
    st.builds(fractions.Fraction, st.integers(), st.integers(1, 9)),
    st.builds(decimal.Decimal, st.integers()),
    st.dates().map(lambda d: datetime.datetime(d.year, d.month, d.day)),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def odd_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(ODD_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    if dtype.kind == "O":
        flat = draw(
            st.lists(odd_objects, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
        )
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return draw(hnp.arrays(dtype, shape))


@EXAMPLES
@given(array=odd_arrays(), label=st.sampled_from(["label", 0, -1, 99, "participant", "nope"]))
def test_npy_any_array(folder: Path, array: np.ndarray, label: Any) -> None:
    path = folder / "odd.npy"
    np.save(path, array, allow_pickle=True)
    outcome = read(path, label=label)
    if isinstance(outcome, FeatureMatrix):
        check_matrix(outcome)
        assert array.ndim == 2


def test_npy_text_with_lone_surrogates_is_a_matrix_error(folder: Path) -> None:
    """A case hypothesis found: pandas' pyarrow strings cannot hold a lone surrogate."""
    path = folder / "surrogate.npy"
    np.save(path, np.array([["G:\udeaa", "1"], ["2", "3"]]))
    outcome = read(path, label="label")
    assert isinstance(outcome, MatrixError) and "not valid Unicode" in str(outcome)


@FEW_EXAMPLES
@given(
    X=odd_arrays(),
    y=odd_arrays(),
    names=st.one_of(st.none(), odd_arrays()),
    groups=st.one_of(st.none(), odd_arrays()),
)
def test_npz_any_arrays(folder: Path, X, y, names, groups) -> None:
    path = folder / "odd.npz"
    optional = {"feature_names": names, "participants": groups}
    extra = {k: v for k, v in optional.items() if v is not None}
    np.savez(path, X=X, y=y, **extra)
    outcome = read(path)
    if isinstance(outcome, FeatureMatrix):
        check_matrix(outcome)


csv_cells = st.one_of(
    st.text(max_size=5),
    finite_floats.map(repr),
    st.sampled_from(["nan", "inf", "-inf", "", " ", '"', "1e999", "0x10", "1_000", "True"]),
)


@EXAMPLES
@given(
    header=st.lists(st.text(max_size=6), min_size=1, max_size=5),
    rows=st.lists(st.lists(csv_cells, max_size=6), max_size=5),
    sep=st.sampled_from([",", ";", "\t"]),
    end=st.sampled_from(["\n", "\r\n", ""]),
    label=st.sampled_from(["label", 0, -1, 7]),
)
def test_csv_any_text(folder: Path, header, rows, sep, end, label) -> None:
    path = folder / "odd.csv"
    lines = [sep.join(header), *(sep.join(r) for r in rows)]
    path.write_text("\n".join(lines) + end, encoding="utf-8")
    outcome = read(path, label=label)
    if isinstance(outcome, FeatureMatrix):
        check_matrix(outcome)


@EXAMPLES
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=400))
def test_junk_bytes(folder: Path, suffix: str, data: bytes) -> None:
    path = folder / f"junk{suffix}"
    path.write_bytes(data)
    outcome = read(path)
    if isinstance(outcome, FeatureMatrix):
        check_matrix(outcome)


def _valid_file(folder: Path, suffix: str) -> bytes:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, LAYOUT.n_features))
    y = np.arange(6) % 2
    path = folder / f"valid{suffix}"
    frame = pd.DataFrame(X, columns=LAYOUT.feature_names).assign(label=y)
    if suffix == ".npy":
        np.save(path, np.column_stack([X, y]))
    elif suffix == ".npz":
        np.savez(path, X=X, y=y)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path.read_bytes()


@EXAMPLES
@given(
    suffix=st.sampled_from(SUFFIXES),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4),
)
def test_damaged_valid_files(folder: Path, suffix: str, cut: float, flips) -> None:
    """Truncated and bit-flipped versions of good files."""
    data = bytearray(_valid_file(folder, suffix))
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    path = folder / f"damaged{suffix}"
    path.write_bytes(bytes(data[: max(1, int(cut * len(data)))] if cut < 1 else data))
    outcome = read(path)
    if isinstance(outcome, FeatureMatrix):
        check_matrix(outcome)


def test_object_arrays_never_run_code(folder: Path) -> None:
    """An object .npy holding an arbitrary object is refused by name, not unpickled."""
    array = np.empty((2, 3), dtype=object)
    array[:] = 1.0
    array[0, 0] = fractions.Fraction(1, 3)
    path = folder / "objects.npy"
    np.save(path, array, allow_pickle=True)
    error = read(path)
    assert isinstance(error, LeapError)
    assert "refusing to load fractions.Fraction from an object array" in str(error)
