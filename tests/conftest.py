"""Shared fixtures: internal errors re-raised and fresh registries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from launchguard import _internal

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _reraise_internal_errors() -> Iterator[None]:
    """Internal errors are swallowed in production; the suite wants to see them."""
    _internal.RERAISE = True
    yield
    _internal.RERAISE = False


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()
