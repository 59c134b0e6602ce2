"""The Redis backend's side of the wire: its Redis clients, its scripts, the
node's lease, sending and receiving message blobs, reading snapshots, and
the one map from Redis errors to registry errors.

Every method here talks to Redis (or closes the clients); none touches the
local copy (:mod:`._replica`).

Guarantees
----------
* **Bounded calls.** Every client has the socket timeout ``io_timeout``
  (the blocking clients of ``XREAD`` and ``BLPOP``: one block of
  :data:`BLOCK_MS` more) and no retries of its own: a call fails within its
  timeout.
* **One error map.** :meth:`Store.failure` is the only place where a Redis
  error becomes a :class:`RegistryUnavailableError` (:func:`describe` words
  it): an error *reply* (``OOM``, ``READONLY``, ``WRONGTYPE``, ``NOSCRIPT``,
  an ACL or password refusal, ``LOADING``) says ``refused: <the reply>`` and
  keeps ``health()`` degraded until a write succeeds
  (:meth:`Store.write_ok`); only a connection failure or a timeout says
  Redis is *out of reach*.
  :meth:`Store.note` records an error for ``health()`` the same way, for
  the threads that do not raise.
* **Leases.** :meth:`Store.take_lease` takes a new incarnation (refused if
  another live node uses the node id; a renewal is refused if the lease is
  another process's incarnation: :attr:`Store.superseded` says so) and tells
  whether Redis lost data since the last one (the epoch changed).
  :meth:`Store.leave` is fenced by the incarnation as well.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Optional

from pykka_registry._errors import RegistryUnavailableError
from pykka_registry._events import KIND_EXPIRED, KIND_NODE_STOPPED
from pykka_registry.backends.redis._schema import Layout, Snapshot, parse_snapshot, safe_url
from pykka_registry.backends.redis._schema import counter as _counter
from pykka_registry.backends.redis._schema import text as _text
from pykka_registry.backends.redis._scripts import SEND, SEND_ASK, Scripts

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the redis backend needs redis-py: pip install 'pykka-registry[redis]'"
    ) from _error

__all__ = ["BLOCK_MS", "RedisError", "Store", "describe", "refused"]

BLOCK_MS = 500  # longest XREAD/BLPOP block: bounds how late a thread sees a stop
_REPLY_TTL_MS = 30_000  # a reply nobody waits for any more vanishes after this

#: What every Redis call may raise (re-exported so that callers need not import redis).
RedisError = redis.RedisError

#: Errors that mean Redis answered, with a refusal: redis-py makes a password
#: refusal and a server still loading its data connection errors, but Redis
#: did answer them.
_REFUSALS: tuple[type[BaseException], ...] = (
    redis.ResponseError, redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError, redis.exceptions.BusyLoadingError)


#: Error replies (of the generic kind) that refuse every write, whatever the
#: key: the lease thread's probe write tells when they are over.
_SERVER_REFUSALS = ("MISCONF", "MASTERDOWN", "NOREPLICAS", "BUSY", "OOM", "READONLY",
                    "NOPERM", "LOADING")


def refused(error: BaseException) -> bool:
    """True if ``error`` is Redis's error reply (a refusal), False if Redis
    could not be reached (connection failure, timeout)."""
    return isinstance(error, _REFUSALS)


#: The reply codes redis-py strips from the message of its own error classes
#: (put back: ``OOM`` says more than "command not allowed...").
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "OOM"), (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"), (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.ExecAbortError, "EXECABORT"),
    (redis.exceptions.BusyLoadingError, "LOADING"))


def describe(error: BaseException) -> str:
    """``"refused: <reply>"`` for an error reply, else ``"is out of reach
    (<error>)"``: the end of a sentence that starts "Redis at URL "."""
    if refused(error):
        reply = str(error)
        for kind, code in _CODES:
            if isinstance(error, kind) and not reply.startswith(code):
                reply = f"{code} {reply}"
                break
        return f"refused: {reply}"
    return f"is out of reach ({type(error).__name__}: {error})"


class Store:
    """One node's connection to Redis. Written by the thread that calls it
    (the flags below are plain attributes, read by ``health()`` anywhere)."""

    def __init__(self, url: str, layout: Layout, node_id: str, lease_ttl: float,
                 feed_maxlen: int, inbox_maxlen: int, redis_kwargs: dict[str, Any]) -> None:
        self.url = url
        self.layout = layout
        self.prefix = layout.prefix
        self.node_id = node_id
        self.lease_ttl = lease_ttl
        self.feed_maxlen = feed_maxlen
        self.inbox_maxlen = inbox_maxlen
        self.redis_kwargs = redis_kwargs
        self.io_timeout = 1.0
        self.r: Any = None  # every call but the two blocking ones
        self.rx: Any = None  # the receiver's XREAD
        self.rb: Any = None  # askers' BLPOP
        self.scripts: Any = None
        self.inc = ""  # the lease's incarnation
        self.epoch = ""
        self.nodeinfo = ""
        self.lease_ok_at = 0.0
        self.lapsed = False
        self.connected = False
        self.last_error = ""
        self.write_error = ""  # the last error reply to a write, until one succeeds
        self._server_refusal = False  # write_error is of Redis as a whole (OOM...)
        # Set when a renewal of the lease found the node id taken by another
        # process (this one was paused past its lease): why this node cannot
        # write, until the other one leaves.
        self.superseded = ""
        # What the last lease refresh found wrong with the shared keys every
        # write needs (someone else wrote them): "" when nothing.
        self.key_problem = ""

    def k(self, *parts: str) -> str:
        return self.layout.key(*parts)

    # -- clients ----------------------------------------------------------------------------

    def connect(self, io_timeout: float) -> None:
        """Make the clients and register the scripts (no round trip yet)."""
        self.io_timeout = io_timeout
        options: dict[str, Any] = {
            "socket_timeout": io_timeout,
            "socket_connect_timeout": io_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(self.redis_kwargs)
        self.r = redis.Redis.from_url(self.url, **options)
        blocking = dict(options, socket_timeout=BLOCK_MS / 1000 + io_timeout)
        self.rx = redis.Redis.from_url(self.url, **blocking)
        self.rb = redis.Redis.from_url(self.url, **blocking)
        self.scripts = Scripts(self.r)

    def close_clients(self) -> None:
        for client in (self.r, self.rx, self.rb):
            try:
                if client is not None:
                    client.close()
            except Exception:
                pass

    # -- errors -----------------------------------------------------------------------------

    def failure(self, error: BaseException, what: str) -> RegistryUnavailableError:
        """The error a failed call raises (see the module docstring), noted
        for ``health()``."""
        self.note(error)
        return RegistryUnavailableError(f"{what}: Redis at {safe_url(self.url)} "
                                        f"{describe(error)}")

    def note(self, error: BaseException) -> None:
        """Record ``error`` for ``health()``: a refused write, or Redis out of reach."""
        if refused(error):
            self.write_error = f"{type(error).__name__}: {error}"
            self._server_refusal = type(error) is not redis.ResponseError or \
                str(error).startswith(_SERVER_REFUSALS)
            return
        self.connected = False
        self.last_error = f"{type(error).__name__}: {error}"

    def write_ok(self) -> None:
        """A write succeeded: Redis accepts writes again."""
        if self.write_error:
            self.write_error = ""

    # -- the lease ----------------------------------------------------------------------------

    def take_lease(self, first: bool = False) -> bool:
        """Take a new lease incarnation; True if Redis lost data since the
        last one (its epoch changed).

        Raises:
            ValueError: another live node uses this node id (at the first
                lease; for a renewal :attr:`superseded` says so too).
            redis.RedisError: as any call.
        """
        inc = os.urandom(8).hex()
        ttl_ms = int(self.lease_ttl * 1000)
        info = json.dumps({"inc": inc, "ttl_ms": ttl_ms, "host": socket.gethostname(),
                           "pid": os.getpid(), "since": time.time()})
        result = self.scripts.acquire(
            keys=[self.k("node", self.node_id), self.k("nodeinfo", self.node_id),
                  self.k("epoch"), self.k("nodes")],
            args=[inc, ttl_ms, info, os.urandom(8).hex(), "1" if first else "", self.node_id,
                  self.inc],
        )
        if _text(result[0]) == "taken":
            if not first:
                self.superseded = (
                    f"node_id {self.node_id!r} was taken by another process while this "
                    "one was away past its lease: this registry cannot write any more "
                    "(stop it, and start it with another node_id)")
            raise ValueError(f"node_id {self.node_id!r} is in use by a live node")
        self.superseded = ""
        epoch = _text(result[1])
        self.nodeinfo = info
        self.inc = inc
        self.lease_ok_at = time.monotonic()
        self.lapsed = False
        lost = bool(self.epoch) and epoch != self.epoch
        self.epoch = epoch
        return lost

    def lease_current(self) -> bool:
        """True if Redis holds this node's current lease."""
        return _text(self.r.get(self.k("node", self.node_id))) == self.inc

    def refresh_lease(self, ttl_ms: int) -> tuple[bool, str, Optional[int]]:
        """Extend the lease: ``(extended, epoch, counter)`` (counter None if
        ``P:seq`` is not a counter), and check the shared keys every write
        needs (:attr:`key_problem`: what is wrong with them, for ``health()``)."""
        ok, epoch, seq, problems = self.scripts.refresh(
            keys=[self.k("node", self.node_id), self.k("nodeinfo", self.node_id),
                  self.k("epoch"), self.k("seq"), self.k("names"), self.k("events"),
                  self.k("held", self.node_id), self.k("nodes")],
            args=[self.inc, ttl_ms, os.urandom(8).hex()],
        )
        self.key_problem = _text(problems)[:1000]
        seq_text = _text(seq)
        return bool(ok), _text(epoch), _counter(seq_text) if seq_text else None

    def probe_write(self, ttl_ms: int) -> None:
        """A real write (the refresh only extends keys, which Redis allows
        even when it refuses writes): notes whether Redis accepts writes."""
        try:
            self.r.set(self.k("nodeinfo", self.node_id), self.nodeinfo, xx=True, px=ttl_ms)
        except redis.ResponseError as error:
            self.note(error)
        else:
            # Only a refusal of Redis as a whole (OOM, READONLY...) is shown
            # gone by this write; one of a key's content (WRONGTYPE, a counter
            # that overflows) waits for a write of the same kind to succeed.
            if self.write_error and self._server_refusal:
                self.write_ok()

    def live_incarnations(self, node_ids: list[str]) -> list[str]:
        """The current lease incarnation of each node ("" if none)."""
        return [_text(v) for v in self.r.mget([self.k("node", node) for node in node_ids])]

    def epoch_and_seq(self) -> tuple[str, Optional[int]]:
        """The epoch ("" if none or not a string) and the counter (None if
        ``P:seq`` is not a counter: someone else wrote it)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.k("epoch"))
        pipe.get(self.k("seq"))
        epoch, seq = pipe.execute(raise_on_error=False)
        for value in (epoch, seq):
            if isinstance(value, Exception) and not refused(value):
                raise value  # Redis out of reach: as any call
        seq_text = "" if isinstance(seq, Exception) else _text(seq) or "0"
        return ("" if isinstance(epoch, Exception) else _text(epoch),
                _counter(seq_text) if seq_text.isdigit() else None)

    def _reap_keys(self, node_id: str) -> list[str]:
        return [self.k("node", node_id), self.k("held", node_id), self.k("names"),
                self.k("events"), self.k("seq"), self.k("nodes")]

    def reap_nodes(self, nodes: Any, include_self: bool = False) -> None:
        """Delete the names of lapsed nodes (each a script: one ``del`` event
        per name, reason ``expired``)."""
        for node in nodes:
            node_id = _text(node)
            if include_self or node_id != self.node_id:
                self.scripts.reap(keys=self._reap_keys(node_id),
                                  args=[node_id, self.feed_maxlen, KIND_EXPIRED, self.prefix])

    def leave(self) -> None:
        """Delete every key of this node: its lease, info, names (one
        ``node_stopped`` event each), held set and inbox; and if it was the
        last live node of the prefix, the prefix's shared keys too.

        Fenced by the incarnation: if another process took this node id
        while this one was away past its lease, only the names of this
        process's incarnations go; that process's lease, names, inbox and
        held set stay."""
        self.scripts.drop_lease(keys=[self.k("node", self.node_id),
                                      self.k("nodeinfo", self.node_id)], args=[self.inc])
        self.scripts.reap(keys=self._reap_keys(self.node_id),
                          args=[self.node_id, self.feed_maxlen, KIND_NODE_STOPPED, self.prefix])
        self.scripts.leave(keys=[self.k("nodes"), self.k("names"), self.k("events"),
                                 self.k("seq"), self.k("epoch"), self.k("node", self.node_id),
                                 self.inbox(), self.k("held", self.node_id)],
                           args=[self.prefix, self.node_id])

    # -- snapshots ----------------------------------------------------------------------------

    def read_snapshot(self, writes_before: int, seq_now: int = 0) -> Snapshot:
        """Every live name record (malformed ones skipped with a warning),
        with the counter, epoch and stream position they are current at
        (``seq_now`` stands for a counter that is not one)."""
        raw = self.scripts.snapshot(keys=[self.k("names"), self.k("seq"), self.k("epoch"),
                                          self.k("events")], args=[self.prefix])
        if not _text(raw[0]).isdigit():
            raw = [str(seq_now), *raw[1:]]
        return parse_snapshot(raw, writes_before)

    # -- messages ------------------------------------------------------------------------------

    def inbox(self, node_id: Optional[str] = None) -> str:
        return self.k("inbox", node_id or self.node_id)

    def _inbox_ttl_ms(self) -> int:
        return int(max(60.0, 10 * self.lease_ttl) * 1000)

    def send_blob(self, node_id: str, blob: bytes) -> bool:
        """Append ``blob`` to ``node_id``'s inbox; False if that node has no lease."""
        try:
            sent = self.scripts.send(
                keys=[self.k("node", node_id), self.inbox(node_id)],
                args=[blob, self.inbox_maxlen, self._inbox_ttl_ms()],
            )
        except redis.RedisError as error:
            raise self.failure(error, "send") from error
        return bool(sent)

    def send_many(self, items: list[tuple[str, str, bytes]]) -> None:
        """Send replies (outbox thread): one round trip for the batch (the
        inbox sends by ``EVAL``: a pipeline never checks ``SCRIPT EXISTS``)."""
        pipe = self.r.pipeline(transaction=False)
        for node_id, reply_key, blob in items:
            if reply_key:
                pipe.lpush(reply_key, blob)
                pipe.pexpire(reply_key, _REPLY_TTL_MS)
            else:
                pipe.eval(SEND, 2, self.k("node", node_id), self.inbox(node_id), blob,
                          self.inbox_maxlen, self._inbox_ttl_ms())
        pipe.execute(raise_on_error=False)

    def send_and_wait(self, node_id: str, blob: bytes, reply_key: str,
                      timeout: float) -> tuple[bool, Optional[bytes]]:
        """Send an ask's ``blob`` to ``node_id``'s inbox and wait for its reply
        on ``reply_key``, in one round trip (caller's thread): ``SEND_ASK``
        then ``BLPOP`` (at most ``timeout``, <= 0.5 s), pipelined on the
        askers' connection. ``(False, None)`` if that node has no lease
        (nothing sent; the script's marker ends the wait at once); else
        ``(True, reply or None)``.

        Raises:
            RegistryUnavailableError: Redis is out of reach, or refused the
                send (then after the wait: the script did not run).
        """
        pipe = self.rb.pipeline(transaction=False)
        # EVAL, not EVALSHA: after a Redis restart a NOSCRIPT reply would be
        # seen only once the BLPOP behind it had waited in vain (the script is
        # under 1 kB; Redis caches its compiled form by hash).
        pipe.eval(SEND_ASK, 3, self.k("node", node_id), self.inbox(node_id), reply_key, blob,
                  self.inbox_maxlen, self._inbox_ttl_ms(), _REPLY_TTL_MS)
        pipe.blpop([reply_key], timeout=max(0.01, min(timeout, BLOCK_MS / 1000)))
        try:
            sent, popped = pipe.execute(raise_on_error=False)
        except redis.RedisError as error:
            raise self.failure(error, "ask") from error
        if isinstance(sent, Exception):
            raise self.failure(sent, "ask")
        if isinstance(popped, Exception):  # pragma: no cover - BLPOP refused
            raise self.failure(popped, "ask")
        if not sent:
            return False, None
        return True, None if popped is None else popped[1]

    def pipelined(self, script: Any, calls: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        """Run ``script`` once per ``(keys, args)`` of ``calls`` in one round
        trip, by plain ``EVALSHA`` (redis-py would send ``SCRIPT EXISTS``
        first for a script object in a pipeline); after a ``NOSCRIPT`` reply
        (a restarted or flushed Redis) the script is loaded and the refused
        calls run again. Returns one result (or error) per call.

        Raises:
            redis.RedisError: as any call.
        """
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _attempt in range(2):
            pipe = self.r.pipeline(transaction=False)
            for i in todo:
                keys, args = calls[i]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            again = []
            for i, reply in zip(todo, replies):
                results[i] = reply
                if isinstance(reply, redis.exceptions.NoScriptError):
                    again.append(i)
            if not again:
                break
            self.r.script_load(script.script)
            todo = again
        return results

    def wait_reply(self, reply_key: str, timeout: float) -> Optional[bytes]:
        """Pop a reply (caller's thread), waiting at most ``timeout`` (<= 0.5 s)."""
        try:
            popped = self.rb.blpop([reply_key], timeout=max(0.01, min(timeout,
                                                                     BLOCK_MS / 1000)))
        except redis.RedisError as error:
            raise self.failure(error, "ask") from error
        return None if popped is None else popped[1]

    def post_own(self, blob: bytes) -> None:
        """Append ``blob`` to this node's own inbox (wakes its receiver)."""
        self.scripts.post(keys=[self.inbox()],
                          args=[blob, self.inbox_maxlen, self._inbox_ttl_ms()])

    def read_streams(self, feed_id: Any, inbox_id: Any) -> Any:
        """One blocking ``XREAD`` of the change stream and this node's inbox
        (not the inbox while :attr:`superseded`: it is the other process's)."""
        streams = {self.k("events"): feed_id}
        if not self.superseded:
            streams[self.inbox()] = inbox_id
        return self.rx.xread(streams, count=1000, block=BLOCK_MS)

    def unstick(self) -> int:
        """After a refused ``XREAD``: delete the change stream or this node's
        inbox if it is not a stream (someone else wrote it); how many went."""
        return int(self.scripts.unstick(keys=[self.k("events"), self.inbox()]))

    def done_with(self, entry_ids: list[Any]) -> None:
        """Delete handled messages from this node's inbox."""
        self.rx.xdel(self.inbox(), *entry_ids)
