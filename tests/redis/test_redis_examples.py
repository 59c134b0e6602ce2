"""The programs in examples/ that need Redis (their file name contains
"redis") run to completion by themselves on a server of their own, as
``tests/docs/test_examples.py`` runs the others: exit status 0, no thread
left running. They find the server's URL in ``PYKKA_REGISTRY_REDIS_URL``."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_runs import EXAMPLES, needs_redis, run_example
from redis_server import RedisServer


@pytest.mark.parametrize("example", [e for e in EXAMPLES if needs_redis(e)],
                         ids=lambda path: path.name)
def test_example_runs_to_completion(example: Path, fresh_redis: RedisServer) -> None:
    result = run_example(example, fresh_redis.url)
    assert result.returncode == 0, (
        f"{example.name} exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
