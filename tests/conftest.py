"""Shared fixtures: internal errors re-raised and fresh registries."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog
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


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """``launchguard.logging.configure()`` into a buffer (JSON); logging restored after."""
    import launchguard.logging as lg_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    lg_logging.configure(stream=buffer, json=True)
    yield buffer
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
