"""The command line: python -m pykka_registry demo (and its errors); the demo on
a real Redis server is in tests/redis/test_redis_cli.py."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pykka_registry", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize("backend", ["memory", "indexed"])
def test_demo_tours_and_exits_cleanly(backend: str) -> None:
    result = run("demo", "--backend", backend)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"on the {backend} backend" in out
    assert "registered: ['w1', 'w2', 'w3']" in out
    assert "w2.ask(7) -> 49" in out
    assert "who answers for 'w2': worker w2, actor_urn ..." in out
    assert "new w2 is a different actor: True" in out
    assert "w2.ask(8) -> 64" in out
    assert "match({'caps': 'gpu'}) -> ['w2']" in out
    assert "names left in 'demo': 0" in out
    assert "health: healthy" in out
    assert "actors still running: 0" in out
    assert "Traceback" not in result.stderr


def test_unknown_backend_is_refused() -> None:
    result = run("demo", "--backend", "nosuch")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_command_is_required() -> None:
    result = run()
    assert result.returncode == 2


def test_bench_quick_promises_no_time_it_cannot_keep() -> None:
    # `--quick` was sold as "under 30 seconds" and took 45 s on a loaded machine.
    result = run("bench", "--help")
    assert result.returncode == 0
    assert "--quick" in result.stdout
    assert "30" not in result.stdout


def _dead_url() -> str:
    """A Redis URL on a loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("command", ["ls", "demo", "observe"])
def test_a_url_without_a_scheme_is_a_one_line_usage_error(command: str) -> None:
    result = run(command, "--redis", "127.0.0.1:6379")
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert "is not a Redis URL" in line and "redis://HOST:PORT/DB" in line
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["ls", "demo", "observe"])
def test_a_dead_server_is_one_line_and_exit_1(command: str) -> None:
    url = _dead_url()
    result = run(command, "--redis", url)
    assert result.returncode == 1, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert url in line and "Redis" in line
    assert "pykka-registry demo across" not in result.stdout


@pytest.mark.parametrize("args", [("demo", "--bogus"), ("ls",), ("nosuch",),
                                  ("demo", "--pause", "3"), ("observe", "--port", "x")])
def test_usage_errors_are_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert _one_line(result.stderr).startswith("python -m pykka_registry")


def test_each_subcommand_registers_its_own_parser() -> None:
    from pykka_registry.cli import build_parser

    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert set(actions[0].choices) == {"demo", "ls", "bench", "observe"}
    for name in ("ls", "observe"):
        sub = actions[0].choices[name]
        assert "--redis" in sub.format_help() and "--prefix" in sub.format_help()
