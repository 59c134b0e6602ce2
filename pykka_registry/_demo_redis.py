"""``python -m pykka_registry demo --redis URL``: the tour across two processes.

A second process (started with ``multiprocessing``'s spawn context) runs the
supervised tree of named workers on a :class:`RedisBackend`; this process
finds them by name, sends them messages through ``via`` handles (so each one
crosses the process boundary through Redis), crashes one and watches the
other process's supervisor put a new actor behind the same name, picks
workers with ``match``, and ends with ``stats()`` and ``health_check()``.

Both processes use a fresh key prefix, so the tour never touches other data
on the server, and remove their names when they stop.

It talks only to the server it is given (``--redis URL``). Without a URL
(``--redis`` alone) it starts a throwaway ``redis-server`` of its own on a
free loopback port (``$REDIS_SERVER`` or ``redis-server`` on ``PATH``), with
no persistence, and kills it at the end; without the binary it stops with a
one-line message saying how to pass a URL. It never falls back to a server
on a default port.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Optional

import pykka

from pykka_registry._demo import NAMESPACE, Worker, _step, crash_and_await_successor
from pykka_registry._events import Unregistered
from pykka_registry._registry import Registry
from pykka_registry._supervisor import ChildSpec, Supervisor

__all__ = ["redis_for_demo", "run_redis_demo"]

ROLES = {"w1": ["cpu"], "w2": ["cpu", "gpu"], "w3": ["io"]}


NO_SERVER = ("no Redis URL given and no redis-server binary found: pass one with "
             "--redis redis://HOST:PORT/DB (or install redis-server, or set REDIS_SERVER)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_for_demo(url: Optional[str], timeout: float = 10.0) -> Iterator[str]:
    """The Redis URL to use: ``url`` itself when given; otherwise a throwaway
    ``redis-server`` started here on a free loopback port (no persistence, a
    temporary directory), killed when the block ends.

    Raises:
        SystemExit: no ``url`` and no redis-server binary (a one-line message
            saying how to pass a URL), or the server did not start in time.
    """
    if url:
        yield url
        return
    configured = os.environ.get("REDIS_SERVER")
    binary = configured if configured and os.access(configured, os.X_OK) else \
        shutil.which("redis-server")
    if binary is None:
        raise SystemExit(NO_SERVER)
    directory = tempfile.mkdtemp(prefix="pykka-registry-demo-redis-")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", directory],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=directory)
    try:
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the throwaway redis-server ({binary}) did not start; pass "
                                 "a URL with --redis redis://HOST:PORT/DB")
            pause.wait(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _backend_opts(url: str, prefix: str) -> dict[str, Any]:
    return {"url": url, "prefix": prefix, "lease_ttl": 5.0}


def _start_worker(label: str) -> Callable[[], Any]:
    return lambda: Worker.start(label)


def _tree_process(url: str, prefix: str, ready: Any, done: Any) -> None:
    """Runs in the second process: the supervised tree, until told to stop."""
    from pykka_registry.backends.redis import RedisBackend, UnsignedMessagesWarning

    logging.getLogger("pykka").setLevel(logging.CRITICAL)  # the crash is on purpose
    # The first process has told the user that messages are not signed.
    warnings.simplefilter("ignore", UnsignedMessagesWarning)
    registry = Registry.start(backend=RedisBackend, backend_opts=_backend_opts(url, prefix))
    try:
        specs = [
            ChildSpec(id=label, start=_start_worker(label), name=(NAMESPACE, label),
                      metadata={"pool": "squares", "caps": caps})
            for label, caps in ROLES.items()
        ]
        with Supervisor.start(specs, registry=registry, name="demo-tree"):
            ready.set()
            done.wait(60)
    finally:
        registry.stop()


@contextmanager
def _warn_once_briefly(out: Callable[[str], None]) -> Iterator[None]:
    """Show the backend's :class:`UnsignedMessagesWarning` once, as one line of
    the tour (Python's default shows a source line too); other warnings as usual."""
    from pykka_registry.backends.redis import UnsignedMessagesWarning

    shown: list[str] = []
    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if not issubclass(category, UnsignedMessagesWarning):
                previous(message, category, *args, **kwargs)
            elif not shown:
                shown.append(str(message))
                out(f"warning ({category.__name__}, both processes): {message}")

        warnings.showwarning = show
        yield


def run_redis_demo(url: Optional[str], out: Optional[Callable[[str], None]] = None) -> int:
    """Run the two-process tour against the Redis server at ``url`` (``None``
    or ``""``: a throwaway server of its own, see :func:`redis_for_demo`)."""
    out = out or print
    with redis_for_demo(url) as actual:
        if not url:
            out(f"(no URL given: started a throwaway redis-server at {actual})")
        return _run(actual, out)


def _run(url: str, out: Callable[[str], None]) -> int:
    from pykka_registry.backends.redis import RedisBackend

    prefix = f"pykka_registry_demo_{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    started = time.perf_counter()
    out(f"pykka-registry demo across two processes on {url} (key prefix {prefix})")
    child = context.Process(target=_tree_process, args=(url, prefix, ready, done),
                            name="demo-tree-process")
    try:
        with _warn_once_briefly(out), Registry.start(
            backend=RedisBackend, backend_opts=_backend_opts(url, prefix)
        ) as registry:
            with _step(out, "another process starts a supervisor with three named workers"):
                child.start()
                if not ready.wait(30):
                    raise RuntimeError("the tree process did not start within 30 s")
                for label in ROLES:
                    ref = registry.await_name(NAMESPACE, label, timeout=5)
                    out(f"  {label} -> {ref!r}")

            with _step(out, "send messages through via names (each crosses processes)"):
                w2 = registry.via(NAMESPACE, "w2")
                out(f"  w2.ask(7) -> {w2.ask(7)}")
                out(f"  who answers for 'w2': {w2.ask('whoami')}")

            with _step(out, "crash w2 on purpose; the other process restarts it, same name"):
                old, new = crash_and_await_successor(registry, w2, timeout=10)
                out(f"  new w2 is a different actor: {new.actor_urn != old.actor_urn}")
                out(f"  the same via handle now reaches {w2.ask('whoami')} (a new actor_urn)")
                out(f"  w2.ask(8) -> {w2.ask(8)}")

            with _step(out, "pick workers by metadata with match (on this process's copy)"):
                for criteria in ({"caps": "cpu"}, {"caps": "gpu"}):
                    matches = registry.match(NAMESPACE, criteria)
                    out(f"  match({criteria}) -> {sorted(str(s) for s, _, _ in matches)}")

            with _step(out, "the other process stops; its names leave this one too"):
                gone = threading.Event()

                def on_gone(event: Any) -> None:
                    if isinstance(event, Unregistered) and registry.count(NAMESPACE) == 0:
                        gone.set()

                with registry.subscribe(on_gone, namespace=NAMESPACE):
                    done.set()
                    child.join(30)
                    if registry.count(NAMESPACE) and not gone.wait(10):
                        raise RuntimeError("the other process's names did not go away")
                out(f"  names left in {NAMESPACE!r}: {registry.count(NAMESPACE)}")

            with _step(out, "stats and health"):
                stats = registry.stats()
                out(f"  stats: backend={stats.backend}, names={stats.names}")
                health = registry.health_check()
                out(f"  health: {health.status} (server alive: {health.server_alive})")
    finally:
        done.set()
        if child.is_alive():
            child.join(30)
        if child.is_alive():
            child.kill()
            child.join(5)
    leftovers = pykka.ActorRegistry.get_all()
    out(f"\ndone in {(time.perf_counter() - started) * 1000:.1f} ms; "
        f"other process exit code: {child.exitcode}; actors still running: {len(leftovers)}")
    return 0 if not leftovers and child.exitcode == 0 else 1
