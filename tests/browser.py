"""Headless Chromium for tests, through Selenium and the system chromedriver.

API (small on purpose; other test modules reuse it):

* ``start_chromium(width=1280, height=800)`` -- a Selenium ``WebDriver``:
  headless Chromium, window 1280x800, browser console logged; call
  ``.quit()`` when done (the ``browser`` fixture of
  ``tests/observer/conftest.py`` does).
* ``console_errors(driver)`` -- the console messages of level SEVERE since
  the last call (reading drains Chromium's log buffer).
* ``wait_until(driver, condition, message, timeout=10)`` -- a bounded wait
  (``WebDriverWait``) for ``condition(driver)`` to be truthy; returns its
  value. Elements replaced by a live page meanwhile (stale references) count
  as "not yet". To read a live page atomically prefer
  ``driver.execute_script(...)`` over element handles.
* ``CHROMIUM``, ``CHROMEDRIVER`` -- the binaries used (``/usr/bin/chromium``
  and ``/usr/bin/chromedriver``, or the environment variables
  ``PYKKA_REGISTRY_CHROMIUM`` / ``PYKKA_REGISTRY_CHROMEDRIVER``).

When Chromium, chromedriver or Selenium is missing the tests are skipped
locally, but FAIL in a strict run (``CI`` set, or the whole-matrix
``./run-tests``: see ``strict_run``): install the
Debian packages ``chromium chromium-driver`` (and ``pip install selenium``,
part of the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
from strict_run import strict_reason

__all__ = ["CHROMEDRIVER", "CHROMIUM", "console_errors", "start_chromium", "wait_until"]

CHROMIUM = os.environ.get("PYKKA_REGISTRY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = (os.environ.get("PYKKA_REGISTRY_CHROMEDRIVER") or shutil.which("chromedriver")
                or "/usr/bin/chromedriver")


def _missing() -> str:
    problems = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("selenium is not installed (pip install -e '.[test]')")
    for path, what in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            problems.append(f"{what} not found at {path}")
    return "; ".join(problems)


def _skip_or_fail(reason: str) -> None:
    message = (f"browser tests need headless Chromium: {reason}. Install it with "
               "`apt-get install -y --no-install-recommends chromium chromium-driver`")
    strict = strict_reason()
    if strict:
        pytest.fail(f"{message} ({strict}: not skipping)", pytrace=False)
    pytest.skip(message)


def start_chromium(width: int = 1280, height: int = 800) -> Any:
    """A headless Chromium WebDriver with its console logged (skips or
    fails, see the module docstring, when Chromium is not available)."""
    problem = _missing()
    if problem:
        _skip_or_fail(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as error:  # a broken install: say so rather than error out
        _skip_or_fail(f"chromium did not start ({type(error).__name__}: {error})")
        raise
    driver.set_window_size(width, height)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def console_errors(driver: Any) -> list[str]:
    """SEVERE console messages since the last call (this drains the log)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry.get("level") == "SEVERE"]


def wait_until(driver: Any, condition: Any, message: str, timeout: float = 10.0) -> Any:
    """Wait (at most ``timeout`` seconds) until ``condition(driver)`` is truthy."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        condition, message=message)


