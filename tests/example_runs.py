"""Running one program of ``examples/`` as ``python examples/NAME.py`` would,
for ``tests/docs/test_examples.py`` and (the examples that need Redis)
``tests/redis/test_redis_examples.py``. A helper module (no tests, no
fixtures), importable by name because pytest puts ``tests/`` on ``sys.path``.

The example runs in a subprocess (``sys.executable``, the whole environment
passed through, ``CI`` included) with a 60 s timeout; a small wrapper checks,
after a 5 s grace period, that it left no thread running once its
``__main__`` code had finished (daemon threads count too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["EXAMPLES", "REDIS_URL_ENV", "needs_redis", "run_example"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TIMEOUT_S = 60
REDIS_URL_ENV = "PYKKA_REGISTRY_REDIS_URL"

# Runs one example as `python examples/NAME.py` would (its directory first on
# sys.path, so the installed package is the one imported), then checks that
# it left no thread behind.
WRAPPER = """
import os, runpy, sys, threading, time
path = sys.argv[1]
sys.argv = [path]
sys.path[0] = os.path.dirname(path)
code = 0
try:
    runpy.run_path(path, run_name="__main__")
except SystemExit as exit:
    code = exit.code
deadline = time.monotonic() + 5
for thread in threading.enumerate():
    if thread is not threading.main_thread():
        thread.join(max(0.0, deadline - time.monotonic()))
left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
if left:
    print("threads still running after the example finished:", left, file=sys.stderr)
    sys.exit(3)
sys.exit(code)
"""


def needs_redis(example: Path) -> bool:
    """Examples whose file name contains "redis" need a Redis server."""
    return "redis" in example.stem.lower()


def run_example(example: Path, redis_url: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``example`` (with ``redis_url`` in ``PYKKA_REGISTRY_REDIS_URL`` if
    given); a run past the timeout fails the test with its output."""
    env = dict(os.environ)
    if redis_url:
        env[REDIS_URL_ENV] = redis_url
    try:
        return subprocess.run(
            [sys.executable, "-c", WRAPPER, str(example)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"{example.name} did not finish within {TIMEOUT_S}s\n"
            f"--- stdout ---\n{expired.stdout}\n--- stderr ---\n{expired.stderr}",
            pytrace=False,
        )
