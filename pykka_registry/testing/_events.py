"""Conformance tests of events, await_name and get_or_start.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from pykka_registry import Registered, Registry, Unregistered, test_namespace

from ._base import ConformanceBase
from ._helpers import ActorFactory, wait_until


class EventTests(ConformanceBase):
    """The conformance tests of events, await_name and get_or_start."""

    # -- events, await, get_or_start (lifecycle) ---------------------------------------------

    def test_events_in_order_with_reasons(self, registry: Registry, ns: Any,
                                          actors: ActorFactory) -> None:
        events: list[Any] = []
        done = threading.Event()

        def listener(event: Any) -> None:
            events.append(event)
            if isinstance(event, Unregistered) and event.service == "last":
                done.set()

        registry.subscribe(listener, namespace=ns)
        a, b, c = actors(), actors(), actors()
        registry.register(ns, "a", a, {"v": 1})
        registry.update_metadata(ns, "a", {"v": 2})
        registry.unregister(ns, "a")
        registry.register(ns, "b", b)
        b.tell("crash")
        wait_until(lambda: registry.count(ns) == 0, message="crashed actor removed")
        registry.register(test_namespace(), "ignored", c)  # another namespace
        registry.register(ns, "last", c)
        c.stop(block=True)
        assert done.wait(5)
        kinds = [(type(e).__name__, e.service) for e in events]
        assert kinds == [
            ("Registered", "a"), ("MetadataUpdated", "a"), ("Unregistered", "a"),
            ("Registered", "b"), ("Unregistered", "b"),
            ("Registered", "last"), ("Unregistered", "last"),
        ]
        assert dict(events[0].metadata) == {"v": 1}
        assert dict(events[1].metadata) == {"v": 2}
        assert events[2].reason.kind == "unregistered"
        assert events[4].reason.kind == "crashed"
        assert isinstance(events[4].reason.exception, RuntimeError)
        assert events[6].reason.kind == "stopped"
        assert events[0].actor_ref is a

    def test_subscribe_with_replay_has_no_gap_or_duplicate(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        ref = actors()
        total = 60
        writer_started = threading.Event()

        def writer() -> None:
            for i in range(total):
                registry.register(ns, f"s{i}", ref)
                if i == total // 3:
                    writer_started.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert writer_started.wait(5)
        seen: list[Any] = []
        registry.subscribe(seen.append, namespace=ns, replay=True)
        thread.join(10)
        wait_until(lambda: len(seen) >= total, message="all events delivered")
        registry.run_in_server(lambda backend: None)
        names = [e.service for e in seen]
        assert all(isinstance(e, Registered) for e in seen)
        assert sorted(names, key=lambda s: int(s[1:])) == [f"s{i}" for i in range(total)]
        assert len(names) == len(set(names)) == total

    def test_failing_listener_does_not_disturb_others(self, registry: Registry, ns: Any,
                                                      actors: ActorFactory) -> None:
        got = threading.Event()

        def broken(event: Any) -> None:
            raise RuntimeError("listener bug")

        registry.subscribe(broken, namespace=ns)
        registry.subscribe(lambda e: got.set(), namespace=ns)
        registry.register(ns, "svc", actors())
        assert got.wait(5)
        assert registry.lookup(ns, "svc") is not None

    def test_cancelled_subscription_gets_nothing_more(self, registry: Registry, ns: Any,
                                                      actors: ActorFactory) -> None:
        seen: list[Any] = []
        marker = threading.Event()
        subscription = registry.subscribe(seen.append, namespace=ns)
        registry.register(ns, "before", actors())
        wait_until(lambda: len(seen) == 1, message="first event")
        subscription.cancel()
        registry.subscribe(lambda e: marker.set(), namespace=ns)
        registry.register(ns, "after", actors())
        assert marker.wait(5)
        assert [e.service for e in seen] == ["before"]

    def test_await_name(self, registry: Registry, ns: Any, actors: ActorFactory) -> None:
        from pykka_registry import RegistryTimeoutError

        ref = actors()
        result: list[Any] = []
        waiter = threading.Thread(target=lambda: result.append(
            registry.await_name(ns, "later", timeout=5)))
        waiter.start()
        registry.register(ns, "later", ref)
        waiter.join(5)
        assert result == [ref]
        assert registry.await_name(ns, "later", timeout=0) is ref  # present: at once
        started = time.monotonic()
        with pytest.raises(RegistryTimeoutError) as caught:
            registry.await_name(ns, "never", timeout=0.05)
        assert isinstance(caught.value, TimeoutError)
        assert time.monotonic() - started < 2

    def test_await_name_inside_a_listener_does_not_stall(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        from pykka_registry import RegistryTimeoutError

        found: list[Any] = []
        done = threading.Event()

        def listener(event: Any) -> None:
            if event.service == "first":
                try:
                    found.append(registry.await_name(ns, "second", timeout=5))
                except RegistryTimeoutError as error:
                    found.append(error)
                done.set()

        registry.subscribe(listener, namespace=ns)
        started = time.monotonic()
        registry.register(ns, "first", actors())
        second = actors()
        registry.register(ns, "second", second)
        assert done.wait(6)
        assert found == [second]
        assert time.monotonic() - started < 2.5

    def test_get_or_start_is_atomic_under_contention(self, registry: Registry, ns: Any,
                                                     actors: ActorFactory) -> None:
        starts: list[Any] = []
        start_lock = threading.Lock()

        def start() -> Any:
            ref = actors()
            with start_lock:
                starts.append(ref)
            return ref

        threads_n = 16
        results: list[Any] = [None] * threads_n
        barrier = threading.Barrier(threads_n)

        def call(i: int) -> None:
            barrier.wait(5)
            results[i] = registry.get_or_start(ns, "singleton", start, {"kind": "single"})

        threads = [threading.Thread(target=call, args=(i,)) for i in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(starts) == 1
        assert all(r is starts[0] for r in results)
        assert registry.lookup_with_metadata(ns, "singleton") == (starts[0], {"kind": "single"})
        assert sum(ref.is_alive() for ref in actors.refs) == 1

    def test_get_or_start_error_leaves_key_free(self, registry: Registry, ns: Any,
                                                actors: ActorFactory) -> None:
        def broken_start() -> Any:
            raise OSError("could not start")

        with pytest.raises(OSError):
            registry.get_or_start(ns, "svc", broken_start)
        assert registry.lookup(ns, "svc") is None
        ref = registry.get_or_start(ns, "svc", lambda: actors())
        assert registry.lookup(ns, "svc") is ref
        assert registry.get_or_start(ns, "svc", lambda: pytest.fail("must not start")) is ref
