"""The built-in plugin that registers the ``permutation`` method.

It imports nothing heavy: the method (:mod:`.method`, which needs scikit-learn) is
imported when the method registry is first used.
"""

from __future__ import annotations

from typing import Any

from leap.hookspecs import hookimpl


@hookimpl(trylast=True)
def register_methods(register: Any) -> None:
    from leap.builtins.methods.permutation.method import PermutationMethod

    register(PermutationMethod())
