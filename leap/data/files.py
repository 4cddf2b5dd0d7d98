"""Files: atomic outputs, input checks, digests and small TOML/JSON settings files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import Iterable, Iterator, Mapping
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


#: Longest file name most file systems accept, in bytes.
NAME_MAX = 255
#: How LEAP names its temporary files: ``.<name>.leap-<pid>-<token>.tmp<suffix>``.
TEMP_MARK = ".leap-"


_STAGED = re.compile(rf"^\.(?P<name>.+){re.escape(TEMP_MARK)}\d+-[0-9a-f]{{8}}\.tmp")


def staging_path(target: Path) -> Path:
    """A new, unused temporary path beside ``target`` (same suffix), named after this process.

    A later run recognises such files of a process that no longer exists and removes them
    (:func:`remove_stale_temporaries`).
    """
    stem = target.name[:160]
    token = secrets.token_hex(4)
    return target.with_name(f".{stem}{TEMP_MARK}{os.getpid()}-{token}.tmp{target.suffix[:20]}")


def shown_path(path: str | Path) -> Path:
    """The file a user asked for: ``path``, or the target of a staging path."""
    path = Path(path)
    staged = _STAGED.match(path.name)
    return path.with_name(staged["name"]) if staged else path


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove LEAP temporary files in ``folder`` left by processes that are gone."""
    removed: list[Path] = []
    try:
        candidates = list(folder.glob(f".*{TEMP_MARK}*-*.tmp*"))
    except OSError:
        return removed
    for path in candidates:
        pid_text = path.name.rsplit(TEMP_MARK, 1)[-1].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def check_output_path(target: str | Path, what: str = "output") -> Path:
    """``target`` as a Path, or one LeapError line if no file can be written there."""
    target = Path(target)
    if str(target) in ("", ".") or target.name in ("", ".", ".."):
        raise LeapError(f"{what} path {str(target)!r} names no file; give a file name")
    if len(os.fsencode(target.name)) > NAME_MAX:
        raise LeapError(
            f"{what} file name is {len(os.fsencode(target.name))} bytes long; the limit is "
            f"{NAME_MAX}: {target.name[:40]}..."
        )
    if target.is_dir():
        raise LeapError(f"{what} path {target} is a folder; give a file name inside it")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise LeapError(f"cannot create the folder for {target}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LeapError(f"cannot write into folder {folder} (read-only or permission denied)")
    return target


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    The folder is created when missing. If the block raises (or is interrupted), the
    temporary file is removed and an existing ``target`` is left untouched.
    """
    target = check_output_path(target)
    _make_folder(target.parent)
    tmp = staging_path(target)
    try:
        yield tmp
        _commit(tmp, target)
    except OSError as exc:  # disk full, permission denied, ...: one line, old target kept
        tmp.unlink(missing_ok=True)
        raise LeapError(f"cannot write {shown_path(target)}: {exc.strerror or exc}") from exc
    except BaseException:  # any other error, Ctrl-C included: the old target is kept
        tmp.unlink(missing_ok=True)
        raise


class OutputSet:
    """A run's output files, staged beside their targets and committed together.

    Construction refuses, before any work, targets that cannot be written, that collide
    with each other, or that are one of ``inputs``. Inside ``with``, :meth:`path` gives
    the staging path to write each output to; :meth:`commit` renames every staged file
    onto its target. Leaving the block without committing (an error, Ctrl-C) removes the
    staged files, so earlier outputs stay as they were.

    Parameters
    ----------
    targets : mapping of str to path
        What each output holds (a key) and where it goes.
    inputs : iterable of path
        Files the run reads; no output may replace one of them.
    """

    def __init__(self, targets: Mapping[str, str | Path], inputs: Iterable[str | Path] = ()):
        self.targets = {key: check_output_path(path) for key, path in targets.items()}
        seen: dict[Path, str] = {}
        for key, path in self.targets.items():
            where = path.resolve()
            if where in seen:
                raise LeapError(
                    f"two outputs would be written to the same file {path} "
                    f"({seen[where]} and {key}); give them different names"
                )
            seen[where] = key
        refuse_overwriting_inputs(self.targets.values(), inputs)
        self._staged: dict[str, Path] = {}

    def __enter__(self) -> OutputSet:
        for folder in {p.parent for p in self.targets.values()}:
            _make_folder(folder)
            remove_stale_temporaries(folder)
        return self

    def path(self, key: str) -> Path:
        """The staging path for output ``key`` (write the file there)."""
        if key not in self._staged:
            self._staged[key] = staging_path(self.targets[key])
        return self._staged[key]

    def discard(self, key: str) -> None:
        """Leave output ``key`` out of the set (its staged file, if any, is removed)."""
        self.targets.pop(key, None)
        staged = self._staged.pop(key, None)
        if staged is not None:
            staged.unlink(missing_ok=True)

    def commit(self) -> list[Path]:
        """Move every staged file onto its target; return the targets written."""
        missing = [k for k, p in self._staged.items() if not p.exists()]
        if missing:
            raise LeapError(f"output {missing[0]} was not written to {self.targets[missing[0]]}")
        written = []
        try:
            for key, tmp in list(self._staged.items()):
                _commit(tmp, self.targets[key])
                del self._staged[key]
                written.append(self.targets[key])
        except OSError as exc:
            raise LeapError(f"cannot write {self.targets[key]}: {exc.strerror or exc}") from exc
        return written

    def __exit__(self, *exc_info: Any) -> None:
        for tmp in self._staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged.clear()


def refuse_overwriting_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path]) -> None:
    """Raise :class:`LeapError` if an output is one of the input files (any spelling or link)."""
    paths = [Path(p) for p in inputs if p is not None]
    resolved = {p.resolve() for p in paths}
    for out in map(Path, outputs):
        same = out.exists() and any(p.exists() and os.path.samefile(out, p) for p in paths)
        if same or out.resolve() in resolved:
            raise LeapError(f"refusing to overwrite the input file {out} with an output")


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeapError(f"cannot create output folder {folder}: {exc.strerror}") from None


def _commit(tmp: Path, target: Path) -> None:
    os.chmod(tmp, _plain_file_mode(target))
    os.replace(tmp, target)


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
