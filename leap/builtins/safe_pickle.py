"""Read numpy object arrays without unpickling them.

An object ``.npy`` (and an object member of an ``.npz``) stores its cells as a pickle
stream. Unpickling it, even with an allow-list of classes, lets the file steer numpy's
own reconstruction code: the state handed to ``ndarray.__setstate__`` can make numpy
read raw bytes as object pointers, and dtype state can set internal flags. So this
module never calls an unpickler. :func:`load_object_array` interprets the opcodes
itself and builds the array with ordinary numpy calls, accepting only data:

- ``None``, booleans, integers, floats, text and bytes;
- tuples, lists and dicts of those (dict keys are scalars);
- numpy's array reconstruction (``_reconstruct`` of ``ndarray`` and its state), with
  exactly the dtype and shape of the ``.npy`` header, whose cells are scalars;
- ``_codecs.encode(text, "latin1")`` and ``bytes()``, which pickle protocols 0-2 use
  for bytes;
- numpy scalars (``scalar``) of plain numeric, text and bytes dtypes, and the ``dtype``
  reconstruction those need (no fields, subarrays, metadata; flags ignored).

Every other opcode (``INST``, ``OBJ``, ``NEWOBJ``, ``EXT*``, ``PERSID``, sets, out-of-band
buffers) and every other global is refused by name with an :class:`UnsafePickleError`.
Lengths are checked against the bytes left before anything is sliced, and the number of
containers built is bounded by the number of cells the header declares, so memory stays
proportional to the declared work.
"""

from __future__ import annotations

import codecs
import math
import re
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from leap.errors import InputFileError

#: Globals a numpy object array may name, by (module, name).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.multiarray", "scalar"): "scalar",
    ("numpy._core.multiarray", "scalar"): "scalar",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    # Protocols 0-2 spell bytes as _codecs.encode(text, "latin1").
    ("_codecs", "encode"): "encode",
    # ... and empty bytes as bytes() under its Python 2 name.
    ("__builtin__", "bytes"): "bytes",
    ("builtins", "bytes"): "bytes",
}
#: Opcodes refused outright, with what they would do.
REFUSED_OPCODES = {
    b"i": "INST (build an instance of a named class)",
    b"o": "OBJ (build an instance of a class)",
    b"\x81": "NEWOBJ (call cls.__new__)",
    b"\x92": "NEWOBJ_EX (call cls.__new__)",
    b"\x82": "EXT1 (a registered extension)",
    b"\x83": "EXT2 (a registered extension)",
    b"\x84": "EXT4 (a registered extension)",
    b"P": "PERSID (a persistent reference)",
    b"Q": "BINPERSID (a persistent reference)",
    b"\x8f": "EMPTY_SET",
    b"\x90": "ADDITEMS",
    b"\x91": "FROZENSET",
    b"\x97": "NEXT_BUFFER (an out-of-band buffer)",
    b"\x98": "READONLY_BUFFER",
}
#: Longest integer accepted, in bytes (LONG1/LONG4) or digits (text opcodes).
MAX_NUMBER_LENGTH = 64
#: dtype names numpy's pickles use for plain data: kind and size (chars for U).
_DTYPE_NAME = re.compile(r"([biufcUS])([0-9]{1,6})|O[48]")
_CODES = [bytes([i]) for i in range(256)]
_BINFLOAT = struct.Struct(">d")
_UINT32 = struct.Struct("<I").unpack_from
_FLOAT_RUN = np.dtype([("op", "u1"), ("v", ">f8")])  # BINFLOAT opcodes side by side
#: Scalars decoded without numpy's buffer machinery: the same values, bit for bit.
_FAST_SCALARS = {
    np.dtype("<f8"): (struct.Struct("<d").unpack, np.float64),
    np.dtype("<i8"): (struct.Struct("<q").unpack, np.int64),
}


class UnsafePickleError(InputFileError):
    """A pickle stream holds something other than plain data and numpy's array pickling."""


class _Marker:
    """Stack value for an allowed global or a half-built numpy object."""

    def __init__(self, kind: str, args: tuple = ()) -> None:
        self.kind = kind
        self.args = args
        self.built = False

    def __repr__(self) -> str:  # never shows the file's content
        return f"<{self.kind}>"


class _Mark:
    """The MARK sentinel on the stack."""


_MARK = _Mark()


def load_object_array(
    data: bytes | bytearray | memoryview,
    *,
    shape: tuple[int, ...],
    max_containers: int | None = None,
) -> np.ndarray:
    """Interpret ``data`` (the pickle after an object ``.npy`` header) as an object array.

    Parameters
    ----------
    data : bytes-like
        The pickle stream.
    shape : tuple of int
        The shape the ``.npy`` header declares; the pickled array must have exactly it.
    max_containers : int, optional
        Most tuples, lists and dicts the stream may build; default twice the number of
        cells plus 4096 (numpy writes one argument tuple per numpy scalar).

    Returns
    -------
    ndarray of dtype object and shape ``shape``, whose cells are ``None``, bool, int,
    float, str, bytes or numpy scalars.

    Raises
    ------
    UnsafePickleError
        For anything else, a malformed or truncated stream, or a shape that differs.
    """
    n_cells = math.prod(shape)
    if max_containers is None:
        max_containers = 2 * n_cells + 4096
    machine = _Machine(bytes(data), shape, max_containers, 4 * n_cells + 4096)
    try:
        return machine.run()
    except UnsafePickleError:
        raise
    except (ValueError, TypeError, OverflowError, UnicodeError, struct.error) as exc:
        raise UnsafePickleError(
            f"the object array's pickle is malformed near byte {machine.pos} ({type(exc).__name__})"
        ) from None


class _Machine:
    def __init__(
        self, data: bytes, shape: tuple[int, ...], max_containers: int, max_memo: int
    ) -> None:
        self.data = data
        self.pos = 0
        self.shape = tuple(shape)
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.max_memo = max_memo
        self.memo_of_marker: dict[int, list[int]] = {}  # id(marker) -> memo keys
        self.containers = 0
        self.max_containers = max_containers
        self.ops: dict[bytes, Callable[[], Any]] = self._opcodes()
        self.calls: dict[str, Callable[[tuple], Any]] = {
            "reconstruct": self.call_reconstruct,
            "dtype": self.call_dtype,
            "scalar": self.call_scalar,
            "encode": self.call_encode,
            "bytes": self.call_bytes,
        }

    # -- reading the stream ----------------------------------------------------------
    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise UnsafePickleError(
                f"the object array's pickle is truncated or declares a length ({n}) longer "
                f"than the {len(self.data) - self.pos} bytes left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def line(self) -> bytes:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise UnsafePickleError("the object array's pickle is truncated (a text line)")
        text = self.data[self.pos : end]
        self.pos = end + 1
        return text

    # -- the stack ---------------------------------------------------------------------
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise UnsafePickleError("the object array's pickle pops an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise UnsafePickleError("the object array's pickle uses a MARK it never set")
        start = self.marks.pop()
        items = self.stack[start + 1 :]
        del self.stack[start:]
        return items

    def new_container(self) -> None:
        self.containers += 1
        if self.containers > self.max_containers:
            raise UnsafePickleError(
                f"the object array's pickle builds more than {self.max_containers} tuples, "
                f"lists or dicts for {math.prod(self.shape)} cells"
            )

    def run(self) -> np.ndarray:
        ops, data, size, stack, memo = self.ops, self.data, len(self.data), self.stack, self.memo
        push, binfloat, uint32, max_memo = (
            stack.append,
            _BINFLOAT.unpack_from,
            _UINT32,
            self.max_memo,
        )
        while True:
            pos = self.pos
            if pos >= size:
                raise UnsafePickleError("the object array's pickle is truncated (no STOP)")
            byte = data[pos]
            # Inlined: BINFLOAT (the cells of a LEAP file), and the memo traffic of numpy
            # scalars; each falls back to the general path when its checks would fail.
            if byte == 0x47 and pos + 18 <= size and data[pos + 9] == 0x47:
                # a run of BINFLOATs (numpy writes up to 1000 per APPENDS): decode at once
                window = min((size - pos) // 9, 4096)
                codes = np.frombuffer(data, np.uint8, count=window * 9, offset=pos)[::9]
                ends = np.flatnonzero(codes != 0x47)
                run = int(ends[0]) if len(ends) else window
                stack.extend(np.frombuffer(data, _FLOAT_RUN, count=run, offset=pos)["v"].tolist())
                self.pos = pos + 9 * run
                continue
            if byte == 0x47 and pos + 9 <= size:
                push(binfloat(data, pos + 1)[0])
                self.pos = pos + 9
                continue
            if byte == 0x94 and stack and stack[-1] is not _MARK and len(memo) < max_memo:
                value = stack[-1]
                if not isinstance(value, _Marker):
                    memo[len(memo)] = value
                    self.pos = pos + 1
                    continue
            if byte == 0x6A and pos + 5 <= size:  # LONG_BINGET
                key = uint32(data, pos + 1)[0]
                if key in memo:
                    push(memo[key])
                    self.pos = pos + 5
                    continue
            if byte == 0x43 and pos + 2 <= size and pos + 2 + data[pos + 1] <= size:
                push(data[pos + 2 : pos + 2 + data[pos + 1]])  # SHORT_BINBYTES
                self.pos = pos + 2 + data[pos + 1]
                continue
            if byte == 0x86 and len(stack) >= 2 and not (stack[-1] is _MARK or stack[-2] is _MARK):
                self.new_container()  # TUPLE2
                stack[-2:] = [(stack[-2], stack[-1])]
                self.pos = pos + 1
                continue
            if byte == 0x52 and len(stack) >= 2 and type(stack[-2]) is _Marker:
                args = stack[-1]  # REDUCE of scalar(float64 or int64 dtype, 8 bytes)
                if (
                    stack[-2].kind == "scalar"
                    and type(args) is tuple
                    and len(args) == 2
                    and type(args[1]) is bytes
                    and len(args[1]) == 8
                    and isinstance(args[0], np.dtype)  # before hashing: a deep tuple would
                    and args[0] in _FAST_SCALARS  # recurse in C (a SIGSEGV, found in review)
                ):
                    fmt, make = _FAST_SCALARS[args[0]]
                    stack[-2:] = [make(fmt(args[1])[0])]
                    self.pos = pos + 1
                    continue
            if byte == 0x68 and pos + 2 <= size and data[pos + 1] in memo:  # BINGET
                push(memo[data[pos + 1]])
                self.pos = pos + 2
                continue
            code = _CODES[data[pos]]
            self.pos = pos + 1
            if code == b".":
                break
            op = ops.get(code)
            if op is None:
                what = REFUSED_OPCODES.get(code, f"unknown opcode {code!r}")
                raise UnsafePickleError(f"refusing the object array's pickle: it uses {what}")
            op()
        result = self.pop()
        if self.stack or self.marks:
            raise UnsafePickleError("the object array's pickle leaves values on its stack")
        if not isinstance(result, np.ndarray):
            raise UnsafePickleError(
                f"the object array's pickle holds a {_kind(result)}, not a numpy array"
            )
        return result

    # -- opcodes -----------------------------------------------------------------------
    def _opcodes(self) -> dict[bytes, Callable[[], Any]]:
        p = self.stack.append
        return {
            b"\x80": self.proto,
            b"\x95": self.frame,
            b"(": self.mark,
            b"0": self.pop,
            b"1": self.pop_mark,
            b"2": lambda: p(self.peek()),
            b"N": lambda: p(None),
            b"\x88": lambda: p(True),
            b"\x89": lambda: p(False),
            b"I": self.text_int,
            b"L": self.text_long,
            b"J": lambda: p(struct.unpack("<i", self.take(4))[0]),
            b"K": lambda: p(self.uint(1)),
            b"M": lambda: p(self.uint(2)),
            b"\x8a": lambda: p(self.long(self.uint(1))),
            b"\x8b": lambda: p(self.long(self.uint(4))),
            b"F": self.text_float,
            b"G": lambda: p(struct.unpack(">d", self.take(8))[0]),
            b"S": self.text_string,
            b"T": lambda: p(bytes(self.take(self.uint(4)))),
            b"U": lambda: p(bytes(self.take(self.uint(1)))),
            b"B": lambda: p(bytes(self.take(self.uint(4)))),
            b"C": lambda: p(bytes(self.take(self.uint(1)))),
            b"\x8e": lambda: p(bytes(self.take(self.uint(8)))),
            b"\x96": lambda: p(bytes(self.take(self.uint(8)))),  # BYTEARRAY8, as bytes
            b"V": lambda: p(codecs.raw_unicode_escape_decode(self.line())[0]),
            b"X": lambda: p(self.utf8(self.take(self.uint(4)))),
            b"\x8c": lambda: p(self.utf8(self.take(self.uint(1)))),
            b"\x8d": lambda: p(self.utf8(self.take(self.uint(8)))),
            b"]": lambda: self.container([]),
            b"l": lambda: self.container(self.pop_mark()),
            b"a": self.append,
            b"e": self.appends,
            b")": lambda: p(()),
            b"t": lambda: self.container(tuple(self.pop_mark())),
            b"\x85": lambda: self.tuple_of(1),
            b"\x86": lambda: self.tuple_of(2),
            b"\x87": lambda: self.tuple_of(3),
            b"}": lambda: self.container({}),
            b"d": self.dict_from_mark,
            b"s": self.setitem,
            b"u": self.setitems,
            b"g": lambda: self.get(self.text_index()),
            b"h": lambda: self.get(self.uint(1)),
            b"j": lambda: self.get(self.uint(4)),
            b"p": lambda: self.put(self.text_index()),
            b"q": lambda: self.put(self.uint(1)),
            b"r": lambda: self.put(self.uint(4)),
            b"\x94": lambda: self.put(len(self.memo)),
            b"c": self.text_global,
            b"\x93": self.stack_global,
            b"R": self.reduce,
            b"b": self.build,
        }

    def proto(self) -> None:
        version = self.uint(1)
        if version > 5:
            raise UnsafePickleError(f"the object array's pickle has protocol {version} (> 5)")

    def frame(self) -> None:
        """FRAME: only a length hint here, but one that must not exceed the bytes left."""
        n = self.uint(8)
        if n > len(self.data) - self.pos:
            raise UnsafePickleError(
                f"the object array's pickle declares a length ({n}) longer than the "
                f"{len(self.data) - self.pos} bytes left"
            )

    def mark(self) -> None:
        self.marks.append(len(self.stack))
        self.stack.append(_MARK)

    def peek(self) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise UnsafePickleError("the object array's pickle duplicates an empty stack")
        return self.stack[-1]

    def long(self, n: int) -> int:
        if n > MAX_NUMBER_LENGTH:
            raise UnsafePickleError(f"the object array's pickle holds a {n}-byte integer")
        return int.from_bytes(self.take(n), "little", signed=True)

    def number_text(self) -> str:
        text = self.line()
        if len(text) > MAX_NUMBER_LENGTH * 3:
            raise UnsafePickleError("the object array's pickle holds an over-long number")
        return text.decode("ascii", "strict")

    def text_int(self) -> None:
        text = self.number_text()
        self.push(True if text == "01" else False if text == "00" else int(text))

    def text_long(self) -> None:
        self.push(int(self.number_text().removesuffix("L")))

    def text_float(self) -> None:
        self.push(float(self.number_text()))

    def text_index(self) -> int:
        return int(self.number_text())

    def text_string(self) -> None:
        raw = self.line()
        if len(raw) < 2 or raw[:1] != raw[-1:] or raw[:1] not in (b"'", b'"'):
            raise UnsafePickleError("the object array's pickle holds a badly quoted STRING")
        self.push(codecs.escape_decode(raw[1:-1])[0])

    @staticmethod
    def utf8(chunk: bytes) -> str:
        return chunk.decode("utf-8", "surrogatepass")

    def container(self, value: Any) -> None:
        self.new_container()
        self.push(value)

    def tuple_of(self, n: int) -> None:
        if len(self.stack) < n or any(v is _MARK for v in self.stack[-n:]):
            raise UnsafePickleError("the object array's pickle builds a tuple from a short stack")
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self.container(items)

    def target_list(self) -> list:
        target = self.peek()
        if type(target) is not list:
            raise UnsafePickleError(
                f"the object array's pickle appends to a {_kind(target)}, not a list"
            )
        return target

    def append(self) -> None:
        value = self.pop()
        self.target_list().append(value)

    def appends(self) -> None:
        items = self.pop_mark()
        self.target_list().extend(items)

    def dict_from_mark(self) -> None:
        items = self.pop_mark()
        self.container({})
        self.fill(self.stack[-1], items)

    def setitem(self) -> None:
        value = self.pop()
        key = self.pop()
        self.fill(self.peek(), [key, value])

    def setitems(self) -> None:
        items = self.pop_mark()
        self.fill(self.peek(), items)

    @staticmethod
    def fill(target: Any, items: list) -> None:
        if type(target) is not dict:
            raise UnsafePickleError(
                f"the object array's pickle sets an item of a {_kind(target)}, not a dict"
            )
        if len(items) % 2:
            raise UnsafePickleError("the object array's pickle sets a dict key without a value")
        for key, value in zip(items[::2], items[1::2], strict=True):
            # Scalar keys only: hashing a deeply nested tuple recurses in C.
            if type(key) not in (bool, int, float, str, bytes, type(None)):
                raise UnsafePickleError(
                    f"the object array's pickle uses a {_kind(key)} as a dict key"
                )
            target[key] = value

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise UnsafePickleError(f"the object array's pickle reads memo {index}, never set")
        self.push(self.memo[index])

    def put(self, index: int) -> None:
        if index not in self.memo and len(self.memo) >= self.max_memo:
            raise UnsafePickleError(
                f"the object array's pickle memoises more than {self.max_memo} values for "
                f"{math.prod(self.shape)} cells"
            )
        value = self.memo[index] = self.peek()
        if isinstance(value, _Marker):
            self.memo_of_marker.setdefault(id(value), []).append(index)

    def text_global(self) -> None:
        module = self.line().decode("utf-8", "replace")
        name = self.line().decode("utf-8", "replace")
        self.push(self.find_global(module, name))

    def stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        if type(module) is not str or type(name) is not str:
            raise UnsafePickleError("the object array's pickle names a global by non-text")
        self.push(self.find_global(module, name))

    @staticmethod
    def find_global(module: str, name: str) -> _Marker:
        kind = ALLOWED_GLOBALS.get((module, name))
        if kind is None:
            shown = f"{module[:60]}.{name[:60]}"
            raise UnsafePickleError(
                f"refusing to load {shown} from an object array: only numbers, text, bytes "
                f"and numpy's own array pickling are accepted in a feature matrix"
            )
        return _Marker(kind)

    def reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        if not isinstance(func, _Marker) or func.kind not in (
            "reconstruct",
            "dtype",
            "scalar",
            "encode",
            "bytes",
        ):
            raise UnsafePickleError(
                f"the object array's pickle calls a {_kind(func)}; only numpy's array, dtype "
                f"and scalar reconstruction may be called"
            )
        if type(args) is not tuple:
            raise UnsafePickleError("the object array's pickle calls with non-tuple arguments")
        self.push(self.calls[func.kind](args))

    def call_reconstruct(self, args: tuple) -> _Marker:
        if (
            len(args) != 3
            or not (isinstance(args[0], _Marker) and args[0].kind == "ndarray")
            or type(args[1]) is not tuple
            or args[1] != (0,)
            or args[2] not in (b"b", "b")
        ):
            raise UnsafePickleError(
                "the object array's pickle reconstructs an array with unusual arguments"
            )
        return _Marker("array")

    @staticmethod
    def call_encode(args: tuple) -> bytes:
        if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
            return args[0].encode("latin-1")
        if args == ():
            return b""
        raise UnsafePickleError("the object array's pickle encodes bytes in an unusual way")

    @staticmethod
    def call_bytes(args: tuple) -> bytes:
        if args != ():
            raise UnsafePickleError("the object array's pickle calls bytes() with arguments")
        return b""

    @staticmethod
    def call_dtype(args: tuple) -> _Marker:
        if len(args) != 3 or type(args[0]) is not str or not _DTYPE_NAME.fullmatch(args[0]):
            name = args[0] if args and type(args[0]) is str else "?"
            raise UnsafePickleError(
                f"the object array's pickle asks for dtype {name[:20]!r}; only numbers, text "
                f"and bytes are accepted"
            )
        if any(type(a) not in (bool, int) or a not in (0, 1) for a in args[1:]):
            raise UnsafePickleError("the object array's pickle gives odd dtype flags")
        return _Marker("dtype", (args[0],))

    @staticmethod
    def call_scalar(args: tuple) -> Any:
        if len(args) != 2 or not isinstance(args[0], np.dtype):
            raise UnsafePickleError("the object array's pickle makes a scalar without a dtype")
        dtype, raw = args
        if dtype.hasobject:
            raise UnsafePickleError("the object array's pickle makes a numpy object scalar")
        if type(raw) is str:  # Python 2 era pickles carry the bytes as latin-1 text
            raw = raw.encode("latin-1", "strict")
        if type(raw) is not bytes or len(raw) != dtype.itemsize:
            raise UnsafePickleError(
                f"the object array's pickle gives a {dtype} scalar the wrong number of bytes"
            )
        if dtype.itemsize == 0:  # numpy's empty text and bytes scalars
            return dtype.type()
        return np.frombuffer(raw, dtype=dtype)[0]

    def build(self) -> None:
        state = self.pop()
        target = self.peek()
        if not isinstance(target, _Marker) or target.kind not in ("array", "dtype"):
            raise UnsafePickleError(
                f"the object array's pickle sets the state of a {_kind(target)}; only numpy "
                f"arrays and dtypes may have one"
            )
        if target.built:
            raise UnsafePickleError("the object array's pickle sets a state twice")
        target.built = True
        built = self.dtype_state(target, state) if target.kind == "dtype" else None
        if built is None:
            built = self.array_state(state)
        self.stack[-1] = built
        for key in self.memo_of_marker.pop(id(target), ()):  # memo references see it built
            if self.memo.get(key) is target:
                self.memo[key] = built

    @staticmethod
    def dtype_state(target: _Marker, state: Any) -> np.dtype:
        name = target.args[0]
        if (
            type(state) is not tuple
            or len(state) not in (8, 9)
            or state[0] not in (3, 4)
            or state[1] not in ("<", ">", "|", "=")
            or state[2:5] != (None, None, None)
            or (len(state) == 9 and state[8] is not None)
            or any(type(v) is not int for v in state[5:8])
        ):
            raise UnsafePickleError(
                "the object array's pickle gives a dtype a state with fields, subarrays, "
                "metadata or odd values"
            )
        try:
            dtype = np.dtype(object if name[0] == "O" else name)
        except TypeError:  # a size numpy does not have, e.g. i16
            raise UnsafePickleError(f"the object array's pickle asks for dtype {name}") from None
        if state[1] in "<>" and dtype.kind != "O":
            dtype = dtype.newbyteorder(state[1])
        # (a zero-size U0/S0 is numpy's empty-string scalar; arrays are object, never these)
        if state[5] not in (-1, dtype.itemsize):
            raise UnsafePickleError(f"the object array's pickle gives dtype {name} a bad size")
        if state[7] != dtype.flags or state[6] not in (-1, dtype.alignment):
            # numpy would copy these flags into the dtype (object flags on plain data)
            raise UnsafePickleError(
                f"the object array's pickle gives dtype {name} flags or an alignment numpy "
                f"never writes for it"
            )
        return dtype

    def array_state(self, state: Any) -> np.ndarray:
        if type(state) is tuple and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if type(state) is not tuple or len(state) != 4:
            raise UnsafePickleError("the object array's pickle gives an array an odd state")
        shape, dtype, fortran, raw = state
        if type(shape) is not tuple or any(type(n) is not int or n < 0 for n in shape):
            raise UnsafePickleError("the object array's pickle gives an array an odd shape")
        if shape != self.shape:
            raise UnsafePickleError(
                f"the object array's pickle holds an array of shape {_short(shape)}, but the "
                f"header declares {self.shape}"
            )
        if not isinstance(dtype, np.dtype) or dtype != np.dtype(object):
            raise UnsafePickleError(
                f"the object array's pickle holds an array of dtype {_kind(dtype)}, but the "
                f"header declares object"
            )
        if type(fortran) not in (bool, int):
            raise UnsafePickleError("the object array's pickle gives an odd memory order")
        if type(raw) is not list:
            raise UnsafePickleError(
                f"the object array's pickle gives its {math.prod(shape)} cells "
                f"{'as raw bytes' if type(raw) is bytes else f'as a {_kind(raw)}'}; numpy "
                f"writes a list of values"
            )
        if len(raw) != math.prod(shape):
            raise UnsafePickleError(
                f"the object array's pickle lists {len(raw)} cells where the shape "
                f"{self.shape} needs {math.prod(shape)}"
            )
        # The distinct cell types first (a C-speed pass), then the first bad cell if any.
        bad_types = {t for t in set(map(type, raw)) if not _is_scalar_type(t)}
        if bad_types:
            i = next(i for i, cell in enumerate(raw) if type(cell) in bad_types)
            raise UnsafePickleError(
                f"the object array's cell {i} holds a {_kind(raw[i])}; only numbers, text "
                f"and bytes are accepted"
            )
        flat = np.empty(len(raw), dtype=object)
        flat[:] = raw
        # numpy lists object cells in C (logical) order whatever the memory order
        return flat.reshape(shape)


def _is_scalar_type(kind: type) -> bool:
    """Whether cells of this exact type are plain values (numpy scalars included)."""
    if kind in (bool, int, float, str, bytes, type(None)):
        return True
    return issubclass(kind, np.generic) and kind is not np.void and kind is not np.object_


def _kind(value: Any) -> str:
    """What ``value`` is, without its content (never repr file data)."""
    if isinstance(value, _Marker):
        built = " (never given its state)" if value.kind in ("array", "dtype") else ""
        return f"numpy {value.kind}{built}"
    if isinstance(value, np.dtype):
        return f"dtype {value}"
    return type(value).__name__


def _short(shape: tuple) -> str:
    text = str(shape)
    return text if len(text) <= 60 else text[:57] + "..."
