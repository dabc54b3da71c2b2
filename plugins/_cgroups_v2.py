"""The cgroup v2 manager of the ``cgroups`` plugin: one group in the unified tree.

Files: ``memory.max``, ``memory.swap.max``, ``pids.max``, ``cpu.max``, ``cpu.weight``,
``io.weight`` (or ``io.bfq.weight``).  The controllers a limit needs are enabled in the
parent's ``cgroup.subtree_control`` first, as a delegating manager does.  On a hybrid host the
group has no controllers and only tracks the run (``controllers`` empty).  Killing:
``cgroup.kill``, or freeze (``cgroup.freeze``) and SIGKILL every member on kernels before 5.14.
Reports come from ``memory.events`` (``oom_kill``), ``pids.events`` (``max``), ``cpu.stat``.
"""

import errno
import os

from secrun.errors import SetupError
from secrun.plugins.cgroups import (
    CPU_PERIOD_US,
    Manager,
    _err,
    human,
    keyed,
    procs,
    read,
    rmdir_tree,
    sigkill_all,
    wait_until,
    write,
)


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
        try:
            os.mkdir(self.dir, 0o755)
        except OSError as e:
            raise _err(self.dir, OSError(e.errno, e.strerror), None, None) from None
        self.dirs.append(self.dir)

    def _enable(self, parent):
        path = os.path.join(parent, "cgroup.subtree_control")
        enabled = set(read(path).split())
        want = [c for c in self.controllers if c not in enabled]
        if not want:
            return
        try:
            write(path, " ".join("+" + c for c in want))
        except SetupError as e:
            if "EBUSY" in e.message:
                raise SetupError(path, f"cannot enable the {', '.join(want)} controller(s) for "
                                 f"the run's group: the parent group has processes of its "
                                 f"own (cgroup v2 'no internal processes' rule); name a "
                                 f"delegated, empty [cgroups].parent") from None
            raise

    def apply(self, plan, ctx) -> list:
        done = []
        required = ctx.required("cgroups")
        d = self.dir

        def put(ctrl, fname, value, key, hv):
            if ctrl not in self.controllers:
                return
            path = os.path.join(d, fname)
            try:
                write(path, value, key, hv)
            except Exception as e:  # noqa: BLE001
                if required:
                    raise
                ctx.warn(f"cgroups: best-effort limit not applied: {e}")
                return
            done.append((path, str(value)))

        mem, swap = plan["memory_max"], plan["swap_max"]
        if mem is not None:
            put("memory", "memory.max", mem, "memory_max", human(mem))
            if swap is not None:
                if os.path.exists(os.path.join(d, "memory.swap.max")):
                    put("memory", "memory.swap.max", swap, "swap_max", human(swap))
                elif "memory" in self.controllers and swap != "max" and \
                        len(read("/proc/swaps").splitlines()) > 1:
                    ctx.warn("cgroups: this kernel does not account swap per cgroup (no "
                             "memory.swap.max): [cgroups].swap_max not applied")
        pids = plan["pids_max"]
        if pids is not None:
            put("pids", "pids.max", pids, "pids_max", pids)
        q = plan["cpu_max"]
        if q is not None:
            put("cpu", "cpu.max", f"{q} {CPU_PERIOD_US}", "cpu_max",
                "max" if q == "max" else f"{q / CPU_PERIOD_US:g}")
        w = plan["cpu_weight"]
        if w is not None:
            put("cpu", "cpu.weight", w, "cpu_weight", w)
        iw = plan["io_weight"]
        if iw is not None:
            fname = "io.weight" if os.path.exists(os.path.join(d, "io.weight")) \
                else "io.bfq.weight"
            put("io", fname, iw if fname == "io.weight" else max(1, min(1000, iw)),
                "io_weight", iw)
        return done

    def add_task(self, pid) -> None:
        write(os.path.join(self.dir, "cgroup.procs"), pid)

    def kill(self) -> None:
        kill_v2_dir(self.dir)

    def remove(self) -> None:
        rmdir_tree(self.dir, kill=lambda: kill_v2_dir(self.dir))

    def stats(self) -> dict:
        d = self.dir
        out = {}
        if "memory" in self.controllers:
            out["oom_kill"] = keyed(os.path.join(d, "memory.events")).get("oom_kill", 0)
            try:
                out["memory_peak"] = int(read(os.path.join(d, "memory.peak"), "0"))
            except ValueError:
                pass
        if "pids" in self.controllers:
            out["pids_max_hits"] = keyed(os.path.join(d, "pids.events")).get("max", 0)
            try:
                out["pids_peak"] = int(read(os.path.join(d, "pids.peak"), "0"))
            except ValueError:
                pass
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
        if "ENOENT" not in e.message:
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
