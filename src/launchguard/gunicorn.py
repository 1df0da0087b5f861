"""A gunicorn configuration that makes ``/metrics`` show the sum of all workers.

Use it as the config file::

    gunicorn -c python:launchguard.gunicorn -w 4 portal.wsgi:application
    gunicorn -c python:launchguard.gunicorn -w 4 -k uvicorn.workers.UvicornWorker portal.asgi:app

or pull the hooks into your own ``gunicorn.conf.py``::

    from launchguard.gunicorn import child_exit, on_starting  # noqa: F401

Loading this module sets ``PROMETHEUS_MULTIPROC_DIR`` (to a fresh temporary directory unless it
is already set) *before* any worker imports ``prometheus_client``; that is what switches
prometheus-client to its multiprocess mode. ``on_starting`` empties the directory of a previous
run; ``child_exit`` retires a dead worker's live gauges. This module is a configuration file,
so unlike the rest of launchguard it acts when imported.

Draining: gunicorn's arbiter closes its listening sockets as soon as it gets SIGTERM, before
any worker hears of it, so readiness cannot fail first from inside a worker. Under gunicorn,
let the orchestrator drain (a Kubernetes ``preStop`` sleep; see ``docs/health.md``).
"""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Any

__all__ = ["child_exit", "multiprocess_dir", "on_starting"]


def multiprocess_dir() -> str:
    """The multiprocess directory, created (and exported to the workers) if unset."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="launchguard-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    return path


_DIR = multiprocess_dir()


def on_starting(server: Any) -> None:
    """gunicorn hook, in the arbiter before workers start: drop files of a previous run."""
    for stale in glob.glob(os.path.join(multiprocess_dir(), "*.db")):
        os.remove(stale)


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the arbiter when a worker exits: retire its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
