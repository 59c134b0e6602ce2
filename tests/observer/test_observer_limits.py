"""The observer's limits: refused requests cost nothing, stop() is bounded
whatever clients do, metrics labels are distinct and bounded, large
registries poll cheaply, and the events of groups reach the JSON API."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from observer_client import get, get_json

from pykka_registry import Registry
from pykka_registry.testing import wait_until

parser = pytest.importorskip("prometheus_client.parser")


class Worker(pykka.ThreadingActor):
    pass


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry.start(name="obs-limits") as reg:
        yield reg
    pykka.ActorRegistry.stop_all()


def base(observer: Any) -> str:
    return f"http://127.0.0.1:{observer.port}"


def observer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "observer" in t.name]


# -- access is checked before anything else -------------------------------------------


def test_a_refused_request_touches_no_state(registry: Registry,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register("ns", "a", Worker.start())
    with registry.observe(token="the-token") as observer:
        reads: list[str] = []
        snapshotter = observer._snapshotter
        for method in ("snapshot", "registry_summary", "supervisor_trees"):
            real = getattr(snapshotter, method)

            def spy(*args: Any, _real: Any = real, _name: str = method, **kwargs: Any) -> Any:
                reads.append(_name)
                return _real(*args, **kwargs)

            monkeypatch.setattr(snapshotter, method, spy)
        for path in ("/api/snapshot", "/api/events", "/metrics", "/"):
            assert get(base(observer) + path)[0] == 401, path
            assert get(base(observer) + path + "?token=wrong")[0] == 401, path
            assert get(base(observer) + path,
                       headers={"Authorization": "Bearer nope"})[0] == 401, path
        assert reads == []
        assert not observer.recording_events()
        assert not registry._state.events.active  # nobody subscribed
        assert get(base(observer) + "/api/snapshot?token=the-token")[0] == 200
        assert "snapshot" in reads and observer.recording_events()


def test_a_foreign_host_header_touches_no_state(registry: Registry) -> None:
    with registry.observe() as observer:
        for path in ("/api/snapshot", "/api/events", "/metrics"):
            assert get(base(observer) + path, headers={"Host": "evil.example"})[0] == 403
        assert not observer.recording_events()
        assert not registry._state.events.active


# -- stop() is bounded whatever clients do ------------------------------------------


def _half_request(observer: Any) -> socket.socket:
    """A slowloris client: half a request line and headers, then nothing."""
    sock = socket.create_connection(("127.0.0.1", observer.port), timeout=5)
    sock.sendall(b"GET /api/snapshot HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ")
    return sock


def _request_threads() -> int:
    return sum(1 for name in observer_threads() if name.endswith("-request"))


def test_stop_cuts_clients_that_send_half_a_request(registry: Registry) -> None:
    before = _request_threads()
    observer = registry.observe()
    socks = [_half_request(observer) for _ in range(5)]
    try:
        wait_until(lambda: _request_threads() - before == 5, 5,
                   "five request threads blocked on their half requests")
        started = time.monotonic()
        observer.stop()
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"stop() took {elapsed:.2f} s"
        assert observer_threads() == []
        for sock in socks:  # cut, not left open
            assert sock.recv(100) == b""
    finally:
        for sock in socks:
            sock.close()


def test_stop_cuts_a_client_that_never_reads_its_answer(registry: Registry) -> None:
    holder = Worker.start()
    big = {f"k{i}": "x" * 290 for i in range(20)}  # ~6 KB a name once cut
    registry.register_many("big", [(f"svc-{i:05d}", holder, big) for i in range(2000)])
    observer = registry.observe()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", observer.port))
        sock.sendall(b"GET /api/snapshot?limit=2000 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        # The answer (~12 MB) is built before it is written: once its first
        # bytes arrive, the request thread is blocked writing to a full socket.
        assert sock.recv(1, socket.MSG_PEEK) == b"H"
        wait_until(lambda: _request_threads() >= 1, 5, "the request thread")
        started = time.monotonic()
        observer.stop()
        elapsed = time.monotonic() - started
        assert elapsed < 1.5, f"stop() took {elapsed:.2f} s"
        assert observer_threads() == []
    finally:
        sock.close()
        observer.stop()


def test_a_connection_is_cut_at_its_read_deadline(registry: Registry) -> None:
    with registry.observe() as observer:
        observer.read_deadline_s = 0.3
        stalled = _half_request(observer)
        trickle = socket.create_connection(("127.0.0.1", observer.port), timeout=5)
        try:
            started = time.monotonic()
            # one byte every 50 ms: each read succeeds, the deadline is for all of them
            cut = False
            for byte in b"GET /api/snapshot HTTP/1.0\r\nX-Trickle: " + b"a" * 200:
                try:
                    trickle.sendall(bytes([byte]))
                except OSError:
                    cut = True
                    break
                time.sleep(0.05)  # the slow client under test, not a wait for a condition
                if time.monotonic() - started > 4:
                    break
            if not cut:  # the server shut its side: the next read says so
                trickle.settimeout(2)
                cut = trickle.recv(100) == b""
            assert cut, "a trickling client kept its connection past the deadline"
            assert stalled.recv(100) == b""  # cut too, long before its 5 s timeout
            assert time.monotonic() - started < 4.5
            # the observer still serves
            assert get(base(observer) + "/api/snapshot")[0] == 200
        finally:
            stalled.close()
            trickle.close()


# -- metrics: distinct and bounded label values --------------------------------------


class SameRepr:
    """Distinct namespaces (identity equality) with one repr."""

    def __repr__(self) -> str:
        return "same"


def _samples(text: str) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    return [(s.name, tuple(sorted(s.labels.items())), s.value)
            for family in parser.text_string_to_metric_families(text)
            for s in family.samples]


def test_metric_labels_are_distinct_for_namespaces_with_one_text(registry: Registry) -> None:
    holder = Worker.start()
    first, second = SameRepr(), SameRepr()
    registry.register(7, "a", holder)
    registry.register("7", "a", holder)
    registry.register("7", "b", holder)
    for ns, count in ((first, 3), (second, 4)):
        registry.register_many(ns, [(f"s{i}", holder) for i in range(count)])
    with registry.observe() as observer:
        samples = _samples(get(base(observer) + "/metrics")[2].decode())
    keys = [(name, labels) for name, labels, _ in samples]
    assert len(keys) == len(set(keys)), "one label set, two samples"
    names = {dict(labels)["namespace"]: value for name, labels, value in samples
             if name == "pykka_registry_names"}
    assert names == {"int:7": 1, "7": 2, "SameRepr:same": 4, "SameRepr:same (2)": 3}
    totals = {name: value for name, labels, value in samples
              if name.startswith("pykka_registry_namespaces")}
    assert totals == {"pykka_registry_namespaces": 4, "pykka_registry_namespaces_left_out": 0}


def test_metrics_cover_10k_namespaces_and_count_the_rest(registry: Registry) -> None:
    holder = Worker.start()
    for i in range(10_050):
        registry.register(f"ns-{i:05d}", "svc", holder)
    registry.register_many("ns-00042", [(f"more-{i}", holder) for i in range(5)])
    with registry.observe() as observer:
        status, _, body = get(base(observer) + "/metrics")
    assert status == 200 and len(body) < 10_000_000
    samples = _samples(body.decode())
    names = {dict(labels)["namespace"]: value for name, labels, value in samples
             if name == "pykka_registry_names"}
    assert len(names) == 10_000
    assert names["ns-00042"] == 6  # the largest first
    assert "ns-10049" not in names  # the smallest, by label, left out
    totals = {name: value for name, labels, value in samples
              if name.startswith("pykka_registry_namespaces")}
    assert totals == {"pykka_registry_namespaces": 10_050,
                      "pykka_registry_namespaces_left_out": 50}


# -- group events --------------------------------------------------------------------


def test_joins_and_leaves_reach_the_events_api(registry: Registry) -> None:
    assert registry.supports_groups
    with registry.observe() as observer:
        assert get(base(observer) + "/api/events")[0] == 200  # start recording
        first, second = Worker.start(), Worker.start()
        registry.join("pool", "workers", first, {"gpu": True})
        registry.join("pool", "workers", second)
        registry.leave("pool", "workers", first)
        second.stop()  # its membership ends with it

        def group_events() -> list[Any]:
            items = get_json(base(observer) + "/api/events")["items"]
            found = [e for e in items if e["group"]]
            return found if len(found) == 4 else []

        events = wait_until(group_events, 5, "two joins and two leaves")
        oldest_first = list(reversed(events))
        assert [(e["type"], e["namespace"], e["key"], e["urn"]) for e in oldest_first] == [
            ("joined", "pool", "workers", first.actor_urn),
            ("joined", "pool", "workers", second.actor_urn),
            ("left", "pool", "workers", first.actor_urn),
            ("left", "pool", "workers", second.actor_urn)]
        assert oldest_first[0]["metadata"] == {"gpu": True}
        assert oldest_first[0]["actor_class"] == "Worker"
        assert [e["reason"] for e in oldest_first[2:]] == ["left", "stopped"]
        assert not any(e["crash"] for e in events)
        # the namespace filter applies to them too
        only = get_json(base(observer) + "/api/events?namespace=pool")["items"]
        assert len(only) == 4
        assert get_json(base(observer) + "/api/events?namespace=other")["items"] == []
        samples = _samples(observer.metrics())
        counts = {dict(labels)["type"]: value for name, labels, value in samples
                  if name == "pykka_registry_observer_events_total"}
        assert counts["joined"] == 2 and counts["left"] == 2


# -- large registries: the rows are kept, not listed at every poll --------------------


class BadEq:
    """A key that hashes but whose __eq__ raises."""

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        raise RuntimeError("no eq for you")

    def __repr__(self) -> str:
        return "BadEq()"


def test_a_poll_lists_no_name_when_little_changed(registry: Registry,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    holder = Worker.start()
    registry.register_many("ns", [(f"svc-{i:04d}", holder, {"v": 0}) for i in range(1000)])
    listed: list[Any] = []
    backend = registry.backend
    real_entries = backend.entries
    monkeypatch.setattr(backend, "entries",
                        lambda ns: listed.append(ns) or real_entries(ns))
    with registry.observe() as observer:
        url = base(observer) + "/api/snapshot"
        assert get_json(url)["names"]["total"] == 1000  # subscribes, lists once
        assert listed
        listed.clear()
        for _ in range(3):
            assert get_json(url)["names"]["total"] == 1000
        assert listed == [], "a poll with nothing changed listed the registry"

        seen = observer.events()["latest"]
        registry.register("ns", "aaa-new", holder)
        registry.register("ns", "zzz-new", holder)
        registry.unregister("ns", "svc-0005")
        registry.update_metadata("ns", "svc-0001", {"v": 1})
        registry.register("other", "x", holder)
        wait_until(lambda: observer.events()["latest"] >= seen + 5, 5, "the five events")
        names = get_json(url + "?limit=2000")["names"]
        services = [i["service"] for i in names["items"]]
        assert names["total"] == 1002
        assert services[:3] == ["aaa-new", "svc-0000", "svc-0001"]
        assert services[-2:] == ["zzz-new", "x"]  # ns "other" after "ns"
        assert "svc-0005" not in services
        assert names["items"][2]["metadata"] == {"v": 1}  # read at the poll, not cached
        only = get_json(url + "?namespace=other")["names"]
        assert [i["service"] for i in only["items"]] == ["x"]
        found = get_json(url + "?q=NEW")["names"]
        assert [i["service"] for i in found["items"]] == ["aaa-new", "zzz-new"]
        paged = get_json(url + "?offset=999&limit=10")["names"]
        assert [i["service"] for i in paged["items"]] == ["svc-0999", "zzz-new", "x"]
        assert listed == [], "a poll after a few changes listed the registry"

        # Stopped recording (no client for idle_s): changes meanwhile are
        # not in any event the observer saw; the next poll lists anew.
        observer.idle_s = 0.1
        wait_until(lambda: not observer.recording_events(), 5, "idle: unsubscribed")
        registry.register("ns", "while-away", holder)
        registry.unregister("ns", "svc-0006")
        services = [i["service"] for i in get_json(url + "?limit=2000")["names"]["items"]]
        assert "while-away" in services and "svc-0006" not in services
        assert listed


def test_a_key_whose_eq_raises_does_not_break_the_kept_rows(registry: Registry) -> None:
    holder = Worker.start()
    registry.register("ns", "plain", holder)
    with registry.observe() as observer:
        url = base(observer) + "/api/snapshot"
        assert get_json(url)["names"]["total"] == 1
        seen = observer.events()["latest"]
        odd = BadEq()
        registry.register(odd, "svc", holder)
        registry.register(7, "svc", holder)
        registry.register("7", "svc", holder)
        wait_until(lambda: observer.events()["latest"] >= seen + 3, 5, "the events")
        items = get_json(url)["names"]["items"]
        assert sorted((i["namespace"], i["service"]) for i in items) == [
            ("7", "svc"), ("7", "svc"), ("BadEq()", "svc"), ("ns", "plain")]
        registry.unregister(7, "svc")
        wait_until(lambda: observer.events()["latest"] >= seen + 4, 5, "the unregister")
        assert get_json(url)["names"]["total"] == 3


def test_connections_past_the_cap_are_closed_at_once(registry: Registry) -> None:
    with registry.observe() as observer:
        observer.max_connections = 3
        before = _request_threads()
        stalled = [_half_request(observer) for _ in range(3)]
        try:
            wait_until(lambda: _request_threads() - before == 3, 5, "three stalled requests")
            extra = socket.create_connection(("127.0.0.1", observer.port), timeout=5)
            try:
                assert extra.recv(100) == b""  # closed at once, not after 5 s
            finally:
                extra.close()
            assert _request_threads() - before == 3
        finally:
            for sock in stalled:
                sock.close()
        # Their threads see the close and end; then there is room again.
        wait_until(lambda: _request_threads() == before, 5, "the stalled requests ended")
        assert get(base(observer) + "/api/snapshot")[0] == 200
