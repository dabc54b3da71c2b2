"""The ``cgroups`` plugin on this host's real kernel: limits through whatever hierarchy carries
each controller (here: hybrid, the v1 controllers enforce and the v2 tree tracks).

Every check launches the real ``secrun`` and observes from inside the sandbox (the group's own
control files, fork()'s errno, CPU time the kernel accounted) or from the host's cgroup tree.
``tests/guest/test_cgroups_v2.py`` runs the same cases in the user-mode-linux guest (pure v2); the
cases live here as ``case_*`` functions so both files share them.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from support import SECRUN, is_root, needs_root, run_secrun

PY = sys.executable
CGROOT = "/sys/fs/cgroup"

# --- workload snippets (run inside the sandbox by the venv's interpreter) --------------------

# cgfile(ctrl, name): the control file NAME of this process's own group for controller CTRL:
# the v1 hierarchy of CTRL if CTRL is bound there, else the v2 group ("" = v2 only).
CGFILE = r'''
import os
def _own():
    own, mnts = {}, {}
    for line in open("/proc/self/cgroup"):
        hid, ctrls, path = line.rstrip("\n").split(":", 2)
        for c in (ctrls.split(",") if ctrls else [""]):
            own[c] = path
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if r[0] == "cgroup2":
            mnts.setdefault("", f[4])
        elif r[0] == "cgroup":
            for c in r[2].split(","):
                mnts.setdefault(c, f[4])
    return own, mnts
def cgfile(ctrl, name):
    own, mnts = _own()
    for c in ((ctrl, "") if ctrl else ("",)):
        if c in own and c in mnts:
            p = mnts[c].rstrip("/") + own[c].rstrip("/") + "/" + name
            if os.path.exists(p):
                return p
    raise SystemExit("no cgroup file %s for %s in %r" % (name, ctrl, own))
def cpu_usec():
    own, mnts = _own()
    if own.get("", "/") != "/" and "" in mnts:  # the v2 group accounts CPU time itself
        for line in open(mnts[""].rstrip("/") + own[""].rstrip("/") + "/cpu.stat"):
            k, v = line.split()
            if k == "usage_usec":
                return int(v)
    return int(open(cgfile("cpuacct", "cpuacct.usage")).read()) // 1000
'''

# A bounded fork bomb: every process forks two children, down to depth 7 (at most 255
# processes even if nothing contained it); forks that fail must fail with EAGAIN.  The first
# process prints how many forks failed and the group's peak process count.
BOMB = CGFILE + r'''
import errno, time
fails, depth = 0, 0
for level in range(7):
    forked_child = False
    for _ in range(2):
        try:
            pid = os.fork()
        except OSError as e:
            assert e.errno == errno.EAGAIN, e
            fails += 1
            continue
        if pid == 0:
            depth, forked_child, fails = level + 1, True, 0
            break
    if not forked_child:
        continue
time.sleep(1.0)
if depth == 0:
    print("failed_forks", fails)
    print("peak", open(cgfile("pids", "pids.peak")).read().strip())
    print("max", open(cgfile("pids", "pids.max")).read().strip())
'''

# Two CPU-bound processes spin for ~2.5 s; the parent measures the group's CPU time over 2 s.
CPU_HOG = CGFILE + r'''
import time
end = time.monotonic() + 2.6
for _ in range(2):
    if os.fork() == 0:
        while time.monotonic() < end:
            pass
        os._exit(0)
time.sleep(0.3)
t0, u0 = time.monotonic(), cpu_usec()
time.sleep(2.0)
t1, u1 = time.monotonic(), cpu_usec()
print("rate", (u1 - u0) / 1e6 / (t1 - t0))
'''

ALLOC = "b = b'x' * (200 << 20); print('allocated', len(b))"


def limits_profile(write_profile, extra=""):
    return write_profile(f"""
        [cgroups]
        memory_max = "50M"
        pids_max = 20
        cpu_max = "0.2"
        {extra}
        """)


def secrun_groups(pids=None):
    """Every secrun-<pid>-<hex> directory in the mounted cgroup trees (of these secrun pids)."""
    found = []
    for root, dirs, _files in os.walk(CGROOT):
        keep = []
        for d in dirs:
            parts = d.split("-")
            if len(parts) == 3 and parts[0] == "secrun" and parts[1].isdigit():
                if pids is None or int(parts[1]) in pids:
                    found.append(os.path.join(root, d))
            else:
                keep.append(d)
        dirs[:] = keep
    return found


def alive(pid) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(profile, *cmd, **kw):
    """secrun in the background; waits for the workload's first output line ("ready ...")."""
    p = subprocess.Popen([SECRUN, "--profile", profile, "--", *cmd], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, **kw)
    line = p.stdout.readline()
    assert line.startswith("ready"), (line, p.stderr.read() if p.poll() is not None else "")
    return p, line.split()[1:]


# A workload with descendants: sh and two background sleeps; prints "ready <sleep pids>".
FAMILY = ["sh", "-c", "sleep 300 & a=$!; sleep 300 & echo ready $a $!; wait"]


# --- the cases (shared with the v2 guest suite) ----------------------------------------------

def case_oom_killed_and_reported(write_profile):
    r = run_secrun("--profile", limits_profile(write_profile), "--", PY, "-c", ALLOC)
    assert r.rc == 137, r
    assert "allocated" not in r.out, r
    assert "killed by the memory limit" in r.err and "memory_max = 50M" in r.err, r


def case_fork_bomb_contained(write_profile):
    t0 = time.monotonic()
    r = run_secrun("--profile", limits_profile(write_profile), "--", PY, "-c", BOMB)
    assert r.rc == 0, r
    vals = dict(line.split() for line in r.out.splitlines())
    assert vals["max"] == "20", r
    # Forks were refused: counted by the kernel (pids.events, which secrun reports), not by
    # the bomb's top process, whose own forks may all land before its descendants fill the
    # limit (it reported 0 once while the kernel counted 109 refusals).
    import re

    refused = re.search(r"\((\d+) fork/clone call\(s\) failed with EAGAIN\)", r.err)
    assert refused and int(refused.group(1)) > 0, r
    assert int(vals["peak"]) <= 20, r
    assert "hit the pids limit" in r.err and "pids_max = 20" in r.err, r
    assert time.monotonic() - t0 < 30


def case_cpu_quota(write_profile):
    """0.2 CPU-seconds per second, in a generous band for a noisy 2-core machine.  The upper
    bound (the enforcement) must hold on every try; the lower bound only shows the hog really
    ran, and a machine loaded by others (the guest's virtual CPU starved by the host) can miss
    it, so up to three tries."""
    prof = limits_profile(write_profile)
    rates = []
    for _ in range(3):
        r = run_secrun("--profile", prof, "--", PY, "-c", CPU_HOG)
        assert r.rc == 0, r
        rates.append(float(r.out.split()[-1]))
        assert rates[-1] <= 0.35, (rates, r)
        if rates[-1] >= 0.1:
            break
    assert max(rates) >= 0.1, rates


def case_unlimited_cpu_is_faster(write_profile):
    """The control for case_cpu_quota: without the quota the same hog gets far more."""
    prof = write_profile("""
        [cgroups]
        pids_max = 20
        """, name="nocpu")
    r = run_secrun("--profile", prof, "--", PY, "-c", CPU_HOG)
    assert r.rc == 0, r
    assert float(r.out.split()[-1]) > 0.5, r


def case_no_leftovers(write_profile, sequential=200, concurrent=20):
    prof = limits_profile(write_profile)
    pids = set()
    for _ in range(sequential):
        p = subprocess.Popen([SECRUN, "--profile", prof, "--", "true"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        err = p.communicate()[1]
        assert p.returncode == 0, err
        pids.add(p.pid)
    procs = [subprocess.Popen([SECRUN, "--profile", prof, "--", "sh", "-c",
                               "sleep 0.2 & sleep 0.3; wait"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(concurrent)]
    for p in procs:
        err = p.communicate()[1]
        assert p.returncode == 0, err
        pids.add(p.pid)
    assert secrun_groups(pids) == []


def case_sigterm_leaves_nothing(write_profile):
    prof = limits_profile(write_profile)
    p, sleeps = start(prof, *FAMILY)
    groups = secrun_groups({p.pid})
    assert groups, "the run's groups should exist while it runs"
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM
    assert secrun_groups({p.pid}) == []
    assert not any(alive(int(s)) for s in sleeps), sleeps


def case_sigkill_of_workload_leaves_nothing(write_profile):
    prof = limits_profile(write_profile)
    p, sleeps = start(prof, *FAMILY)
    groups = secrun_groups({p.pid})
    assert groups
    # the workload (secrun's child) is SIGKILLed; its two children stay behind in the group
    with open(os.path.join(groups[0], "cgroup.procs")) as f:
        members = [int(x) for x in f.read().split()]
    workload = [m for m in members if str(m) not in sleeps]
    assert len(workload) == 1, (members, sleeps)
    os.kill(workload[0], signal.SIGKILL)
    p.communicate(timeout=30)
    assert p.returncode == 137
    assert secrun_groups({p.pid}) == []
    assert not any(alive(int(s)) for s in sleeps), sleeps


def case_gc_removes_orphans(write_profile):
    prof = limits_profile(write_profile)
    orphan, sleeps = start(prof, *FAMILY)
    live, _ = start(prof, "sh", "-c", "echo ready; sleep 300")
    try:
        os.kill(orphan.pid, signal.SIGKILL)  # secrun dies without cleaning up
        orphan.wait()
        left = secrun_groups({orphan.pid})
        assert left and all(alive(int(s)) for s in sleeps), "the orphan should exist now"
        r = run_secrun("cgroups", "gc", "--dry-run")
        assert r.rc == 0 and all(f"would remove {g}" in r.out for g in left), r
        assert secrun_groups({orphan.pid}) == left
        r = run_secrun("cgroups", "gc")
        assert r.rc == 0, r
        assert secrun_groups({orphan.pid}) == [], r
        assert not any(alive(int(s)) for s in sleeps), sleeps
        assert secrun_groups({live.pid}), "gc must leave a running secrun's groups alone"
    finally:
        live.kill()  # SIGKILL: leaves an orphan of its own, which gc removes
        live.wait()
        for s in sleeps:
            try:
                os.kill(int(s), signal.SIGKILL)
            except ProcessLookupError:
                pass
        run_secrun("cgroups", "gc")
    assert secrun_groups({live.pid}) == []


def case_tracking_only_group_kills_leftovers(write_profile):
    """No limits at all: the run still gets a group, and cleanup kills what the workload left
    running in the background (a daemon it started) before removing the group."""
    prof = write_profile("[cgroups]\n", name="track")
    p = subprocess.Popen([SECRUN, "--profile", prof, "--", "sh", "-c", "sleep 300 & echo $!"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert not alive(int(out.split()[0]))
    assert secrun_groups({p.pid}) == []


def case_cached_launch_imports_only_the_stages(write_profile, cache_dir):
    """A cached launch imports the plugin's stages (the package) and the modules they need (the
    layout, the run's lock, the manager of each kind of hierarchy the host has) and nothing
    else of it: never the planning, audit, gc or CLI modules."""
    prof = limits_profile(write_profile)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_dir))
    first = subprocess.run([SECRUN, "--profile", prof, "--", "true"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr  # fills the plan cache
    cp = subprocess.run([PY, "-X", "importtime", SECRUN, "--profile", prof, "--", "true"],
                        env=env, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    mods = {line.rsplit("|", 1)[1].strip() for line in cp.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    got = {m for m in mods if m.startswith("secrun.plugins.")}
    base = {f"secrun.plugins.cgroups{m}" for m in ("", ".layout", ".lock")}
    managers = {"secrun.plugins.cgroups.v1", "secrun.plugins.cgroups.v2"}
    assert base <= got and got - base <= managers and got & managers, sorted(mods)


def case_limit_below_usage(write_profile):
    prof = write_profile("""
        [cgroups]
        memory_max = "1M"
        """)
    r = run_secrun("--profile", prof, "--", "echo", "ran")
    assert r.rc == 125, r
    assert "ran" not in r.out
    assert "[cgroups].memory_max = 1M" in r.err and "current usage" in r.err, r
    assert "stage 'attach' failed in plugin 'cgroups'" in r.err, r


@pytest.mark.parametrize("key,value,words", [
    ("memory_max", '"50X"', "unknown unit 'X'"),
    ("memory_max", '"-5M"', "negative limit"),
    ("swap_max", '"1Q"', "unknown unit 'Q'"),
    ("pids_max", "-1", "negative limit"),
    ("cpu_max", '"-0.5"', "negative limit"),
    ("cpu_max", '"two"', "not a number of CPUs"),
    ("cpu_weight", "20000", "above 10000"),
    ("parent", '"../escape"', "not allowed"),
])
def test_bad_input_names_the_key(write_profile, key, value, words):
    prof = write_profile(f"[cgroups]\n{key} = {value}\n")
    r = run_secrun("--profile", prof, "--", "echo", "ran")
    assert r.rc == 125, r
    assert "ran" not in r.out
    assert f"[cgroups].{key}" in r.err and words in r.err and prof in r.err, r


def test_units():
    from secrun.plugins.cgroups.plan import parse_count, parse_cpus, parse_size

    assert parse_size("512M") == 512 << 20
    assert parse_size("2g") == 2 << 30
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("64KiB") == 64 << 10
    assert parse_size("100MB") == 100 << 20
    assert parse_size(4096) == 4096
    assert parse_size("max") == "max" and parse_size("") is None
    assert parse_cpus("1.5") == 150000 and parse_cpus(0.2) == 20000
    assert parse_count(20) == 20 and parse_count(0) is None and parse_count("max") == "max"
    for bad in ("5X", "-1M", "M", "1.2.3G"):
        with pytest.raises(ValueError):
            parse_size(bad)


# --- host (v1 limits on this hybrid machine) ---------------------------------------------------

def _v1_memory() -> bool:
    try:
        with open("/proc/self/cgroup") as f:
            return any(":memory:" in line for line in f)
    except OSError:
        return False


host = pytest.mark.skipif(not (is_root and _v1_memory()),
                          reason="needs root and a v1 memory hierarchy (hybrid or v1 host)")


@host
def test_oom_killed_and_reported(write_profile):
    case_oom_killed_and_reported(write_profile)


@host
def test_fork_bomb_contained(write_profile):
    case_fork_bomb_contained(write_profile)


@host
def test_cpu_quota(write_profile):
    case_cpu_quota(write_profile)


@host
def test_unlimited_cpu_is_faster(write_profile):
    case_unlimited_cpu_is_faster(write_profile)


@host
def test_v1_limits_visible_inside(write_profile):
    """The v1 files the limits were written to, read by the workload itself."""
    prof = limits_profile(write_profile, 'cpu_weight = 200')
    code = CGFILE + r'''
for ctrl, name in (("memory", "memory.limit_in_bytes"), ("memory", "memory.memsw.limit_in_bytes"),
                   ("pids", "pids.max"), ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
                   ("cpu", "cpu.shares")):
    print(name, open(cgfile(ctrl, name)).read().strip())
print("v2", [l for l in open("/proc/self/cgroup") if l.startswith("0::")][0].strip())
'''
    r = run_secrun("-v", "--profile", prof, "--", PY, "-c", code)
    assert r.rc == 0, r
    vals = dict(line.split(None, 1) for line in r.out.splitlines())
    assert vals["memory.limit_in_bytes"] == str(50 << 20)
    assert vals["memory.memsw.limit_in_bytes"] == str(50 << 20)  # swap_max defaults to 0
    assert vals["pids.max"] == "20"
    assert vals["cpu.cfs_quota_us"] == "20000" and vals["cpu.cfs_period_us"] == "100000"
    assert vals["cpu.shares"] == "2048"
    assert "/secrun-" in vals["v2"]  # tracked in the unified tree too
    # -v names the groups and the limits
    assert "hybrid layout" in r.err and "/secrun-" in r.err, r
    assert "memory_max=50M" in r.err and "pids_max=20" in r.err and "cpu_max=0.2" in r.err


def audit_facts(prof):
    """The cgroups plugin's audit rows for a profile, and the ``expect`` facts they claim about
    cgroup files (``cgroup.locked``, the run's lock, is read by the auditor, not from a file;
    see tests/host/test_supervision.py)."""
    from secrun import plan as _plan
    from secrun.audit.planned import plan_rows

    rows, _, _ = plan_rows(_plan.build([prof]))
    rows = [row for row in rows if row["plugin"] == "cgroups"]
    facts = {}
    for row in rows:
        facts.update(row.get("expect", {}))
    facts.pop("cgroup.locked", None)
    return rows, facts


@host
def test_audit_expectations_hold_inside(write_profile):
    """The audit's ``expect`` facts are exactly what the sandbox observes."""
    prof = limits_profile(write_profile)
    rows, facts = audit_facts(prof)
    assert "cgroup.memory.limit_in_bytes" in facts and "cgroup.pids.max" in facts, rows
    ctrl = {"memory": "memory", "pids": "pids", "cpu": "cpu"}
    code = CGFILE + "import json, sys\nfor f in json.loads(sys.argv[1]):\n" \
        "    print(f, open(cgfile(f.split('.')[0], f)).read().strip())\n"
    names = [f.split(".", 1)[1] for f in facts]
    assert all(n.split(".")[0] in ctrl for n in names)
    import json

    r = run_secrun("--profile", prof, "--", PY, "-c", code, json.dumps(names))
    assert r.rc == 0, r
    seen = {"cgroup." + k: v for k, v in (line.split(None, 1) for line in r.out.splitlines())}
    assert seen == facts


@host
def test_no_leftovers(write_profile):
    case_no_leftovers(write_profile)


@host
def test_sigterm_leaves_nothing(write_profile):
    case_sigterm_leaves_nothing(write_profile)


@host
def test_sigkill_of_workload_leaves_nothing(write_profile):
    case_sigkill_of_workload_leaves_nothing(write_profile)


@host
def test_gc_removes_orphans(write_profile):
    case_gc_removes_orphans(write_profile)


@host
def test_tracking_only_group_kills_leftovers(write_profile):
    case_tracking_only_group_kills_leftovers(write_profile)


@host
def test_limit_below_usage(write_profile):
    case_limit_below_usage(write_profile)


@host
def test_cached_launch_imports_only_the_stages(write_profile, tmp_path):
    # hybrid here: the v1 groups carry the limits, the v2 group tracks the run
    case_cached_launch_imports_only_the_stages(write_profile, tmp_path / "cache")


def _own_v2_dir():
    """The cgroup2 directory of this process (hybrid: under the unified mount), or None."""
    mnt = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                mnt = left.split()[4]
                break
    with open("/proc/self/cgroup") as f:
        own = [ln.rstrip("\n")[3:] for ln in f if ln.startswith("0::")]
    return mnt.rstrip("/") + own[0].rstrip("/") if mnt and own else None


@host
def test_process_that_left_the_v2_group_is_still_killed(write_profile):
    """Cleanup removes the v2 (tracking) group first and, when that succeeds at once, removes
    the v1 groups with one rmdir each.  A process that moved itself out of the v2 group but is
    still in the v1 groups (root may do that without a cgroup namespace) must make that rmdir
    fall back to killing it: nothing of the run survives, no group is left."""
    v2 = _own_v2_dir()
    if v2 is None:
        pytest.skip("no cgroup2 mount")
    prof = limits_profile(write_profile)
    script = f"sleep 300 >/dev/null 2>&1 & echo $! > {v2}/cgroup.procs && echo $!"
    p = subprocess.Popen([SECRUN, "--profile", prof, "--", "sh", "-c", script],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    sleeper = int(out.split()[0])
    try:
        with open(f"/proc/{sleeper}/cgroup") as f:
            # it did leave the run's v2 group (or is already gone)
            assert not any(ln.startswith("0::") and "/secrun-" in ln for ln in f)
    except FileNotFoundError:
        pass
    assert not alive(sleeper), "the escaped process survived the run"
    assert secrun_groups({p.pid}) == []


# --- rootless / unwritable trees ---------------------------------------------------------------

@pytest.fixture
def unwritable_parent():
    """A group owned by nobody (mode 755) under our own cgroup in every hierarchy that the
    limits need: root without CAP_DAC_OVERRIDE cannot create anything in it."""
    name = f"secrun-test-{os.getpid()}-{os.urandom(3).hex()}"
    made = []
    own = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in (ctrls.split(",") if ctrls else ["unified"]):
                own[c] = path
    for c in ("memory", "pids", "cpu", "unified"):
        base = os.path.join(CGROOT, c)
        if not os.path.ismount(base) and c == "unified":
            base = CGROOT
        if c not in own or not os.path.isdir(base):
            continue
        d = os.path.join(base + own[c], name)
        os.mkdir(d)
        os.chown(d, 65534, 65534)
        made.append(d)
    yield name, made
    for d in made:
        os.rmdir(d)


NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all", "--"]


@host
def test_unwritable_parent_required_fails(write_profile, unwritable_parent):
    name, made = unwritable_parent
    prof = write_profile(f"""
        [cgroups]
        parent = "{name}"
        memory_max = "50M"
        pids_max = 20
        """)
    cp = subprocess.run([*NO_DAC, SECRUN, "--profile", prof, "--", "echo", "ran"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 125, cp
    assert "ran" not in cp.stdout
    assert "stage 'prepare' failed in plugin 'cgroups'" in cp.stderr, cp.stderr
    assert name in cp.stderr and "Permission denied" in cp.stderr, cp.stderr
    assert all(os.listdir(d) == [] or not any(x.startswith("secrun-") for x in os.listdir(d))
               for d in made)


@host
def test_unwritable_parent_best_effort_reported(write_profile, unwritable_parent):
    name, made = unwritable_parent
    prof = write_profile(f"""
        [cgroups]
        required = false
        parent = "{name}"
        memory_max = "50M"
        """)
    cp = subprocess.run([*NO_DAC, SECRUN, "--profile", prof, "--", "echo", "ran"],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp
    assert cp.stdout == "ran\n"
    assert "warning" in cp.stderr and "best-effort" in cp.stderr and name in cp.stderr, cp.stderr


def _nobody_can_run_secrun() -> bool:
    cp = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                         SECRUN, "--version"], capture_output=True)
    return cp.returncode == 0


@pytest.mark.rootless
@needs_root
def test_rootless_required_and_best_effort():
    if not _nobody_can_run_secrun():
        pytest.skip("the venv's interpreter is not executable by nobody (it lives under /root)")
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="secrun-cg-rootless-")  # pytest's tmp_path is root-only
    try:
        os.chmod(d, 0o755)
        req, best = os.path.join(d, "req.toml"), os.path.join(d, "best.toml")
        with open(req, "w") as f:
            f.write('[cgroups]\nmemory_max = "50M"\n')
        with open(best, "w") as f:
            f.write('[cgroups]\nrequired = false\nmemory_max = "50M"\n')
        env = {"XDG_CACHE_HOME": os.path.join(d, "no-cache")}
        r = run_secrun("--profile", req, "--", "echo", "ran", user="nobody", env=env)
        assert r.rc == 125 and "ran" not in r.out, r
        assert "plugin 'cgroups'" in r.err and "no write access" in r.err, r
        r = run_secrun("--profile", best, "--", "echo", "ran", user="nobody", env=env)
        assert r.rc == 0 and r.out == "ran\n", r
        assert "best-effort" in r.err and "Permission denied" in r.err, r
    finally:
        shutil.rmtree(d)


def test_warmup_helper_holds_nothing_of_secruns(tmp_path):
    """The cgroup-migration warm-up helper (a root /bin/sh the supervisor spawns in prepare)
    gets its pipe as stdin, /dev/null as stdout and stderr, and nothing else: no descriptor
    secrun or its caller had open, no signal left ignored; and it writes only once released."""
    import signal

    from secrun.plugins import cgroups

    extra = os.open(str(tmp_path), os.O_RDONLY)  # a descriptor the helper must not inherit
    target = tmp_path / "procs"
    target.write_text("")
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        st = {"warm": cgroups._start_warmup(str(target))}
    finally:
        signal.signal(signal.SIGPIPE, old)
        os.close(extra)
    pid, _w = st["warm"]
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until it waits in `read`
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "S":
                    break
            time.sleep(0.01)
        fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as f:
            sigign = int(next(x for x in f if x.startswith("SigIgn:")).split()[1], 16)
        assert fds == [0, 1, 2], fds
        assert not sigign & (1 << (signal.SIGPIPE - 1)), hex(sigign)
        assert target.read_text() == ""  # not released yet: no write
        cgroups._release_warmup(st, go=True)
        cgroups._join_warmup(st)
        assert target.read_text().strip() == "0"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
