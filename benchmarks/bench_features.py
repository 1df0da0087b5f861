"""What each of the full guard's jobs costs per request, in place, next to the peer.

    python benchmarks/bench_features.py            # full run (about a minute)
    python benchmarks/bench_features.py --quick    # smoke run

Same harness, app and interleaved rounds as ``bench_middleware.py``. Each "without ..."
variant is the full guard with one option turned off, so its saving over "launchguard full" is
what that job costs where it runs (between the rest of a request's work, not in a loop of its
own). Two more variants measure the access line itself:

- "access line without its checks": the full guard whose access log writes the same fields by
  one f-string and one ``write`` + ``flush`` on the configured handler's stream, with none of
  what makes the real line safe (no check that the logging configuration still sends it where
  structlog would, no redaction or JSON escaping of odd values, no sampling or level rule). It
  is not a product: it shows how much of the access log's cost is the line itself and how
  much is those checks;
- "metrics only": request metrics alone (no other job).

Options are set through ``LaunchGuard(...)``, as a user would turn a job off.
"""

from __future__ import annotations

from collections.abc import Callable
from time import time_ns
from typing import Any

import _harness as h
import bench_middleware as bm

FULL = "launchguard full"
UNCHECKED = "launchguard full, access line without its checks"

#: variant -> the options that turn one job off.
WITHOUT = {
    "without the access log": {"access_log": False},
    "without header lint": {"header_lint": False},
    "without the budget watch": {"alerts": False},
    "without the query ledger": {"queries": False},
    "without request ids": {"request_ids": False},
}


def unchecked_guard() -> Any:
    """The full guard with its access line written the no-checks way (see the docstring)."""
    from launchguard import logging as lg_logging
    from launchguard.access import AccessLog
    from launchguard.logging import iso_second

    guard = bm.full_guard()
    direct = lg_logging.direct_output()
    assert direct is not None, "needs _harness.null_logging() first"
    handler: Any = direct._handler

    class UncheckedLine(AccessLog):
        def log(
            self,
            exchange: Any,
            route: str,
            status: int,
            error_type: str,
            seconds: float,
            ledger: Any,
        ) -> None:
            micros = time_ns() // 1000
            second = self._second
            if not second[0] <= micros < second[0] + 1_000_000:
                second = self._second = (
                    micros - micros % 1_000_000,
                    iso_second(micros // 1_000_000),
                )
            stream = handler.stream
            stream.write(
                f'{{"method": "{exchange.method}", "route": "{route}", "path": '
                f'"{exchange.path}", "status": {status}, "duration_ms": '
                f'{round(seconds * 1_000_000) / 1000}, "request_id": "{exchange.request_id}", '
                f'"db_queries": {ledger.count}, "db_ms": {round(ledger.seconds * 1e6) / 1000}, '
                f'"release": "bench-1", "event": "request", "logger": "launchguard.access", '
                f'"level": "info", "timestamp": "{second[1]}.{str(micros)[-6:]}Z"}}\n'
            )
            stream.flush()

    access_log = guard.timer.access_log
    access_log.__class__ = UncheckedLine  # the same object and state, the other line
    return guard


def variants(
    wrap: Callable[[Any], Any], bare: Callable[[], Any], peer: tuple[str, Any]
) -> dict[str, Any]:
    """bare, the full guard, the full guard without each job, the unchecked line, metrics
    only and the peer; ``wrap(guard)`` makes an app guarded by ``guard``."""
    result = {"bare": bare(), FULL: wrap(bm.full_guard())}
    for name, options in WITHOUT.items():
        result[name] = wrap(bm.full_guard(**options))
    result[UNCHECKED] = wrap(unchecked_guard())
    result["launchguard (metrics only)"] = wrap(bm.metrics_only_guard())
    result[peer[0]] = peer[1]
    return result


def asgi_variants() -> dict[str, Any]:
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator
    from starlette.middleware import Middleware

    from launchguard.asgi import LaunchGuardMiddleware

    pfi = bm.starlette_app()
    Instrumentator(registry=CollectorRegistry()).instrument(pfi)
    return variants(
        lambda guard: bm.starlette_app([Middleware(LaunchGuardMiddleware, guard=guard)]),
        bm.starlette_app,
        ("prometheus-fastapi-instrumentator", pfi),
    )


def wsgi_variants() -> dict[str, Any]:
    from prometheus_client import CollectorRegistry
    from prometheus_flask_exporter import PrometheusMetrics

    from launchguard.integrations.flask import init_app

    def wrap(guard: Any) -> Any:
        app = bm.flask_app()
        init_app(app, guard)
        return app

    pfe = bm.flask_app()
    PrometheusMetrics(pfe, registry=CollectorRegistry())
    return variants(wrap, bm.flask_app, ("prometheus-flask-exporter", pfe))


def main() -> None:
    run = h.in_process_run(
        __doc__,
        "What each job of the full guard costs, in-process",
        15,
        bm.PACKAGES,
        note="; 'x peer' is the overhead over the peer's",
    )
    for kind, make, timer, peer in (
        ("asgi", asgi_variants, bm.time_asgi, "prometheus-fastapi-instrumentator"),
        ("wsgi", wsgi_variants, bm.time_wsgi, "prometheus-flask-exporter"),
    ):
        if kind not in run.only:
            continue
        title = "ASGI (Starlette, one route)" if kind == "asgi" else "WSGI (Flask, one route)"
        result = h.interleave(make(), timer, run.rounds, run.requests, chunks=run.chunks)
        h.table(title, result, reference=peer)
        full = sorted(result[FULL])[len(result[FULL]) // 2]
        print()
        for name in [*WITHOUT, UNCHECKED]:
            saved = full - sorted(result[name])[len(result[name]) // 2]
            print(f"- {name}: saves {h.us(saved)} of the full guard's {h.us(full)}")
    print(f"\n- load average at the end {h.load_average()}")


if __name__ == "__main__":
    main()
