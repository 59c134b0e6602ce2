"""The command line: ``python -m pykka_registry {demo,ls,bench,observe}``.

Each subcommand lives in its own module and registers its own parser
(:func:`register`); :func:`main` only dispatches.

Guarantees
----------
* **One-line errors.** A usage error (an unknown option, a bad value, a Redis
  URL without a scheme) prints one line on stderr and exits with status 2; a
  server that cannot be reached prints one line and exits with status 1. No
  traceback for either.
* **Optional parts stay optional.** A subcommand that needs redis-py imports
  it only when it runs, and says how to install it when it is missing.
"""

from __future__ import annotations

from typing import Optional

from pykka_registry.cli import _bench, _demo, _ls, _observe
from pykka_registry.cli._common import Parser

__all__ = ["build_parser", "main"]


def build_parser() -> Parser:
    """The parser of ``python -m pykka_registry`` with every subcommand."""
    parser = Parser(
        prog="python -m pykka_registry",
        description="Names, death watch and supervision for Pykka actors.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (_demo, _bench, _ls, _observe):
        module.register(commands)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run one subcommand; its exit status (2: bad usage)."""
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and not getattr(args, "accepts_rest", False):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    args.rest = rest
    return int(args.run(args))
