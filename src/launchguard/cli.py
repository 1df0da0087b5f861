"""The ``launchguard`` command.

launchguard demo           # the example portal with the guard on, driven by itself
launchguard demo --once    # drive it, print the report, stop
"""

from __future__ import annotations

import argparse
import importlib
import math
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._extras import MissingExtraError

__all__ = ["main"]

#: (path, how many times per traffic round) the demo drives.
DEMO_TRAFFIC: tuple[tuple[str, int], ...] = (
    ("/", 3),
    ("/dashboard", 3),
    ("/billing/1", 2),
    ("/billing/2", 2),
    ("/api/customers", 5),
    ("/api/customers/3", 3),
    ("/api/customers/4", 3),
    ("/api/invoices/n-plus-one", 2),
    ("/api/invoices/fixed", 2),
    ("/reports/uncached", 2),
    ("/slow?ms=1100", 1),
    ("/stream", 1),
    ("/boom", 1),
    ("/wp-login.php", 1),
    ("/.env", 1),
    ("/api/v2/articles/launch-day", 2),
    ("/admin/users/1", 1),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``launchguard`` console script."""
    parser = argparse.ArgumentParser(prog="launchguard", description="Make a web app launch ready.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the example portal with the guard on")
    demo.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    demo.add_argument("--rounds", type=int, default=3, help="traffic rounds to drive (default 3)")
    demo.add_argument("--once", action="store_true", help="stop after the report")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(port=args.port, rounds=args.rounds, once=args.once)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _load_portal() -> Any:
    """The FastAPI example portal's module (from a source checkout or the installed wheel)."""
    try:
        return importlib.import_module("launchguard._portal.app")
    except ImportError:
        pass
    root = Path(__file__).resolve().parents[2]
    if (root / "examples" / "fastapi_portal" / "app.py").is_file():
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return importlib.import_module("examples.fastapi_portal.app")
    raise SystemExit("launchguard demo: the example portal is not installed with this copy")


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise SystemExit("launchguard demo: no free port on 127.0.0.1")


def run_demo(*, port: int, rounds: int, once: bool) -> int:
    """Serve the portal on 127.0.0.1, drive traffic at it, report what the guard saw."""
    try:
        import httpx
        import uvicorn
    except ImportError as exc:
        raise MissingExtraError(exc.name or "uvicorn", "demo") from exc
    portal = _load_portal()
    port = _free_port(port)
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(portal.create_app(), host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            print("launchguard demo: the portal did not start", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"launchguard demo: the example portal runs at {url} with the guard on.")
    print(f"Driving {rounds} rounds of traffic (a slow route, an N+1 route, an uncached route,")
    print("a route that raises, scanner paths) ...")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(rounds):
                for path, times in DEMO_TRAFFIC:
                    for _ in range(times):
                        try:
                            # /boom raises on purpose; after an app error uvicorn drops the
                            # connection, so that request goes on a fresh one.
                            client.get(
                                path, headers={"Connection": "close"} if "boom" in path else None
                            )
                        except httpx.TransportError as exc:
                            print(f"  {path}: {exc!r}")
            scrape = client.get("/metrics").text
        print()
        print(report(scrape))
        print()
        print("Where to look:")
        print(f"  metrics     {url}/metrics  (Prometheus text; OpenMetrics on request)")
        print("  the portal  " + ", ".join(f"{url}{p}" for p in ("/dashboard", "/slow")))
        if once:
            return 0
        print("\nThe portal keeps running; press Ctrl-C to stop.")
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        print("\nStopping.")
    finally:
        server.should_exit = True
        thread.join(10)
    return 0


def report(exposition: str) -> str:
    """A per-route table (requests, errors, p95 estimate) from a scrape of the guard."""
    from prometheus_client.parser import text_string_to_metric_families

    routes: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "http_server_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            row = routes.setdefault(
                f"{labels['http_request_method']} {labels['http_route']}",
                {"count": 0.0, "errors": 0.0, "sum": 0.0, "buckets": {}},
            )
            if sample.name.endswith("_count"):
                row["count"] += sample.value
                if labels["http_response_status_code"].startswith("5"):
                    row["errors"] += sample.value
            elif sample.name.endswith("_sum"):
                row["sum"] += sample.value
            elif sample.name.endswith("_bucket"):
                le = float(labels["le"])
                row["buckets"][le] = row["buckets"].get(le, 0.0) + sample.value
    lines = [f"{'route':46} {'requests':>8} {'5xx':>5} {'p95 <=':>8}  note"]
    for name, row in sorted(routes.items(), key=lambda item: -item[1]["count"]):
        p95 = _quantile_bound(row["buckets"], 0.95)
        note = ""
        if "__unmatched__" in name:
            note = "unmatched paths share one label (no cardinality blow-up)"
        elif p95 > 1.0:
            note = "SLOW: p95 over 1 s"
        elif row["errors"]:
            note = "server errors"
        shown = "inf" if math.isinf(p95) else f"{p95 * 1000:.0f} ms"
        lines.append(f"{name[:46]:46} {row['count']:8.0f} {row['errors']:5.0f} {shown:>8}  {note}")
    return "\n".join(lines)


def _quantile_bound(buckets: dict[float, float], q: float) -> float:
    """The smallest bucket bound under which a fraction ``q`` of observations fall."""
    total = buckets.get(math.inf, 0.0)
    for bound in sorted(buckets):
        if total and buckets[bound] >= q * total:
            return bound
    return math.inf


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
