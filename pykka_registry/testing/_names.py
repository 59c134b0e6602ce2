"""Conformance tests of names: register, lookup, bad input that changes
nothing, unregister and update_metadata.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

import enum
import threading
from typing import Any

import pytest

from pykka_registry import (
    ActorNotAliveError,
    AlreadyRegisteredError,
    InvalidActorRefError,
    InvalidKeyError,
    InvalidMetadataError,
    NotRegisteredError,
    Registry,
    RegistryError,
    test_namespace,
)

from ._base import ConformanceBase
from ._helpers import ActorFactory


class _Color(enum.Enum):
    RED = 1


class NameTests(ConformanceBase):
    """The conformance tests of names."""

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
