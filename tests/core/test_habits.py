"""Pykka habits: proxies where refs are expected, futures from ``Via.ask``,
a name-bound ``Via.proxy()``, backends by name, ``(namespace, service)``
tuples as one argument, ``await_name(..., replacing=old)``, and the
``RegistryStats`` counter names."""

from __future__ import annotations

import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from pykka_registry import (
    ChildSpec,
    IndexedBackend,
    InvalidActorRefError,
    MemoryBackend,
    NotRegisteredError,
    Registry,
    RegistryError,
    RegistryTimeoutError,
    Supervisor,
    UnknownBackendError,
)
from pykka_registry._backend_names import backend_names, resolve_backend
from pykka_registry.testing import Echo


@pytest.fixture(autouse=True)
def no_leftover_actors() -> Iterator[None]:
    yield
    leftovers = pykka.ActorRegistry.get_all()
    for ref in leftovers:
        ref.stop(block=True, timeout=5)
    assert leftovers == [], "a test left actors running"


class Gated(pykka.ThreadingActor):
    """``"crash"`` (told) waits for ``gate`` and then raises: an actor that is
    about to die but still alive, and still holding its name."""

    def __init__(self, gate: threading.Event, entered: threading.Event) -> None:
        super().__init__()
        self.gate = gate
        self.entered = entered

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            self.entered.set()
            self.gate.wait(10)
            raise RuntimeError("crashed on purpose")
        if message == "slow":
            self.gate.wait(10)
        return ("gated", message)

    def label(self) -> str:
        return f"gated {self.actor_urn[-4:]}"


# -- await_name(..., replacing=old) -------------------------------------------------------


def test_await_name_replacing_skips_the_dying_holder(registry: Registry, ns: Any) -> None:
    gate, entered = threading.Event(), threading.Event()
    spec = ChildSpec(id="g", start=lambda: Gated.start(gate, entered), name=(ns, "g"))
    with Supervisor.start([spec], registry=registry):
        old = registry.lookup(ns, "g")
        assert old is not None
        old.tell("crash")
        assert entered.wait(5)
        # The old actor is alive and holds the name: a plain await_name returns it...
        assert registry.await_name(ns, "g", timeout=1) == old
        # ...while replacing=old waits for someone else.
        with pytest.raises(RegistryTimeoutError, match="anyone but the actor it replaces"):
            registry.await_name(ns, "g", timeout=0.05, replacing=old)
        gate.set()
        new = registry.await_name(ns, "g", timeout=5, replacing=old)
        assert new != old
        assert new.is_alive()
        assert registry.lookup(ns, "g") == new


def test_await_name_replacing_takes_a_proxy_and_returns_at_once_if_replaced(
    registry: Registry, ns: Any
) -> None:
    first, second = Echo.start(), Echo.start()
    registry.register(ns, "e", first)
    registry.unregister(ns, "e")
    registry.register(ns, "e", second)
    assert registry.await_name(ns, "e", timeout=1, replacing=first.proxy()) == second
    first.stop()
    second.stop()


def test_await_name_replacing_rejects_what_is_not_an_actor(registry: Registry, ns: Any) -> None:
    with pytest.raises(InvalidActorRefError, match="replacing must be"):
        registry.await_name(ns, "e", timeout=1, replacing="not an actor")


# -- proxies where refs are expected -------------------------------------------------------


def test_register_accepts_a_proxy(registry: Registry, ns: Any) -> None:
    proxy = Echo.start().proxy()
    registry.register(ns, "p", proxy, {"k": 1})
    assert registry.lookup(ns, "p") == proxy.actor_ref
    assert registry.keys_of(proxy.actor_ref) == [(ns, "p")]
    proxy.actor_ref.stop()


def test_register_refuses_a_class_or_an_actor_object_with_a_hint(
    registry: Registry, ns: Any
) -> None:
    with pytest.raises(InvalidActorRefError, match=r"start it first, Echo.start\(\)"):
        registry.register(ns, "c", Echo)  # type: ignore[arg-type]
    with pytest.raises(InvalidActorRefError, match=r"ActorRef or pykka\.ActorProxy"):
        registry.register(ns, "c", 42)  # type: ignore[arg-type]
    assert registry.count(ns) == 0


def test_get_or_start_accepts_a_start_that_returns_a_proxy(registry: Registry, ns: Any) -> None:
    ref = registry.get_or_start(ns, "g", lambda: Echo.start().proxy())
    assert isinstance(ref, pykka.ActorRef)
    assert registry.lookup(ns, "g") == ref
    assert registry.get_or_start(ns, "g", lambda: pytest.fail("started twice")) == ref
    ref.stop()


def test_get_or_start_refuses_a_start_that_returns_neither(registry: Registry, ns: Any) -> None:
    with pytest.raises(InvalidActorRefError, match="start\\(\\)'s result must be"):
        registry.get_or_start(ns, "g", lambda: "nope")  # type: ignore[arg-type,return-value]
    assert registry.lookup(ns, "g") is None


def test_a_child_spec_start_may_return_a_proxy(registry: Registry, ns: Any) -> None:
    spec = ChildSpec(id="e", start=lambda: Echo.start("px").proxy(), name=(ns, "e"))
    with Supervisor.start([spec], registry=registry) as sup:
        ref = registry.lookup(ns, "e")
        assert isinstance(ref, pykka.ActorRef)
        assert [info.actor_ref for info in sup.which_children()] == [ref]
        ref.tell("crash")
        new = registry.await_name(ns, "e", timeout=5, replacing=ref)
        assert new.ask("label", timeout=5) == "px"


# -- Via.ask like ActorRef.ask; Via.proxy() bound to the name ----------------------------------


def test_via_ask_block_false_returns_a_pykka_future(registry: Registry, ns: Any) -> None:
    ref = Echo.start()
    registry.register(ns, "e", ref)
    via = registry.via(ns, "e")
    future = via.ask(1, block=False)
    assert isinstance(future, pykka.Future)
    assert future.get(timeout=5) == ("echo", 1)
    assert future.get() == ("echo", 1)  # as Pykka's: read again, same answer
    assert pykka.get_all([via.ask(n, block=False) for n in (2, 3)], timeout=5) == [
        ("echo", 2), ("echo", 3)
    ]
    assert via.ask(4, block=False).map(lambda answer: answer[1]).get(timeout=5) == 4
    with pytest.raises(ValueError, match="asked to raise"):
        via.ask("raise", block=False).get(timeout=5)
    assert via.ask(5, block=True, timeout=5) == ("echo", 5)
    ref.stop()


def test_via_ask_future_keeps_a_deadline(ns: Any) -> None:
    gate, entered = threading.Event(), threading.Event()
    with Registry.start(call_timeout=0.05) as registry:
        ref = Gated.start(gate, entered)
        registry.register(ns, "slow", ref)
        future = registry.via(ns, "slow").ask("slow", block=False)
        with pytest.raises(RegistryTimeoutError):
            future.get()  # no timeout given: the registry's call_timeout applies
        gate.set()
        assert future.get(timeout=5) == ("gated", "slow")
        ref.stop()


def test_via_ask_block_false_with_nobody_raises_at_once(registry: Registry, ns: Any) -> None:
    with pytest.raises(NotRegisteredError):
        registry.via(ns, "nobody").ask(1, block=False)


def test_via_ask_timeout_is_keyword_only_as_in_pykka_4(registry: Registry, ns: Any) -> None:
    ref = Echo.start()
    registry.register(ns, "e", ref)
    with pytest.raises(TypeError):
        registry.via(ns, "e").ask(1, 5)  # type: ignore[misc]
    ref.stop()


def test_via_proxy_method_resolves_the_name_when_called(registry: Registry, ns: Any) -> None:
    gate, entered = threading.Event(), threading.Event()
    gate.set()
    spec = ChildSpec(id="g", start=lambda: Gated.start(gate, entered), name=(ns, "g"))
    with Supervisor.start([spec], registry=registry):
        proxy = registry.via(ns, "g").proxy()
        label = proxy.label  # looked up before the restart...
        old = registry.lookup(ns, "g")
        before = label().get(timeout=5)
        old.tell("crash")
        new = registry.await_name(ns, "g", timeout=5, replacing=old)
        after = label().get(timeout=5)  # ...called after it: reaches the successor
        assert before == f"gated {old.actor_urn[-4:]}"
        assert after == f"gated {new.actor_urn[-4:]}"
        assert proxy.gate.get(timeout=5) is gate  # attribute reads are futures, as Pykka's


def test_via_proxy_with_nobody_raises_not_registered(registry: Registry, ns: Any) -> None:
    ref = Echo.start()
    registry.register(ns, "e", ref)
    method = registry.via(ns, "e").proxy().get_label
    ref.stop()
    with pytest.raises(NotRegisteredError):
        method()


# -- backends by name ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls"), [("memory", MemoryBackend), ("indexed", IndexedBackend)])
def test_registry_start_takes_a_backend_name(name: str, cls: type, ns: Any) -> None:
    with Registry.start(backend=name) as registry:
        assert type(registry.backend) is cls
        ref = Echo.start()
        registry.register(ns, "e", ref, {"k": "v"})
        assert registry.match(ns, {"k": "v"})[0][0] == "e"
        ref.stop()


def test_redis_is_a_known_name() -> None:
    pytest.importorskip("redis")
    from pykka_registry.backends.redis import RedisBackend

    assert resolve_backend("redis") is RedisBackend


def test_an_unknown_backend_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownBackendError) as caught:
        Registry.start(backend="indexd")
    message = str(caught.value)
    assert "'indexd'" in message
    assert "'indexed', 'memory', 'redis'" in message
    assert "pykka_registry.backends" in message
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RegistryError)


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution (a .dist-info on sys.path) with two entry
    points in the group: one good, one whose module does not exist."""
    (tmp_path / "my_plugin_backend.py").write_text(textwrap.dedent("""
        from pykka_registry import MemoryBackend

        class PluginBackend(MemoryBackend):
            name = "plugin"
    """))
    info = tmp_path / "my_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [pykka_registry.backends]
        plugin = my_plugin_backend:PluginBackend
        broken = no_such_module_anywhere:Backend
        memory = my_plugin_backend:PluginBackend
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_third_party_backend_registers_a_name_by_entry_point(
    plugin_dist: Path, ns: Any
) -> None:
    assert {"plugin", "broken", "memory", "indexed", "redis"} <= set(backend_names())
    with Registry.start(backend="plugin") as registry:
        assert type(registry.backend).__name__ == "PluginBackend"
    # A built-in name is never shadowed by an entry point.
    assert resolve_backend("memory") is MemoryBackend
    with pytest.raises(UnknownBackendError, match="cannot be loaded") as caught:
        resolve_backend("broken")
    assert isinstance(caught.value.__cause__, ImportError)


# -- (namespace, service) as one argument ------------------------------------------------------


def test_reads_accept_a_key_tuple(registry: Registry, ns: Any) -> None:
    ref = Echo.start()
    registry.register(ns, "e", ref, {"k": 1})
    key = (ns, "e")  # ns is itself a tuple: the two-argument form keeps its meaning
    assert registry.lookup(key) == registry.lookup(ns, "e") == ref
    assert registry.lookup_with_metadata(key) == (ref, {"k": 1})
    assert registry.via(key).ask(1, timeout=5) == ("echo", 1)
    assert registry.await_name(key, timeout=1) == ref
    assert registry.lookup(("plain", "missing")) is None
    ref.stop()


@pytest.mark.parametrize("method", ["lookup", "lookup_with_metadata", "via", "await_name"])
@pytest.mark.parametrize("argument", ["ns-only", ("a", "b", "c")])
def test_one_argument_that_is_not_a_pair_says_how_to_call(
    registry: Registry, method: str, argument: Any
) -> None:
    with pytest.raises(TypeError) as caught:
        getattr(registry, method)(argument)
    assert f"{method}(namespace, service)" in str(caught.value)
    assert f"{method}((namespace, service))" in str(caught.value)


def test_writes_accept_a_key_tuple_where_two_keys_cannot_be_meant(
        registry: Registry, ns: Any) -> None:
    a, b = Echo.start(), Echo.start()
    registry.register((ns, "a"), a)
    registry.register((ns, "b"), b.proxy(), {"cpu": 2})
    registry.update_metadata((ns, "b"), {"cpu": 4})
    assert registry.lookup_with_metadata(ns, "a") == (a, {})
    assert registry.lookup_with_metadata(ns, "b") == (b, {"cpu": 4})
    assert registry.get_or_start((ns, "a"), lambda: pytest.fail("must not start")) == a
    started = registry.get_or_start((ns, "c"), Echo.start, {"fresh": True})
    assert registry.lookup_with_metadata(ns, "c") == (started, {"fresh": True})
    registry.unregister((ns, "a"))
    assert registry.lookup(ns, "a") is None
    # The two-key reading still wins where it is possible: a tuple namespace.
    registry.register(ns, ("shard", 1), a)
    assert registry.lookup(ns, ("shard", 1)) == a
    registry.update_metadata(ns, ("shard", 1), {"x": 1})
    assert registry.lookup_with_metadata(ns, ("shard", 1)) == (a, {"x": 1})
    for ref in (a, b, started):
        ref.stop()


@pytest.mark.parametrize("call", [
    lambda r: r.register("ns-only", Echo),          # no actor, no pair
    lambda r: r.register(("ns", "svc")),             # no actor at all
    lambda r: r.update_metadata("ns-only", {"k": 1}),
    lambda r: r.get_or_start("ns-only", Echo.start),
    lambda r: r.get_or_start(("ns", "svc")),
    lambda r: r.unregister("ns-only"),
], ids=["register", "register-no-actor", "update_metadata", "get_or_start",
        "get_or_start-no-start", "unregister"])
def test_a_short_write_says_both_ways_to_call(registry: Registry, call: Any) -> None:
    before = registry.count()
    with pytest.raises(TypeError) as caught:
        call(registry)
    message = str(caught.value)
    assert "(namespace, service" in message and "((namespace, service)" in message, message
    assert registry.count() == before


def test_a_key_tuple_with_too_many_arguments_is_refused(registry: Registry, ns: Any) -> None:
    ref = Echo.start()
    try:
        with pytest.raises(TypeError, match="at most 3 arguments"):
            registry.register((ns, "a"), ref, {"a": 1}, {"b": 2})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="at most 3 arguments"):
            registry.get_or_start((ns, "a"), Echo.start, {"a": 1},  # type: ignore[arg-type]
                                  {"b": 2})
        assert registry.count(ns) == 0
    finally:
        ref.stop()


def test_keys_of_and_monitor_take_a_proxy(registry: Registry, ns: Any) -> None:
    from pykka_registry import monitor

    ref = Echo.start()
    registry.register(ns, "e", ref)
    assert registry.keys_of(ref.proxy()) == registry.keys_of(ref) == [(ns, "e")]
    down = threading.Event()
    seen: list[Any] = []
    monitor(ref.proxy(), lambda event: (seen.append(event.actor_ref), down.set()))
    ref.stop()
    assert down.wait(5)
    assert seen == [ref]
    with pytest.raises(InvalidActorRefError, match=r"ActorRef or pykka\.ActorProxy"):
        registry.keys_of(42)
    with pytest.raises(InvalidActorRefError, match=r"ActorRef or pykka\.ActorProxy"):
        monitor(42, print)


# -- RegistryStats: one name per counter ---------------------------------------------------------


def test_stats_names_and_the_deprecated_alias(registry: Registry, ns: Any) -> None:
    refs = [Echo.start() for _ in range(2)]
    for i, ref in enumerate(refs):
        registry.register(ns, f"s{i}", ref)
    registry.unregister(ns, "s0")
    stats = registry.stats()
    assert stats.names == 1
    assert stats.registrations_total == 2
    assert stats.unregistrations_total == 1
    with pytest.warns(DeprecationWarning, match="use RegistryStats.names"):
        assert stats.total_registrations == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.names == 1  # the new name does not warn
    for ref in refs:
        ref.stop()
