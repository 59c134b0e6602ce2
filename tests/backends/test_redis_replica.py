"""The Redis backend's local copy (``_replica``) on its own: no Redis server,
no registry, no threads. Every record is built as Redis would hand it over."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from pykka_registry import RemoteActorError
from pykka_registry._events import EXPIRED, LOST, UnregisterReason
from pykka_registry.backends.base import Change
from pykka_registry.backends.redis._replica import Replica
from pykka_registry.backends.redis._schema import Record, Snapshot, key_json, parse_record

ME, OTHER = "me", "other"


class Ref:
    """Stands in for a local pykka.ActorRef."""

    class actor_class:  # as pykka names it
        pass

    def __init__(self, urn: str) -> None:
        self.actor_urn = urn

    def is_alive(self) -> bool:
        return True


def record(service: str, node: str = OTHER, seq: int = 1, op: str = "set", urn: str = "",
           token: Optional[int] = None, inc: str = "i1", meta: Optional[dict[str, Any]] = None,
           why: str = "", err: str = "") -> Record:
    raw: dict[str, Any] = {"k": key_json("ns", service), "op": op, "node": node, "inc": inc,
                           "tok": seq if token is None else token, "urn": urn or f"urn:{service}",
                           "cls": "Echo", "meta": json.dumps(meta or {})}
    if why:
        raw["why"] = why
    if err:
        raw["err"] = err
    return parse_record(raw, rev=seq, event=True)


def snapshot(*records: Record, seq: int = 100, writes_before: int = 0) -> Snapshot:
    return Snapshot(seq, "epoch", records, (), "5-0", writes_before)


def feed_entry(seq: Any, event: Any) -> tuple[bytes, dict[bytes, Any]]:
    fields: dict[bytes, Any] = {}
    if seq is not None:
        fields[b"s"] = str(seq).encode()
    if event is not None:
        fields[b"e"] = event if isinstance(event, bytes) else json.dumps(event).encode()
    return (f"{seq}-0".encode(), fields)


@pytest.fixture
def local() -> dict[str, Ref]:
    return {}


@pytest.fixture
def replica(local: dict[str, Ref]) -> Replica:
    copy = Replica(ME, None, local.get)
    copy.inc = "mine"
    copy.own_incs.add("mine")  # as the backend does when it takes its lease
    return copy


def own(replica: Replica, local: dict[str, Ref], service: str, seq: int) -> Any:
    ref = local.setdefault(f"urn:{service}", Ref(f"urn:{service}"))
    assert replica.claimed(replica.own_claim(("ns", service), ref, {}, seq, seq), seq) is None
    replica.take_changes()
    return replica.get("ns", service)


def test_a_remote_claim_is_stored_and_reported_registered(replica: Replica) -> None:
    assert replica.apply_event(1, record("a", meta={"v": 1})) is False
    entry = replica.get("ns", "a")
    assert entry is not None and entry.node == OTHER and entry.rev == 1
    assert entry.metadata == {"v": 1} and entry.actor_ref.actor_urn == "urn:a"
    assert replica.take_changes() == [Change(None, entry)]
    assert replica.node_refs == {(OTHER, "i1"): 1}


def test_an_update_of_the_same_actor_is_one_change_old_to_new(replica: Replica) -> None:
    replica.apply_event(1, record("a"))
    first = replica.get("ns", "a")
    replica.take_changes()
    replica.apply_event(2, record("a", op="upd", token=1, meta={"v": 2}))
    (change,) = replica.take_changes()
    assert change.old is first and change.new is replica.get("ns", "a")
    assert change.new.actor_ref is first.actor_ref  # one ref per remote actor


def test_an_older_change_than_the_copy_is_ignored(replica: Replica) -> None:
    replica.apply_event(5, record("a", seq=5))
    replica.take_changes()
    assert replica.apply_event(4, record("a", seq=4, urn="urn:older")) is False
    assert replica.get("ns", "a").actor_ref.actor_urn == "urn:a"
    assert replica.take_changes() == []


def test_an_own_write_the_feed_has_not_shown_yet_wins(replica: Replica,
                                                       local: dict[str, Ref]) -> None:
    mine = own(replica, local, "a", 7)
    assert replica.own_pending == {key_json("ns", "a"): 7}
    replica.apply_event(6, record("a", seq=6))  # older than our write: skipped
    assert replica.get("ns", "a") is mine and replica.take_changes() == []
    replica.forget_own_writes(7)
    assert replica.own_pending == {}


def test_a_remote_claim_over_an_own_name_reports_it_lost(replica: Replica,
                                                         local: dict[str, Ref]) -> None:
    mine = own(replica, local, "a", 3)
    replica.forget_own_writes(3)
    replica.apply_event(4, record("a", seq=4))
    theirs = replica.get("ns", "a")
    assert theirs.node == OTHER
    assert replica.take_changes() == [Change(mine, None, LOST), Change(None, theirs)]
    assert replica.lost_names == 1
    assert "urn:a" not in replica.local_refs


def test_a_remote_crash_drops_the_name_and_kills_the_ref(replica: Replica) -> None:
    replica.apply_event(1, record("a"))
    entry = replica.get("ns", "a")
    replica.take_changes()
    replica.apply_event(2, record("a", seq=2, op="del", token=1, why="crashed", err="boom"))
    assert replica.get("ns", "a") is None and not entry.actor_ref.is_alive()
    (change,) = replica.take_changes()
    assert change.old is entry and change.new is None and change.reason.kind == "crashed"
    assert isinstance(change.reason.exception, RemoteActorError)
    assert replica.node_refs == {}


def test_a_delete_of_another_claim_is_ignored(replica: Replica) -> None:
    replica.apply_event(1, record("a"))
    replica.take_changes()
    replica.apply_event(2, record("a", seq=2, op="del", token=99, why="stopped"))
    assert replica.get("ns", "a") is not None and replica.take_changes() == []


def test_own_names_expired_by_another_node_are_claimed_again(replica: Replica,
                                                             local: dict[str, Ref]) -> None:
    own(replica, local, "a", 3)
    replica.forget_own_writes(3)
    assert replica.apply_event(4, record("a", node=ME, seq=4, op="del", token=3, inc="mine",
                                         why="expired")) is True
    kept = replica.get("ns", "a")
    assert kept is not None and kept.inc == "" and replica.stale_own() == [kept]
    assert replica.take_changes() == []


def test_an_own_claim_nobody_here_knows_is_released(replica: Replica) -> None:
    replica.apply_event(1, record("a", node=ME, inc="mine", urn="urn:ghost"))
    assert replica.get("ns", "a") is None and replica.take_changes() == []
    ((orphan, why, err),) = replica.take_releases()
    assert orphan.actor_ref.actor_urn == "urn:ghost" and orphan.token == 1
    assert (why, err) == ("stopped", "")


def test_a_claim_under_our_node_id_by_another_incarnation_is_left_alone(
        replica: Replica) -> None:
    # another process took this node id while we were away: not ours to release
    replica.apply_event(1, record("a", node=ME, inc="theirs", urn="urn:ghost"))
    assert replica.take_releases() == [] and replica.take_changes() == []


def test_an_own_claim_of_a_live_actor_is_adopted(replica: Replica,
                                                 local: dict[str, Ref]) -> None:
    local["urn:a"] = Ref("urn:a")
    replica.apply_event(1, record("a", node=ME, inc="mine"))
    entry = replica.get("ns", "a")
    assert entry is not None and entry.actor_ref is local["urn:a"]
    assert replica.take_changes() == [Change(None, entry)]


def test_learn_keeps_a_newer_copy(replica: Replica) -> None:
    replica.apply_event(5, record("a", seq=5))
    ref = replica.get("ns", "a").actor_ref
    replica.take_changes()
    assert replica.learn(record("a", seq=3, urn="urn:stale")) is ref
    assert replica.take_changes() == []


def test_read_feed_passes_events_in_sequence_and_skips_own_writes(
    replica: Replica, local: dict[str, Ref]
) -> None:
    own(replica, local, "mine", 2)
    event = {"k": key_json("ns", "x"), "op": "set", "node": OTHER, "inc": "i", "tok": 1,
             "urn": "u", "cls": "C", "meta": "{}"}
    read = replica.read_feed([feed_entry(1, event),
                              feed_entry(2, dict(event, k=key_json("ns", "mine")))])
    assert read.advanced and not read.resync and not read.problem
    assert [seq for seq, _ in read.batch] == [1]
    assert replica.feed_seq == 2 and replica.feed_id == b"2-0"


def test_read_feed_stops_at_a_gap(replica: Replica) -> None:
    read = replica.read_feed([feed_entry(3, {})])
    assert read.resync and not read.advanced and replica.feed_seq == 0


def test_read_feed_reports_a_step_back_as_suspect(replica: Replica) -> None:
    replica.feed_seq = 10
    read = replica.read_feed([feed_entry(4, {})])
    assert read.resync and read.suspect and not read.advanced


def test_read_feed_skips_malformed_entries_alone(replica: Replica) -> None:
    good = {"k": key_json("ns", "x"), "op": "set", "node": OTHER, "inc": "i", "tok": 3,
            "urn": "u", "cls": "C", "meta": "{}"}
    read = replica.read_feed([feed_entry(None, {}), feed_entry(1, b"not json"),
                              feed_entry(2, {"k": "bad"}), feed_entry(3, good)])
    assert read.problem and read.advanced and [s for s, _ in read.batch] == [3]
    assert replica.feed_seq == 3


def test_a_snapshot_drops_vanished_names_and_reclaims_own_ones(
    replica: Replica, local: dict[str, Ref]
) -> None:
    replica.apply_event(1, record("gone"))
    gone = replica.get("ns", "gone")
    mine = own(replica, local, "mine", 2)
    replica.take_changes()
    assert replica.apply_snapshot(snapshot(record("new", seq=3)), lost=False) is True
    changes = replica.take_changes()
    assert Change(gone, None, EXPIRED) in changes
    assert [c.new.service for c in changes if c.new is not None] == ["new"]
    assert replica.get("ns", "gone") is None
    # an own name that vanished stays, to be claimed again (the snapshot is
    # past its write, so no guard protects it any more)
    kept = replica.get("ns", "mine")
    assert kept.actor_ref is mine.actor_ref and kept.inc == "" and kept.token == mine.token
    assert replica.stale_own() == [kept] and replica.own_pending == {}
    assert replica.resyncs == 1


def test_after_a_data_loss_only_writes_after_the_snapshot_stay_guarded(
    replica: Replica, local: dict[str, Ref]
) -> None:
    own(replica, local, "before", 50)
    snap = snapshot(seq=2, writes_before=replica.write_count)
    own(replica, local, "after", 60)
    assert replica.apply_snapshot(snap, lost=True) is True
    assert set(replica.own_pending) == {key_json("ns", "after")}
    before = replica.get("ns", "before")
    assert before is not None and (before.inc, before.token, before.rev) == ("", 0, 0)
    assert replica.get("ns", "after").token == 60  # protected: left alone


def test_a_renumbered_remote_claim_after_a_data_loss_is_no_event(replica: Replica) -> None:
    replica.apply_event(40, record("a", seq=40, meta={"v": 1}))
    replica.take_changes()
    assert replica.apply_snapshot(snapshot(record("a", seq=2, meta={"v": 1})), lost=True) is False
    assert replica.take_changes() == []
    assert replica.get("ns", "a").rev == 2


def test_remove_local_drops_only_this_nodes_names(replica: Replica,
                                                  local: dict[str, Ref]) -> None:
    own(replica, local, "a", 1)
    own(replica, local, "b", 2)
    ref = local["urn:a"]
    removed = replica.remove_local(ref)
    assert [e.service for e in removed] == ["a"] and replica.get("ns", "a") is None
    assert replica.remove_local(ref) == []  # a second notice: nothing
    assert replica.count() == 1


def test_change_reason_defaults_to_expired() -> None:
    assert Change(None, None).reason == EXPIRED == UnregisterReason("expired")


def test_a_name_record_with_metadata_no_write_could_store_is_refused() -> None:
    # 100 levels parse as JSON but exceed the metadata depth limit of every
    # write: such a record must be refused at parsing (skipped alone), not
    # stored to fail every lookup_with_metadata of the name.
    deep: Any = {}
    for _ in range(100):
        deep = {"d": deep}
    raw = {"k": key_json("ns", "deep"), "op": "set", "node": OTHER, "inc": "i1", "tok": 1,
           "urn": "urn:deep", "cls": "Echo", "meta": json.dumps(deep)}
    with pytest.raises(ValueError, match="metadata"):
        parse_record(raw, rev=1, event=True)
    wide = {str(i): i for i in range(100_001)}
    raw["meta"] = json.dumps(wide)
    with pytest.raises(ValueError, match="metadata"):
        parse_record(raw, rev=1, event=True)
    raw["meta"] = json.dumps({"ok": [1, {"x": "y"}]})
    assert parse_record(raw, rev=1, event=True).metadata == {"ok": [1, {"x": "y"}]}
