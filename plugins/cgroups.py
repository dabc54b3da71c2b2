"""The ``cgroups`` plugin: memory, swap, pids, CPU and io limits in a fresh cgroup per run.

Section ``[cgroups]``.  Stages: ``prepare`` (parent, before fork: create the run's group(s) and
write the limits), ``attach`` (parent: move the process that will exec into them while it
builds its filesystem view; it waits for this before its next stage, so the workload runs no
code of its own outside its group), ``cleanup`` (kill whatever is left, remove the
groups, report OOM kills and a hit pids limit).  ``secrun cgroups gc`` removes groups left
behind by a secrun that was SIGKILLed.

Layouts, detected at run time from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``:

- pure cgroup v2: one group in the v2 tree carries the limits (:mod:`._cgroups_v2`);
- legacy v1: one group per controller hierarchy (:mod:`._cgroups_v1`), the freezer kills;
- hybrid: each controller is used where it is bound (here: v1), and a v2 group in the unified
  tree tracks the run, so ``cgroup.kill`` removes the whole process tree at cleanup.

Both managers have the same interface (:class:`Manager`): ``create``, ``apply``, ``add_task``,
``kill``, ``remove``, ``stats``.  Groups are named ``secrun-<pid>-<8 hex>`` (:data:`NAME_PATTERN`),
so ``gc`` can tell a group whose secrun is gone.

This module imports only ``os`` and ``re`` at load time; the launch path stays cheap.
"""

import os
import sys

from secrun import hookimpl
from secrun.errors import ConfigError, SetupError
from secrun.schema import Field, Section

SECTION = "cgroups"
NAME_PATTERN = r"^secrun-(\d+)-([0-9a-f]{8})$"  # compiled where needed: `re` is kept off the
# launch path (with enum and functools it costs ~8 ms of every launch)
CPU_PERIOD_US = 100_000
# Controllers (the v2 names; v1 calls io "blkio") each limit needs.
CONTROLLER_OF = {"memory_max": "memory", "swap_max": "memory", "pids_max": "pids",
                 "cpu_max": "cpu", "cpu_weight": "cpu", "io_weight": "io"}
LIMIT_KEYS = ("memory_max", "swap_max", "pids_max", "cpu_max", "cpu_weight", "io_weight")

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_PATTERN = r"^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$"


# --- units -----------------------------------------------------------------------------------

def parse_size(value):
    """'512M' -> 536870912; '' -> None (not set); 'max' -> 'max'.  Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative limit {value}")
        return value
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in ("max", "unlimited"):
        return "max"
    if text.startswith("-"):
        raise ValueError(f"negative limit {value!r}")
    import re

    m = re.match(_SIZE_PATTERN, text)
    if not m:
        raise ValueError(f"{value!r} is not a size such as \"512M\", \"2G\" or \"max\"")
    num, unit = m.groups()
    given = str(value).strip()[m.start(2):]
    unit = unit[:-1] if unit.endswith("b") and unit != "b" else unit  # 512MB, 512MiB
    unit = unit[:-1] if unit.endswith("i") else unit
    if unit == "b":
        unit = ""
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {given!r} in {value!r} (use K, M, G, T or none "
                         f"for bytes; binary multiples)")
    return int(float(num) * _UNITS[unit])


def parse_cpus(value):
    """'1.5' (CPUs) -> quota in microseconds per CPU_PERIOD_US; '' -> None; 'max' -> 'max'."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number of CPUs")
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in ("max", "unlimited"):
        return "max"
    try:
        cpus = float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a number of CPUs such as \"0.5\" or \"1.5\"") \
            from None
    if cpus < 0:
        raise ValueError(f"negative limit {value!r}")
    if cpus == 0 or cpus != cpus or cpus == float("inf"):
        raise ValueError(f"{value!r}: a CPU quota must be a positive number of CPUs")
    return max(1000, round(cpus * CPU_PERIOD_US))


def parse_count(value):
    """pids: 20 -> 20; 0/'max'/'' -> None or 'max'."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "max", "unlimited"):
            return "max" if text else None
        if not text.lstrip("-").isdigit():
            raise ValueError(f"{value!r} is not a number of processes or \"max\"")
        value = int(text)
    if value < 0:
        raise ValueError(f"negative limit {value}")
    return value or None


def _weight(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer weight")
    if value < 0:
        raise ValueError(f"negative weight {value}")
    if value > 10000:
        raise ValueError(f"weight {value} is above 10000 (the range is 1-10000, 100 is the "
                         f"default share)")
    return value or None


def _check_parent(value):
    if value and any(p in ("..", ".") for p in value.split("/")):
        raise ValueError(f"{value!r}: '.' and '..' are not allowed in a cgroup path")


def human(n) -> str:
    if n == "max" or n is None:
        return str(n)
    for unit, mult in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n}"


def _checker(parse):
    def check(value):
        parse(value)
    return check


@hookimpl
def secrun_profile_sections():
    return [Section(SECTION, "Resource limits: a fresh cgroup per run (v2, v1 or hybrid hosts).", [
        Field("memory_max", (int, str), "",
              "memory limit: bytes or a size with a binary unit (\"512M\", \"2G\"); \"\" or "
              "\"max\": none.  Exceeding it gets the workload OOM-killed (reported, exit 137)",
              check=_checker(parse_size)),
        Field("swap_max", (int, str), "0",
              "swap the workload may use on top of memory_max (\"0\": none, \"max\": any); "
              "applied with memory_max where the host accounts swap (v2 memory.swap.max, "
              "v1 memory.memsw.limit_in_bytes = memory_max + swap_max)",
              check=_checker(parse_size)),
        Field("pids_max", (int, str), 0,
              "most processes and threads alive in the group at once (0 or \"max\": no limit); "
              "fork() beyond it fails with EAGAIN and the run reports it",
              check=_checker(parse_count)),
        Field("cpu_max", (int, float, str), "",
              "CPU quota as a number of CPUs (\"0.5\", \"1.5\"), enforced per 100 ms period; "
              "\"\" or \"max\": none", check=_checker(parse_cpus)),
        Field("cpu_weight", int, 0,
              "relative CPU share under contention, 1-10000 (100 is the default share; v1: "
              "cpu.shares = weight * 1024 / 100); 0: inherited", check=_checker(_weight)),
        Field("io_weight", int, 0,
              "relative block-io share, 1-10000 (v2 io.weight / io.bfq.weight; v1 "
              "blkio.bfq.weight = weight / 10, clamped to 1-1000); 0: inherited",
              check=_checker(_weight)),
        Field("parent", str, "",
              "where the run's group is created: \"\" under secrun's own cgroup (from "
              "/proc/self/cgroup); \"/a/b\" from the root of each hierarchy (e.g. a "
              "delegated subtree); \"a/b\" relative to secrun's own cgroup",
              check=_check_parent),
    ])]


# --- planning --------------------------------------------------------------------------------

@hookimpl
def secrun_compile(ctx):
    cfg = ctx.config[SECTION]
    plan = {"parent": cfg["parent"]}
    parsers = {"memory_max": parse_size, "swap_max": parse_size, "pids_max": parse_count,
               "cpu_max": parse_cpus, "cpu_weight": _weight, "io_weight": _weight}
    for key in LIMIT_KEYS:
        try:
            plan[key] = parsers[key](cfg[key])
        except ValueError as e:
            raise ConfigError(SECTION, key, str(e)) from None
    if plan["memory_max"] in (None, "max"):
        plan["swap_max"] = None  # swap is limited only together with memory
    ctx.plan[SECTION] = plan


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
        try:
            with open(os.path.join(parent_dir, "cgroup.controllers")) as f:
                return set(f.read().split())
        except OSError:
            return set()


V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer", "blkio")


def detect(pid="self") -> Layout:
    """Read the mount table and our own cgroup membership (no changes)."""
    own_v1, own_v2 = {}, None
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and ctrls == "":
                own_v2 = path
            else:
                for c in ctrls.split(","):
                    own_v1[c] = path
    v1, v2 = {}, None
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            fstype, opts = rfields[0], rfields[2]
            root, mnt = _unescape(fields[3]), _unescape(fields[4])
            if fstype == "cgroup2" and v2 is None and own_v2 is not None:
                v2 = (mnt, _below(own_v2, root))
            elif fstype == "cgroup":
                for c in opts.split(","):
                    if c in V1_CONTROLLERS and c not in v1 and c in own_v1:
                        v1[c] = (mnt, _below(own_v1[c], root))
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

def write(path, value, key=None, human_value=None) -> None:
    """Write a cgroup control file; a failure names the file (and the profile key)."""
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        raise _err(path, e, key, human_value) from None
    try:
        os.write(fd, data)
    except OSError as e:
        raise _err(path, e, key, human_value) from None
    finally:
        os.close(fd)


def _err(path, e, key, hv):
    import errno as _errno

    name = _errno.errorcode.get(e.errno, str(e.errno))
    why = f"{os.strerror(e.errno)} ({name})"
    if key:
        why = f"cannot set [cgroups].{key} = {hv}: {why}"
    if e.errno in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
        why += " (no write access to this cgroup tree: run as root or name a delegated, " \
               "writable [cgroups].parent)"
    return SetupError(path, why)


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


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


def procs(d) -> list:
    """Pids in group ``d`` and every group below it."""
    out = []
    for root, _dirs, _files in os.walk(d):
        for line in read(os.path.join(root, "cgroup.procs")).split():
            out.append(int(line))
    return out


def rmdir_tree(d, kill=None, timeout=3.0) -> None:
    """Remove group ``d`` and its descendants, deepest first.  A group that is still busy
    (its last processes are exiting) is retried, calling ``kill`` again, until ``timeout``."""
    import time

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
                busy = OSError(e.errno, os.strerror(e.errno or 0), f"rmdir({root})")
        if busy is None:
            return
        if time.monotonic() > deadline:
            raise busy
        if kill is not None:
            kill()
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_until(cond, timeout=2.0) -> bool:
    import time

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


class Manager:
    """One implementation per hierarchy version.  ``dirs`` lists what it created."""

    kind = "?"
    dirs: list

    def create(self) -> None:
        """Make the run's group directories (recording each in ``dirs`` as it is made)."""
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

    def stats(self) -> dict:
        """oom_kill, pids_max_hits, pids_peak, memory_peak, cpu_usec: what the run did."""
        raise NotImplementedError


def new_name() -> str:
    return f"secrun-{os.getpid()}-{os.urandom(4).hex()}"


def managers_for(layout: Layout, plan: dict, name: str):
    """Decide which manager carries which controller; returns (managers, missing)."""
    from secrun.plugins._cgroups_v1 import V1Manager
    from secrun.plugins._cgroups_v2 import V2Manager

    needed = {CONTROLLER_OF[k] for k in LIMIT_KEYS if plan[k] is not None}
    parent = plan["parent"]
    v1_ctrls = set()
    for c in sorted(needed):
        v1name = "blkio" if c == "io" else c
        if v1name in layout.v1:
            v1_ctrls.add(v1name)
    v2_dir = None
    v2_ctrls = set()
    if layout.v2 is not None:
        v2_dir = parent_dir(layout.v2[0], layout.v2[1], parent)
        available = layout.v2_controllers(v2_dir)
        for c in needed:
            if ("blkio" if c == "io" else c) not in v1_ctrls and c in available:
                v2_ctrls.add(c)
    missing = {c for c in needed
               if ("blkio" if c == "io" else c) not in v1_ctrls and c not in v2_ctrls}
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
    for m in mgrs:
        st["managers"].append(m)  # recorded first: cleanup removes whatever was created
        m.create()
    for m in mgrs:
        st["applied"] += m.apply(plan, ctx)
    # After creating and limiting the groups: the warm-up holds the kernel's cgroup_mutex while
    # it waits, which mkdir and limit writes need too.
    st["warm"] = _start_warmup(layout)
    ctx.log(f"cgroups: {layout.kind} layout; groups "
            + ", ".join(d for m in mgrs for d in m.dirs) + f"; {limits_text(plan)}")


def _start_warmup(layout):
    """Start the kernel's cgroup-migration slow path early, off the critical path.

    Moving a task between cgroups takes the kernel's global ``cgroup_threadgroup_rwsem`` for
    writing, and the first writer after a quiet spell waits a full RCU grace period (5-15 ms
    here) before it gets it; writers shortly after that do not wait.  So, as early as
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
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
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
    _join_warmup(st)
    _check_usage(ctx, st)
    for m in st["managers"]:
        m.add_task(ctx.pid)


def _check_usage(ctx, st):
    """Refuse a memory limit below what the waiting child already holds: its private
    (anonymous) memory is what its remaining setup touches and gets charged for, so the
    workload would be OOM-killed before it ran a line of its own."""
    plan = ctx.plan[SECTION]
    mem = plan["memory_max"]
    if isinstance(mem, int):
        rss = 0
        for line in read(f"/proc/{ctx.pid}/status").splitlines():
            if line.startswith("RssAnon:"):
                rss = int(line.split()[1]) * 1024
        if mem < rss:
            raise SetupError(f"[cgroups].memory_max = {human(mem)}",
                             f"the limit ({mem} bytes) is below the current usage of the "
                             f"process being placed in the group ({rss} bytes of private "
                             f"memory, /proc/{ctx.pid}/status RssAnon): raise memory_max")


@hookimpl
def secrun_cleanup(ctx):
    st = ctx.state.get(SECTION)
    if st:
        _join_warmup(st)
    if not st or not st["managers"]:
        return
    plan = ctx.plan[SECTION]
    stats: dict = {}
    for m in st["managers"]:
        try:
            for k, v in (m.stats() or {}).items():
                stats[k] = max(stats.get(k, 0), v)
        except Exception:  # noqa: BLE001 - a statistic is not worth failing for
            pass
    errors = []
    for m in st["managers"]:
        try:
            m.kill()
        except Exception as e:  # noqa: BLE001 - go on removing the other groups
            errors.append(e)
    for m in st["managers"]:
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


# --- audit -------------------------------------------------------------------------------------

@hookimpl
def secrun_audit(ctx):
    plan = ctx.plan[SECTION]
    req = ctx.required(SECTION)
    try:
        layout = detect()
    except OSError:
        layout = Layout({}, None)
    where = {}
    for c in ("memory", "pids", "cpu", "io"):
        v1name = "blkio" if c == "io" else c
        if v1name in layout.v1:
            where[c] = "v1"
        elif layout.v2 is not None:
            d = parent_dir(layout.v2[0], layout.v2[1], plan["parent"])
            if c in layout.v2_controllers(d):
                where[c] = "v2"
    rows = []

    def row(control, key, value, expect, weight_unset, controller):
        configured = plan[key] is not None and plan[key] != "max"
        if not configured:
            status, weight, exp = "not-configured", weight_unset, None
        elif controller not in where:
            status, weight, exp = "not-available", weight_unset, None
        else:
            status, weight = ("enforced" if req else "best-effort"), 0.0
            exp = expect.get(where[controller])
        r = {"control": control, "section": SECTION, "key": key, "value": value,
             "status": status, "weight": weight,
             "detail": f"{layout.kind} layout; {controller} controller: "
                       f"{where.get(controller, 'not available')}"}
        if exp:
            r["expect"] = exp
        rows.append(r)

    mem, swap = plan["memory_max"], plan["swap_max"]
    mem_v1 = {"cgroup.memory.limit_in_bytes": str(mem)}
    if isinstance(mem, int) and isinstance(swap, int) and \
            os.path.exists(os.path.join(layout.v1.get("memory", ("/nonexistent",))[0],
                                        "memory.memsw.limit_in_bytes")):
        mem_v1["cgroup.memory.memsw.limit_in_bytes"] = str(mem + swap)
    mem_v2 = {"cgroup.memory.max": str(mem)}
    if isinstance(swap, int):
        mem_v2["cgroup.memory.swap.max"] = str(swap)
    rows_spec = [
        ("cgroup memory limit", "memory_max",
         f"{human(mem) if mem is not None else 'none'}"
         + (f" (+ swap {human(swap)})" if swap is not None else ""),
         {"v1": mem_v1, "v2": mem_v2}, 0.3, "memory"),
        ("cgroup pids limit", "pids_max", str(plan["pids_max"] or "none"),
         {"v1": {"cgroup.pids.max": str(plan["pids_max"])},
          "v2": {"cgroup.pids.max": str(plan["pids_max"])}}, 0.3, "pids"),
    ]
    q = plan["cpu_max"]
    rows_spec.append(("cgroup CPU quota", "cpu_max",
                      f"{q / CPU_PERIOD_US:g} CPUs" if isinstance(q, int) else "none",
                      {"v1": {"cgroup.cpu.cfs_quota_us": str(q),
                              "cgroup.cpu.cfs_period_us": str(CPU_PERIOD_US)},
                       "v2": {"cgroup.cpu.max": f"{q} {CPU_PERIOD_US}"}}, 0.1, "cpu"))
    w = plan["cpu_weight"]
    rows_spec.append(("cgroup CPU weight", "cpu_weight", str(w or "inherited"),
                      {"v1": {"cgroup.cpu.shares": str(v1_shares(w or 100))},
                       "v2": {"cgroup.cpu.weight": str(w)}}, 0.05, "cpu"))
    if plan["io_weight"] is not None:
        rows_spec.append(("cgroup io weight", "io_weight", str(plan["io_weight"]), {}, 0.05,
                          "io"))
    for spec in rows_spec:
        row(*spec)
    return rows


def v1_shares(weight: int) -> int:
    return max(2, min(262144, weight * 1024 // 100))


# --- secrun cgroups gc -------------------------------------------------------------------------

def orphaned(pid: int) -> bool:
    """Whether the secrun that created ``secrun-<pid>-...`` is gone (or its pid now belongs to
    a program that is not secrun)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        return False
    return b"secrun" not in cmd


def find_groups(layout=None):
    """Every ``secrun-<pid>-<hex>`` group in every mounted hierarchy: [(path, pid)]."""
    import re

    layout = layout or detect()
    mounts = {m for m, _ in layout.v1.values()}
    if layout.v2:
        mounts.add(layout.v2[0])
    found = []
    for mnt in sorted(mounts):
        for root, dirs, _files in os.walk(mnt):
            keep = []
            for d in dirs:
                m = re.match(NAME_PATTERN, d)
                if m:
                    found.append((os.path.join(root, d), int(m.group(1))))
                else:
                    keep.append(d)
            dirs[:] = keep
    return found


def gc(dry_run=False, echo=print) -> int:
    """Kill the processes left in orphaned groups and remove the groups; returns the count."""
    from secrun.plugins._cgroups_v1 import kill_v1_dir
    from secrun.plugins._cgroups_v2 import kill_v2_dir

    layout = detect()
    v2mnt = layout.v2[0] if layout.v2 else None
    n = 0
    failed = []
    groups = find_groups(layout)
    # v2 groups first (cgroup.kill takes a whole tree at once), then the v1 freezer's (freeze
    # and kill), then the other v1 hierarchies, by then normally empty.
    groups.sort(key=lambda g: (not (v2mnt and g[0].startswith(v2mnt.rstrip("/") + "/")),
                               "/freezer/" not in g[0]))
    for path, pid in groups:
        if not orphaned(pid):
            continue
        n += 1
        if dry_run:
            echo(f"would remove {path}")
            continue
        is_v2 = v2mnt is not None and (path + "/").startswith(v2mnt.rstrip("/") + "/")
        kill = (lambda p=path: kill_v2_dir(p)) if is_v2 else (lambda p=path: kill_v1_dir(p))
        try:
            kill()
            rmdir_tree(path, kill=kill)
            echo(f"removed {path}")
        except OSError as e:
            failed.append(f"{path}: {os.strerror(e.errno or 0)}")
    if failed:
        raise SetupError("secrun cgroups gc", "could not remove " + "; ".join(failed))
    return n


@hookimpl
def secrun_register_commands(cli):
    import click

    @cli.group("cgroups")
    def cgroups_cmd():
        """Cgroups made by secrun."""

    @cgroups_cmd.command("gc")
    @click.option("--dry-run", "-n", is_flag=True, help="list what would be removed")
    def gc_cmd(dry_run):
        """Remove groups left behind by a secrun that was killed (SIGKILL): kill what still
        runs in them and remove them.  A group is left alone while its secrun (the pid in its
        name, secrun-<pid>-<hex>) is alive."""
        n = gc(dry_run=dry_run, echo=click.echo)
        click.echo(f"{n} orphaned group(s) {'found' if dry_run else 'removed'}")

    @cgroups_cmd.command("list")
    def list_cmd():
        """List every secrun group and whether its secrun is still running."""
        for path, pid in find_groups():
            click.echo(f"{path}  {'orphaned' if orphaned(pid) else 'in use by pid %d' % pid}")
