"""The docs site, read in a real browser: every page at 1280x800 in headless
Chromium, and no table or code block wider than its box.

The site is the one the tox ``docs`` env has just built with ``mkdocs build
--strict`` (it passes the directory in ``PYKKA_REGISTRY_DOCS_SITE``); without
that variable, this module builds the site itself into a temporary directory
(needs the ``docs`` extra), and without MkDocs it is skipped: it runs in the
``docs`` env (``./run-tests -e docs``). Pages are served over HTTP from
127.0.0.1 on a free port, as a reader's browser would get them.

"Overflows" means ``scrollWidth > clientWidth`` on a visible table, table
wrapper or ``pre``/``code`` block inside the article (a horizontal scroll bar
the reader would have to use), or on the page itself.
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SITE_ENV = "PYKKA_REGISTRY_DOCS_SITE"
ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 1280, 800

if not os.environ.get(SITE_ENV):
    pytest.importorskip("mkdocs", reason="the docs browser check runs in the tox docs env "
                                         "(./run-tests -e docs), which has MkDocs")

from browser import start_chromium  # noqa: E402  (skips or, under CI, fails without Chromium)

# Returns the overflowing elements of the page as [what, scrollWidth, clientWidth, text].
OVERFLOWS_JS = """
const found = [];
const page = document.documentElement;
if (page.scrollWidth > page.clientWidth) {
  found.push(["the page", page.scrollWidth, page.clientWidth, ""]);
}
const boxes = document.querySelectorAll(
  "article table, article .md-typeset__scrollwrap, article .md-typeset__table, " +
  "article pre, article pre > code");
for (const el of boxes) {
  if (el.clientWidth === 0) continue;  // not displayed (a closed <details>, another tab)
  if (el.scrollWidth > el.clientWidth) {
    const what = el.tagName.toLowerCase() + (el.className ? "." + el.className : "");
    const lines = el.textContent.split("\\n");
    const widest = lines.reduce((a, b) => (b.length > a.length ? b : a), "");
    found.push([what, el.scrollWidth, el.clientWidth, widest.slice(0, 120)]);
  }
}
return found;
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get(SITE_ENV)
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"{SITE_ENV}={given} holds no built site"
        return path
    path = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-site-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    driver = start_chromium(WIDTH, HEIGHT)
    # The viewport itself 1280x800 (a window of that size has a smaller one).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()


def pages(site: Path) -> list[str]:
    return sorted(str(p.relative_to(site).parent).replace(".", "") for p in site.rglob("index.html")
                  if not p.relative_to(site).parts[0].startswith(("assets", "search")))


def overflows(driver: Any, url: str) -> list[list[Any]]:
    driver.get(url)
    assert driver.execute_script("return window.innerWidth") == WIDTH
    assert driver.find_elements("css selector", "article"), f"{url} has no article"
    return list(driver.execute_script(OVERFLOWS_JS))


def test_every_page_is_there(site: Path) -> None:
    found = pages(site)
    sources = sorted((ROOT / "docs").rglob("*.md"))
    assert "" in found and "quickstart" in found and "comparison" in found
    assert len(found) == len(sources), (found, sources)  # one page per Markdown file


def test_no_table_or_code_block_overflows_at_1280px(driver: Any, base_url: str,
                                                     site: Path) -> None:
    problems = []
    for page in pages(site):
        url = base_url + (page + "/" if page else "")
        for what, scroll, client, text in overflows(driver, url):
            problems.append(f"{page or 'index'}: {what} is {scroll}px wide in a {client}px box"
                            + (f": {text!r}" if text else ""))
    assert not problems, "\n".join(problems)


def test_the_check_sees_an_overflowing_code_block(driver: Any, base_url: str) -> None:
    # The same check on a page made too wide on purpose: it must report it.
    assert overflows(driver, base_url + "quickstart/") == []
    driver.execute_script(
        "document.querySelector('article pre > code').textContent += '\\n' + 'x'.repeat(300);")
    found = driver.execute_script(OVERFLOWS_JS)
    assert any(what.startswith("code") for what, *_ in found), found
