"""``RedisBackend``: one name space shared by every process on a Redis server.

Requires redis-py (``pip install "pykka-registry[redis]"``)::

    registry = Registry.start(backend=RedisBackend, backend_opts={
        "url": "redis://127.0.0.1:6379/0", "prefix": "pykka_registry",
        "node_id": None, "lease_ttl": 5.0,
    })

Every registry started on this backend is a *node*: it holds one lease key in
Redis, refreshed every ``lease_ttl / 3``, and its names are valid only while
that lease lives. See ``docs/redis.md`` for the full story; in short:

Guarantees
----------
* **Unique names.** A claim is one Lua script: check the current holder and
  its node's lease, take a fencing token (a global counter), write the name,
  index it, and append a change event. Two processes never both hold a name.
* **Fencing.** Unregister and metadata updates compare the claim's token and
  node, so an owner that was paused past its lease cannot delete or overwrite
  a name another process has claimed since. A metadata update is fenced by the
  writer's own claim (never by a token learnt from the feed): in a process
  that does not hold the name it raises :class:`NotHeldHereError`. When the
  paused owner wakes it takes a new lease, claims again those of its live
  actors' names that are still free, and
  reports the others as lost (a warning in the log and an ``Unregistered``
  event with reason ``"lost"``).
* **Leases.** A node's names are free once its lease lapses; every node
  watches the leases of the nodes it has names from (every
  ``min(lease_ttl / 3, 0.5)`` s), so the names of a process killed with
  SIGKILL vanish everywhere within about ``lease_ttl + 0.5`` s.
* **Reads at memory speed.** ``lookup`` & co. read a local copy fed by the
  Redis stream ``{prefix}:events`` (ordered, resumable). Own writes are applied
  to the copy before the write returns; other processes see a change within
  milliseconds. A gap in the stream (trimmed while this process was away), a
  Redis restart that lost data (the ``{prefix}:epoch`` key is gone) or a
  counter that went backwards (a restart that lost recent writes) makes the
  process re-read everything and re-assert its live names; after a data loss
  every token, revision and own-write guard from before is discarded.
  Re-reads are rate-limited (one per ``_RESYNC_INTERVAL_S``).
* **Hostile data.** Every record read from Redis (name hashes, feed events,
  holders returned by scripts) is validated field by field before it is
  applied; a bad one is skipped alone, with a warning. Stream ids are
  assigned by Redis, so a far-future id appended by someone else cannot make
  claims fail; foreign feed entries make ``health()`` degraded for a while.
* **Refused writes** (an error reply: ``maxmemory``, read-only replica, ACL)
  raise :class:`RegistryUnavailableError` saying so, and keep ``health()``
  degraded until a write succeeds (the lease thread probes each refresh).
* **Clean stop.** ``close()`` deletes every key of this node; the last live
  node of a prefix deletes the prefix's shared keys.
* **Redis down.** Writes raise :class:`RegistryUnavailableError` within
  ``io_timeout``; reads serve the last copy; ``health()`` says ``degraded``.

Threads
-------
* Writes (``register``, ``register_many``...) run in the registry's server
  thread, one at a time, under the registry's write lock, each a Redis round
  trip or two (bounded by ``io_timeout``) made with the write lock released
  (``context.unlocked()``), then re-checked: an actor that died meanwhile is
  not registered.
* :meth:`RedisBackend.remove_actor` runs in a dying actor's thread: it drops
  the actor's names from the local copy and queues their deletes in Redis
  (sent by the server thread); it does no I/O.
* The *lease thread* refreshes the lease, watches other nodes' leases and
  clears the names of lapsed ones.
* The *receiver thread* blocks on ``XREAD`` of the change stream and this
  node's inbox; it hands changes to the server thread (``context.submit``:
  serialised with local writes) and messages to local actors.
* The messenger's *outbox thread* sends replies to remote asks.
All three are joined by :meth:`RedisBackend.close` (``registry.stop()``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, Callable, Optional, Union

import attrs
import pykka

from pykka_registry import _deathwatch
from pykka_registry._errors import (
    MIN_SECRET_BYTES,
    ActorNotAliveError,
    AlreadyRegisteredError,
    InvalidKeyError,
    InvalidMetadataError,
    InvalidSecretError,
    NotHeldHereError,
    NotRegisteredError,
    RegistryUnavailableError,
    RemoteActorError,
    UnsignedMessagesWarning,
)
from pykka_registry._events import (
    MetadataUpdated,
    Registered,
    Unregistered,
    UnregisterReason,
)
from pykka_registry._metadata import is_flat
from pykka_registry._remote import (
    WAKE,
    ActorLink,
    Codec,
    Messenger,
    NodeLink,
    RemoteActorRef,
    secret_key,
)
from pykka_registry.backends.base import Backend, BackendContext, Entry
from pykka_registry.backends.memory import LocalTables
from pykka_registry.backends.redis._groups import RedisGroups, RedisGroupsMixin  # groups:
from pykka_registry.backends.redis._schema import (
    MAX_KEY_DEPTH,
    MAX_METADATA_DEPTH,
    Key,
    Layout,
    Record,
    key_from_json,
    key_json,
    safe_url,
)
from pykka_registry.backends.redis._schema import ROW_FIELDS as _ROW_FIELDS
from pykka_registry.backends.redis._schema import brief as _brief
from pykka_registry.backends.redis._schema import checked as _checked
from pykka_registry.backends.redis._schema import counter as _counter
from pykka_registry.backends.redis._schema import dumps as _dumps
from pykka_registry.backends.redis._schema import holder as _holder
from pykka_registry.backends.redis._schema import json_object as _json_object
from pykka_registry.backends.redis._schema import key_problem as _key_problem
from pykka_registry.backends.redis._schema import number as _number
from pykka_registry.backends.redis._schema import parse_record as parse_record
from pykka_registry.backends.redis._schema import text as _text
from pykka_registry.backends.redis._scripts import Scripts

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the redis backend needs redis-py: pip install 'pykka-registry[redis]'"
    ) from _error

__all__ = [
    "MAX_KEY_DEPTH",
    "MAX_METADATA_DEPTH",
    "MIN_SECRET_BYTES",
    "InvalidSecretError",
    "NotHeldHereError",
    "RedisBackend",
    "RemoteActorRef",
    "UnsignedMessagesWarning",
]

logger = logging.getLogger("pykka_registry.redis")

LOST = UnregisterReason("lost")
_SECRET_ENV = "PYKKA_REGISTRY_SECRET"
_BLOCK_MS = 500  # longest XREAD/BLPOP block: bounds how late a thread sees a stop
_REPLY_TTL_MS = 30_000  # a reply nobody waits for any more vanishes after this

_EMPTY: dict[Hashable, Any] = {}  # never written

# -- the local copy's entries ----------------------------------------------------------


@attrs.define(frozen=True, eq=False)
class Claim(Entry):
    """An :class:`Entry` plus what this backend knows of its claim in Redis:
    the holder's node and lease incarnation, the fencing ``token`` and the
    sequence number ``rev`` of the last change applied. Immutable."""

    node: str = ""
    inc: str = ""
    token: int = 0
    rev: int = 0
    actor_class: str = ""



@attrs.define(frozen=True)
class _Snapshot:
    seq: int
    epoch: str
    records: tuple[Record, ...]
    dead_nodes: tuple[str, ...]
    feed_id: str  # the change stream's last id when the snapshot was taken
    writes_before: int  # own writes made before the snapshot was read


class RedisBackend(LocalTables, RedisGroupsMixin, Backend):  # groups: the mixin
    """Names shared through Redis; see the module docstring.

    Options (``backend_opts``):

    * ``url``: redis-py URL (``redis://``, ``rediss://`` for TLS, ``unix://``;
      ACL user and password as ``redis://user:password@host:port/db``).
    * ``prefix``: every key this backend writes starts with it; processes
      sharing ``url`` and ``prefix`` share one name space.
    * ``node_id``: this node's name (default ``host:pid:random``); must be
      unique among live nodes.
    * ``lease_ttl``: seconds a node's lease lives without refresh.
    * ``secret``: shared key that signs every message, at least
      :data:`MIN_SECRET_BYTES` bytes (default: the ``PYKKA_REGISTRY_SECRET``
      environment variable; unset or empty there means none); ``None`` means
      unsigned. A shorter one raises :class:`InvalidSecretError`.
    * ``io_timeout``: socket timeout of each Redis call (default
      ``min(1, call_timeout / 4)``).
    * ``feed_maxlen`` / ``inbox_maxlen``: approximate stream lengths kept.
    * ``max_message_age``: messages older than this (sender's clock) are dropped.
    * ``redis_kwargs``: more keyword arguments for ``redis.Redis.from_url``
      (``ssl_ca_certs``, ``username``, ``password``...).
    """

    name = "redis"
    #: Least time between two full re-reads of the name space (seconds).
    _RESYNC_INTERVAL_S = 0.5
    #: How long a problem with the change feed keeps ``health()`` degraded.
    _FEED_ALERT_S = 30.0
    #: A feed reader that has not advanced for this long while the counter is
    #: ahead is stuck: re-read everything.
    _STALL_S = 2.0
    key_types = (str, int)
    json_metadata_only = True
    distributed = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "pykka_registry",
        node_id: Optional[str] = None,
        lease_ttl: float = 5.0,
        secret: Union[str, bytes, None] = None,
        io_timeout: Optional[float] = None,
        feed_maxlen: int = 10_000,
        inbox_maxlen: int = 10_000,
        max_message_age: float = 120.0,
        redis_kwargs: Optional[Mapping[str, Any]] = None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        if not lease_ttl > 0.05:
            raise ValueError(f"lease_ttl must be a number of seconds > 0.05, got {lease_ttl!r}")
        if io_timeout is not None and not io_timeout > 0:
            raise ValueError(f"io_timeout must be positive, got {io_timeout!r}")
        self.url = url
        self.prefix = prefix
        self._layout = Layout(prefix)
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.lease_ttl = float(lease_ttl)
        if secret is None:
            secret = os.environ.get(_SECRET_ENV) or None
        self._secret = secret_key(secret)  # InvalidSecretError if too short
        self._io_timeout = io_timeout
        self.feed_maxlen = int(feed_maxlen)
        self.inbox_maxlen = int(inbox_maxlen)
        self.max_message_age = float(max_message_age)
        self._redis_kwargs = dict(redis_kwargs or {})
        if self._redis_kwargs.get("decode_responses"):
            raise ValueError("redis_kwargs: decode_responses must stay False (messages are bytes)")

        # the local copy (written by the server thread, or start(); read anywhere)
        LocalTables.__init__(self)  # the local copy: _lock, _names, _by_urn, _total
        self._local_refs: dict[str, Any] = {}  # urn -> pykka.ActorRef (own entries)
        self._named_urns: set[str] = set()  # local actors named here once, until they die
        self._node_refs: dict[tuple[str, str], int] = {}  # remote (node, inc) -> entries
        self._node_links: dict[tuple[str, str], NodeLink] = {}
        self._actor_links: dict[str, ActorLink] = {}
        self._remote_refs: dict[str, RemoteActorRef] = {}
        # Own writes the feed has not shown yet: name text -> seq of our latest
        # write (server thread writes; the receiver reads it to skip own events),
        # and the same in write order, to forget them once the feed has passed.
        self._own_pending: dict[str, int] = {}
        self._pending_order: collections.deque[tuple[int, str]] = collections.deque()
        self._own_writes_at: dict[str, int] = {}  # name text -> number of its own write
        self._write_count = 0  # own writes so far (server thread)
        self._orphans: list[tuple[Claim, str, str]] = []  # deletes that failed: retried
        # Deletes queued by dying actors' threads (remove_actor does no I/O),
        # sent by the server thread.
        self._releases: collections.deque[tuple[Claim, str, str]] = collections.deque()
        self._release_queued = False
        # groups: every node's memberships (backends/redis/_groups.py)
        self._groups = RedisGroups(self.prefix, self.node_id, self.lease_ttl, self.feed_maxlen)

        # connection and lease state
        self._state: Optional[BackendContext] = None
        self._messenger: Optional[Messenger] = None
        self._r: Any = None
        self._rx: Any = None
        self._rb: Any = None
        self._inc = ""
        self._epoch = ""
        self._feed_seq = 0
        self._lease_ok_at = 0.0
        self._lapsed = False
        self._needs_recover = False
        self._recover_queued = False
        self._resync_requested = False
        self._data_lost = False  # set when Redis lost data, until the next re-read
        self._suspect = ""  # a feed oddity that is a problem unless Redis lost data
        self._connected = False
        self._last_error = ""
        self._write_error = ""  # the last error reply to a write, until one succeeds
        self._nodeinfo = ""
        self._feed_id: Union[str, bytes] = "0-0"  # the change stream's last id read
        self._last_resync = 0.0
        self._resync_times: collections.deque[float] = collections.deque(maxlen=64)
        self._feed_problem = ""  # why the feed needed attention lately (for health)
        self._feed_problem_at = -math.inf
        self._stalled_at_seq = -1  # lease thread: the feed position at the last refresh
        self._stalled_since = 0.0  # ...and since when it has not moved
        self._resyncing = False  # the receiver is re-reading (or waiting to)
        self._started = False
        self._closed = False
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        #: counters, for health() and tests
        self.resyncs = 0
        self.lost_names = 0
        self.recoveries = 0

    @property
    def _ctx(self) -> BackendContext:
        """The registry's context (set by :meth:`start`)."""
        if self._state is None:
            raise RuntimeError("the backend has not been started")
        return self._state

    # -- keys ------------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return self._layout.key(*parts)

    def _name_key(self, kjson: str) -> str:
        return self._layout.name(kjson)

    # -- validation (caller's thread) ----------------------------------------------------

    def validate_key(self, namespace: Any, service: Any) -> None:
        for part, what in ((namespace, "namespace"), (service, "service")):
            problem = _key_problem(part)
            if problem:
                raise InvalidKeyError(
                    f"{what} must be a str, an int (64-bit), or a tuple of those (nested at "
                    f"most {MAX_KEY_DEPTH} deep) for the redis backend; got {problem}: "
                    f"{_brief(part)}"
                )

    def validate_metadata(self, metadata: Any) -> dict[Any, Any]:
        """The registry's own copy: the JSON form (tuples become lists)."""
        if metadata is None:
            return {}
        if not isinstance(metadata, Mapping):
            raise InvalidMetadataError(
                f"metadata must be a Mapping (such as a dict), not {type(metadata).__name__}"
            )
        copy = _json_object(metadata, "metadata")
        try:
            _dumps(copy).encode("utf-8")
        except (ValueError, RecursionError) as error:  # pragma: no cover - checked above
            raise InvalidMetadataError(f"metadata cannot be stored as JSON: {error}") from None
        return copy

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, context: BackendContext) -> None:
        """Connect, take the lease, read every name, start the threads.
        Runs in the caller's thread (``Registry.start``).

        Raises:
            RegistryUnavailableError: Redis is out of reach.
            ValueError: another live node uses ``node_id``.
        """
        if self._started:
            raise RuntimeError("a RedisBackend instance serves one registry only")
        self._started = True
        self._state = context
        call_timeout = float(context.call_timeout)
        io_timeout = self._io_timeout or min(1.0, call_timeout / 4)
        self._io_timeout = io_timeout
        options: dict[str, Any] = {
            "socket_timeout": io_timeout,
            "socket_connect_timeout": io_timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(self._redis_kwargs)
        self._r = redis.Redis.from_url(self.url, **options)
        blocking = dict(options, socket_timeout=_BLOCK_MS / 1000 + io_timeout)
        self._rx = redis.Redis.from_url(self.url, **blocking)  # the receiver's XREAD
        self._rb = redis.Redis.from_url(self.url, **blocking)  # askers' BLPOP
        scripts = Scripts(self._r)
        self._claim, self._update = scripts.claim, scripts.update
        self._acquire, self._refresh = scripts.acquire, scripts.refresh
        self._reap, self._snapshot = scripts.reap, scripts.snapshot
        self._leave, self._claim_many = scripts.leave, scripts.claim_many
        self._release, self._send = scripts.release, scripts.send
        name = str(context.name)
        self._messenger = Messenger(
            self.node_id, Codec(self._secret), call_timeout, self._send_blob,
            self._send_many, self._wait_reply, self._k("reply", ""), self._find_named,
            self.max_message_age, name,
        )
        try:
            self._take_lease(first=True)
            self._r.delete(self._k("inbox", self.node_id))
            snapshot = self._read_snapshot()
            self._install_snapshot(snapshot)
            self._last_resync = time.monotonic()
            # also our own node's names of an earlier incarnation (a reused node_id)
            self._reap_nodes(snapshot.dead_nodes, include_self=True)
        except redis.RedisError as error:
            self._close_clients()
            raise RegistryUnavailableError(
                f"cannot reach Redis at {safe_url(self.url)}: {error}"
            ) from error
        except BaseException:
            self._close_clients()
            raise
        self._connected = True
        if self._secret is None:
            message = (
                f"{name}: no secret set (backend_opts 'secret' or {_SECRET_ENV}): messages "
                "between processes are not signed, and whoever can write to Redis under "
                f"prefix {self.prefix!r} can run code in this process"
            )
            logger.warning("%s", message)
            # Also a Python warning: a library's log is silent until the
            # application configures logging, and this one must be seen.
            warnings.warn(message, UnsignedMessagesWarning, stacklevel=2)
        self._messenger.start()
        for target, role in ((self._lease_loop, "lease"), (self._receive_loop, "receiver")):
            thread = threading.Thread(target=target, name=f"pykka-registry-redis-{role}-{name}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
        self._groups.start(context, self._r, self._rx, self._messenger,  # groups:
                           lambda: self._inc, lambda: self._epoch)

    def close(self) -> None:
        """Stop the threads (joined, bounded), release this node's names and
        lease in Redis (best effort), fail pending asks. Never raises."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        self._stopping.set()
        io_timeout = self._io_timeout or 1.0
        reachable = self._connected
        if reachable:
            try:
                self._wake_receiver()
            except Exception:
                reachable = False
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(_BLOCK_MS / 1000 + 2 * io_timeout + 1.0)
        if self._messenger is not None:
            self._messenger.close(2 * io_timeout + 1.0)
        try:
            if not reachable:
                raise RegistryUnavailableError("Redis was out of reach")
            # No key of this node is left behind: its lease, info, names (one
            # node_stopped event each), held set and inbox; and if it was the
            # last live node of the prefix, the prefix's shared keys too.
            self._r.delete(self._k("node", self.node_id), self._k("nodeinfo", self.node_id))
            self._reap(keys=self._reap_keys(self.node_id),
                       args=[self.node_id, self.feed_maxlen, "node_stopped", self.prefix])
            self._r.delete(self._k("inbox", self.node_id), self._k("held", self.node_id))
            self._leave(keys=[self._k("nodes"), self._k("names"), self._k("events"),
                              self._k("seq"), self._k("epoch")],
                        args=[self.prefix, self.node_id])
        except Exception as error:
            logger.info("%s: could not release names at stop (%r); they expire with the "
                        "lease", self.node_id, error)
        self._groups.close(reachable)  # groups: after the lease and LEAVE
        self._close_clients()
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:  # pragma: no cover - only with a hung socket
            logger.warning("%s: threads still running after close: %s", self.node_id, alive)

    def _close_clients(self) -> None:
        for client in (self._r, self._rx, self._rb):
            try:
                if client is not None:
                    client.close()
            except Exception:
                pass

    # -- Redis calls -------------------------------------------------------------------------

    def _unavailable(self, error: BaseException, what: str) -> RegistryUnavailableError:
        """The error a failed write raises. An error *reply* (OOM at
        ``maxmemory``, a read-only replica, an ACL refusal...) means Redis
        answered: it is reported as a refusal, not as Redis being out of reach,
        and makes ``health()`` degraded until a write succeeds again."""
        if isinstance(error, redis.ResponseError):
            self._note_write_error(error)
            return RegistryUnavailableError(
                f"{what}: Redis at {safe_url(self.url)} refused the write ({error})")
        self._note_error(error)
        return RegistryUnavailableError(
            f"{what}: Redis at {safe_url(self.url)} is out of reach ({error})"
        )

    def _note_error(self, error: BaseException) -> None:
        if isinstance(error, redis.ResponseError):
            self._note_write_error(error)
            return
        self._connected = False
        self._last_error = f"{type(error).__name__}: {error}"

    def _note_write_error(self, error: BaseException) -> None:
        self._write_error = f"{type(error).__name__}: {error}"

    def _note_write_ok(self) -> None:
        if self._write_error:
            self._write_error = ""

    def _take_lease(self, first: bool = False) -> None:
        inc = os.urandom(8).hex()
        ttl_ms = int(self.lease_ttl * 1000)
        info = json.dumps({"inc": inc, "ttl_ms": ttl_ms, "host": socket.gethostname(),
                           "pid": os.getpid(), "since": time.time()})
        result = self._acquire(
            keys=[self._k("node", self.node_id), self._k("nodeinfo", self.node_id),
                  self._k("epoch"), self._k("nodes")],
            args=[inc, ttl_ms, info, os.urandom(8).hex(), "1" if first else "", self.node_id],
        )
        if _text(result[0]) == "taken":
            raise ValueError(f"node_id {self.node_id!r} is in use by a live node")
        epoch = _text(result[1])
        self._nodeinfo = info
        if self._messenger is not None:
            self._messenger.add_incarnation(inc)
        self._inc = inc
        self._lease_ok_at = time.monotonic()
        self._lapsed = False
        if self._epoch and epoch != self._epoch:
            self._data_lost = True  # Redis lost data: the next re-read starts afresh
            self._resync_requested = True
        self._epoch = epoch

    def _reap_keys(self, node_id: str) -> list[str]:
        return [self._k("node", node_id), self._k("held", node_id), self._k("names"),
                self._k("events"), self._k("seq"), self._k("nodes")]

    def _reap_nodes(self, nodes: Any, include_self: bool = False) -> None:
        """Delete the names of lapsed nodes (each a script: one ``del`` event
        per name, reason ``expired``)."""
        for node in nodes:
            node_id = _text(node)
            if include_self or node_id != self.node_id:
                self._reap(keys=self._reap_keys(node_id),
                           args=[node_id, self.feed_maxlen, "expired", self.prefix])

    def _inbox_ttl_ms(self) -> int:
        return int(max(60.0, 10 * self.lease_ttl) * 1000)

    def _send_blob(self, node_id: str, blob: bytes) -> bool:
        """Append ``blob`` to ``node_id``'s inbox; False if that node has no lease."""
        try:
            sent = self._send(
                keys=[self._k("node", node_id), self._k("inbox", node_id)],
                args=[blob, self.inbox_maxlen, self._inbox_ttl_ms()],
            )
        except redis.RedisError as error:
            raise self._unavailable(error, "send") from error
        return bool(sent)

    def _send_many(self, items: list[tuple[str, str, bytes]]) -> None:
        """Send replies (outbox thread): one round trip for the batch."""
        pipe = self._r.pipeline(transaction=False)
        for node_id, reply_key, blob in items:
            if reply_key:
                pipe.lpush(reply_key, blob)
                pipe.pexpire(reply_key, _REPLY_TTL_MS)
            else:
                self._send(keys=[self._k("node", node_id), self._k("inbox", node_id)],
                           args=[blob, self.inbox_maxlen, self._inbox_ttl_ms()], client=pipe)
        pipe.execute(raise_on_error=False)

    def _wait_reply(self, reply_key: str, timeout: float) -> Optional[bytes]:
        """Pop a reply (caller's thread), waiting at most ``timeout`` (<= 0.5 s)."""
        try:
            popped = self._rb.blpop([reply_key], timeout=max(0.01, min(timeout,
                                                                      _BLOCK_MS / 1000)))
        except redis.RedisError as error:
            raise self._unavailable(error, "ask") from error
        return None if popped is None else popped[1]

    def _wake_receiver(self) -> None:
        """Make the receiver's blocking XREAD return (a signed no-op message)."""
        if self._messenger is None:
            return
        blob = self._messenger.codec.encode(
            {"k": WAKE, "id": "", "src": self.node_id, "dst": self.node_id, "to": "",
             "t": time.time(), "ttl": 0}, b"")
        inbox = self._k("inbox", self.node_id)
        pipe = self._r.pipeline(transaction=False)
        pipe.xadd(inbox, {"m": blob}, maxlen=self.inbox_maxlen, approximate=True)
        pipe.pexpire(inbox, self._inbox_ttl_ms())
        pipe.execute()

    # -- the local copy (writers: server thread, or start() before any thread) -------------

    def _put(self, entry: Claim) -> Optional[Claim]:
        """Store ``entry`` in the local copy (takes the lock); return what it replaced."""
        with self._lock:
            return LocalTables._put(self, entry)

    def _drop(self, entry: Claim) -> bool:
        """Remove ``entry`` if it is still the one stored under its name."""
        with self._lock:
            if self._names.get(entry.namespace, _EMPTY).get(entry.service) is not entry:
                return False
            self._forget(entry)
            return True

    def _on_added(self, entry: Claim) -> None:
        if entry.node == self.node_id:
            self._local_refs[entry.actor_ref.actor_urn] = entry.actor_ref
            self._named_urns.add(entry.actor_ref.actor_urn)
        else:
            node_key = (entry.node, entry.inc)
            self._node_refs[node_key] = self._node_refs.get(node_key, 0) + 1

    def _on_removed(self, entry: Claim) -> None:
        urn = entry.actor_ref.actor_urn
        if urn not in self._by_urn:  # that actor holds no other name here
            self._local_refs.pop(urn, None)
            if entry.node != self.node_id:
                self._actor_links.pop(urn, None)
                self._remote_refs.pop(urn, None)
        if entry.node != self.node_id:
            node_key = (entry.node, entry.inc)
            left = self._node_refs.get(node_key, 0) - 1
            if left > 0:
                self._node_refs[node_key] = left
            else:
                self._node_refs.pop(node_key, None)
                self._node_links.pop(node_key, None)

    def _remote_ref(self, urn: str, actor_class: str, node: str, inc: str) -> RemoteActorRef:
        assert self._messenger is not None
        node_key = (node, inc)
        with self._lock:
            node_link = self._node_links.get(node_key)
            if node_link is None:
                node_link = self._node_links[node_key] = NodeLink(node, inc)
            link = self._actor_links.get(urn)
            ref = self._remote_refs.get(urn)
            if link is None or ref is None:
                link = self._actor_links[urn] = ActorLink(urn, node_link, self._messenger)
                ref = self._remote_refs[urn] = RemoteActorRef(urn, actor_class, node, link)
            elif link.node is not node_link:
                link.node = node_link
                if link.dead:
                    link.dead = False
                    link.stopped.clear()
            return ref

    def _remote_claim(self, record: Record, rev: Optional[int] = None) -> Claim:
        """The local copy's entry for a (checked) record of another node."""
        ref = self._remote_ref(record.urn, record.actor_class, record.node, record.inc)
        metadata = record.metadata
        return Claim(record.key[0], record.key[1], ref, metadata, is_flat(metadata),
                     node=record.node, inc=record.inc, token=record.token,
                     rev=record.rev if rev is None else rev, actor_class=record.actor_class)

    def _own_claim(self, key: Key, actor_ref: Any, metadata: Mapping[str, Any], token: int,
                   rev: int) -> Claim:
        return Claim(key[0], key[1], actor_ref, metadata, is_flat(metadata), node=self.node_id,
                     inc=self._inc, token=token, rev=rev,
                     actor_class=actor_ref.actor_class.__qualname__)

    def _find_actor(self, urn: str) -> Optional[Any]:
        """A live local actor by URN, named here or not (server thread: a
        claim of this node that the local copy does not know)."""
        ref = self._local_refs.get(urn)
        if ref is None:
            ref = pykka.ActorRegistry.get_by_urn(urn)
        if ref is None or _deathwatch.is_dead(ref):
            return None
        return ref

    def _find_named(self, urn: str) -> Optional[Any]:
        """The live local actor ``urn`` if it holds, or held, a name in this
        registry, else None (receiver thread): messages from other processes
        reach actors named here only (or members of a group here, and the
        groups' fan-out endpoints: ``_groups.RedisGroups.find``), never any
        actor of the process by its URN. (An actor that lost its name stays
        reachable until it dies, so that ``stop_namespace`` from another
        process can still stop it.)"""
        ref = self._local_refs.get(urn)
        if ref is None and urn in self._named_urns:
            ref = pykka.ActorRegistry.get_by_urn(urn)
        if ref is None:  # groups: a group's fan-out endpoint, or a member here
            return self._groups.find(urn)
        if _deathwatch.is_dead(ref):
            return None
        return ref

    def _publish(self, event: Any) -> None:
        events = self._ctx.events
        if events.active:
            events.publish(event)

    # -- writes (server thread) ------------------------------------------------------------

    # Every write below runs in the server thread holding the registry's write
    # lock. Redis round trips run inside ``self._ctx.unlocked()``, so that a
    # dying actor's clean-up (remove_actor, in its own thread) is never held
    # up by the network; after each wait, what the wait may have changed is
    # checked again (the actor died, the entry was dropped) before the local
    # copy is touched.

    def _io(self) -> Any:
        """The context in which a write waits for Redis (the lock released)."""
        return self._ctx.unlocked()

    def _pre_claim(self, entry: Entry, is_alive: Callable[[Any], bool],
                   check: bool = True) -> str:
        """The token of an own dead claim ``entry`` may replace ("" if none).

        Raises:
            AlreadyRegisteredError: (with ``check``) another live actor of
                this node holds it. Without ``check`` the claim script finds
                that holder (a batch reports the first conflict in its order).
        """
        current = self.get(entry.namespace, entry.service)
        if current is not None and current.node == self.node_id and \
                current.actor_ref.actor_urn != entry.actor_ref.actor_urn:
            if is_alive(current.actor_ref):
                if check:
                    raise AlreadyRegisteredError(entry.namespace, entry.service,
                                                 current.actor_ref)
                return ""
            return str(current.token)
        return ""

    def _claimed(self, entry: Entry, seq: int) -> Optional[Entry]:
        """Store the claim ``entry`` got (token ``seq``) in the local copy; return
        what :meth:`register` returns for it."""
        key = (entry.namespace, entry.service)
        kjson = key_json(*key)
        claim = self._own_claim(key, entry.actor_ref, entry.metadata, seq, seq)
        previous = self._put(claim)
        self._note_own_write(kjson, seq)
        if previous is None or previous.node == self.node_id:
            return previous
        self._publish(Unregistered(key[0], key[1], previous.actor_ref,
                                   UnregisterReason("expired")))
        return None

    def _own_holder(self, holder: Record, is_alive: Callable[[Any], bool]) -> str:
        """A claim of this node holds the name in Redis: the token to replace
        if its actor is dead.

        Raises:
            AlreadyRegisteredError: its actor lives.
        """
        local = self._find_actor(holder.urn)
        if local is not None and is_alive(local):
            raise AlreadyRegisteredError(holder.key[0], holder.key[1], local)
        return str(holder.token)

    def register(self, entry: Entry, is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        key = (entry.namespace, entry.service)
        actor_ref = entry.actor_ref
        urn = actor_ref.actor_urn
        kjson = key_json(*key)
        meta = _dumps(entry.metadata)
        replace_token = self._pre_claim(entry, is_alive)
        actor_class = actor_ref.actor_class.__qualname__
        with self._being_named([urn]):
            return self._register_claim(entry, key, kjson, meta, replace_token, actor_class,
                                        is_alive)

    @contextlib.contextmanager
    def _being_named(self, urns: list[str]) -> Iterator[None]:
        """Count ``urns`` as named here while their claim is on its way: the
        claim's feed event can reach another process (which may then message
        the actor) before this process has stored the claim locally. Undone
        if the claim fails and the actor holds no other name here."""
        added = [urn for urn in urns if urn not in self._named_urns]
        self._named_urns.update(added)
        try:
            yield
        except BaseException:
            for urn in added:
                if urn not in self._local_refs:
                    self._named_urns.discard(urn)
            raise

    def _register_claim(self, entry: Entry, key: Key, kjson: str, meta: str,
                        replace_token: str, actor_class: str,
                        is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        actor_ref = entry.actor_ref
        urn = actor_ref.actor_urn
        for _attempt in range(3):
            try:
                with self._io():
                    result = self._claim(
                        keys=[self._name_key(kjson), self._k("names"), self._k("events"),
                              self._k("seq"), self._k("node", self.node_id),
                              self._k("held", self.node_id)],
                        args=[self.prefix, self.node_id, self._inc, urn, actor_class, meta,
                              kjson, replace_token, self.feed_maxlen],
                    )
            except redis.RedisError as error:
                raise self._unavailable(error, "register") from error
            tag = _text(result[0])
            if tag == "ok":
                self._note_write_ok()
                seq = int(result[1])
                if _deathwatch.death_seen(actor_ref):
                    # It died while we waited for Redis: its clean-up may have
                    # run already. Keep nothing; release the claim in Redis
                    # (and let the feed not bring it back meanwhile).
                    self._note_own_write(kjson, seq)
                    self._queue_release([(self._own_claim(key, actor_ref, {}, seq, seq),
                                          "stopped", "")])
                    raise ActorNotAliveError(f"{actor_ref} died while it was being registered")
                return self._claimed(entry, seq)
            if tag == "nolease":
                self._recover()
                continue
            holder = _checked(_holder(result), "the holder of a name", kjson=kjson)
            if holder is None:
                raise RegistryUnavailableError(
                    f"could not claim {_brief(key)}: a live node holds it with a record this "
                    "version cannot read (see the warning in the log)")
            if holder.node == self.node_id:
                replace_token = self._own_holder(holder, is_alive)  # dead: take its place
                continue
            existing = self._learn(holder)
            raise AlreadyRegisteredError(key[0], key[1], existing)
        raise RegistryUnavailableError(f"could not claim {key!r}: the lease keeps lapsing")

    def register_many(self, entries: Sequence[Entry],
                      is_alive: Callable[[Any], bool]) -> list[Optional[Entry]]:
        """All or nothing, in one Lua call (``_CLAIM_MANY``): every name is
        checked first, then all are claimed; a name with a live holder raises
        :class:`AlreadyRegisteredError` for the first such entry and nothing
        is written."""
        if not entries:
            return []
        with self._being_named([e.actor_ref.actor_urn for e in entries]):
            return self._register_many_claim(entries, is_alive)

    def _register_many_claim(self, entries: Sequence[Entry],
                             is_alive: Callable[[Any], bool]) -> list[Optional[Entry]]:
        replace = [self._pre_claim(entry, is_alive, check=False) for entry in entries]
        texts = [key_json(e.namespace, e.service) for e in entries]
        keys = [self._k("names"), self._k("events"), self._k("seq"),
                self._k("node", self.node_id), self._k("held", self.node_id),
                *(self._name_key(text) for text in texts)]
        for _attempt in range(len(entries) + 3):
            args: list[Any] = [self.prefix, self.node_id, self._inc, self.feed_maxlen,
                               len(entries)]
            for entry, text, token in zip(entries, texts, replace):
                args += [entry.actor_ref.actor_urn, entry.actor_ref.actor_class.__qualname__,
                         _dumps(entry.metadata), text, token]
            try:
                with self._io():
                    result = self._claim_many(keys=keys, args=args)
            except redis.RedisError as error:
                raise self._unavailable(error, "register_many") from error
            tag = _text(result[0])
            if tag == "ok":
                self._note_write_ok()
                tokens = [int(t) for t in result[1:]]
                dead = [e for e in entries if _deathwatch.death_seen(e.actor_ref)]
                if dead:  # as in register: keep nothing, release everything
                    for text, seq in zip(texts, tokens):
                        self._note_own_write(text, seq)
                    self._queue_release([
                        (self._own_claim((e.namespace, e.service), e.actor_ref, {}, t, t),
                         "stopped", "") for e, t in zip(entries, tokens)])
                    raise ActorNotAliveError(
                        f"{dead[0].actor_ref} (for {dead[0].service!r}) died while it was being "
                        "registered; nothing was registered", service=dead[0].service)
                return [self._claimed(e, t) for e, t in zip(entries, tokens)]
            if tag == "nolease":
                self._recover()
                continue
            index = int(result[1]) - 1
            entry, text = entries[index], texts[index]
            holder = _checked(_holder(result[1:]), "the holder of a name", kjson=text)
            if holder is None:
                raise RegistryUnavailableError(
                    f"could not claim {_brief((entry.namespace, entry.service))}: a live node "
                    "holds it with a record this version cannot read")
            if holder.node == self.node_id:
                replace[index] = self._own_holder(holder, is_alive)
                continue
            raise AlreadyRegisteredError(entry.namespace, entry.service, self._learn(holder))
        raise RegistryUnavailableError("could not claim the batch: the lease keeps lapsing")

    def _learn(self, record: Record) -> RemoteActorRef:
        """Apply a remote holder's record read from Redis (if newer than ours)."""
        key = record.key
        current = self.get(*key)
        if current is not None and current.rev >= record.rev and \
                isinstance(current.actor_ref, RemoteActorRef):
            return current.actor_ref
        claim = self._remote_claim(record)
        if current is not None and current.node == self.node_id:
            self._lose(current, claim)
        elif current is None or current.rev < record.rev:
            self._put(claim)
            self._publish_change(current, claim)
        assert isinstance(claim.actor_ref, RemoteActorRef)
        return claim.actor_ref

    def unregister(
        self, namespace: Hashable, service: Hashable, actor_ref: Any = None
    ) -> Optional[Entry]:
        current = self.get(namespace, service)
        if current is None or (
            actor_ref is not None and current.actor_ref.actor_urn != actor_ref.actor_urn
        ):
            return None
        removed = self._unregister_entries([current], "unregistered")
        return removed[0] if removed else None

    def unregister_many(self, namespace: Hashable, services: Sequence[Hashable]) -> list[Entry]:
        """Every name of ``services`` that is held (missing ones skipped), in
        one Lua call (``_RELEASE``); the removed entries in the order given."""
        found = [self.get(namespace, service) for service in services]
        return self._unregister_entries([e for e in found if e is not None], "unregistered")

    def clear_namespace(self, namespace: Hashable) -> list[Entry]:
        return self._unregister_entries(self.entries(namespace), "namespace_stopped")

    def _unregister_entries(self, entries: list[Claim], why: str) -> list[Entry]:
        """Fenced deletes in Redis, then the local copy: the entries still
        stored (a death clean-up during the wait may have removed some: those
        are not returned, their events are out already)."""
        self._delete_in_redis([(entry, why, "") for entry in entries])
        return [entry for entry in entries if self._drop(entry)]

    def _delete_in_redis(self, items: list[tuple[Claim, str, str]]) -> None:
        """Fenced delete of each ``(entry, why, error text)``'s claim, in one
        Lua call: a claim that changed hands since (another token, or another
        node) is left alone. The write lock is released during the call.

        Raises:
            RegistryUnavailableError: Redis is out of reach or refused (nothing
                known deleted).
        """
        if not items:
            return
        texts = [key_json(entry.namespace, entry.service) for entry, _why, _err in items]
        args: list[Any] = [self.prefix, self.feed_maxlen, len(items)]
        for (entry, why, err), text in zip(items, texts):
            args += [text, entry.token, entry.node, why, err]
        try:
            with self._io():
                results = self._release(
                    keys=[self._k("names"), self._k("events"), self._k("seq"),
                          *(self._name_key(text) for text in texts)],
                    args=args)
        except redis.RedisError as error:
            raise self._unavailable(error, "unregister") from error
        self._note_write_ok()
        for text, seq in zip(texts, results):
            if int(seq):
                self._note_own_write(text, int(seq))

    def update_metadata(
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> Entry:
        """Fenced by this node's own claim: the name must be held by an actor
        of this process, under this node's live lease. A name held by another
        process raises :class:`NotHeldHereError` (the token this node learnt
        from the feed is never used to write)."""
        key = (namespace, service)
        kjson = key_json(*key)
        meta = _dumps(metadata)
        for _attempt in range(3):
            found = self.get(namespace, service)
            if found is None:
                raise NotRegisteredError(namespace, service)
            current: Claim = found
            if current.node != self.node_id:
                raise NotHeldHereError(namespace, service, current.node)
            try:
                with self._io():
                    result = self._update(
                        keys=[self._name_key(kjson), self._k("events"), self._k("seq")],
                        args=[self.prefix, current.token, meta, self.feed_maxlen, kjson,
                              self.node_id, current.inc],
                    )
            except redis.RedisError as error:
                raise self._unavailable(error, "update_metadata") from error
            tag = _text(result[0])
            if tag == "ok":
                self._note_write_ok()
                seq = int(result[1])
                self._note_own_write(kjson, seq)
                if self.get(namespace, service) is not current:
                    # its actor died (or the copy changed) while we waited
                    raise NotRegisteredError(namespace, service, "its actor stopped meanwhile")
                updated = attrs.evolve(current, metadata=metadata, flat=is_flat(metadata),
                                       rev=seq)
                self._put(updated)
                return updated
            if tag == "gone":
                if self._drop(current):
                    self._publish(Unregistered(namespace, service, current.actor_ref,
                                               UnregisterReason("expired")))
                raise NotRegisteredError(namespace, service, "it is no longer held")
            if tag == "lapsed":  # our claim is of an older lease: claim again, retry
                self._recover()
                continue
            # moved: another claim holds the name now
            holder = _checked(_holder(result), "the holder of a name", kjson=kjson)
            if holder is None:
                raise NotRegisteredError(namespace, service,
                                         "its record in Redis cannot be read")
            if holder.node == self.node_id:  # another claim of ours: the copy was stale
                self._adopt(holder, holder.rev, self.get(namespace, service))
                continue
            self._learn(holder)
            raise NotRegisteredError(namespace, service,
                                     f"this process lost it to node {holder.node}")
        raise NotRegisteredError(namespace, service, "the name keeps changing hands")

    def remove_actor(self, actor_ref: Any) -> list[Entry]:
        """A local actor died: drop its names from the local copy at once.

        Runs in the dying actor's thread, under the registry's write lock: no
        I/O, no waiting. The deletes in Redis are queued and sent by the
        server thread (:meth:`_flush_releases`, through ``context.submit``);
        if Redis is out of reach they are retried with the lease thread's
        recovery. Returns only this node's entries (another registry's names
        of the same actor are that registry's business). Never raises."""
        urn = actor_ref.actor_urn
        self._named_urns.discard(urn)
        if urn not in self._local_refs:
            return []
        with self._lock:
            entries = [e for e in self._held_by(urn) if e.node == self.node_id]
            for entry in entries:
                self._forget(entry)
        reason = _deathwatch.death_reason(actor_ref)
        why, err = ("crashed", _brief(reason)[:500]) if reason is not None else ("stopped", "")
        self._queue_release([(entry, why, err) for entry in entries])
        return entries

    def _queue_release(self, items: list[tuple[Claim, str, str]]) -> None:
        """Delete these claims in Redis soon, from the server thread. Any
        thread; never blocks."""
        if not items:
            return
        self._releases.extend(items)
        if not self._release_queued and not self._closed:
            self._release_queued = True
            self._ctx.submit(self._flush_releases)

    def _flush_releases(self, state: Any = None) -> None:
        """Send the queued deletes (server thread, write lock held; released
        for the round trip). What fails waits in ``_orphans`` for recovery."""
        self._release_queued = False
        items = []
        while self._releases:
            items.append(self._releases.popleft())
        if not items or self._closed:
            return
        try:
            self._delete_in_redis(items)
        except RegistryUnavailableError:
            self._orphans.extend(items)
            self._needs_recover = True

    # -- reads (any thread) ------------------------------------------------------------------

    def owns(self, actor_ref: Any) -> bool:
        return actor_ref.actor_urn in self._local_refs

    def health(self) -> Mapping[str, Any]:
        now = time.monotonic()
        lease_age = now - self._lease_ok_at
        problems = []
        if not self._connected:
            problems.append(f"Redis out of reach ({self._last_error})")
        if self._lapsed or lease_age > self.lease_ttl:
            problems.append("this node's lease lapsed or is not confirmed")
        if self._write_error:
            problems.append(f"Redis refuses writes ({self._write_error})")
        if self._orphans:
            problems.append(f"{len(self._orphans)} names of dead actors wait to be deleted")
        if now - self._feed_problem_at < self._FEED_ALERT_S:
            problems.append(f"change feed: {self._feed_problem} (someone else writes to "
                            f"{self._k('events')}?)")
        if self._closed:
            problems.append("closed")
        return {
            "status": "degraded" if problems else "healthy",
            "problems": problems,
            "node_id": self.node_id,
            "url": safe_url(self.url),
            "prefix": self.prefix,
            "connected": self._connected,
            "lease_age_s": round(lease_age, 3),
            "entries": self._total,
            "namespaces": len(self._names),
            "feed_seq": self._feed_seq,
            "resyncs": self.resyncs,
            "recoveries": self.recoveries,
            "lost_names": self.lost_names,
            "signed": self._secret is not None,
            "writable": not self._write_error,
            "messages_delivered": self._messenger.delivered if self._messenger else 0,
            "messages_dropped": self._messenger.dropped if self._messenger else 0,
        }

    # -- applying remote changes (server thread, through context.submit) -------------------

    def _publish_change(self, old: Optional[Claim], new: Claim) -> None:
        key = (new.namespace, new.service)
        if old is not None and old.actor_ref.actor_urn == new.actor_ref.actor_urn:
            self._publish(MetadataUpdated(key[0], key[1], new.actor_ref, new.metadata))
            return
        if old is not None:
            self._publish(Unregistered(key[0], key[1], old.actor_ref,
                                       UnregisterReason("expired")))
        self._publish(Registered(key[0], key[1], new.actor_ref, new.metadata))

    def _lose(self, entry: Claim, holder: Optional[Claim]) -> None:
        """``entry`` (ours) is held by another node now: report it lost."""
        logger.warning(
            "%s: lost the name %r in namespace %r (held by %s) to node %s",
            self.node_id, entry.service, entry.namespace, entry.actor_ref,
            holder.node if holder else "?")
        self.lost_names += 1
        if holder is not None:
            self._put(holder)
        else:
            self._drop(entry)
        self._publish(Unregistered(entry.namespace, entry.service, entry.actor_ref, LOST))
        if holder is not None:
            self._publish(Registered(holder.namespace, holder.service, holder.actor_ref,
                                     holder.metadata))

    def _note_own_write(self, kjson: str, seq: int) -> None:
        """Remember an own write until the feed has passed it (server thread)."""
        self._write_count += 1
        self._own_pending[kjson] = seq
        self._own_writes_at[kjson] = self._write_count
        self._pending_order.append((seq, kjson))

    def _forget_own_writes(self, upto: int) -> None:
        """The feed has passed ``upto``: own writes up to there need no guard."""
        order, pending = self._pending_order, self._own_pending
        while order and order[0][0] <= upto:
            seq, kjson = order.popleft()
            if pending.get(kjson) == seq:
                del pending[kjson]
                self._own_writes_at.pop(kjson, None)

    def _apply_events(self, batch: list[tuple[int, Record]], upto: int, state: Any) -> None:
        """Apply checked feed events (server thread), each on its own (one that
        fails is logged and skipped, the others still apply), then forget own
        writes the feed has passed (``upto``: the last sequence number read)."""
        recover = False
        for seq, record in batch:
            try:
                recover = self._apply_event(seq, record) or recover
            except Exception:  # a bug must not drop the other changes of the batch
                logger.exception("%s: could not apply change %d of %r; skipped", self.node_id,
                                 seq, record.key)
        self._forget_own_writes(upto)
        if recover:
            self._recover()

    def _apply_event(self, seq: int, record: Record) -> bool:
        """Apply one change; True if this node must claim names again."""
        key = record.key
        pending = self._own_pending.get(record.kjson)
        if pending is not None and seq <= pending:
            return False  # our own write, or older than it
        current = self.get(*key)
        if current is not None and current.rev >= seq:
            return False
        if record.op in ("set", "upd"):
            if record.node == self.node_id:
                self._adopt(record, seq, current)
                return False
            claim = self._remote_claim(record, seq)
            if current is not None and current.node == self.node_id:
                self._lose(current, claim)
                return False
            self._put(claim)
            self._publish_change(current, claim)
            return False
        # del
        if current is None or current.token != record.token or current.node != record.node or \
                (current.node != self.node_id and current.inc != record.inc):
            return False
        why = record.why
        if current.node == self.node_id and why == "expired":
            # Our lease lapsed and another node cleared our names: claim them
            # again (if still free) instead of dropping them.
            self._put(attrs.evolve(current, inc=""))
            return True
        actor_ref = current.actor_ref
        if isinstance(actor_ref, RemoteActorRef):
            # Before the drop: a reader who sees the name gone must also see
            # the remote ref dead.
            link = actor_ref._link
            if why == "expired":
                link.node.lapsed = True
            elif why in ("stopped", "crashed", "node_stopped"):
                link.mark_dead()
        self._drop(current)
        error = RemoteActorError(record.error) if why == "crashed" else None
        self._publish(Unregistered(key[0], key[1], actor_ref, UnregisterReason(why, error)))
        return False

    def _adopt(self, record: Record, seq: int, current: Optional[Claim]) -> None:
        """A claim by this node that the local copy does not know (a write whose
        answer was lost): keep it if its actor lives, else delete it."""
        key = record.key
        actor_ref = self._find_actor(record.urn)
        if actor_ref is not None and record.inc == self._inc:
            claim = self._own_claim(key, actor_ref, record.metadata, record.token, seq)
            self._put(claim)
            self._publish_change(current, claim)
            return
        orphan = Claim(key[0], key[1], _Urn(record.urn), {}, True, node=self.node_id,
                       inc=record.inc, token=record.token, rev=seq)
        self._queue_release([(orphan, "stopped", "")])

    def _recover(self, state: Any = None) -> None:
        """Take a new lease if ours lapsed, claim again every name of a live
        local actor whose claim is not current, report those taken by others,
        retry deletes that failed. Server thread; idempotent."""
        self._recover_queued = False
        if self._closed:
            return
        try:
            with self._io():
                if _text(self._r.get(self._k("node", self.node_id))) != self._inc:
                    if self._inc:
                        logger.warning("%s: the lease lapsed (paused, or Redis lost it): "
                                       "taking a new one and claiming our names again",
                                       self.node_id)
                    self._take_lease()
                    self.recoveries += 1
            if self._orphans:
                orphans = list(self._orphans)
                self._delete_in_redis(orphans)
                del self._orphans[:len(orphans)]
            with self._lock:
                todo = [entry for services in self._names.values()
                        for entry in services.values()
                        if entry.node == self.node_id and entry.inc != self._inc]
            if todo:
                self._reclaim(todo)
            self._needs_recover = False
            self._connected = True
        except (redis.RedisError, RegistryUnavailableError) as error:
            if isinstance(error, redis.RedisError):
                self._note_error(error)
            self._needs_recover = True

    def _reclaim(self, todo: list[Claim]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for entry in todo:
            kjson = key_json(entry.namespace, entry.service)
            self._claim(
                keys=[self._name_key(kjson), self._k("names"), self._k("events"),
                      self._k("seq"), self._k("node", self.node_id),
                      self._k("held", self.node_id)],
                args=[self.prefix, self.node_id, self._inc, entry.actor_ref.actor_urn,
                      entry.actor_class, _dumps(entry.metadata), kjson, entry.token,
                      self.feed_maxlen],
                client=pipe,
            )
        with self._io():
            results = pipe.execute(raise_on_error=False)
        for entry, result in zip(todo, results):
            if isinstance(result, Exception):
                self._note_error(result)
                self._needs_recover = True
                continue
            tag = _text(result[0])
            key = (entry.namespace, entry.service)
            kjson = key_json(*key)
            still = self.get(*key) is entry  # else its actor died during the round trip
            if tag == "ok":
                self._note_write_ok()
                seq = int(result[1])
                self._note_own_write(kjson, seq)
                if still:
                    self._put(attrs.evolve(entry, inc=self._inc, token=seq, rev=seq))
                else:
                    self._queue_release([(attrs.evolve(entry, token=seq), "stopped", "")])
            elif tag == "held":
                holder = _checked(_holder(result), "the holder of a name", kjson=kjson)
                if not still:
                    if holder is not None and holder.node != self.node_id:
                        self._learn(holder)
                elif holder is None:
                    self._lose(entry, None)
                elif holder.node == self.node_id:
                    self._drop(entry)
                else:
                    self._lose(entry, self._remote_claim(holder))
            else:
                self._needs_recover = True

    def _submit_recover(self) -> None:
        if not self._recover_queued and not self._closed:
            self._recover_queued = True
            self._ctx.submit(self._recover)

    # -- snapshots -------------------------------------------------------------------------

    def _read_snapshot(self) -> _Snapshot:
        """Every live name record (malformed ones skipped with a warning),
        with the counter, epoch and stream position they are current at."""
        writes_before = self._write_count
        raw = self._snapshot(keys=[self._k("names"), self._k("seq"), self._k("epoch"),
                                   self._k("events")], args=[self.prefix])
        flat = raw[2]
        width = len(_ROW_FIELDS)
        records = []
        for i in range(0, len(flat) - width + 1, width):
            record = _checked(dict(zip(_ROW_FIELDS, flat[i:i + width])), "a name record")
            if record is not None:
                records.append(record)
        return _Snapshot(_counter(raw[0]), _text(raw[1]), tuple(records),
                         tuple(_text(n) for n in raw[3]), _text(raw[4]) or "0-0",
                         writes_before)

    def _install_snapshot(self, snapshot: _Snapshot) -> None:
        """At start: fill the empty local copy (no server, no listeners yet)."""
        for record in snapshot.records:
            if record.node != self.node_id:
                self._put(self._remote_claim(record))
        self._feed_seq = snapshot.seq
        self._feed_id = snapshot.feed_id

    def _apply_snapshot(self, snapshot: _Snapshot, lost: bool, state: Any) -> None:
        """Make the local copy equal to ``snapshot`` (server thread): publish
        the differences, report own names taken by others, claim again own
        names that vanished.

        ``lost``: Redis lost data (restart without persistence, flush, failover
        that lost writes): the counter restarted, so every token, revision and
        own-write guard from before means nothing in the new numbering and is
        discarded here; only own writes made after the snapshot was read stay
        protected."""
        self.resyncs += 1
        if lost:
            fresh = {kjson for kjson, w in self._own_writes_at.items()
                     if w > snapshot.writes_before}
            self._own_pending = {k: v for k, v in self._own_pending.items() if k in fresh}
            self._own_writes_at = {k: v for k, v in self._own_writes_at.items() if k in fresh}
            self._pending_order = collections.deque(
                (seq, k) for seq, k in self._pending_order if k in fresh)
            protected = {key_from_json(kjson) for kjson in fresh}
        else:
            self._forget_own_writes(snapshot.seq)
            protected = {key_from_json(kjson) for kjson in self._own_pending}
        rows = {record.key: record for record in snapshot.records}
        with self._lock:
            local = [entry for services in self._names.values() for entry in services.values()]
        recover = False
        for entry in local:
            key = (entry.namespace, entry.service)
            if key in rows or key in protected:
                continue
            if entry.node == self.node_id:
                self._put(attrs.evolve(entry, inc="", token=0, rev=0) if lost
                          else attrs.evolve(entry, inc=""))
                recover = True
            elif self._drop(entry):
                self._publish(Unregistered(key[0], key[1], entry.actor_ref,
                                           UnregisterReason("expired")))
        for key, row in rows.items():
            if key in protected:
                continue
            try:
                recover = self._apply_row(row, lost) or recover
            except Exception:  # one record must not stop the others
                logger.exception("%s: could not apply the record of %r; skipped",
                                 self.node_id, key)
        if recover or self._needs_recover:
            self._recover()

    def _apply_row(self, row: Record, lost: bool) -> bool:
        """Make one name equal to its snapshot record; True if this node must
        claim names again."""
        key = row.key
        current = self.get(*key)
        if row.node == self.node_id:
            if current is not None and current.node == self.node_id and \
                    current.actor_ref.actor_urn == row.urn and \
                    (lost or current.token == row.token):
                if (current.inc, current.token, current.rev) != (row.inc, row.token, row.rev):
                    self._put(attrs.evolve(current, inc=row.inc, token=row.token, rev=row.rev))
                return row.inc != self._inc
            self._adopt(row, row.rev, current)
            return False
        if current is not None and (current.node, current.inc, current.token, current.rev,
                                    current.actor_ref.actor_urn) == \
                (row.node, row.inc, row.token, row.rev, row.urn):
            return False  # (the incarnation tells claims apart across a data loss)
        claim = self._remote_claim(row)
        if current is not None and current.node == self.node_id:
            self._lose(current, claim)
            return False
        if lost and current is not None and current.node == row.node and \
                current.actor_ref.actor_urn == row.urn and current.metadata == row.metadata:
            self._put(claim)  # the same claim, renumbered: no event
            return False
        self._put(claim)
        self._publish_change(current, claim)
        return False

    # -- threads -----------------------------------------------------------------------------

    def _lease_loop(self) -> None:
        """Refresh the lease every ``lease_ttl / 3`` (and check that Redis
        accepts writes); watch other nodes' leases every
        ``min(lease_ttl / 3, 0.5)`` s; ask the server to recover when needed."""
        tick = min(self.lease_ttl / 3, 0.5)
        every = self.lease_ttl / 3
        ttl_ms = int(self.lease_ttl * 1000)
        next_refresh = time.monotonic() + every
        while not self._stopping.wait(max(0.0, min(tick, next_refresh - time.monotonic()))):
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    next_refresh = now + every
                    self._refresh_lease(now, ttl_ms)
                self._watch_nodes()
                self._connected = True
            except redis.RedisError as error:
                self._note_error(error)
                self._needs_recover = True
                continue
            except Exception:  # pragma: no cover - a bug must not kill the lease
                logger.exception("%s: lease thread error", self.node_id)
                continue
            if self._needs_recover or self._orphans:
                self._submit_recover()

    def _refresh_lease(self, now: float, ttl_ms: int) -> None:
        ok, epoch, seq = self._refresh(
            keys=[self._k("node", self.node_id), self._k("nodeinfo", self.node_id),
                  self._k("epoch"), self._k("seq")],
            args=[self._inc, ttl_ms],
        )
        counter = _counter(seq)
        if _text(epoch) != self._epoch or counter < self._feed_seq:
            # Redis lost data (restart, failover, flush): re-read, re-assert.
            self._data_lost = True
            self._resync_requested = True
            self._needs_recover = True
            self._wake_receiver()
            return
        if not ok:
            if not self._lapsed:
                logger.warning("%s: this node's lease lapsed", self.node_id)
            self._lapsed = True
            self._needs_recover = True
            return
        self._lease_ok_at = now
        self._lapsed = False
        # The refresh only extends keys, which Redis allows even when it
        # refuses writes (at maxmemory, say): probe with a real write.
        try:
            self._r.set(self._k("nodeinfo", self.node_id), self._nodeinfo, xx=True, px=ttl_ms)
        except redis.ResponseError as error:
            self._note_write_error(error)
        else:
            self._note_write_ok()
        # A feed that does not advance for a while although the counter is
        # ahead (its reader is stuck behind an entry someone else appended):
        # re-read everything. Not while a re-read is due or running (the
        # reader does not advance then, by design).
        feed_seq = self._feed_seq
        if counter <= feed_seq or feed_seq != self._stalled_at_seq or \
                self._resync_requested or self._resyncing:
            self._stalled_at_seq = feed_seq if counter > feed_seq else -1
            self._stalled_since = now
        elif now - self._stalled_since >= self._STALL_S:
            self._note_feed_problem("the change feed stopped advancing")
            self._resync_requested = True
            self._stalled_since = now
            self._wake_receiver()

    def _note_feed_problem(self, what: str) -> None:
        self._feed_problem = what
        self._feed_problem_at = time.monotonic()

    def _watch_nodes(self) -> None:
        with self._lock:
            nodes = list(self._node_refs)
        if not nodes:
            return
        values = self._r.mget([self._k("node", node) for node, _ in nodes])
        lapsed = set()
        for (node, inc), value in zip(nodes, values):
            if _text(value) != inc:
                link = self._node_links.get((node, inc))
                if link is not None:
                    link.lapsed = True
                lapsed.add(node)
        for node in lapsed:
            assert self._messenger is not None
            self._messenger.node_lapsed(node)
        self._reap_nodes(lapsed)

    def _receive_loop(self) -> None:
        """Read the change stream and this node's inbox until close()."""
        assert self._messenger is not None
        messenger = self._messenger
        events_key = self._k("events")
        inbox_key = self._k("inbox", self.node_id)
        inbox_id: Union[str, bytes] = "0-0"
        check = False
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                if check or self._resync_requested:
                    self._check_and_resync(force=self._resync_requested)
                    check = False
                reply = self._rx.xread({events_key: self._feed_id, inbox_key: inbox_id},
                                       count=1000, block=_BLOCK_MS)
                backoff = 0.05
            except redis.RedisError as error:
                if self._stopping.is_set():
                    break
                check = True
                if isinstance(error, redis.ResponseError):
                    # the stream key is not a stream (or another refusal): re-read
                    self._note_feed_problem(f"reading the change feed failed: {error}")
                    self._resync_requested = True
                else:
                    self._note_error(error)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            except Exception:  # pragma: no cover - a bug must not kill the receiver
                logger.exception("%s: receiver error", self.node_id)
                check = True
                self._stopping.wait(0.5)
                continue
            streams = reply.items() if isinstance(reply, dict) else (reply or ())
            for stream, entries in streams:
                if _text(stream) == events_key:
                    self._take_events(entries)
                else:
                    done = []
                    for entry_id, fields in entries:
                        inbox_id = entry_id
                        done.append(entry_id)
                        blob = fields.get(b"m")
                        if blob is not None:
                            messenger.handle(blob)
                    if done:
                        try:
                            self._rx.xdel(inbox_key, *done)
                        except redis.RedisError:
                            check = True
            messenger.sweep()

    def _take_events(self, entries: Any) -> None:
        """Check the sequence of feed entries, parse and validate each, and
        pass the good ones to the server thread; own writes it has applied
        already are dropped here (receiver thread). A malformed entry is
        skipped alone, with a warning."""
        batch: list[tuple[int, Record]] = []
        first = self._feed_seq
        own_pending = self._own_pending
        for entry_id, fields in entries:
            try:
                seq = _number({"s": fields.get(b"s")}, "s")
            except ValueError:
                self._feed_id = entry_id
                self._note_feed_problem("skipped a change feed entry without a sequence number")
                logger.warning("%s: ignoring a foreign entry %s in the change feed", self.node_id,
                               _text(entry_id))
                continue
            if seq <= self._feed_seq:
                # Redis lost data (the counter restarted), or a foreign entry:
                # the check that follows tells which.
                self._feed_id = entry_id
                self._suspect = "skipped a change feed entry out of sequence"
                self._resync_requested = True
                continue
            if seq != self._feed_seq + 1:
                logger.info("%s: change feed gap (%d -> %d): re-reading every name",
                            self.node_id, self._feed_seq, seq)
                self._resync_requested = True
                break
            self._feed_id = entry_id
            self._feed_seq = seq
            try:
                raw = json.loads(fields[b"e"])
            except (KeyError, TypeError, ValueError, RecursionError):
                raw = None
            if not isinstance(raw, dict):
                self._note_feed_problem(f"skipped a malformed change event ({seq})")
                logger.warning("%s: ignoring a malformed change event %d", self.node_id, seq)
                continue
            if own_pending.get(str(raw.get("k"))) == seq:
                continue  # our own write, applied when it was made
            record = _checked(raw, "a change event", rev=seq, event=True)
            if record is None:
                self._note_feed_problem(f"skipped a malformed change event ({seq})")
                continue
            batch.append((seq, record))
        if self._feed_seq == first:
            return
        if batch or len(self._pending_order) > 256:
            self._ctx.submit(functools.partial(self._apply_events, batch, self._feed_seq))

    def _check_and_resync(self, force: bool) -> None:
        """After an error or a request: re-read everything if Redis lost data
        (epoch changed, counter went back) or a gap was seen (receiver thread).
        Re-reads are rate-limited (``_RESYNC_INTERVAL_S`` apart): a feed that
        keeps needing them degrades ``health()`` instead of burning CPU."""
        self._resync_requested = False
        self._resyncing = True
        try:
            self._resync(force)
        finally:
            self._resyncing = False

    def _resync(self, force: bool) -> None:
        if force:
            now = time.monotonic()
            times = self._resync_times
            times.append(now)
            recent = sum(1 for t in times if now - t < 10.0)
            if recent >= 10:  # a pair after a Redis restart is normal; a stream is not
                self._note_feed_problem(f"{recent} re-reads of every name in 10 s "
                                        f"(rate-limited to one per {self._RESYNC_INTERVAL_S} s)")
            wait = self._last_resync + self._RESYNC_INTERVAL_S - now
            if wait > 0 and self._stopping.wait(wait):
                return
        # Checked after the wait: what Redis holds now is what the snapshot reads.
        epoch = _text(self._r.get(self._k("epoch")))
        seq = _counter(self._r.get(self._k("seq")))
        lost = self._data_lost or not epoch or epoch != self._epoch or seq < self._feed_seq
        if self._suspect and not lost:
            self._note_feed_problem(self._suspect)
        self._suspect = ""
        self._connected = True
        if not (force or lost):
            return
        if lost:
            self._needs_recover = True
        self._data_lost = False
        self._last_resync = time.monotonic()
        snapshot = self._read_snapshot()
        lost = lost or snapshot.epoch != epoch or snapshot.seq < seq
        if snapshot.epoch and snapshot.epoch != self._epoch:
            self._epoch = snapshot.epoch
        self._feed_seq = snapshot.seq
        self._feed_id = snapshot.feed_id
        self._ctx.submit(functools.partial(self._apply_snapshot, snapshot, lost))
        self._reap_nodes(snapshot.dead_nodes)


class _Urn:
    """Stands in for an actor ref when only its URN is known (an orphan claim)."""

    __slots__ = ("actor_urn",)

    def __init__(self, urn: str) -> None:
        self.actor_urn = urn

    def is_alive(self) -> bool:
        return False
