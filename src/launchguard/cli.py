"""The ``launchguard`` command.

launchguard demo           # the example portal with the guard on, driven by itself
launchguard demo --once    # drive it, print the report, stop
launchguard rules --job portal --output launchguard.rules.yml          # Prometheus rules
launchguard dashboard --job portal --output launchguard.dashboard.json  # Grafana dashboard

``rules`` and ``dashboard`` read the budgets from the same ``LAUNCHGUARD_*`` environment
variables as the running app.
"""

from __future__ import annotations

import argparse
import importlib
import math
import socket
import sys
import tempfile
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
    ("/promo", 2),
    ("/static/app.3f9a1c.css", 2),
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
    rules = commands.add_parser(
        "rules", help="print Prometheus recording and alerting rules for the guard's budgets"
    )
    _output_and_job(rules)
    rules.add_argument(
        "--availability-slo",
        type=float,
        default=0.999,
        metavar="RATIO",
        help="target share of requests without a 5xx (default 0.999)",
    )
    rules.add_argument(
        "--latency-slo",
        type=float,
        default=0.99,
        metavar="RATIO",
        help="target share of requests within their route's budget (default 0.99)",
    )
    rules.add_argument(
        "--latency-for",
        default="10m",
        metavar="DURATION",
        help="how long a route's p95 must stay over budget before it alerts (default 10m)",
    )
    rules.add_argument(
        "--runbook-url",
        default="",
        metavar="URL",
        help="a page such as docs/alerts.md on your git host, for runbook_url annotations",
    )
    dashboard = commands.add_parser("dashboard", help="print a Grafana dashboard (JSON)")
    _output_and_job(dashboard)
    dashboard.add_argument("--title", default=None, help="dashboard title")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(port=args.port, rounds=args.rounds, once=args.once)
    if args.command in ("rules", "dashboard"):
        return run_generate(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def _output_and_job(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    parser.add_argument(
        "--job",
        default=None,
        help="Prometheus job label of the scraped app (default: the service name)",
    )


def run_generate(args: argparse.Namespace) -> int:
    """``launchguard rules`` / ``launchguard dashboard``: generate, then print or write."""
    import json
    import os

    from ._config import Config, ConfigError

    try:
        config = Config.build({}, os.environ)
        if args.command == "rules":
            from .rules import budget_warnings, rules_yaml

            for warning in budget_warnings(config):
                print(f"launchguard rules: warning: {warning}", file=sys.stderr)
            text = rules_yaml(
                config,
                job=args.job,
                availability_slo=args.availability_slo,
                latency_slo=args.latency_slo,
                latency_for=args.latency_for,
                runbook_url=args.runbook_url,
            )
        else:
            from .dashboard import build_dashboard

            model = build_dashboard(config, job=args.job, title=args.title)
            text = json.dumps(model, indent=2) + "\n"
    except (ConfigError, ValueError) as exc:
        print(f"launchguard {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


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
    log_path = Path(tempfile.gettempdir()) / "launchguard-demo.log"
    log_file = log_path.open("w", encoding="utf-8")
    from . import logging as lg_logging

    lg_logging.configure(stream=log_file, json=True)
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
    print("a route that raises, a CDN-cached page that sets a cookie, scanner paths) ...")
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
            ready = client.get("/readyz")
        log_file.flush()
        print()
        print(report(scrape))
        print()
        print("What the log says (JSON lines, secrets masked), the warnings and errors:")
        for line in _notable(log_path):
            print("  " + line)
        print()
        print("Where to look:")
        print(f"  metrics     {url}/metrics  (Prometheus text; OpenMetrics on request)")
        print(f"  readiness   {url}/readyz  -> {ready.status_code} {ready.text}")
        print(f"  liveness    {url}/healthz")
        print(f"  the log     {log_path}  (one access-log line per request)")
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
        log_file.close()
    return 0


def _notable(log_path: Path, limit: int = 8) -> list[str]:
    """One short line per distinct warning or error in the demo's JSON log.

    Query findings, errors and slow requests come first; header-lint findings follow, one
    line per route listing its rules, so a page with five missing headers cannot push the
    N+1 finding off the list.
    """
    import json

    seen: dict[str, str] = {}
    lint: dict[str, list[str]] = {}
    for raw in log_path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if entry.get("level") not in ("warning", "error"):
            continue
        finding = entry.get("launchguard_finding")
        linted = entry.get("launchguard_lint")
        if isinstance(linted, dict):
            rules = lint.setdefault(str(linted.get("route")), [])
            rule = str(linted.get("rule"))
            rule += " (error)" if linted.get("severity") == "error" else ""
            if rule not in rules:
                rules.append(rule)
            continue
        if isinstance(finding, dict):
            key = f"{finding.get('kind')} {finding.get('route')}"
            sql = str(finding.get("sql"))
            sql = sql if len(sql) <= 60 else sql[:57] + "..."
            text = (
                f"{entry['level']}: {finding.get('kind')} on {finding.get('route')}: "
                f"{finding.get('count')} x {sql} at {finding.get('call_site')}"
            )
        elif entry.get("event") == "request":
            key = f"request {entry.get('route')} {entry.get('status')}"
            text = (
                f"{entry['level']}: {entry.get('method')} {entry.get('route')} -> "
                f"{entry.get('status')} in {entry.get('duration_ms')} ms "
                f"({entry.get('db_queries', 0)} queries)"
            )
        else:
            key = str(entry.get("event"))[:60]
            text = f"{entry['level']}: {str(entry.get('event'))[:100]}"
        seen.setdefault(key, text[:240])
    lines = list(seen.values())[:limit]
    worst_first = sorted(lint.items(), key=lambda item: not any("(error)" in r for r in item[1]))
    for route, rules in worst_first[: max(2, limit - len(lines))]:
        lines.append(f"header lint on {route}: {', '.join(rules)}"[:240])
    if len(lint) > max(2, limit - len(seen)):
        lines.append(f"header lint: {len(lint)} routes in all; guard.findings() reports them all")
    return lines


def report(exposition: str) -> str:
    """A per-route table (requests, errors, p95 estimate) from a scrape of the guard."""
    from prometheus_client.parser import text_string_to_metric_families

    routes: dict[str, dict[str, Any]] = {}
    queries: dict[str, list[float]] = {}
    findings: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name == "launchguard_db_queries_per_request":
            for sample in family.samples:
                stat = queries.setdefault(sample.labels["http_route"], [0.0, 0.0])
                if sample.name.endswith("_sum"):
                    stat[0] += sample.value
                elif sample.name.endswith("_count"):
                    stat[1] += sample.value
        elif family.name == "launchguard_query_findings":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.value:
                    route = sample.labels["http_route"]
                    findings.setdefault(route, set()).add(sample.labels["kind"])
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
    lines = [f"{'route':44} {'requests':>8} {'5xx':>4} {'p95 <=':>8} {'SQL/req':>7}  note"]
    for name, row in sorted(routes.items(), key=lambda item: -item[1]["count"]):
        route = name.split(" ", 1)[1]
        p95 = _quantile_bound(row["buckets"], 0.95)
        total, count = queries.get(route, [0.0, 0.0])
        per_request = f"{total / count:.0f}" if count else "-"
        notes = []
        if "__unmatched__" in name:
            notes.append("unmatched paths share one label (no cardinality blow-up)")
        if "n_plus_one" in findings.get(route, ()):
            notes.append("N+1 QUERIES")
        if p95 > 1.0:
            notes.append("SLOW: p95 over 1 s")
        if row["errors"]:
            notes.append("server errors")
        shown = "inf" if math.isinf(p95) else f"{p95 * 1000:.0f} ms"
        lines.append(
            f"{name[:44]:44} {row['count']:8.0f} {row['errors']:4.0f} {shown:>8} "
            f"{per_request:>7}  {', '.join(notes)}"
        )
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
