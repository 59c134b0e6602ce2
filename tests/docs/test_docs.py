"""Every ```python block of the docs (docs/**/*.md) and of README.md runs.

How blocks are run
------------------
* A page's ``python`` (or ``py``) blocks run in order, in one fresh namespace
  (``__name__ == "__main__"``), so a block may use what an earlier block of the
  same page defined. Pages share nothing.
* Tracebacks point at the Markdown file and line (``docs/names.md:42``).
* After the page, no Pykka actor may be left running and no thread the page
  started may still be alive (after a grace period for threads that are
  finishing): leftovers are stopped, and the test fails naming them.

Blocks that are not run
-----------------------
* Any other fence language (``sh``, ``text``, ``yaml``, ``toml``, ``ini``...).
* A python block whose info string carries a title starting with "not run",
  with the reason, e.g. ```` ```python title="not run: needs a Redis server" ````.
  Keep these rare: every such block is listed in the test output.
* A fence without a language is an error (it would hide code from this test).

Also here: the example backend of docs/backends.md runs the whole conformance
suite (``TestDocsSimpleBackend``), so the page cannot show a backend that
does not conform.
"""

from __future__ import annotations

import linecache
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Optional

import pykka
import pytest

from pykka_registry import Registry
from pykka_registry.testing import RegistryConformance

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]

RUN_LANGUAGES = {"python", "py"}
NOT_RUN = re.compile(r"""title\s*=\s*["']not run\b""")
OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
THREAD_GRACE_S = 5.0


class Block(NamedTuple):
    path: Path
    line: int  # 1-based line of the first line of code
    language: str
    info: str
    code: str


def extract_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, in order.

    Handles indented fences (inside lists, admonitions or tabs): the fence's
    indentation is removed from every line of its block.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        opening = OPENING.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            body.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path}:{i + 1}: code fence is never closed")
        language = info.split()[0].strip("{}.").lower() if info else ""
        blocks.append(Block(path, i + 2, language, info, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def runnable(block: Block) -> bool:
    return block.language in RUN_LANGUAGES and not NOT_RUN.search(block.info)


def page_id(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:  # a page outside the checkout (the extractor's own test)
        return str(path)


def run_page(path: Path, namespace: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Run the page's python blocks in order in one namespace and return it."""
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    for block in extract_blocks(path):
        if not runnable(block):
            continue
        filename = f"{page_id(path)}:{block.line}"
        # Pad with blank lines so that line numbers in tracebacks are the
        # Markdown file's own.
        source = "\n" * (block.line - 1) + block.code
        linecache.cache[str(path)] = (
            len(source), None, path.read_text(encoding="utf-8").splitlines(True), str(path)
        )
        try:
            code = compile(source, str(path), "exec")
        except SyntaxError as error:
            raise AssertionError(f"{filename}: block does not compile: {error}") from error
        exec(code, namespace)
    return namespace


def _stop_leftovers(threads_before: set[threading.Thread], actors_before: set[str]) -> list[str]:
    problems = []
    actors = [r for r in pykka.ActorRegistry.get_all() if r.actor_urn not in actors_before]
    for ref in actors:
        problems.append(f"actor left running: {ref}")
        try:
            ref.stop(block=True, timeout=5)
        except (pykka.ActorDeadError, pykka.Timeout):
            pass
    deadline = time.monotonic() + THREAD_GRACE_S
    for thread in threading.enumerate():
        if thread in threads_before or thread is threading.current_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            problems.append(f"thread left running: {thread.name}")
    return problems


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    threads_before = set(threading.enumerate())
    actors_before = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}
    yield
    problems = _stop_leftovers(threads_before, actors_before)
    assert not problems, "the page left things running:\n" + "\n".join(problems)


PAGES_WITH_CODE = [p for p in PAGES if any(runnable(b) for b in extract_blocks(p))]


@pytest.mark.parametrize("path", PAGES_WITH_CODE, ids=page_id)
def test_page_code_blocks_run(path: Path, no_leftovers: None) -> None:
    run_page(path)


def test_every_fence_names_its_language() -> None:
    unnamed = [
        f"{page_id(b.path)}:{b.line - 1}" for p in PAGES for b in extract_blocks(p) if not b.language
    ]
    assert unnamed == [], f"code fences without a language (say python, sh, text...): {unnamed}"


def test_not_run_blocks_say_why(capsys: pytest.CaptureFixture[str]) -> None:
    skipped = [b for p in PAGES for b in extract_blocks(p)
               if b.language in RUN_LANGUAGES and NOT_RUN.search(b.info)]
    for block in skipped:
        assert re.search(r"""not run\s*:\s*\w""", block.info), (
            f"{page_id(block.path)}:{block.line - 1}: a 'not run' block must give its reason "
            f'(title="not run: why")'
        )
    with capsys.disabled():
        for block in skipped:
            print(f"\n  not run: {page_id(block.path)}:{block.line - 1} {block.info}")


def test_the_docs_have_code() -> None:
    # Guard against the extractor silently finding nothing.
    assert len(PAGES_WITH_CODE) >= 5, [page_id(p) for p in PAGES_WITH_CODE]


def test_extractor_handles_indented_and_nested_fences(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n"
        "```python\nx = 1\n```\n"
        "!!! note\n\n    ```python\n    y = x + 1\n    ```\n"
        "````text\n```python\nnot code\n```\n````\n"
        '```python title="not run: needs a server"\nraise SystemExit\n```\n',
        encoding="utf-8",
    )
    blocks = extract_blocks(page)
    assert [(b.language, b.code) for b in blocks] == [
        ("python", "x = 1\n"),
        ("python", "y = x + 1\n"),
        ("text", "```python\nnot code\n```\n"),
        ("python", "raise SystemExit\n"),
    ]
    assert [runnable(b) for b in blocks] == [True, True, False, False]
    assert run_page(page)["y"] == 2


# -- the example backend of docs/backends.md passes the conformance suite ------------

_backend_page: dict[str, Any] = {}


def _docs_backend() -> Any:
    if not _backend_page:
        _backend_page.update(run_page(DOCS / "backends.md"))
        # The page stops what it starts; anything left would be caught by the
        # page's own test above.
    return _backend_page["SimpleBackend"]


class TestDocsSimpleBackend(RegistryConformance):
    """The whole conformance suite against the backend the docs teach."""

    def start_registry(self, request: Any) -> Registry:
        return Registry.start(backend=_docs_backend())
