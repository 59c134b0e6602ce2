"""Conformance tests of concurrency: eight threads registering and racing for names.

A mixin of :class:`~pykka_registry.testing.RegistryConformance`; needs pytest.

Guarantees
----------
* Every test runs in the pytest thread against a registry the suite's
  fixtures started; every wait is bounded, none sleeps to guess.
"""

from __future__ import annotations

import threading
from typing import Any

from pykka_registry import AlreadyRegisteredError, Registry

from ._base import ConformanceBase
from ._helpers import ActorFactory


class ConcurrencyTests(ConformanceBase):
    """The conformance tests of concurrency."""

    # -- concurrency --------------------------------------------------------------------------

    def test_concurrent_registration_from_eight_threads(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        threads_n, per_thread = 8, 40
        refs = [actors() for _ in range(threads_n)]
        errors: list[BaseException] = []
        barrier = threading.Barrier(threads_n)

        def work(t: int) -> None:
            try:
                barrier.wait(5)
                for i in range(per_thread):
                    registry.register(ns, f"t{t}-{i}", refs[t], {"t": t})
                    assert registry.lookup(ns, f"t{t}-{i}") is refs[t]
                for i in range(0, per_thread, 2):
                    registry.unregister(ns, f"t{t}-{i}")
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        expected = {f"t{t}-{i}" for t in range(threads_n) for i in range(1, per_thread, 2)}
        assert sorted(registry.list_services(ns), key=str) == sorted(expected)
        assert registry.count(ns) == len(expected)
        for t in range(threads_n):
            assert len(registry.match(ns, {"t": t})) == per_thread // 2

    def test_racing_for_one_name_has_exactly_one_winner(
        self, registry: Registry, ns: Any, actors: ActorFactory
    ) -> None:
        threads_n = 8
        refs = [actors() for _ in range(threads_n)]
        for round_ in range(5):
            outcomes: list[Any] = [None] * threads_n
            barrier = threading.Barrier(threads_n)

            def race(t: int, round_: int = round_, outcomes: list[Any] = outcomes,
                     barrier: threading.Barrier = barrier) -> None:
                barrier.wait(5)
                try:
                    registry.register(ns, f"r{round_}", refs[t])
                    outcomes[t] = "won"
                except AlreadyRegisteredError as error:
                    outcomes[t] = error.existing

            threads = [threading.Thread(target=race, args=(t,)) for t in range(threads_n)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            winners = [t for t, outcome in enumerate(outcomes) if outcome == "won"]
            assert len(winners) == 1
            assert all(o is refs[winners[0]] for o in outcomes if o != "won")
            assert registry.lookup(ns, f"r{round_}") is refs[winners[0]]
