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
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any, Callable, Optional

from pykka_registry._errors import AlreadyRegisteredError, NotRegisteredError
from pykka_registry.backends.base import Backend, Entry

__all__ = ["LocalTables", "MemoryBackend"]

_EMPTY: dict[Hashable, Any] = {}


class LocalTables:
    """The dict tables behind :class:`MemoryBackend`, and behind the local copy
    of networked backends: ``namespace -> service -> Entry``, a reverse index
    ``actor_urn -> {(namespace, service)}`` and a total, under one lock.

    Gives the read half of the :class:`Backend` behaviour and two write
    primitives, :meth:`_put` and :meth:`_forget` (callers hold ``_lock``),
    with hooks for subclasses that keep more indexes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[Hashable, dict[Hashable, Any]] = {}
        self._by_urn: dict[str, set[tuple[Hashable, Hashable]]] = {}
        self._total = 0

    # -- hooks for subclasses (called under the lock) --------------------------

    def _on_added(self, entry: Any) -> None:
        """An entry was stored."""

    def _on_removed(self, entry: Any) -> None:
        """An entry was removed or replaced (already gone from ``_by_urn``)."""

    # -- write primitives (the caller holds the lock) ----------------------------

    def _put(self, entry: Any) -> Optional[Any]:
        """Store ``entry``, replacing what held its name; return that."""
        key = (entry.namespace, entry.service)
        services = self._names.get(entry.namespace)
        if services is None:
            services = self._names[entry.namespace] = {}
        previous = services.get(entry.service)
        if previous is not None:
            self._forget(previous, keep_slot=True)
        else:
            self._total += 1
        services[entry.service] = entry
        self._by_urn.setdefault(entry.actor_ref.actor_urn, set()).add(key)
        self._on_added(entry)
        return previous

    def _forget(self, entry: Any, keep_slot: bool = False) -> None:
        """Drop ``entry`` from every structure."""
        key = (entry.namespace, entry.service)
        urn = entry.actor_ref.actor_urn
        held = self._by_urn.get(urn)
        if held is not None:
            held.discard(key)
            if not held:
                del self._by_urn[urn]
        if not keep_slot:  # a replacement keeps the slot, and the count
            services = self._names[entry.namespace]
            del services[entry.service]
            if not services:
                del self._names[entry.namespace]
            self._total -= 1
        self._on_removed(entry)

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

    def count(self, namespace: Optional[Hashable] = None) -> int:
        if namespace is None:
            return self._total
        services = self._names.get(namespace)
        return len(services) if services else 0

    def keys_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        with self._lock:
            return list(self._by_urn.get(actor_ref.actor_urn, ()))

    def namespaces(self) -> list[Hashable]:
        with self._lock:
            return list(self._names)


class MemoryBackend(LocalTables, Backend):
    """Registrations in dicts (see :class:`LocalTables`)."""

    name = "memory"

    # -- writes ------------------------------------------------------------------

    def register(self, entry: Entry, is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        with self._lock:
            current = self.get(entry.namespace, entry.service)
            if (
                current is not None
                and current.actor_ref.actor_urn != entry.actor_ref.actor_urn
                and is_alive(current.actor_ref)
            ):
                raise AlreadyRegisteredError(entry.namespace, entry.service, current.actor_ref)
            return self._put(entry)

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

    def update_metadata(
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> Entry:
        with self._lock:
            current = self.get(namespace, service)
            if current is None:
                raise NotRegisteredError(namespace, service)
            updated = Entry.create(namespace, service, current.actor_ref, metadata)
            self._put(updated)
            return updated

    def remove_actor(self, actor_ref: Any) -> list[Entry]:
        with self._lock:
            removed = []
            for namespace, service in list(self._by_urn.get(actor_ref.actor_urn, ())):
                current = self._names[namespace][service]
                self._forget(current)
                removed.append(current)
            return removed

    def clear_namespace(self, namespace: Hashable) -> list[Entry]:
        with self._lock:
            removed = list(self._names.get(namespace, {}).values())
            for entry in removed:
                self._forget(entry)
            return removed

    def owns(self, actor_ref: Any) -> bool:
        return actor_ref.actor_urn in self._by_urn

    def health(self) -> Mapping[str, Any]:
        with self._lock:
            return {"status": "healthy", "entries": self._total, "namespaces": len(self._names)}
