"""Turning one run's results into figures: ratios, the machine description, the plot and
benchmarks.md.

Ratios are medians of per-round ratios (the rounds are interleaved, so drift cancels), with the
interquartile range of those ratios; the targets secrun is held to are checked here.  The machine
and tool versions are recorded with the figures because absolute times are only meaningful on
the machine that took them.  matplotlib is installed into the venv on demand and imported only at
plot time, so the timed launches are never spawned from a bloated process.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import statistics
import sys

from harness import NAN, PY, ROOT, SECRUN, log, note, run
from peers import DENY


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


# --- ratios, plot, markdown ----------------------------------------------------------------

def quartiles(xs):
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return NAN, NAN, NAN
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, med, q3


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
    target("secrun strict, rootless / firejail minimal", "secrun-strict-rootless", "firejail",
           1.0)
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
