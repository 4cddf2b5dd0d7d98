"""Attack catalogue for the input side: crafted matrix files and models.

Every attack is a file built here byte by byte. Each either reads correctly (the values
are checked) or stops with one LeapError line, through the engine, the documented
function and ``leap analyze`` (exit status 2, one ``leap: error:`` line, nothing
written). The object ``.npy`` attacks are pickle streams assembled opcode by opcode:
numpy's own reconstruction misused (raw bytes as object pointers, dtype state with
object flags), every code-running opcode of protocols 0-5, memo tricks, recursion and
length bombs, lying headers.
"""

from __future__ import annotations

import fractions
import functools
import io
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression

from leap import Engine, analyze_permutation_importance
from leap.builtins.readers import CsvReader
from leap.cli import cli
from leap.components import FeatureMatrix
from leap.data.layout import SensorLayout
from leap.errors import LeapError

LAYOUT = SensorLayout(sensors=("a", "b"), dims=("x", "y"))  # 6 features
LAYOUT_ARGS = ["--sensors", "a,b", "--dims", "x,y"]


# -- a small pickle assembler ------------------------------------------------------------
def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_glob(module: str, name: str) -> bytes:
    return text(module) + text(name) + b"\x93"


def text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def raw(value: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(value)) + value


def num(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def flt(value: float) -> bytes:
    return b"G" + struct.pack(">d", value)


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def lst(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"l"


NONE, TRUE, FALSE, REDUCE, BUILD, STOP = b"N", b"\x88", b"\x89", b"R", b"b", b"."
REC = ("numpy._core.multiarray", "_reconstruct")


def dtype_ops(name: str = "O8", order: str = "|", elsize: int = -1, flags: int = 63) -> bytes:
    state = tup(num(3), text(order), NONE, NONE, NONE, num(elsize), num(-1), num(flags))
    return glob("numpy", "dtype") + tup(text(name), FALSE, TRUE) + REDUCE + state + BUILD


def array_ops(shape: tuple[int, ...], cells: bytes, dtype: bytes | None = None) -> bytes:
    head = glob(*REC) + tup(glob("numpy", "ndarray"), tup(num(0)), raw(b"b")) + REDUCE
    state = tup(num(1), tup(*(num(n) for n in shape)), dtype or dtype_ops(), FALSE, cells)
    return head + state + BUILD


def scalar_ops(dtype: str, data: bytes, flags: int | None = None, order: str = "<") -> bytes:
    fn = glob("numpy._core.multiarray", "scalar")
    flags = np.dtype(dtype).flags if flags is None else flags  # numpy's own unless forced
    size = np.dtype(dtype).itemsize if dtype[0] in "US" else -1
    return fn + tup(dtype_ops(dtype, order, size, flags), raw(data)) + REDUCE


def obj_array(shape: tuple[int, ...], *cells: bytes) -> bytes:
    """A protocol-2 pickle of an object array with the given cells."""
    return b"\x80\x02" + array_ops(shape, lst(*cells)) + STOP


def npy_header(descr: str, shape: tuple, fortran: bool = False, version: int = 1) -> bytes:
    literal = descr if descr[:1] in "[(" else repr(descr)  # structured and subarray as is
    text_ = f"{{'descr': {literal}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    text_ += " " * ((64 - (len(text_) + 11) % 64) % 64) + "\n"
    size = struct.pack("<H", len(text_)) if version == 1 else struct.pack("<I", len(text_))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text_.encode("latin1")


def obj_npy(shape: tuple[int, ...], body: bytes) -> bytes:
    return npy_header("|O", shape) + body


def good_cells(n: int) -> list[bytes]:
    return [flt(float(i % 7)) for i in range(n)]


def table(rows: int = 4) -> np.ndarray:
    """A LEAP object table: 6 features, label, participant id."""
    out = np.empty((rows, 8), dtype=object)
    out[:, :6] = np.arange(rows * 6, dtype=float).reshape(rows, 6) / 10
    out[:, 6] = [i % 2 for i in range(rows)]
    out[:, 7] = [f"p{i % 2}" for i in range(rows)]
    return out


def saved(array: np.ndarray, protocol: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if protocol is None:
        np.save(buffer, array, allow_pickle=True)
        return buffer.getvalue()
    fortran = array.flags.f_contiguous and not array.flags.c_contiguous
    return npy_header("|O", array.shape, fortran) + pickle.dumps(array, protocol=protocol)


def npz_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def plain_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# -- the catalogue -------------------------------------------------------------------------
@dataclass
class Attack:
    suffix: str
    content: bytes | Callable[[Path], None]
    error: str | None = None  # regex the one-line error matches; None: a correct read
    check: Callable[[FeatureMatrix], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def _expect_table(expected: np.ndarray) -> Callable[[FeatureMatrix], None]:
    def check(matrix: FeatureMatrix) -> None:
        np.testing.assert_array_equal(matrix.X, expected[:, :6].astype(float))
        assert matrix.y.tolist() == expected[:, 6].tolist()
        assert matrix.participants.tolist() == [str(p) for p in expected[:, 7]]

    return check


def _expect_numeric(expected: np.ndarray) -> Callable[[FeatureMatrix], None]:
    def check(matrix: FeatureMatrix) -> None:
        np.testing.assert_array_equal(matrix.X, expected[:, :-1].astype(float))
        np.testing.assert_array_equal(matrix.y.astype(float), expected[:, -1].astype(float))

    return check


def _csv(text_: str, encoding: str = "utf-8") -> bytes:
    return text_.encode(encoding)


def _parquet(frame: pd.DataFrame) -> Callable[[Path], None]:
    return lambda path: frame.to_parquet(path)


def _big_string_parquet(path: Path) -> None:
    big = "x" * 2**16
    frame = pd.DataFrame({"a": np.arange(200.0), "label": [big] * 200})
    frame.to_parquet(path)


def _fortran_numeric() -> np.ndarray:
    return np.asfortranarray(np.arange(24, dtype=float).reshape(4, 6) % 2)


def _catalogue() -> dict[str, Attack]:
    t4 = table(4)
    pointer = struct.pack("<Q", 0x4141414141414141) * 8
    deep_tuple = b"(" * 4_000 + b"t" * 4_000  # within the container budget: a cell
    deep_list = b"]" * 30_000 + b"a" * 29_999  # beyond it
    self_list = b"]q\x00h\x00a"  # a list appended into itself
    attacks = {
        # -- correct reads ----------------------------------------------------------------
        "np.save object table": Attack(".npy", saved(t4), check=_expect_table(t4)),
        **{
            f"pickle protocol {p}": Attack(".npy", saved(t4, p), check=_expect_table(t4))
            for p in range(6)
        },
        "fortran-order object table": Attack(
            ".npy", saved(np.asfortranarray(t4)), check=_expect_table(t4)
        ),
        "numpy scalars as cells (f8, i8, bool, big-endian f8)": Attack(
            ".npy",
            obj_npy(
                (1, 8),
                obj_array(
                    (1, 8),
                    scalar_ops("f8", struct.pack("<d", 1.5)),
                    scalar_ops("i8", struct.pack("<q", 2)),
                    scalar_ops("b1", b"\x01", order="|"),
                    scalar_ops("f8", struct.pack(">d", 4.25), order=">"),
                    flt(5.0),
                    num(6),
                    num(1),
                    text("p1"),
                ),
            ),
            check=lambda m: np.testing.assert_array_equal(m.X, [[1.5, 2, 1, 4.25, 5, 6]]),
        ),
        "participant ids as bytes in an object table": Attack(
            ".npy",
            obj_npy(
                (2, 8),
                obj_array(
                    (2, 8), *good_cells(6), num(0), raw(b"p01"), *good_cells(6), num(1), raw(b"p02")
                ),
            ),
            check=lambda m: m.participants.tolist() == ["p01", "p02"] or pytest.fail("ids"),
        ),
        "big-endian numeric .npy": Attack(
            ".npy",
            plain_npy(np.arange(21, dtype=">f8").reshape(3, 7) % 2),
            check=_expect_numeric(np.arange(21).reshape(3, 7) % 2),
        ),
        "fortran-order numeric .npy": Attack(
            ".npy", plain_npy(_fortran_numeric()), check=_expect_numeric(_fortran_numeric())
        ),
        "version 2.0 and 3.0 headers": Attack(
            ".npy",
            npy_header("<f8", (2, 7), version=3) + np.ones((2, 7)).tobytes(),
            check=lambda m: np.testing.assert_array_equal(m.X, np.ones((2, 6))),
        ),
        "npz with object member and byte-string participants": Attack(
            ".npz",
            npz_bytes(
                {
                    "X.npy": obj_npy((2, 6), obj_array((2, 6), *good_cells(12))),
                    "y.npy": plain_npy(np.array([0, 1])),
                    "participants.npy": plain_npy(np.array([b"p01", b"p02"])),
                }
            ),
            check=lambda m: m.participants.tolist() == ["p01", "p02"] or pytest.fail("ids"),
        ),
        "csv with a UTF-8 byte-order mark": Attack(
            ".csv",
            b"\xef\xbb\xbfa,b,label\n1,2,0\n3,4,1\n",
            check=lambda m: m.feature_names == ["a", "b"] or pytest.fail("bom"),
        ),
        "parquet with byte-string participant ids": Attack(
            ".parquet",
            _parquet(pd.DataFrame({"a": [1.0, 2], "label": [0, 1], "participant": [b"p1", b"p2"]})),
            check=lambda m: m.participants.tolist() == ["p1", "p2"] or pytest.fail("ids"),
        ),
        # -- numpy's reconstruction misused ---------------------------------------------
        "raw bytes as object pointers (the SIGSEGV)": Attack(
            ".npy",
            obj_npy((1, 8), b"\x80\x02" + array_ops((1, 8), raw(pointer)) + STOP),
            r"as raw bytes",
        ),
        "object flags on a float dtype": Attack(
            ".npy",
            obj_npy(
                (1, 8), obj_array((1, 8), scalar_ops("f8", b"\0" * 8, flags=63), *good_cells(7))
            ),
            r"flags",
        ),
        "numeric array state under an object header": Attack(
            ".npy",
            obj_npy(
                (1, 8),
                b"\x80\x02"
                + array_ops((1, 8), raw(b"\0" * 64), dtype_ops("f8", "<", flags=0))
                + STOP,
            ),
            r"dtype float64, but the header declares object",
        ),
        "pickled shape differs from the header": Attack(
            ".npy", obj_npy((1, 8), obj_array((2, 4), *good_cells(8))), r"shape \(2, 4\)"
        ),
        "fewer cells than the shape": Attack(
            ".npy", obj_npy((1, 8), obj_array((1, 8), *good_cells(3))), r"lists 3 cells where"
        ),
        "a nested array as a cell": Attack(
            ".npy",
            obj_npy((1, 8), obj_array((1, 8), obj_array((1, 1), flt(1))[2:-1], *good_cells(7))),
            r"shape \(1, 1\)",
        ),
        "state set twice": Attack(
            ".npy",
            obj_npy(
                (1, 8),
                b"\x80\x02"
                + array_ops((1, 8), lst(*good_cells(8)))
                + tup(num(1), tup(num(1), num(8)), dtype_ops(), FALSE, lst())
                + BUILD
                + STOP,
            ),
            r"sets the state of a ndarray|twice",
        ),
        "void dtype scalar": Attack(
            ".npy",
            obj_npy((1, 8), obj_array((1, 8), scalar_ops("V8", b"\0" * 8), *good_cells(7))),
            r"dtype 'V8'",
        ),
        "zero-size text dtype scalar carrying bytes": Attack(
            ".npy",
            obj_npy((1, 8), obj_array((1, 8), scalar_ops("U0", b"abcd"), *good_cells(7))),
            r"wrong number of bytes",
        ),
        "scalar with too few bytes": Attack(
            ".npy",
            obj_npy((1, 8), obj_array((1, 8), scalar_ops("f8", b"\0"), *good_cells(7))),
            r"wrong number of bytes",
        ),
        "dtype with fields in its state": Attack(
            ".npy",
            obj_npy(
                (1, 8),
                obj_array(
                    (1, 8),
                    glob("numpy._core.multiarray", "scalar")
                    + tup(
                        glob("numpy", "dtype")
                        + tup(text("f8"), FALSE, TRUE)
                        + REDUCE
                        + tup(
                            num(3), text("<"), NONE, tup(text("a")), b"}", num(-1), num(-1), num(0)
                        )
                        + BUILD,
                        raw(b"\0" * 8),
                    )
                    + REDUCE,
                    *good_cells(7),
                ),
            ),
            r"fields, subarrays",
        ),
        # -- code-running opcodes and globals ---------------------------------------------
        "GLOBAL os.system": Attack(
            ".npy",
            obj_npy((1, 1), b"\x80\x02" + glob("os", "system") + tup(text("id")) + REDUCE + STOP),
            r"refusing to load os\.system",
        ),
        "STACK_GLOBAL builtins.eval": Attack(
            ".npy",
            obj_npy(
                (1, 1),
                b"\x80\x04" + stack_glob("builtins", "eval") + tup(text("1")) + REDUCE + STOP,
            ),
            r"refusing to load builtins\.eval",
        ),
        "REDUCE of a numpy global other than the three": Attack(
            ".npy",
            obj_npy((1, 1), b"\x80\x02" + glob("numpy", "frombuffer") + STOP),
            r"refusing to load numpy\.frombuffer",
        ),
        "REDUCE of ndarray itself": Attack(
            ".npy",
            obj_npy(
                (1, 8), b"\x80\x02" + glob("numpy", "ndarray") + tup(tup(num(1))) + REDUCE + STOP
            ),
            r"calls a numpy ndarray",
        ),
        "BUILD on a dict": Attack(
            ".npy", obj_npy((1, 1), b"\x80\x02}" + b"}" + BUILD + STOP), r"state of a dict"
        ),
        **{
            f"opcode {name}": Attack(
                ".npy", obj_npy((1, 1), b"\x80\x02" + ops + STOP), re.escape(name)
            )
            for name, ops in {
                "INST": b"(ios\nsystem\n",
                "OBJ": b"(No",
                "NEWOBJ": b"N)\x81",
                "NEWOBJ_EX": b"N)}\x92",
                "EXT1": b"\x82\x01",
                "EXT2": b"\x83\x01\x00",
                "EXT4": b"\x84\x01\x00\x00\x00",
                "PERSID": b"P1\n",
                "BINPERSID": b"N" + b"Q",
                "EMPTY_SET": b"\x8f",
                "FROZENSET": b"(\x91",
                "NEXT_BUFFER": b"\x97",
                "READONLY_BUFFER": b"N\x98",
                "unknown opcode": b"\xff",
            }.items()
        },
        "protocol 6": Attack(".npy", obj_npy((1, 1), b"\x80\x06" + STOP), r"protocol 6"),
        # -- memo tricks, recursion and length bombs --------------------------------------
        "memo read before it is set": Attack(".npy", obj_npy((1, 1), b"\x80\x02h\x07."), r"memo 7"),
        "a list appended into itself as the cells": Attack(
            ".npy",
            obj_npy((1, 1), b"\x80\x02" + array_ops((1, 1), self_list) + STOP),
            r"cell 0 holds a list",
        ),
        "an array never given its state": Attack(
            ".npy",
            obj_npy((1, 8), b"\x80\x02" + array_ops((1, 8), lst())[:-1] + b"0" + STOP),
            r"holds a numpy array \(never given its state\)",
        ),
        "memoised builder reused": Attack(
            ".npy",
            obj_npy(
                (1, 8),
                b"\x80\x02"
                + glob(*REC)
                + b"q\x01"
                + tup(glob("numpy", "ndarray"), tup(num(0)), raw(b"b"))
                + REDUCE
                + b"q\x02"
                + tup(num(1), tup(num(1), num(8)), dtype_ops(), FALSE, lst(*good_cells(8)))
                + BUILD
                + b"0h\x02"
                + tup(num(1), tup(num(1), num(8)), dtype_ops(), FALSE, lst(*good_cells(8)))
                + BUILD
                + STOP,
            ),
            r"state of a ndarray|twice",
        ),
        "tuples nested 50,000 deep as a cell": Attack(
            ".npy",
            obj_npy((1, 8), obj_array((1, 8), deep_tuple, *good_cells(7))),
            r"cell 0 holds a tuple",
        ),
        "lists nested 30,000 deep as a cell": Attack(
            ".npy", obj_npy((1, 8), obj_array((1, 8), deep_list, *good_cells(7))), r"list"
        ),
        "a 300,000-deep tuple as a scalar's dtype (hashing it would overflow the C stack)": Attack(
            ".npy",
            obj_npy(
                (1, 300_000),
                b"\x80\x02"
                + glob("numpy._core.multiarray", "scalar")
                + b"("
                + b"(" * 300_000
                + b"t" * 300_000
                + raw(b"\0" * 8)
                + b"t"
                + REDUCE
                + STOP,
            ),
            r"makes a scalar without a dtype",
        ),
        "dict keyed by a deep tuple": Attack(
            ".npy",
            obj_npy((1, 8), b"\x80\x02}" + b"(" * 2000 + b"t" * 2000 + NONE + b"s."),
            r"as a dict key",
        ),
        "text length 2**63": Attack(
            ".npy",
            obj_npy((1, 1), b"\x80\x04\x8d" + struct.pack("<Q", 2**63) + b"xy."),
            r"declares a length",
        ),
        "LONG4 of 2**31 bytes": Attack(
            ".npy",
            obj_npy((1, 1), b"\x80\x02\x8b" + struct.pack("<i", 2**31 - 1) + b"."),
            r"-byte integer",
        ),
        "text integer of 100,000 digits": Attack(
            ".npy", obj_npy((1, 8), b"I" + b"9" * 100_000 + b"\n."), r"over-long number"
        ),
        "a million empty lists": Attack(
            ".npy",
            obj_npy((1, 8), b"\x80\x02" + b"]" * 1_000_000 + b"."),
            r"more than \d+ tuples, lists or dicts",
        ),
        "half a million memo entries": Attack(
            ".npy",
            obj_npy((1, 8), b"\x80\x04N" + b"\x94" * 500_000 + b"."),
            r"memoises more than",
        ),
        "no STOP (truncated pickle)": Attack(
            ".npy", obj_npy((1, 8), obj_array((1, 8), *good_cells(8))[:-1]), r"truncated"
        ),
        "Fraction, Decimal, complex cells": Attack(
            ".npy",
            saved(np.array([[fractions.Fraction(1, 3)] * 3], dtype=object)),
            r"refusing to load fractions\.Fraction",
        ),
        # -- headers that lie --------------------------------------------------------------
        "object header declares 10 million cells over 40 bytes": Attack(
            ".npy",
            obj_npy((10_000, 1_000), obj_array((1, 8), *good_cells(8))),
            r"declares 10,000,000 object cells",
        ),
        "shape of 2**62 cells": Attack(
            ".npy", npy_header("<f8", (2**31, 2**31)), r"more cells than the limit.*LEAP_MAX_CELLS"
        ),
        "zero-itemsize |V0 with a billion rows": Attack(
            ".npy", npy_header("|V0", (10**4, 10**4)), r"zero-size dtype \|V0"
        ),
        "zero-itemsize <U0": Attack(".npy", npy_header("<U0", (1000, 10)), r"zero-size"),
        "structured dtype with an object field": Attack(
            ".npy", npy_header("[('a', '|O'), ('b', '<f8')]", (2, 2)), r"structured dtype"
        ),
        "subarray dtype": Attack(
            ".npy", npy_header("('<f8', (1000,))", (2, 2)), r"subarray dtype|structured"
        ),
        "void dtype": Attack(".npy", npy_header("|V8", (2, 2)) + b"\0" * 32, r"dtype \|V8"),
        "truncated numeric data": Attack(
            ".npy", npy_header("<f8", (100, 7)) + b"\0" * 80, r"truncated.*5600 bytes"
        ),
        "unknown format version": Attack(
            ".npy", b"\x93NUMPY\x09\x00" + b"\0" * 100, r"not a valid \.npy"
        ),
        "header that is not a dict": Attack(
            ".npy", b"\x93NUMPY\x01\x00\x10\x00" + b"__import__('os')\n", r"not a valid \.npy"
        ),
        "cap from LEAP_MAX_CELLS": Attack(
            ".npy",
            plain_npy(np.zeros((100, 7))),
            r"limit of 50 .*LEAP_MAX_CELLS",
            env={"LEAP_MAX_CELLS": "50"},
        ),
        "LEAP_MAX_CELLS that is not a number": Attack(
            ".npy",
            plain_npy(np.zeros((2, 7))),
            r"LEAP_MAX_CELLS='lots' is not a whole number",
            env={"LEAP_MAX_CELLS": "lots"},
        ),
        # -- npz archives -----------------------------------------------------------------
        "npz bomb: a deflated member whose header declares 10**8 cells": Attack(
            ".npz",
            lambda path: _zip_bomb(path),
            r"more cells than the limit",
            env={"LEAP_MAX_CELLS": "1000000"},
        ),
        "npz member shorter than its header says": Attack(
            ".npz",
            npz_bytes(
                {"X.npy": npy_header("<f8", (50, 6)) + b"\0" * 8, "y.npy": plain_npy(np.zeros(50))}
            ),
            r"\[X\] is truncated",
        ),
        "npz object member with raw pointers": Attack(
            ".npz",
            npz_bytes(
                {
                    "X.npy": obj_npy((1, 8), b"\x80\x02" + array_ops((1, 8), raw(pointer)) + STOP),
                    "y.npy": plain_npy(np.zeros(1)),
                }
            ),
            r"\[X\].*as raw bytes",
        ),
        "npz with two members named X.npy": Attack(
            ".npz", lambda path: _duplicate_members(path), r"two members named 'X\.npy'"
        ),
        "npz with a |V0 member": Attack(
            ".npz",
            npz_bytes(
                {"X.npy": npy_header("|V0", (10**5, 10**4)), "y.npy": plain_npy(np.zeros(3))}
            ),
            r"zero-size|limit",
        ),
        "npz bomb: a wide text label member (10,000 x <U100000 deflated)": Attack(
            ".npz", lambda path: _wide_text_bomb(path), r"\[y\] has text cells 100,000 characters"
        ),
        "npz that is not a zip": Attack(".npz", b"PK\x03\x04garbage", r"not a readable \.npz"),
        "npz with an encrypted member": Attack(
            ".npz", lambda path: _encrypted(path), r"not a readable \.npz.*encrypted"
        ),
        "npz with an unknown compression method": Attack(
            ".npz", lambda path: _odd_compression(path), r"compression|not a readable"
        ),
        "empty .npy": Attack(".npy", b"", r"not a valid \.npy"),
        "header nested 10,000 lists deep": Attack(
            ".npy",
            b"\x93NUMPY\x01\x00"
            + struct.pack("<H", 20_010)
            + b"[" * 10_000
            + b"]" * 10_000
            + b"\n" * 10,
            r"not a valid \.npy",
        ),
        "pickle with a FRAME that lies about its length": Attack(
            ".npy",
            obj_npy(
                (1, 8),
                b"\x80\x04\x95" + struct.pack("<Q", 2**60) + obj_array((1, 8), *good_cells(8))[2:],
            ),
            r"declares a length|truncated",
        ),
        "a million DUPs": Attack(
            ".npy",
            obj_npy((1, 8), b"\x80\x02N" + b"2" * 1_000_000 + b"."),
            r"leaves values on its stack",
        ),
        # -- CSV ------------------------------------------------------------------------------
        "csv without a header": Attack(".csv", _csv("0.5,1.5,0\n2.5,3.5,1\n"), r"no header\?"),
        "csv whose header is all integers": Attack(".csv", _csv("1,2,0\n3,4,1\n"), r"no header\?"),
        "csv with a repeated column name": Attack(
            ".csv", _csv("a,b,a,label\n1,2,3,0\n4,5,6,1\n"), r"'a' twice \(columns 0 and 2\)"
        ),
        "csv with NUL bytes": Attack(".csv", _csv("a,b,label\n1,\x002,0\n"), r"NUL byte"),
        "csv in UTF-16": Attack(".csv", _csv("a,b,label\n1,2,0\n", "utf-16"), r"NUL byte"),
        "csv with inf and NaN text": Attack(
            ".csv", _csv("a,b,label\ninf,1,0\n2,NaN,1\n"), r"NaN or infinite"
        ),
        "csv with a 5 MB field": Attack(
            ".csv", _csv("a,b,label\n" + "9" * 5_000_000 + "x,1,0\n"), r"non-numeric value"
        ),
        "csv with a newline in a column name": Attack(
            ".csv", _csv('"a\nb",c,target\n1,2,0\n'), r"label 'label' not found.*a b"
        ),
        "csv with more cells than the cap": Attack(
            ".csv",
            _csv("a,b,label\n" + "1,2,0\n" * 40),
            r"more than 10 rows of 3 columns",
            env={"LEAP_MAX_CELLS": "30"},
        ),
        "empty csv": Attack(".csv", b"", r"is empty"),
        "csv with a header only": Attack(".csv", b"a,b,label\n", r"has no rows"),
        "csv with 100,000 columns and the cap at 50,000 cells": Attack(
            ".csv",
            _csv(",".join(f"c{i}" for i in range(100_000)) + "\n"),
            r"a row of 100,000 columns.*LEAP_MAX_CELLS",
            env={"LEAP_MAX_CELLS": "50000"},
        ),
        "csv with a megabyte label": Attack(
            ".csv", _csv("a,label\n1," + "w" * 2**20 + "\n2,r\n"), r"label column .*characters"
        ),
        # -- Parquet ----------------------------------------------------------------------------
        "parquet whose metadata exceeds the cap": Attack(
            ".parquet",
            _parquet(pd.DataFrame({"a": np.zeros(100), "label": np.zeros(100)})),
            r"100 rows × 2 columns.*LEAP_MAX_CELLS",
            env={"LEAP_MAX_CELLS": "150"},
        ),
        "parquet with a repeated column name": Attack(
            ".parquet", lambda path: _duplicate_parquet(path), r"duplicate column names: a"
        ),
        "parquet that is not one": Attack(
            ".parquet", b"PAR1" + b"\0" * 40 + b"PAR1", r"not a readable Parquet"
        ),
        "truncated parquet": Attack(
            ".parquet",
            lambda path: (
                _parquet(pd.DataFrame({"a": [1.0, 2], "label": [0, 1]}))(path),
                path.write_bytes(path.read_bytes()[:-30]),
            ),
            r"not a readable Parquet",
        ),
        "parquet text bomb (one 64 KB string on every row)": Attack(
            ".parquet", _big_string_parquet, r"label column .*65,536 characters"
        ),
    }
    return attacks


def _zip_bomb(path: Path) -> None:
    header = npy_header("<f8", (100_000, 1_000))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w", force_zip64=True) as member:
            member.write(header)
            zeros = b"\0" * 2**20
            for _ in range(16):  # 16 MiB of zeros: enough to show the header is checked first
                member.write(zeros)
        archive.writestr("y.npy", plain_npy(np.zeros(100_000)))


def _encrypted(path: Path) -> None:
    data = bytearray(npz_bytes({"X.npy": plain_npy(np.zeros((2, 6))), "y.npy": b"x"}))
    # set the "encrypted" flag bit in every local and central header
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + offset] |= 1
            start += 4
    path.write_bytes(bytes(data))


def _odd_compression(path: Path) -> None:
    data = bytearray(npz_bytes({"X.npy": plain_npy(np.zeros((2, 6))), "y.npy": b"x"}))
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            data[start + offset] = 99  # no such compression method
            start += 4
    path.write_bytes(bytes(data))


def _wide_text_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", plain_npy(np.zeros((10_000, 6))))
        with archive.open("y.npy", "w", force_zip64=True) as member:
            member.write(npy_header("<U100000", (10_000,)))
            member.write(b"\0" * 2**20)  # the rest (4 GB) never needs to be written


def _duplicate_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([[1.0, 2.0], [3.0, 4.0], [0, 1]], names=["a", "a", "label"])
    pq.write_table(table, path)


def _duplicate_members(path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("X.npy", plain_npy(np.zeros((2, 6))))
            archive.writestr("X.npy", plain_npy(np.ones((2, 6))))
            archive.writestr("y.npy", plain_npy(np.zeros(2)))


CATALOGUE = _catalogue()
REFUSED = [name for name, attack in CATALOGUE.items() if attack.error]


def _write(attack: Attack, folder: Path, name: str = "attack") -> Path:
    path = folder / f"{name}{attack.suffix}"
    if callable(attack.content):
        attack.content(path)
    else:
        path.write_bytes(attack.content)
    return path


def _assert_one_line(message: str, pattern: str) -> None:
    assert message and "\n" not in message.strip(), message
    assert "Traceback" not in message
    assert len(message) < 1000, message[:300]
    assert re.search(pattern, message), (pattern, message[:500])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    model = LogisticRegression().fit(rng.normal(size=(40, 6)), np.arange(40) % 2)
    path = tmp_path_factory.mktemp("model") / "model.pkl"
    joblib.dump(model, path)
    return path


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_engine_reads_or_refuses(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attack = CATALOGUE[name]
    for key, value in attack.env.items():
        monkeypatch.setenv(key, value)
    path = _write(attack, tmp_path)
    engine = Engine(load_entry_points=False)
    if attack.error is None:
        matrix = engine.read_matrix(path, layout=LAYOUT)
        assert matrix.X.dtype == np.float64 and np.isfinite(matrix.X).all()
        attack.check(matrix)
        return
    with pytest.raises(LeapError) as caught:
        engine.read_matrix(path, layout=LAYOUT)
    _assert_one_line(str(caught.value), attack.error)


@pytest.mark.parametrize("name", REFUSED)
def test_analyze_refuses_and_writes_nothing(
    name: str, tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attack = CATALOGUE[name]
    for key, value in attack.env.items():
        monkeypatch.setenv(key, value)
    path = _write(attack, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(LeapError) as caught:
        analyze_permutation_importance(
            model_file, path, save_csv_path=out / "importance.csv", layout=LAYOUT, n_repeats=1
        )
    _assert_one_line(str(caught.value), attack.error)
    assert not out.exists() or not any(out.iterdir())

    done = CliRunner().invoke(
        cli, ["analyze", str(model_file), str(path), "-o", str(out / "i.csv"), *LAYOUT_ARGS]
    )
    assert done.exit_code == 2, (done.output, done.exception)
    assert done.stderr.startswith("leap: error: ")
    _assert_one_line(done.stderr, attack.error)
    assert not out.exists() or not any(out.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, *(["out"] if out.exists() else [])]
    )


# -- the CSV header option -----------------------------------------------------------------
def _read_csv(path: Path, **options: Any) -> FeatureMatrix:
    return CsvReader().read(path, label="label", layout=LAYOUT, participant=None, **options)


def test_no_header_keeps_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    rows = np.arange(21, dtype=float).reshape(3, 7) % 5
    path.write_text("\n".join(",".join(str(float(v)) for v in row) for row in rows) + "\n")
    with pytest.raises(LeapError, match=r"no header\? Read it with --no-header"):
        _read_csv(path)
    matrix = _read_csv(path, header=False)
    np.testing.assert_array_equal(matrix.X, rows[:, :6])
    np.testing.assert_array_equal(matrix.y, rows[:, 6])
    assert matrix.feature_names == LAYOUT.feature_names and not matrix.names_from_file


def test_header_true_keeps_numeric_names(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("0,1,label\n0.5,1.5,0\n2.5,3.5,1\n")
    matrix = _read_csv(path, header=True)
    assert matrix.feature_names == ["0", "1"] and matrix.names_from_file
    np.testing.assert_array_equal(matrix.X, [[0.5, 1.5], [2.5, 3.5]])


def test_ordinary_headers_are_not_mistaken_for_data(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("0,1,2,label,participant\n0.5,1.5,2,walk,p1\n2.5,3.5,1,run,p2\n")
    assert _read_csv(path).feature_names == ["0", "1", "2"]


def test_max_cells_keyword_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAP_MAX_CELLS", "5")
    path = tmp_path / "m.csv"
    path.write_text("a,b,label\n" + "1,2,0\n3,4,1\n" * 5)
    assert _read_csv(path, max_cells=30).X.shape == (10, 2)
    with pytest.raises(LeapError, match="limit of 5 "):
        _read_csv(path)
    with pytest.raises(LeapError, match="max_cells must be a positive"):
        _read_csv(path, max_cells=0)


# -- models with an inconsistent feature_names_in_ -------------------------------------------
@pytest.mark.parametrize(
    "names, pattern",
    [
        (7, r"feature_names_in_ is a int"),
        ("abcdef", r"feature_names_in_ is a str"),
        (np.array([["a", "b", "c"], ["d", "e", "f"]], dtype=object), r"not a flat list"),
        (np.array(["a", "b", 3, "d", "e", "f"], dtype=object), r"holds a int at position 2"),
        (np.array(["a", "b", "a", "d", "e", "f"], dtype=object), r"'a' twice"),
        (np.array(["a", "b", "c"], dtype=object), r"lists 3 names but its n_features_in_ is 6"),
    ],
)
def test_inconsistent_feature_names_in_is_one_line(
    names: Any, pattern: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 6))
    model = LogisticRegression().fit(X, np.arange(30) % 2)
    model.feature_names_in_ = names
    joblib.dump(model, tmp_path / "model.pkl")
    frame = pd.DataFrame(X, columns=list("abcdef")).assign(label=np.arange(30) % 2)
    frame.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "out"
    with pytest.raises(LeapError) as caught:
        analyze_permutation_importance(
            tmp_path / "model.pkl", tmp_path / "m.csv", save_csv_path=out / "i.csv", n_repeats=1
        )
    _assert_one_line(str(caught.value), pattern)
    done = CliRunner().invoke(
        cli,
        ["analyze", str(tmp_path / "model.pkl"), str(tmp_path / "m.csv"), "-o", str(out / "i.csv")],
    )
    assert done.exit_code == 2
    _assert_one_line(done.stderr, pattern)
    assert not out.exists() or not any(out.iterdir())


def test_check_feature_names_with_a_model_edited_after_loading() -> None:
    from leap.checks import check_pair

    rng = np.random.default_rng(2)
    model = LogisticRegression().fit(rng.normal(size=(20, 3)), np.arange(20) % 2)
    model.feature_names_in_ = np.array(["a", "b"], dtype=object)
    matrix = FeatureMatrix(rng.normal(size=(20, 3)), np.arange(20) % 2, ["x0", "x1", "x2"])
    matrix.names_from_file = False
    layout = SensorLayout(sensors=("s1", "s2", "s3"), dims=("x",))
    with pytest.raises(LeapError, match="lists 2 names but its n_features_in_ is 3"):
        check_pair(model, matrix, layout)


# -- the SIGSEGV of the issue, in a real process --------------------------------------------
@pytest.mark.slow
def test_the_pointer_file_does_not_kill_leap(tmp_path: Path, model_file: Path) -> None:
    """The file that crashed ``leap analyze`` and ``leap doctor`` with SIGSEGV: exit 2 now."""
    import subprocess
    import sys

    path = _write(CATALOGUE["raw bytes as object pointers (the SIGSEGV)"], tmp_path)
    for command in ("analyze", "doctor"):
        done = subprocess.run(
            [sys.executable, "-m", "leap", command, str(model_file), str(path), *LAYOUT_ARGS],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert done.returncode == 2, (command, done.returncode, done.stderr[-500:])
        assert "Traceback" not in done.stderr
        assert "as raw bytes" in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize(
    "name",
    [
        "raw bytes as object pointers (the SIGSEGV)",
        "object flags on a float dtype",
        "zero-itemsize |V0 with a billion rows",
        "csv without a header",
    ],
)
def test_doctor_reports_the_attack_as_one_problem(name: str, tmp_path: Path, model_file) -> None:
    path = _write(CATALOGUE[name], tmp_path)
    done = CliRunner().invoke(cli, ["doctor", str(model_file), str(path), *LAYOUT_ARGS])
    assert done.exit_code == 2
    text_ = done.output + done.stderr
    assert "Traceback" not in text_
    problems = [line for line in text_.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1 and re.search(CATALOGUE[name].error, problems[0]), text_


def test_the_cap_message_in_the_safety_doc_is_the_real_one(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[1] / "docs" / "safety.md").read_text(encoding="utf-8")
    shown = next(line for line in doc.splitlines() if "more cells than the limit" in line)
    path = tmp_path / "features.npy"
    path.write_bytes(npy_header("<f8", (500_000, 437)))
    with pytest.raises(LeapError) as caught:
        Engine(load_entry_points=False).read_matrix(path)
    assert shown == f"leap: error: {caught.value}".replace(str(tmp_path) + "/", "")


# -- deep structures in every argument slot -------------------------------------------------
DEPTH = 200_000


@functools.cache
def _deep(kind: str) -> bytes:
    if kind == "tuple":
        return b"(" * DEPTH + b"t" * DEPTH
    return b"]" * DEPTH + b"a" * (DEPTH - 1)  # lists, each appended into the one before


@functools.cache
def _filler() -> bytes:
    return b"".join(good_cells(DEPTH - 3))


@functools.cache
def _template(slot: str, deep: bytes) -> bytes:
    """A valid (1, DEPTH) object-array pickle with one argument replaced by ``deep``."""

    def put(name: str, normal: bytes) -> bytes:
        return deep if name == slot else normal

    dtype_state = tup(
        put("dtype.state.0", num(3)),
        put("dtype.state.1", text("|")),
        put("dtype.state.2", NONE),
        NONE,
        NONE,
        put("dtype.state.5", num(-1)),
        num(-1),
        put("dtype.state.7", num(63)),
    )
    dtype = (
        put("dtype.func", glob("numpy", "dtype"))
        + tup(put("dtype.name", text("O8")), put("dtype.align", FALSE), TRUE)
        + REDUCE
        + dtype_state
        + BUILD
    )
    f8 = glob("numpy", "dtype") + tup(text("f8"), FALSE, TRUE) + REDUCE
    f8 += tup(num(3), text("<"), NONE, NONE, NONE, num(-1), num(-1), num(0)) + BUILD
    scalar = glob("numpy._core.multiarray", "scalar")
    scalar += tup(put("scalar.dtype", f8), put("scalar.bytes", raw(b"\0" * 8))) + REDUCE
    key = b"}" + put("dict.key", text("k")) + NONE + b"s" + b"0"  # a dict built, then popped
    module = put("global.module", text("numpy")) + put("global.name", text("ndarray")) + b"\x93"
    encode = glob("_codecs", "encode") + tup(put("encode.arg", text("x")), text("latin1"))
    encode += REDUCE
    cells = lst(scalar, encode, put("cell", flt(1.0)), _filler())
    head = put("reduce.func", glob(*REC))
    head += tup(
        put("reconstruct.cls", module),
        put("reconstruct.shape", tup(num(0))),
        put("reconstruct.typecode", raw(b"b")),
    )
    head += REDUCE
    state = tup(
        put("array.state.0", num(1)),
        put("array.state.shape", tup(num(1), num(DEPTH))),
        put("array.state.dtype", dtype),
        put("array.state.fortran", FALSE),
        put("array.state.cells", cells),
    )
    return b"\x80\x04" + key + head + state + BUILD + STOP


SLOTS = [
    "reduce.func", "reconstruct.cls", "reconstruct.shape", "reconstruct.typecode",
    "dtype.func", "dtype.name", "dtype.align", "dtype.state.0", "dtype.state.1",
    "dtype.state.2", "dtype.state.5", "dtype.state.7", "scalar.dtype", "scalar.bytes",
    "dict.key", "global.module", "global.name", "encode.arg", "array.state.0",
    "array.state.shape", "array.state.dtype", "array.state.fortran", "array.state.cells",
    "cell",
]  # fmt: skip


def test_the_slot_template_is_valid() -> None:
    from leap.builtins.safe_pickle import load_object_array

    array = load_object_array(_template("", b""), shape=(1, DEPTH))
    assert array[0, 0] == 0.0 and array[0, 1] == b"x" and array[0, 2] == 1.0


@pytest.mark.slow  # 200,000 levels: hashing 100,000 is still fine on an 8 MB stack
@pytest.mark.parametrize("kind", ["tuple", "list"])
@pytest.mark.parametrize("slot", SLOTS)
def test_a_deep_structure_in_any_slot_is_one_line(slot: str, kind: str) -> None:
    """No check hashes, compares or prints a nested value: each would recurse in C."""
    from leap.builtins.safe_pickle import load_object_array

    with pytest.raises(LeapError) as caught:
        load_object_array(_template(slot, _deep(kind)), shape=(1, DEPTH))
    _assert_one_line(str(caught.value), r"object array")
