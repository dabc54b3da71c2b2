"""Liveness of a run's cgroups and the cleanup of dead runs' leftovers (``plugins/cgroups/``,
``secrun cgroups gc``), on this host's real kernel.

A live run is one whose supervisor holds the lock (flock) on its group directories, whatever
pid namespace it runs in: ``gc`` never kills it, even when the pid in the group's name is that
of another process on the host (secrun in ``unshare --pid --fork`` is pid 1 or 2 there).  A
supervisor killed with SIGKILL leaves its groups behind: the next launch removes the empty
ones next to its own groups, and ``gc`` kills what is left and removes the rest.

The ``case_*`` functions only use what every layout has, so ``tests/guest/test_cgroups_v2.py`` runs
them in the pure cgroup v2 guest too.
"""

import fcntl
import os
import signal
import subprocess
import time

import pytest
from test_cgroups import alive, limits_profile

from support import SECRUN, need, needs_root, run_secrun

CGROOT = "/sys/fs/cgroup"

pytestmark = needs_root


# --- looking at processes and groups from the host ----------------------------------------------

def cgroup_mounts() -> dict:
    """{controller: mount point} of this mount namespace ("" for the cgroup2 mount)."""
    out: dict = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields[0] == "cgroup2":
                out.setdefault("", fields[4])
            elif rfields[0] == "cgroup":
                for c in rfields[2].split(","):
                    out.setdefault(c, fields[4])
    return out


def groups_of(pid) -> list:
    """The host paths of the ``secrun-*`` groups process ``pid`` is in, in every hierarchy."""
    mounts = cgroup_mounts()
    found = set()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if "/secrun-" not in path:
                continue
            ctrl = ctrls.split(",")[0] if ctrls else ""
            if ctrl in mounts:
                # keep the path down to the run's own group (the workload may make groups below)
                parts = path.split("/")
                top = next(i for i, p in enumerate(parts) if p.startswith("secrun-"))
                found.add(mounts[ctrl].rstrip("/") + "/".join(parts[:top + 1]))
    return sorted(found)


def every_secrun_group() -> set:
    found = set()
    for mnt in set(cgroup_mounts().values()):
        for root, dirs, _files in os.walk(mnt):
            keep = []
            for d in dirs:
                (found.add(os.path.join(root, d)) if d.startswith("secrun-") else keep.append(d))
            dirs[:] = keep
    return found


def members(group) -> list:
    out = []
    for root, _dirs, _files in os.walk(group):
        try:
            with open(os.path.join(root, "cgroup.procs")) as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def children() -> dict:
    """{ppid: [pid]} of every process."""
    out: dict = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(name))
    return out


def descendants(pid) -> list:
    kids = children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def nspids(pid) -> list:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return []


def wait_for(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill_members(groups):
    """SIGKILL whatever is left in ``groups`` until they are empty."""
    def empty():
        left = [p for g in groups if os.path.isdir(g) for p in members(g)]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return not left
    wait_for(empty, what="the groups to be empty")


class Run:
    """A background secrun whose workload is ``sleep TAG``: its Popen, supervisor pid, the
    sleep's pid and the run's groups."""

    def __init__(self, argv, tag, **kw):
        self.tag = tag
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
        line = self.p.stdout.readline()
        assert line.startswith(b"ready"), (line, self.p.stderr.read()
                                           if self.p.poll() is not None else b"")
        want = b"sleep\0" + tag.encode() + b"\0"
        wait_for(lambda: self._find(want), what="the workload")
        self.groups = groups_of(self.sleep)
        assert self.groups, "the run should have groups"
        self.supervisor = supervisor_of(self.p.pid)

    def _find(self, want):
        for d in descendants(self.p.pid):
            if cmdline(d) == want:
                self.sleep = d
                return True
        return False

    def kill_all(self):
        """SIGKILL everything of the run (used in finally blocks)."""
        for d in reversed([self.p.pid, *descendants(self.p.pid)]):
            try:
                os.kill(d, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()


def is_secrun(pid) -> bool:
    """secrun itself (its console script among the first words), not a shell running it."""
    return any(a.endswith(b"/secrun") for a in cmdline(pid).split(b"\0")[:3])


def supervisor_of(root) -> int:
    """The topmost secrun process at or below ``root`` (its forked children are secrun too)."""
    procs = [root, *descendants(root)]
    secruns = [d for d in procs if is_secrun(d)]
    kids = children()
    below = {c for d in secruns for c in kids.get(d, [])}
    top = [d for d in secruns if d not in below]
    assert len(top) == 1, (top, [cmdline(d) for d in procs])
    return top[0]


def workload(tag):
    return ["sh", "-c", f"echo ready; exec sleep {tag}"]


def unique_tag():
    """A duration no other process is sleeping: how the test finds the run's workload."""
    return f"{3000 + os.getpid() % 1000}.{int.from_bytes(os.urandom(3), 'big')}7"


def start_in_pid_namespace(profile, ns_pid):
    """secrun started as pid ``ns_pid`` (1 or 2) of a new pid namespace."""
    tag = unique_tag()
    inner = [SECRUN, "-p", profile, "--", *workload(tag)]
    if ns_pid == 1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *inner]
    else:  # sh is pid 1 and waits for secrun (not its last command: no exec)
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", '"$@"; exit $?',
                "sh", *inner]
    return Run(argv, tag)


def start_on_host(profile):
    tag = unique_tag()
    return Run([SECRUN, "-p", profile, "--", *workload(tag)], tag)


# --- the cases (shared with the v2 guest suite) -------------------------------------------------

def case_gc_keeps_a_live_run_in_a_pid_namespace(write_profile, ns_pid):
    """``gc`` from the host while secrun runs as pid 1 or 2 of its own pid namespace (host pids
    1 and 2 are the host's init and kthreadd): the run and its groups stay.  Once that run is
    killed, ``gc`` removes its groups and still nothing of a live run on the host."""
    need("unshare")
    prof = limits_profile(write_profile)
    host = start_on_host(prof)
    ns = start_in_pid_namespace(prof, ns_pid)
    try:
        assert nspids(ns.supervisor)[-1] == ns_pid, nspids(ns.supervisor)
        assert all(os.path.basename(g).startswith(f"secrun-{ns_pid}-") for g in ns.groups)
        r = run_secrun("cgroups", "gc")
        assert r.rc == 0, r
        assert alive(ns.sleep) and ns.p.poll() is None, f"gc killed a live run\n{r.out}"
        assert all(os.path.isdir(g) for g in ns.groups), r.out
        assert all(os.path.isdir(g) for g in host.groups) and alive(host.sleep)
        listed = run_secrun("cgroups", "list")
        for g in ns.groups:
            assert f"{g}  in use" in listed.out, listed.out

        # The namespace's run dies (its pid namespace goes, secrun with it: no cleanup).
        os.kill(nspids_host_init(ns), signal.SIGKILL)
        ns.p.wait(timeout=30)
        wait_for(lambda: not alive(ns.sleep), what="the dead run's workload to go")
        kill_members(ns.groups)
        r = run_secrun("cgroups", "gc")
        assert r.rc == 0, r
        assert not any(os.path.isdir(g) for g in ns.groups), r.out
        assert all(os.path.isdir(g) for g in host.groups) and alive(host.sleep), \
            "gc removed a live run's groups"
    finally:
        ns.kill_all()
        host.p.send_signal(signal.SIGTERM)  # a clean exit: removes its own groups
        host.p.communicate(timeout=30)
    assert not any(os.path.isdir(g) for g in host.groups)


def nspids_host_init(run):
    """The host pid of pid 1 of the namespace ``run`` was started in (unshare's child)."""
    return children()[run.p.pid][0]


def case_killed_supervisor_leftovers_removed(write_profile, by):
    """``secrun`` SIGKILLed (the supervisor only): once its workload is gone, the next launch
    (``by="launch"``) or ``secrun cgroups gc`` (``by="gc"``) removes every group of that run
    in every hierarchy."""
    prof = limits_profile(write_profile)
    run = start_on_host(prof)
    try:
        os.kill(run.supervisor, signal.SIGKILL)
        run.p.wait(timeout=30)
        assert all(os.path.isdir(g) for g in run.groups)
        # The workload should die with its supervisor (core/launch.py); if it does not yet,
        # the test ends it: the cleanup of the groups is what is tested here.
        try:
            wait_for(lambda: not alive(run.sleep), timeout=3.0)
        except AssertionError:
            pass
        kill_members(run.groups)
        if by == "launch":
            r = run_secrun("-p", prof, "--", "true")
        else:
            r = run_secrun("cgroups", "gc")
        assert r.rc == 0, r
        left = [g for g in run.groups if os.path.isdir(g)]
        assert not left, f"left after the {by}: {left}\n{r.out}{r.err}"
    finally:
        run.kill_all()


# --- host tests --------------------------------------------------------------------------------

@pytest.mark.parametrize("ns_pid", [1, 2])
def test_gc_keeps_a_live_run_in_a_pid_namespace(write_profile, ns_pid):
    case_gc_keeps_a_live_run_in_a_pid_namespace(write_profile, ns_pid)


@pytest.mark.parametrize("by", ["launch", "gc"])
def test_killed_supervisor_leftovers_removed(write_profile, by):
    case_killed_supervisor_leftovers_removed(write_profile, by)


def test_strict_run_in_a_pid_namespace_survives_gc():
    """The same with the bundled strict profile, pid 1: what the issue reproduced."""
    need("unshare")
    ns = start_in_pid_namespace("strict", 1)
    try:
        r = run_secrun("cgroups", "gc")
        assert r.rc == 0, r
        assert alive(ns.sleep) and ns.p.poll() is None, f"gc killed a live run\n{r.out}"
        assert all(os.path.isdir(g) for g in ns.groups)
    finally:
        ns.kill_all()
    kill_members(ns.groups)
    run_secrun("cgroups", "gc")
    assert not any(os.path.isdir(g) for g in ns.groups)


def test_the_lock_stays_with_the_supervisor(write_profile):
    """The supervisor holds a flock on each of its group directories; no process of the
    sandbox (its init, the workload) has a descriptor of any of them."""
    run = start_on_host("strict")
    try:
        with open("/proc/locks") as f:
            flocks = [ln.split() for ln in f if " FLOCK " in ln]
        held = {int(x[4]) for x in flocks if x[3] == "WRITE"}
        assert run.supervisor in held, "the supervisor holds no flock"
        fd_dir = f"/proc/{run.supervisor}/fd"
        targets = {os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)}
        assert set(run.groups) <= targets, (run.groups, targets)
        for d in descendants(run.supervisor):
            fd_dir = f"/proc/{d}/fd"
            try:
                links = [os.readlink(os.path.join(fd_dir, fd)) for fd in os.listdir(fd_dir)]
            except OSError:
                continue
            assert not [t for t in links if t.startswith(CGROOT)], (d, cmdline(d), links)
        # inside: no descriptor of a cgroup directory
        r = run_secrun("-p", "strict", "--", "ls", "-l", "/proc/self/fd/")
        assert r.rc == 0 and "/sys/fs/cgroup" not in r.out and "secrun-" not in r.out, r
    finally:
        run.kill_all()
    kill_members(run.groups)
    run_secrun("cgroups", "gc")


# --- gc and the launch's sweep on hand-made groups ------------------------------------------------

@pytest.fixture
def pids_parent():
    """The directory a launch from this process makes its pids group in (here: v1 pids)."""
    mounts = cgroup_mounts()
    if "pids" not in mounts:
        pytest.skip("no v1 pids hierarchy")
    with open("/proc/self/cgroup") as f:
        own = next(ln.rstrip("\n").split(":", 2)[2] for ln in f
                   if ln.split(":")[1].split(",").count("pids"))
    return os.path.join(mounts["pids"], own.lstrip("/"))


def name(pid, hexlen):
    return f"secrun-{pid}-{os.urandom(hexlen // 2).hex()}"


def test_gc_decides_by_the_lock_not_the_pid(pids_parent):
    """Groups made by hand in the pids hierarchy:

    - ``locked_alive``: named after pid 1 (not a secrun), a process in it, its lock held (as a
      supervisor in a pid namespace holds it): left alone, the process alive;
    - ``lookalike``: named after a live process whose command line says secrun, empty, lock
      free: removed (its secrun is gone);
    - ``legacy_busy``: the 8-hex name of groups made before the lock, pid 1, a process in it:
      its liveness cannot be told, so it is left alone and named;
    - ``legacy_empty``: 8 hex, empty: removed.
    Then the lock of ``locked_alive`` is released: gc kills its process and removes it."""
    lookalike_proc = subprocess.Popen(["sh", "-c", "sleep 300", "secrun-lookalike"])
    sleepers = [subprocess.Popen(["sleep", "301"]) for _ in range(2)]
    made = {"locked_alive": name(1, 12), "lookalike": name(lookalike_proc.pid, 12),
            "legacy_busy": name(1, 8), "legacy_empty": name(2 ** 22 + 7, 8)}
    paths = {k: os.path.join(pids_parent, v) for k, v in made.items()}
    fd = None
    try:
        for p in paths.values():
            os.mkdir(p)
        for key, proc in zip(("locked_alive", "legacy_busy"), sleepers, strict=True):
            with open(os.path.join(paths[key], "cgroup.procs"), "w") as f:
                f.write(str(proc.pid))
        fd = os.open(paths["locked_alive"], os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)

        r = run_secrun("cgroups", "gc")
        assert r.rc == 0, r
        assert os.path.isdir(paths["locked_alive"]) and sleepers[0].poll() is None, r.out
        assert not os.path.isdir(paths["lookalike"]), r.out
        assert os.path.isdir(paths["legacy_busy"]) and sleepers[1].poll() is None, r.out
        assert f"left alone {paths['legacy_busy']}" in r.out, r.out
        assert not os.path.isdir(paths["legacy_empty"]), r.out

        os.close(fd)  # the "supervisor" is gone
        fd = None
        r = run_secrun("cgroups", "gc")
        assert r.rc == 0, r
        assert not os.path.isdir(paths["locked_alive"]), r.out
        sleepers[0].wait(timeout=10)  # killed by gc
    finally:
        if fd is not None:
            os.close(fd)
        for proc in [lookalike_proc, *sleepers]:
            proc.kill()
            proc.wait()
        for p in paths.values():
            if os.path.isdir(p):
                kill_members([p])
                os.rmdir(p)


def test_a_launch_removes_empty_unlocked_groups_next_to_its_own(pids_parent, write_profile):
    """The sweep in ``prepare``: an empty group of a dead run (12 hex, lock free) next to the
    run's own goes; a locked one, a busy one and a legacy one stay."""
    sleeper = subprocess.Popen(["sleep", "302"])
    made = {"dead": name(2 ** 22 + 9, 12), "locked": name(2 ** 22 + 11, 12),
            "busy": name(2 ** 22 + 13, 12), "legacy": name(2 ** 22 + 15, 8)}
    paths = {k: os.path.join(pids_parent, v) for k, v in made.items()}
    fd = None
    try:
        for p in paths.values():
            os.mkdir(p)
        with open(os.path.join(paths["busy"], "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        fd = os.open(paths["locked"], os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = run_secrun("-p", limits_profile(write_profile), "--", "true")
        assert r.rc == 0, r
        assert not os.path.isdir(paths["dead"])
        assert os.path.isdir(paths["locked"])
        assert os.path.isdir(paths["busy"]) and sleeper.poll() is None
        assert os.path.isdir(paths["legacy"])
    finally:
        if fd is not None:
            os.close(fd)
        sleeper.kill()
        sleeper.wait()
        for p in paths.values():
            if os.path.isdir(p):
                kill_members([p])
                os.rmdir(p)


def test_sweep_cost_with_nothing_to_clean(pids_parent):
    """What the sweep adds to a launch when there is nothing to remove: one listing of each
    parent directory.  Measured on an empty parent group in each hierarchy a strict run uses:
    well under a millisecond in all (a launch takes tens of milliseconds)."""
    from secrun.plugins.cgroups import lock

    mounts = cgroup_mounts()
    parents = []
    try:
        for ctrl in ("memory", "pids", "cpu", ""):
            if ctrl in mounts:
                d = os.path.join(mounts[ctrl], f"secrun-test-sweep-{os.getpid()}")
                os.mkdir(d)
                parents.append(d)
        lock.sweep(parents)
        best = min(_timed(lambda: lock.sweep(parents)) for _ in range(5))
        assert best < 1e-3, f"{best * 1e6:.0f} us"
    finally:
        for d in parents:
            os.rmdir(d)


def _timed(fn, n=200):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n
