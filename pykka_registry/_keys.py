"""Helpers for keys (namespaces and service names)."""

from __future__ import annotations

import itertools
import os
import uuid

__all__ = ["test_namespace"]

_counter = itertools.count(1)


def test_namespace() -> tuple[str, str]:
    """A fresh namespace no one else uses: the original design's ``{:test, ref}``.

    Hashable, unique across threads and processes, and made of strings only,
    so every backend (the networked ones too) accepts it.
    """
    return ("test", f"{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:12]}")


test_namespace.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
