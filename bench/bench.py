#!/usr/bin/env python3
"""secrun's benchmark harness: secrun against the sandboxes its users would otherwise pick.

    make bench                        full run (~2-4 min), writes docs/benchmarks.md + .png
    .venv/bin/python bench/bench.py --quick     few rounds, writes build/bench/benchmarks.md

Every figure that is compared is measured in the same run, interleaved: round r launches every
tool once, in an order rotated by r, so drift of the machine (frequency, noisy neighbours) hits
all tools alike.  Ratios are medians of the per-round ratios.  See docs/benchmarks.md, section
"Method", for what each figure means and how it is taken.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
PY = os.path.join(VENV, "bin", "python")
SECRUN = os.path.join(VENV, "bin", "secrun")
WORK = os.path.join(ROOT, "build", "bench")
DOCS = os.path.join(ROOT, "docs")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))

# Debian package of each peer tool, installed by the harness when run as root.
PEER_PACKAGES = {"hyperfine": "hyperfine", "bwrap": "bubblewrap", "firejail": "firejail",
                 "runc": "runc", "crun": "crun", "busybox": "busybox-static", "gcc": "gcc",
                 "strace": "strace"}

# The seccomp deny-list given to bubblewrap, runc and crun: the calls every default container or
# sandbox profile refuses (kernel modules, kexec, mount, ptrace, keyrings, bpf, perf, clock and
# swap control, ...), EPERM, everything else allowed.  firejail uses its own built-in list
# (`--seccomp`), secrun its `strict` profile.
DENY = ["acct", "add_key", "adjtimex", "bpf", "clock_adjtime", "clock_settime",
        "delete_module", "fanotify_init", "finit_module", "init_module", "ioperm", "iopl",
        "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "modify_ldt",
        "mount", "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
        "open_tree", "fsopen", "fsmount", "perf_event_open", "pivot_root", "process_vm_readv",
        "process_vm_writev", "ptrace", "quotactl", "reboot", "request_key", "setns",
        "settimeofday", "swapoff", "swapon", "sysfs", "syslog", "umount2", "unshare", "uselib",
        "userfaultfd", "vhangup"]

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


# --- setup: peers, workloads, bundles -------------------------------------------------------------

def install_peers() -> None:
    missing = sorted({pkg for tool, pkg in PEER_PACKAGES.items() if not shutil.which(tool)})
    if not missing:
        return
    if os.geteuid() != 0:
        note(f"not root: cannot install {', '.join(missing)}; the tools they provide are skipped")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    base = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
    log(f"installing {' '.join(missing)} (apt)")
    if run(base + missing, env=env).returncode == 0:
        return
    run(["apt-get", "update", "-qq"], env=env)
    for pkg in missing:
        r = run(base + [pkg], env=env)
        if r.returncode != 0:
            note(f"apt-get install {pkg} failed ({r.stderr.strip().splitlines()[-1:]}); skipped")


def ensure_matplotlib() -> bool:
    """Install matplotlib into the venv if missing (bench-time only; imported at plot time, so
    the timed launches are not spawned from a bloated process)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is not None:
        return True
    log("installing matplotlib into the venv (bench-time dependency)")
    r = run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "matplotlib"])
    if r.returncode != 0:
        note("matplotlib could not be installed; no plot")
        return False
    return True


def load_pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def build_c(name: str) -> str | None:
    """Compile bench/<name>.c (static when possible) into build/bench/<name>."""
    out = os.path.join(WORK, name)
    src = os.path.join(BENCH_DIR, f"{name}.c")
    if os.path.exists(out) and os.stat(out).st_mtime >= os.stat(src).st_mtime:
        return out
    gcc = shutil.which("gcc")
    if not gcc:
        note(f"gcc missing: bench/{name}.c not built")
        return None
    r = run([gcc, "-O2", "-static", "-o", out, src])
    if r.returncode != 0:
        r = run([gcc, "-O2", "-o", out, src])
    if r.returncode != 0:
        note(f"building bench/{name}.c failed: {r.stderr.strip()[:300]}")
        return None
    return out


def seccomp_bpf() -> str | None:
    """The deny-list compiled to classic BPF for bubblewrap's --seccomp FD (pyseccomp)."""
    path = os.path.join(WORK, "deny.bpf")
    code = (
        "import sys, errno, pyseccomp as s\n"
        "f = s.SyscallFilter(s.ALLOW)\n"
        "for n in sys.argv[2:]:\n"
        "    try: f.add_rule(s.ERRNO(errno.EPERM), n)\n"
        "    except OSError: pass\n"
        "with open(sys.argv[1], 'wb') as o: f.export_bpf(o)\n")
    r = run([PY, "-c", code, path] + DENY)
    if r.returncode != 0:
        note(f"could not compile the bubblewrap seccomp filter: {r.stderr.strip()[-300:]}")
        return None
    return path


def oci_bundle(runtime: str, workload: list[str], name: str) -> str | None:
    """An OCI bundle: rootfs = busybox-static as /bin/true and /bin/sleep; config.json from
    `<runtime> spec`, made comparable to secrun strict: read-only root, pid/net/ipc/uts/mount/
    cgroup namespaces, no capabilities, no_new_privs, the deny-list seccomp filter."""
    busybox = shutil.which("busybox")
    if not busybox:
        return None
    bundle = os.path.join(WORK, f"bundle-{runtime}-{name}")
    shutil.rmtree(bundle, ignore_errors=True)
    os.makedirs(os.path.join(bundle, "rootfs", "bin"))
    for applet in ("true", "sleep"):
        shutil.copy(busybox, os.path.join(bundle, "rootfs", "bin", applet))
    r = run([runtime, "spec"], cwd=bundle)
    if r.returncode != 0:
        note(f"{runtime} spec failed: {r.stderr.strip()}")
        return None
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    proc = cfg["process"]
    proc["terminal"] = False
    proc["args"] = workload
    proc["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "ambient")}
    proc["noNewPrivileges"] = True
    cfg["root"] = {"path": "rootfs", "readonly": True}
    linux = cfg["linux"]
    types = {ns["type"] for ns in linux["namespaces"]}
    for t in ("pid", "network", "ipc", "uts", "mount", "cgroup"):
        if t not in types:
            linux["namespaces"].append({"type": t})
    if runtime == "crun":
        # crun puts a device allow-list into an eBPF cgroup program, which needs RLIMIT_MEMLOCK
        # raised, which needs CAP_SYS_RESOURCE (root lacks it here): no device rules for crun.
        linux.pop("resources", None)
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": DENY, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle


class CrunNamespace:
    """A persistent private mount namespace where only cgroup2 is mounted at /sys/fs/cgroup
    (crun 1.8 refuses this host's hybrid v1+v2 layout).  The timer's child setns()es into it
    before exec, so crun pays no extra exec for it."""

    def __init__(self):
        self.dir = None
        self.file = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="secrun-bench-", dir="/run")
        self.file = os.path.join(self.dir, "mnt")
        open(self.file, "w").close()
        for cmd in (["mount", "--bind", self.dir, self.dir], ["mount", "--make-private", self.dir]):
            r = run(cmd)
            if r.returncode:
                raise OSError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        r = run(["unshare", f"--mount={self.file}", "--propagation", "private", "sh", "-c",
                 "umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup"])
        if r.returncode:
            raise OSError(f"unshare/mount cgroup2 failed: {r.stderr.strip()}")
        return self

    def __exit__(self, *exc):
        if self.file:
            run(["umount", self.file])
        if self.dir:
            run(["umount", self.dir])
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the tools ---------------------------------------------------------------------------------

class Tool:
    """One way of launching a workload.  ``argv(workload, n)`` gives the command line;
    ``fds`` maps child fd -> file opened before exec; ``mntns`` is a mount namespace to enter."""

    def __init__(self, key, label, make, *, fds=None, mntns=None, kind="peer", confinement="",
                 workloads=("true", "sleep")):
        self.key, self.label, self.make = key, label, make
        self.fds = fds or {}
        self.mntns = mntns
        self.kind = kind
        self.confinement = confinement
        self.workloads = workloads
        self.ok = True
        self.why = ""

    def argv(self, workload="true", n=0) -> list[str]:
        return [a.replace("{n}", str(n)) for a in self.make(workload)]

    def shown(self, workload="true") -> str:
        extra = "".join(f" {fd}<{p}" for fd, p in self.fds.items())
        pre = "(in crun's cgroup2 mount namespace) " if self.mntns else ""
        return pre + " ".join(self.argv(workload, 1)).replace("bench-1", "bench-$N") + extra


WORKLOADS = {"true": ["/bin/true"], "sleep": ["/bin/sleep", "30"]}


def make_tools(ns: CrunNamespace | None, bpf: str | None, quick: bool) -> list[Tool]:
    tools = []
    which = shutil.which
    tools.append(Tool("true", "/bin/true (bare)", lambda w: WORKLOADS[w], kind="ref",
                      confinement="none"))
    tools.append(Tool("python", "python -c pass (venv)", lambda w: [PY, "-c", "pass"],
                      kind="ref", confinement="none (the interpreter secrun runs on)",
                      workloads=("true",)))
    if which("unshare"):
        u = which("unshare")
        tools.append(Tool("unshare", "unshare", lambda w: [u, "--pid", "--fork", "--mount",
                          "--uts", "--ipc", "--net"] + WORKLOADS[w],
                          confinement="pid, mount, uts, ipc, net namespaces; no cap drop, "
                          "no seccomp"))
    if which("bwrap") and bpf:
        b = which("bwrap")
        tools.append(Tool("bwrap", "bubblewrap", lambda w: [
            b, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--cap-drop", "ALL", "--seccomp", "9"] + WORKLOADS[w], fds={9: bpf},
            confinement=f"user/pid/net/ipc/uts/cgroup namespaces, read-only /, no caps, "
            f"{len(DENY)}-call deny-list seccomp"))
    elif not which("bwrap"):
        note("bubblewrap not installed: skipped")
    if which("firejail"):
        fj = which("firejail")
        tools.append(Tool("firejail", "firejail minimal", lambda w: [
            fj, "--noprofile", "--caps.drop=all", "--seccomp", "--net=none"] + WORKLOADS[w],
            confinement="mount/pid namespaces, net=none (new empty net ns), no caps, "
            "firejail's built-in default seccomp list"))
    else:
        note("firejail not installed: skipped")
    for rt in ("runc", "crun"):
        exe = which(rt)
        if not exe:
            note(f"{rt} not installed: skipped")
            continue
        if rt == "crun" and ns is None:
            note("crun skipped: its cgroup2 mount namespace could not be made")
            continue
        if rt == "crun":
            tools.append(Tool("true-ns", "/bin/true via setns helper", lambda w: WORKLOADS[w],
                              mntns=ns.file, kind="ref", workloads=("true",),
                              confinement="none: the cost crun's row pays for entering its "
                              "mount namespace (benchexec: setns + one extra exec)"))
        bundles = {w: oci_bundle(rt, WORKLOADS[w], w) for w in WORKLOADS}
        if not all(bundles.values()):
            note(f"{rt} skipped: no OCI bundle (busybox-static missing?)")
            continue
        tools.append(Tool(rt, rt, lambda w, exe=exe, b=bundles: [
            exe, "run", "--bundle", b[w], "bench-{n}"],
            mntns=ns.file if rt == "crun" else None,
            confinement="OCI bundle: pid/net/ipc/uts/mount/cgroup namespaces, read-only "
            f"busybox rootfs, no caps, no_new_privs, {len(DENY)}-call deny-list seccomp, "
            + ("cgroup v1 (cgroupfs)" if rt == "runc" else "cgroup v2")))
    for prof in ("unconfined", "strict"):
        tools.append(Tool(f"secrun-{prof}", f"secrun {prof}", lambda w, p=prof: [
            SECRUN, "--profile", p, "--"] + WORKLOADS[w], kind="secrun",
            confinement=f"profile `{prof}` (see below)"))
    if not quick:
        tools.append(Tool("secrun-strict-nocache", "secrun strict, no plan cache", lambda w: [
            SECRUN, "--no-cache", "--profile", "strict", "--"] + WORKLOADS[w], kind="secrun",
            confinement="profile `strict`, plan rebuilt (cold cache)", workloads=("true",)))
    return tools


# --- launching and timing -------------------------------------------------------------------------

ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
DEVNULL = os.open(os.devnull, os.O_RDWR)
BENCHEXEC: list = [None]  # path of the helper built from bench/benchexec.c
_counter = [0]


def spawn(tool: Tool, workload="true", *, cgroup_procs=None, stdout=None, stderr=None,
          argv=None, maxrss_fd=None) -> int:
    """Start one launch with posix_spawn (vfork+exec: no copy of the harness's memory, the same
    cost for every tool).  A mount namespace or a cgroup goes through the benchexec helper."""
    _counter[0] += 1
    if argv is None:
        argv = tool.argv(workload, f"{os.getpid()}-{_counter[0]}")
    pre = []
    if tool.mntns or cgroup_procs or maxrss_fd is not None:
        pre = [BENCHEXEC[0]]
        if cgroup_procs:
            pre += ["-c", cgroup_procs]
        if maxrss_fd is not None:
            pre += ["-m", "3"]
        if tool.mntns:
            pre += ["-n", tool.mntns]
        pre.append("--")
    argv = pre + argv
    acts = [(os.POSIX_SPAWN_DUP2, DEVNULL, 0),
            (os.POSIX_SPAWN_DUP2, DEVNULL if stdout is None else stdout, 1),
            (os.POSIX_SPAWN_DUP2, DEVNULL if stderr is None else stderr, 2)]
    if maxrss_fd is not None:
        acts.append((os.POSIX_SPAWN_DUP2, maxrss_fd, 3))
    for target, path in tool.fds.items():
        acts.append((os.POSIX_SPAWN_OPEN, target, path, os.O_RDONLY, 0))
    return os.posix_spawn(argv[0], argv, ENV, file_actions=acts)


def launch_once(tool: Tool, workload="true"):
    t0 = time.perf_counter_ns()
    pid = spawn(tool, workload)
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter_ns()
    return t1 - t0, os.waitstatus_to_exitcode(status)


def capture(tool: Tool, argv=None, workload="true") -> tuple[int, str]:
    """One launch with stdout and stderr captured (not timed)."""
    r_, w_ = os.pipe()
    pid = spawn(tool, workload, stdout=w_, stderr=w_, argv=argv)
    os.close(w_)
    out = b""
    while chunk := os.read(r_, 65536):
        out += chunk
    os.close(r_)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def check(tool: Tool) -> bool:
    """Run once; a tool that fails is skipped with its message."""
    code, out = capture(tool)
    if code != 0:
        tool.ok = False
        tool.why = f"exit {code}: {out.strip()[-300:]}"
        note(f"{tool.label} skipped: `{tool.shown()}` failed with {tool.why}")
    return tool.ok


NAN = float("nan")


def quartiles(xs):
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return NAN, NAN, NAN
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, med, q3


def latency(tools: list[Tool], rounds: int, warmup: int) -> dict:
    """Interleaved wall time of one launch of /bin/true, per tool: rounds x tools launches."""
    samples = {t.key: [] for t in tools}
    failed: dict = {}
    gc.disable()
    try:
        for r in range(warmup + rounds):
            k = r % len(tools)
            for t in tools[k:] + tools[:k]:
                ns, code = launch_once(t)
                if code != 0:
                    failed[t.key] = failed.get(t.key, 0) + 1
                if r >= warmup:
                    samples[t.key].append(ns / 1e6 if code == 0 else NAN)
    finally:
        gc.enable()
    for k, n in failed.items():
        note(f"latency: {n} launches of {k} failed (non-zero exit); those samples are dropped")
    return {"samples": samples}


def throughput(tools: list[Tool], n: int, par: int, rounds: int) -> dict:
    """Sandboxes per second: n launches, at most `par` in flight (as `seq n | xargs -P par`)."""
    out = {t.key: [] for t in tools}
    for r in range(rounds):
        k = r % len(tools)
        for t in tools[k:] + tools[:k]:
            started = done = failed = 0
            live = set()
            t0 = time.perf_counter_ns()
            while done < n:
                while len(live) < par and started < n:
                    live.add(spawn(t))
                    started += 1
                pid, status = os.wait()
                if pid in live:
                    live.discard(pid)
                    done += 1
                    failed += status != 0
            dt = (time.perf_counter_ns() - t0) / 1e9
            if failed:
                note(f"throughput: {failed}/{n} launches of {t.label} failed in round {r} "
                     "(the rate counts them)")
            out[t.key].append(n / dt)
    return out


# --- memory ----------------------------------------------------------------------------------

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


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _vmrss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


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


# --- seccomp runtime overhead --------------------------------------------------------------------

ONE_RULE = ('[seccomp]\ndefault_action = "allow"\nallow = []\ndeny = ["acct"]\n'
            'actions = {}\ndeny_namespaces = []\naddress_families = []\ndeny_ioctls = []\n'
            'personalities = []\n')


def onerule_profile(extends: str | None) -> str:
    """A profile whose seccomp filter has exactly one rule (acct -> EPERM).  With extends =
    strict, every other control (cgroups' CPU weight, namespaces...) is strict's, so the
    comparison isolates the filter."""
    d = os.path.join(WORK, "profiles")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    name = f"onerule-{extends}" if extends else "onerule"
    path = os.path.join(d, f"{name}.toml")
    with open(path, "w") as f:
        f.write('description = "benchmark: a one-rule seccomp filter"\n')
        if extends:
            f.write(f'extends = ["{extends}"]\n')
        f.write("\n" + ONE_RULE)
    os.chmod(path, 0o644)
    return path


def profile_has(prof: str, section: str) -> bool:
    r = run([SECRUN, "profiles", "show", prof])
    return r.returncode == 0 and f"[{section}]" in r.stdout


def seccomp_overhead(loop: str, n: int, rounds: int, bpf: str | None) -> dict:
    variants = [("none", "no filter", [loop, str(n)]),
                ("onerule-self", "one-rule filter (installed by the loop itself)",
                 [loop, str(n), "filter"]),
                ("secrun-unconfined", "secrun unconfined",
                 [SECRUN, "-p", "unconfined", "--", loop, str(n)])]
    if bpf and shutil.which("bwrap"):
        variants.append(("bwrap", f"bubblewrap + {len(DENY)}-call deny-list",
                         [shutil.which("bwrap"), "--unshare-all", "--ro-bind", "/", "/", "--dev",
                          "/dev", "--proc", "/proc", "--cap-drop", "ALL", "--seccomp", "9",
                          loop, str(n)]))
    plugin_ready = profile_has("strict", "seccomp")
    if plugin_ready:
        for ext, key, label in ((None, "secrun-onerule", "secrun, one-rule seccomp profile "
                                 "(no other control)"),
                                ("strict", "secrun-strict-onerule", "secrun strict with its "
                                 "filter replaced by one rule")):
            one = onerule_profile(ext)
            r = run([SECRUN, "profiles", "check", one])
            if r.returncode == 0:
                variants.append((key, label, [SECRUN, "-p", one, "--", loop, str(n)]))
            else:
                note(f"the one-rule seccomp profile {one} does not validate "
                     f"({(r.stderr or r.stdout).strip()[:200]}); that row is skipped")
        variants.append(("secrun-strict", "secrun strict",
                         [SECRUN, "-p", "strict", "--", loop, str(n)]))
    else:
        note("the `strict` profile has no [seccomp] section yet (seccomp plugin not landed): "
             "secrun's seccomp overhead rows are skipped")
    out = {k: [] for k, _, _ in variants}
    labels = {k: lab for k, lab, _ in variants}
    argvs = {k: a for k, _, a in variants}
    fds = {"bwrap": {9: bpf}}
    for r in range(rounds + 1):
        k = r % len(variants)
        for key, _, argv in variants[k:] + variants[:k]:
            code, text = capture(Tool(key, key, None, fds=fds.get(key)), argv=argv)
            # the loop's figure is the last line; secrun's warnings (stderr) may come first
            data = (text.strip().splitlines() or [""])[-1].strip()
            if code != 0 or not data.isdigit():
                note(f"seccomp loop under {labels[key]} failed (exit {code}: "
                     f"{text.strip()[-200:]}); row skipped")
                out.pop(key, None)
                variants = [v for v in variants if v[0] != key]
                continue
            if r > 0:
                out[key].append(int(data) / n)
    return {"ns_per_call": out, "labels": labels, "argv": argvs, "n": n}


# --- the launch path ------------------------------------------------------------------------

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


# --- machine and versions ------------------------------------------------------------------------

def machine() -> dict:
    def first(cmd):
        try:
            r = run(cmd)
        except OSError:
            return "-"
        return ((r.stdout or r.stderr).strip().splitlines() or ["-"])[0]

    cpu = "-"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    debian = "-"
    try:
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    except OSError:
        pass
    py = run([PY, "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip()
    git = run(["git", "-C", ROOT, "describe", "--always", "--dirty"]).stdout.strip()
    vers = {"secrun": f"{first([SECRUN, '--version'])} (git {git})", "python (venv)": py}
    for tool, cmd in (("bubblewrap", ["bwrap", "--version"]),
                      ("firejail", ["firejail", "--version"]),
                      ("runc", ["runc", "--version"]), ("crun", ["crun", "--version"]),
                      ("util-linux unshare", ["unshare", "--version"]),
                      ("hyperfine", ["hyperfine", "--version"])):
        if shutil.which(cmd[0]):
            vers[tool] = first(cmd)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "load average (1/5/15 min) at start": load,
            "cpu": f"{cpu}, {os.cpu_count()} cores", "memory": f"{mem:.1f} GiB",
            "kernel": platform.release(), "os": f"Debian {debian}", "versions": vers}


# --- report ----------------------------------------------------------------------------------

def paired_ratio(samples, a, b):
    """Median and IQR of the per-round ratios a/b (same round, so drift cancels)."""
    rs = [x / y for x, y in zip(samples[a], samples[b], strict=True) if x == x and y == y]
    q1, med, q3 = quartiles(rs)
    return med, q1, q3


def fmt_ratio(t):
    return f"{t[0]:.2f} ({t[1]:.2f}–{t[2]:.2f})"


def plot(plt, res, path):
    tools = [t for t in res["tools"] if t["key"] in res["latency"]["samples"]
             and t["key"] not in ("secrun-strict-nocache", "true-ns")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    fig.suptitle(f"secrun vs peers — {res['machine']['date']}, {res['machine']['cpu']}, "
                 f"kernel {res['machine']['kernel']}", fontsize=10)

    def colors(keys):
        return ["tab:red" if k.startswith("secrun") else "tab:gray" if k in ("true", "python")
                else "tab:blue" for k in keys]

    ax = axes[0][0]
    keys = [t["key"] for t in tools]
    q = [quartiles(res["latency"]["samples"][k]) for k in keys]
    ax.barh([t["label"] for t in tools], [x[1] for x in q], color=colors(keys),
            xerr=[[x[1] - x[0] for x in q], [x[2] - x[1] for x in q]], capsize=3)
    ax.invert_yaxis()
    ax.set_xlabel("ms (median, IQR whiskers)")
    ax.set_title("Launch latency of /bin/true")

    ax = axes[0][1]
    tp = res.get("throughput") or {}
    ks = [k for k in keys if k in tp]
    ax.barh([res["labels"][k] for k in ks], [statistics.median(tp[k]) for k in ks],
            color=colors(ks))
    ax.invert_yaxis()
    ax.set_xlabel(f"sandboxes / s ({res['params']['tp_n']} launches, "
                  f"parallelism {res['params']['tp_par']})")
    ax.set_title("Throughput")

    ax = axes[1][0]
    mem = res.get("tree_peak") or {}
    ks = [k for k in keys if mem.get(k)]
    ax.barh([res["labels"][k] for k in ks], [statistics.median(mem[k]) for k in ks],
            color=colors(ks))
    ax.invert_yaxis()
    ax.set_xlabel("MiB (cgroup memory peak of the whole tree, median)")
    ax.set_title("Peak memory of one launch")

    ax = axes[1][1]
    sc = res.get("seccomp") or {}
    per = sc.get("ns_per_call") or {}
    if per:
        ks = list(per)
        ax.barh([sc["labels"][k] for k in ks], [statistics.median(per[k]) for k in ks],
                color=["tab:red" if k.startswith("secrun") else "tab:gray" if k == "none"
                       else "tab:blue" for k in ks])
        ax.invert_yaxis()
        ax.set_xlabel("ns per getppid() (median)")
    ax.set_title("Seccomp runtime cost")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_markdown(res, md_path, png_name):
    m = res["machine"]
    lat = res["latency"]["samples"]
    labels = res["labels"]
    tools = {t["key"]: t for t in res["tools"]}
    p = res["params"]
    L = []
    w = L.append
    w("# Benchmarks\n")
    w("Generated by `make bench` (`bench/bench.py`); "
      + ("**quick run (few rounds): indicative only.**" if p["quick"] else "full run.")
      + " Re-run it after any change on the launch path; compare only ratios from one run.\n")
    w("## Machine\n")
    w("| | |\n|---|---|")
    for k in ("date", "cpu", "memory", "os", "kernel", "load average (1/5/15 min) at start"):
        w(f"| {k} | {m.get(k, '-')} |")
    for k, v in m["versions"].items():
        w(f"| {k} | {v} |")
    w("")

    # targets
    s = "secrun-strict"
    w("## Targets (ratios measured in this run)\n")
    w("Ratio = median of the per-round ratios (interleaved rounds), IQR in brackets.\n")
    w("| comparison | ratio | target | met |\n|---|---|---|---|")

    def target(desc, a, b, limit):
        if a in lat and b in lat:
            r = paired_ratio(lat, a, b)
            w(f"| {desc} | {fmt_ratio(r)} | ≤ {limit} | {'yes' if r[0] <= limit else '**no**'} |")
        else:
            w(f"| {desc} | not measured | ≤ {limit} | - |")

    target("secrun strict / firejail minimal", s, "firejail", 1.0)
    target("secrun strict / runc", s, "runc", 1.0)
    target("secrun strict / crun (stretch)", s, "crun", 2.0)
    target("secrun unconfined / bare `python -c pass`", "secrun-unconfined", "python", 2.0)
    tp = res.get("throughput") or {}
    if s in tp and "firejail" in tp:
        a, b = statistics.median(tp[s]), statistics.median(tp["firejail"])
        w(f"| throughput, secrun strict / firejail minimal | {a / b:.2f} ({a:.0f} vs {b:.0f} "
          f"/s) | ≥ 1.0 | {'yes' if a >= b else '**no**'} |")
    sc = (res.get("seccomp") or {}).get("ns_per_call") or {}
    sc_labels = (res.get("seccomp") or {}).get("labels") or {}
    refs = [k for k in ("secrun-strict-onerule", "secrun-onerule", "onerule-self") if k in sc]
    if "secrun-strict" in sc and refs:
        ref = refs[0]
        base = statistics.median(sc["none"])
        a = statistics.median(sc["secrun-strict"]) / base
        b = statistics.median(sc[ref]) / base
        w(f"| seccomp overhead, strict / one-rule filter ({sc_labels.get(ref, ref)}) | "
          f"{a / b:.3f} ({a:.2f}× vs {b:.2f}× unfiltered) | ≤ 1.05 | "
          f"{'yes' if a / b <= 1.05 else '**no**'} |")
    else:
        w("| seccomp overhead, strict / one-rule filter | not measured (no seccomp in "
          "`strict` yet) | ≤ 1.05 | - |")
    w("")
    w(f"![benchmarks]({png_name})\n")

    # launch latency
    w("## Launch latency of `/bin/true`\n")
    w(f"{p['rounds']} interleaved rounds after {p['warmup']} warm-up rounds; one launch = spawn "
      "of the tool, wait for the whole tree (wall time, `time.perf_counter_ns`).\n")
    w("| tool | median ms | IQR ms | min ms | × bare /bin/true | secrun strict / tool |")
    w("|---|---|---|---|---|---|")
    for k in lat:
        q1, med, q3 = quartiles(lat[k])
        vs_true = paired_ratio(lat, k, "true")[0]
        vs_strict = fmt_ratio(paired_ratio(lat, s, k)) if s in lat and k != s else "-"
        lo = min((x for x in lat[k] if x == x), default=NAN)
        w(f"| {labels[k]} | {med:.1f} | {q1:.1f}–{q3:.1f} | {lo:.1f} | {vs_true:.1f} | "
          f"{vs_strict} |")
    w("")

    if tp:
        w("## Throughput\n")
        w(f"{p['tp_n']} launches of `/bin/true` with at most {p['tp_par']} in flight (what "
          f"`seq {p['tp_n']} | xargs -P{p['tp_par']} -n1 CMD` does, without xargs' own cost), "
          f"{p['tp_rounds']} interleaved round(s); median.\n")
        w("| tool | sandboxes / s | secrun strict / tool |\n|---|---|---|")
        for k in tp:
            v = statistics.median(tp[k])
            ratio = f"{statistics.median(tp[s]) / v:.2f}" if s in tp else "-"
            w(f"| {labels[k]} | {v:.0f} | {ratio} |")
        w("")

    mem = res.get("tree_peak") or {}
    resid = res.get("resident") or {}
    if mem or resid:
        w("## Memory\n")
        w("- **tree peak**: a fresh cgroup (v1 `memory.max_usage_in_bytes`) holds the launched "
          "process from before its exec (the static `benchexec` helper moves itself in, then "
          "execs the tool), so everything the tool's whole process tree charges "
          "(user pages, page tables, kernel objects such as namespaces and mounts) is counted, "
          "and sub-groups a runtime creates (runc's) are included hierarchically; "
          f"median of {p['mem_runs']} runs.")
        w("- **largest process**: `ru_maxrss` from `wait4` (the largest single process of the "
          "reaped tree, not a sum), taken by `benchexec`, which forks the tool itself: a child "
          "inherits its parent's RSS high-water mark, so the harness's own Python must not be "
          "the parent. Its floor is the bare `/bin/true` row.")
        w("- **resident while running**: the tool's own processes (the launched tree minus the "
          "workload) while the workload, `sleep 30`, runs: their PSS summed (shared pages "
          "counted once), and each one's VmRSS.\n")
        w("| tool | tree peak MiB | largest process MiB | resident while running (PSS) | "
          "processes kept alive (VmRSS MiB) |\n|---|---|---|---|---|")
        for k in lat:
            tpk = f"{statistics.median(mem[k]):.1f}" if mem.get(k) else "-"
            mr = res.get("maxrss", {}).get(k)
            rss = f"{statistics.median(mr):.1f}" if mr else "-"
            if k in resid:
                rr = resid[k]
                procs = ", ".join(f"{c} {kib / 1024:.1f}" for _, c, kib in rr["processes"]) or \
                    "none"
                res_s = f"{rr['pss_kib'] / 1024:.1f} MiB"
            else:
                res_s, procs = "-", "-"
            w(f"| {labels[k]} | {tpk} | {rss} | {res_s} | {procs} |")
        w("")
        if "secrun-strict" in resid:
            rr = resid["secrun-strict"]
            w(f"secrun's supervisor (the `secrun` process itself) holds "
              f"**{rr['launcher_kib'] / 1024:.1f} MiB** resident while the workload runs "
              f"(`VmRSS` of `/proc/<secrun pid>/status`); under `unconfined` "
              f"{resid.get('secrun-unconfined', {}).get('launcher_kib', 0) / 1024:.1f} MiB.\n")

    scr = res.get("seccomp") or {}
    if scr.get("ns_per_call"):
        per = scr["ns_per_call"]
        base = statistics.median(per["none"])
        w("## Seccomp runtime overhead\n")
        w(f"`bench/loop.c` (static, built by the harness) calls `getppid()` {scr['n']:,} times "
          "and times only its loop, so launch cost does not enter; interleaved rounds, median.\n")
        w("| variant | ns per call | × no filter | command |\n|---|---|---|---|")
        for k, v in per.items():
            med = statistics.median(v)
            argv = scr["argv"][k]
            cmd = " ".join([os.path.basename(argv[0])] + argv[1:])
            w(f"| {scr['labels'][k]} | {med:.1f} | {med / base:.2f} | `{cmd}` |")
        w("")

    if res.get("importtime"):
        it = res["importtime"]
        w("## secrun's launch path\n")
        w(f"`python -X importtime .venv/bin/secrun --profile unconfined -- /bin/true`, median of "
          f"{it['runs']} runs: imports total **{it['total_us'] / 1000:.1f} ms**.\n")
        w("Top-level imports by cumulative time:\n")
        w("| module | cumulative ms |\n|---|---|")
        for n, us in sorted(it["top"].items(), key=lambda x: -x[1])[:12]:
            w(f"| `{n}` | {us / 1000:.2f} |")
        w("\nModules by self time:\n")
        w("| module | self ms | cumulative ms |\n|---|---|---|")
        for n, (su, cu, _) in sorted(it["modules"].items(), key=lambda x: -x[1][0])[:15]:
            w(f"| `{n}` | {su / 1000:.2f} | {cu / 1000:.2f} |")
        w("")
        its = res.get("importtime_strict")
        if its:
            w(f"Under `--profile strict` the imports total **{its['total_us'] / 1000:.1f} ms**; "
              "top-level imports:\n")
            w("| module | cumulative ms |\n|---|---|")
            for n, us in sorted(its["top"].items(), key=lambda x: -x[1])[:12]:
                w(f"| `{n}` | {us / 1000:.2f} |")
            w("")
        ph = {k: v for k, v in (res.get("phases") or {}).items() if v}
        if ph:
            w("Where the wall time of one launch goes (`strace -f --seccomp-bpf -ttt -e "
              "trace=execve,clone,exit_group`, median of "
              f"{next(iter(ph.values()))['runs']} runs; strace slows forks and execs a little):\n")
            w("| profile | start-up → fork | child setup → exec | workload | workload exit → "
              "secrun exit | total |\n|---|---|---|---|---|---|")
            for prof, v in ph.items():
                w(f"| {prof} | {v['startup']:.1f} ms | {v['child_setup']:.1f} ms | "
                  f"{v['workload']:.1f} ms | {v['teardown']:.1f} ms | {v['total']:.1f} ms |")
            w("")
        if res.get("stages"):
            w("`secrun -v --profile strict -- /bin/true` (per-stage durations):\n")
            w("```\n" + res["stages"] + "\n```\n")
        if res.get("strace"):
            rows = res["strace"].splitlines()
            w("`strace -f -c secrun --profile strict -- /bin/true` (whole tree, top rows):\n")
            w("```\n" + "\n".join(rows[:22] + rows[-2:]) + "\n```\n")
        if res.get("cprofile"):
            w("`python -m cProfile -s cumulative .venv/bin/secrun --profile strict -- /bin/true` "
              "(supervisor only; the forked child is not profiled):\n")
            w("```\n" + res["cprofile"] + "\n```\n")

    w("## What each tool runs\n")
    w("| tool | command line | confinement |\n|---|---|---|")
    for k in lat:
        t = tools[k]
        w(f"| {labels[k]} | `{t['shown']}` | {t['confinement']} |")
    w("")
    w("secrun's `strict` profile as measured (`secrun profiles show strict`):\n")
    w("```\n" + res.get("strict_profile", "").strip() + "\n```\n")
    w("### What differs\n")
    w("- **unshare** gets namespaces only: no capability drop, no seccomp. It is the floor of what "
      "namespace setup costs.")
    w("- **bubblewrap** also creates a user namespace (`--unshare-all` tries it) and sets up "
      "loopback in the new net namespace; its seccomp program is the deny-list "
      f"({len(DENY)} calls, EPERM) compiled to BPF by the harness and passed as fd 9.")
    w("- **firejail minimal** uses firejail's own built-in seccomp deny-list and `--net=none`; "
      "it mounts its own private /run/firejail state, which is part of its cost.")
    w("- **runc / crun** run the same OCI config: read-only busybox-static rootfs (`true` and "
      "`sleep` are busybox, static: no dynamic loader, unlike the other tools' `/bin/true`), the "
      "default `runc spec` mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, "
      "/sys/fs/cgroup) and masked paths, no capabilities, no_new_privs, the same deny-list. "
      "runc creates cgroup v1 groups; crun runs in a private mount namespace with only "
      "cgroup2 mounted at /sys/fs/cgroup (crun 1.8 refuses the host's hybrid layout), entered "
      "by the `benchexec` helper (`setns`, then exec: the `/bin/true via setns helper` row is "
      "that helper's cost).")
    w("- **secrun** runs the bundled profiles as they are in the tree at the time of the run "
      "(see the profile above): controls not yet implemented by a plugin are not applied, so "
      "until every control plugin has landed `strict` is lighter than the peers' confinement. "
      "The plan cache is warm (the warm-up rounds fill it), except in the `no plan cache` row.")
    w("")
    w("## Method\n")
    w("- **Interleaving.** hyperfine (Debian 1.15) runs all runs of one command before the next "
      "command, so it cannot interleave; the harness has its own timer: round r launches every "
      "tool once, starting at tool r mod n, and the ratios are medians of per-round ratios.")
    w("- **One launch** = `os.posix_spawn` (vfork + exec) of the tool's command line from the "
      "harness, stdin/stdout/stderr on /dev/null, then `wait4`. The spawn costs the same for "
      "every tool and is inside the bare `/bin/true` row, which is the floor. crun's launches go "
      "through `benchexec` (bench/benchexec.c: `setns` into crun's mount namespace, then exec); "
      "the row `/bin/true via setns helper` shows that helper's own cost.")
    w("- The venv's interpreter and console script are called directly (`.venv/bin/python`, "
      "`.venv/bin/secrun`), never a pyenv shim.")
    w("- Throughput keeps at most P launches in flight and reaps with `wait()`, like "
      "`xargs -P`; every launch gets a unique container id for runc/crun.")
    w("- Seccomp cost is timed inside the loop (CLOCK_MONOTONIC), per call; the one-rule "
      "reference filter is installed by the loop itself (arch check, `acct` → EPERM, allow).")
    if res.get("notes"):
        w("\n## Notes from this run\n")
        for n in res["notes"]:
            w(f"- {n}")
    w("")
    with open(md_path, "w") as f:
        f.write("\n".join(L))


# --- main -----------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few rounds; writes build/bench/")
    ap.add_argument("--rounds", type=int, help="latency rounds (default 60, quick 8)")
    ap.add_argument("--out", help="directory for benchmarks.md and .png (default docs/, "
                    "quick: build/bench/)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install peers")
    ap.add_argument("--only", help="comma-separated tool keys to keep (plus the references)")
    args = ap.parse_args(argv)
    quick = args.quick
    P = {"quick": quick, "rounds": args.rounds or (8 if quick else 60), "warmup": 2,
         "tp_n": 100, "tp_par": 2, "tp_rounds": 1 if quick else 3, "mem_runs": 2 if quick else 5,
         "loop_n": 1_000_000 if quick else 5_000_000, "loop_rounds": 2 if quick else 5,
         "import_runs": 3 if quick else 9}
    out_dir = args.out or (WORK if quick else DOCS)
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(SECRUN):
        raise SystemExit(f"bench: {SECRUN} missing: run `make setup` first")
    t_start = time.monotonic()
    if os.getloadavg()[0] > 1.0:
        note(f"the machine was busy at the start (load average {os.getloadavg()[0]:.1f} on "
             f"{os.cpu_count()} cores): absolute times are inflated; the interleaved ratios "
             "are less affected")
    if not args.no_install:
        install_peers()
    have_mpl = ensure_matplotlib()
    bpf = seccomp_bpf()
    loop = build_c("loop")
    BENCHEXEC[0] = build_c("benchexec")
    ns = None
    if shutil.which("crun") and os.geteuid() == 0 and BENCHEXEC[0]:
        try:
            ns = CrunNamespace().__enter__()
        except OSError as e:
            note(f"crun: {e}")
            ns = None
    try:
        tools = make_tools(ns, bpf, quick)
        if args.only:
            keep = set(args.only.split(",")) | {"true", "python"}
            tools = [t for t in tools if t.key in keep]
        tools = [t for t in tools if check(t)]
        if not any(t.key == "secrun-strict" for t in tools):
            tools = [t for t in tools if t.key != "secrun-strict-nocache"]
        res: dict = {"machine": machine(), "params": P,
                     "tools": [{"key": t.key, "label": t.label, "shown": t.shown(),
                                "confinement": t.confinement, "kind": t.kind} for t in tools],
                     "labels": {t.key: t.label for t in tools},
                     "strict_profile": run([SECRUN, "profiles", "show", "strict"]).stdout}
        log(f"launch latency: {len(tools)} tools x {P['rounds']} rounds")
        res["latency"] = latency(tools, P["rounds"], P["warmup"])
        timed = [t for t in tools if t.key not in ("python", "secrun-strict-nocache", "true-ns")]
        log("throughput")
        res["throughput"] = throughput(timed, P["tp_n"], P["tp_par"], P["tp_rounds"])
        log("memory")
        res["tree_peak"], res["maxrss"] = tree_peak(tools, P["mem_runs"])
        res["resident"] = resident_while_running(timed)
        if loop:
            log("seccomp runtime overhead")
            res["seccomp"] = seccomp_overhead(loop, P["loop_n"], P["loop_rounds"], bpf)
        log("launch path profile")
        res["importtime"] = importtime("unconfined", P["import_runs"])
        res["importtime_strict"] = importtime("strict", P["import_runs"])
        res["phases"] = {p: phases(p, P["import_runs"]) for p in ("unconfined", "strict")}
        res["stages"] = stage_timings("strict")
        res["strace"] = strace_summary("strict")
        res["cprofile"] = cprofile_top("strict")
    finally:
        if ns is not None:
            ns.__exit__(None, None, None)
    res["notes"] = NOTES
    res["elapsed_s"] = time.monotonic() - t_start
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    png = os.path.join(out_dir, "benchmarks.png")
    if have_mpl:
        plot(load_pyplot(), res, png)
    md = os.path.join(out_dir, "benchmarks.md")
    write_markdown(res, md, "benchmarks.png")
    summary(res)
    log(f"wrote {md} ({res['elapsed_s']:.0f} s)")
    return 0


def summary(res) -> None:
    lat = res["latency"]["samples"]
    print(f"{'tool':32} {'median ms':>10} {'IQR':>13} {'strict/tool':>12}")
    for k, v in lat.items():
        q1, med, q3 = quartiles(v)
        r = paired_ratio(lat, "secrun-strict", k)[0] if "secrun-strict" in lat else float("nan")
        print(f"{res['labels'][k]:32} {med:10.2f} {q1:6.1f}–{q3:<6.1f} {r:12.2f}")
    if "secrun-unconfined" in lat and "python" in lat:
        print("secrun unconfined / python -c pass: "
              f"{fmt_ratio(paired_ratio(lat, 'secrun-unconfined', 'python'))}")
    for k, v in (res.get("throughput") or {}).items():
        print(f"throughput {res['labels'][k]:32} {statistics.median(v):7.0f} /s")


if __name__ == "__main__":
    sys.exit(main())
