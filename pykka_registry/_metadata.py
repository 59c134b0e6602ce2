"""Metadata: the registry's own copies, and the meaning of ``match`` criteria.

The registry never stores a caller's mapping, and never hands out the one it
stores. Containers are copied: ``dict``, ``list``, ``set``, ``bytearray``,
tuples and namedtuples (rebuilt with copied items), and any other mutable
mapping, sequence or set (``deque``, ``array``, ``UserList``..., deep-copied;
one that cannot be copied is refused with ``InvalidMetadataError``). Every
other object (strings, numbers, actor refs, your own classes) is kept by
reference, because copying those could break them (a ``threading.Event``
inside an :class:`pykka.ActorRef` cannot be copied).

Limits
------
Metadata may nest containers at most :data:`MAX_DEPTH` levels deep and hold
at most :data:`MAX_ITEMS` container items in all (a self-referencing list
counts as too deep). Metadata beyond them, or whose ``items()``, keys or
values raise while being copied (any ``BaseException`` but
``KeyboardInterrupt``, which passes through as the caller's Ctrl-C), is
refused with :class:`~pykka_registry.InvalidMetadataError`; nothing is
stored. (In the server thread, where no Ctrl-C lands, a ``KeyboardInterrupt``
from the copy of a write's event is the value's too: refused the same way.)
Scalars (strings, bytes, numbers) may be of any size.

Matching
--------
:func:`metadata_matches` never raises for a hostile value: a comparison
that raises (a stored value's or a criterion's ``__eq__``, ``__hash__`` or
``__bool__``) means "does not match", so one hostile entry cannot break the
queries of its namespace; ``KeyboardInterrupt`` passes through.
"""

from __future__ import annotations

import array
import copy
from collections.abc import Mapping, MutableMapping, MutableSequence, MutableSet
from typing import Any

from pykka_registry._errors import InvalidMetadataError, type_name

__all__ = ["COLLECTION_TYPES", "MAX_DEPTH", "MAX_ITEMS", "SCALAR_TYPES", "copy_metadata", "is_flat",
           "metadata_matches"]

#: Metadata fields of these types match a criterion that is one of their items.
COLLECTION_TYPES = (list, tuple, set, frozenset)

_MUTABLE_CONTAINERS = (dict, list, set, bytearray)
_OTHER_CONTAINERS = (MutableMapping, MutableSequence, MutableSet, array.array)

# Values of these exact types need no copy (the common case, checked first:
# an exact type test is far cheaper than the ABC checks below).
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
#: The exact types of values that need no copy, whose hash never raises.
SCALAR_TYPES = _SCALARS

#: How deep metadata may nest containers (the top-level mapping is level 0).
MAX_DEPTH = 64
#: How many container items (at every level) one metadata mapping may hold.
MAX_ITEMS = 100_000


class _Budget:
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items = MAX_ITEMS

    def spend(self, count: int) -> None:
        self.items -= count
        if self.items < 0:
            raise InvalidMetadataError(f"metadata holds more than {MAX_ITEMS} container items")


def _copy_value(value: Any, depth: int, budget: _Budget) -> Any:
    if type(value) in _SCALARS:
        return value
    if depth > MAX_DEPTH and isinstance(value, (*_MUTABLE_CONTAINERS, *_OTHER_CONTAINERS,
                                                tuple, frozenset)):
        raise InvalidMetadataError(
            f"metadata nests containers more than {MAX_DEPTH} levels deep "
            "(or refers to itself)"
        )
    inner = depth + 1
    if isinstance(value, dict):
        budget.spend(len(value))
        return {key: _copy_value(item, inner, budget) for key, item in value.items()}
    if isinstance(value, list):
        budget.spend(len(value))
        return [_copy_value(item, inner, budget) for item in value]
    if isinstance(value, tuple):
        budget.spend(len(value))
        items = [_copy_value(item, inner, budget) for item in value]
        if hasattr(value, "_fields"):  # a namedtuple: same type, copied fields
            return type(value)._make(items)  # type: ignore[attr-defined]
        return tuple(items)
    if isinstance(value, set):
        budget.spend(len(value))
        return {_copy_value(item, inner, budget) for item in value}
    if isinstance(value, frozenset):
        budget.spend(len(value))
        # checked for depth and size; kept as it is (immutable) unless it holds
        # mutable items, which frozensets cannot (they must be hashable)
        for item in value:
            _copy_value(item, inner, budget)
        return value
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, _OTHER_CONTAINERS):
        # deques, arrays, UserList/UserDict, other mutable mappings...
        try:
            return copy.deepcopy(value)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # user code: SystemExit from a __deepcopy__ too
            raise InvalidMetadataError(
                f"metadata holds a {type_name(value)} that cannot be copied: "
                f"{type_name(error)}"
            ) from None
    return value


def copy_metadata(metadata: Any) -> dict[Any, Any]:
    """Validate ``metadata`` and return the registry's own copy of it.

    ``None`` means no metadata (an empty dict).

    Raises:
        InvalidMetadataError: ``metadata`` is not a mapping, goes past the
            limits above, or raises while being copied.
    """
    if metadata is None:
        return {}
    if type(metadata) is dict and len(metadata) <= MAX_ITEMS:
        # The common case, with no user code to run: a plain dict of
        # scalars. Its C-level copy keeps the keys as they are (hashed once,
        # by the caller) and the values need no copy.
        for value in metadata.values():
            if type(value) not in _SCALARS:
                break
        else:
            return metadata.copy()
    if not isinstance(metadata, Mapping):
        raise InvalidMetadataError(
            f"metadata must be a Mapping (such as a dict), not {type_name(metadata)}"
        )
    budget = _Budget()
    try:
        copied = {
            key: value if type(value) in _SCALARS else _copy_value(value, 1, budget)
            for key, value in metadata.items()
        }
    except InvalidMetadataError:
        raise
    except RecursionError:
        raise InvalidMetadataError(
            f"metadata nests containers too deep to copy (the limit is {MAX_DEPTH} levels)"
        ) from None
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # user code: SystemExit from items() or a key too
        raise InvalidMetadataError(
            f"metadata cannot be copied: {type_name(error)} from its items(), keys or "
            "values"
        ) from None
    if len(copied) > MAX_ITEMS:
        raise InvalidMetadataError(f"metadata holds more than {MAX_ITEMS} fields")
    return copied


def _holds_mutable(value: Any) -> bool:
    if isinstance(value, (_MUTABLE_CONTAINERS, _OTHER_CONTAINERS)):
        return True
    if isinstance(value, (tuple, frozenset)):
        return any(_holds_mutable(item) for item in value)
    return False


def is_flat(metadata: Mapping[Any, Any]) -> bool:
    """True when a shallow ``dict`` copy of ``metadata`` is a safe copy."""
    for value in metadata.values():
        if type(value) not in _SCALARS and _holds_mutable(value):
            return False
    return True


def _field_matches(have: Any, want: Any) -> bool:
    # A stored value (or a criterion) whose __eq__ or __bool__ raises does
    # not match: one hostile entry must not break every query of its
    # namespace. KeyboardInterrupt passes through (the caller's Ctrl-C).
    try:
        if have == want:
            return True
    except KeyboardInterrupt:
        raise
    except BaseException:
        return False
    if isinstance(have, COLLECTION_TYPES):
        try:
            return want in have
        except KeyboardInterrupt:
            raise
        except BaseException:  # an unhashable criterion against a set, a hostile item
            return False
    return False


def metadata_matches(metadata: Mapping[Any, Any], criteria: Mapping[Any, Any]) -> bool:
    """The meaning of ``Registry.match``: every ``key: value`` in ``criteria`` holds.

    A criterion holds when ``metadata[key] == value``, or when ``metadata[key]``
    is a list, tuple, set or frozenset that contains ``value``. A comparison
    that raises (a hostile ``__eq__``, ``__hash__`` or ``__bool__``; any
    ``BaseException`` but ``KeyboardInterrupt``, which passes through) means
    "does not hold": never an error.
    """
    for key, want in criteria.items():
        try:
            if key not in metadata:
                return False
        except KeyboardInterrupt:
            raise
        except BaseException:  # a criterion key whose hash or eq raises
            return False
        if not _field_matches(metadata[key], want):
            return False
    return True
