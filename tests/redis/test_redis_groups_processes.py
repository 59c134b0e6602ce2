"""Groups on RedisBackend across real processes (``multiprocessing``, spawn):
members from three processes, SIGKILL of one, ``dispatch`` reaching every
member exactly once per call, ``ask_all`` with a slow member.

Children run :func:`redis_helpers.node_main` (lease_ttl 1 s); every wait is
bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis_helpers import NodeProcess, redis_nodes, wait_for
from redis_server import unique_prefix

from pykka_registry import Left, Registry, RegistryTimeoutError
from pykka_registry._remote import RemoteActorRef

LEASE_TTL = 1.0
SECRET = "a group process-suite secret"


@pytest.fixture
def prefix() -> str:
    return unique_prefix("gp")


@pytest.fixture
def three(redis_url: str, prefix: str) -> Iterator[tuple[Registry, list[NodeProcess]]]:
    """This process's registry and two children, each with two members of
    ("ns", "g") joined in turn: p0, c0a, c0b, c1a, c1b... (join order)."""
    children = NodeProcess.start_many(2, redis_url, prefix, secret=SECRET,
                                      lease_ttl=LEASE_TTL)
    try:
        with redis_nodes(redis_url, prefix, secret=SECRET, lease_ttl=LEASE_TTL) as make:
            yield make(), children
    finally:
        for child in children:
            child.close()


def _join_all(parent: Registry, children: list[NodeProcess], actors: list[Any]) -> list[str]:
    """Members joined in a known order; returns their URNs in that order."""
    from redis_helpers import Recorder

    urns = []
    ref = Recorder.start("p0")
    actors.append(ref)
    parent.join("ns", "g", ref, {"where": "parent"})
    urns.append(ref.actor_urn)
    for i, child in enumerate(children):
        for label in ("a", "b"):
            urns.append(child.call("join", "ns", "g", f"c{i}{label}", {"where": f"c{i}"}))
    wait_for(lambda: [r.actor_urn for r in parent.members("ns", "g")] == urns,
             message="the parent sees every member in join order")
    for child in children:
        wait_for(lambda child=child: [d[1] for d in child.call("members", "ns", "g")] == urns,
                 message="every child sees every member in join order")
    return urns


@pytest.fixture
def actors() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for ref in started:
        if ref.is_alive():
            ref.stop(block=True, timeout=5)


def test_members_from_three_processes(three: Any, actors: list[Any]) -> None:
    parent, children = three
    urns = _join_all(parent, children, actors)
    members = parent.members("ns", "g")
    assert members[0] is actors[0]
    assert all(isinstance(ref, RemoteActorRef) for ref in members[1:])
    assert [ref.node_id for ref in members[1:]] == [children[0].node_id] * 2 + \
        [children[1].node_id] * 2
    assert [m for _, m in parent.members_with_metadata("ns", "g")] == [
        {"where": "parent"}, {"where": "c0"}, {"where": "c0"}, {"where": "c1"},
        {"where": "c1"}]
    kinds = children[0].call("members", "ns", "g")
    assert [k[0] for k in kinds] == ["remote", "local", "local", "remote", "remote"]
    assert [k[1] for k in kinds] == urns


def test_sigkill_removes_its_members_everywhere_within_lease_ttl_plus_one_second(
    three: Any, actors: list[Any]
) -> None:
    parent, children = three
    urns = _join_all(parent, children, actors)
    events: list[Any] = []
    parent.subscribe(events.append)
    killed = time.monotonic()
    children[0].sigkill()
    rest = [urns[0], *urns[3:]]
    wait_for(lambda: [r.actor_urn for r in parent.members("ns", "g")] == rest,
             LEASE_TTL + 1.0, "the parent dropped the killed child's members")
    wait_for(lambda: [d[1] for d in children[1].call("members", "ns", "g")] == rest,
             max(0.1, killed + LEASE_TTL + 1.0 - time.monotonic()),
             "the other child dropped them too")
    # listeners get events from the dispatcher thread: wait for delivery
    wait_for(lambda: sum(isinstance(e, Left) for e in events) >= 2, 5.0, "both Left delivered")
    left = [e for e in events if isinstance(e, Left)]
    assert sorted(e.actor_ref.actor_urn for e in left) == sorted(urns[1:3])
    assert {e.reason.kind for e in left} == {"expired"}


def test_dispatch_reaches_every_member_exactly_once_per_call(three: Any,
                                                             actors: list[Any]) -> None:
    parent, children = three
    _join_all(parent, children, actors)
    for i in range(3):
        assert parent.dispatch("ns", "g", ("ping", i)) == 5
    assert children[1].call("dispatch", "ns", "g", ("pong", 0)) == 5
    # Last from each sender: messages of one sender to one node arrive in
    # order, so once both ends are in, everything sent before is too.
    assert parent.dispatch("ns", "g", ("end", "parent")) == 5
    assert children[1].call("dispatch", "ns", "g", ("end", "c1")) == 5
    want = sorted([("ping", 0), ("ping", 1), ("ping", 2), ("pong", 0), ("end", "parent"),
                   ("end", "c1")])

    def complete(received: list[Any]) -> bool:
        return ("end", "parent") in received and ("end", "c1") in received

    got = wait_for(lambda: (lambda r: r if complete(r) else None)(
        actors[0].ask("received", timeout=5)), message="parent's member")
    assert sorted(got) == want
    for i, child in enumerate(children):
        for label in ("a", "b"):
            got = wait_for(lambda child=child, label=f"c{i}{label}": (
                lambda r: r if complete(r) else None)(child.call("received", label)),
                message="each child member got each message")
            assert sorted(map(tuple, got)) == want  # exactly once each


def test_ask_all_with_one_slow_member_returns_its_timeout_as_its_value(
    three: Any, actors: list[Any]
) -> None:
    parent, children = three
    urns = _join_all(parent, children, actors)
    slow = parent.members("ns", "g")[3]  # c1a
    slow.tell("gate")  # blocks it for 5 s (the child's GATE is never set)
    started = time.monotonic()
    answers = parent.ask_all("ns", "g", "q", timeout=1.5)
    assert time.monotonic() - started < 1.5 + 0.5
    assert [ref.actor_urn for ref, _ in answers] == urns
    values = [value for _, value in answers]
    assert isinstance(values[3], RegistryTimeoutError)
    assert values[:3] + values[4:] == [("echo", "p0", "q"), ("echo", "c0a", "q"),
                                       ("echo", "c0b", "q"), ("echo", "c1b", "q")]
    from_child = children[0].call("ask_all", "ns", "g", "r", 1.5, timeout=10)
    assert [v for _, v in from_child][3] == ("error", "RegistryTimeoutError")
    assert [v for _, v in from_child][1] == ("echo", "c0a", "r")
