"""Where secrun's own launch time goes: profiles of one `secrun -- /bin/true`, not comparisons.

The latency figures say how secrun compares; these say what to work on when it compares badly:
`python -X importtime` (import cost by module, since a launch is dominated by interpreter
start-up and imports), the wall-time phases of a launch from a light `strace -ttt` (start-up until
the fork, the child's setup until the workload's exec, the workload, teardown), secrun's own
per-stage timings (`-v`), the whole tree's system calls (`strace -c`) and the supervisor's
cProfile.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics

from harness import PY, SECRUN, WORK, run

IMPORT_RE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def importtime(profile: str, runs: int) -> dict:
    per: dict = {}
    tops: dict = {}
    totals = []
    for _ in range(runs):
        r = run([PY, "-X", "importtime", SECRUN, "--profile", profile, "--", "/bin/true"])
        total = 0
        for line in r.stderr.splitlines():
            m = IMPORT_RE.match(line)
            if not m:
                continue
            self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
            per.setdefault(name, []).append((self_us, cum_us))
            if indent == 0:
                tops.setdefault(name, []).append(cum_us)
                total += cum_us
        totals.append(total)
    med = {n: (statistics.median(s for s, _ in v), statistics.median(c for _, c in v), len(v))
           for n, v in per.items()}
    return {"modules": med, "top": {n: statistics.median(v) for n, v in tops.items()},
            "total_us": statistics.median(totals), "runs": runs}


STRACE_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+) (\w+)\((.*)")


def phases(profile: str, runs: int) -> dict | None:
    """Where a launch's wall time goes, from `strace -f -ttt` of execve/clone/exit_group only
    (with --seccomp-bpf, so the untraced calls run at full speed): start-up until the first
    fork, setup in the child until the workload's exec, the workload, and from the workload's
    exit until secrun's own exit."""
    if not shutil.which("strace"):
        return None
    out: dict = {"startup": [], "child_setup": [], "workload": [], "teardown": [], "total": []}
    trace = os.path.join(WORK, "phases.txt")
    for _ in range(runs):
        run(["strace", "-f", "--seccomp-bpf", "-ttt", "-e",
             "trace=execve,clone,clone3,fork,vfork,exit_group", "-o", trace,
             SECRUN, "--profile", profile, "--", "/bin/true"])
        ev = []
        with open(trace) as f:
            for line in f:
                m = STRACE_LINE.match(line)
                if m:
                    ev.append((int(m[1]), float(m[2]), m[3], m[4]))
        if not ev:
            continue
        main_pid, t_start = ev[0][0], ev[0][1]
        fork = next((t for p, t, c, _ in ev if p == main_pid and c in ("clone", "clone3")), None)
        wl = next(((p, t) for p, t, c, a in ev if c == "execve" and a.startswith('"/bin/true"')),
                  None)
        if fork is None or wl is None:
            continue
        wl_exit = next((t for p, t, c, _ in ev if p == wl[0] and c == "exit_group"), None)
        end = next((t for p, t, c, _ in reversed(ev) if p == main_pid and c == "exit_group"),
                   None)
        if wl_exit is None or end is None:
            continue
        out["startup"].append((fork - t_start) * 1e3)
        out["child_setup"].append((wl[1] - fork) * 1e3)
        out["workload"].append((wl_exit - wl[1]) * 1e3)
        out["teardown"].append((end - wl_exit) * 1e3)
        out["total"].append((end - t_start) * 1e3)
    if not out["total"]:
        return None
    return {k: statistics.median(v) for k, v in out.items()} | {"runs": len(out["total"])}


def stage_timings(profile: str) -> str:
    r = run([SECRUN, "-v", "--profile", profile, "--", "/bin/true"])
    return r.stderr.strip()


def strace_summary(profile: str) -> str | None:
    if not shutil.which("strace"):
        return None
    out = os.path.join(WORK, f"strace-{profile}.txt")
    run(["strace", "-f", "-c", "-o", out, SECRUN, "--profile", profile, "--", "/bin/true"])
    try:
        with open(out) as f:
            return f.read()
    except OSError:
        return None


def cprofile_top(profile: str, lines: int = 18) -> str:
    r = run([PY, "-m", "cProfile", "-s", "cumulative", SECRUN, "--profile", profile, "--",
             "/bin/true"])
    rows = r.stdout.splitlines()
    for i, line in enumerate(rows):
        if line.strip().startswith("ncalls"):
            return "\n".join(rows[i - 2:i + 1 + lines])
    return r.stdout[:3000]
