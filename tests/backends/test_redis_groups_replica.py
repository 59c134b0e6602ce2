"""The Redis backend's group copy and member records, without Redis: the pure
parts of ``backends/redis/_groups.py`` and the group records of ``_schema.py``.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from pykka_registry.backends.redis._groups import GroupMember, GroupReplica
from pykka_registry.backends.redis._schema import (
    checked_member,
    group_keys,
    group_members_key,
    member_field,
    parse_member,
)


class _Ref:
    def __init__(self, urn: str) -> None:
        self.actor_urn = urn


def _member(ns: Any, group: Any, urn: str, node: str = "me", order: int = 1,
            inc: str = "i1", seq: int = 0, **metadata: Any) -> GroupMember:
    return GroupMember(ns, group, _Ref(urn), metadata, True, node=node, inc=inc, order=order,
                       seq=seq or order)


def test_members_are_in_join_order_across_nodes() -> None:
    replica = GroupReplica("me")
    replica.put(_member("ns", "g", "c", node="other", order=7))
    replica.put(_member("ns", "g", "a", order=2))
    replica.put(_member("ns", "g", "b", node="other", order=5))
    assert [m.actor_ref.actor_urn for m in replica.members("ns", "g")] == ["a", "b", "c"]
    assert replica.count("ns", "g") == 3
    assert replica.totals() == (1, 3)
    assert replica.groups("ns") == ["g"] and replica.namespaces() == ["ns"]
    assert replica.remote_nodes() == [("other", "i1")]


def test_a_rejoin_replaces_metadata_and_keeps_the_place() -> None:
    replica = GroupReplica("me")
    first = _member("ns", "g", "a", order=1, v=1)
    replica.put(first)
    replica.put(_member("ns", "g", "b", order=2))
    previous = replica.put(_member("ns", "g", "a", order=1, seq=3, v=2))
    assert previous is first
    assert [(m.actor_ref.actor_urn, dict(m.metadata)) for m in replica.members("ns", "g")] == \
        [("a", {"v": 2}), ("b", {})]
    assert replica.totals() == (1, 2)


def test_remove_only_the_stored_membership() -> None:
    replica = GroupReplica("me")
    old = _member("ns", "g", "a", order=1)
    replica.put(old)
    new = _member("ns", "g", "a", order=4)
    replica.put(new)
    assert not replica.remove(old)  # a stale membership leaves nothing
    assert replica.remove(new)
    assert replica.members("ns", "g") == ()
    assert replica.groups("ns") == [] and replica.totals() == (0, 0)


def test_remove_actor_takes_own_memberships_only() -> None:
    replica = GroupReplica("me")
    replica.put(_member("ns", "g1", "a"))
    replica.put(_member("ns", "g2", "a", order=2))
    replica.put(_member("ns", "g1", "x", node="other", order=3))
    assert replica.remove_actor("nobody") == []
    gone = replica.remove_actor("a")
    assert sorted(m.group for m in gone) == ["g1", "g2"]
    assert replica.groups_of("a") == []
    assert [m.actor_ref.actor_urn for m in replica.members("ns", "g1")] == ["x"]
    assert replica.own() == [] and len(replica.remote()) == 1


def test_remove_node_by_incarnation() -> None:
    replica = GroupReplica("me")
    replica.put(_member("ns", "g", "a", node="n1", inc="old", order=1))
    replica.put(_member("ns", "g", "b", node="n1", inc="new", order=2))
    replica.put(_member("ns", "h", "c", node="n2", order=3))
    gone = replica.remove_node("n1", "old")
    assert [m.actor_ref.actor_urn for m in gone] == ["a"]
    assert sorted(replica.remote_nodes()) == [("n1", "new"), ("n2", "i1")]
    assert [m.actor_ref.actor_urn for m in replica.remove_node("n1")] == ["b"]
    assert replica.remote_nodes() == [("n2", "i1")]


def test_own_member_and_snapshots_under_concurrent_writes() -> None:
    replica = GroupReplica("me")
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                found = replica.members("ns", "g")
                orders = [m.order for m in found]
                assert orders == sorted(orders)
                replica.totals()
                replica.own_member("u3")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(300):
            member = _member("ns", "g", f"u{round_ % 7}", order=round_ + 1)
            replica.put(member)
            if round_ % 3 == 0:
                replica.remove(member)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert not errors


def test_hostile_keys_raise_on_reads() -> None:
    replica = GroupReplica("me")
    with pytest.raises(TypeError):
        replica.members("ns", ["unhashable"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        replica.count("ns", ["unhashable"])  # type: ignore[arg-type]


# -- records -----------------------------------------------------------------------------


def _record(**fields: Any) -> dict[str, Any]:
    base = {"node": "n1", "inc": "i1", "k": json.dumps(["ns", "g"], separators=(",", ":")),
            "urn": "urn:uuid:1", "cls": "Echo", "meta": '{"a":1}', "n": 3, "s": 4}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_a_member_record_parses() -> None:
    record = parse_member(_record(), node="n1")
    assert (record.op, record.key, record.urn, record.metadata, record.order, record.seq) == \
        ("join", ("ns", "g"), "urn:uuid:1", {"a": 1}, 3, 4)
    assert checked_member(json.dumps(_record()), "test", node="n1") == record


def test_events_parse() -> None:
    join = parse_member(dict(_record(), op="join"), seq=9)
    assert join.seq == 9 and join.node == "n1"
    leave = parse_member(dict(_record(meta=None), op="leave", why="crashed", err="boom"), seq=10)
    assert (leave.op, leave.why, leave.error) == ("leave", "crashed", "boom")
    drop = parse_member({"op": "drop", "node": "n1", "inc": "i1", "why": "expired"}, seq=11)
    assert (drop.op, drop.node, drop.inc, drop.why) == ("drop", "n1", "i1", "expired")


@pytest.mark.parametrize("bad", [
    {"node": "other"},  # names another node than its hash
    {"inc": ""},
    {"k": "[1]"},
    {"k": '["ns", "g"]'},  # not the canonical text
    {"urn": ""},
    {"urn": "a b"},
    {"n": "x"},
    {"n": -1},
    {"meta": "[1]"},
    {"meta": "{"},
    {"s": None},
    {"op": "explode"},
])
def test_a_malformed_record_is_skipped_with_a_warning(
    bad: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "pykka_registry.redis"):
        assert checked_member(json.dumps(_record(**bad)), "test", node="n1") is None
    assert "malformed group record" in caplog.text


@pytest.mark.parametrize("raw", [b"not json", b"[]", b"null", b'"x"', b"\xff", b"[" * 5000])
def test_garbage_is_skipped(raw: bytes) -> None:
    assert checked_member(raw, "test", node="n1") is None
    assert checked_member(raw, "test", seq=1) is None


def test_an_event_with_an_unknown_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        parse_member(dict(_record(), op="leave", why="bored"), seq=1)


def test_key_layout() -> None:
    assert group_members_key("P", "n1") == "P:gmem:n1"
    assert group_keys("P") == ("P:gnodes", "P:gseq", "P:gevents")
    assert member_field('["ns","g"]', "urn:x") == 'urn:x ["ns","g"]'


def test_remove_actor_also_drops_other_processes_claims_of_a_local_actor() -> None:
    """A local actor dies: its own memberships go, and so do those another
    process's record claims (false: the actor lives here); a node of this
    process (tests run several in one) keeps its own."""
    replica = GroupReplica("me")
    mine = _member("ns", "g", "u", order=1)
    forged = _member("ns", "h", "u", node="elsewhere", order=2)
    sibling = _member("ns", "k", "u", node="sibling", order=3)
    for member in (mine, forged, sibling):
        replica.put(member)
    gone = replica.remove_actor("u", {"me", "sibling"})
    assert sorted(m.group for m in gone) == ["g", "h"]
    assert replica.groups_of("u") == [("ns", "k")]
    assert replica.remove_actor("u") == []  # (without process nodes: own ones only)
    assert replica.groups_of("u") == [("ns", "k")]


def test_a_record_with_metadata_no_join_could_write_is_refused() -> None:
    deep: Any = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="levels deep"):
        parse_member(_record(meta=json.dumps({"x": deep})), node="n1")
    assert checked_member(json.dumps(_record(meta=json.dumps({"x": deep}))), "t",
                          node="n1") is None
