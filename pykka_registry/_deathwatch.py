"""Death watch: learning, in the dying actor's own thread, that an actor died.

Pykka has no death hook. Every way a Pykka actor dies (``stop()``, an
exception in a ``tell``-ed message, an exception in ``on_start``, ``on_stop``
or ``on_failure``, a ``BaseException`` in a handler) passes through
:meth:`pykka.ActorRegistry.unregister` in the dying actor's thread, before its
``actor_stopped`` event is set; ``sys.exc_info()`` there tells a crash from a
normal stop. This module wraps that method. Two paths skip it: a
``BaseException`` raised by ``on_start``, and a thread that never started. The
first would leave a "zombie" whose ref claims to be alive with no thread
behind it: a wrapper around the actor's loop (``pykka.Actor._actor_loop``, the
method every Pykka runtime runs in the actor's thread) catches the exception
on its way out of the thread, reports the death, unregisters the actor from
Pykka, marks it stopped, fails the asks left in its inbox with
``pykka.ActorDeadError``, and re-raises (so :data:`threading.excepthook`
still reports it). (In the second, the ``start()`` call raises in its caller,
so no ref was ever handed out.)

What :func:`install` does to the process, once, idempotently:

* replaces ``pykka.ActorRegistry.unregister`` and ``pykka.ActorRegistry.stop_all``
  with wrappers that call the originals;
* replaces ``pykka.Actor._actor_loop`` with a wrapper that calls the original.

:data:`threading.excepthook` is left alone: a hook there is cut out of the
chain by any code that sets its own without chaining (pytest does, when it
configures itself), which would turn the repair off in exactly the test runs
meant to check it.

Guarantees
----------
* Listeners run in the dying actor's thread, synchronously, before
  ``actor_stopped`` is set. They must be quick and must not block on other
  actors (a listener that raises, even a ``BaseException``, is logged and
  ignored; the next listener still runs).
* A listener may be called more than once for one death (Pykka unregisters
  twice when ``on_stop`` raises); the reason recorded is the first one.
* :func:`death_seen` is true from the first notice on, even before
  ``actor_stopped`` is set, and before any listener runs: use it, not
  ``is_alive()``, to refuse a dying actor.
* **No retained tracebacks.** The exception recorded as a crash reason (and
  handed to listeners) keeps its traceback only while the dying thread still
  runs (Pykka passes it to ``on_failure`` after the notice). When that thread
  ends, the traceback of the exception and of its ``__cause__``/``__context__``
  chain is cleared, so the failed handler's frames and their locals are freed
  at once (no cycle through ``ref -> exception -> frame -> actor -> ref`` is
  left for the cyclic GC). Type, args and attributes of the exception stay.
* Calling ``pykka.ActorRegistry.unregister(ref)`` yourself counts as that
  actor's death here (Pykka offers no other signal): its names are released.
* An actor whose ``on_start`` raises a ``BaseException`` is reported dead
  (with that exception as the reason) and marked stopped before its thread
  ends, whatever ``threading.excepthook`` is set to. Only a subclass that
  overrides ``_actor_loop`` itself escapes the repair.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Callable, Optional

import pykka

__all__ = [
    "DeathListener",
    "add_listener",
    "clear_tracebacks",
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
# Per dying thread: the crash reasons whose tracebacks are cleared when the
# thread ends (CPython drops a thread's ``threading.local`` values as the
# thread finishes, which runs _TracebackReaper.__del__ in that thread).
_thread_end = threading.local()
_listeners: tuple[DeathListener, ...] = ()  # copy-on-write: read without a lock
_early_count = 0  # how many of _listeners (at the front) were added early
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


def add_listener(listener: DeathListener, *, early: bool = False) -> None:
    """Call ``listener`` for every actor death in this process.

    ``early`` listeners run before all others (registries remove names
    early, so that monitors and supervisors, which run later, already see the
    names gone); each group runs in the order it was added."""
    global _listeners, _early_count
    install()
    with _lock:
        if early:
            _listeners = (*_listeners[:_early_count], listener, *_listeners[_early_count:])
            _early_count += 1
        else:
            _listeners = (*_listeners, listener)


def remove_listener(listener: DeathListener) -> None:
    """Stop calling ``listener``; a no-op if it is not registered."""
    global _listeners, _early_count
    with _lock:
        early = _listeners[:_early_count]
        if any(x is listener for x in early):
            _early_count -= 1
        _listeners = tuple(x for x in _listeners if x is not listener)


class _TracebackReaper:
    """Clears the tracebacks of the exceptions it holds when it is freed."""

    __slots__ = ("exceptions",)

    def __init__(self) -> None:
        self.exceptions: list[BaseException] = []

    def __del__(self) -> None:
        for exception in self.exceptions:
            clear_tracebacks(exception)


def clear_tracebacks(exception: BaseException) -> None:
    """Drop the traceback of ``exception`` and of every exception chained to
    it (``__cause__``, ``__context__``), keeping everything else. Never raises."""
    seen: set[int] = set()
    todo: list[Any] = [exception]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        try:
            current.__traceback__ = None
        except BaseException:  # hostile subclasses must not break a death
            pass
        todo.append(current.__cause__)
        todo.append(current.__context__)


def _reap_at_thread_end(reason: BaseException) -> None:
    reaper = getattr(_thread_end, "reaper", None)
    if reaper is None:
        reaper = _thread_end.reaper = _TracebackReaper()
    reaper.exceptions.append(reason)


def _notify(actor_ref: Any, reason: Optional[BaseException]) -> None:
    ref_dict = getattr(actor_ref, "__dict__", None)
    if ref_dict is not None and _DEATH_ATTR not in ref_dict:
        ref_dict[_DEATH_ATTR] = (reason,)
    if reason is not None:
        _reap_at_thread_end(reason)
    for listener in _listeners:
        try:
            listener(actor_ref, reason)
        except BaseException:  # a listener must not stop a death
            logger.exception("death listener %r failed for %s", listener, actor_ref)


def _repair_zombie(actor: Any, reason: BaseException,
                   unregister_from_pykka: Callable[[], None]) -> None:
    """Finish the death Pykka left half done (runs in the actor's thread).
    Never raises: the original exception must go on its way."""
    try:
        _notify(actor.actor_ref, reason)
        unregister_from_pykka()
        actor.actor_stopped.set()
        _fail_pending_asks(actor)
    except BaseException:  # pragma: no cover - a hostile actor must not hide the cause
        logger.exception("pykka_registry could not finish the death of %r", actor)


def _fail_pending_asks(actor: Any) -> None:
    """Answer every ask left in a dead actor's inbox with ``ActorDeadError``
    (what Pykka's own teardown does), so no caller waits for a reply."""
    inbox = actor.actor_inbox
    while True:
        try:
            envelope = inbox.get_nowait() if hasattr(inbox, "get_nowait") else inbox.get(False)
        except Exception:  # empty (queue.Empty and the gevent/eventlet ones)
            return
        reply_to = getattr(envelope, "reply_to", None)
        if reply_to is None:
            continue
        try:
            error = pykka.ActorDeadError(f"{actor.actor_ref} stopped before handling the message")
            reply_to.set_exception(exc_info=(pykka.ActorDeadError, error, None))
        except Exception:  # pragma: no cover - one bad future must not stop the rest
            logger.exception("pykka_registry could not fail a pending ask of %r", actor)


def install() -> None:
    """Install the hooks described in the module docstring. Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        registry_cls: Any = pykka.ActorRegistry
        original_unregister = registry_cls.unregister.__func__
        original_stop_all = registry_cls.stop_all.__func__
        actor_cls: Any = pykka.Actor
        original_actor_loop = actor_cls._actor_loop

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

        def _actor_loop(self: Any) -> None:
            try:
                original_actor_loop(self)
            except BaseException as exc:
                if not self.actor_stopped.is_set():
                    # BaseException in on_start: Pykka never unregistered it.
                    _repair_zombie(self, exc, lambda: original_unregister(registry_cls,
                                                                           self.actor_ref))
                raise

        unregister.__doc__ = original_unregister.__doc__
        stop_all.__doc__ = original_stop_all.__doc__
        registry_cls.unregister = classmethod(unregister)
        registry_cls.stop_all = classmethod(stop_all)
        _actor_loop.__doc__ = original_actor_loop.__doc__
        actor_cls._actor_loop = _actor_loop
        _installed = True
