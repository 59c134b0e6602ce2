"""The conformance suite (pykka_registry.testing) on every in-memory backend."""

from __future__ import annotations

from pykka_registry import IndexedBackend, MemoryBackend
from pykka_registry.testing import RegistryConformance


class TestMemoryBackend(RegistryConformance):
    backend = MemoryBackend


class TestIndexedBackend(RegistryConformance):
    backend = IndexedBackend
