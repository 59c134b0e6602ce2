"""The backend conformance suite, importable so any backend can be checked,
and the helpers the project's own tests use.

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

Layout
------
* ``_helpers`` (:func:`wait_until`, :func:`holding_server`,
  :func:`assert_no_names_of`, :class:`ActorFactory`) and ``_actors``
  (:class:`Echo`, the test actor) import without pytest.
* :mod:`pykka_registry.testing.conformance` (:class:`RegistryConformance`)
  needs pytest; it is composed of one mixin per theme: ``_names``,
  ``_metadata``, ``_reads``, ``_death``, ``_batch``, ``_via``,
  ``_concurrency``, ``_lifecycle``, ``_events``, ``_groups``, on the fixtures
  of ``_base``.

Guarantees
----------
* ``import pykka_registry.testing`` and the helpers work without pytest;
  :class:`RegistryConformance` is imported from ``conformance`` on first
  access (that needs pytest).
* Every wait in the suite and the helpers is bounded; none sleeps to guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._actors import Echo
from ._helpers import ActorFactory, assert_no_names_of, holding_server, wait_until

if TYPE_CHECKING:
    from .conformance import RegistryConformance

__all__ = [
    "ActorFactory",
    "Echo",
    "RegistryConformance",
    "assert_no_names_of",
    "holding_server",
    "wait_until",
]


def __getattr__(name: str) -> Any:
    # The suite needs pytest; the helpers above must not: import it on demand.
    if name == "RegistryConformance":
        from .conformance import RegistryConformance

        return RegistryConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
