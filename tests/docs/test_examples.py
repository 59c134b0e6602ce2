"""Every program in examples/ runs to completion by itself.

Each ``examples/*.py`` runs in a subprocess (``tests/example_runs.py``: the
whole environment passed through, ``CI`` included, a 60 s timeout) and must:

* exit with status 0;
* leave no thread running once its ``__main__`` code has finished (checked,
  after a 5 s grace period, by a small wrapper; daemon threads count too).

Examples whose file name contains "redis" need a Redis server: they run in
``tests/redis/test_redis_examples.py``, on a server of their own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from example_runs import EXAMPLES, needs_redis, run_example


def test_the_examples_are_there() -> None:
    names = {example.name for example in EXAMPLES}
    assert {"supervised_workers.py", "chat_rooms.py", "job_pool.py",
            "event_listeners.py"} <= names, names


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not needs_redis(e)],
                         ids=lambda path: path.name)
def test_example_runs_to_completion(example: Path) -> None:
    result = run_example(example)
    assert result.returncode == 0, (
        f"{example.name} exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
