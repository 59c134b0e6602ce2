"""``python -m pykka_registry observe``: the observer for a Redis cluster
(the serving itself is :mod:`pykka_registry.observer._cli`)."""

from __future__ import annotations

import argparse
from typing import Any, Optional, TextIO

from pykka_registry.cli._common import redis_url

__all__ = ["add_arguments", "register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "observe", help="a live web page for a Redis cluster",
        description="A live web page and metrics for every node, name and group on a Redis "
                    "prefix (read-only: joins nothing).")
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL", required=True, type=redis_url,
                        help="redis-py URL, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS)")
    parser.add_argument("--prefix", default="pykka_registry",
                        help="key prefix the registries use (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s; any other needs a "
                             "token, generated if not given)")
    parser.add_argument("--port", type=int, default=0,
                        help="port to listen on (default: a free one)")
    parser.add_argument("--token", help="require this token (?token= or a Bearer header)")


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from pykka_registry.observer._cli import serve_args

    return serve_args(args, out)
