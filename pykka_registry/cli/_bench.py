"""``python -m pykka_registry bench``: the benchmark suite of a checkout."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("bench", help="run the benchmark suite (benchmarks/run.py)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and fewer samples: a shorter run "
                             "(how long depends on the machine's load)")
    # Options it does not know go on to benchmarks/run.py.
    parser.set_defaults(run=run, accepts_rest=True)


def run(args: argparse.Namespace) -> int:
    script = Path.cwd() / "benchmarks" / "run.py"
    if not script.is_file():
        print("benchmarks/run.py not found: run this from a checkout of pykka-registry",
              file=sys.stderr)
        return 2
    sys.argv = [str(script), *(["--quick"] if args.quick else []), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0
