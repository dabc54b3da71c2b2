"""cgroup v1: one group directory per controller hierarchy (:class:`V1Manager`).

Files: ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` (memory + swap, where swap
is accounted), ``pids.max``, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` and ``cpu.shares``,
``blkio.bfq.weight``.  Killing a group: freeze it (``freezer.state``), SIGKILL every member,
thaw; without a freezer, kill members until none is left.  Reports come from
``memory.oom_control`` (``oom_kill``), ``pids.events`` (``max``), ``cpuacct.usage``.
"""

from __future__ import annotations

import os

from .layout import (
    CPU_PERIOD_US,
    LimitWriter,
    human,
    number,
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
    from collections.abc import Callable

    from secrun.context import RunContext

    from .plan import CgroupsPlan


def v1_shares(weight: int) -> int:
    """``cpu.shares`` for a v2-style weight (100 is the default share, 1024 shares)."""
    return max(2, min(262144, weight * 1024 // 100))


class V1Manager:
    kind = "v1"

    def __init__(self, parents: dict[str, str], name: str) -> None:
        # {controller: parent directory}; several controllers may share a mount (cpu,cpuacct)
        self.dirs_by = {c: os.path.join(p, name) for c, p in parents.items()}
        self.dirs: list[str] = []

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

    def parents(self) -> list[str]:
        return sorted({os.path.dirname(d) for d in self.dirs_by.values()})

    def apply(self, plan: CgroupsPlan, ctx: RunContext) -> list[tuple[str, str]]:
        limits = LimitWriter(ctx, self.dirs_by.get)
        put_limit = limits.put
        mem, swap = plan["memory_max"], plan["swap_max"]

        def no_memsw() -> None:
            if swap != "max" and swap_active():
                ctx.warn("cgroups: this host does not account swap per cgroup "
                         "(no memory.memsw.limit_in_bytes): [cgroups].swap_max not applied")

        if mem is not None:
            put_limit("memory", "memory.limit_in_bytes", -1 if mem == "max" else mem,
                      "memory_max", human(mem))
            if swap is not None and isinstance(mem, int):
                # written directly: a kernel without swap accounting has no such file
                put_limit("memory", "memory.memsw.limit_in_bytes",
                          -1 if not isinstance(swap, int) else mem + swap, "swap_max",
                          human(swap), if_missing=no_memsw)
        pids = plan["pids_max"]
        if pids is not None:
            put_limit("pids", "pids.max", pids, "pids_max", pids)
        q = plan["cpu_max"]
        if q is not None:
            put_limit("cpu", "cpu.cfs_period_us", CPU_PERIOD_US, "cpu_max", q)
            put_limit("cpu", "cpu.cfs_quota_us", q if isinstance(q, int) else -1, "cpu_max",
                      f"{q / CPU_PERIOD_US:g}" if isinstance(q, int) else "max")
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

    def add_task(self, pid: int) -> None:
        for d in self.dirs:
            write(os.path.join(d, "cgroup.procs"), pid)

    def kill(self) -> None:
        freezer = self.dirs_by.get("freezer")
        if freezer and freezer in self.dirs:
            kill_v1_dir(freezer, freezer=True)
        for d in self.dirs:
            kill_v1_dir(d, freezer=False)

    def discard(self) -> bool:
        return False  # a v1 group holds the run's processes of one controller only

    def remove(self) -> None:
        error = None
        for d in self.dirs:
            try:
                remove_group(d, kill=_killer(d))
            except OSError as e:
                error = error or e
            else:
                unlock(d)
        if error:
            raise error

    def stats(self, full: bool = True) -> dict[str, int]:
        out = usage_stats(self.dirs_by.get, _STATS, full)
        d = self.dirs_by.get("cpuacct")
        usage = number(os.path.join(d, "cpuacct.usage")) if d and full else None
        if usage is not None:
            out["cpu_usec"] = usage // 1000
        return out


# (controller, events file, event, statistic, peak file, statistic): see layout.usage_stats
_STATS = (("memory", "memory.oom_control", "oom_kill", "oom_kill", "memory.max_usage_in_bytes",
           "memory_peak"),
          ("pids", "pids.events", "max", "pids_max_hits", "pids.peak", "pids_peak"))


def kill_v1_dir(d: str, freezer: bool | None = None) -> None:
    """Kill every process in v1 group ``d`` (and below).  With the freezer (``freezer`` True,
    or None: if ``d`` has ``freezer.state``) the group is frozen first, so no member can fork
    while its siblings are being killed."""
    state = os.path.join(d, "freezer.state")
    frozen = os.path.exists(state) if freezer is None else freezer
    for _ in range(100):
        pids = procs(d)
        if not pids:
            return
        if frozen:
            frozen = _freeze(state)
            pids = procs(d)
        sigkill_all(pids)
        if frozen:
            try:
                write(state, "THAWED")
            except Exception:  # the members are being killed anyway
                pass
        wait_until(lambda: not procs(d), timeout=0.5)


def _killer(d: str) -> Callable[[], None]:
    """What kills the members of ``d`` again while its removal is retried."""
    return lambda: kill_v1_dir(d, freezer=False)


def _freeze(state: str) -> bool:
    """Freeze a v1 freezer group and wait for it; False if it cannot be frozen (then the
    members are killed unfrozen)."""
    try:
        write(state, "FROZEN")
        wait_until(lambda: read(state).strip() == "FROZEN", timeout=1.0)
    except Exception:  # fall back to killing unfrozen
        return False
    return True
