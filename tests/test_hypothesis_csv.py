"""Property tests of the importance-CSV parser (``ImportanceResult.from_csv``).

LEAP's tidy CSV and the original script's ``Pair, Dimensions, Importance`` CSV both round
trip exactly; any other text or bytes give a result or a LeapError, never another
exception, and no cell is ever evaluated.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from leap.data.layout import ChannelPair
from leap.data.result import ImportanceResult
from leap.errors import LeapError

EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hypothesis_csv")


def parse(path: Path) -> Any:
    """The parsed result, or the LeapError raised; any other exception fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ImportanceResult.from_csv(path)
        except LeapError as exc:
            assert str(exc) and "\n" not in str(exc)
            return exc


# Any text a name might hold, except NUL (no CSV reader keeps it) and lone surrogates.
names = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=8)
filled_names = names.filter(bool)
values = st.floats(allow_nan=False, width=64)
pairs = st.builds(ChannelPair, sensor_a=filled_names, dim_a=filled_names, sensor_b=filled_names,
                  dim_b=filled_names)  # fmt: skip


@st.composite
def results(draw: st.DrawFn) -> ImportanceResult:
    n = draw(st.integers(0, 6))
    repeats = draw(st.integers(1, 4))
    importances = draw(hnp.arrays(np.float64, (n, repeats), elements=values))
    return ImportanceResult(
        importances,
        draw(st.lists(names, min_size=n, max_size=n)),
        draw(st.lists(st.one_of(st.none(), pairs), min_size=n, max_size=n)),
        ci_level=draw(st.floats(0.5, 0.99)),
    )


@EXAMPLES
@given(result=results())
def test_tidy_csv_round_trip(folder: Path, result: ImportanceResult) -> None:
    path = result.to_csv(folder / "tidy.csv")
    back = parse(path)
    assert isinstance(back, ImportanceResult), back
    np.testing.assert_array_equal(back.importances, result.importances)
    assert back.feature_names == result.feature_names
    assert back.pairs == result.pairs
    if result.feature_names:  # ci_level is stored per row; an empty table has none
        assert back.ci_level == result.ci_level
    for read, computed in zip(
        back.confidence_interval(), result.confidence_interval(), strict=True
    ):
        np.testing.assert_array_equal(read, computed)


quote = st.sampled_from(["'", '"'])
space = st.sampled_from(["", " ", "  "])
legacy_names = st.text(
    st.characters(exclude_characters="'\"\x00", exclude_categories=("Cs",)), max_size=8
)


@st.composite
def legacy_cell(draw: st.DrawFn) -> tuple[str, tuple[str, str]]:
    """A ``('A', 'B')`` cell as Python's str(tuple) writes it (with some spacing latitude)."""
    a, b = draw(legacy_names), draw(legacy_names)
    q1, q2 = draw(quote), draw(quote)
    s = [draw(space) for _ in range(4)]
    return f"{s[0]}({q1}{a}{q1},{s[1]}{q2}{b}{q2}{s[2]}){s[3]}", (a, b)


@EXAMPLES
@given(
    rows=st.lists(st.tuples(legacy_cell(), legacy_cell(), values), max_size=6),
    index_column=st.booleans(),
)
def test_legacy_csv_round_trip(folder: Path, rows, index_column: bool) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(([""] if index_column else []) + ["Pair", "Dimensions", "Importance"])
    for i, ((pair_cell, _), (dims_cell, _), value) in enumerate(rows):
        writer.writerow(([str(i)] if index_column else []) + [pair_cell, dims_cell, repr(value)])
    path = folder / "legacy.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    back = parse(path)
    assert isinstance(back, ImportanceResult), back
    expected = [
        ChannelPair(sensor_a=s[0], dim_a=d[0], sensor_b=s[1], dim_b=d[1])
        for (_, s), (_, d), _ in rows
    ]
    assert back.pairs == expected
    assert back.feature_names == [p.name for p in expected]
    np.testing.assert_array_equal(back.importances[:, 0], [v for *_, v in rows])
    assert back.n_repeats == 1


# -- anything else: a result or a LeapError ------------------------------------------------
TIDY_HEADER = ["feature", "sensor_a", "dim_a", "sensor_b", "dim_b", "importance_mean",
               "importance_std", "rank", "ci_low", "ci_high", "ci_includes_zero", "ci_level",
               "level", "n_columns", "repeat_1", "repeat_2"]  # fmt: skip
LEGACY_HEADER = ["Pair", "Dimensions", "Importance"]
cells = st.one_of(
    names,
    values.map(repr),
    st.sampled_from(
        ["nan", "NaN", "inf", "-inf", "", "1e999", "1_0", "0x1", "('a', 'b')", "('a',)",
         "(\"a\", 'b', 'c')", "__import__('os')", "²", "٣", "True", "-1", "0.5", "2"]
    ),
)  # fmt: skip
odd_columns = st.one_of(names, st.sampled_from(["repeat_x", "repeat_²", "repeat_٣", "repeat_007",
                                                "repeat_", "Pair", "Importance"]))  # fmt: skip
headers = st.one_of(
    st.lists(st.one_of(st.sampled_from(TIDY_HEADER), odd_columns), min_size=1).map(
        lambda h: ["feature", "importance_mean", *h]
    ),
    st.just(LEGACY_HEADER),
    st.lists(odd_columns, min_size=1, max_size=5),
)


@EXAMPLES
@given(header=headers, rows=st.lists(st.lists(cells, min_size=0, max_size=17), max_size=5))
def test_any_table_text(folder: Path, header: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path = folder / "any.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    outcome = parse(path)
    if isinstance(outcome, ImportanceResult):
        assert outcome.importances.dtype == np.float64
        assert len(outcome.feature_names) == outcome.importances.shape[0]
        assert not np.isnan(outcome.importances).any()


@EXAMPLES
@given(data=st.binary(max_size=300))
def test_junk_bytes(folder: Path, data: bytes) -> None:
    path = folder / "junk.csv"
    path.write_bytes(data)
    outcome = parse(path)
    assert isinstance(outcome, ImportanceResult | LeapError)


@EXAMPLES
@given(result=results(), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1),
       st.integers(0, 255)), max_size=3))  # fmt: skip
def test_damaged_tidy_csv(folder: Path, result: ImportanceResult, cut: float, flips) -> None:
    path = result.to_csv(folder / "damaged.csv")
    data = bytearray(path.read_bytes())
    assume(data)
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    path.write_bytes(bytes(data[: math.ceil(cut * len(data))]))
    outcome = parse(path)
    assert isinstance(outcome, ImportanceResult | LeapError)
