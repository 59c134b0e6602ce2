"""Snapshots of a registry's size and health: frozen values, safe to keep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["HealthReport", "RegistryStats"]


@attrs.define(frozen=True)
class RegistryStats:
    """Counters of one registry at one moment.

    ``total_registrations`` and ``namespaces`` describe what is stored now;
    the ``*_total`` counters count since the registry started.
    """

    total_registrations: int
    namespaces: int
    backend: str
    uptime_s: float
    registrations_total: int
    unregistrations_total: int
    deaths_reaped_total: int
    pending_deaths: int
    server_restarts: int
    subscribers_active: bool


@attrs.define(frozen=True)
class HealthReport:
    """``status`` is ``"healthy"``, ``"degraded"`` (reads work, something is
    wrong: writes may fail or be slow) or ``"unhealthy"`` (the server is down
    or the registry is stopped). ``problems`` says why, in words."""

    status: str
    backend: str
    uptime_s: float
    backend_health: Mapping[str, Any]
    server_alive: bool
    problems: tuple[str, ...] = ()
