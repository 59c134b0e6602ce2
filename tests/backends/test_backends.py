"""The backend layer on its own: validate_backend, and IndexedBackend's index
checked against a from-scratch rebuild and against the documented match rule."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykka_registry import Backend, IndexedBackend, MemoryBackend, Registry, validate_backend
from pykka_registry._metadata import copy_metadata, metadata_matches
from pykka_registry.backends.base import Entry
from pykka_registry.testing import Echo

ABSTRACT = ["count", "entries", "get", "keys_of", "namespaces", "register", "remove_actor",
            "services", "unregister", "update_metadata"]


class Unfinished(Backend):
    def get(self, namespace: Any, service: Any) -> None:
        return None


def test_validate_backend_names_every_missing_method() -> None:
    validate_backend(MemoryBackend)
    validate_backend(IndexedBackend())
    with pytest.raises(TypeError) as caught:
        validate_backend(Unfinished)
    message = str(caught.value)
    assert "Unfinished" in message
    for name in ABSTRACT:
        if name != "get":
            assert name in message
    assert "get," not in message


def test_validate_backend_on_a_duck_typed_object_wants_the_optional_methods_too() -> None:
    class Duck:
        def get(self, namespace: Any, service: Any) -> None:
            return None

    with pytest.raises(TypeError) as caught:
        validate_backend(Duck())
    for name in ("register", "match", "health", "owns", "validate_key"):
        assert name in str(caught.value)


def test_registry_start_refuses_an_incomplete_backend_and_starts_nothing() -> None:
    before = len(pykka.ActorRegistry.get_all())
    with pytest.raises(TypeError, match="missing"):
        Registry.start(backend=Unfinished)
    with pytest.raises(TypeError, match="backend_opts"):
        Registry.start(backend=MemoryBackend(), backend_opts={"x": 1})
    with pytest.raises(ValueError, match="call_timeout"):
        Registry.start(call_timeout=0)
    assert len(pykka.ActorRegistry.get_all()) == before


# -- IndexedBackend against a rebuild and against the rule ------------------------------

SCALARS = st.one_of(
    st.sampled_from([0, 1, True, False, 1.0, "a", "b", None, b"a", (), (1,), frozenset(),
                     frozenset({1})]),
    st.integers(-2, 2),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner), st.sets(SCALARS, max_size=3),
        st.frozensets(SCALARS, max_size=3),
        st.dictionaries(st.sampled_from("xy"), inner, max_size=2),
    ),
    max_leaves=6,
)
METADATA = st.dictionaries(st.sampled_from(["f", "g", 1]), VALUES, max_size=3)
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["register", "update", "unregister", "remove_actor"]),
              st.sampled_from(["s1", "s2", "s3"]), METADATA),
    max_size=12,
)
CRITERIA = st.dictionaries(st.sampled_from(["f", "g", 1]), VALUES, max_size=2)


@pytest.fixture(scope="module")
def three_actors() -> Iterator[dict[str, Any]]:
    refs = {name: Echo.start() for name in ("s1", "s2", "s3")}
    yield refs
    for ref in refs.values():
        ref.stop()


def _nonempty(index: dict[Any, Any]) -> dict[Any, Any]:
    return {key: value for key, value in index.items() if value}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, criteria_list=st.lists(CRITERIA, max_size=4))
def test_index_equals_a_rebuild_and_match_follows_the_rule(
    three_actors: dict[str, Any], operations: list[Any], criteria_list: list[Any]
) -> None:
    backend = IndexedBackend()
    for operation, service, metadata in operations:
        own = copy_metadata(metadata)
        if operation == "register":
            backend.register(Entry.create("ns", service, three_actors[service], own),
                             lambda ref: False)
        elif operation == "update" and backend.get("ns", service):
            backend.update_metadata("ns", service, own)
        elif operation == "unregister":
            backend.unregister("ns", service)
        else:
            backend.remove_actor(three_actors[service])
    rebuilt = IndexedBackend()
    for entry in backend.entries("ns"):
        rebuilt.register(entry, lambda ref: False)
    assert _nonempty(backend._postings) == _nonempty(rebuilt._postings)
    assert _nonempty(backend._unindexed) == _nonempty(rebuilt._unindexed)
    assert backend.count() == len(backend.entries("ns"))
    for criteria in criteria_list:
        found = sorted(str(e.service) for e in backend.match("ns", criteria))
        expected = sorted(str(e.service) for e in backend.entries("ns")
                          if metadata_matches(e.metadata, criteria))
        assert found == expected, criteria
