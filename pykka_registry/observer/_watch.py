"""What the observer learns from registry events: a bounded ring of recent
events and when each name was taken.

Guarantees
----------
* A :class:`Watch` subscribes to its registry (``replay=False``) only when
  :meth:`Watch.subscribe` is called: by the observer at its first request
  (or at start with ``events="always"``), never before
  :func:`pykka_registry.observer.serve`. :meth:`Watch.unsubscribe` cancels
  it (the observer does when no client has asked anything for a while), so
  an observer nobody looks at costs a registry's writes nothing.
* The listener runs in the registry's event dispatcher thread. It copies what
  it needs out of each event into plain JSON-safe dicts (no actor ref, no
  exception, no traceback is kept) and never raises, whatever the event's
  keys, metadata or exception do.
* Memory is bounded: the ring keeps the last ``capacity`` events of all
  watched registries together; the held-since table has one slot per name
  taken while the observer runs (a name released is forgotten).
* Readers (HTTP threads) take a short lock and get copies.
* While subscribed, it keeps the keys of names registered or released since
  the snapshot last asked (:meth:`Watch.take_changes`, at most
  :data:`MAX_PENDING_CHANGES`; past that the snapshot rebuilds), so that
  the snapshot keeps its sorted rows up to date without listing every name.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Any, Optional

from pykka_registry._events import KIND_CRASHED
from pykka_registry.observer._convert import actor_info, exception_info, jsonable, label

__all__ = ["EventLog", "Watch"]

logger = logging.getLogger("pykka_registry")

#: Name changes remembered between two snapshots; past this the snapshot
#: rebuilds its rows from the registry instead of applying them one by one.
MAX_PENDING_CHANGES = 10_000


class EventLog:
    """The last ``capacity`` events of every watched registry, newest last.

    Each event gets a sequence number (``seq``, increasing from 1) so that a
    client can ask for what it has not seen yet.
    """

    def __init__(self, capacity: int) -> None:
        self._ring: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self.latest = 0
        self.seen_total = 0
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def append(self, item: dict[str, Any]) -> None:
        with self._lock:
            item["seq"] = self.latest = next(self._seq)
            self.seen_total += 1
            self.counts[(item["registry"], item["type"])] += 1
            self._ring.append(item)

    def since(self, seq: int, namespace: Optional[str], limit: int) -> list[dict[str, Any]]:
        """Events with ``seq`` greater than ``seq`` (of ``namespace`` if given,
        compared with its label), newest first, at most ``limit``."""
        with self._lock:
            items = list(self._ring)
        out: list[dict[str, Any]] = []
        for item in reversed(items):
            if item["seq"] <= seq or len(out) >= limit:
                break
            if namespace is None or item["namespace"] == namespace:
                out.append(item)
        return out

    def counts_copy(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self.counts)


_TYPES = {
    "Registered": "registered",
    "Unregistered": "unregistered",
    "MetadataUpdated": "metadata_updated",
    "Joined": "joined",
    "Left": "left",
}


class Watch:
    """The observer's subscription to one registry."""

    def __init__(self, registry: Any, log: EventLog) -> None:
        self.registry = registry
        self.name = label(getattr(registry, "name", "registry"))
        self._log = log
        #: (namespace, service) -> (urn, wall-clock time it was taken)
        self._held: dict[tuple[Any, Any], tuple[Optional[str], float]] = {}
        self._held_lock = threading.Lock()
        self._sub_lock = threading.Lock()
        self.subscription: Optional[Any] = None
        #: Bumped at each subscribe and unsubscribe: rows cached under an
        #: older epoch may have missed changes.
        self.epoch = 0
        # Names registered or released since the snapshot's last look
        # (None: too many, rebuild); read with take_changes().
        self._changes_lock = threading.Lock()
        self._changes: Optional[list[tuple[Any, Any]]] = []

    def subscribe(self) -> None:
        """Start recording this registry's events (idempotent; any thread)."""
        with self._sub_lock:
            if self.subscription is None:
                self.subscription = self.registry.subscribe(self._on_event, replay=False)
                self.epoch += 1

    def take_changes(self) -> Optional[list[tuple[Any, Any]]]:
        """The ``(namespace, service)`` keys registered or released since the
        last call (in event order, maybe repeated), or ``None`` when more
        than :data:`MAX_PENDING_CHANGES` piled up (any thread)."""
        with self._changes_lock:
            changes, self._changes = self._changes, []
        return changes

    def unsubscribe(self) -> None:
        """Stop recording (idempotent). Names taken meanwhile will have no
        held-since time."""
        with self._sub_lock:
            subscription, self.subscription = self.subscription, None
            if subscription is not None:
                self.epoch += 1
            with self._held_lock:
                self._held.clear()
        if subscription is not None:
            try:
                subscription.cancel()
            except Exception:
                pass

    close = unsubscribe

    def held_since(self, namespace: Any, service: Any, urn: Optional[str]) -> Optional[float]:
        """Wall-clock time ``urn`` took the name, if the observer saw it happen."""
        try:
            with self._held_lock:
                slot = self._held.get((namespace, service))
        except BaseException:
            return None
        if slot is None or slot[0] != urn:
            return None
        return slot[1]

    def _on_event(self, event: Any) -> None:
        """Runs in the registry's dispatcher thread; never raises."""
        try:
            self._record(event)
        except BaseException:
            logger.exception("observer: could not record an event of %s", self.name)

    def _record(self, event: Any) -> None:
        now = time.time()
        kind = _TYPES.get(type(event).__name__, "other")
        is_group = kind in ("joined", "left")
        namespace = getattr(event, "namespace", None)
        key = getattr(event, "group" if is_group else "service", None)
        actor = actor_info(getattr(event, "actor_ref", None))
        reason = getattr(event, "reason", None)
        item: dict[str, Any] = {
            "seq": 0,
            "time": now,
            "registry": self.name,
            "type": kind,
            "namespace": label(namespace),
            "key": label(key),
            "group": is_group,
            "actor_class": actor["actor_class"],
            "urn": actor["urn"],
            "reason": None if reason is None else label(getattr(reason, "kind", None)),
            "exception": exception_info(getattr(reason, "exception", None)),
            "metadata": jsonable(getattr(event, "metadata", None)),
        }
        item["crash"] = item["reason"] == KIND_CRASHED
        if kind in ("registered", "unregistered"):
            with self._changes_lock:
                if self._changes is not None:
                    if len(self._changes) >= MAX_PENDING_CHANGES:
                        self._changes = None  # the snapshot rebuilds its rows
                    else:
                        self._changes.append((namespace, key))
        if not is_group:
            try:
                with self._held_lock:
                    if kind == "registered":
                        self._held[(namespace, key)] = (actor["urn"], now)
                    elif kind == "unregistered":
                        slot = self._held.get((namespace, key))
                        if slot is not None and slot[0] == actor["urn"]:
                            del self._held[(namespace, key)]
            except Exception:
                pass  # a key whose hash/eq misbehaves: no held-since for it
        self._log.append(item)
