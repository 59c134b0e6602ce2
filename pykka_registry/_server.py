"""The registry's server: one Pykka actor that serialises every write, and
the state it shares with the facade and with dying actors.

Who writes what, under which lock
---------------------------------
Every change to a registry's backend, and the publication of the event that
describes it, happens under that registry's **write lock**
(:attr:`RegistryState.write_lock`), taken by exactly two kinds of thread:

* **the server thread**, for every write users send (register, unregister,
  update_metadata, the batch writes, stop_namespace), for changes a backend
  submits (a change feed), and for the snapshot of ``subscribe(replay=True)``;
* **a dying actor's thread**, inside :meth:`pykka.ActorRegistry.unregister`
  (see :mod:`pykka_registry._deathwatch`), which removes every name the actor
  holds and every group membership (``Backend.remove_actor``, then
  ``Backend.leave_all``) and queues their :class:`Unregistered` and
  :class:`Left` events, *before* Pykka sets the actor's ``actor_stopped``.

Lock order: write lock, then the backend's own locks; the event bus only
appends to a queue. Nothing is done under the write lock that waits for an
actor or (for networked backends, which release it with
:meth:`RegistryState.unlocked` around their I/O) for the network, so a dying
thread waits at most for one in-memory write to finish. ``run_in_server``
functions run in the server thread *without* the write lock (they may wait
for actors to stop).

Guarantees
----------
* Writes are atomic with respect to each other and to death clean-ups;
  events of one registry are queued in the order of the changes.
* **Death is complete before Pykka reports it**: once an actor's
  ``actor_stopped`` is set, none of its names and none of its group
  memberships is in the backend, and their ``Unregistered`` and ``Left``
  events are queued. A ``register`` (or ``join``) racing with the death
  either raises :class:`ActorNotAliveError` or stores the entry before the
  clean-up, which then removes it: the server checks :func:`death_seen` under
  the write lock, and the dying thread marks the death before it takes the lock.
* A death notice names an actor, never a key, so a late or repeated notice
  never removes a newer holder.
* The state the server works on (:class:`RegistryState`: the backend, queued
  calls, the event bus) lives outside the actor. When the server dies and a
  supervisor starts a new one on the same state, nothing is lost:
  registrations stay in the backend, calls submitted during the gap wait in
  the queue and are processed by the new server first.
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
from typing import Any, Callable, ClassVar, Optional

import attrs
import pykka

from pykka_registry import _deathwatch
from pykka_registry._errors import (
    ActorNotAliveError,
    InvalidKeyError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
)
from pykka_registry._events import (
    LEFT,
    NAMESPACE_STOPPED,
    UNREGISTERED,
    EventBus,
    Joined,
    Left,
    MetadataUpdated,
    Registered,
    Subscription,
    Unregistered,
    UnregisterReason,
)
from pykka_registry.backends.base import Backend, Entry, Member, batch_writes, group_method

__all__ = ["RegistryServer", "RegistryState"]

logger = logging.getLogger("pykka_registry")


class RegistryState:
    """Everything a registry knows, shared by its facade, its server and the
    threads of dying actors.

    Outlives any one server actor. Counters are written under the write lock
    and read by others without it; they are plain ints.
    """

    def __init__(self, backend: Backend, call_timeout: float, name: str) -> None:
        self.backend = backend
        # Resolved once: a duck-typed backend written before groups gets the
        # Backend default (no memberships, nothing to remove).
        self._leave_all = group_method(backend, "leave_all")
        self.call_timeout = call_timeout
        self.name = name
        self.started_at = time.monotonic()
        self.events = EventBus(name)
        #: See the module docstring: guards every backend change and its event.
        self.write_lock = threading.Lock()
        self._writer: Optional[int] = None  # thread ident holding write_lock
        #: ``(actor_ref, reason)`` death notices left for the server: only
        #: when a dying thread could not get the write lock in time (a backend
        #: write that does not return), or notices added by tools and tests.
        self.pending_deaths: collections.deque[tuple[Any, Optional[BaseException]]] = (
            collections.deque()
        )
        #: Functions given to :meth:`submit`, not yet run.
        self.pending_calls: collections.deque[Any] = collections.deque()
        self.server_ref: Optional[pykka.ActorRef[Any]] = None
        self.server_changed = threading.Condition()
        self.closed = False
        #: Events of callers waiting in await_name: set when the registry stops.
        self.waiters: set[threading.Event] = set()
        self.server_starts = 0
        self.registrations = 0
        self.unregistrations = 0
        self.deaths_reaped = 0
        #: The supervisor running the server (set when it starts the server).
        self.owner: Optional[Any] = None
        self._key_locks: dict[tuple[Hashable, Hashable], list[Any]] = {}
        self._key_locks_guard = threading.Lock()

    # -- the write lock ------------------------------------------------------------

    def acquire_write(self) -> bool:
        """Take the write lock, waiting at most ``call_timeout``; False if
        it was not free by then. Pair with :meth:`release_write`."""
        if not self.write_lock.acquire(timeout=self.call_timeout):
            return False
        self._writer = threading.get_ident()
        return True

    def release_write(self) -> None:
        self._writer = None
        self.write_lock.release()

    def write_lock_timeout(self) -> RegistryUnavailableError:
        return RegistryUnavailableError(
            f"{self.name}: a backend write did not finish within {self.call_timeout}s"
        )

    @contextlib.contextmanager
    def unlocked(self) -> Iterator[None]:
        """For a backend that waits on I/O inside a write: release the write
        lock for the duration of the block (if this thread holds it), so that
        death clean-ups in other threads are not held up; take it again
        after. Re-check afterwards whatever the wait may have changed (the
        actor being registered may have died meanwhile:
        :func:`pykka_registry._deathwatch.death_seen`)."""
        if self._writer != threading.get_ident():
            yield
            return
        self._writer = None
        self.write_lock.release()
        try:
            yield
        finally:
            self.write_lock.acquire()
            self._writer = threading.get_ident()

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
        """Run ``function(state)`` in the server thread, under the write lock,
        after the writes already queued, without waiting. For backends whose
        data also changes from elsewhere (a change feed): apply those changes
        here so that they are serialised with local writes and can publish
        events (``if state.events.active: state.events.publish(...)``). An
        exception in ``function`` is logged; the server lives on. Never blocks;
        if no server runs, ``function`` waits for the next one."""
        self.pending_calls.append(function)
        self._wake_server()

    def _wake_server(self) -> None:
        server = self.server_ref
        if server is not None:
            try:
                server.tell(_ReapDeaths())
            except pykka.ActorDeadError:
                pass  # the next server drains the queues when it starts

    # -- death clean-up ---------------------------------------------------------------

    def on_actor_death(self, actor_ref: Any, reason: Optional[BaseException]) -> None:
        """Death listener; runs in the dying actor's thread, before Pykka sets
        its ``actor_stopped``. Removes the actor's names and queues their
        events, under the write lock. Never raises; waits at most
        ``call_timeout`` for the lock (then leaves the notice to the server)."""
        if actor_ref is self.server_ref or self.closed:
            return
        if not self.acquire_write():
            logger.error("%s: the write lock was not free within %ss; %s's names are "
                         "removed by the server later", self.name, self.call_timeout, actor_ref)
            self.pending_deaths.append((actor_ref, reason))
            self._wake_server()
            return
        try:
            self.remove_dead(actor_ref, reason)
        finally:
            self.release_write()

    def remove_dead(self, actor_ref: Any, reason: Optional[BaseException]) -> None:
        """Remove every name and every group membership of a dead actor and
        publish their events (names first). The caller holds the write lock.
        Never raises."""
        try:
            removed = self.backend.remove_actor(actor_ref)
        except BaseException:  # a dying thread must not fail here
            logger.exception("%s: backend %s failed to remove the names of %s", self.name,
                             self.backend.name, actor_ref)
            removed = []
        try:
            left: list[Member] = self._leave_all(actor_ref)
        except BaseException:  # as above: the names' clean-up stands
            logger.exception("%s: backend %s failed to remove the group memberships of %s",
                             self.name, self.backend.name, actor_ref)
            left = []
        if removed or left:
            self.deaths_reaped += 1
            if self.events.active:
                why = UnregisterReason.from_death(reason)
                for entry in removed:
                    self.events.publish(
                        Unregistered(entry.namespace, entry.service, entry.actor_ref, why)
                    )
                for member in left:
                    self.events.publish(
                        Left(member.namespace, member.group, member.actor_ref, why)
                    )


# -- messages ----------------------------------------------------------------


@attrs.define(frozen=True)
class Register:
    namespace: Hashable
    service: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class RegisterMany:
    """``items``: ``(service, actor_ref, metadata)`` triples, already checked
    (keys, refs, metadata copies, no service twice) in the caller's thread."""

    namespace: Hashable
    items: tuple[tuple[Hashable, Any, Mapping[Any, Any]], ...]


@attrs.define(frozen=True)
class Unregister:
    namespace: Hashable
    service: Hashable


@attrs.define(frozen=True)
class UnregisterMany:
    namespace: Hashable
    services: tuple[Hashable, ...]


@attrs.define(frozen=True)
class UpdateMetadata:
    namespace: Hashable
    service: Hashable
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class Join:
    """``metadata`` is already the registry's own copy."""

    namespace: Hashable
    group: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any]


@attrs.define(frozen=True)
class Leave:
    namespace: Hashable
    group: Hashable
    actor_ref: Any


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

    Runs in its own (daemon) thread: a program that forgets
    ``registry.stop()`` still exits. Started by the registry (under a
    supervisor); do not send it messages yourself: use the
    :class:`~pykka_registry.Registry`.
    """

    use_daemon_thread = True

    def __init__(self, state: RegistryState) -> None:
        super().__init__()
        self.state = state
        self.backend = state.backend
        self.events = state.events
        self._backend_register_many, self._backend_unregister_many = batch_writes(state.backend)
        self._backend_join = group_method(state.backend, "join")
        self._backend_leave = group_method(state.backend, "leave")
        self._backend_clear_groups = group_method(state.backend, "clear_namespace_groups")

    def on_start(self) -> None:
        self.state.set_server(self.actor_ref)
        self._reap_deaths()

    def on_receive(self, message: Any) -> Any:
        handler = self._handlers.get(type(message))
        if handler is None:
            if isinstance(message, _ReapDeaths):
                return self._reap_deaths()
            if isinstance(message, Call):
                # Not under the write lock: the function may wait for actors to stop.
                return message.function(self.state)
            return super().on_receive(message)
        # The write lock, taken inline (this is every write's hot path).
        state = self.state
        if not state.acquire_write():
            raise state.write_lock_timeout()
        try:
            return handler(self, message)
        except RegistryError:
            raise
        except BaseException as error:  # user code: a key's __hash__ or __eq__
            # Never let it reach Pykka raw: a BaseException would make it
            # stop every actor of the process.
            raise InvalidKeyError(
                f"{type(error).__name__} raised while applying {type(message).__name__} "
                "(from a key's __hash__ or __eq__); nothing was written"
            ) from None
        finally:
            state.release_write()

    # Each handler runs in the server thread, holding the write lock.

    def _register(self, msg: Register) -> None:
        actor_ref = msg.actor_ref
        if _deathwatch.death_seen(actor_ref) or not actor_ref.is_alive():
            raise ActorNotAliveError(f"{actor_ref} is not alive")
        entry = Entry.create(msg.namespace, msg.service, actor_ref, msg.metadata)
        replaced = self.backend.register(entry, _holder_alive)
        self.state.registrations += 1
        if self.events.active:
            self._publish_registered(entry, replaced)
        if _deathwatch.death_seen(actor_ref):
            # Only a backend that released the write lock for I/O gets here:
            # the actor died meanwhile and its clean-up may have run first.
            self.state.remove_dead(actor_ref, _deathwatch.death_reason(actor_ref))

    def _register_many(self, msg: RegisterMany) -> None:
        checked: set[int] = set()  # each actor once: a batch often names few
        for service, actor_ref, _metadata in msg.items:
            if id(actor_ref) in checked:
                continue
            checked.add(id(actor_ref))
            if _deathwatch.death_seen(actor_ref) or not actor_ref.is_alive():
                raise ActorNotAliveError(
                    f"{actor_ref} (for {service!r}) is not alive; nothing was registered",
                    service=service,
                )
        entries = [Entry.create(msg.namespace, service, actor_ref, metadata)
                   for service, actor_ref, metadata in msg.items]
        replaced = self._backend_register_many(entries, _holder_alive)
        self.state.registrations += len(entries)
        if self.events.active:
            for entry, previous in zip(entries, replaced):
                self._publish_registered(entry, previous)
        for entry in {id(e.actor_ref): e for e in entries}.values():
            if _deathwatch.death_seen(entry.actor_ref):  # as in _register
                self.state.remove_dead(entry.actor_ref,
                                       _deathwatch.death_reason(entry.actor_ref))

    def _publish_registered(self, entry: Entry, replaced: Optional[Entry]) -> None:
        if replaced is not None and replaced.actor_ref.actor_urn == entry.actor_ref.actor_urn:
            self.events.publish(
                MetadataUpdated(entry.namespace, entry.service, entry.actor_ref, entry.metadata)
            )
            return
        if replaced is not None:  # a holder whose death notice was left to the server
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
            self._published_unregistered([removed])

    def _unregister_many(self, msg: UnregisterMany) -> None:
        self._published_unregistered(
            self._backend_unregister_many(msg.namespace, list(msg.services))
        )

    def _published_unregistered(self, removed: list[Entry]) -> None:
        self.state.unregistrations += len(removed)
        if self.events.active:
            for entry in removed:
                self.events.publish(
                    Unregistered(entry.namespace, entry.service, entry.actor_ref, UNREGISTERED)
                )

    def _update_metadata(self, msg: UpdateMetadata) -> None:
        entry = self.backend.update_metadata(msg.namespace, msg.service, msg.metadata)
        if self.events.active:
            self.events.publish(
                MetadataUpdated(entry.namespace, entry.service, entry.actor_ref, entry.metadata)
            )

    def _join(self, msg: Join) -> None:
        actor_ref = msg.actor_ref
        if _deathwatch.death_seen(actor_ref) or not actor_ref.is_alive():
            raise ActorNotAliveError(f"{actor_ref} is not alive; it joined no group")
        member = Member.create(msg.namespace, msg.group, actor_ref, msg.metadata)
        self._backend_join(member)
        if self.events.active:
            self.events.publish(Joined(member.namespace, member.group, actor_ref,
                                       member.metadata))
        if _deathwatch.death_seen(actor_ref):  # as in _register
            self.state.remove_dead(actor_ref, _deathwatch.death_reason(actor_ref))

    def _leave(self, msg: Leave) -> None:
        removed = self._backend_leave(msg.namespace, msg.group, msg.actor_ref)
        if removed is not None and self.events.active:
            self.events.publish(Left(removed.namespace, removed.group, removed.actor_ref, LEFT))

    def _reap_deaths(self) -> None:
        """Process death notices left for the server and submitted calls
        (both survive a server restart: they live in the state, not in the
        mailbox). Told, not asked: if the write lock is not free in time,
        it tries again later rather than raise (which would kill the server)."""
        if not self.state.acquire_write():
            self.actor_ref.tell(_ReapDeaths())
            return
        try:
            pending = self.state.pending_deaths
            while pending:
                actor_ref, reason = pending.popleft()
                self.state.remove_dead(actor_ref, reason)
            calls = self.state.pending_calls
            while calls:
                function = calls.popleft()
                try:
                    function(self.state)
                except Exception:
                    logger.exception("%s: submitted call %r failed", self.state.name, function)
        finally:
            self.state.release_write()

    def _clear_namespace(self, msg: ClearNamespace) -> tuple[list[Entry], list[Member]]:
        removed = self.backend.clear_namespace(msg.namespace)
        self.state.unregistrations += len(removed)
        left: list[Member] = []
        if getattr(self.backend, "supports_groups", False) is True:
            left = self._backend_clear_groups(msg.namespace)
        if self.events.active:
            for entry in removed:
                self.events.publish(
                    Unregistered(entry.namespace, entry.service, entry.actor_ref,
                                 NAMESPACE_STOPPED)
                )
            for member in left:
                self.events.publish(
                    Left(member.namespace, member.group, member.actor_ref, NAMESPACE_STOPPED)
                )
        return removed, left

    def _subscribe(self, msg: Subscribe) -> None:
        # Only the snapshot is taken here (a list copy per namespace); the
        # dispatcher thread turns it into Registered events, so a large replay
        # holds up writes and death clean-ups for the copy alone.
        replay: list[Any] = []
        if msg.replay:
            sub = msg.subscription
            backend = self.backend
            namespaces = backend.namespaces() if sub.namespace is None else [sub.namespace]
            for ns in namespaces:
                replay.extend(backend.entries(ns))  # C-level list copies
            if getattr(backend, "supports_groups", False) is True:
                group_namespaces = (backend.group_namespaces() if sub.namespace is None
                                    else [sub.namespace])
                for ns in group_namespaces:
                    for group in backend.groups(ns):
                        replay.extend(backend.members(ns, group))
        self.events.start_subscription(msg.subscription, tuple(replay))

    _handlers: ClassVar[dict[type, Callable[[Any, Any], Any]]] = {
        Register: _register,
        RegisterMany: _register_many,
        Unregister: _unregister,
        UnregisterMany: _unregister_many,
        UpdateMetadata: _update_metadata,
        ClearNamespace: _clear_namespace,
        Subscribe: _subscribe,
        Join: _join,
        Leave: _leave,
    }


def _holder_alive(actor_ref: Any) -> bool:
    return not _deathwatch.is_dead(actor_ref)
