"""``IndexedBackend``: the in-memory store plus an inverted metadata index
(what the original design called OptimizedETS).

Guarantees
----------
Everything :class:`~pykka_registry.backends.memory.MemoryBackend` guarantees,
and:

* The index is updated in the same locked step as the entry it describes, so
  it is never stale and never needs a clean-up scan (the original's index went
  stale and was repaired by full-table scans).
* ``match`` costs time proportional to the smallest candidate set among its
  criteria, not to the size of the registry.

How the index works
-------------------
For each namespace it maps ``(field, value) -> {service}`` for every hashable
metadata value, and for every hashable item of a list, tuple, set or frozenset
value. Services whose value for a field cannot be indexed (an unhashable
value or item) are kept per field in an "unindexed" set and are always
candidates for that field. Candidates are then checked with the exact
:func:`~pykka_registry._metadata.metadata_matches` rule, so the index decides
speed, never the answer.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Any

from pykka_registry._metadata import COLLECTION_TYPES, metadata_matches
from pykka_registry.backends.base import Entry
from pykka_registry.backends.memory import MemoryBackend

__all__ = ["IndexedBackend"]

_Postings = dict[tuple[Any, Any], set[Hashable]]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _index_terms(metadata: Mapping[Any, Any]) -> Iterator[tuple[Any, Any, bool]]:
    """Yield ``(field, value, indexable)`` for each term ``metadata`` matches on."""
    for field, value in metadata.items():
        if isinstance(value, COLLECTION_TYPES):
            # A list is unhashable yet fully indexable through its items.
            indexable = True
            if _hashable(value):
                yield field, value, True
            elif isinstance(value, set):
                # set == frozenset with the same items: index it under that.
                yield field, frozenset(value), True
            for item in value:
                if _hashable(item):
                    yield field, item, True
                else:
                    indexable = False
        else:
            indexable = _hashable(value)
            if indexable:
                yield field, value, True
        if not indexable:
            yield field, None, False


class IndexedBackend(MemoryBackend):
    """In-memory registrations with an inverted index on metadata."""

    name = "indexed"

    def __init__(self) -> None:
        super().__init__()
        self._postings: dict[Hashable, _Postings] = {}
        self._unindexed: dict[Hashable, dict[Any, set[Hashable]]] = {}

    def _on_added(self, entry: Entry) -> None:
        postings = self._postings.setdefault(entry.namespace, {})
        for field, value, indexable in _index_terms(entry.metadata):
            if indexable:
                postings.setdefault((field, value), set()).add(entry.service)
            else:
                self._unindexed.setdefault(entry.namespace, {}).setdefault(field, set()).add(
                    entry.service
                )

    def _on_removed(self, entry: Entry) -> None:
        postings = self._postings.get(entry.namespace, {})
        unindexed = self._unindexed.get(entry.namespace, {})
        for field, value, indexable in _index_terms(entry.metadata):
            table: dict[Any, set[Hashable]] = postings if indexable else unindexed
            key = (field, value) if indexable else field
            services = table.get(key)
            if services is not None:
                services.discard(entry.service)
                if not services:
                    del table[key]
        if not postings:
            self._postings.pop(entry.namespace, None)
        if not unindexed:
            self._unindexed.pop(entry.namespace, None)

    def index_size(self) -> int:
        """How many ``(field, value)`` terms the index holds (for stats and tests)."""
        with self._lock:
            return sum(len(p) for p in self._postings.values())

    def match(self, namespace: Hashable, criteria: Mapping[Any, Any]) -> list[Entry]:
        usable = [(field, want) for field, want in criteria.items() if _hashable(want)]
        if not usable:
            return super().match(namespace, criteria)
        with self._lock:
            services = self._names.get(namespace)
            if not services:
                return []
            postings = self._postings.get(namespace, {})
            unindexed = self._unindexed.get(namespace, {})
            candidate_sets = []
            for field, want in usable:
                hits = postings.get((field, want), set())
                loose = unindexed.get(field)
                candidate_sets.append(hits | loose if loose else hits)
            candidate_sets.sort(key=len)
            candidates = candidate_sets[0].intersection(*candidate_sets[1:])
            found = [services[service] for service in candidates]
        return [entry for entry in found if metadata_matches(entry.metadata, criteria)]

    def health(self) -> Mapping[str, Any]:
        report = dict(super().health())
        report["index_terms"] = self.index_size()
        return report
