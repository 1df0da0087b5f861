"""Internal failures of the guard: counted, logged once per component per interval, never raised.

The test suite flips :data:`RERAISE` (see ``tests/conftest.py``) so that bugs are not hidden.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

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
        self._interval = interval
        self._last_logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, component: str, exc: BaseException) -> None:
        """Count and maybe log ``exc``; re-raise it only under :data:`RERAISE`."""
        try:
            self._counter.inc(component)
            now = time.monotonic()
            with self._lock:
                last = self._last_logged.get(component)
                due = last is None or now - last >= self._interval
                if due:
                    self._last_logged[component] = now
            if due:
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
