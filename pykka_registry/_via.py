"""``Via``: address an actor by name, whoever holds the name now
(the Python form of Elixir's ``{:via, Registry, {registry, key}}``).

Guarantees
----------
* The name is resolved at every call, in the caller's thread (a ``lookup``:
  no queueing behind the registry's server). A handle kept across a restart
  reaches the new actor.
* With no live holder, every call raises :class:`NotRegisteredError` at once.
* ``ask`` always has a deadline: ``timeout=None`` means the registry's
  ``call_timeout``; a late answer raises :class:`RegistryTimeoutError`. If the
  holder dies before answering, the ask raises ``pykka.ActorDeadError`` rather
  than waiting.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Callable, Optional

import pykka

from pykka_registry._errors import NotRegisteredError, RegistryTimeoutError, safe_repr
from pykka_registry._timeouts import check_timeout, optional_timeout
from pykka_registry._types import ActorRefLike

if TYPE_CHECKING:
    from pykka_registry._registry import Registry

__all__ = ["Via", "ViaProxy"]


class Via:
    """A name-addressed handle; see the module docstring."""

    __slots__ = ("_cached", "namespace", "registry", "service")

    def __init__(self, registry: Registry, namespace: Hashable, service: Hashable) -> None:
        self.registry = registry
        self.namespace = namespace
        self.service = service
        self._cached: tuple[Any, Any] = (None, None)  # (ref, its pykka proxy)

    def resolve(self) -> ActorRefLike:
        """The live actor holding the name now.

        Raises:
            NotRegisteredError: nobody holds it.
        """
        ref = self.registry.lookup(self.namespace, self.service)
        if ref is None:
            raise NotRegisteredError(self.namespace, self.service)
        return ref

    def tell(self, message: Any) -> None:
        """Send ``message`` to the current holder, without waiting."""
        self.resolve().tell(message)

    def ask(self, message: Any, *, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Send ``message`` to the current holder and return its answer, as
        :meth:`pykka.ActorRef.ask` does.

        ``timeout=None`` waits at most the registry's ``call_timeout``. With
        ``block=False`` the answer comes as a Pykka future: the holder is
        resolved now, and ``future.get()`` waits at most ``timeout`` (with
        ``None``, the ``call_timeout``) unless given a timeout of its own.

        Raises:
            NotRegisteredError: nobody holds the name (at once, also with
                ``block=False``).
            RegistryTimeoutError: no answer in time (also a ``TimeoutError``;
                with ``block=False``, from ``future.get()``).
            pykka.ActorDeadError: the holder died before answering (with
                ``block=False``, from ``future.get()``); to reach its
                successor, wait with ``registry.await_name(...,
                replacing=old_ref)`` and ask again.
            Exception: whatever the actor's handler raised reaches the caller.
        """
        timeout = optional_timeout(timeout, self.registry.call_timeout)
        target = self.resolve()
        if block:
            return self._answer(target, lambda: target.ask(message, timeout=timeout), timeout)
        answer = target.ask(message, block=False)
        # A future of our own whose get() keeps the deadline rule: Pykka's
        # would wait forever when get() is called without a timeout.
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        future.set_get_hook(lambda wait: self._answer(
            target,
            lambda: answer.get(timeout=timeout if wait is None else check_timeout(wait)),
            timeout if wait is None else check_timeout(wait),
        ))
        return future

    def _answer(self, target: Any, wait: Callable[[], Any], timeout: float) -> Any:
        try:
            return wait()
        except pykka.Timeout:
            raise RegistryTimeoutError(
                f"{target} ({safe_repr(self.service)} in {safe_repr(self.namespace)}) did not "
                f"answer within {timeout}s"
            ) from None

    def proxy(self) -> ViaProxy:
        """A proxy whose every attribute access goes to the current holder."""
        return ViaProxy(self)

    def _pykka_proxy(self) -> Any:
        ref = self.resolve()
        cached_ref, cached_proxy = self._cached
        if cached_ref is ref:
            return cached_proxy
        proxy = ref.proxy()
        self._cached = (ref, proxy)
        return proxy

    def __repr__(self) -> str:
        return (f"<Via {safe_repr(self.service)} in {safe_repr(self.namespace)} of "
                f"{self.registry!r}>")


class ViaProxy:
    """Like a :class:`pykka.ActorProxy`, but bound to the name rather than to
    one actor: every attribute read and every method call resolves the name
    first, so it reaches the holder at that moment (a method looked up
    before a restart and called after it reaches the successor). Returns what
    Pykka's proxy returns: a future for a call or an attribute read.

    Raises :class:`NotRegisteredError` at the read or call when nobody holds
    the name."""

    __slots__ = ("_via",)

    def __init__(self, via: Via) -> None:
        object.__setattr__(self, "_via", via)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._via._pykka_proxy(), name)
        if callable(attribute):
            return _ViaMethod(self._via, name)
        return attribute

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._via._pykka_proxy(), name, value)

    def __repr__(self) -> str:
        return f"<ViaProxy for {self._via!r}>"


class _ViaMethod:
    """``via_proxy.method``: resolves the name again when called."""

    __slots__ = ("_name", "_via")

    def __init__(self, via: Via, name: str) -> None:
        self._via = via
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._via._pykka_proxy(), self._name)(*args, **kwargs)

    def defer(self, *args: Any, **kwargs: Any) -> None:
        """Call the method without waiting for (or getting) its result, as
        Pykka 3's ``proxy.method.defer(...)`` does."""
        getattr(self._via._pykka_proxy(), self._name).defer(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<ViaProxy method {self._name!r} of {self._via!r}>"
