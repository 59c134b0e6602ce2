"""Groups across processes for :class:`~pykka_registry.backends.redis.RedisBackend`.

Three parts, from pure to I/O:

* :class:`GroupReplica`: this process's copy of every node's memberships
  (pure: no I/O, no threads of its own). Reads (``members``, ``groups``...)
  come from it at memory speed, in the caller's thread.
* :class:`RedisGroups`: the Redis side. Writes (``join``, ``leave``,
  ``clear_namespace_groups``) run in the registry's server thread, each one
  Lua script (:mod:`._scripts`: ``GJOIN``, ``GLEAVE``) with the write lock
  released for the round trip; ``leave_all`` (a dying actor's thread) only
  edits the copy and queues its ``GLEAVE`` for the server thread. A *group
  thread* of its own follows the group change stream ``P:gevents``, watches
  the leases of the nodes it has members from, and re-reads everything
  (``GSNAPSHOT``) after a gap or a Redis data loss.
* The **fan-out endpoint**: ``dispatch`` and ``ask_all`` send **one message
  per remote node**, through the backend's existing messenger
  (:mod:`pykka_registry._remote`, signed like every message), to the
  pseudo-URN ``"group:" + json [namespace, group]``. On the receiving node
  the messenger's ``find_actor`` (the backend's ``_find_named``) resolves
  that URN to a :class:`_Endpoint`, which quacks like the bits of an actor
  ref the messenger uses: ``tell(message)`` tells every local member of the
  group; ``is_alive()``; ``actor_inbox.put(envelope)`` takes an ask (a
  :class:`GroupAsk`: the message, a time budget and the URNs the sender
  counted as this node's members), asks those members and answers
  ``envelope.reply_to.set([(urn, value), ...])`` from a short-lived worker
  thread, so the receiver thread never blocks.

Key layout and records: :mod:`._schema` (``P:gmem:<node>``, ``P:gnodes``,
``P:gseq``, ``P:gevents``). This module publishes no event itself: the
functions it submits to the server thread return
:class:`~pykka_registry.backends.base.MemberChange` values, which the
registry turns into ``Joined`` and ``Left`` events.

Guarantees
----------
* **Cluster-wide groups.** ``members`` lists local refs for members of this
  process and :class:`~pykka_registry.RemoteActorRef` for the others, in join
  order (the group counter's value at the first join; a rejoin keeps it).
* **Death is complete before Pykka reports it**, for local members: their
  memberships leave the copy in the dying thread (no I/O), and their
  deletion in Redis follows from the server thread.
* **Lapsed nodes vanish.** The group thread checks the leases of the nodes
  it has members from every ``min(lease_ttl / 3, 0.5)`` s: a lapsed node's
  members leave the copy (``Left`` with reason ``"expired"``) within about
  ``lease_ttl + 0.5`` s, and its records are deleted in Redis. A stopped
  node deletes its own records (``"node_stopped"``); the last node of a
  prefix deletes every group key.
* **Ordered events.** Remote changes are applied and published in the
  server thread (``context.submit``), in the stream's order, each with its
  change of the copy (own changes are published by the server when made),
  so a group's ``Joined`` and ``Left`` follow the order of the copy's
  changes.
* **Hostile data.** Every record and event is validated field by field
  (:func:`._schema.parse_member`, and a record must sit under its own
  field); a bad one is skipped alone with a warning. Another node's record
  naming an actor that is a member here is ignored (it would replace the
  membership); one naming an actor of this process in no group here
  leaves the copy when the actor dies (an actor of this process is no
  other process's member: :data:`_PROCESS_NODES`).
* **A foreign feed entry cannot wedge the group feed.** Stream ids are
  assigned by Redis (``*``; a stream whose ids are exhausted is replaced by
  the script that meets it). A reader left behind an entry someone else
  appended (an id far in the future, the last possible id) notices that
  the group counter is ahead while it has not advanced for
  :data:`_STALL_S` and re-reads everything; re-reads are rate-limited (one
  per :data:`_RESYNC_INTERVAL_S`), and a foreign, malformed or out-of-order
  entry, a stall or too many re-reads keep ``health()`` degraded (problem
  ``groups: change feed: ...``) for :data:`_FEED_ALERT_S`.
* **Lost replies.** A join that Redis applied but whose reply was lost
  (it raised) is read back from the stream: a member the copy does not
  hold is deleted again (fenced by its place; a retried join keeps that
  place and is left alone); a member it holds takes the record's place and
  metadata.
* ``dispatch`` returns how many members the message was sent to: local
  members told, plus the members (as this copy knows them) of every remote
  node whose message was accepted by Redis. A remote node tells its members
  at most once per message (the messenger refuses replays), and gets one
  message even while the copy holds its members of two incarnations (a new
  lease, the old one not dropped yet): sent to the newest.
* ``ask_all`` never waits longer than its timeout; a member whose answer
  (or whose node's answer) did not come in time has a
  :class:`~pykka_registry.RegistryTimeoutError` as its value; a node's
  answer that is not a list of ``(urn, value)`` gives its members a
  :class:`~pykka_registry.RemoteActorError`, never a raw exception.

Threads: see each method. The replica's lock is taken briefly by writers
(server thread, dying threads) and by readers of multi-structure views.
"""

from __future__ import annotations

import collections
import functools
import logging
import pickle
import threading
import time
from collections.abc import Collection, Hashable, Sequence
from typing import Any, Callable, ClassVar, Optional

import attrs
import pykka

from pykka_registry import _deathwatch
from pykka_registry._errors import (
    ActorNotAliveError,
    InvalidKeyError,
    RegistryTimeoutError,
    RegistryUnavailableError,
    RemoteActorError,
    safe_repr,
)
from pykka_registry._events import (
    EXPIRED,
    KIND_CRASHED,
    KIND_EXPIRED,
    KIND_LEFT,
    KIND_NODE_STOPPED,
    KIND_STOPPED,
    LEFT,
    UnregisterReason,
)
from pykka_registry._metadata import is_flat
from pykka_registry._remote import ActorLink, NodeLink, RemoteActorRef
from pykka_registry.backends.base import Member, MemberChange
from pykka_registry.backends.redis import _scripts
from pykka_registry.backends.redis._schema import (
    MemberRecord,
    brief,
    checked_member,
    counter,
    dumps,
    group_keys,
    group_members_key,
    key_from_json,
    key_json,
    member_field,
    text,
)

__all__ = ["GROUP_URN", "GroupAsk", "GroupMember", "GroupReplica", "RedisGroups",
           "RedisGroupsMixin"]

logger = logging.getLogger("pykka_registry.redis")

#: The pseudo-URN prefix of a group's fan-out endpoint on a node.
GROUP_URN = "group:"
_BLOCK_MS = 500
_EMPTY: dict[Any, Any] = {}
_NONE: tuple[Any, ...] = ()
_RESYNC_INTERVAL_S = 0.5
#: A group feed reader that has not advanced for this long while the group
#: counter is ahead is stuck (behind an entry someone else appended, or on a
#: stream that a script replaced): re-read everything.
_STALL_S = 2.0
#: How long a problem with the group feed keeps ``health()`` degraded.
_FEED_ALERT_S = 30.0
#: The node ids of the RedisGroups started in this process (and not closed):
#: a record of any other node naming an actor of this process is false.
_PROCESS_NODES: set[str] = set()


def _refusals() -> tuple[type[BaseException], ...]:
    """redis-py's error replies (imported late: this module loads without
    redis-py for its pure parts)."""
    import redis

    return (redis.ResponseError,)


@attrs.define(frozen=True, eq=False)
class GroupMember(Member):
    """A :class:`Member` plus where it lives: its ``node`` and lease
    incarnation ``inc``, its place in join order (``order``) and the
    counter value of its last write (``seq``). Immutable; crosses threads."""

    node: str = ""
    inc: str = ""
    order: int = 0
    seq: int = 0


@attrs.define(frozen=True)
class GroupAsk:
    """What ``ask_all`` sends to a remote node's endpoint: the message, how
    long the node may gather (seconds) and the URNs of the members the
    sender counted there. Immutable; pickled."""

    message: Any
    budget: float
    urns: tuple[str, ...]


# -- the local copy (pure) ------------------------------------------------------------------


class GroupReplica:
    """Every node's memberships: ``namespace -> group -> urn -> GroupMember``,
    a reverse index by URN, a count per remote ``(node, inc)`` and a cached
    sorted snapshot per group. Pure: no I/O.

    Writers (server thread, dying threads) are serialised by the registry's
    write lock and take ``_lock`` too; readers run in any thread and see the
    state before or after a write, never a mix.
    """

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._lock = threading.Lock()
        self._groups: dict[Hashable, dict[Hashable, dict[str, GroupMember]]] = {}
        self._by_urn: dict[str, dict[tuple[Hashable, Hashable], GroupMember]] = {}
        self._nodes: dict[tuple[str, str], int] = {}
        self._cache: dict[tuple[Hashable, Hashable], tuple[GroupMember, ...]] = {}
        self._total = 0

    # -- writes ----------------------------------------------------------------------

    def put(self, member: GroupMember) -> Optional[GroupMember]:
        """Store ``member`` (replacing the actor's membership of that group);
        return the replaced one."""
        key = (member.namespace, member.group)
        urn = member.actor_ref.actor_urn
        with self._lock:
            members = self._groups.setdefault(member.namespace, {}).setdefault(member.group, {})
            previous = members.get(urn)
            if previous is not None:
                self._uncount(previous)
            else:
                self._total += 1
            members[urn] = member
            self._by_urn.setdefault(urn, {})[key] = member
            if member.node != self.node_id:
                node_key = (member.node, member.inc)
                self._nodes[node_key] = self._nodes.get(node_key, 0) + 1
            self._cache.pop(key, None)
            return previous

    def _uncount(self, member: GroupMember) -> None:
        if member.node != self.node_id:
            node_key = (member.node, member.inc)
            left = self._nodes.get(node_key, 0) - 1
            if left > 0:
                self._nodes[node_key] = left
            else:
                self._nodes.pop(node_key, None)

    def _drop(self, member: GroupMember) -> None:
        key = (member.namespace, member.group)
        urn = member.actor_ref.actor_urn
        groups = self._groups[member.namespace]
        members = groups[member.group]
        del members[urn]
        if not members:
            del groups[member.group]
            if not groups:
                del self._groups[member.namespace]
        held = self._by_urn.get(urn)
        if held is not None:
            held.pop(key, None)
            if not held:
                del self._by_urn[urn]
        self._uncount(member)
        self._total -= 1
        self._cache.pop(key, None)

    def remove(self, member: GroupMember) -> bool:
        """Remove ``member`` if it is still the one stored; True if it was."""
        with self._lock:
            if self.get(member.namespace, member.group, member.actor_ref.actor_urn) \
                    is not member:
                return False
            self._drop(member)
            return True

    def remove_all(self, members: Sequence[GroupMember]) -> list[GroupMember]:
        """Remove those of ``members`` still stored; return them."""
        with self._lock:
            gone = [m for m in members
                    if self.get(m.namespace, m.group, m.actor_ref.actor_urn) is m]
            for member in gone:
                self._drop(member)
            return gone

    def remove_actor(self, urn: str, process_nodes: Optional[Collection[str]] = None
                     ) -> list[GroupMember]:
        """Remove every membership of this node's actor ``urn``, and (given
        ``process_nodes``, the nodes of this process) those of ``urn`` that
        a node not in it claims: an actor of this process is no other
        process's member."""
        if urn not in self._by_urn:  # most deaths: an actor in no group
            return []
        with self._lock:
            gone = [m for m in self._by_urn.get(urn, _EMPTY).values()
                    if m.node == self.node_id or
                    (process_nodes is not None and m.node not in process_nodes)]
            for member in gone:
                self._drop(member)
            return gone

    def remove_node(self, node: str, inc: Optional[str] = None) -> list[GroupMember]:
        """Remove every membership of ``node`` (of its incarnation ``inc``
        only, if given); return them in join order."""
        with self._lock:
            gone = [m for groups in self._groups.values() for members in groups.values()
                    for m in members.values()
                    if m.node == node and (inc is None or m.inc == inc)]
            for member in gone:
                self._drop(member)
        return sorted(gone, key=_order)

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()
            self._by_urn.clear()
            self._nodes.clear()
            self._cache.clear()
            self._total = 0

    # -- reads (any thread) ----------------------------------------------------------

    def get(self, namespace: Hashable, group: Hashable, urn: str) -> Optional[GroupMember]:
        return self._groups.get(namespace, _EMPTY).get(group, _EMPTY).get(urn)

    def members(self, namespace: Hashable, group: Hashable) -> tuple[GroupMember, ...]:
        """The group's members in join order (a cached snapshot)."""
        key = (namespace, group)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with self._lock:
            members = self._groups.get(namespace, _EMPTY).get(group)
            if not members:
                return _NONE
            found = tuple(sorted(members.values(), key=_order))
            self._cache[key] = found
            return found

    def own(self) -> list[GroupMember]:
        """This node's memberships."""
        with self._lock:
            return [m for held in self._by_urn.values() for m in held.values()
                    if m.node == self.node_id]

    def own_member(self, urn: str) -> Optional[Any]:
        """The ref of this node's actor ``urn`` if it is in a group here."""
        for member in self._by_urn.get(urn, _EMPTY).copy().values():
            if member.node == self.node_id:
                return member.actor_ref
        return None

    def remote(self) -> list[GroupMember]:
        """Every other node's memberships."""
        with self._lock:
            return [m for held in self._by_urn.values() for m in held.values()
                    if m.node != self.node_id]

    def remote_nodes(self) -> list[tuple[str, str]]:
        """The ``(node, inc)`` of every other node with a member here."""
        with self._lock:
            return list(self._nodes)

    def holds_urn(self, urn: str) -> bool:
        return urn in self._by_urn

    def groups(self, namespace: Hashable) -> list[Hashable]:
        with self._lock:
            return list(self._groups.get(namespace, _EMPTY))

    def groups_of(self, urn: str) -> list[tuple[Hashable, Hashable]]:
        with self._lock:
            return list(self._by_urn.get(urn, _EMPTY))

    def namespaces(self) -> list[Hashable]:
        with self._lock:
            return list(self._groups)

    def count(self, namespace: Hashable, group: Hashable) -> int:
        return len(self._groups.get(namespace, _EMPTY).get(group, _EMPTY))

    def totals(self) -> tuple[int, int]:
        with self._lock:
            return (sum(len(groups) for groups in self._groups.values()), self._total)


def _order(member: GroupMember) -> tuple[int, str]:
    return (member.order, member.actor_ref.actor_urn)


def _reason(why: str, error: str = "") -> UnregisterReason:
    if why == KIND_LEFT:
        return LEFT
    if why == KIND_CRASHED:
        return UnregisterReason(KIND_CRASHED, RemoteActorError(error))
    return UnregisterReason(why)


# -- the Redis side ---------------------------------------------------------------------------


@attrs.define(frozen=True)
class _Snapshot:
    seq: int
    feed_id: str
    records: tuple[MemberRecord, ...]
    stale_nodes: tuple[str, ...]


class RedisGroups:
    """Groups of one :class:`RedisBackend` node; see the module docstring.

    Created with the backend; :meth:`start` (caller's thread, from the
    backend's ``start``) connects it, :meth:`close` (from the backend's
    ``close``) releases this node's memberships.
    """

    def __init__(self, prefix: str, node_id: str, lease_ttl: float, feed_maxlen: int) -> None:
        self.prefix = prefix
        self.node_id = node_id
        self.lease_ttl = lease_ttl
        self.feed_maxlen = feed_maxlen
        self.replica = GroupReplica(node_id)
        self._gnodes, self._gseq, self._gevents = group_keys(prefix)
        self._own_hash = group_members_key(prefix, node_id)
        self._ctx: Any = None
        self._r: Any = None
        self._rx: Any = None
        self._messenger: Any = None
        self._incarnation: Callable[[], str] = lambda: ""
        self._epoch: Callable[[], str] = lambda: ""
        self._scripts: dict[str, Any] = {}
        # remote refs of members (and endpoints), by (node, inc) and urn
        self._node_links: dict[tuple[str, str], NodeLink] = {}
        self._refs: dict[str, RemoteActorRef] = {}
        # GLEAVE items queued by dying threads: (node, group json, urn, place, why, err)
        self._releases: collections.deque[tuple[str, str, str, str, str, str]] = \
            collections.deque()
        self._release_queued = False
        # Local actors that joined a group here, until they die: reachable
        # from other processes (as actors named here are), so that a
        # stop_namespace elsewhere can stop one that has just been removed.
        self._joined_urns: set[str] = set()
        self._feed_seq = 0
        self._feed_id: Any = "0-0"
        self._written_inc = ""  # the incarnation own records were last written with
        #: every lease incarnation this process held as this node (shared
        #: with the backend's copy, which fills it)
        self.own_incs: set[str] = set()
        self._seen_epoch = ""
        self._resync_requested = False
        self._reassert_queued = False
        self._last_resync = 0.0
        self._resync_times: collections.deque[float] = collections.deque(maxlen=64)
        self._feed_problem = ""  # why the group feed needed attention lately (health)
        self._feed_problem_at = -float("inf")
        self._stalled_at_seq = -1  # the feed position when the counter was seen ahead
        self._stalled_since = 0.0
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        #: counters (tests, health)
        self.resyncs = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, context: Any, client: Any, blocking: Any, messenger: Any,
              incarnation: Callable[[], str], epoch: Callable[[], str]) -> None:
        """Connect (caller's thread, from the backend's ``start``): clear
        this node's records of earlier incarnations, read every node's
        members, start the group thread. A Redis error leaves the copy empty
        and the group thread re-reads as soon as it can."""
        self._ctx = context
        self._r = client
        self._rx = blocking
        self._messenger = messenger
        self._incarnation = incarnation
        self._epoch = epoch
        for name in ("GJOIN", "GLEAVE", "GSNAPSHOT", "GREAP", "GCLEAR"):
            self._scripts[name] = client.register_script(getattr(_scripts, name))
        self._written_inc = incarnation()
        self._seen_epoch = epoch()
        _PROCESS_NODES.add(self.node_id)
        try:
            self._reap(self.node_id, KIND_EXPIRED)  # a reused node_id's old records
            self._install(self._read_snapshot())
        except Exception as error:
            logger.warning("%s: could not read the groups at start (%r); retrying",
                           self.node_id, error)
            self._resync_requested = True
        self._thread = threading.Thread(
            target=self._run, name=f"pykka-registry-redis-groups-{context.name}", daemon=True)
        self._thread.start()

    def close(self, reachable: bool) -> None:
        """Stop the group thread; if Redis is ``reachable``, delete this
        node's memberships (``Left`` reason ``"node_stopped"`` elsewhere)
        and, if no node of the prefix lives any more, every group key. Run
        after the backend released its lease and names. Never raises."""
        if self._closed:
            return
        self._closed = True
        _PROCESS_NODES.discard(self.node_id)
        self._stopping.set()
        thread = self._thread
        if thread is not None and reachable:
            try:  # wake the blocking XREAD: an entry without "s" that readers skip
                self._r.xadd(self._gevents, {"w": self.node_id}, maxlen=self.feed_maxlen,
                             approximate=True)
            except _refusals():
                pass  # (ids exhausted, OOM...): Redis is there; the read ends by itself
            except Exception:
                reachable = False
        if thread is not None and thread is not threading.current_thread():
            thread.join(_BLOCK_MS / 1000 + 2.0)
        if reachable and self._r is not None:
            try:
                self._reap(self.node_id, KIND_NODE_STOPPED)
                self._scripts["GCLEAR"](
                    keys=[f"{self.prefix}:nodes", self._gnodes, self._gseq, self._gevents],
                    args=[self.prefix])
            except Exception as error:
                logger.info("%s: could not release the group members at stop (%r); they "
                            "expire with the lease", self.node_id, error)
        self.replica.clear()

    # -- health (any thread) -----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The groups' part of ``RedisBackend.health()``: members held here
        and known (every node), remote nodes with members, the group feed's
        position and re-reads, deletes waiting to be sent, and ``problems``
        (a list of strings; empty when healthy). Never raises."""
        own = remote_nodes = 0
        try:
            own = len(self.replica.own())
            remote_nodes = len({node for node, _ in self.replica.remote_nodes()})
        except Exception:  # pragma: no cover - a read racing with close
            pass
        problems = []
        pending = len(self._releases)
        if pending:
            problems.append(f"groups: {pending} memberships of dead actors wait to be "
                            "deleted in Redis")
        thread = self._thread
        if not self._closed and thread is not None and not thread.is_alive():
            problems.append("groups: the group thread is not running")
        if self._reassert_queued or (self._written_inc and
                                     self._written_inc != self._incarnation()):
            problems.append("groups: own members are being written again (new lease)")
        if time.monotonic() - self._feed_problem_at < _FEED_ALERT_S:
            problems.append(f"groups: change feed: {self._feed_problem} (someone else writes "
                            f"to {self._gevents}?)")
        return {
            "members_here": own,
            "members_known": self.replica.totals()[1],
            "remote_nodes": remote_nodes,
            "feed_seq": self._feed_seq,
            "resyncs": self.resyncs,
            "pending_releases": pending,
            "problems": problems,
        }

    # -- refs -------------------------------------------------------------------------

    def _node_link(self, node: str, inc: str) -> NodeLink:
        link = self._node_links.get((node, inc))
        if link is None:
            link = self._node_links[(node, inc)] = NodeLink(node, inc)
        return link

    def _remote_ref(self, record: MemberRecord) -> RemoteActorRef:
        ref = self._refs.get(record.urn)
        if ref is not None and ref.node_id == record.node and \
                ref._link.node.inc == record.inc and ref.is_alive():
            return ref
        link = ActorLink(record.urn, self._node_link(record.node, record.inc), self._messenger)
        ref = self._refs[record.urn] = RemoteActorRef(record.urn, record.actor_class,
                                                      record.node, link)
        return ref

    def _endpoint_ref(self, member_ref: RemoteActorRef, kjson: str) -> RemoteActorRef:
        """The fan-out endpoint of a group on the node of ``member_ref`` (a
        member there): it shares that member's node link (and so learns of
        a lapsed lease with it). Any thread; touches no shared table."""
        urn = GROUP_URN + kjson
        link = ActorLink(urn, member_ref._link.node, self._messenger)
        return RemoteActorRef(urn, "group", member_ref.node_id, link)

    def _forget_refs(self, gone: Sequence[GroupMember]) -> None:
        for member in gone:
            urn = member.actor_ref.actor_urn
            if member.node != self.node_id and not self.replica.holds_urn(urn):
                self._refs.pop(urn, None)
        live = set(self.replica.remote_nodes())
        for node_key in [k for k in list(self._node_links) if k not in live]:
            del self._node_links[node_key]

    def _member(self, record: MemberRecord) -> GroupMember:
        ref = self._remote_ref(record)
        return GroupMember(record.key[0], record.key[1], ref, record.metadata,
                           is_flat(record.metadata), node=record.node, inc=record.inc,
                           order=record.order, seq=record.seq)

    # -- writes (server thread, write lock held) ------------------------------------

    def _io(self) -> Any:
        return self._ctx.unlocked()

    def _unavailable(self, error: BaseException, what: str) -> RegistryUnavailableError:
        from pykka_registry.backends.redis._store import describe

        return RegistryUnavailableError(f"{what}: Redis {describe(error)}")

    def join(self, member: Member) -> Optional[Member]:
        """Join in Redis (one ``GJOIN``, the write lock released), then in
        the copy. Server thread.

        Raises:
            ActorNotAliveError: the actor died during the round trip (its
                record is deleted again).
            RegistryUnavailableError: Redis is out of reach, refused, or
                this node's lease lapsed (try again once it is renewed).
        """
        actor_ref = member.actor_ref
        urn = actor_ref.actor_urn
        kjson = key_json(member.namespace, member.group)
        inc = self._incarnation()
        try:
            with self._io():
                result = self._gjoin(kjson, urn, actor_ref.actor_class.__qualname__,
                                     dumps(member.metadata), inc)
        except Exception as error:
            raise self._unavailable(error, "join") from error
        if text(result[0]) != "ok":
            raise RegistryUnavailableError(
                "join: this node's lease lapsed; it is being renewed, try again")
        seq, order = int(result[1]), int(result[2])
        if _deathwatch.death_seen(actor_ref):
            # It died while we waited: its clean-up ran before the copy knew it.
            self._queue_release([(self.node_id, kjson, urn, str(order), KIND_STOPPED, "")])
            raise ActorNotAliveError(f"{actor_ref} died while it was joining a group")
        stored = GroupMember(member.namespace, member.group, actor_ref, member.metadata,
                             member.flat, node=self.node_id, inc=inc, order=order, seq=seq)
        self._joined_urns.add(urn)
        return self.replica.put(stored)

    def _gjoin(self, kjson: str, urn: str, actor_class: str, meta: str, inc: str,
               client: Any = None) -> Any:
        return self._scripts["GJOIN"](
            keys=[f"{self.prefix}:node:{self.node_id}", self._own_hash, self._gnodes,
                  self._gseq, self._gevents],
            args=[self.node_id, inc, member_field(kjson, urn), kjson, urn, actor_class, meta,
                  self.feed_maxlen],
            client=client)

    def _gleave(self, items: Sequence[tuple[str, str, str, str, str, str]]) -> list[int]:
        args: list[Any] = [self.feed_maxlen, len(items), self.node_id, self._incarnation()]
        for item in items:
            args.extend(item)
        result = self._scripts["GLEAVE"](
            keys=[self._gseq, self._gevents,
                  *(group_members_key(self.prefix, node) for node, *_ in items)],
            args=args)
        return [int(seq) for seq in result]

    def leave(self, namespace: Hashable, group: Hashable, actor_ref: Any) -> Optional[Member]:
        """Leave in Redis (``GLEAVE``), then in the copy. Server thread."""
        current = self.replica.get(namespace, group, actor_ref.actor_urn)
        if current is None or current.node != self.node_id:
            return None
        kjson = key_json(namespace, group)
        try:
            with self._io():
                self._gleave([(self.node_id, kjson, current.actor_ref.actor_urn,
                               str(current.order), KIND_LEFT, "")])
        except Exception as error:
            raise self._unavailable(error, "leave") from error
        return current if self.replica.remove(current) else None  # else it died meanwhile

    def leave_all(self, actor_ref: Any) -> list[Member]:
        """A local actor died: drop its memberships from the copy at once and
        queue their deletion in Redis. Dying actor's thread, write lock held:
        no I/O. Never raises."""
        urn = actor_ref.actor_urn
        self._joined_urns.discard(urn)
        gone = self.replica.remove_actor(urn, _PROCESS_NODES)
        if not gone:
            return []
        own = [m for m in gone if m.node == self.node_id]
        if len(own) < len(gone):  # false records of other processes: no release here
            self._refs.pop(urn, None)
        if own:
            reason = _deathwatch.death_reason(actor_ref)
            why, err = ((KIND_CRASHED, brief(reason)[:500]) if reason is not None
                        else (KIND_STOPPED, ""))
            self._queue_release([(self.node_id, key_json(m.namespace, m.group),
                                  m.actor_ref.actor_urn, str(m.order), why, err) for m in own])
        return list(gone)

    def clear_namespace_groups(self, namespace: Hashable) -> list[Member]:
        """Every membership of ``namespace``, of every node, leaves (in Redis
        first: ``GLEAVE`` fenced by each member's place). Server thread."""
        found = [m for group in self.replica.groups(namespace)
                 for m in self.replica.members(namespace, group)]
        if not found:
            return []
        items = [(m.node, key_json(m.namespace, m.group), m.actor_ref.actor_urn,
                  str(m.order), "namespace_stopped", "") for m in found]
        try:
            with self._io():
                self._gleave(items)
        except Exception as error:
            raise self._unavailable(error, "stop_namespace") from error
        gone = self.replica.remove_all(found)
        self._forget_refs(gone)
        return list(gone)

    def _queue_release(self, items: list[tuple[str, str, str, str, str, str]]) -> None:
        """Delete these memberships in Redis soon, from the server thread.
        Any thread; never blocks."""
        self._releases.extend(items)
        if not self._release_queued and not self._closed and self._ctx is not None:
            self._release_queued = True
            self._ctx.submit(self._flush_releases)

    def _flush_releases(self, state: Any = None) -> None:
        """Send the queued leaves (server thread; the write lock released for
        the round trip). What fails is retried by the group thread."""
        self._release_queued = False
        items = []
        while self._releases:
            item = self._releases.popleft()
            if not self._held_again(item):
                items.append(item)
        if not items or self._closed:
            return
        try:
            with self._io():
                self._gleave(items)
        except Exception as error:
            logger.info("%s: could not delete %d group members in Redis yet (%r); retrying",
                        self.node_id, len(items), error)
            self._releases.extendleft(reversed(items))

    def _held_again(self, item: tuple[str, str, str, str, str, str]) -> bool:
        """True if the copy holds the own membership a queued release would
        delete, at that place: it was joined again since (a join retried
        after a lost reply keeps its place), so the release is stale."""
        node, kjson, urn, place = item[:4]
        if node != self.node_id or not self.replica.holds_urn(urn):
            return False
        try:
            namespace, group = key_from_json(kjson)
        except ValueError:
            return False
        current = self.replica.get(namespace, group, urn)
        return current is not None and current.node == self.node_id and \
            str(current.order) == place

    # -- reads (any thread) -----------------------------------------------------------

    def find(self, urn: str) -> Optional[Any]:
        """For the messenger's ``find_actor`` (receiver thread): the endpoint
        of a group's pseudo-URN, or a live local actor that is (or was, until
        it dies) a member of a group here, else None."""
        if urn.startswith(GROUP_URN):
            try:
                key = key_from_json(urn[len(GROUP_URN):])
            except ValueError:
                return None
            return _Endpoint(self, key)
        ref = self.replica.own_member(urn)
        if ref is None and urn in self._joined_urns:
            ref = pykka.ActorRegistry.get_by_urn(urn)
        if ref is None or _deathwatch.is_dead(ref):
            return None
        return ref

    # -- sending to a group (caller's thread) ------------------------------------------

    def dispatch(self, namespace: Hashable, group: Hashable, refs: Sequence[Any],
                 message: Any) -> int:
        """Tell every local member, and send one message per remote node (its
        endpoint tells that node's members). Returns how many members it was
        sent to."""
        sent = 0
        nodes: dict[str, list[Any]] = {}  # node id -> [the ref to send by, count]
        for ref in refs:
            if isinstance(ref, RemoteActorRef):
                if ref.is_alive():
                    found = nodes.get(ref.node_id)
                    if found is None:
                        nodes[ref.node_id] = [ref, 1]
                    else:
                        found[1] += 1
                        if ref._link.node is not found[0]._link.node:
                            found[0] = self._newer(namespace, group, found[0], ref)
                continue
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                continue
            sent += 1
        if nodes:
            kjson = self._kjson(namespace, group)
            for node, (first, count) in nodes.items():
                try:
                    self._endpoint_ref(first, kjson).tell(message)
                except (pykka.ActorDeadError, RegistryUnavailableError) as error:
                    logger.debug("%s: dispatch to node %s failed: %r", self.node_id, node, error)
                    continue
                sent += count
        return sent

    def ask_all(self, namespace: Hashable, group: Hashable, refs: Sequence[Any],
                message: Any, timeout: float) -> list[tuple[Any, Any]]:
        """Ask every local member, and every remote node once (for its
        members); gather within ``timeout`` in total; ``(ref, value)`` in
        ``refs`` order."""
        deadline = time.monotonic() + timeout
        values: dict[int, Any] = {}
        local: list[tuple[int, Any]] = []
        by_node: dict[str, list[int]] = {}  # node id -> indices, the ref to ask by first
        for index, ref in enumerate(refs):
            if isinstance(ref, RemoteActorRef):
                indices = by_node.get(ref.node_id)
                if indices is None:
                    by_node[ref.node_id] = [index]
                    continue
                indices.append(index)
                first = refs[indices[0]]
                if ref._link.node is not first._link.node and \
                        self._newer(namespace, group, first, ref) is ref:
                    indices[0], indices[-1] = indices[-1], indices[0]
                continue
            try:
                local.append((index, ref.ask(message, block=False)))
            except pykka.ActorDeadError as error:
                values[index] = error
        def late(ref: Any) -> RegistryTimeoutError:
            return RegistryTimeoutError(
                f"{ref} (a member of {safe_repr(group)} in {safe_repr(namespace)}) "
                f"did not answer within {timeout}s")

        # The remote node gathers for a little less than the whole budget, so
        # that its answer can travel back before our deadline.
        budget = max(0.0, timeout - min(0.25, timeout / 5))
        remote: list[tuple[list[int], Any]] = []
        kjson = self._kjson(namespace, group) if by_node else ""
        for indices in by_node.values():
            if time.monotonic() >= deadline:
                # Sends that waited on a slow Redis used the whole budget up:
                # ask no further node (the call may overrun its timeout by one
                # send's io_timeout, never by one per node).
                for i in indices:
                    values[i] = late(refs[i])
                continue
            urns = tuple(refs[i].actor_urn for i in indices)
            try:
                future = self._endpoint_ref(refs[indices[0]], kjson).ask(
                    GroupAsk(message, budget, urns), block=False, timeout=timeout)
            except Exception as error:  # the node is gone, Redis out of reach...
                for i in indices:
                    values[i] = error
                continue
            remote.append((indices, future))

        for index, future in local:
            values[index] = _value(future, deadline, functools.partial(late, refs[index]))
        for indices, future in remote:
            answer = _value(future, deadline, lambda: _LATE)
            if answer is _LATE:
                for i in indices:
                    values[i] = late(refs[i])
            elif isinstance(answer, BaseException):  # the node is gone, timed out...
                for i in indices:
                    values[i] = answer
            else:
                found = _answers(answer)
                node = refs[indices[0]].node_id
                for i in indices:
                    urn = refs[i].actor_urn
                    values[i] = found[urn] if urn in found else RemoteActorError(
                        f"node {node} answered ask_all without a value for {urn} (it sent "
                        f"{brief(answer)})")
        return [(ref, values[i]) for i, ref in enumerate(refs)]

    def _newer(self, namespace: Hashable, group: Hashable, one: RemoteActorRef,
               other: RemoteActorRef) -> RemoteActorRef:
        """Of two members of one node with different incarnations (the node
        took a new lease; the lease watch has not dropped the old one yet),
        the one written last: its incarnation is the node's current one."""
        try:
            a = self.replica.get(namespace, group, one.actor_urn)
            b = self.replica.get(namespace, group, other.actor_urn)
        except Exception:  # a hostile key: keep the first
            return one
        return other if a is None or (b is not None and b.seq > a.seq) else one

    def _kjson(self, namespace: Hashable, group: Hashable) -> str:
        """The group's JSON text as stored (that of its members: a key that
        only compares equal to it, and cannot be written, still names it)."""
        try:
            found = self.replica.members(namespace, group)
            if found:
                return key_json(found[0].namespace, found[0].group)
            return key_json(namespace, group)
        except Exception as error:
            raise InvalidKeyError(
                f"the key ({safe_repr(namespace)}, {safe_repr(group)}) cannot be looked up: "
                f"{type(error).__name__} from its __hash__ or __eq__") from None

    # -- the group thread -----------------------------------------------------------------

    def _run(self) -> None:
        """Follow ``P:gevents``, watch leases, re-read when needed, retry
        failed deletes, re-assert own members after a new lease."""
        tick = min(self.lease_ttl / 3, 0.5)
        next_watch = time.monotonic() + tick
        backoff = 0.05
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                if now >= next_watch:
                    next_watch = now + tick
                    self._watch()
                if self._resync_requested:
                    self._resync()
                wait = max(1, int(min(tick, max(0.0, next_watch - time.monotonic())) * 1000))
                reply = self._rx.xread({self._gevents: self._feed_id}, count=1000, block=wait)
                backoff = 0.05
            except Exception as error:
                if self._stopping.is_set():
                    break
                logger.debug("%s: group thread: %r", self.node_id, error)
                if isinstance(error, _refusals()):
                    # P:gevents is not a stream (or another refusal): said so
                    self._note_feed_problem(f"reading the group change feed failed: {error}")
                self._resync_requested = True
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            streams = reply.items() if isinstance(reply, dict) else (reply or ())
            for _stream, entries in streams:
                self._take(entries)

    def _take(self, entries: Any) -> None:
        """Check the sequence of stream entries, validate each, and pass the
        good ones to the server thread (group thread)."""
        batch: list[MemberRecord] = []
        for entry_id, fields in entries:
            self._feed_id = entry_id
            raw_seq = fields.get(b"s")
            if raw_seq is None:
                if set(fields) != {b"w"}:  # not a closing node's wake-up
                    self._note_feed_problem("skipped an entry without a sequence number")
                continue
            seq = counter(raw_seq)
            if seq != self._feed_seq + 1:
                # a gap (trimmed while away), a counter that went back (Redis
                # lost data) or a foreign entry: re-read everything
                if seq <= self._feed_seq:
                    self._note_feed_problem("skipped an entry out of sequence")
                self._resync_requested = True
                break
            self._feed_seq = seq
            record = checked_member(fields.get(b"e"), "a group change event", seq=seq)
            if record is not None:
                batch.append(record)
            else:
                self._note_feed_problem(f"skipped a malformed change event ({seq})")
        if batch:
            self._ctx.submit(functools.partial(self._apply_events, batch))

    def _note_feed_problem(self, what: str) -> None:
        self._feed_problem = what
        self._feed_problem_at = time.monotonic()

    def _check_stall(self) -> None:
        """Re-read everything if the feed reader has not advanced for
        :data:`_STALL_S` while the group counter is ahead of it: an entry
        someone else appended with an id far in the future (or the last
        possible one, which made a script replace the stream) leaves the
        reader's position past every later entry (group thread)."""
        try:
            top = counter(self._r.get(self._gseq))
        except _refusals():  # not a counter: the next group write replaces it
            top = 0
        now = time.monotonic()
        if top <= self._feed_seq or self._feed_seq != self._stalled_at_seq or \
                self._resync_requested:
            self._stalled_at_seq = self._feed_seq if top > self._feed_seq else -1
            self._stalled_since = now
        elif now - self._stalled_since >= _STALL_S:
            self._note_feed_problem("the group change feed stopped advancing")
            self._resync_requested = True
            self._stalled_since = now

    def _watch(self) -> None:
        """Lease watch, own incarnation and epoch checks, stall check,
        retries (group thread)."""
        self._check_stall()
        nodes = self.replica.remote_nodes()
        if nodes:
            values = self._r.mget([f"{self.prefix}:node:{node}" for node, _ in nodes])
            for (node, inc), value in zip(nodes, values):
                if text(value) != inc:
                    link = self._node_links.get((node, inc))
                    if link is not None:
                        link.lapsed = True
                    self._ctx.submit(functools.partial(self._lapsed, node, inc))
                    self._reap(node, KIND_EXPIRED)
        inc, epoch = self._incarnation(), self._epoch()
        if epoch and epoch != self._seen_epoch:
            self._seen_epoch = epoch
            self._resync_requested = True  # Redis lost data: re-read, re-assert
        if inc and inc != self._written_inc and not self._reassert_queued:
            self._reassert_queued = True
            self._ctx.submit(self._reassert)
        if self._releases and not self._release_queued:
            self._release_queued = True
            self._ctx.submit(self._flush_releases)

    def _reap(self, node: str, why: str) -> None:
        self._scripts["GREAP"](
            keys=[f"{self.prefix}:node:{node}", group_members_key(self.prefix, node),
                  self._gnodes, self._gseq, self._gevents],
            args=[node, self.feed_maxlen, why])

    def _read_snapshot(self) -> _Snapshot:
        raw = self._scripts["GSNAPSHOT"](keys=[self._gnodes, self._gseq, self._gevents],
                                        args=[self.prefix])
        records = []
        stale = []
        for i in range(2, len(raw) - 2, 3):
            node, lease, rows = text(raw[i]), text(raw[i + 1]), raw[i + 2]
            dead = False
            for j in range(0, len(rows) - 1, 2):
                record = checked_member(rows[j + 1], "a group member record", node=node)
                if record is None:
                    continue
                if text(rows[j]) != member_field(record.kjson, record.urn):
                    # (no GLEAVE could ever delete it)
                    logger.warning("ignoring a malformed group record (a group member record) "
                                   "of node %s: stored under field %s, not its own", node,
                                   brief(text(rows[j])))
                    continue
                if record.inc != lease:
                    dead = True
                    continue
                records.append(record)
            if dead:
                stale.append(node)
        return _Snapshot(counter(raw[0]), text(raw[1]) or "0-0", tuple(records), tuple(stale))

    def _install(self, snapshot: _Snapshot) -> None:
        """At start: fill the empty copy (no server, no listeners yet)."""
        for record in snapshot.records:
            if record.node != self.node_id and not self._claims_own(record):
                self.replica.put(self._member(record))
        self._feed_seq = snapshot.seq
        self._feed_id = snapshot.feed_id

    def _resync(self) -> None:
        """Re-read every member (group thread), rate-limited."""
        now = time.monotonic()
        times = self._resync_times
        times.append(now)
        recent = sum(1 for t in times if now - t < 10.0)
        if recent >= 10:  # a pair after a Redis restart is normal; a stream is not
            self._note_feed_problem(f"{recent} re-reads of every member in 10 s "
                                    f"(rate-limited to one per {_RESYNC_INTERVAL_S} s)")
        wait = self._last_resync + _RESYNC_INTERVAL_S - now
        if wait > 0 and self._stopping.wait(wait):
            return
        self._resync_requested = False
        self._last_resync = time.monotonic()
        snapshot = self._read_snapshot()
        self._feed_seq = snapshot.seq
        self._feed_id = snapshot.feed_id
        self.resyncs += 1
        self._ctx.submit(functools.partial(self._apply_snapshot, snapshot))
        for node in snapshot.stale_nodes:
            if node != self.node_id:
                self._reap(node, KIND_EXPIRED)

    # -- applying remote changes (server thread, through context.submit) ---------------

    def _apply_events(self, batch: Sequence[MemberRecord], state: Any = None
                      ) -> list[MemberChange]:
        events: list[MemberChange] = []
        for record in batch:
            try:
                events.extend(self._apply(record))
            except Exception:  # one change must not drop the others
                logger.exception("%s: could not apply group change %d; skipped",
                                 self.node_id, record.seq)
        return events

    def _apply(self, record: MemberRecord) -> list[MemberChange]:
        """One change; the membership changes it makes."""
        if record.op == "drop":
            if record.node == self.node_id:
                if record.inc == self._incarnation() and record.why == KIND_EXPIRED:
                    self._request_reassert()  # someone reaped us while we were away
                return []
            return self._apply_lapse(record.node, record.inc, record.why)
        if record.node == self.node_id and record.op == "join":
            return self._own_join(record)
        current = self.replica.get(record.key[0], record.key[1], record.urn)
        if current is not None and current.seq >= record.seq:
            return []
        if record.op == "join":
            if self._claims_own(record):
                return []
            member = self._member(record)
            self.replica.put(member)
            return [MemberChange(None, member)]
        if current is None or current.node != record.node or \
                (record.order and current.order != record.order):
            return []
        if self.replica.remove(current):
            ref = current.actor_ref
            if isinstance(ref, RemoteActorRef) and \
                    record.why in (KIND_STOPPED, KIND_CRASHED, KIND_NODE_STOPPED):
                ref._link.mark_dead()
            self._forget_refs([current])
            return [MemberChange(current, None, _reason(record.why, record.error))]
        return []

    def _own_join(self, record: MemberRecord) -> list[MemberChange]:
        """One of this node's joins, read back from the stream. Applied when
        it was made, unless its reply was lost (the join raised, or a
        re-assert failed half way): then a member the copy no longer holds
        is deleted again (the join was not acknowledged), and a member it
        holds takes the record's place and metadata (what every other node
        sees)."""
        key, urn = record.key, record.urn
        if record.inc not in self.own_incs:
            # another process took this node id while this one was away past
            # its lease: its member, not ours to adopt or delete (fenced by
            # the incarnation; GLEAVE refuses it too)
            return []
        current = self.replica.get(key[0], key[1], urn)
        if current is not None and current.node == self.node_id:
            if current.seq >= record.seq:
                return []
            member = GroupMember(key[0], key[1], current.actor_ref, record.metadata,
                                 is_flat(record.metadata), node=self.node_id, inc=record.inc,
                                 order=record.order, seq=record.seq)
            self.replica.put(member)
            # a rejoin (same incarnation) may have changed the metadata
            return [MemberChange(current, member)] if current.inc == record.inc else []
        self._queue_release([(self.node_id, record.kjson, urn, str(record.order), KIND_LEFT,
                              "")])
        return []

    def _claims_own(self, record: MemberRecord) -> bool:
        """True (with a warning) if another node's ``record`` names an actor
        that is a member of a group here: a false record, which must not
        replace that membership in the copy."""
        urn = record.urn
        if self.replica.own_member(urn) is None and urn not in self._joined_urns:
            return False
        logger.warning("%s: ignoring a group record of node %s naming %s, a member here",
                       self.node_id, brief(record.node), urn)
        return True

    def _lapsed(self, node: str, inc: str, state: Any = None) -> list[MemberChange]:
        """The lease watch found ``node``'s incarnation ``inc`` gone."""
        return self._apply_lapse(node, inc)

    def _apply_lapse(self, node: str, inc: str, why: str = KIND_EXPIRED) -> list[MemberChange]:
        """Every member of ``node``'s incarnation ``inc`` leaves the copy."""
        link = self._node_links.get((node, inc))
        if link is not None:
            link.lapsed = True
        gone = self.replica.remove_node(node, inc)
        self._forget_refs(gone)
        reason = _reason(why)
        return [MemberChange(m, None, reason) for m in gone]

    def _apply_snapshot(self, snapshot: _Snapshot, state: Any = None) -> list[MemberChange]:
        """Make the copy of other nodes' members equal to ``snapshot``;
        re-assert own members missing from it (server thread)."""
        records = {(r.key, r.urn): r for r in snapshot.records
                   if r.node != self.node_id and not self._claims_own(r)}
        own = {(r.key, r.urn) for r in snapshot.records if r.node == self.node_id}
        events: list[MemberChange] = []
        gone = []
        for member in self.replica.remote():
            record = records.get(((member.namespace, member.group), member.actor_ref.actor_urn))
            if (record is None or (record.node, record.inc) != (member.node, member.inc)) \
                    and self.replica.remove(member):
                gone.append(member)
                events.append(MemberChange(member, None, EXPIRED))
        self._forget_refs(gone)
        for record in records.values():
            current = self.replica.get(record.key[0], record.key[1], record.urn)
            if current is not None and (current.node, current.inc, current.order,
                                        current.metadata) == \
                    (record.node, record.inc, record.order, record.metadata):
                continue
            member = self._member(record)
            self.replica.put(member)
            events.append(MemberChange(None, member))
        missing = [m for m in self.replica.own()
                   if ((m.namespace, m.group), m.actor_ref.actor_urn) not in own]
        if missing:
            self._reassert(members=missing)
        return events

    def _request_reassert(self) -> None:
        if not self._reassert_queued and not self._closed:
            self._reassert_queued = True
            self._ctx.submit(self._reassert)

    def _reassert(self, state: Any = None, members: Optional[list[GroupMember]] = None
                  ) -> None:
        """Write own memberships again with the current incarnation (after a
        new lease or a Redis data loss). Server thread; the write lock
        released for the round trip."""
        self._reassert_queued = False
        if self._closed:
            return
        inc = self._incarnation()
        todo = self.replica.own() if members is None else members
        if members is None:
            todo = [m for m in todo if m.inc != inc]
        if not todo:
            self._written_inc = inc
            return
        pipe = self._r.pipeline(transaction=False)
        for m in todo:
            self._gjoin(key_json(m.namespace, m.group), m.actor_ref.actor_urn,
                        m.actor_ref.actor_class.__qualname__, dumps(m.metadata), inc,
                        client=pipe)
        try:
            with self._io():
                results = pipe.execute(raise_on_error=False)
        except Exception as error:
            logger.info("%s: could not re-assert group members (%r)", self.node_id, error)
            return  # the group thread asks again
        ok = True
        for member, result in zip(todo, results):
            if isinstance(result, Exception) or text(result[0]) != "ok":
                ok = False
                continue
            if self.replica.get(member.namespace, member.group,
                                member.actor_ref.actor_urn) is not member:
                # it died or left during the round trip: delete it again
                self._queue_release([(self.node_id, key_json(member.namespace, member.group),
                                      member.actor_ref.actor_urn, str(int(result[2])),
                                      KIND_STOPPED, "")])
                continue
            self.replica.put(attrs.evolve(member, inc=inc, order=int(result[2]),
                                          seq=int(result[1])))
        if ok:
            self._written_inc = inc


_LATE = object()  # no answer by the deadline


def _answers(answer: Any) -> dict[str, Any]:
    """A node's ``ask_all`` answer, ``[(urn, value), ...]``, as a dict;
    what is not of that shape is left out."""
    found: dict[str, Any] = {}
    if isinstance(answer, list):
        for item in answer:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                found.setdefault(item[0], item[1])
    return found


def _value(future: Any, deadline: float, on_timeout: Callable[[], Any]) -> Any:
    """A future's value, its exception as the value, or ``on_timeout()``."""
    try:
        return future.get(timeout=max(0.0, deadline - time.monotonic()))
    except pykka.Timeout:
        return on_timeout()
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # the member's own failure: its value
        return error


class _Inbox:
    __slots__ = ("_endpoint",)

    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint

    def put(self, envelope: Any) -> None:
        self._endpoint.ask(envelope)


class _Endpoint:
    """A group's fan-out endpoint on this node, as the messenger's
    ``find_actor`` returns it (receiver thread): the parts of an actor ref
    the messenger uses. Never blocks the receiver thread."""

    __slots__ = ("_groups", "_key", "actor_inbox")

    def __init__(self, groups: RedisGroups, key: tuple[Hashable, Hashable]) -> None:
        self._groups = groups
        self._key = key
        self.actor_inbox = _Inbox(self)

    def is_alive(self) -> bool:
        return not self._groups._closed

    def _local(self) -> list[GroupMember]:
        node = self._groups.node_id
        return [m for m in self._groups.replica.members(*self._key) if m.node == node]

    def tell(self, message: Any) -> None:
        """Tell every local member of the group, in join order."""
        for member in self._local():
            try:
                member.actor_ref.tell(message)
            except pykka.ActorDeadError:
                continue

    def ask(self, envelope: Any) -> None:
        """Ask the local members the sender listed; answer from a worker
        thread with ``[(urn, value), ...]``."""
        request = envelope.message
        reply_to = envelope.reply_to
        if not isinstance(request, GroupAsk) or reply_to is None:
            if reply_to is not None:
                error = RemoteActorError("a group endpoint only answers ask_all")
                reply_to.set_exception((type(error), error, None))
            return
        members = {m.actor_ref.actor_urn: m.actor_ref for m in self._local()}
        futures: list[tuple[str, Any]] = []
        for urn in request.urns:
            ref = members.get(urn)
            if ref is None:
                futures.append((urn, pykka.ActorDeadError(f"{urn} is no longer a member")))
                continue
            try:
                futures.append((urn, ref.ask(request.message, block=False)))
            except pykka.ActorDeadError as error:
                futures.append((urn, error))
        deadline = time.monotonic() + max(0.0, float(request.budget))
        threading.Thread(target=_gather, args=(futures, deadline, reply_to, self._key),
                         name="pykka-registry-redis-group-ask", daemon=True).start()


def _gather(futures: list[tuple[str, Any]], deadline: float, reply_to: Any,
            key: tuple[Hashable, Hashable]) -> None:
    """Wait for the members' answers until ``deadline`` and reply (a worker
    thread). A value that cannot be pickled is replaced by a
    :class:`RemoteActorError` naming it."""
    answers = []
    for urn, future in futures:
        if isinstance(future, BaseException):
            value: Any = future
        else:
            value = _value(future, deadline, functools.partial(
                RegistryTimeoutError, f"{urn} (a member of {safe_repr(key[1])} in "
                f"{safe_repr(key[0])}) did not answer in time"))
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as error:  # a hostile __reduce__ (SystemExit too): its own value
            value = RemoteActorError(f"{brief(value)} could not be pickled: {brief(error)}")
        answers.append((urn, value))
    try:
        reply_to.set(answers)
    except BaseException:  # pragma: no cover - the messenger logs its own failures
        logger.exception("could not answer an ask_all")


# -- the backend's group methods ---------------------------------------------------------------


class RedisGroupsMixin:
    """The group methods of the :class:`~pykka_registry.backends.base.Backend`
    behaviour, delegated to ``self._groups`` (a :class:`RedisGroups`)."""

    supports_groups: ClassVar[bool] = True
    _groups: RedisGroups

    @property
    def group_fan_out(self) -> RedisGroups:
        """What ``Registry.dispatch`` / ``ask_all`` hand a group's refs to."""
        return self._groups

    def join(self, member: Member) -> Optional[Member]:
        return self._groups.join(member)

    def leave(self, namespace: Hashable, group: Hashable, actor_ref: Any) -> Optional[Member]:
        return self._groups.leave(namespace, group, actor_ref)

    def leave_all(self, actor_ref: Any) -> list[Member]:
        return self._groups.leave_all(actor_ref)

    def clear_namespace_groups(self, namespace: Hashable) -> list[Member]:
        return self._groups.clear_namespace_groups(namespace)

    def members(self, namespace: Hashable, group: Hashable) -> Sequence[Member]:
        return self._groups.replica.members(namespace, group)

    def groups(self, namespace: Hashable) -> list[Hashable]:
        return self._groups.replica.groups(namespace)

    def groups_of(self, actor_ref: Any) -> list[tuple[Hashable, Hashable]]:
        return self._groups.replica.groups_of(actor_ref.actor_urn)

    def group_namespaces(self) -> list[Hashable]:
        return self._groups.replica.namespaces()

    def count_members(self, namespace: Hashable, group: Hashable) -> int:
        return self._groups.replica.count(namespace, group)

    def group_totals(self) -> tuple[int, int]:
        return self._groups.replica.totals()
