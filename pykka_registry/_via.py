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
from typing import TYPE_CHECKING, Any, Optional

import pykka

from pykka_registry._errors import NotRegisteredError, RegistryTimeoutError

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

    def resolve(self) -> Any:
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

    def ask(self, message: Any, timeout: Optional[float] = None) -> Any:
        """Send ``message`` to the current holder and return its answer.

        ``timeout=None`` waits at most the registry's ``call_timeout``.

        Raises:
            NotRegisteredError: nobody holds the name.
            RegistryTimeoutError: no answer in time (also a ``TimeoutError``).
            pykka.ActorDeadError: the holder died before answering.
            Exception: whatever the actor's handler raised reaches the caller.
        """
        if timeout is None:
            timeout = self.registry.call_timeout
        target = self.resolve()
        try:
            return target.ask(message, timeout=timeout)
        except pykka.Timeout:
            raise RegistryTimeoutError(
                f"{target} ({self.service!r} in {self.namespace!r}) did not answer "
                f"within {timeout}s"
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
        return f"<Via {self.service!r} in {self.namespace!r} of {self.registry!r}>"


class ViaProxy:
    """Like a :class:`pykka.ActorProxy`, but ``proxy.method(...)`` resolves the
    name first, so it always reaches the current holder. Returns what Pykka's
    proxy returns (a future for a call or an attribute read)."""

    __slots__ = ("_via",)

    def __init__(self, via: Via) -> None:
        object.__setattr__(self, "_via", via)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._via._pykka_proxy(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._via._pykka_proxy(), name, value)

    def __repr__(self) -> str:
        return f"<ViaProxy for {self._via!r}>"
