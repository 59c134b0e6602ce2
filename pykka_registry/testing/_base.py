"""The base of the conformance suite's mixins: the backend under test, the
fixtures every test uses and the questions a test asks of the backend's
declared types.

Needs pytest (the fixtures).

Guarantees
----------
* Each test gets registries of its own (``registry``, or ``registry_factory``
  for several), all stopped at teardown, a fresh namespace (``ns``) and an
  :class:`~pykka_registry.testing.ActorFactory` whose actors are stopped at
  teardown (``actors``).
* The fixtures run in the pytest thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

from pykka_registry import MemoryBackend, Registry, test_namespace

from ._helpers import ActorFactory


class ConformanceBase:
    """The backend under test and the fixtures of the suite's tests."""

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
