"""Every program in examples/ runs to completion by itself.

Each ``examples/*.py`` runs in a subprocess (``sys.executable``, the whole
environment passed through, ``CI`` included) with a 60 s timeout, and must:

* exit with status 0;
* leave no thread running once its ``__main__`` code has finished (checked,
  after a 5 s grace period, by the small wrapper below; daemon threads count
  too).

Examples whose file name contains "redis" need a Redis server. They get one
from the fixtures of ``tests/redis_server.py`` (the Redis backend tests' own
module: ``fresh_redis``, a server of the test's own, is preferred) and find
its URL in the environment variable ``PYKKA_REGISTRY_REDIS_URL``. Without that
module they are skipped, with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest

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

# The Redis fixtures, if the Redis tests' helper module is there. They are
# made visible to pytest by binding them in this module.
REDIS_FIXTURES = ("fresh_redis", "redis_url", "redis_server")
redis_fixture: Optional[str] = None
try:
    import redis_server as _redis_module  # tests/redis_server.py
except ImportError:
    _redis_module = None
if _redis_module is not None:
    for _name in REDIS_FIXTURES:
        if hasattr(_redis_module, _name):
            globals()[_name] = getattr(_redis_module, _name)
            redis_fixture = redis_fixture or _name


def needs_redis(example: Path) -> bool:
    return "redis" in example.stem.lower()


def redis_url_for(request: pytest.FixtureRequest) -> str:
    if redis_fixture is None:
        pytest.skip("needs a Redis server: tests/redis_server.py (with a fresh_redis, "
                    "redis_url or redis_server fixture) is not there")
    value: Any = request.getfixturevalue(redis_fixture)
    return value if isinstance(value, str) else str(value.url)


def test_the_examples_are_there() -> None:
    names = {example.name for example in EXAMPLES}
    assert {"supervised_workers.py", "chat_rooms.py", "job_pool.py",
            "event_listeners.py"} <= names, names


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_to_completion(example: Path, request: pytest.FixtureRequest) -> None:
    env = dict(os.environ)
    if needs_redis(example):
        env[REDIS_URL_ENV] = redis_url_for(request)
    try:
        result = subprocess.run(
            [sys.executable, "-c", WRAPPER, str(example)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"{example.name} did not finish within {TIMEOUT_S}s\n"
            f"--- stdout ---\n{expired.stdout}\n--- stderr ---\n{expired.stderr}",
            pytrace=False,
        )
    assert result.returncode == 0, (
        f"{example.name} exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
