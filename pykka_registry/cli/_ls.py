"""``python -m pykka_registry ls``: every name held through a Redis server
(the listing itself is :mod:`pykka_registry._inspect`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, TextIO

from pykka_registry.cli._common import fail, redis_client, redis_url

__all__ = ["add_arguments", "register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser("ls", help="list every name in a Redis cluster",
                                 description="List every name held through a Redis server.")
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL", required=True, type=redis_url,
                        help="redis-py URL, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS)")
    parser.add_argument("--prefix", default="pykka_registry",
                        help="key prefix the registries use (default: %(default)s)")
    parser.add_argument("--namespace", metavar="NS",
                        help="only this namespace (a string; JSON for an int or a tuple)")
    parser.add_argument("--json", action="store_true", help="print one JSON array")


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    try:
        import redis  # an optional dependency

        from pykka_registry._inspect import format_table, list_names, parse_namespace
        from pykka_registry.backends.redis._schema import safe_url
    except ImportError:
        return fail("ls needs redis-py: pip install 'pykka-registry[redis]'")
    namespace = None if args.namespace is None else parse_namespace(args.namespace)
    try:
        client = redis_client(args.redis)
        try:
            rows = list_names(client, args.prefix, namespace,
                              warn=lambda message: print(f"ls: warning: {message}",
                                                         file=sys.stderr))
        finally:
            client.close()
    except (redis.RedisError, ValueError) as error:
        return fail(f"cannot read Redis at {safe_url(args.redis)}: {error}")
    if args.json:
        print(json.dumps(rows, ensure_ascii=False), file=out)
    else:
        print(format_table(rows), file=out)
    return 0
