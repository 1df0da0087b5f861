"""Say a thing once per interval per key, with bounded memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["Throttle"]


class Throttle:
    """``allow(key)`` is true at most once per ``interval`` seconds for each key.

    At most ``max_keys`` keys are remembered; past that the oldest are forgotten (so a key may
    be allowed again early, never more memory).
    """

    def __init__(
        self,
        interval: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._max = max_keys
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable, now: float | None = None) -> bool:
        """True if ``key`` was not allowed in the last ``interval`` seconds (``now``: the
        clock's reading, if the caller has it)."""
        if now is None:
            now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                return False
            self._last.pop(key, None)
            if len(self._last) >= self._max:
                for old in list(self._last)[: self._max // 2]:
                    del self._last[old]
            self._last[key] = now
            return True
