"""RedisBackend in one process: several registries (nodes) on one real Redis.

Multi-process behaviour (SIGKILL, SIGSTOP, contention...) is in
``test_redis_processes.py``; the generic behaviour in ``test_redis_conformance.py``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from redis_helpers import (
    GATE,
    Evil,
    Factory,
    redis_nodes,
    stale_writes,
    wait_for,
)
from redis_server import RedisServer, unique_prefix

import pykka_registry
import pykka_registry.backends.redis as redis_backend_module
from pykka_registry import (
    AlreadyRegisteredError,
    InvalidKeyError,
    InvalidMetadataError,
    NotRegisteredError,
    Registry,
    RegistryTimeoutError,
    RegistryUnavailableError,
)
from pykka_registry._inspect import main as ls_main
from pykka_registry._remote import MAGIC, Codec, RemoteActorRef, RemoteTimeoutError
from pykka_registry.backends.redis import NotHeldHereError, RedisBackend, UnsignedMessagesWarning

SECRET = "a test secret of enough bytes"


@pytest.fixture
def prefix() -> str:
    return unique_prefix("b")


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Iterator[Factory]:
    """Start registries (nodes) on the session's Redis, all sharing ``prefix``."""
    with redis_nodes(redis_url, prefix) as make:
        yield make


def remote(registry: Registry, ns: Any, service: Any, timeout: float = 5.0) -> RemoteActorRef:
    ref = wait_for(lambda: registry.lookup(ns, service), timeout, f"{service!r} visible")
    assert isinstance(ref, RemoteActorRef)
    return ref


# -- keys and metadata ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.5, True, None, b"x", ("a", 1.5), frozenset({1})])
def test_keys_other_than_str_int_and_tuples_are_rejected(nodes: Factory, actors: Any,
                                                         bad: Any) -> None:
    registry = nodes()
    with pytest.raises(InvalidKeyError):
        registry.register("ns", bad, actors())
    with pytest.raises(InvalidKeyError):
        registry.register(bad, "svc", actors())
    assert registry.count() == 0


@pytest.mark.parametrize("bad", [
    {1: "int key"}, {"s": {1, 2}}, {"nan": float("nan")}, {"obj": object()},
    {"nested": {"deep": [{2: "x"}]}},
])
def test_metadata_must_be_json(nodes: Factory, actors: Any, bad: Any) -> None:
    registry = nodes()
    with pytest.raises(InvalidMetadataError):
        registry.register("ns", "svc", actors(), bad)
    assert registry.count() == 0


def test_keys_and_metadata_mean_the_same_in_every_node(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    ref = actors()
    keys = [("ns", "s"), (7, 8), (("job", 3), ("a", ("b", 1))), ("ünï", "cödé")]
    for namespace, service in keys:
        a.register(namespace, service, ref, {"t": (1, 2), "d": {"x": None}, "f": 1.5})
    for namespace, service in keys:
        assert a.lookup_with_metadata(namespace, service) == (
            ref, {"t": [1, 2], "d": {"x": None}, "f": 1.5})  # tuples come back as lists
        seen = remote(b, namespace, service)
        assert seen.actor_urn == ref.actor_urn
        assert b.lookup_with_metadata(namespace, service) == (
            seen, {"t": [1, 2], "d": {"x": None}, "f": 1.5})
    assert sorted(map(repr, b.namespaces())) == sorted(repr(k[0]) for k in keys)
    assert b.match(("job", 3), {"t": 2})[0][0] == ("a", ("b", 1))


# -- names across nodes -------------------------------------------------------------------


def test_a_name_is_held_once_across_nodes(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    first, second = actors("first"), actors("second")
    a.register("ns", "svc", first, {"v": 1})
    with pytest.raises(AlreadyRegisteredError) as caught:
        b.register("ns", "svc", second)
    existing = caught.value.existing
    assert isinstance(existing, RemoteActorRef)
    assert existing.actor_urn == first.actor_urn
    assert existing.node_id == a.backend.node_id  # type: ignore[attr-defined]
    assert existing.actor_class_name == "Recorder"
    assert "Recorder" in repr(existing) and first.actor_urn in repr(existing)
    assert b.lookup("ns", "svc") == existing  # learnt at once from the failed claim
    a.unregister("ns", "svc")
    wait_for(lambda: b.lookup("ns", "svc") is None, message="unregister seen by b")
    b.register("ns", "svc", second)
    assert b.lookup("ns", "svc") is second
    assert remote(a, "ns", "svc").actor_urn == second.actor_urn


def test_remote_changes_arrive_as_events(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    seen: list[Any] = []
    done = threading.Event()

    def listener(event: Any) -> None:
        seen.append(event)
        if type(event).__name__ == "Unregistered" and event.service == "last":
            done.set()

    b.subscribe(listener, namespace="ns")
    ref, other = actors(), actors()
    a.register("ns", "svc", ref, {"v": 1})
    a.update_metadata("ns", "svc", {"v": 2})
    a.register("ns", "svc", ref, {"v": 3})  # same actor again: a metadata update
    a.unregister("ns", "svc")
    a.register("ns", "last", other)
    other.stop(block=True)
    assert done.wait(5)
    assert [(type(e).__name__, e.service) for e in seen] == [
        ("Registered", "svc"), ("MetadataUpdated", "svc"), ("MetadataUpdated", "svc"),
        ("Unregistered", "svc"), ("Registered", "last"), ("Unregistered", "last"),
    ]
    assert [dict(e.metadata) for e in seen[:3]] == [{"v": 1}, {"v": 2}, {"v": 3}]
    assert seen[3].reason.kind == "unregistered"
    assert seen[5].reason.kind == "stopped"
    assert all(isinstance(e.actor_ref, RemoteActorRef) for e in seen)
    assert not seen[5].actor_ref.is_alive()


def test_metadata_is_updated_only_by_the_holder_process(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    a.register("ns", "svc", actors(), {"v": 1})
    remote(b, "ns", "svc")
    with pytest.raises(NotHeldHereError) as caught:
        b.update_metadata("ns", "svc", {"v": 2})  # fenced by b's own claim: it has none
    assert isinstance(caught.value, NotRegisteredError)
    assert caught.value.node == a.backend.node_id  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(caught.value)).node == caught.value.node
    assert b.lookup_with_metadata("ns", "svc")[1] == {"v": 1}  # type: ignore[index]
    a.update_metadata("ns", "svc", {"v": 2})
    wait_for(lambda: b.lookup_with_metadata("ns", "svc")[1] == {"v": 2},  # type: ignore[index]
             message="the holder's update seen by b")
    with pytest.raises(NotRegisteredError):
        b.update_metadata("ns", "nobody", {})


def test_a_dead_actor_name_is_removed_everywhere(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    ref = actors()
    a.register("ns", "one", ref)
    a.register("ns", "two", ref)
    seen = remote(b, "ns", "two")
    ref.stop(block=True)
    wait_for(lambda: b.count("ns") == 0, message="names of the dead actor gone in b")
    assert not seen.is_alive()
    assert seen.actor_stopped.is_set()
    with pytest.raises(pykka.ActorDeadError):
        seen.tell("anyone?")


def test_stopping_a_registry_frees_its_names_for_others(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    a.register("ns", "svc", actors())
    seen = remote(b, "ns", "svc")
    a.stop()
    wait_for(lambda: b.lookup("ns", "svc") is None, 2.0, "names of a stopped node gone")
    assert not seen.is_alive()
    b.register("ns", "svc", actors())


def test_node_id_must_be_unique_among_live_nodes(nodes: Factory) -> None:
    nodes(node_id="worker-1")
    with pytest.raises(ValueError, match="in use"):
        nodes(node_id="worker-1")


def test_stop_joins_every_thread(nodes: Factory, actors: Any) -> None:
    before = {t.ident for t in threading.enumerate()}
    a, b = nodes(), nodes()
    a.register("ns", "svc", actors())
    remote(b, "ns", "svc").ask("hi", timeout=5)
    a.stop()
    b.stop()
    left = [t.name for t in threading.enumerate()
            if t.ident not in before and t.name.startswith("pykka-registry")]
    assert left == []


# -- messages ---------------------------------------------------------------------------


def test_remote_tell_ask_and_errors(nodes: Factory, actors: Any) -> None:
    a, b = nodes(secret=SECRET), nodes(secret=SECRET)
    ref = actors("target")
    a.register("ns", "svc", ref)
    target = remote(b, "ns", "svc")
    assert target.ask("hi") == ("echo", "target", "hi")
    assert b.via("ns", "svc").ask({"n": 1}, timeout=5) == ("echo", "target", {"n": 1})
    target.tell(("told", 1))
    future = target.ask("later", block=False)
    assert future.get(timeout=5) == ("echo", "target", "later")
    assert ref.ask("received", timeout=5)[-2:] == [("told", 1), "later"]
    with pytest.raises(ValueError, match="raised on purpose"):
        target.ask("raise", timeout=5)
    with pytest.raises((TypeError, pickle.PicklingError, AttributeError)):
        target.tell(lambda: None)  # cannot be pickled: raised in the caller's thread
    with pytest.raises(NotImplementedError):
        target.proxy()
    with pytest.raises(TypeError):
        pickle.dumps(target)


def test_remote_ask_has_a_deadline(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes(call_timeout=0.3)
    a.register("ns", "slow", actors())
    target = remote(b, "ns", "slow")
    GATE.clear()
    try:
        started = time.monotonic()
        with pytest.raises(RemoteTimeoutError) as caught:
            target.ask("gate")  # timeout=None: the registry's call_timeout
        assert isinstance(caught.value, pykka.Timeout)
        assert isinstance(caught.value, RegistryTimeoutError)
        assert 0.25 < time.monotonic() - started < 1.5
        future = target.ask("gate", block=False, timeout=0.2)
        with pytest.raises(RemoteTimeoutError):
            future.get(timeout=3)  # the deadline fails the future, even without a get timeout
        with pytest.raises(RegistryTimeoutError):
            b.via("ns", "slow").ask("gate", timeout=0.1)
    finally:
        GATE.set()


def test_ask_to_a_dead_actor_fails_at_once(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    ref = actors()
    a.register("ns", "svc", ref)
    target = remote(b, "ns", "svc")
    a.unregister("ns", "svc")  # the name goes, the ref stays usable (it was named here)...
    assert target.ask("still there?", timeout=5)[0] == "echo"
    ref.stop(block=True)  # ...until the actor stops
    started = time.monotonic()
    with pytest.raises(pykka.ActorDeadError):
        target.ask("hello?", timeout=5)
    assert time.monotonic() - started < 1


def test_remote_stop_and_stop_namespace(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    one, two, kept = actors(), actors(), actors()
    a.register("doomed", "one", one)
    a.register("doomed", "two", two)
    a.register("kept", "kept", kept)
    wait_for(lambda: b.count("doomed") == 2 and b.count("kept") == 1, message="names seen")
    b.stop_namespace("doomed", timeout=5)
    assert one.actor_stopped.wait(5) and two.actor_stopped.wait(5)
    assert kept.is_alive()
    wait_for(lambda: a.count("doomed") == 0, message="namespace cleared in a")
    target = remote(b, "kept", "kept")
    assert target.stop(timeout=5) is True
    assert kept.actor_stopped.wait(5)
    assert not target.is_alive()


# -- fencing --------------------------------------------------------------------------------


def test_a_stale_owner_cannot_delete_or_overwrite_a_newer_claim(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    # a's lease is refreshed every 10 s: deleting its lease key is, to everyone
    # else, exactly what a paused process looks like.
    a, b = nodes(lease_ttl=30.0), nodes()
    mine, theirs = actors("mine"), actors("theirs")
    a.register("ns", "x", mine)
    stale = a.backend.get("ns", "x")  # type: ignore[attr-defined]
    lost_events: list[Any] = []
    a.subscribe(lambda e: lost_events.append(e) if getattr(e, "reason", None) and
                e.reason.kind == "lost" else None)
    client = redis_server.client()
    client.delete(f"{prefix}:node:{a.backend.node_id}")  # type: ignore[attr-defined]
    wait_for(lambda: _try_register(b, "ns", "x", theirs), 5.0, "b claims the lapsed name")
    # The stale owner's fenced writes, with the token it had, change nothing:
    results = a.run_in_server(lambda backend: stale_writes(backend, stale))
    assert results == ("moved", "moved")
    holder = client.hgetall(f"{prefix}:name:" + json.dumps(["ns", "x"], separators=(",", ":")))
    assert holder[b"urn"].decode() == theirs.actor_urn
    # a learns it lost the name: lookup there stops returning its own actor
    wait_for(lambda: isinstance(a.lookup("ns", "x"), RemoteActorRef), message="a sees b's claim")
    assert a.lookup("ns", "x").actor_urn == theirs.actor_urn  # type: ignore[union-attr]
    wait_for(lambda: lost_events, message="lost event")
    assert [(e.service, e.actor_ref) for e in lost_events] == [("x", mine)]
    with pytest.raises(AlreadyRegisteredError):
        a.register("ns", "x", mine)
    client.close()


def _try_register(registry: Registry, ns: Any, service: Any, ref: Any) -> bool:
    try:
        registry.register(ns, service, ref)
    except AlreadyRegisteredError:
        return False
    return True


# -- Redis down, restarted ------------------------------------------------------------------


def test_redis_down_then_restarted(fresh_redis: RedisServer, nodes: Factory,
                                   actors: Any) -> None:
    a = nodes(url=fresh_redis.url, call_timeout=2.0)
    b = nodes(url=fresh_redis.url, call_timeout=2.0)
    ref, other, doomed = actors("a1"), actors("b1"), actors("doomed")
    a.register("ns", "a1", ref, {"k": 1})
    b.register("ns", "b1", other)
    a.register("ns", "doomed", doomed)
    remote(a, "ns", "b1")
    remote(b, "ns", "a1")
    fresh_redis.kill()
    doomed.stop(block=True)  # dies while Redis is down: must not come back
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError):
        a.register("ns", "new", actors())
    assert time.monotonic() - started < 1.5  # promptly
    assert a.lookup("ns", "a1") is ref  # reads serve the last copy
    wait_for(lambda: a.count("ns") == 2, message="the dead actor's name dropped locally")
    wait_for(lambda: a.health_check().status == "degraded", 3.0, "degraded health")
    fresh_redis.start()  # same port, empty: the data is lost
    # every node re-asserts its live names and re-reads the others
    wait_for(lambda: a.health_check().status == "healthy", 5.0, "healthy again")
    wait_for(lambda: _names_in_redis(fresh_redis) == {"a1", "b1"}, 5.0, "names re-asserted")
    wait_for(lambda: isinstance(a.lookup("ns", "b1"), RemoteActorRef), 5.0, "a sees b1")
    wait_for(lambda: isinstance(b.lookup("ns", "a1"), RemoteActorRef), 5.0, "b sees a1")
    assert a.lookup_with_metadata("ns", "a1") == (ref, {"k": 1})
    assert remote(b, "ns", "a1").ask("back?", timeout=5) == ("echo", "a1", "back?")
    a.register("ns", "new", actors())


def test_a_hung_redis_makes_writes_fail_within_io_timeout(fresh_redis: RedisServer,
                                                          nodes: Factory, actors: Any) -> None:
    registry = nodes(url=fresh_redis.url, call_timeout=2.0)  # io_timeout 0.5 s
    ref = actors()
    registry.register("ns", "svc", ref)
    fresh_redis.pause()  # SIGSTOP: connections hang instead of failing
    try:
        started = time.monotonic()
        late = actors("late")
        with pytest.raises(RegistryUnavailableError):
            registry.register("ns", "other", late)
        assert time.monotonic() - started < 1.5
        assert registry.lookup("ns", "svc") is ref
        wait_for(lambda: registry.health_check().status == "degraded", 3.0, "degraded")
    finally:
        fresh_redis.resume()
    # The claim that timed out ran when Redis woke ("may or may not have been
    # applied"): the change feed brings it back to this node, which adopts it.
    wait_for(lambda: registry.lookup("ns", "other") is late, 5.0, "late claim adopted")
    registry.register("ns", "third", actors())
    wait_for(lambda: registry.health_check().status == "healthy", 5.0, "healthy again")
    assert registry.lookup("ns", "svc") is ref


def _names_in_redis(server: RedisServer) -> set[str]:
    from pykka_registry._inspect import list_names

    client = server.client()
    try:
        prefix = {k.decode().rsplit(":names", 1)[0] for k in client.keys("*:names")}
        return {str(r["service"]) for p in prefix for r in list_names(client, p)}
    except Exception:
        return set()
    finally:
        client.close()


# -- security ---------------------------------------------------------------------------


def _envelope(header: dict[str, Any], payload: bytes, signature: bytes) -> bytes:
    head = json.dumps(header).encode()
    return MAGIC + signature + len(head).to_bytes(4, "big") + head + payload


def test_forged_messages_run_no_code_and_reach_no_actor(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str, tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = nodes(secret=SECRET)
    ref = actors("target")
    a.register("ns", "svc", ref)
    node = a.backend.node_id  # type: ignore[attr-defined]
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Evil(str(marker)))
    header = {"k": "tell", "id": "mallory-1", "src": "mallory", "dst": node,
              "di": a.backend._inc,  # type: ignore[attr-defined]
              "to": ref.actor_urn, "t": time.time(), "ttl": 0}
    wrong = Codec(b"another secret, not ours").encode(header, evil)
    forgeries = [
        _envelope(header, evil, bytes(32)),  # unsigned
        _envelope(header, evil, os.urandom(32)),  # garbage signature
        wrong,  # signed with another secret
        wrong[:40] + b"X" + wrong[41:],  # tampered
        evil,  # not even an envelope
    ]
    client = redis_server.client()
    inbox = f"{prefix}:inbox:{node}"
    with caplog.at_level(logging.WARNING, logger="pykka_registry.redis"):
        for blob in forgeries:
            client.xadd(inbox, {"m": blob})
        # a correctly signed harmless message after them proves the inbox is read
        good = Codec(SECRET).encode(dict(header, id="trusted-7"), pickle.dumps("legit"))
        client.xadd(inbox, {"m": good})
        proxy = ref.proxy()
        wait_for(lambda: proxy.received.get(timeout=5) == ["legit"], message="legit message")
        # the same good message again is a replay: dropped
        client.xadd(inbox, {"m": good})
        wait_for(lambda: a.backend.health()["messages_dropped"] >= 6,  # type: ignore[attr-defined]
                 message="forgeries counted")
    assert not marker.exists(), "a forged message was unpickled"
    assert proxy.received.get(timeout=5) == ["legit"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) >= 6
    assert any("bad signature" in m for m in dropped) and any("unsigned" in m for m in dropped)
    client.close()


def test_without_a_secret_one_warning_at_start(nodes: Factory, monkeypatch: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("PYKKA_REGISTRY_SECRET", raising=False)
    monkeypatch.setattr(redis_backend_module, "_unsigned_warning_shown", False)
    with caplog.at_level(logging.WARNING, logger="pykka_registry.redis"), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # so only our once-per-process rule dedups
        nodes()
        nodes()  # a second registry of this process: logged, not warned again
    unsigned = [w for w in caught if issubclass(w.category, UnsignedMessagesWarning)]
    assert len(unsigned) == 1
    assert "no secret" in str(unsigned[0].message)
    # attributed to the caller's line (the tests' node factory), not the library's
    assert not unsigned[0].filename.startswith(os.path.dirname(pykka_registry.__file__))
    logged = [r for r in caplog.records if "no secret" in r.getMessage()]
    assert len(logged) == 2
    monkeypatch.setenv("PYKKA_REGISTRY_SECRET", "from the environment")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pykka_registry.redis"):
        registry = nodes()
    assert registry.backend.health()["signed"] is True  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if "no secret" in r.getMessage()]


def test_acl_user_and_password_in_the_url(fresh_redis: RedisServer, nodes: Factory,
                                          actors: Any) -> None:
    client = fresh_redis.client()
    client.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all")
    client.close()
    url = f"redis://app:pw@127.0.0.1:{fresh_redis.port}/0"
    registry = nodes(url=url)
    registry.register("ns", "svc", actors())
    health = registry.backend.health()  # type: ignore[attr-defined]
    assert "pw" not in health["url"] and health["status"] == "healthy"
    with pytest.raises(RegistryUnavailableError):
        nodes(url=f"redis://app:nope@127.0.0.1:{fresh_redis.port}/0")


# -- the ls command -------------------------------------------------------------------------


def test_ls_table_and_json(nodes: Factory, actors: Any, redis_url: str, prefix: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    a, b = nodes(), nodes()
    a.register("web", "front", actors(), {"port": 80})
    b.register(("job", 3), 7, actors(), {})
    assert ls_main(["--redis", redis_url, "--prefix", prefix, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [list(r) for r in rows] == [
        ["namespace", "service", "node", "actor_class", "metadata", "lease_age_s"]] * 2
    by_service = {json.dumps(r["service"]): r for r in rows}
    front, job = by_service['"front"'], by_service["7"]
    assert front["namespace"] == "web" and front["metadata"] == {"port": 80}
    assert front["node"] == a.backend.node_id  # type: ignore[attr-defined]
    assert front["actor_class"] == "Recorder"
    assert 0 <= front["lease_age_s"] <= 1.0
    assert job["namespace"] == ["job", 3] and job["node"] == b.backend.node_id  # type: ignore[attr-defined]

    assert ls_main(["ls", "--redis", redis_url, "--prefix", prefix]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAMESPACE", "SERVICE", "NODE", "ACTOR", "CLASS", "METADATA",
                                "LEASE", "AGE"]
    assert len(table) == 3 and any("front" in line and '{"port": 80}' in line for line in table)

    assert ls_main(["--redis", redis_url, "--prefix", prefix, "--namespace", "web",
                    "--json"]) == 0
    assert [r["service"] for r in json.loads(capsys.readouterr().out)] == ["front"]
    assert ls_main(["--redis", redis_url, "--prefix", prefix, "--namespace", '["job", 3]',
                    "--json"]) == 0
    assert [r["service"] for r in json.loads(capsys.readouterr().out)] == [7]
    assert ls_main(["--prefix", prefix]) == 2  # --redis is required
    assert ls_main(["--redis", "redis://127.0.0.1:1/0", "--prefix", prefix]) == 1


def test_ls_through_python_dash_m(nodes: Factory, actors: Any, redis_url: str,
                                  prefix: str) -> None:
    nodes().register("web", "front", actors())
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, "-m", "pykka_registry", "ls", "--redis", redis_url, "--prefix", prefix,
         "--json"], capture_output=True, text=True, timeout=30, cwd=root,
        env=dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    assert done.returncode == 0, done.stderr
    assert [r["service"] for r in json.loads(done.stdout)] == ["front"]


# -- robustness -------------------------------------------------------------------------


def test_the_issue_snippet_and_defaults(redis_url: str, prefix: str, actors: Any) -> None:
    registry = Registry.start(backend=RedisBackend, backend_opts={
        "url": redis_url, "prefix": prefix,
        "node_id": None,        # default: host:pid:random
        "lease_ttl": 5.0,       # seconds
    })
    try:
        backend = registry.backend
        host, pid, suffix = backend.node_id.rsplit(":", 2)  # type: ignore[attr-defined]
        assert int(pid) == os.getpid() and host and suffix
        assert (backend.name, backend.key_types, backend.json_metadata_only,
                backend.distributed) == ("redis", (str, int), True, True)
        registry.register("ns", "svc", actors())
        assert registry.health_check().status == "healthy"
    finally:
        registry.stop()


def test_malformed_records_in_redis_are_skipped(nodes: Factory, actors: Any,
                                                redis_server: RedisServer, prefix: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    a = nodes()
    a.register("ns", "good", actors())
    client = redis_server.client()
    try:
        # a stray name record and a change event this version cannot read
        client.sadd(f"{prefix}:names", f"{prefix}:name:junk")
        client.hset(f"{prefix}:name:junk", mapping={"k": "not json", "node": "x", "inc": "y",
                                                    "tok": "1", "rev": "1"})
        client.set(f"{prefix}:node:x", "y")
        seq = client.incr(f"{prefix}:seq")
        client.xadd(f"{prefix}:events", {"s": seq, "e": b"\xff not json"})
        with caplog.at_level(logging.WARNING, logger="pykka_registry.redis"):
            b = nodes()  # reads the stray record at start
            a.register("ns", "after", actors())  # the feed goes on past the stray event
            wait_for(lambda: b.count("ns") == 2 and a.count("ns") == 2, message="both names")
        assert any("malformed" in r.getMessage() for r in caplog.records)
        health = a.backend.health()  # type: ignore[attr-defined]
        assert health["status"] == "degraded"  # someone else writes to the feed: say so
        assert any("malformed change event" in p for p in health["problems"])
    finally:
        client.close()


def test_the_two_process_example_of_the_docs_runs(redis_url: str, tmp_path: Any) -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "redis.md"), encoding="utf-8") as page:
        text = page.read()
    start = text.index("# shared.py")
    code = text[start:text.index("```", start)]
    assert "redis://127.0.0.1:6379/0" in code
    script = tmp_path / "shared.py"
    script.write_text(code.replace("redis://127.0.0.1:6379/0", redis_url)
                      .replace('"prefix": "demo"', f'"prefix": "{unique_prefix("docs")}"'))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=root,
        env=dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("<RemoteActorRef Greeter") and lines[0].endswith("{'lang': 'en'}")
    assert lines[1].startswith("hello world from pid") and lines[2].startswith("hello via")
    assert lines[3].startswith("<RemoteActorRef Greeter")
