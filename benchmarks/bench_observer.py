"""Observer benchmarks: ``lookup`` and ``register`` with an observer running
(and no client connected) against the same registry set-up without one, side
by side in the same process.

Run ``python benchmarks/bench_observer.py [--quick]`` (or everything with
``python benchmarks/run.py``). See ``docs/observer.md``.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # imported from elsewhere than benchmarks/
    sys.path.insert(0, HERE)

import _harness as h  # noqa: E402
from bench_core import NS, fill_direct  # noqa: E402

from pykka_registry import Registry  # noqa: E402

SUITE = "observer"
PLAIN = "no observer"
OBSERVED = "observer running, no client"


def bench_lookup_observed(quick: bool) -> list[h.Result]:
    size = 10_000 if quick else 100_000
    holders = h.start_actors(8)
    plain = Registry.start(call_timeout=60.0)
    observed = Registry.start(call_timeout=60.0)
    observer = None
    try:
        for registry in (plain, observed):
            fill_direct(registry, size, holders, shards=100)
        observer = observed.observe()
        keys = [f"svc-{i}" for i in range(0, size, max(1, size // 1000))]
        loop = "for _k in _keys: _f(_ns, _k)"
        stmts = [
            h.Stmt(f"Registry.lookup hit ({name})", loop,
                   {"_f": reg.lookup, "_ns": NS, "_keys": keys}, ops=len(keys))
            for name, reg in ((PLAIN, plain), (OBSERVED, observed))
        ]
        timed = h.time_stmts(SUITE, f"lookup, {size // 1000}k entries", stmts,
                             rounds=9 if quick else 21)
    finally:
        if observer is not None:
            observer.stop()
        plain.stop()
        observed.stop()
        h.stop_actors(holders)
    base, with_observer = timed[stmts[0].name], timed[stmts[1].name]
    h.compare(with_observer, base, PLAIN)
    h.set_target(with_observer, "within 10% of no observer", with_observer.speedup >= 0.9)
    return [base, with_observer]


def bench_register_observed(quick: bool) -> list[h.Result]:
    # Pinned to one CPU: the two registries' server threads would otherwise
    # each land near or far from the caller (a round trip of ~15 or ~90 µs on
    # this VM, for tens of milliseconds at a time), and the comparison would
    # measure where the scheduler put them, not what the observer costs.
    with h.pinned_to_one_cpu() as pinned:
        results = _register_observed(quick)
    if pinned:
        results[1].note = (results[1].note + "; " if results[1].note else "") + \
            "both pinned to one CPU"
    return results


def _register_observed(quick: bool) -> list[h.Result]:
    batch = 50 if quick else 100
    rounds = 10 if quick else 60
    metadata = {"role": "worker", "zone": "eu-1", "weight": 3}
    holders = h.start_actors(1)
    holder = holders[0]
    registries = {PLAIN: Registry.start(call_timeout=60.0),
                  OBSERVED: Registry.start(call_timeout=60.0)}
    observer = registries[OBSERVED].observe()
    counter = iter(range(10**9))
    try:
        for registry in registries.values():
            fill_direct(registry, 1000, [holder], shards=100)

        def cycle(registry: Registry) -> Callable[[], float]:
            def sample() -> float:
                names = [f"t-{next(counter)}" for _ in range(batch)]
                t0 = time.perf_counter_ns()
                for service in names:
                    registry.register(NS, service, holder, metadata)
                    registry.unregister(NS, service)
                return (time.perf_counter_ns() - t0) / 1e9
            return sample

        samplers = [h.Sampler(f"register+unregister ({name})", cycle(reg), h.THROUGHPUT,
                              ops=2 * batch) for name, reg in registries.items()]
        timed = h.time_samples(SUITE, "register+unregister, 1k entries", samplers,
                               rounds=rounds)
    finally:
        observer.stop()
        for registry in registries.values():
            registry.stop()
        h.stop_actors(holders)
    base, with_observer = timed[samplers[0].name], timed[samplers[1].name]
    h.compare(with_observer, base, PLAIN)
    h.set_target(with_observer, "within 10% of no observer", with_observer.speedup >= 0.9,
                 "no client: the observer has not subscribed to the registry's events")
    return [base, with_observer]


def bench_snapshot_100k(quick: bool) -> list[h.Result]:
    size = 20_000 if quick else 100_000
    rounds = 5 if quick else 15
    holders = h.start_actors(8)
    registry = Registry.start(call_timeout=60.0)
    observer = None
    try:
        fill_direct(registry, size, holders, shards=100)
        observer = registry.observe()
        base_url = observer.url.split("?")[0].rstrip("/")

        def fetch(path: str) -> Callable[[], float]:
            def sample() -> float:
                t0 = time.perf_counter_ns()
                with urllib.request.urlopen(base_url + path, timeout=30) as response:
                    body = response.read()
                elapsed = time.perf_counter_ns() - t0
                if len(body) >= 10_000_000:
                    raise RuntimeError(f"{path}: {len(body)} bytes, over 10 MB")
                return elapsed / 1e9
            return sample

        samplers = [h.Sampler(f"GET {path}", fetch(path))
                    for path in ("/api/snapshot", "/api/snapshot?limit=100000", "/metrics")]
        timed = h.time_samples(SUITE, f"served with {size // 1000}k names", samplers,
                               rounds=rounds, warmup=1, gc_off=False)
    finally:
        if observer is not None:
            observer.stop()
        registry.stop()
        h.stop_actors(holders)
    results = list(timed.values())
    for r in results:
        h.set_target(r, "p50 < 1 s, body < 10 MB", r.p50 < 1.0)
    results[0].note = ("one HTTP GET on loopback from this process, body read in full; "
                       "limit=100000 is capped at the observer's max page size")
    return results


def bench_poll_unchanged_vs_changed(quick: bool) -> list[h.Result]:
    """What the page's poll costs with 100k names: nothing changed since the
    last poll, against one name registered just before it (its event
    delivered). The observer keeps the rows sorted and applies each change
    to them, so neither lists nor sorts the 100k names."""
    size = 20_000 if quick else 100_000
    rounds = 9 if quick else 31
    holders = h.start_actors(8)
    registry = Registry.start(call_timeout=60.0)
    observer = None
    counter = iter(range(10**9))
    try:
        fill_direct(registry, size, holders, shards=100)
        observer = registry.observe()
        url = observer.url.split("?")[0].rstrip("/") + "/api/snapshot"

        def get() -> float:
            t0 = time.perf_counter_ns()
            with urllib.request.urlopen(url, timeout=30) as response:
                response.read()
            return (time.perf_counter_ns() - t0) / 1e9

        get()  # the first request subscribes and builds the rows

        def unchanged() -> float:
            get()  # whatever came before is applied: this one has nothing new
            return get()

        def changed() -> float:
            seen = observer.events()["latest"]
            registry.register(NS, f"new-{next(counter)}", holders[0])
            deadline = time.monotonic() + 10
            while observer.events()["latest"] == seen:  # the event delivered (bounded)
                if time.monotonic() > deadline:
                    raise RuntimeError("the observer did not see the registration")
                time.sleep(0.0005)
            return get()

        samplers = [h.Sampler("poll, nothing changed", unchanged),
                    h.Sampler("poll after one register", changed)]
        timed = h.time_samples(SUITE, f"GET /api/snapshot, {size // 1000}k names", samplers,
                               rounds=rounds, warmup=2, gc_off=False)
    finally:
        if observer is not None:
            observer.stop()
        registry.stop()
        h.stop_actors(holders)
    base, after = timed[samplers[0].name], timed[samplers[1].name]
    h.compare(after, base, "nothing changed")
    h.set_target(base, "p50 < 50 ms", base.p50 < 0.05,
                 "default page (200 names); one HTTP GET on loopback from this process")
    h.set_target(after, "within 2x of nothing changed", (after.speedup or 0) >= 0.5)
    return [base, after]


def main(quick: bool = False) -> list[h.Result]:
    return h.run_steps("observer", [bench_lookup_observed, bench_register_observed,
                                    bench_snapshot_100k, bench_poll_unchanged_vs_changed],
                       quick)


if __name__ == "__main__":
    h.cli(main, __doc__)
