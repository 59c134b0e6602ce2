"""``python -m pykka_registry demo``: the narrated tour, in this process or
across two processes on Redis (``--redis``)."""

from __future__ import annotations

import argparse
from typing import Any

from pykka_registry.cli._common import fail, optional_redis_url, redis_client

__all__ = ["register"]


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="a short narrated tour")
    parser.add_argument("--backend", choices=["memory", "indexed"], default="memory")
    parser.add_argument("--redis", metavar="URL", nargs="?", const="", type=optional_redis_url,
                        help="run the tour across two processes on this Redis (without a "
                             "URL: on a throwaway redis-server it starts itself)")
    parser.add_argument("--observe", action="store_true",
                        help="serve the observer page during the tour and keep it open at "
                             "the end until Ctrl-C")
    parser.add_argument("--pause", type=float, default=None, metavar="SECONDS",
                        help="with --observe: pause between steps (default 1)")
    parser.set_defaults(run=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    parser = args.parser
    try:
        if args.observe and args.redis is not None:
            parser.error("--observe runs with the in-process tour, not with --redis")
        if args.pause is not None and not (args.observe and 0 <= args.pause <= 60):
            parser.error("--pause needs --observe and a number of seconds in 0..60")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.redis is not None:
        return _run_redis(args.redis)
    from pykka_registry._demo import run_demo

    if args.observe:
        return run_demo(args.backend, observe=True,
                        pause=1.0 if args.pause is None else args.pause)
    return run_demo(args.backend)


def _run_redis(url: str) -> int:
    try:
        from pykka_registry._demo_redis import run_redis_demo
        from pykka_registry.backends.redis import safe_url
    except ImportError as error:
        return fail(f"demo --redis needs redis-py: pip install 'pykka-registry[redis]' "
                    f"({error})")
    from pykka_registry._errors import RegistryUnavailableError

    if url:  # a server the user named: say so in one line if it does not answer
        import redis

        try:
            client = redis_client(url)
            try:
                client.ping()
            finally:
                client.close()
        except redis.RedisError as error:
            from pykka_registry.backends.redis._store import describe

            return fail(f"demo: Redis at {safe_url(url)} {describe(error)}")
        except ValueError as error:
            return fail(f"demo: cannot use the Redis URL {safe_url(url)}: {error}")
    try:
        return int(run_redis_demo(url))
    except RegistryUnavailableError as error:
        return fail(f"demo: {error}")
