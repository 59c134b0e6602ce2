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
* **Fencing.** Unregister and metadata updates compare the claim's token, so
  an owner that was paused past its lease cannot delete or overwrite a name
  another process has claimed since. When it wakes it takes a new lease,
  claims again those of its live actors' names that are still free, and
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
  process re-read everything and re-assert its live names.
* **Redis down.** Writes raise :class:`RegistryUnavailableError` within
  ``io_timeout``; reads serve the last copy; ``health()`` says ``degraded``.

Threads
-------
* Writes (``register``...) run in the registry's server thread, one at a
  time, each a Redis round trip or two (bounded by ``io_timeout``).
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
import functools
import json
import logging
import math
import os
import socket
import threading
import time
import urllib.parse
import warnings
from collections.abc import Hashable, Mapping
from typing import Any, Callable, Optional, Union

import attrs
import pykka

from pykka_registry import _deathwatch
from pykka_registry._errors import (
    AlreadyRegisteredError,
    InvalidKeyError,
    InvalidMetadataError,
    NotRegisteredError,
    RegistryUnavailableError,
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
    RemoteActorError,
    RemoteActorRef,
)
from pykka_registry.backends.base import Backend, BackendContext, Entry
from pykka_registry.backends.memory import LocalTables

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as _error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the redis backend needs redis-py: pip install 'pykka-registry[redis]'"
    ) from _error

__all__ = ["RedisBackend", "RemoteActorRef", "UnsignedMessagesWarning"]

logger = logging.getLogger("pykka_registry.redis")

LOST = UnregisterReason("lost")
_SECRET_ENV = "PYKKA_REGISTRY_SECRET"
_BLOCK_MS = 500  # longest XREAD/BLPOP block: bounds how late a thread sees a stop
_REPLY_TTL_MS = 30_000  # a reply nobody waits for any more vanishes after this

Key = tuple[Hashable, Hashable]

# -- Lua ---------------------------------------------------------------------------
# Key layout (P = prefix): P:epoch, P:seq, P:events, P:names (set of name keys),
# P:name:<json [ns, svc]> (hash), P:node:<id> (lease: value = incarnation),
# P:nodeinfo:<id> (JSON), P:held:<id> (set of the node's name keys), P:inbox:<id>.
# Every change increments P:seq and is appended to P:events with the id "<seq>-0"
# and one field, "e": the change as JSON (one field keeps parsing cheap), so a
# reader sees a gap as a jump in the sequence. A claim's fencing token is the
# sequence number of its event.

_CLAIM = """
if redis.call('GET', KEYS[5]) ~= ARGV[3] then return {'nolease'} end
local cur = redis.call('HMGET', KEYS[1], 'node', 'inc', 'tok', 'urn', 'cls', 'meta', 'rev')
if cur[1] then
  local mine = cur[1] == ARGV[2]
  if not (mine and (cur[4] == ARGV[4] or cur[3] == ARGV[8])) then
    if redis.call('GET', ARGV[1] .. ':node:' .. cur[1]) == cur[2] then
      return {'held', cur[1], cur[2], cur[3], cur[4], cur[5], cur[6], cur[7]}
    end
  end
  if not mine then redis.call('SREM', ARGV[1] .. ':held:' .. cur[1], KEYS[1]) end
end
local seq = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], seq .. '-0', 'e', cjson.encode({
  op = 'set', k = ARGV[7], node = ARGV[2], inc = ARGV[3], tok = seq, urn = ARGV[4],
  cls = ARGV[5], meta = ARGV[6]}))
redis.call('HSET', KEYS[1], 'k', ARGV[7], 'node', ARGV[2], 'inc', ARGV[3], 'tok', seq,
  'rev', seq, 'urn', ARGV[4], 'cls', ARGV[5], 'meta', ARGV[6])
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('SADD', KEYS[6], KEYS[1])
return {'ok', seq}
"""

_UNREGISTER = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'tok', 'urn', 'inc')
if not cur[1] then return {'gone'} end
if cur[2] ~= ARGV[2] then return {'moved'} end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
redis.call('SREM', ARGV[1] .. ':held:' .. cur[1], KEYS[1])
local seq = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'e', cjson.encode({
  op = 'del', k = ARGV[5], node = cur[1], inc = cur[4], tok = cur[2], urn = cur[3],
  why = ARGV[3], err = ARGV[6]}))
return {'ok', seq}
"""

_UPDATE = """
local cur = redis.call('HMGET', KEYS[1], 'node', 'inc', 'tok', 'urn', 'cls', 'meta', 'rev')
if not cur[1] then return {'gone'} end
if cur[3] ~= ARGV[2] then
  return {'moved', cur[1], cur[2], cur[3], cur[4], cur[5], cur[6], cur[7]}
end
if redis.call('GET', ARGV[1] .. ':node:' .. cur[1]) ~= cur[2] then return {'lapsed'} end
local seq = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'e', cjson.encode({
  op = 'upd', k = ARGV[5], node = cur[1], inc = cur[2], tok = cur[3], urn = cur[4],
  cls = cur[5], meta = ARGV[3]}))
redis.call('HSET', KEYS[1], 'meta', ARGV[3], 'rev', seq)
return {'ok', seq}
"""

_ACQUIRE = """
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then return {'taken'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'NX')
return {'ok', redis.call('GET', KEYS[3])}
"""

_REFRESH = """
local ok = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  ok = 1
end
return {ok, redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[4]) or '0'}
"""

_REAP = """
local live = redis.call('GET', KEYS[1])
local n = 0
for _, nk in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local h = redis.call('HMGET', nk, 'node', 'inc', 'tok', 'k', 'urn')
  if h[1] ~= ARGV[1] then
    redis.call('SREM', KEYS[2], nk)
  elseif h[2] ~= live then
    redis.call('DEL', nk)
    redis.call('SREM', KEYS[3], nk)
    redis.call('SREM', KEYS[2], nk)
    local seq = redis.call('INCR', KEYS[5])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', cjson.encode({
      op = 'del', k = h[4], node = h[1], inc = h[2], tok = h[3], urn = h[5], why = ARGV[3],
      err = ''}))
    n = n + 1
  end
end
return n
"""

_SNAPSHOT = """
local rows = {}
local leases = {}
local dead = {}
for _, nk in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', nk, 'k', 'node', 'inc', 'tok', 'rev', 'urn', 'cls', 'meta')
  if h[1] then
    local lease = leases[h[2]]
    if lease == nil then
      lease = redis.call('GET', ARGV[1] .. ':node:' .. h[2]) or ''
      leases[h[2]] = lease
    end
    if lease == h[3] then
      for i = 1, 8 do rows[#rows + 1] = h[i] end
    else
      dead[h[2]] = true
    end
  end
end
local nodes = {}
for node, _ in pairs(dead) do nodes[#nodes + 1] = node end
return {redis.call('GET', KEYS[2]) or '0', redis.call('GET', KEYS[3]) or '', rows, nodes}
"""

_SEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

_EMPTY: dict[Hashable, Any] = {}  # never written
_ROW_FIELDS = ("k", "node", "inc", "tok", "rev", "urn", "cls", "meta")


# -- keys and metadata ---------------------------------------------------------------


def _valid_key_part(part: Any) -> bool:
    kind = type(part)
    if kind is str or kind is int:
        return True
    if kind is tuple:
        return all(_valid_key_part(item) for item in part)
    if isinstance(part, bool):
        return False
    return isinstance(part, (str, int))


def key_json(namespace: Hashable, service: Hashable) -> str:
    """The canonical text of a name: JSON ``[namespace, service]``."""
    return json.dumps([namespace, service], separators=(",", ":"), ensure_ascii=False)


def _untuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_untuple(item) for item in value)
    return value


def key_from_json(text: Union[str, bytes]) -> Key:
    """The ``(namespace, service)`` a canonical name text stands for."""
    namespace, service = json.loads(text)
    return _untuple(namespace), _untuple(service)


def _json_copy(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidMetadataError(f"metadata value at {path} is {value!r}: not valid JSON")
        return value
    if isinstance(value, (list, tuple)):
        return [_json_copy(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        return _json_object(value, path)
    raise InvalidMetadataError(
        f"metadata value at {path} is a {type(value).__name__}; the redis backend stores "
        "JSON only (None, bool, int, float, str, list/tuple, and dicts with str keys)"
    )


def _json_object(mapping: Mapping[Any, Any], path: str) -> dict[str, Any]:
    copy = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise InvalidMetadataError(
                f"metadata key {key!r} at {path} is a {type(key).__name__}; JSON object keys "
                "must be str"
            )
        copy[key] = _json_copy(value, f"{path}[{key!r}]")
    return copy


def _dumps(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def safe_url(url: str) -> str:
    """``url`` without its password (for logs and health reports)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{netloc}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# -- the local copy's entries ----------------------------------------------------------


class UnsignedMessagesWarning(UserWarning):
    """Issued once per process location when a RedisBackend starts without a
    secret: remote messages are then neither signed nor verified."""


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
    rows: tuple[tuple[Key, dict[str, str]], ...]  # (name, its record)
    dead_nodes: tuple[str, ...]


def _checked(record: dict[str, Any]) -> Optional[Key]:
    """The name of a record (a name hash or a change event) if every field
    this backend reads is well formed; None (after a warning) otherwise, so
    that a stray key written by hand or by another version is skipped."""
    try:
        key = key_from_json(record["k"])
        int(record["tok"])
        if record.get("op", "set") != "del":
            if not (isinstance(record["node"], str) and isinstance(record["urn"], str)):
                raise TypeError("node and urn must be strings")
            if record.get("meta"):
                json.loads(record["meta"])
        return key
    except (KeyError, TypeError, ValueError) as error:
        logger.warning("ignoring a malformed registry record %.200r: %r", record, error)
        return None


class RedisBackend(LocalTables, Backend):
    """Names shared through Redis; see the module docstring.

    Options (``backend_opts``):

    * ``url``: redis-py URL (``redis://``, ``rediss://`` for TLS, ``unix://``;
      ACL user and password as ``redis://user:password@host:port/db``).
    * ``prefix``: every key this backend writes starts with it; processes
      sharing ``url`` and ``prefix`` share one name space.
    * ``node_id``: this node's name (default ``host:pid:random``); must be
      unique among live nodes.
    * ``lease_ttl``: seconds a node's lease lives without refresh.
    * ``secret``: shared key that signs every message (default: the
      ``PYKKA_REGISTRY_SECRET`` environment variable); ``None`` means unsigned.
    * ``io_timeout``: socket timeout of each Redis call (default
      ``min(1, call_timeout / 4)``).
    * ``feed_maxlen`` / ``inbox_maxlen``: approximate stream lengths kept.
    * ``max_message_age``: messages older than this (sender's clock) are dropped.
    * ``redis_kwargs``: more keyword arguments for ``redis.Redis.from_url``
      (``ssl_ca_certs``, ``username``, ``password``...).
    """

    name = "redis"
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
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.lease_ttl = float(lease_ttl)
        if secret is None:
            secret = os.environ.get(_SECRET_ENV) or None
        self._secret = secret.encode() if isinstance(secret, str) else secret
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
        self._node_refs: dict[tuple[str, str], int] = {}  # remote (node, inc) -> entries
        self._node_links: dict[tuple[str, str], NodeLink] = {}
        self._actor_links: dict[str, ActorLink] = {}
        self._remote_refs: dict[str, RemoteActorRef] = {}
        # Own writes the feed has not shown yet: name text -> seq of our latest
        # write (server thread writes; the receiver reads it to skip own events),
        # and the same in write order, to forget them once the feed has passed.
        self._own_pending: dict[str, int] = {}
        self._pending_order: collections.deque[tuple[int, str]] = collections.deque()
        self._orphans: list[tuple[Claim, str, str]] = []  # deletes that failed: retried

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
        self._connected = False
        self._last_error = ""
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
        return ":".join((self.prefix, *parts))

    def _name_key(self, kjson: str) -> str:
        return f"{self.prefix}:name:{kjson}"

    # -- validation (caller's thread) ----------------------------------------------------

    def validate_key(self, namespace: Any, service: Any) -> None:
        for part, what in ((namespace, "namespace"), (service, "service")):
            if not _valid_key_part(part):
                raise InvalidKeyError(
                    f"{what} must be a str, an int, or a tuple of those for the redis backend, "
                    f"got {type(part).__name__}: {part!r}"
                )

    def validate_metadata(self, metadata: Any) -> dict[Any, Any]:
        """The registry's own copy: the JSON form (tuples become lists)."""
        if metadata is None:
            return {}
        if not isinstance(metadata, Mapping):
            raise InvalidMetadataError(
                f"metadata must be a Mapping (such as a dict), not {type(metadata).__name__}"
            )
        return _json_object(metadata, "metadata")

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
        self._claim = self._r.register_script(_CLAIM)
        self._unregister = self._r.register_script(_UNREGISTER)
        self._update = self._r.register_script(_UPDATE)
        self._acquire = self._r.register_script(_ACQUIRE)
        self._refresh = self._r.register_script(_REFRESH)
        self._reap = self._r.register_script(_REAP)
        self._snapshot = self._r.register_script(_SNAPSHOT)
        self._send = self._r.register_script(_SEND)
        name = str(context.name)
        self._messenger = Messenger(
            self.node_id, Codec(self._secret), call_timeout, self._send_blob,
            self._send_many, self._wait_reply, self._k("reply", ""), self._find_actor,
            self.max_message_age, name,
        )
        try:
            self._take_lease(first=True)
            self._r.delete(self._k("inbox", self.node_id))
            snapshot = self._read_snapshot()
            self._install_snapshot(snapshot)
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
            self._r.delete(self._k("node", self.node_id), self._k("nodeinfo", self.node_id))
            self._reap(keys=self._reap_keys(self.node_id),
                       args=[self.node_id, self.feed_maxlen, "node_stopped"])
            self._r.delete(self._k("inbox", self.node_id))
        except Exception as error:
            logger.info("%s: could not release names at stop (%r); they expire with the "
                        "lease", self.node_id, error)
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
        self._note_error(error)
        return RegistryUnavailableError(
            f"{what}: Redis at {safe_url(self.url)} is out of reach ({error})"
        )

    def _note_error(self, error: BaseException) -> None:
        self._connected = False
        self._last_error = f"{type(error).__name__}: {error}"

    def _take_lease(self, first: bool = False) -> None:
        inc = os.urandom(8).hex()
        ttl_ms = int(self.lease_ttl * 1000)
        info = json.dumps({"inc": inc, "ttl_ms": ttl_ms, "host": socket.gethostname(),
                           "pid": os.getpid(), "since": time.time()})
        result = self._acquire(
            keys=[self._k("node", self.node_id), self._k("nodeinfo", self.node_id),
                  self._k("epoch")],
            args=[inc, ttl_ms, info, os.urandom(8).hex(), "1" if first else ""],
        )
        if _text(result[0]) == "taken":
            raise ValueError(f"node_id {self.node_id!r} is in use by a live node")
        epoch = _text(result[1])
        self._inc = inc
        self._lease_ok_at = time.monotonic()
        self._lapsed = False
        if self._epoch and epoch != self._epoch:
            self._resync_requested = True
        self._epoch = epoch

    def _reap_keys(self, node_id: str) -> list[str]:
        return [self._k("node", node_id), self._k("held", node_id), self._k("names"),
                self._k("events"), self._k("seq")]

    def _reap_nodes(self, nodes: Any, include_self: bool = False) -> None:
        """Delete the names of lapsed nodes (each a script: one ``del`` event
        per name, reason ``expired``)."""
        for node in nodes:
            node_id = _text(node)
            if include_self or node_id != self.node_id:
                self._reap(keys=self._reap_keys(node_id),
                           args=[node_id, self.feed_maxlen, "expired"])

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

    def _remote_claim(self, key: Key, row: Mapping[str, Any], rev: int) -> Claim:
        metadata = json.loads(row["meta"]) if row.get("meta") else {}
        ref = self._remote_ref(row["urn"], row.get("cls", ""), row["node"], row["inc"])
        return Claim(key[0], key[1], ref, metadata, is_flat(metadata), node=row["node"],
                     inc=row["inc"], token=int(row["tok"]), rev=rev,
                     actor_class=row.get("cls", ""))

    def _own_claim(self, key: Key, actor_ref: Any, metadata: Mapping[str, Any], token: int,
                   rev: int) -> Claim:
        return Claim(key[0], key[1], actor_ref, metadata, is_flat(metadata), node=self.node_id,
                     inc=self._inc, token=token, rev=rev,
                     actor_class=actor_ref.actor_class.__qualname__)

    def _find_actor(self, urn: str) -> Optional[Any]:
        """A live local actor by URN (receiver thread)."""
        ref = self._local_refs.get(urn)
        if ref is None:
            ref = pykka.ActorRegistry.get_by_urn(urn)
        if ref is None or _deathwatch.is_dead(ref):
            return None
        return ref

    def _publish(self, event: Any) -> None:
        events = self._ctx.events
        if events.active:
            events.publish(event)

    # -- writes (server thread) ------------------------------------------------------------

    def register(self, entry: Entry, is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        key = (entry.namespace, entry.service)
        actor_ref = entry.actor_ref
        urn = actor_ref.actor_urn
        kjson = key_json(*key)
        meta = _dumps(entry.metadata)
        current = self.get(*key)
        replace_token = ""
        if current is not None and current.node == self.node_id and \
                current.actor_ref.actor_urn != urn:
            if is_alive(current.actor_ref):
                raise AlreadyRegisteredError(key[0], key[1], current.actor_ref)
            replace_token = str(current.token)
        actor_class = actor_ref.actor_class.__qualname__
        for _attempt in range(3):
            try:
                result = self._claim(
                    keys=[self._name_key(kjson), self._k("names"), self._k("events"),
                          self._k("seq"), self._k("node", self.node_id),
                          self._k("held", self.node_id)],
                    args=[self.prefix, self.node_id, self._inc, urn, actor_class, meta, kjson,
                          replace_token, self.feed_maxlen],
                )
            except redis.RedisError as error:
                raise self._unavailable(error, "register") from error
            tag = _text(result[0])
            if tag == "ok":
                seq = int(result[1])
                claim = self._own_claim(key, actor_ref, entry.metadata, seq, seq)
                previous = self._put(claim)
                self._note_own_write(kjson, seq)
                if previous is None or previous.node == self.node_id:
                    return previous
                self._publish(Unregistered(key[0], key[1], previous.actor_ref,
                                           UnregisterReason("expired")))
                return None
            if tag == "nolease":
                self._recover()
                continue
            holder = dict(zip(("node", "inc", "tok", "urn", "cls", "meta", "rev"),
                              (_text(v) for v in result[1:])))
            if holder["node"] == self.node_id:
                local = self._find_actor(holder["urn"])
                if local is not None and is_alive(local):
                    raise AlreadyRegisteredError(key[0], key[1], local)
                replace_token = holder["tok"]  # our own dead actor: take its place
                continue
            existing = self._learn(key, holder)
            raise AlreadyRegisteredError(key[0], key[1], existing)
        raise RegistryUnavailableError(f"could not claim {key!r}: the lease keeps lapsing")

    def _learn(self, key: Key, row: Mapping[str, str]) -> RemoteActorRef:
        """Apply a remote holder's record read from Redis (if newer than ours)."""
        rev = int(row["rev"] or 0)
        current = self.get(*key)
        if current is not None and current.rev >= rev and \
                isinstance(current.actor_ref, RemoteActorRef):
            return current.actor_ref
        claim = self._remote_claim(key, row, rev)
        if current is not None and current.node == self.node_id:
            self._lose(current, claim)
        elif current is None or current.rev < rev:
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
        self._delete_in_redis([(current, "unregistered", "")])
        self._drop(current)
        return current

    def _delete_in_redis(self, items: list[tuple[Claim, str, str]]) -> None:
        """Fenced delete of each ``(entry, why, error text)``'s claim, in one
        round trip: a claim that changed hands since is left alone.

        Raises:
            RegistryUnavailableError: Redis is out of reach (nothing known deleted).
        """
        if not items:
            return
        try:
            pipe = self._r.pipeline(transaction=False)
            for entry, why, err in items:
                kjson = key_json(entry.namespace, entry.service)
                self._unregister(
                    keys=[self._name_key(kjson), self._k("names"), self._k("events"),
                          self._k("seq")],
                    args=[self.prefix, entry.token, why, self.feed_maxlen, kjson, err],
                    client=pipe,
                )
            results = pipe.execute()
        except redis.RedisError as error:
            raise self._unavailable(error, "unregister") from error
        for (entry, _why, _err), result in zip(items, results):
            if _text(result[0]) == "ok":
                self._note_own_write(key_json(entry.namespace, entry.service), int(result[1]))

    def update_metadata(
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> Entry:
        key = (namespace, service)
        meta = _dumps(metadata)
        for _attempt in range(3):
            current = self.get(namespace, service)
            if current is None:
                raise NotRegisteredError(namespace, service)
            try:
                result = self._update(
                    keys=[self._name_key(key_json(*key)), self._k("events"), self._k("seq")],
                    args=[self.prefix, current.token, meta, self.feed_maxlen, key_json(*key)],
                )
            except redis.RedisError as error:
                raise self._unavailable(error, "update_metadata") from error
            tag = _text(result[0])
            if tag == "ok":
                seq = int(result[1])
                updated = attrs.evolve(current, metadata=metadata, flat=is_flat(metadata),
                                       rev=seq)
                self._put(updated)
                self._note_own_write(key_json(*key), seq)
                return updated
            if tag == "gone":
                if self._drop(current):
                    self._publish(Unregistered(namespace, service, current.actor_ref,
                                               UnregisterReason("expired")))
                raise NotRegisteredError(namespace, service, "it is no longer held")
            if tag == "lapsed":
                if current.node != self.node_id:
                    raise NotRegisteredError(namespace, service,
                                             f"the lease of its node {current.node} lapsed")
                self._recover()
                continue
            # moved: another claim holds the name now
            holder = dict(zip(("node", "inc", "tok", "urn", "cls", "meta", "rev"),
                              (_text(v) for v in result[1:])))
            was_mine = current.node == self.node_id
            self._learn(key, holder)
            if was_mine:
                raise NotRegisteredError(namespace, service,
                                         f"this process lost it to node {holder['node']}")
        raise NotRegisteredError(namespace, service, "the name keeps changing hands")

    def remove_actor(self, actor_ref: Any) -> list[Entry]:
        """A local actor died: drop its names here at once and in Redis (if Redis
        is out of reach, the deletes are retried by the lease thread). Never raises."""
        if actor_ref.actor_urn not in self._local_refs:
            return []  # not ours (another registry of this process may share the prefix)
        with self._lock:
            entries = [entry for entry in self._held_by(actor_ref.actor_urn)
                       if entry.node == self.node_id]
        reason = _deathwatch.death_reason(actor_ref)
        why, err = ("crashed", repr(reason)[:500]) if reason is not None else ("stopped", "")
        removed: list[Entry] = []
        for entry in entries:
            if self._drop(entry):
                removed.append(entry)
        items = [(entry, why, err) for entry in entries]
        try:
            self._delete_in_redis(items)
        except RegistryUnavailableError:
            self._orphans.extend(items)
        return removed

    def clear_namespace(self, namespace: Hashable) -> list[Entry]:
        entries = list(self._names.get(namespace, {}).values())
        self._delete_in_redis([(entry, "namespace_stopped", "") for entry in entries])
        for entry in entries:
            self._drop(entry)
        return list(entries)

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
        if self._orphans:
            problems.append(f"{len(self._orphans)} names of dead actors wait to be deleted")
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
        self._own_pending[kjson] = seq
        self._pending_order.append((seq, kjson))

    def _forget_own_writes(self, upto: int) -> None:
        """The feed has passed ``upto``: own writes up to there need no guard."""
        order, pending = self._pending_order, self._own_pending
        while order and order[0][0] <= upto:
            seq, kjson = order.popleft()
            if pending.get(kjson) == seq:
                del pending[kjson]

    def _apply_events(self, batch: list[tuple[int, Key, dict[str, Any]]], upto: int,
                      state: Any) -> None:
        """Apply feed events (server thread), then forget own writes the feed
        has passed (``upto``: the last sequence number the receiver read)."""
        recover = False
        for seq, key, change in batch:
            pending = self._own_pending.get(change["k"])
            if pending is not None and seq <= pending:
                continue  # our own write, or older than it
            current = self.get(*key)
            if current is not None and current.rev >= seq:
                continue
            op = change["op"]
            if op in ("set", "upd"):
                if change["node"] == self.node_id:
                    self._adopt(key, change, seq, current)
                    continue
                claim = self._remote_claim(key, change, seq)
                if current is not None and current.node == self.node_id:
                    self._lose(current, claim)
                    continue
                self._put(claim)
                self._publish_change(current, claim)
            elif op == "del":
                if current is None or current.token != int(change["tok"]):
                    continue
                why = change.get("why") or "unregistered"
                if current.node == self.node_id and why == "expired":
                    # Our lease lapsed and another node cleared our names: claim
                    # them again (if still free) instead of dropping them.
                    self._put(attrs.evolve(current, inc=""))
                    recover = True
                    continue
                actor_ref = current.actor_ref
                if isinstance(actor_ref, RemoteActorRef):
                    # Before the drop: a reader who sees the name gone must
                    # also see the remote ref dead.
                    link = actor_ref._link
                    if why == "expired":
                        link.node.lapsed = True
                    elif why in ("stopped", "crashed", "node_stopped"):
                        link.mark_dead()
                self._drop(current)
                error = RemoteActorError(change.get("err", "")) if why == "crashed" else None
                self._publish(Unregistered(key[0], key[1], actor_ref,
                                           UnregisterReason(why, error)))
        self._forget_own_writes(upto)
        if recover:
            self._recover()

    def _adopt(self, key: Key, fields: Mapping[str, Any], seq: int,
               current: Optional[Claim]) -> None:
        """A claim by this node that the local copy does not know (a write whose
        answer was lost): keep it if its actor lives, else delete it."""
        actor_ref = self._find_actor(fields["urn"])
        if actor_ref is not None and fields["inc"] == self._inc:
            metadata = json.loads(fields["meta"]) if fields.get("meta") else {}
            claim = self._own_claim(key, actor_ref, metadata, int(fields["tok"]), seq)
            self._put(claim)
            self._publish_change(current, claim)
            return
        orphan = Claim(key[0], key[1], _Urn(fields["urn"]), {}, True, node=self.node_id,
                       inc=fields["inc"], token=int(fields["tok"]), rev=seq)
        try:
            self._delete_in_redis([(orphan, "stopped", "")])
        except RegistryUnavailableError:
            self._orphans.append((orphan, "stopped", ""))

    def _recover(self, state: Any = None) -> None:
        """Take a new lease if ours lapsed, claim again every name of a live
        local actor whose claim is not current, report those taken by others,
        retry deletes that failed. Server thread; idempotent."""
        self._recover_queued = False
        if self._closed:
            return
        try:
            if _text(self._r.get(self._k("node", self.node_id))) != self._inc:
                if self._inc:
                    logger.warning("%s: the lease lapsed (paused, or Redis lost it): taking a "
                                   "new one and claiming our names again", self.node_id)
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
        results = pipe.execute(raise_on_error=False)
        for entry, result in zip(todo, results):
            if isinstance(result, Exception):
                self._needs_recover = True
                continue
            tag = _text(result[0])
            key = (entry.namespace, entry.service)
            if tag == "ok":
                seq = int(result[1])
                self._put(attrs.evolve(entry, inc=self._inc, token=seq, rev=seq))
                self._note_own_write(key_json(*key), seq)
            elif tag == "held":
                holder = dict(zip(("node", "inc", "tok", "urn", "cls", "meta", "rev"),
                                  (_text(v) for v in result[1:])))
                if holder["node"] == self.node_id:
                    self._drop(entry)
                    continue
                self._lose(entry, self._remote_claim(key, holder, int(holder["rev"] or 0)))
            else:
                self._needs_recover = True

    def _submit_recover(self) -> None:
        if not self._recover_queued and not self._closed:
            self._recover_queued = True
            self._ctx.submit(self._recover)

    # -- snapshots -------------------------------------------------------------------------

    def _read_snapshot(self) -> _Snapshot:
        raw = self._snapshot(keys=[self._k("names"), self._k("seq"), self._k("epoch")],
                             args=[self.prefix])
        flat = [_text(v) for v in raw[2]]
        rows = []
        for i in range(0, len(flat), len(_ROW_FIELDS)):
            row = dict(zip(_ROW_FIELDS, flat[i:i + len(_ROW_FIELDS)]))
            key = _checked(row)
            if key is not None and row["rev"].isdigit():
                rows.append((key, row))
        return _Snapshot(int(raw[0]), _text(raw[1]), tuple(rows),
                         tuple(_text(n) for n in raw[3]))

    def _install_snapshot(self, snapshot: _Snapshot) -> None:
        """At start: fill the empty local copy (no server, no listeners yet)."""
        for key, row in snapshot.rows:
            if row["node"] != self.node_id:
                self._put(self._remote_claim(key, row, int(row["rev"])))
        self._feed_seq = snapshot.seq

    def _apply_snapshot(self, snapshot: _Snapshot, state: Any) -> None:
        """Make the local copy equal to ``snapshot`` (server thread): publish
        the differences, report own names taken by others, claim again own
        names that vanished."""
        self.resyncs += 1
        self._forget_own_writes(snapshot.seq)
        protected = {key_from_json(kjson) for kjson in self._own_pending}
        rows = dict(snapshot.rows)
        with self._lock:
            local = [entry for services in self._names.values() for entry in services.values()]
        recover = False
        for entry in local:
            key = (entry.namespace, entry.service)
            if key in rows or key in protected:
                continue
            if entry.node == self.node_id:
                self._put(attrs.evolve(entry, inc=""))
                recover = True
            elif self._drop(entry):
                self._publish(Unregistered(key[0], key[1], entry.actor_ref,
                                           UnregisterReason("expired")))
        for key, row in rows.items():
            if key in protected:
                continue
            current = self.get(*key)
            rev = int(row["rev"])
            if row["node"] == self.node_id:
                if current is not None and current.node == self.node_id and \
                        current.token == int(row["tok"]):
                    if current.inc != row["inc"]:
                        self._put(attrs.evolve(current, inc=row["inc"]))
                        recover = True
                    continue
                self._adopt(key, row, rev, current)
                continue
            if current is not None and current.node == row["node"] and \
                    current.token == int(row["tok"]) and current.rev == rev:
                continue
            claim = self._remote_claim(key, row, rev)
            if current is not None and current.node == self.node_id:
                self._lose(current, claim)
                continue
            self._put(claim)
            self._publish_change(current, claim)
        if recover or self._needs_recover:
            self._recover()

    # -- threads -----------------------------------------------------------------------------

    def _lease_loop(self) -> None:
        """Refresh the lease every ``lease_ttl / 3``; watch other nodes' leases
        every ``min(lease_ttl / 3, 0.5)`` s; ask the server to recover when
        needed."""
        tick = min(self.lease_ttl / 3, 0.5)
        every = self.lease_ttl / 3
        ttl_ms = int(self.lease_ttl * 1000)
        next_refresh = time.monotonic() + every
        while not self._stopping.wait(max(0.0, min(tick, next_refresh - time.monotonic()))):
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    next_refresh = now + every
                    ok, epoch, seq = self._refresh(
                        keys=[self._k("node", self.node_id), self._k("nodeinfo", self.node_id),
                              self._k("epoch"), self._k("seq")],
                        args=[self._inc, ttl_ms],
                    )
                    if _text(epoch) != self._epoch or int(seq) < self._feed_seq:
                        # Redis lost data (restart, failover, flush): re-read, re-assert.
                        self._resync_requested = True
                        self._needs_recover = True
                        self._wake_receiver()
                    elif not ok:
                        if not self._lapsed:
                            logger.warning("%s: this node's lease lapsed", self.node_id)
                        self._lapsed = True
                        self._needs_recover = True
                    else:
                        self._lease_ok_at = now
                        self._lapsed = False
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
                reply = self._rx.xread({events_key: f"{self._feed_seq}-0", inbox_key: inbox_id},
                                       count=1000, block=_BLOCK_MS)
                backoff = 0.05
            except redis.RedisError as error:
                if self._stopping.is_set():
                    break
                self._note_error(error)
                check = True
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
        """Check the sequence of feed entries and pass them to the server thread;
        own writes it has applied already are dropped here (receiver thread)."""
        batch = []
        first = self._feed_seq
        own_pending = self._own_pending
        for entry_id, fields in entries:
            seq = int(_text(entry_id).split("-", 1)[0])
            if seq <= self._feed_seq:
                continue
            if seq != self._feed_seq + 1:
                logger.info("%s: change feed gap (%d -> %d): re-reading every name",
                            self.node_id, self._feed_seq, seq)
                self._resync_requested = True
                break
            self._feed_seq = seq
            try:
                change = json.loads(fields[b"e"])
                if own_pending.get(change["k"]) == seq:
                    continue  # our own write, applied when it was made
            except (KeyError, TypeError, ValueError):
                change = {}
            key = _checked(change)
            if key is not None:
                batch.append((seq, key, change))
        if self._feed_seq == first:
            return
        if batch or len(self._pending_order) > 256:
            self._ctx.submit(functools.partial(self._apply_events, batch, self._feed_seq))

    def _check_and_resync(self, force: bool) -> None:
        """After an error or a request: re-read everything if Redis lost data
        (epoch changed, counter went back) or a gap was seen (receiver thread)."""
        self._resync_requested = False
        epoch = _text(self._r.get(self._k("epoch")))
        seq = int(self._r.get(self._k("seq")) or 0)
        if not epoch or epoch != self._epoch or seq < self._feed_seq:
            self._needs_recover = True
            force = True
        self._connected = True
        if not force:
            return
        snapshot = self._read_snapshot()
        if snapshot.epoch and snapshot.epoch != self._epoch:
            self._epoch = snapshot.epoch
        self._feed_seq = snapshot.seq
        self._ctx.submit(functools.partial(self._apply_snapshot, snapshot))
        self._reap_nodes(snapshot.dead_nodes)


class _Urn:
    """Stands in for an actor ref when only its URN is known (an orphan claim)."""

    __slots__ = ("actor_urn",)

    def __init__(self, urn: str) -> None:
        self.actor_urn = urn

    def is_alive(self) -> bool:
        return False
