"""Command line: ``python -m pykka_registry {demo,bench,ls,observe}``."""

from __future__ import annotations

import argparse
import importlib
import runpy
import sys
from pathlib import Path
from typing import Any, Optional


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pykka_registry",
        description="Names, death watch and supervision for Pykka actors.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a short narrated tour")
    demo.add_argument("--backend", choices=["memory", "indexed"], default="memory")
    demo.add_argument("--redis", metavar="URL", nargs="?", const="",
                      help="run the tour across two processes on this Redis (without a "
                           "URL: on a throwaway redis-server it starts itself)")
    demo.add_argument("--observe", action="store_true",
                      help="serve the observer page during the tour and keep it open at the "
                           "end until Ctrl-C")
    demo.add_argument("--pause", type=float, default=None, metavar="SECONDS",
                      help="with --observe: pause between steps (default 1)")
    bench = commands.add_parser("bench", help="run the benchmark suite (benchmarks/run.py)")
    bench.add_argument("--quick", action="store_true",
                       help="smaller sizes and fewer samples: a shorter run "
                            "(how long depends on the machine's load)")
    commands.add_parser("ls", help="list every name in a Redis cluster", add_help=False)
    commands.add_parser("observe", help="a live web page for a Redis cluster", add_help=False)
    args, rest = parser.parse_known_args(argv)

    if args.command == "demo":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if args.observe and args.redis is not None:
            parser.error("--observe runs with the in-process tour, not with --redis")
        if args.pause is not None and not (args.observe and 0 <= args.pause <= 60):
            parser.error("--pause needs --observe and a number of seconds in 0..60")
        if args.redis is not None:
            run_redis_demo = _optional("pykka_registry._demo_redis", "run_redis_demo")
            return int(run_redis_demo(args.redis))
        from pykka_registry._demo import run_demo

        if args.observe:
            return run_demo(args.backend, observe=True,
                            pause=1.0 if args.pause is None else args.pause)
        return run_demo(args.backend)
    if args.command == "bench":
        script = Path.cwd() / "benchmarks" / "run.py"
        if not script.is_file():
            print("benchmarks/run.py not found: run this from a checkout of pykka-registry",
                  file=sys.stderr)
            return 2
        sys.argv = [str(script), *(["--quick"] if args.quick else []), *rest]
        runpy.run_path(str(script), run_name="__main__")
        return 0
    if args.command == "observe":
        observe_main = _optional("pykka_registry.observer._cli", "main")
        return int(observe_main(rest))
    ls_main = _optional("pykka_registry._inspect", "main")
    return int(ls_main(rest))


def _optional(module: str, name: str) -> Any:
    """A function of an optional part (the Redis support needs redis-py)."""
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as error:
        raise SystemExit(
            f"this command needs the Redis support: pip install 'pykka-registry[redis]' ({error})"
        ) from None


if __name__ == "__main__":
    sys.exit(main())
