"""The event dispatcher thread runs only while someone listens.

It starts with the first subscription and ends when the last one is
cancelled; a later subscription starts a fresh one, and every listener
still gets its events in order, with none from before it started.
"""

from __future__ import annotations

import threading
from typing import Any

from pykka_registry import Registered, Registry, Unregistered
from pykka_registry.testing import ActorFactory, wait_until


def dispatcher_threads(registry: Registry) -> list[threading.Thread]:
    name = f"pykka-registry-events-{registry.name}"
    return [t for t in threading.enumerate() if t.name == name]


def test_the_dispatcher_ends_with_the_last_subscription_and_comes_back() -> None:
    actors = ActorFactory()
    with Registry.start() as registry:
        assert dispatcher_threads(registry) == []
        first: list[Any] = []
        subscription = registry.subscribe(first.append, "ns")
        registry.register("ns", "a", actors())
        wait_until(lambda: len(first) == 1, message="first listener got 'a'")
        assert len(dispatcher_threads(registry)) == 1
        subscription.cancel()
        wait_until(lambda: dispatcher_threads(registry) == [],
                   message="the dispatcher ended with its last subscription")
        registry.register("ns", "b", actors())  # nobody listens: no event, no thread
        second: list[Any] = []
        with registry.subscribe(second.append, "ns"):
            registry.unregister("ns", "a")
            registry.register("ns", "c", actors())
            wait_until(lambda: len(second) == 2, message="second listener got two events")
            assert [type(e) for e in second] == [Unregistered, Registered]
            assert [e.service for e in second] == ["a", "c"]
        assert [e.service for e in first] == ["a"]
        wait_until(lambda: dispatcher_threads(registry) == [], message="ended again")
    actors.stop_all()


def test_an_answered_await_name_leaves_no_thread() -> None:
    actors = ActorFactory()
    with Registry.start() as registry:
        threading.Timer(0.05, lambda: registry.register("ns", "late", actors())).start()
        assert registry.await_name("ns", "late", timeout=5) is not None
        wait_until(lambda: dispatcher_threads(registry) == [],
                   message="await_name's subscription ended its dispatcher")
    actors.stop_all()


def test_cancel_from_inside_a_listener_and_resubscribe_keeps_order() -> None:
    # The last subscription cancels itself in the dispatcher thread, and a new
    # one starts at once: the new one sees every later event, in order.
    actors = ActorFactory()
    with Registry.start() as registry:
        done = threading.Event()
        holder: dict[str, Any] = {}

        def once(event: Any) -> None:
            holder["first"].cancel()
            done.set()

        holder["first"] = registry.subscribe(once, "ns")
        registry.register("ns", "x0", actors())
        assert done.wait(5)
        for round_ in range(20):
            seen: list[Any] = []
            with registry.subscribe(seen.append, "ns"):
                names = [f"r{round_}-{i}" for i in range(5)]
                for name in names:
                    registry.register("ns", name, actors())
                wait_until(lambda seen=seen: len(seen) == 5, message=f"round {round_} delivered")
                assert [e.service for e in seen] == names
        wait_until(lambda: dispatcher_threads(registry) == [], message="no thread left")
    actors.stop_all()
