"""The cgroup v1 manager of the ``cgroups`` plugin: one directory per controller hierarchy.

Files: ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` (memory + swap, where
swap is accounted), ``pids.max``, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` and
``cpu.shares``, ``blkio.bfq.weight``.  Killing a group: freeze it (``freezer.state``), SIGKILL
every member, thaw; without a freezer, kill members until none is left.  Reports come from
``memory.oom_control`` (``oom_kill``), ``pids.events`` (``max``), ``cpuacct.usage``.
"""

import os

from secrun.plugins.cgroups import (
    CPU_PERIOD_US,
    Manager,
    human,
    keyed,
    procs,
    read,
    rmdir_tree,
    sigkill_all,
    v1_shares,
    wait_until,
    write,
)


class V1Manager(Manager):
    kind = "v1"

    def __init__(self, parents: dict, name: str):
        # {controller: parent directory}; several controllers may share a mount (cpu,cpuacct)
        self.dirs_by = {c: os.path.join(p, name) for c, p in parents.items()}
        self.dirs: list = []

    def create(self) -> None:
        for _c, d in self.dirs_by.items():
            if d in self.dirs:
                continue
            try:
                os.mkdir(d, 0o755)
            except OSError as e:
                from secrun.plugins.cgroups import _err

                raise _err(d, OSError(e.errno, e.strerror), None, None) from None
            self.dirs.append(d)

    def apply(self, plan, ctx) -> list:
        done = []
        required = ctx.required("cgroups")

        def put(ctrl, fname, value, key, hv):
            d = self.dirs_by.get(ctrl)
            if d is None:
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
            put("memory", "memory.limit_in_bytes", -1 if mem == "max" else mem,
                "memory_max", human(mem))
            d = self.dirs_by.get("memory")
            if swap is not None and isinstance(mem, int):
                if d and os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
                    put("memory", "memory.memsw.limit_in_bytes",
                        -1 if swap == "max" else mem + swap, "swap_max", human(swap))
                elif d and swap != "max" and _swap_active():
                    ctx.warn("cgroups: this host does not account swap per cgroup "
                             "(no memory.memsw.limit_in_bytes): [cgroups].swap_max not applied")
        pids = plan["pids_max"]
        if pids is not None:
            put("pids", "pids.max", pids, "pids_max", pids)
        q = plan["cpu_max"]
        if q is not None:
            put("cpu", "cpu.cfs_period_us", CPU_PERIOD_US, "cpu_max", q)
            put("cpu", "cpu.cfs_quota_us", -1 if q == "max" else q, "cpu_max",
                "max" if q == "max" else f"{q / CPU_PERIOD_US:g}")
        w = plan["cpu_weight"]
        if w is not None:
            put("cpu", "cpu.shares", v1_shares(w), "cpu_weight", w)
        iw = plan["io_weight"]
        if iw is not None:
            d = self.dirs_by.get("blkio")
            fname = "blkio.bfq.weight"
            if d and not os.path.exists(os.path.join(d, fname)):
                fname = "blkio.weight"
            put("blkio", fname, max(1, min(1000, iw // 10)), "io_weight", iw)
        return done

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
        err = None
        for d in self.dirs:
            try:
                rmdir_tree(d, kill=lambda d=d: kill_v1_dir(d, freezer=False))
            except OSError as e:
                err = err or e
        if err:
            raise err

    def stats(self) -> dict:
        out = {}
        d = self.dirs_by.get("memory")
        if d:
            out["oom_kill"] = keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)
            try:
                out["memory_peak"] = int(read(os.path.join(d, "memory.max_usage_in_bytes"), "0"))
            except ValueError:
                pass
        d = self.dirs_by.get("pids")
        if d:
            out["pids_max_hits"] = keyed(os.path.join(d, "pids.events")).get("max", 0)
            try:
                out["pids_peak"] = int(read(os.path.join(d, "pids.peak"), "0"))
            except ValueError:
                pass
        d = self.dirs_by.get("cpuacct")
        if d:
            try:
                out["cpu_usec"] = int(read(os.path.join(d, "cpuacct.usage"), "0")) // 1000
            except ValueError:
                pass
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
