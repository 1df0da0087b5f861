"""``BackgroundStream``: writes never wait; full queues drop and count; order, exit and fork."""

from __future__ import annotations

import gc
import io
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from launchguard.logstream import BackgroundStream


class Gate(io.StringIO):
    """A stream whose writes block until the test opens the gate (a stuck log collector)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = threading.Event()
        self.entered = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.open.wait(30)
        return super().write(text)


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(32, "Broken pipe")


@pytest.fixture
def gate() -> Iterator[Gate]:
    stream = Gate()
    yield stream
    stream.open.set()


class TestBackgroundStream:
    def test_lines_written_in_order(self) -> None:
        """Every line reaches the real stream, in the order written."""
        out = io.StringIO()
        stream = BackgroundStream(out)
        for i in range(1000):
            stream.write(f"line {i}\n")
        assert stream.drain(10)
        assert out.getvalue().splitlines() == [f"line {i}" for i in range(1000)]
        assert stream.dropped == 0
        stream.close()

    def test_blocked_stream_never_blocks_the_writer(
        self, gate: Gate, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With the stream stuck, writes return at once; past the queue they are dropped and
        counted, and once the stream moves a warning says how many."""
        stream = BackgroundStream(gate, max_lines=10)
        stream.write("line 0\n")
        assert gate.entered.wait(10)  # the writer thread is stuck in the stream
        started = time.perf_counter()
        for i in range(1, 100):
            assert stream.write(f"line {i}\n") == len(f"line {i}\n")
        assert time.perf_counter() - started < 1.0
        # One line is in the writer's hands, ten wait in the queue, the rest are dropped.
        assert stream.dropped == 89
        with caplog.at_level(logging.WARNING, logger="launchguard"):
            gate.open.set()
            assert stream.drain(10)
        assert gate.getvalue().splitlines() == [f"line {i}" for i in range(11)]
        (record,) = [r for r in caplog.records if r.name == "launchguard"]
        assert record.getMessage() == (
            "launchguard: log lines dropped: 89 since the last report, 89 in all; the log stream "
            "was blocked and its queue of 10 lines was full"
        )
        stream.close()

    def test_failing_stream_counts_and_names_the_error(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A stream that raises loses those lines (counted); the warning names the error."""
        stream = BackgroundStream(Broken())
        with caplog.at_level(logging.WARNING, logger="launchguard"):
            stream.write("lost\n")
            assert stream.drain(10)
        assert stream.dropped == 1
        assert "the log stream failed: BrokenPipeError: [Errno 32] Broken pipe" in caplog.text
        stream.close()

    def test_close_writes_out_the_queue(self, gate: Gate) -> None:
        """close() writes what is queued; lines after it go straight to the stream."""
        stream = BackgroundStream(gate)
        stream.write("queued\n")
        gate.open.set()
        stream.close(timeout=10)
        stream.write("after close\n")
        assert gate.getvalue() == "queued\nafter close\n"

    def test_close_gives_up_on_a_stuck_stream(self, gate: Gate) -> None:
        """At exit a stuck stream costs at most the timeout; later lines are dropped."""
        stream = BackgroundStream(gate, max_lines=1)
        stream.write("stuck\n")
        assert gate.entered.wait(10)
        stream.write("queued\n")
        started = time.perf_counter()
        stream.close(timeout=0.2)
        assert time.perf_counter() - started < 2.0
        stream.write("dropped\n")
        assert stream.dropped == 1

    def test_isatty_is_the_real_streams(self) -> None:
        """configure() picks text or JSON by the real stream."""

        class Tty(io.StringIO):
            def isatty(self) -> bool:
                return True

        assert BackgroundStream(Tty()).isatty()
        assert not BackgroundStream(io.StringIO()).isatty()

    def test_bad_max_lines(self) -> None:
        """A queue of no lines fails at once, naming the option."""
        with pytest.raises(ValueError, match="max_lines must be at least 1, got 0"):
            BackgroundStream(io.StringIO(), max_lines=0)

    def test_unreferenced_stream_stops_its_thread(self) -> None:
        """A stream nobody holds stops its writer thread."""
        stream = BackgroundStream(io.StringIO())
        thread = stream._thread
        del stream
        gc.collect()
        thread.join(5)
        assert not thread.is_alive()

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
    def test_forked_child_writes(self, tmp_path: Path) -> None:
        """After fork (gunicorn --preload) the child has its own writer thread."""
        path = tmp_path / "log"
        with path.open("a") as out:
            stream = BackgroundStream(out)
            stream.write("parent\n")
            assert stream.drain(10)
            with warnings.catch_warnings():
                # Python 3.12+ warns about forking a process that has threads: the point here.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                stream.write("child\n")
                os._exit(0 if stream.drain(10) else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            stream.close()
        assert path.read_text().splitlines() == ["parent", "child"]
