"""Supervisor: strategies, restart types, intensity, escalation, names across restarts."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pykka
import pytest

from pykka_registry import (
    AlreadyRegisteredError,
    ChildSpec,
    DownEvent,
    InvalidTimeoutError,
    Registry,
    RestartIntensityExceeded,
    Supervisor,
    SupervisorError,
    monitor,
    test_namespace,
)
from pykka_registry._timeouts import MAX_TIMEOUT_S
from pykka_registry.testing import Echo, wait_until


@pytest.fixture(autouse=True)
def no_leftover_actors() -> Iterator[None]:
    yield
    leftovers = [ref for ref in pykka.ActorRegistry.get_all() if ref.actor_class is not Echo]
    for ref in pykka.ActorRegistry.get_all():
        ref.stop(block=True, timeout=5)
    assert leftovers == [], "a test left actors running"


class Recorded(pykka.ThreadingActor):
    """Appends its label to a shared log when it stops."""

    def __init__(self, label: str, log: list[str]) -> None:
        super().__init__()
        self.label = label
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.label} crashed")
        return self.label

    def on_stop(self) -> None:
        self.log.append(self.label)


def spec(child_id: str, ns: Any = None, restart: str = "permanent",
         log: list[str] | None = None) -> ChildSpec:
    stop_log: list[str] = [] if log is None else log
    return ChildSpec(
        id=child_id,
        start=lambda: Recorded.start(child_id, stop_log),
        restart=restart,
        name=(ns, child_id) if ns is not None else None,
        metadata={"id": child_id},
    )


def refs_of(sup: Supervisor) -> dict[Any, Any]:
    return {child.id: child.actor_ref for child in sup.which_children()}


def wait_restarted(sup: Supervisor, child_id: str, old: Any) -> Any:
    return wait_until(
        lambda: (r := refs_of(sup)[child_id]) is not None and r is not old and r,
        message=f"{child_id} restarted",
    )


def test_one_for_one_restarts_only_the_dead_child(registry: Registry, ns: Any) -> None:
    with Supervisor.start([spec("a", ns), spec("b", ns), spec("c", ns)],
                          strategy="one_for_one", registry=registry) as sup:
        before = refs_of(sup)
        before["b"].tell("crash")
        new_b = wait_restarted(sup, "b", before["b"])
        after = refs_of(sup)
        assert after["a"] is before["a"] and after["c"] is before["c"]
        assert registry.lookup(ns, "b") is new_b
        assert [c.restarts for c in sup.which_children()] == [0, 1, 0]


def test_one_for_all_restarts_every_child(registry: Registry, ns: Any) -> None:
    log: list[str] = []
    with Supervisor.start([spec("a", ns, log=log), spec("b", ns, log=log),
                           spec("c", ns, log=log)],
                          strategy="one_for_all", registry=registry) as sup:
        before = refs_of(sup)
        before["b"].tell("crash")
        wait_until(lambda: all(
            r is not None and r is not before[k] for k, r in refs_of(sup).items()
        ), message="all restarted")
        assert log == ["c", "a"]  # siblings stopped in reverse start order
        for child_id, ref in refs_of(sup).items():
            assert registry.lookup(ns, child_id) is ref


def test_rest_for_one_restarts_the_child_and_those_after_it(registry: Registry,
                                                            ns: Any) -> None:
    with Supervisor.start([spec("a", ns), spec("b", ns), spec("c", ns)],
                          strategy="rest_for_one", registry=registry) as sup:
        before = refs_of(sup)
        before["b"].tell("crash")
        wait_until(lambda: all(
            refs_of(sup)[k] is not None and refs_of(sup)[k] is not before[k] for k in "bc"
        ), message="b and c restarted")
        assert refs_of(sup)["a"] is before["a"]


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        ("permanent", "stop", True),
        ("permanent", "crash", True),
        ("transient", "stop", False),
        ("transient", "crash", True),
        ("temporary", "stop", False),
        ("temporary", "crash", False),
    ],
)
def test_restart_types(registry: Registry, ns: Any, restart: str, how: str,
                       restarted: bool) -> None:
    with Supervisor.start([spec("w", ns, restart=restart), spec("marker", ns)],
                          registry=registry) as sup:
        old = refs_of(sup)["w"]
        down = threading.Event()
        monitor(old, lambda event: down.set())
        if how == "stop":
            old.stop(block=True)
        else:
            old.tell("crash")
        assert down.wait(5)
        # A later message to the supervisor is handled after the death notice.
        if restarted:
            new = wait_restarted(sup, "w", old)
            assert registry.lookup(ns, "w") is new
        else:
            children = {c.id: c for c in sup.which_children()}
            if restart == "temporary":
                assert "w" not in children  # its spec is dropped
            else:
                assert children["w"].actor_ref is None
            assert registry.lookup(ns, "w") is None


def test_names_survive_restarts_through_one_via_handle(registry: Registry, ns: Any) -> None:
    with Supervisor.start([spec("db", ns)], registry=registry) as sup:
        via = registry.via(ns, "db")
        proxy = via.proxy()
        assert via.ask("hello") == "db"
        for _ in range(3):
            old = via.resolve()
            seen_dead: list[Any] = []
            # At the moment of death (in the dying thread), the name must not
            # resolve to the dead actor any more.
            monitor(old, lambda e, seen=seen_dead: seen.append(registry.lookup(ns, "db")))
            old.tell("crash")
            wait_restarted(sup, "db", old)
            assert via.ask("hello") == "db"
            assert proxy.label.get(timeout=5) == "db"
            assert via.resolve() is not old
            assert seen_dead and seen_dead[0] is not old
        assert registry.lookup_with_metadata(ns, "db")[1] == {"id": "db"}  # type: ignore[index]


def test_intensity_exhaustion_stops_children_then_the_supervisor(registry: Registry,
                                                                 ns: Any) -> None:
    log: list[str] = []
    sup = Supervisor.start([spec("a", ns, log=log), spec("b", ns, log=log)],
                           max_restarts=2, max_seconds=30, registry=registry)
    down: list[DownEvent] = []
    gone = threading.Event()
    monitor(sup.actor_ref, lambda e: (down.append(e), gone.set()))
    for _ in range(2):  # two restarts are within the intensity
        victim = refs_of(sup)["b"]
        victim.tell("crash")
        wait_restarted(sup, "b", victim)
    refs_of(sup)["b"].tell("crash")  # the third is one too many
    assert gone.wait(5), "supervisor did not give up"
    assert isinstance(down[0].reason, RestartIntensityExceeded)
    assert sup.wait_finished(5)
    assert registry.count(ns) == 0 or wait_until(lambda: registry.count(ns) == 0)
    assert "a" in log


def test_escalation_in_a_two_level_tree(registry: Registry, ns: Any) -> None:
    def inner() -> Supervisor:
        return Supervisor.start([spec("leaf", ns)], max_restarts=0, max_seconds=30,
                                registry=registry, name="inner")

    outer = Supervisor.start(
        [ChildSpec(id="inner", start=inner), spec("sibling", ns)],
        strategy="one_for_one", max_restarts=3, max_seconds=30, registry=registry,
        name="outer",
    )
    try:
        sibling = refs_of(outer)["sibling"]
        inner_ref = refs_of(outer)["inner"]
        leaf = registry.lookup(ns, "leaf")
        assert leaf is not None
        leaf.tell("crash")  # inner may not restart anything: it gives up
        new_inner = wait_restarted(outer, "inner", inner_ref)
        assert new_inner is not inner_ref
        new_leaf = wait_until(lambda: registry.lookup(ns, "leaf"), message="leaf re-registered")
        assert new_leaf is not leaf
        assert refs_of(outer)["sibling"] is sibling
        assert [c.restarts for c in outer.which_children()] == [1, 0]
    finally:
        outer.stop()
    assert not new_leaf.is_alive()


def test_stop_stops_children_in_reverse_order_and_waits(registry: Registry, ns: Any) -> None:
    log: list[str] = []
    sup = Supervisor.start([spec(c, ns, log=log) for c in ("a", "b", "c")], registry=registry)
    refs = refs_of(sup)
    sup.stop()
    assert log == ["c", "b", "a"]
    assert all(not ref.is_alive() for ref in refs.values())
    assert not sup.is_alive()
    assert registry.count(ns) == 0  # names released before stop() returns
    sup.stop()  # idempotent


def test_child_operations(registry: Registry, ns: Any) -> None:
    with Supervisor.start([spec("a", ns)], registry=registry) as sup:
        b = sup.start_child(spec("b", ns))
        assert registry.lookup(ns, "b") is b  # registered before start_child returns
        with pytest.raises(SupervisorError):
            sup.start_child(spec("b", ns))
        sup.terminate_child("b")
        assert not b.is_alive()  # returns once stopped
        assert registry.lookup(ns, "b") is None
        assert sorted(registry.list_services(ns)) == ["a"]  # gone from listings too
        assert refs_of(sup)["b"] is None
        with pytest.raises(SupervisorError):
            sup.restart_child("a")  # running
        b2 = sup.restart_child("b")
        assert registry.lookup(ns, "b") is b2
        sup.delete_child("b")
        assert not b2.is_alive()
        assert [c.id for c in sup.which_children()] == ["a"]
        with pytest.raises(SupervisorError):
            sup.terminate_child("nope")


def test_failed_child_start_stops_earlier_children(registry: Registry, ns: Any) -> None:
    log: list[str] = []

    def broken() -> Any:
        raise OSError("cannot start")

    with pytest.raises(OSError):
        Supervisor.start([spec("a", ns, log=log), ChildSpec(id="bad", start=broken)],
                         registry=registry)
    assert log == ["a"]
    assert registry.lookup(ns, "a") is None


def test_named_child_whose_name_is_taken_fails_to_start(registry: Registry, ns: Any) -> None:
    squatter = Echo.start()
    try:
        registry.register(ns, "a", squatter)
        with pytest.raises(AlreadyRegisteredError):
            Supervisor.start([spec("a", ns)], registry=registry)
        assert registry.lookup(ns, "a") is squatter
    finally:
        squatter.stop()


@pytest.mark.parametrize(
    "make",
    [
        lambda: Supervisor.start([], strategy="one_for_everyone"),
        lambda: Supervisor.start([spec("a"), spec("a")]),
        lambda: Supervisor.start([], max_restarts=-1),
        lambda: Supervisor.start([], max_seconds=0),
        lambda: Supervisor.start(["not a spec"]),  # type: ignore[list-item]
        lambda: ChildSpec(id="x", start=Echo.start, restart="sometimes"),
        lambda: ChildSpec(id="x", start="Echo.start"),  # type: ignore[arg-type]
        lambda: ChildSpec(id=["unhashable"], start=Echo.start),
        lambda: ChildSpec(id="x", start=Echo.start, name="just-a-string"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_before_anything_starts(make: Callable[[], Any]) -> None:
    before = len(pykka.ActorRegistry.get_all())
    with pytest.raises((ValueError, TypeError)):
        make()
    assert len(pykka.ActorRegistry.get_all()) == before


def test_named_child_without_registry_is_an_error() -> None:
    with pytest.raises(SupervisorError):
        Supervisor.start([spec("a", test_namespace())])


# -- regressions found in review ----------------------------------------------------------


def hold_supervisor(sup: Supervisor) -> tuple[threading.Event, threading.Thread]:
    """Keep the supervisor's thread busy (inside a child's start) until the
    returned gate is set, so that messages queue up behind it."""
    entered, gate = threading.Event(), threading.Event()

    def slow_start() -> Any:
        entered.set()
        gate.wait(5)
        return Echo.start()

    thread = threading.Thread(target=sup.start_child,
                              args=(ChildSpec(id="blocker", start=slow_start),))
    thread.start()
    assert entered.wait(5)
    return gate, thread


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_group_strategies_count_one_restart_per_failure(strategy: str) -> None:
    specs = [ChildSpec(id=i, start=Echo.start) for i in range(4)]
    sup = Supervisor.start(specs, strategy=strategy, max_restarts=3, max_seconds=30)
    try:
        downs: list[DownEvent] = []
        monitor(sup.actor_ref, downs.append)
        for _ in range(3):  # three failures, each restarting up to four children
            first = refs_of(sup)[0]
            first.tell("crash")
            wait_restarted(sup, 0, first)
        assert downs == []
        assert sup.is_alive()
    finally:
        sup.stop()


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_temporary_siblings_are_stopped_not_restarted(strategy: str) -> None:
    started: list[Any] = []

    def start_temporary() -> Any:
        ref = Echo.start()
        started.append(ref)
        return ref

    with Supervisor.start([ChildSpec(id="perm", start=Echo.start),
                           ChildSpec(id="temp", start=start_temporary, restart="temporary")],
                          strategy=strategy) as sup:
        perm = refs_of(sup)["perm"]
        perm.tell("crash")
        wait_restarted(sup, "perm", perm)
        assert len(started) == 1
        assert not started[0].is_alive()
        assert [c.id for c in sup.which_children()] == ["perm"]


def test_stop_gets_in_between_failing_restart_attempts() -> None:
    healthy = threading.Event()
    healthy.set()
    attempts: list[float] = []
    attempt_made = threading.Event()

    def start() -> Any:
        if healthy.is_set():
            return Echo.start()
        attempts.append(time.monotonic())
        attempt_made.set()
        threading.Event().wait(0.2)  # a slow failure (a connect timeout, say)
        raise ConnectionError("backend down")

    sup = Supervisor.start([ChildSpec(id="c", start=start)], max_restarts=3, max_seconds=0.5)
    healthy.clear()
    refs_of(sup)["c"].tell("crash")
    assert attempt_made.wait(5)
    sup.stop(timeout=3)  # would time out if the retries ran inline
    assert not sup.is_alive()
    count = len(attempts)
    assert sup.wait_finished(1)
    assert len(attempts) == count  # no attempt after the supervisor stopped


def test_a_named_child_restarts_while_the_sibling_registry_server_is_down() -> None:
    ns = test_namespace()
    registry = Registry.new(call_timeout=1.0)
    sup = Supervisor.start(
        [registry.child_spec(), ChildSpec(id="w", start=Echo.start, name=(ns, "w"))],
        max_restarts=5, max_seconds=30, registry=registry,
    )
    try:
        gate, holder = hold_supervisor(sup)
        worker = registry.lookup(ns, "w")
        assert worker is not None
        worker.stop(block=True)           # its death is handled first...
        registry.server_ref.stop(block=True)  # ...while the registry's server is down
        gate.set()
        holder.join(5)
        started = time.monotonic()
        wait_until(lambda: registry.running and registry.lookup(ns, "w") not in (None, worker),
                   message="server and worker back")
        assert time.monotonic() - started < 1.0  # no call_timeout stall
    finally:
        sup.stop()
        registry.stop()


def test_stopping_the_registry_while_its_server_restarts_spares_the_tree() -> None:
    registry = Registry.new()
    app = Supervisor.start([registry.child_spec(), ChildSpec(id="worker", start=Echo.start)],
                           max_restarts=1, max_seconds=30)
    downs: list[DownEvent] = []
    monitor(app.actor_ref, downs.append)
    try:
        worker = refs_of(app)["worker"]
        gate, holder = hold_supervisor(app)
        server = registry.server_ref
        server.stop(block=True)  # the server's restart is queued behind the holder
        stopper = threading.Thread(target=registry.stop, kwargs={"timeout": 5})
        stopper.start()
        wait_until(lambda: not registry.running, message="registry closed")
        gate.set()
        holder.join(5)
        stopper.join(10)
        assert downs == [], f"the application tree died: {downs}"
        assert worker.is_alive()
        assert "registry" not in [c.id for c in app.which_children()]
    finally:
        app.stop()


class SlowStop(pykka.ThreadingActor):
    def __init__(self, threads: list[threading.Thread]) -> None:
        super().__init__()
        self.threads = threads

    def on_start(self) -> None:
        self.threads.append(threading.current_thread())

    def on_stop(self) -> None:
        threading.Event().wait(0.3)  # well within its own shutdown


def test_a_parent_waits_for_a_nested_tree_within_the_subtree_budget() -> None:
    threads: list[threading.Thread] = []

    def inner() -> Supervisor:
        return Supervisor.start([ChildSpec(id="g1", start=lambda: SlowStop.start(threads)),
                                 ChildSpec(id="g2", start=lambda: SlowStop.start(threads))])

    parent = Supervisor.start([ChildSpec(id="inner", start=inner, shutdown=0.4)])
    parent.stop()
    for thread in threads:
        thread.join(0.05)
    assert [t for t in threads if t.is_alive()] == []


def test_a_start_function_knows_its_tree_and_a_tree_aware_one_is_told_its_id() -> None:
    from pykka_registry._supervisor import current_supervisor

    seen: list[Any] = []

    class TreeAware:
        def started_in(self, supervisor: Supervisor, child_id: Any) -> None:
            seen.append(("told", supervisor, child_id))

        def __call__(self) -> Any:
            seen.append(("started", current_supervisor()))
            return Echo.start()

    with Supervisor.start([ChildSpec("aware", TreeAware())]) as sup:
        assert seen == [("told", sup, "aware"), ("started", sup)]
    assert current_supervisor() is None


# -- settings are checked at the boundary, by the package's timeout rule ----------------


BAD_SECONDS = [math.nan, -1, 0, "1", True, None]


@pytest.mark.parametrize("bad", BAD_SECONDS, ids=repr)
def test_bad_shutdown_is_refused_when_the_spec_is_made(bad: Any) -> None:
    with pytest.raises(InvalidTimeoutError):
        ChildSpec(id="a", start=Echo.start, shutdown=bad)


@pytest.mark.parametrize("setting", ["max_seconds", "call_timeout"])
@pytest.mark.parametrize("bad", BAD_SECONDS, ids=repr)
def test_bad_supervisor_seconds_are_refused_before_anything_starts(
    setting: str, bad: Any
) -> None:
    started: list[Any] = []

    def start() -> Any:
        started.append(1)
        return Echo.start()

    before = len(pykka.ActorRegistry.get_all())
    with pytest.raises(InvalidTimeoutError):
        Supervisor.start([ChildSpec(id="a", start=start)], **{setting: bad})
    assert started == [] and len(pykka.ActorRegistry.get_all()) == before
    if setting == "max_seconds":
        with pytest.raises(InvalidTimeoutError):
            Registry.start(max_seconds=bad)


@pytest.mark.parametrize("bad", [True, -1, 1.5, "1"], ids=repr)
def test_bad_max_restarts_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        Supervisor.start([], max_restarts=bad)


def test_infinite_supervisor_seconds_are_clamped() -> None:
    spec = ChildSpec(id="a", start=Echo.start, shutdown=math.inf)
    assert spec.shutdown == MAX_TIMEOUT_S
    with Supervisor.start([spec], max_seconds=math.inf, call_timeout=math.inf) as sup:
        assert sup.call_timeout == MAX_TIMEOUT_S
        assert sup.snapshot(timeout=5).max_seconds == MAX_TIMEOUT_S
        sup.terminate_child("a", timeout=math.inf)
        with pytest.raises(InvalidTimeoutError):
            sup.terminate_child("a", timeout=math.nan)


class IdEqRaises:
    """A child id that hashes and equals itself, and raises when compared
    with any other id (a BaseException: in the supervisor's thread)."""

    def __hash__(self) -> int:
        return 17

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        raise SystemExit("child id eq on purpose")


def test_a_child_id_whose_eq_raises_never_stops_every_actor() -> None:
    bystander = Echo.start()
    try:
        with Supervisor.start([ChildSpec(id=IdEqRaises(), start=Echo.start),
                               ChildSpec(id="plain", start=Echo.start)]) as sup:
            # An equal id, not the same object: compared with the hostile id
            # first, whose raising comparison means "not this one".
            sup.terminate_child("".join(["pla", "in"]))
            assert bystander.is_alive(), "a BaseException in a supervisor stopped every actor"
            assert sup.is_alive() and len(sup.which_children()) == 2
            assert [c.actor_ref for c in sup.which_children() if isinstance(c.id, str)] == [None]
            with pytest.raises(SupervisorError, match="no child"):
                sup.terminate_child("missing")
    finally:
        bystander.stop()


@pytest.mark.parametrize("error", [RuntimeError, SystemExit])
def test_a_child_id_whose_hash_raises_is_a_type_error(error: type[BaseException]) -> None:
    class HashRaises:
        def __hash__(self) -> int:
            raise error("hash on purpose")

    with pytest.raises(TypeError, match="hashable"):
        ChildSpec(id=HashRaises(), start=Echo.start)


@pytest.mark.parametrize("error", [ValueError, SystemExit])
def test_a_child_whose_id_eq_raises_restarts_without_stopping_the_tree(
    error: type[BaseException]
) -> None:
    class Id:
        def __hash__(self) -> int:
            return 23

        def __eq__(self, other: object) -> bool:
            if other is self:
                return True
            raise error("child id eq on purpose")

    hostile = Id()
    with Supervisor.start([ChildSpec(id="plain", start=Echo.start),
                           ChildSpec(id=hostile, start=Echo.start)]) as sup:
        plain = sup.which_children()[0].actor_ref
        crashed = sup.which_children()[1].actor_ref
        assert plain is not None and crashed is not None
        crashed.stop()
        wait_until(lambda: sup.which_children()[1].restarts == 1
                   and sup.which_children()[1].actor_ref is not None,
                   message="the child with the hostile id was restarted")
        assert sup.is_alive() and plain.is_alive(), "the tree stopped on a restart"


@pytest.mark.parametrize("error", [ValueError, SystemExit])
def test_child_ids_that_cannot_be_compared_get_typed_errors(
    error: type[BaseException]
) -> None:
    class Id:
        def __hash__(self) -> int:
            return 29

        def __eq__(self, other: object) -> bool:
            if other is self:
                return True
            raise error("child id eq on purpose")

    with pytest.raises(ValueError, match="comparable"):
        Supervisor.start([ChildSpec(id=Id(), start=Echo.start),
                          ChildSpec(id=Id(), start=Echo.start)])
    with Supervisor.start([ChildSpec(id="plain", start=Echo.start)]) as sup:
        with pytest.raises(SupervisorError, match="cannot be compared"):
            sup.start_child(ChildSpec(id=Id(), start=Echo.start))
        assert sup.is_alive() and len(sup.which_children()) == 1
