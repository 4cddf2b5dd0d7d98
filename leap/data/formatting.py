"""Numbers as people read them in tables and figures: rounded, and never ``-0.000``."""

from __future__ import annotations

import math
import re

_MANTISSA = re.compile(r"^[^eE]*")


def format_number(value: float, spec: str = ".4f") -> str:
    """``format(value, spec)``, except that a value that rounds to zero shows no minus sign.

    A permutation importance of ``-0.00002`` printed with four decimals is ``-0.0000``,
    which reads as a meaningful negative number; this returns ``0.0000`` (``+0.0000`` with
    a ``+`` in ``spec``). Non-zero digits, NaN and infinities are formatted unchanged.

    Parameters
    ----------
    value : float
        The number to show.
    spec : str
        A format specification, as for :func:`format` (e.g. ``".3f"``, ``"+.4f"``, ``".2e"``).

    Returns
    -------
    str
        The formatted number.

    Examples
    --------
    >>> format_number(-0.00002, ".4f")
    '0.0000'
    >>> format_number(-0.00002, "+.4f")
    '+0.0000'
    >>> format_number(-0.0002, ".4f")
    '-0.0002'
    """
    text = format(value, spec)
    if text.lstrip().startswith("-") and math.isfinite(value):
        mantissa = _MANTISSA.match(text.strip())
        if mantissa is not None and not any(c in "123456789" for c in mantissa.group()):
            return format(0.0, spec)
    return text
