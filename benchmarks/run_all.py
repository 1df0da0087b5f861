"""Run every benchmark, one after the other, and print their Markdown.

    python benchmarks/run_all.py --quick              # smoke run of everything (a few minutes)
    python benchmarks/run_all.py                      # the full runs (an hour or more)
    python benchmarks/run_all.py --only middleware,e2e --output /tmp/results.md

Each script runs in its own process (so one's configuration cannot leak into another's) with
this Python; its stdout is the Markdown that goes into RESULTS.md. A script that fails is
reported and the others still run; the exit status is non-zero if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (script, what it measures)
SCRIPTS = {
    "middleware": ("bench_middleware.py", "in-process ASGI/WSGI overhead next to the peers"),
    "lower_bound": ("bench_lower_bound.py", "the full guard's jobs with no checks, in-process"),
    "features": ("bench_features.py", "what each job of the full guard costs, in-process"),
    "bytecodes": ("count_bytecodes.py", "bytecode instructions per request, by function"),
    "logging": ("bench_logging.py", "the access-log line"),
    "e2e": ("bench_e2e.py", "uvicorn and gunicorn under wrk"),
    "memory": ("bench_memory.py", "a million requests: RSS, tracemalloc, series"),
    "queries": ("bench_queries.py", "query ledger per statement"),
    "fingerprint": ("bench_fingerprint.py", "SQL shape cache"),
    "redact": ("bench_redact.py", "redactor per line"),
    "lint": ("bench_lint.py", "header lint per response"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", default=",".join(SCRIPTS), help=", ".join(SCRIPTS))
    parser.add_argument("--output", type=Path, help="also write the Markdown to this file")
    args = parser.parse_args()
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
    chunks: list[str] = []
    failed: list[str] = []
    for name in names:
        script, what = SCRIPTS[name]
        command = [sys.executable, str(HERE / script), *(["--quick"] if args.quick else [])]
        print(f"== {name}: {what}", file=sys.stderr, flush=True)
        began = time.monotonic()
        result = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
        elapsed = time.monotonic() - began
        print(f"   {name} took {elapsed:.0f} s (exit {result.returncode})", file=sys.stderr)
        chunk = result.stdout.rstrip() + "\n"
        if result.returncode != 0:
            failed.append(name)
            chunk += f"\n**{script} failed with exit status {result.returncode}.**\n"
        chunk = f"<!-- {script}{' --quick' if args.quick else ''}: {elapsed:.0f} s -->\n{chunk}"
        print(chunk, flush=True)
        chunks.append(chunk)
    if args.output:
        args.output.write_text("\n".join(chunks))
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
