"""Files: atomic outputs, input checks, digests and small TOML/JSON settings files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leap.errors import InputFileError, LeapError, one_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: Settings files are small: deeper nesting than this is refused, not recursed into.
MAX_SETTINGS_DEPTH = 16
MAX_SETTINGS_BYTES = 16 * 2**20


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    The folder is created when missing. If the block raises (or is interrupted), the
    temporary file is removed and an existing ``target`` is left untouched.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeapError(f"cannot create output folder {target.parent}: {exc.strerror}") from None
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _plain_file_mode(target))  # mkstemp makes owner-only files
        os.replace(tmp, target)
    except OSError as exc:  # disk full, permission denied, ...: one line, old target kept
        tmp.unlink(missing_ok=True)
        raise LeapError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:  # any other error, Ctrl-C included: the old target is kept
        tmp.unlink(missing_ok=True)
        raise


def _plain_file_mode(target: Path) -> int:
    """The mode an ordinary ``open()`` would give: the replaced file's, else 0o666 less umask."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def existing_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path, raising :class:`InputFileError` unless it is a readable file."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{what} not found: {path}")
    if not path.is_file():
        raise InputFileError(f"{what} is not a file: {path}")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{what} is not readable (permission denied): {path}")
    return path


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def normalize_sha256(text: str) -> str:
    """A SHA-256 hex digest in lower case (``sha256:`` prefix allowed); else ValueError."""
    digest = text.strip().lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"must be the 64 hexadecimal digits of a SHA-256 digest (as printed by "
            f"sha256sum), got {text[:80]!r}"
        )
    return digest


def read_settings(
    path: str | Path, what: str, error: type[LeapError] = LeapError
) -> dict[str, Any]:
    """Parse a TOML (``.toml``) or JSON (any other suffix) file into a table.

    Raises ``error`` with one line when the file is unreadable, not valid, larger than
    :data:`MAX_SETTINGS_BYTES`, not a table at the top, or nested deeper than
    :data:`MAX_SETTINGS_DEPTH`.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SETTINGS_BYTES + 1)
        if len(raw) > MAX_SETTINGS_BYTES:
            raise ValueError(f"larger than {MAX_SETTINGS_BYTES // 2**20} MiB")
        text = raw.decode("utf-8")
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or one_line(exc)}") from None
    except (ValueError, RecursionError) as exc:  # decode and parse errors are ValueErrors
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise error(f"{what} {path} is not valid {kind}: {one_line(exc)}") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} must hold a table (mapping) at the top, not {_kind(data)}")
    if _depth(data) > MAX_SETTINGS_DEPTH:
        raise error(f"{what} {path} is nested more than {MAX_SETTINGS_DEPTH} levels deep")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of tables and lists, without recursion (a crafted file may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_SETTINGS_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"
