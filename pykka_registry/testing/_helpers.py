"""Helpers for tests of code that uses a registry: bounded waits, a factory
of test actors that stops them all, a hold on the registry's server, and a
check that a stopped actor shows up in no read.

Imports without pytest (a failed check raises a plain :class:`AssertionError`).

Guarantees
----------
* Every wait is bounded: :func:`wait_until` polls with a short back-off and
  fails after its timeout; nothing here sleeps to guess.
* :func:`wait_until`, :func:`assert_no_names_of` and :class:`ActorFactory`
  run in the calling thread; :func:`holding_server` blocks the registry's
  server thread (through ``run_in_server``) for the duration of its block.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pykka

from pykka_registry import Registry, RegistryUnavailableError

from ._actors import Echo

#: How long a clean-up may take before a test fails (the promise is 100 ms;
#: the margin absorbs a loaded CI machine without hiding a real leak).
CLEANUP_DEADLINE_S = 2.0


def wait_until(condition: Callable[[], Any], timeout: float = CLEANUP_DEADLINE_S,
               message: str = "condition") -> Any:
    """Poll ``condition`` until it returns a true value; fail after ``timeout``.

    Returns the value, for assertions on it. Polls with a short
    ``threading.Event().wait`` back-off: a bounded poll, not a guess.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        pause.wait(delay)
        delay = min(delay * 2, 0.02)


@contextlib.contextmanager
def holding_server(registry: Registry) -> Iterator[None]:
    """Keep the registry's server busy for the duration of the block: messages
    sent to it meanwhile queue up behind, in order (for ordering tests)."""
    entered, release = threading.Event(), threading.Event()

    def hold(backend: Any) -> None:
        entered.set()
        release.wait(10)

    def run_hold() -> None:
        try:
            registry.run_in_server(hold)
        except RegistryUnavailableError:
            pass  # a call_timeout shorter than the hold: the hold still ran

    holder = threading.Thread(target=run_hold)
    holder.start()
    try:
        if not entered.wait(5):
            raise AssertionError("the registry's server did not pick up the hold")
        yield
    finally:
        release.set()
        holder.join(10)


def assert_no_names_of(registry: Registry, ref: Any, namespaces: list[Any],
                       services: list[Any]) -> None:
    """Assert, with no waiting, that no read of ``registry`` shows ``ref``:
    ``lookup``/``lookup_with_metadata`` of ``services`` in each of
    ``namespaces``, ``keys_of``, ``list_services``, ``count``, ``match``,
    ``find_services_by_metadata``, ``namespaces`` and ``stats()``. For use
    right after the actor has stopped, when no other actor has taken
    ``services`` since."""
    assert registry.keys_of(ref) == [], "keys_of lists a stopped actor's names"
    for ns in namespaces:
        for service in services:
            assert registry.lookup(ns, service) is not ref, "lookup returned a dead actor"
            found = registry.lookup_with_metadata(ns, service)
            assert found is None or found[0] is not ref, "lookup_with_metadata: a dead actor"
        assert not any(r is ref for _, r, _ in registry.match(ns, {})), "match lists it"
        assert not any(r is ref for _, r, _ in registry.find_services_by_metadata(
            ns, lambda metadata: True)), "find_services_by_metadata lists it"
        assert not set(registry.list_services(ns)) & set(services), (
            "list_services lists a dead actor's name")
        if registry.count(ns) == 0:
            assert ns not in registry.namespaces(), "namespaces lists an emptied namespace"
    stats = registry.stats()
    assert stats.names == registry.count()


class ActorFactory:
    """Starts test actors and stops every one of them at teardown."""

    def __init__(self) -> None:
        self.refs: list[pykka.ActorRef[Any]] = []

    def __call__(self, cls: type[pykka.Actor] = Echo, *args: Any, **kwargs: Any) -> Any:
        ref = cls.start(*args, **kwargs)
        self.refs.append(ref)
        return ref

    def stop_all(self) -> None:
        for ref in self.refs:
            try:
                ref.stop(block=True, timeout=5)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass

