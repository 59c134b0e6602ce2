"""``RedisBackend``: one name space shared by every process on a Redis server.

Requires redis-py (``pip install "pykka-registry[redis]"``)::

    registry = Registry.start(backend=RedisBackend, backend_opts={
        "url": "redis://127.0.0.1:6379/0", "prefix": "pykka_registry",
        "node_id": None, "lease_ttl": 5.0,
    })

``url`` is required: without one :class:`InvalidRedisUrlError` (a
``ValueError``) is raised and nothing connects (a library never talks to a
server its user did not name).

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
  event with reason ``"lost"``). Fencing is by incarnation as well as node
  id: if another process took this node id while this one was away, this
  one cannot take its lease, delete or change its claims or members, nor
  delete its inbox at stop; it reports every own name lost, each write
  raises :class:`RegistryUnavailableError`, and ``health()`` says why.
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
* **Refused writes** (an error reply: ``maxmemory``, read-only replica, ACL,
  ``WRONGTYPE``) raise :class:`RegistryUnavailableError` saying
  ``refused: <reply>`` (never a redis-py exception), and keep ``health()``
  degraded until a write succeeds (the lease thread probes each refresh; its
  probe clears only a refusal of Redis as a whole, such as ``OOM``).
* **Shared keys someone else wrote.** Each lease refresh checks the keys
  every write needs (``P:seq`` a counter below 2**63-1; ``P:names``,
  ``P:nodes`` and this node's held set sets; ``P:events`` a stream): what
  is wrong keeps ``health()`` degraded, naming the key, until it is deleted
  or repaired (a counter that is not one is not taken for a data loss). A
  ``P:epoch`` of another type is replaced (every node re-reads, as after a
  data loss), as are a lease key or ``P:nodes`` of another type at start.
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
* The *group thread* (:mod:`._groups`) reads the group change stream and
  watches the leases of nodes with members here; like the receiver, it hands
  changes to the server thread.
All four are joined by :meth:`RedisBackend.close` (``registry.stop()``).

Layers
------
``_schema`` (key layout, JSON codec, records) and ``_scripts`` (the Lua
scripts) are data; :mod:`._store` talks to Redis (clients, lease, blobs,
the one error map); :mod:`._replica` is the local copy and its ordering
rules, without I/O; :mod:`._node` runs the lease and receiver threads;
:mod:`._groups` keeps every node's group members (its own copy, scripts and
thread, and the fan-out of ``dispatch``/``ask_all``); this
module composes them into the :class:`Backend` methods. Changes the backend
makes on its own account (learnt from the feed, names lost) are
:class:`~pykka_registry.backends.base.Change` values that the registry
publishes: writes hand them over by :meth:`RedisBackend.take_changes`,
submitted functions return them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import sys
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
    InvalidRedisUrlError,
    InvalidSecretError,
    NotHeldHereError,
    NotRegisteredError,
    RegistryUnavailableError,
    UnsignedMessagesWarning,
)
from pykka_registry._events import (
    KIND_NAMESPACE_STOPPED,
    KIND_STOPPED,
    KIND_UNREGISTERED,
    UnregisterReason,
)
from pykka_registry._metadata import is_flat
from pykka_registry._remote import WAKE, Codec, Messenger, RemoteActorRef, secret_key
from pykka_registry.backends.base import Backend, BackendContext, Change, Entry
from pykka_registry.backends.memory import LocalTables
from pykka_registry.backends.redis._groups import RedisGroups, RedisGroupsMixin  # groups:
from pykka_registry.backends.redis._node import Node
from pykka_registry.backends.redis._replica import Claim, Release, Replica
from pykka_registry.backends.redis._schema import (
    MAX_KEY_DEPTH,
    MAX_METADATA_DEPTH,
    Layout,
    Record,
    Snapshot,
    holder_record,
    key_json,
    safe_url,
)
from pykka_registry.backends.redis._schema import brief as _brief
from pykka_registry.backends.redis._schema import dumps as _dumps
from pykka_registry.backends.redis._schema import json_object as _json_object
from pykka_registry.backends.redis._schema import key_problem as _key_problem
from pykka_registry.backends.redis._schema import parse_record as parse_record
from pykka_registry.backends.redis._schema import text as _text
from pykka_registry.backends.redis._store import BLOCK_MS, RedisError, Store
from pykka_registry.backends.redis._store import describe as _describe
from pykka_registry.backends.redis._store import refused as _refused

__all__ = [
    "MAX_KEY_DEPTH",
    "MAX_METADATA_DEPTH",
    "MIN_SECRET_BYTES",
    "InvalidRedisUrlError",
    "InvalidSecretError",
    "NotHeldHereError",
    "RedisBackend",
    "RemoteActorRef",
    "UnsignedMessagesWarning",
]

logger = logging.getLogger("pykka_registry.redis")

_SECRET_ENV = "PYKKA_REGISTRY_SECRET"


_unsigned_warning_lock = threading.Lock()
_unsigned_warning_shown = False  # once per process: every registry logs, one warns


def _warn_unsigned_once(message: str) -> None:
    """Issue :class:`UnsignedMessagesWarning` the first time a backend of this
    process connects without a secret (later ones only log it), attributed to
    the first caller outside this package, not to a line of ours.

    Also a Python warning because a library's log is silent until the
    application configures logging, and this one must be seen."""
    global _unsigned_warning_shown
    with _unsigned_warning_lock:
        if _unsigned_warning_shown:
            return
        _unsigned_warning_shown = True
    frame: Any = sys._getframe()
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
            "pykka_registry"):
        frame = frame.f_back
        level += 1
    warnings.warn(message, UnsignedMessagesWarning, stacklevel=level)


_URL_SCHEMES = ("redis://", "rediss://", "unix://")


def _checked_url(url: Any) -> str:
    """``url`` if it is a URL redis-py takes, else :class:`InvalidRedisUrlError`."""
    if url is None or url == "":
        raise InvalidRedisUrlError(
            "the redis backend needs the URL of the Redis server to use: "
            "Registry.start(backend='redis', backend_opts={'url': 'redis://HOST:6379/0', ...}) "
            "(there is no default server)")
    if not isinstance(url, str) or not url.startswith(_URL_SCHEMES):
        try:
            shown = safe_url(url) if isinstance(url, str) else _brief(url)
        except ValueError:  # not even a URL: it may hold a password, not shown
            shown = "a text that is not a URL"
        raise InvalidRedisUrlError(
            f"backend_opts 'url' must be a str starting with one of {', '.join(_URL_SCHEMES)}; "
            f"got {shown}")
    return url


class RedisBackend(LocalTables, RedisGroupsMixin, Backend):  # groups: the mixin
    """Names shared through Redis; see the module docstring.

    Options (``backend_opts``):

    * ``url`` (required: no default): redis-py URL (``redis://``,
      ``rediss://`` for TLS, ``unix://``; ACL user and password as
      ``redis://user:password@host:port/db``). Missing, empty or of another
      scheme: :class:`InvalidRedisUrlError`.
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
        url: Optional[str] = None,
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
        url = _checked_url(url)
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
        redis_opts = dict(redis_kwargs or {})
        if redis_opts.get("decode_responses"):
            raise ValueError("redis_kwargs: decode_responses must stay False (messages are bytes)")
        self._store = Store(url, self._layout, self.node_id, self.lease_ttl, self.feed_maxlen,
                            self.inbox_maxlen, redis_opts)
        self._messenger: Optional[Messenger] = None
        self._replica = Replica(self.node_id, None, self._find_actor)
        # Reads go straight to the replica's tables (never rebound, only
        # changed in place): the registry's lock-free lookup path for
        # LocalTables applies. Every write goes through the replica.
        replica = self._replica
        self._lock, self._names, self._by_urn = replica._lock, replica._names, replica._by_urn
        self._node = Node(self._store, self._replica, None, self, self._RESYNC_INTERVAL_S,
                          self._STALL_S)
        # The scripts a write runs (bound in start(); plain attributes so that
        # a test can stand in for one).
        self._claim: Any = None
        self._claim_many: Any = None
        self._release: Any = None
        self._update: Any = None
        # The keys every claim of this node names after the name's own (fixed).
        self._claim_keys = [self._k("names"), self._k("events"), self._k("seq"),
                            self._k("node", self.node_id), self._k("held", self.node_id)]
        self._release_keys = [self._k("names"), self._k("events"), self._k("seq")]
        self._orphans: list[Release] = []  # deletes that failed: retried
        # Deletes queued by dying actors' threads (remove_actor does no I/O),
        # sent by the server thread.
        self._releases: collections.deque[Release] = collections.deque()
        self._release_queued = False
        # groups: every node's memberships (backends/redis/_groups.py)
        self._groups = RedisGroups(self.prefix, self.node_id, self.lease_ttl, self.feed_maxlen)
        self._groups.own_incs = self._replica.own_incs
        self._recover_queued = False
        self._changes: list[Change] = []  # made on our own account, not yet handed over
        self._state: Optional[BackendContext] = None
        self._started = False
        self._closed = False
        #: counter, for health() and tests
        self.recoveries = 0

    @property
    def _ctx(self) -> BackendContext:
        """The registry's context (set by :meth:`start`)."""
        if self._state is None:
            raise RuntimeError("the backend has not been started")
        return self._state

    @property
    def _inc(self) -> str:
        """This node's current lease incarnation."""
        return self._store.inc

    @property
    def resyncs(self) -> int:
        """Full re-reads of the name space so far."""
        return self._replica.resyncs

    @property
    def lost_names(self) -> int:
        """Own names found taken by another process so far."""
        return self._replica.lost_names

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
            RegistryUnavailableError: Redis is out of reach, or refused
                (the message says which: ``refused: <reply>``).
            ValueError: another live node uses ``node_id``.
        """
        if self._started:
            raise RuntimeError("a RedisBackend instance serves one registry only")
        self._started = True
        self._state = context
        call_timeout = float(context.call_timeout)
        io_timeout = self._io_timeout or min(1.0, call_timeout / 4)
        self._io_timeout = io_timeout
        store = self._store
        store.connect(io_timeout)
        scripts = store.scripts
        self._claim, self._update = scripts.claim, scripts.update
        self._claim_many, self._release = scripts.claim_many, scripts.release
        name = str(context.name)
        self._messenger = Messenger(
            self.node_id, Codec(self._secret), call_timeout, store.send_blob,
            store.send_many, store.wait_reply, self._k("reply", ""), self._find_named,
            self.max_message_age, name, send_and_wait=store.send_and_wait,
        )
        self._replica.messenger = self._node.messenger = self._messenger
        try:
            self._take_lease(first=True)
            store.r.delete(store.inbox())
            snapshot = store.read_snapshot(self._replica.write_count)
            self._replica.install(snapshot)
            self._node.last_resync = time.monotonic()
            # also our own node's names of an earlier incarnation (a reused node_id)
            store.reap_nodes(snapshot.dead_nodes, include_self=True)
        except RedisError as error:
            store.close_clients()
            raise RegistryUnavailableError(
                f"cannot start: Redis at {safe_url(self.url)} {_describe(error)}"
            ) from error
        except BaseException:
            store.close_clients()
            raise
        store.connected = True
        if self._secret is None:
            message = (
                f"{name}: no secret set (backend_opts 'secret' or {_SECRET_ENV}): messages "
                "between processes are not signed, and whoever can write to Redis under "
                f"prefix {self.prefix!r} can run code in this process"
            )
            logger.warning("%s", message)
            _warn_unsigned_once(message.split(": ", 1)[1])
        self._messenger.start()
        self._node.start(name)
        store = self._store
        self._groups.start(context, store.r, store.rx, self._messenger,  # groups:
                           lambda: store.inc, lambda: store.epoch)

    def close(self) -> None:
        """Stop the threads (joined, bounded), release this node's names and
        lease in Redis (best effort), fail pending asks. Never raises."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        self._node.stopping.set()
        io_timeout = self._io_timeout or 1.0
        reachable = self._store.connected
        if reachable:
            try:
                self.wake_receiver()
            except Exception as error:
                # Redis refused (OOM...): it is there, and this node's keys
                # must still go; only a connection failure skips the clean-up
                reachable = _refused(error)
        self._node.stop(BLOCK_MS / 1000 + 2 * io_timeout + 1.0)
        if self._messenger is not None:
            self._messenger.close(2 * io_timeout + 1.0)
        try:
            if not reachable:
                raise RegistryUnavailableError("Redis was out of reach")
            self._store.leave()
        except Exception as error:
            logger.info("%s: could not release names at stop (%r); they expire with the "
                        "lease", self.node_id, error)
        self._groups.close(reachable)  # groups: after the lease and LEAVE
        self._store.close_clients()
        alive = [t.name for t in self._node.threads if t.is_alive()]
        if alive:  # pragma: no cover - only with a hung socket
            logger.warning("%s: threads still running after close: %s", self.node_id, alive)

    def _take_lease(self, first: bool = False) -> None:
        """A new lease incarnation, known to the messenger and the copy."""
        lost = self._store.take_lease(first)
        self._replica.own_incs.add(self._store.inc)
        if self._messenger is not None:
            self._messenger.add_incarnation(self._store.inc)
        self._replica.inc = self._store.inc
        if lost:
            self._node.data_loss()  # the next re-read starts afresh

    # -- what the threads ask (see _node.Host) ---------------------------------------------

    def wake_receiver(self) -> None:
        """Make the receiver's blocking XREAD return (a signed no-op message)."""
        if self._messenger is None:
            return
        blob = self._messenger.codec.encode(
            {"k": WAKE, "id": "", "src": self.node_id, "dst": self.node_id, "to": "",
             "t": time.time(), "ttl": 0}, b"")
        self._store.post_own(blob)

    def has_orphans(self) -> bool:
        return bool(self._orphans)

    def submit_recover(self) -> None:
        if not self._recover_queued and not self._closed:
            self._recover_queued = True
            self._ctx.submit(self._submitted(self._recover))

    def submit_events(self, batch: tuple[tuple[int, Record], ...], upto: int) -> None:
        def apply_events() -> None:
            if self._replica.apply_events(batch, upto):
                self._recover()
        self._ctx.submit(self._submitted(apply_events))

    def submit_snapshot(self, snapshot: Snapshot, lost: bool) -> None:
        def apply_snapshot() -> None:
            if self._replica.apply_snapshot(snapshot, lost) or self._node.needs_recover:
                self._recover()
        self._ctx.submit(self._submitted(apply_snapshot))

    # -- changes for the registry (server thread) ------------------------------------------

    def take_changes(self) -> list[Change]:
        """The changes made on this backend's own account since the last
        call (server thread, write lock held); queues the deletes the copy
        found to make."""
        releases = self._replica.take_releases()
        if releases:
            self._queue_release(releases)
        return self._replica.take_changes()

    def _submitted(self, function: Callable[[], Any]) -> Callable[[Any], list[Change]]:
        """``function`` as a call for ``context.submit`` that returns the
        changes it made."""
        def call(state: Any) -> list[Change]:
            function()
            return self.take_changes()
        call.__qualname__ = getattr(function, "__qualname__", "call")
        return call

    # -- actors ---------------------------------------------------------------------------

    def _find_actor(self, urn: str) -> Optional[Any]:
        """A live local actor by URN, named here or not (server thread: a
        claim of this node that the local copy does not know)."""
        ref = self._replica.local_refs.get(urn)
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
        ref = self._replica.local_refs.get(urn)
        if ref is None and urn in self._replica.named_urns:
            ref = pykka.ActorRegistry.get_by_urn(urn)
        if ref is None:  # groups: a group's fan-out endpoint, or a member here
            return self._groups.find(urn)
        if _deathwatch.is_dead(ref):
            return None
        return ref

    # -- writes (server thread) ------------------------------------------------------------

    # Every write below runs in the server thread holding the registry's write
    # lock. Redis round trips run inside ``self._ctx.unlocked()``, so that a
    # dying actor's clean-up (remove_actor, in its own thread) is never held
    # up by the network; after each wait, what the wait may have changed is
    # checked again (the actor died, the entry was dropped) before the local
    # copy is touched.

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        """Wait for Redis with the write lock released; a Redis error
        becomes the registry's (:meth:`Store.failure`)."""
        try:
            with self._ctx.unlocked():
                yield
        except RedisError as error:
            raise self._store.failure(error, what) from error

    def register(self, entry: Entry, is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        replace_token = self._replica.pre_claim(entry, is_alive)
        with self._being_named([entry.actor_ref.actor_urn]):
            return self._register_claim(entry, replace_token, is_alive)

    @contextlib.contextmanager
    def _being_named(self, urns: list[str]) -> Iterator[None]:
        """Count ``urns`` as named here while their claim is on its way: the
        claim's feed event can reach another process (which may then message
        the actor) before this process has stored the claim locally. Undone
        if the claim fails and the actor holds no other name here."""
        named = self._replica.named_urns
        added = [urn for urn in urns if urn not in named]
        named.update(added)
        try:
            yield
        except BaseException:
            for urn in added:
                if urn not in self._replica.local_refs:
                    named.discard(urn)
            raise

    def _claim_args(self, kjson: str, urn: str, actor_class: str, meta: str,
                    replace_token: Any) -> dict[str, list[Any]]:
        """The ``CLAIM`` script's keys and arguments for one name."""
        return {
            "keys": [self._name_key(kjson), *self._claim_keys],
            "args": [self.prefix, self.node_id, self._inc, urn, actor_class, meta, kjson,
                     replace_token, self.feed_maxlen],
        }

    def _register_claim(self, entry: Entry, replace_token: str,
                        is_alive: Callable[[Any], bool]) -> Optional[Entry]:
        actor_ref = entry.actor_ref
        kjson = key_json(entry.namespace, entry.service)
        meta = _dumps(entry.metadata)
        actor_class = actor_ref.actor_class.__qualname__
        for _attempt in range(3):
            with self._io("register"):
                result = self._claim(**self._claim_args(kjson, actor_ref.actor_urn,
                                                        actor_class, meta, replace_token))
            tag = _text(result[0])
            if tag == "ok":
                return self._claims_made([entry], [int(result[1])], [kjson])[0]
            if tag == "nolease":
                self._recover()
                self._writable()
                continue
            replace_token = self._conflict(entry, holder_record(result, kjson), is_alive)
        raise RegistryUnavailableError(
            f"could not claim {(entry.namespace, entry.service)!r}: the lease keeps lapsing")

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
        replace = [self._replica.pre_claim(entry, is_alive, check=False) for entry in entries]
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
            with self._io("register_many"):
                result = self._claim_many(keys=keys, args=args)
            tag = _text(result[0])
            if tag == "ok":
                return self._claims_made(entries, [int(t) for t in result[1:]], texts)
            if tag == "nolease":
                self._recover()
                self._writable()
                continue
            index = int(result[1]) - 1
            replace[index] = self._conflict(entries[index],
                                            holder_record(result[1:], texts[index]), is_alive)
        raise RegistryUnavailableError("could not claim the batch: the lease keeps lapsing")

    def _claims_made(self, entries: Sequence[Entry], tokens: list[int],
                     texts: Sequence[str]) -> list[Optional[Entry]]:
        """Redis granted every claim of ``entries`` (tokens ``tokens``, name
        texts ``texts``): store them, and return what ``register`` returns
        for each.

        Raises:
            ActorNotAliveError: an actor died while we waited for Redis (its
                clean-up may have run already): nothing is kept, every claim
                is released in Redis (and the feed does not bring them back
                meanwhile).
        """
        self._store.write_ok()
        dead = [e for e in entries if _deathwatch.death_seen(e.actor_ref)]
        if not dead:
            return [self._replica.claimed(e, t, text) for e, t, text in
                    zip(entries, tokens, texts)]
        replica = self._replica
        for text, seq in zip(texts, tokens):
            replica.note_own_write(text, seq)
        self._queue_release([
            (replica.own_claim((e.namespace, e.service), e.actor_ref, {}, t, t), KIND_STOPPED,
             "") for e, t in zip(entries, tokens)])
        if len(entries) == 1:
            raise ActorNotAliveError(f"{dead[0].actor_ref} died while it was being registered")
        raise ActorNotAliveError(
            f"{dead[0].actor_ref} (for {dead[0].service!r}) died while it was being "
            "registered; nothing was registered", service=dead[0].service)

    def _conflict(self, entry: Entry, holder: Optional[Record],
                  is_alive: Callable[[Any], bool]) -> str:
        """A claim found ``entry``'s name held by ``holder``: the token to
        replace if it is an own claim of a dead actor.

        Raises:
            AlreadyRegisteredError: a live actor holds it (another process's
                is learnt into the copy).
            RegistryUnavailableError: its record cannot be read.
        """
        if holder is None:
            raise RegistryUnavailableError(
                f"could not claim {_brief((entry.namespace, entry.service))}: a live node "
                "holds it with a record this version cannot read (see the warning in the log)")
        if holder.node == self.node_id:
            return self._replica.own_holder(holder, is_alive)  # dead: take its place
        raise AlreadyRegisteredError(entry.namespace, entry.service,
                                     self._replica.learn(holder))

    def unregister(
        self, namespace: Hashable, service: Hashable, actor_ref: Any = None
    ) -> Optional[Entry]:
        current = self._replica.get(namespace, service)
        if current is None or (
            actor_ref is not None and current.actor_ref.actor_urn != actor_ref.actor_urn
        ):
            return None
        removed = self._unregister_entries([current], KIND_UNREGISTERED)
        return removed[0] if removed else None

    def unregister_many(self, namespace: Hashable, services: Sequence[Hashable]) -> list[Entry]:
        """Every name of ``services`` that is held (missing ones skipped), in
        one Lua call (``_RELEASE``); the removed entries in the order given."""
        found = [self._replica.get(namespace, service) for service in services]
        return self._unregister_entries([e for e in found if e is not None], KIND_UNREGISTERED)

    def clear_namespace(self, namespace: Hashable) -> list[Entry]:
        return self._unregister_entries(self._replica.entries(namespace),
                                        KIND_NAMESPACE_STOPPED)

    def _unregister_entries(self, entries: list[Claim], why: str) -> list[Entry]:
        """Fenced deletes in Redis, then the local copy: the entries still
        stored (a death clean-up during the wait may have removed some: those
        are not returned, their events are out already)."""
        self._delete_in_redis([(entry, why, "") for entry in entries])
        return [entry for entry in entries if self._replica.drop(entry)]

    def _delete_in_redis(self, items: list[Release]) -> None:
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
        args: list[Any] = [self.prefix, self.feed_maxlen, len(items), self.node_id, self._inc]
        for (entry, why, err), text in zip(items, texts):
            args += [text, entry.token, entry.node, why, err]
        with self._io("unregister"):
            results = self._release(
                keys=[*self._release_keys, *(self._name_key(text) for text in texts)],
                args=args)
        self._store.write_ok()
        for text, seq in zip(texts, results):
            if int(seq):
                self._replica.note_own_write(text, int(seq))

    def update_metadata(
        self, namespace: Hashable, service: Hashable, metadata: Mapping[Any, Any]
    ) -> Entry:
        """Fenced by this node's own claim: the name must be held by an actor
        of this process, under this node's live lease. A name held by another
        process raises :class:`NotHeldHereError` (the token this node learnt
        from the feed is never used to write)."""
        replica = self._replica
        kjson = key_json(namespace, service)
        meta = _dumps(metadata)
        for _attempt in range(3):
            found = replica.get(namespace, service)
            if found is None:
                raise NotRegisteredError(namespace, service)
            current: Claim = found
            if current.node != self.node_id:
                raise NotHeldHereError(namespace, service, current.node)
            with self._io("update_metadata"):
                result = self._update(
                    keys=[self._name_key(kjson), self._k("events"), self._k("seq")],
                    args=[self.prefix, current.token, meta, self.feed_maxlen, kjson,
                          self.node_id, current.inc],
                )
            tag = _text(result[0])
            if tag == "ok":
                self._store.write_ok()
                seq = int(result[1])
                replica.note_own_write(kjson, seq)
                if replica.get(namespace, service) is not current:
                    # its actor died (or the copy changed) while we waited
                    raise NotRegisteredError(namespace, service, "its actor stopped meanwhile")
                updated = attrs.evolve(current, metadata=metadata, flat=is_flat(metadata),
                                       rev=seq)
                replica.put(updated)
                return updated
            if tag == "gone":
                replica.gone(current)
                raise NotRegisteredError(namespace, service, "it is no longer held")
            if tag == "lapsed":  # our claim is of an older lease: claim again, retry
                self._recover()
                self._writable()
                continue
            # moved: another claim holds the name now
            holder = holder_record(result, kjson)
            if holder is None:
                raise NotRegisteredError(namespace, service,
                                         "its record in Redis cannot be read")
            if holder.node == self.node_id:  # another claim of ours: the copy was stale
                replica.adopt(holder, holder.rev, replica.get(namespace, service))
                continue
            replica.learn(holder)
            raise NotRegisteredError(namespace, service,
                                     f"this process lost it to node {holder.node}")
        raise NotRegisteredError(namespace, service, "the name keeps changing hands")

    def remove_actor(self, actor_ref: Any,
                     reason: Optional[UnregisterReason] = None) -> list[Entry]:
        """A local actor died (``reason``: why; ``None``: from its death
        record): drop its names from the local copy at once.

        Runs in the dying actor's thread, under the registry's write lock: no
        I/O, no waiting. The deletes in Redis (carrying the reason to the
        other processes) are queued and sent by the server thread
        (:meth:`_flush_releases`, through ``context.submit``); if Redis is
        out of reach they are retried with the lease thread's recovery.
        Returns only this node's entries (another registry's names of the
        same actor are that registry's business). Never raises."""
        entries = self._replica.remove_local(actor_ref)
        if not entries:
            return []
        if reason is None:
            reason = UnregisterReason.from_death(_deathwatch.death_reason(actor_ref))
        err = _brief(reason.exception)[:500] if reason.exception is not None else ""
        self._queue_release([(entry, reason.kind, err) for entry in entries])
        return list(entries)

    def _queue_release(self, items: list[Release]) -> None:
        """Delete these claims in Redis soon, from the server thread. Any
        thread; never blocks."""
        if not items:
            return
        self._releases.extend(items)
        if not self._release_queued and not self._closed:
            self._release_queued = True
            self._ctx.submit(self._submitted(self._flush_releases))

    def _flush_releases(self) -> None:
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
            self._node.needs_recover = True

    def _recover(self) -> None:
        """Take a new lease if ours lapsed, claim again every name of a live
        local actor whose claim is not current, report those taken by others,
        retry deletes that failed. Server thread; idempotent."""
        self._recover_queued = False
        if self._closed:
            return
        store = self._store
        try:
            with self._io("recover"):
                if not store.lease_current():
                    if store.inc and not store.superseded:
                        logger.warning("%s: the lease lapsed (paused, or Redis lost it): "
                                       "taking a new one and claiming our names again",
                                       self.node_id)
                    try:
                        self._take_lease()
                    except ValueError:  # another process took our node id: fenced out
                        self._superseded()
                        return
                    self.recoveries += 1
            if self._orphans:
                orphans = list(self._orphans)
                self._delete_in_redis(orphans)
                del self._orphans[:len(orphans)]
            todo = self._replica.stale_own()
            if todo:
                self._reclaim(todo)
            self._node.needs_recover = False
            store.connected = True
        except RegistryUnavailableError:
            self._node.needs_recover = True

    def _superseded(self) -> None:
        """A renewal found this node id leased by another process (this one
        was away past its lease): every own name is lost, and nothing is
        written as this node id until that process's lease is gone (the
        lease thread keeps trying). Server thread."""
        own = self._replica.own_entries()
        if own or not self._node.needs_recover:  # said once (the lease thread retries)
            logger.warning("%s: %s; %d names lost", self.node_id, self._store.superseded,
                           len(own))
        self._node.needs_recover = True
        for entry in own:
            self._replica.lose(entry, None)

    def _writable(self) -> None:
        """Raise if this node id was taken by another process (see
        :meth:`_superseded`)."""
        if self._store.superseded:
            raise RegistryUnavailableError(self._store.superseded)

    def _reclaim(self, todo: list[Claim]) -> None:
        calls = []
        for entry in todo:
            kjson = key_json(entry.namespace, entry.service)
            call = self._claim_args(kjson, entry.actor_ref.actor_urn, entry.actor_class,
                                    _dumps(entry.metadata), entry.token)
            calls.append((call["keys"], call["args"]))
        with self._io("recover"):
            results = self._store.pipelined(self._store.scripts.claim, calls)
        for entry, result in zip(todo, results):
            if isinstance(result, Exception):
                self._store.note(result)
                self._node.needs_recover = True
                continue
            tag = _text(result[0])
            if tag == "ok":
                self._store.write_ok()
                self._replica.reclaimed(entry, int(result[1]))
            elif tag == "held":
                kjson = key_json(entry.namespace, entry.service)
                self._replica.not_reclaimed(entry, holder_record(result, kjson))
            else:
                self._node.needs_recover = True

    # -- reads (any thread) ------------------------------------------------------------------

    # get, services, entries, keys_of, namespaces: LocalTables's, over the
    # replica's tables (see __init__).

    def count(self, namespace: Optional[Hashable] = None) -> int:
        return self._replica.count(namespace)

    def owns(self, actor_ref: Any) -> bool:
        return actor_ref.actor_urn in self._replica.local_refs

    def health(self) -> Mapping[str, Any]:
        store, node, replica = self._store, self._node, self._replica
        now = time.monotonic()
        lease_age = now - store.lease_ok_at
        problems = []
        if not store.connected:
            problems.append(f"Redis out of reach ({store.last_error})")
        if store.lapsed or lease_age > self.lease_ttl:
            problems.append("this node's lease lapsed or is not confirmed")
        if store.write_error:
            problems.append(f"Redis refuses writes ({store.write_error})")
        if store.superseded:
            problems.append(store.superseded)
        if store.key_problem:
            problems.append(f"shared keys someone else wrote: {store.key_problem} (the "
                            "writes that need them are refused until they are deleted or "
                            "repaired)")
        if self._orphans:
            problems.append(f"{len(self._orphans)} names of dead actors wait to be deleted")
        if now - node.feed_problem_at < self._FEED_ALERT_S:
            problems.append(f"change feed: {node.feed_problem} (someone else writes to "
                            f"{self._k('events')}?)")
        if self._closed:
            problems.append("closed")
        groups = self._groups.health()  # groups: _groups.RedisGroups.health
        problems.extend(groups["problems"])
        return {
            "status": "degraded" if problems else "healthy",
            "problems": problems,
            "node_id": self.node_id,
            "url": safe_url(self.url),
            "prefix": self.prefix,
            "connected": store.connected,
            "lease_age_s": round(lease_age, 3),
            "entries": replica.count(),
            "namespaces": len(replica.namespaces()),
            "feed_seq": replica.feed_seq,
            "resyncs": replica.resyncs,
            "recoveries": self.recoveries,
            "lost_names": replica.lost_names,
            "signed": self._secret is not None,
            "writable": not store.write_error,
            "messages_delivered": self._messenger.delivered if self._messenger else 0,
            "messages_dropped": self._messenger.dropped if self._messenger else 0,
            "groups": groups,
        }

