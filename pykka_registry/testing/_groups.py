"""Conformance tests of groups: membership, death on every path, supervision, events, eight threads.
(skipped, with the reason, for a backend that declares ``supports_groups = False``)

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable

import pykka
import pytest

from pykka_registry import (
    ActorNotAliveError,
    GroupsNotSupportedError,
    InvalidActorRefError,
    InvalidKeyError,
    InvalidMetadataError,
    Joined,
    Left,
    NotRegisteredError,
    Registry,
    test_namespace,
)

from ._actors import Echo, _FailingFailure, _FailingStop, _ZombieStart
from ._base import ConformanceBase
from ._helpers import ActorFactory, wait_until


class GroupTests(ConformanceBase):
    """The conformance tests of groups."""

    # -- groups -----------------------------------------------------------------------------
    # Skipped, with the reason, for a backend that declares supports_groups = False.

    @pytest.fixture
    def grouped(self, registry: Registry) -> Registry:
        if not getattr(registry.backend, "supports_groups", False):
            pytest.skip(f"backend {registry.backend.name} keeps no groups "
                        "(supports_groups is False)")
        return registry

    def _assert_in_no_group(self, registry: Registry, ref: Any, ns: Any,
                            groups: list[Any]) -> None:
        """Every group read, with no waiting (death leaves every group
        before Pykka reports the actor stopped)."""
        assert registry.groups_of(ref) == []
        for group in groups:
            assert ref not in registry.members(ns, group)
            assert all(r is not ref for r, _ in registry.members_with_metadata(ns, group))
            assert all(r is not ref for r, _ in registry.match_members(ns, group, {}))
            assert registry.count_members(ns, group) == len(registry.members(ns, group))
        assert registry.stats().memberships == sum(
            registry.count_members(ns, g) for g in registry.groups(ns))

    def test_groups_refused_without_support(self, registry_factory: Callable[[], Registry],
                                            ns: Any, actors: ActorFactory) -> None:
        registry = registry_factory()
        if getattr(registry.backend, "supports_groups", False):
            pytest.skip("the backend keeps groups")
        with pytest.raises(GroupsNotSupportedError):
            registry.join(ns, "g", actors())
        with pytest.raises(NotImplementedError):
            registry.members(ns, "g")

    def test_join_members_and_metadata(self, grouped: Registry, ns: Any,
                                       actors: ActorFactory) -> None:
        registry = grouped
        a, b, c = actors(), actors(), actors()
        registry.join(ns, "g", a, {"n": 1})
        registry.join(ns, "g", b.proxy(), {"n": 2})  # a proxy stands for its ref
        registry.join(ns, "g", c)
        assert registry.members(ns, "g") == [a, b, c]
        assert registry.members_with_metadata(ns, "g") == [(a, {"n": 1}), (b, {"n": 2}), (c, {})]
        assert registry.count_members(ns, "g") == 3
        assert registry.groups(ns) == ["g"]
        assert registry.groups_of(a) == [(ns, "g")]
        assert registry.groups_of(b.proxy()) == [(ns, "g")]
        assert registry.match_members(ns, "g", {"n": 2}) == [(b, {"n": 2})]
        assert registry.match_members(ns, "g", {}) == registry.members_with_metadata(ns, "g")
        # Joining again replaces the metadata and keeps the place.
        registry.join(ns, "g", a, {"n": 9})
        assert registry.members_with_metadata(ns, "g")[0] == (a, {"n": 9})
        assert registry.count_members(ns, "g") == 3
        # The metadata handed out is a copy.
        registry.members_with_metadata(ns, "g")[0][1]["n"] = 0
        assert registry.match_members(ns, "g", {"n": 9}) == [(a, {"n": 9})]
        stats = registry.stats()
        assert (stats.groups, stats.memberships) == (1, 3)
        health = registry.health_check()
        assert (health.groups, health.memberships) == (1, 3)

    def test_an_actor_in_many_groups_and_names_apart(self, grouped: Registry, ns: Any,
                                                     actors: ActorFactory) -> None:
        registry = grouped
        a = actors()
        other = test_namespace()
        registry.join(ns, "g1", a)
        registry.join(ns, "g2", a)
        registry.join(other, "g1", a)
        registry.register(ns, "g1", a)  # a name and a group under one key
        assert sorted(map(str, registry.groups_of(a))) == sorted(
            map(str, [(ns, "g1"), (ns, "g2"), (other, "g1")]))
        assert sorted(map(str, registry.groups(ns))) == ["g1", "g2"]
        assert registry.members(other, "g1") == [a]
        registry.unregister(ns, "g1")
        assert registry.members(ns, "g1") == [a]
        registry.leave(ns, "g1", a)
        assert registry.lookup(ns, "g1") is None
        assert registry.members(ns, "g1") == []
        assert registry.groups(ns) == ["g2"]

    def test_leave_is_idempotent(self, grouped: Registry, ns: Any, actors: ActorFactory) -> None:
        registry = grouped
        a, b = actors(), actors()
        registry.leave(ns, "g", a)  # never joined
        registry.join(ns, "g", a)
        registry.join(ns, "g", b)
        registry.leave(ns, "g", a)
        registry.leave(ns, "g", a)
        assert registry.members(ns, "g") == [b]
        registry.join(ns, "g", a)  # rejoining after leaving goes to the end
        assert registry.members(ns, "g") == [b, a]
        registry.leave(ns, "g", b)
        registry.leave(ns, "g", a)
        assert registry.groups(ns) == []
        assert registry.stats().memberships == 0

    def test_joining_a_dead_actor_is_refused(self, grouped: Registry, ns: Any,
                                             actors: ActorFactory) -> None:
        ref = actors()
        ref.stop(block=True)
        with pytest.raises(ActorNotAliveError):
            grouped.join(ns, "g", ref)
        assert grouped.members(ns, "g") == []

    @pytest.mark.parametrize("bad", [None, "ref", 42, Echo])
    def test_join_bad_input_changes_nothing(self, grouped: Registry, ns: Any,
                                            actors: ActorFactory, bad: Any) -> None:
        registry = grouped
        ok = actors()
        registry.join(ns, "g", ok)
        with pytest.raises(InvalidActorRefError):
            registry.join(ns, "g", bad)
        unhashable: Any = ["unhashable"]
        with pytest.raises(InvalidKeyError):
            registry.join(ns, unhashable, ok)
        with pytest.raises(InvalidKeyError):
            registry.join(unhashable, "g", ok)
        with pytest.raises(InvalidMetadataError):
            registry.join(ns, "g", ok, unhashable)
        with pytest.raises(InvalidKeyError):
            registry.members(ns, unhashable)
        with pytest.raises(InvalidKeyError):
            registry.count_members(ns, unhashable)
        with pytest.raises(TypeError):
            registry.match_members(ns, "g", unhashable)
        with pytest.raises(InvalidActorRefError):
            registry.leave(ns, "g", bad)
        assert registry.members_with_metadata(ns, "g") == [(ok, {})]
        assert registry.stats().memberships == 1

    def _join_all(self, registry: Registry, ns: Any, ref: Any) -> list[Any]:
        groups = ["g1", "g2"]
        for group in groups:
            registry.join(ns, group, ref, {"role": "x"})
        registry.join(test_namespace(), "elsewhere", ref)
        return groups

    def test_death_leaves_every_group_on_stop(self, grouped: Registry, ns: Any,
                                              actors: ActorFactory) -> None:
        for _ in range(200):
            ref, other = actors(), actors()
            groups = self._join_all(grouped, ns, ref)
            grouped.join(ns, "g1", other)
            ref.stop(block=True)
            self._assert_in_no_group(grouped, ref, ns, groups)
            assert grouped.members(ns, "g1") == [other]
            other.stop(block=True)
            assert grouped.members(ns, "g1") == []
        assert grouped.stats().memberships == 0

    def test_death_leaves_every_group_on_crash(self, grouped: Registry, ns: Any,
                                               actors: ActorFactory) -> None:
        ref = actors()
        groups = self._join_all(grouped, ns, ref)
        ref.tell("crash")
        assert ref.actor_stopped.wait(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    @pytest.mark.parametrize("cls", [_FailingStop, _FailingFailure])
    def test_death_leaves_groups_when_hooks_fail(self, grouped: Registry, ns: Any,
                                                 actors: ActorFactory,
                                                 cls: type[pykka.Actor]) -> None:
        ref = actors(cls)
        groups = self._join_all(grouped, ns, ref)
        if cls is _FailingStop:
            ref.stop(block=True)
        else:
            ref.tell("anything")
            assert ref.actor_stopped.wait(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    def test_death_in_on_start_leaves_groups(self, grouped: Registry, ns: Any,
                                             actors: ActorFactory) -> None:
        gate = threading.Event()

        class GatedFailingStart(pykka.ThreadingActor):
            def on_start(self) -> None:
                gate.wait(10)
                raise RuntimeError("on_start failed on purpose")

        ref = actors(GatedFailingStart)
        groups = self._join_all(grouped, ns, ref)
        gate.set()
        assert ref.actor_stopped.wait(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_base_exception_in_on_start_leaves_groups(self, grouped: Registry, ns: Any,
                                                      actors: ActorFactory) -> None:
        release = threading.Event()
        threads: list[threading.Thread] = []
        ref = actors(_ZombieStart, release, threads)
        groups = self._join_all(grouped, ns, ref)
        release.set()
        assert ref.actor_stopped.wait(5)
        wait_until(lambda: threads, message="actor thread seen")
        threads[0].join(5)
        self._assert_in_no_group(grouped, ref, ns, groups)

    def test_stop_all_leaves_every_group(self, grouped: Registry, ns: Any) -> None:
        refs = [Echo.start() for _ in range(5)]
        for ref in refs:
            grouped.join(ns, "g", ref)
        assert grouped.count_members(ns, "g") == 5
        pykka.ActorRegistry.stop_all(block=True)  # the registry's own server restarts
        for ref in refs:
            self._assert_in_no_group(grouped, ref, ns, ["g"])

    def test_join_racing_with_death_is_refused_or_cleaned(self, grouped: Registry, ns: Any,
                                                          actors: ActorFactory) -> None:
        for _ in range(100):
            ref = actors()
            ref.stop(block=False)
            with contextlib.suppress(ActorNotAliveError):
                grouped.join(ns, "g", ref)
            assert ref.actor_stopped.wait(5)
            assert ref not in grouped.members(ns, "g")
        assert grouped.count_members(ns, "g") == 0

    def test_stop_namespace_removes_members_and_stops_them(self, grouped: Registry,
                                                           actors: ActorFactory) -> None:
        ns, other = test_namespace(), test_namespace()
        a, b, keep = actors(), actors(), actors()
        grouped.join(ns, "g", a)
        grouped.join(ns, "h", b)
        grouped.join(other, "g", keep)
        seen: list[Any] = []
        grouped.subscribe(seen.append, namespace=ns)
        grouped.stop_namespace(ns)
        assert not a.is_alive() and not b.is_alive()
        assert grouped.groups(ns) == []
        assert grouped.members(other, "g") == [keep]
        wait_until(lambda: len(seen) >= 2, message="Left events")
        assert {e.reason.kind for e in seen[:2]} == {"namespace_stopped"}
        assert all(isinstance(e, Left) for e in seen[:2])

    def test_dispatch_and_ask_all(self, grouped: Registry, ns: Any, actors: ActorFactory) -> None:
        registry = grouped
        assert registry.dispatch(ns, "g", "x") == 0
        assert registry.ask_all(ns, "g", "x") == []
        refs = [actors() for _ in range(4)]
        for ref in refs:
            registry.join(ns, "g", ref)
        assert registry.dispatch(ns, "g", "hello") == 4
        answers = registry.ask_all(ns, "g", "q", timeout=5)
        assert answers == [(ref, ("echo", "q")) for ref in refs]
        with_error = registry.ask_all(ns, "g", "raise", timeout=5)
        assert [ref for ref, _ in with_error] == refs
        assert all(isinstance(value, ValueError) for _, value in with_error)
        for ref in refs:
            received = ref.proxy().received.get(timeout=5)
            assert received.count("hello") == 1

    def test_group_via_reaches_one_member_per_call(self, grouped: Registry, ns: Any,
                                                   actors: ActorFactory) -> None:
        registry = grouped
        with pytest.raises(NotRegisteredError):
            registry.group_via(ns, "g").tell("x")
        refs = [actors(Echo, f"w{i}") for i in range(3)]
        for ref in refs:
            registry.join(ns, "g", ref)
        rr = registry.group_via(ns, "g")
        assert [rr.ask("label", timeout=5) for _ in range(6)] == ["w0", "w1", "w2"] * 2
        hashed = registry.group_via(ns, "g", strategy="hash")
        first = hashed.ask("label", key="user-7", timeout=5)
        assert all(hashed.ask("label", key="user-7", timeout=5) == first for _ in range(5))
        randomly = registry.group_via(ns, "g", strategy="random")
        assert randomly.ask("label", timeout=5) in {"w0", "w1", "w2"}
        assert rr.proxy().get_label().get(timeout=5) in {"w0", "w1", "w2"}

    def test_supervised_child_rejoins_its_groups(self, grouped: Registry, ns: Any) -> None:
        from pykka_registry import ChildSpec, Supervisor

        spec = ChildSpec(id="w", start=Echo.start, name=(ns, "w"), metadata={"k": 1},
                         groups=[(ns, "workers"), (ns, "all")])
        supervisor = Supervisor.start(children=[spec], registry=grouped)
        try:
            first = grouped.members(ns, "workers")
            assert len(first) == 1 and grouped.members(ns, "all") == first
            assert grouped.members_with_metadata(ns, "workers") == [(first[0], {"k": 1})]
            first[0].tell("crash")
            assert first[0].actor_stopped.wait(5)
            assert grouped.members(ns, "workers") == [] or \
                grouped.members(ns, "workers")[0] is not first[0]
            second = grouped.await_name(ns, "w", replacing=first[0])
            # The name is registered first, then the groups are joined.
            wait_until(lambda: grouped.members(ns, "all") == [second],
                       message="the restarted child rejoined")
            assert grouped.members(ns, "workers") == [second]
        finally:
            supervisor.stop()
        assert grouped.members(ns, "workers") == []

    def test_group_events_in_order_and_replay(self, grouped: Registry, ns: Any,
                                              actors: ActorFactory) -> None:
        registry = grouped
        events: list[Any] = []
        registry.subscribe(events.append, namespace=ns)
        a, b = actors(), actors()
        registry.join(ns, "g", a, {"v": 1})
        registry.join(ns, "g", a, {"v": 2})
        registry.join(ns, "g", b)
        registry.leave(ns, "g", a)
        b.tell("crash")
        assert b.actor_stopped.wait(5)
        registry.sync()
        wait_until(lambda: len(events) >= 5, message="group events")
        kinds = [(type(e).__name__, e.actor_ref) for e in events]
        assert kinds == [("Joined", a), ("Joined", a), ("Joined", b), ("Left", a), ("Left", b)]
        assert dict(events[1].metadata) == {"v": 2}
        assert events[3].reason.kind == "left"
        assert events[4].reason.kind == "crashed"
        assert isinstance(events[4].reason.exception, RuntimeError)
        # Replay: members as Joined, no gap or duplicate with a writer running.
        total = 60
        refs = [actors() for _ in range(total)]
        started = threading.Event()

        def writer() -> None:
            for i, ref in enumerate(refs):
                registry.join(ns, "r", ref)
                if i == total // 3:
                    started.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert started.wait(5)
        seen: list[Any] = []
        registry.subscribe(lambda e: seen.append(e) if e.namespace == ns and
                           getattr(e, "group", None) == "r" else None,
                           namespace=ns, replay=True)
        thread.join(10)
        wait_until(lambda: len(seen) >= total, message="replayed and live Joined")
        registry.sync()
        assert all(isinstance(e, Joined) for e in seen)
        assert [e.actor_ref for e in seen] == refs

    def test_eight_threads_join_leave_dispatch_while_members_die(
        self, grouped: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        registry = grouped
        errors: list[BaseException] = []
        lock = threading.Lock()
        model: dict[str, set[Any]] = {}  # thread -> refs it believes are members

        created: list[Any] = []  # every member ever made, by every thread

        def worker(index: int) -> None:
            mine: set[Any] = set()
            try:
                for round_ in range(30):
                    ref = actors()
                    created.append(ref)
                    registry.join(ns, "g", ref)
                    mine.add(ref)
                    registry.dispatch(ns, "g", "ping")
                    if round_ % 3 == 0:
                        registry.leave(ns, "g", ref)
                        mine.discard(ref)
                    elif round_ % 3 == 1:
                        ref.stop(block=True)
                        mine.discard(ref)
                        assert ref not in registry.members(ns, "g")
                    # Another thread may stop a member right after the snapshot,
                    # so only actors already stopped before it must be absent.
                    stopped_before = {r for r in list(created) if r.actor_stopped.is_set()}
                    listed = registry.members(ns, "g")
                    assert not stopped_before.intersection(listed)
            except BaseException as error:
                errors.append(error)
            with lock:
                model[f"t{index}"] = mine

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors[:3]
        expected = set().union(*model.values())
        members = registry.members(ns, "g")
        assert len(members) == len(set(members))
        assert set(members) == expected
        assert registry.count_members(ns, "g") == len(expected)
        assert registry.stats().memberships == len(expected)
