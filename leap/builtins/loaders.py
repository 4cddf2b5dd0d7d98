"""Built-in loader for pickled and joblib-dumped scikit-learn estimators.

Unpickling runs code stored in the file: load only models you trust (or pin their
digest with ``expect_sha256``).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib

from leap.checks import check_model_feature_names
from leap.errors import ModelError, one_line
from leap.hookspecs import hookimpl


class PickleLoader:
    """Loads ``.pkl``/``.pickle``/``.joblib`` files written by pickle or joblib."""

    name = "pickle"
    suffixes = (".pkl", ".pickle", ".joblib")

    def load(self, path: Path) -> Any:
        """Unpickle ``path`` and check that it holds a fitted model with ``predict``."""
        try:
            model = joblib.load(path)
        except ModuleNotFoundError as exc:
            raise ModelError(
                f"{path} needs the Python module {exc.name!r}, which is not installed; "
                f"install the package that provides it"
            ) from None
        except (AttributeError, ImportError) as exc:
            # A class or function the pickle names is missing from an installed module:
            # usually a different version of the package than the one that saved it.
            raise ModelError(
                f"{path} refers to something its installed package does not provide "
                f"({one_line(exc)}); install the package version the model "
                f"was saved with"
            ) from None
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, IndexError) as exc:
            raise ModelError(
                f"{path} is not a readable pickle or joblib file ({type(exc).__name__}: "
                f"{one_line(exc) or 'truncated'})"
            ) from None
        try:
            check_model_feature_names(model)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        return model


@hookimpl(trylast=True)
def register_loaders(register):
    register(PickleLoader())
