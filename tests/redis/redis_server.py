"""A real ``redis-server`` for the Redis tests, started by the tests: the
:class:`RedisServer` behind the fixtures of ``tests/redis/conftest.py``.

* :func:`session_server`: one server on a free loopback port, in a temporary
  directory, with no persistence (the ``redis_server`` fixture's).
* :class:`RedisServer`: a server of a test's own (the ``fresh_redis``
  fixture's), for tests that stop, kill or restart Redis.

The binary is ``$REDIS_SERVER`` or ``redis-server`` on ``PATH``. Without one
the tests are skipped with a clear reason, except when the ``CI`` environment
variable is set: there that is a failure. The server on port 6379
is never touched: every server here gets a free port from the kernel.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Optional

import pytest
from strict_run import strict_reason

__all__ = ["RedisServer", "release_session_server", "require_binary", "session_server",
           "unique_prefix"]

START_TIMEOUT_S = 10.0


def redis_binary() -> Optional[str]:
    """Path of the redis-server binary, or None."""
    configured = os.environ.get("REDIS_SERVER")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("redis-server")


def require_binary() -> str:
    """The binary, or skip with a clear reason (fail in a strict run: CI or
    the whole-matrix ``./run-tests``, see ``strict_run``)."""
    binary = redis_binary()
    if binary is None:
        reason = ("redis-server not found (install it, e.g. `apt-get install redis-server`, or "
                  "set REDIS_SERVER to its path): the Redis backend tests need a real server")
        strict = strict_reason()
        if strict:
            pytest.fail(f"{strict} and {reason}", pytrace=False)
        pytest.skip(reason)
    return binary


def _die_with_parent() -> list[str]:
    """A command prefix that makes the server get SIGKILL when the test process
    dies (``setpriv --pdeathsig``, util-linux), so a killed test run leaves no
    server behind; empty where that tool is missing."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_prefix(label: str = "t") -> str:
    """A key prefix no other test uses."""
    return f"{label}-{uuid.uuid4().hex[:10]}"


class RedisServer:
    """One redis-server process on ``127.0.0.1:port`` (no persistence)."""

    def __init__(self, binary: str, port: Optional[int] = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="pykka-registry-redis-")
        self.process: Optional[subprocess.Popen[bytes]] = None
        self._log = os.path.join(self.dir, "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait (bounded) until it answers PING."""
        for _attempt in range(3):
            self.process = subprocess.Popen(
                [*_die_with_parent(), self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--logfile", self._log],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.dir,
            )
            if self._wait_ready():
                return self
            self.kill()
            self.port = free_port()  # the port may have been taken meanwhile
        raise RuntimeError(f"redis-server did not start; log: {self.log_tail()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        pause = threading.Event()
        delay = 0.005
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if self.ping():
                return True
            pause.wait(delay)
            delay = min(delay * 2, 0.1)
        return False

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL the server (its data is lost: there is no persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Kill the server and start a new, empty one on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            with open(self._log) as log:
                return log.read()[-2000:]
        except OSError:
            return "(no log)"


_session: Optional[RedisServer] = None
_session_lock = threading.Lock()


def session_server() -> RedisServer:
    """The session's server, started on first use (again if it died)."""
    global _session
    with _session_lock:
        if _session is None or _session.process is None or _session.process.poll() is not None:
            _session = RedisServer(require_binary()).start()
            atexit.register(_session.stop)
        return _session


def release_session_server(server: RedisServer) -> None:
    """Stop ``server`` if it is still the session's (at the session's end)."""
    global _session
    with _session_lock:
        if _session is server:
            server.stop()
            _session = None
