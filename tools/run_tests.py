"""The test command of the README (``./run-tests`` runs this with the Python of
``.tox-venv``, where tox is installed); ``.ci/run`` runs the same command.

What it does, in order:

1. **Interpreters.** Reads ``tox.ini``'s ``env_list`` and finds, on ``PATH``,
   the interpreter each environment needs (``py39-...`` needs ``python3.9``;
   ``lint``, ``docs`` and ``sdist`` name theirs with ``base_python``). It
   runs each one to be sure it is the version its name says (a pyenv shim
   whose version ``.python-version`` does not select exits with an error).
   A missing interpreter is an **error** that names it, the environments
   that need it, and how to get it (pyenv and ``.python-version``). Only a
   partial run, asked for explicitly, goes on without it, and then it says
   what it left out, at the start and again at the end.
2. **System programs.** ``redis-server`` and headless Chromium
   (``chromium``, ``chromedriver``; each may be named by an environment
   variable instead). In a whole-matrix run a missing one is an error
   naming it and its Debian package, and the run sets
   ``PYKKA_REGISTRY_STRICT=1`` so that a test lacking one fails instead of
   skipping. A partial run says which tests will skip.
3. **tox.** ``tox p -p 2 -e <envs>``: tox prints one line per environment as
   it finishes; this script adds a line every minute saying how many have
   finished and how long the run has taken, so a quiet stretch is not a hang.
4. **Counts.** Reads the junit file every test environment wrote
   (``.tox/<env>/tmp/junit.xml``; the ones of earlier runs are deleted
   first) and prints one line per environment, then the totals as
   ``N passed, N failed, N skipped``. ``lint`` runs no pytest: it counts
   through tox's exit status.

Exit status 0 only if tox passed, every test environment wrote a junit file
with at least one test, and nothing failed.

Partial runs (opt-in): ``-e ENV[,ENV...]`` runs only those environments (an
error if one's interpreter is missing); ``--partial`` or
``PYKKA_REGISTRY_PARTIAL=1`` runs every environment whose interpreter is
here. Arguments after ``--`` go to pytest (``./run-tests -e py311-pykka4 --
tests/core/test_habits.py -x``).

Standard library only: it also runs (``--check-only``) inside the test
environments, from tests/project/test_setup.py.
"""

from __future__ import annotations

import argparse
import configparser
import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple, Optional

ROOT = Path(__file__).resolve().parent.parent
PARTIAL_ENV = "PYKKA_REGISTRY_PARTIAL"
STRICT_ENV = "PYKKA_REGISTRY_STRICT"  # read by tests/strict_run.py
HEARTBEAT_S = 60.0


class Env(NamedTuple):
    name: str
    interpreter: str  # "python3.9"
    writes_junit: bool


# -- what tox.ini asks for -----------------------------------------------------------------


def _expand(item: str) -> list[str]:
    """tox's brace expansion: ``py{39,310}-pykka{3,4}`` -> four names."""
    parts = re.split(r"(\{[^}]*\})", item.strip())
    choices = [p[1:-1].split(",") if p.startswith("{") else [p] for p in parts if p]
    return ["".join(c.strip() for c in combo) for combo in itertools.product(*choices)]


def _interpreter(spec: str) -> str:
    spec = spec.strip()
    found = re.fullmatch(r"py(\d)(\d+)", spec)
    if found:
        return f"python{found.group(1)}.{found.group(2)}"
    return spec


def read_envs(tox_ini: Path) -> list[Env]:
    """The environments of ``env_list``, with the interpreter each needs and
    whether it runs pytest (and so writes a junit file)."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(tox_ini, encoding="utf-8")
    names = [
        name
        for line in config.get("tox", "env_list").splitlines()
        if line.strip() and not line.strip().startswith("#")
        for name in _expand(line)
    ]
    base_commands = config.get("testenv", "commands", fallback="")
    envs = []
    for name in names:
        section = f"testenv:{name}"
        own = config.has_section(section)
        base = config.get(section, "base_python", fallback="") if own else ""
        if not base:
            factor = next((f for f in name.split("-") if re.fullmatch(r"py\d\d+", f)), "")
            base = factor or "python3"
        commands = config.get(section, "commands", fallback=base_commands) if own else base_commands
        envs.append(Env(name, _interpreter(base.split()[0]), "junitxml" in commands))
    return envs


# -- which interpreters are here --------------------------------------------------------------


def interpreter_works(name: str, path: Optional[str] = None) -> bool:
    """``name`` (``python3.9``) is on PATH and runs as that version."""
    exe = shutil.which(name, path=path)
    if exe is None:
        return False
    wanted = name[len("python"):]
    try:
        result = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and (not wanted or result.stdout.strip() == wanted)


def pinned_versions(root: Path = ROOT) -> list[str]:
    """The versions ``.python-version`` names (pyenv reads it in this checkout)."""
    path = root / ".python-version"
    if not path.is_file():
        return []
    return [word for line in path.read_text().splitlines() for word in line.split()
            if not word.startswith("#")]


def how_to_get(interpreter: str, root: Path = ROOT, path: Optional[str] = None) -> str:
    """Words saying where ``interpreter`` comes from and how to get it."""
    minor = interpreter[len("python"):]
    pinned = [v for v in pinned_versions(root) if v == minor or v.startswith(minor + ".")]
    version = pinned[0] if pinned else f"{minor}.x"
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    has_pyenv = shutil.which("pyenv", path=path) is not None or (pyenv_root / "bin").is_dir()
    lines = []
    if has_pyenv and pinned and (pyenv_root / "versions" / version).is_dir():
        if os.environ.get("PYENV_VERSION"):
            # ./run-tests already puts the shims first: the override is the cause.
            lines.append(f"  pyenv has {version}, but PYENV_VERSION="
                         f"{os.environ['PYENV_VERSION']} overrides .python-version here,\n"
                         f"  so pyenv's shims do not offer {interpreter}: unset PYENV_VERSION.")
        else:
            lines.append(f"  pyenv has {version}, but {interpreter} is not found: put pyenv's "
                         f"shims\n  first on PATH (export PATH=\"{pyenv_root}/shims:$PATH\") "
                         "and run from the checkout,\n  whose .python-version selects it.")
    elif has_pyenv:
        lines.append(f"  Install it: pyenv install {version}   (`pyenv versions` lists what "
                     "pyenv has)")
    else:
        lines.append(f"  pyenv is not installed: install pyenv (its README, 'Installation'), "
                     f"then pyenv install {version}; or put any {interpreter} on PATH.")
    return "\n".join(lines)


def check(envs: list[Env], partial: bool, path: Optional[str] = None,
          root: Path = ROOT, chosen: bool = False) -> tuple[list[Env], list[Env], str]:
    """``(to_run, skipped, message)``. ``skipped`` is empty unless ``partial``;
    without ``partial``, a missing interpreter gives ``to_run == []`` and an
    error message (``chosen``: the environments were named with ``-e``, so
    the message does not suggest ``-e``)."""
    missing: dict[str, list[str]] = {}
    works: dict[str, bool] = {}
    for env in envs:
        if env.interpreter not in works:
            works[env.interpreter] = interpreter_works(env.interpreter, path)
        if not works[env.interpreter]:
            missing.setdefault(env.interpreter, []).append(env.name)
    if not missing:
        return envs, [], ""
    details = "\n".join(
        f"  {interpreter}: needed by {', '.join(names)}\n{how_to_get(interpreter, root, path)}"
        for interpreter, names in missing.items()
    ) + (f"\n  The interpreters come from pyenv: .python-version names "
         f"{' '.join(pinned_versions(root)) or '(nothing: the file is missing)'}.")
    skipped = [env for env in envs if not works[env.interpreter]]
    if partial:
        return ([env for env in envs if works[env.interpreter]], skipped,
                f"PARTIAL RUN ({PARTIAL_ENV}=1 or --partial): skipping "
                f"{', '.join(e.name for e in skipped)}; their interpreters are missing:\n"
                f"{details}")
    return [], [], (
        f"error: interpreter(s) missing: {', '.join(missing)}. tox would have to skip\n"
        f"  {', '.join(e.name for e in skipped)},\n  and a run that skips is not the whole "
        "matrix.\n"
        f"{details}\n"
        f"  To run only what is here and say what was left out: {PARTIAL_ENV}=1 ./run-tests"
        + ("" if chosen else "\n  (or ./run-tests -e ENV,ENV).")
    )


# -- which system programs are here -----------------------------------------------------------


class Program(NamedTuple):
    name: str          # what the tests run: "redis-server"
    variable: str      # the environment variable that may name its path instead
    package: str       # the Debian package that brings it
    needed_by: str     # which tests skip without it


PROGRAMS = (
    Program("redis-server", "REDIS_SERVER", "redis-server",
            "the Redis backend tests (tests/redis)"),
    Program("chromium", "PYKKA_REGISTRY_CHROMIUM", "chromium",
            "the browser tests (observer page, docs overflow check)"),
    Program("chromedriver", "PYKKA_REGISTRY_CHROMEDRIVER", "chromium-driver",
            "the browser tests (observer page, docs overflow check)"),
)


def missing_programs(path: Optional[str] = None) -> list[Program]:
    """The system programs some tests need that are neither named by their
    variable (an executable file) nor on ``PATH``."""
    missing = []
    for program in PROGRAMS:
        named = os.environ.get(program.variable)
        if named:
            if not (os.path.isfile(named) and os.access(named, os.X_OK)):
                missing.append(program)
        elif shutil.which(program.name, path=path) is None:
            missing.append(program)
    return missing


def programs_message(missing: list[Program], strict: bool) -> str:
    """An error (``strict``: a whole-matrix run, whose tests would skip) or a
    note (a partial run: those tests will skip) naming what is missing."""
    if not missing:
        return ""
    lines = "\n".join(f"  {p.name}: needed by {p.needed_by} (or set {p.variable} to its path)"
                      for p in missing)
    packages = " ".join(dict.fromkeys(p.package for p in missing))
    install = f"  Install: apt-get install -y --no-install-recommends {packages}"
    if strict:
        return (f"error: system program(s) missing: {', '.join(p.name for p in missing)}; the "
                "tests needing them would skip,\n  and a run that skips is not the whole "
                f"matrix.\n{lines}\n{install}\n  (.ci/run installs them; or "
                f"{PARTIAL_ENV}=1 ./run-tests lets those tests skip, and says so.)")
    return (f"PARTIAL RUN: system program(s) missing, the tests needing them will skip:\n"
            f"{lines}\n{install}")


# -- running tox, with a heartbeat --------------------------------------------------------------


_RESULT = re.compile(r"^\s*(?P<env>[\w.-]+): (?P<status>OK|FAIL|SKIP)\b")


def run_tox(tox: str, envs: list[Env], parallel: int, posargs: list[str]) -> int:
    command = [tox, "p", "-p", str(parallel), "-e", ",".join(e.name for e in envs)]
    if posargs:
        command += ["--", *posargs]
    print(f"[run-tests] {' '.join(command)}", flush=True)
    started = time.monotonic()
    finished: set[str] = set()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_S):
            elapsed = int(time.monotonic() - started)
            print(f"[run-tests] {elapsed // 60}m{elapsed % 60:02d}s: {len(finished)} of "
                  f"{len(envs)} environments finished", flush=True)

    beat = threading.Thread(target=heartbeat, name="run-tests-heartbeat", daemon=True)
    beat.start()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("WARNING: Location ") and "is ignored" in line:
                continue  # a local pip configuration's noise, repeated per package
            found = _RESULT.match(line)
            if found and found.group("env") in {e.name for e in envs}:
                finished.add(found.group("env"))
            sys.stdout.write(line)
            sys.stdout.flush()
        return process.wait()
    finally:
        done.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        elapsed = time.monotonic() - started
        print(f"[run-tests] tox exited with {process.returncode} after {elapsed:.0f}s",
              flush=True)


# -- counting -------------------------------------------------------------------------------------


def junit_path(env: str, root: Path = ROOT) -> Path:
    return root / ".tox" / env / "tmp" / "junit.xml"


def summarise(envs: list[Env], skipped: list[tuple[Env, str]], tox_rc: int,
              root: Path = ROOT) -> int:
    """Print one line per environment (``skipped``: those not run, and why)
    and the totals; return the exit status."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    missing = []
    print("tests per tox environment:")
    for env in envs:
        if not env.writes_junit:
            print(f"  {env.name:<14} (no pytest: passes or fails through tox's exit status)")
            continue
        path = junit_path(env.name, root)
        if not path.is_file():
            missing.append(env.name)
            print(f"  {env.name:<14} NO junit.xml (the environment did not run, or pytest "
                  "did not start)")
            continue
        xml_root = ET.parse(path).getroot()
        suites = [xml_root] if xml_root.tag == "testsuite" else list(xml_root.iter("testsuite"))
        counts = dict.fromkeys(totals, 0)
        for suite in suites:
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        for key in totals:
            totals[key] += counts[key]
        failed = counts["failures"] + counts["errors"]
        passed = counts["tests"] - failed - counts["skipped"]
        print(f"  {env.name:<14} {counts['tests']} tests: {passed} passed, {failed} failed, "
              f"{counts['skipped']} skipped")
    for why in dict.fromkeys(why for _, why in skipped):
        names = [env.name for env, reason in skipped if reason == why]
        print(f"  NOT RUN ({why}): {', '.join(names)}")
    problems = []
    if tox_rc != 0:
        problems.append(f"tox exited with {tox_rc}")
    if missing:
        problems.append("no junit.xml from: " + ", ".join(missing))
    if any(env.writes_junit for env in envs) and totals["tests"] == 0:
        problems.append("no tests ran")
    for problem in problems:
        print(f"FAILURE: {problem}")
    if skipped:
        print(f"PARTIAL RUN: not run: {', '.join(env.name for env, _ in skipped)}")
    failed = totals["failures"] + totals["errors"]
    passed = totals["tests"] - failed - totals["skipped"]
    print(f"{passed} passed, {failed} failed, {totals['skipped']} skipped")
    return 1 if problems or failed else 0


# -- the command line -----------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    posargs: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, posargs = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(prog="./run-tests", description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", dest="envs", metavar="ENV[,ENV...]",
                        help="run only these environments (a partial run)")
    parser.add_argument("--partial", action="store_true",
                        help=f"skip environments whose interpreter is missing, and say so "
                             f"(also {PARTIAL_ENV}=1)")
    parser.add_argument("-p", "--parallel", type=int, default=2,
                        help="environments run at once (default 2)")
    parser.add_argument("--check-only", action="store_true",
                        help="check the interpreters and exit")
    parser.add_argument("--tox", default=str(Path(sys.executable).with_name("tox")),
                        help="the tox executable (default: the one beside this Python)")
    args = parser.parse_args(argv)
    partial = args.partial or os.environ.get(PARTIAL_ENV, "") not in ("", "0")

    envs = read_envs(ROOT / "tox.ini")
    chosen = envs
    if args.envs:
        wanted = [name.strip() for name in args.envs.split(",") if name.strip()]
        known = {env.name: env for env in envs}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            print(f"error: unknown environment(s) {', '.join(unknown)}; tox.ini has "
                  f"{', '.join(known)}", file=sys.stderr)
            return 2
        chosen = [known[name] for name in wanted]
    to_run, missing, message = check(chosen, partial, chosen=bool(args.envs))
    skipped = [(env, f"partial run: {env.interpreter} is missing") for env in missing]
    if args.envs:
        left_out = [env for env in envs if env not in chosen]
        if left_out:
            print(f"PARTIAL RUN (-e): not running {', '.join(e.name for e in left_out)}")
        skipped += [(env, "partial run: not asked for with -e") for env in left_out]
    if message:
        print(message, file=sys.stderr if not to_run else sys.stdout, flush=True)
    if not to_run:
        return 1 if message else 0
    # A whole-matrix run must not pass by skipping: the tests that need a
    # missing system program fail instead (strict_run.py in the tests).
    strict = not (partial or args.envs)
    absent = missing_programs()
    if absent:
        print(programs_message(absent, strict), file=sys.stderr if strict else sys.stdout,
              flush=True)
        if strict:
            return 1
    if strict:
        os.environ[STRICT_ENV] = "1"
        print(f"[run-tests] whole matrix: a test lacking a system program fails, never skips "
              f"({STRICT_ENV}=1)", flush=True)
    print(f"[run-tests] interpreters found for {', '.join(e.name for e in to_run)}", flush=True)
    if args.check_only:
        return 0
    for env in to_run:
        junit_path(env.name).unlink(missing_ok=True)  # an old run's counts must not count
    tox_rc = run_tox(args.tox, to_run, args.parallel, posargs)
    status = summarise(to_run, skipped, tox_rc)
    if absent:
        print(f"PARTIAL RUN: the tests needing {', '.join(p.name for p in absent)} skipped "
              "(missing on this machine)")
    return status


if __name__ == "__main__":
    sys.exit(main())
