"""The death watch's process-wide hooks: installed once, each calling the original."""

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


def test_zombie_repair_survives_an_excepthook_that_does_not_chain() -> None:
    # pytest (8.4+) sets such a hook when it configures itself, after a
    # conftest may have imported pykka_registry: the repair must not live in
    # threading.excepthook, or it is off in exactly those runs.
    result = run_python("""
        import threading
        import pykka
        import pykka_registry  # installs the death watch first

        seen = []
        threading.excepthook = lambda args: seen.append(args.exc_type.__name__)  # no chaining

        class Fatal(BaseException):
            pass

        gate = threading.Event()

        class Zombie(pykka.ThreadingActor):
            def on_start(self):
                gate.wait(5)
                raise Fatal()

        ref = Zombie.start()
        downs = []
        pykka_registry.monitor(ref, downs.append)
        pending = ref.ask("hello", block=False)  # waits in the inbox behind on_start
        gate.set()
        assert ref.actor_stopped.wait(5), "the zombie was not repaired"
        try:
            pending.get(timeout=5)
        except pykka.ActorDeadError:
            pass
        else:
            raise AssertionError("the pending ask was answered")
        for thread in threading.enumerate():
            if thread is not threading.main_thread():
                thread.join(5)
        assert [type(d.reason).__name__ for d in downs] == ["Fatal"], downs
        assert seen == ["Fatal"], seen  # the exception still reaches the hook
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
        before_loop = pykka.Actor.__dict__["_actor_loop"]
        import pykka_registry
        assert threading.excepthook is before_hook  # left alone
        assert pykka.Actor.__dict__["_actor_loop"] is not before_loop
        assert pykka.ActorRegistry.__dict__["unregister"] is not before_unregister
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
