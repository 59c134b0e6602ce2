"""Lifecycle benchmarks (issue 3): supervised restart, event delivery,
``get_or_start``, and the registry server healing itself.

Run ``python benchmarks/bench_lifecycle.py [--quick]`` (or everything with
``python benchmarks/run.py``). See ``docs/performance.md``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Callable, Optional

import pykka

from pykka_registry import (
    ChildSpec,
    IndexedBackend,
    MemoryBackend,
    Registered,
    Registry,
    Supervisor,
    Unregistered,
)
from pykka_registry._messages import Call
from pykka_registry._state import RegistryState
from pykka_registry.backends.base import Backend

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # imported from elsewhere than benchmarks/
    sys.path.insert(0, HERE)

import _harness as h  # noqa: E402
from bench_core import fill_direct  # noqa: E402

SUITE = "lifecycle"
NS = "bench"
BACKENDS: dict[str, type[Backend]] = {"memory": MemoryBackend, "indexed": IndexedBackend}


class _Waiter:
    """Wakes on one kind of event for one name (optionally: not for ``old``)."""

    def __init__(self) -> None:
        self.kind: Any = Registered
        self.service: Hashable = None
        self.old: Optional[pykka.ActorRef[Any]] = None
        self.event = threading.Event()
        self.at_ns = 0

    def arm(self, kind: Any, service: Hashable,
            old: Optional[pykka.ActorRef[Any]] = None) -> None:
        self.kind, self.service, self.old = kind, service, old
        self.event.clear()

    def wait(self, timeout: float = 5.0) -> int:
        if not self.event.wait(timeout):
            raise RuntimeError(f"no {self.kind.__name__} event for {self.service!r}")
        return self.at_ns

    def __call__(self, event: Any) -> None:
        if (isinstance(event, self.kind) and event.service == self.service
                and event.actor_ref is not self.old):
            self.at_ns = time.perf_counter_ns()
            self.event.set()


def _elapsed(t0: int, t1: int) -> float:
    return (t1 - t0) / 1e9


# -- crash -> restarted and registered -------------------------------------------------


def bench_supervised_restart(quick: bool) -> list[h.Result]:
    rounds = 100 if quick else 500
    trees: dict[str, tuple[Registry, Supervisor, _Waiter]] = {}
    holders = h.start_actors(1)
    try:
        for name, backend in BACKENDS.items():
            registry = Registry.start(backend, call_timeout=10.0, max_restarts=1000)
            fill_direct(registry, 1000, holders, shards=100, namespace="background")
            waiter = _Waiter()
            registry.subscribe(waiter, namespace=NS)
            supervisor = Supervisor.start(
                [ChildSpec("worker", h.Echo.start, name=(NS, "worker"))],
                max_restarts=10**6, max_seconds=1.0, registry=registry,
                name=f"bench-{name}",
            )
            trees[name] = (registry, supervisor, waiter)

        def make(backend: str, how: str, observe: str) -> Callable[[], float]:
            registry, _, waiter = trees[backend]

            def sample() -> float:
                old = registry.lookup(NS, "worker")
                if old is None:
                    raise RuntimeError("the supervised worker is not registered")
                waiter.arm(Registered, "worker", old)
                t0 = time.perf_counter_ns()
                if how == "crash":
                    old.tell("crash")
                else:
                    old.stop(block=False)
                if observe == "listener":
                    t1 = waiter.wait()
                else:  # bounded poll that yields the GIL between reads
                    deadline = t0 + 5_000_000_000
                    while True:
                        ref = registry.lookup(NS, "worker")
                        if ref is not None and ref is not old:
                            break
                        time.sleep(0)
                        if time.perf_counter_ns() > deadline:
                            raise RuntimeError("the worker was not restarted in time")
                    t1 = time.perf_counter_ns()
                    waiter.wait()
                new = registry.lookup(NS, "worker")
                if new is None or new is old:
                    raise RuntimeError("lookup does not return the new worker")
                return _elapsed(t0, t1)

            return sample

        samplers = [
            h.Sampler("crash, memory, seen by listener", make("memory", "crash", "listener")),
            h.Sampler("crash, memory, seen by lookup poll", make("memory", "crash", "poll")),
            h.Sampler("crash, indexed, seen by listener", make("indexed", "crash", "listener")),
            h.Sampler("normal stop, memory, seen by listener",
                      make("memory", "stop", "listener")),
        ]
        with h.quiet_actor_logs():
            timed = h.time_samples(SUITE, "crash to restarted+registered", samplers,
                                   rounds=rounds)
    finally:
        for registry, supervisor, _ in trees.values():
            supervisor.stop()
            registry.stop()
        h.stop_actors(holders)
    results = list(timed.values())
    for r in results:
        if r.candidate.startswith("crash"):
            h.set_target(r, "p50 <= 5 ms", r.p50 <= 5e-3)
    results[0].note = (
        "one_for_one Supervisor, one named child; from tell('crash') / stop(block=False) to "
        "the Registered event of the new child (lookup returns the new ref then), or to "
        "lookup() returning it in a poll that calls time.sleep(0) between reads; includes "
        "starting the new ThreadingActor")
    return results


# -- event delivery ----------------------------------------------------------------------


def bench_events(quick: bool) -> list[h.Result]:
    rounds = 200 if quick else 1000
    counter = iter(range(10**9))
    holders = h.start_actors(1)
    holder = holders[0]
    registry = Registry.start(call_timeout=10.0, max_restarts=1000)
    quiet = Registry.start(call_timeout=10.0, max_restarts=1000)
    try:
        fill_direct(registry, 1000, holders, shards=100)
        fill_direct(quiet, 1000, holders, shards=100)
        waiter = _Waiter()
        registry.subscribe(waiter, namespace=NS)
        metadata = {"role": "worker", "zone": "eu-1"}

        def on_register() -> float:
            service = f"e-{next(counter)}"
            waiter.arm(Registered, service)
            t0 = time.perf_counter_ns()
            registry.register(NS, service, holder, metadata)
            t1 = waiter.wait()
            registry.unregister(NS, service)
            return _elapsed(t0, t1)

        def on_unregister() -> float:
            service = f"e-{next(counter)}"
            registry.register(NS, service, holder, metadata)
            waiter.arm(Unregistered, service)
            t0 = time.perf_counter_ns()
            registry.unregister(NS, service)
            return _elapsed(t0, waiter.wait())

        def register_call(target: Registry) -> Callable[[], float]:
            def sample() -> float:
                service = f"e-{next(counter)}"
                t0 = time.perf_counter_ns()
                target.register(NS, service, holder, metadata)
                t1 = time.perf_counter_ns()
                target.unregister(NS, service)
                return _elapsed(t0, t1)
            return sample

        samplers = [
            h.Sampler("register() start -> Registered listener", on_register),
            h.Sampler("unregister() start -> Unregistered listener", on_unregister),
            h.Sampler("register() call (with a subscriber)", register_call(registry)),
            h.Sampler("register() call (no subscriber)", register_call(quiet)),
        ]
        timed = h.time_samples(SUITE, "event delivery", samplers, rounds=rounds)
    finally:
        registry.stop()
        quiet.stop()
        h.stop_actors(holders)
    results = list(timed.values())
    base = timed["register() call (no subscriber)"]
    for r in results:
        if r is not base:
            h.compare(r, base, "a register() call")
    results[0].note = (
        "listener subscribed to the namespace; latency = perf_counter_ns() in the listener "
        "minus perf_counter_ns() just before the call; 1k other names in the registry")
    return results


# -- get_or_start vs lookup ---------------------------------------------------------------


def bench_get_or_start(quick: bool) -> list[h.Result]:
    holders = h.start_actors(1)
    registry = Registry.start(call_timeout=10.0, max_restarts=1000)
    try:
        fill_direct(registry, 1000, holders, shards=100)

        def never() -> pykka.ActorRef[Any]:
            raise AssertionError("get_or_start started an actor for an existing name")

        stmts = [
            h.Stmt("Registry.get_or_start, existing name", "_f(_ns, 'svc-5', _start)",
                   {"_f": registry.get_or_start, "_ns": NS, "_start": never}),
            h.Stmt("Registry.lookup, same name", "_f(_ns, 'svc-5')",
                   {"_f": registry.lookup, "_ns": NS}),
        ]
        timed = h.time_stmts(SUITE, "get_or_start on an existing key", stmts,
                             rounds=9 if quick else 21, sample_s=0.003 if quick else 0.005)
    finally:
        registry.stop()
        h.stop_actors(holders)
    slow, fast = timed["Registry.get_or_start, existing name"], timed["Registry.lookup, same name"]
    h.compare(slow, fast, "lookup")
    h.set_target(slow, "within 2x of lookup", slow.p50 <= 2 * fast.p50)
    return [slow, fast]


# -- server self-heal ------------------------------------------------------------------


def _boom(state: RegistryState) -> None:
    raise RuntimeError("server crash requested by the benchmark")


def bench_self_heal(quick: bool) -> list[h.Result]:
    rounds = 60 if quick else 300
    counter = iter(range(10**9))
    holders = h.start_actors(1)
    holder = holders[0]
    registry = Registry.start(call_timeout=10.0, max_restarts=10**6, max_seconds=1.0)
    try:
        fill_direct(registry, 1000, holders, shards=100)
        before = registry.count()

        def make(how: str) -> Callable[[], float]:
            def sample() -> float:
                server = registry.server_ref
                service = f"h-{next(counter)}"
                t0 = time.perf_counter_ns()
                if how == "stop":
                    server.stop(block=False)
                elif how == "crash":
                    server.tell(Call(_boom))
                registry.register(NS, service, holder)
                t1 = time.perf_counter_ns()
                if how != "none" and registry.server_ref is server:
                    raise RuntimeError("the registry server was not replaced")
                registry.unregister(NS, service)
                return _elapsed(t0, t1)
            return sample

        samplers = [
            h.Sampler("server_ref.stop(block=False) -> register() ok", make("stop")),
            h.Sampler("server crash (tell raising Call) -> register() ok", make("crash")),
            h.Sampler("register() on a healthy server", make("none")),
        ]
        with h.quiet_actor_logs():
            timed = h.time_samples(SUITE, "server self-heal", samplers, rounds=rounds)
        if registry.count() != before:
            raise RuntimeError(f"registrations lost across restarts: {before} -> "
                               f"{registry.count()}")
    finally:
        registry.stop()
        h.stop_actors(holders)
    results = list(timed.values())
    base = timed["register() on a healthy server"]
    for r in results:
        if r is not base:
            h.compare(r, base, "a healthy register()")
    results[0].note = (
        "from just before killing registry.server_ref to a register() that returns; the "
        "registry's own supervisor restarts the server; 1k names survive every restart "
        "(checked)")
    return results


# -- entry point ---------------------------------------------------------------------


def main(quick: bool = False) -> list[h.Result]:
    return h.run_steps("lifecycle", [bench_supervised_restart, bench_events,
                                     bench_get_or_start, bench_self_heal], quick)


if __name__ == "__main__":
    h.cli(main, __doc__)
