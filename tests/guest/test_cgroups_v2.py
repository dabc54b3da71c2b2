"""The ``cgroups`` plugin's v2 implementation, in the user-mode-linux guest (pure cgroup v2 with
the cpu, io, memory and pids controllers; see ``tests/guest/run-guest-suites``).

The cases are those of ``tests/host/test_cgroups.py`` (shared ``case_*`` functions), here against
``memory.max``, ``pids.max``, ``cpu.max``, ``memory.events`` and ``cgroup.kill``.
"""

import os
import subprocess

import pytest
from test_cgroups import (
    CGFILE,
    PY,
    audit_facts,
    case_cached_launch_imports_only_the_stages,
    case_cpu_quota,
    case_fork_bomb_contained,
    case_gc_removes_orphans,
    case_limit_below_usage,
    case_no_leftovers,
    case_oom_killed_and_reported,
    case_sigkill_of_workload_leaves_nothing,
    case_sigterm_leaves_nothing,
    case_tracking_only_group_kills_leftovers,
    case_unlimited_cpu_is_faster,
    limits_profile,
    secrun_groups,
)

from support import SECRUN, is_root, run_secrun

CG = "/sys/fs/cgroup"


def _pure_v2() -> bool:
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().split()
        with open(os.path.join(CG, "cgroup.controllers")) as f:
            ctrls = f.read().split()
    except OSError:
        return False
    return lines == [lines[0]] and lines[0].startswith("0::") and \
        {"memory", "pids", "cpu"} <= set(ctrls)


pytestmark = [
    pytest.mark.cgroup2,
    pytest.mark.skipif(not (is_root and _pure_v2()),
                       reason="needs root on a pure cgroup v2 host with memory, pids and cpu "
                              "(the user-mode-linux guest: tests/guest/run-guest-suites)"),
]


def test_oom_killed_and_reported(write_profile):
    case_oom_killed_and_reported(write_profile)


def test_fork_bomb_contained(write_profile):
    case_fork_bomb_contained(write_profile)


def test_cpu_quota(write_profile):
    case_cpu_quota(write_profile)


def test_unlimited_cpu_is_faster(write_profile):
    case_unlimited_cpu_is_faster(write_profile)


def test_v2_limits_visible_inside(write_profile):
    """The v2 files the limits were written to, read by the workload itself; the plugin
    enabled the controllers in the parent's cgroup.subtree_control as a delegating manager."""
    prof = limits_profile(write_profile, "cpu_weight = 200")
    code = CGFILE + r'''
for name in ("memory.max", "memory.swap.max", "pids.max", "cpu.max", "cpu.weight"):
    print(name, open(cgfile("", name)).read().strip())
own = open("/proc/self/cgroup").read().strip()
print("group", own)
parent = os.path.dirname(cgfile("", "cgroup.procs").rsplit("/", 1)[0])
print("subtree", " ".join(sorted(open(parent + "/cgroup.subtree_control").read().split())))
'''
    r = run_secrun("-v", "--profile", prof, "--", PY, "-c", code)
    assert r.rc == 0, r
    vals = dict(line.split(None, 1) for line in r.out.splitlines())
    assert vals["memory.max"] == str(50 << 20)
    assert vals["memory.swap.max"] == "0"
    assert vals["pids.max"] == "20"
    assert vals["cpu.max"] == "20000 100000"
    assert vals["cpu.weight"] == "200"
    assert vals["group"].startswith("0::/secrun-"), r
    assert {"cpu", "memory", "pids"} <= set(vals["subtree"].split()), r
    assert "v2 layout" in r.err and "memory_max=50M" in r.err, r


def test_audit_expectations_hold_inside(write_profile):
    prof = limits_profile(write_profile)
    rows, facts = audit_facts(prof)
    for row in rows:
        assert row["status"] in ("enforced", "not-configured"), row
    assert facts["cgroup.memory.max"] == str(50 << 20) and facts["cgroup.cpu.max"], facts
    code = CGFILE + "import sys\nfor f in sys.argv[1:]:\n" \
        "    print(f, open(cgfile('', f)).read().strip())\n"
    r = run_secrun("--profile", prof, "--", PY, "-c", code,
                   *[f.split(".", 1)[1] for f in facts])
    assert r.rc == 0, r
    seen = {"cgroup." + k: v for k, v in (line.split(None, 1) for line in r.out.splitlines())}
    assert seen == facts


def test_no_leftovers(write_profile):
    # A launch costs ~0.85 s under user-mode-linux (its system calls are slow), so the guest
    # runs 50 sequential launches; the host suite runs the full 200 (same cleanup code, v1).
    case_no_leftovers(write_profile, sequential=50, concurrent=20)


def test_sigterm_leaves_nothing(write_profile):
    case_sigterm_leaves_nothing(write_profile)


def test_sigkill_of_workload_leaves_nothing(write_profile):
    case_sigkill_of_workload_leaves_nothing(write_profile)


def test_gc_removes_orphans(write_profile):
    case_gc_removes_orphans(write_profile)


def test_limit_below_usage(write_profile):
    case_limit_below_usage(write_profile)


def test_cached_launch_imports_only_the_stages(write_profile, tmp_path):
    case_cached_launch_imports_only_the_stages(write_profile, tmp_path / "cache")


@pytest.fixture
def delegated():
    """A delegated subtree /secrun-test-N with the controllers available (enabled at the root),
    as a service manager would hand one to secrun."""
    d = os.path.join(CG, f"secrun-test-{os.getpid()}")
    with open(os.path.join(CG, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids +cpu")
    os.mkdir(d)
    yield d
    for root, _dirs, _ in os.walk(d, topdown=False):
        os.rmdir(root)


def test_named_parent(write_profile, delegated):
    prof = limits_profile(write_profile, f'parent = "{delegated[len(CG):]}"')
    r = run_secrun("--profile", prof, "--", "cat", "/proc/self/cgroup")
    assert r.rc == 0, r
    assert r.out.startswith(f"0::{delegated[len(CG):]}/secrun-"), r
    assert os.listdir(delegated) and not [x for x in os.listdir(delegated)
                                          if x.startswith("secrun-")]


def test_parent_with_processes_is_refused_clearly(write_profile, delegated):
    """cgroup v2's no-internal-processes rule: controllers cannot be enabled below a group
    that holds processes; the launch stops naming the file and the reason."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(delegated, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        prof = limits_profile(write_profile, f'parent = "{delegated[len(CG):]}"')
        r = run_secrun("--profile", prof, "--", "echo", "ran")
        assert r.rc == 125 and "ran" not in r.out, r
        assert f"{delegated}/cgroup.subtree_control" in r.err, r
        assert "no internal processes" in r.err, r
    finally:
        sleeper.kill()
        sleeper.wait()
    assert secrun_groups() == [] or all(not g.startswith(delegated) for g in secrun_groups())


def test_an_ordinary_user_with_a_delegated_subtree_gets_real_groups(delegated):
    """Delegation as a service manager does it (systemd's user@UID.service, a Delegate=yes
    scope): a subtree owned by the user, with the controllers enabled in it, and the user's own
    processes in a leaf of it.  secrun run by that user with [cgroups].parent naming the
    subtree makes the run's group there, with real limits, and no substitutes."""
    uid = 4242
    caller = os.path.join(delegated, "caller")
    os.mkdir(caller)
    with open(os.path.join(delegated, "cgroup.subtree_control"), "w") as f:
        f.write("+memory +pids")
    for path in (delegated, caller):  # as systemd delegates: the directory and its files
        for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(os.path.join(path, name), uid, uid)
    import pathlib
    import shutil
    import tempfile

    tmp = pathlib.Path(tempfile.mkdtemp(dir="/tmp"))  # (pytest's own is root's alone)
    tmp.chmod(0o755)
    prof = tmp / "deleg.toml"
    prof.write_text(f'extends = ["strict"]\n[cgroups]\nparent = "{delegated[len(CG):]}"\n'
                    f'pids_max = 20\nsubstitutes = false\n')
    prof.chmod(0o644)
    bomb = ("import os, time\nn = 0\ntry:\n    for _ in range(100):\n"
            "        if os.fork() == 0:\n            time.sleep(3)\n            os._exit(0)\n"
            "        n += 1\nexcept OSError as e:\n    print('EAGAIN' if e.errno == 11 else e)\n"
            "print(n, open('/proc/self/cgroup').read().strip())\n")
    # the caller's shell moves itself into its leaf (as root), then becomes the user
    cmd = ["sh", "-c", f'echo $$ > {caller}/cgroup.procs && exec "$@"', "sh",
           "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all", "--", SECRUN, "-p", str(prof), "--", "python3", "-c", bomb]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
        audit = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                "--clear-groups", "--", SECRUN, "audit", "-p", str(prof),
                                "--format", "json"], capture_output=True, text=True,
                               timeout=120, cwd="/")
    finally:
        shutil.rmtree(tmp)
    assert r.returncode == 0, r
    assert "substituted" not in r.stderr, r.stderr
    out = r.stdout.split("\n")
    assert out[0] == "EAGAIN", r
    forked, group = out[1].split()
    assert int(forked) < 20, r  # pids.max = 20 counts the init and the workload too
    assert group == "0::/", r  # (inside its cgroup namespace: the run's own group is its root)
    leftovers = [x for x in os.listdir(delegated) if x.startswith("secrun-")]
    assert leftovers == [], leftovers
    rows = {c["control"]: c for c in __import__("json").loads(audit.stdout)["controls"]
            if c["plugin"] == "cgroups"}
    assert rows["cgroup pids limit"]["status"] == "enforced", rows


def test_a_user_inside_its_systemd_delegation_gets_real_groups_without_naming_it():
    """systemd's layout for a user's own services: user.slice/user-U.slice/user@U.service is
    delegated to U (owned by it, controllers enabled), its processes sit in scopes below.  A
    launch from such a scope with the default [cgroups].parent makes the run's group under
    user@U.service by itself: real limits, no substitutes."""
    uid = 4242
    top = os.path.join(CG, "user.slice")
    made_top = not os.path.isdir(top)
    user_slice = os.path.join(top, f"user-{uid}.slice")
    service = os.path.join(user_slice, f"user@{uid}.service")
    scope = os.path.join(service, "app.slice", "term.scope")
    os.makedirs(scope)
    try:
        for d in (CG, top, user_slice, service, os.path.dirname(scope)):
            with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                f.write("+memory +pids +cpu")  # (user@.service's Delegate= list)
        for d in (service, os.path.dirname(scope), scope):  # what Delegate=yes hands over
            for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                os.chown(os.path.join(d, name), uid, uid)
        cmd = ["sh", "-c", f'echo $$ > {scope}/cgroup.procs && exec "$@"', "sh",
               "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
               SECRUN, "-v", "-p", "strict", "--set", "cgroups.pids_max=20", "--", "true"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
        assert r.returncode == 0, r
        assert "substituted" not in r.stderr, r.stderr
        assert f"groups {service}/secrun-" in r.stderr, r.stderr
        assert not [x for x in os.listdir(service) if x.startswith("secrun-")]
    finally:
        for root, _dirs, _ in os.walk(user_slice, topdown=False):
            os.rmdir(root)
        if made_top:
            os.rmdir(top)


def test_tracking_only_group_kills_leftovers(write_profile):
    case_tracking_only_group_kills_leftovers(write_profile)


# --- liveness by the run's lock, leftovers of a killed secrun (tests/host/test_cgroups_gc.py)

@pytest.mark.parametrize("ns_pid", [1, 2])
def test_gc_keeps_a_live_run_in_a_pid_namespace(write_profile, ns_pid):
    from test_cgroups_gc import case_gc_keeps_a_live_run_in_a_pid_namespace

    case_gc_keeps_a_live_run_in_a_pid_namespace(write_profile, ns_pid)


@pytest.mark.parametrize("by", ["launch", "gc"])
def test_killed_supervisor_leftovers_removed(write_profile, by):
    from test_cgroups_gc import case_killed_supervisor_leftovers_removed

    case_killed_supervisor_leftovers_removed(write_profile, by)


def test_strict_sys_fs_cgroup_is_the_runs_own_group(write_profile, tmp_path):
    """On pure cgroup v2, strict's /sys/fs/cgroup is a read-only cgroup2 mount rooted at the
    run's own group (its cgroup namespace): no host group, no other run's, and nothing
    writable.  (time = false: this guest kernel has no time namespace.)"""
    prof = write_profile("""
        extends = ["strict"]
        [namespaces]
        time = false
        """)
    code = ("import os\n"
            "print('cgroup', open('/proc/self/cgroup').read().strip())\n"
            "print('dirs', sorted(d for d in os.listdir('/sys/fs/cgroup') "
            "if os.path.isdir('/sys/fs/cgroup/' + d)))\n"
            "print('procs', open('/sys/fs/cgroup/cgroup.procs').read().split())\n"
            "try:\n    os.mkdir('/sys/fs/cgroup/x')\n    print('mkdir ok')\n"
            "except OSError as e:\n    print('mkdir', e.errno)\n")
    # (the system's python3: strict covers /var/tmp, where a checkout and its venv may be)
    r = run_secrun("--profile", prof, "--", "python3", "-I", "-c", code, cwd="/")
    assert r.rc == 0, r
    out = dict(line.split(" ", 1) for line in r.out.splitlines())
    assert out["cgroup"] == "0::/", r
    assert out["dirs"] == "[]", r
    assert all(int(p) < 20 for p in eval(out["procs"])), r  # the sandbox's own pids only
    assert out["mkdir"] in ("30", "13", "1"), r  # EROFS (or EACCES/EPERM)
