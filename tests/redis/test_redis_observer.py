"""The observer's command line on a real Redis: it shows a cluster and writes nothing."""

from __future__ import annotations

import pykka
import pytest
import redis
from observer_client import get, get_json, interrupt, start_cli
from redis_server import RedisServer

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


