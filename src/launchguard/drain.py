"""Draining on shutdown: readiness fails first, then the server stops accepting.

Orchestrators and load balancers keep sending traffic to an instance until its readiness probe
fails. On SIGTERM the guard marks every health endpoint of the process as draining at once,
then, after ``drain_delay`` seconds, hands the signal to the server's own handler (uvicorn,
gunicorn), which stops accepting and finishes in-flight requests.

The SIGTERM handler is installed from the main thread when the server is up: at ASGI lifespan
startup (uvicorn, which keeps listening until its own handler runs), or by calling
:func:`install` yourself. gunicorn's arbiter closes its sockets on SIGTERM before any worker
hears of it; there, drain with the orchestrator (a Kubernetes ``preStop`` sleep).
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .health import Health

__all__ = ["install", "register", "start_draining"]

_healths: weakref.WeakSet[Health] = weakref.WeakSet()
_delay = 0.0
_installed = False
_lock = threading.Lock()


def register(health: Health, delay: float) -> None:
    """Drain ``health`` on SIGTERM; the longest ``delay`` of any guard wins."""
    global _delay
    with _lock:
        _healths.add(health)
        _delay = max(_delay, delay)


def start_draining() -> None:
    """Make every registered readiness endpoint fail from now on."""
    for health in list(_healths):
        health.start_draining()


def install() -> bool:
    """Wrap the current SIGTERM handler (main thread only); False where that is impossible."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        if _installed:
            return True
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            start_draining()

            def hand_over() -> None:
                if callable(previous):
                    previous(signum, frame)
                elif previous == signal.SIG_DFL:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    os.kill(os.getpid(), signal.SIGTERM)

            if _delay > 0:
                timer = threading.Timer(_delay, hand_over)
                timer.daemon = True
                timer.start()
            else:
                hand_over()

        signal.signal(signal.SIGTERM, on_sigterm)
        _installed = True
        return True
