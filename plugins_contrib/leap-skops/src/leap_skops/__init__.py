"""LEAP plugin: a model loader for ``.skops`` files (scikit-learn models saved with skops).

Unlike a pickle, a skops file is data: loading it builds only the types it lists, and
types that skops does not trust by default are refused unless you name them. Allow
them with the environment variable ``LEAP_SKOPS_TRUSTED`` (comma-separated type names)
or ``SkopsLoader(trusted=[...])``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from leap import hookimpl
from leap.builtins.loaders import check_fitted_model
from leap.errors import InputFileError, ModelError, one_line

__all__ = ["TRUSTED_ENV", "SkopsLoader", "trusted_from_env"]

#: Environment variable: comma-separated type names to trust beyond skops' defaults.
TRUSTED_ENV = "LEAP_SKOPS_TRUSTED"


def trusted_from_env() -> frozenset[str]:
    """The type names listed in ``LEAP_SKOPS_TRUSTED`` (empty when unset)."""
    return frozenset(t.strip() for t in os.environ.get(TRUSTED_ENV, "").split(",") if t.strip())


class SkopsLoader:
    """Loads ``.skops`` files with :func:`skops.io.loads`, refusing untrusted types.

    Parameters
    ----------
    trusted : iterable of str
        Fully qualified type names (e.g. ``"sklearn.tree._tree.Tree"``) to trust in
        addition to skops' defaults and to those listed in ``LEAP_SKOPS_TRUSTED``.
    """

    name = "skops"
    suffixes = (".skops",)

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.trusted = frozenset(trusted)

    def load(self, path: Path) -> Any:
        """Return the fitted model in ``path``; :class:`ModelError` names untrusted types."""
        import skops.io as sio

        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputFileError(f"cannot read {path}: {exc.strerror}") from None
        if not data:
            raise ModelError(f"{path} is empty; save models with skops.io.dump")
        try:
            untrusted = sio.get_untrusted_types(data=data)
        except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"{path} is not a readable skops file ({type(exc).__name__}: "
                f"{one_line(exc) or 'empty'}); save models with skops.io.dump"
            ) from None
        refused = sorted(set(untrusted) - self.trusted - trusted_from_env())
        if refused:
            raise ModelError(
                f"{path} contains types skops does not trust by default: {', '.join(refused)}; "
                f"if you trust the file's source, allow them with "
                f"{TRUSTED_ENV}={','.join(refused)} (or SkopsLoader(trusted=[...]))"
            )
        try:
            model = sio.loads(data, trusted=list(untrusted))
        except ModuleNotFoundError as exc:
            raise ModelError(
                f"{path} needs the Python module {exc.name!r}, which is not installed; "
                f"install the package that provides it"
            ) from None
        check_fitted_model(model, path)
        return model


@hookimpl
def register_loaders(register):
    register(SkopsLoader())
