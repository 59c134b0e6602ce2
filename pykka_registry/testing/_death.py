"""Conformance tests of death: an actor's names are gone, on every death
path, before Pykka reports it stopped.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from pykka_registry import (
    ActorNotAliveError,
    AlreadyRegisteredError,
    Registry,
    Unregistered,
    test_namespace,
)

from ._actors import Echo, _FailingFailure, _FailingStop, _ZombieStart
from ._base import ConformanceBase
from ._helpers import ActorFactory, assert_no_names_of, holding_server, wait_until


class DeathTests(ConformanceBase):
    """The conformance tests of death."""

    # -- death-driven unregistration ------------------------------------------------------------

    def _assert_gone(self, registry: Registry, ns: Any, ref: Any, services: list[Any]) -> None:
        """Every read, with no waiting: the actor has stopped, so its names
        must already be gone (death completes before Pykka reports it)."""
        assert_no_names_of(registry, ref, [ns], services)

    def _register_all(self, registry: Registry, ns: Any, ref: Any) -> list[Any]:
        services = ["one", "two"]
        for service in services:
            registry.register(ns, service, ref, {"role": "x"})
        registry.register(test_namespace(), "elsewhere", ref, {"role": "x"})
        return services

    def test_stopped_actor_is_unregistered(self, registry: Registry, ns: Any,
                                           actors: ActorFactory) -> None:
        ref = actors()
        services = self._register_all(registry, ns, ref)
        ref.stop(block=True)
        self._assert_gone(registry, ns, ref, services)
        assert registry.count() == 0
        replacement = actors()
        registry.register(ns, "one", replacement)  # the name is free at once
        assert registry.lookup(ns, "one") is replacement

    def test_crash_in_told_message_unregisters(self, registry: Registry, ns: Any,
                                               actors: ActorFactory) -> None:
        ref = actors()
        services = self._register_all(registry, ns, ref)
        ref.tell("crash")
        assert ref.actor_stopped.wait(5)
        self._assert_gone(registry, ns, ref, services)

    def test_exception_in_asked_message_keeps_the_name(self, registry: Registry, ns: Any,
                                                       actors: ActorFactory) -> None:
        ref = actors()
        registry.register(ns, "svc", ref)
        with pytest.raises(ValueError):
            ref.ask("raise", timeout=5)
        assert registry.lookup(ns, "svc") is ref

    def test_name_is_free_the_moment_the_actor_has_stopped(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        for _ in range(20):
            ref = actors()
            registry.register(ns, "svc", ref)
            ref.stop(block=True)
            assert registry.lookup(ns, "svc") is None
            successor = actors()
            registry.register(ns, "svc", successor)
            assert registry.lookup(ns, "svc") is successor
            registry.unregister(ns, "svc")

    @pytest.mark.parametrize("cls", [_FailingStop, _FailingFailure])
    def test_failing_lifecycle_hooks_still_unregister(
        self, registry: Registry, ns: Any, actors: ActorFactory, cls: type[pykka.Actor]
    ) -> None:
        ref = actors(cls)
        services = self._register_all(registry, ns, ref)
        if cls is _FailingStop:
            ref.stop(block=True)
        else:
            ref.tell("anything")
            assert ref.actor_stopped.wait(5)
        self._assert_gone(registry, ns, ref, services)

    def test_exception_in_on_start_unregisters(self, registry: Registry, ns: Any,
                                               actors: ActorFactory) -> None:
        gate = threading.Event()

        class GatedFailingStart(pykka.ThreadingActor):
            def on_start(self) -> None:
                gate.wait(10)
                raise RuntimeError("on_start failed on purpose")

        ref = actors(GatedFailingStart)
        services = self._register_all(registry, ns, ref)  # registered before on_start ends
        gate.set()
        assert ref.actor_stopped.wait(5)
        self._assert_gone(registry, ns, ref, services)

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_base_exception_in_on_start_unregisters(self, registry: Registry, ns: Any,
                                                    actors: ActorFactory) -> None:
        # Pykka lets this escape its thread without unregistering the actor;
        # the death watch's wrapper of the actor loop catches it.
        release = threading.Event()
        threads: list[threading.Thread] = []
        ref = actors(_ZombieStart, release, threads)
        services = self._register_all(registry, ns, ref)
        release.set()
        assert ref.actor_stopped.wait(5), "zombie actor never marked stopped"
        wait_until(lambda: threads, message="actor thread seen")
        threads[0].join(5)  # let the thread finish reporting it
        self._assert_gone(registry, ns, ref, services)
        assert pykka.ActorRegistry.get_by_urn(ref.actor_urn) is None

    def test_late_death_notice_never_removes_a_newer_holder(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        old, new = actors(), actors()
        registry.register(ns, "svc", old)
        # Hold the server while "old" dies and "new" registers behind its
        # death notice: "new" gets the name.
        with holding_server(registry):
            old.stop(block=True)
            registering = threading.Thread(target=registry.register, args=(ns, "svc", new))
            registering.start()
        registering.join(5)
        assert registry.lookup(ns, "svc") is new
        # Now a stale notice about "old" arrives late (as a slow death watch, or
        # a change feed replaying history, would deliver it): "new" keeps the name.
        state = registry._state
        state.pending_deaths.append((old, None))
        state.submit(lambda state: None)  # wakes the server, which drains the notices
        registry.sync()
        assert not state.pending_deaths
        assert registry.lookup(ns, "svc") is new
        assert registry.keys_of(new) == [(ns, "svc")]

    def test_sync_makes_listings_reflect_every_death_so_far(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        refs = [actors() for _ in range(5)]
        for i, ref in enumerate(refs):
            registry.register(ns, f"s{i}", ref, {"role": "x"})
        for ref in refs[:3]:
            ref.stop(block=True)
        registry.sync()
        assert registry.count(ns) == 2  # no waiting needed after sync
        assert sorted(registry.list_services(ns), key=str) == ["s3", "s4"]
        assert len(registry.match(ns, {"role": "x"})) == 2

    @pytest.mark.parametrize("how", ["stop", "crash"])
    def test_death_is_complete_before_pykka_reports_it_1000_times(
        self, registry: Registry, ns: Any, actors: ActorFactory, how: str
    ) -> None:
        other_ns = test_namespace()
        for i in range(1000):
            ref = Echo.start(f"d{i}")
            registry.register(ns, "svc", ref, {"role": "x"})
            registry.register(other_ns, "svc", ref)
            if how == "stop":
                ref.stop(block=True)
            else:
                ref.tell("crash")
                ref.actor_stopped.wait(5)
            # No wait, no sync(): every read is already clean.
            assert registry.lookup(ns, "svc") is None
            assert registry.count(ns) == 0 and registry.count(other_ns) == 0
            assert registry.list_services(ns) == []
            assert registry.match(ns, {"role": "x"}) == []
            assert registry.keys_of(ref) == []
            assert ns not in registry.namespaces()
        assert registry.count() == 0

    def test_stop_all_leaves_no_name_behind(self, registry: Registry, ns: Any,
                                            actors: ActorFactory) -> None:
        """``pykka.ActorRegistry.stop_all()`` stops every actor of the process,
        the registry's own server too: every name is gone when it returns."""
        refs = [actors() for _ in range(3)]
        for i, ref in enumerate(refs):
            registry.register(ns, f"s{i}", ref, {"role": "x"})
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        for ref in refs:
            assert ref.actor_stopped.is_set()
            assert_no_names_of(registry, ref, [ns], ["s0", "s1", "s2"])
        assert registry.count(ns) == 0 and registry.list_services(ns) == []

    def test_ask_of_a_dead_actor_implies_its_names_are_gone(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        ref = actors()
        registry.register(ns, "svc", ref)
        ref.tell("crash")
        with pytest.raises(pykka.ActorDeadError):
            for _ in range(10_000):  # until Pykka reports it dead, then at once
                ref.ask("hi", timeout=5)
        assert registry.lookup(ns, "svc") is None and registry.count(ns) == 0

    def test_death_clean_up_does_not_wait_for_the_server(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        events: list[Any] = []
        arrived = threading.Event()

        def listener(event: Any) -> None:
            events.append(event)
            if isinstance(event, Unregistered):
                arrived.set()

        registry.subscribe(listener, namespace=ns)
        ref = actors()
        registry.register(ns, "svc", ref)
        with holding_server(registry):  # the server is busy for the whole block
            ref.stop(block=True)
            assert registry.lookup(ns, "svc") is None and registry.count(ns) == 0
            assert arrived.wait(5), "the Unregistered event waited for the server"
            successor = actors()
        registry.register(ns, "svc", successor)  # the name is free at once
        wait_until(lambda: len(events) == 3, message="three events delivered")
        assert [type(e).__name__ for e in events] == ["Registered", "Unregistered",
                                                      "Registered"]
        assert events[1].reason.kind == "stopped"

    def test_eight_threads_never_see_a_stopped_actor(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        """Readers check, continuously, that no entry names an actor whose
        ``actor_stopped`` is set, while writers register and actors die."""
        stop = threading.Event()
        errors: list[str] = []
        rounds = 150
        stopped: list[Any] = []  # refs whose stop had returned (appended after)

        def read() -> None:
            while not stop.is_set():
                # Every ref in this copy had actor_stopped set before the reads below.
                dead = {id(ref) for ref in list(stopped)}
                for service, ref, _ in registry.match(ns, {}):
                    if id(ref) in dead:
                        errors.append(f"match lists {service} of a stopped actor")
                for service in registry.list_services(ns):
                    if id(registry.lookup(ns, service)) in dead:
                        errors.append(f"lookup({service}) gave a stopped actor")
                if any(registry.keys_of(ref) for ref in list(stopped)[-5:]):
                    errors.append("keys_of lists names of a stopped actor")

        def churn(t: int) -> None:
            try:
                for i in range(rounds):
                    ref = Echo.start()
                    service = f"w{t}-{i % 5}"
                    try:
                        registry.register(ns, service, ref)
                    except AlreadyRegisteredError:
                        pass
                    if i % 2:
                        ref.tell("crash")
                        ref.actor_stopped.wait(5)
                    else:
                        ref.stop(block=True)
                    stopped.append(ref)
                    if registry.lookup(ns, service) is ref:
                        errors.append(f"{service}: lookup after stop gave the dead actor")
            except BaseException as error:
                errors.append(repr(error))

        readers = [threading.Thread(target=read) for _ in range(4)]
        writers = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(60)
        stop.set()
        for thread in readers:
            thread.join(10)
        assert errors == []
        assert registry.count(ns) == 0

    def test_register_racing_with_death_is_refused_or_cleaned(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        for i in range(100):
            ref = Echo.start()
            outcome: list[str] = []

            def register(ref: Any = ref, i: int = i, outcome: list[str] = outcome) -> None:
                try:
                    registry.register(ns, f"r{i}", ref)
                    outcome.append("registered")
                except ActorNotAliveError:
                    outcome.append("refused")

            racer = threading.Thread(target=register)
            racer.start()
            ref.stop(block=True)
            racer.join(10)
            assert outcome in (["registered"], ["refused"])
            # Either way, once the register has returned, the dead actor is gone.
            assert registry.lookup(ns, f"r{i}") is None
            assert registry.keys_of(ref) == []
        assert registry.count(ns) == 0
