"""Griffe extension for the API reference: turn the reST-isms of the package's
docstrings into Markdown, so mkdocstrings renders them cleanly.

The package's docstrings are Google style (``Raises:`` sections) with a few
reStructuredText habits that Markdown renders badly:

* roles such as ``:class:`~pykka_registry.Registry``` become code spans
  (`Registry`); a leading ``~`` keeps only the last dotted part, as in Sphinx;
* a title underlined with ``---`` or ``===`` (a reST section, which Markdown
  would turn into a page-level heading) becomes a bold line;
* a paragraph ending in ``::`` (a reST literal block) ends in ``:``; the
  indented block after it is already a Markdown code block;
* an item of a ``Raises:`` section that names no exception ("Whatever the
  handler raised.") is listed under ``Exception``, the form Google-style
  parsing expects (it would otherwise warn, and fail the strict build).

Only the text handed to mkdocstrings changes; the source files do not.
Loaded by mkdocs.yml (``extensions: - docs/_griffe/rst_to_markdown.py``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):`(~?)([^`]+)`")
_UNDERLINE = re.compile(r"^([-=~^])\1{2,}\s*$")
_RAISES = re.compile(r"^(\s*)Raises:\s*$")
_NAMED_ITEM = re.compile(r"^[\w., ]+:")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    if tilde:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def rst_to_markdown(text: str) -> str:
    """The Markdown form of one docstring."""
    text = _ROLE.sub(_role, text)
    lines = text.splitlines()
    out: list[str] = []
    raises_indent: int | None = None  # indentation of the current Raises: title
    item_indent: int | None = None  # indentation of its items
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if raises_indent is not None and line.strip():
            if indent <= raises_indent:
                raises_indent = item_indent = None
            else:
                item_indent = indent if item_indent is None else item_indent
                if indent == item_indent and not _NAMED_ITEM.match(line.strip()):
                    line = f"{line[:indent]}Exception: {line.strip()}"
        match = _RAISES.match(line)
        if match:
            raises_indent, item_indent = len(match.group(1)), None
        if _UNDERLINE.match(line) and out and out[-1].strip() and len(line.strip()) >= len(
            out[-1].strip()
        ):
            out[-1] = f"**{out[-1].strip()}**"
            out.append("")  # Python-Markdown needs a blank line before a list
            continue
        if line.rstrip().endswith("::") and line.strip() != "::":
            line = line.rstrip()[:-1]
        out.append(line)
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring once, when its object is created."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
