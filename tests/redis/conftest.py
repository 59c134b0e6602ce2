"""The Redis tests' fixtures: a real ``redis-server`` (``tests/redis/redis_server.py``).

* ``redis_server`` (session scope): one server on a free loopback port, in a
  temporary directory, with no persistence; killed at the end of the session.
* ``redis_url``: that server's URL.
* ``fresh_redis`` (function scope): a server of the test's own, for tests that
  stop, kill or restart Redis.
* ``actors``: ``actors(label)`` starts a ``Recorder`` (it answers which node
  it runs on), stopped at the end of the test.
* ``client``: a raw redis-py client of the session's server, for writing
  hostile data straight into Redis.

Every test that needs a Redis server lives in this folder. Without redis-py
(or the ``redis-server`` binary) they are skipped with a clear reason, except
when the ``CI`` environment variable is set: there that is a failure. The
server on port 6379 is never touched: every server here gets a free port from
the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from strict_run import strict_reason

try:
    # A name from redis-py itself: with tests/ on sys.path this folder, also
    # named redis, would pass for an (empty) namespace package.
    from redis import Redis  # noqa: F401 - the backend under test needs redis-py
except ImportError:  # pragma: no cover - depends on the environment
    if strict_reason():
        raise
    pytest.skip("redis-py is not installed (pip install 'pykka-registry[redis]')",
                allow_module_level=True)

from redis_helpers import recorders
from redis_server import RedisServer, release_session_server, require_binary, session_server


@pytest.fixture(scope="session")
def redis_server(request: Any) -> RedisServer:
    """The session's server (started on first use, killed at session end)."""
    server = session_server()

    def stop() -> None:
        release_session_server(server)

    request.addfinalizer(stop)
    return server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A server of this test's own (to stop, kill or restart)."""
    server = RedisServer(require_binary()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def actors() -> Iterator[Callable[..., Any]]:
    """``actors(label)``: a started ``Recorder``; all stopped after the test."""
    with recorders() as start:
        yield start


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:
    """A raw redis-py client of the session's server (to write hostile data
    straight into Redis), closed after the test."""
    c = redis_server.client()
    try:
        yield c
    finally:
        c.close()
