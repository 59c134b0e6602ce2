"""The command line on Redis: ``demo --redis URL`` across two processes, and
the Redis demo and example talk only to a server the user named: without a
URL they start a throwaway redis-server of their own (never 127.0.0.1:6379),
and without the binary they stop with one line saying how to pass a URL."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from redis_server import RedisServer, require_binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args: list[str], **env: Any) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    environment.pop("PYKKA_REGISTRY_REDIS_URL", None)
    environment.update(env)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=environment)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pykka_registry", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_demo_across_two_processes_on_redis(fresh_redis: RedisServer) -> None:
    result = run("demo", "--redis", fresh_redis.url)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "w2.ask(7) -> 49" in out
    assert "new w2 is a different actor: True" in out
    assert "w2.ask(8) -> 64" in out
    assert "match({'caps': 'gpu'}) -> ['w2']" in out
    assert "names left in 'demo': 0" in out
    assert "other process exit code: 0; actors still running: 0" in out
    assert "who answers for 'w2': worker w2, actor_urn ..." in out


def test_redis_demo_says_once_that_messages_are_unsigned(fresh_redis: RedisServer) -> None:
    result = run("demo", "--redis", fresh_redis.url)
    assert result.returncode == 0, result.stdout + result.stderr
    both = result.stdout + result.stderr
    # Once for the two processes, as one line of the tour: no "file:line:"
    # header and no source line (warnings.warn(...)) under it.
    assert both.count("no secret set") == 1, both
    assert "warning (UnsignedMessagesWarning, both processes):" in result.stdout
    assert "warnings.warn" not in both
    assert result.stderr.strip() == ""


def test_demo_without_a_url_runs_on_a_throwaway_server() -> None:
    binary = require_binary()
    done = _run(["-m", "pykka_registry", "demo", "--redis"], REDIS_SERVER=binary)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("(no URL given: started a throwaway redis-server at redis://127.0.0.1:")
    assert ":6379/" not in first


def test_demo_without_a_url_or_a_binary_says_how_to_pass_one(tmp_path: Any) -> None:
    done = _run(["-m", "pykka_registry", "demo", "--redis"], PATH=str(tmp_path),
                REDIS_SERVER=str(tmp_path / "missing"))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--redis redis://HOST:PORT/DB" in lines[0]
    assert done.stdout == ""


def test_the_example_without_a_url_runs_on_a_throwaway_server(tmp_path: Any) -> None:
    binary = require_binary()
    done = _run([os.path.join(ROOT, "examples", "two_processes_redis.py")],
                REDIS_SERVER=binary)
    assert done.returncode == 0, done.stderr
    assert "(started a throwaway redis-server on port" in done.stdout
    assert "the name is taken cluster-wide" in done.stdout
    missing = _run([os.path.join(ROOT, "examples", "two_processes_redis.py")],
                   PATH=str(tmp_path), REDIS_SERVER=str(tmp_path / "missing"))
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0
    assert "redis://HOST:PORT/DB" in missing.stderr
