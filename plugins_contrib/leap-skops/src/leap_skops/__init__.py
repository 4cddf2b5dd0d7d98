"""LEAP plugin: a model loader for ``.skops`` files (scikit-learn models saved with skops).

Unlike a pickle, a skops file is data: loading it builds only the types it lists, and
types that skops does not trust by default are refused unless you name them. Allow them
with ``--trust TYPE`` (the ``trust`` configuration key), the environment variable
``LEAP_SKOPS_TRUSTED`` (comma-separated type names), or ``SkopsLoader(trusted=[...])``;
the loader takes the union of the three.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from leap import hookimpl
from leap.errors import InputFileError, ModelError, one_line

__all__ = [
    "TRUSTED_ENV",
    "TRUST_KEY",
    "TRUST_OPTION",
    "SkopsLoader",
    "check_fitted",
    "trusted_from_env",
]

#: Environment variable: comma-separated type names to trust beyond skops' defaults.
TRUSTED_ENV = "LEAP_SKOPS_TRUSTED"
#: The command-line option (repeatable) whose values reach ``SkopsLoader.load(trusted=...)``.
TRUST_OPTION = "--trust"
#: The configuration key (a list of type names) with the same effect.
TRUST_KEY = "trust"


def trusted_from_env() -> frozenset[str]:
    """The type names listed in ``LEAP_SKOPS_TRUSTED`` (empty when unset)."""
    return frozenset(t.strip() for t in os.environ.get(TRUSTED_ENV, "").split(",") if t.strip())


class SkopsLoader:
    """Loads ``.skops`` files with :func:`skops.io.loads`, refusing untrusted types.

    A type skops does not trust by default loads only when it is named in ``trusted``
    (here, or passed to :meth:`load`) or in ``LEAP_SKOPS_TRUSTED``.

    Parameters
    ----------
    trusted : iterable of str
        Fully qualified type names (e.g. ``"sklearn.tree._tree.Tree"``) to trust in
        addition to skops' defaults, for every file this loader loads.
    """

    name = "skops"
    suffixes = (".skops",)
    #: Keywords of :meth:`load` the engine may pass (``--trust TYPE`` → ``trusted``).
    options = ("trusted",)

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.trusted = frozenset(trusted)

    def load(self, path: Path, *, trusted: Iterable[str] = ()) -> Any:
        """Return the fitted model in ``path``; :class:`ModelError` names untrusted types.

        Parameters
        ----------
        path : Path
            The ``.skops`` file.
        trusted : iterable of str
            Type names to trust for this file (what ``--trust TYPE`` and the ``trust``
            configuration key give), on top of the loader's and the environment's.
        """
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
        allowed = self.trusted | trusted_from_env() | {str(t).strip() for t in trusted}
        refused = sorted(set(untrusted) - allowed)
        if refused:
            options = " ".join(f"{TRUST_OPTION} {name}" for name in refused)
            raise ModelError(
                f"{path} contains types skops does not trust by default: {', '.join(refused)}; "
                f"if you trust the file's source, allow them with {options} (configuration "
                f"key {TRUST_KEY}, or {TRUSTED_ENV}={','.join(refused)})"
            )
        try:
            model = sio.loads(data, trusted=list(untrusted))
        except ModuleNotFoundError as exc:
            raise ModelError(
                f"{path} needs the Python module {exc.name!r}, which is not installed; "
                f"install the package that provides it"
            ) from None
        check_fitted(model, path)
        return model


def check_fitted(model: Any, path: Path) -> None:
    """Raise :class:`ModelError` unless ``model`` predicts and, if it is an estimator, is fitted."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    if not callable(getattr(model, "predict", None)):
        raise ModelError(f"{path} holds a {kind}, not a fitted model with a predict() method")
    if callable(getattr(model, "fit", None)) and hasattr(model, "get_params"):
        try:
            check_is_fitted(model)
        except NotFittedError:
            raise ModelError(f"{path} holds a {kind} that has not been fitted") from None
        except TypeError:  # not an estimator check_is_fitted understands: predict() decides
            pass


@hookimpl
def register_loaders(register):
    register(SkopsLoader())
