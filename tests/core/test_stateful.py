"""A stateful (model-based) test of the registry, on every in-memory backend.

A hypothesis ``RuleBasedStateMachine`` drives a real :class:`Registry` with
register / unregister / update_metadata / actor stops and crashes, and checks
every read (lookup, lookup_with_metadata, match, list_services, count,
keys_of, namespaces) against a plain-dict model.

Model rules (what the registry documents):

* A name is ``(namespace, service)``; a live actor holding it blocks every
  other actor (``AlreadyRegisteredError``, nothing changes); the holder
  registering again replaces its metadata; a dead actor cannot register
  (``ActorNotAliveError``).
* ``update_metadata`` replaces, never merges; a missing name raises
  ``NotRegisteredError``.
* When an actor stops (``stop()`` or a crash in a ``tell``-ed message), its
  names are gone from every read the moment the actor has stopped
  (``actor_stopped`` set): the model forgets them at stop time and every
  listing is checked right after the step, with no waiting and no ``sync()``.
* Groups: ``(namespace, group) -> members in join order``; joining again
  replaces the metadata and keeps the place; leave is idempotent; a dead
  actor cannot join; a stopped actor is in no group the moment it has
  stopped. Names and groups are independent.
* ``match``: every criterion key is present and ``metadata[key] == value``, or
  ``metadata[key]`` is a list/tuple/set/frozenset containing ``value``.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Hashable, Mapping
from typing import Any, Optional, cast

import pykka
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from pykka_registry import (
    ActorNotAliveError,
    AlreadyRegisteredError,
    Backend,
    IndexedBackend,
    MemoryBackend,
    NotRegisteredError,
    Registry,
)
from pykka_registry.testing import Echo, wait_until

# -- pools ---------------------------------------------------------------------------

NAMESPACES = ("ns-a", "ns-b")
SERVICES = ("svc-0", "svc-1", "svc-2", "svc-3")
KEYS = tuple((ns, svc) for ns in NAMESPACES for svc in SERVICES)
GROUPS = ("grp-0", "grp-1", "svc-0")  # "svc-0": a key that is also a name
INITIAL_ACTORS = 3
MAX_LIVE_ACTORS = 4
#: How long an actor may take to stop (not a registry promise: generous).
STOP_TIMEOUT_S = 10.0
FIELDS = ("role", "zone", "tags")
COLLECTIONS = (list, tuple, set, frozenset)

Key = tuple[str, str]

namespaces = st.sampled_from(NAMESPACES)
services = st.sampled_from(SERVICES)
group_names = st.sampled_from(GROUPS)
# Tiny pools, so that metadata values collide and criteria hit: a string
# criterion such as "a" matches both a field equal to "a" and a list holding it.
short_strings = st.sampled_from(("", "a", "b", "ab"))
values = st.one_of(
    st.integers(min_value=0, max_value=2),
    short_strings,
    st.lists(short_strings, max_size=3),
)
metadatas = st.dictionaries(st.sampled_from(FIELDS), values, max_size=3)
criterias = st.dictionaries(st.sampled_from(FIELDS), values, max_size=2)


def model_matches(metadata: Mapping[Any, Any], criteria: Mapping[Any, Any]) -> bool:
    """The documented rule of ``Registry.match``, written independently of the package."""
    for key, want in criteria.items():
        if key not in metadata:
            return False
        have = metadata[key]
        if have == want:
            continue
        if isinstance(have, COLLECTIONS) and want in have:
            continue
        return False
    return True


def scribble(metadata: dict[Any, Any]) -> None:
    """Change a metadata dict (and the lists inside it) in place: whatever the
    registry handed out or was handed must be a copy, so nothing stored moves."""
    for value in metadata.values():
        if isinstance(value, list):
            value.append("scribbled")
    metadata["scribbled"] = True


def by_service(triple: tuple[Hashable, Any, Any]) -> str:
    """Sort key of ``(service, ...)`` triples (service names are unique in a namespace)."""
    return str(triple[0])


def index_terms(model: Mapping[Key, tuple[Any, dict[Any, Any]]]) -> int:
    """How many ``(field, value)`` terms IndexedBackend's index must hold for
    the model's entries (one per hashable value and per item of a list)."""
    terms: set[tuple[Hashable, Any, Any]] = set()
    for (namespace, _service), (_ref, metadata) in model.items():
        for field, value in metadata.items():
            for term in (value if isinstance(value, list) else [value]):
                terms.add((namespace, field, term))
    return len(terms)


# -- the machine -----------------------------------------------------------------------


class RegistryMachine(RuleBasedStateMachine):
    """Drives one registry on :attr:`backend` against a dict model."""

    backend: type[Backend] = MemoryBackend

    actors = Bundle("actors")  # live actors
    dead_actors = Bundle("dead_actors")  # stopped or crashed

    def __init__(self) -> None:
        super().__init__()
        self.registry = Registry.start(backend=self.backend)
        #: The model: name -> (holder, metadata).
        self.model: dict[Key, tuple[pykka.ActorRef[Any], dict[Any, Any]]] = {}
        self.live: list[pykka.ActorRef[Any]] = []
        self.started: list[pykka.ActorRef[Any]] = []  # every actor, for teardown
        self.cleanup_pending = False  # an actor stopped since the last listing check
        #: The group model: (namespace, group) -> {urn: (ref, metadata)}, join order.
        self.group_model: dict[Key, dict[str, tuple[pykka.ActorRef[Any], dict[Any, Any]]]] = {}

    def teardown(self) -> None:
        self.registry.stop()
        for ref in self.started:
            try:
                ref.stop(block=True, timeout=STOP_TIMEOUT_S)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass

    # -- helpers -------------------------------------------------------------------

    def _start_actor(self) -> pykka.ActorRef[Any]:
        ref = Echo.start(f"actor-{len(self.started)}")
        self.started.append(ref)
        self.live.append(ref)
        return ref

    def _settle(self) -> None:
        """One look, no waiting: the registry's ``count()`` equals the model's
        at every step, stops and crashes included (death clean-up completes
        before Pykka reports the actor stopped)."""
        assert self.registry.count() == len(self.model), (
            f"count() == {self.registry.count()}, the model's count is {len(self.model)}"
        )
        self.cleanup_pending = False

    def _expected_names(self, actor: pykka.ActorRef[Any]) -> set[Key]:
        return {key for key, (ref, _) in self.model.items() if ref is actor}

    def _check_match(self, namespace: str, criteria: Mapping[Any, Any]) -> None:
        got = self.registry.match(namespace, criteria)
        expected = sorted(
            (
                (service, ref.actor_urn, metadata)
                for (ns, service), (ref, metadata) in self.model.items()
                if ns == namespace and model_matches(metadata, criteria)
            ),
            key=by_service,
        )
        actual = sorted(
            ((service, ref.actor_urn, metadata) for service, ref, metadata in got),
            key=by_service,
        )
        assert actual == expected, f"match({namespace!r}, {criteria!r})"
        for _service, _ref, metadata in got:
            scribble(metadata)

    # -- actors ----------------------------------------------------------------------

    @initialize(
        target=actors,
        registrations=st.lists(
            st.tuples(st.integers(0, INITIAL_ACTORS - 1), namespaces, services, metadatas),
            max_size=len(KEYS),
        ),
    )
    def first_actors(
        self, registrations: list[tuple[int, str, str, dict[Any, Any]]]
    ) -> MultipleResults[pykka.ActorRef[Any]]:
        """Start the first actors and (so that most runs begin with names to
        work on) register some of them: the same checks as :meth:`register`."""
        refs = [self._start_actor() for _ in range(INITIAL_ACTORS)]
        for index, namespace, service, metadata in registrations:
            self.register(refs[index], namespace, service, metadata)
        return multiple(*refs)

    @precondition(lambda self: len(self.live) < MAX_LIVE_ACTORS)
    @rule(target=actors)
    def start_actor(self) -> pykka.ActorRef[Any]:
        return self._start_actor()

    @rule(target=dead_actors, actor=consumes(actors), crash=st.booleans())
    def stop_actor(self, actor: pykka.ActorRef[Any], crash: bool) -> pykka.ActorRef[Any]:
        self._stop(actor, crash)
        self._forget(actor)
        return actor

    def _stop(self, actor: pykka.ActorRef[Any], crash: bool) -> None:
        """Stop or crash ``actor``; check that lookups drop it the moment it has stopped."""
        if crash:
            actor.tell("crash")  # Echo raises in on_receive: the actor dies
        else:
            actor.stop(block=True, timeout=STOP_TIMEOUT_S)
        assert actor.actor_stopped.wait(STOP_TIMEOUT_S), "the actor did not stop"
        held = self._expected_names(actor)
        for namespace, service in held:
            assert self.registry.lookup(namespace, service) is None
            assert self.registry.lookup_with_metadata(namespace, service) is None
        assert self.registry.keys_of(actor) == [], "a stopped actor still holds names"
        assert self.registry.groups_of(actor) == [], "a stopped actor is still in a group"
        for (namespace, group), members in self.group_model.items():
            if actor.actor_urn in members:
                assert actor not in self.registry.members(namespace, group)
        assert self.registry.count() == len(self.model) - len(held), "listed after stop"
        for namespace in {ns for ns, _ in held}:
            assert not any(ref is actor for _, ref, _ in self.registry.match(namespace, {}))

    def _forget(self, actor: pykka.ActorRef[Any]) -> None:
        """The model side of a death: the names go at once, as they do in the
        registry (the invariants check every listing right after this step)."""
        self.live.remove(actor)
        for key in self._expected_names(actor):
            del self.model[key]
        for group_key in list(self.group_model):
            self.group_model[group_key].pop(actor.actor_urn, None)
            if not self.group_model[group_key]:
                del self.group_model[group_key]
        self.cleanup_pending = True

    @rule(target=dead_actors, old=consumes(actors), new=actors, data=st.data(),
          metadata=st.none() | metadatas)
    def take_over_from_dying(self, old: pykka.ActorRef[Any], new: pykka.ActorRef[Any],
                             data: st.DataObject,
                             metadata: Optional[dict[Any, Any]]) -> pykka.ActorRef[Any]:
        """``new`` registers a name of ``old``'s; ``old`` dies while that call
        waits in the server's mailbox, so the server sees the holder dead before
        its death notice: ``new`` gets the name, and the late notice removes
        ``old``'s other names, never the one ``new`` now holds."""
        held = sorted(self._expected_names(old))
        if new is old or not held:  # nothing to take over: a plain stop
            self._stop(old, crash=False)
            self._forget(old)
            return old
        namespace, service = data.draw(st.sampled_from(held), label="name to take over")
        entered, release = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def hold_server(backend: object) -> None:
            entered.set()
            release.wait(STOP_TIMEOUT_S)

        def take_over() -> None:
            try:
                self.registry.register(namespace, service, new, copy.deepcopy(metadata))
            except BaseException as error:
                errors.append(error)

        holder = threading.Thread(target=self.registry.run_in_server, args=(hold_server,))
        taker = threading.Thread(target=take_over)
        try:
            holder.start()
            assert entered.wait(STOP_TIMEOUT_S), "the server never ran hold_server"
            # pykka's threading actors use a queue.Queue for their inbox.
            inbox = cast("queue.Queue[Any]", self.registry.server_ref.actor_inbox)
            queued = inbox.qsize()
            taker.start()
            wait_until(lambda: inbox.qsize() > queued, message="register queued at the server")
            # The server is held, so no death notice can have been handled:
            # this checks that lookups filter dead holders themselves.
            self._stop(old, crash=False)
        finally:
            release.set()
            for thread in (holder, taker):
                if thread.ident is not None:  # started
                    thread.join(STOP_TIMEOUT_S)
        assert not holder.is_alive() and not taker.is_alive()
        assert errors == []
        self._forget(old)
        self.model[(namespace, service)] = (new, {} if metadata is None else copy.deepcopy(metadata))
        return old

    # -- writes ------------------------------------------------------------------------

    @rule(actor=actors, namespace=namespaces, service=services,
          metadata=st.none() | metadatas)
    def register(self, actor: pykka.ActorRef[Any], namespace: str, service: str,
                 metadata: Optional[dict[Any, Any]]) -> None:
        key = (namespace, service)
        holder = self.model.get(key)
        given = copy.deepcopy(metadata)
        if holder is not None and holder[0] is not actor:
            with pytest.raises(AlreadyRegisteredError) as caught:
                self.registry.register(namespace, service, actor, given)
            assert caught.value.existing is holder[0]
            return
        self.registry.register(namespace, service, actor, given)
        self.model[key] = (actor, copy.deepcopy(metadata) if metadata is not None else {})
        if given is not None:
            scribble(given)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), metadata=st.none() | metadatas)
    def register_again(self, data: st.DataObject, metadata: Optional[dict[Any, Any]]) -> None:
        """The holder of a name registers it again: its metadata is replaced."""
        key = data.draw(st.sampled_from(sorted(self.model)), label="held name")
        self.register(self.model[key][0], *key, metadata)

    @rule(actor=dead_actors, namespace=namespaces, service=services,
          metadata=st.none() | metadatas)
    def register_dead(self, actor: pykka.ActorRef[Any], namespace: str, service: str,
                      metadata: Optional[dict[Any, Any]]) -> None:
        # Which refusal wins when a live actor also holds the name is not
        # documented: either is a refusal that changes nothing.
        expected: Any = ActorNotAliveError
        if (namespace, service) in self.model:
            expected = (ActorNotAliveError, AlreadyRegisteredError)
        with pytest.raises(expected):
            self.registry.register(namespace, service, actor, metadata)

    @rule(namespace=namespaces, service=services)
    def unregister(self, namespace: str, service: str) -> None:
        self.registry.unregister(namespace, service)
        self.model.pop((namespace, service), None)

    @rule(namespace=namespaces, service=services, metadata=metadatas)
    def update_metadata(self, namespace: str, service: str, metadata: dict[Any, Any]) -> None:
        key = (namespace, service)
        given = copy.deepcopy(metadata)
        if key not in self.model:
            with pytest.raises(NotRegisteredError):
                self.registry.update_metadata(namespace, service, given)
            return
        self.registry.update_metadata(namespace, service, given)
        self.model[key] = (self.model[key][0], copy.deepcopy(metadata))
        scribble(given)

    @precondition(lambda self: self.model)
    @rule(data=st.data(), metadata=metadatas)
    def update_held_metadata(self, data: st.DataObject, metadata: dict[Any, Any]) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)), label="held name")
        self.update_metadata(*key, metadata)

    # -- reads ---------------------------------------------------------------------------

    @rule(namespace=namespaces, service=services)
    def lookup(self, namespace: str, service: str) -> None:
        """``lookup`` and ``lookup_with_metadata``: exact at once, no waiting."""
        expected = self.model.get((namespace, service))
        got = self.registry.lookup_with_metadata(namespace, service)
        if expected is None:
            assert self.registry.lookup(namespace, service) is None
            assert got is None
            return
        assert self.registry.lookup(namespace, service) is expected[0]
        assert got is not None
        assert got[0] is expected[0]
        assert got[1] == expected[1]
        scribble(got[1])

    @rule(namespace=namespaces, criteria=criterias)
    def match(self, namespace: str, criteria: dict[Any, Any]) -> None:
        self._settle()
        self._check_match(namespace, criteria)

    @precondition(lambda self: any(metadata for _, metadata in self.model.values()))
    @rule(data=st.data())
    def match_held(self, data: st.DataObject) -> None:
        """Criteria taken from the metadata of a held name (some of its fields,
        each with its value or an item of its list), and sometimes of a second
        name of the same namespace, whose fields override the first's: hits, by
        equality and by list membership, and near misses, which an index that
        answers from a subset of the criteria would get wrong."""
        held = sorted(key for key, (_, metadata) in self.model.items() if metadata)
        first = data.draw(st.sampled_from(held), label="held name")
        sources = [first]
        others = [key for key in held if key[0] == first[0] and key != first]
        if len(others) > 0 and data.draw(st.booleans(), label="mix in a second name"):
            sources.append(data.draw(st.sampled_from(others), label="second name"))
        criteria: dict[Any, Any] = {}
        for source in sources:
            metadata = self.model[source][1]
            fields = data.draw(
                st.lists(st.sampled_from(sorted(metadata)), min_size=1, unique=True),
                label=f"fields of {source}",
            )
            for field in fields:
                value = metadata[field]
                # A list field: half the time one of its items (membership), else the list.
                want: st.SearchStrategy[Any] = st.just(value)
                if isinstance(value, list) and value:
                    want = st.sampled_from(value) | want
                criteria[field] = data.draw(want, label=f"criterion on {field}")
        self._settle()
        self._check_match(first[0], criteria)

    @rule(namespace=st.none() | namespaces)
    def list_services_and_count(self, namespace: Optional[str]) -> None:
        self._settle()
        in_ns = sorted(svc for ns, svc in self.model if namespace is None or ns == namespace)
        assert self.registry.count(namespace) == len(in_ns)
        if namespace is not None:
            assert sorted(self.registry.list_services(namespace), key=str) == in_ns

    # -- groups ----------------------------------------------------------------------------

    @rule(actor=actors, namespace=namespaces, group=group_names,
          metadata=st.none() | metadatas)
    def join(self, actor: pykka.ActorRef[Any], namespace: str, group: str,
             metadata: Optional[dict[Any, Any]]) -> None:
        self.registry.join(namespace, group, actor, metadata)
        members = self.group_model.setdefault((namespace, group), {})
        members[actor.actor_urn] = (actor, copy.deepcopy(metadata or {}))  # keeps its place

    @rule(actor=dead_actors, namespace=namespaces, group=group_names)
    def join_dead(self, actor: pykka.ActorRef[Any], namespace: str, group: str) -> None:
        with pytest.raises(ActorNotAliveError):
            self.registry.join(namespace, group, actor)

    @rule(actor=st.one_of(actors, dead_actors), namespace=namespaces, group=group_names)
    def leave(self, actor: pykka.ActorRef[Any], namespace: str, group: str) -> None:
        self.registry.leave(namespace, group, actor)
        members = self.group_model.get((namespace, group))
        if members is not None:
            members.pop(actor.actor_urn, None)
            if not members:
                del self.group_model[(namespace, group)]

    @rule(namespace=namespaces, group=group_names, criteria=criterias)
    def match_members(self, namespace: str, group: str, criteria: dict[Any, Any]) -> None:
        got = self.registry.match_members(namespace, group, criteria)
        expected = [(ref, metadata) for ref, metadata in
                    self.group_model.get((namespace, group), {}).values()
                    if model_matches(metadata, criteria)]
        assert [(ref.actor_urn, md) for ref, md in got] == [
            (ref.actor_urn, md) for ref, md in expected], f"match_members{namespace, group}"
        for _ref, metadata in got:
            scribble(metadata)

    @rule(actor=actors)
    def keys_of(self, actor: pykka.ActorRef[Any]) -> None:
        self._settle()
        assert sorted(self.registry.keys_of(actor), key=str) == sorted(self._expected_names(actor))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def lookups_agree(self) -> None:
        """No waiting: lookups are exact at every step (dead actors filtered)."""
        for key in KEYS:
            expected = self.model.get(key)
            got = self.registry.lookup_with_metadata(*key)
            if expected is None:
                assert got is None, f"lookup_with_metadata{key} should be None"
                assert self.registry.lookup(*key) is None
            else:
                assert got is not None, f"lookup_with_metadata{key} lost {expected}"
                assert got[0] is expected[0]
                assert got[1] == expected[1], f"metadata of {key}"
                assert self.registry.lookup(*key) is expected[0]

    @invariant()
    def listings_agree(self) -> None:
        """With no waiting, every listing agrees."""
        self._settle()
        assert sorted(self.registry.namespaces(), key=str) == sorted({ns for ns, _ in self.model})
        for namespace in NAMESPACES:
            in_ns = sorted(svc for ns, svc in self.model if ns == namespace)
            assert sorted(self.registry.list_services(namespace), key=str) == in_ns
            assert self.registry.count(namespace) == len(in_ns)
            self._check_match(namespace, {})
        for actor in self.started:
            assert sorted(self.registry.keys_of(actor), key=str) == sorted(
                self._expected_names(actor)
            )
        for namespace in NAMESPACES:
            expected_groups = sorted(g for ns, g in self.group_model if ns == namespace)
            assert sorted(self.registry.groups(namespace)) == expected_groups
            for group in GROUPS:
                members = self.group_model.get((namespace, group), {})
                assert self.registry.members(namespace, group) == [r for r, _ in members.values()]
                assert self.registry.members_with_metadata(namespace, group) == list(
                    members.values())
                assert self.registry.count_members(namespace, group) == len(members)
        for actor in self.started:
            expected_of = sorted(key for key, members in self.group_model.items()
                                 if actor.actor_urn in members)
            assert sorted(self.registry.groups_of(actor)) == expected_of
        stats = self.registry.stats()
        assert stats.groups == len(self.group_model)
        assert stats.memberships == sum(len(m) for m in self.group_model.values())
        backend = self.registry.backend
        if isinstance(backend, IndexedBackend):
            assert backend.index_size() == index_terms(self.model), "stale or missing index terms"
            assert set(backend._member_index) <= set(self.group_model), "stale member index"


# -- one TestCase per backend -------------------------------------------------------------

SETTINGS = settings(max_examples=40, stateful_step_count=30, deadline=None)


def machine_for(backend: type[Backend]) -> type[RegistryMachine]:
    """A subclass of :class:`RegistryMachine` bound to ``backend``, with settings."""
    name = f"{backend.__name__}Machine"
    machine: type[RegistryMachine] = type(name, (RegistryMachine,), {"backend": backend})
    machine.__qualname__ = name
    return SETTINGS(machine)


MemoryBackendMachine = machine_for(MemoryBackend)
IndexedBackendMachine = machine_for(IndexedBackend)

TestStatefulMemoryBackend = MemoryBackendMachine.TestCase
TestStatefulIndexedBackend = IndexedBackendMachine.TestCase
