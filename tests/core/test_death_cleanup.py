"""Synchronous death clean-up: what the conformance suite cannot check from
inside one pytest process (freed tracebacks, interpreter exit), and the
stopped-registry and subscription edge cases around it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any

import pykka
import pytest

from pykka_registry import Registry, RegistryUnavailableError, Unregistered, test_namespace
from pykka_registry._messages import Call
from pykka_registry.testing import Echo, wait_until


def run_script(source: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``source`` in a fresh interpreter (no pytest hooks, no log capture)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_a_crashed_handlers_locals_are_freed_without_the_cyclic_gc() -> None:
    result = run_script("""
        import gc, threading, weakref
        import pykka
        from pykka_registry import Registry, Unregistered

        gc.disable()  # only reference counting may free it

        class Big:
            pass

        seen = {}

        class Crasher(pykka.ThreadingActor):
            def on_receive(self, message):
                big = Big()  # a large local of the failed handler
                seen["big"] = weakref.ref(big)
                raise RuntimeError("boom")

        with Registry.start() as registry:
            events = []
            done = threading.Event()
            registry.subscribe(lambda e: (events.append(e), done.set())
                               if isinstance(e, Unregistered) else None)
            ref = Crasher.start()
            registry.register("ns", "crasher", ref)
            ref.tell("go")
            assert ref.actor_stopped.wait(5)
            threads = [t for t in threading.enumerate() if ref.actor_urn in t.name]
            for thread in threads:
                thread.join(5)
            assert done.wait(5)
            reason = events[0].reason
            assert reason.kind == "crashed" and isinstance(reason.exception, RuntimeError)
            assert str(reason.exception) == "boom"
            assert reason.exception.__traceback__ is None
            del ref
            assert seen["big"]() is None, "the failed handler's local is still alive"
        print("freed")
    """)
    assert result.returncode == 0, result.stderr
    assert "freed" in result.stdout


def test_a_program_that_forgets_registry_stop_exits() -> None:
    result = run_script("""
        import pykka
        from pykka_registry import Registry, IndexedBackend

        registry = Registry.start(backend=IndexedBackend)
        registry.subscribe(lambda event: None, replay=True)
        worker = pykka.ThreadingActor.start()
        registry.register("ns", "worker", worker, {"role": "w"})
        worker.stop(block=True)
        print("done")
        # no registry.stop(): the registry's threads must not keep us alive
    """, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"


def test_a_stopped_registry_answers_no_names() -> None:
    ns = test_namespace()
    worker = Echo.start()
    try:
        registry = Registry.start()
        registry.register(ns, "svc", worker, {"role": "x"})
        via = registry.via(ns, "svc")
        registry.stop()
        assert worker.is_alive(), "registered actors keep running"
        assert registry.lookup(ns, "svc") is None
        assert registry.lookup_with_metadata(ns, "svc") is None
        assert registry.list_services(ns) == []
        assert registry.count() == 0 and registry.count(ns) == 0
        assert registry.match(ns, {}) == []
        assert registry.find_services_by_metadata(ns, lambda m: True) == []
        assert registry.keys_of(worker) == []
        assert registry.namespaces() == []
        with pytest.raises(Exception, match="svc"):
            via.tell("hello")
        with pytest.raises(RegistryUnavailableError):
            registry.register(ns, "other", worker)
    finally:
        worker.stop()


def test_a_subscription_cancelled_before_the_server_applies_it_never_starts() -> None:
    ns = test_namespace()
    with Registry.start(call_timeout=0.2) as registry:
        got: list[Any] = []
        entered, release = threading.Event(), threading.Event()

        def hold(state: Any) -> None:
            entered.set()
            release.wait(10)

        registry.server_ref.tell(Call(hold))  # told, so the hold itself never times out
        assert entered.wait(5)
        try:
            with pytest.raises(RegistryUnavailableError):
                registry.subscribe(got.append, namespace=ns)  # times out: server held
        finally:
            release.set()
        registry.sync()  # the server has now applied the stale Subscribe
        assert not registry._state.events.active, "the timed-out subscription was added"
        ref = Echo.start()
        try:
            registry.register(ns, "svc", ref)
            registry.sync()
            assert registry.stats().subscribers_active is False
        finally:
            ref.stop()
        assert got == []


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, RuntimeError])
def test_a_listener_raising_anything_does_not_end_delivery(error: type[BaseException]) -> None:
    ns = test_namespace()
    with Registry.start() as registry:
        arrived = threading.Event()
        seen: list[Any] = []

        def bad(event: Any) -> None:
            raise error("from a listener")

        def good(event: Any) -> None:
            seen.append(event)
            if len(seen) == 2:
                arrived.set()

        registry.subscribe(bad, namespace=ns)
        registry.subscribe(good, namespace=ns)
        ref = Echo.start()
        registry.register(ns, "a", ref)
        ref.stop(block=True)
        assert arrived.wait(5), "delivery stopped after a listener raised"
        assert isinstance(seen[1], Unregistered)


def test_a_death_listener_raising_base_exception_does_not_stop_the_clean_up() -> None:
    from pykka_registry import _deathwatch

    def hostile(actor_ref: Any, reason: Any) -> None:
        raise SystemExit("hostile death listener")

    ns = test_namespace()
    _deathwatch.add_listener(hostile, early=True)  # runs before the registry's
    try:
        with Registry.start() as registry:
            ref = Echo.start()
            registry.register(ns, "svc", ref)
            ref.stop(block=True)
            assert registry.lookup(ns, "svc") is None and registry.count(ns) == 0
    finally:
        _deathwatch.remove_listener(hostile)


def test_a_backend_whose_remove_actor_raises_leaves_the_dying_thread_alone() -> None:
    from pykka_registry import MemoryBackend

    class Broken(MemoryBackend):
        def remove_actor(self, actor_ref: Any) -> Any:
            raise RuntimeError("backend bug")

    ns = test_namespace()
    with Registry.start(backend=Broken) as registry:
        ref = Echo.start()
        registry.register(ns, "svc", ref)
        ref.stop(block=True)  # returns: the dying thread was not disturbed
        assert not ref.is_alive()
        assert registry.running


def test_thread_ends_clear_every_chained_traceback() -> None:
    from pykka_registry._deathwatch import clear_tracebacks

    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        caught = outer
    assert caught.__traceback__ is not None and caught.__cause__ is not None
    clear_tracebacks(caught)
    assert caught.__traceback__ is None
    assert caught.__cause__.__traceback__ is None
    assert str(caught) == "outer"


def test_pykka_still_gets_the_traceback_in_on_failure() -> None:
    tracebacks: list[Any] = []

    class Failing(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> None:
            raise RuntimeError("boom")

        def on_failure(self, exception_type: Any, exception_value: Any, tb: Any) -> None:
            tracebacks.append(tb)

    with Registry.start() as registry:
        ref = Failing.start()
        registry.register(test_namespace(), "f", ref)
        ref.tell("go")
        assert ref.actor_stopped.wait(5)
        wait_until(lambda: tracebacks, message="on_failure ran")
        assert tracebacks[0] is not None


def test_a_dying_thread_waits_for_the_write_lock_at_most_call_timeout() -> None:
    """No hang: if the write lock is not free in time (a backend write that
    does not return), the dying thread leaves the notice to the server, which
    removes the names once the lock is free; nothing is lost."""
    ns = test_namespace()
    with Registry.start(call_timeout=0.2) as registry:
        ref = Echo.start()
        registry.register(ns, "svc", ref)
        state = registry._state
        assert state.acquire_write()  # stands for a write that does not return
        try:
            ref.stop(block=True, timeout=5)  # returns: the dying thread gave up waiting
            assert list(state.pending_deaths) == [(ref, None)]
            # Long enough for the server to find the lock busy too: it must
            # try again later, not die of it.
            threading.Event().wait(3 * registry.call_timeout)
        finally:
            state.release_write()
        registry.sync()  # the server drains the notice
        assert registry.lookup(ns, "svc") is None and registry.count(ns) == 0
        assert not state.pending_deaths
        assert registry.stats().server_restarts == 0
