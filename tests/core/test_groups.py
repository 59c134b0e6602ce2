"""Groups beyond the conformance suite: group_via strategies and arguments,
ask_all's per-member values, dispatch counts, backends without groups
(declared, and duck-typed ones written before groups), validate_backend,
the member index with hostile values, stats compatibility."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from pykka_registry import (
    ChildSpec,
    GroupsNotSupportedError,
    IndexedBackend,
    InvalidKeyError,
    InvalidStrategyError,
    MemoryBackend,
    NotRegisteredError,
    Registry,
    RegistryStats,
    RegistryTimeoutError,
    test_namespace,
    validate_backend,
)
from pykka_registry.backends.base import _GROUP_OPTIONAL, _GROUP_REQUIRED, _OPTIONAL, _REQUIRED
from pykka_registry.testing import Echo, wait_until


@pytest.fixture(params=[MemoryBackend, IndexedBackend])
def registry(request: Any) -> Iterator[Registry]:
    registry = Registry.start(backend=request.param)
    yield registry
    registry.stop()


@pytest.fixture
def refs() -> Iterator[list[pykka.ActorRef[Any]]]:
    started: list[pykka.ActorRef[Any]] = []
    yield started
    for ref in started:
        if ref.is_alive():
            ref.stop(block=True, timeout=5)


def start(refs: list[Any], label: str = "") -> Any:
    ref = Echo.start(label)
    refs.append(ref)
    return ref


class Slow(pykka.ThreadingActor):
    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def on_receive(self, message: Any) -> Any:
        self.release.wait(10)
        return "late"


# -- group_via ------------------------------------------------------------------------


def test_round_robin_follows_join_order_and_membership_changes(registry: Registry,
                                                               refs: list[Any]) -> None:
    ns = test_namespace()
    a, b, c = (start(refs, label) for label in "abc")
    for ref in (a, b, c):
        registry.join(ns, "g", ref)
    via = registry.group_via(ns, "g")
    assert [via.ask("label") for _ in range(3)] == ["a", "b", "c"]
    b.stop(block=True)  # gone at once: the next calls skip it
    labels = {via.ask("label") for _ in range(4)}
    assert labels == {"a", "c"}
    registry.leave(ns, "g", a)
    registry.leave(ns, "g", c)
    with pytest.raises(NotRegisteredError, match="no live member"):
        via.tell("x")
    with pytest.raises(NotRegisteredError):
        via.ask("x")


def test_hash_strategy_needs_a_key_and_keeps_it_on_one_member(registry: Registry,
                                                              refs: list[Any]) -> None:
    ns = test_namespace()
    for label in "abcd":
        registry.join(ns, "g", start(refs, label))
    via = registry.group_via(ns, "g", strategy="hash")
    with pytest.raises(InvalidKeyError, match="needs key"):
        via.tell("x")
    with pytest.raises(InvalidKeyError, match="hashable"):
        via.tell("x", key=["unhashable"])
    owners = {k: via.ask("label", key=k) for k in range(20)}
    assert all(via.ask("label", key=k) == owner for k, owner in owners.items())
    assert len(set(owners.values())) > 1  # keys spread over members
    with pytest.raises(InvalidKeyError, match="hash"):
        registry.group_via(ns, "g").tell("x", key=1)
    with pytest.raises(InvalidKeyError, match="hash"):
        registry.group_via(ns, "g", strategy="random").tell("x", key=1)


def test_unknown_strategy_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidStrategyError, match="round_robin"):
        registry.group_via("ns", "g", strategy="least_loaded")
    with pytest.raises(ValueError):
        registry.group_via("ns", "g", strategy=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError):
        registry.group_via("ns", ["unhashable"])


def test_group_via_ask_deadline_and_future(registry: Registry, refs: list[Any]) -> None:
    ns = test_namespace()
    release = threading.Event()
    slow = Slow.start(release)
    refs.append(slow)
    registry.join(ns, "g", slow)
    via = registry.group_via(ns, "g")
    with pytest.raises(RegistryTimeoutError):
        via.ask("x", timeout=0.05)
    future = via.ask("x", block=False, timeout=0.05)
    with pytest.raises(RegistryTimeoutError):
        future.get()
    release.set()
    assert via.ask("x", timeout=5) == "late"


# -- ask_all and dispatch ------------------------------------------------------------------


def test_ask_all_gives_a_timeout_value_for_a_slow_member(registry: Registry,
                                                          refs: list[Any]) -> None:
    ns = test_namespace()
    fast = start(refs, "fast")
    release = threading.Event()
    slow = Slow.start(release)
    refs.append(slow)
    last = start(refs, "last")
    for ref in (fast, slow, last):
        registry.join(ns, "g", ref)
    try:
        answers = registry.ask_all(ns, "g", "label", timeout=0.2)
    finally:
        release.set()
    assert [ref for ref, _ in answers] == [fast, slow, last]
    assert answers[0][1] == "fast" and answers[2][1] == "last"
    assert isinstance(answers[1][1], RegistryTimeoutError)
    assert isinstance(answers[1][1], TimeoutError)


def test_ask_all_waits_at_most_the_timeout_in_total(registry: Registry,
                                                    refs: list[Any]) -> None:
    ns = test_namespace()
    release = threading.Event()
    for _ in range(5):
        slow = Slow.start(release)
        refs.append(slow)
        registry.join(ns, "g", slow)
    began = time.monotonic()
    try:
        answers = registry.ask_all(ns, "g", "x", timeout=0.2)
    finally:
        release.set()
    assert time.monotonic() - began < 0.2 * 5  # not one timeout per member
    assert all(isinstance(value, RegistryTimeoutError) for _, value in answers)


def test_dispatch_counts_what_it_sent(registry: Registry, refs: list[Any]) -> None:
    ns = test_namespace()
    members = [start(refs) for _ in range(3)]
    for ref in members:
        registry.join(ns, "g", ref)
    registry.register(ns, "g", start(refs))  # a name under the same key: not a member
    assert registry.dispatch(ns, "g", "m") == 3
    for ref in members:
        assert ref.proxy().received.get(timeout=5) == ["m"]


# -- supervision -------------------------------------------------------------------------------


def test_child_spec_groups_are_checked() -> None:
    with pytest.raises(ValueError, match="groups"):
        ChildSpec(id="c", start=Echo.start, groups=["ns"])
    with pytest.raises(ValueError, match="groups"):
        ChildSpec(id="c", start=Echo.start, groups="ns")  # type: ignore[arg-type]
    spec = ChildSpec(id="c", start=Echo.start, groups=[("ns", "g")])
    assert spec.groups == (("ns", "g"),)


def test_start_child_returns_after_joining(registry: Registry) -> None:
    from pykka_registry import Supervisor

    ns = test_namespace()
    supervisor = Supervisor.start(registry=registry)
    try:
        ref = supervisor.start_child(ChildSpec(id="w", start=Echo.start, groups=[(ns, "g")]))
        assert registry.members(ns, "g") == [ref]  # no waiting
    finally:
        supervisor.stop()
    assert registry.members(ns, "g") == []


# -- backends without groups -------------------------------------------------------------------


class NoGroups(MemoryBackend):
    supports_groups = False


def _duck_backend() -> Any:
    """A duck-typed backend written before groups: it forwards exactly the
    methods a backend had then to a MemoryBackend."""
    inner = MemoryBackend()

    class Duck:
        name = "duck"
        key_types = None
        json_metadata_only = False

    duck = Duck()
    for method in (*_REQUIRED, *_OPTIONAL, "register_many", "unregister_many"):
        setattr(duck, method, getattr(inner, method))
    return duck


@pytest.mark.parametrize("make", [NoGroups, _duck_backend])
def test_backend_without_groups_refuses_group_calls_and_keeps_names(make: Any) -> None:
    registry = Registry.start(backend=make())
    ref = Echo.start()
    try:
        registry.register("ns", "svc", ref)
        for call in (lambda: registry.join("ns", "g", ref), lambda: registry.leave("ns", "g", ref),
                     lambda: registry.members("ns", "g"), lambda: registry.groups("ns"),
                     lambda: registry.count_members("ns", "g"),
                     lambda: registry.group_via("ns", "g"),
                     lambda: registry.dispatch("ns", "g", "x")):
            with pytest.raises(GroupsNotSupportedError, match="no groups"):
                call()
        assert isinstance(GroupsNotSupportedError("x"), NotImplementedError)
        stats = registry.stats()
        assert (stats.groups, stats.memberships) == (0, 0)
        seen: list[Any] = []
        registry.subscribe(seen.append, replay=True)
        ref.stop(block=True)  # death clean-up still works (no leave_all of its own)
        assert registry.lookup("ns", "svc") is None
        wait_until(lambda: len(seen) == 2, message="Registered then Unregistered")
    finally:
        registry.stop()
        if ref.is_alive():
            ref.stop(block=True, timeout=5)


def test_validate_backend_names_missing_group_methods() -> None:
    class Claims(NoGroups):
        pass

    Claims.supports_groups = True  # claims groups but inherits nothing of them...
    validate_backend(Claims)  # ...from LocalGroups it does: complete

    duck = _duck_backend()
    validate_backend(duck)  # no groups declared: none needed
    type(duck).supports_groups = True
    with pytest.raises(TypeError) as caught:
        validate_backend(duck)
    for name in _GROUP_REQUIRED:
        assert name in str(caught.value)
    for name in _GROUP_OPTIONAL:
        assert name not in str(caught.value)

    from pykka_registry import Backend

    class Partial(Backend):
        supports_groups = True

    with pytest.raises(TypeError) as caught:
        validate_backend(Partial)
    assert "join" in str(caught.value) and "members" in str(caught.value)


# -- index, stats ---------------------------------------------------------------------------------


class Hostile:
    def __hash__(self) -> int:
        raise RuntimeError("no hash for you")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq for you")


def test_member_index_survives_hostile_values(refs: list[Any]) -> None:
    registry = Registry.start(backend=IndexedBackend)
    try:
        a, b = start(refs), start(refs)
        registry.join("ns", "g", a, {"x": Hostile()})
        registry.join("ns", "g", b, {"x": 1, "tags": ["t", ["nested"]]})
        assert [r for r, _ in registry.match_members("ns", "g", {"x": 1})] == [b]
        assert [r for r, _ in registry.match_members("ns", "g", {"tags": "t"})] == [b]
        a.stop(block=True)
        b.stop(block=True)
        assert registry.backend._member_index == {}  # type: ignore[attr-defined]
    finally:
        registry.stop()


def test_registry_stats_positional_use_still_works() -> None:
    stats = RegistryStats(1, 1, "memory", 0.0, 1, 0, 0, 0, 0, False)
    assert (stats.groups, stats.memberships) == (0, 0)


def test_members_of_a_stopped_registry_is_empty(refs: list[Any]) -> None:
    registry = Registry.start()
    registry.join("ns", "g", start(refs))
    registry.stop()
    assert registry.members("ns", "g") == []
    assert registry.count_members("ns", "g") == 0
