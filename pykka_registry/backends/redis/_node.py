"""The Redis backend's two threads: the *lease thread* and the *receiver
thread*, and the flags through which they ask the server thread for work.

Neither thread changes the local copy: what they read is handed to the
registry's server thread (through the host's ``submit_*`` methods, which
use ``context.submit``), serialised with local writes.

Guarantees
----------
* **Leases.** The lease thread refreshes this node's lease every
  ``lease_ttl / 3`` and watches the leases of the nodes this one has names
  from every ``min(lease_ttl / 3, 0.5)`` s; a lapsed node's refs are marked
  lapsed at once and its names deleted in Redis (reason ``"expired"``).
  It checks each refresh that Redis accepts writes (a refused write keeps
  ``health()`` degraded), and that Redis did not lose data (the epoch
  changed, the counter went back): then everything is re-read.
* **A stuck feed is noticed.** A feed that does not advance for
  ``stall_s`` while the counter is ahead makes the receiver re-read
  everything.
* **Re-reads are rate-limited** (one per ``resync_interval`` s); a feed that
  keeps needing them makes ``health()`` degraded instead of burning CPU.
* **Bounded stop.** Every wait is bounded by :data:`._store.BLOCK_MS` or the lease
  tick and watches the stop event; :meth:`Node.stop` joins both threads.
* **The inbox stays short.** Handled messages are deleted from this node's
  inbox when a read brings no more of them, or every :data:`_DELETE_BATCH`
  (never re-read meanwhile: the reader's position is past them).
* **The inbox cannot be wedged.** Once the handled messages are deleted the
  reader reads from the inbox's start again, so an entry someone else
  appended with an id far in the future (or the last possible id, after
  which a sender replaces the inbox) does not leave it past every later
  message; an inbox or change stream that is not a stream is deleted by the
  receiver whose read it broke (``health()`` degraded meanwhile).
* Neither thread dies of an error: Redis errors are noted for ``health()``
  and retried with a back-off; anything else is logged.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import threading
import time
from typing import Any, Protocol, Union

from pykka_registry.backends.redis._replica import Replica
from pykka_registry.backends.redis._schema import Record, Snapshot
from pykka_registry.backends.redis._schema import text as _text
from pykka_registry.backends.redis._store import Store, redis

__all__ = ["Host", "Node"]

logger = logging.getLogger("pykka_registry.redis")

#: Handled inbox messages are deleted when the receiver is idle, or by this many.
_DELETE_BATCH = 64


class Host(Protocol):
    """What the threads need of the backend (any thread; none blocks)."""

    def submit_recover(self) -> None:
        """Ask the server thread to take a lease and claim names again."""

    def submit_events(self, batch: tuple[tuple[int, Record], ...], upto: int) -> None:
        """Hand checked feed events to the server thread."""

    def submit_snapshot(self, snapshot: Snapshot, lost: bool) -> None:
        """Hand a snapshot to the server thread."""

    def has_orphans(self) -> bool:
        """True while deletes that failed wait for a retry."""

    def wake_receiver(self) -> None:
        """Make the receiver's blocking read return."""


class Node:
    """The threads of one node and the flags they share with the server
    thread (plain attributes: each written by one side, read by the other)."""

    def __init__(self, store: Store, replica: Replica, messenger: Any, host: Host,
                 resync_interval: float, stall_s: float) -> None:
        self.store = store
        self.replica = replica
        self.messenger = messenger
        self.host = host
        self.resync_interval = resync_interval
        self.stall_s = stall_s
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.needs_recover = False  # the server thread must run recovery
        self.resync_requested = False
        self.data_lost = False  # set when Redis lost data, until the next re-read
        self._suspect = ""  # a feed oddity that is a problem unless Redis lost data
        self.last_resync = 0.0
        self._resync_times: collections.deque[float] = collections.deque(maxlen=64)
        self.feed_problem = ""  # why the feed needed attention lately (for health)
        self.feed_problem_at = -math.inf
        self._stalled_at_seq = -1  # lease thread: the feed position at the last refresh
        self._stalled_since = 0.0  # ...and since when it has not moved
        self._resyncing = False  # the receiver is re-reading (or waiting to)

    def start(self, name: str) -> None:
        for target, role in ((self._lease_loop, "lease"), (self._receive_loop, "receiver")):
            thread = threading.Thread(target=target, name=f"pykka-registry-redis-{role}-{name}",
                                      daemon=True)
            self.threads.append(thread)
            thread.start()

    def stop(self, timeout: float) -> None:
        """Join both threads (each at most ``timeout``); the stop event must be set."""
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def data_loss(self) -> None:
        """Redis lost data (restart, failover, flush): re-read, re-assert."""
        self.data_lost = True
        self.resync_requested = True

    def note_feed_problem(self, what: str) -> None:
        self.feed_problem = what
        self.feed_problem_at = time.monotonic()

    # -- the lease thread --------------------------------------------------------------------

    def _lease_loop(self) -> None:
        """Refresh the lease every ``lease_ttl / 3`` (and check that Redis
        accepts writes); watch other nodes' leases every
        ``min(lease_ttl / 3, 0.5)`` s; ask the server to recover when needed."""
        lease_ttl = self.store.lease_ttl
        tick = min(lease_ttl / 3, 0.5)
        every = lease_ttl / 3
        ttl_ms = int(lease_ttl * 1000)
        next_refresh = time.monotonic() + every
        while not self.stopping.wait(max(0.0, min(tick, next_refresh - time.monotonic()))):
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    next_refresh = now + every
                    self._refresh_lease(now, ttl_ms)
                self._watch_nodes()
                self.store.connected = True
            except redis.RedisError as error:
                self.store.note(error)
                self.needs_recover = True
                continue
            except Exception:  # pragma: no cover - a bug must not kill the lease
                logger.exception("%s: lease thread error", self.store.node_id)
                continue
            if self.needs_recover or self.host.has_orphans():
                self.host.submit_recover()

    def _refresh_lease(self, now: float, ttl_ms: int) -> None:
        store = self.store
        ok, epoch, top = store.refresh_lease(ttl_ms)
        # a counter that is not one (someone else wrote P:seq) is no sign of
        # a data loss: health() reports it (store.key_problem)
        counter = self.replica.feed_seq if top is None else top
        if epoch != store.epoch or counter < self.replica.feed_seq:
            self.data_loss()
            self.needs_recover = True
            self.host.wake_receiver()
            return
        if not ok:
            if not store.lapsed:
                logger.warning("%s: this node's lease lapsed", store.node_id)
            store.lapsed = True
            self.needs_recover = True
            return
        store.lease_ok_at = now
        store.lapsed = False
        store.probe_write(ttl_ms)
        # A feed that does not advance for a while although the counter is
        # ahead (its reader is stuck behind an entry someone else appended):
        # re-read everything. Not while a re-read is due or running (the
        # reader does not advance then, by design).
        feed_seq = self.replica.feed_seq
        if counter <= feed_seq or feed_seq != self._stalled_at_seq or \
                self.resync_requested or self._resyncing:
            self._stalled_at_seq = feed_seq if counter > feed_seq else -1
            self._stalled_since = now
        elif now - self._stalled_since >= self.stall_s:
            self.note_feed_problem("the change feed stopped advancing")
            self.resync_requested = True
            self._stalled_since = now
            self.host.wake_receiver()

    def _watch_nodes(self) -> None:
        replica = self.replica
        with replica._lock:
            nodes = list(replica.node_refs)
        if not nodes:
            return
        values = self.store.live_incarnations([node for node, _ in nodes])
        lapsed = set()
        for (node, inc), value in zip(nodes, values):
            if value != inc:
                link = replica.node_links.get((node, inc))
                if link is not None:
                    link.lapsed = True
                lapsed.add(node)
        for node in lapsed:
            self.messenger.node_lapsed(node)
        self.store.reap_nodes(lapsed)

    # -- the receiver thread ------------------------------------------------------------------

    def _receive_loop(self) -> None:
        """Read the change stream and this node's inbox until the stop."""
        messenger = self.messenger
        store = self.store
        events_key = store.k("events")
        inbox_id: Union[str, bytes] = "0-0"
        handled: list[Any] = []  # inbox entries handled, not deleted yet
        check = False
        backoff = 0.05
        while not self.stopping.is_set():
            try:
                if check or self.resync_requested:
                    self._check_and_resync(force=self.resync_requested)
                    check = False
                reply = store.read_streams(self.replica.feed_id, inbox_id)
                backoff = 0.05
            except redis.RedisError as error:
                if self.stopping.is_set():
                    break
                check = True
                if isinstance(error, redis.ResponseError):
                    # a stream key is not a stream (or another refusal): it
                    # goes (every writer of it replaces it anyway), and re-read
                    self.note_feed_problem(f"reading the change feed failed: {error}")
                    self.resync_requested = True
                    with contextlib.suppress(redis.RedisError):
                        if store.unstick():
                            inbox_id = "0-0"
                else:
                    store.note(error)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            except Exception:  # pragma: no cover - a bug must not kill the receiver
                logger.exception("%s: receiver error", store.node_id)
                check = True
                self.stopping.wait(0.5)
                continue
            streams = reply.items() if isinstance(reply, dict) else (reply or ())
            got_messages = False
            for stream, entries in streams:
                if _text(stream) == events_key:
                    self._take_events(entries)
                else:
                    got_messages = got_messages or bool(entries)
                    for entry_id, fields in entries:
                        inbox_id = entry_id
                        handled.append(entry_id)
                        blob = fields.get(b"m")
                        if blob is not None:
                            messenger.handle(blob)
            messenger.sweep()
            if handled and (not got_messages or len(handled) >= _DELETE_BATCH):
                # Handled messages leave the inbox in batches, when no more
                # come: not a round trip per message on the way to its reply.
                try:
                    store.done_with(handled)
                except redis.RedisError:
                    check = True
                else:
                    # Everything read is deleted: reading from the start again
                    # reads the same, unless someone appended an id far in the
                    # future (or the last one, and a sender replaced the
                    # inbox): then it finds the entries after it.
                    inbox_id = "0-0"
                handled = []

    def _take_events(self, entries: Any) -> None:
        """Check and parse feed entries (:meth:`Replica.read_feed`) and pass
        the good ones to the server thread."""
        read = self.replica.read_feed(entries)
        if read.problem:
            self.note_feed_problem(read.problem)
        if read.suspect:
            self._suspect = read.suspect
        if read.resync:
            self.resync_requested = True
        if not read.advanced:
            return
        if read.batch or len(self.replica.pending_order) > 256:
            self.host.submit_events(read.batch, self.replica.feed_seq)

    def _check_and_resync(self, force: bool) -> None:
        """After an error or a request: re-read everything if Redis lost data
        (epoch changed, counter went back) or a gap was seen (receiver thread).
        Re-reads are rate-limited (``resync_interval`` apart): a feed that
        keeps needing them degrades ``health()`` instead of burning CPU."""
        self.resync_requested = False
        self._resyncing = True
        try:
            self._resync(force)
        finally:
            self._resyncing = False

    def _resync(self, force: bool) -> None:
        store, replica = self.store, self.replica
        if force:
            now = time.monotonic()
            times = self._resync_times
            times.append(now)
            recent = sum(1 for t in times if now - t < 10.0)
            if recent >= 10:  # a pair after a Redis restart is normal; a stream is not
                self.note_feed_problem(f"{recent} re-reads of every name in 10 s "
                                       f"(rate-limited to one per {self.resync_interval} s)")
            wait = self.last_resync + self.resync_interval - now
            if wait > 0 and self.stopping.wait(wait):
                return
        # Checked after the wait: what Redis holds now is what the snapshot reads.
        epoch, counter = store.epoch_and_seq()
        # a counter that is not one is no data loss (health() reports it)
        seq = replica.feed_seq if counter is None else counter
        lost = self.data_lost or not epoch or epoch != store.epoch or seq < replica.feed_seq
        if self._suspect and not lost:
            self.note_feed_problem(self._suspect)
        self._suspect = ""
        store.connected = True
        if not (force or lost):
            return
        if lost:
            self.needs_recover = True
        self.data_lost = False
        self.last_resync = time.monotonic()
        snapshot = store.read_snapshot(replica.write_count, replica.feed_seq)
        lost = lost or snapshot.epoch != epoch or snapshot.seq < seq
        if snapshot.epoch and snapshot.epoch != store.epoch:
            store.epoch = snapshot.epoch
        replica.feed_seq = snapshot.seq
        replica.feed_id = snapshot.feed_id
        self.host.submit_snapshot(snapshot, lost)
        store.reap_nodes(snapshot.dead_nodes)
