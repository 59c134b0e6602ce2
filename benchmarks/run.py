"""Run every benchmark module in this folder and report one Markdown table.

    python benchmarks/run.py            # full run, about 2-3 minutes
    python benchmarks/run.py --quick    # smaller sizes and fewer samples: shorter

Runs ``bench_core``, ``bench_lifecycle``, then any other ``bench_*.py`` found
here (``bench_redis.py`` among them, when present), each through its
``main(quick)``; a module that cannot be imported, raises
:class:`_harness.Skip` or fails is reported as skipped and the run goes on.
Prints the table and writes it to ``benchmarks/results/latest.md``; when
matplotlib is importable, also writes PNG plots: those of the published full
run go to ``docs/assets/benchmarks/`` (their one home: the docs show them,
``latest.md`` links to them), those of a ``--quick`` run or of a run with its
own ``--output`` beside that output, so they never replace the published ones.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _harness as h  # noqa: E402  (needs the path above when imported from elsewhere)

RESULTS = HERE / "results"
PUBLISHED = RESULTS / "latest.md"
PLOTS = HERE.parent / "docs" / "assets" / "benchmarks"  # the published run's plots
FIRST = ("bench_core", "bench_lifecycle")


def discover() -> list[str]:
    """Benchmark module names, core and lifecycle first, then the rest sorted."""
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [m for m in FIRST if m in found] + [m for m in found if m not in FIRST]


def _as_result(item: Any, module: str) -> Optional[h.Result]:
    """Accept a Result, anything shaped like one, or a dict of its fields."""
    if isinstance(item, h.Result):
        return item
    fields = ("suite", "bench", "candidate", "unit", "p50", "p90", "samples", "baseline",
              "speedup", "target", "status", "note", "plot")
    if isinstance(item, dict):
        data = {k: item[k] for k in fields if k in item}
    elif all(hasattr(item, k) for k in ("bench", "candidate", "unit", "p50", "p90")):
        data = {k: getattr(item, k) for k in fields if hasattr(item, k)}
    else:
        return None
    data.setdefault("suite", module.removeprefix("bench_"))
    data.setdefault("samples", 0)
    try:
        return h.Result(**data)
    except TypeError:
        return None


def run_module(
    name: str, quick: bool
) -> tuple[list[h.Result], list[str], list[str]]:
    """Run one module; return its results, extra Markdown, and notes."""
    results: list[h.Result] = []
    extra: list[str] = []
    notes: list[str] = []
    t0 = time.monotonic()
    print(f"== {name} ({'quick' if quick else 'full'})", file=sys.stderr, flush=True)
    try:
        module: ModuleType = importlib.import_module(name)
        main = getattr(module, "main", None)
        if not callable(main):
            raise h.Skip("it has no main(quick) function")
        returned = main(quick=quick)
    except h.Skip as skip:
        notes.append(f"`{name}` skipped: {skip}")
        returned = None
    except ImportError as error:
        notes.append(f"`{name}` skipped: cannot import it ({error})")
        returned = None
    except Exception as error:  # a broken module must not sink the whole run
        traceback.print_exc()
        notes.append(f"`{name}` failed and was skipped: {type(error).__name__}: {error}")
        returned = None
    if isinstance(returned, str):
        extra.append(returned)
    elif returned is not None:
        for item in returned:
            result = _as_result(item, name)
            if result is None:
                notes.append(f"`{name}` returned an item that is not a result: {item!r}")
            else:
                results.append(result)
    try:
        h.assert_no_actors(f"after {name}")
    except RuntimeError as leak:
        notes.append(str(leak))
    print(f"== {name} took {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    return results, extra, notes


# -- plots -------------------------------------------------------------------------


def _plot_series(results: Sequence[h.Result], figure: str) -> dict[str, list[tuple[Any, h.Result]]]:
    series: dict[str, list[tuple[Any, h.Result]]] = {}
    for r in results:
        if r.plot and r.plot.get("figure") == figure:
            series.setdefault(str(r.plot["series"]), []).append((r.plot["x"], r))
    return series


def write_plots(results: Sequence[h.Result], out: Path) -> list[str]:
    """Write the PNG plots; return their file names (none without matplotlib)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return []
    written = []

    for figure, title, ylabel in (
        ("lookup", "Lookup latency vs registry size (p50, log-log)", "seconds per lookup"),
        ("match", "match() returning 10 entries: indexed vs scan (p50)", "seconds per query"),
    ):
        series = _plot_series(results, figure)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        for label, points in series.items():
            points.sort(key=lambda p: p[0])
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1].p50 for p in points], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("entries (lookup: one actor per entry up to 10k)" if figure == "lookup"
                      else "entries in the namespace")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        name = f"{figure}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    bars = _plot_series(results, "register")
    if bars:
        labels = list(bars)
        p50 = [bars[k][0][1].p50 for k in labels]
        p90 = [bars[k][0][1].p90 for k in labels]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        positions = range(len(labels))
        ax.barh(positions, p50, xerr=[[max(0.0, a - b) for a, b in zip(p50, p90)], [0] * len(p50)],
                capsize=3, color="tab:blue")
        ax.set_yticks(list(positions))
        ax.set_yticklabels(labels, fontsize="small")
        ax.invert_yaxis()
        ax.set_xlabel("ops/s (p50; whisker: p90 slow side)")
        ax.set_title("register + unregister throughput by backend")
        ax.grid(True, axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "register.png", dpi=110)
        plt.close(fig)
        written.append("register.png")
    return written


# -- main ------------------------------------------------------------------------------


def plot_dir(output: Path) -> Path:
    """Where the plots of a run writing ``output`` go: the docs for the
    published run, else beside ``output``."""
    return PLOTS if output.resolve() == PUBLISHED.resolve() else output.parent


def render(
    results: Sequence[h.Result], extra: Sequence[str], notes: Sequence[str], quick: bool,
    seconds: float, info: dict[str, str], plots: Sequence[str],
) -> str:
    """The Markdown report; ``plots`` are paths relative to the report's folder."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# pykka-registry benchmark results",
        "",
        f"{'Quick' if quick else 'Full'} run of `python benchmarks/run.py"
        f"{' --quick' if quick else ''}{' --pin' if 'pinned' in info else ''}`, {now}, "
        f"{seconds:.0f} s.",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + ".",
        "",
        "p50/p90 over n samples (each sample of a micro benchmark averages many calls); "
        "candidates of one benchmark ran interleaved in one process. See "
        "docs/performance.md for the method.",
        "",
        h.markdown_table(results),
    ]
    for block in extra:
        lines += ["", block]
    if plots:
        lines += ["", "Plots: " + ", ".join(f"[{Path(p).name}]({p})" for p in plots)]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer samples: a shorter run")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only modules whose name contains NAME (repeatable)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--pin", action="store_true",
                        help="pin the whole run (every thread) to one CPU; see "
                             "_harness.pinned_to_one_cpu")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the Markdown, plots beside it (default: "
                             "results/latest.md with its plots in docs/assets/benchmarks, "
                             "or results/quick/latest.md with --quick, so a quick run "
                             "never overwrites the published full run)")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = (RESULTS / "quick" if args.quick else RESULTS) / "latest.md"

    info = h.machine_info()
    if args.pin:
        if not hasattr(os, "sched_setaffinity"):
            parser.error("--pin needs os.sched_setaffinity (Linux)")
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        info["pinned"] = f"every thread on CPU {min(os.sched_getaffinity(0))}"
    t0 = time.monotonic()
    results: list[h.Result] = []
    extra: list[str] = []
    notes: list[str] = []
    modules = [m for m in discover() if not args.only or any(o in m for o in args.only)]
    for name in modules:
        got, more, said = run_module(name, args.quick)
        results += got
        extra += more
        notes += said
    seconds = time.monotonic() - t0

    out_dir = args.output.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    plots_to = plot_dir(args.output)
    written: list[str] = []
    if not args.no_plots:
        plots_to.mkdir(parents=True, exist_ok=True)
        written = write_plots(results, plots_to)
    if not written and not args.no_plots:
        notes.append("no plots: matplotlib is not importable")
    plots = [Path(os.path.relpath(plots_to / name, out_dir)).as_posix() for name in written]
    report = render(results, extra, notes, args.quick, seconds, info, plots)
    args.output.write_text(report, encoding="utf-8")
    print(report)
    print(f"written to {args.output}" + (f" with {', '.join(written)} in {plots_to}"
                                          if written else ""), file=sys.stderr)
    missed = [r for r in results if r.status == "MISS"]
    if missed:
        print(f"{len(missed)} target(s) missed: " + ", ".join(r.label for r in missed),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
