"""The death watch's process-wide hooks: installed once, chained, never replacing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pykka

from pykka_registry import _deathwatch


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_install_is_idempotent() -> None:
    unregister = pykka.ActorRegistry.__dict__["unregister"]
    stop_all = pykka.ActorRegistry.__dict__["stop_all"]
    _deathwatch.install()
    _deathwatch.install()
    assert pykka.ActorRegistry.__dict__["unregister"] is unregister
    assert pykka.ActorRegistry.__dict__["stop_all"] is stop_all


def test_excepthook_chains_to_the_hook_installed_before_it() -> None:
    result = run_python("""
        import threading
        seen = []
        threading.excepthook = lambda args: seen.append(args.exc_type.__name__)

        import pykka
        import pykka_registry  # installs its handler, chained to ours

        class Fatal(BaseException):
            pass

        class Zombie(pykka.ThreadingActor):
            def on_start(self):
                raise Fatal()

        ref = Zombie.start()
        assert ref.actor_stopped.wait(5), "the zombie was not repaired"
        for thread in threading.enumerate():
            if thread is not threading.main_thread():
                thread.join(5)

        def plain():
            raise ValueError("not an actor")

        thread = threading.Thread(target=plain)
        thread.start()
        thread.join(5)
        assert seen == ["Fatal", "ValueError"], seen
        assert pykka.ActorRegistry.get_all() == []
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_hooks_are_installed_on_import_in_a_fresh_process() -> None:
    result = run_python("""
        import threading, pykka
        before_hook = threading.excepthook
        before_unregister = pykka.ActorRegistry.__dict__["unregister"]
        import pykka_registry
        assert threading.excepthook is not before_hook
        assert pykka.ActorRegistry.__dict__["unregister"] is not before_unregister
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
