"""Conformance tests of metadata: the registry keeps and hands out
copies, never the caller's objects.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

from typing import Any

import pytest

from pykka_registry import Registry

from ._base import ConformanceBase
from ._helpers import ActorFactory


class MetadataTests(ConformanceBase):
    """The conformance tests of metadata."""

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
