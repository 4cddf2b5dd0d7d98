"""Built-in ``permutation`` method: scikit-learn's permutation importance, exactly, faster.

The numbers equal :func:`sklearn.inspection.permutation_importance`'s for the same inputs
and ``random_state``: every column (or group of columns) is permuted with the same
per-column ``RandomState(seed)`` sequence (:mod:`.schedule`), and every permuted copy is
scored by the scorer itself. What changes is how the copies' predictions are obtained:

- constant columns (permuting them changes nothing) and columns a fast path proves
  irrelevant (no tree splits on them, zero coefficients) are not predicted;
- recognised scorers are fed precomputed outputs (:mod:`.scoring`), so many copies share
  one ``predict`` call (batches capped by :data:`~.copies.MAX_BATCH_BYTES`), and plain
  accuracy is counted for all copies at once;
- model-aware fast paths (:mod:`.fastpaths`: linear classifiers, k-nearest neighbours,
  trees and forests) compute outputs without the model, and are used only where they are
  certified to equal the model's own;
- groups run in parallel through joblib, so ``n_jobs`` and ``joblib.parallel_config``
  apply.

See ``docs/performance.md`` for why each shortcut is exact.
"""

from __future__ import annotations

import importlib
from typing import Any

from leap.hookspecs import hookimpl

#: Public names, imported from :mod:`.method` on first use: this plugin module loads with
#: every engine, so it imports nothing heavy.
__all__ = [
    "DEFAULT_FAST_PATHS",
    "MAX_BATCH_BYTES",
    "FastPath",
    "FastPathFactory",
    "PermutationMethod",
    "metric_name",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.method"), name)


@hookimpl(trylast=True)
def register_methods(register: Any) -> None:
    from leap.builtins.methods.permutation.method import PermutationMethod

    register(PermutationMethod())
