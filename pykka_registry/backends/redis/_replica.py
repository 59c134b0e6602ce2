"""The Redis backend's local copy of the cluster's names, and the rules that
keep it in step with Redis: applying change events and snapshots, ordering
(fencing tokens, sequence numbers), the bookkeeping of own writes the feed
has not shown yet, and what a data loss in Redis discards.

No I/O and no threads of its own: what it decides that needs Redis (a
claim to release, names to claim again) it hands back to the caller, and
what it changed it records as :class:`~pykka_registry.backends.base.Change`
values for the registry to publish. Unit-tested without a Redis server
(``tests/backends/test_redis_replica.py``).

Guarantees
----------
* **Reads at memory speed.** Reads (``get`` & co., from
  :class:`~pykka_registry.backends.memory.LocalTables`) take at most the
  tables' lock; every write of the copy runs in the registry's server thread
  (or in ``start()`` before any thread), except :meth:`Replica.remove_local`,
  which runs in a dying actor's thread under the registry's write lock.
* **Newer wins.** A change applies only if it is newer than what the copy
  holds (its sequence number above the entry's ``rev``), and never over an
  own write the feed has not shown yet (:meth:`Replica.note_own_write`):
  events arrive out of step with a process's own writes, never behind them.
* **One way to take a remote claim.** Every path that learns another
  process's claim (a feed event, a snapshot row, a holder returned by a
  script) goes through :meth:`Replica.take_remote`: an own name it replaces
  is reported lost (reason ``"lost"``), any other change as a
  :class:`Change`.
* **Data loss.** After Redis lost data, every token, revision and own-write
  guard from before is discarded (:meth:`Replica.apply_snapshot` with
  ``lost``); only own writes made after the snapshot was read stay
  protected.
* **Checked feed.** :meth:`Replica.read_feed` passes on only events that
  follow the last one applied without a gap, each validated field by field;
  a gap, a step back or a malformed entry is reported, never applied.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Hashable, Mapping
from typing import Any, Callable, Optional, Union

import attrs

from pykka_registry._errors import AlreadyRegisteredError, RemoteActorError
from pykka_registry._events import (
    EXPIRED,
    KIND_CRASHED,
    KIND_EXPIRED,
    KIND_NODE_STOPPED,
    KIND_STOPPED,
    LOST,
    UnregisterReason,
)
from pykka_registry._metadata import is_flat
from pykka_registry._remote import ActorLink, NodeLink, RemoteActorRef
from pykka_registry.backends.base import Change, Entry
from pykka_registry.backends.memory import LocalTables
from pykka_registry.backends.redis._schema import Key, Record, Snapshot, key_from_json, key_json
from pykka_registry.backends.redis._schema import checked as _checked
from pykka_registry.backends.redis._schema import number as _number
from pykka_registry.backends.redis._schema import text as _text

__all__ = ["Claim", "FeedRead", "Release", "Replica"]

logger = logging.getLogger("pykka_registry.redis")

_EMPTY: dict[Hashable, Any] = {}  # never written


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


#: A claim to delete in Redis: ``(claim, reason kind, error text)``.
Release = tuple[Claim, str, str]


@attrs.define(frozen=True)
class FeedRead:
    """What :meth:`Replica.read_feed` made of a batch of feed entries."""

    #: Checked events to apply, in order: ``(sequence number, record)``.
    batch: tuple[tuple[int, Record], ...] = ()
    #: The position advanced (there is something to hand on, maybe only ``upto``).
    advanced: bool = False
    #: A gap or a step back was seen: re-read everything.
    resync: bool = False
    #: A problem worth showing in ``health()`` ("" if none).
    problem: str = ""
    #: An oddity that is a problem unless Redis lost data ("" if none).
    suspect: str = ""


class _Urn:
    """Stands in for an actor ref when only its URN is known (an orphan claim)."""

    __slots__ = ("actor_urn",)

    def __init__(self, urn: str) -> None:
        self.actor_urn = urn

    def is_alive(self) -> bool:
        return False


class Replica(LocalTables):
    """The local copy of one node: every live name of the prefix.

    ``node_id``: this node; ``messenger``: what remote refs send through
    (opaque here); ``find_actor(urn)``: a live local actor by URN, or None.
    :attr:`inc` is this node's current lease incarnation (set by the
    backend whenever it takes a lease).
    """

    def __init__(self, node_id: str, messenger: Any,
                 find_actor: Callable[[str], Optional[Any]]) -> None:
        LocalTables.__init__(self)  # _lock, _names, _by_urn, _total
        self.node_id = node_id
        self.messenger = messenger
        self.find_actor = find_actor
        self.inc = ""
        self.own_incs: set[str] = set()  # every lease incarnation this process held
        self.local_refs: dict[str, Any] = {}  # urn -> pykka.ActorRef (own entries)
        self.named_urns: set[str] = set()  # local actors named here once, until they die
        self.node_refs: dict[tuple[str, str], int] = {}  # remote (node, inc) -> entries
        self.node_links: dict[tuple[str, str], NodeLink] = {}
        self._actor_links: dict[str, ActorLink] = {}
        self._remote_refs: dict[str, RemoteActorRef] = {}
        # Own writes the feed has not shown yet: name text -> seq of our latest
        # write (server thread writes; the receiver reads it to skip own events),
        # and the same in write order, to forget them once the feed has passed.
        self.own_pending: dict[str, int] = {}
        self.pending_order: collections.deque[tuple[int, str]] = collections.deque()
        self._own_writes_at: dict[str, int] = {}  # name text -> number of its own write
        self.write_count = 0  # own writes so far (server thread)
        # The change stream's position (receiver thread, or start()).
        self.feed_seq = 0
        self.feed_id: Union[str, bytes] = "0-0"
        self._changes: list[Change] = []  # made here, not yet handed over
        #: Claims to delete in Redis (the backend takes them: :meth:`take_releases`).
        self._releases: list[Release] = []
        #: counters, for health()
        self.lost_names = 0
        self.resyncs = 0

    # -- what the caller takes away -----------------------------------------------------

    def take_changes(self) -> list[Change]:
        """The changes made since the last call, oldest first."""
        if not self._changes:
            return []
        changes, self._changes = self._changes, []
        return changes

    def take_releases(self) -> list[Release]:
        """The claims found to delete in Redis since the last call."""
        if not self._releases:
            return []
        releases, self._releases = self._releases, []
        return releases

    def _changed(self, old: Optional[Claim], new: Optional[Claim],
                 reason: UnregisterReason = EXPIRED) -> None:
        self._changes.append(Change(old, new, reason))

    # -- the tables ------------------------------------------------------------------

    def put(self, entry: Claim) -> Optional[Claim]:
        """Store ``entry`` (takes the lock); return what it replaced."""
        with self._lock:
            return LocalTables._put(self, entry)

    def drop(self, entry: Claim) -> bool:
        """Remove ``entry`` if it is still the one stored under its name."""
        with self._lock:
            if self._names.get(entry.namespace, _EMPTY).get(entry.service) is not entry:
                return False
            self._forget(entry)
            return True

    def all_entries(self) -> list[Claim]:
        with self._lock:
            return [entry for services in self._names.values() for entry in services.values()]

    def own_entries(self) -> list[Claim]:
        """The entries of this node's own (local) actors."""
        return [entry for entry in self.all_entries() if entry.node == self.node_id]

    def _on_added(self, entry: Claim) -> None:
        if entry.node == self.node_id:
            self.local_refs[entry.actor_ref.actor_urn] = entry.actor_ref
            self.named_urns.add(entry.actor_ref.actor_urn)
        else:
            node_key = (entry.node, entry.inc)
            self.node_refs[node_key] = self.node_refs.get(node_key, 0) + 1

    def _on_removed(self, entry: Claim) -> None:
        urn = entry.actor_ref.actor_urn
        if urn not in self._by_urn:  # that actor holds no other name here
            self.local_refs.pop(urn, None)
            if entry.node != self.node_id:
                self._actor_links.pop(urn, None)
                self._remote_refs.pop(urn, None)
        if entry.node != self.node_id:
            node_key = (entry.node, entry.inc)
            left = self.node_refs.get(node_key, 0) - 1
            if left > 0:
                self.node_refs[node_key] = left
            else:
                self.node_refs.pop(node_key, None)
                self.node_links.pop(node_key, None)

    def remove_local(self, actor_ref: Any) -> list[Claim]:
        """Drop a dead local actor's names of this node (its thread, write
        lock held; no I/O); return them."""
        urn = actor_ref.actor_urn
        self.named_urns.discard(urn)
        if urn not in self.local_refs:
            return []
        with self._lock:
            entries = [e for e in self._held_by(urn) if e.node == self.node_id]
            for entry in entries:
                self._forget(entry)
        return entries

    # -- claims --------------------------------------------------------------------

    def remote_ref(self, urn: str, actor_class: str, node: str, inc: str) -> RemoteActorRef:
        """The one ref of remote actor ``urn`` (its link follows the node's
        incarnation)."""
        node_key = (node, inc)
        with self._lock:
            node_link = self.node_links.get(node_key)
            if node_link is None:
                node_link = self.node_links[node_key] = NodeLink(node, inc)
            link = self._actor_links.get(urn)
            ref = self._remote_refs.get(urn)
            if link is None or ref is None:
                link = self._actor_links[urn] = ActorLink(urn, node_link, self.messenger)
                ref = self._remote_refs[urn] = RemoteActorRef(urn, actor_class, node, link)
            elif link.node is not node_link:
                link.node = node_link
                if link.dead:
                    link.dead = False
                    link.stopped.clear()
            return ref

    def remote_claim(self, record: Record, rev: Optional[int] = None) -> Claim:
        """The local copy's entry for a (checked) record of another node."""
        ref = self.remote_ref(record.urn, record.actor_class, record.node, record.inc)
        metadata = record.metadata
        return Claim(record.key[0], record.key[1], ref, metadata, is_flat(metadata),
                     node=record.node, inc=record.inc, token=record.token,
                     rev=record.rev if rev is None else rev, actor_class=record.actor_class)

    def own_claim(self, key: Key, actor_ref: Any, metadata: Mapping[str, Any], token: int,
                  rev: int) -> Claim:
        return Claim(key[0], key[1], actor_ref, metadata, is_flat(metadata), node=self.node_id,
                     inc=self.inc, token=token, rev=rev,
                     actor_class=actor_ref.actor_class.__qualname__)

    def take_remote(self, claim: Claim, current: Optional[Claim]) -> None:
        """Another node's ``claim`` holds the name that ``current`` (what the
        copy holds, or None) held: store it; an own name is lost to it."""
        if current is not None and current.node == self.node_id:
            self.lose(current, claim)
            return
        self.put(claim)
        self._changed(current, claim)

    def learn(self, record: Record) -> RemoteActorRef:
        """Apply a remote holder's record read from Redis (if newer than ours)."""
        current = self.get(*record.key)
        if current is not None and current.rev >= record.rev and \
                isinstance(current.actor_ref, RemoteActorRef):
            return current.actor_ref
        claim = self.remote_claim(record)
        self.take_remote(claim, current)
        assert isinstance(claim.actor_ref, RemoteActorRef)
        return claim.actor_ref

    def lose(self, entry: Claim, holder: Optional[Claim]) -> None:
        """``entry`` (ours) is held by another node now (``holder``, if
        known): report it lost."""
        logger.warning(
            "%s: lost the name %r in namespace %r (held by %s) to node %s",
            self.node_id, entry.service, entry.namespace, entry.actor_ref,
            holder.node if holder else "?")
        self.lost_names += 1
        if holder is not None:
            self.put(holder)
        else:
            self.drop(entry)
        self._changed(entry, None, LOST)
        if holder is not None:
            self._changed(None, holder)

    def adopt(self, record: Record, seq: int, current: Optional[Claim]) -> None:
        """A claim by this node that the local copy does not know (a write whose
        answer was lost): keep it if its actor lives, else release it."""
        key = record.key
        if record.inc not in self.own_incs:
            # Another process took this node id while this one was away past
            # its lease: its claim, not ours to adopt or release (and the
            # release script would refuse it: fenced by the incarnation).
            return
        actor_ref = self.find_actor(record.urn)
        if actor_ref is not None and record.inc == self.inc:
            claim = self.own_claim(key, actor_ref, record.metadata, record.token, seq)
            self.put(claim)
            self._changed(current, claim)
            return
        orphan = Claim(key[0], key[1], _Urn(record.urn), {}, True, node=self.node_id,
                       inc=record.inc, token=record.token, rev=seq)
        self._releases.append((orphan, KIND_STOPPED, ""))

    # -- own writes (server thread) ------------------------------------------------------

    def pre_claim(self, entry: Entry, is_alive: Callable[[Any], bool],
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

    def own_holder(self, holder: Record, is_alive: Callable[[Any], bool]) -> str:
        """A claim of this node holds the name in Redis: the token to replace
        if its actor is dead.

        Raises:
            AlreadyRegisteredError: its actor lives.
        """
        local = self.find_actor(holder.urn)
        if local is not None and is_alive(local):
            raise AlreadyRegisteredError(holder.key[0], holder.key[1], local)
        return str(holder.token)

    def claimed(self, entry: Entry, seq: int, kjson: Optional[str] = None) -> Optional[Entry]:
        """Store the claim ``entry`` got (token ``seq``) in the local copy; return
        what ``register`` returns for it (a remote holder it replaced, whose
        lease had lapsed, is reported expired and not returned). ``kjson``:
        the name's text, if the caller has it already."""
        key = (entry.namespace, entry.service)
        claim = self.own_claim(key, entry.actor_ref, entry.metadata, seq, seq)
        previous = self.put(claim)
        self.note_own_write(key_json(*key) if kjson is None else kjson, seq)
        if previous is None or previous.node == self.node_id:
            return previous
        self._changed(previous, None)
        return None

    def gone(self, current: Claim) -> None:
        """An own claim is no longer in Redis (found by a write)."""
        if self.drop(current):
            self._changed(current, None)

    def stale_own(self) -> list[Claim]:
        """Own entries whose claim is not of the current lease."""
        return [entry for entry in self.all_entries()
                if entry.node == self.node_id and entry.inc != self.inc]

    def reclaimed(self, entry: Claim, seq: int) -> None:
        """``entry`` (an own stale claim) was claimed again with token ``seq``."""
        self.note_own_write(key_json(entry.namespace, entry.service), seq)
        if self.get(entry.namespace, entry.service) is entry:
            self.put(attrs.evolve(entry, inc=self.inc, token=seq, rev=seq))
        else:  # its actor died during the round trip
            self._releases.append((attrs.evolve(entry, token=seq), KIND_STOPPED, ""))

    def not_reclaimed(self, entry: Claim, holder: Optional[Record]) -> None:
        """Claiming ``entry`` again found the name held (``holder``: its
        record, None if unreadable)."""
        if self.get(entry.namespace, entry.service) is not entry:  # its actor died meanwhile
            if holder is not None and holder.node != self.node_id:
                self.learn(holder)
        elif holder is None:
            self.lose(entry, None)
        elif holder.node == self.node_id:
            self.drop(entry)
        else:
            self.take_remote(self.remote_claim(holder), entry)

    def note_own_write(self, kjson: str, seq: int) -> None:
        """Remember an own write until the feed has passed it (server thread)."""
        self.write_count += 1
        self.own_pending[kjson] = seq
        self._own_writes_at[kjson] = self.write_count
        self.pending_order.append((seq, kjson))

    def forget_own_writes(self, upto: int) -> None:
        """The feed has passed ``upto``: own writes up to there need no guard."""
        order, pending = self.pending_order, self.own_pending
        while order and order[0][0] <= upto:
            seq, kjson = order.popleft()
            if pending.get(kjson) == seq:
                del pending[kjson]
                self._own_writes_at.pop(kjson, None)

    # -- the change feed -------------------------------------------------------------

    def read_feed(self, entries: Any) -> FeedRead:
        """Check the sequence of feed entries (``(stream id, fields)`` as
        ``XREAD`` returns them), parse and validate each, and return the
        good ones; own writes already applied are dropped here, and the
        position (:attr:`feed_seq`, :attr:`feed_id`) advances (receiver
        thread). A malformed entry is skipped alone, with a warning."""
        batch: list[tuple[int, Record]] = []
        first = self.feed_seq
        own_pending = self.own_pending
        resync = False
        problem = suspect = ""
        for entry_id, fields in entries:
            try:
                seq = _number({"s": fields.get(b"s")}, "s")
            except ValueError:
                self.feed_id = entry_id
                problem = "skipped a change feed entry without a sequence number"
                logger.warning("%s: ignoring a foreign entry %s in the change feed", self.node_id,
                               _text(entry_id))
                continue
            if seq <= self.feed_seq:
                # Redis lost data (the counter restarted), or a foreign entry:
                # the check that follows tells which.
                self.feed_id = entry_id
                suspect = "skipped a change feed entry out of sequence"
                resync = True
                continue
            if seq != self.feed_seq + 1:
                logger.info("%s: change feed gap (%d -> %d): re-reading every name",
                            self.node_id, self.feed_seq, seq)
                resync = True
                break
            self.feed_id = entry_id
            self.feed_seq = seq
            try:
                raw = json.loads(fields[b"e"])
            except (KeyError, TypeError, ValueError, RecursionError):
                raw = None
            if not isinstance(raw, dict):
                problem = f"skipped a malformed change event ({seq})"
                logger.warning("%s: ignoring a malformed change event %d", self.node_id, seq)
                continue
            if own_pending.get(str(raw.get("k"))) == seq:
                continue  # our own write, applied when it was made
            record = _checked(raw, "a change event", rev=seq, event=True)
            if record is None:
                problem = f"skipped a malformed change event ({seq})"
                continue
            batch.append((seq, record))
        return FeedRead(tuple(batch), self.feed_seq != first, resync, problem, suspect)

    def apply_events(self, batch: Any, upto: int) -> bool:
        """Apply checked feed events (server thread), each on its own (one that
        fails is logged and skipped, the others still apply), then forget own
        writes the feed has passed (``upto``: the last sequence number read).
        True if this node must claim names again."""
        recover = False
        for seq, record in batch:
            try:
                recover = self.apply_event(seq, record) or recover
            except Exception:  # a bug must not drop the other changes of the batch
                logger.exception("%s: could not apply change %d of %r; skipped", self.node_id,
                                 seq, record.key)
        self.forget_own_writes(upto)
        return recover

    def apply_event(self, seq: int, record: Record) -> bool:
        """Apply one change; True if this node must claim names again."""
        key = record.key
        pending = self.own_pending.get(record.kjson)
        if pending is not None and seq <= pending:
            return False  # our own write, or older than it
        current = self.get(*key)
        if current is not None and current.rev >= seq:
            return False
        if record.op in ("set", "upd"):
            if record.node == self.node_id:
                self.adopt(record, seq, current)
            else:
                self.take_remote(self.remote_claim(record, seq), current)
            return False
        # del
        if current is None or current.token != record.token or current.node != record.node or \
                (current.node != self.node_id and current.inc != record.inc):
            return False
        why = record.why
        if current.node == self.node_id and why == KIND_EXPIRED:
            # Our lease lapsed and another node cleared our names: claim them
            # again (if still free) instead of dropping them.
            self.put(attrs.evolve(current, inc=""))
            return True
        actor_ref = current.actor_ref
        if isinstance(actor_ref, RemoteActorRef):
            # Before the drop: a reader who sees the name gone must also see
            # the remote ref dead.
            link = actor_ref._link
            if why == KIND_EXPIRED:
                link.node.lapsed = True
            elif why in (KIND_STOPPED, KIND_CRASHED, KIND_NODE_STOPPED):
                link.mark_dead()
        self.drop(current)
        error = RemoteActorError(record.error) if why == KIND_CRASHED else None
        self._changed(current, None, UnregisterReason(why, error))
        return False

    # -- snapshots -------------------------------------------------------------------

    def install(self, snapshot: Snapshot) -> None:
        """At start: fill the empty local copy (no server, no listeners yet)."""
        for record in snapshot.records:
            if record.node != self.node_id:
                self.put(self.remote_claim(record))
        self.feed_seq = snapshot.seq
        self.feed_id = snapshot.feed_id

    def apply_snapshot(self, snapshot: Snapshot, lost: bool) -> bool:
        """Make the local copy equal to ``snapshot`` (server thread): report
        the differences, own names taken by others, and (True) that own
        names vanished and must be claimed again.

        ``lost``: Redis lost data (restart without persistence, flush, failover
        that lost writes): the counter restarted, so every token, revision and
        own-write guard from before means nothing in the new numbering and is
        discarded here; only own writes made after the snapshot was read stay
        protected."""
        self.resyncs += 1
        if lost:
            fresh = {kjson for kjson, w in self._own_writes_at.items()
                     if w > snapshot.writes_before}
            self.own_pending = {k: v for k, v in self.own_pending.items() if k in fresh}
            self._own_writes_at = {k: v for k, v in self._own_writes_at.items() if k in fresh}
            self.pending_order = collections.deque(
                (seq, k) for seq, k in self.pending_order if k in fresh)
            protected = {key_from_json(kjson) for kjson in fresh}
        else:
            self.forget_own_writes(snapshot.seq)
            protected = {key_from_json(kjson) for kjson in self.own_pending}
        rows = {record.key: record for record in snapshot.records}
        recover = False
        for entry in self.all_entries():
            key = (entry.namespace, entry.service)
            if key in rows or key in protected:
                continue
            if entry.node == self.node_id:
                self.put(attrs.evolve(entry, inc="", token=0, rev=0) if lost
                         else attrs.evolve(entry, inc=""))
                recover = True
            elif self.drop(entry):
                self._changed(entry, None)
        for key, row in rows.items():
            if key in protected:
                continue
            try:
                recover = self.apply_row(row, lost) or recover
            except Exception:  # one record must not stop the others
                logger.exception("%s: could not apply the record of %r; skipped",
                                 self.node_id, key)
        return recover

    def apply_row(self, row: Record, lost: bool) -> bool:
        """Make one name equal to its snapshot record; True if this node must
        claim names again."""
        current = self.get(*row.key)
        if row.node == self.node_id:
            if current is not None and current.node == self.node_id and \
                    current.actor_ref.actor_urn == row.urn and \
                    (lost or current.token == row.token):
                if (current.inc, current.token, current.rev) != (row.inc, row.token, row.rev):
                    self.put(attrs.evolve(current, inc=row.inc, token=row.token, rev=row.rev))
                return row.inc != self.inc
            self.adopt(row, row.rev, current)
            return False
        if current is not None and (current.node, current.inc, current.token, current.rev,
                                    current.actor_ref.actor_urn) == \
                (row.node, row.inc, row.token, row.rev, row.urn):
            return False  # (the incarnation tells claims apart across a data loss)
        claim = self.remote_claim(row)
        if lost and current is not None and current.node == row.node and \
                current.actor_ref.actor_urn == row.urn and current.metadata == row.metadata:
            self.put(claim)  # the same claim, renumbered: no event
            return False
        self.take_remote(claim, current)
        return False
