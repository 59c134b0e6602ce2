"""``MemoryBackend``: the plain in-memory store (what ETS is to the original).

Guarantees
----------
* A single-name read (:meth:`MemoryBackend.get`) takes no lock: two dict reads,
  each atomic under the GIL (and under the per-dict locks of free-threaded
  CPython).
* Every write runs under one lock, and so does every read that walks more
  than one structure, so such reads see the state before or after a write,
  never between.
* ``count()`` is O(1); ``services``/``entries`` are O(size of the namespace);
  ``match`` scans the namespace (see :mod:`pykka_registry.backends.indexed`
  for an index).
* Groups (:class:`LocalGroups`): members in join order, an ordered dict per
  group under a lock of their own. ``members`` reads a cached snapshot (a
  tuple) without a lock; every group write drops the group's snapshot before
  it returns, and the next read rebuilds it under the lock, so a read sees
  the group before or after a write, never between. Join, leave and a
  death's ``leave_all`` are O(1) per membership.
* A death removes what it can: in ``remove_actor`` and ``leave_all`` (the
  dying actor's thread), a key whose ``__hash__``/``__eq__`` raises by now
  (it hashed fine when stored) leaves that one name or membership behind,
  logged; the actor's other names and memberships are removed and reported
  (so their events are published) all the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Callable, Optional

from pykka_registry._errors import NotRegisteredError, safe_repr, type_name
from pykka_registry._events import UnregisterReason
from pykka_registry.backends.base import Backend, Entry, Member, refuse_if_held

__all__ = ["LocalGroups", "LocalTables", "MemoryBackend"]

_EMPTY: dict[Hashable, Any] = {}

logger = logging.getLogger("pykka_registry")


def _left_behind(what: str, namespace: Any, key: Any, error: BaseException) -> None:
    """Log a dead actor's name or membership that could not be removed."""
    logger.error("a dead actor's %s %s in namespace %s could not be removed (%s from its "
                 "key's __hash__ or __eq__); its other names and memberships were", what,
                 safe_repr(key), safe_repr(namespace), type_name(error))


class LocalTables:
    """The dict tables behind :class:`MemoryBackend`, and behind the local copy
    of networked backends: ``namespace -> service -> Entry``, a reverse index
    ``actor_urn -> what that actor holds`` and a total, under one lock.

    Gives the read half of the :class:`Backend` behaviour and two write
    primitives, :meth:`_put` and :meth:`_forget` (callers hold ``_lock``),
    with hooks for subclasses that keep more indexes.

    The reverse index holds, per actor, the :class:`Entry` itself while the
    actor holds one name (the common case: no container per actor), and a
    ``{(namespace, service): Entry}`` dict once it holds more.

    With ``refs=True``, a parallel ``namespace -> service -> actor_ref``
    table (:attr:`_refs`) is kept too, written in the same locked step: the
    registry's ``lookup`` reads it, one dict read fewer than through the
    ``Entry`` (about 38 B per entry; networked backends, whose lookups check
    liveness anyway, go without).
    """

    def __init__(self, refs: bool = False) -> None:
        self._lock = threading.Lock()
        self._names: dict[Hashable, dict[Hashable, Any]] = {}
        #: ``namespace -> service -> actor_ref`` (or ``None``: not kept).
        self._refs: Optional[dict[Hashable, dict[Hashable, Any]]] = {} if refs else None
        self._by_urn: dict[str, Any] = {}  # urn -> Entry | {(ns, service): Entry}
        self._total = 0

    # -- hooks for subclasses (called under the lock) --------------------------

    def _on_added(self, entry: Any) -> None:
        """An entry was stored."""

    def _on_removed(self, entry: Any) -> None:
        """An entry was removed or replaced (already gone from the reverse index)."""

    def _on_replaced(self, previous: Any, entry: Any) -> None:
        """``entry`` took the place of ``previous``: same name, same actor
        (a metadata update through :meth:`MemoryBackend.update_metadata`).
        The default is :meth:`_on_removed` then :meth:`_on_added`."""
        self._on_removed(previous)
        self._on_added(entry)

    # -- write primitives (the caller holds the lock) ----------------------------

    def _put(self, entry: Any) -> Optional[Any]:
        """Store ``entry``, replacing what held its name; return that."""
        namespace, service, actor_ref = entry.namespace, entry.service, entry.actor_ref
        services = self._names.get(namespace)
        if services is None:
            services = self._names[namespace] = {}
        previous = services.get(service)
        if previous is not None:
            self._forget(previous, keep_slot=True)
        else:
            self._total += 1
        services[service] = entry
        all_refs = self._refs
        if all_refs is not None:
            refs = all_refs.get(namespace)
            if refs is None:
                refs = all_refs[namespace] = {}
            refs[service] = actor_ref
        urn = actor_ref.actor_urn
        by_urn = self._by_urn
        held = by_urn.get(urn)
        if held is None:
            by_urn[urn] = entry
        elif type(held) is dict:
            held[(namespace, service)] = entry
        else:
            by_urn[urn] = {(held.namespace, held.service): held, (namespace, service): entry}
        self._on_added(entry)
        return previous

    def _forget(self, entry: Any, keep_slot: bool = False) -> None:
        """Drop ``entry`` from every structure."""
        urn = entry.actor_ref.actor_urn
        held = self._by_urn.get(urn)
        if held is entry:
            del self._by_urn[urn]
        elif type(held) is dict:
            held.pop((entry.namespace, entry.service), None)
            if len(held) == 1:
                (self._by_urn[urn],) = held.values()
            elif not held:
                del self._by_urn[urn]
        if not keep_slot:  # a replacement keeps the slot, and the count
            services = self._names[entry.namespace]
            del services[entry.service]
            if self._refs is not None:
                refs = self._refs[entry.namespace]
                del refs[entry.service]
                if not refs:
                    del self._refs[entry.namespace]
            if not services:
                del self._names[entry.namespace]
            self._total -= 1
        self._on_removed(entry)

    def _held_by(self, urn: str) -> list[Any]:
        """The entries the actor with ``urn`` holds (the caller holds the lock)."""
        held = self._by_urn.get(urn)
        if held is None:
            return []
        if type(held) is dict:
            return list(held.values())
        return [held]

    # -- reads (any thread) ----------------------------------------------------

    def get(self, namespace: Hashable, service: Hashable) -> Optional[Any]:
        # Always hash both parts, so a bad key raises even for a missing namespace.
        return self._names.get(namespace, _EMPTY).get(service)

    def services(self, namespace: Hashable) -> list[Hashable]:
        with self._lock:
            return list(self._names.get(namespace, ()))

    def entries(self, namespace: Hashable) -> list[Any]:
        with self._lock:
            services = self._names.get(namespace)
            return list(services.values()) if services else []

    def entries_snapshot(self, namespace: Hashable) -> tuple[Any, ...]:
        """:meth:`entries` as a tuple: one copy, for the server's replay
        snapshot (each copy of a large namespace touches every entry)."""
        with self._lock:
            services = self._names.get(namespace)
            return tuple(services.values()) if services else ()

    def count(self, namespace: Optional[Hashable] = None) -> int:
        if namespace is None:
            return self._total
        services = self._names.get(namespace)
        return len(services) if services else 0

    def keys_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        with self._lock:
            return [(e.namespace, e.service) for e in self._held_by(actor_ref.actor_urn)]

    def namespaces(self) -> list[Hashable]:
        with self._lock:
            return list(self._names)

    def _clear_tables(self) -> None:
        """Forget everything (a stopped registry answers no names)."""
        with self._lock:
            for services in list(self._names.values()):
                for entry in list(services.values()):
                    self._forget(entry)


_NO_MEMBERS: tuple[Any, ...] = ()


class LocalGroups:
    """In-memory group tables: ``namespace -> group -> actor_urn -> Member``
    (dicts keep join order, and replacing a value keeps its place), a reverse
    index ``actor_urn -> {(namespace, group): Member}`` and, per group, a
    cached snapshot ``(members, refs)`` for lock-free reads.

    Writes are called under the registry's write lock; they take
    ``_group_lock`` too so that multi-structure reads are consistent.
    """

    supports_groups = True

    def __init__(self) -> None:
        self._group_lock = threading.Lock()
        self._groups: dict[Hashable, dict[Hashable, dict[str, Member]]] = {}
        self._groups_by_urn: dict[str, dict[tuple[Hashable, Hashable], Member]] = {}
        #: (namespace, group) -> (members tuple, refs tuple); dropped on every write.
        self._group_cache: dict[tuple[Hashable, Hashable], tuple[tuple[Member, ...],
                                                                 tuple[Any, ...]]] = {}
        self._memberships = 0

    # -- hooks for subclasses (called under _group_lock) ----------------------------

    def _on_member_added(self, member: Member) -> None:
        """A membership was stored (or its metadata replaced: removed first)."""

    def _on_member_removed(self, member: Member) -> None:
        """A membership was removed or replaced."""

    # -- writes -------------------------------------------------------------------------

    def join(self, member: Member) -> Optional[Member]:
        key = (member.namespace, member.group)
        hash(key)  # a hostile __hash__ raises here, before anything changes
        urn = member.actor_ref.actor_urn
        with self._group_lock:
            groups = self._groups.get(member.namespace)
            if groups is None:
                groups = self._groups[member.namespace] = {}
            members = groups.get(member.group)
            if members is None:
                members = groups[member.group] = {}
            previous = members.get(urn)
            if previous is not None:
                self._on_member_removed(previous)
            else:
                self._memberships += 1
            members[urn] = member  # an existing key keeps its place
            self._groups_by_urn.setdefault(urn, {})[key] = member
            self._group_cache.pop(key, None)
            self._on_member_added(member)
            return previous

    def _drop(self, member: Member) -> None:
        """Remove one membership from every structure (``_group_lock`` held)."""
        key = (member.namespace, member.group)
        urn = member.actor_ref.actor_urn
        groups = self._groups[member.namespace]
        members = groups[member.group]
        del members[urn]
        if not members:
            del groups[member.group]
            if not groups:
                del self._groups[member.namespace]
        held = self._groups_by_urn.get(urn)
        if held is not None:
            held.pop(key, None)
            if not held:
                del self._groups_by_urn[urn]
        self._memberships -= 1
        self._group_cache.pop(key, None)
        self._on_member_removed(member)

    def leave(self, namespace: Hashable, group: Hashable, actor_ref: Any) -> Optional[Member]:
        with self._group_lock:
            member = self._groups.get(namespace, _EMPTY).get(group, _EMPTY).get(
                actor_ref.actor_urn)
            if member is None:
                return None
            self._drop(member)
            return member

    def leave_all(self, actor_ref: Any) -> list[Member]:
        urn = actor_ref.actor_urn
        if urn not in self._groups_by_urn:  # most deaths: an actor in no group
            return []
        with self._group_lock:
            removed = []
            for member in list(self._groups_by_urn.get(urn, {}).values()):
                try:
                    self._drop(member)
                except BaseException as error:  # see "A death removes what it can"
                    _left_behind("membership", member.namespace, member.group, error)
                    continue
                removed.append(member)
            return removed

    def clear_namespace_groups(self, namespace: Hashable) -> list[Member]:
        with self._group_lock:
            removed = [m for members in self._groups.get(namespace, _EMPTY).values()
                       for m in members.values()]
            for member in removed:
                self._drop(member)
            return removed

    def _clear_groups(self) -> None:
        with self._group_lock:
            for members in [m for groups in self._groups.values() for m in groups.values()]:
                for member in list(members.values()):
                    self._drop(member)

    # -- reads (any thread) -------------------------------------------------------------

    def _snapshot(self, namespace: Hashable, group: Hashable
                  ) -> tuple[tuple[Member, ...], tuple[Any, ...]]:
        key = (namespace, group)
        cached = self._group_cache.get(key)
        if cached is not None:
            return cached
        with self._group_lock:
            members = self._groups.get(namespace, _EMPTY).get(group)
            if not members:
                return (_NO_MEMBERS, _NO_MEMBERS)
            found = tuple(members.values())
            cached = (found, tuple(m.actor_ref for m in found))
            self._group_cache[key] = cached  # only live groups: bounded
            return cached

    def members(self, namespace: Hashable, group: Hashable) -> tuple[Member, ...]:
        return self._snapshot(namespace, group)[0]

    def member_refs(self, namespace: Hashable, group: Hashable) -> tuple[Any, ...]:
        """The members' refs in join order (the facade's fast path)."""
        return self._snapshot(namespace, group)[1]

    def groups(self, namespace: Hashable) -> list[Hashable]:
        with self._group_lock:
            return list(self._groups.get(namespace, _EMPTY))

    def groups_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        with self._group_lock:
            return list(self._groups_by_urn.get(actor_ref.actor_urn, ()))

    def group_namespaces(self) -> list[Hashable]:
        with self._group_lock:
            return list(self._groups)

    def count_members(self, namespace: Hashable, group: Hashable) -> int:
        return len(self._groups.get(namespace, _EMPTY).get(group, _EMPTY))

    def group_totals(self) -> tuple[int, int]:
        with self._group_lock:
            return (sum(len(groups) for groups in self._groups.values()), self._memberships)


class MemoryBackend(LocalTables, LocalGroups, Backend):
    """Registrations in dicts (see :class:`LocalTables`)."""

    name = "memory"

    def __init__(self) -> None:
        LocalTables.__init__(self, refs=True)
        LocalGroups.__init__(self)

    # -- writes ------------------------------------------------------------------

    def register(self, entry: Entry, is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        with self._lock:
            current = self._names.get(entry.namespace, _EMPTY).get(entry.service)
            if current is not None:
                refuse_if_held(current, entry, is_alive)
            return self._put(entry)

    def register_many(
        self, entries: Sequence[Entry], is_alive: Callable[[Any], bool]
    ) -> list[Optional[Entry]]:
        with self._lock:  # one step: every check, then every store
            names_get = self._names.get
            for entry in entries:
                current = names_get(entry.namespace, _EMPTY).get(entry.service)
                if current is not None:
                    refuse_if_held(current, entry, is_alive)
            put = self._put
            return [put(entry) for entry in entries]

    def unregister(
        self, namespace: Hashable, service: Hashable, actor_ref: Any = None
    ) -> Optional[Entry]:
        with self._lock:
            current = self.get(namespace, service)
            if current is None or (
                actor_ref is not None and current.actor_ref.actor_urn != actor_ref.actor_urn
            ):
                return None
            self._forget(current)
            return current

    def unregister_many(self, namespace: Hashable, services: Sequence[Hashable]) -> list[Entry]:
        with self._lock:
            removed = []
            for service in services:
                current = self.get(namespace, service)
                if current is not None:
                    self._forget(current)
                    removed.append(current)
            return removed

    def update_metadata(
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> Entry:
        with self._lock:
            current = self.get(namespace, service)
            if current is None:
                raise NotRegisteredError(namespace, service)
            updated = Entry.create(namespace, service, current.actor_ref, metadata)
            # Same name, same actor: the entry changes in place (no count,
            # no actor table, no reverse-index change).
            self._names[namespace][service] = updated
            urn = current.actor_ref.actor_urn
            held = self._by_urn[urn]
            if held is current:
                self._by_urn[urn] = updated
            else:
                held[(namespace, service)] = updated
            self._on_replaced(current, updated)
            return updated

    def remove_actor(self, actor_ref: Any,
                     reason: Optional[UnregisterReason] = None) -> list[Entry]:
        urn = actor_ref.actor_urn
        if urn not in self._by_urn:  # most deaths: an actor that holds nothing here
            return []
        with self._lock:
            held = self._held_by(urn)
            removed = []
            for entry in held:
                try:
                    self._forget(entry)
                except BaseException as error:  # see "A death removes what it can"
                    _left_behind("name", entry.namespace, entry.service, error)
                    continue
                removed.append(entry)
            return removed

    def clear_namespace(self, namespace: Hashable) -> list[Entry]:
        with self._lock:
            removed = list(self._names.get(namespace, {}).values())
            for entry in removed:
                self._forget(entry)
            return removed

    def close(self) -> None:
        self._clear_tables()
        self._clear_groups()

    def owns(self, actor_ref: Any) -> bool:
        return actor_ref.actor_urn in self._by_urn

    def health(self) -> Mapping[str, Any]:
        with self._lock:
            report: dict[str, Any] = {"status": "healthy", "entries": self._total,
                                      "namespaces": len(self._names)}
        report["groups"], report["memberships"] = self.group_totals()
        return report
