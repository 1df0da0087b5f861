"""End to end: real servers on 127.0.0.1 loaded by wrk; requests per second and server CPU.

    python benchmarks/bench_e2e.py            # 5 rounds of 5 s per variant and server
    python benchmarks/bench_e2e.py --quick    # 1 round of 1 s

Servers (one process or worker each, started once, warmed up with a discarded 1 s run):

- uvicorn ``--loop asyncio --http h11`` (pure Python), and uvicorn ``--loop uvloop --http
  httptools``: Starlette, variants bare / launchguard metrics only / launchguard (everything on,
  the access log written by ``launchguard.logging.configure()`` to /dev/null) /
  prometheus-fastapi-instrumentator;
- gunicorn, one sync worker: Flask, variants bare / launchguard metrics only / launchguard /
  prometheus-flask-exporter.

Each round runs ``wrk -t1 -cC -dDs`` against every variant of a server kind in a fresh random
order. The server's CPU time (user + system, its process and children, from
``/proc/<pid>/stat``) is read before and after each run: CPU per request is that difference over
the requests wrk completed, which is steadier than requests per second on a shared machine.
With two or more cores the server is pinned to CPU 0 and wrk to CPU 1 (``taskset``).
Needs ``wrk`` (``apt-get install wrk``); only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import _harness as h

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")

SERVERS = {
    "uvicorn-h11": (
        "uvicorn (asyncio, h11)",
        "asgi",
        ["bare", "metrics", "launchguard", "pfi"],
        lambda port: [
            str(BIN / "uvicorn"),
            "--factory",
            "--app-dir",
            str(ROOT / "benchmarks"),
            "e2e_apps:asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "asyncio",
            "--http",
            "h11",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    ),
    "uvicorn-httptools": (
        "uvicorn (uvloop, httptools)",
        "asgi",
        ["bare", "metrics", "launchguard", "pfi"],
        lambda port: [
            str(BIN / "uvicorn"),
            "--factory",
            "--app-dir",
            str(ROOT / "benchmarks"),
            "e2e_apps:asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    ),
    "gunicorn-sync": (
        "gunicorn (1 sync worker)",
        "wsgi",
        ["bare", "metrics", "launchguard", "pfe"],
        lambda port: [
            str(BIN / "gunicorn"),
            "--chdir",
            str(ROOT / "benchmarks"),
            "-w",
            "1",
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "e2e_apps:wsgi()",
        ],
    ),
}
NAMES = {
    "bare": "bare",
    "metrics": "launchguard (metrics only)",
    "launchguard": "launchguard full",
    "pfi": "prometheus-fastapi-instrumentator",
    "pfe": "prometheus-flask-exporter",
}


@dataclass
class Run:
    rps: float
    cpu_per_request: float
    p50: float
    p99: float
    errors: int


@dataclass
class Server:
    variant: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    runs: list[Run] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int, command: list[str]) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *command]
    return command


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants (seconds)."""
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        total += (int(rest[11]) + int(rest[12])) / TICK
        stack.extend(int(c) for c in children)
    return total


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/items/7", timeout=2) as r:
                if r.status == 200 and r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server on port {port} not ready: {log.read_text()[-2000:]}")


def _latency(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}\s+([0-9.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def wrk(port: int, seconds: float, connections: int) -> tuple[int, float, float, float, int]:
    """(requests, requests/s, p50, p99, errors) of one wrk run."""
    command = pinned(
        1,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            f"http://127.0.0.1:{port}/items/7",
        ],
    )
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        match = re.search(pattern, out)
        if match:
            errors += sum(int(n) for n in re.findall(r"\d+", match.group(1)))
    return requests, rps, _latency(out, "50%"), _latency(out, "99%"), errors


def start(kind: str, variants: list[str], command: object, logdir: Path) -> list[Server]:
    servers = []
    for variant in variants:
        port = free_port()
        log = logdir / f"{kind}-{variant}-{port}.log"
        env = {**os.environ, "LG_BENCH_VARIANT": variant, "PYTHONDONTWRITEBYTECODE": "1"}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                pinned(0, command(port)),  # type: ignore[operator]
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        servers.append(Server(variant, port, process, log))
    for server in servers:
        wait_ready(server.port, server.process, server.log)
    return servers


def stop(servers: list[Server]) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
    for server in servers:
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def report(title: str, servers: list[Server]) -> None:
    bare = next(s for s in servers if s.variant == "bare")
    print(f"\n### {title}\n")
    print(
        "| variant | req/s (median) | req/s min-max | x bare req/s | server CPU per request "
        "| CPU over bare | p50 latency | p99 latency |"
    )
    print("|---|---|---|---|---|---|---|---|")
    over: dict[str, list[float]] = {}
    for server in servers:
        rps = [r.rps for r in server.runs]
        cpu = [r.cpu_per_request for r in server.runs]
        delta = [c - b.cpu_per_request for c, b in zip(cpu, bare.runs, strict=True)]
        over[server.variant] = delta
        bare_rps = statistics.median(r.rps for r in bare.runs)
        errors = sum(r.errors for r in server.runs)
        note = f" ({errors} errors)" if errors else ""
        print(
            f"| {NAMES[server.variant]}{note} | {statistics.median(rps):,.0f} "
            f"| {min(rps):,.0f}-{max(rps):,.0f} | {statistics.median(rps) / bare_rps:.2f} "
            f"| {h.us(statistics.median(cpu))} "
            f"| {'-' if server is bare else '+' + h.us(statistics.median(delta))} "
            f"| {statistics.median(r.p50 for r in server.runs) * 1e3:.2f} ms "
            f"| {statistics.median(r.p99 for r in server.runs) * 1e3:.2f} ms |"
        )
    shares = []
    for server in servers:
        if server is not bare:
            per_round = [r.rps / b.rps for r, b in zip(server.runs, bare.runs, strict=True)]
            shares.append(f"{NAMES[server.variant]} {statistics.median(per_round):.2f}")
    print(f"\n- req/s over bare's in the same round (median): {', '.join(shares)}")
    peer = next((v for v in over if v in ("pfi", "pfe")), None)
    if peer and "launchguard" in over:
        ratios = [a / b for a, b in zip(over["launchguard"], over[peer], strict=True) if b > 0]
        if ratios:
            print(
                f"\n- launchguard full's CPU over bare / {NAMES[peer]}'s: "
                f"{statistics.median(over['launchguard']) / statistics.median(over[peer]):.2f}"
                f" (per round: {statistics.median(ratios):.2f}, "
                f"range {min(ratios):.2f}-{max(ratios):.2f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--only", default=",".join(SERVERS), help=f"comma-separated: {', '.join(SERVERS)}"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    rounds = args.rounds or (1 if args.quick else 5)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    print("## End to end (wrk on 127.0.0.1)\n")
    print(f"- machine: {h.machine()}; load average at start {h.load_average()}")
    print(
        f"- versions: {h.versions(['uvicorn', 'uvloop', 'httptools', 'h11', 'gunicorn'])}, "
        f"{subprocess.run(['wrk', '--version'], capture_output=True, text=True).stdout.split()[1]}"
    )
    print(
        f"- {rounds} rounds x {seconds:g} s per variant, `wrk -t1 -c{args.connections}`, "
        "variants in a random order per round; server pinned to CPU 0, wrk to CPU 1"
    )
    rng = random.Random(1)
    wanted = [name.strip() for name in args.only.split(",")]
    with tempfile.TemporaryDirectory(prefix="lg-bench-") as tmp:
        for name in wanted:
            title, kind, variants, command = SERVERS[name]
            servers = start(kind, variants, command, Path(tmp))
            try:
                for server in servers:
                    wrk(server.port, 1, args.connections)  # warm up
                for r in range(rounds):
                    order = list(servers)
                    rng.shuffle(order)
                    for server in order:
                        before = cpu_seconds(server.process.pid)
                        requests, rps, p50, p99, errors = wrk(
                            server.port, seconds, args.connections
                        )
                        cpu = cpu_seconds(server.process.pid) - before
                        server.runs.append(Run(rps, cpu / max(requests, 1), p50, p99, errors))
                    print(f"  {title}: round {r + 1}/{rounds}", file=sys.stderr)
            finally:
                stop(servers)
            report(title, servers)
    print(
        f"\n- load average at the end {h.load_average()}; CPU time resolution "
        f"{1 / TICK * 1e3:.0f} ms per read"
    )


if __name__ == "__main__":
    main()
