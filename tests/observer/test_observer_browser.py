"""The observer page in a real browser (headless Chromium via tests/browser.py).

Set ``PYKKA_REGISTRY_SCREENSHOT=path.png`` to save a screenshot of the page
(docs/assets/observer.png is made this way).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from browser import console_errors, wait_until

from pykka_registry import ChildSpec, Registry, Supervisor

# The page re-renders every 500 ms: read it with one script call (atomic in
# the page) rather than through element handles that a re-render replaces.
SERVICES_JS = ("return Array.from(document.querySelectorAll('#names .c-service'))"
               ".map(e => e.textContent);")


class Worker(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise KeyError("lost the key")
        return message


@pytest.fixture
def observed() -> Iterator[tuple[Registry, Any]]:
    with Registry.start(name="browser-test") as registry:
        with registry.observe() as observer:
            yield registry, observer
    pykka.ActorRegistry.stop_all()


def services(driver: Any) -> list[str]:
    return list(driver.execute_script(SERVICES_JS))


def load(driver: Any, observer: Any) -> None:
    # An earlier test's page keeps polling its stopped observer until the
    # browser leaves it, logging refused connections: leave it, drain the
    # log, and only then open this observer's page.
    driver.get("about:blank")
    console_errors(driver)
    driver.get(observer.url)
    wait_until(driver, lambda d: d.execute_script(
        "return document.getElementById('status').textContent;") == "live", "page live")


def test_page_loads_without_console_errors(browser: Any, observed: tuple[Registry, Any]) -> None:
    registry, observer = observed
    registry.register("ns", "first", Worker.start(), {"role": "demo"})
    console_errors(browser)  # drain what an earlier page left
    load(browser, observer)
    wait_until(browser, lambda d: "first" in services(d), "the name listed")
    assert console_errors(browser) == []


def test_a_name_registered_after_load_appears_without_reload(
        browser: Any, observed: tuple[Registry, Any]) -> None:
    registry, observer = observed
    load(browser, observer)
    marker = browser.execute_script("window.__no_reload = 1; return window.__no_reload;")
    assert marker == 1
    registry.register("ns", "late-comer", Worker.start())
    wait_until(browser, lambda d: "late-comer" in services(d), "the late name listed")
    assert browser.execute_script("return window.__no_reload;") == 1  # same document


def test_a_crash_under_a_supervisor_shows_restart_count_and_exception(
        browser: Any, observed: tuple[Registry, Any]) -> None:
    registry, observer = observed
    supervisor = Supervisor.start([ChildSpec("w1", Worker.start, name=("app", "w1"))],
                                  registry=registry, name="app-tree")
    try:
        load(browser, observer)

        def restarts(driver: Any) -> str:
            return str(driver.execute_script(
                "const c = Array.from(document.querySelectorAll("
                "\"[data-supervisor='app-tree'] .child\")).find(e => e.dataset.childId === 'w1');"
                "return c ? c.querySelector('.child-restarts').textContent : '';"))

        wait_until(browser, lambda d: restarts(d) == "0", "the tree shown")
        old = registry.lookup("app", "w1")
        assert old is not None
        old.tell("crash")
        wait_until(browser, lambda d: restarts(d) == "1", "restart count 1")
        crash = wait_until(browser, lambda d: d.execute_script(
            "const e = document.querySelector('#events .crash');"
            "return e ? [e.querySelector('.ev-exception').textContent, e.textContent] : null;"),
            "crash event")
        assert crash[0].startswith("KeyError: ") and "lost the key" in crash[0]
        assert "w1" in crash[1]
        _screenshot(browser, registry)
    finally:
        supervisor.stop()


def test_the_search_box_filters_names(browser: Any, observed: tuple[Registry, Any]) -> None:
    registry, observer = observed
    for name in ("alpha-1", "alpha-2", "beta-1"):
        registry.register("ns", name, Worker.start())
    load(browser, observer)
    wait_until(browser, lambda d: len(services(d)) == 3, "three names")
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "search").send_keys("ALPHA")
    wait_until(browser, lambda d: sorted(services(d)) == ["alpha-1", "alpha-2"], "filtered")
    registry.register("ns", "alpha-3", Worker.start())
    registry.register("ns", "beta-2", Worker.start())
    wait_until(browser, lambda d: sorted(services(d)) == ["alpha-1", "alpha-2", "alpha-3"],
               "the filter holds across updates")


def test_html_in_metadata_and_names_renders_as_text(
        browser: Any, observed: tuple[Registry, Any]) -> None:
    registry, observer = observed
    payload = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
    registry.register("ns", "<b>bold</b>", Worker.start(), {"note": payload})
    console_errors(browser)
    load(browser, observer)
    wait_until(browser, lambda d: "<b>bold</b>" in services(d), "the name shown as text")
    shown, markup = browser.execute_script(
        "const body = document.querySelector('#names tbody');"
        "return [body.querySelector('.c-metadata').textContent,"
        "        body.querySelectorAll('script, img, b').length];")
    assert payload in shown
    assert markup == 0  # no element was made from the data
    assert browser.execute_script("return window.__pwned === undefined;") is True
    assert console_errors(browser) == []


def test_a_token_protected_page_works_from_its_url(browser: Any) -> None:
    with Registry.start(name="token-test") as registry:
        registry.register("ns", "secretive", Worker.start())
        with registry.observe(token="tok-123") as observer:
            console_errors(browser)
            load(browser, observer)
            wait_until(browser, lambda d: "secretive" in services(d), "the name listed")
            assert console_errors(browser) == []
    pykka.ActorRegistry.stop_all()


def _screenshot(driver: Any, registry: Registry) -> None:
    """Save the page when PYKKA_REGISTRY_SCREENSHOT names a file (for the docs)."""
    path = os.environ.get("PYKKA_REGISTRY_SCREENSHOT")
    if not path:
        return
    registry.register("shop", "cart", Worker.start(), {"zone": "eu-west", "caps": ["gpu"]})
    registry.register("shop", "checkout", Worker.start(), {"zone": "eu-west"})
    wait_until(driver, lambda d: "checkout" in services(d), "names for the screenshot")
    driver.save_screenshot(path)


def test_joins_and_leaves_show_in_the_event_stream(
        browser: Any, observed: tuple[Registry, Any]) -> None:
    registry, observer = observed
    load(browser, observer)
    member = Worker.start()
    registry.join("pool", "<b>workers</b>", member)
    registry.leave("pool", "<b>workers</b>", member)

    def group_events(driver: Any) -> Any:
        found = driver.execute_script(
            "return Array.from(document.querySelectorAll('#events .event'))"
            ".filter(e => e.dataset.type === 'joined' || e.dataset.type === 'left')"
            ".map(e => [e.dataset.type, e.querySelector('.ev-key').textContent,"
            " e.textContent]);")
        return found if len(found) == 2 else None

    (left, joined) = wait_until(browser, group_events, "a join and a leave listed")  # newest first
    assert joined[0] == "joined" and left[0] == "left"
    assert joined[1] == "browser-test \u00b7 pool / <b>workers</b> (group)"  # as text
    assert "left" in left[2]  # its reason
    assert browser.execute_script("return document.querySelector('#events b');") is None
    assert console_errors(browser) == []
