"""Death watch: learning, in the dying actor's own thread, that an actor died.

Pykka has no death hook. Every way a Pykka actor dies (``stop()``, an
exception in a ``tell``-ed message, an exception in ``on_start``, ``on_stop``
or ``on_failure``, a ``BaseException`` in a handler) passes through
:meth:`pykka.ActorRegistry.unregister` in the dying actor's thread, before its
``actor_stopped`` event is set; ``sys.exc_info()`` there tells a crash from a
normal stop. This module wraps that method. Two paths skip it: a
``BaseException`` raised by ``on_start``, and a thread that never started. The
first leaves a "zombie" whose ref claims to be alive with no thread behind it;
a chained :data:`threading.excepthook` handler finds the actor in the
traceback, reports its death and marks it stopped. (In the second, the
``start()`` call raises in its caller, so no ref was ever handed out.)

What :func:`install` does to the process, once, idempotently:

* replaces ``pykka.ActorRegistry.unregister`` and ``pykka.ActorRegistry.stop_all``
  with wrappers that call the originals;
* sets :data:`threading.excepthook` to a handler that calls the one it replaced.

Guarantees
----------
* Listeners run in the dying actor's thread, synchronously, before
  ``actor_stopped`` is set. They must be quick and must not block on other
  actors (a listener that raises is logged and ignored).
* A listener may be called more than once for one death (Pykka unregisters
  twice when ``on_stop`` raises); the reason recorded is the first one.
* :func:`death_seen` is true from the first notice on, even before
  ``actor_stopped`` is set: use it, not ``is_alive()``, to refuse a dying actor.
* Calling ``pykka.ActorRegistry.unregister(ref)`` yourself counts as that
  actor's death here (Pykka offers no other signal): its names are released.
* Code that later sets ``threading.excepthook`` without calling the hook it
  replaces cuts this handler out of the chain; then an actor whose
  ``on_start`` raises a ``BaseException`` stays a zombie. Chain, as we do.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any, Callable, Optional

import pykka

__all__ = [
    "DeathListener",
    "add_listener",
    "death_reason",
    "death_seen",
    "install",
    "is_alive",
    "is_dead",
    "remove_listener",
    "stopping_all",
]

logger = logging.getLogger("pykka_registry")

#: ``listener(actor_ref, reason)``; ``reason`` is ``None`` for a normal stop.
DeathListener = Callable[[Any, Optional[BaseException]], None]

# The reason is stored on the ActorRef object itself, so it lives exactly as
# long as the ref and needs no process-wide table. The tuple wrapper tells
# "died normally" (None) from "no death seen".
_DEATH_ATTR = "_pykka_registry_death"

_lock = threading.Lock()
_installed = False
_listeners: tuple[DeathListener, ...] = ()  # copy-on-write: read without a lock
_stop_all_depth = 0


def death_seen(actor_ref: Any) -> bool:
    """True once the actor's death has been noticed (possibly before
    ``actor_stopped`` is set)."""
    return _DEATH_ATTR in getattr(actor_ref, "__dict__", ())


def is_alive(actor_ref: Any) -> bool:
    """The registry's liveness test: alive by the ref's own ``is_alive()``
    and no death noticed yet (the hot path of every lookup)."""
    return bool(actor_ref.is_alive()) and _DEATH_ATTR not in getattr(actor_ref, "__dict__", ())


def is_dead(actor_ref: Any) -> bool:
    """True if the actor has stopped or its death has been noticed."""
    return actor_ref.actor_stopped.is_set() or death_seen(actor_ref)


def death_reason(actor_ref: Any) -> Optional[BaseException]:
    """The exception that killed the actor, or ``None`` (normal stop, or not seen)."""
    record = getattr(actor_ref, "__dict__", {}).get(_DEATH_ATTR)
    return record[0] if record else None


def stopping_all() -> bool:
    """True while :meth:`pykka.ActorRegistry.stop_all` runs in any thread.

    Supervisors use it to stand down instead of restarting children that
    ``stop_all`` is stopping."""
    return _stop_all_depth > 0


def add_listener(listener: DeathListener) -> None:
    """Call ``listener`` for every actor death in this process."""
    global _listeners
    install()
    with _lock:
        _listeners = (*_listeners, listener)


def remove_listener(listener: DeathListener) -> None:
    """Stop calling ``listener``; a no-op if it is not registered."""
    global _listeners
    with _lock:
        _listeners = tuple(x for x in _listeners if x is not listener)


def _notify(actor_ref: Any, reason: Optional[BaseException]) -> None:
    ref_dict = getattr(actor_ref, "__dict__", None)
    if ref_dict is not None and _DEATH_ATTR not in ref_dict:
        ref_dict[_DEATH_ATTR] = (reason,)
    for listener in _listeners:
        try:
            listener(actor_ref, reason)
        except Exception:
            logger.exception("death listener %r failed for %s", listener, actor_ref)


def _find_actor(traceback: Optional[TracebackType]) -> Optional[pykka.Actor]:
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "_actor_loop":
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, pykka.Actor):
                return candidate
        traceback = traceback.tb_next
    return None


def install() -> None:
    """Install the hooks described in the module docstring. Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        registry_cls: Any = pykka.ActorRegistry
        original_unregister = registry_cls.unregister.__func__
        original_stop_all = registry_cls.stop_all.__func__
        previous_excepthook = threading.excepthook

        def unregister(cls: Any, actor_ref: Any) -> None:
            reason = sys.exc_info()[1]
            try:
                original_unregister(cls, actor_ref)
            finally:
                _notify(actor_ref, reason)

        def stop_all(cls: Any, *args: Any, **kwargs: Any) -> Any:
            global _stop_all_depth
            with _lock:
                _stop_all_depth += 1
            try:
                return original_stop_all(cls, *args, **kwargs)
            finally:
                with _lock:
                    _stop_all_depth -= 1

        def excepthook(args: Any) -> None:
            try:
                actor = _find_actor(args.exc_traceback)
                if actor is not None and not actor.actor_stopped.is_set():
                    # BaseException in on_start: Pykka never unregistered it.
                    _notify(actor.actor_ref, args.exc_value)
                    original_unregister(registry_cls, actor.actor_ref)
                    actor.actor_stopped.set()
            except Exception:  # pragma: no cover - must never break the hook chain
                logger.exception("pykka_registry excepthook failed")
            previous_excepthook(args)

        unregister.__doc__ = original_unregister.__doc__
        stop_all.__doc__ = original_stop_all.__doc__
        registry_cls.unregister = classmethod(unregister)
        registry_cls.stop_all = classmethod(stop_all)
        threading.excepthook = excepthook
        _installed = True
