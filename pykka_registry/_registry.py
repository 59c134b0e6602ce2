"""The facade: :class:`Registry`, the object users hold.

Guarantees
----------
* The facade keeps no registry state of its own: reads go straight to the
  backend in the caller's thread, writes go to the server actor with ``ask``.
* **Reads never queue behind the server.** ``lookup`` is two dict reads in
  the caller's thread, with no lock and no liveness check. Read-your-writes:
  once a write returns, every thread sees it.
* **Death is complete before Pykka reports it.** A dying actor's own thread
  removes its names (see :mod:`pykka_registry._server`) before Pykka sets its
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
  the caller's thread before anything is sent.
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
import threading
import time
from collections.abc import Hashable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Callable, Optional, Union

import pykka

from pykka_registry import _deathwatch
from pykka_registry._backend_names import resolve_backend
from pykka_registry._coerce import NO_SERVICE, actor_ref_of, split_key, urn_of
from pykka_registry._deathwatch import is_alive as _is_alive
from pykka_registry._errors import (
    AlreadyRegisteredError,
    DuplicateServiceError,
    InvalidActorRefError,
    InvalidBatchItemError,
    InvalidKeyError,
    InvalidMetadataError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
)
from pykka_registry._events import Event, EventListener, Registered, Subscription
from pykka_registry._server import (
    Call,
    ClearNamespace,
    Register,
    RegisterMany,
    RegistryServer,
    RegistryState,
    Subscribe,
    Unregister,
    UnregisterMany,
    UpdateMetadata,
)
from pykka_registry._stats import HealthReport, RegistryStats
from pykka_registry._via import Via
from pykka_registry.backends.base import Backend, Entry, validate_backend
from pykka_registry.backends.memory import LocalTables, MemoryBackend

__all__ = ["Registry"]


def _nothing(state: RegistryState) -> None:
    return None


def _short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not replace our error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 200 else text[:197] + "..."


def _seen_before(seen: set[Any], service: Any) -> bool:
    """``service in seen`` (then add it), with a hostile ``__eq__`` turned
    into :class:`InvalidKeyError`."""
    try:
        if service in seen:
            return True
        seen.add(service)
    except Exception as error:
        raise InvalidKeyError(
            f"service {type(service).__name__} cannot be compared: {type(error).__name__}"
        ) from None
    return False

_registry_counter = itertools.count(1)

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
        self._own_supervisor: Optional[Any] = None  # set by start()
        # Entries of other processes are dropped when their node releases
        # them; until then a remote ref may already know its actor is gone.
        self._check_alive = bool(getattr(state.backend, "distributed", False))
        self.lookup = self._fast_lookup()  # type: ignore[method-assign,assignment]

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
        if call_timeout is None or not call_timeout > 0:
            raise ValueError(f"call_timeout must be a positive number of seconds, got "
                             f"{call_timeout!r}")
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
        from pykka_registry._supervisor import Supervisor

        registry = cls.new(backend, backend_opts, call_timeout=call_timeout, name=name)
        try:
            registry._own_supervisor = Supervisor.start(
                children=[registry.child_spec()],
                max_restarts=max_restarts,
                max_seconds=max_seconds,
                name=f"{registry._state.name}-supervisor",
                daemon=True,
            )
        except BaseException:
            registry._close()
            raise
        return registry

    def child_spec(self, id: Hashable = "registry", shutdown: float = 5.0) -> Any:
        """A :class:`~pykka_registry.ChildSpec` that runs this registry's server
        in a supervision tree of yours. The tree restarts the server on the
        same backend, so a restart loses no registration. Put it before the
        children that use the registry (children start in order and stop in
        reverse order)."""
        from pykka_registry._supervisor import ChildRetired, ChildSpec, current_supervisor

        def start_server() -> pykka.ActorRef[Any]:
            if self._state.closed:
                # Stopped (perhaps while its server was being restarted): tell
                # the tree to drop this child rather than count a failure.
                raise ChildRetired(f"{self._state.name} is stopped")
            self._state.owner = (current_supervisor(), id)
            return RegistryServer.start(self._state)

        return ChildSpec(id=id, start=start_server, restart="permanent", shutdown=shutdown)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the registry's server and its supervisor; return once they have
        stopped. Registered actors keep running; their names are gone with the
        registry. Idempotent. Further writes raise
        :class:`RegistryUnavailableError`."""
        timeout = self._state.call_timeout if timeout is None else timeout
        with self._stop_lock:
            if self._state.closed:
                return
            self._state.closed = True
            with self._state.server_changed:
                self._state.server_changed.notify_all()
            owner = self._state.owner
            server = self._state.server_ref
            try:
                if self._own_supervisor is not None:
                    self._own_supervisor.stop(timeout=timeout)
                elif owner is not None and owner[0] is not None and owner[0].is_alive():
                    owner[0].delete_child(owner[1], timeout=timeout)
                elif server is not None:
                    server.stop(block=True, timeout=timeout)
            except (pykka.ActorDeadError, pykka.Timeout, RegistryError):
                pass
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
    def call_timeout(self) -> float:
        """How long a call waits for the server before giving up, in seconds."""
        return self._state.call_timeout

    @property
    def server_owner(self) -> Optional[tuple[Any, Hashable]]:
        """``(supervisor, child_id)`` of the tree that runs the server, once started."""
        return self._state.owner

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
        state = self._state
        deadline = time.monotonic() + (state.call_timeout if timeout is None else timeout)
        while True:
            if state.closed:
                raise RegistryUnavailableError(f"{state.name} is stopped")
            server = state.server_ref
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RegistryUnavailableError(
                    f"{state.name}: the server did not answer within the call timeout"
                )
            if server is None:
                state.wait_for_new_server(None, remaining)
                continue
            try:
                return server.ask(message, timeout=remaining)
            except pykka.ActorDeadError:
                if server.is_alive():
                    raise  # raised by the handler itself (it asked a dead actor)
                # The server died before handling the message: wait for the
                # supervisor to start its successor, then send again.
                owner = state.owner[0] if state.owner else None
                if owner is None or not owner.is_alive():
                    raise RegistryUnavailableError(
                        f"{state.name}: the server is stopped and no supervisor restarts it"
                    ) from None
                state.wait_for_new_server(server, max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                raise RegistryUnavailableError(
                    f"{state.name}: the server did not answer within {state.call_timeout}s; "
                    "the call may or may not have been applied"
                ) from None

    def _check_key(self, namespace: Any, service: Any) -> None:
        self._backend.validate_key(namespace, service)

    # -- writes -----------------------------------------------------------------------

    def register(
        self,
        namespace: Hashable,
        service: Hashable,
        actor_ref: Union[pykka.ActorRef[Any], pykka.ActorProxy[Any]],
        metadata: Optional[Mapping[Any, Any]] = None,
    ) -> None:
        """Register ``actor_ref`` as ``service`` in ``namespace``. A
        :class:`pykka.ActorProxy` stands for its ``actor_ref``.

        The same actor registering the same name again replaces its metadata.
        The name is released by :meth:`unregister` or when the actor dies.

        Raises:
            AlreadyRegisteredError: another live actor holds the name.
            ActorNotAliveError: the actor has stopped.
            InvalidKeyError, InvalidActorRefError, InvalidMetadataError: bad input.
            RegistryUnavailableError: the server did not answer in time.
        """
        self._check_key(namespace, service)
        actor_ref = actor_ref_of(actor_ref)
        own_metadata = self._backend.validate_metadata(metadata)
        self._call(Register(namespace, service, actor_ref, own_metadata))

    def unregister(self, namespace: Hashable, service: Hashable) -> None:
        """Release the name. Idempotent: a missing name is not an error."""
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
        batch = []
        seen: set[Any] = set()
        for item in items:
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise InvalidBatchItemError(
                    "register_many items must be (service, actor_ref) or "
                    f"(service, actor_ref, metadata) tuples, got {_short_repr(item)}"
                )
            service, actor_ref = item[0], item[1]
            metadata = item[2] if len(item) == 3 else None
            self._check_key(namespace, service)
            if _seen_before(seen, service):
                raise DuplicateServiceError(namespace, service)
            if not isinstance(actor_ref, pykka.ActorRef):
                raise InvalidActorRefError(
                    f"actor_ref for {service!r} must be a pykka.ActorRef, got "
                    f"{type(actor_ref).__name__}"
                )
            try:
                own_metadata = self._backend.validate_metadata(metadata)
            except InvalidMetadataError as error:
                raise InvalidMetadataError(f"metadata for {service!r}: {error}") from None
            batch.append((service, actor_ref, own_metadata))
        if batch:
            self._call(RegisterMany(namespace, tuple(batch)))

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
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> None:
        """Replace (never merge) the metadata of a registered name.

        Raises:
            NotRegisteredError: no one holds the name.
            InvalidMetadataError: ``metadata`` is not a mapping.
        """
        self._check_key(namespace, service)
        own_metadata = self._backend.validate_metadata(metadata)
        self._call(UpdateMetadata(namespace, service, own_metadata))

    def stop_namespace(self, namespace: Hashable, timeout: float = 5.0) -> None:
        """Remove every entry of ``namespace`` and stop the actors that held
        them; return once they have stopped. Other namespaces keep their
        entries (an actor stopped here also loses names it held elsewhere).

        Raises:
            RegistryTimeoutError: some actor had not stopped within ``timeout``.
        """
        self._check_key(namespace, "")
        deadline = time.monotonic() + timeout
        removed: list[Entry] = self._call(ClearNamespace(namespace))
        actors = {e.actor_ref.actor_urn: e.actor_ref for e in removed}
        for ref in actors.values():
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        late = [
            ref for ref in actors.values()
            if not ref.actor_stopped.wait(max(0.0, deadline - time.monotonic()))
        ]
        if late:
            raise RegistryTimeoutError(
                f"{len(late)} actor(s) of namespace {namespace!r} did not stop within {timeout}s"
            )

    # -- reads (caller's thread, never queued) --------------------------------------

    def lookup(
        self, namespace: Hashable, service: Hashable = NO_SERVICE
    ) -> Optional[pykka.ActorRef[Any]]:
        """The actor registered under the name, or ``None``. The name may
        also be given as one ``(namespace, service)`` tuple.

        Runs in the caller's thread: two dict reads, no lock, no message. The
        actor is alive: a dead actor's names are removed before Pykka reports
        it stopped. (Each registry binds a specialised copy of this method
        as an instance attribute; this is the reference version.)
        """
        if service is NO_SERVICE:
            namespace, service = split_key(namespace, service, "lookup")
        try:
            entry = self._backend.get(namespace, service)
        except Exception:
            self._check_key(namespace, service)
            raise
        if entry is None or self._state.closed:
            return None
        if self._check_alive and not _is_alive(entry.actor_ref):
            return None
        return entry.actor_ref

    def _fast_lookup(self) -> Callable[[Hashable, Hashable], Optional[pykka.ActorRef[Any]]]:
        """:meth:`lookup` with every attribute resolved once (the hot path)."""
        if self._check_alive or not isinstance(self._backend, LocalTables):
            return self._generic_lookup
        names_get = self._backend._names.get
        check_key = self._check_key
        empty: dict[Hashable, Any] = {}
        no_service = NO_SERVICE

        def lookup(namespace: Hashable,
                   service: Hashable = no_service) -> Optional[pykka.ActorRef[Any]]:
            if service is no_service:
                namespace, service = split_key(namespace, service, "lookup")
            try:
                entry = names_get(namespace, empty).get(service)
            except Exception:
                check_key(namespace, service)
                raise
            return None if entry is None else entry.actor_ref

        lookup.__doc__ = Registry.lookup.__doc__
        return lookup

    def _generic_lookup(self, namespace: Hashable, service: Hashable = NO_SERVICE
                        ) -> Optional[pykka.ActorRef[Any]]:
        return Registry.lookup(self, namespace, service)

    def _closed_lookup(self, namespace: Hashable, service: Hashable = NO_SERVICE
                       ) -> Optional[pykka.ActorRef[Any]]:
        if service is NO_SERVICE:
            namespace, service = split_key(namespace, service, "lookup")
        self._check_key(namespace, service)
        return None

    def lookup_with_metadata(
        self, namespace: Hashable, service: Hashable = NO_SERVICE
    ) -> Optional[tuple[pykka.ActorRef[Any], dict[Any, Any]]]:
        """``(actor_ref, metadata)`` for the name, or ``None``. The metadata is a
        copy (``{}`` when none was given): changing it changes nothing stored.
        The name may also be given as one ``(namespace, service)`` tuple."""
        namespace, service = split_key(namespace, service, "lookup_with_metadata")
        try:
            entry = self._backend.get(namespace, service)
        except Exception:
            self._check_key(namespace, service)
            raise
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
        return self._backend.services(namespace)

    def find_services_by_metadata(
        self, namespace: Hashable, predicate: Callable[[Mapping[Any, Any]], bool]
    ) -> list[tuple[Hashable, Any, dict[Any, Any]]]:
        """``(service, actor_ref, metadata)`` for every entry of ``namespace``
        whose metadata satisfies ``predicate`` (called in the caller's thread with
        a read-only view or a copy of each entry's metadata; it scans the
        namespace: prefer :meth:`match`, which an indexed backend answers
        from its index)."""
        self._check_key(namespace, "")
        if not callable(predicate):
            raise TypeError(f"predicate must be callable, got {type(predicate).__name__}")
        found: list[tuple[Hashable, Any, dict[Any, Any]]] = []
        if self._state.closed:
            return found
        for entry in self._backend.entries(namespace):
            if self._check_alive and not _is_alive(entry.actor_ref):
                continue
            # A flat entry can be shown read-only; copy only what matches.
            view = MappingProxyType(entry.metadata) if entry.flat else entry.metadata_copy()
            if predicate(view):
                found.append(entry.as_match())
        return found

    def match(
        self, namespace: Hashable, criteria: Mapping[Any, Any]
    ) -> list[tuple[Hashable, Any, dict[Any, Any]]]:
        """``(service, actor_ref, metadata)`` for every entry of ``namespace``
        whose metadata has, for each ``key: value`` of ``criteria``,
        ``metadata[key] == value``, or ``value in metadata[key]`` when that field
        is a list, tuple, set or frozenset. Empty criteria match every entry."""
        self._check_key(namespace, "")
        if not isinstance(criteria, Mapping):
            raise TypeError(f"criteria must be a Mapping, got {type(criteria).__name__}")
        if self._state.closed:
            return []
        return [
            entry.as_match()
            for entry in self._backend.match(namespace, criteria)
            if not self._check_alive or _is_alive(entry.actor_ref)
        ]

    def count(self, namespace: Optional[Hashable] = None) -> int:
        """How many names ``namespace`` holds; with ``None``, all namespaces."""
        try:
            found = self._backend.count(namespace)
        except Exception:
            self._check_key(namespace, "")
            raise
        return 0 if self._state.closed else found

    def keys_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        """Every ``(namespace, service)`` the actor holds here."""
        if not hasattr(actor_ref, "actor_urn"):
            raise InvalidActorRefError(
                f"actor_ref must be a pykka.ActorRef, got {type(actor_ref).__name__}"
            )
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

    # -- lifecycle helpers ------------------------------------------------------------

    def await_name(
        self,
        namespace: Hashable,
        service: Hashable = NO_SERVICE,
        timeout: Optional[float] = None,
        *,
        replacing: Any = None,
    ) -> pykka.ActorRef[Any]:
        """Wait until a live actor holds the name and return it; at once if one does.

        ``timeout=None`` waits at most the registry's ``call_timeout``. The
        name may also be given as one ``(namespace, service)`` tuple (then
        pass ``timeout`` by keyword).

        ``replacing=old_ref`` (an actor ref or proxy) waits for a holder that
        is *not* ``old_ref``: the successor of an actor that was just told to
        crash or stop, which may still be alive, and registered, when this is
        called.

        Raises:
            RegistryTimeoutError: nobody (other than ``replacing``) took the
                name in time.
        """
        namespace, service = split_key(namespace, service, "await_name")
        old_urn = None if replacing is None else urn_of(replacing, "replacing")

        def found() -> Optional[pykka.ActorRef[Any]]:
            ref = self.lookup(namespace, service)
            if ref is None or (old_urn is not None and ref.actor_urn == old_urn):
                return None
            return ref

        ref = found()
        if ref is not None:
            return ref
        timeout = self._state.call_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        what = "anyone but the actor it replaces" if old_urn is not None else "nobody"
        if self._state.events.is_dispatcher_thread():
            # Called from an event listener: the wake-up event would have to
            # come from this very thread, so poll instead.
            return self._poll_name(found, namespace, service, timeout, deadline, what)
        arrived = threading.Event()

        def listener(event: Event) -> None:
            if isinstance(event, Registered) and event.service == service:
                arrived.set()

        with self.subscribe(listener, namespace=namespace):
            while True:
                ref = found()
                if ref is not None:
                    return ref
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._state.closed:
                    raise RegistryTimeoutError(
                        f"{what} registered {service!r} in namespace {namespace!r} "
                        f"within {timeout}s"
                    )
                arrived.wait(remaining)
                arrived.clear()

    def _poll_name(self, found: Callable[[], Optional[pykka.ActorRef[Any]]],
                   namespace: Hashable, service: Hashable, timeout: float,
                   deadline: float, what: str) -> pykka.ActorRef[Any]:
        pause, delay = threading.Event(), 0.0005
        while True:
            ref = found()
            if ref is not None:
                return ref
            if time.monotonic() >= deadline or self._state.closed:
                raise RegistryTimeoutError(
                    f"{what} registered {service!r} in namespace {namespace!r} within {timeout}s"
                )
            pause.wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.01)

    def get_or_start(
        self,
        namespace: Hashable,
        service: Hashable,
        start: Callable[[], Union[pykka.ActorRef[Any], pykka.ActorProxy[Any]]],
        metadata: Optional[Mapping[Any, Any]] = None,
    ) -> pykka.ActorRef[Any]:
        """The actor holding the name; if none, call ``start()`` (in this thread),
        register what it returns and return it. ``start`` may return an
        :class:`pykka.ActorRef` or a :class:`pykka.ActorProxy` (its
        ``actor_ref`` is registered and returned).

        Atomic in this process: concurrent callers for one name run ``start``
        once and all get the same actor. A caller waits at most the registry's
        ``call_timeout`` for another caller's ``start`` (then
        :class:`RegistryTimeoutError`). If ``start`` raises, the exception
        reaches the caller and the name stays free. If another actor took the
        name meanwhile (a plain ``register``, another process), the actor just
        started is stopped and the holder is returned.
        """
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
        :class:`MetadataUpdated` and :class:`Unregistered` event of
        ``namespace`` (``None``: every namespace), in a dispatcher thread.

        With ``replay=True`` the current entries arrive first as
        :class:`Registered` events, then the live stream, with no gap or
        duplicate between them.
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {type(listener).__name__}")
        if namespace is not None:
            self._check_key(namespace, "")
        subscription = self._state.events.new_subscription(
            listener, namespace, all_namespaces=namespace is None
        )
        try:
            self._call(Subscribe(subscription, replay))
        except BaseException:
            subscription.cancel()  # the server may still apply it after a timeout
            raise
        return subscription

    def sync(self, timeout: Optional[float] = None) -> None:
        """Return once every write and death notice queued before this call
        has been applied, so listings (``count``, ``match``...) reflect every
        actor that had stopped by then. ``lookup`` never needs this.

        Raises:
            RegistryUnavailableError: the server did not answer in time.
        """
        self._call(Call(_nothing), timeout)

    def run_in_server(self, function: Callable[[RegistryState], Any]) -> Any:
        """Run ``function(state)`` in the server thread, atomically with respect
        to every write, and return its result. For tests and tools."""
        return self._call(Call(function))

    # -- inspection ---------------------------------------------------------------------

    def stats(self) -> RegistryStats:
        """Counters of this registry, read without stopping anything."""
        state = self._state
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
        status = "healthy"
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
