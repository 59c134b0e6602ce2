"""A payload that records it was unpickled: what a forged message carries in
the remote tests (``pickle.dumps(Evil("tag"))``; ``UNPICKLED`` lists the tags
of every one unpickled since it was last cleared). Helpers only: no tests."""

from __future__ import annotations

from typing import Any

UNPICKLED: list[str] = []


def _pwned(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Evil:
    """Unpickling this records that code ran."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __reduce__(self) -> Any:
        return (_pwned, (self.tag,))
