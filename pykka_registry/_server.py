"""The registry's server: one Pykka actor that serialises every write.

Guarantees
----------
* Every write to the backend (register, unregister, update_metadata, death
  clean-up, stop_namespace) runs in this actor's thread, one at a time, so
  writes are atomic with respect to each other and events leave in write order.
* The state the server works on (:class:`RegistryState`: the backend, the
  queue of death notices, the event bus) lives outside the actor. When the
  server dies and a supervisor starts a new one on the same state, nothing is
  lost: registrations stay in the backend, death notices that arrived during
  the gap wait in the queue and are processed by the new server first.
* Messages to the server are frozen attrs values; a write is sent with
  ``ask`` and the caller gets its result or its exception. An exception in a
  handler goes back to the caller and the server lives on.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Hashable, Iterator, Mapping
from typing import Any, Optional

import attrs
import pykka

from pykka_registry import _deathwatch
from pykka_registry._errors import ActorNotAliveError, RegistryTimeoutError
from pykka_registry._events import (
    NAMESPACE_STOPPED,
    UNREGISTERED,
    EventBus,
    MetadataUpdated,
    Registered,
    Subscription,
    Unregistered,
    UnregisterReason,
)
from pykka_registry.backends.base import Backend, Entry

__all__ = ["RegistryServer", "RegistryState"]

logger = logging.getLogger("pykka_registry")


class RegistryState:
    """Everything a registry knows, shared by its facade and its server.

    Outlives any one server actor. Attributes written only by the server
    thread (counters) are read by others without a lock; they are plain ints.
    """

    def __init__(self, backend: Backend, call_timeout: float, name: str) -> None:
        self.backend = backend
        self.call_timeout = call_timeout
        self.name = name
        self.started_at = time.monotonic()
        self.events = EventBus(name)
        #: ``(actor_ref, reason)`` death notices not yet processed; appended in
        #: dying actors' threads, drained by the server.
        self.pending_deaths: collections.deque[tuple[Any, Optional[BaseException]]] = (
            collections.deque()
        )
        #: Functions given to :meth:`submit`, not yet run.
        self.pending_calls: collections.deque[Any] = collections.deque()
        self.server_ref: Optional[pykka.ActorRef[Any]] = None
        self.server_changed = threading.Condition()
        self.closed = False
        self.server_starts = 0
        self.registrations = 0
        self.unregistrations = 0
        self.deaths_reaped = 0
        #: The supervisor running the server (set when it starts the server).
        self.owner: Optional[Any] = None
        self._key_locks: dict[tuple[Hashable, Hashable], list[Any]] = {}
        self._key_locks_guard = threading.Lock()

    @contextlib.contextmanager
    def key_lock(self, namespace: Hashable, service: Hashable, timeout: float) -> Iterator[None]:
        """Serialise ``get_or_start`` callers of one name (in this process);
        wait at most ``timeout`` for the lock."""
        key = (namespace, service)
        with self._key_locks_guard:
            slot = self._key_locks.setdefault(key, [threading.Lock(), 0])
            slot[1] += 1
        try:
            if not slot[0].acquire(timeout=timeout):
                raise RegistryTimeoutError(
                    f"another get_or_start of {service!r} in {namespace!r} is still "
                    f"starting it after {timeout}s"
                )
            try:
                yield
            finally:
                slot[0].release()
        finally:
            with self._key_locks_guard:
                slot[1] -= 1
                if slot[1] == 0:
                    del self._key_locks[key]

    def set_server(self, ref: pykka.ActorRef[Any]) -> None:
        with self.server_changed:
            self.server_ref = ref
            self.server_starts += 1
            self.server_changed.notify_all()

    def wait_for_new_server(self, old: Optional[pykka.ActorRef[Any]], timeout: float) -> None:
        """Block until the server is replaced, the registry closes, or ``timeout``."""
        with self.server_changed:
            self.server_changed.wait_for(
                lambda: self.closed or (self.server_ref is not old), timeout
            )

    def submit(self, function: Any) -> None:
        """Run ``function(state)`` in the server thread, after the writes already
        queued, without waiting. For backends whose data also changes from
        elsewhere (a change feed): apply those changes here so that they are
        serialised with local writes and can publish events
        (``if state.events.active: state.events.publish(...)``). An exception
        in ``function`` is logged; the server lives on. Never blocks; if no
        server runs, ``function`` waits for the next one."""
        self.pending_calls.append(function)
        server = self.server_ref
        if server is not None:
            try:
                server.tell(_ReapDeaths())
            except pykka.ActorDeadError:
                pass

    def on_actor_death(self, actor_ref: Any, reason: Optional[BaseException]) -> None:
        """Death listener; runs in the dying actor's thread. Never blocks."""
        if actor_ref is self.server_ref or not self.backend.owns(actor_ref):
            return
        self.pending_deaths.append((actor_ref, reason))
        server = self.server_ref
        if server is not None:
            try:
                server.tell(_ReapDeaths())
            except pykka.ActorDeadError:
                pass  # the next server drains the queue when it starts


# -- messages ----------------------------------------------------------------


@attrs.define(frozen=True)
class Register:
    namespace: Hashable
    service: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class Unregister:
    namespace: Hashable
    service: Hashable


@attrs.define(frozen=True)
class UpdateMetadata:
    namespace: Hashable
    service: Hashable
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class ClearNamespace:
    namespace: Hashable


@attrs.define(frozen=True)
class Subscribe:
    subscription: Subscription
    replay: bool


@attrs.define(frozen=True)
class Call:
    """Run ``function(state)`` in the server thread (atomic with all writes)."""

    function: Any


@attrs.define(frozen=True)
class _ReapDeaths:
    pass


# -- the actor ---------------------------------------------------------------


class RegistryServer(pykka.ThreadingActor):
    """The actor that owns a registry's backend and applies every write.

    Runs in its own thread. Started by the registry (under a supervisor); do
    not send it messages yourself: use the :class:`~pykka_registry.Registry`.
    """

    def __init__(self, state: RegistryState) -> None:
        super().__init__()
        self.state = state
        self.backend = state.backend
        self.events = state.events

    def on_start(self) -> None:
        self.state.set_server(self.actor_ref)
        self._reap_deaths()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Register):
            return self._register(message)
        if isinstance(message, Unregister):
            return self._unregister(message)
        if isinstance(message, UpdateMetadata):
            return self._update_metadata(message)
        if isinstance(message, _ReapDeaths):
            return self._reap_deaths()
        if isinstance(message, ClearNamespace):
            return self._clear_namespace(message)
        if isinstance(message, Subscribe):
            return self._subscribe(message)
        if isinstance(message, Call):
            return message.function(self.state)
        return super().on_receive(message)

    # Each handler runs in the server thread.

    def _register(self, msg: Register) -> None:
        if _deathwatch.is_dead(msg.actor_ref):
            raise ActorNotAliveError(f"{msg.actor_ref} is not alive")
        entry = Entry.create(msg.namespace, msg.service, msg.actor_ref, msg.metadata)
        replaced = self.backend.register(entry, _holder_alive)
        self.state.registrations += 1
        if self.events.active:
            self._publish_registered(entry, replaced)
        if _deathwatch.is_dead(msg.actor_ref):
            # It died while we stored it; its death notice may have looked for
            # its names before they were stored, so clean up here.
            self._remove_dead(msg.actor_ref, _deathwatch.death_reason(msg.actor_ref))

    def _publish_registered(self, entry: Entry, replaced: Optional[Entry]) -> None:
        if replaced is not None and replaced.actor_ref.actor_urn == entry.actor_ref.actor_urn:
            self.events.publish(
                MetadataUpdated(entry.namespace, entry.service, entry.actor_ref, entry.metadata)
            )
            return
        if replaced is not None:  # a dead holder whose notice is still queued
            reason = UnregisterReason.from_death(_deathwatch.death_reason(replaced.actor_ref))
            self.events.publish(
                Unregistered(replaced.namespace, replaced.service, replaced.actor_ref, reason)
            )
        self.events.publish(
            Registered(entry.namespace, entry.service, entry.actor_ref, entry.metadata)
        )

    def _unregister(self, msg: Unregister) -> None:
        removed = self.backend.unregister(msg.namespace, msg.service)
        if removed is not None:
            self.state.unregistrations += 1
            if self.events.active:
                self.events.publish(
                    Unregistered(removed.namespace, removed.service, removed.actor_ref,
                                 UNREGISTERED)
                )

    def _update_metadata(self, msg: UpdateMetadata) -> None:
        entry = self.backend.update_metadata(msg.namespace, msg.service, msg.metadata)
        if self.events.active:
            self.events.publish(
                MetadataUpdated(entry.namespace, entry.service, entry.actor_ref, entry.metadata)
            )

    def _reap_deaths(self) -> None:
        """Process queued death notices and submitted calls (both survive a
        server restart: they live in the state, not in the mailbox)."""
        pending = self.state.pending_deaths
        while pending:
            actor_ref, reason = pending.popleft()
            self._remove_dead(actor_ref, reason)
        calls = self.state.pending_calls
        while calls:
            function = calls.popleft()
            try:
                function(self.state)
            except Exception:
                logger.exception("%s: submitted call %r failed", self.state.name, function)

    def _remove_dead(self, actor_ref: Any, reason: Optional[BaseException]) -> None:
        removed = self.backend.remove_actor(actor_ref)
        if removed:
            self.state.deaths_reaped += 1
            if self.events.active:
                why = UnregisterReason.from_death(reason)
                for entry in removed:
                    self.events.publish(
                        Unregistered(entry.namespace, entry.service, entry.actor_ref, why)
                    )

    def _clear_namespace(self, msg: ClearNamespace) -> list[Entry]:
        removed = self.backend.clear_namespace(msg.namespace)
        self.state.unregistrations += len(removed)
        if self.events.active:
            for entry in removed:
                self.events.publish(
                    Unregistered(entry.namespace, entry.service, entry.actor_ref,
                                 NAMESPACE_STOPPED)
                )
        return removed

    def _subscribe(self, msg: Subscribe) -> None:
        replay: tuple[Any, ...] = ()
        if msg.replay:
            sub = msg.subscription
            namespaces = self.backend.namespaces() if sub.namespace is None else [sub.namespace]
            replay = tuple(
                Registered(e.namespace, e.service, e.actor_ref, e.metadata)
                for ns in namespaces
                for e in self.backend.entries(ns)
            )
        self.events.start_subscription(msg.subscription, replay)


def _holder_alive(actor_ref: Any) -> bool:
    return not _deathwatch.is_dead(actor_ref)
