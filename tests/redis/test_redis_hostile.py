"""RedisBackend and ``ls`` against hostile values written straight into Redis:
records whose strings are not valid Unicode or whose metadata holds NaN,
stray lease and info keys, shared keys of the wrong type, far-future and
exhausted stream ids in the group feed and in inboxes, a node id reused while
its old owner was paused, and what a stopped node leaves behind.

Every test starts from a real redis-server on a free loopback port
(``tests/redis/conftest.py``).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from redis_helpers import Factory, redis_nodes, wait_for
from redis_server import RedisServer, unique_prefix

from pykka_registry._inspect import list_groups, list_names
from pykka_registry._inspect import main as ls_main

SECRET = "a hostile-data-suite secret, long enough"


@pytest.fixture
def prefix() -> str:
    return unique_prefix("h")


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Iterator[Factory]:
    with redis_nodes(redis_url, prefix, secret=SECRET) as make:
        yield make


def _strict_json(text: str) -> Any:
    """``text`` parsed as JSON that any reader accepts: no NaN, and
    encodable as UTF-8 (no lone surrogate)."""
    text.encode("utf-8")

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in the output")

    return json.loads(text, parse_constant=refuse)


def _ls(url: str, prefix: str, *extra: str) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        status = ls_main(["--redis", url, "--prefix", prefix, "--json", *extra], out=out)
    return status, (_strict_json(out.getvalue()) if status == 0 else None), err.getvalue()


def _record(client: Any, prefix: str, service: str, meta: str, node: str = "evil",
            cls: str = "C", tok: int = 1) -> None:
    """A name record of the fake live node ``node`` (its lease: ``i1``)."""
    kjson = json.dumps(["ns", service], separators=(",", ":"))
    key = f"{prefix}:name:{kjson}"
    client.hset(key, mapping={"k": kjson, "node": node, "inc": "i1", "tok": tok, "rev": tok,
                              "urn": f"urn-{service}", "cls": cls, "meta": meta})
    client.sadd(f"{prefix}:names", key)
    client.set(f"{prefix}:node:{node}", "i1", px=60_000)


# A string that is not valid Unicode cannot be written as UTF-8 (json.loads of
# the escape gives a lone surrogate); NaN and Infinity are not JSON.
HOSTILE_META = {
    "lone surrogate value": '{"a": "\\ud800"}',
    "lone surrogate key": '{"\\udc00": 1}',
    "NaN": '{"a": NaN}',
    "Infinity": '{"a": [1, -Infinity]}',
    "a 5000-digit int": '{"a": ' + "9" * 5000 + "}",
}


@pytest.mark.parametrize("meta", list(HOSTILE_META.values()), ids=list(HOSTILE_META))
def test_a_name_record_with_unprintable_metadata_is_skipped_by_ls_and_nodes(
    nodes: Factory, client: Any, redis_url: str, prefix: str, meta: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _record(client, prefix, "ok", "{}")
    _record(client, prefix, "bad", meta, tok=2)
    status, rows, err = _ls(redis_url, prefix)
    assert status == 0
    assert [r["service"] for r in rows] == ["ok"]
    assert "bad" in err and "warning" in err
    with caplog.at_level(logging.WARNING, logger="pykka_registry.redis"):
        b = nodes()  # the snapshot reader skips it too
    assert b.list_services("ns") == ["ok"]
    assert any("malformed" in r.getMessage() for r in caplog.records)


def test_a_name_record_with_a_lone_surrogate_in_a_text_field_is_skipped(
    nodes: Factory, client: Any, redis_url: str, prefix: str
) -> None:
    _record(client, prefix, "ok", "{}")
    # in the stored hash the field is bytes: invalid UTF-8 (an encoded surrogate)
    _record(client, prefix, "bad", "{}", tok=2)
    client.hset(f'{prefix}:name:["ns","bad"]', "cls", b"C\xed\xa0\x80")
    status, rows, _err = _ls(redis_url, prefix)
    assert status == 0 and [r["service"] for r in rows] == ["ok"]
    assert nodes().list_services("ns") == ["ok"]


def test_a_feed_event_with_a_lone_surrogate_is_skipped_alone(
    nodes: Factory, client: Any, prefix: str
) -> None:
    b = nodes()
    seq = client.incr(f"{prefix}:seq")
    client.set(f"{prefix}:node:evil", "i1", px=60_000)
    bad = {"op": "set", "k": '["ns","bad"]', "node": "evil", "inc": "i1", "tok": seq,
           "urn": "u1", "cls": "C\ud800", "meta": "{}"}
    # json.dumps writes the lone surrogate as the escape \ud800 (valid ASCII)
    client.xadd(f"{prefix}:events", {"s": seq, "e": json.dumps(bad)})
    seq = client.incr(f"{prefix}:seq")
    good = dict(bad, k='["ns","good"]', tok=seq, cls="C", urn="u2")
    client.xadd(f"{prefix}:events", {"s": seq, "e": json.dumps(good)})
    wait_for(lambda: b.list_services("ns") == ["good"], 5.0, "the good event applied")
    assert b.list_services("ns") == ["good"]


@pytest.mark.parametrize("meta", ['{"x": NaN}', '{"x": "\\ud800"}'], ids=["NaN", "surrogate"])
def test_a_group_record_with_unprintable_metadata_is_skipped(
    nodes: Factory, client: Any, redis_url: str, prefix: str, meta: str
) -> None:
    client.set(f"{prefix}:node:evil", "i1", px=60_000)
    client.sadd(f"{prefix}:gnodes", "evil")
    for urn, m in (("u1", "{}"), ("u2", meta)):
        client.hset(f"{prefix}:gmem:evil", f'{urn} ["ns","g"]', json.dumps(
            {"node": "evil", "inc": "i1", "k": '["ns","g"]', "urn": urn, "cls": "C",
             "meta": m, "n": 1, "s": 1}))
    status, members, err = _ls(redis_url, prefix, "--groups")
    assert status == 0 and [m["urn"] for m in members] == ["u1"]
    assert "u2" in err
    b = nodes()
    assert [ref.actor_urn for ref in b.members("ns", "g")] == ["u1"]


# -- stray lease and info keys -----------------------------------------------------------


def _lease_hash(client: Any, prefix: str) -> None:
    client.delete(f"{prefix}:node:evil")
    client.hset(f"{prefix}:node:evil", "a", 1)


STRAY = {
    "a lease key that is a hash": _lease_hash,
    "an info key that is a hash": lambda c, p: c.hset(f"{p}:nodeinfo:evil", "a", 1),
    "an info record nested too deep": lambda c, p: c.set(f"{p}:nodeinfo:evil", "[" * 100_000),
    "an info record with a NaN ttl": lambda c, p: c.set(f"{p}:nodeinfo:evil",
                                                        '{"ttl_ms": NaN}'),
}


@pytest.mark.parametrize("spoil", list(STRAY.values()), ids=list(STRAY))
def test_a_stray_lease_or_info_key_is_skipped_alone_by_ls(
    nodes: Factory, client: Any, redis_url: str, prefix: str, spoil: Any
) -> None:
    a = nodes()
    from redis_helpers import recorders

    with recorders() as start:
        a.register("ns", "mine", start("a"))
        a.join("ns", "g", start("b"))
        _record(client, prefix, "theirs", "{}")
        client.sadd(f"{prefix}:gnodes", "evil")
        spoil(client, prefix)
        status, rows, err = _ls(redis_url, prefix)
        assert status == 0, err
        assert "mine" in [r["service"] for r in rows]
        mine = next(r for r in rows if r["service"] == "mine")
        assert isinstance(mine["lease_age_s"], float)
        assert "evil" in err
        status, members, err = _ls(redis_url, prefix, "--groups")
        assert status == 0, err
        assert [m["group"] for m in members] == ["g"]


@pytest.mark.parametrize("key", ["names", "gnodes"])
def test_a_shared_set_of_the_wrong_type_is_reported_not_fatal_to_ls(
    client: Any, redis_url: str, prefix: str, key: str
) -> None:
    _record(client, prefix, "ok", "{}")
    client.sadd(f"{prefix}:gnodes", "evil")
    client.delete(f"{prefix}:{key}")
    client.set(f"{prefix}:{key}", "not a set")
    names = list_names(client, prefix, warn=lambda m: None)
    groups = list_groups(client, prefix, warn=lambda m: None)
    assert names == ([] if key == "names" else names) and groups == []
    for extra in ((), ("--groups",)):
        status, _rows, err = _ls(redis_url, prefix, *extra)
        assert status == 0
    assert f"{prefix}:{key}" in err or key == "names"


# -- wording: refused vs out of reach ----------------------------------------------------


def test_an_error_reply_says_refused_and_a_dead_port_says_out_of_reach(
    fresh_redis: RedisServer, prefix: str
) -> None:
    import socket

    from redis_helpers import recorders

    from pykka_registry import Registry, RegistryUnavailableError
    from pykka_registry.backends.redis import RedisBackend

    def start(url: str) -> Registry:
        return Registry.start(backend=RedisBackend, backend_opts={
            "url": url, "prefix": prefix, "lease_ttl": 1.0, "secret": SECRET},
            call_timeout=2.0)

    with redis_nodes(fresh_redis.url, prefix, secret=SECRET) as make, recorders() as actor:
        a = make()
        ref = actor("a")
        a.register("ns", "x", ref)
        client = fresh_redis.client()
        try:
            client.config_set("maxmemory", 1)  # every write is refused (OOM)
            for call in (lambda: a.register("ns", "y", ref), lambda: a.join("ns", "g", ref)):
                with pytest.raises(RegistryUnavailableError) as caught:
                    call()
                assert "refused: OOM" in str(caught.value), str(caught.value)
                assert "out of reach" not in str(caught.value)
            with pytest.raises(RegistryUnavailableError) as caught:
                start(fresh_redis.url)
            assert "refused: OOM" in str(caught.value), str(caught.value)
        finally:
            client.config_set("maxmemory", 0)
            client.close()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(RegistryUnavailableError) as caught:
        start(f"redis://127.0.0.1:{port}/0")
    assert "out of reach" in str(caught.value) and "refused:" not in str(caught.value)


# -- no default server ---------------------------------------------------------------------


@pytest.mark.parametrize("opts", [{}, {"url": None}, {"url": ""}, {"url": 6379},
                                  {"url": "localhost:6379"}, {"url": "http://x:pw@h/0"}],
                         ids=["absent", "None", "empty", "an int", "no scheme", "http"])
def test_the_redis_backend_needs_a_url_and_connects_nowhere_without_one(
    opts: dict[str, Any], monkeypatch: Any
) -> None:
    import redis

    from pykka_registry import Registry
    from pykka_registry.backends.redis import InvalidRedisUrlError

    def no_connection(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a connection was made")

    monkeypatch.setattr(redis.Redis, "from_url", no_connection)
    for backend in ("redis", None):
        from pykka_registry.backends.redis import RedisBackend

        with pytest.raises(InvalidRedisUrlError) as caught:
            Registry.start(backend=backend or RedisBackend,
                           backend_opts={"prefix": "p", "secret": SECRET, **opts})
        assert isinstance(caught.value, ValueError)
        assert "url" in str(caught.value)
        assert "pw" not in str(caught.value)


# -- the group change feed: far-future and exhausted stream ids ---------------------------


@pytest.mark.parametrize("stream_id", ["99999999999999-0",
                                       "18446744073709551615-18446744073709551615"],
                         ids=["far future", "the last id"])
def test_a_far_future_group_stream_id_does_not_wedge_joins_and_leaves(
    nodes: Factory, client: Any, prefix: str, stream_id: str
) -> None:
    import time

    from redis_helpers import recorders

    a, b = nodes(), nodes()
    with recorders() as start:
        first = start("first")
        a.join("ns", "g", first)
        wait_for(lambda: len(b.members("ns", "g")) == 1, message="b follows the group feed")
        client.xadd(f"{prefix}:gevents", {"e": b"{}"}, id=stream_id)
        refs = [start(str(i)) for i in range(5)]
        for ref in refs:
            a.join("ns", "g", ref)  # must not fail
        wait_for(lambda: len(b.members("ns", "g")) == 6, 10.0, "b sees every join")
        resyncs = b.backend._groups.resyncs  # type: ignore[attr-defined]
        time.sleep(1.0)  # measuring a rate: nothing to wait for but time
        assert b.backend._groups.resyncs - resyncs <= 2  # type: ignore[attr-defined]
        a.leave("ns", "g", first)
        wait_for(lambda: len(b.members("ns", "g")) == 5, 10.0, "and every leave")
        health = b.backend.health()  # type: ignore[attr-defined]
        assert health["status"] == "degraded"
        assert any("groups: change feed" in p for p in health["problems"]), health


# -- inboxes: far-future and exhausted ids, wrong types; what a stop leaves -----------------


def _spoil_inbox(client: Any, key: str, how: str) -> None:
    if how == "a string":
        client.delete(key)
        client.set(key, "not a stream")
    else:
        client.xadd(key, {"m": b"junk"}, id=how)


@pytest.mark.parametrize("how", ["99999999999999-0",
                                 "18446744073709551615-18446744073709551615", "a string"],
                         ids=["far future", "the last id", "a string"])
def test_a_spoilt_inbox_does_not_wedge_delivery_and_a_stop_leaves_no_key(
    nodes: Factory, client: Any, prefix: str, how: str
) -> None:
    from redis_helpers import recorders

    a, b = nodes(), nodes()
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    with recorders() as start:
        a.register("ns", "x", start("a"))
        a.join("ns", "g", start("m"))
        remote = wait_for(lambda: b.lookup("ns", "x"), message="b sees a's name")
        assert remote.ask("hi", timeout=5)[0] == "echo"
        _spoil_inbox(client, f"{prefix}:inbox:{a_id}", how)
        for i in range(3):  # delivery goes on (the first may be lost with a replaced inbox)
            message = f"m{i}"
            answer = wait_for(lambda m=message: _try_ask(remote, m), 10.0, "an answer")
            assert answer[0] == "echo"
        remote.tell("told")
        a.stop()
        left = [k.decode() for k in client.scan_iter(match=f"{prefix}:*") if a_id.encode() in k]
        assert left == []
        b.stop()
        assert list(client.scan_iter(match=f"{prefix}:*")) == []


def _try_ask(ref: Any, message: str) -> Any:
    try:
        return ref.ask(message, timeout=1.0)
    except Exception:  # a timeout while the inbox is replaced: ask again
        return None


# -- fencing by incarnation: a node id reused while its old owner was away -----------------


def test_a_stale_owner_cannot_touch_the_claims_of_a_new_process_with_its_node_id(
    nodes: Factory, client: Any, prefix: str
) -> None:
    import time

    from redis_helpers import recorders

    from pykka_registry import RegistryUnavailableError

    with recorders() as start:
        old = nodes(node_id="N")
        old.register("ns", "old", start("old"))
        old.join("ns", "g", start("old-member"))
        client.delete(f"{prefix}:node:N")  # its lease lapsed (it was paused, say)
        new = nodes(node_id="N")  # another process takes the node id
        new.register("ns", "new", start("new"))
        new.join("ns", "g", start("new-member"))
        watcher = nodes()
        new_lease = client.get(f"{prefix}:node:N")

        def fenced() -> bool:
            problems = old.backend.health()["problems"]  # type: ignore[attr-defined]
            return any("taken by another process" in p for p in problems)

        deadline = time.monotonic() + 2.0  # a few lease ticks of the old owner
        while time.monotonic() < deadline:  # (no event to wait for: nothing may happen)
            assert client.get(f"{prefix}:node:N") == new_lease
            time.sleep(0.1)
        assert watcher.lookup("ns", "new") is not None
        assert watcher.lookup("ns", "old") is None
        assert len(watcher.members("ns", "g")) == 1
        wait_for(fenced, 5.0, "the old owner noticed it was fenced out")
        with pytest.raises(RegistryUnavailableError, match="taken by another process"):
            old.register("ns", "again", start("again"))
        old.stop()  # fenced too: the new process's keys stay
        assert client.get(f"{prefix}:node:N") == new_lease
        assert client.exists(f'{prefix}:name:["ns","new"]')
        assert client.sismember(f"{prefix}:nodes", "N")
        remote = wait_for(lambda: watcher.lookup("ns", "new"), message="still there")
        assert remote.ask("hi", timeout=5)[0] == "echo"
        assert len(watcher.members("ns", "g")) == 1
        assert new.backend.health()["status"] == "healthy"  # type: ignore[attr-defined]


# -- shared keys of the wrong type: typed errors, health says why --------------------------


def _seq_hash(client: Any, key: str) -> None:
    client.delete(key)
    client.hset(key, "a", 1)


SPOILT_SEQ = {
    "a hash": (_seq_hash, "is a hash"),
    "a string": (lambda c, k: c.set(k, "abc"), "is not a counter"),
    "at 2**63-1": (lambda c, k: c.set(k, str(2**63 - 1)), "highest value"),
}


@pytest.mark.parametrize("spoil,said", list(SPOILT_SEQ.values()), ids=list(SPOILT_SEQ))
def test_a_spoilt_counter_gives_typed_errors_and_health_says_why(
    nodes: Factory, client: Any, prefix: str, spoil: Any, said: str
) -> None:
    import time

    import redis
    from redis_helpers import recorders

    from pykka_registry import RegistryUnavailableError

    a, b = nodes(), nodes()
    with recorders() as start:
        ref = start("a")
        a.register("ns", "first", ref)
        wait_for(lambda: b.lookup("ns", "first") is not None, message="b follows")
        spoil(client, f"{prefix}:seq")
        for call in (lambda: a.register("ns", "x", ref),
                     lambda: a.update_metadata("ns", "first", {"v": 1}),
                     lambda: a.unregister("ns", "first")):
            with pytest.raises(RegistryUnavailableError) as caught:
                call()
            assert not isinstance(caught.value, redis.RedisError)
            assert "refused: " in str(caught.value)

        def says_why(registry: Any) -> bool:
            health = registry.backend.health()
            return health["status"] == "degraded" and any(
                f"{prefix}:seq" in p and said in p for p in health["problems"])

        wait_for(lambda: says_why(a) and says_why(b), 5.0, "health says why")
        time.sleep(1.0)  # several lease refreshes (probe writes) later: still said
        assert says_why(a) and says_why(b)
        assert a.lookup("ns", "first") is ref  # reads go on
        client.delete(f"{prefix}:seq")  # repaired (as after a data loss)
        wait_for(lambda: _registers(a, ref), 10.0, "writes work again")
        wait_for(lambda: b.lookup("ns", "again") is not None, 10.0, "b sees the write")
        wait_for(lambda: not says_why(a) and not says_why(b), 5.0, "health recovers")


def _registers(registry: Any, ref: Any) -> bool:
    from pykka_registry import RegistryUnavailableError

    try:
        registry.register("ns", "again", ref)
    except RegistryUnavailableError:
        return False
    return True


@pytest.mark.parametrize("key", ["names", "events", "nodes", "epoch"])
def test_a_shared_key_of_the_wrong_type_is_said_or_repaired(
    nodes: Factory, client: Any, prefix: str, key: str
) -> None:
    from redis_helpers import recorders

    a = nodes()
    with recorders() as start:
        ref = start("a")
        a.register("ns", "first", ref)
        client.delete(f"{prefix}:{key}")
        client.hset(f"{prefix}:{key}", "stray", 1)
        if key in ("epoch", "events"):  # replaced: as a data loss, then healthy again
            wait_for(lambda: client.type(f"{prefix}:{key}") in (b"string", b"stream", b"none"),
                     5.0, "replaced")
            wait_for(lambda: _registers(a, ref), 10.0, "writes work")
            if key == "epoch":  # (a broken feed read stays reported for 30 s)
                wait_for(lambda: a.backend.health()["status"] == "healthy",  # type: ignore[attr-defined]
                         10.0, "healthy again")
        else:
            wait_for(lambda: any(f"{prefix}:{key} is a hash" in p for p in  # type: ignore[attr-defined]
                                 a.backend.health()["problems"]), 5.0, "health says why")


def test_a_stray_lease_key_of_another_type_does_not_stop_nodes(
    nodes: Factory, client: Any, prefix: str
) -> None:
    from redis_helpers import recorders

    _record(client, prefix, "theirs", "{}")  # a name of node "evil"...
    client.sadd(f"{prefix}:gnodes", "evil")  # ...and a member of it
    client.hset(f"{prefix}:gmem:evil", 'u ["ns","g"]', json.dumps(
        {"node": "evil", "inc": "i1", "k": '["ns","g"]', "urn": "u", "cls": "C", "meta": "{}",
         "n": 1, "s": 1}))
    client.sadd(f"{prefix}:held:evil", "not a name key")
    _lease_hash(client, prefix)  # ...whose lease key is a hash: no lease
    client.delete(f"{prefix}:held:evil")
    client.set(f"{prefix}:held:evil", "not a set")
    with recorders() as start:
        a = nodes()  # starts (every script reads the lease as none)
        assert a.list_services("ns") == []
        ref = start("a")
        a.register("ns", "theirs", ref)  # the name is free: "evil" has no lease
        assert a.lookup("ns", "theirs") is ref
        a.join("ns", "g", ref)
        assert [m.actor_urn for m in a.members("ns", "g")] == [ref.actor_urn]
        b = nodes()
        assert b.lookup("ns", "theirs") is not None
        assert a.backend.health()["status"] == "healthy"  # type: ignore[attr-defined]


def test_list_nodes_skips_a_stray_lease_and_reads_bad_info_as_unknown(
    nodes: Factory, client: Any, prefix: str
) -> None:
    from pykka_registry._inspect import list_nodes

    a = nodes()
    a_id = a.backend.node_id  # type: ignore[attr-defined]
    _lease_hash(client, prefix)  # "evil": a lease key of another type
    for node, info in (("nan", '{"ttl_ms": NaN, "host": "h", "pid": 1}'),
                       ("deep", "[" * 100_000),
                       ("odd", '{"host": "\\ud800", "pid": 1e400, "since": "x"}')):
        client.set(f"{prefix}:node:{node}", "i1", px=60_000)
        client.set(f"{prefix}:nodeinfo:{node}", info, px=60_000)
    warned: list[str] = []
    listed = list_nodes(client, prefix, warn=warned.append)
    assert [n["node"] for n in listed] == sorted([a_id, "deep", "nan", "odd"])
    mine = next(n for n in listed if n["node"] == a_id)
    assert mine["lease_ttl_s"] == 1.0 and isinstance(mine["lease_age_s"], float)
    assert isinstance(mine["pid"], int) and isinstance(mine["host"], str)
    odd = next(n for n in listed if n["node"] == "odd")
    assert (odd["host"], odd["pid"], odd["since"], odd["lease_ttl_s"]) == (None,) * 4
    _strict_json(json.dumps(listed, ensure_ascii=False))
    assert any("evil" in w for w in warned)
