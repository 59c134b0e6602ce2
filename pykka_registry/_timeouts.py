"""One rule for every ``timeout`` the registry takes.

Guarantees
----------
* A timeout is a real number of seconds (``int`` or ``float``, not ``bool``),
  ``>= 0`` (``> 0`` where waiting no time at all makes no sense, such as
  ``call_timeout``); NaN, negative numbers and non-numbers raise
  :class:`~pykka_registry.InvalidTimeoutError` (a ``ValueError``) before
  anything happens.
* ``float("inf")`` and very large values are accepted and clamped to
  :data:`MAX_TIMEOUT_S` (one year): no wait in the registry, in Pykka or in
  :mod:`threading` ever sees a value it would reject with ``OverflowError``.
"""

from __future__ import annotations

import math
from typing import Any

from pykka_registry._errors import InvalidTimeoutError

__all__ = ["MAX_TIMEOUT_S", "check_timeout", "optional_timeout"]

#: The longest wait the registry performs: longer ones (``inf``) are clamped to it.
MAX_TIMEOUT_S = 365 * 24 * 3600.0


def check_timeout(value: Any, what: str = "timeout", *, positive: bool = False) -> float:
    """``value`` as a float of seconds within ``[0, MAX_TIMEOUT_S]``.

    Raises:
        InvalidTimeoutError: not a number, NaN, negative (or zero with ``positive``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTimeoutError(
            f"{what} must be a number of seconds, got {type(value).__name__}"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float: a very long wait
        seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        raise InvalidTimeoutError(f"{what} must be a number of seconds {bound}, got {seconds!r}")
    return min(seconds, MAX_TIMEOUT_S)


def optional_timeout(value: Any, default: float, what: str = "timeout") -> float:
    """:func:`check_timeout`, with ``None`` meaning ``default``."""
    if value is None:
        return default
    return check_timeout(value, what)

