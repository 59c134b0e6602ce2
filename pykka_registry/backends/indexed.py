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
value or item, or one whose ``__hash__`` raises anything) are kept per field
in an "unindexed" set and are always candidates for that field. Candidates
are then checked with the exact
:func:`~pykka_registry._metadata.metadata_matches` rule, so the index decides
speed, never the answer.

Groups
------
Group members are indexed the same way, per ``(namespace, group)``, keyed
by actor URN, so :meth:`IndexedBackend.match_members` checks metadata of
the smallest candidate set only (one quick pass over the group's member
list keeps join order; the same exact rule decides).

Hostile values
--------------
Metadata values are user objects, and the index hashes and compares them in
the server thread (and, on removal, in a dying actor's thread). If indexing
an entry raises anything (a ``__hash__`` or ``__eq__`` that raises, even a
``BaseException``), its partial terms are scrubbed and the entry is kept in a
per-namespace "loose" set: a candidate for every query, checked by the exact
rule. If removing an entry's terms raises, or a term is not found where its
hash says (a value whose ``__hash__`` is inconsistent with its ``__eq__``,
say one that changes), the namespace's postings are scrubbed of it instead.
So the index never holds a stale term or misses an entry, whatever the
values do, and no write raises because of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from typing import Any

from pykka_registry._metadata import COLLECTION_TYPES, SCALAR_TYPES, metadata_matches
from pykka_registry.backends.base import Entry, Member
from pykka_registry.backends.memory import MemoryBackend

__all__ = ["IndexedBackend"]

_Postings = dict[tuple[Any, Any], set[Hashable]]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except KeyboardInterrupt:  # the caller's Ctrl-C (in match); the writers contain it
        raise
    except BaseException:  # unhashable, or a hostile __hash__: not indexable
        return False
    return True


def _scrub_table(table: dict[Any, set[Any]], member: Any) -> set[Any]:
    """Remove ``member`` from every posting of ``table`` without looking a
    key up by its hash (a stale term's hash may have changed), and drop the
    postings left empty. Returns the members whose postings had to be
    dropped with a key that cannot be hashed any more (the caller makes
    them "loose": candidates for every query), so none is ever missed."""
    emptied = False
    for postings in table.values():
        if member in postings:
            postings.discard(member)
            emptied = emptied or not postings
    if not emptied:
        return set()
    kept = [(key, postings) for key, postings in table.items() if postings]
    table.clear()  # rebuilt: the only way to drop a key whose hash changed
    lost: set[Any] = set()
    for key, postings in kept:
        try:
            table[key] = postings
        except BaseException:  # a hash that raises now: its members go loose
            lost |= postings
    return lost


class _StaleTerm(Exception):
    """A term to remove was not where its hash says: scrub instead."""


def _seen(removed: list[Any], key: Any) -> bool:
    """True if ``key`` was removed earlier in the same call (a repeated item
    of a list value, say [1, 1]): then its absence is no stale term."""
    return any(key == other for other in removed)


def _index_terms(metadata: Mapping[Any, Any]) -> Iterator[tuple[Any, Any, bool]]:
    """Yield ``(field, value, indexable)`` for each term ``metadata`` matches on."""
    for field, value in metadata.items():
        yield from _field_terms(field, value)


def _field_terms(field: Any, value: Any) -> Iterator[tuple[Any, Any, bool]]:
    """The terms of one metadata field (see :func:`_index_terms`)."""
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


def _same_scalar(metadata: Mapping[Any, Any], field: Any, value: Any) -> bool:
    """True when ``metadata[field]`` is a scalar of ``value``'s exact type
    that equals it (so the field's postings need no change); no user
    ``__eq__`` runs on values."""
    if type(value) not in SCALAR_TYPES or field not in metadata:
        return False
    other = metadata[field]
    return type(other) is type(value) and bool(other == value)


class IndexedBackend(MemoryBackend):
    """In-memory registrations with an inverted index on metadata."""

    name = "indexed"

    def __init__(self) -> None:
        super().__init__()
        self._postings: dict[Hashable, _Postings] = {}
        self._unindexed: dict[Hashable, dict[Any, set[Hashable]]] = {}
        #: Per namespace: services whose metadata could not be indexed at all.
        self._loose: dict[Hashable, set[Hashable]] = {}
        #: The same three tables for group members: (namespace, group) -> ...
        self._member_index: dict[tuple[Hashable, Hashable], _MemberIndex] = {}

    def _on_added(self, entry: Entry) -> None:
        try:
            self._add_terms(entry.namespace, entry.service, entry.metadata)
        except BaseException:  # a hostile value: see "Hostile values"
            self._scrub(entry.namespace, entry.service)
            self._loose.setdefault(entry.namespace, set()).add(entry.service)

    def _add_terms(self, namespace: Hashable, service: Hashable,
                   metadata: Mapping[Any, Any]) -> None:
        postings = self._postings.get(namespace)
        if postings is None:
            postings = self._postings[namespace] = {}
        for field, value in metadata.items():
            if type(value) in SCALAR_TYPES:  # the common case, inline
                services = postings.get((field, value))
                if services is None:
                    postings[(field, value)] = {service}
                else:
                    services.add(service)
                continue
            for term_field, term, indexable in _field_terms(field, value):
                if indexable:
                    postings.setdefault((term_field, term), set()).add(service)
                else:
                    self._unindexed.setdefault(namespace, {}).setdefault(
                        term_field, set()).add(service)

    def _on_removed(self, entry: Entry) -> None:
        loose = self._loose.get(entry.namespace)
        if loose is not None and entry.service in loose:
            loose.discard(entry.service)
            if not loose:
                del self._loose[entry.namespace]
            self._drop_empty(entry.namespace)
            return
        try:
            self._remove_terms(entry.namespace, entry.service, entry.metadata)
        except BaseException:  # a value whose hash changed, or raises now
            self._scrub(entry.namespace, entry.service)
        self._drop_empty(entry.namespace)

    def _on_replaced(self, previous: Entry, entry: Entry) -> None:
        """A metadata update: only the fields that changed are unindexed and
        indexed again (a scalar field with an equal value of the same type
        keeps its postings); anything unusual takes the full path."""
        namespace, service = entry.namespace, entry.service
        loose = self._loose.get(namespace)
        if loose is not None and service in loose:
            MemoryBackend._on_replaced(self, previous, entry)
            return
        old, new = previous.metadata, entry.metadata
        try:
            gone = {field: value for field, value in old.items()
                    if not _same_scalar(new, field, value)}
            came = {field: value for field, value in new.items()
                    if not _same_scalar(old, field, value)}
        except BaseException:  # a hostile field: the full path copes with it
            MemoryBackend._on_replaced(self, previous, entry)
            return
        if not gone and not came:
            return
        try:
            self._remove_terms(namespace, service, gone)
        except BaseException:  # as in _on_removed, then index it all again
            self._scrub(namespace, service)
            self._drop_empty(namespace)
            self._on_added(entry)
            return
        try:
            self._add_terms(namespace, service, came)
        except BaseException:  # as in _on_added
            self._scrub(namespace, service)
            self._loose.setdefault(namespace, set()).add(service)
        self._drop_empty(namespace)

    def _remove_terms(self, namespace: Hashable, service: Hashable,
                      metadata: Mapping[Any, Any]) -> None:
        postings = self._postings.get(namespace, {})
        unindexed = self._unindexed.get(namespace, {})
        removed_here: list[Any] = []  # non-scalar terms removed by this call
        for field, value in metadata.items():
            if type(value) in SCALAR_TYPES:  # the common case, inline
                key = (field, value)
                services = postings.get(key)
                if services is not None:
                    services.discard(service)
                    if not services:
                        del postings[key]
                continue
            for term_field, term, indexable in _field_terms(field, value):
                table: dict[Any, set[Hashable]] = postings if indexable else unindexed
                term_key = (term_field, term) if indexable else term_field
                found = table.get(term_key)
                if found is not None and service in found:
                    found.discard(service)
                    if not found:
                        del table[term_key]
                    removed_here.append(term_key)
                elif not _seen(removed_here, term_key):
                    # Stored under a hash the value no longer has (one
                    # inconsistent with its __eq__): only a scrub finds it.
                    raise _StaleTerm

    def _scrub(self, namespace: Hashable, service: Hashable) -> None:
        """Remove ``service`` from every posting of ``namespace`` (slow; only
        after a hostile value made the normal path raise)."""
        for table in (self._postings.get(namespace, {}), self._unindexed.get(namespace, {})):
            lost = _scrub_table(table, service)
            if lost:  # their terms could not be kept: always candidates now
                self._loose.setdefault(namespace, set()).update(lost)

    def _drop_empty(self, namespace: Hashable) -> None:
        if not self._postings.get(namespace, True):
            del self._postings[namespace]
        if not self._unindexed.get(namespace, True):
            del self._unindexed[namespace]

    # -- the group member index (called under _group_lock) ----------------------------

    def _on_member_added(self, member: Member) -> None:
        key = (member.namespace, member.group)
        index = self._member_index.get(key)
        if index is None:
            index = self._member_index[key] = _MemberIndex()
        index.add(member)

    def _on_member_removed(self, member: Member) -> None:
        key = (member.namespace, member.group)
        index = self._member_index.get(key)
        if index is not None:
            index.remove(member)
            if index.empty():
                del self._member_index[key]

    def match_members(
        self, namespace: Hashable, group: Hashable, criteria: Mapping[Any, Any]
    ) -> list[Member]:
        usable = [(field, want) for field, want in criteria.items() if _hashable(want)]
        if not usable:
            return super().match_members(namespace, group, criteria)
        with self._group_lock:
            members = self._groups.get(namespace, {}).get(group)
            if not members:
                return []
            index = self._member_index.get((namespace, group))
            try:
                candidates = index.candidates(usable) if index is not None else set(members)
            except KeyboardInterrupt:
                raise
            except BaseException:  # a criterion (or stored value) whose __eq__ raises: scan
                candidates = set(members)
            # One C-speed pass over the ordered members keeps join order; the
            # exact (Python-level) check runs on the candidates only.
            found = [m for urn, m in members.items() if urn in candidates]
        return [m for m in found if metadata_matches(m.metadata, criteria)]

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
            try:
                candidate_sets = []
                for field, want in usable:
                    hits = postings.get((field, want), set())
                    loose = unindexed.get(field)
                    candidate_sets.append(hits | loose if loose else hits)
            except KeyboardInterrupt:
                raise
            except BaseException:  # a criterion (or stored value) whose __eq__ raises: scan
                found = list(services.values())
            else:
                candidate_sets.sort(key=len)
                candidates = candidate_sets[0].intersection(*candidate_sets[1:])
                candidates |= self._loose.get(namespace, set())
                found = [services[service] for service in candidates]
        return [entry for entry in found if metadata_matches(entry.metadata, criteria)]

    def health(self) -> Mapping[str, Any]:
        report = dict(super().health())
        report["index_terms"] = self.index_size()
        return report


class _MemberIndex:
    """The inverted index of one group's members (see "Groups" above):
    ``(field, value) -> {urn}``, per field the URNs whose value cannot be
    indexed, and the URNs whose metadata could not be indexed at all."""

    __slots__ = ("loose", "postings", "unindexed")

    def __init__(self) -> None:
        self.postings: dict[tuple[Any, Any], set[str]] = {}
        self.unindexed: dict[Any, set[str]] = {}
        self.loose: set[str] = set()

    def add(self, member: Member) -> None:
        urn = member.actor_ref.actor_urn
        try:
            for field, value, indexable in _index_terms(member.metadata):
                if indexable:
                    self.postings.setdefault((field, value), set()).add(urn)
                else:
                    self.unindexed.setdefault(field, set()).add(urn)
        except BaseException:  # a hostile value: see "Hostile values"
            self.scrub(urn)
            self.loose.add(urn)

    def remove(self, member: Member) -> None:
        urn = member.actor_ref.actor_urn
        if urn in self.loose:
            self.loose.discard(urn)
            return
        try:
            removed_here: list[Any] = []
            for field, value, indexable in _index_terms(member.metadata):
                table: dict[Any, set[str]] = self.postings if indexable else self.unindexed
                key = (field, value) if indexable else field
                urns = table.get(key)
                if urns is not None and urn in urns:
                    urns.discard(urn)
                    if not urns:
                        del table[key]
                    removed_here.append(key)
                elif not _seen(removed_here, key):
                    raise _StaleTerm  # as in IndexedBackend._remove_terms
        except BaseException:  # a value whose hash changed, or raises now
            self.scrub(urn)

    def scrub(self, urn: str) -> None:
        for table in (self.postings, self.unindexed):
            self.loose.update(_scrub_table(table, urn))

    def empty(self) -> bool:
        return not (self.postings or self.unindexed or self.loose)

    def candidates(self, usable: list[tuple[Any, Any]]) -> set[str]:
        sets = []
        for field, want in usable:
            hits = self.postings.get((field, want), set())
            loose = self.unindexed.get(field)
            sets.append(hits | loose if loose else hits)
        sets.sort(key=len)
        return sets[0].intersection(*sets[1:]) | self.loose
