"""Backends by name: ``Registry.start(backend="indexed")``, as the CLI's
``--backend indexed``.

Built in: ``"memory"`` (:class:`MemoryBackend`), ``"indexed"``
(:class:`IndexedBackend`) and ``"redis"`` (:class:`RedisBackend`, which needs
``pip install "pykka-registry[redis]"``). A third-party package adds a name
with an entry point in the group ``pykka_registry.backends`` whose object is
its :class:`Backend` subclass, for example in ``setup.cfg``::

    [options.entry_points]
    pykka_registry.backends =
        sqlite = my_package.sqlite_backend:SqliteBackend

Guarantees
----------
* A built-in name always means the built-in backend: an entry point cannot
  shadow it.
* Entry points are read when a name is not built in, in the caller's thread,
  with :mod:`importlib.metadata` (no import of other plugins' code happens
  until their name is asked for).
* An unknown name raises :class:`UnknownBackendError` (a ``ValueError``)
  listing every name that would have worked; an entry point that cannot be
  loaded raises it too, with the cause chained.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import Any

from pykka_registry._errors import UnknownBackendError

__all__ = ["ENTRY_POINT_GROUP", "backend_names", "resolve_backend"]

ENTRY_POINT_GROUP = "pykka_registry.backends"

_BUILT_IN = {
    "memory": ("pykka_registry.backends.memory", "MemoryBackend"),
    "indexed": ("pykka_registry.backends.indexed", "IndexedBackend"),
    "redis": ("pykka_registry.backends.redis", "RedisBackend"),
}


def _entry_points() -> dict[str, Any]:
    if sys.version_info >= (3, 10):
        found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    else:  # 3.9: a dict of groups
        found = metadata.entry_points().get(ENTRY_POINT_GROUP, ())
    return {ep.name: ep for ep in found if ep.name not in _BUILT_IN}


def backend_names() -> list[str]:
    """Every name :func:`resolve_backend` accepts now, sorted."""
    return sorted({*_BUILT_IN, *_entry_points()})


def resolve_backend(backend: Any) -> Any:
    """A backend class for a name; anything that is not a ``str`` unchanged
    (a class or an instance, checked later by ``validate_backend``).

    Raises:
        UnknownBackendError: no backend has that name, or it cannot be loaded.
    """
    if not isinstance(backend, str):
        return backend
    if backend in _BUILT_IN:
        module, attribute = _BUILT_IN[backend]
        try:
            return getattr(importlib.import_module(module), attribute)
        except ImportError as error:
            raise UnknownBackendError(
                f"backend {backend!r} needs an optional dependency: "
                f"pip install 'pykka-registry[{backend}]' ({error})"
            ) from error
    plugins = _entry_points()
    if backend not in plugins:
        raise UnknownBackendError(
            f"unknown backend {backend!r}: known names are "
            f"{', '.join(repr(n) for n in sorted({*_BUILT_IN, *plugins}))}; or pass a "
            "Backend subclass or instance (third-party names come from the entry point "
            f"group {ENTRY_POINT_GROUP!r})"
        )
    try:
        return plugins[backend].load()
    except Exception as error:
        raise UnknownBackendError(
            f"backend {backend!r} (entry point {plugins[backend].value!r}) cannot be "
            f"loaded: {type(error).__name__}: {error}"
        ) from error
