"""What the subcommands share: a parser whose errors are one line, the check
of a Redis URL, and one-line failures. Runs in the main thread."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any, NoReturn

__all__ = ["REDIS_SCHEMES", "Parser", "fail", "optional_redis_url", "redis_client", "redis_url"]

#: The URL schemes redis-py connects with.
REDIS_SCHEMES = ("redis", "rediss", "unix")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def redis_url(text: str) -> str:
    """An argparse ``type``: ``text`` if it is a Redis URL redis-py accepts.

    Raises:
        argparse.ArgumentTypeError: no scheme, or one redis-py does not know.
    """
    scheme = urllib.parse.urlsplit(text).scheme if "://" in text else ""
    if scheme not in REDIS_SCHEMES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Redis URL: write redis://HOST:PORT/DB "
            "(rediss:// for TLS, unix:///path/to/socket)")
    return text


def optional_redis_url(text: str) -> str:
    """:func:`redis_url`, or ``""`` (no URL: the caller starts its own server;
    argparse passes a flag's ``const`` through its ``type`` too)."""
    return text if text == "" else redis_url(text)


def fail(message: str, status: int = 1) -> int:
    """Print one line on stderr; the exit status to return."""
    print(" ".join(message.split()), file=sys.stderr)
    return status


def redis_client(url: str) -> Any:
    """A redis-py client for ``url`` with 5 s timeouts (redis-py imported here:
    it is optional). ``ImportError`` if redis-py is missing."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
