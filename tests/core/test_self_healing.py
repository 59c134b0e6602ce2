"""The registry heals itself: its server actor runs under a supervisor and a
restart loses nothing. Also: a registry inside an application's tree, and
Pykka's sharp edges (stop_all, restarts overlapping on_stop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from pykka_registry import (
    ChildSpec,
    IndexedBackend,
    MemoryBackend,
    Registry,
    RegistryServer,
    RegistryUnavailableError,
    Supervisor,
    monitor,
    test_namespace,
)
from pykka_registry._messages import Call
from pykka_registry.testing import Echo, holding_server, wait_until

BACKENDS = [MemoryBackend, IndexedBackend]


@pytest.fixture(autouse=True)
def no_leftover_actors() -> Iterator[None]:
    yield
    leftovers = pykka.ActorRegistry.get_all()
    for ref in leftovers:
        ref.stop(block=True, timeout=5)
    assert [r for r in leftovers if r.actor_class is not Echo] == []


def kill_server(registry: Registry, how: str) -> Any:
    """Kill the server actor and wait until a new one serves the registry."""
    old = registry.server_ref
    if how == "stop":
        old.stop(block=True)
    else:  # a crash: an exception in a tell-ed message
        old.tell(Call(lambda state: 1 / 0))
    assert old.actor_stopped.wait(5)
    return old


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["stop", "crash"])
def test_server_is_restarted_with_registrations_intact(backend: Any, how: str) -> None:
    with Registry.start(backend=backend) as registry:
        ns = test_namespace()
        refs = [Echo.start() for _ in range(5)]
        for i, ref in enumerate(refs):
            registry.register(ns, f"s{i}", ref, {"i": i})
        old = kill_server(registry, how)
        started = time.monotonic()
        new = wait_until(lambda: registry.server_ref is not old and registry.server_ref,
                         timeout=2, message="server restarted")
        restart_s = time.monotonic() - started
        assert new.is_alive()
        assert new.actor_class is RegistryServer
        assert restart_s < 0.5  # promise: 100 ms; margin for a loaded CI machine
        assert registry.count(ns) == 5
        assert [s for s, _, _ in registry.match(ns, {"i": 3})] == ["s3"]
        registry.register(ns, "after", refs[0])
        refs[1].stop(block=True)  # death clean-up works on the new server
        wait_until(lambda: registry.count(ns) == 5, message="dead actor removed")
        assert registry.stats().server_restarts == 1
        assert registry.health_check().status == "healthy"
        for ref in refs:
            ref.stop()


def test_deaths_during_the_gap_are_not_lost() -> None:
    with Registry.start() as registry:
        ns = test_namespace()
        ref = Echo.start()
        registry.register(ns, "svc", ref)
        # Hold the server busy, queue the death notice behind it, then crash
        # the server: the notice lives in the state and the new server reaps it.
        server = registry.server_ref
        with holding_server(registry):
            ref.stop(block=True)
            server.tell(Call(lambda state: 1 / 0))
        assert server.actor_stopped.wait(5)
        wait_until(lambda: registry.count(ns) == 0, message="death reaped by the new server")


@pytest.mark.parametrize("backend", BACKENDS)
def test_server_crashes_under_load_from_eight_threads_lose_nothing(backend: Any) -> None:
    with Registry.start(backend=backend, max_restarts=50) as registry:
        ns = test_namespace()
        actor = Echo.start()
        stop = threading.Event()
        acknowledged: list[str] = []
        refused: list[str] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def writer(t: int) -> None:
            i = 0
            while not stop.is_set() and i < 400:
                name = f"t{t}-{i}"
                i += 1
                try:
                    registry.register(ns, name, actor)
                except RegistryUnavailableError:
                    with lock:
                        refused.append(name)
                    continue
                except BaseException as error:
                    errors.append(error)
                    return
                with lock:
                    acknowledged.append(name)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for _ in range(5):
            progress_mark = len(acknowledged) + 20
            wait_until(lambda mark=progress_mark: len(acknowledged) > mark,
                       message="writers make progress")
            kill_server(registry, "crash")
        stop.set()
        for thread in threads:
            thread.join(30)
        assert errors == []
        assert registry.stats().server_restarts >= 5
        stored = set(registry.list_services(ns))
        lost = [name for name in acknowledged if name not in stored]
        assert lost == [], f"{len(lost)} acknowledged registrations lost"
        assert len(acknowledged) > 100
        actor.stop()


def test_calls_during_the_gap_wait_for_the_new_server() -> None:
    with Registry.start() as registry:
        ns = test_namespace()
        ref = Echo.start()
        server = registry.server_ref
        result: list[Any] = []
        with holding_server(registry):
            caller = threading.Thread(target=lambda: result.append(
                registry.register(ns, "queued", ref)))
            caller.start()
            # The register queues behind the hold (or reaches a dead server);
            # either way Pykka fails it with ActorDeadError and the facade
            # sends it again to the new server.
            server.tell(Call(lambda state: 1 / 0))
        caller.join(5)
        assert result == [None]
        assert registry.lookup(ns, "queued") is ref
        ref.stop()


def test_stop_does_not_restart_and_refuses_calls_at_once() -> None:
    registry = Registry.start()
    server = registry.server_ref
    registry.stop()
    assert not server.is_alive()
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        registry.register(test_namespace(), "x", Echo.start())
    assert time.monotonic() - started < 1
    assert pykka.ActorRegistry.get_by_class(RegistryServer) == []


def test_gives_up_after_too_many_server_deaths() -> None:
    registry = Registry.start(max_restarts=1, max_seconds=30, call_timeout=1.0)
    try:
        kill_server(registry, "crash")
        wait_until(lambda: registry.server_ref.is_alive(), message="first restart")
        kill_server(registry, "crash")
        wait_until(lambda: registry.health_check().status == "unhealthy",
                   message="registry reports it is down")
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError):
            registry.register(test_namespace(), "x", Echo.start())
        assert time.monotonic() - started < 1.5
    finally:
        registry.stop()


# -- a registry inside an application's supervision tree ------------------------------


def test_registry_as_part_of_an_application_tree() -> None:
    registry = Registry.new(backend=IndexedBackend)
    ns = test_namespace()
    app = Supervisor.start(
        children=[
            registry.child_spec(),
            ChildSpec(id="worker", start=lambda: Echo.start("worker"), name=(ns, "worker"),
                      metadata={"role": "worker"}),
        ],
        registry=registry,
    )
    worker = registry.lookup(ns, "worker")
    assert worker is not None
    # The tree restarts the registry's server, on the same backend.
    old = kill_server(registry, "crash")
    wait_until(lambda: registry.server_ref is not old and registry.server_ref.is_alive(),
               message="server restarted by the application tree")
    assert registry.lookup(ns, "worker") is worker
    assert registry.match(ns, {"role": "worker"})[0][1] is worker
    # Stopping the application stops the worker first, the registry last.
    server = registry.server_ref
    app.stop()
    assert not worker.is_alive() and not server.is_alive()
    with pytest.raises(RegistryUnavailableError):
        registry.register(ns, "late", Echo.start())
    registry.stop()


def test_stopping_a_registry_that_lives_in_a_tree_removes_it_from_the_tree() -> None:
    registry = Registry.new()
    app = Supervisor.start(children=[registry.child_spec(id="reg"),
                                     ChildSpec(id="other", start=Echo.start)])
    try:
        server = registry.server_ref
        registry.stop()
        assert not server.is_alive()
        assert [c.id for c in app.which_children()] == ["other"]
    finally:
        app.stop()


# -- Pykka's sharp edges ---------------------------------------------------------------


class Fatal(BaseException):
    """Not an Exception: Pykka answers it by stopping every actor."""


class Doomed(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        raise Fatal("BaseException in a handler")


def test_base_exception_in_a_handler_stops_every_actor_including_the_registry() -> None:
    registry = Registry.start(call_timeout=2.0)
    ns = test_namespace()
    bystander = Echo.start()
    registry.register(ns, "bystander", bystander)
    sup = Supervisor.start([ChildSpec(id="w", start=Echo.start, name=(ns, "w"))],
                           registry=registry)
    doomed = Doomed.start()
    doomed.tell("anything")
    wait_until(lambda: pykka.ActorRegistry.get_all() == [], timeout=5,
               message="Pykka stopped every actor")
    assert not bystander.is_alive()
    assert not sup.is_alive()  # supervisors stand down during stop_all: no restarts
    assert registry.lookup(ns, "bystander") is None
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        registry.register(ns, "again", Echo.start())
    assert time.monotonic() - started < 1.5  # fails fast, never hangs
    assert registry.health_check().status == "unhealthy"
    registry.stop()


class SlowStop(pykka.ThreadingActor):
    """on_stop waits for a gate, so a restart can be seen to overlap it."""

    def __init__(self, gate: threading.Event, in_stop: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.in_stop = in_stop

    def on_stop(self) -> None:
        self.in_stop.set()
        self.gate.wait(5)


def test_a_restart_can_overlap_the_dying_instances_on_stop() -> None:
    with Registry.start() as registry:
        ns = test_namespace()
        gate, in_stop = threading.Event(), threading.Event()
        with Supervisor.start(
            [ChildSpec(id="slow", start=lambda: SlowStop.start(gate, in_stop),
                       name=(ns, "slow"))],
            registry=registry,
        ) as sup:
            old = registry.lookup(ns, "slow")
            assert old is not None
            down = threading.Event()
            monitor(old, lambda event: down.set())
            old.stop(block=False)
            assert in_stop.wait(5)
            # The old instance is still inside on_stop, yet its successor is
            # already running and holds the name.
            new = wait_until(lambda: registry.lookup(ns, "slow"), message="successor registered")
            assert new is not old
            assert down.is_set()
            gate.set()
            assert old.actor_stopped.wait(5)
            assert sup.which_children()[0].actor_ref is new


def test_an_actor_dead_error_raised_by_a_handler_is_not_taken_for_a_server_death() -> None:
    with Registry.start(call_timeout=3.0) as registry:
        dead = Echo.start()
        dead.stop(block=True)
        started = time.monotonic()
        with pytest.raises(pykka.ActorDeadError):
            registry.run_in_server(lambda backend: dead.ask("hi", timeout=1))
        assert time.monotonic() - started < 1.0
        assert registry.stats().server_restarts == 0


def test_a_slow_listener_does_not_slow_register() -> None:
    with Registry.start() as registry:
        ns = test_namespace()
        blocked, release = threading.Event(), threading.Event()

        def slow_listener(event: Any) -> None:
            blocked.set()
            release.wait(10)

        registry.subscribe(slow_listener, namespace=ns)
        ref = Echo.start()
        try:
            registry.register(ns, "first", ref)
            assert blocked.wait(5)
            started = time.monotonic()
            for i in range(200):  # all while the listener is still stuck
                registry.register(ns, f"s{i}", ref)
            assert time.monotonic() - started < 2.0
            assert not release.is_set() and registry.count(ns) == 201
        finally:
            release.set()
            ref.stop()


def test_a_get_or_start_caller_waits_for_another_callers_start_within_call_timeout() -> None:
    from pykka_registry import RegistryTimeoutError

    with Registry.start(call_timeout=0.3) as registry:
        ns = test_namespace()
        entered, release = threading.Event(), threading.Event()

        def slow_start() -> Any:
            entered.set()
            release.wait(10)
            return Echo.start()

        first = threading.Thread(target=registry.get_or_start, args=(ns, "svc", slow_start))
        first.start()
        try:
            assert entered.wait(5)
            started = time.monotonic()
            with pytest.raises(RegistryTimeoutError):
                registry.get_or_start(ns, "svc", lambda: pytest.fail("must not start"))
            assert time.monotonic() - started < 2
        finally:
            release.set()
            first.join(5)
        ref = registry.lookup(ns, "svc")
        assert ref is not None
        assert registry.get_or_start(ns, "svc", lambda: pytest.fail("must not start")) is ref
        ref.stop()
