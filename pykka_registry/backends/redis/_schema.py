"""The Redis backend's data: the key layout of a prefix, the JSON codec of
names and metadata, and the parsing of every record read from Redis.

Pure code (no I/O, no threads): shared by the backend, ``ls``
(:mod:`pykka_registry._inspect`) and the observer, so that they read the same
keys the same way.

Key layout (``P`` = the prefix)
-------------------------------
``P:epoch``, ``P:seq``, ``P:events`` (the change stream), ``P:names`` (set of
name keys), ``P:nodes`` (set of node ids that took a lease),
``P:name:<json [ns, svc]>`` (hash), ``P:node:<id>`` (lease: value =
incarnation), ``P:nodeinfo:<id>`` (JSON), ``P:held:<id>`` (set of the node's
name keys), ``P:inbox:<id>`` (stream), ``P:reply:<id>`` (list).

Guarantees
----------
* **One canonical text per name.** :func:`key_json` is the only encoding of a
  name; :func:`key_from_json` accepts only that text (anything else raises
  ``ValueError``), so two processes never store one name under two keys.
* **Checked records.** :func:`parse_record` checks every field the backend
  reads (types, ranges, known ops and reasons, metadata a JSON object) and
  raises ``ValueError`` naming the first bad field; :func:`checked` logs and
  returns None instead, so a bad record is skipped alone.
* **Storable metadata only.** :func:`json_object` copies metadata to plain
  JSON or raises :class:`InvalidMetadataError` naming the path of the first
  value that cannot be stored; it never raises anything else for hostile
  values (a raising ``items()``, self-reference, huge ints).
"""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from collections.abc import Hashable, Mapping
from typing import Any, Optional, Union

import attrs

from pykka_registry._errors import InvalidMetadataError
from pykka_registry._events import KIND_LEFT, KIND_LOST, KIND_UNREGISTERED, KINDS
from pykka_registry._metadata import copy_metadata

__all__ = [
    "MAX_KEY_DEPTH",
    "MAX_METADATA_DEPTH",
    "ROW_FIELDS",
    "Key",
    "Layout",
    "Record",
    "Snapshot",
    "as_text",
    "checked",
    "holder_record",
    "key_from_json",
    "key_json",
    "parse_record",
    "parse_snapshot",
    "safe_url",
    "tuples",
]

logger = logging.getLogger("pykka_registry.redis")

Key = tuple[Hashable, Hashable]


@attrs.define(frozen=True)
class Layout:
    """The Redis keys of one prefix (see the module docstring). Immutable."""

    prefix: str

    def key(self, *parts: str) -> str:
        """``prefix:part1:part2...``."""
        return ":".join((self.prefix, *parts))

    def name(self, kjson: str) -> str:
        """The hash of the name whose canonical text is ``kjson``."""
        return f"{self.prefix}:name:{kjson}"

    def node(self, node_id: str) -> str:
        """``node_id``'s lease (its value: the lease's incarnation)."""
        return f"{self.prefix}:node:{node_id}"

    def nodeinfo(self, node_id: str) -> str:
        return f"{self.prefix}:nodeinfo:{node_id}"

    @property
    def names(self) -> str:
        return f"{self.prefix}:names"


#: The fields of a name hash, in the order scripts and readers fetch them.
ROW_FIELDS = ("k", "node", "inc", "tok", "rev", "urn", "cls", "meta")

# -- keys and metadata ---------------------------------------------------------------

#: Keys: tuples nest at most this deep; ints fit in 64 bits (JSON readers in
#: other languages read 64-bit integers); strings are valid Unicode (no lone
#: surrogates: they cannot be written as UTF-8).
MAX_KEY_DEPTH = 16
#: Metadata: containers nest at most this deep (a self-referencing value is
#: refused with the same error); strings are valid Unicode; ints have at most
#: 4300 digits (Python's own limit for int-to-text conversion).
MAX_METADATA_DEPTH = 64
_INT64 = 1 << 63
_MAX_INT_BITS = 14_000  # about 4,200 digits: Python prints ints up to 4,300 digits


def _brief(value: Any) -> str:
    """A short repr for an error message, that cannot itself fail."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__, a 5,000-digit int...
        return f"<a {type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _key_problem(part: Any, depth: int = 0) -> str:
    """Why ``part`` cannot be a key part ("" if it can)."""
    kind = type(part)
    if kind is str:
        return "" if _encodable(part) else "a str that is not valid Unicode (lone surrogate)"
    if kind is int:
        return "" if -_INT64 <= part < _INT64 else "an int outside the 64-bit range"
    if kind is tuple:
        if depth >= MAX_KEY_DEPTH:
            return f"a tuple nested deeper than {MAX_KEY_DEPTH}"
        for item in part:
            problem = _key_problem(item, depth + 1)
            if problem:
                return problem
        return ""
    if isinstance(part, str):  # a str subclass (a str enum...): as its text
        return _key_problem(str.__str__(part), depth)
    if isinstance(part, int) and not isinstance(part, bool):  # an int enum...
        return _key_problem(int(part), depth)
    return f"a {kind.__name__}"


def key_json(namespace: Hashable, service: Hashable) -> str:
    """The canonical text of a name: JSON ``[namespace, service]``."""
    return json.dumps([namespace, service], separators=(",", ":"), ensure_ascii=False)


def _untuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_untuple(item) for item in value)
    return value


def key_from_json(text: Union[str, bytes]) -> Key:
    """The ``(namespace, service)`` a canonical name text stands for.

    Raises:
        ValueError: ``text`` is not the canonical text of a valid name.
    """
    try:
        parts = json.loads(text)
    except RecursionError:
        raise ValueError("name text nested too deep") from None
    if not isinstance(parts, list) or len(parts) != 2:
        raise ValueError("a name is a JSON array [namespace, service]")
    namespace, service = _untuple(parts[0]), _untuple(parts[1])
    for part in (namespace, service):
        problem = _key_problem(part)
        if problem:
            raise ValueError(f"a name part is {problem}")
    if key_json(namespace, service) != (text.decode() if isinstance(text, bytes) else text):
        raise ValueError("not the canonical text of its name")
    return namespace, service


def _json_copy(value: Any, path: str, depth: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = str.__str__(value)  # a str subclass (a str enum...): its text
        if not _encodable(text):
            raise InvalidMetadataError(
                f"metadata value at {path} is a str that is not valid Unicode (lone surrogate)")
        return text
    if isinstance(value, int):
        number = int(value)
        if number.bit_length() > _MAX_INT_BITS:
            raise InvalidMetadataError(
                f"metadata value at {path} is an int too large to store as JSON")
        return number
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMetadataError(f"metadata value at {path} is {value!r}: not valid JSON")
        return float(value)
    if depth >= MAX_METADATA_DEPTH:
        raise InvalidMetadataError(
            f"metadata at {path} nests deeper than {MAX_METADATA_DEPTH} levels (or refers to "
            "itself)")
    if isinstance(value, (list, tuple)):
        return [_json_copy(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _json_object(value, path, depth + 1)
    raise InvalidMetadataError(
        f"metadata value at {path} is a {type(value).__name__}; the redis backend stores "
        "JSON only (None, bool, int, float, str, list/tuple, and dicts with str keys)"
    )


def _json_object(mapping: Mapping[Any, Any], path: str, depth: int = 0) -> dict[str, Any]:
    copy = {}
    try:
        items = list(mapping.items())
    except Exception as error:  # a hostile mapping
        raise InvalidMetadataError(
            f"metadata at {path}: its items() raised {type(error).__name__}") from None
    for key, value in items:
        if not isinstance(key, str):
            raise InvalidMetadataError(
                f"metadata key {_brief(key)} at {path} is a {type(key).__name__}; JSON object "
                "keys must be str"
            )
        text = str.__str__(key)
        if not _encodable(text):
            raise InvalidMetadataError(
                f"metadata key at {path} is a str that is not valid Unicode (lone surrogate)")
        copy[text] = _json_copy(value, f"{path}[{text!r}]", depth)
    return copy


def _dumps(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def safe_url(url: str) -> str:
    """``url`` without its password (for logs and health reports)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{netloc}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@attrs.define(frozen=True)
class Record:
    """A name record or change event read from Redis, every field checked
    (see :func:`parse_record`). Immutable."""

    key: Key
    kjson: str
    op: str  # "set", "upd" or "del"
    node: str
    inc: str
    token: int
    rev: int
    urn: str
    actor_class: str
    metadata: dict[str, Any]
    why: str = ""
    error: str = ""


_OPS = ("set", "upd", "del")
#: The reasons a delete event may carry (every kind but those no delete has).
_WHYS = KINDS - {KIND_LEFT, KIND_LOST}


def _field(raw: Mapping[str, Any], name: str, default: Optional[str] = None) -> str:
    value = raw.get(name, default)
    if value is None:
        raise ValueError(f"field {name!r} is missing")
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} is a {type(value).__name__}, not a string")
    if not _encodable(value):  # a JSON "\\ud800" escape: no reader could print it
        raise ValueError(f"field {name!r} is not valid Unicode (lone surrogate)")
    return value


def _number(raw: Mapping[str, Any], name: str) -> int:
    value = raw.get(name)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is int:
        number = value
    elif isinstance(value, str) and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        raise ValueError(f"field {name!r} is not a sequence number: {_brief(value)}")
    if not 0 <= number < _INT64:
        raise ValueError(f"field {name!r} is out of range")
    return number


def parse_record(raw: Mapping[str, Any], rev: Optional[int] = None,
                 kjson: Optional[str] = None, event: bool = False) -> Record:
    """Check every field this backend reads of a name hash (no ``op``: a
    ``"set"``), a change event (``event``: ``op`` required) or a holder
    returned by a script.

    ``rev`` stands in for a missing ``rev`` field (events: their sequence
    number); ``kjson`` for a missing ``k`` (a holder of a known name).

    Raises:
        ValueError: naming the first field that is wrong.
    """
    op = _field(raw, "op", None if event else "set")
    if op not in _OPS:
        raise ValueError(f"unknown op {_brief(op)}")
    text = _field(raw, "k", kjson)
    key = key_from_json(text)
    node = _field(raw, "node")
    if not node:
        raise ValueError("field 'node' is empty")
    token = _number(raw, "tok")
    record_rev = rev if rev is not None and "rev" not in raw else _number(raw, "rev")
    inc, urn = _field(raw, "inc", ""), _field(raw, "urn", "")
    if op == "del":
        why = _field(raw, "why", KIND_UNREGISTERED) or KIND_UNREGISTERED
        if why not in _WHYS:
            raise ValueError(f"unknown reason {_brief(why)}")
        return Record(key, text, op, node, inc, token, record_rev, urn, "", {}, why,
                      _field(raw, "err", "")[:1000])
    if not urn or not inc:
        raise ValueError("fields 'urn' and 'inc' must not be empty")
    metadata = _read_metadata(raw)
    return Record(key, text, op, node, inc, token, record_rev, urn, _field(raw, "cls", ""),
                  metadata)


def _read_metadata(raw: Mapping[str, Any]) -> dict[Any, Any]:
    """The ``meta`` field of a name or member record: a JSON object within
    the limits of every write (:func:`pykka_registry._metadata.copy_metadata`:
    depth, item count), else ``ValueError``: what no write could store would
    otherwise fail every read of it, on every node."""
    meta_text = _field(raw, "meta", "")
    try:
        metadata = json.loads(meta_text, parse_constant=_no_constant) if meta_text else {}
    except RecursionError:
        raise ValueError("metadata nested too deep") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata is a JSON {type(metadata).__name__}, not an object")
    try:
        # what a write would refuse (a lone surrogate, a huge int) is refused
        # here too: a reader (``ls``, a JSON dump) could not print it
        return _json_object(copy_metadata(metadata), "meta")
    except InvalidMetadataError as error:
        raise ValueError(f"metadata: {error}") from None


def _no_constant(name: str) -> Any:
    """``json.loads``'s hook for ``NaN``, ``Infinity`` and ``-Infinity``:
    not JSON (no write stores them), refused."""
    raise ValueError(f"metadata holds {name}, which is not valid JSON")


def _checked(raw: Mapping[str, Any], where: str, rev: Optional[int] = None,
             kjson: Optional[str] = None, event: bool = False) -> Optional[Record]:
    """:func:`parse_record`, or None after a warning, so that a stray record
    written by hand or by another version is skipped alone."""
    try:
        return parse_record(raw, rev, kjson, event)
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        logger.warning("ignoring a malformed registry record (%s) %.200s: %s", where,
                       _brief(dict(raw)), error)
        return None


_HOLDER = ("node", "inc", "tok", "urn", "cls", "meta", "rev")


def holder_record(result: Any, kjson: str) -> Optional[Record]:
    """The checked record of the holder of name ``kjson`` that a script
    returned after its tag (``result[1:]``), or None (logged) if it cannot
    be read."""
    raw = dict(zip(_HOLDER, (_text(v) for v in result[1:])))
    return _checked(raw, "the holder of a name", kjson=kjson)


@attrs.define(frozen=True)
class Snapshot:
    """Every live name record read at once, with the counter, epoch and
    stream position they are current at. Immutable."""

    seq: int
    epoch: str
    records: tuple[Record, ...]
    dead_nodes: tuple[str, ...]
    feed_id: str  # the change stream's last id when the snapshot was taken
    writes_before: int  # own writes made before the snapshot was read


def parse_snapshot(raw: Any, writes_before: int) -> Snapshot:
    """The ``SNAPSHOT`` script's answer, every row checked (a malformed one
    is skipped with a warning)."""
    flat = raw[2]
    width = len(ROW_FIELDS)
    records = []
    for i in range(0, len(flat) - width + 1, width):
        record = _checked(dict(zip(ROW_FIELDS, flat[i:i + width])), "a name record")
        if record is not None:
            records.append(record)
    return Snapshot(_counter(raw[0]), _text(raw[1]), tuple(records),
                    tuple(_text(n) for n in raw[3]), _text(raw[4]) or "0-0", writes_before)


def _counter(value: Any) -> int:
    """The value of a counter key (0 if missing or not a number)."""
    try:
        return max(0, int(_text(value) or 0))
    except ValueError:
        return 0


def as_text(value: Any) -> str:
    """A Redis reply as text: bytes decoded as UTF-8 (bad bytes replaced),
    ``None`` as ``""``."""
    return _text(value)


def tuples(value: Any) -> Any:
    """A JSON value with every array turned into a tuple, nested (how a
    name part is read back from its JSON text)."""
    return _untuple(value)


# The helpers the backend's other modules share (private to the package).
brief = _brief
text = _text
key_problem = _key_problem
json_object = _json_object
dumps = _dumps
checked = _checked
counter = _counter
number = _number


# -- groups (see pykka_registry.backends.redis._groups) ---------------------------------
#
# Keys (P = the prefix): ``P:gmem:<node>`` (hash: one field per membership of
# that node, ``"<urn> <json [ns, group]>"``, whose value is the member's JSON
# record), ``P:gnodes`` (set of node ids that have a ``P:gmem`` hash),
# ``P:gseq`` (the group counter), ``P:gevents`` (the group change stream:
# fields ``s``, the counter value, and ``e``, the change as JSON).


def group_members_key(prefix: str, node_id: str) -> str:
    """The hash of ``node_id``'s memberships."""
    return f"{prefix}:gmem:{node_id}"


def group_keys(prefix: str) -> tuple[str, str, str]:
    """``(P:gnodes, P:gseq, P:gevents)``: the prefix's shared group keys."""
    return (f"{prefix}:gnodes", f"{prefix}:gseq", f"{prefix}:gevents")


def member_field(kjson: str, urn: str) -> str:
    """The field of one membership in its node's hash."""
    return f"{urn} {kjson}"


@attrs.define(frozen=True)
class MemberRecord:
    """A membership record or group change event read from Redis, every
    field checked (see :func:`parse_member`). Immutable.

    ``op``: ``"join"`` (a record, or a join/rejoin event), ``"leave"`` (one
    membership gone, ``why`` says why) or ``"drop"`` (every membership of the
    node's incarnation ``inc`` gone; only ``node``, ``inc``, ``why`` set).
    ``order`` is the counter value of the first join (the place in join
    order, kept by a rejoin); ``seq`` the counter value of the last write.
    """

    op: str
    node: str
    inc: str
    key: Key = ("", "")
    kjson: str = ""
    urn: str = ""
    actor_class: str = ""
    metadata: dict[str, Any] = attrs.field(factory=dict)
    order: int = 0
    seq: int = 0
    why: str = ""
    error: str = ""


_MEMBER_OPS = ("join", "leave", "drop")
_LEAVE_WHYS = frozenset({"left", "stopped", "crashed", "namespace_stopped", "expired",
                         "node_stopped"})


def parse_member(raw: Any, node: Optional[str] = None, seq: Optional[int] = None) -> MemberRecord:
    """Check every field of a membership record (``node``: the node whose
    hash held it; no ``op``) or a group change event (``node`` None: the
    event names it; ``seq``: its counter value).

    Raises:
        ValueError: naming the first field that is wrong.
    """
    if not isinstance(raw, Mapping):
        raise ValueError("not a JSON object")
    op = _field(raw, "op", "join" if node is not None else None)
    if op not in _MEMBER_OPS:
        raise ValueError(f"unknown op {_brief(op)}")
    owner = _field(raw, "node", node)
    if not owner or (node is not None and owner != node):
        raise ValueError("field 'node' is empty or names another node")
    inc = _field(raw, "inc")
    if not inc:
        raise ValueError("field 'inc' is empty")
    why = _field(raw, "why", "")
    if op != "join" and why not in _LEAVE_WHYS:
        raise ValueError(f"unknown reason {_brief(why)}")
    record_seq = seq if seq is not None else _number(raw, "s")
    if op == "drop":
        return MemberRecord(op, owner, inc, seq=record_seq, why=why)
    text = _field(raw, "k")
    key = key_from_json(text)
    urn = _field(raw, "urn")
    if not urn or " " in urn:
        raise ValueError("field 'urn' is empty or has a space")
    order = _number(raw, "n")
    if op == "leave":
        return MemberRecord(op, owner, inc, key, text, urn, order=order, seq=record_seq,
                            why=why, error=_field(raw, "err", "")[:1000])
    metadata = _read_metadata(raw)
    return MemberRecord(op, owner, inc, key, text, urn, _field(raw, "cls", ""), metadata,
                        order, record_seq)


def checked_member(raw: Any, where: str, node: Optional[str] = None,
                   seq: Optional[int] = None) -> Optional[MemberRecord]:
    """:func:`parse_member` of JSON text (or a decoded object), or None after
    a warning: a bad record is skipped alone."""
    try:
        if isinstance(raw, (bytes, str)):
            raw = json.loads(raw)
        return parse_member(raw, node, seq)
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as error:
        logger.warning("ignoring a malformed group record (%s) %.200s: %s", where,
                       _brief(raw), error)
        return None
