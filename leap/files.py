"""Safe output files: written to a temporary sibling, then renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from leap.errors import InputFileError, LeapError


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
