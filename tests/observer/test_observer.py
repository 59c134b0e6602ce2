"""The observer over plain HTTP: JSON API, /metrics, token rules, read-only,
escaping, size caps, threads, no cost when unused, the CLI."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pykka
import pytest
from observer_client import get, get_json, interrupt, start_cli

from pykka_registry import ChildSpec, Registry, Supervisor
from pykka_registry.observer import METRICS, serve
from pykka_registry.testing import wait_until

parser = pytest.importorskip("prometheus_client.parser")


class Worker(pykka.ThreadingActor):
    def __init__(self, gate: Optional[threading.Event] = None) -> None:
        super().__init__()
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ValueError("crashed <on purpose>")
        if message == "block" and self.gate is not None:
            self.gate.wait(10)
        if isinstance(message, BaseException):
            raise message
        return message


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class HostileKey:
    def __repr__(self) -> str:
        raise SystemExit("repr refuses")


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """:func:`pykka_registry.testing.wait_until` with this file's defaults."""
    return wait_until(condition, timeout, what)


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry.start(name="obs-test") as reg:
        yield reg
    pykka.ActorRegistry.stop_all()


def base(observer: Any) -> str:
    return f"http://127.0.0.1:{observer.port}"


# -- nothing runs until observe ------------------------------------------------------


def test_nothing_is_started_or_imported_until_observe_is_called() -> None:
    code = (
        "import sys, threading, pykka\n"
        "from pykka_registry import Registry\n"
        "r = Registry.start()\n"
        "r.register('ns', 'a', pykka.ThreadingActor.start())\n"
        "assert 'pykka_registry.observer' not in sys.modules, 'observer imported'\n"
        "assert not r._state.events.active, 'someone subscribed'\n"
        "names = [t.name for t in threading.enumerate()]\n"
        "assert not any('observer' in n or 'events' in n for n in names), names\n"
        "o = r.observe()\n"
        "assert 'pykka_registry.observer' in sys.modules\n"
        "assert not r._state.events.active, 'subscribed with no client'\n"
        "import urllib.request; urllib.request.urlopen(o.url + 'api/snapshot').read()\n"
        "assert r._state.events.active, 'a client came: events are recorded'\n"
        "o.stop(); r.stop(); pykka.ActorRegistry.stop_all()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- the JSON API --------------------------------------------------------------------


def test_events_are_recorded_from_the_first_request_until_clients_stay_away(
        registry: Registry) -> None:
    with registry.observe() as observer:
        assert not observer.recording_events()
        registry.register("ns", "unseen", Worker.start())
        assert get_json(base(observer) + "/api/events")["items"] == []
        assert observer.recording_events()
        registry.register("ns", "seen", Worker.start())
        wait_for(lambda: [e["key"] for e in observer.events()["items"]] == ["seen"],
                 what="the event after the first request")
        observer.idle_s = 0.2
        wait_for(lambda: not observer.recording_events(), what="idle: unsubscribed")
        assert not registry._state.events.active
    with serve(registry, events="always") as observer:
        assert observer.recording_events()
    with pytest.raises(ValueError):
        serve(registry, events="sometimes")


def test_snapshot_shows_names_with_metadata_class_urn_alive_mailbox_and_held_time(
        registry: Registry) -> None:
    gate = threading.Event()
    with registry.observe() as observer:
        get(base(observer) + "/api/snapshot")  # a client: events (and held times) recorded
        worker = Worker.start(gate)
        registry.register("shop", "cart", worker, {"zone": "eu", "tags": ["a", "b"]})
        worker.tell("block")
        for _ in range(3):
            worker.tell("queued")
        item = wait_for(lambda: next(
            (i for i in get_json(base(observer) + "/api/snapshot")["names"]["items"]
             # held_s comes from the Registered event, delivered by the
             # registry's dispatcher thread a moment after register returns
             if i["service"] == "cart" and i["mailbox"] == 3 and i["held_s"] is not None),
            None), what="mailbox of 3 and a held time")
        gate.set()
        assert item["namespace"] == "shop"
        assert item["registry"] == "obs-test"
        assert item["metadata"] == {"zone": "eu", "tags": ["a", "b"]}
        assert item["actor_class"] == "Worker"
        assert item["urn"] == worker.actor_urn
        assert item["alive"] is True
        assert item["held_s"] is not None and item["held_s"] >= 0
        snapshot = get_json(base(observer) + "/api/snapshot")
        summary = snapshot["registries"][0]
        assert summary["name"] == "obs-test" and summary["status"] == "healthy"
        assert summary["namespaces"] == [{"namespace": "shop", "names": 1, "groups": 0,
                                          "members": 0}]
        assert snapshot["groups"]["items"] == []  # groups kept, none joined
    worker.stop()


def test_a_name_taken_before_the_observer_started_has_no_held_time(registry: Registry) -> None:
    registry.register("ns", "early", Worker.start())
    with registry.observe() as observer:
        item = get_json(base(observer) + "/api/snapshot")["names"]["items"][0]
        assert item["service"] == "early" and item["held_s"] is None


def test_events_show_registered_unregistered_and_a_crash_with_its_exception(
        registry: Registry) -> None:
    supervisor = Supervisor.start([ChildSpec("w", Worker.start, name=("app", "w"))],
                                  registry=registry, name="app-tree")
    try:
        with registry.observe() as observer:
            get(base(observer) + "/api/events")  # a client: events recorded from now on
            old = registry.lookup("app", "w")
            assert old is not None
            old.tell("crash")
            events = wait_for(lambda: [
                e for e in get_json(base(observer) + "/api/events")["items"]
                if e["type"] == "registered" and e["key"] == "w" and e["urn"] != old.actor_urn
            ] and get_json(base(observer) + "/api/events")["items"], what="restart seen")
            crash = next(e for e in events if e["crash"])
            assert crash["type"] == "unregistered" and crash["reason"] == "crashed"
            assert crash["exception"] == {"type": "ValueError",
                                          "message": "crashed <on purpose>"}
            assert crash["urn"] == old.actor_urn and crash["namespace"] == "app"
            seqs = [e["seq"] for e in events]
            assert seqs == sorted(seqs, reverse=True)  # newest first
            assert get_json(base(observer) + f"/api/events?since={seqs[0]}")["items"] == []
            assert get_json(base(observer) + "/api/events?namespace=other")["items"] == []
            tree = next(s for s in get_json(base(observer) + "/api/snapshot")["supervisors"]
                        if s["name"] == "app-tree")
            assert tree["strategy"] == "one_for_one"
            assert (tree["restarts_in_window"], tree["max_restarts"]) == (1, 3)
            child = tree["children"][0]
            assert child["id"] == "w" and child["restarts"] == 1
            assert child["restart"] == "permanent" and child["name"] == ["app", "w"]
            assert child["actor"]["alive"] is True
    finally:
        supervisor.stop()


def test_an_exception_whose_str_raises_and_a_key_whose_repr_raises_are_shown_safely(
        registry: Registry) -> None:
    with serve(registry, events="always") as observer:
        worker = Worker.start()
        key = HostileKey()
        registry.register("ns", key, worker, {"<b>": HostileKey()})
        worker.tell(Unprintable())
        event = wait_for(lambda: next((e for e in observer.events()["items"] if e["crash"]),
                                      None), what="crash event")
        assert event["exception"] == {"type": "Unprintable",
                                      "message": "<unprintable Unprintable>"}
        assert event["key"] == "<unprintable HostileKey>"
        status, _, _ = get(base(observer) + "/api/snapshot")
        assert status == 200


def test_nested_supervisors_are_shown_inside_their_parent(registry: Registry) -> None:
    def inner() -> Supervisor:
        return Supervisor.start([ChildSpec("leaf", Worker.start)], name="inner-tree")

    outer = Supervisor.start([ChildSpec("inner", inner)], name="outer-tree",
                             strategy="one_for_all", max_restarts=5, max_seconds=2)
    try:
        with registry.observe() as observer:
            trees = get_json(base(observer) + "/api/snapshot")["supervisors"]
            names = [t["name"] for t in trees]
            assert "outer-tree" in names and "inner-tree" not in names
            tree = trees[names.index("outer-tree")]
            assert tree["strategy"] == "one_for_all" and tree["max_seconds"] == 2
            nested = tree["children"][0]["supervisor"]
            assert nested["name"] == "inner-tree"
            assert nested["children"][0]["id"] == "leaf"
    finally:
        outer.stop()


def test_a_busy_supervisor_does_not_hold_up_the_snapshot(registry: Registry) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_start() -> Any:
        entered.set()
        release.wait(10)
        return Worker.start()

    supervisor = Supervisor.start([], name="busy-tree")
    with registry.observe() as observer:
        adder = threading.Thread(
            target=lambda: supervisor.start_child(ChildSpec("slow", slow_start)))
        adder.start()
        try:
            assert entered.wait(5)
            started = time.monotonic()
            trees = get_json(base(observer) + "/api/snapshot")["supervisors"]
            assert time.monotonic() - started < 2.0
            busy = next(t for t in trees if t["name"] == "busy-tree")
            assert busy["stale"] is True
        finally:
            release.set()
            adder.join(10)
        fresh = wait_for(lambda: next(
            (t for t in observer.snapshot()["supervisors"]
             if t["name"] == "busy-tree" and not t["stale"] and t["children"]), None),
            what="supervisor answering again")
        assert fresh["children"][0]["id"] == "slow"
    supervisor.stop()


def test_one_observer_shows_several_registries(registry: Registry) -> None:
    with Registry.start(name="second") as other:
        registry.register("a", "x", Worker.start())
        other.register("b", "y", Worker.start())
        with serve([registry, other]) as observer:
            snapshot = get_json(base(observer) + "/api/snapshot")
            assert [r["name"] for r in snapshot["registries"]] == ["obs-test", "second"]
            assert {(i["registry"], i["service"]) for i in snapshot["names"]["items"]} == {
                ("obs-test", "x"), ("second", "y")}


def test_groups_are_shown_when_the_registry_has_them(registry: Registry) -> None:
    member = Worker.start()

    class WithGroups:
        """A registry with the groups API (duck-typed), as groups will add it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(registry, name)

        def groups(self, namespace: Any) -> list[Any]:
            return ["pool"] if namespace == "ns" else []

        def members_with_metadata(self, namespace: Any, group: Any) -> list[Any]:
            return [(member, {"w": "<i>"})]

        def count_members(self, namespace: Any, group: Any) -> int:
            return 1

    registry.register("ns", "n", Worker.start())
    with serve(WithGroups()) as observer:
        snapshot = get_json(base(observer) + "/api/snapshot")
        group = snapshot["groups"]["items"][0]
        assert (group["namespace"], group["group"], group["count"]) == ("ns", "pool", 1)
        assert group["members"][0]["urn"] == member.actor_urn
        assert group["members"][0]["metadata"] == {"w": "<i>"}
        assert snapshot["registries"][0]["namespaces"][0]["groups"] == 1
        text = get(base(observer) + "/metrics")[2].decode()
        assert 'pykka_registry_group_members{registry="obs-test",namespace="ns"} 1' in text


def test_real_groups_are_shown_even_in_a_namespace_without_names(registry: Registry) -> None:
    member = Worker.start()
    try:
        registry.join("pools", "ocr", member, {"gpu": True})
        with registry.observe() as observer:
            snapshot = get_json(base(observer) + "/api/snapshot")
        group = snapshot["groups"]["items"][0]
        assert (group["namespace"], group["group"], group["count"]) == ("pools", "ocr", 1)
        assert group["members"][0]["metadata"] == {"gpu": True}
        assert snapshot["registries"][0]["namespaces"] == [
            {"namespace": "pools", "names": 0, "groups": 1, "members": 1}]
    finally:
        member.stop()


# -- /metrics ------------------------------------------------------------------------


def test_metrics_parse_with_prometheus_client_and_carry_the_figures(registry: Registry) -> None:
    supervisor = Supervisor.start([ChildSpec("w", Worker.start, name=("app", "w"))],
                                  registry=registry, name='tree "one"\\')
    try:
        weird = 'ns "quoted" \\ back\nslash'
        registry.register(weird, "a", Worker.start())
        with registry.observe() as observer:
            old = registry.lookup("app", "w")
            assert old is not None
            old.tell("crash")
            wait_for(lambda: (registry.lookup("app", "w") or old) is not old, what="restart")
            status, headers, body = get(base(observer) + "/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = body.decode()
            families = {f.name: f for f in parser.text_string_to_metric_families(text)}
            for line in text.splitlines():
                if line.startswith("# TYPE "):
                    name, kind = line.split()[2:4]
                    assert name.startswith("pykka_registry_") and name == name.lower()
                    assert (kind == "counter") == name.endswith("_total"), name
                    assert f"# HELP {name} " in text
            def value(family: str, **labels: str) -> float:
                for sample in families[family].samples:
                    if all(sample.labels.get(k) == v for k, v in labels.items()):
                        return float(sample.value)
                raise AssertionError(f"no {family} sample with {labels}")
            assert value("pykka_registry_names", namespace=weird) == 1
            assert value("pykka_registry_names", namespace="app") == 1
            assert value("pykka_registry_registrations", registry="obs-test") >= 3
            assert value("pykka_registry_deaths", registry="obs-test") >= 1
            assert value("pykka_registry_supervisor_restarts", supervisor='tree "one"\\') == 1
            assert value("pykka_registry_up", registry="obs-test") == 1
            assert value("pykka_registry_subscribers", registry="obs-test") >= 1
            for name in ("pykka_registry_pending_deaths", "pykka_registry_event_queue_depth",
                         "pykka_registry_server_restarts"):
                assert name in families
    finally:
        supervisor.stop()


def test_every_documented_metric_is_in_the_docs() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "observer.md").read_text()
    for name in METRICS:
        assert f"`{name}`" in docs, name


# -- safety --------------------------------------------------------------------------


def test_loopback_without_token_serves_but_refuses_a_foreign_host_header(
        registry: Registry) -> None:
    with registry.observe() as observer:
        assert observer.token is None and observer.url == f"http://127.0.0.1:{observer.port}/"
        assert get(base(observer) + "/api/snapshot")[0] == 200
        assert get(base(observer) + "/api/snapshot", headers={"Host": "evil.example"})[0] == 403
        assert get(base(observer) + "/", headers={"Host": f"localhost:{observer.port}"})[0] == 200


def test_a_token_is_required_when_given(registry: Registry) -> None:
    with registry.observe(token="s3cret-token") as observer:
        assert observer.url.endswith("/?token=s3cret-token")
        for path in ("/", "/api/snapshot", "/api/events", "/metrics"):
            status, headers, _ = get(base(observer) + path)
            assert status == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert get(base(observer) + path + "?token=wrong")[0] == 401
            assert get(base(observer) + path + "?token=s3cret-token")[0] == 200
            bearer = {"Authorization": "Bearer s3cret-token"}
            assert get(base(observer) + path, headers=bearer)[0] == 200
        # the page's script and stylesheet are code, not data
        assert get(base(observer) + "/static/page.js")[0] == 200


def test_another_host_requires_a_token_generated_if_none_and_warns(
        registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pykka_registry"):
        observer = serve(registry, host="0.0.0.0")
    try:
        assert observer.token and len(observer.token) >= 20
        assert f"?token={observer.token}" in observer.url
        assert any("not loopback" in r.getMessage() and str(observer.port) in r.getMessage()
                   for r in caplog.records)
        assert get(base(observer) + "/api/snapshot")[0] == 401
        assert get(base(observer) + f"/api/snapshot?token={observer.token}")[0] == 200
    finally:
        observer.stop()


def test_every_endpoint_is_read_only(registry: Registry) -> None:
    registry.register("ns", "keep", Worker.start())
    with registry.observe() as observer:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            for path in ("/", "/api/snapshot", "/metrics"):
                status, headers, _ = get(base(observer) + path, method=method)
                assert status == 405 and headers["Allow"] == "GET, HEAD"
        assert registry.list_services("ns") == ["keep"]


def test_the_page_is_served_with_a_strict_content_security_policy(registry: Registry) -> None:
    with registry.observe() as observer:
        status, headers, body = get(base(observer) + "/")
        assert status == 200 and b"<title>pykka-registry observer</title>" in body
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        script = get(base(observer) + "/static/page.js")[2].decode()
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script


def test_metadata_reaches_the_json_as_plain_strings(registry: Registry) -> None:
    registry.register("ns", "<img src=x onerror=alert(1)>", Worker.start(),
                      {"html": "<script>alert(1)</script>"})
    with registry.observe() as observer:
        item = get_json(base(observer) + "/api/snapshot")["names"]["items"][0]
        assert item["service"] == "<img src=x onerror=alert(1)>"
        assert item["metadata"] == {"html": "<script>alert(1)</script>"}
        assert get(base(observer) + "/api/snapshot")[1]["Content-Type"].startswith(
            "application/json")


def test_bad_arguments_are_refused_before_anything_starts(registry: Registry) -> None:
    before = threading.active_count()
    with pytest.raises(ValueError):
        serve(registry, port=70000)
    with pytest.raises(ValueError):
        serve(registry, token="")
    with pytest.raises(ValueError):
        serve(registry, token="has space")
    with pytest.raises(TypeError):
        serve(object())
    assert threading.active_count() == before
    with registry.observe() as observer:
        assert get(base(observer) + "/api/snapshot?limit=abc")[0] == 400
        assert get(base(observer) + "/api/events?since=-1")[0] == 400
        assert get(base(observer) + "/nope")[0] == 404


# -- large registries ----------------------------------------------------------------


def test_100k_names_page_under_10_mb(registry: Registry) -> None:
    # How fast it is served is measured in benchmarks/bench_observer.py, not here.
    holders = [Worker.start() for _ in range(8)]

    for start in range(0, 100_000, 10_000):  # batches: each well within call_timeout
        registry.register_many("big", [
            (f"svc-{i:06d}", holders[i % 8], {"shard": i % 16, "role": "worker"})
            for i in range(start, start + 10_000)])
    with registry.observe() as observer:
        get(base(observer) + "/api/snapshot?limit=1")  # warm up
        for path in ("/api/snapshot", "/api/snapshot?limit=100000", "/metrics"):
            status, _, body = get(base(observer) + path)
            assert status == 200
            assert len(body) < 10_000_000, (path, len(body))
        snapshot = json.loads(get(base(observer) + "/api/snapshot?limit=100000")[2])
        assert snapshot["names"]["total"] == 100_000
        assert len(snapshot["names"]["items"]) == snapshot["observer"]["max_limit"]
        page = get_json(base(observer) + "/api/snapshot?offset=500&limit=10")
        assert [i["service"] for i in page["names"]["items"]] == [
            f"svc-{i:06d}" for i in range(500, 510)]
        found = get_json(base(observer) + "/api/snapshot?q=SVC-09999")["names"]
        assert found["total"] == 10  # svc-099990 .. svc-099999 (case-insensitive)
    for ref in holders:
        ref.stop()


# -- stopping ------------------------------------------------------------------------


def test_stop_leaves_no_thread_and_is_idempotent() -> None:
    before = {t.ident for t in threading.enumerate()}
    registry = Registry.start()
    observer = registry.observe()
    registry.register("ns", "a", Worker.start())
    for _ in range(5):
        get(base(observer) + "/api/snapshot")
    with observer:
        pass
    observer.stop()
    assert not observer.running
    assert not [t.name for t in threading.enumerate() if "observer" in t.name]
    # the registry runs on, but its event dispatcher (started for the
    # observer, the only listener) ends with the observer's subscription
    wait_until(lambda: not [t for t in threading.enumerate()
                            if t.name.startswith("pykka-registry-events-")],
               message="the registry's event dispatcher ended with the observer")
    with pytest.raises(OSError):
        urllib.request.urlopen(base(observer) + "/", timeout=2)
    registry.stop()
    pykka.ActorRegistry.stop_all()
    left = [t.name for t in threading.enumerate() if t.ident not in before]
    assert left == []


# -- the command line ----------------------------------------------------------------


def test_demo_observe_keeps_the_observer_open_until_ctrl_c() -> None:
    process, url = start_cli("demo", "--observe", "--pause", "0")
    try:
        # Listeners get events from the registry's dispatcher thread, so the
        # last of the tour's events may still be on the way when the URL is
        # printed: poll (bounded) rather than read once.
        events: list[Any] = []

        def crash_recorded() -> bool:
            events[:] = get_json(url + "api/events")["items"]
            return any(e["crash"] for e in events)

        wait_until(crash_recorded, timeout=10, message="the crash in the observer's events")
        crash = next(e for e in events if e["crash"])
        assert crash["key"] == "w2" and crash["exception"]["type"] == "RuntimeError"
        assert any(e["type"] == "registered" for e in events)
        # After the tour: its names and its supervision tree are still alive
        # on the page, not just their events.
        snapshot = get_json(url + "api/snapshot")
        names = {(i["namespace"], i["service"]): i for i in snapshot["names"]["items"]}
        assert sorted(names) == [("demo", "w1"), ("demo", "w2"), ("demo", "w3")]
        assert all(item["alive"] for item in names.values())
        assert names[("demo", "w2")]["metadata"] == {"pool": "squares", "caps": ["cpu", "gpu"]}
        (tree,) = [s for s in snapshot["supervisors"] if s["name"] == "demo-tree"]
        assert tree["alive"] and tree["restarts_total"] == 1
        assert {c["id"]: c["restarts"] for c in tree["children"]} == {"w1": 0, "w2": 1, "w3": 0}
        assert all(c["actor"]["alive"] for c in tree["children"])
    finally:
        code, out, err = interrupt(process)
    assert code == 0, err
    # (out is what came after the URL line) the tree is stopped after Ctrl-C
    assert out.index("stop the tree") < out.index("done in")
    assert "names left in 'demo': 0" in out
    assert "actors still running: 0" in out
    assert "Traceback" not in err


def test_observe_cli_reports_an_unreachable_redis_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "pykka_registry", "observe", "--redis",
                             "redis://127.0.0.1:1/0"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("cannot read Redis at") and "Traceback" not in result.stderr
