"""Helpers for the Redis backend tests: a registry node in a child process
(``multiprocessing``, spawn context) driven through a pipe, and test actors.

A child runs :func:`node_main`: it starts a registry on ``RedisBackend`` and
answers commands sent by :class:`NodeProcess.call` (every wait bounded).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pykka

from pykka_registry import Registry
from pykka_registry.backends.redis import RedisBackend
from pykka_registry.testing import ActorFactory, wait_until

SPAWN = multiprocessing.get_context("spawn")

Factory = Callable[..., Registry]


@contextlib.contextmanager
def redis_nodes(url: str, prefix: str, call_timeout: float = 5.0,
                **defaults: Any) -> Iterator[Factory]:
    """A factory of registries (nodes) on ``url`` sharing ``prefix``, with
    ``defaults`` as backend options (overridable per node); every node is
    stopped afterwards. For the ``nodes`` fixtures of the Redis test files."""
    started: list[Registry] = []

    def make(url: str = url, **opts: Any) -> Registry:
        timeout = opts.pop("call_timeout", call_timeout)
        options = {"url": url, "prefix": prefix, "lease_ttl": 1.0, **defaults, **opts}
        registry = Registry.start(backend=RedisBackend, backend_opts=options,
                                  call_timeout=timeout)
        started.append(registry)
        return registry

    try:
        yield make
    finally:
        for registry in started:
            registry.stop()


@contextlib.contextmanager
def recorders() -> Iterator[Callable[..., Any]]:
    """``start(label="")`` starts a :class:`Recorder`; all stop afterwards."""
    factory = ActorFactory()
    try:
        yield lambda label="": factory(Recorder, label)
    finally:
        factory.stop_all()

#: A ``"gate"`` message blocks a :class:`Recorder` until this is set (at most 5 s).
GATE = threading.Event()


class Recorder(pykka.ThreadingActor):
    """Answers ``ask(x)`` with ``("echo", label, x)``; keeps what it received."""

    def __init__(self, label: str = "") -> None:
        super().__init__()
        self.label = label
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "received":
            return list(self.received)
        self.received.append(message)
        if message == "raise":
            raise ValueError(f"{self.label} raised on purpose")
        if message == "gate":
            GATE.wait(5)
        if isinstance(message, tuple) and message and message[0] == "sleep":
            threading.Event().wait(message[1])
        return ("echo", self.label, message)


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, message: str = "condition") -> Any:
    """:func:`pykka_registry.testing.wait_until`, with the longer default these
    cross-process tests need."""
    return wait_until(condition, timeout, message)


def describe(ref: Any) -> Optional[tuple[str, str, str]]:
    """``(kind, urn, node)`` of what a lookup returned (refs do not cross processes)."""
    if ref is None:
        return None
    if isinstance(ref, pykka.ActorRef):
        return ("local", ref.actor_urn, "")
    return ("remote", ref.actor_urn, ref.node_id)


# -- the child ------------------------------------------------------------------------


class _Node:
    def __init__(self, opts: dict[str, Any]) -> None:
        call_timeout = opts.pop("call_timeout", 5.0)
        self.registry = Registry.start(backend=RedisBackend, backend_opts=opts,
                                       call_timeout=call_timeout)
        self.actors: dict[str, Any] = {}
        self.saved: dict[Any, Any] = {}
        self.events: list[tuple[str, Any, Any, str]] = []
        self.registry.subscribe(self._on_event)

    def _on_event(self, event: Any) -> None:
        reason = getattr(event, "reason", None)
        self.events.append((type(event).__name__, event.namespace, event.service,
                            reason.kind if reason is not None else ""))

    def actor(self, label: str) -> Any:
        ref = self.actors.get(label)
        if ref is None or not ref.is_alive():
            ref = self.actors[label] = Recorder.start(label)
        return ref

    def run(self, command: str, *args: Any) -> Any:
        registry = self.registry
        if command == "node_id":
            return registry.backend.node_id  # type: ignore[attr-defined]
        if command == "register":
            namespace, service, label, metadata = args
            registry.register(namespace, service, self.actor(label), metadata)
            return self.actor(label).actor_urn
        if command == "register_many":
            namespace, services, label, start_at = args
            wait_until_wall(start_at)
            won, lost = [], []
            for service in services:
                try:
                    registry.register(namespace, service, self.actor(label))
                    won.append(service)
                except Exception as error:  # AlreadyRegisteredError
                    lost.append((service, type(error).__name__,
                                 describe(getattr(error, "existing", None))))
            return won, lost
        if command == "unregister":
            registry.unregister(*args)
            return None
        if command == "update":
            registry.update_metadata(*args)
            return None
        if command == "lookup":
            return describe(registry.lookup(*args))
        if command == "wait_lookup":
            namespace, service, want, timeout = args
            return wait_for(lambda: (lambda d: d if d and d[0] == want else None)(
                describe(registry.lookup(namespace, service))), timeout, "lookup")
        if command == "metadata":
            found = registry.lookup_with_metadata(*args)
            return None if found is None else found[1]
        if command == "ask":
            namespace, service, message, timeout = args
            return registry.via(namespace, service).ask(message, timeout=timeout)
        if command == "tell":
            namespace, service, message = args
            registry.via(namespace, service).tell(message)
            return None
        if command == "received":
            (label,) = args
            return self.actor(label).ask("received", timeout=5)
        if command == "stop_actor":
            (label,) = args
            self.actors.pop(label).stop(block=True, timeout=5)
            return None
        if command == "urn":
            return self.actor(args[0]).actor_urn
        if command == "save_claim":
            self.saved[args] = registry.backend.get(*args)
            return self.saved[args].token
        if command == "stale_ops":
            claim = self.saved[args]
            return registry.run_in_server(lambda backend: stale_writes(backend, claim))
        if command == "count":
            return registry.count(*args)
        if command == "services":
            return sorted(registry.list_services(*args), key=repr)
        if command == "events":
            return list(self.events)
        if command == "health":
            return dict(registry.backend.health())
        if command == "status":
            return registry.health_check().status
        if command == "sync":
            registry.sync()
            return None
        # groups
        if command == "join":
            namespace, group, label, metadata = args
            registry.join(namespace, group, self.actor(label), metadata)
            return self.actor(label).actor_urn
        if command == "leave":
            namespace, group, label = args
            registry.leave(namespace, group, self.actor(label))
            return None
        if command == "members":
            return [describe(ref) for ref in registry.members(*args)]
        if command == "dispatch":
            return registry.dispatch(*args)
        if command == "ask_all":
            namespace, group, message, timeout = args
            return [(describe(ref), value if not isinstance(value, BaseException)
                     else ("error", type(value).__name__))
                    for ref, value in registry.ask_all(namespace, group, message, timeout)]
        raise ValueError(f"unknown command {command!r}")


def stale_writes(backend: Any, claim: Any) -> tuple[str, str]:
    """A fenced delete and a fenced metadata update of ``claim`` with the token
    it carries (as an owner that slept through its lease would send them);
    returns the scripts' verdicts (``"ok"``, ``"moved"``, ``"gone"``)."""
    from pykka_registry.backends.redis import key_json

    kjson = key_json(claim.namespace, claim.service)
    deleted = backend._release(
        keys=[backend._k("names"), backend._k("events"), backend._k("seq"),
              backend._name_key(kjson)],
        args=[backend.prefix, 100, 1, kjson, claim.token, claim.node, "unregistered", ""])
    updated = backend._update(
        keys=[backend._name_key(kjson), backend._k("events"), backend._k("seq")],
        args=[backend.prefix, claim.token, "{}", 100, kjson, claim.node, claim.inc])
    return ("ok" if int(deleted[0]) else "moved"), updated[0].decode()


def wait_until_wall(start_at: float) -> None:
    delay = start_at - time.time()
    if delay > 0:
        threading.Event().wait(delay)


def node_main(conn: Any, opts: dict[str, Any]) -> None:
    """Entry point of a child: serve commands until ``("exit",)`` or EOF."""
    try:
        node = _Node(dict(opts))
    except BaseException as error:
        conn.send(("err", type(error).__name__, str(error)))
        return
    conn.send(("ok", node.registry.backend.node_id))  # type: ignore[attr-defined]
    try:
        while True:
            if not conn.poll(60):
                break  # the parent is gone
            try:
                request = conn.recv()
            except EOFError:
                break
            if request[0] == "exit":
                break
            try:
                conn.send(("ok", node.run(*request)))
            except BaseException as error:
                conn.send(("err", type(error).__name__,
                           f"{error}\n{traceback.format_exc(limit=4)}"))
    finally:
        node.registry.stop()
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        conn.close()


class RemoteCommandError(Exception):
    def __init__(self, kind: str, text: str) -> None:
        super().__init__(f"{kind}: {text}")
        self.kind = kind


class NodeProcess:
    """A child process running a registry node; see :func:`node_main`."""

    def __init__(self, url: str, prefix: str, wait: bool = True, **opts: Any) -> None:
        options = {"url": url, "prefix": prefix, "lease_ttl": 1.0, **opts}
        self.conn, child_conn = SPAWN.Pipe()
        self.process = SPAWN.Process(target=node_main, args=(child_conn, options), daemon=True)
        self.process.start()
        child_conn.close()
        self.node_id = ""
        if wait:
            self.ready()

    def ready(self, timeout: float = 30.0) -> NodeProcess:
        """Wait until the child's registry runs."""
        if not self.node_id:
            self.node_id = self._receive(timeout)
        return self

    @classmethod
    def start_many(cls, count: int, url: str, prefix: str, **opts: Any) -> list[NodeProcess]:
        """Start ``count`` children in parallel."""
        children = [cls(url, prefix, wait=False, **opts) for _ in range(count)]
        return [child.ready() for child in children]

    def _receive(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"child {self.process.pid} did not answer within {timeout}s")
        reply = self.conn.recv()
        if reply[0] == "err":
            raise RemoteCommandError(reply[1], reply[2])
        return reply[1]

    def call(self, *command: Any, timeout: float = 10.0) -> Any:
        self.conn.send(command)
        return self._receive(timeout)

    def send(self, *command: Any) -> None:
        """Send a command without waiting; read its answer with :meth:`result`."""
        self.conn.send(command)

    def result(self, timeout: float = 10.0) -> Any:
        return self._receive(timeout)

    def sigkill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join(10)

    def sigstop(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def sigcont(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process.is_alive():
            try:
                os.kill(self.process.pid, signal.SIGCONT)
                self.conn.send(("exit",))
            except (OSError, BrokenPipeError):
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()


# -- a payload that would run code if unpickled ------------------------------------------

PWNED_FILE_ENV = "PYKKA_REGISTRY_TEST_PWNED_FILE"


def _pwned(path: str) -> str:
    with open(path, "w") as marker:
        marker.write("unpickled!")
    return "pwned"


class Evil:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (_pwned, (self.path,))


def dump_keys(client: Any) -> dict[bytes, Any]:
    """Every key with its type and content (what "wrote nothing" compares)."""
    out: dict[bytes, Any] = {}
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"set":
            out[key] = client.smembers(key)
        elif kind == b"string":
            out[key] = client.get(key)
        elif kind == b"stream":
            out[key] = client.xlen(key)
        else:
            out[key] = kind
    return out
