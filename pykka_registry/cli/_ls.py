"""``python -m pykka_registry ls``: every name (``--groups``: every group
member) held through a Redis server (the listing itself is
:mod:`pykka_registry._inspect`).

Guarantees
----------
* Reads Redis only; runs in the caller's (main) thread.
* Errors are one line on stderr (exit status 1: Redis cannot be read; 2: bad
  usage); a record that cannot be read is a one-line warning and is skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, TextIO

from pykka_registry.cli._common import fail, redis_client, redis_url

__all__ = ["add_arguments", "register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "ls", help="list every name (or group member) in a Redis cluster",
        description="List every name (or, with --groups, every group member) held through a "
                    "Redis server.")
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL", required=True, type=redis_url,
                        help="redis-py URL, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS)")
    parser.add_argument("--prefix", default="pykka_registry",
                        help="key prefix the registries use (default: %(default)s)")
    parser.add_argument("--namespace", metavar="NS",
                        help="only this namespace (a string; JSON for an int or a tuple)")
    parser.add_argument("--groups", action="store_true",
                        help="list group members instead of names")
    parser.add_argument("--json", action="store_true", help="print one JSON array")


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    out = out or sys.stdout
    try:
        import redis  # an optional dependency

        from pykka_registry._inspect import (
            format_groups_table,
            format_table,
            group_rows,
            list_groups,
            list_names,
            parse_namespace,
        )
        from pykka_registry.backends.redis._schema import safe_url
    except ImportError:
        return fail("ls needs redis-py: pip install 'pykka-registry[redis]'")
    namespace = None if args.namespace is None else parse_namespace(args.namespace)

    def warn(message: str) -> None:
        print(f"ls: warning: {message}", file=sys.stderr)

    try:
        client = redis_client(args.redis)
        try:
            if args.groups:
                members = list_groups(client, args.prefix, namespace, warn=warn)
            else:
                rows = list_names(client, args.prefix, namespace, warn=warn)
        finally:
            client.close()
    except (redis.RedisError, ValueError) as error:
        return fail(f"cannot read Redis at {safe_url(args.redis)}: {error}")
    if args.groups:
        if args.json:
            print(json.dumps(group_rows(members), ensure_ascii=False), file=out)
        else:
            print(format_groups_table(members), file=out)
    elif args.json:
        print(json.dumps(rows, ensure_ascii=False), file=out)
    else:
        print(format_table(rows), file=out)
    return 0
