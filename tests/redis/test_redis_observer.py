"""The observer on a real Redis: the command line shows a cluster (nodes,
names, groups of every node) and writes nothing; the embedded observer of a
Redis registry shows other nodes' group members as remote members."""

from __future__ import annotations

import json
from typing import Any

import pykka
import pytest
import redis
from observer_client import get, get_json, interrupt, start_cli
from redis_helpers import dump_keys, redis_nodes, wait_for
from redis_server import RedisServer, unique_prefix

from pykka_registry import Registry
from pykka_registry.testing import Echo

parser = pytest.importorskip("prometheus_client.parser")


def test_observe_cli_shows_a_redis_cluster_without_joining_it(fresh_redis: RedisServer) -> None:
    from pykka_registry.backends.redis import RedisBackend

    with Registry.start(backend=RedisBackend, backend_opts={
            "url": fresh_redis.url, "prefix": "obs", "node_id": "node-a"}) as node:
        node.register("ns", "svc", Echo.start(), {"v": "<b>"})
        client = redis.Redis.from_url(fresh_redis.url)
        keys_before = sorted(client.keys("*"))
        process, url = start_cli("observe", "--redis", fresh_redis.url, "--prefix", "obs")
        try:
            snapshot = get_json(url + "api/snapshot")
            cluster = snapshot["clusters"][0]
            assert cluster["prefix"] == "obs" and cluster["names"] == 1
            assert [n["node"] for n in cluster["nodes"]] == ["node-a"]
            assert cluster["nodes"][0]["lease_age_s"] is not None
            item = snapshot["names"]["items"][0]
            assert (item["namespace"], item["service"], item["node"]) == ("ns", "svc", "node-a")
            assert item["metadata"] == {"v": "<b>"}
            metrics = get(url + "metrics")[2].decode()
            families = {f.name for f in parser.text_string_to_metric_families(metrics)}
            assert "pykka_registry_redis_lease_age_seconds" in families
            assert "pykka_registry_redis_node_names" in families
        finally:
            code, _, err = interrupt(process)
        assert code == 0, err
        assert sorted(client.keys("*")) == keys_before  # it wrote nothing
        client.close()
    pykka.ActorRegistry.stop_all()


def _samples(metrics: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(metrics)
            for s in family.samples}


def test_observe_cli_shows_the_groups_of_every_node(fresh_redis: RedisServer,
                                                    actors: Any) -> None:
    with redis_nodes(fresh_redis.url, "obsg", secret="an observer secret, long enough") as nodes:
        a, b = nodes(node_id="node-a"), nodes(node_id="node-b")
        a1, b1, a2 = actors("a1"), actors("b1"), actors("a2")
        a.join("pool", "workers", a1, {"gpu": "<b>"})
        b.join("pool", "workers", b1)
        a.join("jobs", "batch", a2)
        a.register("ns", "svc", actors("named"))
        wait_for(lambda: b.count_members("pool", "workers") == 2, message="b sees a's member")
        client = redis.Redis.from_url(fresh_redis.url)
        # a record this version cannot read, beside node-a's good ones
        client.hset("obsg:gmem:node-a", "junk", "not json")
        before = dump_keys(client)
        process, url = start_cli("observe", "--redis", fresh_redis.url, "--prefix", "obsg")
        try:
            snapshot = get_json(url + "api/snapshot")
            cluster = snapshot["clusters"][0]
            assert (cluster["names"], cluster["groups"], cluster["members"]) == (1, 2, 3)
            assert cluster["skipped"] == 1
            per_node = {n["node"]: (n["names"], n["groups"], n["members"])
                        for n in cluster["nodes"]}
            assert per_node == {"node-a": (1, 2, 2), "node-b": (0, 1, 1)}
            groups = snapshot["groups"]
            assert groups["total"] == 2
            by_group = {(g["namespace"], g["group"]): g for g in groups["items"]}
            workers = by_group[("pool", "workers")]
            assert workers["registry"] == "redis:obsg" and workers["count"] == 2
            assert [(m["urn"], m["node"]) for m in workers["members"]] == [
                (a1.actor_urn, "node-a"), (b1.actor_urn, "node-b")]  # join order
            first = workers["members"][0]
            assert (first["actor_class"], first["mailbox"], first["alive"]) == (
                "Recorder", None, True)
            assert first["metadata"] == {"gpu": "<b>"}
            assert first["join_order"] < workers["members"][1]["join_order"]
            assert first["lease_age_s"] is not None
            assert by_group[("jobs", "batch")]["members"][0]["urn"] == a2.actor_urn
            # the filters of the page apply to groups too
            only = get_json(url + "api/snapshot?namespace=jobs")["groups"]
            assert [g["group"] for g in only["items"]] == ["batch"]
            assert get_json(url + "api/snapshot?q=WORK")["groups"]["total"] == 1

            samples = _samples(get(url + "metrics")[2].decode())
            reg = ("registry", "redis:obsg")
            assert samples[("pykka_registry_group_members", (("namespace", "pool"), reg))] == 2
            assert samples[("pykka_registry_group_members", (("namespace", "jobs"), reg))] == 1
            assert samples[("pykka_registry_groups", (("namespace", "pool"), reg))] == 1
            assert samples[("pykka_registry_redis_node_group_members",
                            (("node", "node-a"), reg))] == 2
            assert samples[("pykka_registry_redis_node_group_members",
                            (("node", "node-b"), reg))] == 1
            # the page's script renders the groups view for clusters too
            page = get(url + "static/page.js")[2].decode()
            assert "cluster.groups" in page and "m.node" in page
        finally:
            code, _, err = interrupt(process)
        assert code == 0, err
        # said once on stderr, not at every refresh
        assert [line for line in err.splitlines() if "junk" in line] == [
            "observe: warning: observer (redis prefix 'obsg'): skipped the malformed member "
            "record 'junk' in 'obsg:gmem:node-a': Expecting value: line 1 column 1 (char 0)"], err
        assert dump_keys(client) == before  # it wrote nothing
        client.delete("obsg:gmem:node-a")  # (the nodes' own stop deletes it too)
        client.close()
    pykka.ActorRegistry.stop_all()


def test_embedded_observer_shows_other_nodes_members_as_remote(redis_url: str,
                                                               actors: Any) -> None:
    prefix = unique_prefix("obse")
    with redis_nodes(redis_url, prefix, secret="an observer secret, long enough") as nodes:
        a, b = nodes(), nodes()
        a1, b1 = actors("a1"), actors("b1")
        a.join("pool", "workers", a1, {"n": 1})
        b.join("pool", "workers", b1, {"n": 2})
        wait_for(lambda: b.count_members("pool", "workers") == 2, message="b sees a's member")
        with b.observe() as observer:
            snapshot = get_json(observer.url + "api/snapshot")
            summary = snapshot["registries"][0]
            assert summary["namespaces"] == [{"namespace": "pool", "names": 0, "groups": 1,
                                              "members": 2}]
            group = snapshot["groups"]["items"][0]
            assert (group["namespace"], group["group"], group["count"]) == ("pool", "workers", 2)
            remote, local = group["members"]  # join order: a1 first
            assert remote["urn"] == a1.actor_urn and local["urn"] == b1.actor_urn
            # a remote member: its class from its record, its node, no mailbox
            assert (remote["actor_class"], remote["node"], remote["mailbox"],
                    remote["alive"]) == ("Recorder", a.backend.node_id, None, True)  # type: ignore[attr-defined]
            assert remote["metadata"] == {"n": 1}
            assert local["actor_class"] == "Recorder" and isinstance(local["mailbox"], int)
            assert local["metadata"] == {"n": 2}
            samples = _samples(observer.metrics())
            assert samples[("pykka_registry_group_members",
                            (("namespace", "pool"), ("registry", b.name)))] == 2
            json.dumps(snapshot)  # JSON-safe
    pykka.ActorRegistry.stop_all()


def test_the_page_shows_a_clusters_groups_per_node(redis_url: str, actors: Any) -> None:
    from browser import console_errors, start_chromium
    from browser import wait_until as wait_in_page

    from pykka_registry.observer import serve

    prefix = unique_prefix("obsp")
    with redis_nodes(redis_url, prefix, secret="an observer secret, long enough") as nodes:
        a, b = nodes(node_id=f"{prefix}-a"), nodes(node_id=f"{prefix}-b")
        a.join("pool", "<script>", actors("a1"))
        b.join("pool", "<script>", actors("b1"))
        client = redis.Redis.from_url(redis_url)
        driver = start_chromium()
        try:
            with serve(None) as observer:
                observer.add_redis(client, prefix)
                driver.get(observer.url)
                rows = wait_in_page(driver, lambda d: d.execute_script(
                    "return Array.from(document.querySelectorAll('#groups .group-row'))"
                    ".map(r => Array.from(r.cells).map(c => c.textContent));") or None,
                    "the cluster's group listed")
                assert rows[0][:4] == [f"redis:{prefix}", "pool", "<script>", "2"]
                assert f"on {prefix}-a" in rows[0][4] and f"on {prefix}-b" in rows[0][4]
                nodes_text = driver.execute_script(
                    "return Array.from(document.querySelectorAll('#clusters .cluster-node'))"
                    ".map(e => e.textContent);")
                assert len(nodes_text) == 2
                assert all("1 group member in 1 group" in line for line in nodes_text)
                assert not driver.execute_script(
                    "return document.getElementById('groups-section').hidden;")
                assert console_errors(driver) == []
        finally:
            driver.quit()
            client.close()
    pykka.ActorRegistry.stop_all()


def test_cluster_view_skips_malformed_node_records_and_counts_them(
        fresh_redis: RedisServer) -> None:
    from pykka_registry.backends.redis import RedisBackend
    from pykka_registry.observer import serve

    with Registry.start(backend=RedisBackend, backend_opts={
            "url": fresh_redis.url, "prefix": "obsm", "node_id": "node-a",
            "lease_ttl": 10.0}) as node:
        node.register("ns", "svc", Echo.start())
        client = redis.Redis.from_url(fresh_redis.url, socket_timeout=2,
                                      socket_connect_timeout=2)
        # Records no node of this version writes, beside node-a's good ones.
        client.set("obsm:node:ghost", "i1", px=60_000)
        client.set("obsm:nodeinfo:ghost", "not json", px=60_000)
        client.set("obsm:node:wrongtype", "i2", px=60_000)
        client.hset("obsm:nodeinfo:wrongtype", "not", "a string")
        client.set("obsm:node:badttl", "i3", px=60_000)
        client.set("obsm:nodeinfo:badttl", json.dumps({"inc": "i3", "ttl_ms": True}))
        client.set("obsm:node:late", "i4", px=1000)  # 29 s since its last renewal
        client.set("obsm:nodeinfo:late", json.dumps({"inc": "i4", "ttl_ms": 30_000}))
        client.sadd("obsm:nodes", "gone")  # listed, its lease gone: not yet reaped
        with serve(None) as observer:
            observer.add_redis(client, "obsm")
            snapshot = get_json(observer.url + "api/snapshot")
            cluster = snapshot["clusters"][0]
            assert cluster["error"] is None and cluster["names"] == 1
            assert cluster["skipped"] == 3  # ghost, wrongtype, badttl
            by_node = {n["node"]: n for n in cluster["nodes"]}
            assert sorted(by_node) == ["badttl", "ghost", "gone", "late", "node-a",
                                       "wrongtype"]
            healthy = by_node["node-a"]
            assert (healthy["degraded"], healthy["lease_expired"], healthy["problems"],
                    healthy["lease_ttl_s"], healthy["names"]) == (False, False, [], 10.0, 1)
            for name in ("ghost", "wrongtype", "badttl", "late"):
                assert by_node[name]["degraded"] and by_node[name]["problems"], name
            assert "not renewed on time" in by_node["late"]["problems"][0]
            assert by_node["gone"]["lease_expired"] and not by_node["gone"]["degraded"]

            samples = _samples(observer.metrics())
            reg = ("registry", "redis:obsm")

            def node_sample(metric: str, name: str) -> float:
                return samples[(metric, (("node", name), reg))]

            assert samples[("pykka_registry_cluster_up", (reg,))] == 1
            assert samples[("pykka_registry_cluster_records_skipped", (reg,))] == 3
            assert samples[("pykka_registry_cluster_scrape_errors_total", (reg,))] == 0
            assert node_sample("pykka_registry_redis_lease_ttl_seconds", "node-a") == 10.0
            assert node_sample("pykka_registry_redis_degraded", "node-a") == 0
            assert node_sample("pykka_registry_redis_lease_expired", "node-a") == 0
            assert node_sample("pykka_registry_redis_degraded", "ghost") == 1
            assert node_sample("pykka_registry_redis_degraded", "late") == 1
            assert node_sample("pykka_registry_redis_lease_expired", "gone") == 1
            assert get(observer.url + "metrics")[0] == 200
        client.close()
    pykka.ActorRegistry.stop_all()


def test_cluster_view_counts_a_failed_read_and_keeps_serving(fresh_redis: RedisServer) -> None:
    from pykka_registry.observer import serve

    client = redis.Redis.from_url(fresh_redis.url, socket_timeout=1, socket_connect_timeout=1)
    client.set("obsd:node:a", "i1", px=60_000)
    client.set("obsd:nodeinfo:a", json.dumps({"inc": "i1", "ttl_ms": 60_000}), px=60_000)
    try:
        with serve(None) as observer:
            observer.add_redis(client, "obsd")
            reg = ("registry", "redis:obsd")
            samples = _samples(get(observer.url + "metrics")[2].decode())
            assert samples[("pykka_registry_cluster_up", (reg,))] == 1
            fresh_redis.stop()

            def down() -> dict[Any, float]:
                found = _samples(get(observer.url + "metrics")[2].decode())
                return found if found[("pykka_registry_cluster_up", (reg,))] == 0 else {}

            samples = wait_for(down, timeout=10, message="cluster_up 0 once Redis is gone")
            assert samples[("pykka_registry_cluster_scrape_errors_total", (reg,))] >= 1
            status, _, body = get(observer.url + "api/snapshot")
            assert status == 200
            assert json.loads(body)["clusters"][0]["error"]
            assert get(observer.url)[0] == 200  # the page itself
    finally:
        client.close()


def test_a_degraded_redis_registry_is_shown_on_the_page_and_in_metrics(
        fresh_redis: RedisServer) -> None:
    from browser import console_errors, start_chromium
    from browser import wait_until as wait_in_page

    from pykka_registry.backends.redis import RedisBackend

    driver = start_chromium()
    try:
        with Registry.start(name="obs-redis", backend=RedisBackend, backend_opts={
                "url": fresh_redis.url, "prefix": "obsdeg", "node_id": "node-d",
                "lease_ttl": 1.0, "io_timeout": 0.5}) as node:
            node.register("ns", "svc", Echo.start())
            with node.observe() as observer:
                driver.get(observer.url)

                def registry_state(d: Any) -> Any:
                    return d.execute_script(
                        "const card = document.querySelector('#registries .card');"
                        "if (!card) return null;"
                        "return [card.querySelector('h3 + div span').textContent,"
                        " Array.from(card.querySelectorAll('div.degraded'))"
                        ".map(e => e.textContent)];")

                state = wait_in_page(driver, lambda d: (registry_state(d) or [None])[0]
                                     == "healthy" and registry_state(d), "healthy first")
                assert state[1] == []
                samples = _samples(observer.metrics())
                reg = ("registry", "obs-redis")
                assert samples[("pykka_registry_degraded", (reg,))] == 0
                assert samples[("pykka_registry_redis_degraded", (("node", "node-d"), reg))] == 0

                fresh_redis.stop()  # Redis goes away under the node
                state = wait_in_page(driver, lambda d: (registry_state(d) or [None])[0]
                                     == "degraded" and registry_state(d), "degraded shown",
                                     timeout=15)
                assert any("Redis out of reach" in p or "lease" in p for p in state[1]), state
                samples = _samples(observer.metrics())
                assert samples[("pykka_registry_degraded", (reg,))] == 1
                assert samples[("pykka_registry_redis_degraded", (("node", "node-d"), reg))] == 1
                summary = get_json(observer.url + "api/snapshot")["registries"][0]
                assert summary["status"] == "degraded" and summary["problems"]
                assert console_errors(driver) == []
    finally:
        driver.quit()
    pykka.ActorRegistry.stop_all()


def test_embedded_observer_keeps_up_with_names_of_other_nodes(redis_url: str,
                                                              actors: Any) -> None:
    prefix = unique_prefix("obsn")
    with redis_nodes(redis_url, prefix, secret="an observer secret, long enough") as nodes:
        a, b = nodes(), nodes()
        b.register("ns", "b-own", actors("b1"))
        with b.observe() as observer:
            url = observer.url + "api/snapshot"

            def services() -> list[str]:
                return [i["service"] for i in get_json(url)["names"]["items"]]

            assert services() == ["b-own"]  # subscribed: the rows are kept from now on
            a.register("ns", "a-one", actors("a1"))
            a.register("ns", "a-two", actors("a2"))
            wait_for(lambda: services() == ["a-one", "a-two", "b-own"],
                     message="another node's names, in order")
            a.unregister("ns", "a-one")
            wait_for(lambda: services() == ["a-two", "b-own"], message="released elsewhere")
            item = get_json(url)["names"]["items"][0]
            assert item["node"] == a.backend.node_id  # type: ignore[attr-defined]
    pykka.ActorRegistry.stop_all()


def test_a_wrong_typed_node_record_of_a_node_with_names_hides_nothing_else(
        fresh_redis: RedisServer) -> None:
    from pykka_registry.backends.redis import RedisBackend
    from pykka_registry.observer import serve

    # A long lease: its refresh (which would rewrite the record) is 20 s away.
    with Registry.start(backend=RedisBackend, backend_opts={
            "url": fresh_redis.url, "prefix": "obsw", "node_id": "node-w",
            "lease_ttl": 60.0}) as node:
        node.register("ns", "svc", Echo.start())
        client = redis.Redis.from_url(fresh_redis.url, socket_timeout=2,
                                      socket_connect_timeout=2)
        client.delete("obsw:nodeinfo:node-w")
        client.hset("obsw:nodeinfo:node-w", "not", "a string")
        with serve(None) as observer:
            observer.add_redis(client, "obsw")
            cluster = get_json(observer.url + "api/snapshot")["clusters"][0]
            assert cluster["error"] is None
            assert cluster["names"] == 1  # its lease is readable: its name is listed
            assert cluster["skipped"] == 1  # the record, once (two readers saw it)
            (row,) = cluster["nodes"]
            assert row["degraded"] and row["lease_age_s"] is None
        client.close()
    pykka.ActorRegistry.stop_all()
