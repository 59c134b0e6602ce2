"""RedisBackend on the registry's write-lock contract: deaths are cleaned up
in the dying thread without Redis I/O, a write waiting on Redis does not
hold up death clean-ups, a register racing its actor's death, and the batch
writes (one Lua call each, all or nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Callable

import pytest
from redis_helpers import Factory, redis_nodes, wait_for
from redis_server import RedisServer, unique_prefix

from pykka_registry import (
    ActorNotAliveError,
    AlreadyRegisteredError,
)
from pykka_registry._remote import RemoteActorRef
from pykka_registry.backends.redis import key_json

SECRET = "a write-suite secret, long enough"


@pytest.fixture
def prefix() -> str:
    return unique_prefix("w")


@pytest.fixture
def nodes(redis_url: str, prefix: str) -> Iterator[Factory]:
    with redis_nodes(redis_url, prefix, call_timeout=10.0, secret=SECRET) as make:
        yield make


class SlowScript:
    """Wraps one of the backend's scripts: the first call signals ``entered``
    and waits (at most 10 s) for ``proceed`` before running, like a slow round
    trip to Redis."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.entered = threading.Event()
        self.proceed = threading.Event()
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.proceed.wait(10)
        return self.script(*args, **kwargs)


def _in_thread(function: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_death_is_not_held_up_by_a_write_waiting_on_redis(nodes: Factory,
                                                            actors: Any) -> None:
    registry = nodes()
    doomed = actors("doomed")
    registry.register("ns", "doomed", doomed)
    backend = registry.backend
    slow = SlowScript(backend._claim)  # type: ignore[attr-defined]
    backend._claim = slow  # type: ignore[attr-defined]
    writer, outcome = _in_thread(lambda: registry.register("ns", "slow", actors("slow")))
    try:
        assert slow.entered.wait(5)  # the server thread waits on "Redis" now
        stopper, _ = _in_thread(lambda: doomed.stop(block=True, timeout=9))
        stopper.join(5)
        assert not stopper.is_alive(), "the death waited for the write's round trip"
        assert registry.lookup("ns", "doomed") is None  # gone before stop returned
        assert registry.count("ns") == 0
    finally:
        slow.proceed.set()
        writer.join(10)
    assert outcome == [None]
    assert registry.lookup("ns", "slow") is not None


def test_a_register_racing_its_actors_death_raises_and_leaves_nothing(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    registry, other = nodes(), nodes()
    ref = actors("racer")
    backend = registry.backend
    slow = SlowScript(backend._claim)  # type: ignore[attr-defined]
    backend._claim = slow  # type: ignore[attr-defined]
    writer, outcome = _in_thread(lambda: registry.register("ns", "racer", ref))
    try:
        assert slow.entered.wait(5)
        ref.stop(block=True, timeout=5)  # dies while its claim is on the way
    finally:
        slow.proceed.set()
        writer.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ActorNotAliveError)
    assert registry.lookup("ns", "racer") is None
    client = redis_server.client()
    try:
        wait_for(lambda: not client.exists(f"{prefix}:name:{key_json('ns', 'racer')}"), 5.0,
                 "the claim released in Redis")
    finally:
        client.close()
    # Another process learns of the release through its feed: within milliseconds.
    wait_for(lambda: other.lookup("ns", "racer") is None, 5.0, "the release seen by another node")
    registry.register("ns", "racer", actors("next"))  # the name is free at once


def test_remove_actor_does_no_io_and_the_release_follows(nodes: Factory, actors: Any) -> None:
    a, b = nodes(), nodes()
    ref = actors("gone")
    a.register("ns", "one", ref)
    a.register("ns", "two", ref)
    wait_for(lambda: b.count("ns") == 2, message="b sees both")
    backend = a.backend

    def no_io(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("RegistryServer"):
            return release(*args, **kwargs)
        raise AssertionError(f"Redis I/O in {threading.current_thread().name}")

    release = backend._release  # type: ignore[attr-defined]
    backend._release = no_io  # type: ignore[attr-defined]
    ref.stop(block=True)
    assert a.count("ns") == 0 and a.lookup("ns", "one") is None  # at once, locally
    wait_for(lambda: b.count("ns") == 0, 5.0, "released in Redis for b")
    assert backend.health()["problems"] == []  # type: ignore[attr-defined]


def test_a_death_in_one_registry_leaves_anothers_copy_alone(nodes: Factory,
                                                            actors: Any) -> None:
    a, b = nodes(), nodes()  # two nodes in one process
    ref = actors("shared")
    a.register("ns", "x", ref)
    seen = wait_for(lambda: b.lookup("ns", "x"), message="b sees x")
    assert isinstance(seen, RemoteActorRef)
    assert b.backend.remove_actor(ref) == []  # not b's to remove: a releases it
    ref.stop(block=True)
    wait_for(lambda: b.lookup("ns", "x") is None, 5.0, "b learns it from the feed")
    assert not seen.is_alive()


# -- batch writes -------------------------------------------------------------------------


def test_register_many_is_one_lua_call_and_others_see_it_in_order(nodes: Factory,
                                                                  actors: Any) -> None:
    a, b = nodes(), nodes()
    seen: list[str] = []
    b.subscribe(lambda e: seen.append(f"{type(e).__name__}:{e.service}"), namespace="batch")
    backend = a.backend
    counted = {"many": 0, "one": 0}
    many, one = backend._claim_many, backend._claim  # type: ignore[attr-defined]

    def count_many(*args: Any, **kwargs: Any) -> Any:
        counted["many"] += 1
        return many(*args, **kwargs)

    def count_one(*args: Any, **kwargs: Any) -> Any:
        counted["one"] += 1
        return one(*args, **kwargs)

    backend._claim_many, backend._claim = count_many, count_one  # type: ignore[attr-defined]
    ref, other = actors("r"), actors("o")
    items = [(f"s{i}", ref if i % 2 else other, {"i": i}) for i in range(200)]
    a.register_many("batch", items)
    assert counted == {"many": 1, "one": 0}
    assert a.count("batch") == 200
    wait_for(lambda: len(seen) == 200, 5.0, "b got every event")
    assert seen == [f"Registered:s{i}" for i in range(200)]
    assert b.lookup_with_metadata("batch", "s7")[1] == {"i": 7}  # type: ignore[index]
    released = {"calls": 0}
    release = backend._release  # type: ignore[attr-defined]

    def count_release(*args: Any, **kwargs: Any) -> Any:
        released["calls"] += 1
        return release(*args, **kwargs)

    backend._release = count_release  # type: ignore[attr-defined]
    a.unregister_many("batch", [f"s{i}" for i in range(0, 200, 2)] + ["missing"])
    assert released["calls"] == 1
    assert a.count("batch") == 100
    wait_for(lambda: b.count("batch") == 100, 5.0, "b saw the deletes")


def test_register_many_is_all_or_nothing_across_nodes(nodes: Factory, actors: Any,
                                                      redis_server: RedisServer,
                                                      prefix: str) -> None:
    a, b = nodes(), nodes()
    b.register("batch", "taken", actors("theirs"))
    wait_for(lambda: a.lookup("batch", "taken") is not None, message="a sees it")
    ref = actors("mine")
    with pytest.raises(AlreadyRegisteredError) as caught:
        a.register_many("batch", [("free1", ref), ("taken", ref), ("free2", ref)])
    assert caught.value.service == "taken"
    assert isinstance(caught.value.existing, RemoteActorRef)
    assert sorted(a.list_services("batch")) == ["taken"]
    client = redis_server.client()
    try:
        for service in ("free1", "free2"):
            assert not client.exists(f"{prefix}:name:{key_json('batch', service)}")
    finally:
        client.close()
    # a name the lease of whose holder lapsed is free for the batch
    b.stop()
    wait_for(lambda: a.lookup("batch", "taken") is None, 5.0, "b's names gone")
    a.register_many("batch", [("free1", ref), ("taken", ref)])
    assert sorted(a.list_services("batch")) == ["free1", "taken"]


def test_register_many_takes_the_place_of_own_dead_holders(nodes: Factory,
                                                           actors: Any) -> None:
    registry = nodes()
    old, new = actors("old"), actors("new")
    registry.register("batch", "x", old)
    backend = registry.backend
    backend.remove_actor = lambda ref: []  # type: ignore[method-assign]  # a lost notice
    old.stop(block=True)
    assert registry.backend.get("batch", "x") is not None  # still in the copy and Redis
    registry.register_many("batch", [("x", new), ("y", new)])
    assert registry.lookup("batch", "x") is new and registry.lookup("batch", "y") is new
    live = actors("live")
    registry.register("batch", "z", live)
    with pytest.raises(AlreadyRegisteredError) as caught:
        registry.register_many("batch", [("w", new), ("z", new)])
    assert caught.value.service == "z" and caught.value.existing is live
    assert registry.lookup("batch", "w") is None
    with pytest.raises(AlreadyRegisteredError) as caught:  # the first conflict in order
        registry.register_many("batch", [("w", new), ("x", live), ("z", new)])
    assert caught.value.service == "x" and caught.value.existing is new


def test_a_batch_whose_actor_dies_on_the_way_registers_nothing(
    nodes: Factory, actors: Any, redis_server: RedisServer, prefix: str
) -> None:
    registry = nodes()
    survivor, racer = actors("survivor"), actors("racer")
    backend = registry.backend
    slow = SlowScript(backend._claim_many)  # type: ignore[attr-defined]
    backend._claim_many = slow  # type: ignore[attr-defined]
    writer, outcome = _in_thread(lambda: registry.register_many(
        "batch", [("a", survivor), ("b", racer)]))
    try:
        assert slow.entered.wait(5)
        racer.stop(block=True, timeout=5)
    finally:
        slow.proceed.set()
        writer.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ActorNotAliveError)
    assert outcome[0].service == "b"
    assert registry.count("batch") == 0
    client = redis_server.client()
    try:
        wait_for(lambda: not any(client.exists(f"{prefix}:name:{key_json('batch', s)}")
                                 for s in ("a", "b")), 5.0, "both claims released")
    finally:
        client.close()
    registry.register_many("batch", [("a", survivor)])  # the names are free again
    assert registry.lookup("batch", "a") is survivor


class AnswerLate(SlowScript):
    """Runs the script at once, then holds its answer back (the claim is in
    Redis, and in the feed, before this process stores it locally)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.script(*args, **kwargs)
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.proceed.wait(10)
        return result


def test_an_actor_can_be_messaged_while_its_claim_reply_is_on_the_way(
    nodes: Factory, actors: Any
) -> None:
    """Another process may see a claim in the feed, and message its actor,
    before the claiming process has stored the claim: the message must be
    delivered (the actor is being named here), not refused as "never named"."""
    a, b = nodes(), nodes()
    ref = actors("fresh")
    late = AnswerLate(a.backend._claim)  # type: ignore[attr-defined]
    a.backend._claim = late  # type: ignore[attr-defined]
    writer, outcome = _in_thread(lambda: a.register("ns", "fresh", ref))
    try:
        assert late.entered.wait(5)
        seen = wait_for(lambda: b.lookup("ns", "fresh"), 5.0, "b sees the claim")
        assert seen.ask("hello", timeout=5) == ("echo", "fresh", "hello")
    finally:
        late.proceed.set()
        writer.join(10)
    assert outcome == [None]
