"""Snapshots of a registry's size and health: frozen values, safe to keep."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import attrs

from pykka_registry._types import HealthStatus

__all__ = ["HealthReport", "RegistryStats"]


@attrs.define(frozen=True)
class RegistryStats:
    """Counters of one registry at one moment; one name per counter.

    Now: ``names`` (how many names are registered) and ``namespaces`` (how
    many namespaces hold at least one). Since the registry started (the
    ``*_total`` counters): ``registrations_total``, ``unregistrations_total``
    and ``deaths_reaped_total``. Also ``pending_deaths`` (death notices not
    yet applied by the server), ``server_restarts`` and
    ``subscribers_active`` (whether any event listener is subscribed).
    Groups, now: ``groups`` (groups with at least one member, over every
    namespace) and ``memberships`` (members over every group); both ``0``
    on a backend that keeps no groups.

    Deprecated: ``total_registrations`` is the old name of ``names`` (it
    read as a cumulative counter, which it never was); reading it warns with
    a :class:`DeprecationWarning`. It goes in the next release.
    """

    names: int
    namespaces: int
    backend: str
    uptime_s: float
    registrations_total: int
    unregistrations_total: int
    deaths_reaped_total: int
    pending_deaths: int
    server_restarts: int
    subscribers_active: bool
    groups: int = 0
    memberships: int = 0

    @property
    def total_registrations(self) -> int:
        """Deprecated alias of :attr:`names`."""
        warnings.warn(
            "RegistryStats.total_registrations is deprecated and goes in the next "
            "release: use RegistryStats.names (names registered now)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.names


@attrs.define(frozen=True)
class HealthReport:
    """``status`` is ``"healthy"``, ``"degraded"`` (reads work, something is
    wrong: writes may fail or be slow) or ``"unhealthy"`` (the server is down
    or the registry is stopped). ``problems`` says why, in words.
    ``groups`` and ``memberships`` are as in :class:`RegistryStats`.
    ``dispatcher_alive`` is False when the event dispatcher thread (which
    runs listeners and wakes ``await_name``) has stopped while the registry
    runs; the status is then ``"unhealthy"``."""

    status: HealthStatus
    backend: str
    uptime_s: float
    backend_health: Mapping[str, Any]
    server_alive: bool
    problems: tuple[str, ...] = ()
    groups: int = 0
    memberships: int = 0
    dispatcher_alive: bool = True
