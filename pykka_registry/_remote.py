"""Messages to actors in other processes: remote references, signed envelopes,
and the per-process messenger (used by :mod:`pykka_registry.backends.redis`).

Wire format
-----------
Every message and reply travels as one byte string::

    b"PKR1" | signature (32 bytes) | header length (4 bytes, big endian) | header | payload

``header`` is JSON (kind, message id, source and destination node, target
actor URN, send time, time to live); ``payload`` is a pickle. The signature is
HMAC-SHA256 over everything after it, keyed with the shared secret (at least
:data:`MIN_SECRET_BYTES` bytes); without a secret it is 32 zero bytes. The
header of a message to an actor carries the destination node's lease
*incarnation* (``di``): a node accepts only messages addressed to an
incarnation of its own, so a message captured before a registry restarted
(same ``node_id``, new incarnation, fresh replay guard) is refused after it.

Guarantees
----------
* **Nothing unverified is unpickled.** A process that has a secret drops (and
  logs) every envelope whose signature is missing or wrong *before* looking at
  its payload; it also drops envelopes addressed to another node, older than
  ``max_age`` seconds, addressed to an incarnation that is not its own (a
  replay across a restart), or already seen (replays). A process without a
  secret accepts unsigned envelopes: anyone who can write to its inbox can run
  code in it (the backend logs a warning at start). A secret shorter than
  :data:`MIN_SECRET_BYTES` (an empty one included) is refused with
  :class:`InvalidSecretError`.
* **Only named actors are reachable.** A message is delivered only to a live
  local actor that holds (or held, until it dies) a name through this
  registry (``find_actor``); any other URN is answered as a dead actor.
* **At-most-once delivery.** A message is handed to the target actor at most
  once; it may be lost (process death, Redis restart, a full inbox).
* **Every ask has a deadline.** ``ask(timeout=None)`` waits at most the
  registry's ``call_timeout``. It raises :class:`pykka.ActorDeadError` as
  soon as the target is known to be dead (its process answered so, or its
  node's lease lapsed), :class:`RemoteTimeoutError` at the deadline, or
  whatever the remote actor's handler raised.

Threads
-------
* ``tell``/``ask``/``stop`` encode and send in the caller's thread; a
  blocking ``ask`` also waits there, on a reply list of its own (``BLPOP``).
* :meth:`Messenger.handle` runs in the backend's receiver thread: it verifies,
  unpickles and hands messages to local actors (``tell``, or an ``ask`` whose
  reply future is a :class:`_ReplyTo` hook) without blocking on them.
* A reply is pickled and signed in the replying actor's thread (a snapshot of
  the value) and sent by the messenger's outbox thread, so no actor ever
  blocks on Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import pickle
import queue
import struct
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import attrs
import pykka

from pykka_registry._errors import (
    MIN_SECRET_BYTES,
    InvalidSecretError,
    RegistryUnavailableError,
    RemoteActorError,
    RemoteTimeoutError,
)


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

__all__ = [
    "MIN_SECRET_BYTES",
    "InvalidSecretError",
    "Messenger",
    "RemoteActorError",
    "RemoteActorRef",
    "RemoteTimeoutError",
]

logger = logging.getLogger("pykka_registry.redis")

MAGIC = b"PKR1"
_SIG_LEN = 32
_NO_SIG = bytes(_SIG_LEN)
_LEN = struct.Struct(">I")
_PREFIX_LEN = len(MAGIC) + _SIG_LEN

# message kinds
TELL, ASK, STOP, REPLY, ERROR, WAKE = "tell", "ask", "stop", "reply", "error", "wake"


# -- signing -------------------------------------------------------------------------


def secret_key(secret: Any) -> Optional[bytes]:
    """The HMAC key for ``secret`` (``None``: unsigned).

    Raises:
        InvalidSecretError: not ``str``/``bytes``, or too short.
    """
    if secret is None:
        return None
    if isinstance(secret, str):
        try:
            key = secret.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidSecretError("secret is a str that is not valid Unicode") from None
    elif isinstance(secret, (bytes, bytearray, memoryview)):
        key = bytes(secret)
    else:
        raise InvalidSecretError(f"secret must be a str or bytes, not {type(secret).__name__}")
    if len(key) < MIN_SECRET_BYTES:
        raise InvalidSecretError(
            f"secret must be at least {MIN_SECRET_BYTES} bytes long, got {len(key)}: use a "
            "long random value shared by every process (for example secrets.token_hex(32))")
    return key


class Codec:
    """Builds and checks envelopes. Immutable; used from any thread.

    Raises:
        InvalidSecretError: ``secret`` is too short (see :func:`secret_key`).
    """

    def __init__(self, secret: Union[str, bytes, None]) -> None:
        self._secret = secret_key(secret)

    @property
    def signed(self) -> bool:
        return self._secret is not None

    def _sign(self, body: bytes) -> bytes:
        if self._secret is None:
            return _NO_SIG
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def encode(self, header: Mapping[str, Any], payload: bytes) -> bytes:
        head = json.dumps(header, separators=(",", ":")).encode()
        body = _LEN.pack(len(head)) + head + payload
        return MAGIC + self._sign(body) + body

    def decode(self, blob: bytes) -> tuple[Optional[dict[str, Any]], bytes, str]:
        """``(header, payload, "")`` or ``(None, b"", why it was refused)``.

        The payload is never looked at before the signature is verified."""
        if len(blob) < _PREFIX_LEN + _LEN.size or not blob.startswith(MAGIC):
            return None, b"", "not an envelope"
        signature = blob[len(MAGIC):_PREFIX_LEN]
        body = blob[_PREFIX_LEN:]
        if self._secret is not None:
            if signature == _NO_SIG:
                return None, b"", "unsigned"
            if not hmac.compare_digest(signature, self._sign(body)):
                return None, b"", "bad signature"
        (head_len,) = _LEN.unpack_from(body)
        try:
            header = json.loads(body[_LEN.size:_LEN.size + head_len])
        except ValueError:
            return None, b"", "bad header"
        if not isinstance(header, dict):
            return None, b"", "bad header"
        return header, body[_LEN.size + head_len:], ""


# -- remote references ----------------------------------------------------------------


class NodeLink:
    """What this process knows of one incarnation of a remote node. ``lapsed``
    is set (never cleared) when its lease is found gone; written by the
    backend's lease thread, read by any thread."""

    __slots__ = ("inc", "lapsed", "node_id")

    def __init__(self, node_id: str, inc: str) -> None:
        self.node_id = node_id
        self.inc = inc
        self.lapsed = False


class ActorLink:
    """Shared, mutable state behind every :class:`RemoteActorRef` of one remote
    actor. Written by the server thread (``node``, ``dead``) and the receiver
    thread (``stopped``); plain attribute writes, read without a lock."""

    __slots__ = ("dead", "messenger", "node", "stopped", "urn")

    def __init__(self, urn: str, node: NodeLink, messenger: Messenger) -> None:
        self.urn = urn
        self.node = node
        self.messenger = messenger
        self.dead = False
        self.stopped = threading.Event()

    def mark_dead(self) -> None:
        self.dead = True
        self.stopped.set()


@attrs.define(frozen=True, eq=False, repr=False)
class RemoteActorRef:
    """A reference to an actor that runs in another process, as returned by
    ``lookup`` (and carried by ``AlreadyRegisteredError.existing``) for names
    held elsewhere.

    Quacks like a :class:`pykka.ActorRef` where that makes sense across
    processes: :attr:`actor_urn`, :meth:`is_alive`, :meth:`tell`, :meth:`ask`,
    :meth:`stop`, :attr:`actor_stopped`. Messages and replies are pickled.
    There is no ``proxy()`` (use ``tell``/``ask``), and the reference itself
    cannot be sent to another process (send the name instead).

    Two references to the same remote actor compare equal. Immutable and safe
    to share between threads.
    """

    #: The remote actor's URN (as its own process knows it).
    actor_urn: str
    #: The remote actor's class name (the class itself lives in the other process).
    actor_class_name: str
    #: The node (registry) of the process that runs it.
    node_id: str
    _link: ActorLink

    def is_alive(self) -> bool:
        """False once this process knows the actor stopped or its process's
        lease lapsed (no network call; used by ``lookup``)."""
        link = self._link
        return not (link.dead or link.node.lapsed or link.messenger.closed)

    @property
    def actor_stopped(self) -> threading.Event:
        """Set once this process has learnt that the actor stopped."""
        return self._link.stopped

    def tell(self, message: Any) -> None:
        """Send ``message`` (pickled) without waiting for it to be handled.

        Raises:
            pykka.ActorDeadError: the actor or its process is known to be dead.
            RegistryUnavailableError: Redis is out of reach or the registry stopped.
            pickle.PicklingError, TypeError: ``message`` cannot be pickled.
        """
        self._link.messenger.send(self, TELL, message)

    def ask(self, message: Any, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Send ``message`` and return the answer (``block=False``: a
        :class:`pykka.Future` of it). ``timeout=None`` means the registry's
        ``call_timeout``: a remote ask always has a deadline.

        Raises:
            RemoteTimeoutError: no answer in time (a :class:`pykka.Timeout`).
            pykka.ActorDeadError: the actor or its process is dead.
            Whatever the remote handler raised.
        """
        return self._link.messenger.ask(self, message, block, timeout)

    def stop(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Ask the remote actor to stop (after the messages queued before).
        With ``block``, wait (at most ``timeout``, default ``call_timeout``)
        and return True; otherwise return a future."""
        future = self._link.messenger.ask(self, _STOP_REQUEST, False, timeout)
        if not block:
            return future
        future.get(timeout=self._link.messenger.deadline_for(timeout) - time.monotonic())
        return True

    def proxy(self) -> Any:
        raise NotImplementedError(
            f"{self!r} lives in another process: proxies are not supported, use tell/ask"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RemoteActorRef):
            return self.actor_urn == other.actor_urn
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.actor_urn)

    def __repr__(self) -> str:
        return f"<RemoteActorRef {self.actor_class_name} ({self.actor_urn}) on {self.node_id}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            "a RemoteActorRef cannot be pickled (send the name, or your own actor's name, "
            "and look it up on the other side)"
        )


_STOP_REQUEST = object()  # marker: RemoteActorRef.stop sends a STOP envelope


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


class ReplayGuard:
    """Which message ids were seen already, in little memory.

    A sender numbers its messages to each destination node ``1, 2, 3...``
    (ids ``"<sender>-<n>"``), so per sender this keeps the highest number seen
    and the few numbers below it not seen yet (messages overtaken by later
    ones). A number at or below the highest that is not among those is a
    replay. Only the receiver thread uses it.
    """

    REORDER = 64  # accepted below the first number seen from a sender
    MAX_MISSING = 4096

    def __init__(self) -> None:
        self._senders: dict[str, tuple[list[int], set[int], list[float]]] = {}

    def first_time(self, msg_id: str, now: float) -> bool:
        sender, _, number = msg_id.rpartition("-")
        try:
            n = int(number)
        except ValueError:
            return False
        state = self._senders.get(sender)
        if state is None:
            self._senders[sender] = ([n], set(range(max(1, n - self.REORDER), n)), [now])
            return True
        highest, missing, seen_at = state
        seen_at[0] = now
        if n > highest[0]:
            if n - highest[0] > self.MAX_MISSING:
                missing.clear()
            else:
                missing.update(range(highest[0] + 1, n))
            highest[0] = n
            if len(missing) > self.MAX_MISSING:  # lost messages: forget the oldest gaps
                for old in sorted(missing)[: len(missing) - self.MAX_MISSING]:
                    missing.discard(old)
            return True
        if n in missing:
            missing.discard(n)
            return True
        return False

    def forget_before(self, when: float) -> None:
        """Drop the state of senders not heard from since ``when``."""
        for sender in [s for s, state in self._senders.items() if state[2][0] < when]:
            del self._senders[sender]


class Messenger:
    """One node's sending and receiving of actor messages.

    Given by the backend (each raises :class:`RegistryUnavailableError` when
    Redis is out of reach):

    * ``send_blob(node_id, blob) -> bool`` appends an envelope to a node's
      inbox, returning False when that node has no lease;
    * ``send_many(items)`` sends several ``(node_id, reply_key, blob)`` in one
      round trip (to ``reply_key``, a list, when it is not empty);
    * ``wait_reply(reply_key, timeout) -> bytes | None`` pops from a reply
      list, waiting at most ``timeout`` (at most half a second at a time);
    * ``reply_prefix``: the reply list of message ``id`` is ``reply_prefix + id``.

    A blocking ``ask`` waits on its own reply list in the caller's thread (one
    thread hop less than through the receiver); ``block=False`` asks and
    ``stop`` get their reply through this node's inbox and the receiver.
    ``find_actor(urn)`` returns a live local :class:`pykka.ActorRef` or None.
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
    ) -> None:
        self.node_id = node_id
        self.codec = codec
        self.call_timeout = call_timeout
        self._send_blob = send_blob
        self._send_many = send_many
        self._wait_reply = wait_reply
        self._reply_prefix = reply_prefix
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
        if not self._send_blob(ref.node_id, blob):
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
            if not self._send_blob(ref.node_id, blob):
                raise pykka.ActorDeadError(f"{ref!r}: its process holds no lease (it is gone)")
            return self._await_reply(ref, msg_id, deadline, ttl)
        blob = self.codec.encode(header, payload)
        with self._lock:
            self._pending[msg_id] = _Pending(future, deadline, ref.node_id, ref._link, stop)
        try:
            delivered = self._send_blob(ref.node_id, blob)
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
                     ttl: float) -> Any:
        """Wait in the caller's thread for the reply to a blocking ask."""
        key = self._reply_prefix + msg_id
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteTimeoutError(
                    f"{ref!r} did not answer within {ttl:.3g}s (the message may or may not "
                    "have been handled)")
            if self.closed:
                raise RegistryUnavailableError("the registry stopped")
            if ref._link.node.lapsed:
                raise pykka.ActorDeadError(
                    f"the process of node {ref.node_id} died before answering (its lease "
                    "lapsed)")
            blob = self._wait_reply(key, remaining)
            if blob is None:
                continue
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
        return f"{self._id_prefix}-{next(counter)}"

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
        reply_key = self._reply_prefix + msg_id if header.get("rk") else ""
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
                    self._send_many(batch)
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
