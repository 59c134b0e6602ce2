"""The observer from outside, for the observer tests (``tests/observer/``) and
the observer-on-Redis test (``tests/redis/``): HTTP GETs and the command line
in a subprocess. A helper module (no tests, no fixtures), importable by name
because pytest puts ``tests/`` on ``sys.path`` (``tests/conftest.py``).

Every wait is bounded: 10 s per request, 30 s for the command line to print
its URL or to exit after Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Optional

__all__ = ["get", "get_json", "interrupt", "start_cli"]


def get(url: str, headers: Optional[dict[str, str]] = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one request (an HTTP error is an answer too)."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(url: str, **kwargs: Any) -> Any:
    """The JSON body of a 200 answer (anything else fails)."""
    status, _, body = get(url, **kwargs)
    assert status == 200, body
    return json.loads(body)


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m pykka_registry *args``; wait for the observer's URL."""
    process = subprocess.Popen([sys.executable, "-m", "pykka_registry", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = ""
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        if line.startswith("observer: ") and "Ctrl-C to quit" in line:
            url = line.split()[1]
            break
    if not url:
        process.kill()
        raise AssertionError(f"no URL printed: {process.communicate(timeout=10)}")
    return process, url


def interrupt(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Ctrl-C the command line; ``(exit code, stdout, stderr)``."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err
