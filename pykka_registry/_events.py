"""Registry events and their delivery.

Guarantees
----------
* Events are produced by the registry's server thread, the only writer, in
  the order the writes happened; one dispatcher thread per registry delivers
  them to every listener in that order. That thread runs only while someone
  listens: it ends when the last subscription is cancelled (an observer
  stopped, an ``await_name`` answered), and the next subscription starts a
  new one. Events of one key therefore arrive in
  the order they happened (and so do all events of one registry).
* Listeners run in the dispatcher thread, never in the server's: a slow
  listener delays later events, never ``register``. A listener that raises
  anything, ``BaseException`` included (``SystemExit``, ``KeyboardInterrupt``),
  is logged and skipped; the others, the dispatcher and the registry carry on.
* **The dispatcher never dies of user code.** Everything of the user's it
  runs is contained: a subscription's namespace filter whose ``__eq__``
  raises (or returns something whose truth raises) costs that subscription
  that one event; a replayed entry whose metadata cannot be copied into its
  event is left out of that replay; a hostile ``__repr__`` never breaks the
  log line. Each is logged. Should anything else escape, the dispatcher logs
  it and goes on with the next event. :meth:`EventBus.dispatcher_alive`
  reports it (``Registry.health_check`` says ``"unhealthy"`` if it ever
  stopped while the registry runs).
* Group events (:class:`Joined`, :class:`Left`) come from the same writers
  under the same lock, so they are ordered with every other event: events
  of one group arrive in the order they happened.
* ``subscribe(..., replay=True)`` delivers the current entries first, as
  :class:`Registered` events, and the current group members as
  :class:`Joined` events (in join order), then the live stream, with no gap or duplicate:
  the snapshot (a copy of the entry list) is taken under the registry's
  write lock at the same point in the change order where the subscription
  starts; the dispatcher thread builds the replayed events from it, so a
  large replay does not hold up writes.
* A subscription cancelled before the server applied it (a ``subscribe``
  that timed out) never starts.
* Events are values (frozen attrs classes, read-only metadata views) that are
  safe to keep and to pass between threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import types
from collections.abc import Hashable, Mapping
from typing import Any, Callable, Optional, Union

import attrs

from pykka_registry._errors import safe_repr, type_name
from pykka_registry._metadata import copy_metadata, is_flat

__all__ = [
    "EventListener",
    "Joined",
    "Left",
    "MetadataUpdated",
    "Registered",
    "Subscription",
    "UnregisterReason",
    "Unregistered",
]

logger = logging.getLogger("pykka_registry")


#: The kinds of :class:`UnregisterReason`, each spelt here only (see its docstring).
KIND_UNREGISTERED = "unregistered"
KIND_LEFT = "left"
KIND_STOPPED = "stopped"
KIND_CRASHED = "crashed"
KIND_NAMESPACE_STOPPED = "namespace_stopped"
KIND_LOST = "lost"
KIND_EXPIRED = "expired"
KIND_NODE_STOPPED = "node_stopped"
#: Every kind an :class:`UnregisterReason` may have.
KINDS = frozenset({KIND_UNREGISTERED, KIND_LEFT, KIND_STOPPED, KIND_CRASHED,
                   KIND_NAMESPACE_STOPPED, KIND_LOST, KIND_EXPIRED, KIND_NODE_STOPPED})


@attrs.define(frozen=True)
class UnregisterReason:
    """Why a name went away.

    ``kind`` is one of (the ``KIND_*`` constants of this module):

    * ``"unregistered"``: an explicit :meth:`Registry.unregister`;
    * ``"left"``: (a :class:`Left` event) an explicit :meth:`Registry.leave`;
    * ``"stopped"``: the actor stopped normally;
    * ``"crashed"``: the actor died of ``exception``;
    * ``"namespace_stopped"``: :meth:`Registry.stop_namespace`;
    * ``"lost"``: a networked backend found the name claimed by another
      process (for example after this process lost its lease);
    * ``"expired"``: a networked backend: the holder's node lease lapsed, or
      the name vanished from the store (a restart that lost data);
    * ``"node_stopped"``: a networked backend: the holder's registry stopped.

    A remote actor's crash arrives as ``"crashed"`` with ``exception`` set to a
    ``RemoteActorError`` carrying the original's repr.
    """

    kind: str
    exception: Optional[BaseException] = attrs.field(default=None, eq=False)

    @property
    def crashed(self) -> bool:
        """True when the actor died of an exception (``kind == "crashed"``)."""
        return self.kind == KIND_CRASHED

    @classmethod
    def from_death(cls, exception: Optional[BaseException]) -> UnregisterReason:
        """The reason for an actor's death: ``"stopped"`` without an exception,
        ``"crashed"`` with it."""
        return STOPPED if exception is None else cls(KIND_CRASHED, exception)


UNREGISTERED = UnregisterReason(KIND_UNREGISTERED)
LEFT = UnregisterReason(KIND_LEFT)
STOPPED = UnregisterReason(KIND_STOPPED)
NAMESPACE_STOPPED = UnregisterReason(KIND_NAMESPACE_STOPPED)
LOST = UnregisterReason(KIND_LOST)
EXPIRED = UnregisterReason(KIND_EXPIRED)
NODE_STOPPED = UnregisterReason(KIND_NODE_STOPPED)


def event_metadata(metadata: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """A read-only view no listener can change the store through: the stored
    mapping itself when it holds no mutable container, else a deep copy.

    May raise (the copy runs a container's ``__deepcopy__``): the server
    builds it *before* it writes, so a write whose event cannot be built
    changes nothing; an event built from it does not copy again."""
    if isinstance(metadata, types.MappingProxyType):
        return metadata
    if isinstance(metadata, dict) and is_flat(metadata):
        return types.MappingProxyType(metadata)
    return types.MappingProxyType(copy_metadata(metadata))


@attrs.define(frozen=True)
class Registered:
    """A name was taken (or, with ``replay=True``, was held when you subscribed)."""

    namespace: Hashable
    service: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any] = attrs.field(converter=event_metadata, eq=False)


@attrs.define(frozen=True)
class MetadataUpdated:
    """The metadata of a name was replaced (``update_metadata``, or the holder
    registering the same name again)."""

    namespace: Hashable
    service: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any] = attrs.field(converter=event_metadata, eq=False)


@attrs.define(frozen=True)
class Unregistered:
    """A name went away; ``reason`` says why."""

    namespace: Hashable
    service: Hashable
    actor_ref: Any
    reason: UnregisterReason


@attrs.define(frozen=True)
class Joined:
    """An actor joined a group, or joined it again with new metadata (or,
    with ``replay=True``, was a member when you subscribed)."""

    namespace: Hashable
    group: Hashable
    actor_ref: Any
    metadata: Mapping[Any, Any] = attrs.field(converter=event_metadata, eq=False)


@attrs.define(frozen=True)
class Left:
    """An actor left a group; ``reason.kind`` is ``"left"`` for an explicit
    :meth:`Registry.leave`, else as for :class:`Unregistered` (``"stopped"``,
    ``"crashed"`` with the exception, ``"namespace_stopped"``...)."""

    namespace: Hashable
    group: Hashable
    actor_ref: Any
    reason: UnregisterReason


_frozen = event_metadata

Event = Union[Registered, MetadataUpdated, Unregistered, Joined, Left]
EventListener = Callable[[Event], None]


class Subscription:
    """A listener's place in a registry's event stream. ``cancel()`` ends it."""

    def __init__(
        self, bus: EventBus, listener: EventListener, namespace: Optional[Hashable], all_ns: bool
    ) -> None:
        self._bus = bus
        self.listener = listener
        self.namespace = namespace
        self._all_namespaces = all_ns
        self.active = False  # set by the dispatcher when the stream starts
        self.cancelled = False

    def wants(self, event: Event) -> bool:
        """True if ``event`` is of this subscription's namespace (or it has none).

        May raise: the namespaces are user objects and ``==`` runs their
        ``__eq__`` (the dispatcher contains that, see the module docstring)."""
        if self._all_namespaces:
            return True
        namespace = event.namespace
        return namespace is self.namespace or bool(namespace == self.namespace)

    def cancel(self) -> None:
        """Stop delivering events to the listener. Idempotent; events already
        being delivered may still arrive once."""
        self.cancelled = True
        self._bus.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()


@attrs.define(frozen=True)
class _Start:
    subscription: Subscription
    replay: tuple[Any, ...]  # Entry values (replayed as Registered), then Member (Joined)


_STOP = object()


class _Dispatch:
    """One dispatcher thread with its own queue and subscribers. A bus runs
    one at a time; when its last subscriber goes it is told to stop, and a
    later subscription starts a fresh one (the retiring one delivers nothing
    more: its subscriber list is empty), so events never overtake each other."""

    __slots__ = ("queue", "subscriptions", "thread")

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.subscriptions: tuple[Subscription, ...] = ()
        self.thread: Optional[threading.Thread] = None


_dispatcher_of = threading.local()  # .bus: the EventBus whose dispatcher this thread is


class EventBus:
    """One registry's event queue and dispatcher thread.

    :meth:`publish` and :meth:`start_subscription` are called by the server
    thread only; everything else from any thread.

    The dispatcher thread runs only while someone listens: it starts with
    the first subscription and ends (after delivering what it has) when the
    last one is cancelled, so an observer or an ``await_name`` leaves no
    thread behind once it is done.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._current: Optional[_Dispatch] = None
        self._retiring: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False
        #: True while anyone listens: the server builds events only then.
        self.active = False
        self.delivered = 0

    def new_subscription(self, listener: EventListener, namespace: Optional[Hashable],
                         all_namespaces: bool) -> Subscription:
        return Subscription(self, listener, namespace, all_namespaces)

    def start_subscription(self, subscription: Subscription, replay: tuple[Any, ...]) -> None:
        """Called under the registry's write lock: from this point of the
        change order on, ``subscription`` gets every event, after ``replay``
        (entries, delivered as :class:`Registered` events)."""
        with self._lock:
            if self._closed or subscription.cancelled:
                return
            dispatch = self._current
            if dispatch is None:
                dispatch = self._current = _Dispatch()
                dispatch.thread = threading.Thread(
                    target=self._run, args=(dispatch,),
                    name=f"pykka-registry-events-{self._name}", daemon=True)
                dispatch.thread.start()
            dispatch.subscriptions = (*dispatch.subscriptions, subscription)
            self.active = True
            # under the lock: a remove() retiring this dispatcher cannot come between
            dispatch.queue.put(_Start(subscription, replay))

    def remove(self, subscription: Subscription) -> None:
        # cancel() sets ``cancelled`` before taking the lock and
        # start_subscription() checks it under the lock: whichever runs
        # second sees the other, so a cancelled subscription never stays.
        with self._lock:
            dispatch = self._current
            if dispatch is None:
                return
            dispatch.subscriptions = tuple(
                s for s in dispatch.subscriptions if s is not subscription)
            if not dispatch.subscriptions:  # nobody listens: let its thread end
                self._current = None
                self.active = False
                dispatch.queue.put(_STOP)
                self._retiring = [t for t in self._retiring if t.is_alive()]
                if dispatch.thread is not None:
                    self._retiring.append(dispatch.thread)

    def is_dispatcher_thread(self) -> bool:
        """True when called from this bus's dispatcher (inside a listener)."""
        return getattr(_dispatcher_of, "bus", None) is self

    def publish(self, event: Event) -> None:
        dispatch = self._current
        if dispatch is not None:  # else nobody listens (it went after the event was built)
            dispatch.queue.put(event)

    def queued(self) -> int:
        """Events (and replays) waiting for the dispatcher: its backlog."""
        dispatch = self._current
        return dispatch.queue.qsize() if dispatch is not None else 0

    def subscriber_count(self) -> int:
        """How many subscriptions are started and not cancelled."""
        dispatch = self._current
        return len(dispatch.subscriptions) if dispatch is not None else 0

    def dispatcher_alive(self) -> bool:
        """False only when the dispatcher thread is gone while it still has
        subscribers and the bus is open (it never stops of user code: a
        bug). True while nobody listens (no thread is needed then) and after
        :meth:`close`."""
        dispatch = self._current
        if self._closed or dispatch is None or dispatch.thread is None:
            return True
        return dispatch.thread.is_alive()

    def close(self, timeout: float) -> None:
        """Deliver what is queued, then stop the dispatcher (within ``timeout``)."""
        with self._lock:
            self._closed = True
            self.active = False
            dispatch, self._current = self._current, None
            threads = list(self._retiring)
            self._retiring = []
        if dispatch is not None:
            dispatch.queue.put(_STOP)
            if dispatch.thread is not None:
                threads.append(dispatch.thread)
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _deliver(self, subscription: Subscription, event: Event) -> None:
        if subscription.cancelled:
            return
        try:
            subscription.listener(event)
            self.delivered += 1
        except BaseException:  # one listener must not end delivery
            # safe_repr: the listener's and the event's repr are user code too.
            logger.exception("registry event listener %s failed on %s",
                             safe_repr(subscription.listener), safe_repr(event))

    def _wanted(self, subscription: Subscription, event: Event) -> bool:
        """``subscription.wants(event)``; False (that one event dropped for
        that one subscription, logged) if the namespaces' ``__eq__`` raises."""
        try:
            return subscription.wants(event)
        except BaseException as error:  # user code in the dispatcher: contain it
            logger.error("%s: comparing the namespace %s of a subscription with %s raised "
                         "%s; that event is not delivered to %s", self._name,
                         safe_repr(subscription.namespace), safe_repr(event.namespace),
                         type_name(error), safe_repr(subscription.listener))
            return False

    def _replay(self, start: _Start) -> None:
        subscription = start.subscription
        try:
            for entry in start.replay:
                if subscription.cancelled:
                    break
                try:
                    if hasattr(entry, "group"):  # a backend Member
                        event: Event = Joined(entry.namespace, entry.group, entry.actor_ref,
                                              entry.metadata)
                    else:
                        event = Registered(entry.namespace, entry.service, entry.actor_ref,
                                           entry.metadata)
                except BaseException as error:  # the copy of a hostile metadata value
                    logger.error("%s: a replayed entry (%s in %s) cannot be turned into an "
                                 "event (%s while copying its metadata); it is left out of "
                                 "the replay to %s", self._name,
                                 safe_repr(getattr(entry, "service", None)),
                                 safe_repr(entry.namespace), type_name(error),
                                 safe_repr(subscription.listener))
                    continue
                self._deliver(subscription, event)
        finally:
            # Even if the replay broke off, the live stream starts: the
            # subscription must not stay silent for good.
            subscription.active = True

    def _run(self, dispatch: _Dispatch) -> None:
        _dispatcher_of.bus = self
        # Every item is handled inside this guard: nothing a user's object
        # does (or a bug of ours) ends the thread, else no listener of this
        # registry would get another event and await_name would wait out
        # every deadline.
        while True:
            item = dispatch.queue.get()
            if item is _STOP:
                return
            try:
                if isinstance(item, _Start):
                    self._replay(item)
                    continue
                for subscription in dispatch.subscriptions:
                    if subscription.active and self._wanted(subscription, item):
                        self._deliver(subscription, item)
            except BaseException as error:
                try:
                    # With the traceback: user code is contained where it
                    # runs, so what gets here is most likely a bug of ours.
                    logger.error("%s: the event dispatcher failed on an event (%s); it goes "
                                 "on with the next one", self._name, type_name(error),
                                 exc_info=True)
                except BaseException:  # a log handler of the user's: the thread lives on
                    pass
