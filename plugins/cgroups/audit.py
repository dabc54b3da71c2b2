"""The ``cgroups`` plugin's audit: a row per limit (with the controller and the layout that
would carry it, and the cgroup files a live audit reads inside the sandbox), the run's lock,
and the categories it scores (``cgroups.memory``, ``cgroups.pids``, ``cgroups.cpu``) with their
judges."""

from __future__ import annotations

import os
from collections.abc import Mapping

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row, Status
from secrun.context import AuditContext

from .layout import CPU_PERIOD_US, SECTION, Layout, detect, human, parent_dir
from .plan import CgroupsPlan, denied_dir
from .v1 import v1_shares

UNLIMITED = 1 << 62  # a live v1 limit at least this large is none (the kernel's "max")
Judged = tuple[float, str] | None


# --- rows ----------------------------------------------------------------------------------------

def _carriers(layout: Layout, parent: str) -> dict[str, str]:
    """{controller: "v1" or "v2"}: the hierarchy that would carry each limit's controller."""
    where = {}
    for c in ("memory", "pids", "cpu", "io"):
        if ("blkio" if c == "io" else c) in layout.v1:
            where[c] = "v1"
        elif layout.v2 is not None:
            if c in layout.v2_controllers(parent_dir(layout.v2[0], layout.v2[1], parent)):
                where[c] = "v2"
    return where


class _Spec:
    """One limit's row before the host is looked at: what it is, and the files (per
    hierarchy version) a live audit finds it in."""

    __slots__ = ("control", "key", "value", "expect", "weight", "controller", "category")

    def __init__(self, control: str, key: str, value: str, expect: dict[str, dict[str, str]],
                 weight: float, controller: str, category: str | None) -> None:
        self.control, self.key, self.value, self.expect = control, key, value, expect
        self.weight, self.controller, self.category = weight, controller, category


def _memory_spec(plan: CgroupsPlan, layout: Layout) -> _Spec:
    mem, swap = plan["memory_max"], plan["swap_max"]
    v1 = {"cgroup.memory.limit_in_bytes": str(mem)}
    memsw = os.path.join(layout.v1.get("memory", ("/nonexistent", ""))[0],
                         "memory.memsw.limit_in_bytes")
    if isinstance(mem, int) and isinstance(swap, int) and os.path.exists(memsw):
        v1["cgroup.memory.memsw.limit_in_bytes"] = str(mem + swap)
    v2 = {"cgroup.memory.max": str(mem)}
    if isinstance(swap, int):
        v2["cgroup.memory.swap.max"] = str(swap)
    value = (human(mem) if mem is not None else "none") + \
        (f" (+ swap {human(swap)})" if swap is not None else "")
    return _Spec("cgroup memory limit", "memory_max", value, {"v1": v1, "v2": v2}, 0.3,
                 "memory", "cgroups.memory")


def _specs(plan: CgroupsPlan, layout: Layout) -> list[_Spec]:
    pids, q, w = plan["pids_max"], plan["cpu_max"], plan["cpu_weight"]
    specs = [
        _memory_spec(plan, layout),
        _Spec("cgroup pids limit", "pids_max", str(pids or "none"),
              {"v1": {"cgroup.pids.max": str(pids)}, "v2": {"cgroup.pids.max": str(pids)}},
              0.3, "pids", "cgroups.pids"),
        _Spec("cgroup CPU quota", "cpu_max",
              f"{q / CPU_PERIOD_US:g} CPUs" if isinstance(q, int) else "none",
              {"v1": {"cgroup.cpu.cfs_quota_us": str(q),
                      "cgroup.cpu.cfs_period_us": str(CPU_PERIOD_US)},
               "v2": {"cgroup.cpu.max": f"{q} {CPU_PERIOD_US}"}}, 0.1, "cpu", "cgroups.cpu"),
        # A share under contention, not a limit: listed and checked live, not scored.
        _Spec("cgroup CPU weight", "cpu_weight", str(w or "inherited"),
              {"v1": {"cgroup.cpu.shares": str(v1_shares(w or 100))},
               "v2": {"cgroup.cpu.weight": str(w)}}, 0.05, "cpu", None),
    ]
    if plan["io_weight"] is not None:
        specs.append(_Spec("cgroup io weight", "io_weight", str(plan["io_weight"]), {}, 0.05,
                           "io", None))
    return specs


def _row(spec: _Spec, plan: CgroupsPlan, where: dict[str, str], kind: str,
         required: bool) -> Row:
    limits: Mapping[str, object] = plan
    value = limits[spec.key]
    status: Status
    expect = None
    if value is None or value == "max":
        status, weight = "not-configured", spec.weight
    elif spec.controller not in where:
        status, weight = "not-available", spec.weight
    else:
        status, weight = ("enforced" if required else "best-effort"), 0.0
        expect = spec.expect.get(where[spec.controller])
    row: Row = {"control": spec.control, "section": SECTION, "key": spec.key,
                "category": spec.category, "value": spec.value, "status": status,
                "weight": weight,
                "detail": f"{kind} layout; {spec.controller} controller: "
                          f"{where.get(spec.controller, 'not available')}"}
    if expect:
        row["expect"] = expect
    return row


def _substituted(spec: _Spec, plan: CgroupsPlan, denied: str) -> Row:
    """The row of a limit where the caller has no writable cgroup tree (``denied``): its
    substitute rlimit, or not available."""
    row = _row(spec, plan, {}, "", False)
    sub = next((s for s in plan["substitutes"] if s["key"] == spec.key), None)
    if row["status"] == "not-configured":
        return row
    if sub is None:
        row["detail"] = f"no writable cgroup tree ({denied}), and no substitute"
        return row
    v = str(sub["value"])
    # what is left: a pids substitute counts every process of the sandbox's user namespace;
    # a memory one leaves shared memory unbounded (see SUBSTITUTES)
    left = RESIDUAL.get(sub["name"], 0.5)
    row["status"], row["weight"] = "substituted", round(spec.weight * left, 3)
    row["value"] = (f"{human(sub['value'])}: RLIMIT_{sub['name'].upper()} "
                    f"({sub['means']})")
    row["detail"] = (f"no writable cgroup tree ({denied}): an rlimit instead of the cgroup "
                     f"limit" + ("; swap_max not applied" if spec.key == "memory_max"
                                  and plan["swap_max"] is not None else ""))
    row["expect"] = {f"rlimit.{sub['name']}": f"{v}:{v}"}
    return row


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    plan: CgroupsPlan = ctx.plan
    required = ctx.required(SECTION)
    try:
        layout = detect()
    except OSError:
        layout = Layout({}, None)
    denied = denied_dir(layout, plan)
    if denied is not None:
        return [_substituted(spec, plan, denied) for spec in _specs(plan, layout)]
    where = _carriers(layout, plan["parent"] or layout.delegated() or "")
    rows = [_row(spec, plan, where, layout.kind, required) for spec in _specs(plan, layout)]
    # The run's groups are locked by its supervisor for as long as it lives: that lock, not a
    # pid, is how `secrun cgroups gc` and the next launch tell a live run from a leftover.
    if where:
        rows.append({"control": "cgroup run lock", "section": SECTION, "key": "parent",
                     "category": None, "value": "held by secrun while the run lives",
                     "status": "enforced" if required else "best-effort", "weight": 0.0,
                     "detail": "gc removes only groups whose lock is free",
                     "expect": {"cgroup.locked": "yes"}})
    return rows


# --- categories and their judges: facts -> (residual 0..1, what was observed) or None -----------

def _cgroup_file(facts: dict[str, str], *names: str) -> tuple[str, str] | None:
    """(name, value) of the first of the workload's cgroup files the live audit read."""
    for n in names:
        v = facts.get(f"cgroup.{n}", "")
        if v:
            return n, v
    return None


# the exposure a substitute leaves, of the limit's: RLIMIT_NPROC stops a fork bomb in the
# sandbox's user namespace; RLIMIT_DATA bounds private memory per process only
RESIDUAL = {"nproc": 0.3, "data": 0.7}


def _rlimit(facts: dict[str, str], name: str) -> Judged:
    """A substitute rlimit the live audit saw (its hard limit), scored by what it leaves."""
    hard = facts.get(f"rlimit.{name}", ":").split(":")[-1]
    if not hard.isdigit():
        return None
    return RESIDUAL.get(name, 0.5), f"RLIMIT_{name.upper()} = {hard} (a substitute)"


def judge_memory(facts: dict[str, str]) -> Judged:
    got = _cgroup_file(facts, "memory.max", "memory.limit_in_bytes")
    if got is not None:
        n, v = got
        if not (v == "max" or (v.isdigit() and int(v) >= UNLIMITED)):
            return 0.0, f"{n} = {v}"
    return _rlimit(facts, "data") or (1.0, f"{got[0]}: unlimited" if got else "no limit")


def judge_pids(facts: dict[str, str]) -> Judged:
    got = _cgroup_file(facts, "pids.max")
    if got is not None and got[1] != "max":
        return 0.0, f"{got[0]} = {got[1]}"
    return _rlimit(facts, "nproc") or (1.0, "no limit")


def judge_cpu(facts: dict[str, str]) -> Judged:
    got = _cgroup_file(facts, "cpu.max", "cpu.cfs_quota_us")
    if got is None or got[1].startswith("max") or got[1] == "-1":
        return 1.0, "no limit"
    return 0.0, f"{got[0]} = {got[1]}"


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [
        Category("cgroups.memory", "memory limit", 0.2, judge=judge_memory,
                 meaning="a memory limit on the workload's cgroup"),
        Category("cgroups.pids", "process limit", 0.2, judge=judge_pids,
                 meaning="a pids limit (fork bombs)"),
        Category("cgroups.cpu", "CPU limit", 0.1, judge=judge_cpu,
                 meaning="a CPU quota"),
    ]
