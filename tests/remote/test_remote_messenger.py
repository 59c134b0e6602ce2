"""The messenger over an in-memory :class:`Transport` (no Redis): what the
Transport protocol names is all a messenger needs to reach another node, and
the messenger's own checks (node, age, incarnation, replay) hold without the
Redis backend around it."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import attrs
import pykka
import pytest
from forgery import UNPICKLED, Evil

from pykka_registry._errors import RegistryUnavailableError, RemoteTimeoutError
from pykka_registry._remote import (
    ActorLink,
    Codec,
    Messenger,
    NodeLink,
    RemoteActorRef,
    Transport,
)

SECRET = "a test secret of enough bytes"
class Wire:
    """The medium: each node's messenger (its inbox is its ``handle``) and the
    reply lists. Inbox delivery is synchronous, in the sender's thread: the
    messenger's ``handle`` never blocks on an actor."""

    def __init__(self) -> None:
        self.nodes: dict[str, Messenger] = {}
        self.lists: dict[str, list[bytes]] = {}
        self.changed = threading.Condition()


@attrs.define(frozen=True)
class MemoryTransport:
    wire: Wire

    def send_blob(self, node_id: str, blob: bytes) -> bool:
        messenger = self.wire.nodes.get(node_id)
        if messenger is None:
            return False
        messenger.handle(blob)
        return True

    def send_many(self, items: list[tuple[str, str, bytes]]) -> None:
        for node_id, reply_key, blob in items:
            if reply_key:
                with self.wire.changed:
                    self.wire.lists.setdefault(reply_key, []).append(blob)
                    self.wire.changed.notify_all()
            else:
                self.send_blob(node_id, blob)

    def wait_reply(self, reply_key: str, timeout: float) -> Optional[bytes]:
        with self.wire.changed:
            self.wire.changed.wait_for(lambda: self.wire.lists.get(reply_key),
                                       timeout=min(timeout, 0.5))
            waiting = self.wire.lists.get(reply_key)
            return waiting.pop(0) if waiting else None

    def reply_key(self, msg_id: str) -> str:
        return "reply:" + msg_id


class Worker(pykka.ThreadingActor):
    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.received: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ValueError("boom")
        if message == "hold":
            self.release.wait(10)
        if message == "received":
            return list(self.received)
        self.received.append(message)
        return ("echo", message)


@attrs.define
class Nodes:
    wire: Wire
    a: Messenger
    b: Messenger
    worker: Any
    release: threading.Event
    named: dict[str, Any]

    def ref(self, urn: str = "", inc: str = "inc-b") -> RemoteActorRef:
        urn = urn or self.worker.actor_urn
        link = ActorLink(urn, NodeLink("node-b", inc), self.a)
        return RemoteActorRef(urn, "Worker", "node-b", link)

    def envelope(self, message: Any, **header: Any) -> bytes:
        fields = {"k": "tell", "id": "mallory-1", "src": "node-a", "dst": "node-b",
                  "di": "inc-b", "to": self.worker.actor_urn, "t": time.time(), "ttl": 0}
        fields.update(header)
        return self.b.codec.encode(fields, pickle.dumps(message))


def _messenger(wire: Wire, node_id: str, find: Callable[[str], Any],
               secret: Any = SECRET) -> Messenger:
    transport: Transport = MemoryTransport(wire)  # (mypy checks it is a Transport)
    messenger = Messenger.over(transport, node_id, Codec(secret), 5.0, find)
    wire.nodes[node_id] = messenger
    messenger.start()
    return messenger


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    wire = Wire()
    release = threading.Event()
    worker = Worker.start(release)
    named = {worker.actor_urn: worker}
    a = _messenger(wire, "node-a", lambda urn: None)
    b = _messenger(wire, "node-b", named.get)
    a.add_incarnation("inc-a")
    b.add_incarnation("inc-b")
    try:
        yield Nodes(wire, a, b, worker, release, named)
    finally:
        release.set()
        a.close(5.0)
        b.close(5.0)
        worker.stop(timeout=5)


def _received(nodes: Nodes) -> list[Any]:
    return list(nodes.worker.ask("received", timeout=5))


def test_tell_ask_and_errors_across_the_transport(nodes: Nodes) -> None:
    ref = nodes.ref()
    ref.tell("one")
    assert ref.ask("two") == ("echo", "two")  # blocking: waits on its own reply list
    assert ref.ask("three", block=False).get(timeout=5) == ("echo", "three")  # via a's inbox
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom")
    with pytest.raises(ValueError, match="boom"):
        ref.ask("boom", block=False).get(timeout=5)
    assert _received(nodes) == ["one", "two", "three"]
    assert nodes.b.delivered == 5 and nodes.b.dropped == 0


def test_only_named_actors_are_reachable(nodes: Nodes) -> None:
    stranger = pykka.ThreadingActor.start()
    try:
        ref = nodes.ref(stranger.actor_urn)
        with pytest.raises(pykka.ActorDeadError, match="never named"):
            ref.ask("hello")
        ref.tell("hello")  # dropped, not delivered
        assert nodes.b.delivered == 0
    finally:
        stranger.stop()


def test_a_node_without_a_lease_is_dead(nodes: Nodes) -> None:
    del nodes.wire.nodes["node-b"]  # send_blob says False: the node is gone
    ref = nodes.ref()
    with pytest.raises(pykka.ActorDeadError, match="no lease"):
        ref.tell("x")
    with pytest.raises(pykka.ActorDeadError, match="no lease"):
        ref.ask("x", block=False)


def test_a_pending_ask_fails_when_its_node_lapses_or_the_messenger_closes(nodes: Nodes) -> None:
    ref = nodes.ref()
    held = ref.ask("hold", block=False)
    waiting = ref.ask("after", block=False)
    ref._link.node.lapsed = True
    nodes.a.node_lapsed("node-b")
    with pytest.raises(pykka.ActorDeadError, match="lease lapsed"):
        held.get(timeout=5)
    with pytest.raises(pykka.ActorDeadError):
        waiting.get(timeout=5)
    assert not ref.is_alive()
    again = nodes.ref()  # (a fresh node link, not lapsed)
    pending = again.ask("later", block=False)
    nodes.a.close(5.0)
    with pytest.raises(RegistryUnavailableError):
        pending.get(timeout=5)
    assert not again.is_alive()
    with pytest.raises(RegistryUnavailableError):
        again.tell("x")


def test_every_ask_has_a_deadline(nodes: Nodes) -> None:
    ref = nodes.ref()
    t0 = time.monotonic()
    with pytest.raises(RemoteTimeoutError):
        ref.ask("hold", timeout=0.3)
    late = ref.ask("hold", block=False, timeout=0.2)
    with pytest.raises(pykka.Timeout):
        late.get(timeout=0.3)  # a block=False ask's own wait
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        nodes.a.sweep()  # (the receiver thread does this)
        try:
            late.get(timeout=0.05)
        except RemoteTimeoutError:
            break
        except pykka.Timeout:
            continue
    else:
        pytest.fail("the sweep did not fail the late ask")
    assert time.monotonic() - t0 < 5


def test_stop_stops_the_remote_actor(nodes: Nodes) -> None:
    ref = nodes.ref()
    assert ref.stop(timeout=5) is True
    assert nodes.worker.actor_stopped.wait(5)
    assert ref.actor_stopped.is_set() and not ref.is_alive()


def test_nothing_unverified_or_misaddressed_is_unpickled(nodes: Nodes) -> None:
    UNPICKLED.clear()
    evil = Evil("forged")
    forger = Codec(b"another secret, not ours")
    header = {"k": "tell", "id": "mallory-1", "src": "node-a", "dst": "node-b",
              "di": "inc-b", "to": nodes.worker.actor_urn, "t": time.time(), "ttl": 0}
    refused = [
        forger.encode(header, pickle.dumps(evil)),  # signed with another secret
        Codec(None).encode(header, pickle.dumps(evil)),  # unsigned
        pickle.dumps(evil),  # not even an envelope
        nodes.envelope(evil, dst="node-c"),  # to another node
        nodes.envelope(evil, t=time.time() - 600),  # too old
        nodes.envelope(evil, di="inc-before-a-restart"),  # another incarnation
        nodes.envelope(evil, di=""),  # no incarnation
        nodes.envelope(evil, k="ask", t="yesterday"),  # no usable send time
    ]
    for blob in refused:
        nodes.b.handle(blob)
    assert nodes.b.dropped == len(refused)
    good = nodes.envelope("legit", id="trusted-7")
    nodes.b.handle(good)
    nodes.b.handle(good)  # a replay
    assert _received(nodes) == ["legit"]
    assert nodes.b.dropped == len(refused) + 1
    assert UNPICKLED == []


def test_a_stray_reply_is_dropped_unpickled_by_nobody(nodes: Nodes) -> None:
    UNPICKLED.clear()
    # a signed reply to an ask nobody made: only a pending ask takes a reply
    nodes.a.handle(nodes.a.codec.encode(
        {"k": "reply", "id": "nobody-1", "src": "node-b", "dst": "node-a", "to": "",
         "t": time.time(), "ttl": 0}, pickle.dumps(Evil("reply"))))
    assert UNPICKLED == []
    assert nodes.a.dropped == 0  # late replies are normal: logged at debug, not counted
