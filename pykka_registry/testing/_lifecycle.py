"""Conformance tests of lifecycle: stop_namespace, stats and health, a stopped registry.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest

from pykka_registry import Registry, RegistryUnavailableError, test_namespace

from ._base import ConformanceBase
from ._helpers import ActorFactory


class LifecycleTests(ConformanceBase):
    """The conformance tests of lifecycle."""

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
