"""The ``cgroups`` plugin: memory, swap, pids, CPU and io limits in a fresh cgroup per run.

Section ``[cgroups]``.  Stages: ``prepare`` (parent, before fork: create the run's group(s) and
write the limits), ``attach`` (parent: move the process that will exec into them while it
builds its filesystem view; it waits for this before its next stage, so the workload runs no
code of its own outside its group), ``cleanup`` (kill whatever is left, remove the
groups, report OOM kills and a hit pids limit).  ``secrun cgroups gc`` removes groups left
behind by a secrun that was SIGKILLed.

Layouts, detected at run time from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``:

- pure cgroup v2: one group in the v2 tree carries the limits (:class:`V2Manager`);
- legacy v1: one group per controller hierarchy (:class:`V1Manager`), the freezer kills;
- hybrid: each controller is used where it is bound (here: v1), and a v2 group in the unified
  tree tracks the run, so ``cgroup.kill`` removes the whole process tree at cleanup.

Both managers have the same interface (:class:`Manager`): ``create``, ``apply``, ``add_task``,
``kill``, ``remove``, ``stats``.  Groups are named ``secrun-<pid>-<12 hex>``; the pid is only
informative (it is namespace-local when secrun runs in a pid namespace).  Whether a run is alive
is told by a lock: the supervisor holds an exclusive ``flock`` on each of its group directories
from right after ``mkdir`` until it has removed them, so the lock is free exactly when the
supervisor is gone (see :func:`make_group`).  ``prepare`` removes the empty groups whose lock is
free next to the run's own (:func:`sweep`), and ``secrun cgroups gc`` kills and removes any
group whose lock is free.  Groups named ``secrun-<pid>-<8 hex>`` were made by a secrun before
the lock existed: gc removes them only when empty.

Every launch imports this module, so it holds the three stages and what they need, and nothing
else: the profile schema, unit parsing, planning, the audit rows and the ``secrun cgroups``
commands live in :mod:`._cgroups_plan`, imported only by the hooks (and error paths) that need
it.  The two managers live here rather than in modules of their own: each extra module costs
a launch ~0.1 ms of import machinery.  Files are read and written with ``os.open``/``os.read``:
a text-mode ``open()`` costs ~80 µs more per file.
"""

import errno  # built into the interpreter, like fcntl
import fcntl  # built into the interpreter; the namespaces plugin loads it on a launch anyway
import os
import sys
import time

from secrun import hookimpl
from secrun.errors import SetupError, SyscallError, errno_text

SECTION = "cgroups"
CPU_PERIOD_US = 100_000
# Controllers (the v2 names; v1 calls io "blkio") each limit needs.
CONTROLLER_OF = {"memory_max": "memory", "swap_max": "memory", "pids_max": "pids",
                 "cpu_max": "cpu", "cpu_weight": "cpu", "io_weight": "io"}
LIMIT_KEYS = ("memory_max", "swap_max", "pids_max", "cpu_max", "cpu_weight", "io_weight")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer", "blkio")


# --- planning, audit and commands (never on the launch path) ----------------------------------

@hookimpl
def secrun_profile_sections():
    from secrun.plugins import _cgroups_plan

    return _cgroups_plan.profile_sections()


@hookimpl
def secrun_compile(ctx):
    from secrun.plugins import _cgroups_plan

    _cgroups_plan.compile_plan(ctx)


@hookimpl
def secrun_audit(ctx):
    from secrun.plugins import _cgroups_plan

    return _cgroups_plan.audit(ctx)


@hookimpl
def secrun_register_commands(cli):
    from secrun.plugins import _cgroups_plan

    _cgroups_plan.register_commands(cli)


def human(n) -> str:
    if n == "max" or n is None:
        return str(n)
    for unit, mult in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n}"


def limits_text(plan) -> str:
    parts = []
    if plan["memory_max"] is not None:
        parts.append(f"memory_max={human(plan['memory_max'])}")
    if plan["swap_max"] is not None:
        parts.append(f"swap_max={human(plan['swap_max'])}")
    if plan["pids_max"] is not None:
        parts.append(f"pids_max={plan['pids_max']}")
    if plan["cpu_max"] is not None:
        q = plan["cpu_max"]
        parts.append("cpu_max=max" if q == "max" else f"cpu_max={q / CPU_PERIOD_US:g} CPUs")
    if plan["cpu_weight"] is not None:
        parts.append(f"cpu_weight={plan['cpu_weight']}")
    if plan["io_weight"] is not None:
        parts.append(f"io_weight={plan['io_weight']}")
    return ", ".join(parts) or "no limits (tracking only)"


# --- the layout of this host -------------------------------------------------------------------

class Layout:
    """Where each cgroup hierarchy is mounted and where secrun sits in it.

    ``v1``: {controller: (mountpoint, own path)} for every mounted v1 controller;
    ``v2``: (mountpoint, own path) of the cgroup2 mount, or None.
    """

    __slots__ = ("v1", "v2")

    def __init__(self, v1, v2):
        self.v1, self.v2 = v1, v2

    @property
    def kind(self) -> str:
        if self.v2 and not self.v1:
            return "v2"
        if self.v1 and self.v2:
            return "hybrid"
        return "v1" if self.v1 else "none"

    def v2_controllers(self, parent_dir) -> set:
        return set(read(os.path.join(parent_dir, "cgroup.controllers")).split())


def detect(pid="self") -> Layout:
    """Read the mount table and our own cgroup membership (no changes)."""
    own_v1, own_v2 = {}, None
    for line in slurp(f"/proc/{pid}/cgroup").splitlines():
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            own_v2 = path
        else:
            for c in ctrls.split(","):
                own_v1[c] = path
    v1: dict = {}
    v2 = None
    for line in slurp(f"/proc/{pid}/mountinfo").splitlines():
        if "cgroup" not in line:
            continue
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, opts = rfields[0], rfields[2]
        if fstype == "cgroup2" and v2 is None and own_v2 is not None:
            v2 = (_unescape(fields[4]), _below(own_v2, _unescape(fields[3])))
        elif fstype == "cgroup":
            for c in opts.split(","):
                if c in V1_CONTROLLERS and c not in v1 and c in own_v1:
                    v1[c] = (_unescape(fields[4]), _below(own_v1[c], _unescape(fields[3])))
    return Layout(v1, v2)


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def _below(path, root):
    """Our cgroup path relative to the mount's root (a mount may show a subtree)."""
    if root == "/" or not root:
        return path
    if path == root:
        return "/"
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")):]
    return path  # not below the mount root: use it as is, mkdir will fail clearly


def parent_dir(mount, own, parent) -> str:
    """The directory the run's group is created in, in one hierarchy."""
    if not parent:
        rel = own
    elif parent.startswith("/"):
        rel = parent
    else:
        rel = own.rstrip("/") + "/" + parent
    return os.path.normpath(mount + "/" + rel.strip("/"))


# --- low-level file access shared by both managers --------------------------------------------

def slurp(path) -> str:
    """The whole content of a procfs/cgroupfs file as text; OSError if it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
        if data:
            more = os.read(fd, 65536)
            while more:
                data += more
                more = os.read(fd, 65536)
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape")


def read(path, default=""):
    try:
        return slurp(path)
    except OSError:
        return default


def put(path, data: bytes) -> None:
    """Write ``data`` to a cgroup control file; OSError as the kernel gives it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write(path, value, key=None, human_value=None) -> None:
    """Write a cgroup control file; a failure names the file (and the profile key)."""
    try:
        put(path, str(value).encode())
    except OSError as e:
        raise err(path, e, key, human_value) from None


def err(path, e, key, hv):
    """The error for a cgroup file that could not be written (or made): keeps ``e.errno``."""
    why = errno_text(e.errno)
    if key:
        why = f"cannot set [cgroups].{key} = {hv}: {why}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why += " (no write access to this cgroup tree: run as root or name a delegated, " \
               "writable [cgroups].parent)"
    return SetupError(path, why, e.errno)


def keyed(path) -> dict:
    """A 'key value' per line file (memory.events, cpu.stat, memory.oom_control) as ints."""
    out = {}
    for line in read(path).splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def number(path):
    """A file holding one integer (memory.peak, pids.peak, cpuacct.usage), or None."""
    try:
        return int(read(path, "0"))
    except ValueError:
        return None


def procs(d) -> list:
    """Pids in group ``d`` and every group below it."""
    out = []
    for root, _dirs, _files in os.walk(d):
        for line in read(os.path.join(root, "cgroup.procs")).split():
            out.append(int(line))
    return out


def remove_group(d, kill) -> None:
    """Remove group ``d``.  One rmdir in the normal case: the kernel removes a group only when
    no process is in it and it has no child group, so success proves both.  Otherwise (a
    member still exiting, a group the workload made below) :func:`rmdir_tree` kills, removes
    deepest first and retries."""
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        rmdir_tree(d, kill=kill)


def rmdir_tree(d, kill=None, timeout=3.0) -> None:
    """Remove group ``d`` and its descendants, deepest first.  A group that is still busy
    (its last processes are exiting) is retried, calling ``kill`` again, until ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        busy = None
        for root, _dirs, _files in os.walk(d, topdown=False):
            try:
                os.rmdir(root)
            except FileNotFoundError:
                pass
            except OSError as e:
                busy = SyscallError(f"rmdir({root})", e.errno)
        if busy is None:
            return
        if time.monotonic() > deadline:
            raise busy
        if kill is not None:
            kill()
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_until(cond, timeout=2.0) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def sigkill_all(pids) -> None:
    for p in pids:
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass


# --- the run's lock on its groups ------------------------------------------------------------
# A group directory locked with flock(LOCK_EX) belongs to a live supervisor.  The lock lives as
# long as the open file description: the supervisor's fd is O_CLOEXEC (never reaches an exec'd
# program) and is closed in every child right after fork (``_close_locks_in_child``), so the
# lock is released exactly when the supervisor exits or is killed, whatever pid namespace it
# runs in.  An ordinary user can open a group directory (0755) and hold its lock too: that only
# makes a dead run's group look alive (it is kept), never a live one dead.

_LOCKS: dict = {}  # group directory -> fd holding its lock (in the supervisor)
_HEX = frozenset("0123456789abcdef")
LOCK_WAIT = 0.5  # seconds a new group's lock may be held by a sweep before it is given up


def _close_locks_in_child() -> None:
    for fd in _LOCKS.values():
        try:
            os.close(fd)  # the parent's reference keeps the lock
        except OSError:
            pass
    _LOCKS.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


def group_name_kind(name: str):
    """What a group name says: ``locked`` for ``secrun-<pid>-<12 hex>``, ``legacy`` for
    ``secrun-<pid>-<8 hex>`` (made before the lock), None for any other name."""
    parts = name.split("-")
    if len(parts) != 3 or parts[0] != "secrun" or not parts[1].isdigit() \
            or not _HEX.issuperset(parts[2]):
        return None
    return {12: "locked", 8: "legacy"}.get(len(parts[2]))


def open_dir(d) -> int:
    return os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def try_lock(fd) -> bool:
    """Take the exclusive lock on an open group directory without waiting."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_dir(d, fd) -> bool:
    try:
        a, b = os.stat(d), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def make_group(d) -> str:
    """Create group directory ``d`` and take its lock, held until :func:`unlock`; returns the
    directory made (another name in the same parent if ``d`` had to be given up).

    Between ``mkdir`` and ``flock`` the new group is empty and unlocked, so a sweep of another
    secrun (or gc) may lock and remove it.  So the lock is taken without waiting forever, and
    then the path must still be the directory locked; otherwise the group is made again under
    a new name."""
    for _ in range(4):
        try:
            os.mkdir(d, 0o755)
        except OSError as e:
            raise err(d, e, None, None) from None
        try:
            fd = open_dir(d)
        except FileNotFoundError:
            d = _renamed(d)  # removed by a sweep already
            continue
        try:
            locked = try_lock(fd) or wait_until(lambda fd=fd: try_lock(fd), timeout=LOCK_WAIT)
            if locked and _same_dir(d, fd):
                _LOCKS[d] = fd
                return d
        except BaseException:
            os.close(fd)
            _rmdir_quietly(d)
            raise
        os.close(fd)
        if not locked:  # held past a sweep's moment by another process: give the name up
            _rmdir_quietly(d)
        d = _renamed(d)
    raise SetupError(d, "the run's group was removed or locked by another process as soon as "
                        "it was made, four times in a row")


def _rmdir_quietly(d) -> None:
    try:
        os.rmdir(d)
    except OSError:
        pass


def _renamed(d) -> str:
    return os.path.join(os.path.dirname(d), new_name())


def unlock(d) -> None:
    fd = _LOCKS.pop(d, None)
    if fd is not None:
        os.close(fd)


def sweep(parents) -> list:
    """Remove the leftover groups of dead runs in ``parents`` (the directories this run's
    groups are made in): every ``secrun-<pid>-<12 hex>`` whose lock is free and that the
    kernel lets go of at once (no process in it, no group below it).  A group that still
    holds something is left for ``secrun cgroups gc``, which kills.  Returns what was removed.
    Costs one directory listing per hierarchy when there is nothing to remove."""
    removed = []
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            # cheap tests first: the parent also lists control files and legacy groups
            if name[-13:-12] != "-" or not name.startswith("secrun-") \
                    or group_name_kind(name) != "locked":
                continue
            d = os.path.join(parent, name)
            try:
                fd = open_dir(d)
            except OSError:
                continue
            try:
                if try_lock(fd):
                    os.rmdir(d)
                    removed.append(d)
            except OSError:
                pass  # busy: processes or groups left in it
            finally:
                os.close(fd)
    return removed


class Manager:
    """One implementation per hierarchy version.  ``dirs`` lists what it created."""

    kind = "?"
    dirs: list

    def create(self) -> None:
        """Make the run's group directories (recording each in ``dirs`` as it is made) and
        take their locks (:func:`make_group`)."""
        raise NotImplementedError

    def parents(self) -> list:
        """The directories the run's groups are made in."""
        raise NotImplementedError

    def apply(self, plan, ctx) -> list:
        """Write the limits of ``plan``; returns [(file, value)] written."""
        raise NotImplementedError

    def add_task(self, pid) -> None:
        """Move process ``pid`` into the group(s)."""
        raise NotImplementedError

    def kill(self) -> None:
        """SIGKILL everything left in the group(s) and wait until they are empty."""
        raise NotImplementedError

    def remove(self) -> None:
        """Remove the group(s), retrying while the last members exit."""
        raise NotImplementedError

    def stats(self, full=True) -> dict:
        """What the run did: oom_kill and pids_max_hits (reported on every run), and with
        ``full`` (``-v``) also pids_peak, memory_peak, cpu_usec."""
        raise NotImplementedError

    def discard(self) -> bool:
        """Remove the group(s) at once if nothing is left in them; True if they are gone.
        Only a manager whose group holds every process of the run implements it."""
        return False


# --- cgroup v1: one directory per controller hierarchy ----------------------------------------
# Files: ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` (memory + swap, where
# swap is accounted), ``pids.max``, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` and
# ``cpu.shares``, ``blkio.bfq.weight``.  Killing a group: freeze it (``freezer.state``), SIGKILL
# every member, thaw; without a freezer, kill members until none is left.  Reports come from
# ``memory.oom_control`` (``oom_kill``), ``pids.events`` (``max``), ``cpuacct.usage``.

def v1_shares(weight: int) -> int:
    return max(2, min(262144, weight * 1024 // 100))


class _Limits:
    """Writes a run's limit files for a manager: ``dir_of(controller)`` is the group directory
    holding that controller's files (None: not available).  A failed write raises when the
    section is required and is reported otherwise; ``done`` lists (path, value) written."""

    def __init__(self, ctx, dir_of):
        self.ctx, self.dir_of = ctx, dir_of
        self.required = ctx.required("cgroups")
        self.done: list = []

    def put(self, ctrl, fname, value, key, hv, if_missing=None):
        d = self.dir_of(ctrl)
        if d is None:
            return
        path = os.path.join(d, fname)
        try:
            put(path, str(value).encode())
        except FileNotFoundError as e:
            if if_missing is not None:
                if_missing()
            else:
                self.fail(path, e, key, hv)
            return
        except OSError as e:
            self.fail(path, e, key, hv)
            return
        self.done.append((path, str(value)))

    def fail(self, path, e, key, hv):
        e = err(path, e, key, hv)
        if self.required:
            raise e
        self.ctx.warn(f"cgroups: best-effort limit not applied: {e}")


class V1Manager(Manager):
    kind = "v1"

    def __init__(self, parents: dict, name: str):
        # {controller: parent directory}; several controllers may share a mount (cpu,cpuacct)
        self.dirs_by = {c: os.path.join(p, name) for c, p in parents.items()}
        self.dirs: list = []

    def create(self) -> None:
        for c in list(self.dirs_by):
            d = self.dirs_by[c]
            if d in self.dirs:
                continue
            made = make_group(d)
            self.dirs.append(made)
            if made != d:  # given up to a sweep: every controller sharing it moves along
                for k, v in self.dirs_by.items():
                    if v == d:
                        self.dirs_by[k] = made

    def parents(self) -> list:
        return sorted({os.path.dirname(d) for d in self.dirs_by.values()})

    def apply(self, plan, ctx) -> list:
        limits = _Limits(ctx, self.dirs_by.get)
        put_limit = limits.put

        def no_memsw():
            if swap != "max" and _swap_active():
                ctx.warn("cgroups: this host does not account swap per cgroup "
                         "(no memory.memsw.limit_in_bytes): [cgroups].swap_max not applied")

        mem, swap = plan["memory_max"], plan["swap_max"]
        if mem is not None:
            put_limit("memory", "memory.limit_in_bytes", -1 if mem == "max" else mem,
                      "memory_max", human(mem))
            if swap is not None and isinstance(mem, int):
                # written directly: a kernel without swap accounting has no such file
                put_limit("memory", "memory.memsw.limit_in_bytes",
                          -1 if swap == "max" else mem + swap, "swap_max", human(swap),
                          if_missing=no_memsw)
        pids = plan["pids_max"]
        if pids is not None:
            put_limit("pids", "pids.max", pids, "pids_max", pids)
        q = plan["cpu_max"]
        if q is not None:
            put_limit("cpu", "cpu.cfs_period_us", CPU_PERIOD_US, "cpu_max", q)
            put_limit("cpu", "cpu.cfs_quota_us", -1 if q == "max" else q, "cpu_max",
                      "max" if q == "max" else f"{q / CPU_PERIOD_US:g}")
        w = plan["cpu_weight"]
        if w is not None:
            put_limit("cpu", "cpu.shares", v1_shares(w), "cpu_weight", w)
        iw = plan["io_weight"]
        if iw is not None:
            d = self.dirs_by.get("blkio")
            fname = "blkio.bfq.weight"
            if d and not os.path.exists(os.path.join(d, fname)):
                fname = "blkio.weight"
            put_limit("blkio", fname, max(1, min(1000, iw // 10)), "io_weight", iw)
        return limits.done

    def add_task(self, pid) -> None:
        for d in self.dirs:
            write(os.path.join(d, "cgroup.procs"), pid)

    def kill(self) -> None:
        freezer = self.dirs_by.get("freezer")
        if freezer and freezer in self.dirs:
            kill_v1_dir(freezer, freezer=True)
        for d in self.dirs:
            kill_v1_dir(d, freezer=False)

    def remove(self) -> None:
        error = None
        for d in self.dirs:
            try:
                remove_group(d, kill=lambda d=d: kill_v1_dir(d, freezer=False))
            except OSError as e:
                error = error or e
            else:
                unlock(d)
        if error:
            raise error

    def stats(self, full=True) -> dict:
        out = {}
        d = self.dirs_by.get("memory")
        if d:
            out["oom_kill"] = keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)
            if full:
                peak = number(os.path.join(d, "memory.max_usage_in_bytes"))
                if peak is not None:
                    out["memory_peak"] = peak
        d = self.dirs_by.get("pids")
        if d:
            out["pids_max_hits"] = keyed(os.path.join(d, "pids.events")).get("max", 0)
            if full:
                peak = number(os.path.join(d, "pids.peak"))
                if peak is not None:
                    out["pids_peak"] = peak
        d = self.dirs_by.get("cpuacct")
        if d and full:
            usage = number(os.path.join(d, "cpuacct.usage"))
            if usage is not None:
                out["cpu_usec"] = usage // 1000
        return out


def _swap_active() -> bool:
    return len(read("/proc/swaps").splitlines()) > 1


def kill_v1_dir(d, freezer=None) -> None:
    """Kill every process in v1 group ``d`` (and below).  With the freezer (``freezer`` True,
    or None: if ``d`` has ``freezer.state``) the group is frozen first, so no member can fork
    while its siblings are being killed."""
    state = os.path.join(d, "freezer.state")
    if freezer is None:
        freezer = os.path.exists(state)
    for _ in range(100):
        pids = procs(d)
        if not pids:
            return
        if freezer:
            try:
                write(state, "FROZEN")
                wait_until(lambda: read(state).strip() == "FROZEN", timeout=1.0)
            except Exception:  # noqa: BLE001 - fall back to killing unfrozen
                freezer = False
            pids = procs(d)
        sigkill_all(pids)
        if freezer:
            try:
                write(state, "THAWED")
            except Exception:  # noqa: BLE001
                pass
        wait_until(lambda: not procs(d), timeout=0.5)


# --- cgroup v2: one group in the unified tree -------------------------------------------------
# Files: ``memory.max``, ``memory.swap.max``, ``pids.max``, ``cpu.max``, ``cpu.weight``,
# ``io.weight`` (or ``io.bfq.weight``).  The controllers a limit needs are enabled in the
# parent's ``cgroup.subtree_control`` first, as a delegating manager does.  On a hybrid host the
# group has no controllers and only tracks the run (``controllers`` empty).  Killing:
# ``cgroup.kill``, or freeze (``cgroup.freeze``) and SIGKILL every member on kernels before 5.14.
# Reports come from ``memory.events`` (``oom_kill``), ``pids.events`` (``max``), ``cpu.stat``.

class V2Manager(Manager):
    kind = "v2"

    def __init__(self, parent: str, name: str, controllers: list):
        self.parent = parent
        self.dir = os.path.join(parent, name)
        self.controllers = list(controllers)
        self.dirs: list = []

    def create(self) -> None:
        if self.controllers:
            self._enable(self.parent)
        self.dir = make_group(self.dir)
        self.dirs.append(self.dir)

    def parents(self) -> list:
        return [self.parent]

    def _enable(self, parent):
        path = os.path.join(parent, "cgroup.subtree_control")
        enabled = set(read(path).split())
        want = [c for c in self.controllers if c not in enabled]
        if not want:
            return
        try:
            write(path, " ".join("+" + c for c in want))
        except SetupError as e:
            if e.errno == errno.EBUSY:
                raise SetupError(path, f"cannot enable the {', '.join(want)} controller(s) for "
                                 f"the run's group: the parent group has processes of its "
                                 f"own (cgroup v2 'no internal processes' rule); name a "
                                 f"delegated, empty [cgroups].parent") from None
            raise

    def apply(self, plan, ctx) -> list:
        d = self.dir
        limits = _Limits(ctx, lambda ctrl: d if ctrl in self.controllers else None)
        put_limit = limits.put

        def no_swap_file():
            if swap != "max" and len(read("/proc/swaps").splitlines()) > 1:
                ctx.warn("cgroups: this kernel does not account swap per cgroup (no "
                         "memory.swap.max): [cgroups].swap_max not applied")

        mem, swap = plan["memory_max"], plan["swap_max"]
        if mem is not None:
            put_limit("memory", "memory.max", mem, "memory_max", human(mem))
            if swap is not None:
                # written directly: a kernel without swap accounting has no such file
                put_limit("memory", "memory.swap.max", swap, "swap_max", human(swap),
                          if_missing=no_swap_file)
        pids = plan["pids_max"]
        if pids is not None:
            put_limit("pids", "pids.max", pids, "pids_max", pids)
        q = plan["cpu_max"]
        if q is not None:
            put_limit("cpu", "cpu.max", f"{q} {CPU_PERIOD_US}", "cpu_max",
                      "max" if q == "max" else f"{q / CPU_PERIOD_US:g}")
        w = plan["cpu_weight"]
        if w is not None:
            put_limit("cpu", "cpu.weight", w, "cpu_weight", w)
        iw = plan["io_weight"]
        if iw is not None:
            fname = "io.weight" if os.path.exists(os.path.join(d, "io.weight")) \
                else "io.bfq.weight"
            put_limit("io", fname, iw if fname == "io.weight" else max(1, min(1000, iw)),
                      "io_weight", iw)
        return limits.done

    def add_task(self, pid) -> None:
        write(os.path.join(self.dir, "cgroup.procs"), pid)

    def kill(self) -> None:
        if self.dirs:
            kill_v2_dir(self.dir)

    def discard(self) -> bool:
        if self.dirs:
            try:
                os.rmdir(self.dir)
            except FileNotFoundError:
                pass
            except OSError:
                return False  # busy: members left, or a group made below it
            self.dirs = []
            unlock(self.dir)
        return True

    def remove(self) -> None:
        if self.dirs:
            remove_group(self.dir, kill=lambda: kill_v2_dir(self.dir))
            self.dirs = []
            unlock(self.dir)

    def stats(self, full=True) -> dict:
        d = self.dir
        out = {}
        if "memory" in self.controllers:
            out["oom_kill"] = keyed(os.path.join(d, "memory.events")).get("oom_kill", 0)
            if full:
                peak = number(os.path.join(d, "memory.peak"))
                if peak is not None:
                    out["memory_peak"] = peak
        if "pids" in self.controllers:
            out["pids_max_hits"] = keyed(os.path.join(d, "pids.events")).get("max", 0)
            if full:
                peak = number(os.path.join(d, "pids.peak"))
                if peak is not None:
                    out["pids_peak"] = peak
        if full:
            usage = keyed(os.path.join(d, "cpu.stat")).get("usage_usec")
            if usage is not None:
                out["cpu_usec"] = usage
        return out


def _populated(d) -> bool:
    return "populated 1" in read(os.path.join(d, "cgroup.events"))


def kill_v2_dir(d) -> None:
    """Kill every process in v2 group ``d`` and below, and wait until it is empty."""
    if not _populated(d):
        return
    try:
        write(os.path.join(d, "cgroup.kill"), 1)
    except SetupError as e:
        if e.errno != errno.ENOENT:
            raise
        _freeze_and_kill(d)
    if not wait_until(lambda: not _populated(d), timeout=2.0):
        _freeze_and_kill(d)


def _freeze_and_kill(d) -> None:
    """For kernels without cgroup.kill (before 5.14)."""
    freeze = os.path.join(d, "cgroup.freeze")
    for _ in range(100):
        if not _populated(d):
            return
        have_freeze = os.path.exists(freeze)
        if have_freeze:
            try:
                write(freeze, 1)
                wait_until(lambda: "frozen 1" in read(os.path.join(d, "cgroup.events")), 1.0)
            except SetupError:
                have_freeze = False
        sigkill_all(procs(d))
        if have_freeze:
            try:
                write(freeze, 0)
            except SetupError:
                pass
        wait_until(lambda: not _populated(d), timeout=0.5)
    if _populated(d):
        raise OSError(errno.EBUSY, "processes keep running in the group", d)


# --- which manager carries what ---------------------------------------------------------------

def new_name() -> str:
    """``secrun-<pid>-<12 hex>``: the 12 hex digits (not the 8 of groups made before the lock)
    tell gc that the group's liveness is its lock."""
    return f"secrun-{os.getpid()}-{os.urandom(6).hex()}"


def managers_for(layout: Layout, plan: dict, name: str):
    """Decide which manager carries which controller; returns (managers, missing)."""
    needed = {CONTROLLER_OF[k] for k in LIMIT_KEYS if plan[k] is not None}
    parent = plan["parent"]
    v1_ctrls = set()
    for c in needed:
        v1name = "blkio" if c == "io" else c
        if v1name in layout.v1:
            v1_ctrls.add(v1name)
    rest = {c for c in needed if ("blkio" if c == "io" else c) not in v1_ctrls}
    v2_dir = None
    v2_ctrls = set()
    if layout.v2 is not None:
        v2_dir = parent_dir(layout.v2[0], layout.v2[1], parent)
        if rest:  # only then does the v2 tree have to carry a limit
            v2_ctrls = rest & layout.v2_controllers(v2_dir)
    missing = rest - v2_ctrls
    mgrs: list[Manager] = []
    if v1_ctrls or layout.v2 is None:
        extra = set()
        if layout.v2 is None:
            extra.add("freezer")  # the v1 way to kill a whole group
            if "cpu" in v1_ctrls:
                extra.add("cpuacct")  # CPU time for the report
        v1_ctrls |= {c for c in extra if c in layout.v1}
        if v1_ctrls:
            mgrs.append(V1Manager({c: parent_dir(layout.v1[c][0], layout.v1[c][1], parent)
                                   for c in sorted(v1_ctrls)}, name))
    if v2_dir is not None:
        mgrs.append(V2Manager(v2_dir, name, sorted(v2_ctrls)))
    return mgrs, missing


# --- launch ----------------------------------------------------------------------------------

@hookimpl
def secrun_prepare(ctx):
    plan = ctx.plan[SECTION]
    st: dict = {"managers": [], "missing": set(), "applied": []}
    ctx.state[SECTION] = st
    layout = detect()
    if layout.kind == "none":
        raise SetupError("/proc/self/mountinfo", "no cgroup hierarchy is mounted")
    mgrs, missing = managers_for(layout, plan, new_name())
    st["missing"] = missing
    for c in sorted(missing):
        keys = [k for k in LIMIT_KEYS if CONTROLLER_OF[k] == c and plan[k] is not None]
        text = (f"the {c} controller is not available to secrun on this host "
                f"({layout.kind} layout): {', '.join(f'[cgroups].{k}' for k in keys)} "
                f"not applied")
        if ctx.required(SECTION):
            raise SetupError(f"cgroup {c} controller", text)
        ctx.warn(text)
    # Leftovers of dead runs next to ours (a supervisor that was SIGKILLed cannot clean up).
    sweep({p for m in mgrs for p in m.parents()})
    for m in mgrs:
        st["managers"].append(m)  # recorded first: cleanup removes whatever was created
        m.create()
    # As soon as the groups exist: the warm-up holds the kernel's cgroup_mutex while it waits,
    # which mkdir needs too, but the limit writes below do not.
    st["warm"] = _start_warmup(layout)
    for m in mgrs:
        st["applied"] += m.apply(plan, ctx)
    if ctx.verbose:
        ctx.log(f"cgroups: {layout.kind} layout; groups "
                + ", ".join(d for m in mgrs for d in m.dirs) + f"; {limits_text(plan)}")


def _start_warmup(layout):
    """Start the kernel's cgroup-migration slow path early, off the critical path.

    Moving a task between cgroups takes the kernel's global ``cgroup_threadgroup_rwsem`` for
    writing, and the first writer after a quiet spell waits a full RCU grace period (8-15 ms
    here) before it gets it; writers within ~14 ms after that do not wait.  So, as early as
    possible, a helper thread of the supervisor rewrites the supervisor's own pid into the
    ``cgroup.procs`` of the group it is already in (a migration that moves nothing).  The
    grace period then elapses while the supervisor prepares and forks, and attaching the child
    in ``attach`` is fast.  The lock is released when the thread is done."""
    import _thread

    own = next(iter(layout.v1.values()), None) or layout.v2
    if own is None:
        return None
    path = os.path.join(own[0], own[1].lstrip("/"), "cgroup.procs")
    done = _thread.allocate_lock()
    done.acquire()

    def warm():
        try:
            put(path, b"0")
        except OSError:
            pass  # only an optimisation: the real attach reports real errors
        finally:
            done.release()

    # The thread needs the GIL for the few bytecodes before its syscall: have the supervisor
    # hand it over within 0.1 ms rather than after the default 5 ms switch interval.
    sys.setswitchinterval(1e-4)
    _thread.start_new_thread(warm, ())
    return done


def _join_warmup(st):
    done = st.pop("warm", None)
    if done is not None:
        done.acquire()
        sys.setswitchinterval(0.005)


@hookimpl
def secrun_attach(ctx):
    st = ctx.state.get(SECTION)
    if not st or not st["managers"]:
        return
    _check_usage(ctx)  # needs no lock: done while the warm-up may still be waiting
    _join_warmup(st)
    for m in st["managers"]:
        m.add_task(ctx.pid)


def _check_usage(ctx):
    """Refuse a memory limit below what the waiting child already holds: its private
    (anonymous) memory is what its remaining setup touches and gets charged for, so the
    workload would be OOM-killed before it ran a line of its own.  The figure is RssAnon,
    read as resident - shared pages from ``/proc/PID/statm`` (the same kernel counters, a
    cheaper file than ``status``)."""
    mem = ctx.plan[SECTION]["memory_max"]
    if isinstance(mem, int):
        path = f"/proc/{ctx.pid}/statm"
        f = read(path).split()
        rss = (int(f[1]) - int(f[2])) * os.sysconf("SC_PAGE_SIZE") if len(f) > 2 else 0
        if mem < rss:
            raise SetupError(f"[cgroups].memory_max = {human(mem)}",
                             f"the limit ({mem} bytes) is below the current usage of the "
                             f"process being placed in the group ({rss} bytes of private "
                             f"memory, RssAnon from {path}): raise memory_max")


@hookimpl
def secrun_cleanup(ctx):
    st = ctx.state.get(SECTION)
    if st:
        _join_warmup(st)
    if not st or not st["managers"]:
        return
    plan = ctx.plan[SECTION]
    # The v2 group first: it holds every process of the run (on a hybrid host it exists to
    # track them), and cgroup.kill takes its whole tree at once.
    mgrs = sorted(st["managers"], key=lambda m: m.kind != "v2")
    stats: dict = {}
    for m in mgrs:
        try:
            for k, v in (m.stats(full=bool(ctx.verbose)) or {}).items():
                stats[k] = max(stats.get(k, 0), v)
        except Exception:  # noqa: BLE001 - a statistic is not worth failing for
            pass
    errors = []
    # If the v2 group can be removed right away, no process of the run is left and none made a
    # group of its own: the other groups need no kill pass, only their rmdir, which still falls
    # back to kill-and-retry should one of them hold anything.
    settled = mgrs[0].kind == "v2" and mgrs[0].discard()
    if not settled:
        for m in mgrs:
            try:
                m.kill()
            except Exception as e:  # noqa: BLE001 - go on removing the other groups
                errors.append(e)
    for m in mgrs:
        try:
            m.remove()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    if ctx.status is not None or stats.get("oom_kill"):
        _report(ctx, plan, stats)
    if errors:
        raise errors[0]


def _report(ctx, plan, stats):
    oom = stats.get("oom_kill", 0)
    status = ctx.status
    if oom:
        mem = plan["memory_max"]
        limit = f"{human(mem)} ({mem} bytes)" if isinstance(mem, int) else str(mem)
        who = ("the workload was" if status is not None and os.WIFSIGNALED(status)
               and os.WTERMSIG(status) == 9 else f"{oom} process(es) of the workload were")
        ctx.report(f"{who} killed by the memory limit: [cgroups].memory_max = {limit} "
                   f"(OOM kills in the group: {oom})")
    hits = stats.get("pids_max_hits", 0)
    if hits:
        ctx.report(f"the workload hit the pids limit: [cgroups].pids_max = {plan['pids_max']} "
                   f"({hits} fork/clone call(s) failed with EAGAIN)")
    if ctx.verbose:
        parts = []
        if stats.get("memory_peak"):
            parts.append(f"peak memory {human(stats['memory_peak'])} "
                         f"({stats['memory_peak']} bytes)")
        if "cpu_usec" in stats:
            parts.append(f"CPU time {stats['cpu_usec'] / 1e6:.3f} s")
        if "pids_peak" in stats:
            parts.append(f"peak processes {stats['pids_peak']}")
        if parts:
            ctx.log("cgroups: " + ", ".join(parts))
