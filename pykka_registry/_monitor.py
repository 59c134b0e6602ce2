"""``monitor``: be told, once, when an actor dies (Erlang's ``monitor/2``).

Guarantees
----------
* The callback runs exactly once per monitor: when the actor dies, or at once
  if it is already dead, unless :meth:`Monitor.cancel` ran first. A
  callback that raises anything (``BaseException`` too) is logged; the
  other monitors of that death still fire. Run at once in the caller's
  thread (an actor already dead), a ``KeyboardInterrupt`` is the caller's
  Ctrl-C: it passes through.
* It runs in the dying actor's thread, before that actor's ``actor_stopped``
  is set (or, for an actor already dead, in the thread calling
  :func:`monitor`). Keep it short and non-blocking: to do real work, ``tell``
  an actor or put the event on a queue.
* ``DownEvent.reason`` is ``None`` for a normal stop and the exception that
  killed the actor otherwise. For an actor that was already dead when
  monitored, the reason is known only if its death was seen by this process's
  death watch (always, once the package is imported before the actor died).
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any, Callable, Optional, Union

import attrs
import pykka

from pykka_registry import _deathwatch
from pykka_registry._coerce import actor_ref_of
from pykka_registry._errors import safe_repr, type_name

__all__ = ["DownEvent", "Monitor", "monitor"]

logger = logging.getLogger("pykka_registry")


@attrs.define(frozen=True)
class DownEvent:
    """An actor died. ``reason``: ``None`` for a normal stop, else the exception."""

    actor_ref: pykka.ActorRef[Any]
    reason: Optional[BaseException] = attrs.field(eq=False)

    @property
    def crashed(self) -> bool:
        """True when an exception killed the actor (``reason`` is not ``None``)."""
        return self.reason is not None


class Monitor:
    """A pending death notification. ``cancel()`` withdraws it."""

    __slots__ = ("_id", "actor_ref", "callback")

    def __init__(self, actor_ref: Any, callback: Callable[[DownEvent], Any], id: int) -> None:
        self.actor_ref = actor_ref
        self.callback = callback
        self._id = id

    def cancel(self) -> bool:
        """Withdraw the monitor; True if it had not fired yet."""
        with _lock:
            watchers = _by_urn.get(self.actor_ref.actor_urn)
            if watchers is None or self._id not in watchers:
                return False
            del watchers[self._id]
            if not watchers:
                del _by_urn[self.actor_ref.actor_urn]
            return True

    def __repr__(self) -> str:
        return f"<Monitor of {self.actor_ref}>"


_lock = threading.Lock()
_ids = itertools.count(1)
_by_urn: dict[str, dict[int, Monitor]] = {}
_listening = False


def _fire(monitors: list[Monitor], event: DownEvent, in_caller: bool = False) -> None:
    """Run the callbacks; ``in_caller``: in the thread that called
    :func:`monitor` (an actor already dead), where a ``KeyboardInterrupt``
    is most likely the user's Ctrl-C and passes through."""
    for entry in monitors:
        try:
            entry.callback(event)
        except KeyboardInterrupt:
            if in_caller:
                raise
            logger.exception("monitor callback %s failed for %s", safe_repr(entry.callback),
                             event.actor_ref)
        except BaseException:  # one callback (a SystemExit too) must not skip the others
            logger.exception("monitor callback %s failed for %s", safe_repr(entry.callback),
                             event.actor_ref)


def _on_death(actor_ref: Any, reason: Optional[BaseException]) -> None:
    if not _by_urn:  # the common case, read without the lock
        return
    with _lock:
        watchers = _by_urn.pop(actor_ref.actor_urn, None)
    if watchers:
        _fire(list(watchers.values()), DownEvent(actor_ref, _deathwatch.death_reason(actor_ref)))


def monitor(actor_ref: Union[pykka.ActorRef[Any], pykka.ActorProxy[Any]],
            callback: Callable[[DownEvent], Any]) -> Monitor:
    """Call ``callback(DownEvent)`` once when the actor dies; see the module
    doc. A :class:`pykka.ActorProxy` stands for its ``actor_ref`` (the
    event carries the ref)."""
    global _listening
    ref: pykka.ActorRef[Any] = actor_ref_of(actor_ref)
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {type_name(callback)}")
    if not _listening:
        with _lock:
            if not _listening:
                _deathwatch.add_listener(_on_death)
                _listening = True
    handle = Monitor(ref, callback, next(_ids))
    with _lock:
        _by_urn.setdefault(ref.actor_urn, {})[handle._id] = handle
    # If it died before (or while) we registered, fire unless the death
    # listener already did.
    if _deathwatch.is_dead(ref) and handle.cancel():
        _fire([handle], DownEvent(ref, _deathwatch.death_reason(ref)), in_caller=True)
    return handle
