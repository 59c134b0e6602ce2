"""The package's shared types: :class:`ActorRefLike`, what every read that
returns an actor gives back, and the ``Literal`` types of the string options.

Guarantees
----------
* Typing only: importing this module imports no other module of the package
  and starts nothing, so any module may import it.
* :class:`ActorRefLike` is a structural :class:`typing.Protocol`: a
  :class:`pykka.ActorRef` satisfies it, and so does a
  :class:`~pykka_registry.RemoteActorRef` (the holder of a name in another
  process, as the Redis backend returns it). Code written against it works
  on every backend; code that needs Pykka's own ``ActorRef`` (its
  ``actor_class``, its ``proxy`` of a local actor) checks
  ``isinstance(ref, pykka.ActorRef)`` first.
* Each ``Literal`` below is the one definition of its values. The runtime
  checks (``RESTART_TYPES``, ``STRATEGIES``...) are derived from them, so the
  two cannot disagree; the checks themselves stay where they were (a wrong
  string still raises the same error at run time).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Literal, Optional, Protocol, get_args, runtime_checkable

__all__ = [
    "GROUP_STRATEGIES",
    "HEALTH_STATUSES",
    "RESTART_TYPES",
    "SUPERVISOR_STRATEGIES",
    "ActorRefLike",
    "GroupStrategy",
    "HealthStatus",
    "RestartType",
    "SupervisorStrategy",
]


@runtime_checkable
class ActorRefLike(Protocol):
    """What a registry read returns for an actor: a :class:`pykka.ActorRef`
    for an actor of this process, a :class:`~pykka_registry.RemoteActorRef`
    for one of another process (Redis backend). Both have these members.

    ``tell`` and ``ask`` raise :class:`pykka.ActorDeadError` when the actor
    is gone; ``ask`` with ``block=False`` returns a :class:`pykka.Future`.
    ``proxy()`` is Pykka's for a local actor; a remote reference refuses it
    (send messages instead).
    """

    @property
    def actor_urn(self) -> str:
        """The actor's unique id (stable across processes)."""
        ...

    @property
    def actor_stopped(self) -> threading.Event:
        """Set once the actor has stopped."""
        ...

    def is_alive(self) -> bool:
        """True until the actor is known to have stopped."""
        ...

    def tell(self, message: Any) -> None:
        """Send ``message`` without waiting."""
        ...

    def ask(self, message: Any, *, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Send ``message`` and return the answer (or a future, ``block=False``)."""
        ...

    def stop(self, *, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Ask the actor to stop."""
        ...

    def proxy(self) -> Any:
        """A Pykka proxy of the actor (local actors only)."""
        ...


RestartType = Literal["permanent", "transient", "temporary"]
"""A child's restart type (:attr:`ChildSpec.restart <pykka_registry.ChildSpec>`):
``"permanent"`` (always restarted), ``"transient"`` (only after a crash),
``"temporary"`` (never)."""

SupervisorStrategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
"""A supervisor's restart strategy (:meth:`Supervisor.start
<pykka_registry.Supervisor.start>`)."""

HealthStatus = Literal["healthy", "degraded", "unhealthy"]
"""What :meth:`Registry.health_check <pykka_registry.Registry.health_check>`
reports (:class:`~pykka_registry.HealthReport`'s ``status``)."""

GroupStrategy = Literal["round_robin", "random", "hash"]
"""How :meth:`Registry.group_via <pykka_registry.Registry.group_via>` picks a member."""

RESTART_TYPES: tuple[str, ...] = get_args(RestartType)
SUPERVISOR_STRATEGIES: tuple[str, ...] = get_args(SupervisorStrategy)
HEALTH_STATUSES: tuple[str, ...] = get_args(HealthStatus)
GROUP_STRATEGIES: tuple[str, ...] = get_args(GroupStrategy)

if TYPE_CHECKING:  # mypy checks here that both kinds of reference satisfy the protocol
    import pykka

    from pykka_registry._remote import RemoteActorRef

    def _both_conform(local: pykka.ActorRef[Any], remote: RemoteActorRef) -> list[ActorRefLike]:
        return [local, remote]
