"""Groups across nodes on RedisBackend, with several nodes in this process
(each a registry of its own, as a process would have): remote members,
events, dispatch fan-out, ask_all, stops, hostile records.

Cross-process cases (spawned processes, SIGKILL) are in
``test_redis_groups_processes.py``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from redis_helpers import GATE, Factory, redis_nodes, wait_for
from redis_server import RedisServer, unique_prefix

from pykka_registry import Joined, Left, RegistryTimeoutError
from pykka_registry._remote import RemoteActorError, RemoteActorRef

SECRET = "a group-suite secret, long enough"


@pytest.fixture
def prefix() -> str:
    return unique_prefix("g")


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Iterator[Factory]:
    with redis_nodes(redis_url, prefix, secret=SECRET) as make:
        yield make


def _urns(refs: Any) -> list[str]:
    return [ref.actor_urn for ref in refs]


def _keys(client: Any, pattern: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=pattern, count=1000))


def test_members_of_other_nodes_are_remote_refs_in_join_order(nodes: Factory,
                                                              actors: Any) -> None:
    a, b = nodes(), nodes()
    a1, b1, a2 = actors("a1"), actors("b1"), actors("a2")
    a.join("ns", "g", a1, {"n": 1})
    b.join("ns", "g", b1, {"n": 2})
    a.join("ns", "g", a2)
    wait_for(lambda: b.count_members("ns", "g") == 3, message="b sees a's members")
    wait_for(lambda: a.count_members("ns", "g") == 3, message="a sees b's member")
    seen_by_b = b.members("ns", "g")
    assert _urns(seen_by_b) == _urns([a1, b1, a2])
    assert isinstance(seen_by_b[0], RemoteActorRef) and seen_by_b[1] is b1
    assert a.members("ns", "g")[0] is a1
    assert [m for _, m in b.members_with_metadata("ns", "g")] == [{"n": 1}, {"n": 2}, {}]
    assert _urns(r for r, _ in b.match_members("ns", "g", {"n": 1})) == [a1.actor_urn]
    assert b.groups("ns") == ["g"]
    assert b.groups_of(b1) == [("ns", "g")]
    assert (b.stats().groups, b.stats().memberships) == (1, 3)
    # a rejoin keeps the place everywhere
    a.join("ns", "g", a1, {"n": 9})
    wait_for(lambda: b.members_with_metadata("ns", "g")[0][1] == {"n": 9}, message="rejoin")
    assert _urns(b.members("ns", "g")) == _urns([a1, b1, a2])
    # a remote member answers through its ref
    assert seen_by_b[0].ask("hi", timeout=5) == ("echo", "a1", "hi")


def test_remote_events_in_order_and_replay(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    events: list[Any] = []
    b.subscribe(events.append, namespace="ns")
    x, y = actors("x"), actors("y")
    a.join("ns", "g", x, {"v": 1})
    a.join("ns", "g", x, {"v": 2})
    a.join("ns", "g", y)
    a.leave("ns", "g", x)
    y.stop(block=True)
    wait_for(lambda: len(events) >= 5, message="b saw every group event")
    kinds = [(type(e).__name__, e.actor_ref.actor_urn) for e in events]
    assert kinds == [("Joined", x.actor_urn), ("Joined", x.actor_urn), ("Joined", y.actor_urn),
                     ("Left", x.actor_urn), ("Left", y.actor_urn)]
    assert dict(events[1].metadata) == {"v": 2}
    assert events[3].reason.kind == "left" and events[4].reason.kind == "stopped"
    z = actors("z")
    a.join("ns", "h", z)
    wait_for(lambda: b.count_members("ns", "h") == 1, message="z seen")
    replayed: list[Any] = []
    done = threading.Event()

    def on_event(event: Any) -> None:
        replayed.append(event)
        done.set()

    b.subscribe(on_event, namespace="ns", replay=True)
    assert done.wait(5)
    assert isinstance(replayed[0], Joined) and replayed[0].actor_ref.actor_urn == z.actor_urn


def test_a_crash_reaches_other_nodes_as_crashed(nodes: Factory, actors: Any) -> None:
    class Crasher(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            raise RuntimeError("on purpose")

    a, b = nodes(), nodes()
    events: list[Any] = []
    b.subscribe(events.append, namespace="ns")
    ref = Crasher.start()
    a.join("ns", "g", ref)
    wait_for(lambda: b.count_members("ns", "g") == 1, message="joined")
    ref.tell("boom")
    assert ref.actor_stopped.wait(5)
    assert a.members("ns", "g") == []  # at once, locally
    wait_for(lambda: any(isinstance(e, Left) for e in events), message="Left seen")
    left = next(e for e in events if isinstance(e, Left))
    assert left.reason.kind == "crashed" and isinstance(left.reason.exception, RemoteActorError)
    assert b.members("ns", "g") == []


def test_dispatch_sends_one_message_per_remote_node(nodes: Factory, actors: Any) -> None:
    a, b, c = nodes(), nodes(), nodes()
    on_a = [actors(f"a{i}") for i in range(3)]
    on_c = [actors(f"c{i}") for i in range(2)]
    mine = actors("b0")
    for ref in on_a:
        a.join("ns", "g", ref)
    for ref in on_c:
        c.join("ns", "g", ref)
    b.join("ns", "g", mine)
    wait_for(lambda: b.count_members("ns", "g") == 6, message="b sees everyone")
    before = [n.backend._messenger.delivered for n in (a, c)]  # type: ignore[attr-defined]
    assert b.dispatch("ns", "g", "hello") == 6
    for ref in [*on_a, *on_c, mine]:
        wait_for(lambda ref=ref: ref.ask("received", timeout=5) == ["hello"],
                 message="every member got it once")
    after = [n.backend._messenger.delivered for n in (a, c)]  # type: ignore[attr-defined]
    assert [y - x for x, y in zip(before, after)] == [1, 1]  # one message per node
    assert b.dispatch("ns", "nobody", "x") == 0


def test_ask_all_gathers_values_errors_and_timeouts(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    fast, slow, failing = actors("fast"), actors("slow"), actors("failing")
    local = actors("local")
    a.join("ns", "g", fast)
    a.join("ns", "g", slow)
    b.join("ns", "g", local)
    a.join("ns", "g", failing)
    wait_for(lambda: b.count_members("ns", "g") == 4, message="b sees a's members")
    answers = b.ask_all("ns", "g", "q", timeout=5)
    assert [(r.actor_urn, v) for r, v in answers] == [
        (fast.actor_urn, ("echo", "fast", "q")), (slow.actor_urn, ("echo", "slow", "q")),
        (local.actor_urn, ("echo", "local", "q")), (failing.actor_urn, ("echo", "failing", "q"))]
    errors = b.ask_all("ns", "g", "raise", timeout=5)
    assert all(isinstance(v, ValueError) for _, v in errors)
    GATE.clear()
    slow.tell("gate")  # blocks slow until GATE is set
    try:
        mixed = b.ask_all("ns", "g", "again", timeout=1.0)
    finally:
        GATE.set()
    values = {r.actor_urn: v for r, v in mixed}
    assert _urns(r for r, _ in mixed) == _urns(b.members("ns", "g"))
    assert isinstance(values[slow.actor_urn], RegistryTimeoutError)
    assert values[fast.actor_urn] == ("echo", "fast", "again")
    assert values[local.actor_urn] == ("echo", "local", "again")


def test_ask_all_of_a_node_that_does_not_answer_times_out(nodes: Factory, actors: Any,
                                                          redis_server: RedisServer) -> None:
    a, b = nodes(), nodes()
    ref = actors("r")
    a.join("ns", "g", ref)
    wait_for(lambda: b.count_members("ns", "g") == 1, message="seen")
    # a's receiver is held up: its inbox is not read for a while
    a.backend._messenger._find_actor = lambda urn: GATE.wait(3) and None  # type: ignore
    GATE.clear()
    try:
        answers = b.ask_all("ns", "g", "q", timeout=0.5)
    finally:
        GATE.set()
    assert len(answers) == 1 and isinstance(answers[0][1], RegistryTimeoutError)


def test_stop_namespace_removes_remote_members_too(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    there, here = actors("there"), actors("here")
    a.join("ns-x", "g", there)
    b.join("ns-x", "g", here)
    wait_for(lambda: b.count_members("ns-x", "g") == 2, message="seen")
    b.stop_namespace("ns-x")
    assert b.groups("ns-x") == []
    wait_for(lambda: a.groups("ns-x") == [], message="a dropped them")
    wait_for(lambda: not there.is_alive(), message="a's member stopped")


def test_a_stopped_node_leaves_no_group_key_and_the_last_empties_the_prefix(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    a, b = nodes(), nodes()
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    events: list[Any] = []
    b.subscribe(events.append)
    ra, rb = actors("a"), actors("b")
    a.join("ns", "g", ra)
    b.join("ns", "g", rb)
    wait_for(lambda: b.count_members("ns", "g") == 2, message="b sees a's member")
    client = redis_server.client()
    try:
        assert f"{prefix}:gmem:{a_id}" in _keys(client, f"{prefix}:*")
        a.stop()
        assert [k for k in _keys(client, f"{prefix}:*") if a_id in k] == []
        wait_for(lambda: b.members("ns", "g") == [rb], message="b dropped a's member")
        # listeners get events from the dispatcher thread: wait for delivery
        wait_for(lambda: any(isinstance(e, Left) for e in events), message="Left delivered")
        left = [e for e in events if isinstance(e, Left)]
        assert [e.reason.kind for e in left] == ["node_stopped"]
        b.stop()
        assert _keys(client, f"{prefix}:*") == []
    finally:
        client.close()


def test_a_malformed_member_record_is_skipped_alone(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = nodes()
    good = actors("good")
    a.join("ns", "g", good)
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    client = redis_server.client()
    try:
        key = f"{prefix}:gmem:{a_id}"
        client.hset(key, "bad1", b"not json")
        client.hset(key, "bad2", json.dumps({"node": a_id, "inc": "x"}))
        client.hset(key, "bad3", json.dumps({"node": "someone else", "inc": "x"}))
        with caplog.at_level(logging.WARNING, "pykka_registry.redis"):
            b = nodes()  # reads the snapshot
        assert _urns(b.members("ns", "g")) == [good.actor_urn]
        assert "malformed group record" in caplog.text
        # and a malformed change event in the stream is skipped alone
        seq = int(client.incr(f"{prefix}:gseq"))
        client.xadd(f"{prefix}:gevents", {"s": seq, "e": b"{]"})
        later = actors("later")
        a.join("ns", "g", later)
        wait_for(lambda: b.count_members("ns", "g") == 2, message="later seen")
    finally:
        client.close()


def test_a_lapsed_node_is_dropped_and_its_records_reaped(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    a, b = nodes(), nodes()
    ref = actors("r")
    a.join("ns", "g", ref)
    wait_for(lambda: b.count_members("ns", "g") == 1, message="seen")
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    events: list[Any] = []
    b.subscribe(events.append)
    remote = b.members("ns", "g")[0]
    client = redis_server.client()
    try:
        # a's lease vanishes (as after a long pause); a's threads are stopped
        # first so that it does not take a new one
        a.backend._node.stopping.set()  # type: ignore[attr-defined]
        a.backend._groups._stopping.set()  # type: ignore[attr-defined]
        for thread in a.backend._node.threads:  # type: ignore[attr-defined]
            thread.join(5)
        client.delete(f"{prefix}:node:{a_id}")
        wait_for(lambda: b.members("ns", "g") == [], 2.5, "a's member dropped")
        assert not remote.is_alive()
        # listeners get events from the dispatcher thread: wait for delivery
        wait_for(lambda: any(isinstance(e, Left) for e in events), message="Left delivered")
        assert [e.reason.kind for e in events if isinstance(e, Left)] == ["expired"]
        wait_for(lambda: not client.exists(f"{prefix}:gmem:{a_id}"), message="reaped")
    finally:
        client.close()


def test_members_come_back_after_redis_loses_its_data(fresh_redis: RedisServer,
                                                      actors: Any) -> None:
    with redis_nodes(fresh_redis.url, unique_prefix("gl"), secret=SECRET) as make:
        a, b = make(), make()
        ref, mine = actors("r"), actors("m")
        a.join("ns", "g", ref, {"k": 1})
        b.join("ns", "g", mine)
        wait_for(lambda: b.count_members("ns", "g") == 2, message="seen")
        client = fresh_redis.client()
        try:
            client.flushall()

            def rewritten(node: Any) -> bool:
                backend = node.backend
                lease = client.get(f"{backend.prefix}:node:{backend.node_id}")
                records = client.hvals(f"{backend.prefix}:gmem:{backend.node_id}")
                return lease is not None and len(records) == 1 and \
                    json.loads(records[0])["inc"] == lease.decode()

            # every node writes its own members again (with its new lease)
            wait_for(lambda: rewritten(a) and rewritten(b), 10.0, "members written again")
        finally:
            client.close()
        both = sorted(_urns([ref, mine]))  # (the order of the rewrites is not fixed)
        wait_for(lambda: sorted(_urns(b.members("ns", "g"))) == both and
                 sorted(_urns(a.members("ns", "g"))) == both and
                 {"k": 1} in [m for _, m in b.members_with_metadata("ns", "g")], 10.0,
                 "both members back everywhere")
        c = make()  # a newcomer reads them from Redis
        assert sorted(_urns(c.members("ns", "g"))) == sorted(_urns([ref, mine]))
