"""The bridge between a registry and the supervision tree that runs its
server: the one place where the two know of each other.

A registry's server (:class:`~pykka_registry.RegistryServer`) is an ordinary
child of a supervision tree: the registry's own, made by
:meth:`Registry.start`, or one of the user's, given :meth:`Registry.child_spec`.
This module holds what that takes:

* :func:`child_spec`: the :class:`ChildSpec` whose start function,
  :class:`ServerStart`, starts a server on the registry's state. The
  supervisor tells it, before each start and in its own thread, which tree
  starts it and under which child id (:meth:`ServerStart.started_in`), and
  it records that as the registry's :class:`ServerOwner`.
* :func:`stop_server`: how :meth:`Registry.stop` stops the server: through
  its own supervisor, else through the owner's ``delete_child`` (so the tree
  does not restart it), else directly.
* :func:`successor_expected`: whether a caller that found the server dead
  may wait for a replacement.
* :func:`server_to_start_first`: the rule "restart the registry's server
  before registering a named child" (see its docstring).

Guarantees
----------
* A stopped registry's server is never started again: its start function
  raises :class:`ChildRetired`, and the tree drops the child instead of
  counting a failure.
* The owner is recorded before the server starts, so anyone who sees a
  server can also see who restarts it.
* Nothing here waits, except :func:`stop_server` (at most its ``timeout``
  for each step it takes).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Optional

import attrs
import pykka

from pykka_registry._errors import ChildRetired, RegistryError
from pykka_registry._server import RegistryServer
from pykka_registry._state import RegistryState
from pykka_registry._supervisor import ChildSpec, Supervisor

__all__ = [
    "ServerOwner",
    "ServerStart",
    "child_spec",
    "server_to_start_first",
    "start_own_supervisor",
    "stop_server",
    "successor_expected",
]


@attrs.define(frozen=True)
class ServerOwner:
    """The tree that runs a registry's server, and the server's child id in it."""

    supervisor: Supervisor
    child_id: Hashable


class ServerStart:
    """The start function of a registry server's :class:`ChildSpec`. Runs in
    the supervisor's thread."""

    __slots__ = ("_state",)

    def __init__(self, state: RegistryState) -> None:
        self._state = state

    def started_in(self, supervisor: Supervisor, child_id: Hashable) -> None:
        """Called by the supervisor before each start: remember the owner."""
        self._state.owner = ServerOwner(supervisor, child_id)

    def __call__(self) -> pykka.ActorRef[Any]:
        if self._state.closed:
            # Stopped (perhaps while its server was being restarted): tell
            # the tree to drop this child rather than count a failure.
            raise ChildRetired(f"{self._state.name} is stopped")
        return RegistryServer.start(self._state)

    def __repr__(self) -> str:
        return f"<start the server of {self._state.name}>"


def child_spec(state: RegistryState, id: Hashable, shutdown: float) -> ChildSpec:
    """The permanent child that runs the registry's server (see
    :meth:`Registry.child_spec`)."""
    return ChildSpec(id=id, start=ServerStart(state), restart="permanent", shutdown=shutdown)


def start_own_supervisor(state: RegistryState, max_restarts: int,
                         max_seconds: float) -> Supervisor:
    """Start the registry's own (daemon) tree, with the server as its only
    child; return once the server runs."""
    return Supervisor.start(
        children=[child_spec(state, "registry", 5.0)],
        max_restarts=max_restarts,
        max_seconds=max_seconds,
        name=f"{state.name}-supervisor",
        daemon=True,
    )


def stop_server(state: RegistryState, own_supervisor: Optional[Supervisor],
                timeout: float) -> None:
    """Stop the server for good (the caller has set ``state.closed``, so no
    start function starts another): stop the registry's own tree, or have
    the owning tree delete the child, or stop a server no tree runs. A step
    that fails or times out is not retried: the server is then left to the
    tree, which no longer restarts it."""
    owner = state.owner
    server = state.server_ref
    try:
        if own_supervisor is not None:
            own_supervisor.stop(timeout=timeout)
        elif owner is not None and owner.supervisor.is_alive():
            owner.supervisor.delete_child(owner.child_id, timeout=timeout)
        elif server is not None:
            server.stop(block=True, timeout=timeout)
    except (pykka.ActorDeadError, pykka.Timeout, RegistryError):
        pass


def successor_expected(state: RegistryState) -> bool:
    """True when a tree runs the server and is alive: a dead server will be
    replaced (unless the tree gives up), so a caller may wait for it."""
    owner = state.owner
    return owner is not None and owner.supervisor.is_alive()


def server_to_start_first(state: RegistryState, supervisor: Supervisor,
                          child_id: Hashable) -> Optional[Hashable]:
    """The rule "restart the registry's server before registering a named
    child", asked by ``supervisor`` (in its thread) before it registers the
    child ``child_id``: the id of the child to start first, or ``None``.

    It is the server's child id when the server is down (or the registry
    stopped: its start function then retires the child) and ``supervisor``
    itself runs it (and it is not ``child_id``). The server's death notice
    may still wait in the supervisor's mailbox behind the message being
    handled; registering would then wait for a restart that only the
    supervisor's own thread can do, and time out.
    """
    server = state.server_ref
    if not state.closed and server is not None and server.is_alive():
        return None  # running
    owner = state.owner
    if owner is None or owner.supervisor is not supervisor or owner.child_id == child_id:
        return None
    return owner.child_id
