"""The registry's server: one Pykka actor that applies every write to the
backend of a :class:`~pykka_registry._state.RegistryState`, under its
write lock, and publishes the events.

Guarantees
----------
* Writes are atomic with respect to each other and to death clean-ups
  (the rules of the write lock: :mod:`pykka_registry._state`).
* Messages (:mod:`pykka_registry._messages`) are answered in the order
  received. An exception in a handler goes back to the caller and the
  server lives on, ``BaseException`` included: nothing user code raises in
  the server thread reaches Pykka (which would stop every actor of the
  process). A write's goes back as a typed error; a ``run_in_server``
  function's as itself, raised again in the caller's thread.
* The server keeps no state of its own: a new server started on the same
  state (by the registry's supervisor) carries on where the old one stopped.
"""
from __future__ import annotations

import itertools
import logging
import queue
from collections.abc import Mapping, Sequence
from typing import Any, Callable, ClassVar, Optional

import pykka

from pykka_registry import _deathwatch
from pykka_registry._errors import (
    ActorNotAliveError,
    InvalidKeyError,
    InvalidMetadataError,
    RegistryError,
    safe_repr,
    type_name,
)
from pykka_registry._events import (
    LEFT,
    NAMESPACE_STOPPED,
    UNREGISTERED,
    Joined,
    Left,
    MetadataUpdated,
    Registered,
    Unregistered,
    UnregisterReason,
    event_metadata,
)
from pykka_registry._messages import (
    Call,
    CallRaised,
    ClearNamespace,
    Join,
    Leave,
    ReapDeaths,
    Register,
    RegisterMany,
    Subscribe,
    Unregister,
    UnregisterMany,
    UpdateMetadata,
)
from pykka_registry._state import RegistryState
from pykka_registry.backends.base import Entry, Member, batch_writes, group_method

__all__ = ["RegistryServer"]

logger = logging.getLogger("pykka_registry")


# -- the actor ---------------------------------------------------------------


class RegistryServer(pykka.ThreadingActor):
    """The actor that owns a registry's backend and applies every write.

    Runs in its own (daemon) thread: a program that forgets
    ``registry.stop()`` still exits. Started by the registry (under a
    supervisor); do not send it messages yourself: use the
    :class:`~pykka_registry.Registry`.
    """

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> Any:
        # Every write waits for this mailbox twice (the put that wakes the
        # server, the get it sleeps in): queue.SimpleQueue does both in C,
        # where Pykka's default queue.Queue runs a Python condition. It has
        # all Pykka's actor loop uses (put, get, empty), and qsize().
        return queue.SimpleQueue()

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
            if isinstance(message, ReapDeaths):
                return self._reap_deaths()
            if isinstance(message, Call):
                # Not under the write lock: the function may wait for actors to stop.
                try:
                    return message.function(self.state)
                except Exception:
                    # Pykka's rule: an asker gets it back; told, it crashes
                    # the server, which its supervisor restarts.
                    raise
                except BaseException as error:
                    # Raised, Pykka would stop every actor of the process:
                    # handed back as a value, raised again in the caller's thread.
                    return CallRaised(error)
            return super().on_receive(message)
        # The write lock, taken inline (this is every write's hot path).
        state = self.state
        if not state.acquire_write():
            raise state.write_lock_timeout()
        try:
            return handler(self, message)
        except RegistryError:
            state.publish_backend_changes()  # a conflict may have taught it a claim
            raise
        except BaseException as error:  # user code: a key's __hash__ or __eq__
            state.publish_backend_changes()
            # Never let it reach Pykka raw: a BaseException would make it
            # stop every actor of the process.
            raise InvalidKeyError(
                f"{type_name(error)} raised while applying {type_name(message)} "
                "(from a key's __hash__ or __eq__, or a metadata value's copy); nothing was "
                "written"
            ) from None
        finally:
            state.release_write()

    # Each handler runs in the server thread, holding the write lock.

    def _register(self, msg: Register) -> None:
        actor_ref = msg.actor_ref
        if _death_seen(actor_ref) or not actor_ref.is_alive():
            raise ActorNotAliveError(f"{actor_ref} is not alive")
        entry = Entry.create(msg.namespace, msg.service, actor_ref, msg.metadata)
        # Copy first, then write: the event's copy of the metadata may raise
        # (a container's __deepcopy__), and then nothing may be stored.
        view = _event_view(entry.metadata) if self.events.active else None
        replaced = self.backend.register(entry, _holder_alive)
        self.state.registrations += 1
        self.state.publish_backend_changes()
        if view is not None and self.events.active:
            self._publish_registered(entry, replaced, view)
        if _death_seen(actor_ref):
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
                    f"{actor_ref} (for {safe_repr(service)}) is not alive; nothing was registered",
                    service=service,
                )
        namespace, create = msg.namespace, Entry.create
        entries = [create(namespace, service, actor_ref, metadata)
                   for service, actor_ref, metadata in msg.items]
        # Copy first, then write (as in _register).
        views = [_event_view(e.metadata) for e in entries] if self.events.active else None
        replaced = self._backend_register_many(entries, _holder_alive)
        self.state.registrations += len(entries)
        self.state.publish_backend_changes()
        if views is not None and self.events.active:
            for entry, previous, view in zip(entries, replaced, views):
                self._publish_registered(entry, previous, view)
        for entry in {id(e.actor_ref): e for e in entries}.values():
            if _deathwatch.death_seen(entry.actor_ref):  # as in _register
                self.state.remove_dead(entry.actor_ref,
                                       _deathwatch.death_reason(entry.actor_ref))

    def _publish_registered(self, entry: Entry, replaced: Optional[Entry],
                            view: Mapping[Any, Any]) -> None:
        if replaced is not None and replaced.actor_ref.actor_urn == entry.actor_ref.actor_urn:
            self.events.publish(
                MetadataUpdated(entry.namespace, entry.service, entry.actor_ref, view)
            )
            return
        if replaced is not None:  # a holder whose death notice was left to the server
            reason = UnregisterReason.from_death(_deathwatch.death_reason(replaced.actor_ref))
            self.events.publish(
                Unregistered(replaced.namespace, replaced.service, replaced.actor_ref, reason)
            )
        self.events.publish(Registered(entry.namespace, entry.service, entry.actor_ref, view))

    def _unregister(self, msg: Unregister) -> None:
        removed = self.backend.unregister(msg.namespace, msg.service)
        self._published_unregistered([] if removed is None else [removed])

    def _unregister_many(self, msg: UnregisterMany) -> None:
        self._published_unregistered(
            self._backend_unregister_many(msg.namespace, list(msg.services))
        )

    def _published_unregistered(self, removed: list[Entry]) -> None:
        self.state.unregistrations += len(removed)
        self.state.publish_backend_changes()
        if self.events.active:
            for entry in removed:
                self.events.publish(
                    Unregistered(entry.namespace, entry.service, entry.actor_ref, UNREGISTERED)
                )

    def _update_metadata(self, msg: UpdateMetadata) -> None:
        # Copy first, then write (as in _register).
        view = _event_view(msg.metadata) if self.events.active else None
        entry = self.backend.update_metadata(msg.namespace, msg.service, msg.metadata)
        self.state.publish_backend_changes()
        if view is not None and self.events.active:
            self.events.publish(
                MetadataUpdated(entry.namespace, entry.service, entry.actor_ref, view)
            )

    def _join(self, msg: Join) -> None:
        actor_ref = msg.actor_ref
        if _deathwatch.death_seen(actor_ref) or not actor_ref.is_alive():
            raise ActorNotAliveError(f"{actor_ref} is not alive; it joined no group")
        member = Member.create(msg.namespace, msg.group, actor_ref, msg.metadata)
        # Copy first, then write (as in _register).
        view = _event_view(member.metadata) if self.events.active else None
        self._backend_join(member)
        if view is not None and self.events.active:
            self.events.publish(Joined(member.namespace, member.group, actor_ref, view))
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
            self.actor_ref.tell(ReapDeaths())
            return
        try:
            pending = self.state.pending_deaths
            while pending:
                actor_ref, reason = pending.popleft()
                self.state.remove_dead(actor_ref, reason)
            calls = self.state.pending_calls
            while calls:
                self.state.run_submitted(calls.popleft())
        finally:
            self.state.release_write()

    def _clear_namespace(
        self, msg: ClearNamespace
    ) -> tuple[list[Entry], list[Member], Optional[str]]:
        """Remove the namespace's names, then its group memberships; return
        both, and ``None`` or what went wrong with the memberships (then the
        names are gone, their events published, and the caller says so)."""
        namespace, backend = msg.namespace, self.backend
        groups_ok = getattr(backend, "supports_groups", False) is True
        # Read first, key by key, the way the removal will look them up: a
        # namespace whose __eq__ raises against another stored one, or a
        # stored service or group key whose __hash__/__eq__ raises now,
        # raises here, before anything is removed (the removal would raise
        # part-way, with entries gone and no event for them).
        backend.count(namespace)
        get = backend.get
        for entry in backend.entries(namespace):
            get(namespace, entry.service)
        if groups_ok:
            for group in backend.groups(namespace):
                backend.members(namespace, group)
        removed = backend.clear_namespace(namespace)
        self.state.unregistrations += len(removed)
        self.state.publish_backend_changes()
        left: list[Member] = []
        failure: Optional[str] = None
        if groups_ok:
            try:
                left = self._backend_clear_groups(namespace)
            except BaseException as error:  # the names are gone already: say so, not raise
                failure = f"{type_name(error)} while removing its group memberships"
                logger.error("%s: stop_namespace(%s): %s", self.state.name,
                             safe_repr(namespace), failure)
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
        return removed, left, failure

    def _subscribe(self, msg: Subscribe) -> None:
        # Only the snapshot is taken here: one copy of each namespace (a
        # tuple, handed on as it is when it is the only part; each copy of a
        # large namespace touches every entry). The dispatcher thread turns
        # it into Registered events, so a large replay holds up writes and
        # death clean-ups for that copy alone.
        parts: list[Sequence[Any]] = []
        if msg.replay:
            sub = msg.subscription
            backend = self.backend
            snapshot = getattr(backend, "entries_snapshot", None)
            namespaces = backend.namespaces() if sub.namespace is None else [sub.namespace]
            for ns in namespaces:
                part = snapshot(ns) if snapshot is not None else backend.entries(ns)
                if part:
                    parts.append(part)
            if getattr(backend, "supports_groups", False) is True:
                group_namespaces = (backend.group_namespaces() if sub.namespace is None
                                    else [sub.namespace])
                for ns in group_namespaces:
                    for group in backend.groups(ns):
                        parts.append(backend.members(ns, group))
        if len(parts) == 1 and type(parts[0]) is tuple:
            replay: tuple[Any, ...] = parts[0]
        else:
            replay = tuple(itertools.chain.from_iterable(parts))
        self.events.start_subscription(msg.subscription, replay)

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


_death_seen = _deathwatch.death_seen


def _event_view(metadata: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """:func:`event_metadata` for a write's event, in the server thread: its
    copy lets ``KeyboardInterrupt`` through as the caller's Ctrl-C, but no
    Ctrl-C lands in this thread; one raised here comes from the value's own
    copy, so it is the value's fault: :class:`InvalidMetadataError`, as for
    any other exception of that copy (not the handler's InvalidKeyError)."""
    try:
        return event_metadata(metadata)
    except KeyboardInterrupt:
        raise InvalidMetadataError(
            "metadata cannot be copied for its event: KeyboardInterrupt from its items(), "
            "keys or values; nothing was written"
        ) from None


def _holder_alive(actor_ref: Any) -> bool:
    return not _deathwatch.is_dead(actor_ref)
