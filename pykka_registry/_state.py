"""A registry's shared state: the backend, the write lock, the death queue,
submitted calls, key locks and counters, shared by the facade, the server
actor (:mod:`pykka_registry._server`) and the threads of dying actors.

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
* **One event producer.** Events are built and published here and in the
  server (:mod:`pykka_registry._server`) only, under the write lock: a
  backend reports its own changes as ``Change`` values
  (:meth:`RegistryState.publish_changes`), never on the bus.
* A death notice names an actor, never a key, so a late or repeated notice
  never removes a newer holder.
* The state the server works on (:class:`RegistryState`: the backend, queued
  calls, the event bus) lives outside the actor. When the server dies and a
  supervisor starts a new one on the same state, nothing is lost:
  registrations stay in the backend, calls submitted during the gap wait in
  the queue and are processed by the new server first.
"""
from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any, Optional

import pykka

from pykka_registry._errors import (
    RegistryTimeoutError,
    RegistryUnavailableError,
    safe_repr,
    type_name,
)
from pykka_registry._events import (
    EventBus,
    Joined,
    Left,
    MetadataUpdated,
    Registered,
    Unregistered,
    UnregisterReason,
)
from pykka_registry._messages import ReapDeaths
from pykka_registry.backends.base import Backend, Change, Member, MemberChange, group_method

if TYPE_CHECKING:
    from pykka_registry._server_child import ServerOwner

__all__ = ["RegistryState"]

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
        self._take_changes = group_method(backend, "take_changes")
        self._remove_function: Any = None  # remove_actor's function, when last looked at
        self._remove_takes_reason = True
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
        #: The tree running the server and the server's child id in it, set
        #: by :mod:`pykka_registry._server_child` before each start.
        self.owner: Optional[ServerOwner] = None
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
                    f"another get_or_start of {safe_repr(service)} in {safe_repr(namespace)} "
                    f"is still starting it after {timeout}s"
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
        here so that they are serialised with local writes; ``function``
        returns what it changed (a sequence of
        :class:`~pykka_registry.backends.base.Change`, or ``None``) and
        :meth:`run_submitted` publishes their events. An exception in
        ``function`` (``BaseException`` included) is logged; the server and
        every other actor live on. Never blocks; if no
        server runs, ``function`` waits for the next one."""
        self.pending_calls.append(function)
        self._wake_server()

    def _wake_server(self) -> None:
        server = self.server_ref
        if server is not None:
            try:
                server.tell(ReapDeaths())
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
        why = UnregisterReason.from_death(reason)
        try:
            removed = self._remove_actor(actor_ref, why)
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
                for entry in removed:
                    self.events.publish(
                        Unregistered(entry.namespace, entry.service, entry.actor_ref, why)
                    )
                for member in left:
                    self.events.publish(
                        Left(member.namespace, member.group, member.actor_ref, why)
                    )

    def _remove_actor(self, actor_ref: Any, why: UnregisterReason) -> list[Any]:
        """``backend.remove_actor(actor_ref, why)``, or ``(actor_ref)`` alone
        for a backend written before the reason existed (its signature is
        looked at once per method: an identity check per death)."""
        method = self.backend.remove_actor
        function = getattr(method, "__func__", method)
        if function is not self._remove_function:
            self._remove_function = function
            self._remove_takes_reason = _takes_two(method)
        if self._remove_takes_reason:
            return method(actor_ref, why)
        return method(actor_ref)

    # -- changes a backend reports (server thread, write lock held) -----------------

    def publish_changes(self, changes: Any) -> None:
        """Publish the events of the :class:`~pykka_registry.backends.base.Change`
        and :class:`~pykka_registry.backends.base.MemberChange` values
        ``changes`` (a sequence, or ``None``), in order. The one place where a
        backend's own changes become events. Never raises for a
        backend's bad value, or metadata whose copy for the event raises:
        it is logged and that one event skipped (the change stands)."""
        if not changes or not self.events.active:
            return
        for change in changes:
            try:
                self._publish_change(change)
            except BaseException as error:  # a metadata copy for the event raised
                logger.error("%s: no event for a change backend %s reported (%s while "
                             "building it); skipped", self.name, self.backend.name,
                             type_name(error))

    def _publish_change(self, change: Any) -> None:
        publish = self.events.publish
        if isinstance(change, MemberChange):
            if change.new is not None:
                member = change.new
                publish(Joined(member.namespace, member.group, member.actor_ref,
                               member.metadata))
            elif change.old is not None:
                member = change.old
                publish(Left(member.namespace, member.group, member.actor_ref,
                             change.reason))
            return
        if not isinstance(change, Change):
            logger.error("%s: backend %s reported %s, not a Change; ignored", self.name,
                         self.backend.name, safe_repr(change))
            return
        old, new = change.old, change.new
        if old is not None and new is not None and \
                old.actor_ref.actor_urn == new.actor_ref.actor_urn:
            publish(MetadataUpdated(new.namespace, new.service, new.actor_ref,
                                    new.metadata))
            return
        if old is not None:
            publish(Unregistered(old.namespace, old.service, old.actor_ref, change.reason))
        if new is not None:
            publish(Registered(new.namespace, new.service, new.actor_ref, new.metadata))

    def publish_backend_changes(self) -> None:
        """Publish what the backend changed on its own during the last write
        (``Backend.take_changes``). Server thread, write lock held."""
        try:
            changes = self._take_changes()
        except BaseException:  # server thread: nothing may reach Pykka
            logger.exception("%s: backend %s failed to report its changes", self.name,
                             self.backend.name)
            return
        self.publish_changes(changes)

    def run_submitted(self, function: Any) -> None:
        """Run a function a backend gave to :meth:`submit` and publish the
        changes it returns. Server thread, write lock held; never raises."""
        try:
            changes = function(self)
        except BaseException:  # server thread: a BaseException would stop every actor
            logger.exception("%s: submitted call %s failed", self.name, safe_repr(function))
            return
        self.publish_changes(changes)


def _takes_two(method: Any) -> bool:
    """True if ``method`` can be called with ``(actor_ref, reason)``."""
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):  # a builtin or a C callable: assume the current rule
        return True
    try:
        signature.bind(None, None)
    except TypeError:
        return False
    return True
