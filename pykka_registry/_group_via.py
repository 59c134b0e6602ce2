"""``GroupVia``: address one member of a group per call, picked by a
strategy (the group form of :class:`~pykka_registry.Via`).

Guarantees
----------
* The group is read at every call, in the caller's thread (a ``members``
  read: no queueing behind the registry's server); a handle kept across
  joins, leaves and deaths reaches the members of that moment.
* With no live member, every call raises :class:`NotRegisteredError` at
  once (``service`` is the group).
* Strategies: ``"round_robin"`` (each call takes the next member, in join
  order; thread-safe), ``"random"``, and ``"hash"``: each call takes
  ``key=...`` and the same key reaches the same member while membership is
  unchanged (``hash(key)`` modulo the member count, so it is stable within
  one process, not across processes).
* ``ask`` always has a deadline, as :meth:`Via.ask` has.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Optional

import pykka

from pykka_registry._errors import (
    InvalidKeyError,
    InvalidStrategyError,
    NotRegisteredError,
    RegistryError,
    RegistryTimeoutError,
    safe_repr,
    type_name,
)
from pykka_registry._timeouts import check_timeout, optional_timeout
from pykka_registry._types import GROUP_STRATEGIES, ActorRefLike, GroupStrategy
from pykka_registry._via import ViaProxy

if TYPE_CHECKING:
    from pykka_registry._registry import Registry

__all__ = ["STRATEGIES", "GroupVia"]

#: The strategies :meth:`Registry.group_via` knows (see ``GroupStrategy``).
STRATEGIES = GROUP_STRATEGIES


class _NoKey:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no key given>"


_NO_KEY: Any = _NoKey()


class GroupVia:
    """A group-addressed handle; see the module docstring. Made by
    :meth:`Registry.group_via`."""

    __slots__ = ("_counter", "_members", "_proxies", "group", "namespace", "registry",
                 "strategy")

    def __init__(self, registry: Registry, namespace: Hashable, group: Hashable,
                 strategy: GroupStrategy = "round_robin") -> None:
        if strategy not in STRATEGIES:
            raise InvalidStrategyError(
                f"strategy must be one of {', '.join(STRATEGIES)}; got {safe_repr(strategy)}"
            )
        self.registry = registry
        self.namespace = namespace
        self.group = group
        self.strategy = strategy
        self._members = registry._member_refs  # the facade's fastest read
        self._counter = itertools.count()
        self._proxies: dict[str, Any] = {}  # urn -> pykka proxy (made once per member)

    def resolve(self, key: Any = _NO_KEY) -> ActorRefLike:
        """The member the next call would reach (with ``"hash"``, give ``key``).

        Raises:
            NotRegisteredError: the group has no live member.
            InvalidKeyError: ``key`` missing with ``"hash"``, given with
                another strategy, or its ``__hash__`` raises.
        """
        try:
            members = self._members(self.namespace, self.group)
        except KeyboardInterrupt:
            raise
        except RegistryError:
            raise
        except BaseException as error:  # a group key whose __eq__ raises against a stored one
            raise self.registry._key_error(self.namespace, self.group, error) from None
        strategy = self.strategy
        if strategy == "round_robin":
            if key is not _NO_KEY:
                raise InvalidKeyError("key= is for strategy 'hash' only")
            if not members:
                raise self._empty()
            return members[next(self._counter) % len(members)]
        if strategy == "hash":
            if key is _NO_KEY:
                raise InvalidKeyError("strategy 'hash' needs key=... on every call")
            try:
                slot = hash(key)
            except KeyboardInterrupt:
                raise
            except BaseException as error:
                raise InvalidKeyError(
                    f"key must be hashable, got {type_name(key)}: {safe_repr(key)} "
                    f"({type_name(error)} from its __hash__)"
                ) from None
            if not members:
                raise self._empty()
            return members[slot % len(members)]
        if key is not _NO_KEY:
            raise InvalidKeyError("key= is for strategy 'hash' only")
        if not members:
            raise self._empty()
        return random.choice(members)

    def _empty(self) -> NotRegisteredError:
        return NotRegisteredError(self.namespace, self.group, "the group has no live member")

    def tell(self, message: Any, *, key: Any = _NO_KEY) -> None:
        """Send ``message`` to one member, without waiting."""
        self.resolve(key).tell(message)

    def ask(self, message: Any, *, key: Any = _NO_KEY, block: bool = True,
            timeout: Optional[float] = None) -> Any:
        """Send ``message`` to one member and return its answer, as
        :meth:`Via.ask` does (``timeout=None``: the registry's
        ``call_timeout``; ``block=False`` gives a future whose ``get()``
        keeps that deadline).

        Raises:
            NotRegisteredError: the group has no live member (at once).
            RegistryTimeoutError: no answer in time.
            pykka.ActorDeadError: the member died before answering.
            Exception: whatever the member's handler raised.
        """
        timeout = optional_timeout(timeout, self.registry.call_timeout)
        target = self.resolve(key)
        if block:
            return self._answer(target, None, timeout, message)
        answer = target.ask(message, block=False)
        future: pykka.Future[Any] = pykka.ThreadingFuture()
        future.set_get_hook(lambda wait: self._answer(
            target, answer, timeout if wait is None else check_timeout(wait), message))
        return future

    def _answer(self, target: Any, answer: Any, timeout: float, message: Any) -> Any:
        try:
            if answer is None:
                return target.ask(message, timeout=timeout)
            return answer.get(timeout=timeout)
        except pykka.Timeout:
            raise RegistryTimeoutError(
                f"{target} (a member of {safe_repr(self.group)} in {safe_repr(self.namespace)}) "
                f"did not answer within {timeout}s"
            ) from None

    def proxy(self, *, key: Any = _NO_KEY) -> ViaProxy:
        """A proxy whose every attribute access goes to one member picked
        at that access (with ``"hash"``, by ``key``)."""
        return ViaProxy(_Picker(self, key))  # type: ignore[arg-type]

    def _pykka_proxy(self, key: Any = _NO_KEY) -> Any:
        ref = self.resolve(key)
        proxy = self._proxies.get(ref.actor_urn)
        if proxy is None:
            if len(self._proxies) > 2 * len(self._members(self.namespace, self.group)) + 8:
                self._proxies.clear()  # drop proxies of members that are gone
            proxy = self._proxies[ref.actor_urn] = ref.proxy()
        return proxy

    def __repr__(self) -> str:
        return (f"<GroupVia {self.strategy} over {safe_repr(self.group)} in "
                f"{safe_repr(self.namespace)} of {self.registry!r}>")


class _Picker:
    """What :class:`ViaProxy` needs of a handle: a proxy per access."""

    __slots__ = ("_handle", "_key")

    def __init__(self, handle: GroupVia, key: Any) -> None:
        self._handle = handle
        self._key = key

    def _pykka_proxy(self) -> Any:
        return self._handle._pykka_proxy(self._key)

    def __repr__(self) -> str:
        return repr(self._handle)
