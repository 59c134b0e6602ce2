"""Shared test set-up."""

import pytest

# Rich assertion messages inside the importable conformance suite.
pytest.register_assert_rewrite("pykka_registry.testing")
