"""Argument shapes Pykka users reach for: a proxy where a ref is expected, and
a ``(namespace, service)`` key as one argument.

Guarantees
----------
* :func:`actor_ref_of` accepts a :class:`pykka.ActorRef` (or anything that
  already passes as one) unchanged, and a :class:`pykka.ActorProxy` as its
  ``actor_ref``. Anything else is an :class:`InvalidActorRefError` that says
  what was given and what would have been accepted. It never calls into the
  actor (reading ``ActorProxy.actor_ref`` is a plain attribute read).
* :func:`split_key` turns ``f(("ns", "svc"))`` into ``f("ns", "svc")``. It
  only applies when the service argument was left out, so ``f(ns, svc)``
  with a tuple namespace (``test_namespace()`` returns one) keeps its
  meaning. A single argument that is not a pair is a ``TypeError`` showing
  both ways to call.
* :func:`pair_key` does the same for calls with more arguments
  (``register(("ns", "svc"), ref)``, ``update_metadata(("ns", "svc"),
  {...})``, ``get_or_start(("ns", "svc"), Worker.start)``): only when the
  two-key reading is impossible (an argument it needs is missing, or the
  "service" is an actor where an actor is the next argument), so no call
  that worked before changes meaning. Otherwise a ``TypeError`` shows both
  ways to call.
* Pure functions: they run in the caller's thread and touch no state.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pykka

from pykka_registry._errors import InvalidActorRefError, safe_repr

__all__ = [
    "NO_SERVICE", "actor_ref_of", "is_actor_like", "pair_key", "shift_pair_key", "split_key",
    "urn_of",
]


class _NoService:
    """The default of a ``service`` parameter: "the caller passed one key"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no service given>"


NO_SERVICE: Any = _NoService()


def actor_ref_of(value: Any, what: str = "actor_ref") -> Any:
    """``value`` as an actor reference: a proxy gives its ``actor_ref``.

    Raises:
        InvalidActorRefError: ``value`` is neither an actor ref nor a proxy.
    """
    if isinstance(value, pykka.ActorRef):
        return value
    if isinstance(value, pykka.ActorProxy):
        return value.actor_ref
    hint = ""
    if isinstance(value, type) and issubclass(value, pykka.Actor):
        hint = f" (a class: start it first, {value.__name__}.start())"
    elif isinstance(value, pykka.Actor):
        hint = " (an actor object: pass its actor_ref, or the ref start() returned)"
    raise InvalidActorRefError(
        f"{what} must be a pykka.ActorRef or pykka.ActorProxy, got "
        f"{type(value).__name__}: {safe_repr(value)}{hint}"
    )


def urn_of(value: Any, what: str) -> str:
    """The ``actor_urn`` of an actor ref, a proxy, or a reference to an actor
    in another process (a ``RemoteActorRef``, which carries one too).

    Raises:
        InvalidActorRefError: ``value`` is none of these.
    """
    if isinstance(value, pykka.ActorProxy):
        # Checked first: an attribute read on a proxy would ask the actor.
        return str(value.actor_ref.actor_urn)
    urn = getattr(value, "actor_urn", None)
    if isinstance(urn, str):
        return urn
    return str(actor_ref_of(value, what).actor_urn)


def split_key(namespace: Any, service: Any, method: str) -> tuple[Hashable, Hashable]:
    """``(namespace, service)`` from a call that gave both or one pair.

    Raises:
        TypeError: one argument was given and it is not a 2-tuple.
    """
    if service is not NO_SERVICE:
        return namespace, service
    if isinstance(namespace, tuple) and len(namespace) == 2:
        return namespace[0], namespace[1]
    raise TypeError(
        f"{method}() takes a namespace and a service, {method}(namespace, service), "
        f"or one (namespace, service) tuple, {method}((namespace, service)); "
        f"got only {safe_repr(namespace)}"
    )


def is_actor_like(value: Any) -> bool:
    """``value`` is an actor ref or a proxy (no call into the actor)."""
    return isinstance(value, (pykka.ActorRef, pykka.ActorProxy))


def pair_key(namespace: Any, method: str, shape: str) -> tuple[Hashable, Hashable]:
    """``namespace`` read as a one-argument ``(namespace, service)`` key, for
    a call whose two-key reading is impossible (module doc); the caller
    moves the other arguments back in place.

    Raises:
        TypeError: ``namespace`` is not a pair; the message shows ``shape``
            (the arguments after the key) in both ways to call ``method``.
    """
    if isinstance(namespace, tuple) and len(namespace) == 2:
        return namespace[0], namespace[1]
    raise TypeError(
        f"{method}() takes {method}(namespace, service, {shape}) or "
        f"{method}((namespace, service), {shape}); got {safe_repr(namespace)} "
        "where the key was expected, and too few arguments for the two-key form"
    )


def shift_pair_key(method: str, namespace: Any, service: Any, value: Any, extra: Any, *,
                   value_name: str, extra_name: str, needs: str,
                   ) -> tuple[Hashable, Hashable, Any, Any]:
    """The arguments of ``method((namespace, service), value[, extra])``
    moved back in place: called as ``method(namespace, service, value,
    extra)`` with the key in ``namespace``, ``service`` holds the value and
    ``value`` the extra (either may be :data:`NO_SERVICE`). Returns
    ``(namespace, service, value, extra)``.

    Raises:
        TypeError: too many arguments, no ``value`` (``needs`` says what it
            is), or ``namespace`` not a pair (:func:`pair_key`).
    """
    given = [a for a in (service, value) if a is not NO_SERVICE]
    if len(given) == 2 and extra is not None:
        raise TypeError(f"{method}() takes at most 3 arguments with a (namespace, service) key")
    namespace, service = pair_key(namespace, method, f"{value_name}, {extra_name}=None")
    if not given:
        raise TypeError(f"{method}() needs {needs}: {method}(namespace, service, {value_name}) "
                        f"or {method}((namespace, service), {value_name})")
    return namespace, service, given[0], given[1] if len(given) == 2 else extra
