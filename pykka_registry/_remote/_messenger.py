"""The per-process messenger: sends actor messages to other nodes and
delivers the ones that arrive, through a :class:`Transport` (the Redis
backend is one).

A blocking ``ask`` waits on its own reply list in the caller's thread (one
thread hop less than through the receiver); ``block=False`` asks and
``stop`` get their reply through this node's inbox and the receiver. The
backend feeds the messenger: :meth:`Messenger.handle` for each inbox
envelope, :meth:`Messenger.sweep` now and then, :meth:`Messenger.node_lapsed`
when a node's lease is found gone.

Guarantees
----------
* **Nothing unverified is unpickled.** Every envelope goes through
  :meth:`Codec.decode <pykka_registry._remote._wire.Codec.decode>` first; a
  messenger with a secret drops (and logs) every envelope whose signature is
  missing or wrong *before* looking at its payload. It also drops envelopes
  addressed to another node, older than ``max_age`` seconds, addressed to an
  incarnation that is not its own (a replay across a restart: same
  ``node_id``, new incarnation, fresh replay guard), or already seen
  (replays). A messenger without a secret accepts unsigned envelopes: anyone
  who can write to its inbox can run code in it (the backend logs a warning
  at start).
* **Only named actors are reachable.** A message is delivered only to a live
  local actor that holds (or held, until it dies) a name through this
  registry (``find_actor``); any other URN is answered as a dead actor.
* **At-most-once delivery.** A message is handed to the target actor at most
  once; it may be lost (process death, Redis restart, a full inbox).
* **Every ask has a deadline.** ``ask(timeout=None)`` waits at most
  ``call_timeout``. It raises :class:`pykka.ActorDeadError` as soon as the
  target is known to be dead (its process answered so, or its node's lease
  lapsed), :class:`RemoteTimeoutError` at the deadline, or whatever the
  remote actor's handler raised. :meth:`Messenger.close` fails every pending
  ask with :class:`RegistryUnavailableError`.
* **The messenger reaches other nodes only through its** :class:`Transport`.

Threads
-------
* ``send``/``ask`` encode and send in the caller's thread; a blocking ``ask``
  also waits there, on a reply list of its own (``Transport.wait_reply``;
  the send and the first wait in one round trip when the transport has
  ``send_and_wait``).
* :meth:`Messenger.handle` runs in the backend's receiver thread: it verifies,
  unpickles and hands messages to local actors (``tell``, or an ``ask`` whose
  reply future is a :class:`_ReplyTo` hook) without blocking on them.
* A reply is pickled and signed in the replying actor's thread (a snapshot of
  the value) and sent by the messenger's outbox thread
  (``Transport.send_many``), so no actor ever blocks on the transport.
* :meth:`Messenger.node_lapsed` runs in the lease thread, :meth:`Messenger.sweep`
  in the receiver thread; both only take the pending-asks lock.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import queue
import sys
import threading
import time
from typing import Any, Callable, Optional, Protocol

import attrs
import pykka

from pykka_registry._errors import (
    RegistryUnavailableError,
    RemoteActorError,
    RemoteTimeoutError,
)
from pykka_registry._remote._ref import _STOP_REQUEST, ActorLink, RemoteActorRef
from pykka_registry._remote._wire import ASK, ERROR, REPLY, STOP, TELL, WAKE, Codec, ReplayGuard

__all__ = ["CallbackTransport", "Messenger", "Transport"]

def _pykka_internals() -> tuple[Any, Any]:
    """Pykka 3.1 - 4.x: the envelope ``ask`` puts in an actor's inbox, and the
    stop message. Using them lets a remote ask complete in the actor's thread
    (no waiting thread per ask). ``(None, None)`` on a Pykka without them."""
    try:
        from pykka._envelope import Envelope
        from pykka.messages import _ActorStop
    except ImportError:  # pragma: no cover - a future Pykka; fall back to waiter threads
        return None, None
    return Envelope, _ActorStop


_PykkaEnvelope, _ActorStop = _pykka_internals()


# The Redis backend's logger: its users (and tests) filter on that name.
logger = logging.getLogger("pykka_registry.redis")


# -- the transport ---------------------------------------------------------------------


class Transport(Protocol):
    """Everything a :class:`Messenger` needs from the medium between nodes.

    Each method may raise :class:`RegistryUnavailableError` when the medium is
    out of reach; the messenger lets that through to the caller (``send_blob``,
    ``wait_reply``) or logs the lost replies (``send_many``).
    """

    def send_blob(self, node_id: str, blob: bytes) -> bool:
        """Append ``blob`` to ``node_id``'s inbox; False when that node holds no
        lease (it is gone). Called in the sender's thread."""

    def send_many(self, items: list[tuple[str, str, bytes]]) -> None:
        """Send several ``(node_id, reply_key, blob)`` in one round trip: to the
        reply list ``reply_key`` when it is not empty, else to ``node_id``'s
        inbox. Called in the messenger's outbox thread."""

    def wait_reply(self, reply_key: str, timeout: float) -> Optional[bytes]:
        """Pop one blob from the reply list ``reply_key``, waiting at most
        ``timeout`` seconds (it may return None sooner, for example after
        half a second: the messenger asks again). Called in the asker's
        thread."""

    def reply_key(self, msg_id: str) -> str:
        """The name of the reply list of message ``msg_id`` (the same on every
        node). Called from any thread."""

    # Optional (looked up with getattr; a transport without it sends, then
    # waits, in two steps):
    #
    # def send_and_wait(self, node_id: str, blob: bytes, reply_key: str,
    #                   timeout: float) -> tuple[bool, Optional[bytes]]:
    #     """send_blob and a first wait_reply in one step (one round trip):
    #     (False, None) if the node is gone (nothing sent), else (True, the
    #     reply or None). Called in the asker's thread."""


#: ``send_and_wait(node_id, blob, reply_key, timeout) -> (sent, reply or None)``.
SendAndWait = Callable[[str, bytes, str, float], "tuple[bool, Optional[bytes]]"]


@attrs.define(frozen=True)
class CallbackTransport:
    """A :class:`Transport` made of three callables and a reply-list prefix
    (what :class:`Messenger`'s constructor takes), and optionally a
    ``send_and_wait``. Immutable."""

    send_blob: Callable[[str, bytes], bool]
    send_many: Callable[[list[tuple[str, str, bytes]]], None]
    wait_reply: Callable[[str, float], Optional[bytes]]
    reply_prefix: str
    send_and_wait: Optional[SendAndWait] = None

    def reply_key(self, msg_id: str) -> str:
        return self.reply_prefix + msg_id


# -- the messenger -----------------------------------------------------------------------


@attrs.define(frozen=True)
class _Pending:
    future: Any
    deadline: float
    node_id: str
    link: ActorLink
    stop: bool


class _ReplyTo:
    """Put into a local actor's inbox in place of a future: the actor's thread
    calls :meth:`set` or :meth:`set_exception` when it has handled the message.
    The reply goes to the asker's reply list (``reply_key``) when it waits on
    one, else to its inbox."""

    __slots__ = ("_messenger", "_msg_id", "_node_id", "_reply_key")

    def __init__(self, messenger: Messenger, node_id: str, msg_id: str,
                 reply_key: str = "") -> None:
        self._messenger = messenger
        self._node_id = node_id
        self._msg_id = msg_id
        self._reply_key = reply_key

    def set(self, value: Any = None) -> None:
        self._messenger.reply(self._node_id, self._msg_id, REPLY, value, self._reply_key)

    def set_exception(self, exc_info: Any = None) -> None:
        if exc_info is None:
            exc_info = sys.exc_info()
        error = exc_info[1] if exc_info[1] is not None else exc_info[0]()
        self._messenger.reply(self._node_id, self._msg_id, ERROR, error, self._reply_key)


_OUTBOX_STOP = object()


class Messenger:
    """One node's sending and receiving of actor messages, through a
    :class:`Transport`.

    The constructor takes the transport as three callables and a reply-list
    prefix (see :class:`CallbackTransport`); :meth:`over` takes any
    :class:`Transport`. ``find_actor(urn)`` returns a live local
    :class:`pykka.ActorRef` that holds a name here, or None.
    """

    def __init__(
        self,
        node_id: str,
        codec: Codec,
        call_timeout: float,
        send_blob: Callable[[str, bytes], bool],
        send_many: Callable[[list[tuple[str, str, bytes]]], None],
        wait_reply: Callable[[str, float], Optional[bytes]],
        reply_prefix: str,
        find_actor: Callable[[str], Optional[Any]],
        max_age: float = 120.0,
        name: str = "registry",
        send_and_wait: Optional[SendAndWait] = None,
    ) -> None:
        self._setup(node_id, codec, call_timeout,
                    CallbackTransport(send_blob, send_many, wait_reply, reply_prefix,
                                      send_and_wait),
                    find_actor, max_age, name)

    @classmethod
    def over(
        cls,
        transport: Transport,
        node_id: str,
        codec: Codec,
        call_timeout: float,
        find_actor: Callable[[str], Optional[Any]],
        max_age: float = 120.0,
        name: str = "registry",
    ) -> Messenger:
        """A messenger for node ``node_id`` that reaches other nodes through
        ``transport`` (call :meth:`start` before use)."""
        self = cls.__new__(cls)
        self._setup(node_id, codec, call_timeout, transport, find_actor, max_age, name)
        return self

    def _setup(self, node_id: str, codec: Codec, call_timeout: float, transport: Transport,
               find_actor: Callable[[str], Optional[Any]], max_age: float, name: str) -> None:
        self.node_id = node_id
        self.codec = codec
        self.call_timeout = call_timeout
        self.transport = transport
        self._send_and_wait: Optional[SendAndWait] = getattr(transport, "send_and_wait", None)
        self._find_actor = find_actor
        self._max_age = max_age
        self.closed = False
        self._counters: dict[str, Any] = {}  # destination node -> itertools.count
        self._id_prefix = os.urandom(6).hex()
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._replays = ReplayGuard()
        # This messenger's own lease incarnations (newest last): a message to an
        # actor must name one of them. A new messenger (a restarted registry)
        # starts with none of the old ones, so old captures are refused.
        self._incarnations: tuple[str, ...] = ()
        self._next_prune = 0.0
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outbox_thread = threading.Thread(
            target=self._run_outbox, name=f"pykka-registry-redis-outbox-{name}", daemon=True
        )
        #: counters (read by health/tests)
        self.dropped = 0
        self.delivered = 0

    def start(self) -> None:
        self._outbox_thread.start()

    def add_incarnation(self, inc: str) -> None:
        """This node took a lease with incarnation ``inc``: accept messages
        addressed to it (and, for messages in flight, to the last few before)."""
        if inc and inc not in self._incarnations:
            self._incarnations = (*self._incarnations[-7:], inc)

    def close(self, timeout: float) -> None:
        """Fail pending asks, stop the outbox thread (after it sent what is queued)."""
        self.closed = True
        with self._lock:
            pending, self._pending = self._pending, {}
        for item in pending.values():
            _fail(item.future, RegistryUnavailableError("the registry stopped"))
        self._outbox.put(_OUTBOX_STOP)
        if self._outbox_thread.is_alive():
            self._outbox_thread.join(timeout)

    def deadline_for(self, timeout: Optional[float]) -> float:
        return time.monotonic() + (self.call_timeout if timeout is None else max(0.0, timeout))

    # -- sending (caller's thread) ----------------------------------------------------------

    def _header(self, kind: str, dst: str, msg_id: str, urn: str, ttl: float,
                dst_inc: str = "") -> dict[str, Any]:
        return {"k": kind, "id": msg_id, "src": self.node_id, "dst": dst, "di": dst_inc,
                "to": urn, "t": time.time(), "ttl": ttl}

    def _check(self, ref: RemoteActorRef) -> None:
        if self.closed:
            raise RegistryUnavailableError("the registry stopped")
        if not ref.is_alive():
            raise pykka.ActorDeadError(f"{ref!r} is not alive")

    def send(self, ref: RemoteActorRef, kind: str, message: Any) -> None:
        """A ``tell``."""
        self._check(ref)
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        msg_id = self._new_id(ref.node_id)
        blob = self.codec.encode(self._header(kind, ref.node_id, msg_id, ref.actor_urn, 0.0,
                                              ref._link.node.inc), payload)
        if not self.transport.send_blob(ref.node_id, blob):
            raise pykka.ActorDeadError(f"{ref!r}: its process holds no lease (it is gone)")

    def ask(self, ref: RemoteActorRef, message: Any, block: bool,
            timeout: Optional[float]) -> Any:
        self._check(ref)
        stop = message is _STOP_REQUEST
        payload = b"" if stop else pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        deadline = self.deadline_for(timeout)
        msg_id = self._new_id(ref.node_id)
        future: Any = pykka.ThreadingFuture()
        ttl = max(0.0, deadline - time.monotonic())
        header = self._header(STOP if stop else ASK, ref.node_id, msg_id, ref.actor_urn, ttl,
                              ref._link.node.inc)
        if block and not stop:
            header["rk"] = 1
            blob = self.codec.encode(header, payload)
            first: Optional[bytes] = None
            if self._send_and_wait is not None:  # the send and the first wait: one round trip
                sent, first = self._send_and_wait(ref.node_id, blob,
                                                  self.transport.reply_key(msg_id), ttl)
            else:
                sent = self.transport.send_blob(ref.node_id, blob)
            if not sent:
                raise pykka.ActorDeadError(f"{ref!r}: its process holds no lease (it is gone)")
            return self._await_reply(ref, msg_id, deadline, ttl, first)
        blob = self.codec.encode(header, payload)
        with self._lock:
            self._pending[msg_id] = _Pending(future, deadline, ref.node_id, ref._link, stop)
        try:
            delivered = self.transport.send_blob(ref.node_id, blob)
        except BaseException:
            self._forget(msg_id)
            raise
        if not delivered:
            self._forget(msg_id)
            if stop:
                ref._link.mark_dead()
            raise pykka.ActorDeadError(f"{ref!r}: its process holds no lease (it is gone)")
        if not block:
            return future
        try:
            return future.get(timeout=max(0.0, deadline - time.monotonic()))
        except pykka.Timeout:
            raise RemoteTimeoutError(
                f"{ref!r} did not answer within {ttl:.3g}s (the message may or may not have "
                "been handled)"
            ) from None
        finally:
            self._forget(msg_id)

    def _await_reply(self, ref: RemoteActorRef, msg_id: str, deadline: float,
                     ttl: float, first: Optional[bytes] = None) -> Any:
        """Wait in the caller's thread for the reply to a blocking ask
        (``first``: a blob the send already brought back)."""
        key = self.transport.reply_key(msg_id)
        while True:
            if first is not None:
                blob, first = first, None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RemoteTimeoutError(
                        f"{ref!r} did not answer within {ttl:.3g}s (the message may or may "
                        "not have been handled)")
                if self.closed:
                    raise RegistryUnavailableError("the registry stopped")
                if ref._link.node.lapsed:
                    raise pykka.ActorDeadError(
                        f"the process of node {ref.node_id} died before answering (its "
                        "lease lapsed)")
                waited = self.transport.wait_reply(key, remaining)
                if waited is None:
                    continue
                blob = waited
            header, payload, why = self.codec.decode(blob)
            if header is None or header.get("id") != msg_id or \
                    header.get("dst") != self.node_id or header.get("k") not in (REPLY, ERROR):
                self.dropped += 1
                logger.warning("%s: dropped a reply (%s); it was not unpickled", self.node_id,
                               why or "not the awaited reply")
                continue
            try:
                value = pickle.loads(payload)  # verified above
            except Exception as error:
                raise RemoteActorError(f"the reply could not be unpickled: {error!r}") from None
            if header["k"] == REPLY:
                return value
            if isinstance(value, BaseException):
                raise value
            raise RemoteActorError(repr(value))

    def _new_id(self, node_id: str) -> str:
        counter = self._counters.get(node_id)
        if counter is None:
            counter = self._counters.setdefault(node_id, itertools.count(1))
        return f"{self._id_prefix}.{id(counter):x}-{next(counter)}"  # unique across nodes

    def _forget(self, msg_id: str) -> None:
        with self._lock:
            self._pending.pop(msg_id, None)

    # -- failing pending asks (lease thread / receiver thread) -------------------------------

    def node_lapsed(self, node_id: str) -> None:
        """Fail at once every pending ask to ``node_id``: its process is gone."""
        with self._lock:
            doomed = [key for key, p in self._pending.items() if p.node_id == node_id]
            items = [self._pending.pop(key) for key in doomed]
        for item in items:
            if item.stop:
                item.link.mark_dead()
                item.future.set(True)
            else:
                _fail(item.future, pykka.ActorDeadError(
                    f"the process of node {node_id} died before answering (its lease lapsed)"))

    def sweep(self) -> None:
        """Fail asks whose deadline has passed (for ``block=False`` futures)."""
        now = time.monotonic()
        if not self._pending and now < self._next_prune:
            return  # the receiver's every wake-up: nothing to look at
        with self._lock:
            late = [key for key, p in self._pending.items() if p.deadline <= now]
            items = [self._pending.pop(key) for key in late]
        for item in items:
            _fail(item.future, RemoteTimeoutError(
                f"no answer from node {item.node_id} by the deadline"))
        if now >= self._next_prune:
            self._next_prune = now + 5.0
            self._replays.forget_before(time.time() - 2 * self._max_age)

    # -- receiving (receiver thread) ------------------------------------------------------

    def handle(self, blob: bytes) -> None:
        """Verify one inbox envelope, then act on it. Never raises; never blocks
        on an actor."""
        try:
            self._handle(blob)
        except Exception:
            self.dropped += 1
            logger.exception("%s: could not handle an inbox message", self.node_id)

    def _handle(self, blob: bytes) -> None:
        header, payload, why = self.codec.decode(blob)
        if header is None:
            self.dropped += 1
            logger.warning("%s: dropped an inbox message (%s); it was not unpickled",
                           self.node_id, why)
            return
        kind = header.get("k")
        if kind == WAKE:
            return
        msg_id = str(header.get("id", ""))
        sent = header.get("t")
        if header.get("dst") != self.node_id or not isinstance(sent, (int, float)):
            self.dropped += 1
            logger.warning("%s: dropped a message addressed to %r", self.node_id,
                           header.get("dst"))
            return
        wall = time.time()
        if wall - sent > self._max_age:
            self.dropped += 1
            logger.warning("%s: dropped a message sent %.0fs ago (max_message_age %.0fs)",
                           self.node_id, wall - sent, self._max_age)
            return
        if kind in (REPLY, ERROR):
            self._on_reply(kind, msg_id, payload)  # one-shot: only a pending ask takes it
            return
        if header.get("di") not in self._incarnations:
            self.dropped += 1
            logger.warning("%s: dropped a message to another incarnation of this node (sent "
                           "before a restart, or a replay)", self.node_id)
            return
        if not self._replays.first_time(msg_id, wall):
            self.dropped += 1
            logger.warning("%s: dropped a replayed message %s", self.node_id, msg_id)
            return
        src = str(header.get("src", ""))
        urn = str(header.get("to", ""))
        target = self._find_actor(urn)
        if kind == TELL:
            if target is None:
                logger.debug("%s: tell to %s dropped: no such live actor", self.node_id, urn)
                return
            target.tell(pickle.loads(payload))  # verified above
            self.delivered += 1
            return
        if kind not in (ASK, STOP):
            self.dropped += 1
            return
        reply_key = self.transport.reply_key(msg_id) if header.get("rk") else ""
        hook = _ReplyTo(self, src, msg_id, reply_key)
        if target is None or not target.is_alive():
            hook.set_exception((pykka.ActorDeadError, pykka.ActorDeadError(
                f"actor {urn} is not alive in node {self.node_id}, or was never named there "
                "(only named actors are reachable from other processes)"), None))
            return
        if kind == STOP:
            message: Any = _ActorStop() if _ActorStop is not None else None
        else:
            try:
                message = pickle.loads(payload)  # verified above
            except Exception as error:
                hook.set_exception((RemoteActorError, RemoteActorError(
                    f"node {self.node_id} could not unpickle the message: {error!r}"), None))
                return
        self.delivered += 1
        if _PykkaEnvelope is not None:
            target.actor_inbox.put(_PykkaEnvelope(message, reply_to=hook))
        else:  # pragma: no cover - fallback for a Pykka without the envelope class
            _wait_in_thread(target, message, kind == STOP, hook, header.get("ttl", 0.0))

    def _on_reply(self, kind: str, msg_id: str, payload: bytes) -> None:
        with self._lock:
            item = self._pending.pop(msg_id, None)
        if item is None:
            logger.debug("%s: late reply %s dropped", self.node_id, msg_id)
            return
        try:
            value = pickle.loads(payload)  # verified by the caller
        except Exception as error:
            kind, value = ERROR, RemoteActorError(f"the reply could not be unpickled: {error!r}")
        if item.stop:
            item.link.mark_dead()
            item.future.set(True)
        elif kind == REPLY:
            item.future.set(value)
        else:
            _fail(item.future, value if isinstance(value, BaseException)
                  else RemoteActorError(repr(value)))

    # -- replying (any actor's thread) ------------------------------------------------------

    def reply(self, node_id: str, msg_id: str, kind: str, value: Any,
              reply_key: str = "") -> None:
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            what = repr(value) if kind == ERROR else f"a reply of type {type(value).__name__}"
            kind = ERROR
            payload = pickle.dumps(RemoteActorError(f"{what} could not be pickled: {error!r}"))
        blob = self.codec.encode(self._header(kind, node_id, msg_id, "", 0.0), payload)
        self._outbox.put((node_id, reply_key, blob))

    def _run_outbox(self) -> None:
        while True:
            item = self._outbox.get()
            batch = []
            stop = item is _OUTBOX_STOP
            if not stop:
                batch.append(item)
            while not stop and len(batch) < 256:
                try:
                    more = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if more is _OUTBOX_STOP:
                    stop = True
                else:
                    batch.append(more)
            if batch:
                try:
                    self.transport.send_many(batch)
                except Exception as error:
                    logger.warning("%s: %d replies were lost: %r", self.node_id, len(batch),
                                   error)
            if stop:
                return


def _fail(future: Any, error: BaseException) -> None:
    future.set_exception((type(error), error, None))


def _wait_in_thread(target: Any, message: Any, stop: bool, hook: _ReplyTo,
                    ttl: Any) -> None:  # pragma: no cover - fallback only
    def wait() -> None:
        try:
            if stop:
                target.stop(block=True, timeout=float(ttl) or None)
                hook.set(True)
            else:
                hook.set(target.ask(message, timeout=float(ttl) or None))
        except Exception:
            hook.set_exception()

    threading.Thread(target=wait, daemon=True).start()
