"""The command line on Redis: ``demo --redis URL`` across two processes, and
the Redis demo and example talk only to a server the user named: without a
URL they start a throwaway redis-server of their own (never 127.0.0.1:6379),
and without the binary they stop with one line saying how to pass a URL.
``ls --groups``: the group members of every node, read without writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from redis_helpers import Factory, dump_keys, redis_nodes, wait_for
from redis_server import RedisServer, require_binary, unique_prefix

from pykka_registry._inspect import GroupMembership, list_groups
from pykka_registry._inspect import main as ls_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args: list[str], **env: Any) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    environment.pop("PYKKA_REGISTRY_REDIS_URL", None)
    environment.update(env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=environment)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pykka_registry", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_demo_across_two_processes_on_redis(fresh_redis: RedisServer) -> None:
    result = run("demo", "--redis", fresh_redis.url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "w2.ask(7) -> 49" in out
    assert "new w2 is a different actor: True" in out
    assert "w2.ask(8) -> 64" in out
    assert "match({'caps': 'gpu'}) -> ['w2']" in out
    assert "names left in 'demo': 0" in out
    assert "other process exit code: 0; actors still running: 0" in out
    assert "who answers for 'w2': worker w2, actor_urn ..." in out


def test_redis_demo_says_once_that_messages_are_unsigned(fresh_redis: RedisServer) -> None:
    result = run("demo", "--redis", fresh_redis.url)
    assert result.returncode == 0, result.stdout + result.stderr
    both = result.stdout + result.stderr
    # Once for the two processes, as one line of the tour: no "file:line:"
    # header and no source line (warnings.warn(...)) under it.
    assert both.count("no secret set") == 1, both
    assert "warning (UnsignedMessagesWarning, both processes):" in result.stdout
    assert "warnings.warn" not in both
    assert result.stderr.strip() == ""


def test_demo_without_a_url_runs_on_a_throwaway_server() -> None:
    binary = require_binary()
    done = _run(["-m", "pykka_registry", "demo", "--redis"], REDIS_SERVER=binary)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("(no URL given: started a throwaway redis-server at redis://127.0.0.1:")
    assert ":6379/" not in first


def test_demo_without_a_url_or_a_binary_says_how_to_pass_one(tmp_path: Any) -> None:
    done = _run(["-m", "pykka_registry", "demo", "--redis"], PATH=str(tmp_path),
                REDIS_SERVER=str(tmp_path / "missing"))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--redis redis://HOST:PORT/DB" in lines[0]
    assert done.stdout == ""


def test_the_example_without_a_url_runs_on_a_throwaway_server(tmp_path: Any) -> None:
    binary = require_binary()
    done = _run([os.path.join(ROOT, "examples", "two_processes_redis.py")],
                REDIS_SERVER=binary)
    assert done.returncode == 0, done.stderr
    assert "(started a throwaway redis-server on port" in done.stdout
    assert "the name is taken cluster-wide" in done.stdout
    missing = _run([os.path.join(ROOT, "examples", "two_processes_redis.py")],
                   PATH=str(tmp_path), REDIS_SERVER=str(tmp_path / "missing"))
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0
    assert "redis://HOST:PORT/DB" in missing.stderr


# -- ls --groups ------------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return unique_prefix("lsg")


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Iterator[Factory]:
    with redis_nodes(redis_url, prefix, secret="an ls-suite secret, long enough") as make:
        yield make


def _two_nodes_with_groups(nodes: Factory, actors: Any) -> tuple[Any, Any, list[Any]]:
    a, b = nodes(), nodes()
    a1, b1, a2 = actors("a1"), actors("b1"), actors("a2")
    a.join("pool", "workers", a1, {"gpu": True})
    b.join("pool", "workers", b1)
    a.join(("jobs", 3), 7, a2, {"n": 1})
    wait_for(lambda: b.count_members("pool", "workers") == 2 and b.groups(("jobs", 3)) == [7],
             message="b sees a's members")
    return a, b, [a1, b1, a2]


def test_ls_groups_lists_the_members_of_every_node(
        nodes: Factory, actors: Any, redis_server: RedisServer, redis_url: str, prefix: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    a, b, (a1, b1, a2) = _two_nodes_with_groups(nodes, actors)
    node_a, node_b = a.backend.node_id, b.backend.node_id  # type: ignore[attr-defined]
    client = redis_server.client()
    before = dump_keys(client)

    assert ls_main(["--redis", redis_url, "--prefix", prefix, "--groups", "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    rows = json.loads(captured.out)
    assert [list(r) for r in rows] == [["namespace", "group", "node", "urn", "actor_class",
                                        "metadata", "join_order", "lease_age_s"]] * 3
    # sorted as names are (by the JSON text of namespace and group), then join order
    assert [(r["namespace"], r["group"], r["node"], r["urn"]) for r in rows] == [
        ("pool", "workers", node_a, a1.actor_urn),
        ("pool", "workers", node_b, b1.actor_urn),
        (["jobs", 3], 7, node_a, a2.actor_urn),
    ]
    assert rows[0]["join_order"] < rows[1]["join_order"]  # join order, across nodes
    assert rows[0]["actor_class"] == "Recorder" and rows[0]["metadata"] == {"gpu": True}
    assert all(0 <= r["lease_age_s"] <= 1.0 for r in rows)

    assert ls_main(["ls", "--redis", redis_url, "--prefix", prefix, "--groups"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAMESPACE", "GROUP", "NODE", "ACTOR", "CLASS", "URN", "JOIN",
                                "ORDER", "METADATA", "LEASE", "AGE"]
    assert len(table) == 4
    assert any(node_b in line and b1.actor_urn in line and "workers" in line
               for line in table)
    assert any('{"gpu": true}' in line for line in table)

    assert ls_main(["--redis", redis_url, "--prefix", prefix, "--groups", "--namespace",
                    '["jobs", 3]', "--json"]) == 0
    assert [r["urn"] for r in json.loads(capsys.readouterr().out)] == [a2.actor_urn]
    # the names listing is what it was: no names, an empty table
    assert ls_main(["--redis", redis_url, "--prefix", prefix, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert ls_main(["--redis", "redis://127.0.0.1:1/0", "--prefix", prefix, "--groups"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot read Redis" in err
    assert dump_keys(client) == before  # ls wrote nothing
    client.close()


def test_ls_groups_skips_a_malformed_member_record_alone(
        nodes: Factory, actors: Any, redis_server: RedisServer, redis_url: str, prefix: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    a, _b, (a1, b1, a2) = _two_nodes_with_groups(nodes, actors)
    node_a = a.backend.node_id  # type: ignore[attr-defined]
    inc_a = a.backend._inc  # type: ignore[attr-defined]
    client = redis_server.client()
    hash_a = f"{prefix}:gmem:{node_a}"
    good = json.loads(client.hget(hash_a, f'{a1.actor_urn} ["pool","workers"]'))
    assert good["inc"] == inc_a
    client.hset(hash_a, mapping={
        "junk": b"\xff not json",
        'urn:x ["pool","workers"]': json.dumps(dict(good, urn="urn:x", node="someone-else")),
        'urn:y ["pool","other"]': json.dumps(dict(good, urn="urn:z")),  # under another field
        'urn:w ["pool","workers"]': json.dumps(dict(good, urn="urn:w", meta="[1]")),
    })
    client.set(f"{prefix}:gmem:wrongtype", "a string")
    client.sadd(f"{prefix}:gnodes", "wrongtype")
    client.set(f"{prefix}:node:wrongtype", "inc-1")
    try:
        warnings: list[str] = []
        members = list_groups(client, prefix, warn=warnings.append)
        assert all(isinstance(m, GroupMembership) for m in members)
        assert [m.urn for m in members] == [a1.actor_urn, b1.actor_urn, a2.actor_urn]
        assert len(warnings) == 5, warnings
        assert sum("malformed member record" in w for w in warnings) == 3
        assert any("another membership" in w for w in warnings)
        assert any("wrongtype" in w for w in warnings)
        with pytest.raises(AttributeError):
            members[0].urn = "changed"  # type: ignore[misc]

        assert ls_main(["--redis", redis_url, "--prefix", prefix, "--groups", "--json"]) == 0
        captured = capsys.readouterr()
        assert [r["urn"] for r in json.loads(captured.out)] == [
            a1.actor_urn, b1.actor_urn, a2.actor_urn]
        lines = captured.err.strip().splitlines()
        assert len(lines) == 5 and all(line.startswith("ls: warning: skipped") for line in lines)
        # with a limit, reads stop there and say so
        warnings.clear()
        assert len(list_groups(client, prefix, warn=warnings.append, limit=2)) <= 2
        assert any("stopped reading" in w for w in warnings)
    finally:
        client.delete(f"{prefix}:gmem:wrongtype", f"{prefix}:node:wrongtype")
        client.srem(f"{prefix}:gnodes", "wrongtype")
        client.hdel(hash_a, "junk", 'urn:x ["pool","workers"]', 'urn:y ["pool","other"]',
                    'urn:w ["pool","workers"]')
        client.close()


def test_ls_groups_leaves_out_nodes_without_a_live_lease(
        nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str) -> None:
    a, _b, (a1, b1, a2) = _two_nodes_with_groups(nodes, actors)
    node_a = a.backend.node_id  # type: ignore[attr-defined]
    client = redis_server.client()
    field = f'{a1.actor_urn} ["pool","workers"]'
    good = json.loads(client.hget(f"{prefix}:gmem:{node_a}", field))
    # a node whose lease lapsed, and one whose record is of an older incarnation
    client.hset(f"{prefix}:gmem:ghost", field, json.dumps(dict(good, node="ghost")))
    client.hset(f"{prefix}:gmem:reborn", field, json.dumps(dict(good, node="reborn")))
    client.set(f"{prefix}:node:reborn", "a newer incarnation")
    client.sadd(f"{prefix}:gnodes", "ghost", "reborn")
    try:
        warnings: list[str] = []
        members = list_groups(client, prefix, warn=warnings.append)
        assert [m.urn for m in members] == [a1.actor_urn, b1.actor_urn, a2.actor_urn]
        assert warnings == []
    finally:
        client.delete(f"{prefix}:gmem:ghost", f"{prefix}:gmem:reborn", f"{prefix}:node:reborn")
        client.srem(f"{prefix}:gnodes", "ghost", "reborn")
        client.close()
