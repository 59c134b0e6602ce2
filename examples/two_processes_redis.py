"""Two processes sharing names over Redis.

A second process runs a named "ledger" actor; this process finds it by name,
sends it messages (pickled through Redis, signed with a shared secret), shows
that the name is unique across both processes, and watches the name leave
when the other process stops.

Run: python examples/two_processes_redis.py [redis://HOST:PORT/DB]
(or set PYKKA_REGISTRY_REDIS_URL). It uses a fresh key prefix, so it never
touches other data on that server. Without a URL it starts a throwaway
redis-server of its own on a free loopback port (the ``redis-server`` binary
on PATH, or $REDIS_SERVER) and kills it at the end; it never falls back to a
server on a default port.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Optional

import pykka

from pykka_registry import AlreadyRegisteredError, Registry, Unregistered
from pykka_registry.backends.redis import RedisBackend


class Ledger(pykka.ThreadingActor):
    """Keeps account balances; answers ("deposit", who, n) and ("balance", who)."""

    def __init__(self) -> None:
        super().__init__()
        self.balances: dict[str, int] = {}

    def on_receive(self, message: Any) -> Any:
        kind, who, *rest = message
        if kind == "deposit":
            self.balances[who] = self.balances.get(who, 0) + rest[0]
        return {"who": who, "balance": self.balances.get(who, 0), "pid": os.getpid()}


def ledger_process(options: dict[str, Any], ready: Any, done: Any) -> None:
    with Registry.start(backend=RedisBackend, backend_opts=options) as registry:
        ledger = Ledger.start()
        registry.register("bank", "ledger", ledger, {"currency": "EUR"})
        ready.set()
        done.wait(60)
        ledger.stop()


@contextlib.contextmanager
def redis_url(given: Optional[str]) -> Iterator[str]:
    """``given``, or the URL of a throwaway redis-server on a free loopback port."""
    if given:
        yield given
        return
    configured = os.environ.get("REDIS_SERVER")
    binary = configured if configured and os.access(configured, os.X_OK) else \
        shutil.which("redis-server")
    if not binary:
        raise SystemExit("no Redis URL given and no redis-server found: run "
                         "python examples/two_processes_redis.py redis://HOST:PORT/DB")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    directory = tempfile.mkdtemp(prefix="example-redis-")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait (bounded) until it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{binary} did not start") from None
                threading.Event().wait(0.02)
        print(f"(started a throwaway redis-server on port {port})")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    given = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PYKKA_REGISTRY_REDIS_URL")
    with redis_url(given) as url:
        run(url)


def run(url: str) -> None:
    options = {
        "url": url,
        "prefix": f"example-{uuid.uuid4().hex[:8]}",
        "secret": "an example secret: share a real one between your processes",
        "lease_ttl": 5.0,
    }
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    other = context.Process(target=ledger_process, args=(options, ready, done))
    other.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the ledger process did not start")
        with Registry.start(backend=RedisBackend, backend_opts=options) as registry:
            ledger = registry.await_name("bank", "ledger", timeout=5)
            print("found", ledger, "with", registry.lookup_with_metadata("bank", "ledger")[1])
            via = registry.via("bank", "ledger")
            via.ask(("deposit", "ada", 30))
            print("answer from the other process:", via.ask(("deposit", "ada", 12)))
            print("our pid:", os.getpid())
            try:
                registry.register("bank", "ledger", Ledger.start())
            except AlreadyRegisteredError as taken:
                print("the name is taken cluster-wide, by", taken.existing)
            gone = threading.Event()
            registry.subscribe(lambda event: gone.set() if isinstance(event, Unregistered)
                               else None, namespace="bank")
            done.set()
            other.join(30)
            if registry.lookup("bank", "ledger") is not None and not gone.wait(10):
                raise SystemExit("the name did not leave with the other process")
            print("after the other process stopped:", registry.lookup("bank", "ledger"))
    finally:
        done.set()
        other.join(30)
        pykka.ActorRegistry.stop_all()


if __name__ == "__main__":
    main()
