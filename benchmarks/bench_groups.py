"""Group benchmarks: dispatch against Pykka's get_by_class + tell loop,
members() of a small group, group_via(...).tell against a plain tell, and
join+leave throughput.

Run ``python benchmarks/bench_groups.py [--quick]`` (or everything with
``python benchmarks/run.py``). See ``docs/groups.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # imported from elsewhere than benchmarks/
    sys.path.insert(0, HERE)

import _harness as h  # noqa: E402
import pykka  # noqa: E402

from pykka_registry import IndexedBackend, MemoryBackend, Registry  # noqa: E402

SUITE = "groups"
NS = "bench"
BACKENDS = {"memory": MemoryBackend, "indexed": IndexedBackend}


class Sink(pykka.ThreadingActor):
    """Does nothing with what it gets (so mailboxes drain fast)."""

    def on_receive(self, message: Any) -> Any:
        return None


class Listener(Sink):
    """The class the get_by_class baseline looks for."""


def _start(cls: type[pykka.Actor], count: int) -> list[pykka.ActorRef[Any]]:
    return [cls.start() for _ in range(count)]


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


def bench_dispatch(quick: bool) -> list[h.Result]:
    total = 1_000 if quick else 10_000
    members = 100
    others = _start(Sink, total - members)
    listeners = _start(Listener, members)
    registry = Registry.start(MemoryBackend)
    try:
        for ref in listeners:
            registry.join(NS, "listeners", ref)
        namespace = {"registry": registry, "pykka": pykka, "Listener": Listener, "NS": NS}
        stmts = [
            h.Stmt("dispatch (memory)", "registry.dispatch(NS, 'listeners', 'event')", namespace),
            h.Stmt("get_by_class + tell loop",
                   "for ref in pykka.ActorRegistry.get_by_class(Listener):\n"
                   "    ref.tell('event')", namespace),
        ]
        timed = h.time_stmts(SUITE, f"broadcast to {members} of {_k(total)} actors", stmts,
                             rounds=5 if quick else 15, sample_s=0.02)
    finally:
        registry.stop()
        h.stop_actors(others + listeners)
    ours, base = timed["dispatch (memory)"], timed["get_by_class + tell loop"]
    h.compare(ours, base)
    h.set_target(ours, ">= 20x faster (at 10k actors)", (ours.speedup or 0) >= 20,
                 note="quick run: fewer actors" if quick else "")
    ours.note = (f"{members} tells either way; the baseline scans every actor of the process "
                 "under Pykka's registry lock first" + (f"; {ours.note}" if ours.note else ""))
    return [ours, base]


def bench_members(quick: bool) -> list[h.Result]:
    refs = _start(Sink, 10)
    results = []
    try:
        for name, backend in BACKENDS.items():
            registry = Registry.start(backend)
            try:
                for ref in refs:
                    registry.join(NS, "small", ref)
                plain = {i: ref for i, ref in enumerate(refs)}
                namespace = {"registry": registry, "NS": NS, "plain": plain}
                stmts = [
                    h.Stmt(f"members, 10-member group ({name})",
                           "registry.members(NS, 'small')", namespace),
                    h.Stmt("dict.get", "plain.get(3)", namespace),
                ]
                timed = h.time_stmts(SUITE, f"members() ({name})", stmts,
                                     rounds=5 if quick else 15)
            finally:
                registry.stop()
            ours = timed[f"members, 10-member group ({name})"]
            h.compare(ours, timed["dict.get"])
            h.set_target(ours, "<= 1 us", ours.p50 <= 1e-6)
            results += [ours, timed["dict.get"]]
    finally:
        h.stop_actors(refs)
    return results


def bench_group_via_tell(quick: bool) -> list[h.Result]:
    refs = _start(Sink, 10)
    registry = Registry.start(MemoryBackend)
    try:
        for ref in refs:
            registry.join(NS, "pool", ref)
        registry.join(NS, "one", refs[0])
        # Baselines with the same wake-up pattern: a tell to a sleeping actor
        # costs more than one to a busy one, so rotate over the same refs.
        namespace = {
            "rr": registry.group_via(NS, "pool"),
            "hashed": registry.group_via(NS, "pool", strategy="hash"),
            "single": registry.group_via(NS, "one"),
            "ref": refs[0],
            "refs": tuple(refs),
            "counter": iter(range(10**12)),
        }
        stmts = [
            h.Stmt("group_via(round_robin).tell", "rr.tell('m')", namespace),
            h.Stmt("group_via(hash).tell", "hashed.tell('m', key='user-7')", namespace),
            h.Stmt("ActorRef.tell, rotating by hand",
                   "refs[next(counter) % 10].tell('m')", namespace),
            h.Stmt("group_via, 1-member group", "single.tell('m')", namespace),
            h.Stmt("ActorRef.tell", "ref.tell('m')", namespace),
        ]
        timed = h.time_stmts(SUITE, "tell through group_via, 10 members", stmts,
                             rounds=5 if quick else 15)
    finally:
        registry.stop()
        h.stop_actors(refs)
    out = []
    for name, base_name in (("group_via(round_robin).tell", "ActorRef.tell, rotating by hand"),
                            ("group_via, 1-member group", "ActorRef.tell")):
        base = timed[base_name]
        result = h.compare(timed[name], base)
        h.set_target(result, "<= 2x a plain ActorRef.tell", result.p50 <= 2 * base.p50)
        out += [result, base]
    hashed = h.compare(timed["group_via(hash).tell"], timed["ActorRef.tell"])
    hashed.note = "one key always reaches one member: compared with a tell to one actor"
    return [*out, hashed]


def bench_join_leave(quick: bool) -> list[h.Result]:
    batch = 100 if quick else 500
    refs = _start(Sink, batch)
    registries = {name: Registry.start(backend) for name, backend in BACKENDS.items()}
    try:
        def make(registry: Registry) -> Callable[[], float]:
            def sample() -> float:
                t0 = time.perf_counter_ns()
                for ref in refs:
                    registry.join(NS, "churn", ref, {"zone": "eu"})
                for ref in refs:
                    registry.leave(NS, "churn", ref)
                return (time.perf_counter_ns() - t0) / 1e9
            return sample

        samplers = [h.Sampler(f"join+leave ({name})", make(reg), h.THROUGHPUT, ops=2 * batch)
                    for name, reg in registries.items()]
        timed = h.time_samples(SUITE, "join + leave, one caller", samplers,
                               rounds=3 if quick else 10, warmup=1)
    finally:
        for registry in registries.values():
            registry.stop()
        h.stop_actors(refs)
    results = list(timed.values())
    results[0].note = "writes per second (each a server round trip, like register)"
    return results


def main(quick: bool = False) -> list[h.Result]:
    return h.run_steps("groups", [bench_dispatch, bench_members, bench_group_via_tell,
                                  bench_join_leave], quick)


if __name__ == "__main__":
    h.cli(main, __doc__, quick_help="1k actors instead of 10k, fewer samples")
