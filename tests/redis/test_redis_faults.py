"""RedisBackend under faults: hostile records and events written straight into
Redis, Redis losing its data under two processes, far-future stream ids, a
Redis that refuses writes, replayed messages after a restart, stale owners,
bad input, and what a stopped node leaves behind.

Every test starts from a real redis-server on a free loopback port
(``tests/redis/conftest.py``); those that flush, reconfigure or fill Redis get a
server of their own.
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
import redis
from redis_helpers import Factory, NodeProcess, redis_nodes, wait_for
from redis_server import RedisServer, unique_prefix

from pykka_registry import (
    AlreadyRegisteredError,
    InvalidKeyError,
    InvalidMetadataError,
    NotRegisteredError,
    Registry,
    RegistryUnavailableError,
)
from pykka_registry._inspect import main as ls_main
from pykka_registry._remote import Codec, RemoteActorRef
from pykka_registry.backends.redis import RedisBackend

SECRET = "a fault-suite secret, long enough"


@pytest.fixture
def prefix() -> str:
    return unique_prefix("f")


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Iterator[Factory]:
    """Registries (nodes) on the session's Redis (or ``url=``), sharing ``prefix``."""
    with redis_nodes(redis_url, prefix, secret=SECRET) as make:
        yield make


@pytest.fixture
def children() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    yield started
    for child in started:
        child.close()


def _name(namespace: Any, service: Any) -> str:
    return json.dumps([namespace, service], separators=(",", ":"))


# Appends change events the way the claim scripts do, all in one script so a
# reader gets them in one batch: the counter is incremented for each, and
# "SEQ" in an event's tok is replaced by its sequence number.
_INJECT = """
for i = 1, #ARGV do
  local seq = redis.call('INCR', KEYS[1])
  local e = cjson.decode(ARGV[i])
  if e['tok'] == 'SEQ' then e['tok'] = seq end
  local ok = redis.pcall('XADD', KEYS[2], seq .. '-0', 's', seq, 'e', cjson.encode(e))
  if type(ok) == 'table' and ok.err then
    redis.call('XADD', KEYS[2], '*', 's', seq, 'e', cjson.encode(e))
  end
end
return redis.call('GET', KEYS[1])
"""


def _inject(client: Any, prefix: str, events: list[dict[str, Any]]) -> None:
    client.eval(_INJECT, 2, f"{prefix}:seq", f"{prefix}:events",
                *(json.dumps(e) for e in events))


def _fake_node(client: Any, prefix: str, node: str = "intruder", inc: str = "i1") -> None:
    """A "node" whose lease lives: its records look current to every reader."""
    client.set(f"{prefix}:node:{node}", inc, px=60_000)


# -- 2: data loss ----------------------------------------------------------------------


def test_after_a_data_loss_a_node_sees_the_claims_of_another_process(
    fresh_redis: RedisServer, nodes: Factory, actors: Any, prefix: str,
    children: list[NodeProcess],
) -> None:
    child = NodeProcess(fresh_redis.url, prefix, secret=SECRET)
    children.append(child)
    a = nodes(url=fresh_redis.url)
    client = fresh_redis.client()
    try:
        client.set(f"{prefix}:seq", 1000)  # a's writes get numbers far above a fresh counter
        ref = actors("mine")
        a.register("ns", "x", ref)
        a.unregister("ns", "x")  # a remembers its own write to x, numbered ~1000
        client.flushall()  # Redis loses everything: the counter restarts from 0
        # the other process claims x (its lease is gone too: it takes a new one)
        wait_for(lambda: _child_claims(child, "x"), 10.0, "the child claims x after the loss")
        seen = wait_for(lambda: isinstance(a.lookup("ns", "x"), RemoteActorRef) and
                        a.lookup("ns", "x"), 3.0, "a sees the child's claim of x")
        assert seen.node_id == child.node_id
        assert a.backend.get("ns", "x").token < 1000  # type: ignore[attr-defined]
        # and the other way round: a's new claims reach the child in order
        a.register("ns", "y", ref)
        assert child.call("wait_lookup", "ns", "y", "remote", 5)[0] == "remote"
        # a data loss is not an attack on the feed: health recovers
        wait_for(lambda: a.health_check().status == "healthy", 5.0, "a healthy again")
        assert child.call("status") == "healthy"
    finally:
        client.close()


def _child_claims(child: NodeProcess, service: str) -> bool:
    try:
        child.call("register", "ns", service, "theirs", {})
    except Exception:
        return False
    return True


# -- 3: secrets --------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", b"", "short", b"15 bytes long!!", 42])
def test_empty_short_or_odd_secrets_are_refused(redis_url: str, prefix: str,
                                                secret: Any) -> None:
    from pykka_registry.backends.redis import MIN_SECRET_BYTES, InvalidSecretError

    assert MIN_SECRET_BYTES == 16
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(InvalidSecretError) as caught:
        Registry.start(backend=RedisBackend, backend_opts={
            "url": redis_url, "prefix": prefix, "secret": secret})
    assert isinstance(caught.value, ValueError)
    if not isinstance(secret, int):
        assert "16 bytes" in str(caught.value)
    with pytest.raises(InvalidSecretError):
        Codec(secret)
    assert {t.name for t in threading.enumerate()} <= before  # nothing was started


def test_signed_means_a_real_key(nodes: Factory, monkeypatch: Any) -> None:
    assert nodes(secret="sixteen bytes!!!").backend.health()["signed"] is True  # type: ignore[attr-defined]
    monkeypatch.setenv("PYKKA_REGISTRY_SECRET", "")  # empty in the environment: unset
    # the warning is issued once per process: an earlier test may have had it
    import pykka_registry.backends.redis as redis_backend

    monkeypatch.setattr(redis_backend, "_unsigned_warning_shown", False)
    with pytest.warns(UserWarning, match="no secret"):
        unsigned = nodes(secret=None)
    assert unsigned.backend.health()["signed"] is False  # type: ignore[attr-defined]
    monkeypatch.setenv("PYKKA_REGISTRY_SECRET", "tiny")
    with pytest.raises(ValueError, match="16 bytes"):
        nodes(secret=None)


# -- 4: malformed name records --------------------------------------------------------------


def _stray_records(client: Any, prefix: str) -> list[str]:
    """Records a live (fake) node holds, each wrong in its own way."""
    _fake_node(client, prefix)
    good = {"node": "intruder", "inc": "i1", "tok": "7", "rev": "7", "urn": "urn:x",
            "cls": "X", "meta": "{}"}
    strays = {
        _name("ns", "meta-list"): dict(good, k=_name("ns", "meta-list"), meta="[1,2]"),
        _name("ns", "meta-str"): dict(good, k=_name("ns", "meta-str"), meta='"x"'),
        _name("ns", "meta-junk"): dict(good, k=_name("ns", "meta-junk"), meta="{nope"),
        '["ns",{"a":1}]': dict(good, k='["ns",{"a":1}]'),
        '["ns",true]': dict(good, k='["ns",true]'),
        '["ns",1.5]': dict(good, k='["ns",1.5]'),
        _name("ns", "no-token"): {k: v for k, v in dict(good, k=_name("ns", "no-token")).items()
                                  if k != "tok"},
        _name("ns", "bad-token"): dict(good, k=_name("ns", "bad-token"), tok="x1"),
        _name("ns", "no-urn"): dict(good, k=_name("ns", "no-urn"), urn=""),
        '[ "ns", "spaced" ]': dict(good, k='[ "ns", "spaced" ]'),  # not canonical
    }
    keys = []
    for text, fields in strays.items():
        key = f"{prefix}:name:{text}"
        client.hset(key, mapping=fields)
        keys.append(key)
    # a key filed under another name's key, and a name key that is not a hash
    client.hset(f"{prefix}:name:elsewhere", mapping=dict(good, k=_name("ns", "moved-in")))
    client.set(f"{prefix}:name:{_name('ns', 'a-string')}", "not a hash")
    keys += [f"{prefix}:name:elsewhere", f"{prefix}:name:{_name('ns', 'a-string')}"]
    client.sadd(f"{prefix}:names", *keys)
    return keys


def test_malformed_name_records_are_skipped_at_start_at_resync_and_by_ls(
    nodes: Factory, actors: Any, redis_server: RedisServer, redis_url: str, prefix: str,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:
    a = nodes()
    a.register("ns", "good", actors(), {"v": 1})
    client = redis_server.client()
    try:
        with caplog.at_level(logging.WARNING, logger="pykka_registry.redis"):
            _stray_records(client, prefix)
            b = nodes()  # reads every record at start: must start
            assert sorted(b.list_services("ns")) == ["good"]
            assert b.lookup_with_metadata("ns", "good")[1] == {"v": 1}  # type: ignore[index]
            # a re-read of everything (here: after a gap in the feed) skips them too
            client.incr(f"{prefix}:seq", 5)
            a.register("ns", "after-gap", actors())
            wait_for(lambda: b.backend.resyncs >= 1 and  # type: ignore[attr-defined]
                     sorted(b.list_services("ns")) == ["after-gap", "good"], 5.0,
                     "b re-read every name")
        warned = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
        assert len(warned) >= 8
        assert b.health_check().status in ("healthy", "degraded")  # the server lives on
        capsys.readouterr()
        assert ls_main(["--redis", redis_url, "--prefix", prefix, "--json"]) == 0
        out, err = capsys.readouterr()
        assert sorted(r["service"] for r in json.loads(out)) == ["after-gap", "good"]
        assert err.count("ls: warning: skipped") >= 10
        assert "a-string" in err and "meta-list" in err
    finally:
        client.close()


def test_a_name_key_of_the_wrong_type_does_not_block_the_name(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    a = nodes()
    client = redis_server.client()
    try:
        client.set(f"{prefix}:name:{_name('ns', 'x')}", "not a hash")
        client.sadd(f"{prefix}:names", f"{prefix}:name:{_name('ns', 'x')}")
        ref = actors()
        a.register("ns", "x", ref)  # the stray value is no claim: replaced
        assert a.lookup("ns", "x") is ref
        a.update_metadata("ns", "x", {"v": 1})
        a.unregister("ns", "x")
        assert a.lookup("ns", "x") is None
        assert a.health_check().status == "healthy"
    finally:
        client.close()


# -- 5: malformed feed events -----------------------------------------------------------


def test_one_bad_feed_event_is_skipped_alone(nodes: Factory, redis_server: RedisServer,
                                            prefix: str) -> None:
    b = nodes()
    seen: list[str] = []
    b.subscribe(lambda e: seen.append(f"{type(e).__name__}:{e.service}"), namespace="ns")
    client = redis_server.client()
    try:
        _fake_node(client, prefix)

        def claim(service: str, **extra: Any) -> dict[str, Any]:
            return dict({"op": "set", "k": _name("ns", service), "node": "intruder",
                         "inc": "i1", "tok": "SEQ", "urn": f"urn:{service}", "cls": "X",
                         "meta": "{}"}, **extra)

        no_op = claim("no-op")
        del no_op["op"]
        events = [claim("n0"), no_op, claim("n1"), claim("n2", meta="[1]"), claim("n3"),
                  claim("n4", op="explode"), claim("n5", k='["ns",{"x":1}]'), claim("n6"),
                  claim("n7", tok="not a number"), claim("n8"), {"k": 5}]
        _inject(client, prefix, events)  # one script: the reader gets one batch
        good = ["n0", "n1", "n3", "n6", "n8"]
        wait_for(lambda: sorted(b.list_services("ns")) == good, 5.0, "the good changes")
        wait_for(lambda: len(seen) >= len(good), 5.0, "their events delivered")
        assert sorted(seen) == [f"Registered:{n}" for n in good]
        # and the feed goes on past them
        _inject(client, prefix, [claim("later")])
        wait_for(lambda: "later" in b.list_services("ns"), 5.0, "a later change")
    finally:
        client.close()


# -- 6: far-future stream ids ---------------------------------------------------------------


@pytest.mark.parametrize("stream_id", ["1000000000-0", "99999999999999-0",
                                       "18446744073709551615-18446744073709551615"])
def test_a_far_future_stream_id_does_not_wedge_claims(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str, stream_id: str
) -> None:
    a, b = nodes(), nodes()
    ref = actors()
    a.register("ns", "before", ref)
    wait_for(lambda: b.count("ns") == 1, message="b follows the feed")
    client = redis_server.client()
    try:
        placed = True
        try:
            client.xadd(f"{prefix}:events", {"e": b"{}"}, id=stream_id)
        except redis.ResponseError:  # ids are already past it: nothing to push past
            assert stream_id == "1000000000-0"
            placed = False
        for i in range(10):
            a.register("ns", f"s{i}", ref)  # must not fail
        wait_for(lambda: b.count("ns") == 11, 5.0, "b sees every claim")
        resyncs = b.backend.resyncs  # type: ignore[attr-defined]
        time.sleep(1.0)  # measuring a rate: nothing to wait for but time
        assert b.backend.resyncs - resyncs <= 2  # type: ignore[attr-defined]
        a.unregister("ns", "before")
        wait_for(lambda: b.count("ns") == 10, 5.0, "and every delete")
        health = b.backend.health()  # type: ignore[attr-defined]
        if placed:  # a foreign entry in the feed: said so
            assert health["status"] == "degraded"
            assert any("change feed" in p for p in health["problems"])
    finally:
        client.close()


def test_resyncs_are_rate_limited_and_degrade_health(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    a, b = nodes(), nodes()
    a.register("ns", "x", actors())
    wait_for(lambda: b.count("ns") == 1, message="b follows the feed")
    client = redis_server.client()
    stop = threading.Event()

    def flood() -> None:  # entries whose sequence jumps: each one is a "gap"
        n = 10**6
        while not stop.is_set():
            n += 10
            client.xadd(f"{prefix}:events", {"s": n, "e": b"{}"})
            stop.wait(0.002)

    thread = threading.Thread(target=flood)
    started = time.monotonic()
    before = b.backend.resyncs  # type: ignore[attr-defined]
    thread.start()
    try:
        wait_for(lambda: b.backend.health()["status"] == "degraded", 10.0,  # type: ignore[attr-defined]
                 "degraded under a flood of gaps")
        a.register("ns", "during", actors())  # claims keep working meanwhile
    finally:
        stop.set()
        thread.join(5)
        client.close()
    elapsed = time.monotonic() - started
    done = b.backend.resyncs - before  # type: ignore[attr-defined]
    assert done <= elapsed / RedisBackend._RESYNC_INTERVAL_S + 2
    problems = b.backend.health()["problems"]  # type: ignore[attr-defined]
    assert any("re-reads" in p for p in problems)
    wait_for(lambda: "during" in b.list_services("ns"), 5.0, "b still follows")


# -- 7: replay across a restart; unnamed actors ------------------------------------------------


def _tell_blob(sender: Registry, target: RemoteActorRef, message: Any) -> bytes:
    """A signed envelope for ``target.tell(message)``, as ``sender`` sends them."""
    header = {"k": "tell", "id": f"captured-{time.monotonic_ns()}",
              "src": sender.backend.node_id,  # type: ignore[attr-defined]
              "dst": target.node_id, "di": target._link.node.inc, "to": target.actor_urn,
              "t": time.time(), "ttl": 0.0}
    return Codec(SECRET.encode()).encode(header, pickle.dumps(message))


def test_a_captured_message_is_refused_after_the_node_restarts(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    a = nodes(node_id="fixed-node")
    b = nodes()
    ref = actors("target")
    a.register("ns", "svc", ref)
    target = wait_for(lambda: b.lookup("ns", "svc"), message="b sees the name")
    captured = _tell_blob(b, target, "pay 100")
    client = redis_server.client()
    try:
        client.xadd(f"{prefix}:inbox:fixed-node", {"m": captured})
        wait_for(lambda: ref.ask("received", timeout=5) == ["pay 100"], message="delivered once")
        a.stop()
        a2 = nodes(node_id="fixed-node")  # the same node, restarted in this process
        a2.register("ns", "svc", ref)
        dropped = a2.backend.health()["messages_dropped"]  # type: ignore[attr-defined]
        client.xadd(f"{prefix}:inbox:fixed-node", {"m": captured})  # the replay
        wait_for(lambda: a2.backend.health()["messages_dropped"] > dropped,  # type: ignore[attr-defined]
                 message="the replay dropped")
        fresh = wait_for(lambda: (lambda r: r if isinstance(r, RemoteActorRef) and
                                  r._link.node.inc == a2.backend._inc else None)(  # type: ignore[attr-defined]
            b.lookup("ns", "svc")), message="b sees the new claim")
        fresh.tell("pay 5")  # a message sent now still arrives
        wait_for(lambda: ref.ask("received", timeout=5) == ["pay 100", "pay 5"],
                 message="the new message, and only it")
    finally:
        client.close()


def test_messages_reach_only_actors_named_here(nodes: Factory, actors: Any,
                                               redis_server: RedisServer, prefix: str) -> None:
    a, b = nodes(), nodes()
    named, unnamed = actors("named"), actors("unnamed")
    a.register("ns", "svc", named)
    target = wait_for(lambda: b.lookup("ns", "svc"), message="b sees the name")
    # a forged reference to a live actor of a's process that holds no name
    forged = RemoteActorRef(unnamed.actor_urn, "Recorder", target.node_id, target._link)
    dropped = a.backend.health()["messages_dropped"]  # type: ignore[attr-defined]
    forged.tell("psst")
    with pytest.raises(pykka.ActorDeadError, match="never named"):
        forged.ask("anyone?", timeout=5)
    target.tell("hello")
    wait_for(lambda: named.ask("received", timeout=5) == ["hello"], message="named one gets it")
    assert unnamed.ask("received", timeout=5) == []
    assert a.backend.health()["messages_dropped"] == dropped  # type: ignore[attr-defined]


# -- 8: a stale owner's metadata ------------------------------------------------------------


def test_a_stale_owner_cannot_overwrite_the_new_owners_metadata(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    a, b = nodes(lease_ttl=30.0), nodes()  # a refreshes its lease every 10 s
    a.register("ns", "x", actors("stale"), {"owner": "a"})
    client = redis_server.client()
    try:
        client.delete(f"{prefix}:node:{a.backend.node_id}")  # type: ignore[attr-defined]
        theirs = actors("theirs")
        wait_for(lambda: _try_register(b, "ns", "x", theirs, {"owner": "b"}), 5.0,
                 "b claims the lapsed name")
        refused = 0
        for _ in range(40):  # the stale owner keeps trying, as a woken process would
            try:
                a.update_metadata("ns", "x", {"owner": "a", "stale": True})
            except NotRegisteredError:
                refused += 1
        assert refused == 40
        record = client.hgetall(f"{prefix}:name:{_name('ns', 'x')}")
        assert record[b"urn"].decode() == theirs.actor_urn
        assert json.loads(record[b"meta"]) == {"owner": "b"}
        wait_for(lambda: a.lookup_with_metadata("ns", "x") is not None and
                 a.lookup_with_metadata("ns", "x")[1] == {"owner": "b"},  # type: ignore[index]
                 message="a sees b's metadata")
    finally:
        client.close()


def _try_register(registry: Registry, ns: Any, service: Any, ref: Any, meta: Any) -> bool:
    try:
        registry.register(ns, service, ref, meta)
    except AlreadyRegisteredError:
        return False
    return True


# -- 16: a Redis that refuses writes ------------------------------------------------------------


def test_health_reflects_refused_writes(fresh_redis: RedisServer, nodes: Factory,
                                        actors: Any) -> None:
    registry = nodes(url=fresh_redis.url, call_timeout=2.0)
    registry.register("ns", "before", actors())
    client = fresh_redis.client()
    try:
        client.config_set("maxmemory", 1)  # every write is refused (OOM), reads work
        with pytest.raises(RegistryUnavailableError) as caught:
            registry.register("ns", "during", actors())
        assert "out of reach" not in str(caught.value)
        assert "refused" in str(caught.value) and "maxmemory" in str(caught.value)
        wait_for(lambda: registry.health_check().status == "degraded", 3.0, "degraded")
        health = registry.backend.health()  # type: ignore[attr-defined]
        assert health["connected"] is True and health["writable"] is False
        assert any("refuses writes" in p for p in health["problems"])
        assert registry.lookup("ns", "before") is not None
        client.config_set("maxmemory", 0)
        wait_for(lambda: registry.health_check().status == "healthy", 5.0, "healthy again")
        registry.register("ns", "after", actors())
    finally:
        client.close()


def test_health_notices_refused_writes_without_any_write(fresh_redis: RedisServer,
                                                        nodes: Factory) -> None:
    registry = nodes(url=fresh_redis.url)
    client = fresh_redis.client()
    try:
        client.config_set("maxmemory", 1)
        wait_for(lambda: registry.health_check().status == "degraded", 3.0,
                 "degraded from the lease thread's probe alone")
        client.config_set("maxmemory", 0)
        wait_for(lambda: registry.health_check().status == "healthy", 5.0, "healthy again")
    finally:
        client.close()


# -- 14: bad input -------------------------------------------------------------------------


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


class _BadItems(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("items() raised on purpose")


def _nested_tuple(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = (value,)
    return value


@pytest.mark.parametrize("key", [
    ("ns", "lone \ud800 surrogate"), ("lone \udc00", "svc"), ("ns", ("a", "\ud83d")),
    ("ns", 10**5000), ("ns", 2**63), ("ns", _nested_tuple(3000)),
])
def test_keys_the_backend_cannot_store_are_invalid(nodes: Factory, actors: Any,
                                                   key: Any) -> None:
    registry = nodes()
    with pytest.raises(InvalidKeyError):
        registry.register(key[0], key[1], actors())
    assert registry.count() == 0


@pytest.mark.parametrize("metadata", [
    {"s": "lone \ud800"}, {"lone \udfff": 1}, {"n": [{"deep": "\ud800"}]}, {"big": 10**5000},
    {"deep": _deep(3000)}, _cyclic(), _BadItems(a=1), {"nested": _BadItems(a=1)},
])
def test_metadata_the_backend_cannot_store_is_invalid(nodes: Factory, actors: Any,
                                                      metadata: Any) -> None:
    registry = nodes()
    ref = actors()
    with pytest.raises(InvalidMetadataError):
        registry.register("ns", "svc", ref, metadata)
    assert registry.count() == 0
    registry.register("ns", "svc", ref, {"ok": True})
    with pytest.raises(InvalidMetadataError):
        registry.update_metadata("ns", "svc", metadata)
    assert registry.lookup_with_metadata("ns", "svc")[1] == {"ok": True}  # type: ignore[index]


def test_str_and_int_enums_are_stored_as_their_values(nodes: Factory, actors: Any) -> None:
    import enum

    class Colour(str, enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        ONE = 1

    a, b = nodes(), nodes()
    a.register(Colour.RED, Level.ONE, actors(), {Colour.RED: Colour.RED, "level": Level.ONE})
    assert a.lookup("red", 1) is not None  # equal keys, as in any dict
    found = wait_for(lambda: b.lookup_with_metadata("red", 1), message="b sees it")
    assert found[1] == {"red": "red", "level": 1}
    assert type(found[1]["red"]) is str


# -- hygiene -------------------------------------------------------------------------------


def _keys(client: Any, pattern: str) -> list[str]:
    return sorted(k.decode() for k in client.scan_iter(match=pattern, count=1000))


def test_a_stopped_node_leaves_no_key_and_the_last_one_empties_the_prefix(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    a, b = nodes(), nodes()
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    ref, other = actors("a"), actors("b")
    a.register("ns", "a1", ref, {"v": 1})
    a.register("ns", "a2", ref)
    b.register("ns", "b1", other)
    target = wait_for(lambda: b.lookup("ns", "a1"), message="b sees a1")
    assert target.ask("hi", timeout=5)[0] == "echo"
    remote = wait_for(lambda: a.lookup("ns", "b1"), message="a sees b1")
    remote.tell("hello")
    wait_for(lambda: other.ask("received", timeout=5) == ["hello"], message="told")
    client = redis_server.client()
    try:
        assert any(a_id in k for k in _keys(client, f"{prefix}:*"))
        a.stop()
        assert [k for k in _keys(client, f"{prefix}:*") if a_id in k] == []
        wait_for(lambda: b.count("ns") == 1, message="b dropped a's names")
        assert sorted(r["service"] for r in _ls(client, prefix)) == ["b1"]
        b.stop()
        assert _keys(client, f"{prefix}:*") == []
    finally:
        client.close()


def test_the_prefix_is_kept_while_another_node_lives(nodes: Factory, actors: Any,
                                                     redis_server: RedisServer,
                                                     prefix: str) -> None:
    a, b = nodes(), nodes()
    b.register("ns", "b1", actors())
    a.stop()  # not the last one: b's names and the shared keys stay
    client = redis_server.client()
    try:
        assert sorted(r["service"] for r in _ls(client, prefix)) == ["b1"]
        assert client.exists(f"{prefix}:epoch") and client.exists(f"{prefix}:seq")
        c = nodes()  # a newcomer still sees b's name
        assert c.lookup("ns", "b1") is not None
    finally:
        client.close()


def test_the_last_node_to_stop_also_clears_what_killed_nodes_left(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str,
    children: list[NodeProcess],
) -> None:
    child = NodeProcess(redis_server.url, prefix, secret=SECRET)
    children.append(child)
    child.call("register", "ns", "theirs", "c", {})
    a = nodes()
    a.register("ns", "mine", actors())
    wait_for(lambda: a.lookup("ns", "theirs") is not None, message="a sees the child")
    child.sigkill()  # leaves its lease (until it expires), names, held set, info
    client = redis_server.client()
    try:
        assert any(child.node_id in k for k in _keys(client, f"{prefix}:*"))
        a.stop()
        # the child's lease may still run for up to lease_ttl: then a is not
        # the last live node and keeps the prefix; once it has lapsed, a later
        # node that stops clears everything
        b = nodes()
        wait_for(lambda: b.lookup("ns", "theirs") is None, 5.0, "the child's lease lapsed")
        b.stop()
        assert _keys(client, f"{prefix}:*") == []
    finally:
        client.close()


def _ls(client: Any, prefix: str) -> list[dict[str, Any]]:
    from pykka_registry._inspect import list_names

    return list_names(client, prefix)
