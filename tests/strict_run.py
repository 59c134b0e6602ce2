"""Whether a test that lacks a system program may skip, or must fail.

A test needing ``redis-server`` or headless Chromium skips with a clear
reason when the program is missing, so a developer at a keyboard can run
what is here. The whole-matrix runs must not pass by skipping: ``.ci/run``
sets ``CI``, and ``./run-tests`` (the README's command, when not asked for a
partial run) sets ``PYKKA_REGISTRY_STRICT=1``; under either, the same test
fails instead. Importable by name because pytest puts ``tests/`` on
``sys.path``.
"""

from __future__ import annotations

import os

__all__ = ["STRICT_ENV", "strict_reason"]

STRICT_ENV = "PYKKA_REGISTRY_STRICT"


def strict_reason() -> str:
    """Why skipping is failing here (``"CI is set"``), or ``""`` when a test
    may skip."""
    if os.environ.get("CI"):
        return "CI is set"
    if os.environ.get(STRICT_ENV, "") not in ("", "0"):
        return f"{STRICT_ENV} is set (the whole-matrix run of ./run-tests)"
    return ""
