"""Conformance tests of batch writes: register_many / unregister_many, all or nothing.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

from typing import Any

import pytest

from pykka_registry import (
    ActorNotAliveError,
    AlreadyRegisteredError,
    DuplicateServiceError,
    Registry,
    RegistryError,
)

from ._base import ConformanceBase
from ._helpers import ActorFactory, wait_until


class BatchWriteTests(ConformanceBase):
    """The conformance tests of batch writes."""

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
        registry.run_in_server(lambda backend: None)
        assert registry.lookup(ns, "kept") is kept
