"""Hypothesis fuzzing of the object-array interpreter and the ``.npy`` header checks.

Pickle streams are assembled from every opcode of protocols 0-5 with random arguments
(lengths that lie, memo indices never set, globals from numpy and elsewhere), or are
valid numpy pickles with bytes flipped, cut or inserted; ``.npy`` headers get random
dtypes (zero-size, structured, subarray, void, big-endian), shapes (empty, huge) and
bodies of any length. Every input must give a correct array or one LeapError line,
never another exception, within a memory bound proportional to the input. The
interpreter never calls numpy's unpickler, so running it in-process cannot crash.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leap.builtins.readers import read_npy_stream
from leap.builtins.safe_pickle import UnsafePickleError, load_object_array
from leap.errors import LeapError

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCALAR_TYPES = (bool, int, float, str, bytes, type(None), np.generic)


def memory_bound(n_bytes: int) -> int:
    """What an input of ``n_bytes`` may cost: a constant factor plus fixed slack."""
    return 200 * n_bytes + 4 * 2**20


def outcome(call: Any, n_bytes: int) -> Any:
    """The call's result or LeapError, checking the one-line message and the memory peak."""
    tracemalloc.start()
    try:
        result = call()
    except LeapError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 1000, message[:300]
        result = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak <= memory_bound(n_bytes), (peak, n_bytes)
    return result


def check_object_array(result: Any, shape: tuple[int, ...]) -> None:
    if isinstance(result, LeapError):
        assert isinstance(result, UnsafePickleError), result
        return
    assert isinstance(result, np.ndarray) and result.dtype == object and result.shape == shape
    assert all(isinstance(cell, SCALAR_TYPES) for cell in result.flat)


# -- opcode streams ----------------------------------------------------------------------
u8 = st.integers(0, 255)
lengths = st.one_of(st.integers(0, 12), st.sampled_from([2**31 - 1, 2**32 - 1, 2**63, 2**64 - 1]))
texts = st.text(max_size=6)
GLOBALS = [
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("builtins", "eval"),
    ("os", "system"),
    ("numpy", "frombuffer"),
    ("copyreg", "_reconstructor"),
]


def _len_prefixed(code: bytes, width: int) -> st.SearchStrategy[bytes]:
    fmt = {1: "<B", 4: "<I", 8: "<Q"}[width]

    def build(n: int, payload: bytes) -> bytes:
        return code + struct.pack(fmt, n % (256**width)) + payload

    return st.builds(build, lengths, st.binary(max_size=12))


TOKENS = st.one_of(
    # fixed opcodes: stack, containers, constants, calls, and every refused one
    st.sampled_from([bytes([c]) for c in b"(012N\x88\x89]l)t\x85\x86\x87}duseaRb\x93\x94."]),
    st.sampled_from([bytes([c]) for c in b"io\x81\x92PQ\x8f\x90\x91\x97\x98\xff"]),
    st.builds(lambda v: b"\x80" + bytes([v]), st.integers(0, 7)),
    st.builds(lambda n: b"\x95" + struct.pack("<Q", n % 2**64), lengths),
    st.builds(lambda v: b"K" + bytes([v]), u8),
    st.builds(lambda v: b"M" + struct.pack("<H", v), st.integers(0, 65535)),
    st.builds(lambda v: b"J" + struct.pack("<i", v), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda v: b"G" + struct.pack(">d", v), st.floats()),
    st.builds(lambda v: b"I" + v.encode() + b"\n", st.sampled_from(["00", "01", "7", "x", ""])),
    st.builds(lambda v: b"F" + v.encode() + b"\n", st.sampled_from(["1.5", "nan", "inf", "?"])),
    st.builds(lambda v: b"L" + v.encode() + b"L\n", st.sampled_from(["12", "-3", "9" * 300])),
    st.builds(lambda v: b"S" + v + b"\n", st.sampled_from([b"'ab'", b'"\\x00"', b"'x", b"q"])),
    st.builds(lambda v: b"V" + v.encode("raw_unicode_escape") + b"\n", texts),
    _len_prefixed(b"\x8a", 1),  # LONG1
    _len_prefixed(b"\x8b", 4),  # LONG4
    _len_prefixed(b"C", 1),  # SHORT_BINBYTES
    _len_prefixed(b"B", 4),  # BINBYTES
    _len_prefixed(b"\x8e", 8),  # BINBYTES8
    _len_prefixed(b"\x96", 8),  # BYTEARRAY8
    _len_prefixed(b"U", 1),  # SHORT_BINSTRING
    _len_prefixed(b"T", 4),  # BINSTRING
    _len_prefixed(b"\x8c", 1),  # SHORT_BINUNICODE
    _len_prefixed(b"X", 4),  # BINUNICODE
    _len_prefixed(b"\x8d", 8),  # BINUNICODE8
    st.builds(lambda i: b"h" + bytes([i]), st.integers(0, 8)),
    st.builds(lambda i: b"q" + bytes([i]), st.integers(0, 8)),
    st.builds(lambda i: b"j" + struct.pack("<I", i), st.sampled_from([0, 1, 2**32 - 1])),
    st.builds(lambda i: b"r" + struct.pack("<I", i), st.sampled_from([0, 1, 2**32 - 1])),
    st.builds(lambda i: b"g" + str(i).encode() + b"\n", st.integers(0, 4)),
    st.builds(lambda i: b"p" + str(i).encode() + b"\n", st.integers(0, 4)),
    st.builds(lambda g: b"c" + g[0].encode() + b"\n" + g[1].encode() + b"\n",
              st.sampled_from(GLOBALS)),
    st.builds(lambda g: b"\x8c" + bytes([len(g[0])]) + g[0].encode() + b"\x8c"
              + bytes([len(g[1])]) + g[1].encode() + b"\x93", st.sampled_from(GLOBALS)),
)  # fmt: skip

shapes = st.tuples(st.integers(0, 3), st.integers(0, 3))


@FUZZ
@given(tokens=st.lists(TOKENS, max_size=40), shape=shapes, stop=st.booleans())
def test_random_opcode_streams(tokens: list[bytes], shape: tuple[int, int], stop: bool) -> None:
    data = b"".join(tokens) + (b"." if stop else b"")
    result = outcome(lambda: load_object_array(data, shape=shape), len(data))
    check_object_array(result, shape)


# -- valid numpy pickles, then damaged ----------------------------------------------------
nan_payloads = st.integers(1, 2**51 - 1).map(
    lambda m: struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000000 | m))[0]
)
cells = st.one_of(
    st.none(),
    nan_payloads,
    st.lists(st.floats(), min_size=2, max_size=30).map(tuple),  # unpacked below: float runs
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.builds(np.float64, st.floats()),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.bool_, st.booleans()),
    st.builds(np.str_, st.text(max_size=3)),
)


@st.composite
def object_arrays(draw: st.DrawFn) -> np.ndarray:
    shape = draw(st.tuples(st.integers(0, 4), st.integers(0, 4)))
    values = draw(st.lists(cells, min_size=math.prod(shape), max_size=math.prod(shape)))
    # a tuple stands for a run of Python floats (the BINFLOAT fast path), cut to fit
    values = [v for value in values for v in (value if type(value) is tuple else (value,))]
    values = values[: math.prod(shape)]
    flat = np.empty(len(values), dtype=object)
    flat[:] = values
    array = flat.reshape(shape)
    return np.asfortranarray(array) if draw(st.booleans()) else array


def body_of(array: np.ndarray, protocol: int | None) -> bytes:
    if protocol is not None:
        return pickle.dumps(array, protocol=protocol)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    data = buffer.getvalue()
    return data[data.index(b"\n") + 1 :]


def same_cell(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float | np.floating):  # bit for bit: NaN payloads and -0.0 too
        return np.asarray(a).tobytes() == np.asarray(b).tobytes()
    return bool(a == b)


@FUZZ
@given(array=object_arrays(), protocol=st.sampled_from([None, 0, 1, 2, 3, 4, 5]))
def test_valid_object_pickles_read_back_exactly(array: np.ndarray, protocol: int | None) -> None:
    data = body_of(array, protocol)
    result = outcome(lambda: load_object_array(data, shape=array.shape), len(data))
    assert isinstance(result, np.ndarray), result
    assert result.shape == array.shape
    # The reference is numpy's own unpickling of our own, benign arrays (it strips
    # trailing NULs of np.str_ cells, for one; we must do exactly the same).
    expected = pickle.loads(pickle.dumps(array, protocol=4 if protocol is None else protocol))
    assert all(same_cell(a, b) for a, b in zip(result.flat, expected.flat, strict=True))


@FUZZ
@given(
    array=object_arrays(),
    protocol=st.sampled_from([None, 2, 5]),
    edits=st.lists(
        st.tuples(st.sampled_from(["flip", "cut", "insert"]), st.floats(0, 1), u8),
        min_size=1,
        max_size=4,
    ),
)
def test_damaged_object_pickles(array: np.ndarray, protocol: int | None, edits: list) -> None:
    data = bytearray(body_of(array, protocol))
    for kind, where, value in edits:
        at = int(where * max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[at] = value
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = bytes([value])
    result = outcome(lambda: load_object_array(bytes(data), shape=array.shape), len(data))
    check_object_array(result, array.shape)


# -- .npy headers --------------------------------------------------------------------------
#: Header descr literals, with the dtype each means (None: not a dtype).
DESCRS = {
    "'<f8'": "<f8", "'>f8'": ">f8", "'<i4'": "<i4", "'|b1'": "|b1", "'|u1'": "|u1",
    "'<f2'": "<f2", "'<c16'": "<c16", "'<U3'": "<U3", "'|S2'": "|S2", "'<M8[s]'": "<M8[s]",
    "'|O'": "|O", "'O'": "O", "'|V0'": "|V0", "'<U0'": "<U0", "'|S0'": "|S0", "'|V8'": "|V8",
    "'x9'": None, "{'x': 1}": None, "3": None,
    "[('a', '<f8')]": [("a", "<f8")],
    "[('a', '|O'), ('b', '<i8')]": [("a", "|O"), ("b", "<i8")],
    "[('a', '|V0')]": [("a", "|V0")],
    "('<f8', (3,))": ("<f8", (3,)),
    "('<f8', (1000000000,))": ("<f8", (10**9,)),
}  # fmt: skip
dims = st.one_of(st.integers(0, 4), st.sampled_from([0, 2**31, 2**62, -1]))


def npy_file(descr: str, shape: tuple, fortran: bool, version: int, body: bytes) -> bytes:
    text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    text += " " * ((64 - (len(text) + 11) % 64) % 64) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text.encode("latin1") + body


def read_bytes(data: bytes, max_cells: int = 10**6) -> Any:
    return read_npy_stream(io.BytesIO(data), "m.npy", size=len(data), max_cells=max_cells)


@FUZZ
@given(
    descr=st.sampled_from(sorted(DESCRS)),
    shape=st.lists(dims, max_size=3).map(tuple),
    fortran=st.booleans(),
    version=st.sampled_from([1, 2, 3]),
    extra=st.integers(-16, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_headers(
    descr: str, shape: tuple, fortran: bool, version: int, extra: int, seed: int
) -> None:
    try:
        dtype = np.dtype(DESCRS[descr]) if DESCRS[descr] is not None else None
    except ValueError:  # e.g. a subarray too large for numpy itself
        dtype = None
    count = math.prod(shape) if all(n >= 0 for n in shape) else 0
    if dtype is None or dtype.hasobject:
        size = max(0, extra)
    else:
        size = max(0, min(count * dtype.itemsize, 4096) + extra)
    body = np.random.default_rng(seed).bytes(size)
    data = npy_file(descr, shape, fortran, version, body)
    result = outcome(lambda: read_bytes(data), len(data))
    if isinstance(result, LeapError):
        return
    # accepted: a plain dtype, the header's shape, every promised byte present
    assert dtype is not None and not dtype.hasobject and dtype.fields is None
    assert result.shape == shape and dtype.itemsize > 0
    reference = np.load(io.BytesIO(data), allow_pickle=False)  # numpy's own, non-object
    np.testing.assert_array_equal(result, reference)
    assert result.dtype.isnative


@pytest.mark.parametrize("descr", ["'<f8'", "'|O'", "'|b1'"])
@pytest.mark.parametrize("shape", [(0, 2**62), (2**62, 0, 2**62), (0, 2**31, 2**31), (0,)])
def test_empty_arrays_with_enormous_dimensions(descr: str, shape: tuple) -> None:
    data = npy_file(descr, shape, False, 1, b".")
    result = outcome(lambda: read_bytes(data), len(data))
    if shape == (0,) and descr != "'|O'":
        assert isinstance(result, np.ndarray) and result.shape == (0,)
    else:
        assert isinstance(result, LeapError)


@FUZZ
@given(array=object_arrays(), shape=st.tuples(st.integers(0, 5), st.integers(0, 5)))
def test_object_header_shape_must_match_the_pickle(array: np.ndarray, shape: tuple) -> None:
    data = npy_file("'|O'", shape, False, 1, body_of(array, None))
    result = outcome(lambda: read_bytes(data), len(data))
    if shape == array.shape:
        assert isinstance(result, np.ndarray) and result.shape == shape
    else:
        assert isinstance(result, LeapError)


@pytest.mark.parametrize("n_cells", [10, 10_000])
def test_memory_follows_the_declared_cells(n_cells: int) -> None:
    """A legitimate object array costs memory in proportion to its cells."""
    array = np.empty((n_cells, 1), dtype=object)
    array[:, 0] = [np.float64(i) for i in range(n_cells)]
    data = body_of(array, None)
    result = outcome(lambda: load_object_array(data, shape=array.shape), len(data))
    assert isinstance(result, np.ndarray)
    np.testing.assert_array_equal(result[:, 0].astype(float), np.arange(n_cells))
