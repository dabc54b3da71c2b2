"""What every part of the benchmark harness shares: where things are, the run's notes, and how a
helper command is run.

The paths point at the venv's own interpreter and console script (never a pyenv shim), at
build/bench/ for everything the harness builds or writes on a quick run, and at docs/ for the
published figures.  A note is anything that makes this run's figures incomplete or less
comparable (a peer skipped, a launch that failed, a busy machine); notes are printed as they
happen and listed at the end of the report, so a figure never silently goes missing.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
PY = os.path.join(VENV, "bin", "python")
SECRUN = os.path.join(VENV, "bin", "secrun")
WORK = os.path.join(ROOT, "build", "bench")
DOCS = os.path.join(ROOT, "docs")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))

NAN = float("nan")  # the sample of a launch that failed

NOTES: list[str] = []


def note(msg: str) -> None:
    NOTES.append(msg)
    print(f"bench: note: {msg}", file=sys.stderr)


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, **kw)
