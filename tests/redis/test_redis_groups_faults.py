"""Faults and hostile data for the Redis backend's groups: lost replies,
forged or broken records and keys in Redis, garbage answers to ``ask_all``,
a node with two incarnations in the copy, and the groups' health report.

Each test is a regression test of a guarantee that once broke (or an
attack that held, kept so that it keeps holding).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis_helpers import Factory, redis_nodes, wait_for
from redis_server import RedisServer, unique_prefix

from pykka_registry import RegistryUnavailableError
from pykka_registry._remote import RemoteActorError, RemoteActorRef
from pykka_registry.backends.redis import _groups as groups_module

SECRET = "a group-faults secret, long enough"


@pytest.fixture
def prefix() -> str:
    return unique_prefix("gf")


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Iterator[Factory]:
    with redis_nodes(redis_url, prefix, secret=SECRET) as make:
        yield make


def _urns(refs: Any) -> list[str]:
    return [ref.actor_urn for ref in refs]


def _groups(registry: Any) -> Any:
    return registry.backend._groups


def _barrier(writer: Any, reader: Any, actors: Any, group: str = "barrier") -> None:
    """Wait until ``reader`` applied every group change made before now:
    ``writer`` joins a fresh actor and ``reader`` sees it (the stream is
    applied in order)."""
    marker = actors("marker")
    writer.join("ns-barrier", group, marker)
    wait_for(lambda: reader.count_members("ns-barrier", group) >= 1, message="barrier")


def _forge_node(client: Any, prefix: str, node: str, inc: str) -> None:
    client.set(f"{prefix}:node:{node}", inc, px=60_000)
    client.sadd(f"{prefix}:gnodes", node)


def _forge_join(client: Any, prefix: str, node: str, inc: str, group: str, urn: str,
                **extra: Any) -> None:
    """A join of ``urn`` by node ``node``, written as GJOIN would (record and
    event), with a live lease for that node."""
    _forge_node(client, prefix, node, inc)
    seq = int(client.incr(f"{prefix}:gseq"))
    kjson = json.dumps(["ns", group], separators=(",", ":"))
    record = {"node": node, "inc": inc, "k": kjson, "urn": urn, "cls": "Forged", "meta": "",
              "n": seq, "s": seq, **extra}
    client.hset(f"{prefix}:gmem:{node}", f"{urn} {kjson}", json.dumps(record))
    event = {"op": "join", **{k: v for k, v in record.items() if k != "s"}}
    client.xadd(f"{prefix}:gevents", {"s": seq, "e": json.dumps(event)})


# -- a lost reply -------------------------------------------------------------------------


def test_a_join_whose_reply_was_lost_is_undone_everywhere(nodes: Factory, actors: Any,
                                                          monkeypatch: Any, client: Any,
                                                          prefix: str) -> None:
    """GJOIN ran in Redis but its reply never came back: the join raised, so
    the member must not stay on other nodes (where nothing would ever remove
    it: its death is not known to have a membership to release)."""
    a, b = nodes(), nodes()
    ref = actors("r")
    scripts = _groups(a)._scripts
    real = scripts["GJOIN"]

    def lost_reply(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        import redis
        raise redis.exceptions.ConnectionError("reply lost")

    monkeypatch.setitem(scripts, "GJOIN", lost_reply)
    with pytest.raises(RegistryUnavailableError):
        a.join("ns", "g", ref)
    monkeypatch.setitem(scripts, "GJOIN", real)
    assert a.members("ns", "g") == []
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    wait_for(lambda: client.hlen(f"{prefix}:gmem:{a_id}") == 0,
             message="the unacknowledged join undone in Redis")
    _barrier(a, b, actors)  # (after the undo in the stream)
    assert b.members("ns", "g") == []
    # and a retry works (and is not undone by the late clean-up)
    a.join("ns", "g", ref)
    _barrier(a, b, actors, "barrier-2")
    assert _urns(b.members("ns", "g")) == [ref.actor_urn]
    assert a.members("ns", "g") == [ref]


def test_a_rejoin_whose_reply_was_lost_is_adopted(nodes: Factory, actors: Any,
                                                  monkeypatch: Any) -> None:
    """A rejoin (new metadata) that Redis applied but whose reply was lost:
    the copy catches up with what every other node sees."""
    a, b = nodes(), nodes()
    ref = actors("r")
    a.join("ns", "g", ref, {"v": 1})
    scripts = _groups(a)._scripts
    real = scripts["GJOIN"]

    def lost_reply(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        import redis
        raise redis.exceptions.TimeoutError("reply lost")

    monkeypatch.setitem(scripts, "GJOIN", lost_reply)
    with pytest.raises(RegistryUnavailableError):
        a.join("ns", "g", ref, {"v": 2})
    monkeypatch.setitem(scripts, "GJOIN", real)
    wait_for(lambda: [m for _, m in a.members_with_metadata("ns", "g")] == [{"v": 2}],
             message="a adopts what Redis holds")
    wait_for(lambda: [m for _, m in b.members_with_metadata("ns", "g")] == [{"v": 2}],
             message="b sees it too")
    ref.stop(block=True)  # and its death still releases it everywhere
    wait_for(lambda: b.count_members("ns", "g") == 0, message="released at death")


# -- forged records -----------------------------------------------------------------------


def test_a_forged_record_cannot_take_over_an_own_member(
    nodes: Factory, actors: Any, client: Any, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Another node's record naming the URN of one of this node's members
    (same group) must not replace it in the copy: the member would then be
    released nowhere when it dies."""
    a, b = nodes(), nodes()
    ref = actors("mine")
    a.join("ns", "g", ref)
    wait_for(lambda: b.count_members("ns", "g") == 1, message="seen")
    with caplog.at_level(logging.WARNING, "pykka_registry.redis"):
        _forge_join(client, prefix, "forger", "f-inc", "g", ref.actor_urn)
        _barrier(b, a, actors)
    assert a.members("ns", "g") == [ref]  # still the local ref
    assert "forger" in caplog.text
    ref.stop(block=True)
    assert a.members("ns", "g") == []
    # a released it in Redis, so b drops a's member (the forged one stays
    # on b: it is another node's record, b cannot tell it is false)
    wait_for(lambda: all(m.node_id == "forger" for m in b.members("ns", "g")),
             message="a's member released")


def test_a_forged_record_naming_a_local_actor_goes_when_it_dies(
    nodes: Factory, actors: Any, client: Any, prefix: str,
) -> None:
    """A record of another process naming an actor of this process (which
    is in no group here): once the actor is stopped, no member list here
    shows it."""
    a = nodes()
    b = nodes()
    ref = actors("local")
    _forge_join(client, prefix, "forger", "f-inc", "g", ref.actor_urn)
    _barrier(b, a, actors)
    listed = a.members("ns", "g")
    assert _urns(listed) == [ref.actor_urn] and isinstance(listed[0], RemoteActorRef)
    ref.stop(block=True)
    assert a.members("ns", "g") == []
    assert a.groups_of(ref) == []


def test_a_record_under_another_field_is_skipped(
    nodes: Factory, actors: Any, client: Any, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """A record stored under a field that is not its own (GLEAVE could never
    delete it) is malformed: skipped with a warning."""
    a = nodes()
    ref = actors("r")
    a.join("ns", "g", ref)
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    key = f"{prefix}:gmem:{a_id}"
    value = next(iter(client.hvals(key)))
    record = json.loads(value)
    record["urn"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    client.hset(key, "some other field", json.dumps(record))
    with caplog.at_level(logging.WARNING, "pykka_registry.redis"):
        b = nodes()
    assert _urns(b.members("ns", "g")) == [ref.actor_urn]
    assert "malformed group record" in caplog.text


def test_deep_metadata_in_a_record_is_skipped(
    nodes: Factory, actors: Any, client: Any, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Metadata nested deeper than any join could write: readers of the copy
    (members_with_metadata copies it) must not fail on it."""
    a = nodes()
    ref = actors("r")
    a.join("ns", "g", ref, {"ok": 1})
    deep = "[" * 600 + "]" * 600
    with caplog.at_level(logging.WARNING, "pykka_registry.redis"):
        _forge_join(client, prefix, "forger", "f-inc", "g",
                    "urn:uuid:11111111-1111-1111-1111-111111111111",
                    meta=json.dumps({"x": json.loads(deep)}))
        b = nodes()
        _barrier(b, a, actors)
    for registry in (a, b):
        assert [m for _, m in registry.members_with_metadata("ns", "g")] == [{"ok": 1}]
    assert "levels deep" in caplog.text


@pytest.mark.parametrize("bad", [{"n": -1}, {"n": 1.5}, {"n": True}, {"n": "x"},
                                 {"s": -3}, {"s": "1e3"}, {"n": 2 ** 70}, {"node": "other"}])
def test_malformed_numbers_in_a_record_are_skipped(
    nodes: Factory, actors: Any, client: Any, prefix: str, bad: dict[str, Any],
) -> None:
    a = nodes()
    ref = actors("r")
    a.join("ns", "g", ref)
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    key = f"{prefix}:gmem:{a_id}"
    value = next(iter(client.hvals(key)))
    record = {**json.loads(value), "urn": "urn:uuid:2", **bad}
    kjson = record["k"]
    client.hset(key, f"urn:uuid:2 {kjson}", json.dumps(record))
    b = nodes()
    assert _urns(b.members("ns", "g")) == [ref.actor_urn]


# -- broken shared keys ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["gnodes", "gseq", "gseq and a huge record"])
def test_a_broken_shared_key_does_not_wedge_joins(
    nodes: Factory, actors: Any, client: Any, prefix: str, key: str,
) -> None:
    """``P:gnodes`` that is not a set, ``P:gseq`` that is not a number:
    joins, leaves and newcomers keep working (the key is repaired)."""
    a = nodes()
    first = actors("first")
    a.join("ns", "g", first)
    if key == "gnodes":
        client.delete(f"{prefix}:gnodes")
        client.set(f"{prefix}:gnodes", "not a set")
    else:
        client.set(f"{prefix}:gseq", "not a number")
    if key == "gseq and a huge record":  # (its "s" must not become the counter)
        a_id = a.backend.node_id  # type: ignore[attr-defined]
        client.hset(f"{prefix}:gmem:{a_id}", "junk", json.dumps({"n": 1e300, "s": 1e300}))
    b = nodes()  # a newcomer reads the members (before any repair)
    assert _urns(b.members("ns", "g")) == [first.actor_urn]
    second = actors("second")
    a.join("ns", "g", second)
    a.leave("ns", "g", first)
    third = actors("third")
    a.join("ns", "g", third)
    wait_for(lambda: _urns(b.members("ns", "g")) == _urns([second, third]),
             message="b follows")
    c = nodes()
    assert _urns(c.members("ns", "g")) == _urns([second, third])
    assert 0 < int(client.get(f"{prefix}:gseq")) < 1000
    assert _urns(a.members("ns", "g")) == _urns([second, third])


# -- ask_all and dispatch -------------------------------------------------------------------


@pytest.mark.parametrize("answer", [[(["unhashable"], 1)], 42, "text", [("urn", 1, 2)], None])
def test_ask_all_with_a_garbage_answer(nodes: Factory, actors: Any, monkeypatch: Any,
                                       answer: Any) -> None:
    """A node answering ``ask_all`` with something that is not a list of
    ``(urn, value)``: its members get a RemoteActorError, nothing raises,
    the call stays bounded."""
    a, b = nodes(), nodes()
    there, here = actors("there"), actors("here")
    a.join("ns", "g", there)
    b.join("ns", "g", here)
    wait_for(lambda: b.count_members("ns", "g") == 2, message="seen")

    def garbage(futures: Any, deadline: Any, reply_to: Any, key: Any) -> None:
        reply_to.set(answer)

    monkeypatch.setattr(groups_module, "_gather", garbage)
    started = time.monotonic()
    values = dict((r.actor_urn, v) for r, v in b.ask_all("ns", "g", "q", timeout=2.0))
    assert time.monotonic() - started < 2.5
    assert values[here.actor_urn] == ("echo", "here", "q")
    assert isinstance(values[there.actor_urn], RemoteActorError)


def test_ask_all_of_members_on_two_other_nodes(nodes: Factory, actors: Any) -> None:
    """One ask per remote node, sent at once: each answer reaches the ask it
    answers (message ids are unique across destinations), at once."""
    a, b, c = nodes(), nodes(), nodes()
    on_b, on_c = actors("on_b"), actors("on_c")
    b.join("ns", "g", on_b)
    c.join("ns", "g", on_c)
    wait_for(lambda: a.count_members("ns", "g") == 2, message="seen")
    started = time.monotonic()
    for _ in range(3):
        answers = a.ask_all("ns", "g", "q", timeout=3.0)
        assert [v for _, v in answers] == [("echo", "on_b", "q"), ("echo", "on_c", "q")]
    assert time.monotonic() - started < 3.0


def test_dispatch_sends_one_message_to_a_node_seen_with_two_incarnations(
    nodes: Factory, actors: Any,
) -> None:
    """After a node took a new lease, other nodes may hold its members of
    both incarnations for a moment (until the lease watch drops the old
    one). A dispatch still sends one message to that node: each member gets
    it once."""
    a, b = nodes(), nodes()
    m1, m2 = actors("m1"), actors("m2")
    b.join("ns", "g", m1)
    b.join("ns", "g", m2)
    wait_for(lambda: a.count_members("ns", "g") == 2, message="seen")
    ga, gb = _groups(a), _groups(b)
    ga._watch = lambda: None  # a's lease watch is held up (as for up to 0.5 s)
    gb._stopping.set()  # b re-asserts by hand below
    gb._thread.join(5)
    b.backend._take_lease()  # type: ignore[attr-defined]
    own = {m.actor_ref.actor_urn: m for m in gb.replica.own()}
    gb._reassert(members=[own[m1.actor_urn]])  # m1 written again, m2 not yet
    wait_for(lambda: len(ga.replica.remote_nodes()) == 2, message="a sees two incarnations")
    assert a.dispatch("ns", "g", "hello") == 2
    a.dispatch("ns", "g", "marker")
    for ref in (m1, m2):
        received = wait_for(lambda ref=ref: "marker" in ref.ask("received", timeout=5) and
                            ref.ask("received", timeout=5), message="marker")
        assert received.count("hello") == 1, received


# -- health ---------------------------------------------------------------------------------


def test_health_reports_groups(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    mine, theirs = actors("mine"), actors("theirs")
    a.join("ns", "g", mine)
    b.join("ns", "g", theirs)
    wait_for(lambda: a.count_members("ns", "g") == 2, message="seen")
    report = a.backend.health()["groups"]  # type: ignore[attr-defined]
    assert report["members_here"] == 1
    assert report["members_known"] == 2
    assert report["remote_nodes"] == 1
    assert report["feed_seq"] >= 2
    assert report["pending_releases"] == 0
    assert a.backend.health()["status"] == "healthy"  # type: ignore[attr-defined]


def test_dispatch_and_ask_all_with_a_key_that_only_compares_equal(nodes: Factory,
                                                                  actors: Any) -> None:
    """A group key that is not JSON but hashes and compares like a stored
    one finds that group's members: dispatch and ask_all use the stored key
    (no raw TypeError from the JSON encoder)."""
    a, b = nodes(), nodes()
    there = actors("there")
    b.join("ns", "g", there)
    wait_for(lambda: a.count_members("ns", "g") == 1, message="seen")

    class LooksLikeG:
        def __hash__(self) -> int:
            return hash("g")

        def __eq__(self, other: object) -> bool:
            return other == "g"

    key: Any = LooksLikeG()
    assert a.dispatch("ns", key, "hello") == 1
    assert [v for _, v in a.ask_all("ns", key, "q", timeout=3)] == [("echo", "there", "q")]


class _PicklesOnce:
    """Pickles once (the ask's message), then its ``__reduce__`` raises
    SystemExit (the answer that echoes it)."""

    calls = 0

    def __reduce__(self) -> Any:
        type(self).calls += 1
        if type(self).calls > 1:
            raise SystemExit("hostile __reduce__")
        return (_PicklesOnce, ())


def test_an_answer_that_cannot_be_pickled_is_its_own_value(nodes: Factory,
                                                          actors: Any) -> None:
    """Members' answers whose pickling raises a BaseException: each has a
    RemoteActorError as its value (the node still answers, at once)."""
    a, b = nodes(), nodes()
    first, second = actors("first"), actors("second")
    a.join("ns", "g", first)
    a.join("ns", "g", second)
    wait_for(lambda: b.count_members("ns", "g") == 2, message="seen")
    _PicklesOnce.calls = 0
    values = [v for _, v in b.ask_all("ns", "g", _PicklesOnce(), timeout=3)]
    assert all(isinstance(v, RemoteActorError) for v in values), values
    assert "could not be pickled" in str(values[0])


def test_ask_all_keeps_its_timeout_when_redis_stops_answering(fresh_redis: RedisServer,
                                                              actors: Any) -> None:
    # Each remote node is asked with one send; a send to a Redis that stopped
    # answering waits io_timeout. Once the call's own timeout has passed, no
    # further node is asked: one wait, not one per node.
    with redis_nodes(fresh_redis.url, unique_prefix("gt"), secret=SECRET,
                     io_timeout=0.5) as make:
        asker, *others = [make() for _ in range(5)]
        for index, node in enumerate(others):
            node.join("ns", "g", actors(f"m{index}"))
        wait_for(lambda: asker.count_members("ns", "g") == 4, message="every member seen")
        fresh_redis.pause()
        try:
            started = time.monotonic()
            result = asker.ask_all("ns", "g", "ping", timeout=0.3)
            elapsed = time.monotonic() - started
        finally:
            fresh_redis.resume()
    assert len(result) == 4
    assert all(isinstance(value, Exception) for _, value in result)
    assert elapsed < 0.3 + 0.5 + 0.7, elapsed  # four sends one after another: >= 2 s


def test_a_death_is_complete_at_once_while_redis_hangs(fresh_redis: RedisServer,
                                                       actors: Any) -> None:
    # remove_actor and leave_all run in the dying actor's thread and do no
    # I/O: with Redis stopped (SIGSTOP), stop(block=True) still returns at
    # once with the name and the membership gone here; the deletes are sent
    # once Redis answers again.
    with redis_nodes(fresh_redis.url, unique_prefix("gd"), secret=SECRET,
                     io_timeout=1.0) as make:
        node = make()
        ref = actors("doomed")
        node.register("ns", "svc", ref)
        node.join("ns", "g", ref)
        fresh_redis.pause()
        try:
            started = time.monotonic()
            ref.stop(block=True, timeout=5)
            elapsed = time.monotonic() - started
            assert node.lookup("ns", "svc") is None
            assert node.members("ns", "g") == []
            assert node.groups_of(ref) == []
        finally:
            fresh_redis.resume()
        assert elapsed < 0.8, elapsed  # one Redis wait would be io_timeout (1 s)
        client = fresh_redis.client()
        try:
            wait_for(lambda: not any(b"svc" in key or (b"gmem" in key and client.hlen(key))
                                     for key in client.keys("*")), 5.0, "released in Redis")
        finally:
            client.close()
