"""Turning registry data (hostile user values) into small JSON-safe values.

Guarantees
----------
* Every function here returns JSON-serialisable values (``str``, ``int``,
  ``float``, ``bool``, ``None``, lists and ``str``-keyed dicts) and never
  raises, whatever the input's ``__repr__``, ``__str__``, ``__iter__`` or
  ``__eq__`` do (``BaseException`` included): a value that cannot be shown is
  shown as ``"<unprintable TypeName>"``.
* Output is bounded: strings are cut at :data:`MAX_TEXT` characters,
  containers at :data:`MAX_ITEMS` items and :data:`MAX_DEPTH` levels, so one
  huge metadata value cannot make a response large.
* Pure functions; any thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Optional

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_TEXT", "actor_info", "exception_info", "jsonable",
           "label", "mailbox_depth"]

MAX_TEXT = 300
MAX_ITEMS = 25
MAX_DEPTH = 4


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _type_name(value: Any) -> str:
    try:
        return _cut(str(type(value).__name__), 80)
    except BaseException:
        return "object"


def _repr(value: Any) -> str:
    try:
        text = repr(value)
        if not isinstance(text, str):
            raise TypeError
        return _cut(text)
    except BaseException:
        return f"<unprintable {_type_name(value)}>"


def label(value: Any) -> str:
    """A short text for a key part (namespace, service, group): a ``str`` as
    itself, anything else as its ``repr``."""
    if type(value) is str:
        return _cut(value)
    return _repr(value)


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as a bounded JSON-safe value (tuples and sets become lists,
    mapping keys become strings, other objects their ``repr``)."""
    try:
        kind = type(value)
        if value is None or kind is bool:
            return value
        if kind is int:
            return value if abs(value) < 2**53 else _cut(str(value))
        if kind is float:
            return value if math.isfinite(value) else str(value)
        if kind is str:
            return _cut(value)
        if depth >= MAX_DEPTH:
            return _repr(value)
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for i, (key, item) in enumerate(value.items()):
                if i >= MAX_ITEMS:
                    out["\u2026"] = f"{len(value) - MAX_ITEMS} more"
                    break
                out[label(key)] = jsonable(item, depth + 1)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [jsonable(item, depth + 1) for item in list(value)[:MAX_ITEMS]]
            if len(value) > MAX_ITEMS:
                items.append(f"\u2026 {len(value) - MAX_ITEMS} more")
            return items
        return _repr(value)
    except BaseException:
        return f"<unprintable {_type_name(value)}>"


def exception_info(error: Optional[BaseException]) -> Optional[dict[str, str]]:
    """``{"type": ..., "message": ...}`` for an exception (its ``str()`` may
    raise: then the message says so), or ``None``."""
    if error is None:
        return None
    try:
        message = str(error)
        if not isinstance(message, str):
            raise TypeError
        message = _cut(message, 1000)
    except BaseException:
        message = f"<unprintable {_type_name(error)}>"
    return {"type": _type_name(error), "message": message}


def mailbox_depth(ref: Any) -> Optional[int]:
    """How many messages wait in a local actor's inbox (``None`` for a
    remote reference or when Pykka does not say)."""
    try:
        inbox = getattr(ref, "actor_inbox", None)
        size = getattr(inbox, "qsize", None)
        return int(size()) if size is not None else None
    except BaseException:
        return None


def actor_info(ref: Any) -> dict[str, Any]:
    """The class name, URN, liveness, mailbox depth and node of an actor ref
    (local or remote)."""
    info: dict[str, Any] = {"actor_class": None, "urn": None, "alive": None,
                            "mailbox": mailbox_depth(ref), "node": None}
    try:
        cls = getattr(ref, "actor_class", None)
        if cls is not None:
            info["actor_class"] = _cut(str(getattr(cls, "__name__", cls)), 120)
        else:
            name = getattr(ref, "actor_class_name", None)
            info["actor_class"] = None if name is None else _cut(str(name), 120)
        urn = getattr(ref, "actor_urn", None)
        info["urn"] = None if urn is None else _cut(str(urn), 120)
        node = getattr(ref, "node_id", None)
        info["node"] = None if node is None else _cut(str(node), 120)
        info["alive"] = bool(ref.is_alive())
    except BaseException:
        pass
    return info
