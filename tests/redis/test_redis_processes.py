"""RedisBackend across processes (``multiprocessing``, spawn): contention,
messages, SIGKILL, SIGSTOP/SIGCONT, a Redis restart, feed trimming, secrets.

Children run :func:`redis_helpers.node_main` (lease_ttl 1 s unless stated);
every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pykka
import pytest
from redis_helpers import NodeProcess, Recorder, RemoteCommandError, wait_for
from redis_server import RedisServer, unique_prefix

from pykka_registry import AlreadyRegisteredError, Registry, RegistryUnavailableError
from pykka_registry._inspect import list_names
from pykka_registry._remote import RemoteActorRef, RemoteTimeoutError
from pykka_registry.backends.redis import RedisBackend

LEASE_TTL = 1.0


@pytest.fixture
def prefix() -> str:
    return unique_prefix("p")


@pytest.fixture
def children() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for child in started:
        child.close()


@pytest.fixture
def local() -> Iterator[Callable[..., Registry]]:
    """Registries in the test process (a node like the children)."""
    started: list[Registry] = []
    refs: list[Any] = []

    def make(url: str, prefix: str, **opts: Any) -> Registry:
        call_timeout = opts.pop("call_timeout", 5.0)
        registry = Registry.start(
            backend=RedisBackend,
            backend_opts={"url": url, "prefix": prefix, "lease_ttl": LEASE_TTL, **opts},
            call_timeout=call_timeout)
        started.append(registry)
        return registry

    make.actor = lambda label: refs.append(Recorder.start(label)) or refs[-1]  # type: ignore[attr-defined]
    yield make
    for registry in started:
        registry.stop()
    for ref in refs:
        if ref.is_alive():
            ref.stop(block=True, timeout=5)


def _register(registry: Registry, ns: Any, service: Any, ref: Any) -> bool:
    try:
        registry.register(ns, service, ref)
    except AlreadyRegisteredError:
        return False
    return True


def test_names_are_unique_under_contention(redis_url: str, prefix: str,
                                           children: list[NodeProcess],
                                           redis_server: RedisServer) -> None:
    children.extend(NodeProcess.start_many(4, redis_url, prefix))
    urns = {child.node_id: child.call("urn", "racer") for child in children}
    services = [f"s{i}" for i in range(40)]
    start_at = time.time() + 0.3
    for child in children:
        child.send("register_many", "race", services, "racer", start_at)
    results = {child.node_id: child.result(30) for child in children}
    winners: dict[str, list[str]] = {s: [] for s in services}
    for node, (won, _lost) in results.items():
        for service in won:
            winners[service].append(node)
    assert all(len(nodes) == 1 for nodes in winners.values()), winners
    for node, (_won, lost) in results.items():
        for service, error, existing in lost:
            winner = winners[service][0]
            assert error == "AlreadyRegisteredError"
            assert existing == ("remote", urns[winner], winner), (node, service)
    client = redis_server.client()
    try:
        held = {r["service"]: r["node"] for r in list_names(client, prefix, "race")}
    finally:
        client.close()
    assert held == {s: nodes[0] for s, nodes in winners.items()}
    # every child ends up with the same view
    for child in children:
        assert child.call("count", "race") == len(services)


def test_tell_and_ask_across_processes(redis_url: str, prefix: str, local: Any,
                                       children: list[NodeProcess]) -> None:
    child = NodeProcess(redis_url, prefix, secret="a shared test secret")
    children.append(child)
    parent = local(redis_url, prefix, secret="a shared test secret")
    child.call("register", "ns", "echo", "child-echo", {"role": "echo"})
    target = wait_for(lambda: parent.lookup("ns", "echo"), message="child's name visible")
    assert isinstance(target, RemoteActorRef)
    assert target.ask("hi", timeout=5) == ("echo", "child-echo", "hi")
    assert parent.via("ns", "echo").ask(("n", 1)) == ("echo", "child-echo", ("n", 1))
    parent.via("ns", "echo").tell(("told", 2))
    wait_for(lambda: ("told", 2) in child.call("received", "child-echo"), message="tell")
    with pytest.raises(ValueError, match="raised on purpose"):
        target.ask("raise", timeout=5)
    # and the other way round
    mine = local.actor("parent")
    parent.register("ns", "p", mine)
    child.call("wait_lookup", "ns", "p", "remote", 5)
    assert child.call("ask", "ns", "p", "from child", 5) == ("echo", "parent", "from child")
    child.call("tell", "ns", "p", "told by child")
    wait_for(lambda: "told by child" in mine.ask("received", timeout=5), message="tell back")


def test_sigkill_frees_the_names_within_lease_ttl_plus_one_second(
    redis_url: str, prefix: str, local: Any, children: list[NodeProcess]
) -> None:
    child = NodeProcess(redis_url, prefix)
    children.append(child)
    parent = local(redis_url, prefix)
    for service in ("a", "b", "c"):
        child.call("register", "ns", service, "victim", {})
    target = wait_for(lambda: parent.count("ns") == 3 and parent.lookup("ns", "a"),
                      message="names visible")
    outcome: list[Any] = []

    def ask_in_flight() -> None:
        try:
            outcome.append(target.ask(("sleep", 30), timeout=20))
        except Exception as error:
            outcome.append(error)

    asker = threading.Thread(target=ask_in_flight)
    asker.start()
    child.sigkill()
    killed = time.monotonic()
    wait_for(lambda: parent.lookup("ns", "a") is None and parent.count("ns") == 0,
             LEASE_TTL + 1.0, "names of the killed process gone")
    asker.join(LEASE_TTL + 1.0 - (time.monotonic() - killed) + 0.2)
    elapsed = time.monotonic() - killed
    assert elapsed <= LEASE_TTL + 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], pykka.ActorDeadError), outcome
    assert not target.is_alive()
    parent.register("ns", "a", local.actor("heir"))  # free for others


def test_sigstop_past_the_lease_then_sigcont(redis_url: str, prefix: str, local: Any,
                                             children: list[NodeProcess],
                                             redis_server: RedisServer) -> None:
    child = NodeProcess(redis_url, prefix)
    children.append(child)
    parent = local(redis_url, prefix)
    child.call("register", "ns", "x", "cx", {})
    child.call("register", "ns", "y", "cy", {"keep": True})
    child.call("save_claim", "ns", "x")
    wait_for(lambda: parent.count("ns") == 2, message="names visible")
    child.sigstop()
    try:
        mine = local.actor("px")
        wait_for(lambda: _register(parent, "ns", "x", mine), LEASE_TTL + 2.0,
                 "the paused owner's name is claimable")
        wait_for(lambda: parent.lookup("ns", "y") is None, LEASE_TTL + 1.0,
                 "the paused owner's other name is gone")
    finally:
        child.sigcont()
    # Whatever the woken owner does first, its fenced writes with the old
    # token cannot touch the new claim:
    assert child.call("stale_ops", "ns", "x") == ("moved", "moved")
    # It learns it lost x (lookup there now returns the new holder) ...
    _kind, urn, node = child.call("wait_lookup", "ns", "x", "remote", 5)
    assert urn == mine.actor_urn and node == parent.backend.node_id  # type: ignore[attr-defined]
    wait_for(lambda: ("Unregistered", "ns", "x", "lost") in child.call("events"),
             message="lost reported")
    assert ("Unregistered", "ns", "y", "lost") not in child.call("events")
    # ... and claims y again, which nobody took.
    back = wait_for(lambda: parent.lookup("ns", "y"), 5.0, "y claimed again")
    assert back.ask("alive?", timeout=5) == ("echo", "cy", "alive?")
    assert child.call("metadata", "ns", "y") == {"keep": True}
    assert parent.lookup("ns", "x") is mine
    client = redis_server.client()
    try:
        held = {r["service"]: r["node"] for r in list_names(client, prefix, "ns")}
    finally:
        client.close()
    assert held == {"x": parent.backend.node_id, "y": child.node_id}  # type: ignore[attr-defined]
    with pytest.raises(RemoteCommandError, match="AlreadyRegisteredError"):
        child.call("register", "ns", "x", "cx", {})
    health = child.call("health")
    assert health["lost_names"] == 1 and health["recoveries"] >= 1


def test_redis_restart_in_the_middle_of_traffic(fresh_redis: RedisServer, prefix: str,
                                                local: Any,
                                                children: list[NodeProcess]) -> None:
    child = NodeProcess(fresh_redis.url, prefix, call_timeout=2.0)
    children.append(child)
    parent = local(fresh_redis.url, prefix, call_timeout=2.0)
    child.call("register", "ns", "echo", "ce", {})
    parent.register("ns", "p", local.actor("pp"))
    child.call("wait_lookup", "ns", "p", "remote", 5)
    wait_for(lambda: parent.lookup("ns", "echo"), message="echo visible")
    answers: list[bool] = []
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                answers.append(parent.via("ns", "echo").ask(i, timeout=0.5) == ("echo", "ce", i))
            except Exception:
                answers.append(False)
                stop.wait(0.02)

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        wait_for(lambda: sum(answers) >= 20, message="traffic flows")
        fresh_redis.kill()
        started = time.monotonic()
        with pytest.raises(RegistryUnavailableError):
            parent.register("ns", "during", local.actor("d"))
        assert time.monotonic() - started < 1.5
        assert parent.lookup("ns", "p") is not None  # the last copy is served
        wait_for(lambda: parent.health_check().status == "degraded", 3.0, "degraded")
        fresh_redis.start()  # empty: the restart lost every key
        before = sum(answers)
        wait_for(lambda: sum(answers) >= before + 20, 10.0, "traffic flows again")
    finally:
        stop.set()
        thread.join(5)
    client = fresh_redis.client()
    try:
        wait_for(lambda: {r["service"] for r in list_names(client, prefix, "ns")} == {"echo", "p"},
                 5.0, "both processes re-asserted their names")
    finally:
        client.close()
    assert child.call("wait_lookup", "ns", "p", "remote", 5)[0] == "remote"
    wait_for(lambda: parent.health_check().status == "healthy", 5.0, "healthy again")
    try:
        wait_for(lambda: child.call("status") == "healthy", 5.0, "child healthy again")
    except AssertionError:
        raise AssertionError(f"child degraded: {child.call('health')['problems']}") from None


def test_feed_trimmed_while_away_then_resync(redis_url: str, prefix: str, local: Any,
                                             children: list[NodeProcess],
                                             redis_server: RedisServer) -> None:
    child = NodeProcess(redis_url, prefix, lease_ttl=5.0)
    children.append(child)
    parent = local(redis_url, prefix, feed_maxlen=20)
    ref = local.actor("many")
    parent.register("trim", "first", ref)
    wait_for(lambda: child.call("count", "trim") == 1, message="first seen")
    child.sigstop()
    try:
        for i in range(300):
            parent.register("trim", f"s{i}", ref)
        parent.unregister("trim", "first")
    finally:
        child.sigcont()
    client = redis_server.client()
    try:
        assert client.xlen(f"{prefix}:events") < 300  # trimmed past what the child saw
    finally:
        client.close()
    wait_for(lambda: child.call("count", "trim") == 300, 10.0, "child caught up")
    assert child.call("health")["resyncs"] >= 1
    parent.register("trim", "after", ref)  # and the feed carries on
    wait_for(lambda: child.call("count", "trim") == 301, 5.0, "feed resumed")
    assert "first" not in child.call("services", "trim")


def test_processes_with_different_secrets_cannot_message_each_other(
    redis_url: str, prefix: str, local: Any, children: list[NodeProcess]
) -> None:
    child = NodeProcess(redis_url, prefix, secret="alpha secret, long enough")
    children.append(child)
    parent = local(redis_url, prefix, secret="beta secret, long enough")
    child.call("register", "ns", "echo", "ce", {})
    mine = local.actor("pp")
    parent.register("ns", "p", mine)
    target = wait_for(lambda: parent.lookup("ns", "echo"), message="names are still shared")
    with pytest.raises(RemoteTimeoutError):
        target.ask("let me in", timeout=0.5)
    target.tell("let me in too")
    child.call("wait_lookup", "ns", "p", "remote", 5)
    with pytest.raises(RemoteCommandError, match="RegistryTimeoutError"):
        child.call("ask", "ns", "p", "and me", 0.5)
    wait_for(lambda: child.call("health")["messages_dropped"] >= 2, message="child dropped")
    wait_for(lambda: parent.backend.health()["messages_dropped"] >= 1,  # type: ignore[attr-defined]
             message="parent dropped")
    assert child.call("received", "ce") == []
    assert mine.ask("received", timeout=5) == []
