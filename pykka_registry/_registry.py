"""The facade: :class:`Registry`, the object users hold.

Guarantees
----------
* The facade keeps no registry state of its own: reads go straight to the
  backend in the caller's thread, writes go to the server actor as asks
  (Pykka's envelope in its mailbox, answered through a one-lock reply slot,
  :class:`_Reply`; a plain ``ask`` on a Pykka without that envelope).
* **Reads never queue behind the server.** ``lookup`` is two dict reads in
  the caller's thread, with no lock and no liveness check. Read-your-writes:
  once a write returns, every thread sees it.
* **Death is complete before Pykka reports it.** A dying actor's own thread
  removes its names (see :mod:`pykka_registry._state`) before Pykka sets its
  ``actor_stopped``: once ``stop(block=True)`` has returned, or
  ``actor_stopped.wait()``, or ``ask`` raises ``ActorDeadError``, no read
  (``lookup``, ``list_services``, ``count``, ``match``, ``keys_of``,
  ``namespaces``, ``stats``...) shows the actor, its ``Unregistered`` events
  are queued, and its names can be registered again. No ``sync()`` needed.
  For a networked backend this holds for this process's actors; names held
  in other processes leave when those release them.
* **No call hangs.** Every ``ask`` to the server carries the registry's
  ``call_timeout``; a call that cannot be answered in time raises
  :class:`RegistryUnavailableError`. If the server dies, a call retries on its
  replacement until the deadline.
* **Bad input changes nothing.** Keys, actor refs and metadata are checked in
  the caller's thread before anything is sent; the server builds an event's
  copy of the metadata before it stores anything, so a write whose event
  cannot be built raises and stores nothing. (The stated exceptions:
  :mod:`pykka_registry._errors`.)
* Two registries share nothing; any number can live in one process.
* **A stopped registry answers no names**: after :meth:`Registry.stop`,
  reads return nothing (``None``, ``[]``, ``0``) and writes raise
  :class:`RegistryUnavailableError`.
* The registry's own threads (server, supervisor, event dispatcher, backend
  threads) are daemon threads: a program that forgets ``registry.stop()``
  still exits.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

import pykka

from pykka_registry import _deathwatch, _server_child
from pykka_registry._backend_names import resolve_backend
from pykka_registry._coerce import (
    NO_SERVICE,
    actor_ref_of,
    is_actor_like,
    pair_key,
    shift_pair_key,
    split_key,
    urn_of,
)
from pykka_registry._deathwatch import is_alive as _is_alive
from pykka_registry._errors import (
    AlreadyRegisteredError,
    DuplicateServiceError,
    GroupsNotSupportedError,
    InvalidBatchItemError,
    InvalidKeyError,
    InvalidMetadataError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
    safe_repr,
    type_name,
)
from pykka_registry._events import Event, EventListener, Registered, Subscription
from pykka_registry._group_via import GroupVia
from pykka_registry._messages import (
    Call,
    CallRaised,
    ClearNamespace,
    Join,
    Leave,
    Register,
    RegisterMany,
    Subscribe,
    Unregister,
    UnregisterMany,
    UpdateMetadata,
)
from pykka_registry._state import RegistryState
from pykka_registry._stats import HealthReport, RegistryStats
from pykka_registry._timeouts import check_timeout, optional_timeout
from pykka_registry._types import ActorRefLike, GroupStrategy, HealthStatus
from pykka_registry._via import Via
from pykka_registry.backends.base import (
    Backend,
    Entry,
    Member,
    group_method,
    supports_groups,
    validate_backend,
)
from pykka_registry.backends.memory import LocalGroups, LocalTables, MemoryBackend

if TYPE_CHECKING:
    from pykka_registry._supervisor import ChildSpec, SupervisedRegistry, Supervisor

__all__ = ["Registry"]

T = TypeVar("T")


_ACTOR_TYPES = (pykka.ActorRef, pykka.ActorProxy)


def _nothing(state: RegistryState) -> None:
    return None


def _seen_before(seen: set[Any], service: Any) -> bool:
    """``service in seen`` (then add it), with a hostile ``__eq__`` turned
    into :class:`InvalidKeyError`."""
    try:
        if service in seen:
            return True
        seen.add(service)
    except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
        raise
    except BaseException as error:
        raise InvalidKeyError(
            f"service {type_name(service)} cannot be compared: {type_name(error)}"
        ) from None
    return False


def _pykka_envelope() -> Any:
    """Pykka 3.1 - 4.x: the envelope ``ask`` puts in an actor's inbox (the
    remote messenger uses it too); ``None`` on a Pykka without it."""
    try:
        from pykka._envelope import Envelope
    except ImportError:  # pragma: no cover - a future Pykka: plain ask() then
        return None
    return Envelope


_Envelope = _pykka_envelope()


class _Reply:
    """The reply slot of one call to the server: what Pykka's actor loop
    needs of a future (``set``, ``set_exception``) and what
    :meth:`Registry._await_answer` needs (``get(timeout)``), on one lock
    that the caller waits on and the server releases: one wake-up per
    answer (Pykka's future waits on a condition: a lock of its own, a
    waiter lock and a notify). Set once, by the server's thread."""

    __slots__ = ("_done", "_exc_info", "_value")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._value: Any = None
        self._exc_info: Any = None

    def set(self, value: Any = None) -> None:
        self._value = value
        self._done.release()

    def set_exception(self, exc_info: Any = None) -> None:
        self._exc_info = exc_info if exc_info is not None else sys.exc_info()
        self._done.release()

    def wait(self, timeout: float) -> bool:
        """True once answered (then :meth:`result` returns at once)."""
        if self._done.acquire(timeout=timeout):
            self._done.release()  # every later wait() and get() answers too
            return True
        return False

    def get(self, *, timeout: float) -> Any:
        """The answer, or what the handler raised; ``pykka.Timeout`` if none
        came within ``timeout``."""
        if not self.wait(timeout):
            raise pykka.Timeout(f"{timeout} seconds")
        return self.result()

    def result(self) -> Any:
        """The answer, or what the handler raised (once answered)."""
        if self._exc_info is not None:
            exc_type, exc_value, traceback = self._exc_info
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not traceback:
                raise exc_value.with_traceback(traceback)
            raise exc_value
        return self._value


_registry_counter = itertools.count(1)

#: How often a caller waiting for the server checks that it is still alive
#: (a message that lands in a dying server's mailbox is never answered).
_LOST_CHECK_S = 0.05

BackendSpec = Union[type[Backend], Backend, str]


class Registry:
    """A named-actor registry. Create one with :meth:`Registry.start`.

    All methods may be called from any thread.
    """

    def __init__(self, state: RegistryState) -> None:
        """Internal: use :meth:`start` (or :meth:`new` with :meth:`child_spec`)."""
        self._state = state
        self._backend = state.backend
        self._stop_lock = threading.Lock()
        self._own_supervisor: Optional[Supervisor] = None  # set by start()
        # Entries of other processes are dropped when their node releases
        # them; until then a remote ref may already know its actor is gone.
        self._check_alive = bool(getattr(state.backend, "distributed", False))
        self.lookup = self._fast_lookup()  # type: ignore[method-assign,assignment]
        self._groups_ok = supports_groups(state.backend)
        self._group_totals = group_method(state.backend, "group_totals")
        #: ``(namespace, group) -> refs in join order``: the group read path.
        local_groups = self._groups_ok and isinstance(state.backend, LocalGroups)
        self._member_refs: Callable[[Hashable, Hashable], Any] = (
            state.backend.member_refs if local_groups  # type: ignore[attr-defined]
            else self._generic_member_refs
        )
        if local_groups:
            self.members = self._fast_members()  # type: ignore[method-assign,assignment]
        # groups: a backend with members in other processes sends to them itself
        self._fan_out: Any = getattr(state.backend, "group_fan_out", None)

    # -- starting and stopping ------------------------------------------------------

    @classmethod
    def new(
        cls,
        backend: BackendSpec = MemoryBackend,
        backend_opts: Optional[Mapping[str, Any]] = None,
        *,
        call_timeout: float = 5.0,
        name: Optional[str] = None,
    ) -> Registry:
        """A registry whose server is not running yet: put :meth:`child_spec`
        into your own supervision tree to run it. Most users want :meth:`start`.

        ``backend`` is a :class:`Backend` subclass, instantiated with
        ``**backend_opts``, a ready :class:`Backend` instance, or a name:
        ``"memory"``, ``"indexed"``, ``"redis"`` or one a package registered
        in the entry point group ``pykka_registry.backends``.

        Raises:
            UnknownBackendError: no backend has that name (the message lists
                the known ones).
        """
        call_timeout = check_timeout(call_timeout, "call_timeout", positive=True)
        spec = resolve_backend(backend)
        if isinstance(spec, type):
            validate_backend(spec)
            instance = spec(**dict(backend_opts or {}))
        else:
            if backend_opts:
                raise TypeError("backend_opts is only used with a backend class, not an instance")
            validate_backend(spec)
            instance = spec
        label = name or f"registry-{next(_registry_counter)}"
        state = RegistryState(instance, float(call_timeout), label)
        instance.start(state)
        _deathwatch.add_listener(state.on_actor_death, early=True)
        return cls(state)

    @classmethod
    def start(
        cls,
        backend: BackendSpec = MemoryBackend,
        backend_opts: Optional[Mapping[str, Any]] = None,
        *,
        call_timeout: float = 5.0,
        name: Optional[str] = None,
        max_restarts: int = 10,
        max_seconds: float = 1.0,
    ) -> Registry:
        """Start a registry: its server actor runs under a supervisor of its own,
        which restarts it (keeping every registration) if it dies for any
        reason other than :meth:`stop`; more than ``max_restarts`` deaths in
        ``max_seconds`` and the registry gives up (calls then raise
        :class:`RegistryUnavailableError`).
        """
        registry = cls.new(backend, backend_opts, call_timeout=call_timeout, name=name)
        try:
            registry._own_supervisor = _server_child.start_own_supervisor(
                registry._state, max_restarts, max_seconds)
        except BaseException:
            registry._close()
            raise
        return registry

    def child_spec(self, id: Hashable = "registry", shutdown: float = 5.0) -> ChildSpec:
        """A :class:`~pykka_registry.ChildSpec` that runs this registry's server
        in a supervision tree of yours. The tree restarts the server on the
        same backend, so a restart loses no registration. Put it before the
        children that use the registry (children start in order and stop in
        reverse order). Once the registry is stopped, the tree drops the
        child (its start raises :class:`~pykka_registry.ChildRetired`)."""
        return _server_child.child_spec(self._state, id, shutdown)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the registry's server and its supervisor; return once they have
        stopped. Registered actors keep running; their names are gone with the
        registry. Idempotent. Further writes raise
        :class:`RegistryUnavailableError`."""
        timeout = optional_timeout(timeout, self._state.call_timeout)
        with self._stop_lock:
            if self._state.closed:
                return
            self._state.closed = True
            with self._state.server_changed:
                self._state.server_changed.notify_all()
            for waiter in list(self._state.waiters):
                waiter.set()
            try:
                _server_child.stop_server(self._state, self._own_supervisor, timeout)
            finally:
                self._close()

    def _close(self) -> None:
        self._state.closed = True
        _deathwatch.remove_listener(self._state.on_actor_death)
        self._state.events.close(self._state.call_timeout)
        try:
            self._backend.close()
        finally:
            self.lookup = self._closed_lookup  # type: ignore[method-assign]

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._state.closed else "running"
        return f"<Registry {self._state.name} ({self._backend.name}, {state})>"

    @property
    def name(self) -> str:
        """This registry's label (in logs, thread names and stats)."""
        return self._state.name

    @property
    def backend(self) -> Backend:
        """The backend object (for inspection; write through the registry)."""
        return self._backend

    @property
    def supports_groups(self) -> bool:
        """True when the backend keeps groups (else every group call raises
        :class:`GroupsNotSupportedError`)."""
        return self._groups_ok

    @property
    def call_timeout(self) -> float:
        """How long a call waits for the server before giving up, in seconds."""
        return self._state.call_timeout

    @property
    def server_owner(self) -> Optional[tuple[Supervisor, Hashable]]:
        """``(supervisor, child_id)`` of the tree that runs the server, once started."""
        owner = self._state.owner
        return None if owner is None else (owner.supervisor, owner.child_id)

    def server_to_start_first(self, supervisor: Supervisor,
                              child_id: Hashable) -> Optional[Hashable]:
        """For a supervisor about to register its child ``child_id`` (in its
        own thread): the id of a child of ``supervisor`` to start first, the
        one that runs this registry's server when it is down, else ``None``
        (see :mod:`pykka_registry._server_child`)."""
        return _server_child.server_to_start_first(self._state, supervisor, child_id)

    @property
    def running(self) -> bool:
        """True while the registry is open and its server actor is alive."""
        server = self._state.server_ref
        return not self._state.closed and server is not None and server.is_alive()

    @property
    def server_ref(self) -> pykka.ActorRef[Any]:
        """The server actor now serving this registry (a :class:`RegistryServer`).

        Changes when the server is restarted.

        Raises:
            RegistryUnavailableError: it has not been started.
        """
        ref = self._state.server_ref
        if ref is None:
            raise RegistryUnavailableError(f"{self._state.name} has no server running")
        return ref

    # -- talking to the server ------------------------------------------------------

    def _call(self, message: Any, timeout: Optional[float] = None) -> Any:
        """``ask`` the server, within ``timeout`` (default ``call_timeout``).

        If the server dies before handling the message (Pykka answers
        ``ActorDeadError``, or the message landed in its mailbox after Pykka
        drained it and will never be answered), the message is sent again to
        the successor its supervisor starts, within the same deadline. Sending
        again is safe: the actor handles messages one at a time and answers
        each before it can stop, so an unanswered message of a stopped server
        was never handled.
        """
        state = self._state
        limit = state.call_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            if state.closed:
                raise RegistryUnavailableError(f"{state.name} is stopped")
            server = state.server_ref
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RegistryUnavailableError(
                    f"{state.name}: the server did not answer within {limit}s"
                )
            if server is None:
                state.wait_for_new_server(None, remaining)
                continue
            if _Envelope is None:  # a Pykka without the envelope we know
                try:
                    reply: Any = server.ask(message, block=False)
                except pykka.ActorDeadError:
                    self._await_successor(server, deadline)
                    continue
            else:
                # What ask(block=False) does, with a lighter reply slot than
                # Pykka's future (one lock: one wake-up, no condition).
                if not server.is_alive():
                    self._await_successor(server, deadline)
                    continue
                reply = _Reply()
                server.actor_inbox.put(_Envelope(message, reply_to=reply))
                if reply.wait(min(remaining, _LOST_CHECK_S)):  # the usual case
                    try:
                        return reply.result()
                    except pykka.ActorDeadError:
                        if server.is_alive():
                            raise  # raised by the handler itself (it asked a dead actor)
                    # the server died before handling the message
                    self._await_successor(server, deadline)
                    continue
            answered, value = self._await_answer(server, reply, deadline, limit)
            if answered:
                return value
            self._await_successor(server, deadline)

    def _await_answer(self, server: Any, future: Any, deadline: float,
                      limit: float) -> tuple[bool, Any]:
        """``(True, result)``, or ``(False, None)`` if the server stopped
        without handling the message. Raises what the handler raised.
        ``future``: a :class:`_Reply` or a Pykka future."""
        while True:
            remaining = deadline - time.monotonic()
            try:
                return True, future.get(timeout=max(0.0, min(remaining, _LOST_CHECK_S)))
            except pykka.Timeout:
                if server.actor_stopped.is_set():
                    # Handled messages are answered before the actor can stop.
                    try:
                        return True, future.get(timeout=0)
                    except pykka.Timeout:
                        return False, None
                if remaining <= _LOST_CHECK_S:
                    raise RegistryUnavailableError(
                        f"{self._state.name}: the server did not answer within "
                        f"{limit}s; the call may or may not have been applied"
                    ) from None
            except pykka.ActorDeadError:
                if server.is_alive():
                    raise  # raised by the handler itself (it asked a dead actor)
                return False, None  # the server died before handling the message

    def _await_successor(self, server: Any, deadline: float) -> None:
        """Wait for the supervisor to replace a dead server (or give up)."""
        state = self._state
        if not _server_child.successor_expected(state):
            raise RegistryUnavailableError(
                f"{state.name}: the server is stopped and no supervisor restarts it"
            ) from None
        state.wait_for_new_server(server, max(0.0, deadline - time.monotonic()))

    def _check_key(self, namespace: Any, service: Any) -> None:
        self._backend.validate_key(namespace, service)

    def _key_error(self, namespace: Any, service: Any, error: BaseException) -> Exception:
        """The typed error for a read whose key made the backend raise
        ``error`` (an unhashable key, or a ``__hash__``/``__eq__`` that raises)."""
        self._check_key(namespace, service)  # raises the precise InvalidKeyError
        if isinstance(error, RegistryError):
            return error
        return InvalidKeyError(
            f"the key ({safe_repr(namespace)}, {safe_repr(service)}) cannot be looked up: "
            f"{type_name(error)} from its __hash__ or __eq__"
        )

    def _read(self, namespace: Any, service: Any, read: Callable[..., T], *args: Any) -> T:
        """``read(*args)``, a backend read keyed by ``namespace``: a key whose
        ``__hash__``/``__eq__`` raises (against another stored key) becomes
        :class:`InvalidKeyError`; ``KeyboardInterrupt`` passes through."""
        try:
            return read(*args)
        except KeyboardInterrupt:
            raise
        except RegistryError:
            raise
        except BaseException as error:
            raise self._key_error(namespace, service, error) from None

    # -- writes -----------------------------------------------------------------------

    def register(
        self,
        namespace: Hashable,
        service: Hashable = NO_SERVICE,
        actor_ref: Union[pykka.ActorRef[Any], pykka.ActorProxy[Any]] = NO_SERVICE,
        metadata: Optional[Mapping[Any, Any]] = None,
    ) -> None:
        """Register ``actor_ref`` as ``service`` in ``namespace``. A
        :class:`pykka.ActorProxy` stands for its ``actor_ref``. The name may
        also be given as one ``(namespace, service)`` tuple:
        ``register(("jobs", "w1"), ref, {"cpu": 2})``.

        The same actor registering the same name again replaces its metadata.
        The name is released by :meth:`unregister` or when the actor dies.

        Raises:
            AlreadyRegisteredError: another live actor holds the name.
            ActorNotAliveError: the actor has stopped.
            InvalidKeyError, InvalidActorRefError, InvalidMetadataError: bad input.
            RegistryUnavailableError: the server did not answer in time.
        """
        if actor_ref is NO_SERVICE or service is NO_SERVICE or (
                not isinstance(actor_ref, _ACTOR_TYPES) and is_actor_like(service)):
            # register((ns, svc), ref[, metadata]): the arguments moved left.
            namespace, service, actor_ref, metadata = shift_pair_key(
                "register", namespace, service, actor_ref, metadata,
                value_name="actor_ref", extra_name="metadata", needs="the actor")
        self._check_key(namespace, service)
        actor_ref = actor_ref_of(actor_ref)
        own_metadata = self._backend.validate_metadata(metadata)
        self._call(Register(namespace, service, actor_ref, own_metadata))

    def unregister(self, namespace: Hashable, service: Hashable = NO_SERVICE) -> None:
        """Release the name. Idempotent: a missing name is not an error. The
        name may also be given as one ``(namespace, service)`` tuple."""
        namespace, service = split_key(namespace, service, "unregister")
        self._check_key(namespace, service)
        self._call(Unregister(namespace, service))

    def register_many(
        self,
        namespace: Hashable,
        items: Iterable[Union[tuple[Hashable, Any], tuple[Hashable, Any, Any]]],
    ) -> None:
        """Register a batch: ``items`` are ``(service, actor_ref)`` or
        ``(service, actor_ref, metadata)`` tuples. All or nothing, in one
        server round trip; one :class:`Registered` event per entry, in batch
        order.

        Every item is checked as :meth:`register` checks one, and the first
        offending service is named in the error (and as its ``.service``
        where the error has one); then nothing is registered.

        Example::

            registry.register_many("workers", [(f"w{i}", ref) for i, ref in enumerate(refs)])

        Raises:
            DuplicateServiceError: the same service twice in the batch.
            AlreadyRegisteredError: another live actor holds one of the names.
            ActorNotAliveError: one of the actors has stopped.
            InvalidKeyError, InvalidActorRefError, InvalidMetadataError: bad input.
            RegistryUnavailableError: the server did not answer in time.
        """
        self._check_key(namespace, "")
        items = list(items)
        for item in items:
            if type(item) is not tuple or len(item) not in (2, 3):
                raise InvalidBatchItemError(
                    "register_many items must be (service, actor_ref) or "
                    f"(service, actor_ref, metadata) tuples, got {safe_repr(item)}"
                )
        if not self._services_are_plain(namespace, [item[0] for item in items]):
            # Something is off: check one by one, to name the first offender.
            seen: set[Any] = set()
            for item in items:
                self._check_key(namespace, item[0])
                if _seen_before(seen, item[0]):
                    raise DuplicateServiceError(namespace, item[0])
        validate_metadata = self._backend.validate_metadata
        batch = []
        for item in items:
            service = item[0]
            actor_ref = item[1]
            if not isinstance(actor_ref, pykka.ActorRef):  # a proxy, or a bad value
                actor_ref = actor_ref_of(actor_ref, f"actor_ref for {safe_repr(service)}")
            try:
                own_metadata = validate_metadata(item[2] if len(item) == 3 else None)
            except InvalidMetadataError as error:
                raise InvalidMetadataError(
                    f"metadata for {safe_repr(service)}: {error}") from None
            batch.append((service, actor_ref, own_metadata))
        if batch:
            self._call(RegisterMany(namespace, tuple(batch)))

    def _services_are_plain(self, namespace: Hashable, services: list[Any]) -> bool:
        """The fast check of a batch's services: all distinct and of a key type
        the backend takes (one C-level pass for backends that take any
        hashable). False means: check one by one."""
        if self._backend.key_types is not None:
            return False
        try:
            return len(dict.fromkeys(services)) == len(services)
        except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
            raise
        except BaseException:  # unhashable, or a hostile __hash__/__eq__
            return False

    def unregister_many(self, namespace: Hashable, services: Iterable[Hashable]) -> None:
        """Release every name of ``services`` in ``namespace``, in one server
        round trip. Idempotent like :meth:`unregister`: missing names are
        skipped. One :class:`Unregistered` event per removed name, in order.

        Raises:
            InvalidKeyError: a service cannot be a key (nothing is released).
            RegistryUnavailableError: the server did not answer in time.
        """
        self._check_key(namespace, "")
        batch = tuple(services)
        for service in batch:
            self._check_key(namespace, service)
        if batch:
            self._call(UnregisterMany(namespace, batch))

    def update_metadata(
        self, namespace: Hashable, service: Hashable = NO_SERVICE,
        metadata: Mapping[Any, Any] = NO_SERVICE,
    ) -> None:
        """Replace (never merge) the metadata of a registered name. The name
        may also be given as one ``(namespace, service)`` tuple:
        ``update_metadata(("jobs", "w1"), {"cpu": 4})``.

        Raises:
            NotRegisteredError: no one holds the name.
            InvalidMetadataError: ``metadata`` is not a mapping.
        """
        if metadata is NO_SERVICE or service is NO_SERVICE:
            given: list[Any] = [a for a in (service, metadata) if a is not NO_SERVICE]
            namespace, service = pair_key(namespace, "update_metadata", "metadata")
            if len(given) != 1:
                raise TypeError("update_metadata() takes update_metadata(namespace, service, "
                                "metadata) or update_metadata((namespace, service), metadata)")
            metadata = given[0]
        self._check_key(namespace, service)
        own_metadata = self._backend.validate_metadata(metadata)
        self._call(UpdateMetadata(namespace, service, own_metadata))

    def stop_namespace(self, namespace: Hashable, timeout: float = 5.0) -> None:
        """Remove every entry and every group membership of ``namespace``
        and stop the actors that held them; return once they have stopped.
        Other namespaces keep their entries (an actor stopped here also
        loses names and memberships it held elsewhere).

        Two steps: the entries and memberships are removed in one write, then
        the actors are told to stop. The two errors below come after both,
        so unlike other errors they do not mean "nothing changed"; any other
        error (a bad key, a namespace whose ``__eq__`` raises against a
        stored one, a stored name or group key whose ``__hash__`` or
        ``__eq__`` raises by now: every key is looked up before anything is
        removed) comes before anything changed.

        Raises:
            RegistryTimeoutError: some actor had not stopped within
                ``timeout``; the entries are already removed and every actor
                was told to stop (the late ones stop when they can).
            InvalidKeyError: the namespace's names were removed and their
                actors told to stop, but removing its group memberships
                raised (a group key whose ``__hash__``/``__eq__`` passed the
                look-up first and raised during the removal); the message
                says so. Memberships still held end when their actors stop.
        """
        self._check_key(namespace, "")
        timeout = check_timeout(timeout)
        deadline = time.monotonic() + timeout
        removed: list[Entry]
        left: list[Member]
        removed, left, failure = self._call(ClearNamespace(namespace))
        actors = {e.actor_ref.actor_urn: e.actor_ref for e in removed}
        actors.update((m.actor_ref.actor_urn, m.actor_ref) for m in left)
        for ref in actors.values():
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        late = [
            ref for ref in actors.values()
            if not ref.actor_stopped.wait(max(0.0, deadline - time.monotonic()))
        ]
        if failure is not None:
            stopped = (f"; {len(late)} of them had not stopped within {timeout}s"
                       if late else "")
            raise InvalidKeyError(
                f"stop_namespace({safe_repr(namespace)}) removed {len(removed)} name(s) and "
                f"told {len(actors)} actor(s) to stop{stopped}, but {failure} (from a key's "
                "__hash__ or __eq__): memberships not removed end when their actors stop"
            )
        if late:
            raise RegistryTimeoutError(
                f"{len(late)} actor(s) of namespace {safe_repr(namespace)} did not stop within "
                f"{timeout}s; the namespace's names and group members are removed and every "
                "actor was told to stop"
            )

    # -- reads (caller's thread, never queued) --------------------------------------

    def lookup(
        self, namespace: Hashable, service: Hashable = NO_SERVICE
    ) -> Optional[ActorRefLike]:
        """The actor registered under the name, or ``None``. The name may
        also be given as one ``(namespace, service)`` tuple.

        The actor comes as an :class:`~pykka_registry.ActorRefLike`: a
        :class:`pykka.ActorRef` for an actor of this process, a
        :class:`~pykka_registry.RemoteActorRef` for one held by another
        process (a networked backend such as Redis). Every read that returns
        actors (``lookup_with_metadata``, ``members``, ``match``,
        ``await_name``...) returns them so.

        Runs in the caller's thread: two dict reads, no lock, no message. The
        actor is alive: a dead actor's names are removed before Pykka reports
        it stopped. (Each registry binds a specialised copy of this method
        as an instance attribute; this is the reference version.)
        """
        if service is NO_SERVICE:
            namespace, service = split_key(namespace, service, "lookup")
        try:
            entry = self._backend.get(namespace, service)
        except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
            raise
        except BaseException as error:
            raise self._key_error(namespace, service, error) from None
        if entry is None or self._state.closed:
            return None
        if self._check_alive and not _is_alive(entry.actor_ref):
            return None
        return entry.actor_ref

    def _fast_lookup(self) -> Callable[[Hashable, Hashable], Optional[ActorRefLike]]:
        """:meth:`lookup` with every attribute resolved once (the hot path),
        reading the backend's ``namespace -> service -> actor_ref`` table."""
        backend = self._backend
        if (self._check_alive or not isinstance(backend, LocalTables)
                or backend._refs is None):
            return self._generic_lookup
        refs_get = backend._refs.get
        key_error = self._key_error
        empty: dict[Hashable, Any] = {}
        no_service = NO_SERVICE

        def lookup(namespace: Hashable,
                   service: Hashable = no_service) -> Optional[ActorRefLike]:
            # The one-key form is rare: it is recognised only when nothing was
            # found (a missing service argument finds nothing), which keeps
            # the hit path to two dict reads.
            try:
                found = refs_get(namespace, empty).get(service)
            except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
                raise
            except BaseException as error:
                if service is no_service:
                    namespace, service = split_key(namespace, service, "lookup")
                raise key_error(namespace, service, error) from None
            if found is None and service is no_service:
                namespace, service = split_key(namespace, service, "lookup")
                return lookup(namespace, service)
            return found

        lookup.__doc__ = Registry.lookup.__doc__
        return lookup

    def _generic_lookup(self, namespace: Hashable, service: Hashable = NO_SERVICE
                        ) -> Optional[ActorRefLike]:
        return Registry.lookup(self, namespace, service)

    def _closed_lookup(self, namespace: Hashable, service: Hashable = NO_SERVICE
                       ) -> Optional[ActorRefLike]:
        if service is NO_SERVICE:
            namespace, service = split_key(namespace, service, "lookup")
        self._check_key(namespace, service)
        return None

    def lookup_with_metadata(
        self, namespace: Hashable, service: Hashable = NO_SERVICE
    ) -> Optional[tuple[ActorRefLike, dict[Any, Any]]]:
        """``(actor_ref, metadata)`` for the name, or ``None``. The metadata is a
        copy (``{}`` when none was given): changing it changes nothing stored.
        The name may also be given as one ``(namespace, service)`` tuple."""
        namespace, service = split_key(namespace, service, "lookup_with_metadata")
        try:
            entry = self._backend.get(namespace, service)
        except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
            raise
        except BaseException as error:
            raise self._key_error(namespace, service, error) from None
        if entry is None or self._state.closed:
            return None
        if self._check_alive and not _is_alive(entry.actor_ref):
            return None
        return entry.actor_ref, entry.metadata_copy()

    def list_services(self, namespace: Hashable) -> list[Hashable]:
        """The service names registered in ``namespace`` (any order)."""
        self._check_key(namespace, "")
        if self._state.closed:
            return []
        return self._read(namespace, "", self._backend.services, namespace)

    def find_services_by_metadata(
        self, namespace: Hashable, predicate: Callable[[Mapping[Any, Any]], bool]
    ) -> list[tuple[Hashable, ActorRefLike, dict[Any, Any]]]:
        """``(service, actor_ref, metadata)`` for every entry of ``namespace``
        whose metadata satisfies ``predicate`` (called in the caller's thread with
        a read-only view or a copy of each entry's metadata; it scans the
        namespace: prefer :meth:`match`, which an indexed backend answers
        from its index)."""
        self._check_key(namespace, "")
        if not callable(predicate):
            raise TypeError(f"predicate must be callable, got {type_name(predicate)}")
        found: list[tuple[Hashable, ActorRefLike, dict[Any, Any]]] = []
        if self._state.closed:
            return found
        for entry in self._read(namespace, "", self._backend.entries, namespace):
            if self._check_alive and not _is_alive(entry.actor_ref):
                continue
            # A flat entry can be shown read-only; copy only what matches.
            view = MappingProxyType(entry.metadata) if entry.flat else entry.metadata_copy()
            if predicate(view):
                found.append(entry.as_match())
        return found

    def match(
        self, namespace: Hashable, criteria: Mapping[Any, Any]
    ) -> list[tuple[Hashable, ActorRefLike, dict[Any, Any]]]:
        """``(service, actor_ref, metadata)`` for every entry of ``namespace``
        whose metadata has, for each ``key: value`` of ``criteria``,
        ``metadata[key] == value``, or ``value in metadata[key]`` when that field
        is a list, tuple, set or frozenset. Empty criteria match every entry."""
        self._check_key(namespace, "")
        if not isinstance(criteria, Mapping):
            raise TypeError(f"criteria must be a Mapping, got {type_name(criteria)}")
        if self._state.closed:
            return []
        return [
            entry.as_match()
            for entry in self._read(namespace, "", self._backend.match, namespace, criteria)
            if not self._check_alive or _is_alive(entry.actor_ref)
        ]

    def count(self, namespace: Optional[Hashable] = None) -> int:
        """How many names ``namespace`` holds; with ``None``, all namespaces."""
        try:
            found = self._backend.count(namespace)
        except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
            raise
        except BaseException as error:
            raise self._key_error(namespace, "", error) from None
        return 0 if self._state.closed else found

    def keys_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        """Every ``(namespace, service)`` the actor (or a proxy's actor)
        holds here."""
        actor_ref = self._ref_arg(actor_ref)
        if self._state.closed:
            return []
        return self._backend.keys_of(actor_ref)

    def namespaces(self) -> list[Hashable]:
        """The namespaces that hold at least one name."""
        if self._state.closed:
            return []
        return self._backend.namespaces()

    def via(self, namespace: Hashable, service: Hashable = NO_SERVICE) -> Via:
        """A handle that sends to whichever live actor holds the name at each call.
        The name may also be given as one ``(namespace, service)`` tuple."""
        namespace, service = split_key(namespace, service, "via")
        self._check_key(namespace, service)
        return Via(self, namespace, service)

    # -- groups (writes go to the server; reads in the caller's thread) -------------

    def _require_groups(self) -> None:
        if not self._groups_ok:
            raise GroupsNotSupportedError(
                f"{self._state.name}: backend {self._backend.name} keeps no groups "
                "(MemoryBackend, IndexedBackend and RedisBackend keep groups)"
            )

    def _generic_member_refs(self, namespace: Hashable, group: Hashable) -> list[Any]:
        self._require_groups()
        return [m.actor_ref for m in self._backend.members(namespace, group)]

    @staticmethod
    def _ref_arg(actor_ref: Any) -> Any:
        """A ref (or a proxy's ref) for reads: anything with an ``actor_urn``."""
        if isinstance(actor_ref, pykka.ActorProxy):
            return actor_ref.actor_ref
        if not isinstance(getattr(actor_ref, "actor_urn", None), str):
            return actor_ref_of(actor_ref)  # raises the precise InvalidActorRefError
        return actor_ref

    def join(
        self,
        namespace: Hashable,
        group: Hashable,
        actor_ref: Union[pykka.ActorRef[Any], pykka.ActorProxy[Any]],
        metadata: Optional[Mapping[Any, Any]] = None,
    ) -> None:
        """Make ``actor_ref`` (or a proxy's actor) a member of ``group`` in
        ``namespace``. An actor may join many groups; a group has many
        members, kept in join order. Joining again replaces that member's
        metadata and keeps its place. Names and groups are separate: a key
        may be a name and a group at once. The membership ends with
        :meth:`leave` or when the actor dies (before Pykka reports it
        stopped). Publishes :class:`Joined`.

        Raises:
            ActorNotAliveError: the actor has stopped.
            InvalidKeyError, InvalidActorRefError, InvalidMetadataError: bad input.
            GroupsNotSupportedError: the backend keeps no groups.
            RegistryUnavailableError: the server did not answer in time.
        """
        self._require_groups()
        self._check_key(namespace, group)
        actor_ref = actor_ref_of(actor_ref)
        own_metadata = self._backend.validate_metadata(metadata)
        self._call(Join(namespace, group, actor_ref, own_metadata))

    def leave(self, namespace: Hashable, group: Hashable,
              actor_ref: Union[pykka.ActorRef[Any], pykka.ActorProxy[Any]]) -> None:
        """End the actor's membership of ``group``. Idempotent: leaving a
        group one is not in is not an error. Publishes :class:`Left` (reason
        ``"left"``) when there was a membership."""
        self._require_groups()
        self._check_key(namespace, group)
        actor_ref = actor_ref_of(actor_ref)
        self._call(Leave(namespace, group, actor_ref))

    def members(self, namespace: Hashable, group: Hashable) -> list[ActorRefLike]:
        """The live members of the group, in join order (``[]`` for none).

        Runs in the caller's thread: a cached snapshot read, no lock, no
        message. A dead actor is never listed (it left before Pykka
        reported it stopped)."""
        try:
            refs = self._member_refs(namespace, group)
        except GroupsNotSupportedError:
            raise
        except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
            raise
        except BaseException as error:
            self._require_groups()
            raise self._key_error(namespace, group, error) from None
        if self._state.closed:
            return []
        return list(refs)

    def _fast_members(self) -> Callable[[Hashable, Hashable], list[ActorRefLike]]:
        """:meth:`members` with every attribute resolved once (the hot path:
        one dict read of the group's cached snapshot). A stopped registry's
        backend is cleared, so no closed check is needed."""
        backend = self._backend
        assert isinstance(backend, LocalGroups)
        cache_get = backend._group_cache.get
        snapshot = backend._snapshot
        key_error = self._key_error

        def members(namespace: Hashable, group: Hashable) -> list[ActorRefLike]:
            try:
                cached = cache_get((namespace, group))
                if cached is None:
                    cached = snapshot(namespace, group)
            except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
                raise
            except BaseException as error:
                raise key_error(namespace, group, error) from None
            return list(cached[1])

        members.__doc__ = Registry.members.__doc__
        return members

    def _member_list(self, namespace: Hashable, group: Hashable) -> Any:
        self._require_groups()
        try:
            return self._backend.members(namespace, group)
        except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
            raise
        except BaseException as error:
            raise self._key_error(namespace, group, error) from None

    def members_with_metadata(
        self, namespace: Hashable, group: Hashable
    ) -> list[tuple[ActorRefLike, dict[Any, Any]]]:
        """``(actor_ref, metadata)`` for every member, in join order; the
        metadata are copies (``{}`` when none was given)."""
        found = self._member_list(namespace, group)
        if self._state.closed:
            return []
        return [(m.actor_ref, m.metadata_copy()) for m in found]

    def match_members(
        self, namespace: Hashable, group: Hashable, criteria: Mapping[Any, Any]
    ) -> list[tuple[ActorRefLike, dict[Any, Any]]]:
        """``(actor_ref, metadata)`` for every member whose metadata satisfies
        ``criteria`` by the rule of :meth:`match`, in join order (an indexed
        backend answers from its index)."""
        self._require_groups()
        self._check_key(namespace, group)
        if not isinstance(criteria, Mapping):
            raise TypeError(f"criteria must be a Mapping, got {type_name(criteria)}")
        if self._state.closed:
            return []
        return [(m.actor_ref, m.metadata_copy())
                for m in self._read(namespace, group, self._backend.match_members, namespace,
                                    group, criteria)]

    def groups(self, namespace: Hashable) -> list[Hashable]:
        """The groups of ``namespace`` with at least one member (any order)."""
        self._require_groups()
        self._check_key(namespace, "")
        if self._state.closed:
            return []
        return self._read(namespace, "", self._backend.groups, namespace)

    def groups_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        """Every ``(namespace, group)`` the actor (or a proxy's actor) is a
        member of."""
        self._require_groups()
        actor_ref = self._ref_arg(actor_ref)
        if self._state.closed:
            return []
        return self._backend.groups_of(actor_ref)

    def count_members(self, namespace: Hashable, group: Hashable) -> int:
        """How many live members the group has."""
        self._require_groups()
        try:
            found = self._backend.count_members(namespace, group)
        except KeyboardInterrupt:  # Ctrl-C, not the key's fault: let it through
            raise
        except BaseException as error:
            raise self._key_error(namespace, group, error) from None
        return 0 if self._state.closed else found

    def dispatch(self, namespace: Hashable, group: Hashable, message: Any) -> int:
        """``tell`` ``message`` to every live member, in join order, in the
        caller's thread; return how many were sent (a member that died after
        the read is skipped). The local pub/sub: Elixir's
        ``Registry.dispatch``. (On a backend with members in other processes,
        one message per remote node, told there to its members.)"""
        if self._fan_out is not None:  # groups: one message per remote node
            return int(self._fan_out.dispatch(namespace, group,
                                              self.members(namespace, group), message))
        sent = 0
        for ref in self.members(namespace, group):
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                continue
            sent += 1
        return sent

    def ask_all(
        self, namespace: Hashable, group: Hashable, message: Any,
        timeout: Optional[float] = None,
    ) -> list[tuple[ActorRefLike, Any]]:
        """Ask every member at once and wait at most ``timeout`` in total
        (``None``: the registry's ``call_timeout``); return
        ``(actor_ref, value)`` in :meth:`members` order.

        A member's exception is its value (``pykka.ActorDeadError`` if it
        died first); a member that did not answer in time has a
        :class:`RegistryTimeoutError` instance as its value. Nothing is
        raised for the whole call (bad arguments aside); an empty group
        gives ``[]``.
        """
        timeout = optional_timeout(timeout, self._state.call_timeout)
        refs = self.members(namespace, group)
        if self._fan_out is not None:  # groups: one ask per remote node
            return list(self._fan_out.ask_all(namespace, group, refs, message, timeout))
        deadline = time.monotonic() + timeout
        asked: list[tuple[Any, Any]] = []
        for ref in refs:
            try:
                asked.append((ref, ref.ask(message, block=False)))
            except pykka.ActorDeadError as error:
                asked.append((ref, error))
        results: list[tuple[ActorRefLike, Any]] = []
        for ref, future in asked:
            if isinstance(future, BaseException):
                results.append((ref, future))
                continue
            try:
                value = future.get(timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                value = RegistryTimeoutError(
                    f"{ref} (a member of {safe_repr(group)} in {safe_repr(namespace)}) "
                    f"did not answer within {timeout}s"
                )
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # the member's own failure: its value
                value = error
            results.append((ref, value))
        return results

    def group_via(self, namespace: Hashable, group: Hashable,
                  strategy: GroupStrategy = "round_robin") -> GroupVia:
        """A handle whose ``tell``/``ask``/``proxy`` reach one live member
        per call, picked by ``strategy``: ``"round_robin"``, ``"random"`` or
        ``"hash"`` (each call then takes ``key=...``; the same key reaches
        the same member while membership is unchanged). With no live member
        a call raises :class:`NotRegisteredError` at once.

        Raises:
            InvalidStrategyError: an unknown strategy.
        """
        self._require_groups()
        self._check_key(namespace, group)
        return GroupVia(self, namespace, group, strategy)

    # -- lifecycle helpers ------------------------------------------------------------

    def await_name(
        self,
        namespace: Hashable,
        service: Hashable = NO_SERVICE,
        timeout: Optional[float] = None,
        *,
        replacing: Any = None,
    ) -> ActorRefLike:
        """Wait until a live actor holds the name and return it; at once if one does.

        ``timeout=None`` waits at most the registry's ``call_timeout``. The
        name may also be given as one ``(namespace, service)`` tuple (then
        pass ``timeout`` by keyword).

        ``replacing=old_ref`` (an actor ref or proxy) waits for a holder that
        is *not* ``old_ref``: the successor of an actor that was just told to
        crash or stop, which may still be alive, and registered, when this is
        called.

        The whole call keeps to ``timeout``, setting up the wait included: a
        server too busy to answer within it ends the call at the deadline
        (with :class:`RegistryTimeoutError`), not after ``call_timeout``;
        ``timeout=0`` is a single check, no wait.

        Raises:
            RegistryTimeoutError: nobody (other than ``replacing``) took the
                name in time.
            RegistryUnavailableError: the registry was stopped meanwhile
                (noticed at once).
            InvalidTimeoutError: ``timeout`` is NaN, negative or not a number
                (``inf`` waits as long as :data:`~pykka_registry._timeouts.MAX_TIMEOUT_S`).
        """
        namespace, service = split_key(namespace, service, "await_name")
        old_urn = None if replacing is None else urn_of(replacing, "replacing")

        def found() -> Optional[ActorRefLike]:
            ref = self.lookup(namespace, service)
            if ref is None or (old_urn is not None and ref.actor_urn == old_urn):
                return None
            return ref

        timeout = optional_timeout(timeout, self._state.call_timeout)
        ref = found()
        if ref is not None:
            return ref
        deadline = time.monotonic() + timeout
        what = "anyone but the actor it replaces" if old_urn is not None else "nobody"
        if self._state.events.is_dispatcher_thread():
            # Called from an event listener: the wake-up event would have to
            # come from this very thread, so poll instead.
            return self._poll_name(found, namespace, service, timeout, deadline, what)
        arrived = threading.Event()

        def listener(event: Event) -> None:
            if isinstance(event, Registered):
                try:
                    wanted = event.service is service or bool(event.service == service)
                except BaseException:  # a hostile __eq__: wake up and look it up instead
                    wanted = True
                if wanted:
                    arrived.set()

        def timed_out() -> RegistryTimeoutError:
            return RegistryTimeoutError(
                f"{what} registered {safe_repr(service)} in namespace "
                f"{safe_repr(namespace)} within {timeout}s"
            )

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out()
        waiters = self._state.waiters
        waiters.add(arrived)  # registry.stop() sets it: we notice at once
        try:
            try:
                # The caller's deadline, not call_timeout, bounds the subscribe.
                subscription = self._subscribe(listener, namespace, False, remaining)
            except RegistryUnavailableError:
                self._raise_if_closed(service, namespace)
                if time.monotonic() >= deadline:  # the server was too busy to answer
                    ref = found()
                    if ref is not None:
                        return ref
                    raise timed_out() from None
                # The server did not answer (busy till just before the
                # deadline, or down with no successor): reads need no server,
                # so poll for the time left.
                return self._poll_name(found, namespace, service, timeout, deadline, what)
            with subscription:
                while True:
                    ref = found()
                    if ref is not None:
                        return ref
                    self._raise_if_closed(service, namespace)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise timed_out()
                    arrived.wait(remaining)
                    arrived.clear()
        finally:
            waiters.discard(arrived)

    def _raise_if_closed(self, service: Hashable, namespace: Hashable) -> None:
        if self._state.closed:
            raise RegistryUnavailableError(
                f"{self._state.name} was stopped while waiting for {safe_repr(service)} in "
                f"namespace {safe_repr(namespace)}"
            )

    def _poll_name(self, found: Callable[[], Optional[ActorRefLike]],
                   namespace: Hashable, service: Hashable, timeout: float,
                   deadline: float, what: str) -> ActorRefLike:
        pause, delay = threading.Event(), 0.0005
        while True:
            ref = found()
            if ref is not None:
                return ref
            self._raise_if_closed(service, namespace)
            if time.monotonic() >= deadline:
                raise RegistryTimeoutError(
                    f"{what} registered {safe_repr(service)} in namespace {safe_repr(namespace)} "
                    f"within {timeout}s"
                )
            pause.wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.01)

    def get_or_start(
        self,
        namespace: Hashable,
        service: Hashable = NO_SERVICE,
        start: Callable[[], Union[pykka.ActorRef[Any], pykka.ActorProxy[Any]]] = NO_SERVICE,
        metadata: Optional[Mapping[Any, Any]] = None,
    ) -> ActorRefLike:
        """The actor holding the name; if none, call ``start()`` (in this thread),
        register what it returns and return it. ``start`` may return an
        :class:`pykka.ActorRef` or a :class:`pykka.ActorProxy` (its
        ``actor_ref`` is registered and returned). The name may also be given
        as one ``(namespace, service)`` tuple: ``get_or_start(("jobs", "w1"),
        Worker.start)``.

        Atomic in this process: concurrent callers for one name run ``start``
        once and all get the same actor. A caller waits at most the registry's
        ``call_timeout`` for another caller's ``start`` (then
        :class:`RegistryTimeoutError`). If ``start`` raises, the exception
        reaches the caller and the name stays free. If another actor took the
        name meanwhile (a plain ``register``, another process), the actor just
        started is stopped and the holder is returned.
        """
        if start is NO_SERVICE or service is NO_SERVICE or (
                not callable(start) and callable(service)):
            # get_or_start((ns, svc), start[, metadata]): the arguments moved left.
            namespace, service, start, metadata = shift_pair_key(
                "get_or_start", namespace, service, start, metadata,
                value_name="start", extra_name="metadata",
                needs="start, the callable that starts the actor")
        if not callable(start):
            raise TypeError(f"start must be callable, got {type_name(start)}")
        ref = self.lookup(namespace, service)
        if ref is not None:
            return ref
        self._check_key(namespace, service)
        own_metadata = self._backend.validate_metadata(metadata)
        with self._state.key_lock(namespace, service, self._state.call_timeout):
            ref = self.lookup(namespace, service)
            if ref is not None:
                return ref
            started = actor_ref_of(start(), "start()'s result")
            try:
                self._call(Register(namespace, service, started, own_metadata))
            except AlreadyRegisteredError as taken:
                started.stop(block=False)
                return taken.existing
            except BaseException:
                started.stop(block=False)
                raise
            return started

    def subscribe(
        self, listener: EventListener, namespace: Optional[Hashable] = None, replay: bool = False
    ) -> Subscription:
        """Call ``listener(event)`` for every :class:`Registered`,
        :class:`MetadataUpdated`, :class:`Unregistered`, :class:`Joined` and
        :class:`Left` event of ``namespace`` (``None``: every namespace), in
        a dispatcher thread.

        With ``replay=True`` the current entries arrive first as
        :class:`Registered` events and the current group members as
        :class:`Joined` events (each group in join order), then the live
        stream, with no gap or duplicate between them.
        """
        return self._subscribe(listener, namespace, replay)

    def _subscribe(self, listener: EventListener, namespace: Optional[Hashable],
                   replay: bool, timeout: Optional[float] = None) -> Subscription:
        """:meth:`subscribe`, waiting at most ``timeout`` (``None``: ``call_timeout``)."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type_name(listener)}")
        if namespace is not None:
            self._check_key(namespace, "")
        subscription = self._state.events.new_subscription(
            listener, namespace, all_namespaces=namespace is None
        )
        try:
            self._call(Subscribe(subscription, replay), timeout)
        except BaseException:
            subscription.cancel()  # the server may still apply it after a timeout
            raise
        return subscription

    def sync(self, timeout: Optional[float] = None) -> None:
        """Return once every write and death notice queued before this call
        has been applied, so listings (``count``, ``match``...) reflect every
        actor that had stopped by then. ``lookup`` never needs this.

        ``timeout`` (default ``call_timeout``) must be ``> 0``: only the
        server can tell that it has caught up, and its answer takes time.

        Raises:
            RegistryUnavailableError: the server did not answer in time.
            InvalidTimeoutError: ``timeout`` is zero, negative, NaN or not a
                number (refused at once; nothing is sent).
        """
        self._call(Call(_nothing),
                   None if timeout is None else check_timeout(timeout, positive=True))

    def run_in_server(self, function: Callable[[Backend], T]) -> T:
        """Run ``function(backend)`` in the server thread and return its
        result (or raise what it raised); ``backend`` is :attr:`backend`.
        For tests, tools and benchmarks.

        The server handles one message at a time, so no write sent through
        this registry runs meanwhile: the function sees every write queued
        before it and none queued after. It runs without the write lock
        (it may wait, say for an actor to stop), so a dying actor's
        clean-up may still change the backend meanwhile. A write it makes
        straight into the backend publishes no event.

        Whatever ``function`` raises is raised here, in the caller's thread,
        ``BaseException`` included (``SystemExit``, ``KeyboardInterrupt``):
        the server and every other actor live on.

        Raises:
            RegistryUnavailableError: the server did not answer within
                ``call_timeout`` (the function may still run later).
        """
        def on_backend(state: RegistryState) -> T:
            return function(state.backend)

        result = self._call(Call(on_backend))
        if type(result) is CallRaised:
            raise result.error
        answer: T = result
        return answer

    # -- inspection ---------------------------------------------------------------------

    def stats(self) -> RegistryStats:
        """Counters of this registry, read without stopping anything."""
        state = self._state
        groups, memberships = self._group_totals()
        return RegistryStats(
            names=self._backend.count(),
            namespaces=len(self._backend.namespaces()),
            backend=self._backend.name,
            uptime_s=time.monotonic() - state.started_at,
            registrations_total=state.registrations,
            unregistrations_total=state.unregistrations,
            deaths_reaped_total=state.deaths_reaped,
            pending_deaths=len(state.pending_deaths),
            server_restarts=max(0, state.server_starts - 1),
            subscribers_active=state.events.active,
            groups=groups,
            memberships=memberships,
        )

    def health_check(self) -> HealthReport:
        """Is the registry working? See :class:`HealthReport`."""
        state = self._state
        problems = []
        server = state.server_ref
        server_alive = server is not None and server.is_alive()
        try:
            backend_health = dict(self._backend.health())
        except Exception as error:
            backend_health = {"status": "unhealthy", "error": repr(error)}
        status: HealthStatus = "healthy"
        if state.closed:
            status = "unhealthy"
            problems.append("the registry is stopped")
        elif not server_alive:
            status = "unhealthy"
            problems.append("the server actor is not running")
        backend_status = backend_health.get("status", "healthy")
        if backend_status == "unhealthy":
            status = "unhealthy"
            problems.append(f"backend {self._backend.name} is unhealthy")
        elif backend_status == "degraded" and status == "healthy":
            status = "degraded"
            problems.append(f"backend {self._backend.name} is degraded")
        try:
            groups, memberships = self._group_totals()
        except Exception:  # a third-party backend's bug: report, don't fail
            groups = memberships = 0
        dispatcher_alive = state.events.dispatcher_alive()
        if not dispatcher_alive and not state.closed:
            status = "unhealthy"
            problems.append("the event dispatcher thread has stopped: no listener gets events")
        if len(state.pending_deaths) > 1000 and status == "healthy":
            status = "degraded"
            problems.append(f"{len(state.pending_deaths)} death notices wait for the server")
        return HealthReport(
            status=status,
            backend=self._backend.name,
            uptime_s=time.monotonic() - state.started_at,
            backend_health=backend_health,
            server_alive=server_alive,
            problems=tuple(problems),
            groups=groups,
            memberships=memberships,
            dispatcher_alive=dispatcher_alive,
        )

    def observe(self, host: str = "127.0.0.1", port: int = 0, token: Optional[str] = None) -> Any:
        """Start an observer for this registry: a live web page, a JSON API
        and Prometheus metrics, served in a background thread (see
        :func:`pykka_registry.observer.serve`, which takes the same keywords
        and also shows several registries). Returns the
        :class:`~pykka_registry.observer.Observer`: open ``observer.url``, call
        ``observer.stop()`` (or use it as a context manager) when done.

        Loopback by default; another host requires a token (one is generated
        when none is given). Nothing about observation runs before this call.
        """
        from pykka_registry.observer import serve

        return serve(self, host=host, port=port, token=token)


if TYPE_CHECKING:  # mypy checks here that a Registry is what a supervisor needs
    def _supervisable(registry: Registry) -> SupervisedRegistry:
        return registry
