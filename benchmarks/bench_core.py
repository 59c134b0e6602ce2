"""Core benchmarks (issue 2): lookup, register throughput, death-to-gone,
``match`` with and without an index, memory per registration.

Run ``python benchmarks/bench_core.py [--quick]`` (or everything with
``python benchmarks/run.py``). See ``docs/performance.md``.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
import tracemalloc
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import pykka

from pykka_registry import IndexedBackend, MemoryBackend, Registry, Unregistered
from pykka_registry.backends.base import Backend, Entry

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # imported from elsewhere than benchmarks/
    sys.path.insert(0, HERE)

import _harness as h  # noqa: E402

SUITE = "core"
NS = "bench"
BACKENDS: dict[str, type[Backend]] = {"memory": MemoryBackend, "indexed": IndexedBackend}


def _svc(i: int) -> str:
    return f"svc-{i}"


def _metadata(i: int, shards: int) -> dict[str, Any]:
    return {"shard": i % shards, "role": "worker", "zone": f"z{i % 4}"}


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def fill_direct(
    registry: Registry,
    count: int,
    holders: Sequence[pykka.ActorRef[Any]],
    shards: int,
    namespace: Hashable = NS,
) -> None:
    """Register ``count`` names straight into the backend, in the server
    thread (the server's own path minus one ``ask`` per name)."""

    def fill(backend: Backend) -> None:
        for i in range(count):
            metadata = backend.validate_metadata(_metadata(i, shards))
            entry = Entry.create(namespace, _svc(i), holders[i % len(holders)], metadata)
            backend.register(entry, lambda ref: True)

    registry.run_in_server(fill)


# -- lookup ---------------------------------------------------------------------------


def _lookup_stmts(
    registry: Registry,
    plain: dict[str, Any],
    hit_keys: list[str],
    miss_keys: list[str],
    urns: Optional[tuple[list[str], list[str]]],
    ask_ref: Optional[pykka.ActorRef[Any]],
) -> list[h.Stmt]:
    loop = "for _k in _keys: _f(_ns, _k)"
    stmts = [
        h.Stmt("Registry.lookup hit", loop,
               {"_keys": hit_keys, "_f": registry.lookup, "_ns": NS}, ops=len(hit_keys)),
        h.Stmt("Registry.lookup miss", loop,
               {"_keys": miss_keys, "_f": registry.lookup, "_ns": NS}, ops=len(miss_keys)),
        h.Stmt("dict.get hit", "for _k in _keys: _f(_k)",
               {"_keys": hit_keys, "_f": plain.get}, ops=len(hit_keys)),
        h.Stmt("dict.get miss", "for _k in _keys: _f(_k)",
               {"_keys": miss_keys, "_f": plain.get}, ops=len(miss_keys)),
    ]
    if urns is not None:
        by_urn = pykka.ActorRegistry.get_by_urn
        stmts += [
            h.Stmt("ActorRegistry.get_by_urn hit", "for _k in _keys: _f(_k)",
                   {"_keys": urns[0], "_f": by_urn}, ops=len(urns[0])),
            h.Stmt("ActorRegistry.get_by_urn miss", "for _k in _keys: _f(_k)",
                   {"_keys": urns[1], "_f": by_urn}, ops=len(urns[1])),
        ]
    if ask_ref is not None:
        stmts.append(h.Stmt("ActorRef.ask round trip", "_ask(1)", {"_ask": ask_ref.ask}))
    return stmts


def _lookup_results(
    timed: dict[str, h.Result], size: int, actors: int, quick: bool
) -> list[h.Result]:
    bench = f"lookup, {_k(size)} entries" + (f" / {_k(actors)} actors" if actors else "")
    hit, miss = timed["Registry.lookup hit"], timed["Registry.lookup miss"]
    order = ["Registry.lookup hit", "Registry.lookup miss", "dict.get hit", "dict.get miss",
             "ActorRegistry.get_by_urn hit", "ActorRegistry.get_by_urn miss",
             "ActorRef.ask round trip"]
    results = []
    for name in order:
        if name not in timed:
            continue
        r = timed[name]
        r.bench = bench
        series = name
        if name.endswith(("hit", "miss")):
            call, kind = name.rsplit(" ", 1)
            series = f"{call} ({kind})"
        r.plot = {"figure": "lookup", "series": series, "x": size}
        results.append(r)
    for name, ref in (("dict.get hit", hit), ("dict.get miss", miss),
                      ("ActorRef.ask round trip", hit)):
        if name in timed:
            h.compare(timed[name], ref)
    if "ActorRegistry.get_by_urn hit" in timed:
        h.compare(hit, timed["ActorRegistry.get_by_urn hit"], "get_by_urn hit")
        h.compare(miss, timed["ActorRegistry.get_by_urn miss"], "get_by_urn miss")
        if actors >= 10_000:
            h.set_target(hit, ">= 300x faster than get_by_urn at 10k actors",
                         (hit.speedup or 0) >= 300)
        elif actors == max(ACTOR_COUNTS[quick]):
            hit.target = ">= 300x faster than get_by_urn at 10k actors"
            hit.status = "n/a (quick)"
            hit.note = (f"quick run: measured at {_k(actors)} actors only; get_by_urn is "
                        "O(actors), so the ratio grows with the actor count")
    elif size >= 100_000:
        h.set_target(hit, "p50 <= 3x dict.get hit at 100k entries",
                     hit.p50 <= 3 * timed["dict.get hit"].p50)
        h.set_target(miss, "p50 <= 3x dict.get miss at 100k entries",
                     miss.p50 <= 3 * timed["dict.get miss"].p50)
    if actors >= 10_000:
        dict_hit = timed["dict.get hit"]
        h.set_target(dict_hit, "Registry.lookup hit <= 5x this at 10k actors",
                     hit.p50 <= 5 * dict_hit.p50)
    return results


ACTOR_COUNTS = {False: (100, 1_000, 10_000), True: (100, 1_000, 3_000)}


def bench_lookup_actors(quick: bool) -> list[h.Result]:
    """One real actor per name, so that get_by_urn has as many actors to scan."""
    rng = random.Random(1)
    results: list[h.Result] = []
    registry = Registry.start(call_timeout=60.0, max_restarts=1000)
    refs: list[pykka.ActorRef[Any]] = []
    try:
        for count in ACTOR_COUNTS[quick]:
            for i in range(len(refs), count):
                ref = h.Echo.start()
                refs.append(ref)
                registry.register(NS, _svc(i), ref)  # through the facade
            plain = {_svc(i): ref for i, ref in enumerate(refs)}
            hit_keys = [_svc(rng.randrange(count)) for _ in range(1000)]
            miss_keys = [f"missing-{i}" for i in range(1000)]
            urn_count = max(4, min(200, 200_000 // count))
            urns = ([refs[rng.randrange(count)].actor_urn for _ in range(urn_count)],
                    [f"urn:uuid:missing-{i}" for i in range(urn_count)])
            stmts = _lookup_stmts(registry, plain, hit_keys, miss_keys, urns, refs[0])
            timed = h.time_stmts(SUITE, "lookup", stmts, rounds=9 if quick else 21,
                                 sample_s=0.003 if quick else 0.005)
            results += _lookup_results(timed, count, count, quick)
    finally:
        registry.stop()
        h.stop_actors(refs)
    return results


def bench_lookup_large(quick: bool) -> list[h.Result]:
    """100k names held by a handful of actors."""
    size = 100_000
    rng = random.Random(2)
    holders = h.start_actors(8)
    registry = Registry.start(call_timeout=60.0, max_restarts=1000)
    try:
        fill_direct(registry, size, holders, shards=size // 10)
        assert registry.count(NS) == size
        plain = {_svc(i): holders[i % len(holders)] for i in range(size)}
        hit_keys = [_svc(rng.randrange(size)) for _ in range(1000)]
        miss_keys = [f"missing-{i}" for i in range(1000)]
        stmts = _lookup_stmts(registry, plain, hit_keys, miss_keys, None, None)
        timed = h.time_stmts(SUITE, "lookup", stmts, rounds=9 if quick else 21,
                             sample_s=0.003 if quick else 0.005)
        results = _lookup_results(timed, size, 0, quick)
        results[0].note = ("names registered straight into the backend via run_in_server; "
                           "8 actors hold them all")
    finally:
        registry.stop()
        h.stop_actors(holders)
    return results


# -- register throughput -----------------------------------------------------------


def _register_throughput(quick: bool, where: str) -> list[h.Result]:
    batch = 50 if quick else 100
    rounds = 10 if quick else 60
    metadata = {"role": "worker", "zone": "eu-1", "weight": 3}
    actors = h.start_actors(2)
    holder, echo = actors
    registries: dict[str, Registry] = {}
    counter = iter(range(10**9))
    try:
        for name, backend in BACKENDS.items():
            registries[name] = Registry.start(backend, call_timeout=60.0, max_restarts=1000)
            fill_direct(registries[name], 1000, [holder], shards=100)
        registries["memory, 1 subscriber"] = Registry.start(call_timeout=60.0, max_restarts=1000)
        fill_direct(registries["memory, 1 subscriber"], 1000, [holder], shards=100)
        seen: list[Any] = []
        registries["memory, 1 subscriber"].subscribe(seen.append)

        def cycle(registry: Registry) -> Callable[[], float]:
            def sample() -> float:
                names = [f"t-{next(counter)}" for _ in range(batch)]
                t0 = time.perf_counter_ns()
                for service in names:
                    registry.register(NS, service, holder, metadata)
                    registry.unregister(NS, service)
                elapsed = time.perf_counter_ns() - t0
                seen.clear()
                return elapsed / 1e9
            return sample

        def floor() -> float:
            ask = echo.ask
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                ask(1)
                ask(2)
            return (time.perf_counter_ns() - t0) / 1e9

        samplers = [h.Sampler(f"register+unregister ({name})", cycle(reg), h.THROUGHPUT,
                              ops=2 * batch) for name, reg in registries.items()]
        samplers.append(h.Sampler("2 x ActorRef.ask (floor)", floor, h.THROUGHPUT, ops=2 * batch))
        timed = h.time_samples(SUITE, f"register+unregister, 1k entries, {where}", samplers,
                               rounds=rounds)
    finally:
        for registry in registries.values():
            registry.stop()
        h.stop_actors(actors)
    floor_result = timed["2 x ActorRef.ask (floor)"]
    results = list(timed.values())
    for r in results:
        r.plot = {"figure": "register", "series": f"{r.candidate}, {where}", "x": 0}
        if r is not floor_result:
            h.compare(r, floor_result, "the ask floor")
    return results


def bench_register_throughput(quick: bool) -> list[h.Result]:
    cpus = h.usable_cpus()
    if cpus == 1:
        results = _register_throughput(quick, "1 CPU")
    else:
        results = _register_throughput(quick, f"{cpus} CPUs as scheduled")
        with h.pinned_to_one_cpu() as pinned:
            if pinned:
                results += _register_throughput(quick, "pinned to 1 CPU")
    results[0].note = (
        "ops/s counts register() and unregister() calls (2 per cycle), each a blocking ask to "
        "the server; metadata of 3 fields; the floor is 2 no-op asks to an actor. '2 CPUs': "
        "threads placed by the OS; a wake-up across cores costs ~80 µs on this VM, so "
        "samples are bimodal. 'pinned': every thread on one CPU, the code's own cost")
    return results


# -- death to gone -------------------------------------------------------------------


class _Waiter:
    """Wakes on the Unregistered event of one name; records when it came."""

    def __init__(self) -> None:
        self.service: Hashable = None
        self.event = threading.Event()
        self.at_ns = 0

    def arm(self, service: Hashable) -> None:
        self.service = service
        self.event.clear()

    def __call__(self, event: Any) -> None:
        if isinstance(event, Unregistered) and event.service == self.service:
            self.at_ns = time.perf_counter_ns()
            self.event.set()


def bench_death_to_gone(quick: bool) -> list[h.Result]:
    rounds = 60 if quick else 400
    counter = iter(range(10**9))
    holders = h.start_actors(1)
    registries: dict[str, Registry] = {}
    waiters: dict[str, _Waiter] = {}
    try:
        for name, backend in BACKENDS.items():
            registry = registries[name] = Registry.start(backend, call_timeout=10.0,
                                                         max_restarts=1000)
            fill_direct(registry, 1000, holders, shards=100)
            waiters[name] = _Waiter()
            registry.subscribe(waiters[name], namespace=NS)

        def make(backend: str, how: str, observe: str) -> Callable[[], float]:
            registry, waiter = registries[backend], waiters[backend]

            def sample() -> float:
                service = f"d-{next(counter)}"
                ref = h.Echo.start()
                registry.register(NS, service, ref)
                waiter.arm(service)
                t0 = time.perf_counter_ns()
                if how == "stop":
                    ref.stop(block=False)
                else:
                    ref.tell("crash")
                if observe == "listener":
                    if not waiter.event.wait(5):
                        raise RuntimeError(f"{service} never left the registry")
                    t1 = waiter.at_ns
                else:  # bounded poll that yields the GIL between reads
                    deadline = t0 + 5_000_000_000
                    while registry.keys_of(ref):
                        time.sleep(0)
                        if time.perf_counter_ns() > deadline:
                            raise RuntimeError(f"{service} never left the registry")
                    t1 = time.perf_counter_ns()
                    waiter.event.wait(5)
                if registry.keys_of(ref) or registry.lookup(NS, service) is not None:
                    raise RuntimeError(f"{service} still registered after its death")
                ref.actor_stopped.wait(5)
                return (t1 - t0) / 1e9

            return sample

        samplers = [
            h.Sampler(f"{how}, {backend}, seen by {observe}", make(backend, how, observe))
            for how in ("stop", "crash")
            for backend in BACKENDS
            for observe in ("listener", "poll")
            if observe == "listener" or backend == "memory"
        ]
        with h.quiet_actor_logs():
            timed = h.time_samples(SUITE, "death to gone", samplers, rounds=rounds)
    finally:
        for registry in registries.values():
            registry.stop()
        h.stop_actors(holders)
    results = list(timed.values())
    for r in results:
        h.set_target(r, "p50 <= 1 ms", r.p50 <= 1e-3)
    results[0].note = (
        "from just before ref.stop(block=False) (stop) or ref.tell('crash') (crash) to the "
        "Unregistered event reaching a listener, or to keys_of() turning empty in a poll "
        "that calls time.sleep(0) between reads; the clean-up itself runs in the dying "
        "thread before Pykka reports the actor stopped, so this is mostly the actor's own "
        "stop (or crash logging, silenced) plus one thread hand-off")
    return results


def bench_listed_after_stop(quick: bool) -> list[h.Result]:
    """How often a stopped actor is still listed right after ``stop(block=True)``
    returned (was 172 of 500 with asynchronous clean-up), and for how long a
    reader spinning on ``count()`` sees it."""
    tries = 100 if quick else 500
    results = []
    for name, backend in BACKENDS.items():
        with Registry.start(backend, call_timeout=10.0) as registry:
            listed = 0
            visible_ns: list[float] = []
            with h.quiet_actor_logs():
                for i in range(tries):
                    ref = h.Echo.start()
                    registry.register(NS, f"s{i}", ref, {"role": "x"})
                    if i % 2:
                        ref.stop(block=True)
                    else:
                        ref.tell("crash")
                        ref.actor_stopped.wait(5)
                    t0 = time.perf_counter_ns()
                    still = (registry.count(NS) != 0 or registry.list_services(NS) != []
                             or registry.match(NS, {"role": "x"}) != [])
                    while registry.count(NS) != 0:  # a spinning reader, no sleep
                        if time.perf_counter_ns() - t0 > 5_000_000_000:
                            raise RuntimeError("a dead actor stayed listed for 5 s")
                    visible_ns.append((time.perf_counter_ns() - t0) / 1e9)
                    listed += still
        count = h.Result(SUITE, "listed after stop returned", f"{name}: tries still listed",
                         "listed", float(listed), float(listed), tries)
        h.set_target(count, f"0 of {tries}", listed == 0)
        results.append(count)
        spin = h._summarise(SUITE, "listed after stop returned",
                            f"{name}: visible to a spinning count() reader", h.LATENCY,
                            visible_ns)
        results.append(spin)
    results[0].note = (
        "each try: register, then stop(block=True) or a crash and actor_stopped.wait(); then, "
        "at once, count/list_services/match are read (a try counts if any of them still "
        "shows the actor), and a loop spins on count() without sleeping until it drops (the "
        "spin time includes one count() call)")
    return results


# -- match -------------------------------------------------------------------------


MATCH_SIZES = {False: (1_000, 10_000, 100_000), True: (10_000, 100_000)}


def bench_match(quick: bool) -> list[h.Result]:
    holders = h.start_actors(8)
    results: list[h.Result] = []
    try:
        for size in MATCH_SIZES[quick]:
            shards = size // 10  # every shard value is held by exactly 10 entries
            registries = {
                name: Registry.start(backend, call_timeout=60.0, max_restarts=1000)
                for name, backend in BACKENDS.items()
            }
            try:
                for registry in registries.values():
                    fill_direct(registry, size, holders, shards)
                want = shards // 2
                criteria = {"shard": want}
                indexed, memory = registries["indexed"], registries["memory"]
                assert len(indexed.match(NS, criteria)) == 10
                assert len(memory.match(NS, criteria)) == 10

                def predicate(metadata: Any, want: int = want) -> bool:
                    return metadata.get("shard") == want

                assert len(indexed.find_services_by_metadata(NS, predicate)) == 10
                stmts = [
                    h.Stmt("IndexedBackend match", "_f(_ns, _c)",
                           {"_f": indexed.match, "_ns": NS, "_c": criteria}),
                    h.Stmt("MemoryBackend match (scan)", "_f(_ns, _c)",
                           {"_f": memory.match, "_ns": NS, "_c": criteria}),
                    h.Stmt("find_services_by_metadata (scan)", "_f(_ns, _p)",
                           {"_f": indexed.find_services_by_metadata, "_ns": NS,
                            "_p": predicate}),
                ]
                big = size >= 100_000
                timed = h.time_stmts(
                    SUITE, "match", stmts,
                    rounds=(5 if quick else 9) if big else (7 if quick else 15),
                    sample_s=0.02 if big else 0.005,
                )
            finally:
                for registry in registries.values():
                    registry.stop()
            fast = timed["IndexedBackend match"]
            for r in timed.values():
                r.bench = f"match 10 of {_k(size)}"
                r.plot = {"figure": "match", "series": r.candidate, "x": size}
            h.compare(fast, timed["find_services_by_metadata (scan)"], "the predicate scan")
            h.compare(timed["MemoryBackend match (scan)"],
                      timed["find_services_by_metadata (scan)"], "the predicate scan")
            if big:
                h.set_target(fast, ">= 100x faster than the scan at 100k",
                             (fast.speedup or 0) >= 100)
            results += list(timed.values())
    finally:
        h.stop_actors(holders)
    results[0].note = (
        "criteria {'shard': k}, 10 matches; metadata {'shard', 'role', 'zone'}; "
        "find_services_by_metadata runs on the indexed registry")
    return results


# -- memory per registration ----------------------------------------------------------


class _Holder:
    """Stands in for one of 100k distinct actors (100k threads are too many
    here): the backends only read ``actor_urn`` of a holder."""

    __slots__ = ("actor_urn",)

    def __init__(self, urn: str) -> None:
        self.actor_urn = urn


def bench_memory(quick: bool) -> list[h.Result]:
    size = 20_000 if quick else 100_000
    holders = h.start_actors(8)
    distinct = [_Holder(f"urn:uuid:{i:032x}") for i in range(size)]
    names = [_svc(i) for i in range(size)]
    metadata = [_metadata(i, size // 10) for i in range(size)]

    def traced(fill: Callable[[], object]) -> float:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            keep = fill()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        del keep
        return float(after - before)

    def backend_fill(backend_cls: type[Backend], refs: Sequence[Any]) -> Callable[[], float]:
        def fill() -> object:
            backend = backend_cls()
            for i in range(size):
                own = backend.validate_metadata(metadata[i])
                backend.register(Entry.create(NS, names[i], refs[i % len(refs)], own),
                                 lambda ref: True)
            return backend

        return lambda: traced(fill)

    def plain_fill() -> float:
        return traced(lambda: {names[i]: holders[i % 8] for i in range(size)})

    samplers = [h.Sampler(f"{name} backend, {label}", backend_fill(cls, refs), h.BYTES,
                          ops=size)
                for name, cls in BACKENDS.items()
                for label, refs in ((f"{_k(size)} distinct holders", distinct),
                                    ("8 holders", holders))]
    samplers.append(h.Sampler("dict {service: ref}", plain_fill, h.BYTES, ops=size))
    try:
        timed = h.time_samples(SUITE, f"memory per entry, {_k(size)}", samplers,
                               rounds=1, warmup=0)
    finally:
        h.stop_actors(holders)
    results = list(timed.values())
    plain = timed["dict {service: ref}"]
    for r in results:
        if r is not plain:
            h.compare(r, plain)
    limits = {"memory": 400, "indexed": 600}
    for name, limit in limits.items():
        r = timed[f"{name} backend, {_k(size)} distinct holders"]
        h.set_target(r, f"<= {limit} B per entry (one name per actor)", r.p50 <= limit)
    results[0].note = (
        "tracemalloc growth / entries, standalone backend objects filled as the server does "
        "(incl. the registry's own copy of a 3-field metadata dict); service names and refs "
        "are allocated beforehand and not counted" + (" (quick run: 20k entries)" if quick else "")
    )
    return results


# -- entry point ----------------------------------------------------------------------


def main(quick: bool = False) -> list[h.Result]:
    return h.run_steps("core", [bench_lookup_actors, bench_lookup_large,
                                bench_register_throughput, bench_death_to_gone,
                                bench_listed_after_stop, bench_match, bench_memory], quick)


if __name__ == "__main__":
    h.cli(main, __doc__, quick_help="fewer samples, smaller sizes")
