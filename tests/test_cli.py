"""The ``launchguard`` command, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
SHOW_STATIC = "import launchguard._portal.app as a; print(a.STATIC_DIR, *a.STATIC_FILES)"


@pytest.mark.slow
def test_demo_once_reports_what_the_guard_saw() -> None:
    """`launchguard demo --once` serves the portal, drives it, and points at each problem."""
    exe = shutil.which("launchguard", path=str(Path(sys.executable).parent))
    assert exe, "the console script is installed with the package"
    done = subprocess.run(
        [exe, "demo", "--once", "--rounds", "1", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("GET ")}
    assert "SLOW" in lines["/slow"]
    assert "server errors" in lines["/boom"]
    assert "/api/v2/articles/{slug}" in lines
    assert "/admin/users/{user_id}" in lines
    assert "__unmatched__" in lines
    assert "/metrics" in done.stdout
    assert "N+1 QUERIES" in lines["/api/invoices/n-plus-one"]
    assert "N+1" not in lines["/api/invoices/fixed"]
    assert "n_plus_one on /api/invoices/n-plus-one" in done.stdout
    assert "at examples/fastapi_portal/app.py:" in done.stdout
    # The cookie on a CDN-cacheable page is an error and is listed ahead of the warnings.
    assert "header lint on /promo: shared-cache-set-cookie (error)" in done.stdout
    assert "header lint on /static/{filename}" not in done.stdout
    assert "/readyz  -> 200" in done.stdout
    assert not [name for name in lines if "wp-login" in name or ".env" in name]


@pytest.mark.slow
def test_demo_runs_from_the_built_wheel(tmp_path: Path) -> None:
    """The wheel carries the demo portal and everything it reads: built here (hatchling, no
    network), unpacked, and run from outside the checkout, as after ``pip install launchguard``.
    """
    built = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--quiet", "--wheel-dir", str(tmp_path / "dist"), str(ROOT)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("launchguard-*.whl")
    site = tmp_path / "site"
    shutil.unpack_archive(wheel, site, format="zip")
    assert (site / "launchguard" / "_portal" / "static").is_dir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", SHOW_STATIC],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    static = site / "launchguard" / "_portal" / "static"
    assert where.stdout.split() == [str(static), "app.3f9a1c.css"], where
    demo = ("demo", "--once", "--rounds", "1", "--port", str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "launchguard.cli", *demo],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("GET ")}
    assert "/static/{filename}" in lines
    assert "N+1 QUERIES" in lines["/api/invoices/n-plus-one"]


def launchguard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script, with ``env`` as its only LAUNCHGUARD_* variables."""
    exe = shutil.which("launchguard", path=str(Path(sys.executable).parent))
    assert exe, "the console script is installed with the package"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LAUNCHGUARD_")}
    return subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **(env or {})},
    )


def test_rules_reads_the_budgets_the_app_reads(tmp_path: Path) -> None:
    """`launchguard rules` takes service and budgets from LAUNCHGUARD_* and writes the file."""
    out = tmp_path / "launchguard.rules.yml"
    done = launchguard(
        "rules",
        "--output",
        str(out),
        "--availability-slo",
        "0.995",
        env={"LAUNCHGUARD_SERVICE": "billing", "LAUNCHGUARD_API_BUDGET": "0.25"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    rules = yaml.safe_load(out.read_text())
    exprs = "\n".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    assert 'job="billing"' in exprs
    assert 'le="0.25"' in exprs
    assert "(14.4 * (1 - 0.995))" in exprs


def test_rules_to_standard_output_for_another_job() -> None:
    """Without --output the rules go to standard output; --job overrides the service name."""
    done = launchguard("rules", "--job", "portal-prod", "--latency-for", "15m")
    assert done.returncode == 0, done.stderr
    rules = yaml.safe_load(done.stdout)
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert all('job="portal-prod"' in a["expr"] for a in alerts)
    assert {a["for"] for a in alerts if a["alert"] == "LaunchguardRouteOverBudget"} == {"15m"}
    assert done.stdout.startswith("# Prometheus rules for job 'portal-prod'")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("rules",), {"LAUNCHGUARD_API_BUDGET": "-1"}, "api_budget=-1.0"),
        (("rules", "--availability-slo", "1.5"), {}, "availability_slo=1.5"),
        (("rules", "--latency-for", "10 minutes"), {}, "latency_for='10 minutes'"),
        (("dashboard",), {"LAUNCHGUARD_SERVICE": " "}, "service"),
    ],
)
def test_bad_settings_exit_2_naming_them(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    """A bad variable or option ends with status 2 and says which one."""
    done = launchguard(*args, env=env)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_dashboard_writes_grafana_json(tmp_path: Path) -> None:
    """`launchguard dashboard` writes the dashboard JSON for the service's job."""
    out = tmp_path / "dashboard.json"
    done = launchguard(
        "dashboard", "-o", str(out), "--title", "Billing", env={"LAUNCHGUARD_SERVICE": "billing"}
    )
    assert done.returncode == 0, done.stderr
    model = json.loads(out.read_text())
    assert model["title"] == "Billing"
    assert model["schemaVersion"] == 39
    job = next(v for v in model["templating"]["list"] if v["name"] == "job")
    assert job["current"]["value"] == "billing"
