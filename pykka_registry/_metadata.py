"""Metadata: the registry's own copies, and the meaning of ``match`` criteria.

The registry never stores a caller's mapping, and never hands out the one it
stores. Containers are copied: ``dict``, ``list``, ``set``, ``bytearray``,
tuples and namedtuples (rebuilt with copied items), and any other mutable
mapping, sequence or set (``deque``, ``array``, ``UserList``..., deep-copied;
one that cannot be copied is refused with ``InvalidMetadataError``). Every
other object (strings, numbers, actor refs, your own classes) is kept by
reference, because copying those could break them (a ``threading.Event``
inside an :class:`pykka.ActorRef` cannot be copied).
"""

from __future__ import annotations

import array
import copy
from collections.abc import Mapping, MutableMapping, MutableSequence, MutableSet
from typing import Any

from pykka_registry._errors import InvalidMetadataError

__all__ = ["COLLECTION_TYPES", "copy_metadata", "is_flat", "metadata_matches"]

#: Metadata fields of these types match a criterion that is one of their items.
COLLECTION_TYPES = (list, tuple, set, frozenset)

_MUTABLE_CONTAINERS = (dict, list, set, bytearray)
_OTHER_CONTAINERS = (MutableMapping, MutableSequence, MutableSet, array.array)

# Values of these exact types need no copy (the common case, checked first:
# an exact type test is far cheaper than the ABC checks below).
_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


def _copy_value(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict):
        return {key: _copy_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_value(item) for item in value]
    if isinstance(value, tuple):
        items = [_copy_value(item) for item in value]
        if hasattr(value, "_fields"):  # a namedtuple: same type, copied fields
            return type(value)._make(items)  # type: ignore[attr-defined]
        return tuple(items)
    if isinstance(value, set):
        return {_copy_value(item) for item in value}
    if isinstance(value, bytearray):
        return bytearray(value)
    if isinstance(value, _OTHER_CONTAINERS):
        # deques, arrays, UserList/UserDict, other mutable mappings...
        try:
            return copy.deepcopy(value)
        except Exception as error:
            raise InvalidMetadataError(
                f"metadata holds a {type(value).__name__} that cannot be copied: {error}"
            ) from None
    return value


def copy_metadata(metadata: Any) -> dict[Any, Any]:
    """Validate ``metadata`` and return the registry's own copy of it.

    ``None`` means no metadata (an empty dict).

    Raises:
        InvalidMetadataError: ``metadata`` is not a mapping.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidMetadataError(
            f"metadata must be a Mapping (such as a dict), not {type(metadata).__name__}"
        )
    return {
        key: value if type(value) in _SCALARS else _copy_value(value)
        for key, value in metadata.items()
    }


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
    try:
        if have == want:
            return True
    except Exception:  # an exotic __eq__ must not break a query
        return False
    if isinstance(have, COLLECTION_TYPES):
        try:
            return want in have
        except TypeError:  # unhashable criterion against a set
            return False
    return False


def metadata_matches(metadata: Mapping[Any, Any], criteria: Mapping[Any, Any]) -> bool:
    """The meaning of ``Registry.match``: every ``key: value`` in ``criteria`` holds.

    A criterion holds when ``metadata[key] == value``, or when ``metadata[key]``
    is a list, tuple, set or frozenset that contains ``value``.
    """
    for key, want in criteria.items():
        if key not in metadata or not _field_matches(metadata[key], want):
            return False
    return True
