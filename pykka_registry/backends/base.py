"""The ``Backend`` behaviour: what a store of registrations must provide.

Who calls what
--------------
* **Writes** (:meth:`Backend.register`, :meth:`Backend.unregister`,
  :meth:`Backend.update_metadata`, :meth:`Backend.remove_actor`,
  :meth:`Backend.clear_namespace`) are called by the registry's server actor
  only, one at a time. A backend need not guard writes against each other.
* **Reads** (:meth:`Backend.get`, :meth:`Backend.services`,
  :meth:`Backend.entries`, :meth:`Backend.match`, :meth:`Backend.count`,
  :meth:`Backend.keys_of`, :meth:`Backend.namespaces`) are called from any
  thread, concurrently with a write. Each must return a consistent answer: the
  state before a write or after it, never a torn mix, and never raise because
  a write ran meanwhile.

Liveness is not the backend's business beyond :meth:`Backend.register`: an
entry may name an actor that has just died until the server processes its
death notice. The registry filters such entries out of ``lookup``.

A backend may accept fewer key or metadata types than "anything hashable" and
"any mapping" (a networked backend must serialise them). It says so through
:attr:`Backend.key_types` / :attr:`Backend.json_metadata_only`, and rejects
others in :meth:`Backend.validate_key` / :meth:`Backend.validate_metadata`;
the conformance suite in :mod:`pykka_registry.testing` honours that.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Mapping
from typing import Any, Callable, ClassVar, Optional, Protocol

import attrs
import pykka

from pykka_registry._errors import InvalidKeyError
from pykka_registry._metadata import copy_metadata, is_flat, metadata_matches

__all__ = ["Backend", "BackendContext", "Entry", "validate_backend"]


class BackendContext(Protocol):
    """What :meth:`Backend.start` receives: the registry's side of the deal.

    For backends whose data also changes from elsewhere (another process, a
    change feed), this is how such changes enter the registry in order.
    """

    #: The registry's label (for thread names and logs).
    name: str
    #: How long a registry call may take, in seconds: bound your own waits by it.
    call_timeout: float
    #: The event bus: ``events.active`` is true while anyone listens; then
    #: ``events.publish(event)`` (a :class:`~pykka_registry.Registered`,
    #: :class:`~pykka_registry.MetadataUpdated` or
    #: :class:`~pykka_registry.Unregistered`), from the server thread only.
    events: Any

    def submit(self, function: Callable[[Any], Any]) -> None:
        """Run ``function(context)`` in the server thread, serialised with
        every write, without waiting; exceptions are logged."""


@attrs.define(frozen=True, eq=False)
class Entry:
    """One registration, as a backend stores it. Immutable; crosses threads.

    ``metadata`` is the registry's own copy and is never mutated; hand it to
    users only through :meth:`metadata_copy`.
    """

    namespace: Hashable
    service: Hashable
    actor_ref: Any  # pykka.ActorRef, or a remote reference for networked backends
    metadata: Mapping[Any, Any]
    flat: bool = attrs.field(default=True)

    @classmethod
    def create(
        cls, namespace: Hashable, service: Hashable, actor_ref: Any, metadata: Mapping[Any, Any]
    ) -> Entry:
        """An entry for metadata that is already the registry's own copy."""
        return cls(namespace, service, actor_ref, metadata, is_flat(metadata))

    def metadata_copy(self) -> dict[Any, Any]:
        """A copy of the metadata the caller may change freely."""
        if self.flat:
            return dict(self.metadata)
        return copy_metadata(self.metadata)

    def as_match(self) -> tuple[Hashable, Any, dict[Any, Any]]:
        """The ``(service, actor_ref, metadata)`` triple that queries return."""
        return (self.service, self.actor_ref, self.metadata_copy())


class Backend(abc.ABC):
    """Abstract base class of registry backends. See the module docstring."""

    #: Short name shown in stats and health reports.
    name: ClassVar[str] = "backend"
    #: ``None``: any hashable key. Otherwise the leaf types keys may be built
    #: from (tuples of them are allowed too).
    key_types: ClassVar[Optional[tuple[type, ...]]] = None
    #: True when metadata must be JSON-representable.
    json_metadata_only: ClassVar[bool] = False
    #: True when entries may name actors of other processes.
    distributed: ClassVar[bool] = False

    # -- validation (caller's thread) ---------------------------------------

    def validate_key(self, namespace: Any, service: Any) -> None:
        """Raise :class:`InvalidKeyError` unless both parts can be stored."""
        for part, what in ((namespace, "namespace"), (service, "service")):
            try:
                hash(part)
            except TypeError:
                raise InvalidKeyError(
                    f"{what} must be hashable, got {type(part).__name__}: {part!r}"
                ) from None

    def validate_metadata(self, metadata: Any) -> dict[Any, Any]:
        """Return the registry's own copy of ``metadata``, or raise
        :class:`~pykka_registry.InvalidMetadataError`."""
        return copy_metadata(metadata)

    # -- lifecycle -----------------------------------------------------------

    def start(self, context: BackendContext) -> None:  # noqa: B027 - optional hook
        """Called once by the registry before first use, in the caller's thread.

        ``context`` (a :class:`BackendContext`) gives networked backends what
        they need of the registry (a way to apply outside changes in order and
        publish their events); in-memory backends ignore it.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Called once when the registry stops. Must not raise."""

    # -- writes (server thread only) ----------------------------------------

    @abc.abstractmethod
    def register(self, entry: Entry, is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        """Store ``entry``.

        If the name is held by another actor for which ``is_alive`` is true,
        raise :class:`~pykka_registry.AlreadyRegisteredError` and change
        nothing. Otherwise replace whatever held the name (the same actor, whose
        metadata is replaced, or a dead one) and return the replaced entry, or
        ``None`` if the name was free.
        """

    @abc.abstractmethod
    def unregister(
        self, namespace: Hashable, service: Hashable, actor_ref: Any = None
    ) -> Optional[Entry]:
        """Remove the name and return its entry, or ``None`` if absent.

        With ``actor_ref``, remove it only if that actor holds it (so a late
        death notice never removes a newer holder's name).
        """

    @abc.abstractmethod
    def update_metadata(
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> Entry:
        """Replace the metadata of a name and return the new entry.

        Raises :class:`~pykka_registry.NotRegisteredError` if it is absent.
        """

    @abc.abstractmethod
    def remove_actor(self, actor_ref: Any) -> list[Entry]:
        """Remove every name ``actor_ref`` holds; return the removed entries."""

    def clear_namespace(self, namespace: Hashable) -> list[Entry]:
        """Remove every entry of ``namespace``; return them."""
        removed = []
        for entry in self.entries(namespace):
            gone = self.unregister(entry.namespace, entry.service, entry.actor_ref)
            if gone is not None:
                removed.append(gone)
        return removed

    # -- reads (any thread) ---------------------------------------------------

    @abc.abstractmethod
    def get(self, namespace: Hashable, service: Hashable) -> Optional[Entry]:
        """The entry under the name, or ``None``. Must be fast: it is ``lookup``."""

    @abc.abstractmethod
    def services(self, namespace: Hashable) -> list[Hashable]:
        """The service names registered in ``namespace``."""

    @abc.abstractmethod
    def entries(self, namespace: Hashable) -> list[Entry]:
        """A snapshot of the entries of ``namespace``."""

    @abc.abstractmethod
    def count(self, namespace: Optional[Hashable] = None) -> int:
        """How many entries ``namespace`` holds; with ``None``, all of them."""

    @abc.abstractmethod
    def keys_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        """Every ``(namespace, service)`` held by ``actor_ref``."""

    @abc.abstractmethod
    def namespaces(self) -> list[Hashable]:
        """The namespaces that hold at least one entry."""

    def match(self, namespace: Hashable, criteria: Mapping[Any, Any]) -> list[Entry]:
        """Entries of ``namespace`` whose metadata satisfies ``criteria``.

        The default scans :meth:`entries`; an indexed backend overrides it.
        """
        return [e for e in self.entries(namespace) if metadata_matches(e.metadata, criteria)]

    def health(self) -> Mapping[str, Any]:
        """Backend-specific health facts; ``{"status": "degraded"}`` or
        ``{"status": "unhealthy"}`` lowers the registry's health status."""
        return {"status": "healthy"}

    def owns(self, actor_ref: Any) -> bool:
        """Fast check, called in every dying actor's thread: might ``actor_ref``
        hold a name here? (A false positive costs a message; a false negative
        leaves a dead name behind, so when unsure return True.)"""
        return bool(self.keys_of(actor_ref))


_REQUIRED = tuple(
    name for name, value in vars(Backend).items() if getattr(value, "__isabstractmethod__", False)
)
_OPTIONAL = ("validate_key", "validate_metadata", "start", "close", "match", "health", "owns",
             "clear_namespace")


def validate_backend(obj: Any) -> None:
    """Check that ``obj`` (a backend class or instance) provides every method.

    A :class:`Backend` subclass need only implement the abstract methods; an
    object that does not subclass it (duck typing) must provide all of them.

    Raises:
        TypeError: naming every missing method.
    """
    if isinstance(obj, type) and issubclass(obj, Backend):
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
    elif isinstance(obj, Backend):
        missing = sorted(getattr(type(obj), "__abstractmethods__", ()))
    else:
        missing = [
            name for name in (*_REQUIRED, *_OPTIONAL) if not callable(getattr(obj, name, None))
        ]
    if missing:
        what = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise TypeError(f"{what} is not a complete registry backend; missing: {', '.join(missing)}")


def is_actor_ref(obj: Any) -> bool:
    """True for a local :class:`pykka.ActorRef`."""
    return isinstance(obj, pykka.ActorRef)
