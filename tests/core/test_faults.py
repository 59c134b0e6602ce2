"""Fault injection for the core registry: poisoned keys and metadata, hostile
user code in the server thread, bad timeouts, a server killed under load, a
message lost in a dying server's mailbox, a registry stopped under a waiter.

Each test here guards a guarantee that an adversarial review once found
broken; the Redis side lives in tests/redis/test_redis_faults.py.
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from typing import Any

import pykka
import pytest

from pykka_registry import (
    IndexedBackend,
    InvalidKeyError,
    InvalidMetadataError,
    InvalidTimeoutError,
    MemoryBackend,
    NotRegisteredError,
    Registered,
    Registry,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
    test_namespace,
)
from pykka_registry._metadata import MAX_DEPTH
from pykka_registry.testing import ActorFactory, Echo, wait_until

BACKENDS = [MemoryBackend, IndexedBackend]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def registry(request: Any) -> Any:
    with Registry.start(backend=request.param, max_restarts=1000) as registry:
        yield registry


@pytest.fixture
def actors() -> Any:
    factory = ActorFactory()  # actors() starts an Echo
    yield factory
    factory.stop_all()


# -- hostile objects -------------------------------------------------------------------


class HashRaises:
    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    def __hash__(self) -> int:
        raise self.error("hash on purpose")


class EqRaises:
    """Hashes like every other instance; comparing raises."""

    def __init__(self, error: type[BaseException] = RuntimeError) -> None:
        self.error = error

    def __hash__(self) -> int:
        return 42

    def __eq__(self, other: object) -> bool:
        raise self.error("eq on purpose")


class ReprRaises:
    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return other is self

    def __repr__(self) -> str:
        raise RuntimeError("repr on purpose")


class ItemsRaise(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise OSError("items on purpose")


HOSTILE_VALUES = [
    memoryview(bytearray(b"writable")),  # hash() raises ValueError
    HashRaises(RuntimeError),
    HashRaises(SystemExit),              # a BaseException in the server thread
    EqRaises(),
    EqRaises(KeyboardInterrupt),
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=lambda v: type(v).__name__)
def test_a_hostile_metadata_value_never_poisons_the_registry(
    registry: Registry, actors: Any, value: Any
) -> None:
    ns = test_namespace()
    events: list[Any] = []
    registry.subscribe(events.append, namespace=ns)
    holders = [actors() for _ in range(3)]
    for i, ref in enumerate(holders):
        try:
            registry.register(ns, f"s{i}", ref, {"bad": value, "role": "x"})
        except InvalidMetadataError:
            continue  # refused up front is allowed: then nothing is stored
    stored = registry.list_services(ns)
    # The index (if any) agrees with a scan, and every write still works.
    assert sorted(s for s, _, _ in registry.match(ns, {"role": "x"})) == sorted(stored)
    assert sorted(s for s, _, _ in registry.find_services_by_metadata(
        ns, lambda m: m.get("role") == "x")) == sorted(stored)
    for service in stored:
        registry.update_metadata(ns, service, {"role": "y", "bad": value})
        assert [s for s, _, _ in registry.match(ns, {"role": "y"})].count(service) == 1
    if stored:
        registry.unregister(ns, stored[0])
    for ref in holders:
        ref.stop(block=True)
    assert registry.count(ns) == 0 and registry.match(ns, {}) == []
    assert registry.running
    wait_until(lambda: len([e for e in events if isinstance(e, Registered)]) == len(stored),
               message="a Registered event per stored entry")
    backend = registry.backend
    if isinstance(backend, IndexedBackend):
        assert backend.index_size() == 0, "a stale index term was left behind"


def test_a_dozen_deaths_of_poisoned_holders_do_not_kill_the_registry(actors: Any) -> None:
    ns = test_namespace()
    with Registry.start(backend=IndexedBackend, max_restarts=3, max_seconds=60) as registry:
        for i in range(15):
            ref = actors()
            try:
                registry.register(ns, f"p{i}", ref, {"bad": memoryview(bytearray(b"x"))})
            except InvalidMetadataError:
                pass
            ref.stop(block=True)
        assert registry.running and registry.stats().server_restarts == 0
        assert registry.list_services(ns) == [] and registry.count(ns) == 0


@pytest.mark.parametrize("error", [ValueError, RuntimeError, OverflowError])
def test_a_key_whose_hash_raises_gets_invalid_key_error_everywhere(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    bad = HashRaises(error)
    ref = actors()
    calls = [
        lambda: registry.register("ns", bad, ref),
        lambda: registry.register(bad, "svc", ref),
        lambda: registry.lookup("ns", bad),
        lambda: registry.lookup_with_metadata("ns", bad),
        lambda: registry.unregister("ns", bad),
        lambda: registry.update_metadata("ns", bad, {}),
        lambda: registry.count(bad),
        lambda: registry.list_services(bad),
        lambda: registry.via("ns", bad),
        lambda: registry.register_many("ns", [("ok", ref), (bad, ref)]),
        lambda: registry.unregister_many("ns", ["ok", bad]),
        lambda: registry.await_name("ns", bad, timeout=0.1),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert registry.count() == 0 and registry.running


def test_a_key_whose_eq_raises_in_the_server_thread_is_contained(
    registry: Registry, actors: Any
) -> None:
    ns = test_namespace()
    first, second = EqRaises(), EqRaises(SystemExit)  # same hash: they collide
    registry.register(ns, first, actors())
    with pytest.raises(InvalidKeyError):
        registry.register(ns, second, actors())  # compares with `first` in the server
    with pytest.raises(InvalidKeyError):
        registry.lookup(ns, second)  # and in the caller's thread
    assert registry.running
    assert pykka.ActorRegistry.get_all(), "a BaseException in the server stopped every actor"
    assert registry.count(ns) == 1


def test_error_messages_never_run_into_a_hostile_repr(registry: Registry, actors: Any) -> None:
    ns = test_namespace()
    huge = 10**5000  # repr() of it raises ValueError (int max str digits)
    for key in (huge, ReprRaises()):
        with pytest.raises(NotRegisteredError):
            registry.via(ns, key).tell("x")
        holder = actors()
        registry.register(ns, key, holder)
        with pytest.raises(RegistryError) as taken:
            registry.register(ns, key, actors())
        assert "..." in str(taken.value) or "repr failed" in str(taken.value)
        registry.unregister(ns, key)


@pytest.mark.parametrize("make", [
    lambda: (lambda x: (x.append(x), x)[1])([]),             # a list that contains itself
    lambda: _deep(3000),                                      # 3,000 levels
    lambda: _deep(MAX_DEPTH + 2),
    lambda: list(range(200_000)),                             # too many items
], ids=["self-referencing", "3000-deep", "past-max-depth", "too-many-items"])
def test_metadata_past_the_limits_is_refused(registry: Registry, actors: Any, make: Any) -> None:
    ns = test_namespace()
    with pytest.raises(InvalidMetadataError):
        registry.register(ns, "svc", actors(), {"value": make()})
    assert registry.count(ns) == 0


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


def test_metadata_at_the_depth_limit_is_accepted(registry: Registry, actors: Any) -> None:
    ns = test_namespace()
    registry.register(ns, "svc", actors(), {"value": _deep(MAX_DEPTH - 1)})
    assert registry.count(ns) == 1


def test_a_mapping_whose_items_raise_is_invalid_metadata(registry: Registry,
                                                         actors: Any) -> None:
    with pytest.raises(InvalidMetadataError):
        registry.register(test_namespace(), "svc", actors(), ItemsRaise(a=1))


def test_hostile_criteria_do_not_leak_raw_errors_from_match(registry: Registry,
                                                            actors: Any) -> None:
    ns = test_namespace()
    registry.register(ns, "svc", actors(), {"a": 1})
    assert registry.match(ns, {"a": EqRaises()}) == []


# -- timeouts --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, -1, "5", True, None])
def test_bad_timeouts_are_refused_at_once(registry: Registry, bad: Any) -> None:
    ns = test_namespace()
    calls = [
        lambda: registry.await_name(ns, "svc", timeout=bad),
        lambda: registry.sync(timeout=bad),
        lambda: registry.stop_namespace(ns, timeout=bad),
        lambda: registry.via(ns, "svc").ask("x", timeout=bad),
    ]
    for call in calls:
        if bad is None:
            continue  # None means "the default" where it is accepted
        started = time.monotonic()
        with pytest.raises((InvalidTimeoutError, NotRegisteredError)):
            call()
        assert time.monotonic() - started < 1.0, "a bad timeout was waited on"
    with pytest.raises(InvalidTimeoutError):
        Registry.start(call_timeout=math.nan)
    with pytest.raises(InvalidTimeoutError):
        Registry.start(call_timeout=0)


@pytest.mark.parametrize("huge", [math.inf, 1e300, 10**400])
def test_infinite_and_huge_timeouts_are_clamped(actors: Any, huge: Any) -> None:
    ns = test_namespace()
    with Registry.start(call_timeout=huge) as registry:
        ref = actors()
        registry.register(ns, "svc", ref)  # every write carries the clamped call_timeout
        assert registry.await_name(ns, "svc", timeout=huge) is ref
        registry.sync(timeout=huge)
        assert registry.via(ns, "svc").ask("hi", timeout=huge) == ("echo", "hi")
        if isinstance(huge, float):  # Pykka's own Future.get takes only floats
            answer = registry.via(ns, "svc").ask("hi", block=False)
            assert answer.get(timeout=huge) == ("echo", "hi")
        registry.stop_namespace(ns, timeout=huge)


def test_await_name_with_nan_does_not_spin() -> None:
    with Registry.start() as registry:
        started = time.monotonic()
        with pytest.raises(InvalidTimeoutError):
            registry.await_name("ns", "never", timeout=math.nan)
        assert time.monotonic() - started < 1.0


# -- the registry stopping under a waiter ------------------------------------------------


def test_await_name_notices_registry_stop_at_once() -> None:
    registry = Registry.start()
    outcome: list[Any] = []
    waiting = threading.Event()

    def wait() -> None:
        waiting.set()
        try:
            registry.await_name("ns", "never", timeout=60)
        except BaseException as error:
            outcome.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert waiting.wait(5)
    wait_until(lambda: registry._state.waiters, message="the waiter is waiting")
    started = time.monotonic()
    registry.stop()
    waiter.join(10)
    assert not waiter.is_alive()
    assert time.monotonic() - started < 2.0, "await_name sat out its deadline"
    assert len(outcome) == 1 and isinstance(outcome[0], RegistryUnavailableError)


def test_stop_namespace_timeout_says_what_was_done(actors: Any) -> None:
    ns = test_namespace()
    release = threading.Event()

    class Stubborn(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> None:
            release.wait(10)  # busy: the stop waits behind this message

    with Registry.start() as registry:
        stubborn = Stubborn.start()
        try:
            registry.register(ns, "stubborn", stubborn)
            stubborn.tell("be busy")
            with pytest.raises(RegistryTimeoutError, match="removed"):
                registry.stop_namespace(ns, timeout=0.2)
            assert registry.count(ns) == 0  # as the docs and the error say
        finally:
            release.set()
            stubborn.actor_stopped.wait(5)


# -- the server dies under load ----------------------------------------------------------


def test_a_message_lost_in_a_dying_servers_mailbox_is_sent_again(actors: Any) -> None:
    """A message put into the server's mailbox after Pykka drained it is never
    answered; the caller must notice the server stopped and resend it to the
    successor, long before its call_timeout."""
    ns = test_namespace()
    with Registry.start(call_timeout=30.0) as registry:
        old = registry.server_ref
        old.stop(block=True)  # the supervisor starts a successor
        wait_until(lambda: registry.server_ref is not old, message="a successor runs")
        successor = registry.server_ref
        # Replay the race: a caller that still sees the old server, and whose
        # send passes Pykka's is_alive() check just before the server stops,
        # so the message lands in a mailbox nobody reads any more.
        old.is_alive = lambda: True  # type: ignore[method-assign]
        registry._state.server_ref = old
        threading.Timer(0.1, registry._state.set_server, args=(successor,)).start()
        started = time.monotonic()
        ref = actors()
        registry.register(ns, "svc", ref)
        assert time.monotonic() - started < 5.0, "the lost message waited for call_timeout"
        assert registry.lookup(ns, "svc") is ref
        assert old.actor_inbox.qsize() == 1, "the message did land in the dead mailbox"


def test_nothing_acknowledged_is_lost_while_the_server_is_killed(actors: Any) -> None:
    ns = test_namespace()
    with Registry.start(max_restarts=10_000, max_seconds=1.0, call_timeout=10.0) as registry:
        holder = actors()
        acknowledged: list[str] = []
        errors: list[BaseException] = []
        done = threading.Event()

        def writer(t: int) -> None:
            for i in range(150):
                service = f"w{t}-{i}"
                try:
                    registry.register(ns, service, holder)
                    acknowledged.append(service)
                except RegistryUnavailableError:
                    pass  # not acknowledged: may or may not be stored
                except BaseException as error:
                    errors.append(error)

        def killer() -> None:
            while not done.is_set():
                try:
                    registry.server_ref.stop(block=False)
                except (pykka.ActorDeadError, RegistryError):
                    pass
                done.wait(0.01)

        writers = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        chaos = threading.Thread(target=killer)
        chaos.start()
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(120)
        done.set()
        chaos.join(10)
        assert errors == []
        assert registry.stats().server_restarts > 0, "the server was never killed"
        missing = [s for s in acknowledged if registry.lookup(ns, s) is not holder]
        assert missing == [], f"{len(missing)} acknowledged registrations were lost"


def test_a_child_start_raising_base_exception_is_a_failed_start() -> None:
    from pykka_registry import ChildSpec, Supervisor, SupervisorError

    def start() -> Any:
        raise SystemExit("from a start() callable")

    bystander = Echo.start()
    try:
        with pytest.raises(SupervisorError, match="SystemExit"):
            Supervisor.start([ChildSpec(id="bad", start=start)])
        assert bystander.is_alive(), "a BaseException in start() stopped every actor"
    finally:
        bystander.stop()


# -- the event dispatcher runs hostile user code -----------------------------------------


class NamespaceEqRaises:
    """A namespace equal only to itself, whose comparison with anything else
    raises (a BaseException too)."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    def __hash__(self) -> int:
        return 4242

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        raise self.error("namespace eq on purpose")


class CopiesOnce(collections.UserList):  # type: ignore[type-arg]
    """Metadata that copies once (the registry's own copy, in the caller's
    thread), then raises on every later copy: the copy for an event."""

    def __init__(self, data: Any, error: type[BaseException]) -> None:
        super().__init__(data)
        self.error = error
        self.copies = 0

    def __deepcopy__(self, memo: Any) -> Any:
        self.copies += 1
        if self.copies > 1:
            raise self.error("copy on purpose")
        twin = CopiesOnce(list(self.data), self.error)
        twin.copies = 1
        return twin


def _events_still_flow(registry: Registry, actors: Any) -> None:
    """Another listener gets events and await_name wakes at once."""
    seen: list[Any] = []
    registry.subscribe(seen.append, namespace="after")
    registry.register("after", "one", actors())
    wait_until(lambda: len(seen) == 1, message="the dispatcher still delivers")
    threading.Timer(0.05, registry.register, args=("after", "two", actors())).start()
    started = time.monotonic()
    registry.await_name("after", "two", timeout=10)
    assert time.monotonic() - started < 5, "await_name waited out its deadline"
    health = registry.health_check()
    assert health.dispatcher_alive and health.status == "healthy", health.problems


@pytest.mark.parametrize("error", [RuntimeError, SystemExit, KeyboardInterrupt])
def test_a_namespace_filter_whose_eq_raises_never_kills_the_dispatcher(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    hostile: list[Any] = []
    registry.subscribe(hostile.append, namespace=NamespaceEqRaises(error))
    registry.register(test_namespace(), "svc", actors())  # compared with the hostile filter
    _events_still_flow(registry, actors)
    assert hostile == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_replay_whose_metadata_copy_raises_never_kills_the_dispatcher(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    ns = test_namespace()
    registry.register(ns, "bad", actors(), {"v": CopiesOnce([1], error)})
    registry.register(ns, "good", actors(), {"v": 1})
    replayed: list[Any] = []
    registry.subscribe(replayed.append, namespace=ns, replay=True)
    wait_until(lambda: [e.service for e in replayed] == ["good"],
               message="the other entry is replayed, the hostile one left out")
    registry.register(ns, "live", actors())
    wait_until(lambda: [e.service for e in replayed] == ["good", "live"],
               message="the live stream follows the replay")
    _events_still_flow(registry, actors)


def test_health_check_reports_a_dispatcher_that_stopped(registry: Registry) -> None:
    from pykka_registry._events import _STOP

    registry.subscribe(lambda event: None)
    assert registry.health_check().dispatcher_alive
    dispatch = registry._state.events._current
    assert dispatch is not None and dispatch.thread is not None
    dispatch.queue.put(_STOP)  # the thread ends as if it had died, its subscriber still there
    dispatch.thread.join(5)
    health = registry.health_check()
    assert not health.dispatcher_alive
    assert health.status == "unhealthy" and any("dispatcher" in p for p in health.problems)


# -- BaseException from user code run in the server thread --------------------------------


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, GeneratorExit, ValueError])
def test_run_in_server_hands_any_exception_back_and_the_server_lives(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    bystander = actors()

    def function(backend: Any) -> None:
        raise error("from run_in_server on purpose")

    with pytest.raises(error, match="on purpose"):
        registry.run_in_server(function)
    assert bystander.is_alive(), "a BaseException in the server stopped every actor"
    assert registry.running and registry.stats().server_restarts == 0
    assert registry.run_in_server(lambda backend: 42) == 42
    registry.register(test_namespace(), "after", bystander)


def test_a_submitted_call_raising_base_exception_is_logged_and_the_server_lives(
    registry: Registry, actors: Any
) -> None:
    bystander = actors()
    ran = threading.Event()

    def submitted(state: Any) -> None:
        ran.set()
        raise SystemExit("from a submitted call on purpose")

    registry._state.submit(submitted)
    assert ran.wait(5)
    registry.sync()
    assert bystander.is_alive(), "a BaseException in the server stopped every actor"
    assert registry.running and registry.stats().server_restarts == 0


# -- copy first, then write: a raising call changed nothing ------------------------------


@pytest.mark.parametrize("error", [RuntimeError, SystemExit])
def test_a_write_whose_event_copy_raises_stores_nothing(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    ns = test_namespace()
    seen: list[Any] = []
    registry.subscribe(seen.append, namespace=ns)  # events are built: the copy runs
    ref = actors()
    with pytest.raises((InvalidMetadataError, InvalidKeyError)):
        registry.register(ns, "svc", ref, {"v": CopiesOnce([1], error)})
    assert registry.lookup(ns, "svc") is None, "the entry was stored though the call raised"
    with pytest.raises((InvalidMetadataError, InvalidKeyError)):
        registry.register_many(ns, [("a", ref), ("b", ref, {"v": CopiesOnce([1], error)})])
    assert registry.list_services(ns) == []
    registry.register(ns, "svc", ref, {"v": 1})
    with pytest.raises((InvalidMetadataError, InvalidKeyError)):
        registry.update_metadata(ns, "svc", {"v": CopiesOnce([2], error)})
    assert registry.lookup_with_metadata(ns, "svc") == (ref, {"v": 1})
    with pytest.raises((InvalidMetadataError, InvalidKeyError)):
        registry.join(ns, "group", ref, {"v": CopiesOnce([3], error)})
    assert registry.members(ns, "group") == []
    registry.sync()
    wait_until(lambda: len(seen) == 1, message="the one write that worked is published")
    assert [type(e) for e in seen] == [Registered]
    assert registry.running and registry.stats().server_restarts == 0


def test_stop_namespace_refuses_a_namespace_that_cannot_be_compared_before_removing(
    registry: Registry, actors: Any
) -> None:
    grouped = NamespaceEqRaises(RuntimeError)
    named = NamespaceEqRaises(RuntimeError)  # same hash: collides with `grouped`
    member, holder = actors(), actors()
    registry.join(grouped, "group", member)
    registry.register(named, "svc", holder)
    with pytest.raises(InvalidKeyError, match="nothing was written"):
        registry.stop_namespace(named, timeout=5)
    assert registry.lookup(named, "svc") is holder and holder.is_alive()
    assert registry.members(grouped, "group") == [member]


class GroupsClearFails(MemoryBackend):
    """A backend whose removal of a namespace's memberships fails midway."""

    def clear_namespace_groups(self, namespace: Any) -> list[Any]:
        raise SystemExit("clear_namespace_groups on purpose")


def test_stop_namespace_failing_midway_says_what_it_did(actors: Any) -> None:
    ns = test_namespace()
    with Registry.start(backend=GroupsClearFails) as registry:
        seen: list[Any] = []
        registry.subscribe(seen.append, namespace=ns)
        holder, member = actors(), actors()
        registry.register(ns, "svc", holder)
        registry.join(ns, "group", member)
        with pytest.raises(InvalidKeyError, match=r"removed 1 name\(s\) and told 1 actor"):
            registry.stop_namespace(ns, timeout=5)
        assert registry.lookup(ns, "svc") is None
        assert not holder.is_alive(), "the actor whose name was removed was not stopped"
        wait_until(lambda: any(getattr(e, "service", None) == "svc" for e in seen),
                   message="the removed name's Unregistered event is published")
        assert registry.running and registry.stats().server_restarts == 0


# -- await_name keeps to its own deadline; sync(timeout=0) ----------------------------


def test_await_name_keeps_to_its_timeout_when_the_server_is_busy(actors: Any) -> None:
    from pykka_registry.testing import holding_server

    with Registry.start(call_timeout=5.0) as registry:
        with holding_server(registry):  # the subscribe await_name sends waits behind it
            for timeout in (0.2, 0):
                started = time.monotonic()
                with pytest.raises(RegistryTimeoutError):
                    registry.await_name("ns", "never", timeout=timeout)
                took = time.monotonic() - started
                assert took < timeout + 1.0, f"await_name(timeout={timeout}) took {took:.2f}s"
        assert registry.running
        ref = actors()
        threading.Timer(0.05, registry.register, args=("ns", "later", ref)).start()
        assert registry.await_name("ns", "later", timeout=5) is ref


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_sync_with_a_zero_timeout_is_refused_at_once(busy: bool) -> None:
    from pykka_registry.testing import holding_server

    with Registry.start(call_timeout=5.0) as registry:
        if busy:
            with holding_server(registry):
                started = time.monotonic()
                with pytest.raises(InvalidTimeoutError):
                    registry.sync(timeout=0)
        else:
            started = time.monotonic()
            with pytest.raises(InvalidTimeoutError):
                registry.sync(timeout=0)
        assert time.monotonic() - started < 1.0
        registry.sync(timeout=5)


# -- BaseException from a key or a metadata value in the caller's thread -----------------


@pytest.mark.parametrize("error", [SystemExit, GeneratorExit])
def test_a_key_whose_hash_raises_base_exception_gets_invalid_key_error(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    bad = HashRaises(error)
    ref = actors()
    calls = [
        lambda: registry.register("ns", bad, ref),
        lambda: registry.register(bad, "svc", ref),
        lambda: registry.lookup("ns", bad),
        lambda: registry.lookup(bad, "svc"),
        lambda: registry.lookup_with_metadata("ns", bad),
        lambda: registry.unregister("ns", bad),
        lambda: registry.count(bad),
        lambda: registry.list_services(bad),
        lambda: registry.match(bad, {}),
        lambda: registry.members(bad, "g"),
        lambda: registry.register_many("ns", [("ok", ref), (bad, ref)]),
        lambda: registry.await_name("ns", bad, timeout=0.1),
    ]
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert registry.count() == 0 and registry.running


def test_keyboard_interrupt_from_a_key_in_the_callers_thread_passes_through(
    registry: Registry, actors: Any
) -> None:
    bad = HashRaises(KeyboardInterrupt)
    for call in (lambda: registry.lookup("ns", bad),
                 lambda: registry.register("ns", bad, actors())):
        with pytest.raises(KeyboardInterrupt):
            call()
    assert registry.count() == 0 and registry.running


def test_reads_of_a_namespace_that_cannot_be_compared_get_invalid_key_error(
    registry: Registry, actors: Any
) -> None:
    stored, other = NamespaceEqRaises(SystemExit), NamespaceEqRaises(SystemExit)  # one hash
    registry.register(stored, "svc", actors())
    registry.join(stored, "g", actors())
    for call in (lambda: registry.list_services(other), lambda: registry.match(other, {}),
                 lambda: registry.find_services_by_metadata(other, lambda m: True),
                 lambda: registry.groups(other), lambda: registry.match_members(other, "g", {})):
        with pytest.raises(InvalidKeyError):
            call()
    assert registry.list_services(stored) == ["svc"]


@pytest.mark.parametrize("error", [SystemExit, GeneratorExit, RuntimeError])
def test_a_stored_value_whose_eq_raises_base_exception_does_not_match(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    ns = test_namespace()
    registry.register(ns, "hostile", actors(), {"k": EqRaises(error), "tags": [EqRaises(error)]})
    registry.register(ns, "plain", actors(), {"k": 1, "tags": [1]})
    for criteria in ({"k": 1}, {"tags": 1}, {"k": "x"}):
        assert [s for s, _, _ in registry.match(ns, criteria)] in (["plain"], [])
    assert [s for s, _, _ in registry.match(ns, {"k": 1})] == ["plain"]
    assert registry.running


# -- the index and values whose hash is inconsistent with their __eq__ --------------------


class DriftingHash:
    """Equal only to itself, with a new hash at every call."""

    counter = itertools.count()

    def __hash__(self) -> int:
        return next(DriftingHash.counter)

    def __eq__(self, other: object) -> bool:
        return other is self


def test_a_value_whose_hash_drifts_leaves_no_stale_index_term(actors: Any) -> None:
    ns = test_namespace()
    with Registry.start(backend=IndexedBackend) as registry:
        backend = registry.backend
        assert isinstance(backend, IndexedBackend)
        ref, member = actors(), actors()
        metadata = {"v": DriftingHash(), "tags": [DriftingHash(), 1, 1], "role": "x"}
        registry.register(ns, "a", ref, metadata)
        registry.register(ns, "b", actors(), {"role": "x"})
        assert sorted(s for s, _, _ in registry.match(ns, {"role": "x"})) == ["a", "b"]
        registry.update_metadata(ns, "a", {"v": DriftingHash(), "role": "x"})
        assert sorted(s for s, _, _ in registry.match(ns, {"role": "x"})) == ["a", "b"]
        registry.unregister(ns, "a")
        registry.unregister(ns, "b")
        assert backend.index_size() == 0, "a stale index term was left behind"
        registry.register(ns, "c", ref, {"v": DriftingHash()})
        ref.stop(block=True)  # removed in the dying actor's thread
        assert backend.index_size() == 0, "a stale index term was left behind"
        registry.join(ns, "g", member, {"v": DriftingHash(), "role": "m"})
        assert registry.match_members(ns, "g", {"role": "m"})[0][0] is member
        registry.leave(ns, "g", member)
        assert backend._member_index == {}, "a stale member index term was left behind"


def test_a_hostile_repr_in_a_server_error_message_keeps_the_right_error(
    registry: Registry, actors: Any
) -> None:
    from pykka_registry import ActorNotAliveError

    dead = actors()
    dead.stop(block=True)
    with pytest.raises(ActorNotAliveError):
        registry.register_many(test_namespace(), [(ReprRaises(), dead)])
    assert registry.running and registry.stats().server_restarts == 0


@pytest.mark.parametrize("error", [SystemExit, RuntimeError])
def test_group_via_with_a_hostile_group_key_gets_invalid_key_error(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    ns = test_namespace()
    stored, other = NamespaceEqRaises(error), NamespaceEqRaises(error)  # one hash
    registry.join(ns, stored, actors())
    with pytest.raises(InvalidKeyError):
        registry.group_via(ns, other).tell("x")
    with pytest.raises(InvalidKeyError):
        registry.group_via(ns, stored, "hash").tell("x", key=HashRaises(error))
    assert registry.running and len(registry.members(ns, stored)) == 1


class HostileStr(str):
    """What a __repr__ may return: a str whose own methods raise."""

    def __len__(self) -> int:
        raise RuntimeError("len on purpose")

    def __getitem__(self, index: Any) -> Any:
        raise RuntimeError("getitem on purpose")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("format on purpose")

    def __str__(self) -> str:
        raise RuntimeError("str on purpose")


class ReprReturnsHostileStr:
    def __init__(self, size: int = 500) -> None:
        self.size = size

    def __hash__(self) -> int:
        return 11

    def __eq__(self, other: object) -> bool:
        return other is self

    def __repr__(self) -> str:
        return HostileStr("r" * self.size)


@pytest.mark.parametrize("size", [5, 500])
def test_safe_repr_of_a_repr_returning_a_hostile_str_never_raises(size: int) -> None:
    from pykka_registry._errors import safe_repr

    text = safe_repr(ReprReturnsHostileStr(size))
    assert type(text) is str and f"{text}" == ("r" * size)[:200 - 3] + ("..." if size > 200
                                                                         else "")


def test_a_key_whose_repr_returns_a_hostile_str_keeps_the_right_error(
    registry: Registry, actors: Any
) -> None:
    from pykka_registry import AlreadyRegisteredError

    ns, service = test_namespace(), ReprReturnsHostileStr()
    registry.register(ns, service, actors())
    with pytest.raises(AlreadyRegisteredError):
        registry.register(ns, service, actors())
    assert registry.running


class CopiesOnceThenRaises(collections.UserList):  # type: ignore[type-arg]
    """Copies fine in the caller's thread; the server's copy for the event
    raises ``error`` (a value whose own code raises KeyboardInterrupt)."""

    copies = 0
    error: type[BaseException] = KeyboardInterrupt

    def __deepcopy__(self, memo: Any) -> Any:
        type(self).copies += 1
        if type(self).copies > 1:
            raise self.error("copy on purpose")
        return CopiesOnceThenRaises(list(self.data))


@pytest.mark.parametrize("write", ["register", "register_many", "update_metadata", "join"])
def test_a_keyboard_interrupt_from_the_event_copy_in_the_server_is_invalid_metadata(
    registry: Registry, actors: Any, write: str
) -> None:
    ns, ref = test_namespace(), actors()
    registry.register(ns, "held", ref)
    registry.subscribe(lambda event: None)  # the server builds events now
    CopiesOnceThenRaises.copies = 0
    metadata = {"v": CopiesOnceThenRaises([1])}
    with pytest.raises(InvalidMetadataError):
        if write == "register":
            registry.register(ns, "s", ref, metadata)
        elif write == "register_many":
            registry.register_many(ns, [("s", ref, metadata)])
        elif write == "update_metadata":
            registry.update_metadata(ns, "held", metadata)
        else:
            registry.join(ns, "g", ref, metadata)
    assert CopiesOnceThenRaises.copies == 2, "the server's copy was not the one that raised"
    assert registry.lookup(ns, "s") is None and registry.members(ns, "g") == []
    assert registry.lookup_with_metadata(ns, "held") == (ref, {})
    assert registry.running and registry.stats().server_restarts == 0


def test_a_bug_that_reaches_the_dispatcher_guard_is_logged_with_its_traceback(
    registry: Registry, actors: Any, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    from pykka_registry._events import EventBus

    ns, ref, seen = test_namespace(), actors(), threading.Event()
    failures = [True]

    def buggy_wanted(self: Any, subscription: Any, event: Any) -> bool:
        if failures and failures.pop():
            raise AttributeError("a bug of the library on purpose")
        return True

    monkeypatch.setattr(EventBus, "_wanted", buggy_wanted)
    registry.subscribe(lambda event: seen.set(), namespace=ns)
    with caplog.at_level("ERROR", logger="pykka_registry"):
        registry.register(ns, "first", ref)    # hits the bug
        registry.register(ns, "second", ref)   # delivered: the dispatcher lives
        assert seen.wait(5)
    guard = [r for r in caplog.records if "dispatcher failed" in r.getMessage()]
    assert guard and guard[0].exc_info is not None, "the bug was logged without its traceback"
    assert guard[0].exc_info[0] is AttributeError
    assert registry.health_check().dispatcher_alive


class TurnsHostile:
    """Hashes and compares fine while stored; then (``armed``) its hash raises."""

    armed = False

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        if TurnsHostile.armed and self.n == 2:
            raise RuntimeError("hash on purpose")
        return self.n

    def __eq__(self, other: object) -> bool:
        return other is self


@pytest.mark.parametrize("kind", ["names", "groups"])
def test_stop_namespace_with_a_key_turned_hostile_changes_nothing(
    registry: Registry, actors: Any, kind: str
) -> None:
    ns, events = test_namespace(), list[Any]()
    first, second = actors(), actors()
    keys = TurnsHostile(1), TurnsHostile(2)
    registry.subscribe(events.append, namespace=ns)
    for key, ref in zip(keys, (first, second)):
        if kind == "names":
            registry.register(ns, key, ref)
        else:
            registry.join(ns, key, ref)
    TurnsHostile.armed = True
    try:
        with pytest.raises(InvalidKeyError, match="nothing was written"):
            registry.stop_namespace(ns, timeout=5)
    finally:
        TurnsHostile.armed = False
    # Nothing removed: the first key (removed before the second raised, on
    # the old code) is still there, its actor alive, and no event lost.
    if kind == "names":
        assert registry.lookup(ns, keys[0]) is first
        assert registry.count(ns) == 2
    else:
        assert registry.members(ns, keys[0]) == [first]
        assert (ns, keys[0]) in registry.groups_of(first)
    assert first.is_alive() and second.is_alive()
    registry.stop_namespace(ns, timeout=5)  # the key is tame again: all goes
    assert registry.count(ns) == 0 and registry.groups(ns) == []
    # Every change has its event: two in, then two out (none lost between).
    wait_until(lambda: len(events) >= 4, message="an event per change")
    added = [type(e).__name__ for e in events[:2]]
    assert added == (["Registered"] * 2 if kind == "names" else ["Joined"] * 2)
    assert [type(e).__name__ for e in events[2:]] == (
        ["Unregistered"] * 2 if kind == "names" else ["Left"] * 2)


@pytest.mark.parametrize("error", [RuntimeError, SystemExit])
def test_a_death_with_a_key_turned_hostile_still_removes_the_other_names(
    registry: Registry, actors: Any, error: type[BaseException]
) -> None:
    class Turns:
        armed = False

        def __hash__(self) -> int:
            if Turns.armed:
                raise error("hash on purpose")
            return 31

        def __eq__(self, other: object) -> bool:
            return other is self

    ns, doomed, events = test_namespace(), actors(), list[Any]()
    registry.subscribe(events.append, namespace=ns)
    hostile = Turns()
    registry.register(ns, "before", doomed)
    registry.register(ns, hostile, doomed)
    registry.register(ns, "after", doomed)
    registry.join(ns, "g1", doomed)
    registry.join(ns, hostile, doomed)
    registry.join(ns, "g2", doomed)
    Turns.armed = True
    try:
        doomed.stop(block=True)  # the clean-up runs in its thread, before this returns
        # Only the key that cannot be hashed stays; the innocent ones went.
        assert registry.lookup(ns, "before") is None and registry.lookup(ns, "after") is None
        assert registry.members(ns, "g1") == [] and registry.members(ns, "g2") == []
    finally:
        Turns.armed = False
    wait_until(lambda: sum(type(e).__name__ in ("Unregistered", "Left") for e in events) == 4,
               message="an Unregistered/Left event per name and membership removed")
    gone = {getattr(e, "service", None) or getattr(e, "group", None) for e in events
            if type(e).__name__ in ("Unregistered", "Left")}
    assert gone == {"before", "after", "g1", "g2"}
    assert registry.running


class Silent(pykka.ThreadingActor):
    """Answers nothing until released (a holder too slow for the asker)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def on_receive(self, message: Any) -> Any:
        self.release.wait(10)
        return message


def test_a_via_to_a_key_whose_repr_raises_keeps_its_timeout_error(registry: Registry) -> None:
    ns, service, release = test_namespace(), ReprRaises(), threading.Event()
    holder = Silent.start(release)
    try:
        registry.register(ns, service, holder)
        via = registry.via(ns, service)
        with pytest.raises(RegistryTimeoutError):
            via.ask("hello", timeout=0.05)
        with pytest.raises(RegistryTimeoutError):
            via.ask("hello", timeout=5, block=False).get(timeout=0.05)
        assert "repr failed" in repr(via)
    finally:
        release.set()
        holder.stop()


class NameRaises(type):
    """A metaclass whose classes' ``__name__`` raises (a BaseException)."""

    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise SystemExit("__name__ on purpose")


class HostileNamedError(Exception, metaclass=NameRaises):
    pass


class EqRaisesHostileNamed:
    def __hash__(self) -> int:
        return 43

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        raise HostileNamedError()


class ReprRaisesHostileNamed(metaclass=NameRaises):
    def __repr__(self) -> str:
        raise RuntimeError("repr on purpose")


def test_a_class_whose_name_raises_never_breaks_a_message() -> None:
    from pykka_registry._errors import safe_repr

    # Failures are reported outside the except block: pytest's own report
    # would quote the hostile value's class name (and end the session).
    text, failure = "", ""
    try:
        text = safe_repr(ReprRaisesHostileNamed())
    except BaseException as error:
        failure = f"safe_repr raised {error!r}"
    if failure:
        pytest.fail(failure)
    assert text == "<ReprRaisesHostileNamed object (repr failed)>"


def test_an_error_whose_class_name_raises_in_the_server_stops_no_actor(
    registry: Registry, actors: Any
) -> None:
    ns, bystander = test_namespace(), actors()
    registry.register(ns, EqRaisesHostileNamed(), actors())
    raised: Any = None
    try:
        registry.register(ns, EqRaisesHostileNamed(), actors())  # __eq__ runs in the server
    except BaseException as error:  # reported below (see the test above)
        raised = error
    assert isinstance(raised, InvalidKeyError), f"got {raised!r}, not InvalidKeyError"
    assert "HostileNamedError" in str(raised)
    assert bystander.is_alive(), "a BaseException reached Pykka, which stopped every actor"
    assert registry.running and registry.stats().server_restarts == 0
