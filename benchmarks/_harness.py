"""Shared timing helpers for the benchmark scripts (not a pytest module).

How candidates are timed
------------------------
* **Micro benchmarks** (:func:`time_stmts`): each candidate is a statement
  compiled by :mod:`timeit` (no call overhead added around it). Each is
  calibrated once so that one sample lasts about ``sample_s``, then the
  candidates run **side by side, round robin**: round ``r`` times every
  candidate once, starting at candidate ``r mod k``, so that a burst of noise
  on this shared machine hits all of them alike. :mod:`timeit` disables the
  garbage collector while it times a sample.
* **Event benchmarks** (:func:`time_samples`): each candidate is a function
  that performs one operation (or a batch of ``ops``) and returns the elapsed
  seconds it measured itself with :func:`time.perf_counter_ns`. The same
  interleaving applies; the garbage collector is disabled around each sample
  (and a collection runs between rounds, outside the timing).

Every figure reported is a **median (p50)** with the **90th percentile on
the slow side (p90)**: for a throughput that is the rate at the 90th
percentile of time per operation. A result may be compared against another
(its *baseline*): ``speedup > 1`` means better than the baseline (faster, or
fewer bytes).

Contract for benchmark modules (``benchmarks/bench_*.py``), used by
``run.py``: a module defines ``main(quick: bool) -> list[Result]``. It may
raise :class:`Skip` (for example when an optional service is missing) to be
skipped with a note, and must leave no Pykka actor running.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
import time
import timeit
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pykka

__all__ = [
    "BYTES",
    "LATENCY",
    "THROUGHPUT",
    "Echo",
    "Result",
    "Sampler",
    "Skip",
    "Stmt",
    "assert_no_actors",
    "compare",
    "format_value",
    "machine_info",
    "markdown_table",
    "percentile",
    "pinned_to_one_cpu",
    "quiet_actor_logs",
    "set_target",
    "start_actors",
    "stop_actors",
    "time_samples",
    "time_stmts",
    "usable_cpus",
]

#: Units of :attr:`Result.unit`.
LATENCY = "s"  # seconds per operation: lower is better
THROUGHPUT = "ops/s"  # operations per second: higher is better
BYTES = "B"  # bytes (per entry): lower is better


class Skip(Exception):
    """Raised by a benchmark module's ``main`` to be skipped with a reason."""


@dataclass
class Result:
    """One row of the results table."""

    suite: str
    bench: str
    candidate: str
    unit: str
    p50: float
    p90: float
    samples: int
    baseline: Optional[str] = None
    speedup: Optional[float] = None
    target: str = ""
    status: str = ""
    note: str = ""
    #: For run.py's plots: ``{"figure": ..., "series": ..., "x": ...}``.
    plot: Optional[dict[str, Any]] = None
    values: list[float] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return f"{self.candidate} ({self.bench})"


# -- statistics ---------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _summarise(
    suite: str, bench: str, name: str, unit: str, per_op: list[float], ops_per_unit: float = 1.0
) -> Result:
    """``per_op``: seconds per operation (LATENCY/THROUGHPUT) or bytes (BYTES)."""
    p50 = percentile(per_op, 50)
    p90 = percentile(per_op, 90)
    if unit == THROUGHPUT:
        return Result(suite, bench, name, unit, ops_per_unit / p50, ops_per_unit / p90,
                      len(per_op), values=list(per_op))
    return Result(suite, bench, name, unit, p50, p90, len(per_op), values=list(per_op))


def compare(result: Result, baseline: Result, name: Optional[str] = None) -> Result:
    """Record ``baseline`` as ``result``'s reference; ``speedup > 1``: better."""
    if result.unit != baseline.unit:
        raise ValueError(f"cannot compare {result.unit} with {baseline.unit}")
    if result.unit == THROUGHPUT:
        result.speedup = result.p50 / baseline.p50
    else:
        result.speedup = baseline.p50 / result.p50 if result.p50 else float("inf")
    result.baseline = name or baseline.candidate
    return result


def set_target(result: Result, text: str, ok: bool, note: str = "") -> Result:
    """Attach a target and its verdict (PASS/MISS) to ``result``."""
    result.target = text
    result.status = "PASS" if ok else "MISS"
    if note:
        result.note = f"{result.note}; {note}" if result.note else note
    return result


# -- timing -------------------------------------------------------------------


@dataclass
class Stmt:
    """A micro-benchmark candidate: ``stmt`` runs ``ops`` operations, with
    ``namespace`` as its globals."""

    name: str
    stmt: str
    namespace: dict[str, Any]
    ops: int = 1
    setup: str = "pass"


def _rotated(count: int, round_no: int) -> list[int]:
    start = round_no % count
    return [*range(start, count), *range(start)]


def _calibrate(timer: timeit.Timer, sample_ns: float) -> int:
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= sample_ns / 4 or number >= 1 << 24:
            return max(1, int(number * sample_ns / max(elapsed, 1)))
        number *= 4


def time_stmts(
    suite: str,
    bench: str,
    stmts: Sequence[Stmt],
    *,
    rounds: int = 15,
    sample_s: float = 0.004,
) -> dict[str, Result]:
    """Time ``stmts`` side by side (see the module docstring). Returns results
    by candidate name, in seconds per operation."""
    timers = [
        timeit.Timer(s.stmt, s.setup, timer=time.perf_counter_ns, globals=s.namespace)
        for s in stmts
    ]
    numbers = [_calibrate(timer, sample_s * 1e9) for timer in timers]
    samples: list[list[float]] = [[] for _ in stmts]
    for round_no in range(rounds):
        for i in _rotated(len(stmts), round_no):
            elapsed_ns = timers[i].timeit(numbers[i])
            samples[i].append(elapsed_ns / 1e9 / (numbers[i] * stmts[i].ops))
    return {
        s.name: _summarise(suite, bench, s.name, LATENCY, samples[i])
        for i, s in enumerate(stmts)
    }


@dataclass
class Sampler:
    """An event-benchmark candidate: ``sample()`` performs ``ops`` operations
    and returns the seconds they took (or, with ``unit=BYTES``, the bytes)."""

    name: str
    sample: Callable[[], float]
    unit: str = LATENCY
    ops: int = 1


def time_samples(
    suite: str,
    bench: str,
    samplers: Sequence[Sampler],
    *,
    rounds: int,
    warmup: int = 2,
    gc_off: bool = True,
) -> dict[str, Result]:
    """Run ``samplers`` side by side, one sample each per round (after
    ``warmup`` unrecorded rounds). Returns results by candidate name."""
    values: list[list[float]] = [[] for _ in samplers]
    was_enabled = gc.isenabled()
    try:
        for round_no in range(warmup + rounds):
            for i in _rotated(len(samplers), round_no):
                if gc_off:
                    gc.disable()
                try:
                    value = samplers[i].sample()
                finally:
                    if gc_off and was_enabled:
                        gc.enable()
                if round_no >= warmup:
                    values[i].append(value / samplers[i].ops)
            if gc_off and round_no % 10 == 9:
                gc.collect(0)
    finally:
        if was_enabled:
            gc.enable()
    return {
        s.name: _summarise(suite, bench, s.name, s.unit, values[i])
        for i, s in enumerate(samplers)
    }


# -- actors -------------------------------------------------------------------


class Echo(pykka.ThreadingActor):
    """Replies with what it gets; crashes on ``"crash"``."""

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash requested by the benchmark")
        return message


def start_actors(count: int) -> list[pykka.ActorRef[Any]]:
    """Start ``count`` :class:`Echo` actors."""
    return [Echo.start() for _ in range(count)]


def stop_actors(refs: Sequence[pykka.ActorRef[Any]], timeout: float = 30.0) -> None:
    """Stop ``refs`` in bulk (all stop messages first, then wait for each)."""
    for ref in refs:
        try:
            ref.stop(block=False)
        except pykka.ActorDeadError:
            pass
    deadline = time.monotonic() + timeout
    for ref in refs:
        ref.actor_stopped.wait(max(0.0, deadline - time.monotonic()))


def assert_no_actors(where: str) -> None:
    """Raise if any Pykka actor is still running (after stopping them all)."""
    left = pykka.ActorRegistry.get_all()
    if left:
        pykka.ActorRegistry.stop_all(timeout=10)
        raise RuntimeError(f"{where}: {len(left)} actor(s) were left running: {left[:3]}")


def run_steps(label: str, steps: Sequence[Callable[[bool], list[Result]]],
              quick: bool) -> list[Result]:
    """Run benchmark steps in order, report each one's time on stderr, and
    check that no actor was left running before and after."""
    assert_no_actors(f"before bench_{label}")
    results: list[Result] = []
    try:
        for step in steps:
            t0 = time.monotonic()
            results += step(quick)
            print(f"  {label}: {step.__name__} done in {time.monotonic() - t0:.1f}s",
                  file=sys.stderr, flush=True)
    finally:
        assert_no_actors(f"after bench_{label}")
    return results


def cli(main: Callable[..., list[Result]], description: Optional[str],
        quick_help: str = "fewer samples") -> None:
    """The command line of one benchmark module: ``[--quick]``, prints the table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args()
    print(markdown_table(main(quick=args.quick)))


@contextlib.contextmanager
def quiet_actor_logs() -> Iterator[None]:
    """Silence Pykka's (and the registry's) logging of deliberate crashes: with
    no handler configured, each crash would print a traceback to stderr, and
    formatting it would be timed too."""
    loggers = [logging.getLogger("pykka"), logging.getLogger("pykka_registry")]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved):
            logger.setLevel(level)


def usable_cpus() -> int:
    """How many CPUs this thread may run on."""
    getter = getattr(os, "sched_getaffinity", None)
    return len(getter(0)) if getter is not None else (os.cpu_count() or 1)


@contextlib.contextmanager
def pinned_to_one_cpu() -> Iterator[bool]:
    """Pin the calling thread, and so every thread it starts from now on
    (actors, registry servers...), to one CPU; yields False where that is not
    possible. On this shared VM a thread woken on the other core answers
    about 80 µs late, and the scheduler keeps a pair of threads on the same or
    on different cores for tens of milliseconds, which makes a round trip
    between two threads bimodal (~15 µs or ~90 µs). Pinned, only the CPU
    cost of the code remains. Threads started while pinned stay pinned."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield False
        return
    saved = getter(0)
    setter(0, {min(saved)})
    try:
        yield True
    finally:
        setter(0, saved)


# -- reporting ----------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    """``1.23 µs``, ``45.6k ops/s``, ``312 B``..."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if unit == LATENCY:
        for scale, suffix in ((1e-6, "ns"), (1e-3, "µs"), (1.0, "ms")):
            if value < scale:
                return f"{value / scale * 1000:.3g} {suffix}"
        return f"{value:.3g} s"
    if unit == THROUGHPUT:
        for scale, suffix in ((1e6, "M"), (1e3, "k")):
            if value >= scale:
                return f"{value / scale:.3g}{suffix} ops/s"
        return f"{value:.3g} ops/s"
    if unit == BYTES:
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}"


def _format_speedup(result: Result) -> str:
    if result.speedup is None or result.baseline is None:
        return ""
    speedup = result.speedup
    better, worse = ("smaller", "larger") if result.unit == BYTES else ("faster", "slower")
    if speedup >= 1:
        return f"{speedup:.3g}x {better} than {result.baseline}"
    return f"{1 / speedup:.3g}x {worse} than {result.baseline}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(results: Sequence[Result]) -> str:
    """One Markdown table of ``results``, in order; notes are numbered below it."""
    lines = [
        "| Suite | Benchmark | Candidate | p50 | p90 | n | vs baseline (p50) | Target | Result |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    notes: list[str] = []
    for r in results:
        status = f"**{r.status}**" if r.status else ""
        candidate = r.candidate
        if r.note:
            notes.append(r.note)
            candidate = f"{candidate} [{len(notes)}]"
        lines.append(
            "| " + " | ".join(_cell(x) for x in (
                r.suite, r.bench, candidate, format_value(r.p50, r.unit),
                format_value(r.p90, r.unit), str(r.samples), _format_speedup(r), r.target, status,
            )) + " |"
        )
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {_cell(note)}  " for i, note in enumerate(notes, 1))
    return "\n".join(lines)


def _model_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """What the figures were measured on."""
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        nproc = str(os.cpu_count())
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    return {
        "nproc": nproc,
        "cpu": _model_name(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "pykka": importlib.metadata.version("pykka"),
        "pykka-registry": importlib.metadata.version("pykka-registry"),
        "platform": platform.platform(),
        "load average (1/5/15 min) at start": load,
    }
