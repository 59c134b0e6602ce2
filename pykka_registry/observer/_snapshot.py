"""The observer's picture of the process: registries, names, groups,
supervision trees and Redis clusters, as one JSON-safe dict.

Guarantees
----------
* Read-only: it calls only the registries' read methods (``stats``,
  ``health_check``, ``namespaces``, ``count``, the backend's ``entries``),
  :meth:`Supervisor.snapshot <pykka_registry.Supervisor.snapshot>` and Redis
  read commands. Nothing is registered, changed or stopped.
* Runs in the HTTP request's thread, never in a registry's server thread, so
  building a snapshot delays no write.
* Bounded in time: each supervisor is asked with a short timeout (all of them
  within :data:`SUPERVISOR_BUDGET_S` together); one that does not answer in
  time is shown from its last answer, marked ``"stale": true``.
* Cheap to poll: while the observer records a registry's events it keeps
  the registry's names as sorted rows (labels only) and applies each name
  registered or released (the registry is asked for that key, so a late or
  repeated event does no harm); a poll lists and sorts nothing unless the
  rows were dropped (recording stopped, more than
  :data:`~pykka_registry.observer._watch.MAX_PENDING_CHANGES` changes
  piled up, a key's ``__eq__`` raised, or the row count disagrees with the
  backend's). A page's items are read from the backend at the poll.
* Bounded in size: names and groups are filtered, sorted and paged (at most
  :data:`MAX_LIMIT` per response); each value is cut by
  :mod:`~pykka_registry.observer._convert`. With 100k names a page of the
  default size is well under a megabyte.
* Never raises because of user data; a registry that fails to answer is shown
  with an ``"error"`` and the others still are.
* A Redis prefix (:class:`ClusterSource`) is read from outside with read
  commands only (:func:`pykka_registry._inspect.list_names` and
  :func:`~pykka_registry._inspect.list_groups`: names, group members, leases;
  at most :data:`MAX_CLUSTER_MEMBERS` member records a read). A record that
  cannot be read (a name, a member, a node's record or lease: malformed
  JSON, a wrong type, a value out of range) is skipped alone, counted
  (``"skipped"``) and logged once; the rest of the read goes on. A read
  that fails as a whole (Redis out of reach) is shown as the cluster's
  ``"error"`` and counted (``scrape_errors``); the page keeps serving.
* Each node is shown with its lease TTL and age, ``lease_expired`` (listed
  in ``P:nodes`` but its lease is gone) and ``degraded`` with its
  ``problems`` (a lease not renewed within two thirds of its TTL, a node
  record missing, unreadable or of another incarnation).
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, Callable, Optional

import attrs

from pykka_registry._errors import RegistryError
from pykka_registry._supervisor import Supervisor, SupervisorSnapshot, live_supervisors
from pykka_registry.observer._convert import MAX_TEXT, actor_info, jsonable, label, mailbox_depth
from pykka_registry.observer._watch import EventLog, Watch

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ClusterSource", "Snapshotter"]

logger = logging.getLogger("pykka_registry")

DEFAULT_LIMIT = 200
MAX_LIMIT = 2000
MAX_NAMESPACES = 200
MAX_MEMBERS_SHOWN = 50
MAX_CHILDREN_SHOWN = 500
MAX_SUPERVISORS = 500
SUPERVISOR_TIMEOUT_S = 0.2
SUPERVISOR_BUDGET_S = 0.4
SUPERVISOR_CACHE_S = 0.25
CLUSTER_CACHE_S = 0.5
MAX_CLUSTER_MEMBERS = 100_000
MAX_WARNINGS_REMEMBERED = 1000


def _asdict(value: Any) -> dict[str, Any]:
    try:
        return {k: jsonable(v) for k, v in attrs.asdict(value, recurse=False).items()}
    except Exception:
        return {}


def event_queue_depth(registry: Any) -> Optional[int]:
    """Events published but not yet delivered by the registry's dispatcher."""
    try:
        return registry._state.events.queued()
    except Exception:
        return None


def subscriber_count(registry: Any) -> Optional[int]:
    """Active subscriptions of the registry (the observer's own included)."""
    try:
        return registry._state.events.subscriber_count()
    except Exception:
        return None


class ClusterSource:
    """A Redis prefix read from outside: nodes (leases), the names they hold
    and their group members, without joining the cluster. Reads are cached
    for :data:`CLUSTER_CACHE_S` and made by one thread at a time (an HTTP
    request's); the dict returned is not changed afterwards."""

    def __init__(self, client: Any, prefix: str, url: str) -> None:
        self.client = client
        self.prefix = prefix
        self.url = url
        self._lock = threading.Lock()
        self._cached: Optional[dict[str, Any]] = None
        self._cached_at = 0.0
        # Warnings already logged: a stray record is read again at every
        # refresh, and is worth one log line, not two a second.
        self._warned: set[str] = set()
        self._skipped = 0
        self._this_read: set[str] = set()
        #: Reads that failed as a whole (Redis out of reach, a key of the
        #: wrong type where the index is): ``pykka_registry_cluster_scrape_errors_total``.
        self.scrape_errors = 0

    @property
    def label(self) -> str:
        return f"redis:{self.prefix}"

    def read(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached_at >= CLUSTER_CACHE_S:
                self._cached = self._read()
                self._cached_at = time.monotonic()
            return self._cached

    def _warn(self, message: str) -> None:
        # One record may be reported by two readers of one read (a node's
        # record by list_names and by _nodes): count it once.
        if message in self._this_read:
            return
        self._this_read.add(message)
        self._skipped += 1
        if message in self._warned:
            return
        if len(self._warned) < MAX_WARNINGS_REMEMBERED:
            self._warned.add(message)
        logger.warning("observer (redis prefix %r): %s", self.prefix, message)

    def _read(self) -> dict[str, Any]:
        from pykka_registry._inspect import list_groups, list_names

        self._skipped = 0
        self._this_read = set()
        try:
            rows = list_names(self.client, self.prefix, warn=self._warn)
            members = list_groups(self.client, self.prefix, warn=self._warn,
                                  limit=MAX_CLUSTER_MEMBERS)
            nodes = self._nodes()
        except Exception as error:
            self.scrape_errors += 1
            return {"prefix": self.prefix, "url": self.url, "error": label(error),
                    "nodes": [], "rows": [], "members": [], "groups": {}, "skipped": 0}
        per_node: dict[str, int] = {}
        for row in rows:
            per_node[row["node"]] = per_node.get(row["node"], 0) + 1
        groups: dict[tuple[Any, Any], list[Any]] = {}
        node_members: dict[str, int] = {}
        node_groups: dict[str, set[tuple[Any, Any]]] = {}
        for member in members:  # sorted by namespace, group, join order
            key = (member.namespace, member.group)
            groups.setdefault(key, []).append(member)
            node_members[member.node] = node_members.get(member.node, 0) + 1
            node_groups.setdefault(member.node, set()).add(key)
        for node in nodes:
            node["names"] = per_node.get(node["node"], 0)
            node["members"] = node_members.get(node["node"], 0)
            node["groups"] = len(node_groups.get(node["node"], ()))
        return {"prefix": self.prefix, "url": self.url, "error": None, "nodes": nodes,
                "rows": rows, "members": members, "groups": groups,
                "skipped": self._skipped}

    def _nodes(self) -> list[dict[str, Any]]:
        """Every node with a lease, and every node of ``P:nodes`` whose lease
        is gone (``lease_expired``: its records wait to be reaped). A node
        record that cannot be read is skipped alone (counted, logged once)
        and its node shown as degraded."""
        from pykka_registry.backends.redis._schema import Layout

        layout = Layout(self.prefix)
        pattern = _glob_escape(layout.node("")) + "*"
        start = len(layout.node(""))
        live = {_text(k)[start:] for k in self.client.scan_iter(match=pattern, count=1000)}
        known = self.client.smembers(layout.key("nodes"))
        ids = sorted(live | {_text(k) for k in known})
        pipe = self.client.pipeline(transaction=False)
        for node in ids:
            pipe.pttl(layout.node(node))
            pipe.get(layout.node(node))
            pipe.get(layout.nodeinfo(node))
        answers = pipe.execute(raise_on_error=False) if ids else []
        return [self._node(node, *answers[3 * i:3 * i + 3]) for i, node in enumerate(ids)]

    def _node(self, node: str, pttl: Any, lease: Any, raw: Any) -> dict[str, Any]:
        """One node's row from its lease's PTTL and value and its info record
        (any of them may be an error or junk: data read from Redis)."""
        where = f"{self.prefix}:nodeinfo:{node}"
        problems: list[str] = []
        expired = False
        if isinstance(pttl, Exception) or isinstance(lease, Exception):
            error = lease if isinstance(lease, Exception) else pttl
            # Worded as list_names says it: one record, counted once a read.
            self._warn(f"skipped node {node!r}: its lease key {self.prefix + ':node:' + node!r} "
                       f"is not a lease ({str(error)[:200]})")
            problems.append("its lease cannot be read")
            pttl = None
        elif pttl == -2 or lease is None:
            expired = True
            pttl = None
        elif pttl == -1:
            problems.append("its lease has no expiry")
        info: dict[str, Any] = {}
        # Worded as list_names says it: one record, counted once a read.
        malformed = f"ignored the malformed node info {where!r} (no lease age for that node)"
        if isinstance(raw, Exception):
            self._warn(malformed)
            problems.append("its node record cannot be read")
        elif raw is not None:
            try:
                value = json.loads(raw)
            except (ValueError, TypeError, RecursionError) as error:
                value = error
            if isinstance(value, dict):
                info = value
            else:
                self._warn(malformed)
                problems.append("its node record is malformed")
        elif not expired:
            problems.append("it has no node record")
        ttl_ms = info.get("ttl_ms")
        if not (type(ttl_ms) is int and 0 < ttl_ms < 2**53):
            if info:
                self._warn(malformed)
                problems.append("its node record has no positive int ttl_ms")
            ttl_ms = None
        inc = info.get("inc")
        if inc is not None and lease is not None and not isinstance(lease, Exception) \
                and _text(lease) != str(inc):
            problems.append("its node record is of another incarnation of its lease")
        age = None
        if ttl_ms is not None and type(pttl) is int and pttl >= 0:
            age = round(max(0, ttl_ms - pttl) / 1000, 3)
            # A node refreshes its lease every third of its TTL: older than
            # two thirds, it missed a refresh.
            if age > ttl_ms * 2 / 3000:
                problems.append(f"its lease was not renewed on time ({age} s old, "
                                f"TTL {ttl_ms / 1000} s)")
        if expired:
            problems.append("its lease expired (its records wait to be reaped)")
        return {
            "node": label(node),
            "host": jsonable(info.get("host")),
            "pid": jsonable(info.get("pid")),
            "since": jsonable(info.get("since")),
            "lease_ttl_s": None if ttl_ms is None else ttl_ms / 1000,
            "lease_age_s": age,
            "lease_expired": expired,
            "degraded": bool(problems) and not expired,
            "problems": problems,
            "names": 0,
            "members": 0,
            "groups": 0,
        }


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in text)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


#: (registry label, namespace label, key label, builder, its argument): the
#: item dict is built only for the rows of the page served.
_Row = tuple[str, str, str, Callable[..., dict[str, Any]], Any]

#: A name of one source: (namespace label, service label, a unique number,
#: service label in lower case, payload). The unique number makes rows with
#: equal labels (7 and "7") compare without reaching the payload, so sorting
#: and bisecting never call a key's ``__eq__`` or ``__lt__``. The payload is
#: ``(namespace, service)`` for a registry, the row dict for a cluster.
_NameRow = tuple[str, str, int, str, Any]

_ROW_SEQ = itertools.count()


@attrs.define
class _RowCache:
    epoch: int
    rows: list[_NameRow]


def _service_label(service: Any) -> str:
    # The common case (a short str) without a call: 100k names in well under 1 s.
    return service if type(service) is str and len(service) <= MAX_TEXT else label(service)


def _row(namespace: Any, service: Any) -> _NameRow:
    svc_label = _service_label(service)
    return (label(namespace), svc_label, next(_ROW_SEQ), svc_label.lower(),
            (namespace, service))


def _list_rows(backend: Any) -> list[_NameRow]:
    rows = [_row(entry.namespace, entry.service)
            for ns in list(backend.namespaces()) for entry in list(backend.entries(ns))]
    rows.sort()
    return rows


def _find(rows: list[_NameRow], namespace: Any, service: Any, ns_label: str,
          svc_label: str) -> Optional[int]:
    i = bisect.bisect_left(rows, (ns_label, svc_label))
    while i < len(rows) and rows[i][0] == ns_label and rows[i][1] == svc_label:
        ns, svc = rows[i][4]
        if ns == namespace and svc == service:
            return i
        i += 1
    return None


def _apply_changes(rows: list[_NameRow], changes: list[tuple[Any, Any]], backend: Any) -> bool:
    """Bring ``rows`` in line with the backend for each changed key (the
    backend is the truth: an event delivered late or twice does no harm).
    False when a key misbehaves (its ``__eq__`` raises...): rebuild."""
    try:
        for namespace, service in changes:
            ns_label, svc_label = label(namespace), _service_label(service)
            at = _find(rows, namespace, service, ns_label, svc_label)
            held = backend.get(namespace, service) is not None
            if held and at is None:
                bisect.insort(rows, _row(namespace, service))
            elif not held and at is not None:
                del rows[at]
        return True
    except Exception:
        return False


def _merge_equal_labels(
    sources: list[tuple[str, Callable[..., Optional[dict[str, Any]]], Any, list[_NameRow]]],
) -> list[tuple[str, Callable[..., Optional[dict[str, Any]]], Any, list[_NameRow]]]:
    """Sources sharing a label (two registries of one name) as one sorted
    list, each row carrying its own builder (rare: a copy and a sort)."""
    merged: list[tuple[str, Callable[..., Optional[dict[str, Any]]], Any, list[_NameRow]]] = []
    for name, build, arg, rows in sources:
        if merged and merged[-1][0] == name:
            _, prev_build, prev_arg, prev_rows = merged[-1]
            if prev_build is not _any_item:
                prev_rows = [(*r[:4], (prev_build, prev_arg, r)) for r in prev_rows]
            both = prev_rows + [(*r[:4], (build, arg, r)) for r in rows]
            both.sort()
            merged[-1] = (name, _any_item, None, both)
        else:
            merged.append((name, build, arg, rows))
    return merged


def _any_item(name: str, row: _NameRow, _arg: Any) -> Optional[dict[str, Any]]:
    build, arg, original = row[4]
    result: Optional[dict[str, Any]] = build(name, original, arg)
    return result


class Snapshotter:
    """Builds snapshots of the watched registries and clusters (any thread)."""

    def __init__(self, watches: Sequence[Watch], clusters: Sequence[ClusterSource],
                 log: EventLog, started: float) -> None:
        self.watches = watches
        self.clusters = clusters
        self.log = log
        self.started = started
        self._sup_lock = threading.Lock()
        self._sup_cache: weakref.WeakKeyDictionary[Supervisor, SupervisorSnapshot] = (
            weakref.WeakKeyDictionary())
        self._sup_tree: list[dict[str, Any]] = []
        self._sup_at = -1.0
        # Sorted name rows per registry (kept up to date from its events
        # while subscribed) and per cluster read.
        self._rows_lock = threading.Lock()
        self._rows: weakref.WeakKeyDictionary[Watch, _RowCache] = weakref.WeakKeyDictionary()
        self._cluster_cache: dict[int, tuple[dict[str, Any], list[_NameRow]]] = {}

    # -- the whole picture ----------------------------------------------------------

    def snapshot(self, query: str = "", namespace: Optional[str] = None, offset: int = 0,
                 limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        limit = max(0, min(limit, MAX_LIMIT))
        offset = max(0, offset)
        needle = query.lower()
        clusters = [(c, c.read()) for c in self.clusters]
        return {
            "version": 1,
            "time": time.time(),
            "observer": {"uptime_s": round(time.monotonic() - self.started, 3),
                         "max_limit": MAX_LIMIT},
            "registries": [self.registry_summary(w) for w in list(self.watches)],
            "clusters": [_cluster_summary(c, data) for c, data in clusters],
            "names": self._names(needle, namespace, offset, limit, clusters),
            "groups": self._groups(needle, namespace, offset, limit, clusters),
            "supervisors": self.supervisor_trees(),
            "events_latest": self.log.latest,
        }

    # -- registries -----------------------------------------------------------------

    def registry_summary(self, watch: Watch, namespaces: bool = True) -> dict[str, Any]:
        """The registry's health, counters and (with ``namespaces``) its
        :data:`MAX_NAMESPACES` largest namespaces; ``"error"`` says why not."""
        registry = watch.registry
        out: dict[str, Any] = {"name": watch.name, "error": None}
        try:
            health = registry.health_check()
            out.update(
                backend=label(health.backend),
                status=label(health.status),
                problems=[label(p) for p in health.problems],
                server_alive=bool(health.server_alive),
                uptime_s=round(float(health.uptime_s), 3),
                backend_health=jsonable(dict(health.backend_health)),
                stats=_asdict(registry.stats()),
                event_queue=event_queue_depth(registry),
                subscribers=subscriber_count(registry),
                groups_supported=_has_groups(registry),
            )
            if not namespaces:
                return out
            counted, total = self.namespace_counts(watch, MAX_NAMESPACES)
            out["namespaces_total"] = total
            out["namespaces"] = [
                {"namespace": label(ns), "names": names, "groups": groups, "members": members}
                for ns, names, groups, members in counted]
        except BaseException as error:
            out["error"] = f"{type(error).__name__}: {label(error)}"
        return out

    @staticmethod
    def namespace_counts(watch: Watch, limit: int,
                         ) -> tuple[list[tuple[Any, int, Optional[int], Optional[int]]], int]:
        """``([(namespace, names, groups, members)], how many namespaces)``:
        the ``limit`` namespaces with the most names (then by label), the
        namespace objects themselves (distinct even where their labels are
        not). ``groups`` and ``members`` are ``None`` without groups."""
        registry = watch.registry
        has_groups = _has_groups(registry)
        found: list[tuple[Any, int, Optional[int], Optional[int]]] = []
        for ns in _all_namespaces(registry):
            groups: Optional[int] = None
            members: Optional[int] = None
            if has_groups:
                names_of_groups = list(registry.groups(ns))
                groups = len(names_of_groups)
                members = sum(_count_members(registry, ns, g) for g in names_of_groups)
            found.append((ns, registry.count(ns), groups, members))
        total = len(found)
        keyed = [(-item[1], label(item[0]), i) for i, item in enumerate(found)]
        keyed.sort()  # stable for equal labels: the registry's own order decides
        return [found[i] for _, _, i in keyed[:limit]], total

    def _names(self, needle: str, namespace: Optional[str], offset: int, limit: int,
               clusters: list[tuple[ClusterSource, dict[str, Any]]]) -> dict[str, Any]:
        # Each source's rows are sorted by (namespace, service) labels; the
        # sources are taken in the order of their labels: the whole list is
        # sorted by (registry, namespace, service) without sorting it here.
        sources: list[tuple[str, Callable[..., Optional[dict[str, Any]]], Any, list[_NameRow]]] = []
        for watch in list(self.watches):
            try:
                rows = self._registry_rows(watch)
            except Exception:
                continue  # a registry that cannot list: its summary says so
            sources.append((watch.name, _entry_item, watch, rows))
        for source, data in clusters:
            sources.append((source.label, _cluster_item, source, self._cluster_rows(data)))
        sources.sort(key=lambda item: item[0])  # stable: equal labels keep their order
        total = 0
        items: list[dict[str, Any]] = []
        skip, room = offset, limit
        for name, build, arg, rows in _merge_equal_labels(sources):
            lo, hi = 0, len(rows)
            if namespace is not None:
                lo = bisect.bisect_left(rows, (namespace,))
                hi = bisect.bisect_left(rows, (namespace + "\x00",))
            if needle:
                picked: Sequence[_NameRow] = [r for r in rows[lo:hi] if needle in r[3]]
                lo, hi = 0, len(picked)
            else:
                picked = rows
            total += hi - lo
            if room > 0 and skip < hi - lo:
                for row in picked[lo + skip:min(hi, lo + skip + room)]:
                    item = build(name, row, arg)
                    if item is not None:
                        items.append(item)
                    room -= 1
                skip = 0
            else:
                skip -= min(skip, hi - lo)
        return {
            "total": total,
            "offset": offset,
            "limit": limit,
            "query": needle,
            "namespace": namespace,
            "items": items,
        }

    def _registry_rows(self, watch: Watch) -> list[_NameRow]:
        """The registry's names as sorted rows, from the cache when it can be
        trusted (the observer is subscribed and has kept it up to date with
        every name registered or released since), else listed anew."""
        registry = watch.registry
        if getattr(registry, "_state", None) is not None and registry._state.closed:
            return []
        backend = registry.backend
        with self._rows_lock:
            cache = self._rows.get(watch)
            subscribed = watch.subscription is not None
            if cache is not None and subscribed and cache.epoch == watch.epoch:
                changes = watch.take_changes()
                if changes is not None:
                    # Copy on write: a request paging the old list meanwhile
                    # (it holds no lock) sees it unchanged.
                    rows = list(cache.rows) if changes else cache.rows
                    if _apply_changes(rows, changes, backend) and len(rows) == backend.count():
                        cache.rows = rows
                        return rows
            # Rebuild. Changes seen before the listing are in it: drop them.
            epoch = watch.epoch
            watch.take_changes()
            rows = _list_rows(backend)
            if subscribed:
                self._rows[watch] = _RowCache(epoch, rows)
            else:
                self._rows.pop(watch, None)
            return rows

    def _cluster_rows(self, data: dict[str, Any]) -> list[_NameRow]:
        """A cluster read's names as sorted rows (built once per read)."""
        with self._rows_lock:
            cached = self._cluster_cache.get(id(data))
            if cached is not None and cached[0] is data:
                return cached[1]
            rows = sorted((label(r["namespace"]), label(r["service"]), next(_ROW_SEQ),
                           label(r["service"]).lower(), r) for r in data["rows"])
            if len(self._cluster_cache) > 2 * max(1, len(self.clusters)):
                self._cluster_cache.clear()  # reads of the past
            self._cluster_cache[id(data)] = (data, rows)
            return rows

    def _groups(self, needle: str, namespace: Optional[str], offset: int, limit: int,
                clusters: list[tuple[ClusterSource, dict[str, Any]]],
                ) -> Optional[dict[str, Any]]:
        watches = [w for w in list(self.watches) if _has_groups(w.registry)]
        if not watches and not clusters:
            return None
        rows: list[_Row] = []
        for watch in watches:
            registry = watch.registry
            try:
                for ns in _all_namespaces(registry):
                    ns_label = label(ns)
                    if namespace is not None and ns_label != namespace:
                        continue
                    for group in list(registry.groups(ns)):
                        group_label = label(group)
                        if needle and needle not in group_label.lower():
                            continue
                        rows.append((watch.name, ns_label, group_label, _group_item,
                                     (registry, ns, group)))
            except Exception:
                continue
        for source, data in clusters:
            for (ns, group), members in data["groups"].items():
                ns_label, group_label = label(ns), label(group)
                if namespace is not None and ns_label != namespace:
                    continue
                if needle and needle not in group_label.lower():
                    continue
                rows.append((source.label, ns_label, group_label, _cluster_group_item,
                             members))
        rows.sort(key=_sort_key)
        return {"total": len(rows), "offset": offset, "limit": limit,
                "items": [row[3](row[0], row[1], row[2], row[4])
                          for row in rows[offset:offset + limit]]}

    # -- supervision trees ----------------------------------------------------------

    def supervisor_trees(self) -> list[dict[str, Any]]:
        """Every live supervisor of the process as a tree (cached for
        :data:`SUPERVISOR_CACHE_S`: several clients share one round of asks)."""
        with self._sup_lock:
            if time.monotonic() - self._sup_at < SUPERVISOR_CACHE_S:
                return self._sup_tree
            self._sup_tree = self._build_trees()
            self._sup_at = time.monotonic()
            return self._sup_tree

    def _build_trees(self) -> list[dict[str, Any]]:
        handles = live_supervisors()[:MAX_SUPERVISORS]
        deadline = time.monotonic() + SUPERVISOR_BUDGET_S
        snaps: dict[int, tuple[Supervisor, Optional[SupervisorSnapshot], bool]] = {}
        for handle in handles:
            remaining = deadline - time.monotonic()
            snap: Optional[SupervisorSnapshot] = None
            stale = True
            if remaining > 0:
                try:
                    snap = handle.snapshot(timeout=min(SUPERVISOR_TIMEOUT_S, remaining))
                    stale = False
                    self._sup_cache[handle] = snap
                except RegistryError:
                    pass
            if snap is None:
                snap = self._sup_cache.get(handle)
            snaps[id(handle)] = (handle, snap, stale)
        nested = {
            id(child.supervisor)
            for _, snap, _ in snaps.values() if snap is not None
            for child in snap.children if child.supervisor is not None
        }
        roots = [h for h in handles if id(h) not in nested]
        roots.sort(key=lambda h: label(h.name))
        return [_supervisor_node(h, snaps, set()) for h in roots]


def _all_namespaces(registry: Any) -> list[Any]:
    """The namespaces with names, then those with group members only."""
    found = list(registry.namespaces())
    if _has_groups(registry):
        extra = getattr(getattr(registry, "backend", None), "group_namespaces", None)
        if callable(extra):
            found += [ns for ns in extra() if ns not in found]
    return found


def _has_groups(registry: Any) -> bool:
    """Does the registry keep groups? (A registry on a backend without
    groups has the methods, but they raise.)"""
    return getattr(registry, "supports_groups", False) is True


def _count_members(registry: Any, namespace: Any, group: Any) -> int:
    counter = getattr(registry, "count_members", None)
    if counter is not None:
        return int(counter(namespace, group))
    return len(registry.members(namespace, group))


def _sort_key(row: _Row) -> tuple[str, str, str]:
    return (row[0], row[1], row[2])


def _entry_item(registry: str, row: _NameRow, watch: Watch) -> Optional[dict[str, Any]]:
    """The page's item for a name of a registry, read now (so metadata and
    holder are current); ``None`` if the name was released meanwhile."""
    namespace, service = row[4]
    try:
        entry = watch.registry.backend.get(namespace, service)
    except Exception:
        entry = None
    if entry is None:
        return None
    actor = actor_info(entry.actor_ref)
    since = watch.held_since(entry.namespace, entry.service, actor["urn"])
    return {
        "registry": registry,
        "namespace": row[0],
        "service": row[1],
        **actor,
        "metadata": jsonable(entry.metadata),
        "held_s": None if since is None else round(max(0.0, time.time() - since), 3),
        "lease_age_s": None,
    }


def _cluster_item(registry: str, row: _NameRow, _source: Any) -> Optional[dict[str, Any]]:
    record = row[4]
    return {
        "registry": registry,
        "namespace": row[0],
        "service": row[1],
        "actor_class": label(record["actor_class"]),
        "urn": None,
        "alive": True,
        "mailbox": None,
        "node": label(record["node"]),
        "metadata": jsonable(record["metadata"]),
        "held_s": None,
        "lease_age_s": record["lease_age_s"],
    }


def _group_item(registry_name: str, ns_label: str, group_label: str, arg: Any) -> dict[str, Any]:
    registry, namespace, group = arg
    try:
        members = list(registry.members_with_metadata(namespace, group))
    except Exception:
        members = [(ref, {}) for ref in registry.members(namespace, group)]
    return {
        "registry": registry_name,
        "namespace": ns_label,
        "group": group_label,
        "count": len(members),
        "members": [{**actor_info(ref), "metadata": jsonable(meta)}
                    for ref, meta in members[:MAX_MEMBERS_SHOWN]],
    }


def _cluster_group_item(registry: str, ns_label: str, group_label: str,
                        members: list[Any]) -> dict[str, Any]:
    """A group of a Redis prefix read from outside: its members (of every
    node) in join order, as records say (no ref: no mailbox, alive means
    of a live lease)."""
    return {
        "registry": registry,
        "namespace": ns_label,
        "group": group_label,
        "count": len(members),
        "members": [{
            "actor_class": label(m.actor_class),
            "urn": label(m.urn),
            "alive": True,
            "mailbox": None,
            "node": label(m.node),
            "metadata": jsonable(m.metadata),
            "join_order": m.join_order,
            "lease_age_s": m.lease_age_s,
        } for m in members[:MAX_MEMBERS_SHOWN]],
    }


def _cluster_summary(source: ClusterSource, data: dict[str, Any]) -> dict[str, Any]:
    return {"name": source.label, "prefix": data["prefix"], "url": data["url"],
            "error": data["error"], "names": len(data["rows"]),
            "groups": len(data["groups"]), "members": len(data["members"]),
            "skipped": data["skipped"], "nodes": data["nodes"]}


def _supervisor_node(handle: Supervisor,
                     snaps: dict[int, tuple[Supervisor, Optional[SupervisorSnapshot], bool]],
                     seen: set[int]) -> dict[str, Any]:
    seen = seen | {id(handle)}
    _, snap, stale = snaps.get(id(handle), (handle, None, True))
    ref = handle._ref
    node: dict[str, Any] = {
        "name": label(handle.name),
        "urn": None if ref is None else label(ref.actor_urn),
        "alive": handle.is_alive(),
        "mailbox": mailbox_depth(ref),
        "stale": stale,
        "strategy": None, "max_restarts": None, "max_seconds": None,
        "restarts_in_window": None, "restarts_total": None, "registry": None,
        "children": [],
    }
    if snap is None:
        return node
    node.update(strategy=snap.strategy, max_restarts=snap.max_restarts,
                max_seconds=snap.max_seconds, restarts_in_window=snap.restarts_in_window,
                restarts_total=snap.restarts_total, registry=snap.registry_name)
    for child in snap.children[:MAX_CHILDREN_SHOWN]:
        nested = None
        if child.supervisor is not None and id(child.supervisor) not in seen:
            nested = _supervisor_node(child.supervisor, snaps, seen)
        node["children"].append({
            "id": label(child.id),
            "restart": child.restart,
            "restarts": child.restarts,
            "name": None if child.name is None else [label(child.name[0]),
                                                     label(child.name[1])],
            "actor": None if child.actor_ref is None else actor_info(child.actor_ref),
            "supervisor": nested,
        })
    return node
