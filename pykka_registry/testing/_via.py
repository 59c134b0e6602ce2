"""Conformance tests of via: messages by name, following the name to a replacement, with deadlines.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pykka
import pytest

from pykka_registry import NotRegisteredError, Registry

from ._actors import Echo
from ._base import ConformanceBase
from ._helpers import ActorFactory


class ViaTests(ConformanceBase):
    """The conformance tests of via."""

    # -- via ----------------------------------------------------------------------------------

    def test_via_tell_ask_proxy_resolve(self, registry: Registry, ns: Any,
                                        actors: ActorFactory) -> None:
        ref = actors(Echo, "first")
        registry.register(ns, "svc", ref)
        via = registry.via(ns, "svc")
        assert via.resolve() is ref
        assert via.ask("hi") == ("echo", "hi")
        via.tell("told")
        assert via.ask("label", timeout=5) == "first"
        assert via.proxy().get_label().get(timeout=5) == "first"
        assert via.proxy().label.get(timeout=5) == "first"

    def test_via_follows_the_name_to_a_replacement(self, registry: Registry, ns: Any,
                                                   actors: ActorFactory) -> None:
        first = actors(Echo, "first")
        registry.register(ns, "svc", first)
        via = registry.via(ns, "svc")
        proxy = via.proxy()
        assert proxy.get_label().get(timeout=5) == "first"
        first.stop(block=True)
        with pytest.raises(NotRegisteredError):
            via.ask("hi")
        with pytest.raises(NotRegisteredError):
            proxy.get_label()
        second = actors(Echo, "second")
        registry.register(ns, "svc", second)
        assert via.ask("label") == "second"
        assert proxy.get_label().get(timeout=5) == "second"

    def test_via_ask_has_a_deadline(self, registry: Registry, ns: Any,
                                    actors: ActorFactory) -> None:
        from pykka_registry import RegistryTimeoutError

        release = threading.Event()

        class Slow(pykka.ThreadingActor):
            def on_receive(self, message: Any) -> Any:
                release.wait(5)
                return message

        registry.register(ns, "slow", actors(Slow))
        started = time.monotonic()
        with pytest.raises(RegistryTimeoutError) as caught:
            registry.via(ns, "slow").ask("hi", timeout=0.05)
        release.set()
        assert isinstance(caught.value, TimeoutError)
        assert time.monotonic() - started < 2

    def test_via_without_holder_raises(self, registry: Registry, ns: Any) -> None:
        via = registry.via(ns, "nobody")
        for call in (via.resolve, lambda: via.tell("x"), lambda: via.ask("x")):
            with pytest.raises(NotRegisteredError) as caught:
                call()
            assert isinstance(caught.value, LookupError)
