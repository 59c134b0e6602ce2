"""``python -m pykka_registry demo``: a short narrated tour on a real registry.

Each step prints what it did and how long it took. The tour starts a
supervised tree of named workers, sends them messages through ``via`` names,
crashes one on purpose and shows its name served by the replacement, picks
workers by metadata with ``match``, and ends with ``stats()`` and
``health_check()``. It stops everything it started before it returns.

With ``observe=True`` (``demo --observe``) the observer page is served from
the start of the tour (its URL is printed first), the steps are spaced by
``pause`` seconds so they can be watched live, and at the end the observer
stays open, its URL printed again, until Ctrl-C, with the tour's
supervision tree and its names still running (they are stopped after
Ctrl-C, then the observer and the registry).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Optional

import pykka

from pykka_registry._registry import Registry
from pykka_registry._supervisor import ChildSpec, Supervisor
from pykka_registry._via import Via

__all__ = ["run_demo"]

NAMESPACE = "demo"


class Worker(pykka.ThreadingActor):
    """A worker that squares numbers; ``"crash"`` makes it fail on purpose."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.jobs = 0

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError(f"{self.label} crashed on purpose")
        if message == "whoami":
            return self.whoami()
        if isinstance(message, int):
            self.jobs += 1
            return message * message
        return f"{self.label} does not understand {message!r}"

    def whoami(self) -> str:
        """Which actor answered: its label and the end of its actor_urn."""
        return f"worker {self.label}, actor_urn ...{self.actor_urn[-8:]}"


@contextmanager
def _step(out: Callable[[str], None], title: str, pause: float = 0.0) -> Iterator[None]:
    if pause > 0:
        threading.Event().wait(pause)  # demo --observe: time to watch each step
    started = time.perf_counter()
    out(f"\n> {title}")
    yield
    out(f"  ({(time.perf_counter() - started) * 1000:.2f} ms)")


def crash_and_await_successor(registry: Registry, via: Via, timeout: float) -> tuple[Any, Any]:
    """Crash the actor behind ``via`` and wait until a different actor holds
    its name (``await_name(..., replacing=old)``); return ``(old, new)``."""
    old = via.resolve()
    via.tell("crash")
    # The old actor may still be alive (and hold the name) right now: wait
    # for its successor, not for whoever holds the name.
    new = registry.await_name(via.namespace, via.service, timeout=timeout, replacing=old)
    return old, new


def _tour(registry: Registry, out: Callable[[str], None], pause: float = 0.0,
          keep: bool = False) -> Optional[Supervisor]:
    """Run the steps. With ``keep`` the supervision tree (and so its names)
    is left running and returned, for the observer to show after the tour;
    else it is stopped and ``None`` returned. On an error it is stopped
    either way."""
    roles = {"w1": ["cpu"], "w2": ["cpu", "gpu"], "w3": ["io"]}
    def starter(label: str) -> Callable[[], Any]:
        return lambda: Worker.start(label)

    specs = [
        ChildSpec(
            id=label,
            start=starter(label),
            name=(NAMESPACE, label),
            metadata={"pool": "squares", "caps": caps},
        )
        for label, caps in roles.items()
    ]
    with _step(out, "start a supervisor with three named workers (one_for_one)", pause):
        supervisor = Supervisor.start(specs, strategy="one_for_one", registry=registry,
                                      name="demo-tree")
        out(f"  registered: {sorted(map(str, registry.list_services(NAMESPACE)))}")
    kept = False
    try:
        with _step(out, "send messages through via names (resolved at every call)", pause):
            w2 = registry.via(NAMESPACE, "w2")
            out(f"  w2.ask(7) -> {w2.ask(7)}")
            out(f"  who answers for 'w2': {w2.proxy().whoami().get(timeout=5)}")

        with _step(out, "crash w2 on purpose; the supervisor restarts it under the same name",
                   pause):
            old, new = crash_and_await_successor(registry, w2, timeout=5)
            out(f"  old w2 alive: {old.is_alive()}; new w2 is a different actor: {new is not old}")
            out(f"  the same via handle now reaches {w2.proxy().whoami().get(timeout=5)}"
                " (a new actor_urn)")
            out(f"  w2.ask(8) -> {w2.ask(8)}")

        with _step(out, "pick workers by metadata with match", pause):
            for criteria in ({"caps": "cpu"}, {"caps": "gpu"}, {"pool": "squares", "caps": "io"}):
                matches = registry.match(NAMESPACE, criteria)
                found = sorted(str(service) for service, _, _ in matches)
                out(f"  match({criteria}) -> {found}")

        with _step(out, "a name nobody holds", pause):
            out(f"  lookup('ghost') -> {registry.lookup(NAMESPACE, 'ghost')}")
        kept = keep
    finally:
        if not kept:
            _stop_tree(registry, supervisor, out, pause)

    with _step(out, "stats and health", pause):
        stats = registry.stats()
        out(f"  stats: registrations made={stats.registrations_total}, "
            f"deaths cleaned up={stats.deaths_reaped_total}, backend={stats.backend}")
        health = registry.health_check()
        out(f"  health: {health.status} (server alive: {health.server_alive})")
    return supervisor if kept else None


def _stop_tree(registry: Registry, supervisor: Supervisor, out: Callable[[str], None],
               pause: float = 0.0) -> None:
    with _step(out, "stop the tree (children in reverse start order)", pause):
        supervisor.stop()
        out(f"  names left in {NAMESPACE!r}: {registry.count(NAMESPACE)}")


def run_demo(
    backend: str = "memory",
    out: Optional[Callable[[str], None]] = None,
    *,
    observe: bool = False,
    pause: float = 1.0,
    wait: Optional[Callable[[Any], None]] = None,
) -> int:
    """Run the tour on ``backend`` (``"memory"`` or ``"indexed"``); return an exit code.

    With ``observe=True`` the observer runs during the tour; at the end
    ``wait(observer)`` is called (default: block until Ctrl-C) before
    everything stops. ``pause`` spaces the steps (observe mode only).
    """
    out = out or print
    if backend not in ("memory", "indexed"):
        raise ValueError(f"backend must be 'memory' or 'indexed', got {backend!r}")
    # The crash is on purpose: keep Pykka's traceback for it out of the tour.
    pykka_logger = logging.getLogger("pykka")
    previous_level = pykka_logger.level
    pykka_logger.setLevel(logging.CRITICAL)
    started = time.perf_counter()
    try:
        out(f"pykka-registry demo on the {backend} backend")
        with Registry.start(backend=backend) as registry:  # a name, as on the CLI
            if not observe:
                _tour(registry, out)
            else:
                from pykka_registry.observer import serve
                from pykka_registry.observer._cli import wait_for_interrupt

                # "always": the tour's events are there when the page is opened.
                with serve(registry, events="always") as observer:
                    out(f"observer: {observer.url}  (open it now to watch the tour live)")
                    sys.stdout.flush()
                    tree = _tour(registry, out, pause=pause, keep=True)
                    try:
                        out(f"\nthe tour is over; its names, its supervision tree and its "
                            f"events stay on the page.\n"
                            f"observer: {observer.url}  (Ctrl-C to quit)")
                        try:
                            sys.stdout.flush()
                            (wait or (lambda _: wait_for_interrupt()))(observer)
                        except KeyboardInterrupt:
                            pass  # Ctrl-C before the wait began: the same request
                    finally:
                        if tree is not None:
                            _stop_tree(registry, tree, out)
    finally:
        pykka_logger.setLevel(previous_level)
    leftovers = pykka.ActorRegistry.get_all()
    out(f"\ndone in {(time.perf_counter() - started) * 1000:.1f} ms; "
        f"actors still running: {len(leftovers)}")
    return 0 if not leftovers else 1
