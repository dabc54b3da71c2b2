"""Launching a tool and timing it: launch latency, throughput, and seccomp's runtime cost.

Every launch is an `os.posix_spawn` (vfork + exec) from the harness with stdio on /dev/null, so
the spawn costs every tool the same and the bare /bin/true row is its floor; a launch that has to
enter a mount namespace, join a cgroup or report its ru_maxrss goes through the static
`benchexec` helper (bench/benchexec.c), built here with the `loop` program (bench/loop.c).

- latency: wall time of one launch of /bin/true, in interleaved rounds (round r starts at tool
  r mod n), so that drift of the machine hits every tool alike and ratios can be taken per round;
- throughput: sandboxes per second with a bounded number of launches in flight, as `xargs -P`;
- seccomp overhead: ns per getppid() inside `loop`, timed by the loop itself so launch cost does
  not enter, unfiltered, under a one-rule filter, under bubblewrap's deny-list and under secrun's
  profiles, to show what secrun's filter costs a running workload beyond having any filter.
"""

from __future__ import annotations

import gc
import os
import shutil
import time

from harness import BENCH_DIR, NAN, SECRUN, WORK, note, run
from peers import DENY, Tool

# --- the C helpers -------------------------------------------------------------------------------

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
