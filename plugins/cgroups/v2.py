"""cgroup v2: one group in the unified tree (:class:`V2Manager`).

Files: ``memory.max``, ``memory.swap.max``, ``pids.max``, ``cpu.max``, ``cpu.weight``,
``io.weight`` (or ``io.bfq.weight``).  The controllers a limit needs are enabled in the
parent's ``cgroup.subtree_control`` first, as a delegating manager does.  On a hybrid host the
group has no controllers and only tracks the run (``controllers`` empty).  Killing:
``cgroup.kill``, or freeze (``cgroup.freeze``) and SIGKILL every member on kernels before 5.14.
Reports come from ``memory.events`` (``oom_kill``), ``pids.events`` (``max``), ``cpu.stat``.
"""

from __future__ import annotations

import errno
import os

from secrun.errors import SetupError

from .layout import (
    CPU_PERIOD_US,
    LimitWriter,
    human,
    keyed,
    procs,
    read,
    remove_group,
    sigkill_all,
    swap_active,
    usage_stats,
    wait_until,
    write,
)
from .lock import make_group, unlock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import CgroupsPlan


class V2Manager:
    kind = "v2"

    def __init__(self, parent: str, name: str, controllers: list[str]) -> None:
        self.parent = parent
        self.dir = os.path.join(parent, name)
        self.controllers = list(controllers)
        self.dirs: list[str] = []

    def create(self) -> None:
        if self.controllers:
            self._enable(self.parent)
        self.dir = make_group(self.dir)
        self.dirs.append(self.dir)

    def parents(self) -> list[str]:
        return [self.parent]

    def _enable(self, parent: str) -> None:
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

    def apply(self, plan: CgroupsPlan, ctx: RunContext) -> list[tuple[str, str]]:
        d = self.dir
        limits = LimitWriter(ctx, lambda ctrl: d if ctrl in self.controllers else None)
        put_limit = limits.put
        mem, swap = plan["memory_max"], plan["swap_max"]

        def no_swap_file() -> None:
            if swap != "max" and swap_active():
                ctx.warn("cgroups: this kernel does not account swap per cgroup (no "
                         "memory.swap.max): [cgroups].swap_max not applied")

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
                      f"{q / CPU_PERIOD_US:g}" if isinstance(q, int) else "max")
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

    def add_task(self, pid: int) -> None:
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

    def stats(self, full: bool = True) -> dict[str, int]:
        d = self.dir
        out = usage_stats(lambda ctrl: d if ctrl in self.controllers else None, _STATS, full)
        usage = keyed(os.path.join(d, "cpu.stat")).get("usage_usec") if full else None
        if usage is not None:
            out["cpu_usec"] = usage
        return out


# (controller, events file, event, statistic, peak file, statistic): see layout.usage_stats
_STATS = (("memory", "memory.events", "oom_kill", "oom_kill", "memory.peak", "memory_peak"),
          ("pids", "pids.events", "max", "pids_max_hits", "pids.peak", "pids_peak"))


def _populated(d: str) -> bool:
    return "populated 1" in read(os.path.join(d, "cgroup.events"))


def kill_v2_dir(d: str) -> None:
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


def _freeze_and_kill(d: str) -> None:
    """For kernels without cgroup.kill (before 5.14)."""
    freeze = os.path.join(d, "cgroup.freeze")
    for _ in range(100):
        if not _populated(d):
            return
        frozen = os.path.exists(freeze) and _freeze(d, freeze)
        sigkill_all(procs(d))
        if frozen:
            try:
                write(freeze, 0)
            except SetupError:
                pass
        wait_until(lambda: not _populated(d), timeout=0.5)
    if _populated(d):
        raise OSError(errno.EBUSY, "processes keep running in the group", d)


def _freeze(d: str, freeze: str) -> bool:
    try:
        write(freeze, 1)
        wait_until(lambda: "frozen 1" in read(os.path.join(d, "cgroup.events")), 1.0)
    except SetupError:
        return False
    return True
