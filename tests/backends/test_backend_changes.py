"""How a backend reports what it changed on its own account (``Change``
values) and how the registry turns them into events; ``remove_actor``'s
reason, and backends whose ``remove_actor`` takes only the ref."""

from __future__ import annotations

from typing import Any, Optional

from pykka_registry import (
    MemoryBackend,
    MetadataUpdated,
    Registered,
    Registry,
    Unregistered,
    UnregisterReason,
    test_namespace,
)
from pykka_registry._events import LOST
from pykka_registry.backends.base import BackendContext, Change, Entry, validate_backend
from pykka_registry.testing import Echo, wait_until


class Feeding(MemoryBackend):
    """A memory backend that also takes changes "from elsewhere"."""

    def __init__(self) -> None:
        super().__init__()
        self.context: Optional[BackendContext] = None
        self.side: list[Change] = []
        self.reasons: list[Any] = []

    def start(self, context: BackendContext) -> None:
        self.context = context

    def take_changes(self) -> list[Change]:
        side, self.side = self.side, []
        return side

    def remove_actor(self, actor_ref: Any,
                     reason: Optional[UnregisterReason] = None) -> list[Entry]:
        self.reasons.append(reason)
        return super().remove_actor(actor_ref, reason)


def test_a_submitted_function_returns_changes_and_the_registry_publishes_them() -> None:
    ns = test_namespace()
    with Registry.start(backend=Feeding) as registry:
        backend = registry.backend
        assert isinstance(backend, Feeding) and backend.context is not None
        seen: list[Any] = []
        registry.subscribe(seen.append, namespace=ns)
        ref = Echo.start()
        try:
            first = Entry.create(ns, "x", ref, {"v": 1})
            second = Entry.create(ns, "x", ref, {"v": 2})

            def apply(state: Any) -> list[Change]:
                backend._put(second)  # (the memory tables, as a feed would)
                return [Change(None, first), Change(first, second), Change(second, None, LOST)]

            backend.context.submit(apply)
            wait_until(lambda: len(seen) == 3, 5.0)
            assert [type(e) for e in seen] == [Registered, MetadataUpdated, Unregistered]
            assert seen[1].metadata == {"v": 2} and seen[2].reason == LOST
        finally:
            ref.stop()


def test_a_writes_own_changes_come_before_its_event() -> None:
    ns = test_namespace()
    with Registry.start(backend=Feeding) as registry:
        backend = registry.backend
        assert isinstance(backend, Feeding)
        seen: list[Any] = []
        registry.subscribe(seen.append, namespace=ns)
        ref, other = Echo.start(), Echo.start()
        try:
            backend.side.append(Change(Entry.create(ns, "old", other, {}), None))
            registry.register(ns, "new", ref)
            wait_until(lambda: len(seen) == 2, 5.0)
            assert [(type(e), e.service) for e in seen] == [(Unregistered, "old"),
                                                            (Registered, "new")]
            assert seen[0].reason.kind == "expired"
        finally:
            ref.stop()
            other.stop()


def test_remove_actor_gets_the_reason_of_the_death() -> None:
    ns = test_namespace()
    with Registry.start(backend=Feeding) as registry:
        backend = registry.backend
        assert isinstance(backend, Feeding)
        ref = Echo.start()
        registry.register(ns, "x", ref)
        ref.stop(block=True)
        assert backend.reasons[-1] == UnregisterReason("stopped")


def test_a_backend_whose_remove_actor_takes_only_the_ref_still_works() -> None:
    class Old(MemoryBackend):
        def remove_actor(self, actor_ref: Any) -> list[Entry]:  # type: ignore[override]
            return super().remove_actor(actor_ref)

    validate_backend(Old)
    ns = test_namespace()
    with Registry.start(backend=Old) as registry:
        seen: list[Any] = []
        registry.subscribe(seen.append, namespace=ns)
        ref = Echo.start()
        registry.register(ns, "x", ref)
        ref.stop(block=True)
        assert registry.lookup(ns, "x") is None
        wait_until(lambda: len(seen) == 2, 5.0)
        assert seen[1].reason.kind == "stopped"
