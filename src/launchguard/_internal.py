"""Internal failures of the guard: counted, logged once per component per interval, never raised.

The test suite flips :data:`RERAISE` (see ``tests/conftest.py``) so that bugs are not hidden.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ._throttle import Throttle

__all__ = ["RERAISE", "InternalErrors"]

#: Re-raise internal errors instead of swallowing them. Tests only.
RERAISE = False

logger = logging.getLogger("launchguard")


class _Counter(Protocol):
    def inc(self, component: str) -> None: ...


class InternalErrors:
    """Counts a failing component, logs it at most once per ``interval`` seconds."""

    def __init__(self, counter: _Counter, *, interval: float = 60.0) -> None:
        self._counter = counter
        self._throttle = Throttle(interval)

    def record(self, component: str, exc: BaseException) -> None:
        """Count and maybe log ``exc``; re-raise it only under :data:`RERAISE`."""
        try:
            self._counter.inc(component)
            if self._throttle.allow(component):
                logger.warning(
                    "launchguard internal error in %s (the request was not affected): %s: %s",
                    component,
                    type(exc).__qualname__,
                    exc,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
        except Exception:  # noqa: S110 - the last line of defence must not raise either
            pass
        if RERAISE:
            raise exc
