"""The loss registry is global: a test that registers a loss takes it out again, and every test here is
checked to leave the registry as it found it (a leaked name would show up in other tests' listings)."""

import pytest

from metricbench.losses import registry


@pytest.fixture
def scratch_registry():
    """Registrations made during the test are undone after it (only tests need to unregister)."""
    saved = dict(registry._LOSSES)
    yield
    registry._LOSSES.clear()
    registry._LOSSES.update(saved)


@pytest.fixture(autouse=True)
def _registry_unchanged():
    before = dict(registry._LOSSES)
    yield
    assert registry._LOSSES == before, "the test left the loss registry changed; use the scratch_registry fixture"
