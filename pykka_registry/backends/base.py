"""The ``Backend`` behaviour: what a store of registrations must provide.

Who calls what
--------------
* **Writes** are called one at a time, under the registry's write lock, so a
  backend need not guard writes against each other:
  :meth:`Backend.register`, :meth:`Backend.register_many`,
  :meth:`Backend.unregister`, :meth:`Backend.unregister_many`,
  :meth:`Backend.update_metadata` and :meth:`Backend.clear_namespace` by the
  registry's server thread; :meth:`Backend.remove_actor` **in the dying
  actor's thread**, before Pykka reports the actor stopped. ``remove_actor``
  must therefore be quick and must not block: no I/O, no waiting for another
  actor (a networked backend drops the names from its local copy and leaves
  the remote release to a thread of its own or to
  :meth:`BackendContext.submit`).
* A backend that waits on I/O inside a server-thread write wraps the wait in
  ``with context.unlocked():`` so that death clean-ups are not held up, and
  re-checks afterwards what the wait may have changed (the actor being
  registered may have died: then store nothing and raise
  :class:`~pykka_registry.ActorNotAliveError`).
* A backend never publishes events. What it changes on its own account
  (another process's claim learnt from a change feed or while writing, a
  name of its own lost) it reports as :class:`Change` values: a function
  given to :meth:`BackendContext.submit` returns them, a write keeps them
  for :meth:`Backend.take_changes`. The registry turns them into events
  under the write lock, in order with every other event.
* **Reads** (:meth:`Backend.get`, :meth:`Backend.services`,
  :meth:`Backend.entries`, :meth:`Backend.match`, :meth:`Backend.count`,
  :meth:`Backend.keys_of`, :meth:`Backend.namespaces`) are called from any
  thread, concurrently with a write. Each must return a consistent answer: the
  state before a write or after it, never a torn mix, and never raise because
  a write ran meanwhile.

Groups
------
A backend that keeps groups (many actors under one key) sets
:attr:`Backend.supports_groups` and implements the group methods:
writes :meth:`Backend.join`, :meth:`Backend.leave` and
:meth:`Backend.clear_namespace_groups` (server thread, under the write lock),
:meth:`Backend.leave_all` (the dying actor's thread, right after
:meth:`Backend.remove_actor`, under the write lock: quick, no I/O), and
reads :meth:`Backend.members`, :meth:`Backend.groups`,
:meth:`Backend.groups_of`, :meth:`Backend.count_members`,
:meth:`Backend.match_members` and :meth:`Backend.group_totals` (any thread,
consistent snapshots). Members are kept in join order; joining again
replaces the member's metadata and keeps its place. A backend without groups
(``supports_groups = False``, the default) need implement none of them: the
registry refuses group calls with
:class:`~pykka_registry.GroupsNotSupportedError`.

Liveness is not the backend's business beyond :meth:`Backend.register`:
the registry calls :meth:`Backend.remove_actor` for every local death before
the actor is reported stopped, so reads never check whether an entry's actor
is alive (for a networked backend, entries of other processes leave the local
copy when that process releases them or its lease lapses).

A backend may accept fewer key or metadata types than "anything hashable" and
"any mapping" (a networked backend must serialise them). It says so through
:attr:`Backend.key_types` / :attr:`Backend.json_metadata_only`, and rejects
others in :meth:`Backend.validate_key` / :meth:`Backend.validate_metadata`;
the conformance suite in :mod:`pykka_registry.testing` honours that.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Callable, ClassVar, Optional, Protocol

import attrs
import pykka

from pykka_registry._errors import (
    AlreadyRegisteredError,
    GroupsNotSupportedError,
    InvalidKeyError,
    safe_repr,
    type_name,
)
from pykka_registry._events import EXPIRED, UnregisterReason
from pykka_registry._metadata import copy_metadata, is_flat, metadata_matches

__all__ = ["Backend", "BackendContext", "Change", "Entry", "Member", "validate_backend"]


class BackendContext(Protocol):
    """What :meth:`Backend.start` receives: the registry's side of the deal.

    For backends whose data also changes from elsewhere (another process, a
    change feed), this is how such changes enter the registry in order.
    """

    #: The registry's label (for thread names and logs).
    name: str
    #: How long a registry call may take, in seconds: bound your own waits by it.
    call_timeout: float
    #: The event bus. A backend does not publish on it: it reports what it
    #: changed as :class:`Change` values (returned by submitted functions,
    #: or handed over by :meth:`Backend.take_changes`) and the registry
    #: turns them into events. (``events.active`` says whether anyone
    #: listens, for a backend that wants to skip work nobody would see.)
    events: Any

    def submit(self, function: Callable[[Any], Any]) -> None:
        """Run ``function(context)`` in the server thread, under the write
        lock, serialised with every write, without waiting. What it returns
        (a sequence of :class:`Change`, or ``None``) is published as events
        right after, still under the lock. Exceptions are logged."""

    def unlocked(self) -> AbstractContextManager[None]:
        """A context manager that releases the write lock (when this thread
        holds it) for an I/O wait inside a write, and takes it again after."""


class _OwnMetadata:
    """Hands out copies of a stored value's ``metadata`` (``flat``: a
    shallow copy is a safe one)."""

    __slots__ = ()
    metadata: Mapping[Any, Any]
    flat: bool

    def metadata_copy(self) -> dict[Any, Any]:
        """A copy of the metadata the caller may change freely."""
        if self.flat:
            return dict(self.metadata)
        return copy_metadata(self.metadata)


@attrs.define(frozen=True, eq=False)
class Entry(_OwnMetadata):
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

    def as_match(self) -> tuple[Hashable, Any, dict[Any, Any]]:
        """The ``(service, actor_ref, metadata)`` triple that queries return."""
        return (self.service, self.actor_ref, self.metadata_copy())


@attrs.define(frozen=True, eq=False)
class Member(_OwnMetadata):
    """One actor's membership of one group, as a backend stores it.
    Immutable; crosses threads. ``metadata`` is the registry's own copy and
    is never mutated; hand it to users only through :meth:`metadata_copy`."""

    namespace: Hashable
    group: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any]
    flat: bool = attrs.field(default=True)

    @classmethod
    def create(
        cls, namespace: Hashable, group: Hashable, actor_ref: Any, metadata: Mapping[Any, Any]
    ) -> Member:
        """A membership for metadata that is already the registry's own copy."""
        return cls(namespace, group, actor_ref, metadata, is_flat(metadata))


@attrs.define(frozen=True)
class Change:
    """A change to one name that a backend made on its own account rather
    than as the answer to a write: learnt from another process (a change
    feed, a holder found while writing), or a name this process lost.
    Immutable; built in the server thread.

    The registry turns it into events: ``old`` and ``new`` of one actor: a
    :class:`~pykka_registry.MetadataUpdated`; else an
    :class:`~pykka_registry.Unregistered` for ``old`` (if any) with
    ``reason``, then a :class:`~pykka_registry.Registered` for ``new`` (if any).
    """

    #: What held the name before (``None``: it was free).
    old: Optional[Entry]
    #: What holds it now (``None``: it went away).
    new: Optional[Entry]
    #: Why ``old`` went away (when it did): by default ``"expired"`` (its
    #: holder's lease lapsed, or the name vanished from the store).
    reason: UnregisterReason = EXPIRED


@attrs.define(frozen=True)
class MemberChange:
    """A group membership a backend changed on its own account (learnt from
    another process, or a node whose lease lapsed): the :class:`Change` of
    groups. Immutable; built in the server thread.

    The registry turns it into events: ``new`` (a member joined, or its
    metadata was replaced): a :class:`~pykka_registry.Joined`; else a
    :class:`~pykka_registry.Left` for ``old`` with ``reason``.
    """

    #: The membership before (``None``: the actor was not a member).
    old: Optional[Member]
    #: The membership now (``None``: it left).
    new: Optional[Member]
    #: Why ``old`` left (when it did): by default ``"expired"``.
    reason: UnregisterReason = EXPIRED


def _no_groups(backend: Any) -> GroupsNotSupportedError:
    return GroupsNotSupportedError(
        f"backend {getattr(backend, 'name', type_name(backend))!s} keeps no groups "
        "(supports_groups is False)"
    )


def refuse_if_held(current: Optional[Entry], entry: Entry,
                   is_alive: Callable[[Any], bool]) -> None:
    """Raise :class:`~pykka_registry.AlreadyRegisteredError` if ``current``
    (what holds ``entry``'s name now, or ``None``) is another actor that
    ``is_alive`` says is alive: the rule of :meth:`Backend.register`."""
    if (
        current is not None
        and current.actor_ref.actor_urn != entry.actor_ref.actor_urn
        and is_alive(current.actor_ref)
    ):
        raise AlreadyRegisteredError(entry.namespace, entry.service, current.actor_ref)


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
    #: True when the backend keeps groups (implements the group methods).
    supports_groups: ClassVar[bool] = False

    # -- validation (caller's thread) ---------------------------------------

    def validate_key(self, namespace: Any, service: Any) -> None:
        """Raise :class:`InvalidKeyError` unless both parts can be stored:
        unhashable parts, and parts whose ``__hash__`` raises anything,
        ``BaseException`` included (``SystemExit``, ``GeneratorExit``), except
        ``KeyboardInterrupt``, which passes through: in the caller's thread it
        is most likely the user's Ctrl-C, landing while the hash ran."""
        for part, what in ((namespace, "namespace"), (service, "service")):
            try:
                hash(part)
            except KeyboardInterrupt:
                raise
            except BaseException as error:
                raise InvalidKeyError(
                    f"{what} must be hashable, got {type_name(part)}: {safe_repr(part)} "
                    f"({type_name(error)} from its __hash__)"
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

    def register_many(
        self, entries: Sequence[Entry], is_alive: Callable[[Any], bool]
    ) -> list[Optional[Entry]]:
        """Store every entry, or none: all or nothing.

        ``entries`` name distinct services of one namespace (the registry
        checks that). If any name is held by another actor for which
        ``is_alive`` is true, raise
        :class:`~pykka_registry.AlreadyRegisteredError` for the first such
        entry and store nothing. Return, per entry, what :meth:`register`
        would have returned.

        The default checks every name first, then calls :meth:`register` for
        each, and undoes what it stored if one of those calls raises;
        override it to do the batch in one step (one lock, one round trip).
        """
        for entry in entries:
            refuse_if_held(self.get(entry.namespace, entry.service), entry, is_alive)
        done: list[Optional[Entry]] = []
        try:
            for entry in entries:
                done.append(self.register(entry, is_alive))
        except BaseException:
            for entry, previous in zip(entries, done):
                self.unregister(entry.namespace, entry.service, entry.actor_ref)
                if previous is not None:
                    self.register(previous, lambda ref: False)
            raise
        return done

    @abc.abstractmethod
    def unregister(
        self, namespace: Hashable, service: Hashable, actor_ref: Any = None
    ) -> Optional[Entry]:
        """Remove the name and return its entry, or ``None`` if absent.

        With ``actor_ref``, remove it only if that actor holds it (so a late
        death notice never removes a newer holder's name).
        """

    def unregister_many(self, namespace: Hashable, services: Sequence[Hashable]) -> list[Entry]:
        """Remove each of ``services`` (missing ones are skipped); return the
        removed entries in the order given. The default calls
        :meth:`unregister` for each."""
        removed = []
        for service in services:
            entry = self.unregister(namespace, service)
            if entry is not None:
                removed.append(entry)
        return removed

    @abc.abstractmethod
    def update_metadata(
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> Entry:
        """Replace the metadata of a name and return the new entry.

        Raises :class:`~pykka_registry.NotRegisteredError` if it is absent.
        """

    @abc.abstractmethod
    def remove_actor(self, actor_ref: Any,
                     reason: Optional[UnregisterReason] = None) -> list[Entry]:
        """Remove every name ``actor_ref`` holds; return the removed entries.

        ``reason`` is why the actor died (``"stopped"``, or ``"crashed"``
        with the exception); the registry publishes it with the removed
        entries' events, and a networked backend passes it on to the other
        processes. ``None`` (a direct call): the death's own record, if any.
        A backend written before the reason existed, whose ``remove_actor``
        takes only the ref, is still called with the ref alone.

        Called in the dying actor's thread (under the registry's write lock):
        quick, no I/O, no waiting, and it should not raise (an exception is
        logged and the names stay). Called for every actor death of the
        process, so return ``[]`` fast for an actor that holds nothing here.
        """

    def clear_namespace(self, namespace: Hashable) -> list[Entry]:
        """Remove every entry of ``namespace``; return them."""
        removed = []
        for entry in self.entries(namespace):
            gone = self.unregister(entry.namespace, entry.service, entry.actor_ref)
            if gone is not None:
                removed.append(gone)
        return removed

    def take_changes(self) -> Sequence[Change]:
        """The :class:`Change` values the last write made besides its own
        (a networked backend that learnt another process's claim while it
        wrote, or found a name of its own lost), oldest first, and forget
        them. Called by the server thread, under the write lock, right after
        every write (also one that raised: a conflict can teach a backend
        another process's claim, and a write that raises returns nothing);
        they are published before the write's own events. The default:
        none."""
        return ()

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

    # -- groups (see "Groups" in the module docstring) ---------------------------
    # The defaults raise GroupsNotSupportedError (writes, members) or answer
    # "nothing" (leave_all, reads that a death or a listing makes anyway), so
    # a backend written before groups keeps working unchanged.

    def join(self, member: Member) -> Optional[Member]:
        """Add ``member`` to its group (server thread, write lock held). If
        the actor is a member already, replace its metadata, keep its place
        and return the replaced membership; else return ``None``."""
        raise _no_groups(self)

    def leave(self, namespace: Hashable, group: Hashable, actor_ref: Any) -> Optional[Member]:
        """Remove the actor from the group; return the membership, or
        ``None`` if it was not a member (idempotent)."""
        raise _no_groups(self)

    def leave_all(self, actor_ref: Any) -> list[Member]:
        """Remove the actor from every group; return the memberships.
        Called in the dying actor's thread, under the write lock, right
        after :meth:`remove_actor`: quick, no I/O, no waiting; should not
        raise. Return ``[]`` fast for an actor in no group."""
        return []

    def clear_namespace_groups(self, namespace: Hashable) -> list[Member]:
        """Remove every membership of ``namespace``; return them. The
        default calls :meth:`leave` for each member of each group."""
        removed = []
        for group in self.groups(namespace):
            for member in self.members(namespace, group):
                gone = self.leave(namespace, group, member.actor_ref)
                if gone is not None:
                    removed.append(gone)
        return removed

    def members(self, namespace: Hashable, group: Hashable) -> Sequence[Member]:
        """A snapshot of the group's memberships, in join order."""
        raise _no_groups(self)

    def groups(self, namespace: Hashable) -> list[Hashable]:
        """The groups of ``namespace`` with at least one member."""
        return []

    def groups_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        """Every ``(namespace, group)`` the actor is a member of."""
        return []

    def group_namespaces(self) -> list[Hashable]:
        """The namespaces with at least one group member (for a full
        replay). The default is ``[]``."""
        return []

    def count_members(self, namespace: Hashable, group: Hashable) -> int:
        """How many members the group has."""
        return len(self.members(namespace, group))

    def match_members(
        self, namespace: Hashable, group: Hashable, criteria: Mapping[Any, Any]
    ) -> list[Member]:
        """Members (in join order) whose metadata satisfies ``criteria``, by
        the rule of :meth:`match`. The default scans :meth:`members`."""
        return [m for m in self.members(namespace, group)
                if metadata_matches(m.metadata, criteria)]

    def group_totals(self) -> tuple[int, int]:
        """``(groups with at least one member, memberships)`` over every
        namespace, for stats."""
        return (0, 0)

    def health(self) -> Mapping[str, Any]:
        """Backend-specific health facts; ``{"status": "degraded"}`` or
        ``{"status": "unhealthy"}`` lowers the registry's health status."""
        return {"status": "healthy"}

    def owns(self, actor_ref: Any) -> bool:
        """Might ``actor_ref`` hold a name here? (For tools; the registry no
        longer calls it on deaths: :meth:`remove_actor` answers that.)"""
        return bool(self.keys_of(actor_ref))


_REQUIRED = tuple(
    name for name, value in vars(Backend).items() if getattr(value, "__isabstractmethod__", False)
)
_OPTIONAL = ("validate_key", "validate_metadata", "start", "close", "match", "health", "owns",
             "clear_namespace")
# Added later with defaults: a duck-typed backend without them gets the
# Backend defaults (see batch_writes()).
_BATCH = ("register_many", "unregister_many")
#: What a backend with ``supports_groups = True`` must implement itself.
_GROUP_REQUIRED = ("join", "leave", "leave_all", "members", "groups", "groups_of")
#: Group methods with usable defaults (given to duck-typed backends too).
_GROUP_OPTIONAL = ("clear_namespace_groups", "count_members", "match_members", "group_totals",
                   "group_namespaces")


def supports_groups(backend: Any) -> bool:
    """True when ``backend`` declares that it keeps groups."""
    return getattr(backend, "supports_groups", False) is True


def group_method(backend: Any, name: str) -> Callable[..., Any]:
    """The backend's group method ``name``, or the :class:`Backend` default
    bound to it (a duck-typed backend written before groups). Also for the
    other methods with defaults that a duck-typed backend may lack
    (``take_changes``)."""
    method = getattr(backend, name, None)
    if callable(method):
        return method
    default = getattr(Backend, name)
    return default.__get__(backend, type(backend))


def batch_writes(backend: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The backend's ``register_many`` and ``unregister_many``, or the
    :class:`Backend` defaults bound to it (for duck-typed backends)."""
    found = []
    for name in _BATCH:
        method = getattr(backend, name, None)
        if not callable(method):
            default = getattr(Backend, name)
            method = default.__get__(backend, type(backend))
        found.append(method)
    return found[0], found[1]


def validate_backend(obj: Any) -> None:
    """Check that ``obj`` (a backend class or instance) provides every method.

    A :class:`Backend` subclass need only implement the abstract methods; an
    object that does not subclass it (duck typing) must provide all of them.
    A backend that declares ``supports_groups = True`` must also implement
    the group methods :meth:`Backend.join`, :meth:`Backend.leave`,
    :meth:`Backend.leave_all`, :meth:`Backend.members`,
    :meth:`Backend.groups` and :meth:`Backend.groups_of` itself (the others
    have defaults). A backend without groups needs none of them.

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
    if supports_groups(obj):
        cls = obj if isinstance(obj, type) else type(obj)
        for name in _GROUP_REQUIRED:
            method = getattr(cls, name, None)
            if not callable(method) or method is getattr(Backend, name):
                missing.append(name)
    if missing:
        what = obj.__name__ if isinstance(obj, type) else type_name(obj)
        raise TypeError(f"{what} is not a complete registry backend; missing: {', '.join(missing)}")


def is_actor_ref(obj: Any) -> bool:
    """True for a local :class:`pykka.ActorRef`."""
    return isinstance(obj, pykka.ActorRef)
