"""The set-up cannot lie: the README's test command (``./run-tests``, which
runs ``tools/run_tests.py``) runs the whole tox matrix or fails naming what is
missing; a partial run is opt-in and says what it left out; the run ends with
counts; ``.ci/run`` runs the same command; the ``docs`` extra is the tox
``docs`` env."""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "run_tests.py"
sys.path.insert(0, str(SCRIPT.parent))
import run_tests  # noqa: E402  (tools/ is not a package)

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]


def fake_pythons(directory: Path, versions: dict[str, str]) -> str:
    """``pythonX.Y`` scripts printing ``versions[X.Y]`` as their version; a
    PATH of that directory only."""
    directory.mkdir(exist_ok=True)
    for name, reported in versions.items():
        exe = directory / f"python{name}"
        exe.write_text(f"#!/bin/sh\necho {reported}\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(directory)


def check_only(path: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": path, "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "no-pyenv"),
               **env}
    return subprocess.run([sys.executable, str(SCRIPT), "--check-only", *args],
                          capture_output=True, text=True, env=environ, timeout=60, check=False)


def test_the_matrix_is_read_from_tox_ini() -> None:
    envs = {env.name: env for env in run_tests.read_envs(ROOT / "tox.ini")}
    expected = {f"py{v.replace('.', '')}-pykka{p}" for v in PYTHONS for p in (3, 4)}
    assert set(envs) == expected | {"sdist", "lint", "docs"}
    assert envs["py39-pykka3"] == run_tests.Env("py39-pykka3", "python3.9", True)
    assert envs["py313-pykka4"].interpreter == "python3.13"
    assert envs["sdist"].writes_junit
    assert envs["docs"].writes_junit  # the browser check of the built site
    assert not envs["lint"].writes_junit
    assert envs["docs"].interpreter == "python3.11"


def test_tox_never_skips_a_missing_interpreter() -> None:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    assert config.get("tox", "skip_missing_interpreters") == "false"


def test_a_missing_interpreter_is_an_error_naming_it_and_how_to_get_it(tmp_path: Path) -> None:
    path = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS if v != "3.9"})
    result = check_only(path, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr
    assert "interpreter(s) missing: python3.9" in error
    assert "needed by py39-pykka3, py39-pykka4" in error
    pinned = next(v for v in run_tests.pinned_versions() if v.startswith("3.9"))
    assert f"pyenv install {pinned}" in error  # the version .python-version names
    assert ".python-version" in error
    assert "PYKKA_REGISTRY_PARTIAL=1 ./run-tests" in error  # the way to a partial run
    assert "interpreters found" not in result.stdout


def test_a_shim_that_runs_another_version_counts_as_missing(tmp_path: Path) -> None:
    # A pyenv shim whose version .python-version does not select fails, or a
    # stray link runs something else: either way not the interpreter asked for.
    path = fake_pythons(tmp_path / "bin", {**{v: v for v in PYTHONS}, "3.12": "3.11"})
    result = check_only(path, tmp_path)
    assert result.returncode == 1
    assert "interpreter(s) missing: python3.12" in result.stderr


def test_pyenv_with_the_version_installed_says_to_put_its_shims_on_path(tmp_path: Path) -> None:
    pyenv_root = tmp_path / "pyenv"
    pinned = next(v for v in run_tests.pinned_versions() if v.startswith("3.10"))
    (pyenv_root / "versions" / pinned).mkdir(parents=True)
    (pyenv_root / "bin").mkdir()
    path = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS if v != "3.10"})
    result = check_only(path, tmp_path, PYENV_ROOT=str(pyenv_root))
    assert result.returncode == 1
    assert f"pyenv has {pinned}, but python3.10 is not found" in result.stderr
    assert f"{pyenv_root}/shims" in result.stderr


def test_pyenv_version_overriding_the_checkout_is_named_as_the_cause(tmp_path: Path) -> None:
    pyenv_root = tmp_path / "pyenv"
    pinned = next(v for v in run_tests.pinned_versions() if v.startswith("3.10"))
    (pyenv_root / "versions" / pinned).mkdir(parents=True)
    (pyenv_root / "bin").mkdir()
    path = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS if v != "3.10"})
    result = check_only(path, tmp_path, PYENV_ROOT=str(pyenv_root), PYENV_VERSION="3.11.7")
    assert result.returncode == 1
    assert "PYENV_VERSION=3.11.7 overrides .python-version" in result.stderr
    assert "unset PYENV_VERSION" in result.stderr
    assert "first on PATH" not in result.stderr  # ./run-tests already put the shims there


def fake_programs(directory: Path, names: tuple[str, ...] = ("redis-server", "chromium",
                                                             "chromedriver")) -> str:
    """Executables of those names (the system programs the tests need) in
    ``directory``; returns it, to be put on PATH."""
    directory.mkdir(exist_ok=True)
    for name in names:
        exe = directory / name
        exe.write_text("#!/bin/sh\nexit 0\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(directory)


def test_the_whole_matrix_needs_redis_and_chromium_and_makes_their_tests_strict(
        tmp_path: Path) -> None:
    pythons = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS})
    result = check_only(f"{pythons}:{fake_programs(tmp_path / 'sys', ('chromium',))}", tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr
    assert "system program(s) missing: redis-server, chromedriver" in error
    assert "apt-get install -y --no-install-recommends redis-server chromium-driver" in error
    assert "REDIS_SERVER" in error and "interpreters found" not in result.stdout

    complete = check_only(f"{pythons}:{fake_programs(tmp_path / 'all')}", tmp_path)
    assert complete.returncode == 0, complete.stdout + complete.stderr
    assert "PYKKA_REGISTRY_STRICT=1" in complete.stdout


def test_a_partial_run_lets_the_tests_of_a_missing_program_skip_and_says_so(
        tmp_path: Path) -> None:
    pythons = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS})
    result = check_only(pythons, tmp_path, "-e", "py311-pykka4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the tests needing them will skip" in result.stdout
    assert "redis-server: needed by the Redis backend tests" in result.stdout
    assert "PYKKA_REGISTRY_STRICT" not in result.stdout


def test_a_strict_run_fails_a_test_that_would_skip_for_want_of_redis(tmp_path: Path) -> None:
    # The switch ./run-tests sets reaches the tests: without it the Redis
    # fixture skips, with it the same test fails.
    test = tmp_path / "test_needs_redis.py"
    test.write_text("import redis_server\n\n"
                    "def test_it():\n    redis_server.require_binary()\n")
    environ = {**os.environ, "REDIS_SERVER": str(tmp_path / "no-such-redis-server"),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "tests" / "redis")])}
    environ.pop("CI", None)
    environ.pop("PYKKA_REGISTRY_STRICT", None)

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-c", os.devnull, str(test)], capture_output=True, text=True,
                              env={**environ, **extra}, timeout=120, check=False, cwd=tmp_path)

    relaxed = run()
    assert relaxed.returncode == 0 and "1 skipped" in relaxed.stdout, relaxed.stdout
    strict = run(PYKKA_REGISTRY_STRICT="1")
    assert strict.returncode == 1 and "1 failed" in strict.stdout, strict.stdout
    assert "PYKKA_REGISTRY_STRICT is set" in strict.stdout


def test_a_partial_run_is_opt_in_and_says_what_it_skips(tmp_path: Path) -> None:
    path = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS if v != "3.9"})
    result = check_only(path, tmp_path, PYKKA_REGISTRY_PARTIAL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PARTIAL RUN" in result.stdout
    assert "skipping py39-pykka3, py39-pykka4" in result.stdout
    assert "interpreters found for py310-pykka3" in result.stdout
    assert "py39" not in result.stdout.split("interpreters found for", 1)[1]


def test_choosing_envs_with_e_says_what_it_leaves_out(tmp_path: Path) -> None:
    path = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS})
    result = check_only(path, tmp_path, "-e", "lint,py311-pykka4")
    assert result.returncode == 0, result.stderr
    assert "PARTIAL RUN (-e): not running py39-pykka3" in result.stdout
    assert "interpreters found for lint, py311-pykka4" in result.stdout
    unknown = check_only(path, tmp_path, "-e", "py38")
    assert unknown.returncode == 2 and "unknown environment(s) py38" in unknown.stderr


def test_e_with_a_missing_interpreter_is_still_an_error(tmp_path: Path) -> None:
    # The case: `-e py39-pykka4,lint` without python3.9 must not pass.
    path = fake_pythons(tmp_path / "bin", {v: v for v in PYTHONS if v != "3.9"})
    result = check_only(path, tmp_path, "-e", "py39-pykka4,lint")
    assert result.returncode == 1
    assert "needed by py39-pykka4" in result.stderr


def junit(root: Path, env: str, tests: int, failures: int = 0, skipped: int = 0) -> None:
    path = run_tests.junit_path(env, root)
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent(f"""\
        <?xml version="1.0" encoding="utf-8"?>
        <testsuites><testsuite name="pytest" errors="0" failures="{failures}"
          skipped="{skipped}" tests="{tests}"/></testsuites>
    """))


ENVS = [run_tests.Env("py311-pykka4", "python3.11", True),
        run_tests.Env("sdist", "python3.11", True),
        run_tests.Env("lint", "python3.11", False)]


def test_the_summary_counts_every_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit(tmp_path, "py311-pykka4", tests=10, skipped=1)
    junit(tmp_path, "sdist", tests=5)
    assert run_tests.summarise(ENVS, [], 0, root=tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert "  py311-pykka4   10 tests: 9 passed, 0 failed, 1 skipped" in out
    assert "  sdist          5 tests: 5 passed, 0 failed, 0 skipped" in out
    assert out[-1] == "14 passed, 0 failed, 1 skipped"


@pytest.mark.parametrize("case", ["failure", "no junit", "tox failed"])
def test_the_summary_fails_honestly(case: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    junit(tmp_path, "py311-pykka4", tests=10, failures=1 if case == "failure" else 0)
    if case != "no junit":
        junit(tmp_path, "sdist", tests=5)
    assert run_tests.summarise(ENVS, [], 1 if case == "tox failed" else 0, root=tmp_path) == 1
    out = capsys.readouterr().out
    if case == "no junit":
        assert "FAILURE: no junit.xml from: sdist" in out
    if case == "tox failed":
        assert "FAILURE: tox exited with 1" in out


def test_a_partial_summary_lists_what_did_not_run(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    junit(tmp_path, "py311-pykka4", tests=3)
    skipped = [(run_tests.Env("py39-pykka3", "python3.9", True), "partial run: python3.9 is missing")]
    assert run_tests.summarise(ENVS[:1], skipped, 0, root=tmp_path) == 0
    out = capsys.readouterr().out
    assert "NOT RUN (partial run: python3.9 is missing): py39-pykka3" in out
    assert "PARTIAL RUN: not run: py39-pykka3" in out


def test_readme_and_ci_run_the_same_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./run-tests" in readme
    assert "pip install tox" not in readme  # never into the system's interpreter
    assert "pyenv" in readme and ".python-version" in readme
    assert "exec ./run-tests" in ci
    assert "unset PYKKA_REGISTRY_PARTIAL" in ci
    for package in ("redis-server", "chromium", "chromium-driver"):
        assert package in ci
    runner = (ROOT / "run-tests").read_text()
    assert "-m venv" in runner and "tools/run_tests.py" in runner
    assert os.access(ROOT / "run-tests", os.X_OK)


def _requirements(lines: str) -> set[str]:
    return {line.split("#")[0].strip().replace(" ", "") for line in lines.splitlines()
            if line.split("#")[0].strip()}


def test_the_docs_extra_is_the_tox_docs_env() -> None:
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(ROOT / "setup.cfg")
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    extra = _requirements(setup.get("options.extras_require", "docs"))
    assert tox.get("testenv:docs", "extras").split() == ["docs", "test"]
    assert not _requirements(tox.get("testenv:docs", "deps", fallback=""))  # one list: the extra
    assert any(req.startswith("ruff") for req in extra)  # formats the API signatures
    assert any(req.startswith("mkdocs>=1.6,<2") for req in extra)
    mkdocs_yml = (ROOT / "mkdocs.yml").read_text()
    assert "NO_MKDOCS_2_WARNING" in mkdocs_yml or "NO_MKDOCS_2_WARNING" in (
        ROOT / "docs" / "index.md").read_text()
