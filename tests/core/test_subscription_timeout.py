"""A ``subscribe`` that timed out leaves nothing behind.

The server may apply such a subscription after the caller gave up: it must
never start then, or the bus stays active (events built for nobody) forever.
"""

from __future__ import annotations

from typing import Any

import pytest

from pykka_registry import Registry, RegistryUnavailableError
from pykka_registry.testing import ActorFactory, holding_server


def test_a_subscribe_that_timed_out_never_starts_later() -> None:
    events: list[Any] = []
    actors = ActorFactory()
    with Registry.start(call_timeout=0.3) as registry:
        with holding_server(registry):
            with pytest.raises(RegistryUnavailableError):
                registry.subscribe(events.append, "ns")
        registry.sync()  # the server has now applied the queued Subscribe
        assert not registry.stats().subscribers_active
        registry.register("ns", "late", actors())
        registry.sync()
        assert not registry.stats().subscribers_active
    actors.stop_all()
    assert events == []
