"""Conformance tests of reads: listings, namespaces, isolation of registries, match and find.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from pykka_registry import Registry, test_namespace

from ._base import ConformanceBase
from ._helpers import ActorFactory


class ReadTests(ConformanceBase):
    """The conformance tests of reads."""

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
