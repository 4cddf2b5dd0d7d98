"""Optional numba compilation of the fast paths' kernels.

Every kernel is plain Python over NumPy arrays with a vectorised NumPy twin that computes the
same certified answer. numba compiles the loop version on first use (cached on disk); set
``LEAP_DISABLE_NUMBA=1`` or uninstall numba to run the NumPy versions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any


@cache
def _numba() -> Any:
    try:
        import numba
    except Exception:  # ImportError, or a numba that does not load on this platform
        return None
    return numba


def numba_enabled() -> bool:
    """Whether kernels run compiled (numba importable and not disabled)."""
    return not os.environ.get("LEAP_DISABLE_NUMBA") and _numba() is not None


@cache
def _compiled(fn: Callable) -> Callable:
    return _numba().njit(cache=True, nogil=True)(fn)


def compiled(fn: Callable) -> Callable | None:
    """``fn`` compiled by numba, or ``None`` when numba is off."""
    return _compiled(fn) if numba_enabled() else None
