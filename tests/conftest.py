"""Shared test set-up (every folder's tests; see tests/README.md).

Guarantees
----------
* The importable conformance suite's assertions are rewritten by pytest
  (detailed messages), registered before any test module imports it.
"""

import pytest

# Rich assertion messages inside the importable conformance suite.
pytest.register_assert_rewrite("pykka_registry.testing")
