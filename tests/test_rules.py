"""Prometheus rules and the Grafana dashboard, checked with the real tools.

`promtool check rules` on the generated file, `promtool test rules` with the unit tests in
tests/promtool/ (every alert firing on a breach, silent when healthy and without traffic), and a
real Prometheus scraping the example portal under slow traffic, its alerts read back from the
HTTP API and every dashboard query evaluated by it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from launchguard._config import Config
from launchguard.dashboard import build_dashboard, panel_queries
from launchguard.rules import (
    SRE_WORKBOOK,
    BurnWindow,
    budget_warnings,
    build_rules,
    rules_yaml,
    to_yaml,
)

from .helpers import IN_CI, UvicornThread, free_port

PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.test.yml"))
SEVERITIES = {"page", "ticket"}
#: The routes with their own budgets in tests/promtool/custom.test.yml.
CUSTOM_BUDGETS = {"route_budgets": {"/export": 0.8, "/reports/*": 2.5}}


def require_tool(name: str) -> str:
    """The path of ``name``; skip (on a user's machine) or fail (in CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install --no-install-recommends prometheus)"
        if IN_CI:
            pytest.fail(message + "; CI must run this test")
        pytest.skip(message)
    return path


def portal_rules(**options: Any) -> str:
    return rules_yaml(Config.build({"service": "portal"}, {}), **options)


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
    )


def alerts_of(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


class TestGeneratedRules:
    def test_promtool_accepts_the_default_rules(self, tmp_path: Path) -> None:
        """`promtool check rules` passes on the rules for the default budgets."""
        path = tmp_path / "launchguard.rules.yml"
        path.write_text(portal_rules())
        done = promtool("check", "rules", path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS: 48 rules found" in done.stdout

    @pytest.mark.parametrize(
        ("options", "env"),
        [
            ({"job": 'we"ird\\job ü', "runbook_url": "https://git.example/docs/alerts.md"}, {}),
            ({"availability_slo": 0.995, "latency_slo": 0.9}, {"LAUNCHGUARD_API_BUDGET": "0.25"}),
            ({"latency_window": "90s", "min_requests": 0, "latency_for": "0s"}, {}),
            ({}, {"LAUNCHGUARD_UNMATCHED_ROUTE": "__overflow__"}),
            ({}, {"LAUNCHGUARD_BUCKETS": "0.1,1,10"}),
        ],
    )
    def test_promtool_accepts_every_variant(
        self, tmp_path: Path, options: dict[str, Any], env: dict[str, str]
    ) -> None:
        """Odd job names, other SLOs and budgets, zero `for`, buckets without the budgets."""
        path = tmp_path / "rules.yml"
        path.write_text(rules_yaml(Config.build({}, env), **options))
        done = promtool("check", "rules", path)
        assert done.returncode == 0, done.stdout + done.stderr

    def test_budget_bucket_appears_in_the_latency_rules(self) -> None:
        """The latency SLI reads the bucket at the budget, written as prometheus-client does."""
        text = rules_yaml(Config.build({"api_budget": 0.25, "page_budget": 1.0}, {}))
        assert 'le="0.25"' in text
        assert 'le="1.0"' in text
        assert 'le="0.3"' not in text

    def test_budgets_outside_the_buckets_are_reported(self) -> None:
        """With custom buckets lacking a budget, that class's SLO is left out, and said so."""
        config = Config.build({"buckets": (0.1, 0.5, 1.0)}, {})
        assert [w.split("=")[0] for w in budget_warnings(config)] == ["api_budget"]
        rules = build_rules(config)
        classes = {
            rule["labels"]["route_class"]
            for rule in alerts_of(rules)
            if rule["alert"] == "LaunchguardLatencyBurnRate"
        }
        assert classes == {"page"}
        assert "WARNING: api_budget=0.3 s" in rules_yaml(config)

    def test_every_alert_is_labelled_and_explained(self) -> None:
        """Severity page or ticket; a summary, a description and a runbook hint on each."""
        rules = build_rules(
            Config.build({"service": "portal"}, {}), runbook_url="https://x.example/alerts.md"
        )
        alerts = alerts_of(rules)
        assert {a["alert"] for a in alerts} == {
            "LaunchguardAvailabilityBurnRate",
            "LaunchguardLatencyBurnRate",
            "LaunchguardRouteOverBudget",
            "LaunchguardRouteSlow",
            "LaunchguardRouteBudgetBreached",
            "LaunchguardNPlusOneQueries",
            "LaunchguardHealthCheckFailing",
            "LaunchguardTargetDown",
            "LaunchguardTargetMissing",
            "LaunchguardInternalErrors",
        }
        for alert in alerts:
            assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
            notes = alert["annotations"]
            assert set(notes) == {"summary", "description", "runbook", "runbook_url"}
            assert notes["runbook_url"] == f"https://x.example/alerts.md#{alert['alert'].lower()}"
            if alert["alert"].startswith("LaunchguardRoute") or "NPlusOne" in alert["alert"]:
                assert "{{ $labels.http_route }}" in notes["summary"]
                assert "{{ $labels.http_route }}" in notes["description"]
                assert '!="__unmatched__"' in alert["expr"] or "findings" in alert["expr"]
                assert '!="__overflow__"' in alert["expr"] or "findings" in alert["expr"]
            if "BurnRate" in alert["alert"]:
                assert "Labels.http_route" in notes["description"]  # the worst routes

    def test_burn_windows_follow_the_sre_workbook(self) -> None:
        """14.4x over 1h and 5m, 6x over 6h and 30m page; 3x over 1d/2h, 1x over 3d/6h tickets."""
        rules = build_rules(Config.build({"service": "portal"}, {}))
        windows = {
            tuple(a["labels"][k] for k in ("burn_rate", "long_window", "short_window", "severity"))
            for a in alerts_of(rules)
            if a["alert"] == "LaunchguardAvailabilityBurnRate"
        }
        assert windows == {
            ("14.4", "1h", "5m", "page"),
            ("6", "6h", "30m", "page"),
            ("3", "1d", "2h", "ticket"),
            ("1", "3d", "6h", "ticket"),
        }
        recorded = {
            rule["record"].rsplit("rate", 1)[1]
            for rule in rules["groups"][0]["rules"]
            if rule["record"].startswith("launchguard:http_errors")
        }
        assert recorded == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"availability_slo": 1.0}, "availability_slo=1.0"),
            ({"latency_slo": 0}, "latency_slo=0"),
            ({"latency_window": "5 minutes"}, "latency_window='5 minutes'"),
            ({"latency_window": "0m"}, "latency_window='0m'"),
            ({"health_for": ""}, "health_for=''"),
            ({"job": ""}, "job=''"),
            ({"job": "a`b"}, "job='a`b'"),
            ({"min_requests": -1}, "min_requests=-1"),
            ({"burn_windows": ()}, "burn_windows"),
            ({"burn_windows": (BurnWindow("sms", 2, "1h", "5m", "0s"),)}, "severity"),
            ({"burn_windows": (BurnWindow("page", 0, "1h", "5m", "0s"),)}, "burn_rate"),
        ],
    )
    def test_bad_options_fail_with_the_option_named(
        self, options: dict[str, Any], message: str
    ) -> None:
        """Bad SLOs, durations and job names fail early, naming the option."""
        with pytest.raises(ValueError, match=re.escape(message)):
            build_rules(Config.build({}, {}), **options)

    def test_default_burn_windows_are_the_workbook(self) -> None:
        """The exported table is the one documented."""
        assert [(w.burn_rate, w.long, w.short) for w in SRE_WORKBOOK] == [
            (14.4, "1h", "5m"),
            (6.0, "6h", "30m"),
            (3.0, "1d", "2h"),
            (1.0, "3d", "6h"),
        ]


class TestPromtoolUnitTests:
    @pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
    def test_promtool_unit_tests_pass(self, tmp_path: Path, test_file: Path) -> None:
        """`promtool test rules` with the generated rules: each alert fires when it should."""
        require_tool("promtool")
        options = CUSTOM_BUDGETS if test_file.name == "custom.test.yml" else {}
        config = Config.build({"service": "portal", **options}, {})
        (tmp_path / "launchguard.rules.yml").write_text(rules_yaml(config))
        shutil.copy(test_file, tmp_path / test_file.name)
        done = promtool("test", "rules", test_file.name, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout

    def test_every_alert_is_tested_firing_and_silent(self) -> None:
        """Each alert of the file is expected to fire in some test case and stay silent in one."""
        firing: set[str] = set()
        silent: set[str] = set()
        for path in PROMTOOL_TESTS:
            suite = yaml.safe_load(path.read_text())
            assert suite["rule_files"] == ["launchguard.rules.yml"]
            for case in suite["tests"]:
                for check in case.get("alert_rule_test", ()):
                    (firing if check.get("exp_alerts") else silent).add(check["alertname"])
        names = {a["alert"] for a in alerts_of(build_rules(Config.build({}, {})))}
        assert names <= firing
        assert names <= silent


class TestYaml:
    def test_promql_reads_as_a_literal_block(self) -> None:
        """Multi-line strings become `|-` blocks; simple ones stay plain."""
        text = to_yaml({"rules": [{"record": "a:b:rate5m", "expr": "sum(\n  x\n)"}]})
        assert (
            text == "rules:\n  - record: a:b:rate5m\n    expr: |-\n      sum(\n        x\n      )\n"
        )

    @pytest.mark.parametrize(
        "value",
        ["", "yes", "No", "null", "on", "12", "1.5", "a: b", "a:", "#x", " lead", "tab\there",
         "x\n", "\n", " a\nb", "a \nb", "\x85", "\u2028", "\ufeff", "é😀", "\x00\x07\x7f", "'\""],
    )  # fmt: skip
    def test_awkward_strings_survive(self, value: str) -> None:
        """Strings YAML would misread as other types, or could not hold unescaped."""
        assert yaml.safe_load(to_yaml({"k": value, "l": [value], value: 1})) == {
            "k": value,
            "l": [value],
            value: 1,
        }

    @settings(max_examples=300, deadline=None)
    @given(
        st.dictionaries(
            st.text(),
            st.recursive(
                st.one_of(
                    st.text(),
                    st.booleans(),
                    st.none(),
                    st.integers(),
                    st.floats(allow_nan=False),
                ),
                lambda inner: st.one_of(
                    st.lists(inner, max_size=3), st.dictionaries(st.text(), inner, max_size=3)
                ),
                max_leaves=12,
            ),
            max_size=4,
        )
    )
    def test_round_trip_through_a_yaml_parser(self, data: dict[str, Any]) -> None:
        """Whatever the data, PyYAML reads back exactly what was written."""
        assert yaml.safe_load(to_yaml(data)) == (data or None)


class TestDashboard:
    def test_shape(self) -> None:
        """Schema 39, a Prometheus datasource variable, job and route variables, the panels."""
        model = build_dashboard(Config.build({"service": "portal"}, {}))
        assert model["schemaVersion"] == 39
        assert model["uid"] == "launchguard-portal"
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["job"]["current"]["value"] == "portal"
        assert variables["route"]["multi"]
        assert variables["route"]["allValue"] == ".*"
        titles = [panel["title"] for panel in model["panels"]]
        assert titles == [
            "p95 latency per route against its budget",
            "Requests per second by route",
            "5xx ratio by route",
            "Database queries per request (p95 and mean)",
            "Database time per request (p95)",
            "Query findings by kind",
            "Header-lint findings by rule",
            "Health checks",
            "Running build",
            "In-flight requests",
            "launchguard internal errors",
        ]
        assert [panel["id"] for panel in model["panels"]] == list(range(1, len(titles) + 1))
        thresholds = model["panels"][0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["value"] for step in thresholds] == [None, 0.3, 0.5, 1.0]
        json.dumps(model)  # plain JSON data

    def test_every_panel_uses_the_datasource_variable(self) -> None:
        """Every panel and query points at `${datasource}`; every query filters on the job."""
        model = build_dashboard(Config.build({}, {}), job="portal")
        for panel in model["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert 'job="$job"' in target["expr"]

    def test_panels_do_not_overlap(self) -> None:
        """The grid is 24 wide; no two panels share a cell."""
        cells: set[tuple[int, int]] = set()
        for panel in build_dashboard(Config.build({}, {}))["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24
            mine = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & mine, panel["title"]
            cells |= mine

    def test_every_query_parses(self, tmp_path: Path) -> None:
        """Each panel query (variables filled in) is valid PromQL for promtool."""
        model = build_dashboard(Config.build({}, {}), job="portal")
        rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [
                        {"record": f"dashboard:query{n}", "expr": grafana_to_promql(expr, "portal")}
                        for n, (_, expr) in enumerate(panel_queries(model))
                    ],
                }
            ]
        }
        path = tmp_path / "queries.yml"
        path.write_text(to_yaml(rules))
        done = promtool("check", "rules", path)
        assert done.returncode == 0, done.stdout + done.stderr


def grafana_to_promql(expr: str, job: str, rate: str = "1m") -> str:
    """A panel query as Grafana sends it: variables replaced, all routes selected."""
    for name, value in (
        ("$__rate_interval", rate),
        ("$__range", rate),
        ("$job", job),
        ("$route", ".*"),
    ):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


# --- a real Prometheus ---------------------------------------------------------------------------

E2E_JOB = "portal-e2e"
#: Budgets the guard will export as launchguard_route_budget_seconds; served by a stand-in
#: exporter while the app does not export the gauge itself.
E2E_BUDGETS = {"/slow": ("api", 0.3), "/api/customers": ("api", 0.3), "/dashboard": ("page", 0.5)}


class Prometheus:
    """A real Prometheus server on 127.0.0.1, its data in a temporary directory."""

    def __init__(self, tmp_path: Path, targets: list[str], rules: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp_path / "rules.yml").write_text(rules)
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(tmp_path / "rules.yml")],
            "scrape_configs": [{"job_name": E2E_JOB, "static_configs": [{"targets": targets}]}],
        }
        (tmp_path / "prometheus.yml").write_text(to_yaml(config))
        self.args = [
            require_tool("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.log_path = tmp_path / "prometheus.log"

    def __enter__(self) -> Prometheus:
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready: {self.log_path.read_text()}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.log.close()

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]


class Traffic:
    """Threads sending requests to the portal until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def loop(self, paths: list[str], pause: float) -> None:
        def run() -> None:
            with httpx.Client(base_url=self.url, timeout=10) as client:
                while not self.stop.is_set():
                    for path in paths:
                        # /boom raises; uvicorn then drops the connection, so use a fresh one.
                        headers = {"Connection": "close"} if path == "/boom" else None
                        try:
                            client.get(path, headers=headers)
                        except httpx.TransportError:
                            pass
                        if self.stop.wait(pause):
                            return

        self.threads.append(threading.Thread(target=run, daemon=True))
        self.threads[-1].start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


@pytest.fixture
def budget_exporter(portal_url: str) -> Iterator[list[str]]:
    """Extra scrape targets: a stand-in for the route-budget gauge if the app lacks it."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    httpx.get(portal_url + "/slow?ms=0")
    if "launchguard_route_budget_seconds{" in httpx.get(portal_url + "/metrics").text:
        yield []
        return
    registry = CollectorRegistry()
    gauge = Gauge(
        "launchguard_route_budget_seconds",
        "p95 budget of a route.",
        ("http_route", "route_class"),
        registry=registry,
    )
    for route, (route_class, seconds) in E2E_BUDGETS.items():
        gauge.labels(route, route_class).set(seconds)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield [f"127.0.0.1:{port}"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def portal_url(tmp_path: Path) -> Iterator[str]:
    from examples.fastapi_portal.app import create_app

    with UvicornThread(create_app(f"sqlite:///{tmp_path / 'portal.db'}")) as server:
        yield server.url


def firing(prometheus: Prometheus) -> set[tuple[str, str]]:
    """(alertname, http_route or severity) of every firing alert."""
    return {
        (a["labels"]["alertname"], a["labels"].get("http_route", a["labels"]["severity"]))
        for a in prometheus.api("alerts")["alerts"]
        if a["state"] == "firing"
    }


@pytest.mark.slow
def test_prometheus_fires_the_alerts_and_answers_every_panel(
    tmp_path: Path, portal_url: str, budget_exporter: list[str]
) -> None:
    """Prometheus scrapes the portal, slow traffic fires the latency alerts, panels answer."""
    config = Config.build({"service": "portal-fastapi"}, {})
    rules = rules_yaml(
        config,
        job=E2E_JOB,
        latency_window="10s",
        latency_for="2s",
        min_requests=3,
        findings_window="30s",
        burn_windows=(BurnWindow("page", 14.4, "30s", "10s", "2s"),),
    )
    target = portal_url.removeprefix("http://")
    expected = {
        ("LaunchguardRouteSlow", "/slow"),
        ("LaunchguardRouteOverBudget", "/slow"),
        ("LaunchguardNPlusOneQueries", "/api/invoices/n-plus-one"),
        ("LaunchguardAvailabilityBurnRate", "page"),
    }
    traffic = Traffic(portal_url)
    with Prometheus(tmp_path, [target, *budget_exporter], rules) as prometheus:
        try:
            for _ in range(4):
                traffic.loop(["/slow?ms=1100"], pause=0.05)
            traffic.loop(
                ["/api/customers", "/dashboard", "/api/invoices/n-plus-one", "/boom"], pause=0.1
            )
            deadline = time.monotonic() + 50
            seen = firing(prometheus)
            while not expected <= seen:
                assert time.monotonic() < deadline, (
                    f"alerts firing: {sorted(seen)}; expected {sorted(expected)}"
                )
                time.sleep(0.5)
                seen = firing(prometheus)
        finally:
            traffic.close()
        # The fast routes stayed under their budgets.
        assert not {route for name, route in seen if name.startswith("LaunchguardRoute")} - {
            "/slow"
        }

        # Every rule evaluates without an error (no many-to-many joins, no parse errors).
        for group in prometheus.api("rules")["groups"]:
            for rule in group["rules"]:
                assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))

        # Every panel query runs; where its metrics exist, it returns series.
        names = set(prometheus.api("label/__name__/values"))
        must_exist = {
            "http_server_request_duration_seconds_bucket",
            "launchguard_route_budget_seconds",
            "launchguard_db_queries_per_request_bucket",
            "launchguard_db_time_per_request_seconds_bucket",
            "launchguard_query_findings_total",
            "launchguard_build_info",
            "http_server_active_requests",
        }
        assert must_exist <= names
        model = build_dashboard(config, job=E2E_JOB)
        answered = 0
        for title, expr in panel_queries(model):
            query = grafana_to_promql(expr, E2E_JOB, rate="15s")
            result = prometheus.api("query", query=query)["result"]
            metrics = set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\{", query))
            if metrics <= names:
                assert result, f"{title}: no series for {query}"
                answered += 1
        assert answered >= 9
        ratio = prometheus.api(
            "query", query=f'launchguard:http_errors:ratio_rate30s{{job="{E2E_JOB}"}}'
        )
        assert 0 < float(ratio["result"][0]["value"][1]) < 1
