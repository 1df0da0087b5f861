"""A log stream that never makes a request wait: a background thread does the writing.

    import sys
    import launchguard.logging
    from launchguard.logstream import BackgroundStream

    launchguard.logging.configure(stream=BackgroundStream(sys.stderr))

Without it every log line, the access log's included, is written in the thread that logs it:
a stream that blocks (a stuck log collector, a full pipe) blocks that request, and under ASGI
the event loop with every request it serves. With it, ``write()`` puts the text in a bounded
queue and returns at once; one thread writes the queue to the real stream, in order. When the
stream blocks long enough for the queue to fill, new lines are dropped and counted
(:attr:`BackgroundStream.dropped`), never waited for; once lines get through again, a warning
on the ``launchguard`` logger says how many were lost (at most once per ``report_interval``).

At exit the queue is written out for up to ``exit_timeout`` seconds. A child process made with
``os.fork()`` (gunicorn ``--preload``) starts its own writer thread with an empty queue.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import weakref
from typing import IO

from ._throttle import Throttle

__all__ = ["BackgroundStream"]

_logger = logging.getLogger("launchguard")
_live: weakref.WeakSet[BackgroundStream] = weakref.WeakSet()
_hooks_lock = threading.Lock()
_hooks_installed = False


class BackgroundStream:
    """A text stream for logging handlers whose ``write()`` never blocks (see the module)."""

    def __init__(
        self,
        stream: IO[str],
        *,
        max_lines: int = 10_000,
        report_interval: float = 60.0,
        exit_timeout: float = 2.0,
    ) -> None:
        if max_lines < 1:
            raise ValueError(f"BackgroundStream max_lines must be at least 1, got {max_lines!r}")
        #: The stream the background thread writes to.
        self.stream = stream
        self.max_lines = max_lines
        self.exit_timeout = exit_timeout
        #: Lines lost so far: the queue was full, or the stream raised while writing them.
        self.dropped = 0
        self._report_interval = report_interval
        self._closed = False
        self._start()
        _live.add(self)
        _install_hooks()

    def _start(self) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue(self.max_lines)
        self._lock = threading.Lock()
        self._unreported = 0
        self._error: BaseException | None = None
        self._throttle = Throttle(self._report_interval)
        self._thread = threading.Thread(
            target=_run, args=(weakref.ref(self), self._queue), daemon=True
        )
        self._thread.name = "launchguard-log-writer"
        self._thread.start()
        # A stream nobody holds any more stops its thread (if its queue has room for the stop).
        weakref.finalize(self, _stop, self._queue).atexit = False

    def write(self, text: str) -> int:
        """Queue ``text`` for the writer thread; drop and count it if the queue is full."""
        if self._closed:
            if self._thread.is_alive():  # stuck on a blocked stream at exit
                self._drop()
            else:
                self.stream.write(text)
            return len(text)
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            self._drop()
        return len(text)

    def flush(self) -> None:
        """Nothing to do here: the writer thread flushes each time the queue runs empty."""

    def isatty(self) -> bool:
        """Whether the real stream is a terminal (``configure()`` picks text or JSON by it)."""
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty()) if isatty is not None else False
        except ValueError:  # a closed stream
            return False

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued line is written (or dropped); False if ``timeout`` passed."""
        done = self._queue.all_tasks_done
        with done:
            return done.wait_for(lambda: not self._queue.unfinished_tasks, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write out what is queued (waiting up to ``timeout``, default ``exit_timeout``) and
        stop the thread; later lines are written directly, unless the thread is still stuck."""
        if self._closed:
            return
        self._closed = True
        timeout = self.exit_timeout if timeout is None else timeout
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1
            self._unreported += 1

    def _caught_up(self) -> None:
        """The queue is written out: say how many lines were lost before, if it is time to."""
        if not self._unreported or not self._throttle.allow("dropped"):
            return
        with self._lock:
            lost, self._unreported = self._unreported, 0
        error = self._error
        self._error = None
        _logger.warning(
            "launchguard: log lines dropped: %d since the last report, %d in all; "
            "the log stream %s",
            lost,
            self.dropped,
            f"failed: {type(error).__name__}: {error}"
            if error is not None
            else f"was blocked and its queue of {self.max_lines} lines was full",
        )

    def _failed(self, error: BaseException) -> None:
        self._error = error
        self._drop()


def _run(ref: weakref.ReferenceType[BackgroundStream], lines: queue.Queue[str | None]) -> None:
    """The writer thread: writes ``lines`` to the stream, in order, until the sentinel."""
    while True:
        text = lines.get()
        try:
            owner = ref()
            if text is None or owner is None:
                return
            try:
                owner.stream.write(text)
                if lines.empty():
                    owner.stream.flush()
            except Exception as error:
                owner._failed(error)
            if lines.empty():
                try:
                    owner._caught_up()
                except Exception:  # noqa: S110 - a failing report must not end the thread
                    pass
            del owner
        finally:
            lines.task_done()


def _stop(lines: queue.Queue[str | None]) -> None:
    try:
        lines.put_nowait(None)
    except queue.Full:
        pass


def _install_hooks() -> None:
    """Once, at the first stream made: drain at exit, restart the writer in forked children."""
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(_close_all)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_restart_all)


def _close_all() -> None:
    for stream in list(_live):
        stream.close()


def _restart_all() -> None:
    # The parent's writer thread does not exist here and its queue's lock may be held: a new
    # queue (the parent's pending lines are the parent's to write) and a new thread.
    for stream in list(_live):
        if not stream._closed:
            stream._start()
