"""Fixtures shared by the core tests (a file may define its own instead).

* ``registry``: a started in-memory :class:`~pykka_registry.Registry`,
  stopped after the test.
* ``ns``: a namespace of the test's own (``test_namespace()``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pykka_registry import Registry, test_namespace


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry.start() as registry:
        yield registry


@pytest.fixture
def ns() -> Any:
    return test_namespace()
