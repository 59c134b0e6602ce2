"""``python -m pykka_registry observe``: the observer for a Redis cluster.

Usage::

    python -m pykka_registry observe --redis URL [--prefix P] [--port N]
                                     [--host H] [--token T]

Shows every node on the prefix (lease age, host, pid, names held, group
members), every name and every group with its members of all nodes, read
from Redis with read commands only (as ``ls`` and ``ls --groups`` do): it
starts no node, takes no lease, joins no group and registers nothing.
Serves until Ctrl-C (or SIGTERM).

Warnings (a record it cannot read, once per record; where it listens when
not on loopback) are printed on stderr as ``observe: warning: ...`` lines
while it serves.

Exit status: 0 after Ctrl-C, 1 when Redis cannot be read or the port cannot
be bound, 2 on bad usage.

Guarantees
----------
* Runs in the main thread until Ctrl-C; the observer's own threads are
  stopped and the Redis client closed before it returns.
* The stderr handler it adds to the ``pykka_registry`` logger is removed
  before it returns.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any, Optional, TextIO

__all__ = ["main", "serve_args", "wait_for_interrupt"]


def wait_for_interrupt() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM (main thread only)."""
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Optional[list[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run ``observe`` with the arguments after ``observe`` (a leading
    ``"observe"`` is ignored)."""
    from pykka_registry.cli._common import Parser
    from pykka_registry.cli._observe import add_arguments

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["observe"]:
        args_list = args_list[1:]
    parser = Parser(
        prog="python -m pykka_registry observe",
        description="A live web page and metrics for every node, name and group on a Redis "
                    "prefix (read-only: joins nothing).",
    )
    add_arguments(parser)
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return serve_args(args, out)


def serve_args(args: Any, out: Optional[TextIO] = None) -> int:
    """Serve as the parsed ``observe`` arguments ``args`` say, until Ctrl-C."""
    from pykka_registry.cli._common import fail

    out = out or sys.stdout
    try:
        import redis  # an optional dependency
    except ImportError:
        return fail("observe needs redis-py: pip install 'pykka-registry[redis]'")
    from pykka_registry.backends.redis._schema import safe_url

    try:
        client: Any = redis.Redis.from_url(args.redis, socket_timeout=5, socket_connect_timeout=5)
        client.ping()
    except (redis.RedisError, ValueError) as error:
        return fail(f"cannot read Redis at {safe_url(args.redis)}: {error}")
    # The library logs to a NullHandler; a command line says its warnings.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("observe: warning: %(message)s"))
    library_logger = logging.getLogger("pykka_registry")
    library_logger.addHandler(handler)
    try:
        return _serve(args, client, out)
    finally:
        library_logger.removeHandler(handler)


def _serve(args: Any, client: Any, out: TextIO) -> int:
    from pykka_registry.backends.redis._schema import safe_url
    from pykka_registry.cli._common import fail
    from pykka_registry.observer import serve

    try:
        observer = serve(None, host=args.host, port=args.port, token=args.token)
    except (OSError, ValueError) as error:
        client.close()
        return fail(f"cannot serve on {args.host}:{args.port}: {error}",
                    1 if isinstance(error, OSError) else 2)
    try:
        observer.add_redis(client, args.prefix, safe_url(args.redis))
        print(f"observing prefix {args.prefix!r} on {safe_url(args.redis)}", file=out)
        print(f"observer: {observer.url}  (Ctrl-C to quit)", file=out, flush=True)
        wait_for_interrupt()
    except KeyboardInterrupt:
        pass  # Ctrl-C before the wait began
    finally:
        observer.stop()
        client.close()
    return 0
