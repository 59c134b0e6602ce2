"""The observer tests' fixtures.

* ``browser`` (module scope): a headless Chromium WebDriver, 1280x800
  (``tests/browser.py``; skipped locally, a failure under ``CI``, without
  Chromium, chromedriver or Selenium).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import start_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium WebDriver (1280x800) shared by a test module."""
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()
