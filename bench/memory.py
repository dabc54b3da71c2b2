"""What a launch costs in memory, measured three ways, none of them timed.

- tree peak: a fresh memory cgroup holds the launched process from before its exec (benchexec
  moves itself in), so everything the tool's whole tree charges, kernel objects included, counts;
- largest process: ru_maxrss of the reaped tree, taken by benchexec so that the harness's own
  Python is not the parent whose high-water mark a child would inherit;
- resident while running: VmRSS and PSS of the tool's own processes (the launched tree minus the
  workload) while the workload, `sleep 30`, runs: what a sandbox keeps alive for its lifetime,
  secrun's supervisor included.
"""

from __future__ import annotations

import os
import signal
import time

from harness import note
from measure import spawn
from peers import Tool


def memory_cgroup_parent() -> tuple[str, str] | None:
    """(directory of our own cgroup v1 memory group, peak file name), or a v2 equivalent."""
    with open("/proc/self/cgroup") as f:
        lines = f.read().splitlines()
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if "memory" in ctrls.split(","):
            base = "/sys/fs/cgroup/memory" + path
            if os.path.exists(os.path.join(base, "memory.max_usage_in_bytes")):
                return base, "memory.max_usage_in_bytes"
    for line in lines:
        if line.startswith("0::"):
            base = "/sys/fs/cgroup" + line[3:]
            if os.path.exists(os.path.join(base, "memory.peak")):
                return base, "memory.peak"
    return None


def _rm_cgroup(d: str) -> None:
    for sub in sorted((os.path.join(dp, x) for dp, dns, _ in os.walk(d) for x in dns),
                      key=len, reverse=True):
        try:
            os.rmdir(sub)
        except OSError:
            pass
    for _ in range(50):
        try:
            os.rmdir(d)
            return
        except OSError:
            time.sleep(0.02)
    note(f"could not remove cgroup {d}")


def tree_peak(tools: list[Tool], runs: int) -> tuple[dict, dict]:
    """Peak memory charged to a fresh memory cgroup holding the whole process tree, and the
    largest single process's ru_maxrss (both through benchexec, not timed)."""
    where = memory_cgroup_parent()
    if where is None:
        note("no memory cgroup with a peak counter: tree peak memory not measured")
    peak = {t.key: [] for t in tools}
    maxrss = {t.key: [] for t in tools}
    for r in range(runs):
        for t in tools:
            d = None
            if where:
                d = os.path.join(where[0], f"secrun-bench-{os.getpid()}-{t.key}-{r}")
                os.mkdir(d)
            try:
                rd, wr = os.pipe()
                pid = spawn(t, cgroup_procs=d and os.path.join(d, "cgroup.procs"),
                            maxrss_fd=wr)
                os.close(wr)
                data = b""
                while chunk := os.read(rd, 4096):
                    data += chunk
                os.close(rd)
                os.waitpid(pid, 0)
                if data.strip().isdigit():
                    maxrss[t.key].append(int(data) / 1024)
                if d:
                    with open(os.path.join(d, where[1])) as f:
                        peak[t.key].append(int(f.read()) / 2**20)
            finally:
                if d:
                    _rm_cgroup(d)
    return peak, maxrss


def _children_map() -> dict:
    kids: dict = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        kids.setdefault(ppid, []).append((int(p), comm))
    return kids


def _tree(root: int) -> list[tuple[int, str]]:
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c[0])
    return out


def _proc_kib(pid: int, name: str, field: str) -> int:
    """The kiB figure of `field` in /proc/<pid>/<name> (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    return _proc_kib(pid, "smaps_rollup", "Pss:")


def _vmrss_kib(pid: int) -> int:
    return _proc_kib(pid, "status", "VmRSS:")


def resident_while_running(tools: list[Tool]) -> dict:
    """VmRSS of each sandbox's own processes (everything in the launched tree but the workload)
    while the workload (`sleep 30`) runs; then the workload is killed."""
    out = {}
    for t in tools:
        if "sleep" not in t.workloads:
            continue
        pid = spawn(t, "sleep")
        work = None
        deadline = time.monotonic() + 10
        while work is None and time.monotonic() < deadline:
            time.sleep(0.02)
            if pid and _comm(pid) == "sleep":
                work = pid
                break
            for p, comm in _tree(pid):
                if comm == "sleep":
                    work = p
        if work is None:
            note(f"{t.label}: workload never started; resident memory not measured")
            os.kill(pid, signal.SIGKILL)
            os.wait4(pid, 0)
            continue
        time.sleep(0.3)
        procs = [(pid, _comm(pid))] + _tree(pid)
        rows = [(p, c, _vmrss_kib(p)) for p, c in procs if p != work]
        out[t.key] = {"processes": rows, "total_kib": sum(r[2] for r in rows),
                      "pss_kib": sum(_pss_kib(p) for p, _, _ in rows),
                      "launcher_kib": _vmrss_kib(pid) if pid != work else 0,
                      "workload_kib": _vmrss_kib(work)}
        os.kill(work, signal.SIGKILL)
        os.wait4(pid, 0)
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
