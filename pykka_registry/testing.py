"""The backend conformance suite, importable so any backend can be checked.

Every behaviour the registry promises, whatever the backend, is a test method
of :class:`RegistryConformance`. To run it against your backend, subclass it
in a pytest module and say how to start a registry on it::

    import pytest
    from pykka_registry import Registry
    from pykka_registry.testing import RegistryConformance
    from mypackage import MyBackend

    class TestMyBackend(RegistryConformance):
        backend = MyBackend                # a Backend subclass or instance factory
        backend_opts = {"option": 1}       # passed to the class

        # or, for full control (a server to start first, say):
        # def start_registry(self, request): return Registry.start(backend=...)

Group tests (membership, death on every path, supervision, events, eight
threads) run for a backend that declares ``supports_groups = True`` and are
skipped, with that reason, for one that does not.

A backend that declares narrower types (``key_types``, ``json_metadata_only``)
is tested with keys and metadata of those types only; the tests of "any
hashable key" and "any mapping" are skipped for it, with a reason.

Requires pytest. Every wait in these tests is bounded; none sleeps to guess.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pykka
import pytest

from pykka_registry import (
    ActorNotAliveError,
    AlreadyRegisteredError,
    DuplicateServiceError,
    GroupsNotSupportedError,
    InvalidActorRefError,
    InvalidKeyError,
    InvalidMetadataError,
    Joined,
    Left,
    MemoryBackend,
    NotRegisteredError,
    Registered,
    Registry,
    RegistryError,
    RegistryUnavailableError,
    Unregistered,
    test_namespace,
)

__all__ = [
    "ActorFactory",
    "Echo",
    "RegistryConformance",
    "assert_no_names_of",
    "holding_server",
    "wait_until",
]

#: How long a clean-up may take before a test fails (the promise is 100 ms;
#: the margin absorbs a loaded CI machine without hiding a real leak).
CLEANUP_DEADLINE_S = 2.0


def wait_until(condition: Callable[[], Any], timeout: float = CLEANUP_DEADLINE_S,
               message: str = "condition") -> Any:
    """Poll ``condition`` until it returns a true value; fail after ``timeout``.

    Returns the value, for assertions on it. Polls with a short
    ``threading.Event().wait`` back-off: a bounded poll, not a guess.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        pause.wait(delay)
        delay = min(delay * 2, 0.02)


@contextlib.contextmanager
def holding_server(registry: Registry) -> Iterator[None]:
    """Keep the registry's server busy for the duration of the block: messages
    sent to it meanwhile queue up behind, in order (for ordering tests)."""
    entered, release = threading.Event(), threading.Event()

    def hold(state: Any) -> None:
        entered.set()
        release.wait(10)

    holder = threading.Thread(target=registry.run_in_server, args=(hold,))
    holder.start()
    try:
        if not entered.wait(5):
            raise AssertionError("the registry's server did not pick up the hold")
        yield
    finally:
        release.set()
        holder.join(10)


def assert_no_names_of(registry: Registry, ref: Any, namespaces: list[Any],
                       services: list[Any]) -> None:
    """Assert, with no waiting, that no read of ``registry`` shows ``ref``:
    ``lookup``/``lookup_with_metadata`` of ``services`` in each of
    ``namespaces``, ``keys_of``, ``list_services``, ``count``, ``match``,
    ``find_services_by_metadata``, ``namespaces`` and ``stats()``. For use
    right after the actor has stopped, when no other actor has taken
    ``services`` since."""
    assert registry.keys_of(ref) == [], "keys_of lists a stopped actor's names"
    for ns in namespaces:
        for service in services:
            assert registry.lookup(ns, service) is not ref, "lookup returned a dead actor"
            found = registry.lookup_with_metadata(ns, service)
            assert found is None or found[0] is not ref, "lookup_with_metadata: a dead actor"
        assert not any(r is ref for _, r, _ in registry.match(ns, {})), "match lists it"
        assert not any(r is ref for _, r, _ in registry.find_services_by_metadata(
            ns, lambda metadata: True)), "find_services_by_metadata lists it"
        assert not set(registry.list_services(ns)) & set(services), (
            "list_services lists a dead actor's name")
        if registry.count(ns) == 0:
            assert ns not in registry.namespaces(), "namespaces lists an emptied namespace"
    stats = registry.stats()
    assert stats.names == registry.count()


class Echo(pykka.ThreadingActor):
    """A test actor: answers ``ask(x)`` with ``("echo", x)``; ``"crash"`` told
    to it raises; ``"raise"`` asked raises back to the caller."""

    def __init__(self, label: str = "") -> None:
        super().__init__()
        self.label = label
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)
        if message == "crash":
            raise RuntimeError(f"{self.label or 'echo'} crashed on purpose")
        if message == "raise":
            raise ValueError("asked to raise")
        if message == "label":
            return self.label
        return ("echo", message)

    def get_label(self) -> str:
        return self.label


class _FailingStart(pykka.ThreadingActor):
    def on_start(self) -> None:
        raise RuntimeError("on_start failed on purpose")


class _FailingStop(pykka.ThreadingActor):
    def on_stop(self) -> None:
        raise RuntimeError("on_stop failed on purpose")


class _FailingFailure(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("handler failed on purpose")

    def on_failure(self, *exc_info: Any) -> None:
        raise RuntimeError("on_failure failed on purpose")


class _ZombieStart(pykka.ThreadingActor):
    """``on_start`` blocks until released, then raises a BaseException, which
    Pykka does not catch (the thread dies, the ref would stay 'alive')."""

    def __init__(self, release: threading.Event, threads: list[threading.Thread]) -> None:
        super().__init__()
        self.release = release
        self.threads = threads

    def on_start(self) -> None:
        self.threads.append(threading.current_thread())
        self.release.wait(10)
        raise _TestBaseException("BaseException in on_start")


class _TestBaseException(BaseException):
    pass


class _Color(enum.Enum):
    RED = 1


class ActorFactory:
    """Starts test actors and stops every one of them at teardown."""

    def __init__(self) -> None:
        self.refs: list[pykka.ActorRef[Any]] = []

    def __call__(self, cls: type[pykka.Actor] = Echo, *args: Any, **kwargs: Any) -> Any:
        ref = cls.start(*args, **kwargs)
        self.refs.append(ref)
        return ref

    def stop_all(self) -> None:
        for ref in self.refs:
            try:
                ref.stop(block=True, timeout=5)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass


class RegistryConformance:
    """The conformance suite; see the module docstring."""

    backend: Any = MemoryBackend
    backend_opts: Optional[dict[str, Any]] = None

    # -- fixtures ---------------------------------------------------------------------

    def start_registry(self, request: Any) -> Registry:
        """Start a registry on the backend under test. Override for set-up."""
        return Registry.start(backend=self.backend, backend_opts=self.backend_opts)

    @pytest.fixture
    def registry_factory(self, request: Any) -> Iterator[Callable[[], Registry]]:
        started: list[Registry] = []

        def make() -> Registry:
            registry = self.start_registry(request)
            started.append(registry)
            return registry

        yield make
        for registry in started:
            registry.stop()

    @pytest.fixture
    def registry(self, registry_factory: Callable[[], Registry]) -> Registry:
        return registry_factory()

    @pytest.fixture
    def ns(self) -> Any:
        return test_namespace()

    @pytest.fixture
    def actors(self) -> Iterator[ActorFactory]:
        factory = ActorFactory()
        yield factory
        factory.stop_all()

    def any_hashable_keys(self, registry: Registry) -> bool:
        return registry.backend.key_types is None

    def any_metadata(self, registry: Registry) -> bool:
        return not registry.backend.json_metadata_only

    # -- register / lookup ------------------------------------------------------------

    def test_register_then_lookup(self, registry: Registry, ns: Any, actors: ActorFactory) -> None:
        ref = actors()
        registry.register(ns, "svc", ref, {"role": "db"})
        assert registry.lookup(ns, "svc") is ref
        assert registry.lookup_with_metadata(ns, "svc") == (ref, {"role": "db"})

    def test_lookup_of_missing_name_is_none(self, registry: Registry, ns: Any) -> None:
        assert registry.lookup(ns, "nobody") is None
        assert registry.lookup_with_metadata(ns, "nobody") is None

    def test_metadata_defaults_to_empty_dict(self, registry: Registry, ns: Any,
                                             actors: ActorFactory) -> None:
        ref = actors()
        registry.register(ns, "svc", ref)
        assert registry.lookup_with_metadata(ns, "svc") == (ref, {})

    def test_read_your_writes_from_another_thread(self, registry: Registry, ns: Any,
                                                  actors: ActorFactory) -> None:
        ref = actors()
        registry.register(ns, "svc", ref)
        seen: list[Any] = []
        reader = threading.Thread(target=lambda: seen.append(registry.lookup(ns, "svc")))
        reader.start()
        reader.join(5)
        assert seen == [ref]

    def test_name_held_by_live_actor_is_refused(self, registry: Registry, ns: Any,
                                                actors: ActorFactory) -> None:
        first, second = actors(), actors()
        registry.register(ns, "svc", first, {"n": 1})
        with pytest.raises(AlreadyRegisteredError) as caught:
            registry.register(ns, "svc", second, {"n": 2})
        assert caught.value.namespace == ns
        assert caught.value.service == "svc"
        assert caught.value.existing is first
        assert isinstance(caught.value, RegistryError)
        assert registry.lookup_with_metadata(ns, "svc") == (first, {"n": 1})

    def test_same_actor_registering_again_replaces_metadata(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        ref = actors()
        registry.register(ns, "svc", ref, {"a": 1, "b": 2})
        registry.register(ns, "svc", ref, {"c": 3})
        assert registry.lookup_with_metadata(ns, "svc") == (ref, {"c": 3})
        assert registry.count(ns) == 1

    def test_one_actor_may_hold_several_names(self, registry: Registry, ns: Any,
                                              actors: ActorFactory) -> None:
        other_ns = test_namespace()
        ref = actors()
        registry.register(ns, "a", ref)
        registry.register(ns, "b", ref)
        registry.register(other_ns, "a", ref)
        assert sorted(registry.keys_of(ref), key=repr) == sorted(
            [(ns, "a"), (ns, "b"), (other_ns, "a")], key=repr
        )

    def test_registering_a_dead_actor_is_refused(self, registry: Registry, ns: Any,
                                                 actors: ActorFactory) -> None:
        ref = actors()
        ref.stop(block=True)
        with pytest.raises(ActorNotAliveError):
            registry.register(ns, "svc", ref)
        assert registry.count(ns) == 0

    # -- bad input changes nothing -------------------------------------------------------

    @pytest.mark.parametrize("bad", [None, "actor", 42, object()])
    def test_register_rejects_non_refs(self, registry: Registry, ns: Any, bad: Any) -> None:
        with pytest.raises(InvalidActorRefError) as caught:
            registry.register(ns, "svc", bad)
        assert isinstance(caught.value, TypeError)
        assert registry.count() == 0

    @pytest.mark.parametrize("bad", [["a", 1], "role=db", 42, {("a", 1)}])
    def test_register_rejects_non_mapping_metadata(self, registry: Registry, ns: Any,
                                                   actors: ActorFactory, bad: Any) -> None:
        with pytest.raises(InvalidMetadataError) as caught:
            registry.register(ns, "svc", actors(), bad)
        assert isinstance(caught.value, TypeError)
        assert registry.count() == 0

    @pytest.mark.parametrize("where", ["namespace", "service"])
    @pytest.mark.parametrize("bad", [["a"], {"a": 1}, {1, 2}])
    def test_unhashable_keys_are_rejected(self, registry: Registry, ns: Any,
                                          actors: ActorFactory, where: str, bad: Any) -> None:
        key: tuple[Any, Any] = (bad, "svc") if where == "namespace" else (ns, bad)
        ref = actors()
        with pytest.raises(InvalidKeyError) as caught:
            registry.register(*key, ref)
        assert isinstance(caught.value, TypeError)
        for call in (registry.unregister, registry.lookup, registry.lookup_with_metadata):
            with pytest.raises(InvalidKeyError):
                call(*key)
        with pytest.raises(InvalidKeyError):
            registry.update_metadata(*key, {})
        with pytest.raises(InvalidKeyError):
            registry.via(*key)
        assert registry.count() == 0

    def test_update_metadata_with_bad_metadata_changes_nothing(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        ref = actors()
        registry.register(ns, "svc", ref, {"v": 1})
        with pytest.raises(InvalidMetadataError):
            registry.update_metadata(ns, "svc", [("v", 2)])  # type: ignore[arg-type]
        assert registry.lookup_with_metadata(ns, "svc") == (ref, {"v": 1})

    def test_any_hashable_key_works(self, registry: Registry, actors: ActorFactory) -> None:
        if not self.any_hashable_keys(registry):
            pytest.skip(f"{registry.backend.name} declares key_types={registry.backend.key_types}")
        ref = actors()
        keys = [(_Color.RED, 1), (("test", 7), frozenset({1})), (None, 3.5), (b"x", ("a", 1))]
        for namespace, service in keys:
            registry.register(namespace, service, ref)
        for namespace, service in keys:
            assert registry.lookup(namespace, service) is ref
        registry.unregister(_Color.RED, 1)
        assert registry.lookup(_Color.RED, 1) is None

    def test_declared_key_types_work(self, registry: Registry, actors: ActorFactory) -> None:
        ref = actors()
        namespace = test_namespace()
        for service in ("s", 7, ("job", 3), ("a", ("b", 1))):
            registry.register(namespace, service, ref)
            assert registry.lookup(namespace, service) is ref
        assert registry.count(namespace) == 4

    # -- unregister / update ---------------------------------------------------------------

    def test_unregister_is_idempotent(self, registry: Registry, ns: Any,
                                      actors: ActorFactory) -> None:
        ref = actors()
        registry.register(ns, "svc", ref)
        registry.unregister(ns, "svc")
        registry.unregister(ns, "svc")
        registry.unregister(ns, "never-registered")
        assert registry.lookup(ns, "svc") is None
        assert registry.count(ns) == 0
        assert ref.is_alive()  # unregistering does not stop the actor

    def test_name_is_free_after_unregister(self, registry: Registry, ns: Any,
                                           actors: ActorFactory) -> None:
        first, second = actors(), actors()
        registry.register(ns, "svc", first)
        registry.unregister(ns, "svc")
        registry.register(ns, "svc", second)
        assert registry.lookup(ns, "svc") is second

    def test_update_metadata_replaces_never_merges(self, registry: Registry, ns: Any,
                                                   actors: ActorFactory) -> None:
        ref = actors()
        registry.register(ns, "svc", ref, {"a": 1, "b": 2})
        registry.update_metadata(ns, "svc", {"c": 3})
        assert registry.lookup_with_metadata(ns, "svc") == (ref, {"c": 3})
        assert registry.match(ns, {"a": 1}) == []
        assert [s for s, _, _ in registry.match(ns, {"c": 3})] == ["svc"]

    def test_update_metadata_of_missing_name(self, registry: Registry, ns: Any) -> None:
        with pytest.raises(NotRegisteredError) as caught:
            registry.update_metadata(ns, "nobody", {"a": 1})
        assert isinstance(caught.value, LookupError)
        assert registry.count() == 0

    # -- metadata copies ----------------------------------------------------------------------

    def test_registry_keeps_its_own_copy_of_metadata(self, registry: Registry, ns: Any,
                                                      actors: ActorFactory) -> None:
        ref = actors()
        metadata: dict[str, Any] = {"tags": ["a", "b"], "limits": {"cpu": 1}}
        registry.register(ns, "svc", ref, metadata)
        metadata["tags"].append("c")
        metadata["limits"]["cpu"] = 99
        metadata["new"] = True
        assert registry.lookup_with_metadata(ns, "svc") == (
            ref, {"tags": ["a", "b"], "limits": {"cpu": 1}}
        )

    def test_what_lookups_hand_out_cannot_change_the_store(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        ref = actors()
        registry.register(ns, "svc", ref, {"tags": ["a"], "n": 1})
        _, handed_out = registry.lookup_with_metadata(ns, "svc")  # type: ignore[misc]
        handed_out["tags"].append("x")
        handed_out["n"] = 2
        for _, _, md in registry.match(ns, {"n": 1}):
            md["tags"].append("y")
        for _, _, md in registry.find_services_by_metadata(ns, lambda m: True):
            md.clear()
        assert registry.lookup_with_metadata(ns, "svc") == (ref, {"tags": ["a"], "n": 1})
        assert [s for s, _, _ in registry.match(ns, {"tags": "a"})] == ["svc"]
        assert registry.match(ns, {"tags": "x"}) == []

    def test_nested_containers_of_every_kind_are_copied(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        if not self.any_metadata(registry):
            pytest.skip(f"{registry.backend.name} stores JSON metadata only")
        import collections

        Cfg = collections.namedtuple("Cfg", "hosts port")
        original: dict[str, Any] = {"cfg": Cfg(["h1"], 80), "queue": collections.deque([1]),
                    "pair": (["x"], 1)}
        ref = actors()
        registry.register(ns, "svc", ref, original)
        original["cfg"].hosts.append("changed")
        original["queue"].append(2)
        original["pair"][0].append("changed")
        _, handed_out = registry.lookup_with_metadata(ns, "svc")  # type: ignore[misc]
        handed_out["cfg"].hosts.append("changed")
        handed_out["queue"].append(3)
        _, stored = registry.lookup_with_metadata(ns, "svc")  # type: ignore[misc]
        assert stored["cfg"] == Cfg(["h1"], 80) and type(stored["cfg"]) is Cfg
        assert list(stored["queue"]) == [1]
        assert stored["pair"] == (["x"], 1)

    def test_any_mapping_is_accepted(self, registry: Registry, ns: Any,
                                     actors: ActorFactory) -> None:
        import types

        ref = actors()
        registry.register(ns, "svc", ref, types.MappingProxyType({"role": "db"}))
        assert registry.lookup_with_metadata(ns, "svc") == (ref, {"role": "db"})

    # -- listings ----------------------------------------------------------------------------

    def test_list_services_count_and_keys_of(self, registry: Registry, ns: Any,
                                             actors: ActorFactory) -> None:
        other_ns = test_namespace()
        a, b = actors(), actors()
        registry.register(ns, "a", a)
        registry.register(ns, "b", b)
        registry.register(other_ns, "a", b)
        assert sorted(registry.list_services(ns), key=str) == ["a", "b"]
        assert registry.list_services(other_ns) == ["a"]
        assert registry.list_services(test_namespace()) == []
        assert registry.count(ns) == 2
        assert registry.count(other_ns) == 1
        assert registry.count() == 3
        assert registry.keys_of(a) == [(ns, "a")]
        assert sorted(registry.keys_of(b), key=repr) == sorted(
            [(ns, "b"), (other_ns, "a")], key=repr
        )
        assert registry.keys_of(actors()) == []

    def test_namespaces_are_isolated(self, registry: Registry, actors: ActorFactory) -> None:
        ns1, ns2 = test_namespace(), test_namespace()
        a, b = actors(), actors()
        registry.register(ns1, "svc", a, {"k": 1})
        registry.register(ns2, "svc", b, {"k": 1})
        assert registry.lookup(ns1, "svc") is a
        assert registry.lookup(ns2, "svc") is b
        assert [ref for _, ref, _ in registry.match(ns1, {"k": 1})] == [a]
        registry.unregister(ns1, "svc")
        assert registry.lookup(ns2, "svc") is b

    def test_two_registries_share_nothing(self, registry_factory: Callable[[], Registry],
                                          ns: Any, actors: ActorFactory) -> None:
        first, second = registry_factory(), registry_factory()
        a, b = actors(), actors()
        first.register(ns, "svc", a)
        if first.backend.distributed:
            pytest.skip("registries on one shared store share names by design")
        second.register(ns, "svc", b)
        assert first.lookup(ns, "svc") is a
        assert second.lookup(ns, "svc") is b
        second.unregister(ns, "svc")
        assert first.lookup(ns, "svc") is a
        assert second.count() == 0

    # -- match / find ----------------------------------------------------------------------

    def test_match_equality_and_membership(self, registry: Registry, ns: Any,
                                           actors: ActorFactory) -> None:
        refs = {name: actors() for name in ("w1", "w2", "w3", "db")}
        registry.register(ns, "w1", refs["w1"], {"role": "worker", "caps": ["gpu", "ssd"]})
        registry.register(ns, "w2", refs["w2"], {"role": "worker", "caps": ["ssd"]})
        registry.register(ns, "w3", refs["w3"], {"role": "worker", "caps": []})
        registry.register(ns, "db", refs["db"], {"role": "db", "zone": "eu"})

        def names(criteria: dict[str, Any]) -> list[Any]:
            return sorted(s for s, _, _ in registry.match(ns, criteria))

        assert names({"role": "worker"}) == ["w1", "w2", "w3"]
        assert names({"caps": "ssd"}) == ["w1", "w2"]
        assert names({"role": "worker", "caps": "gpu"}) == ["w1"]
        assert names({"caps": ["gpu", "ssd"]}) == ["w1"]  # whole-value equality
        assert names({"role": "db", "caps": "ssd"}) == []
        assert names({"zone": "us"}) == []
        assert names({"missing": 1}) == []
        assert names({}) == ["db", "w1", "w2", "w3"]
        service, ref, metadata = registry.match(ns, {"zone": "eu"})[0]
        assert (service, ref, metadata) == ("db", refs["db"], {"role": "db", "zone": "eu"})

    def test_match_on_tuple_set_and_frozenset_fields(self, registry: Registry, ns: Any,
                                                     actors: ActorFactory) -> None:
        if not self.any_metadata(registry):
            pytest.skip(f"{registry.backend.name} stores JSON metadata only")
        registry.register(ns, "t", actors(), {"f": ("x", "y")})
        registry.register(ns, "s", actors(), {"f": {"x"}})
        registry.register(ns, "fs", actors(), {"f": frozenset({"y"})})
        assert sorted(str(s) for s, _, _ in registry.match(ns, {"f": "x"})) == ["s", "t"]
        assert sorted(str(s) for s, _, _ in registry.match(ns, {"f": "y"})) == ["fs", "t"]
        assert [s for s, _, _ in registry.match(ns, {"f": ("x", "y")})] == ["t"]

    def test_match_with_unhashable_values(self, registry: Registry, ns: Any,
                                          actors: ActorFactory) -> None:
        registry.register(ns, "a", actors(), {"cfg": {"x": 1}, "tags": [["nested"]]})
        registry.register(ns, "b", actors(), {"cfg": {"x": 2}})
        assert [s for s, _, _ in registry.match(ns, {"cfg": {"x": 1}})] == ["a"]
        assert [s for s, _, _ in registry.match(ns, {"tags": ["nested"]})] == ["a"]

    def test_match_set_value_against_frozenset_criterion(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        if not self.any_metadata(registry):
            pytest.skip(f"{registry.backend.name} stores JSON metadata only")
        registry.register(ns, "a", actors(), {"tags": {1, 2}, "none": set()})
        assert [s for s, _, _ in registry.match(ns, {"tags": frozenset({1, 2})})] == ["a"]
        assert [s for s, _, _ in registry.match(ns, {"none": frozenset()})] == ["a"]
        assert [s for s, _, _ in registry.match(ns, {"tags": 2})] == ["a"]

    def test_match_rejects_non_mapping_criteria(self, registry: Registry, ns: Any) -> None:
        with pytest.raises(TypeError):
            registry.match(ns, [("a", 1)])  # type: ignore[arg-type]

    def test_find_services_by_metadata(self, registry: Registry, ns: Any,
                                       actors: ActorFactory) -> None:
        a, b = actors(), actors()
        registry.register(ns, "a", a, {"load": 3})
        registry.register(ns, "b", b, {"load": 9})
        found = registry.find_services_by_metadata(ns, lambda md: md.get("load", 0) > 5)
        assert found == [("b", b, {"load": 9})]
        with pytest.raises(TypeError):
            registry.find_services_by_metadata(ns, "load > 5")  # type: ignore[arg-type]

    # -- death-driven unregistration ------------------------------------------------------------

    def _assert_gone(self, registry: Registry, ns: Any, ref: Any, services: list[Any]) -> None:
        """Every read, with no waiting: the actor has stopped, so its names
        must already be gone (death completes before Pykka reports it)."""
        assert_no_names_of(registry, ref, [ns], services)

    def _register_all(self, registry: Registry, ns: Any, ref: Any) -> list[Any]:
        services = ["one", "two"]
        for service in services:
            registry.register(ns, service, ref, {"role": "x"})
        registry.register(test_namespace(), "elsewhere", ref, {"role": "x"})
        return services

    def test_stopped_actor_is_unregistered(self, registry: Registry, ns: Any,
                                           actors: ActorFactory) -> None:
        ref = actors()
        services = self._register_all(registry, ns, ref)
        ref.stop(block=True)
        self._assert_gone(registry, ns, ref, services)
        assert registry.count() == 0
        replacement = actors()
        registry.register(ns, "one", replacement)  # the name is free at once
        assert registry.lookup(ns, "one") is replacement

    def test_crash_in_told_message_unregisters(self, registry: Registry, ns: Any,
                                               actors: ActorFactory) -> None:
        ref = actors()
        services = self._register_all(registry, ns, ref)
        ref.tell("crash")
        assert ref.actor_stopped.wait(5)
        self._assert_gone(registry, ns, ref, services)

    def test_exception_in_asked_message_keeps_the_name(self, registry: Registry, ns: Any,
                                                       actors: ActorFactory) -> None:
        ref = actors()
        registry.register(ns, "svc", ref)
        with pytest.raises(ValueError):
            ref.ask("raise", timeout=5)
        assert registry.lookup(ns, "svc") is ref

    def test_name_is_free_the_moment_the_actor_has_stopped(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        for _ in range(20):
            ref = actors()
            registry.register(ns, "svc", ref)
            ref.stop(block=True)
            assert registry.lookup(ns, "svc") is None
            successor = actors()
            registry.register(ns, "svc", successor)
            assert registry.lookup(ns, "svc") is successor
            registry.unregister(ns, "svc")

    @pytest.mark.parametrize("cls", [_FailingStop, _FailingFailure])
    def test_failing_lifecycle_hooks_still_unregister(
        self, registry: Registry, ns: Any, actors: ActorFactory, cls: type[pykka.Actor]
    ) -> None:
        ref = actors(cls)
        services = self._register_all(registry, ns, ref)
        if cls is _FailingStop:
            ref.stop(block=True)
        else:
            ref.tell("anything")
            assert ref.actor_stopped.wait(5)
        self._assert_gone(registry, ns, ref, services)

    def test_exception_in_on_start_unregisters(self, registry: Registry, ns: Any,
                                               actors: ActorFactory) -> None:
        gate = threading.Event()

        class GatedFailingStart(pykka.ThreadingActor):
            def on_start(self) -> None:
                gate.wait(10)
                raise RuntimeError("on_start failed on purpose")

        ref = actors(GatedFailingStart)
        services = self._register_all(registry, ns, ref)  # registered before on_start ends
        gate.set()
        assert ref.actor_stopped.wait(5)
        self._assert_gone(registry, ns, ref, services)

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_base_exception_in_on_start_unregisters(self, registry: Registry, ns: Any,
                                                    actors: ActorFactory) -> None:
        # Pykka lets this escape its thread without unregistering the actor;
        # the death watch's excepthook handler catches it.
        release = threading.Event()
        threads: list[threading.Thread] = []
        ref = actors(_ZombieStart, release, threads)
        services = self._register_all(registry, ns, ref)
        release.set()
        assert ref.actor_stopped.wait(5), "zombie actor never marked stopped"
        wait_until(lambda: threads, message="actor thread seen")
        threads[0].join(5)  # let every excepthook in the chain finish
        self._assert_gone(registry, ns, ref, services)
        assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None

    def test_late_death_notice_never_removes_a_newer_holder(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        old, new = actors(), actors()
        registry.register(ns, "svc", old)
        # Hold the server while "old" dies and "new" registers behind its
        # death notice: "new" gets the name.
        with holding_server(registry):
            old.stop(block=True)
            registering = threading.Thread(target=registry.register, args=(ns, "svc", new))
            registering.start()
        registering.join(5)
        assert registry.lookup(ns, "svc") is new
        # Now a stale notice about "old" arrives late (as a slow death watch, or
        # a change feed replaying history, would deliver it): "new" keeps the name.
        state = registry._state
        state.pending_deaths.append((old, None))
        state.submit(lambda state: None)  # wakes the server, which drains the notices
        registry.sync()
        assert not state.pending_deaths
        assert registry.lookup(ns, "svc") is new
        assert registry.keys_of(new) == [(ns, "svc")]

    def test_sync_makes_listings_reflect_every_death_so_far(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        refs = [actors() for _ in range(5)]
        for i, ref in enumerate(refs):
            registry.register(ns, f"s{i}", ref, {"role": "x"})
        for ref in refs[:3]:
            ref.stop(block=True)
        registry.sync()
        assert registry.count(ns) == 2  # no waiting needed after sync
        assert sorted(registry.list_services(ns), key=str) == ["s3", "s4"]
        assert len(registry.match(ns, {"role": "x"})) == 2

    @pytest.mark.parametrize("how", ["stop", "crash"])
    def test_death_is_complete_before_pykka_reports_it_1000_times(
        self, registry: Registry, ns: Any, actors: ActorFactory, how: str
    ) -> None:
        other_ns = test_namespace()
        for i in range(1000):
            ref = Echo.start(f"d{i}")
            registry.register(ns, "svc", ref, {"role": "x"})
            registry.register(other_ns, "svc", ref)
            if how == "stop":
                ref.stop(block=True)
            else:
                ref.tell("crash")
                ref.actor_stopped.wait(5)
            # No wait, no sync(): every read is already clean.
            assert registry.lookup(ns, "svc") is None
            assert registry.count(ns) == 0 and registry.count(other_ns) == 0
            assert registry.list_services(ns) == []
            assert registry.match(ns, {"role": "x"}) == []
            assert registry.keys_of(ref) == []
            assert ns not in registry.namespaces()
        assert registry.count() == 0

    def test_stop_all_leaves_no_name_behind(self, registry: Registry, ns: Any,
                                            actors: ActorFactory) -> None:
        """``pykka.ActorRegistry.stop_all()`` stops every actor of the process,
        the registry's own server too: every name is gone when it returns."""
        refs = [actors() for _ in range(3)]
        for i, ref in enumerate(refs):
            registry.register(ns, f"s{i}", ref, {"role": "x"})
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        for ref in refs:
            assert ref.actor_stopped.is_set()
            assert_no_names_of(registry, ref, [ns], ["s0", "s1", "s2"])
        assert registry.count(ns) == 0 and registry.list_services(ns) == []

    def test_ask_of_a_dead_actor_implies_its_names_are_gone(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        ref = actors()
        registry.register(ns, "svc", ref)
        ref.tell("crash")
        with pytest.raises(pykka.ActorDeadError):
            for _ in range(10_000):  # until Pykka reports it dead, then at once
                ref.ask("hi", timeout=5)
        assert registry.lookup(ns, "svc") is None and registry.count(ns) == 0

    def test_death_clean_up_does_not_wait_for_the_server(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        events: list[Any] = []
        arrived = threading.Event()

        def listener(event: Any) -> None:
            events.append(event)
            if isinstance(event, Unregistered):
                arrived.set()

        registry.subscribe(listener, namespace=ns)
        ref = actors()
        registry.register(ns, "svc", ref)
        with holding_server(registry):  # the server is busy for the whole block
            ref.stop(block=True)
            assert registry.lookup(ns, "svc") is None and registry.count(ns) == 0
            assert arrived.wait(5), "the Unregistered event waited for the server"
            successor = actors()
        registry.register(ns, "svc", successor)  # the name is free at once
        wait_until(lambda: len(events) == 3, message="three events delivered")
        assert [type(e).__name__ for e in events] == ["Registered", "Unregistered",
                                                      "Registered"]
        assert events[1].reason.kind == "stopped"

    def test_eight_threads_never_see_a_stopped_actor(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        """Readers check, continuously, that no entry names an actor whose
        ``actor_stopped`` is set, while writers register and actors die."""
        stop = threading.Event()
        errors: list[str] = []
        rounds = 150
        stopped: list[Any] = []  # refs whose stop had returned (appended after)

        def read() -> None:
            while not stop.is_set():
                # Every ref in this copy had actor_stopped set before the reads below.
                dead = {id(ref) for ref in list(stopped)}
                for service, ref, _ in registry.match(ns, {}):
                    if id(ref) in dead:
                        errors.append(f"match lists {service} of a stopped actor")
                for service in registry.list_services(ns):
                    if id(registry.lookup(ns, service)) in dead:
                        errors.append(f"lookup({service}) gave a stopped actor")
                if any(registry.keys_of(ref) for ref in list(stopped)[-5:]):
                    errors.append("keys_of lists names of a stopped actor")

        def churn(t: int) -> None:
            try:
                for i in range(rounds):
                    ref = Echo.start()
                    service = f"w{t}-{i % 5}"
                    try:
                        registry.register(ns, service, ref)
                    except AlreadyRegisteredError:
                        pass
                    if i % 2:
                        ref.tell("crash")
                        ref.actor_stopped.wait(5)
                    else:
                        ref.stop(block=True)
                    stopped.append(ref)
                    if registry.lookup(ns, service) is ref:
                        errors.append(f"{service}: lookup after stop gave the dead actor")
            except BaseException as error:
                errors.append(repr(error))

        readers = [threading.Thread(target=read) for _ in range(4)]
        writers = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(60)
        stop.set()
        for thread in readers:
            thread.join(10)
        assert errors == []
        assert registry.count(ns) == 0

    def test_register_racing_with_death_is_refused_or_cleaned(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        for i in range(100):
            ref = Echo.start()
            outcome: list[str] = []

            def register(ref: Any = ref, i: int = i, outcome: list[str] = outcome) -> None:
                try:
                    registry.register(ns, f"r{i}", ref)
                    outcome.append("registered")
                except ActorNotAliveError:
                    outcome.append("refused")

            racer = threading.Thread(target=register)
            racer.start()
            ref.stop(block=True)
            racer.join(10)
            assert outcome in (["registered"], ["refused"])
            # Either way, once the register has returned, the dead actor is gone.
            assert registry.lookup(ns, f"r{i}") is None
            assert registry.keys_of(ref) == []
        assert registry.count(ns) == 0

    # -- batch writes -------------------------------------------------------------------

    def test_register_many_and_unregister_many(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        events: list[Any] = []
        registry.subscribe(events.append, namespace=ns)
        a, b = actors(), actors()
        registry.register_many(ns, [("s0", a), ("s1", b, {"role": "x"}), ("s2", a)])
        assert registry.lookup(ns, "s0") is a and registry.lookup(ns, "s2") is a
        assert registry.lookup_with_metadata(ns, "s1") == (b, {"role": "x"})
        assert sorted(registry.keys_of(a), key=str) == [(ns, "s0"), (ns, "s2")]
        registry.unregister_many(ns, ["s0", "missing", "s1"])
        assert registry.list_services(ns) == ["s2"]
        registry.register_many(ns, [])  # nothing to do
        registry.unregister_many(ns, [])
        registry.sync()
        wait_until(lambda: len(events) == 5, message="five events")
        assert [(type(e).__name__, e.service) for e in events] == [
            ("Registered", "s0"), ("Registered", "s1"), ("Registered", "s2"),
            ("Unregistered", "s0"), ("Unregistered", "s1"),
        ]

    def test_register_many_is_all_or_nothing(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        holder, newcomer, dead = actors(), actors(), actors()
        registry.register(ns, "taken", holder)
        dead.stop(block=True)
        with pytest.raises(AlreadyRegisteredError) as taken:
            registry.register_many(ns, [("free1", newcomer), ("taken", newcomer),
                                        ("free2", newcomer)])
        assert taken.value.service == "taken"
        with pytest.raises(ActorNotAliveError) as not_alive:
            registry.register_many(ns, [("free1", newcomer), ("free3", dead)])
        assert not_alive.value.service == "free3" and "free3" in str(not_alive.value)
        with pytest.raises(DuplicateServiceError) as twice:
            registry.register_many(ns, [("d", newcomer), ("e", newcomer), ("d", newcomer)])
        assert twice.value.service == "d" and isinstance(twice.value, ValueError)
        bad_items: list[Any] = [
            [("ok", newcomer), ("bad", "not a ref")],
            [("ok", newcomer), ("bad", newcomer, ["not", "a", "mapping"])],
            [("ok", newcomer), ["bad", newcomer]],
            [("ok", newcomer), (["unhashable"], newcomer)],
        ]
        for items in bad_items:
            with pytest.raises(RegistryError):
                registry.register_many(ns, items)
        assert registry.list_services(ns) == ["taken"]
        assert registry.keys_of(newcomer) == []
        assert registry.lookup(ns, "taken") is holder

    def test_death_of_unregistered_actor_is_harmless(self, registry: Registry, ns: Any,
                                                     actors: ActorFactory) -> None:
        kept, stray = actors(), actors()
        registry.register(ns, "kept", kept)
        stray.stop(block=True)
        registry.run_in_server(lambda state: None)
        assert registry.lookup(ns, "kept") is kept

    # -- via ----------------------------------------------------------------------------------

    def test_via_tell_ask_proxy_resolve(self, registry: Registry, ns: Any,
                                        actors: ActorFactory) -> None:
        ref = actors(Echo, "first")
        registry.register(ns, "svc", ref)
        via = registry.via(ns, "svc")
        assert via.resolve() is ref
        assert via.ask("hi") == ("echo", "hi")
        via.tell("told")
        assert via.ask("label", timeout=5) == "first"
        assert via.proxy().get_label().get(timeout=5) == "first"
        assert via.proxy().label.get(timeout=5) == "first"

    def test_via_follows_the_name_to_a_replacement(self, registry: Registry, ns: Any,
                                                   actors: ActorFactory) -> None:
        first = actors(Echo, "first")
        registry.register(ns, "svc", first)
        via = registry.via(ns, "svc")
        proxy = via.proxy()
        assert proxy.get_label().get(timeout=5) == "first"
        first.stop(block=True)
        with pytest.raises(NotRegisteredError):
            via.ask("hi")
        with pytest.raises(NotRegisteredError):
            proxy.get_label()
        second = actors(Echo, "second")
        registry.register(ns, "svc", second)
        assert via.ask("label") == "second"
        assert proxy.get_label().get(timeout=5) == "second"

    def test_via_ask_has_a_deadline(self, registry: Registry, ns: Any,
                                    actors: ActorFactory) -> None:
        from pykka_registry import RegistryTimeoutError

        release = threading.Event()

        class Slow(pykka.ThreadingActor):
            def on_receive(self, message: Any) -> Any:
                release.wait(5)
                return message

        registry.register(ns, "slow", actors(Slow))
        started = time.monotonic()
        with pytest.raises(RegistryTimeoutError) as caught:
            registry.via(ns, "slow").ask("hi", timeout=0.05)
        release.set()
        assert isinstance(caught.value, TimeoutError)
        assert time.monotonic() - started < 2

    def test_via_without_holder_raises(self, registry: Registry, ns: Any) -> None:
        via = registry.via(ns, "nobody")
        for call in (via.resolve, lambda: via.tell("x"), lambda: via.ask("x")):
            with pytest.raises(NotRegisteredError) as caught:
                call()
            assert isinstance(caught.value, LookupError)

    # -- stop_namespace ---------------------------------------------------------------------

    def test_stop_namespace(self, registry: Registry, actors: ActorFactory) -> None:
        doomed_ns, kept_ns = test_namespace(), test_namespace()
        doomed = [actors() for _ in range(3)]
        kept = actors()
        for i, ref in enumerate(doomed):
            registry.register(doomed_ns, f"s{i}", ref)
        registry.register(kept_ns, "kept", kept)
        registry.stop_namespace(doomed_ns, timeout=5)
        assert all(not ref.is_alive() for ref in doomed)
        assert kept.is_alive()
        assert registry.count(doomed_ns) == 0
        assert registry.list_services(doomed_ns) == []
        assert registry.lookup(kept_ns, "kept") is kept
        registry.stop_namespace(test_namespace())  # empty: a no-op

    # -- concurrency --------------------------------------------------------------------------

    def test_concurrent_registration_from_eight_threads(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        threads_n, per_thread = 8, 40
        refs = [actors() for _ in range(threads_n)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads_n)

        def work(t: int) -> None:
            try:
                barrier.wait(5)
                for i in range(per_thread):
                    registry.register(ns, f"t{t}-{i}", refs[t], {"t": t})
                    assert registry.lookup(ns, f"t{t}-{i}") is refs[t]
                for i in range(0, per_thread, 2):
                    registry.unregister(ns, f"t{t}-{i}")
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        expected = {f"t{t}-{i}" for t in range(threads_n) for i in range(1, per_thread, 2)}
        assert sorted(registry.list_services(ns), key=str) == sorted(expected)
        assert registry.count(ns) == len(expected)
        for t in range(threads_n):
            assert len(registry.match(ns, {"t": t})) == per_thread // 2

    def test_racing_for_one_name_has_exactly_one_winner(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        threads_n = 8
        refs = [actors() for _ in range(threads_n)]
        for round_ in range(5):
            outcomes: list[Any] = [None] * threads_n
            barrier = threading.Barrier(threads_n)

            def race(t: int, round_: int = round_, outcomes: list[Any] = outcomes,
                     barrier: threading.Barrier = barrier) -> None:
                barrier.wait(5)
                try:
                    registry.register(ns, f"r{round_}", refs[t])
                    outcomes[t] = "won"
                except AlreadyRegisteredError as error:
                    outcomes[t] = error.existing

            threads = [threading.Thread(target=race, args=(t,)) for t in range(threads_n)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            winners = [t for t, outcome in enumerate(outcomes) if outcome == "won"]
            assert len(winners) == 1
            assert all(o is refs[winners[0]] for o in outcomes if o != "won")
            assert registry.lookup(ns, f"r{round_}") is refs[winners[0]]

    # -- lifecycle of the registry itself -----------------------------------------------------

    def test_stats_and_health(self, registry: Registry, ns: Any, actors: ActorFactory) -> None:
        registry.register(ns, "a", actors())
        registry.register(test_namespace(), "b", actors())
        stats = registry.stats()
        assert stats.names == 2
        assert stats.namespaces == 2
        assert stats.backend == registry.backend.name
        assert stats.uptime_s >= 0
        health = registry.health_check()
        assert health.status == "healthy"
        assert health.backend == registry.backend.name
        assert isinstance(dict(health.backend_health), dict)
        assert health.server_alive

    def test_stopped_registry_refuses_writes(self, registry_factory: Callable[[], Registry],
                                             ns: Any, actors: ActorFactory) -> None:
        registry = registry_factory()
        ref = actors()
        registry.register(ns, "svc", ref)
        server = registry.server_ref
        registry.stop()
        registry.stop()  # idempotent
        assert not server.is_alive()
        with pytest.raises(RegistryUnavailableError):
            registry.register(ns, "other", ref)
        with pytest.raises(RegistryUnavailableError):
            registry.unregister(ns, "svc")
        assert registry.health_check().status == "unhealthy"
        assert ref.is_alive()  # the registry never owned the actor

    def test_context_manager_stops_the_registry(self, ns: Any, actors: ActorFactory,
                                                request: Any) -> None:
        with self.start_registry(request) as registry:
            registry.register(ns, "svc", actors())
            server = registry.server_ref
        assert not server.is_alive()
        with pytest.raises(RegistryUnavailableError):
            registry.register(ns, "svc2", actors())

    # -- events, await, get_or_start (lifecycle) ---------------------------------------------

    def test_events_in_order_with_reasons(self, registry: Registry, ns: Any,
                                          actors: ActorFactory) -> None:
        events: list[Any] = []
        done = threading.Event()

        def listener(event: Any) -> None:
            events.append(event)
            if isinstance(event, Unregistered) and event.service == "last":
                done.set()

        registry.subscribe(listener, namespace=ns)
        a, b, c = actors(), actors(), actors()
        registry.register(ns, "a", a, {"v": 1})
        registry.update_metadata(ns, "a", {"v": 2})
        registry.unregister(ns, "a")
        registry.register(ns, "b", b)
        b.tell("crash")
        wait_until(lambda: registry.count(ns) == 0, message="crashed actor removed")
        registry.register(test_namespace(), "ignored", c)  # another namespace
        registry.register(ns, "last", c)
        c.stop(block=True)
        assert done.wait(5)
        kinds = [(type(e).__name__, e.service) for e in events]
        assert kinds == [
            ("Registered", "a"), ("MetadataUpdated", "a"), ("Unregistered", "a"),
            ("Registered", "b"), ("Unregistered", "b"),
            ("Registered", "last"), ("Unregistered", "last"),
        ]
        assert dict(events[0].metadata) == {"v": 1}
        assert dict(events[1].metadata) == {"v": 2}
        assert events[2].reason.kind == "unregistered"
        assert events[4].reason.kind == "crashed"
        assert isinstance(events[4].reason.exception, RuntimeError)
        assert events[6].reason.kind == "stopped"
        assert events[0].actor_ref is a

    def test_subscribe_with_replay_has_no_gap_or_duplicate(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        ref = actors()
        total = 60
        writer_started = threading.Event()

        def writer() -> None:
            for i in range(total):
                registry.register(ns, f"s{i}", ref)
                if i == total // 3:
                    writer_started.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert writer_started.wait(5)
        seen: list[Any] = []
        registry.subscribe(seen.append, namespace=ns, replay=True)
        thread.join(10)
        wait_until(lambda: len(seen) >= total, message="all events delivered")
        registry.run_in_server(lambda state: None)
        names = [e.service for e in seen]
        assert all(isinstance(e, Registered) for e in seen)
        assert sorted(names, key=lambda s: int(s[1:])) == [f"s{i}" for i in range(total)]
        assert len(names) == len(set(names)) == total

    def test_failing_listener_does_not_disturb_others(self, registry: Registry, ns: Any,
                                                      actors: ActorFactory) -> None:
        got = threading.Event()

        def broken(event: Any) -> None:
            raise RuntimeError("listener bug")

        registry.subscribe(broken, namespace=ns)
        registry.subscribe(lambda e: got.set(), namespace=ns)
        registry.register(ns, "svc", actors())
        assert got.wait(5)
        assert registry.lookup(ns, "svc") is not None

    def test_cancelled_subscription_gets_nothing_more(self, registry: Registry, ns: Any,
                                                      actors: ActorFactory) -> None:
        seen: list[Any] = []
        marker = threading.Event()
        subscription = registry.subscribe(seen.append, namespace=ns)
        registry.register(ns, "before", actors())
        wait_until(lambda: len(seen) == 1, message="first event")
        subscription.cancel()
        registry.subscribe(lambda e: marker.set(), namespace=ns)
        registry.register(ns, "after", actors())
        assert marker.wait(5)
        assert [e.service for e in seen] == ["before"]

    def test_await_name(self, registry: Registry, ns: Any, actors: ActorFactory) -> None:
        from pykka_registry import RegistryTimeoutError

        ref = actors()
        result: list[Any] = []
        waiter = threading.Thread(target=lambda: result.append(
            registry.await_name(ns, "later", timeout=5)))
        waiter.start()
        registry.register(ns, "later", ref)
        waiter.join(5)
        assert result == [ref]
        assert registry.await_name(ns, "later", timeout=0) is ref  # present: at once
        started = time.monotonic()
        with pytest.raises(RegistryTimeoutError) as caught:
            registry.await_name(ns, "never", timeout=0.05)
        assert isinstance(caught.value, TimeoutError)
        assert time.monotonic() - started < 2

    def test_await_name_inside_a_listener_does_not_stall(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        from pykka_registry import RegistryTimeoutError

        found: list[Any] = []
        done = threading.Event()

        def listener(event: Any) -> None:
            if event.service == "first":
                try:
                    found.append(registry.await_name(ns, "second", timeout=5))
                except RegistryTimeoutError as error:
                    found.append(error)
                done.set()

        registry.subscribe(listener, namespace=ns)
        started = time.monotonic()
        registry.register(ns, "first", actors())
        second = actors()
        registry.register(ns, "second", second)
        assert done.wait(6)
        assert found == [second]
        assert time.monotonic() - started < 2.5

    def test_get_or_start_is_atomic_under_contention(self, registry: Registry, ns: Any,
                                                     actors: ActorFactory) -> None:
        starts: list[Any] = []
        start_lock = threading.Lock()

        def start() -> Any:
            ref = actors()
            with start_lock:
                starts.append(ref)
            return ref

        threads_n = 16
        results: list[Any] = [None] * threads_n
        barrier = threading.Barrier(threads_n)

        def call(i: int) -> None:
            barrier.wait(5)
            results[i] = registry.get_or_start(ns, "singleton", start, {"kind": "single"})

        threads = [threading.Thread(target=call, args=(i,)) for i in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(starts) == 1
        assert all(r is starts[0] for r in results)
        assert registry.lookup_with_metadata(ns, "singleton") == (starts[0], {"kind": "single"})
        assert sum(ref.is_alive() for ref in actors.refs) == 1

    def test_get_or_start_error_leaves_key_free(self, registry: Registry, ns: Any,
                                                actors: ActorFactory) -> None:
        def broken_start() -> Any:
            raise OSError("could not start")

        with pytest.raises(OSError):
            registry.get_or_start(ns, "svc", broken_start)
        assert registry.lookup(ns, "svc") is None
        ref = registry.get_or_start(ns, "svc", lambda: actors())
        assert registry.lookup(ns, "svc") is ref
        assert registry.get_or_start(ns, "svc", lambda: pytest.fail("must not start")) is ref

    # -- groups -----------------------------------------------------------------------------
    # Skipped, with the reason, for a backend that declares supports_groups = False.

    @pytest.fixture
    def grouped(self, registry: Registry) -> Registry:
        if not getattr(registry.backend, "supports_groups", False):
            pytest.skip(f"backend {registry.backend.name} keeps no groups "
                        "(supports_groups is False)")
        return registry

    def _assert_in_no_group(self, registry: Registry, ref: Any, ns: Any,
                            groups: list[Any]) -> None:
        """Every group read, with no waiting (death leaves every group
        before Pykka reports the actor stopped)."""
        assert registry.groups_of(ref) == []
        for group in groups:
            assert ref not in registry.members(ns, group)
            assert all(r is not ref for r, _ in registry.members_with_metadata(ns, group))
            assert all(r is not ref for r, _ in registry.match_members(ns, group, {}))
            assert registry.count_members(ns, group) == len(registry.members(ns, group))
        assert registry.stats().memberships == sum(
            registry.count_members(ns, g) for g in registry.groups(ns))

    def test_groups_refused_without_support(self, registry_factory: Callable[[], Registry],
                                            ns: Any, actors: ActorFactory) -> None:
        registry = registry_factory()
        if getattr(registry.backend, "supports_groups", False):
            pytest.skip("the backend keeps groups")
        with pytest.raises(GroupsNotSupportedError):
            registry.join(ns, "g", actors())
        with pytest.raises(NotImplementedError):
            registry.members(ns, "g")

    def test_join_members_and_metadata(self, grouped: Registry, ns: Any,
                                       actors: ActorFactory) -> None:
        registry = grouped
        a, b, c = actors(), actors(), actors()
        registry.join(ns, "g", a, {"n": 1})
        registry.join(ns, "g", b.proxy(), {"n": 2})  # a proxy stands for its ref
        registry.join(ns, "g", c)
        assert registry.members(ns, "g") == [a, b, c]
        assert registry.members_with_metadata(ns, "g") == [(a, {"n": 1}), (b, {"n": 2}), (c, {})]
        assert registry.count_members(ns, "g") == 3
        assert registry.groups(ns) == ["g"]
        assert registry.groups_of(a) == [(ns, "g")]
        assert registry.groups_of(b.proxy()) == [(ns, "g")]
        assert registry.match_members(ns, "g", {"n": 2}) == [(b, {"n": 2})]
        assert registry.match_members(ns, "g", {}) == registry.members_with_metadata(ns, "g")
        # Joining again replaces the metadata and keeps the place.
        registry.join(ns, "g", a, {"n": 9})
        assert registry.members_with_metadata(ns, "g")[0] == (a, {"n": 9})
        assert registry.count_members(ns, "g") == 3
        # The metadata handed out is a copy.
        registry.members_with_metadata(ns, "g")[0][1]["n"] = 0
        assert registry.match_members(ns, "g", {"n": 9}) == [(a, {"n": 9})]
        stats = registry.stats()
        assert (stats.groups, stats.memberships) == (1, 3)
        health = registry.health_check()
        assert (health.groups, health.memberships) == (1, 3)

    def test_an_actor_in_many_groups_and_names_apart(self, grouped: Registry, ns: Any,
                                                     actors: ActorFactory) -> None:
        registry = grouped
        a = actors()
        other = test_namespace()
        registry.join(ns, "g1", a)
        registry.join(ns, "g2", a)
        registry.join(other, "g1", a)
        registry.register(ns, "g1", a)  # a name and a group under one key
        assert sorted(map(str, registry.groups_of(a))) == sorted(
            map(str, [(ns, "g1"), (ns, "g2"), (other, "g1")]))
        assert sorted(map(str, registry.groups(ns))) == ["g1", "g2"]
        assert registry.members(other, "g1") == [a]
        registry.unregister(ns, "g1")
        assert registry.members(ns, "g1") == [a]
        registry.leave(ns, "g1", a)
        assert registry.lookup(ns, "g1") is None
        assert registry.members(ns, "g1") == []
        assert registry.groups(ns) == ["g2"]

    def test_leave_is_idempotent(self, grouped: Registry, ns: Any, actors: ActorFactory) -> None:
        registry = grouped
        a, b = actors(), actors()
        registry.leave(ns, "g", a)  # never joined
        registry.join(ns, "g", a)
        registry.join(ns, "g", b)
        registry.leave(ns, "g", a)
        registry.leave(ns, "g", a)
        assert registry.members(ns, "g") == [b]
        registry.join(ns, "g", a)  # rejoining after leaving goes to the end
        assert registry.members(ns, "g") == [b, a]
        registry.leave(ns, "g", b)
        registry.leave(ns, "g", a)
        assert registry.groups(ns) == []
        assert registry.stats().memberships == 0

    def test_joining_a_dead_actor_is_refused(self, grouped: Registry, ns: Any,
                                             actors: ActorFactory) -> None:
        ref = actors()
        ref.stop(block=True)
        with pytest.raises(ActorNotAliveError):
            grouped.join(ns, "g", ref)
        assert grouped.members(ns, "g") == []

    @pytest.mark.parametrize("bad", [None, "ref", 42, Echo])
    def test_join_bad_input_changes_nothing(self, grouped: Registry, ns: Any,
                                            actors: ActorFactory, bad: Any) -> None:
        registry = grouped
        ok = actors()
        registry.join(ns, "g", ok)
        with pytest.raises(InvalidActorRefError):
            registry.join(ns, "g", bad)
        unhashable: Any = ["unhashable"]
        with pytest.raises(InvalidKeyError):
            registry.join(ns, unhashable, ok)
        with pytest.raises(InvalidKeyError):
            registry.join(unhashable, "g", ok)
        with pytest.raises(InvalidMetadataError):
            registry.join(ns, "g", ok, unhashable)
        with pytest.raises(InvalidKeyError):
            registry.members(ns, unhashable)
        with pytest.raises(InvalidKeyError):
            registry.count_members(ns, unhashable)
        with pytest.raises(TypeError):
            registry.match_members(ns, "g", unhashable)
        with pytest.raises(InvalidActorRefError):
            registry.leave(ns, "g", bad)
        assert registry.members_with_metadata(ns, "g") == [(ok, {})]
        assert registry.stats().memberships == 1

    def _join_all(self, registry: Registry, ns: Any, ref: Any) -> list[Any]:
        groups = ["g1", "g2"]
        for group in groups:
            registry.join(ns, group, ref, {"role": "x"})
        registry.join(test_namespace(), "elsewhere", ref)
        return groups

    def test_death_leaves_every_group_on_stop(self, grouped: Registry, ns: Any,
                                              actors: ActorFactory) -> None:
        for _ in range(200):
            ref, other = actors(), actors()
            groups = self._join_all(grouped, ns, ref)
            grouped.join(ns, "g1", other)
            ref.stop(block=True)
            self._assert_in_no_group(grouped, ref, ns, groups)
            assert grouped.members(ns, "g1") == [other]
            other.stop(block=True)
            assert grouped.members(ns, "g1") == []
        assert grouped.stats().memberships == 0

    def test_death_leaves_every_group_on_crash(self, grouped: Registry, ns: Any,
                                               actors: ActorFactory) -> None:
        ref = actors()
        groups = self._join_all(grouped, ns, ref)
        ref.tell("crash")
        assert ref.actor_stopped.wait(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    @pytest.mark.parametrize("cls", [_FailingStop, _FailingFailure])
    def test_death_leaves_groups_when_hooks_fail(self, grouped: Registry, ns: Any,
                                                 actors: ActorFactory,
                                                 cls: type[pykka.Actor]) -> None:
        ref = actors(cls)
        groups = self._join_all(grouped, ns, ref)
        if cls is _FailingStop:
            ref.stop(block=True)
        else:
            ref.tell("anything")
            assert ref.actor_stopped.wait(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    def test_death_in_on_start_leaves_groups(self, grouped: Registry, ns: Any,
                                             actors: ActorFactory) -> None:
        gate = threading.Event()

        class GatedFailingStart(pykka.ThreadingActor):
            def on_start(self) -> None:
                gate.wait(10)
                raise RuntimeError("on_start failed on purpose")

        ref = actors(GatedFailingStart)
        groups = self._join_all(grouped, ns, ref)
        gate.set()
        assert ref.actor_stopped.wait(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_base_exception_in_on_start_leaves_groups(self, grouped: Registry, ns: Any,
                                                      actors: ActorFactory) -> None:
        release = threading.Event()
        threads: list[threading.Thread] = []
        ref = actors(_ZombieStart, release, threads)
        groups = self._join_all(grouped, ns, ref)
        release.set()
        assert ref.actor_stopped.wait(5)
        wait_until(lambda: threads, message="actor thread seen")
        threads[0].join(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    def test_stop_all_leaves_every_group(self, grouped: Registry, ns: Any) -> None:
        refs = [Echo.start() for _ in range(5)]
        for ref in refs:
            grouped.join(ns, "g", ref)
        assert grouped.count_members(ns, "g") == 5
        pykka.ActorRegistry.stop_all(block=True)  # the registry's own server restarts
        for ref in refs:
            self._assert_in_no_group(grouped, ref, ns, ["g"])

    def test_join_racing_with_death_is_refused_or_cleaned(self, grouped: Registry, ns: Any,
                                                          actors: ActorFactory) -> None:
        for _ in range(100):
            ref = actors()
            ref.stop(block=False)
            with contextlib.suppress(ActorNotAliveError):
                grouped.join(ns, "g", ref)
            assert ref.actor_stopped.wait(5)
            assert ref not in grouped.members(ns, "g")
        assert grouped.count_members(ns, "g") == 0

    def test_stop_namespace_removes_members_and_stops_them(self, grouped: Registry,
                                                           actors: ActorFactory) -> None:
        ns, other = test_namespace(), test_namespace()
        a, b, keep = actors(), actors(), actors()
        grouped.join(ns, "g", a)
        grouped.join(ns, "h", b)
        grouped.join(other, "g", keep)
        seen: list[Any] = []
        grouped.subscribe(seen.append, namespace=ns)
        grouped.stop_namespace(ns)
        assert not a.is_alive() and not b.is_alive()
        assert grouped.groups(ns) == []
        assert grouped.members(other, "g") == [keep]
        wait_until(lambda: len(seen) >= 2, message="Left events")
        assert {e.reason.kind for e in seen[:2]} == {"namespace_stopped"}
        assert all(isinstance(e, Left) for e in seen[:2])

    def test_dispatch_and_ask_all(self, grouped: Registry, ns: Any, actors: ActorFactory) -> None:
        registry = grouped
        assert registry.dispatch(ns, "g", "x") == 0
        assert registry.ask_all(ns, "g", "x") == []
        refs = [actors() for _ in range(4)]
        for ref in refs:
            registry.join(ns, "g", ref)
        assert registry.dispatch(ns, "g", "hello") == 4
        answers = registry.ask_all(ns, "g", "q", timeout=5)
        assert answers == [(ref, ("echo", "q")) for ref in refs]
        with_error = registry.ask_all(ns, "g", "raise", timeout=5)
        assert [ref for ref, _ in with_error] == refs
        assert all(isinstance(value, ValueError) for _, value in with_error)
        for ref in refs:
            received = ref.proxy().received.get(timeout=5)
            assert received.count("hello") == 1

    def test_group_via_reaches_one_member_per_call(self, grouped: Registry, ns: Any,
                                                   actors: ActorFactory) -> None:
        registry = grouped
        with pytest.raises(NotRegisteredError):
            registry.group_via(ns, "g").tell("x")
        refs = [actors(Echo, f"w{i}") for i in range(3)]
        for ref in refs:
            registry.join(ns, "g", ref)
        rr = registry.group_via(ns, "g")
        assert [rr.ask("label", timeout=5) for _ in range(6)] == ["w0", "w1", "w2"] * 2
        hashed = registry.group_via(ns, "g", strategy="hash")
        first = hashed.ask("label", key="user-7", timeout=5)
        assert all(hashed.ask("label", key="user-7", timeout=5) == first for _ in range(5))
        randomly = registry.group_via(ns, "g", strategy="random")
        assert randomly.ask("label", timeout=5) in {"w0", "w1", "w2"}
        assert rr.proxy().get_label().get(timeout=5) in {"w0", "w1", "w2"}

    def test_supervised_child_rejoins_its_groups(self, grouped: Registry, ns: Any) -> None:
        from pykka_registry import ChildSpec, Supervisor

        spec = ChildSpec(id="w", start=Echo.start, name=(ns, "w"), metadata={"k": 1},
                         groups=[(ns, "workers"), (ns, "all")])
        supervisor = Supervisor.start(children=[spec], registry=grouped)
        try:
            first = grouped.members(ns, "workers")
            assert len(first) == 1 and grouped.members(ns, "all") == first
            assert grouped.members_with_metadata(ns, "workers") == [(first[0], {"k": 1})]
            first[0].tell("crash")
            assert first[0].actor_stopped.wait(5)
            assert grouped.members(ns, "workers") == [] or \
                grouped.members(ns, "workers")[0] is not first[0]
            second = grouped.await_name(ns, "w", replacing=first[0])
            # The name is registered first, then the groups are joined.
            wait_until(lambda: grouped.members(ns, "all") == [second],
                       message="the restarted child rejoined")
            assert grouped.members(ns, "workers") == [second]
        finally:
            supervisor.stop()
        assert grouped.members(ns, "workers") == []

    def test_group_events_in_order_and_replay(self, grouped: Registry, ns: Any,
                                              actors: ActorFactory) -> None:
        registry = grouped
        events: list[Any] = []
        registry.subscribe(events.append, namespace=ns)
        a, b = actors(), actors()
        registry.join(ns, "g", a, {"v": 1})
        registry.join(ns, "g", a, {"v": 2})
        registry.join(ns, "g", b)
        registry.leave(ns, "g", a)
        b.tell("crash")
        assert b.actor_stopped.wait(5)
        registry.sync()
        wait_until(lambda: len(events) >= 5, message="group events")
        kinds = [(type(e).__name__, e.actor_ref) for e in events]
        assert kinds == [("Joined", a), ("Joined", a), ("Joined", b), ("Left", a), ("Left", b)]
        assert dict(events[1].metadata) == {"v": 2}
        assert events[3].reason.kind == "left"
        assert events[4].reason.kind == "crashed"
        assert isinstance(events[4].reason.exception, RuntimeError)
        # Replay: members as Joined, no gap or duplicate with a writer running.
        total = 60
        refs = [actors() for _ in range(total)]
        started = threading.Event()

        def writer() -> None:
            for i, ref in enumerate(refs):
                registry.join(ns, "r", ref)
                if i == total // 3:
                    started.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert started.wait(5)
        seen: list[Any] = []
        registry.subscribe(lambda e: seen.append(e) if e.namespace == ns and
                           getattr(e, "group", None) == "r" else None,
                           namespace=ns, replay=True)
        thread.join(10)
        wait_until(lambda: len(seen) >= total, message="replayed and live Joined")
        registry.sync()
        assert all(isinstance(e, Joined) for e in seen)
        assert [e.actor_ref for e in seen] == refs

    def test_eight_threads_join_leave_dispatch_while_members_die(
        self, grouped: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        registry = grouped
        errors: list[BaseException] = []
        lock = threading.Lock()
        model: dict[str, set[Any]] = {}  # thread -> refs it believes are members

        created: list[Any] = []  # every member ever made, by every thread

        def worker(index: int) -> None:
            mine: set[Any] = set()
            try:
                for round_ in range(30):
                    ref = actors()
                    created.append(ref)
                    registry.join(ns, "g", ref)
                    mine.add(ref)
                    registry.dispatch(ns, "g", "ping")
                    if round_ % 3 == 0:
                        registry.leave(ns, "g", ref)
                        mine.discard(ref)
                    elif round_ % 3 == 1:
                        ref.stop(block=True)
                        mine.discard(ref)
                        assert ref not in registry.members(ns, "g")
                    # Another thread may stop a member right after the snapshot,
                    # so only actors already stopped before it must be absent.
                    stopped_before = {r for r in list(created) if r.actor_stopped.is_set()}
                    listed = registry.members(ns, "g")
                    assert not stopped_before.intersection(listed)
            except BaseException as error:
                errors.append(error)
            with lock:
                model[f"t{index}"] = mine

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors[:3]
        expected = set().union(*model.values())
        members = registry.members(ns, "g")
        assert len(members) == len(set(members))
        assert set(members) == expected
        assert registry.count_members(ns, "g") == len(expected)
        assert registry.stats().memberships == len(expected)
