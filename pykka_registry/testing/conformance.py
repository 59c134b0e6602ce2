"""The backend conformance suite: :class:`RegistryConformance`, every
behaviour the registry promises whatever the backend, composed of themed
mixins (one module each, listed in the class's bases).

Needs pytest. Subclass :class:`RegistryConformance` in a pytest module and
say how to start a registry on your backend; see :mod:`pykka_registry.testing`.

Guarantees
----------
* Group tests run for a backend that declares ``supports_groups = True`` and
  are skipped, with that reason, for one that does not.
* A backend that declares narrower types (``key_types``,
  ``json_metadata_only``) is tested with keys and metadata of those types
  only; the tests of "any hashable key" and "any mapping" are skipped for it,
  with a reason.
* Every wait in these tests is bounded; none sleeps to guess. The tests run
  in the pytest thread.
"""

from __future__ import annotations

from ._batch import BatchWriteTests
from ._concurrency import ConcurrencyTests
from ._death import DeathTests
from ._events import EventTests
from ._groups import GroupTests
from ._lifecycle import LifecycleTests
from ._metadata import MetadataTests
from ._names import NameTests
from ._reads import ReadTests
from ._via import ViaTests

__all__ = ["RegistryConformance"]


class RegistryConformance(NameTests, MetadataTests, ReadTests, DeathTests, BatchWriteTests,
                          ViaTests, ConcurrencyTests, LifecycleTests, EventTests, GroupTests):
    """The conformance suite; see :mod:`pykka_registry.testing`.

    Set ``backend`` (a Backend subclass or instance factory) and
    ``backend_opts``, or override :meth:`start_registry`.
    """
