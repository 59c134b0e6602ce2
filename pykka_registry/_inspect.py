"""``python -m pykka_registry ls``: list every name (or group member) held
through a Redis server.

Usage::

    python -m pykka_registry ls --redis URL [--prefix P] [--namespace NS] [--groups] [--json]

Reads Redis only (it starts no node and takes no lease). A name is listed if
its node's lease is alive, which is exactly when other processes can see it.
``--namespace`` takes a plain string; a JSON integer or array selects an int
or tuple namespace (``--namespace 7``, ``--namespace '["test", "x"]'``).

Table columns: namespace, service, node, actor class, metadata, lease age
(seconds since the node last renewed its lease). ``--json`` prints one JSON
array of objects with the keys ``namespace``, ``service``, ``node``,
``actor_class``, ``metadata``, ``lease_age_s``; tuple keys appear as arrays.

``--groups`` lists the group memberships instead (:func:`list_groups`):
columns namespace, group, node, actor class, URN, join order (the member's
place in its group's join order), metadata, lease age; ``--json`` keys
``namespace``, ``group``, ``node``, ``urn``, ``actor_class``, ``metadata``,
``join_order``, ``lease_age_s``. A membership is listed if its record is of
its node's live lease incarnation.

A record this version cannot read (a stray key or field, another version's
format, a string that is not valid Unicode, ``NaN`` in metadata) is skipped
with a warning on stderr naming its key; the others are listed. So is a
stray key where a node's lease or info should be (a node whose lease key
holds another type is left out; one whose info cannot be read has no lease
age), and a shared set (``P:names``, ``P:gnodes``) of another type.

:func:`list_nodes` lists the nodes themselves (lease and info record of
each), for tools such as the observer, with the same tolerance of stray keys.

Exit status: 0 on success, 1 when Redis cannot be read, 2 on bad usage.

Guarantees
----------
* Reads only: no key is written, no lease taken.
* The key layout and the record format are the backend's own
  (:mod:`pykka_registry.backends.redis._schema`: ``Layout``,
  ``parse_record``, ``group_members_key``, ``parse_member``), so ``ls``
  lists exactly the names and members other processes see; it uses no
  private helper of the backend.
* A record, lease or node info that cannot be read is skipped alone, never
  fatal; what is listed is valid JSON (no ``NaN``, no lone surrogate).
* Bounded reads: a node's membership hash is read with ``HSCAN`` in pages
  of :data:`SCAN_COUNT` fields (never one ``HGETALL`` of a huge hash), and
  :func:`list_groups` stops after ``limit`` records when given one.
* Values returned by :func:`list_groups` are frozen
  (:class:`GroupMembership`), read in the caller's thread; any thread may
  call these functions with its own client.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Hashable, Sequence
from typing import Any, Callable, Optional, TextIO

import attrs

__all__ = ["SCAN_COUNT", "GroupMembership", "format_groups_table", "format_table",
           "group_rows", "list_groups", "list_names", "list_nodes", "main", "parse_namespace"]

logger = logging.getLogger("pykka_registry.redis")

def parse_namespace(text: str) -> Any:
    """A ``--namespace`` value: JSON for an int or a tuple, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        return text
    from pykka_registry.backends.redis._schema import tuples

    return tuples(value)


def list_names(client: Any, prefix: str, namespace: Any = None,
               warn: Optional[Callable[[str], None]] = None) -> list[dict[str, Any]]:
    """Every live name under ``prefix`` (optionally of one ``namespace``), as
    dicts with the ``--json`` keys, sorted by namespace and service.

    A record that cannot be read is skipped and reported to ``warn`` (default:
    a warning on the ``pykka_registry.redis`` logger)."""
    from pykka_registry.backends.redis._schema import ROW_FIELDS, Layout, as_text, parse_record

    layout = Layout(prefix)
    report = warn or (lambda message: logger.warning("%s", message))
    name_keys = sorted(_set_members(client, layout.names, report))
    pipe = client.pipeline(transaction=False)
    for name_key in name_keys:
        pipe.hmget(name_key, *ROW_FIELDS)
    records = []
    for name_key, row in zip(name_keys, pipe.execute(raise_on_error=False)):
        where = as_text(name_key)
        if isinstance(row, Exception):
            report(f"skipped {where!r}: {row}")
            continue
        if row[0] is None:
            continue  # deleted meanwhile
        try:
            record = parse_record(dict(zip(ROW_FIELDS, row)))
        except (ValueError, TypeError, UnicodeDecodeError) as error:
            report(f"skipped the malformed record {where!r}: {error}")
            continue
        if where != layout.name(record.kjson):
            report(f"skipped {where!r}: its name {record.kjson!r} belongs under another key")
            continue
        records.append(record)
    leases = _leases(client, layout, sorted({r.node for r in records}), report)
    rows = []
    for record in records:
        inc, age = leases.get(record.node, ("", None))
        if not inc or inc != record.inc:
            continue  # the node's lease lapsed: the name is free
        ns, service = record.key
        if namespace is not None and ns != namespace:
            continue
        rows.append({
            "namespace": ns,
            "service": service,
            "node": record.node,
            "actor_class": record.actor_class,
            "metadata": record.metadata,
            "lease_age_s": age,
        })
    rows.sort(key=lambda r: (json.dumps(r["namespace"]), json.dumps(r["service"])))
    return rows


def _leases(client: Any, layout: Any, nodes: list[str],
            report: Callable[[str], None]) -> dict[str, tuple[str, Optional[float]]]:
    """``node -> (lease incarnation or "", lease age in seconds or None)``.

    A lease key that is not a lease (another type: its node is left out) or
    an info record that cannot be read (no age) is reported to ``report``
    and skipped alone: one stray key never fails the listing."""
    from pykka_registry.backends.redis._schema import as_text

    pipe = client.pipeline(transaction=False)
    for node in nodes:
        pipe.get(layout.node(node))
        pipe.pttl(layout.node(node))
        pipe.get(layout.nodeinfo(node))
    answers = pipe.execute(raise_on_error=False) if nodes else []
    leases: dict[str, tuple[str, Optional[float]]] = {}
    for i, node in enumerate(nodes):
        raw_inc, pttl, info = answers[3 * i], answers[3 * i + 1], answers[3 * i + 2]
        if isinstance(raw_inc, Exception) or isinstance(pttl, Exception):
            report(f"skipped node {node!r}: its lease key {layout.node(node)!r} is not a "
                   f"lease ({str(raw_inc if isinstance(raw_inc, Exception) else pttl)[:200]})")
            leases[node] = ("", None)
            continue
        inc = as_text(raw_inc)
        ttl_ms = _lease_ms(info)
        if ttl_ms is None and info is not None:
            report(f"ignored the malformed node info {layout.nodeinfo(node)!r} (no lease age "
                   "for that node)")
        age: Optional[float] = None
        if ttl_ms is not None and isinstance(pttl, int) and pttl >= 0:
            age = round(max(0, ttl_ms - pttl) / 1000, 3)
        leases[node] = (inc, age)
    return leases


def _lease_ms(info: Any) -> Optional[int]:
    """The lease length in a node info record (its ``ttl_ms``), or None if
    the record is missing or not one this tool understands (another type,
    not JSON, too deep, a ``ttl_ms`` that is not a positive int)."""
    if info is None or isinstance(info, Exception):
        return None
    try:
        decoded = json.loads(info)
    except (ValueError, TypeError, RecursionError):
        return None
    ttl_ms = decoded.get("ttl_ms") if isinstance(decoded, dict) else None
    if type(ttl_ms) is not int or not 0 < ttl_ms < 1 << 53:
        return None
    return ttl_ms


def _set_members(client: Any, key: str, report: Callable[[str], None]) -> list[Any]:
    """The members of the set ``key``; a key of another type is reported
    and read as empty (a stray key under the prefix is not Redis failing)."""
    try:
        return list(client.smembers(key))
    except _wrong_type_errors() as error:
        report(f"skipped {key!r}: {str(error)[:200]}")
        return []


def list_nodes(client: Any, prefix: str,
               warn: Optional[Callable[[str], None]] = None) -> list[dict[str, Any]]:
    """Every node under ``prefix`` whose lease key exists (found with
    ``SCAN``), sorted by node id, as dicts: ``node``, ``host``, ``pid``,
    ``since`` (what its info record says, else None), ``lease_ttl_s`` and
    ``lease_age_s`` (None when unknown).

    A lease key of another type is skipped, and an info record that cannot
    be read gives Nones, each reported to ``warn`` (default: a warning on the
    ``pykka_registry.redis`` logger): a stray key never fails the listing.
    Only values of JSON types are returned (no NaN, no lone surrogate).

    Raises:
        redis.RedisError: Redis cannot be read (but not for one bad key).
    """
    from pykka_registry.backends.redis._schema import Layout, as_text

    layout = Layout(prefix)
    report = warn or (lambda message: logger.warning("%s", message))
    start = len(layout.node(""))
    pattern = "".join(f"[{c}]" if c in "*?[]\\" else c for c in layout.node("")) + "*"
    ids = sorted({as_text(k)[start:] for k in client.scan_iter(match=pattern, count=1000)})
    leases = _leases(client, layout, ids, report)
    pipe = client.pipeline(transaction=False)
    for node in ids:
        pipe.get(layout.nodeinfo(node))
    infos = pipe.execute(raise_on_error=False) if ids else []
    nodes = []
    for node, raw in zip(ids, infos):
        inc, age = leases.get(node, ("", None))
        if not inc:
            continue  # not a lease (reported), or gone meanwhile
        info = _info_record(raw)
        ttl_ms = _lease_ms(raw)
        nodes.append({
            "node": node,
            "host": _plain(info.get("host"), str),
            "pid": _plain(info.get("pid"), int),
            "since": _plain(info.get("since"), float),
            "lease_ttl_s": None if ttl_ms is None else ttl_ms / 1000,
            "lease_age_s": age,
        })
    return nodes


def _info_record(raw: Any) -> dict[str, Any]:
    """A node info record as a dict ({} if it is not one)."""
    if raw is None or isinstance(raw, Exception):
        return {}
    try:
        decoded = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _plain(value: Any, kind: type) -> Any:
    """``value`` if it is a finite, printable ``kind`` (int for float too), else None."""
    if isinstance(value, bool):
        return None
    if kind is float and isinstance(value, int):
        value = float(value) if abs(value) < 1 << 53 else None
    if kind is str and isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return value[:200]
    if kind is int and isinstance(value, int):
        return value if abs(value) < 1 << 53 else None
    if kind is float and isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    return None


#: Fields asked for per ``HSCAN`` call when reading a node's memberships.
SCAN_COUNT = 500


@attrs.define(frozen=True)
class GroupMembership:
    """One live group membership read from Redis by :func:`list_groups`.
    Immutable (``metadata`` is a fresh dict of this read, shared with no
    one: do not change it).

    ``join_order`` is the member's place in its group's join order (the
    group counter's value at its first join; a rejoin keeps it); members of
    one group sort by it. ``lease_age_s``: seconds since the member's node
    last renewed its lease (None when the node says no lease length)."""

    namespace: Hashable
    group: Hashable
    node: str
    urn: str
    actor_class: str
    metadata: dict[str, Any]
    join_order: int
    lease_age_s: Optional[float]

    def as_json(self) -> dict[str, Any]:
        """The ``ls --groups --json`` object (tuple keys become arrays)."""
        return {
            "namespace": self.namespace,
            "group": self.group,
            "node": self.node,
            "urn": self.urn,
            "actor_class": self.actor_class,
            "metadata": self.metadata,
            "join_order": self.join_order,
            "lease_age_s": self.lease_age_s,
        }


def list_groups(client: Any, prefix: str, namespace: Any = None,
                warn: Optional[Callable[[str], None]] = None,
                limit: Optional[int] = None) -> list[GroupMembership]:
    """Every live group membership under ``prefix`` (optionally of one
    ``namespace``), sorted by namespace, group and join order.

    Reads ``P:gnodes``, each node's lease, and each live node's ``P:gmem``
    hash with ``HSCAN``; writes nothing. A membership counts when its record
    is of its node's live lease incarnation (others are leftovers that the
    nodes reap). A record that cannot be read (not JSON, a field missing or
    wrong, another node's record, a field that does not name it) is skipped
    and reported to ``warn`` (default: a warning on the
    ``pykka_registry.redis`` logger), as is a node's hash that is not a
    hash. With ``limit``, at most ``limit`` records are read (a warning
    says so when more were left).

    Raises:
        redis.RedisError: Redis cannot be read (but not for one key of the
            wrong type).
    """
    from pykka_registry.backends.redis._schema import (
        Layout,
        as_text,
        group_keys,
        group_members_key,
        member_field,
        parse_member,
    )

    layout = Layout(prefix)
    report = warn or (lambda message: logger.warning("%s", message))
    gnodes = group_keys(prefix)[0]
    nodes = sorted({as_text(n) for n in _set_members(client, gnodes, report)})
    leases = _leases(client, layout, nodes, report)
    members: list[GroupMembership] = []
    budget = limit
    for node in nodes:
        inc, age = leases.get(node, ("", None))
        if not inc:
            continue  # the node's lease lapsed: its members are gone
        key = group_members_key(prefix, node)
        try:
            fields, more = _scan_hash(client, key, budget)
        except _wrong_type_errors() as error:
            report(f"skipped {key!r}: {error}")
            continue
        if budget is not None:
            budget -= len(fields)
        for raw_field, raw_value in fields:
            where = as_text(raw_field)
            try:
                if isinstance(raw_value, bytes):
                    raw_value = raw_value.decode()
                record = parse_member(json.loads(raw_value), node=node)
            except (ValueError, TypeError, RecursionError) as error:
                report(f"skipped the malformed member record {where!r} in {key!r}: "
                       f"{str(error)[:200]}")
                continue
            if where != member_field(record.kjson, record.urn):
                report(f"skipped {where!r} in {key!r}: its record is of another membership")
                continue
            if record.inc != inc:
                continue  # of a lapsed incarnation of the node: reaped by the nodes
            ns, group = record.key
            if namespace is not None and ns != namespace:
                continue
            members.append(GroupMembership(ns, group, node, record.urn, record.actor_class,
                                           record.metadata, record.order, age))
        if more or (budget is not None and budget <= 0 and node != nodes[-1]):
            report(f"stopped reading group members after {limit} records")
            break
    members.sort(key=lambda m: (json.dumps(m.namespace), json.dumps(m.group), m.join_order,
                                m.urn))
    return members


def _scan_hash(client: Any, key: str,
               budget: Optional[int]) -> tuple[list[tuple[Any, Any]], bool]:
    """The fields of hash ``key`` (at most ``budget``), read with ``HSCAN``
    pages, and whether some were left unread. (A scan may return a field
    twice, if the hash is rehashed meanwhile: each is kept once.)"""
    fields: dict[Any, Any] = {}
    cursor = 0
    while True:
        cursor, page = client.hscan(key, cursor, count=SCAN_COUNT)
        fields.update(page)
        if not cursor:
            break
        if budget is not None and len(fields) >= budget:
            return list(fields.items())[:budget], True
    items = list(fields.items())
    if budget is not None and len(items) > budget:
        return items[:max(0, budget)], True
    return items, False


def _wrong_type_errors() -> tuple[type[BaseException], ...]:
    """The error of a key holding another type (``WRONGTYPE``): one key, not
    Redis, is wrong."""
    try:
        from redis.exceptions import ResponseError
    except ImportError:  # pragma: no cover - a client of another library
        return ()
    return (ResponseError,)


def group_rows(members: list[GroupMembership]) -> list[dict[str, Any]]:
    """The ``ls --groups --json`` objects of ``members``."""
    return [m.as_json() for m in members]


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _aligned(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    headers = ("NAMESPACE", "SERVICE", "NODE", "ACTOR CLASS", "METADATA", "LEASE AGE")
    cells = [
        (
            _cell(r["namespace"]), _cell(r["service"]), r["node"], r["actor_class"],
            _cell(r["metadata"]),
            "-" if r["lease_age_s"] is None else f"{r['lease_age_s']:.1f}s",
        )
        for r in rows
    ]
    return _aligned(headers, cells)


def format_groups_table(members: list[GroupMembership]) -> str:
    """The memberships as an aligned text table (``ls --groups``)."""
    headers = ("NAMESPACE", "GROUP", "NODE", "ACTOR CLASS", "URN", "JOIN ORDER", "METADATA",
               "LEASE AGE")
    cells = [
        (
            _cell(m.namespace), _cell(m.group), m.node, m.actor_class, m.urn,
            str(m.join_order), _cell(m.metadata),
            "-" if m.lease_age_s is None else f"{m.lease_age_s:.1f}s",
        )
        for m in members
    ]
    return _aligned(headers, cells)


def main(argv: Optional[list[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run ``ls`` with the arguments after ``ls`` (a leading ``"ls"`` is ignored)."""
    from pykka_registry.cli._common import Parser
    from pykka_registry.cli._ls import add_arguments, run

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["ls"]:
        args_list = args_list[1:]
    parser = Parser(
        prog="python -m pykka_registry ls",
        description="List every name (or, with --groups, every group member) held "
                    "through a Redis server.",
    )
    add_arguments(parser)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return run(args, out)
