"""The ``launchguard`` command, run as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


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
    assert "/readyz  -> 200" in done.stdout
    assert not [name for name in lines if "wp-login" in name or ".env" in name]
