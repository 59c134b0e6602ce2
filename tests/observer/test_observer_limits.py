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
from pykka_registry.observer import serve
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
