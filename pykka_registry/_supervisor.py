"""Supervision trees, as in OTP: restart children by strategy and intensity,
and keep their names in a registry across restarts.

Guarantees
----------
* A supervisor is a Pykka actor; :class:`Supervisor` is a handle on it whose
  methods ``ask`` it with a timeout. Children are started, restarted and
  stopped in the supervisor's own thread, one at a time.
* A child with a ``name`` is registered under it (with its metadata) before
  :meth:`Supervisor.start` / :meth:`Supervisor.start_child` return, and again
  after every restart. Between a child's death and its restart the name is
  absent: lookups never return the dead actor. A child's ``groups`` are
  joined at the same points, after its name.
* Restart types: ``"permanent"`` children are always restarted,
  ``"transient"`` ones only after a crash, ``"temporary"`` ones never (their
  spec is dropped when they die).
* Strategies: ``"one_for_one"`` restarts the child that died;
  ``"one_for_all"`` stops the others (in reverse start order) and restarts all
  in start order; ``"rest_for_one"`` does that for the child and those started
  after it.
* Intensity: more than ``max_restarts`` restarts within ``max_seconds`` and
  the supervisor stops every child, then dies of
  :class:`RestartIntensityExceeded` (a crash, which its own supervisor sees).
* :meth:`Supervisor.stop`, :meth:`Supervisor.terminate_child` return once the
  actors concerned have stopped (each child within its ``shutdown`` seconds;
  Pykka cannot kill a thread, so a child that ignores its stop is reported
  and left behind).
* While :meth:`pykka.ActorRegistry.stop_all` runs, supervisors restart
  nothing: ``stop_all`` means "shut everything down".
* User code in the supervisor's thread (a ``start`` function, a child id's
  ``__eq__`` or ``__repr__``, the registry calls made for a child) never
  makes Pykka stop every actor: a ``BaseException`` from it becomes a
  :class:`SupervisorError` (raised to the caller of an asked operation, or
  the supervisor's own failure); error messages quote ids through
  :func:`~pykka_registry._errors.safe_repr`.
* A child id whose ``__eq__`` raises (anything) against another child's id
  never stops the tree: children are found by identity first, and a
  comparison that raises means "not this child", so restarts and child
  operations work. Only a new id that cannot be compared with the ones
  held is refused: :class:`SupervisorError` from ``start_child``,
  ``ValueError`` from :meth:`Supervisor.start`; nothing is started.
* Introspection is read-only: :meth:`Supervisor.snapshot` asks the
  supervisor's own thread for a frozen :class:`SupervisorSnapshot` with a
  short timeout (it never waits longer, and a supervisor busy restarting a
  slow child gets one pending request at a time, not a pile of them);
  :func:`live_supervisors` lists the running supervisors of the process
  (weak references: it keeps nothing alive).
* A supervisor knows its registry only as a :class:`SupervisedRegistry`
  and a child's start function only as a callable (told its tree first if
  it is a :class:`TreeAwareStart`); what is special about a registry's own
  server lives in :mod:`pykka_registry._server_child`.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Callable, Optional, Protocol, runtime_checkable

import attrs
import pykka

from pykka_registry import _deathwatch
from pykka_registry._errors import (
    ChildRetired,
    RegistryError,
    RegistryUnavailableError,
    RestartIntensityExceeded,
    SupervisorError,
    safe_repr,
    type_name,
)
from pykka_registry._monitor import DownEvent, Monitor, monitor
from pykka_registry._timeouts import check_timeout, optional_timeout
from pykka_registry._types import (
    RESTART_TYPES,
    SUPERVISOR_STRATEGIES,
    RestartType,
    SupervisorStrategy,
)

__all__ = [
    "ChildInfo",
    "ChildRetired",
    "ChildSnapshot",
    "ChildSpec",
    "RestartIntensityExceeded",
    "SupervisedRegistry",
    "Supervisor",
    "SupervisorError",
    "SupervisorSnapshot",
    "TreeAwareStart",
    "current_supervisor",
    "live_supervisors",
]

logger = logging.getLogger("pykka_registry")

STRATEGIES = SUPERVISOR_STRATEGIES

_local = threading.local()
_supervisor_counter = itertools.count(1)
#: Every Supervisor handle started in this process (weakly: for introspection).
_all_supervisors: weakref.WeakSet[Supervisor] = weakref.WeakSet()
_all_supervisors_lock = threading.Lock()


def live_supervisors() -> list[Supervisor]:
    """The supervisors of this process whose actor is running, in no
    particular order. Any thread; the list it keeps holds them weakly."""
    with _all_supervisors_lock:
        handles = list(_all_supervisors)
    return [handle for handle in handles if handle.is_alive()]


def current_supervisor() -> Optional[Supervisor]:
    """The supervisor whose thread is starting a child right now, if any.

    Lets a child's ``start`` function know which tree it is being started in.
    """
    return getattr(_local, "supervisor", None)


class SupervisedRegistry(Protocol):
    """What a supervisor needs of its ``registry`` (a :class:`~pykka_registry.Registry`
    satisfies it): to register and join its children (in the supervisor's
    thread), to sync listings after stopping some, and the rule of which
    child to start first (:mod:`pykka_registry._server_child`)."""

    @property
    def name(self) -> str: ...

    @property
    def running(self) -> bool: ...

    def register(self, namespace: Hashable, service: Hashable, actor_ref: pykka.ActorRef[Any],
                 metadata: Optional[Mapping[Any, Any]] = None) -> None: ...

    def join(self, namespace: Hashable, group: Hashable, actor_ref: pykka.ActorRef[Any],
             metadata: Optional[Mapping[Any, Any]] = None) -> None: ...

    def sync(self, timeout: Optional[float] = None) -> None: ...

    def server_to_start_first(self, supervisor: Supervisor,
                              child_id: Hashable) -> Optional[Hashable]: ...


@runtime_checkable
class TreeAwareStart(Protocol):
    """A child's ``start`` function that wants to know which tree starts it:
    before each call, in the supervisor's thread, the supervisor calls
    ``started_in(supervisor, child_id)`` (a registry's server records its
    owner so)."""

    def __call__(self) -> Any: ...

    def started_in(self, supervisor: Supervisor, child_id: Hashable) -> None: ...


def _validate_groups(groups: Any) -> tuple[tuple[Hashable, Hashable], ...]:
    if isinstance(groups, (str, bytes)):
        raise ValueError(f"groups must be (namespace, group) pairs, got {safe_repr(groups)}")
    found = tuple(groups)
    for pair in found:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"groups must be (namespace, group) tuples, got {safe_repr(pair)}")
    return found


def _same_id(stored: Hashable, wanted: Hashable) -> bool:
    """``stored == wanted`` for child ids, False when the comparison raises
    (user code in the supervisor's thread, where no Ctrl-C lands)."""
    try:
        return bool(stored == wanted)
    except BaseException:
        return False


def _check_shutdown(value: Any) -> float:
    return check_timeout(value, "shutdown", positive=True)


def _validate_name(name: Any) -> Any:
    if name is not None and not (isinstance(name, tuple) and len(name) == 2):
        raise ValueError(
            f"name must be a (namespace, service) tuple or None, got {safe_repr(name)}")
    return name


@attrs.define(frozen=True)
class ChildSpec:
    """How to start, name and restart one child.

    ``start`` returns the child's :class:`pykka.ActorRef`, a
    :class:`pykka.ActorProxy` (its ``actor_ref`` is supervised), or a
    :class:`Supervisor`, for a nested tree. ``name`` is a
    ``(namespace, service)`` pair to register the child under, in the
    supervisor's registry. ``groups`` are ``(namespace, group)`` pairs the
    child joins (with ``metadata``), in that registry, before ``start_child``
    or :meth:`Supervisor.start` returns and again after every restart,
    before the restart is reported, as names are. ``shutdown`` is how long
    stopping it may take. A ``start`` that also has
    ``started_in(supervisor, child_id)`` (a :class:`TreeAwareStart`) is
    told, before each call, which tree starts it.

    ``shutdown`` follows the rule of every timeout of the package
    (:mod:`pykka_registry._timeouts`): a real number of seconds ``> 0``;
    NaN, zero, negative numbers, strings and ``bool`` raise
    :class:`~pykka_registry.InvalidTimeoutError` (a ``ValueError``) when
    the spec is made; ``inf`` is clamped to a year.
    """

    id: Hashable
    start: Callable[[], Any]
    restart: RestartType = attrs.field(default="permanent")
    name: Optional[tuple[Hashable, Hashable]] = attrs.field(default=None, converter=_validate_name)
    metadata: Optional[Mapping[Any, Any]] = None
    shutdown: float = attrs.field(default=5.0, converter=_check_shutdown)
    groups: tuple[tuple[Hashable, Hashable], ...] = attrs.field(
        default=(), converter=_validate_groups)

    @restart.validator
    def _check_restart(self, attribute: Any, value: Any) -> None:
        if value not in RESTART_TYPES:
            raise ValueError(f"restart must be one of {RESTART_TYPES}, got {safe_repr(value)}")

    def __attrs_post_init__(self) -> None:
        if not callable(self.start):
            raise TypeError(f"start must be callable, got {type_name(self.start)}")
        try:
            hash(self.id)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # unhashable, or a hostile __hash__
            raise TypeError(f"child id must be hashable, got {safe_repr(self.id)} "
                            f"({type_name(error)} from its __hash__)") from None


@attrs.define(frozen=True)
class ChildInfo:
    """A child as :meth:`Supervisor.which_children` reports it."""

    id: Hashable
    actor_ref: Optional[pykka.ActorRef[Any]]
    restarts: int
    restart: RestartType
    name: Optional[tuple[Hashable, Hashable]]


@attrs.define(frozen=True)
class ChildSnapshot:
    """One child as :meth:`Supervisor.snapshot` saw it.

    ``supervisor`` is the nested :class:`Supervisor` when the child is a tree
    of its own (else ``None``); ``actor_ref`` is ``None`` while it is down.
    """

    id: Hashable
    restart: RestartType
    restarts: int
    actor_ref: Optional[pykka.ActorRef[Any]]
    name: Optional[tuple[Hashable, Hashable]]
    supervisor: Optional[Supervisor] = None


@attrs.define(frozen=True)
class SupervisorSnapshot:
    """A supervisor's state at one moment, taken in its own thread.

    ``restarts_in_window`` counts the restarts of the last ``max_seconds``
    (the supervisor gives up when it would exceed ``max_restarts``);
    ``restarts_total`` counts every restart since it started.
    """

    name: str
    actor_urn: str
    strategy: SupervisorStrategy
    max_restarts: int
    max_seconds: float
    restarts_in_window: int
    restarts_total: int
    registry_name: Optional[str]
    children: tuple[ChildSnapshot, ...]


class _Child:
    """The supervisor's mutable record of a child (supervisor thread only)."""

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.ref: Optional[pykka.ActorRef[Any]] = None
        self.handle: Any = None  # a nested Supervisor, when start returned one
        self.monitor: Optional[Monitor] = None
        self.restarts = 0
        #: Down and due for a restart (not down because someone terminated it).
        self.pending_restart = False

    def info(self) -> ChildInfo:
        return ChildInfo(self.spec.id, self.ref, self.restarts, self.spec.restart,
                         self.spec.name)


# -- messages ------------------------------------------------------------------


@attrs.define(frozen=True)
class _StartChildren:
    pass


@attrs.define(frozen=True)
class _ChildDown:
    event: DownEvent


@attrs.define(frozen=True)
class _StartChild:
    spec: ChildSpec


@attrs.define(frozen=True)
class _ChildOp:
    op: str
    id: Hashable


@attrs.define(frozen=True)
class _WhichChildren:
    pass


@attrs.define(frozen=True)
class _Snapshot:
    pass


@attrs.define(frozen=True)
class _RetryRestart:
    ids: tuple[Hashable, ...]


class SupervisorActor(pykka.ThreadingActor):
    """The actor behind a :class:`Supervisor`. Runs in its own thread."""

    def __init__(
        self,
        handle: Supervisor,
        specs: Sequence[ChildSpec],
        strategy: SupervisorStrategy,
        max_restarts: int,
        max_seconds: float,
        registry: Optional[SupervisedRegistry],
    ) -> None:
        super().__init__()
        self.handle = handle
        self.children: list[_Child] = [_Child(spec) for spec in specs]
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.registry = registry
        self.restart_times: collections.deque[float] = collections.deque()
        self.restarts_total = 0
        self.shutting_down = False
        handle._shutdown_budget = self._shutdown_budget

    def _shutdown_budget(self) -> float:
        """How long stopping this whole subtree may take (any thread)."""
        total = 0.0
        for child in list(self.children):
            nested = child.handle.shutdown_budget() if child.handle is not None else 0.0
            total += max(child.spec.shutdown, nested)
        return total

    # -- helpers (supervisor thread) ------------------------------------------------

    def _find(self, child_id: Hashable) -> _Child:
        child = self._get(child_id)
        if child is None:
            raise SupervisorError(f"no child with id {safe_repr(child_id)}")
        return child

    def _get(self, child_id: Hashable) -> Optional[_Child]:
        # Identity first: the ids this thread passes around (restarts) are
        # the stored objects, so a child id whose __eq__ raises against
        # another child's id cannot stop the tree when a child restarts.
        for child in self.children:
            if child.spec.id is child_id:
                return child
        for child in self.children:
            if _same_id(child.spec.id, child_id):
                return child
        return None

    def _ensure_registry_running(self, child: _Child) -> None:
        """Before registering a named child, start first the child the
        registry names (its server, when it is one of ours and down: see
        :func:`pykka_registry._server_child.server_to_start_first`). It counts
        as the restart its death notice, still in our mailbox, would have
        made; that notice then finds the child replaced and is ignored."""
        if (child.spec.name is None and not child.spec.groups) or self.registry is None:
            return
        first = self.registry.server_to_start_first(self.handle, child.spec.id)
        server_child = None if first is None else self._get(first)
        if server_child is None or server_child is child:
            return
        if server_child.monitor is not None:
            server_child.monitor.cancel()
        server_child.ref = server_child.handle = server_child.monitor = None
        server_child.restarts += 1
        self._note_restart()
        self._start(server_child)

    def _start(self, child: _Child) -> Optional[pykka.ActorRef[Any]]:
        """Start (and register) one child; ``None`` if it retired itself."""
        self._ensure_registry_running(child)
        previous = getattr(_local, "supervisor", None)
        _local.supervisor = self.handle
        try:
            start = child.spec.start
            if isinstance(start, TreeAwareStart):
                start.started_in(self.handle, child.spec.id)
            started = start()
        except ChildRetired:
            logger.info("%s: child %s retired; removing it", self.handle.name,
                        safe_repr(child.spec.id))
            if child in self.children:
                self.children.remove(child)
            return None
        except Exception:
            raise
        except BaseException as error:
            # User code in the supervisor's thread: a BaseException reaching
            # Pykka would stop every actor of the process. A failed start.
            raise SupervisorError(
                f"start() of child {safe_repr(child.spec.id)} raised {type_name(error)}"
            ) from None
        finally:
            _local.supervisor = previous
        handle = None
        if isinstance(started, Supervisor):
            handle, started = started, started.actor_ref
        elif isinstance(started, pykka.ActorProxy):
            started = started.actor_ref  # Pykka habit: Actor.start().proxy()
        if not isinstance(started, pykka.ActorRef):
            raise SupervisorError(
                f"start() of child {safe_repr(child.spec.id)} returned {type_name(started)}, "
                "not a pykka.ActorRef, pykka.ActorProxy or Supervisor"
            )
        try:
            if child.spec.name is not None:
                if self.registry is None:
                    raise SupervisorError(
                        f"child {safe_repr(child.spec.id)} has a name but the supervisor has "
                        "no registry"
                    )
                namespace, service = child.spec.name
                self.registry.register(namespace, service, started, child.spec.metadata)
            if child.spec.groups:
                if self.registry is None:
                    raise SupervisorError(
                        f"child {safe_repr(child.spec.id)} has groups but the supervisor has "
                        "no registry"
                    )
                for namespace, group in child.spec.groups:
                    self.registry.join(namespace, group, started, child.spec.metadata)
        except BaseException:
            self._stop_ref(started, handle, child.spec.shutdown)
            raise
        child.ref, child.handle = started, handle
        child.pending_restart = False
        me = self.actor_ref
        child.monitor = monitor(started, lambda event: _tell_quietly(me, _ChildDown(event)))
        return started

    @staticmethod
    def _stop_ref(ref: pykka.ActorRef[Any], handle: Any, timeout: float) -> bool:
        if handle is not None:
            # A nested supervisor stops its own children, each within its
            # shutdown: give it the whole subtree's budget.
            timeout = max(timeout, handle.shutdown_budget())
        try:
            ref.stop(block=True, timeout=timeout)
        except pykka.ActorDeadError:
            pass
        except pykka.Timeout:
            logger.error("%s did not stop within %ss; left running", ref, timeout)
            return False
        if handle is not None:
            handle.wait_finished(timeout)
        return True

    def _terminate(self, child: _Child, sync: bool = True) -> None:
        child.pending_restart = False
        if child.monitor is not None:
            child.monitor.cancel()
            child.monitor = None
        ref, handle = child.ref, child.handle
        child.ref = child.handle = None
        if ref is not None:
            self._stop_ref(ref, handle, child.spec.shutdown)
            if sync:
                self._sync_names([child])

    def _terminate_all(self, children: Sequence[_Child]) -> None:
        for child in reversed(children):
            self._terminate(child, sync=False)
        self._sync_names(children)

    def _sync_names(self, children: Sequence[_Child]) -> None:
        """Once stopped children are gone, make their names leave every
        listing too before we return (lookups already ignore them)."""
        if self.registry is None or not any(c.spec.name or c.spec.groups for c in children):
            return
        if not self.registry.running:
            return  # its server is down (perhaps one of ours): it reaps on restart
        try:
            self.registry.sync()
        except RegistryError:
            pass  # the registry itself is down (stopping with us): nothing to sync

    def _note_restart(self) -> None:
        now = time.monotonic()
        self.restarts_total += 1
        self.restart_times.append(now)
        while self.restart_times and now - self.restart_times[0] > self.max_seconds:
            self.restart_times.popleft()
        if len(self.restart_times) > self.max_restarts:
            raise RestartIntensityExceeded(
                f"{self.handle.name}: more than {self.max_restarts} restarts in "
                f"{self.max_seconds}s"
            )

    def _restart(self, ids: Sequence[Hashable]) -> None:
        """Start again, in order, the children with these ids that are still
        due for a restart. A start that fails counts against the intensity
        and is retried by a message to ourselves, so that ``stop()`` and other
        calls get in between attempts (OTP's ``try_again_restart``)."""
        for child_id in ids:
            child = self._get(child_id)
            if child is None or not child.pending_restart or child.ref is not None:
                continue
            child.restarts += 1
            try:
                self._start(child)
            except Exception:
                logger.exception("%s: restarting child %s failed", self.handle.name,
                                 safe_repr(child_id))
                self._note_restart()
                self.actor_ref.tell(_RetryRestart(tuple(ids)))
                return

    def _give_up(self) -> None:
        logger.error("%s: restart intensity exceeded; stopping every child", self.handle.name)
        self.shutting_down = True
        self._terminate_all(self.children)

    # -- message handlers -------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            return self._handle(message)
        except Exception:
            raise
        except BaseException as error:
            # User code in this thread (a child id's __eq__, a start's or a
            # registry call's KeyboardInterrupt): raised to Pykka, it would
            # stop every actor of the process. A SupervisorError instead: the
            # caller gets it (asked), or this supervisor fails (told).
            raise SupervisorError(
                f"{self.handle.name}: {type_name(error)} raised by user code in the "
                f"supervisor's thread while handling {type_name(message)}"
            ) from None

    def _handle(self, message: Any) -> Any:
        if isinstance(message, _ChildDown):
            return self._child_down(message.event)
        if isinstance(message, _StartChildren):
            return self._start_children()
        if isinstance(message, _StartChild):
            return self._start_child(message.spec)
        if isinstance(message, _ChildOp):
            return self._child_op(message.op, message.id)
        if isinstance(message, _WhichChildren):
            return [child.info() for child in self.children]
        if isinstance(message, _RetryRestart):
            return self._retry(message.ids)
        if isinstance(message, _Snapshot):
            return self._snapshot()
        return super().on_receive(message)

    def _snapshot(self) -> SupervisorSnapshot:
        now = time.monotonic()
        name = getattr(self.registry, "name", None)
        return SupervisorSnapshot(
            name=self.handle.name,
            actor_urn=self.actor_urn,
            strategy=self.strategy,
            max_restarts=self.max_restarts,
            max_seconds=self.max_seconds,
            restarts_in_window=sum(1 for t in self.restart_times if now - t <= self.max_seconds),
            restarts_total=self.restarts_total,
            registry_name=name if isinstance(name, str) else None,
            children=tuple(
                ChildSnapshot(c.spec.id, c.spec.restart, c.restarts, c.ref, c.spec.name,
                              c.handle if isinstance(c.handle, Supervisor) else None)
                for c in self.children
            ),
        )

    def _start_children(self) -> None:
        started: list[_Child] = []
        for child in list(self.children):
            try:
                if self._start(child) is None:
                    continue  # retired
            except BaseException:
                self._terminate_all(started)
                raise
            started.append(child)

    def _start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        for child in self.children:
            try:
                taken = child.spec.id is spec.id or bool(child.spec.id == spec.id)
            except BaseException as error:  # user code (no Ctrl-C lands in this thread)
                raise SupervisorError(
                    f"child id {safe_repr(spec.id)} cannot be compared with the id "
                    f"{safe_repr(child.spec.id)} of another child ({type_name(error)} "
                    "from an __eq__); nothing was started"
                ) from None
            if taken:
                raise SupervisorError(f"a child with id {safe_repr(spec.id)} already exists")
        child = _Child(spec)
        self.children.append(child)
        try:
            ref = self._start(child)
        except BaseException:
            self.children.remove(child)
            raise
        if ref is None:
            raise SupervisorError(f"child {safe_repr(spec.id)} retired as it started")
        return ref

    def _child_op(self, op: str, child_id: Hashable) -> Any:
        child = self._find(child_id)
        if op == "terminate":
            self._terminate(child)
        elif op == "restart":
            if child.ref is not None:
                raise SupervisorError(f"child {safe_repr(child_id)} is running; terminate it first")
            if self._start(child) is None:
                raise SupervisorError(f"child {safe_repr(child_id)} retired as it started")
            return child.ref
        elif op == "delete":
            self._terminate(child)
            self.children.remove(child)
        return None

    def _child_down(self, event: DownEvent) -> None:
        """A monitored child died (tell-ed: an exception here crashes us)."""
        index = next(
            (i for i, c in enumerate(self.children)
             if c.ref is not None and c.ref.actor_urn == event.actor_ref.actor_urn),
            None,
        )
        if index is None:
            return  # a child we stopped on purpose, or one already replaced
        child = self.children[index]
        if child.handle is not None:
            child.handle.wait_finished(max(child.spec.shutdown, child.handle.shutdown_budget()))
        child.ref = child.handle = None
        child.monitor = None
        if self.shutting_down or _deathwatch.stopping_all():
            return
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and event.reason is None):
            if restart == "temporary":
                self.children.remove(child)
            return
        try:
            self._note_restart()  # one restart per failure, whatever the strategy
            if self.strategy == "one_for_one":
                affected = [child]
            elif self.strategy == "one_for_all":
                affected = list(self.children)
            else:
                affected = self.children[index:]
            others = [c for c in affected if c is not child]
            self._terminate_all(others)
            for sibling in others:
                if sibling.spec.restart == "temporary":  # stopped, never restarted
                    self.children.remove(sibling)
            restarting = [c for c in affected if c in self.children]
            for c in restarting:
                c.pending_restart = True
            self._restart([c.spec.id for c in restarting])
        except RestartIntensityExceeded:
            self._give_up()
            raise

    def _retry(self, ids: tuple[Hashable, ...]) -> None:
        if self.shutting_down or _deathwatch.stopping_all():
            return
        try:
            self._restart(ids)
        except RestartIntensityExceeded:
            self._give_up()
            raise

    def on_stop(self) -> None:
        self.shutting_down = True
        self._terminate_all(self.children)
        self.handle._finished.set()

    def on_failure(self, *exc_info: Any) -> None:
        self.shutting_down = True
        self._terminate_all(self.children)
        self.handle._finished.set()


def _stop_quietly(ref: pykka.ActorRef[Any]) -> None:
    try:
        ref.stop(block=False)
    except pykka.ActorDeadError:
        pass


def _tell_quietly(ref: pykka.ActorRef[Any], message: Any) -> None:
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        pass


class _DaemonSupervisorActor(SupervisorActor):
    use_daemon_thread = True


class Supervisor:
    """A handle on a running supervisor. Create one with :meth:`Supervisor.start`.

    Every method may be called from any thread except the supervisor's own
    (a child must not call its supervisor's methods from ``on_start``).
    """

    def __init__(self, name: str, call_timeout: float) -> None:
        self.name = name
        self.call_timeout = call_timeout
        self._finished = threading.Event()
        self._ref: Optional[pykka.ActorRef[Any]] = None
        self._shutdown_budget: Callable[[], float] = lambda: 0.0
        self._snapshot_lock = threading.Lock()
        self._snapshot_future: Optional[pykka.Future[Any]] = None

    def shutdown_budget(self) -> float:
        """How long stopping this supervisor's whole subtree may take: the sum
        of its children's ``shutdown`` (nested trees counted in full)."""
        return self._shutdown_budget()

    @classmethod
    def start(
        cls,
        children: Sequence[ChildSpec] = (),
        strategy: SupervisorStrategy = "one_for_one",
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        registry: Optional[SupervisedRegistry] = None,
        *,
        name: Optional[str] = None,
        call_timeout: float = 30.0,
        daemon: bool = False,
    ) -> Supervisor:
        """Start a supervisor and its children, in order; return once every
        child is running (and registered, if named).

        ``registry`` (a :class:`~pykka_registry.Registry`; typed as
        :class:`SupervisedRegistry`, what the supervisor uses of it) is where
        children with a ``name`` or ``groups`` are registered.

        With ``daemon=True`` the supervisor's own thread does not keep the
        interpreter alive (its children's threads are their own business);
        a registry's own supervisor runs so.

        If a child fails to start, the ones already started are stopped (in
        reverse order), the supervisor stops, and the error is raised here.

        Every setting is checked before anything starts. ``max_seconds`` and
        ``call_timeout`` follow the rule of every timeout of the package
        (:mod:`pykka_registry._timeouts`): real numbers of seconds ``> 0``,
        else :class:`~pykka_registry.InvalidTimeoutError` (a ``ValueError``);
        ``inf`` is clamped to a year. ``max_restarts`` is an ``int >= 0``
        (not a ``bool``), else ``ValueError``.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {safe_repr(strategy)}")
        if (isinstance(max_restarts, bool) or not isinstance(max_restarts, int)
                or max_restarts < 0):
            raise ValueError(f"max_restarts must be an int >= 0, got {safe_repr(max_restarts)}")
        max_seconds = check_timeout(max_seconds, "max_seconds", positive=True)
        call_timeout = check_timeout(call_timeout, "call_timeout", positive=True)
        specs = list(children)
        for spec in specs:
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"children must be ChildSpec values, got {type_name(spec)}")
        ids = [spec.id for spec in specs]
        try:
            unique = len(set(ids)) == len(ids)
        except KeyboardInterrupt:  # the caller's Ctrl-C, not the ids' fault
            raise
        except BaseException as error:  # a child id's __eq__ (its hash was checked)
            raise ValueError(
                f"child ids must be unique and comparable, got {safe_repr(ids)} "
                f"({type_name(error)} from an id's __eq__)"
            ) from None
        if not unique:
            raise ValueError(f"child ids must be unique, got {safe_repr(ids)}")
        handle = cls(name or f"supervisor-{next(_supervisor_counter)}", call_timeout)
        actor_class = _DaemonSupervisorActor if daemon else SupervisorActor
        ref = actor_class.start(handle, specs, strategy, max_restarts, max_seconds, registry)
        handle._ref = ref
        with _all_supervisors_lock:
            _all_supervisors.add(handle)
        try:
            ref.ask(_StartChildren(), timeout=call_timeout)
        except pykka.Timeout:
            _stop_quietly(ref)
            raise SupervisorError(
                f"{handle.name}: children did not start within {call_timeout}s"
            ) from None
        except BaseException:
            _stop_quietly(ref)
            handle.wait_finished(call_timeout)
            raise
        return handle

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]:
        """The supervisor actor (monitor it, or nest it in another tree)."""
        assert self._ref is not None
        return self._ref

    def is_alive(self) -> bool:
        """True while the supervisor actor runs."""
        return self._ref is not None and self._ref.is_alive()

    def _ask(self, message: Any, timeout: Optional[float] = None) -> Any:
        timeout = optional_timeout(timeout, self.call_timeout)
        try:
            return self.actor_ref.ask(message, timeout=timeout)
        except pykka.ActorDeadError:
            raise SupervisorError(f"{self.name} is not running") from None
        except pykka.Timeout:
            raise RegistryUnavailableError(
                f"{self.name} did not answer within {timeout}s"
            ) from None

    def which_children(self) -> list[ChildInfo]:
        """Every child, in start order, with its current ref (``None`` while down)."""
        return self._ask(_WhichChildren())

    def snapshot(self, timeout: float = 0.5) -> SupervisorSnapshot:
        """The supervisor's strategy, intensity and children, read in its own
        thread (so the picture is consistent); waits at most ``timeout``.

        A request still unanswered from an earlier call (the supervisor is
        busy, say restarting a slow child) is waited on again rather than
        sent twice. Read-only.

        Raises:
            SupervisorError: the supervisor is not running.
            RegistryUnavailableError: it did not answer within ``timeout``.
        """
        timeout = check_timeout(timeout)
        deadline = time.monotonic() + timeout
        # One caller at a time takes the answer (a Pykka future hands its
        # value to one waiter first); others wait for the lock, within timeout.
        if not self._snapshot_lock.acquire(timeout=max(0.0, timeout)):
            raise RegistryUnavailableError(f"{self.name} did not answer within {timeout}s")
        try:
            future = self._snapshot_future
            if future is None:
                try:
                    future = self.actor_ref.ask(_Snapshot(), block=False)
                except pykka.ActorDeadError:
                    raise SupervisorError(f"{self.name} is not running") from None
                self._snapshot_future = future
            try:
                result: SupervisorSnapshot = future.get(
                    timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                raise RegistryUnavailableError(
                    f"{self.name} did not answer within {timeout}s"
                ) from None
            except pykka.ActorDeadError:
                self._snapshot_future = None
                raise SupervisorError(f"{self.name} is not running") from None
            except Exception as error:
                self._snapshot_future = None
                raise SupervisorError(
                    f"{self.name} could not describe itself: {safe_repr(error)}") from None
            self._snapshot_future = None
            return result
        finally:
            self._snapshot_lock.release()

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Add a child and start it; return its ref once it runs (and is registered)."""
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"spec must be a ChildSpec, got {type_name(spec)}")
        return self._ask(_StartChild(spec))

    def terminate_child(self, id: Hashable, timeout: Optional[float] = None) -> None:
        """Stop a child (it stays in the tree, down, until ``restart_child``);
        returns once it has stopped and its name has left the registry.

        ``timeout`` bounds the whole call (default: the supervisor's
        ``call_timeout``); the child itself gets its spec's ``shutdown``.
        """
        self._ask(_ChildOp("terminate", id), timeout)

    def restart_child(self, id: Hashable) -> pykka.ActorRef[Any]:
        """Start a terminated child again; return its new ref."""
        return self._ask(_ChildOp("restart", id))

    def delete_child(self, id: Hashable, timeout: Optional[float] = None) -> None:
        """Stop a child if it runs and remove its spec from the tree; ``timeout``
        as for :meth:`terminate_child`."""
        self._ask(_ChildOp("delete", id), timeout)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop every child in reverse start order, then the supervisor; return
        once all have stopped. Idempotent."""
        timeout = optional_timeout(timeout, self.call_timeout)
        ref = self._ref
        if ref is None:
            return
        try:
            ref.stop(block=True, timeout=timeout)
        except pykka.ActorDeadError:
            pass
        except pykka.Timeout:
            raise RegistryUnavailableError(f"{self.name} did not stop within {timeout}s") from None
        self.wait_finished(timeout)

    def wait_finished(self, timeout: Optional[float] = None) -> bool:
        """Wait until the supervisor has stopped all its children after dying."""
        return self._finished.wait(optional_timeout(timeout, self.call_timeout))

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Supervisor {self.name}>"
