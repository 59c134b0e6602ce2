"""The core conformance suite (pykka_registry.testing) on RedisBackend.

Every test gets its own key prefix on the session's redis-server, so the
suite's "count() == 0" checks hold; the suite honours the backend's declared
key types (str, int, tuples of those) and JSON-only metadata.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from pykka_registry import Registry
from pykka_registry.backends.redis import RedisBackend
from pykka_registry.testing import RegistryConformance

_SALT = os.urandom(4).hex()


class TestRedisBackend(RegistryConformance):
    backend = RedisBackend

    def start_registry(self, request: Any) -> Registry:
        server = request.getfixturevalue("redis_server")
        digest = hashlib.sha1(f"{_SALT}{request.node.nodeid}".encode()).hexdigest()[:12]
        return Registry.start(backend=RedisBackend, backend_opts={
            "url": server.url, "prefix": f"conf-{digest}", "lease_ttl": 2.0,
            "secret": "conformance suite secret",
        })
