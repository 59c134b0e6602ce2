"""References to actors in other processes: :class:`RemoteActorRef` and the
shared links behind it (:class:`NodeLink`, :class:`ActorLink`).

The backend makes one :class:`NodeLink` per incarnation of a remote node and
one :class:`ActorLink` per remote actor; every :class:`RemoteActorRef` of
that actor shares its link, so what one thread learns (the actor stopped, its
node's lease lapsed) every reference sees at once.

Guarantees
----------
* **A reference is a value.** :class:`RemoteActorRef` is frozen; two
  references to the same remote actor compare (and hash) equal. It cannot be
  pickled (:class:`TypeError`): send the name instead.
* **No network call to answer** :meth:`RemoteActorRef.is_alive`: it reads
  the link (actor known dead, node lease lapsed, messenger closed).
* **Every ask has a deadline.** ``ask(timeout=None)`` and ``stop`` wait at
  most the registry's ``call_timeout``; ``ask`` raises
  :class:`pykka.ActorDeadError` as soon as the target is known to be dead,
  :class:`RemoteTimeoutError` at the deadline, or whatever the remote
  actor's handler raised (the messenger does the work).
* A link's flags only ever go one way: ``lapsed`` and ``dead`` are set, never
  cleared; ``stopped`` is an event that is set once.

Threads
-------
``tell``/``ask``/``stop`` encode and send in the caller's thread (a blocking
``ask`` also waits there). A :class:`NodeLink` is written by the backend's
lease thread; an :class:`ActorLink` by the server thread (``node``, ``dead``)
and the receiver thread (``stopped``). These are plain attribute writes, read
by any thread without a lock.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Optional

import attrs

from pykka_registry._remote._wire import TELL

if TYPE_CHECKING:  # (the messenger imports this module)
    from pykka_registry._remote._messenger import Messenger

__all__ = ["ActorLink", "NodeLink", "RemoteActorRef"]

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
