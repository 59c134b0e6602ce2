"""``pykka_registry.testing``: the helpers import without pytest; only the
conformance suite needs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# pytest blocked: any import of it raises ImportError, as where it is absent.
WITHOUT_PYTEST = """
import sys
sys.modules["pytest"] = None
import pykka_registry.testing as testing
from pykka_registry.testing import (ActorFactory, Echo, assert_no_names_of,
                                    holding_server, wait_until)
from pykka_registry import Registry

factory = ActorFactory()
ref = factory()
assert ref.ask("hi", timeout=5) == ("echo", "hi")
with Registry.start() as registry:
    registry.register("ns", "svc", ref)
    assert wait_until(lambda: registry.lookup("ns", "svc") is ref, timeout=5)
    with holding_server(registry):
        pass
    factory.stop_all()
    assert_no_names_of(registry, ref, ["ns"], ["svc"])
try:
    testing.RegistryConformance
except ImportError:
    print("suite needs pytest")
else:
    raise SystemExit("the conformance suite imported without pytest")
assert sys.modules["pytest"] is None
print("helpers ok")
"""


def test_the_helpers_import_and_work_without_pytest() -> None:
    env = dict(os.environ)
    # The package under test: the one this test run imports.
    import pykka_registry

    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(pykka_registry.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", WITHOUT_PYTEST], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["suite", "needs", "pytest", "helpers", "ok"]


def test_the_suite_is_importable_from_the_package_and_its_module() -> None:
    from pykka_registry import testing
    from pykka_registry.testing.conformance import RegistryConformance

    assert testing.RegistryConformance is RegistryConformance
    assert set(testing.__all__) <= set(dir(testing)) | {"RegistryConformance"}
