"""monitor(): exactly one DownEvent per death path, with the right reason."""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from pykka_registry import DownEvent, InvalidActorRefError, monitor
from pykka_registry.testing import Echo, wait_until


class Recorder:
    def __init__(self) -> None:
        self.events: list[DownEvent] = []
        self.fired = threading.Event()

    def __call__(self, event: DownEvent) -> None:
        self.events.append(event)
        self.fired.set()


class FailingStart(pykka.ThreadingActor):
    def on_start(self) -> None:
        raise RuntimeError("on_start failed")


class FailingStop(pykka.ThreadingActor):
    def on_stop(self) -> None:
        raise RuntimeError("on_stop failed")


class Fatal(BaseException):
    pass


class GatedBaseExceptionStart(pykka.ThreadingActor):
    def __init__(self, gate: threading.Event, threads: list[threading.Thread]) -> None:
        super().__init__()
        self.gate = gate
        self.threads = threads

    def on_start(self) -> None:
        self.threads.append(threading.current_thread())
        self.gate.wait(5)
        raise Fatal("BaseException in on_start")


def test_normal_stop_reports_no_reason() -> None:
    ref = Echo.start()
    recorder = Recorder()
    monitor(ref, recorder)
    ref.stop(block=True)
    assert recorder.fired.wait(5)
    assert recorder.events == [DownEvent(ref, None)]
    assert recorder.events[0].reason is None
    assert not recorder.events[0].crashed


def test_crash_reports_the_exception() -> None:
    ref = Echo.start()
    recorder = Recorder()
    monitor(ref, recorder)
    ref.tell("crash")
    assert recorder.fired.wait(5)
    (event,) = recorder.events
    assert isinstance(event.reason, RuntimeError)
    assert "crashed on purpose" in str(event.reason)
    assert event.crashed


def test_exception_in_on_start_reports_it() -> None:
    gate = threading.Event()

    class GatedFailingStart(pykka.ThreadingActor):
        def on_start(self) -> None:
            gate.wait(5)
            raise RuntimeError("on_start failed")

    ref = GatedFailingStart.start()
    recorder = Recorder()
    monitor(ref, recorder)
    gate.set()
    assert recorder.fired.wait(5)
    assert isinstance(recorder.events[0].reason, RuntimeError)


def test_failing_on_stop_fires_exactly_once() -> None:
    # Pykka unregisters such an actor twice; the monitor still fires once.
    ref = FailingStop.start()
    recorder = Recorder()
    monitor(ref, recorder)
    ref.stop(block=True)
    assert recorder.fired.wait(5)
    assert ref.actor_stopped.wait(5)
    assert len(recorder.events) == 1
    assert recorder.events[0].reason is None  # the stop itself was normal


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_base_exception_in_on_start_is_reported_even_run_from_its_folder() -> None:
    gate = threading.Event()
    threads: list[threading.Thread] = []
    ref = GatedBaseExceptionStart.start(gate, threads)
    recorder = Recorder()
    monitor(ref, recorder)
    gate.set()
    assert recorder.fired.wait(5)
    assert isinstance(recorder.events[0].reason, Fatal)
    assert not ref.is_alive()
    # let the thread finish reporting it (to pytest's excepthook)
    threads[0].join(5)


def test_monitoring_a_dead_actor_fires_at_once_with_its_reason() -> None:
    crashed = Echo.start()
    crashed.tell("crash")
    assert crashed.actor_stopped.wait(5)
    stopped = Echo.start()
    stopped.stop(block=True)
    crash_events: list[DownEvent] = []
    stop_events: list[DownEvent] = []
    monitor(crashed, crash_events.append)
    monitor(stopped, stop_events.append)
    assert len(crash_events) == 1
    assert isinstance(crash_events[0].reason, RuntimeError)
    assert stop_events == [DownEvent(stopped, None)]


def test_failed_start_actor_fires_immediately() -> None:
    ref = FailingStart.start()
    assert ref.actor_stopped.wait(5)
    events: list[DownEvent] = []
    monitor(ref, events.append)
    assert len(events) == 1
    assert isinstance(events[0].reason, RuntimeError)


def test_cancel_prevents_the_callback() -> None:
    ref = Echo.start()
    cancelled: list[DownEvent] = []
    kept = Recorder()
    handle = monitor(ref, cancelled.append)
    monitor(ref, kept)
    assert handle.cancel() is True
    assert handle.cancel() is False
    ref.stop(block=True)
    assert kept.fired.wait(5)
    assert cancelled == []


def test_a_failing_callback_does_not_stop_the_others(caplog: Any) -> None:
    ref = Echo.start()
    kept = Recorder()

    def broken(event: DownEvent) -> None:
        raise RuntimeError("callback bug")

    monitor(ref, broken)
    monitor(ref, kept)
    ref.stop(block=True)
    assert kept.fired.wait(5)
    wait_until(lambda: "callback bug" in caplog.text or "monitor callback" in caplog.text,
               message="failing callback logged")


def test_many_monitors_one_death_each_fire_once() -> None:
    refs = [Echo.start() for _ in range(20)]
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def count(event: DownEvent) -> None:
        with lock:
            counts[event.actor_ref.actor_urn] = counts.get(event.actor_ref.actor_urn, 0) + 1

    for ref in refs:
        for _ in range(3):
            monitor(ref, count)
    for ref in refs:
        ref.stop(block=False)
    wait_until(lambda: sum(counts.values()) == 60, message="all monitors fired")
    assert all(value == 3 for value in counts.values())


def test_bad_arguments() -> None:
    with pytest.raises(InvalidActorRefError):
        monitor("not a ref", print)  # type: ignore[arg-type]
    ref = Echo.start()
    try:
        with pytest.raises(TypeError):
            monitor(ref, "not callable")  # type: ignore[arg-type]
    finally:
        ref.stop()


class FailingFailure(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("handler failed")

    def on_failure(self, *exc_info: Any) -> None:
        raise RuntimeError("on_failure failed too")


def test_failing_on_failure_fires_once_with_the_first_reason() -> None:
    ref = FailingFailure.start()
    recorder = Recorder()
    monitor(ref, recorder)
    ref.tell("anything")
    assert recorder.fired.wait(5)
    assert ref.actor_stopped.wait(5)
    (event,) = recorder.events
    assert str(event.reason) == "handler failed"


class FatalHandler(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        raise Fatal("BaseException in a handler")


def test_base_exception_in_a_handler_fires_every_monitor() -> None:
    # Pykka answers it with ActorRegistry.stop_all(): every actor dies.
    doomed, bystander = FatalHandler.start(), Echo.start()
    doomed_events, bystander_events = Recorder(), Recorder()
    monitor(doomed, doomed_events)
    monitor(bystander, bystander_events)
    doomed.tell("anything")
    assert doomed_events.fired.wait(5) and bystander_events.fired.wait(5)
    assert isinstance(doomed_events.events[0].reason, Fatal)
    assert bystander_events.events[0].reason is None  # stopped by stop_all: a normal stop


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_a_callback_raising_base_exception_does_not_skip_the_others(
    error: type[BaseException]
) -> None:
    ref = Echo.start()
    kept = Recorder()

    def broken(event: DownEvent) -> None:
        raise error("callback on purpose")

    monitor(ref, broken)
    monitor(ref, kept)
    ref.stop(block=True)
    assert kept.fired.wait(5), "a BaseException in one callback skipped the next"


def test_a_keyboard_interrupt_from_a_callback_run_in_the_callers_thread_passes_through(
) -> None:
    # An actor already dead: the callback runs at once, in this thread, where
    # a KeyboardInterrupt is the user's Ctrl-C and must not be swallowed.
    ref = Echo.start()
    ref.stop(block=True)
    calls: list[DownEvent] = []

    def interrupted(event: DownEvent) -> None:
        calls.append(event)
        raise KeyboardInterrupt("Ctrl-C on purpose")

    with pytest.raises(KeyboardInterrupt):
        monitor(ref, interrupted)
    assert len(calls) == 1

    def exits(event: DownEvent) -> None:
        raise SystemExit("callback on purpose")

    monitor(ref, exits)  # anything else is logged, as in the dying thread
