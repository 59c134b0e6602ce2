"""Test actors: :class:`Echo`, the one actor the suite and the project's own
tests start, and actors that fail on purpose in each lifecycle hook.

Imports without pytest.

Guarantees
----------
* Each actor runs its handlers in its own Pykka thread, as any
  :class:`pykka.ThreadingActor`; none waits without a timeout.
* The failures are deliberate and say so in their messages ("on purpose").
"""

from __future__ import annotations

import threading
from typing import Any

import pykka


class Echo(pykka.ThreadingActor):
    """A test actor: answers ``ask(x)`` with ``("echo", x)``; ``"crash"`` told
    to it raises; ``"raise"`` asked raises back to the caller."""

    def __init__(self, label: str = "") -> None:
        super().__init__()
        self.label = label
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)
        if message == "crash":
            raise RuntimeError(f"{self.label or 'echo'} crashed on purpose")
        if message == "raise":
            raise ValueError("asked to raise")
        if message == "label":
            return self.label
        return ("echo", message)

    def get_label(self) -> str:
        return self.label


class _FailingStart(pykka.ThreadingActor):
    def on_start(self) -> None:
        raise RuntimeError("on_start failed on purpose")


class _FailingStop(pykka.ThreadingActor):
    def on_stop(self) -> None:
        raise RuntimeError("on_stop failed on purpose")


class _FailingFailure(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("handler failed on purpose")

    def on_failure(self, *exc_info: Any) -> None:
        raise RuntimeError("on_failure failed on purpose")


class _ZombieStart(pykka.ThreadingActor):
    """``on_start`` blocks until released, then raises a BaseException, which
    Pykka does not catch (the thread dies, the ref would stay 'alive')."""

    def __init__(self, release: threading.Event, threads: list[threading.Thread]) -> None:
        super().__init__()
        self.release = release
        self.threads = threads

    def on_start(self) -> None:
        self.threads.append(threading.current_thread())
        self.release.wait(10)
        raise _TestBaseException("BaseException in on_start")


class _TestBaseException(BaseException):
    pass

