"""The ``priority`` plugin's audit: its rows (``secrun audit``), the category it scores
(``priority.cpu``) with its judge, and the facts a live audit observes (inside the sandbox:
:mod:`.probe`; from outside: :mod:`.observe`).

Only the nice value is scored: it is the one part of this control the workload cannot undo
without a privilege.  A process may raise its own best-effort I/O priority (``ioprio_set`` asks
for no privilege below the realtime class), reset its autogroup's nice value (writing 0 to
``/proc/self/autogroup``) or leave the autogroup (``setsid``): those rows are listed and
checked live, with no category, so they do not change the score.
"""

from __future__ import annotations

import os

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row, Status
from secrun.context import AuditContext
from secrun.errors import describe_oserror

from .ioprio import describe
from .observe import kernel_autogroup, observe
from .plan import NICE_MAX, SECTION, PriorityPlan

CAP_SYS_NICE = 23
Judged = tuple[float, str] | None


def cpu_residual(nice: int) -> float:
    """The exposure a nice value leaves: 1.0 at nice 0 (normal), 0.0 at 19 (lowest)."""
    return round((NICE_MAX - min(max(nice, 0), NICE_MAX)) / NICE_MAX, 3)


def _undo(ctx: AuditContext) -> tuple[float, str]:
    """How far the workload could raise its priority back, from the built-in facts: (the
    residual that leaves at least, why)."""
    if "user" in (ctx.fact("namespaces.made") or []):
        return 0.0, "in a new user namespace: no CAP_SYS_NICE where it counts"
    uid = ctx.fact("identity.uid")
    if (ctx.uid if uid is None else uid) != 0:
        return 0.0, "not root: no CAP_SYS_NICE (unless RLIMIT_NICE allows)"
    if ctx.fact("capabilities.managed"):
        return 0.5, "root in the initial user namespace: undone with CAP_SYS_NICE, unless " \
                    "the capability sets drop it"
    return 1.0, "root in the initial user namespace, with CAP_SYS_NICE: it can raise its " \
                "priority back"


def _cpu_row(ctx: AuditContext, plan: PriorityPlan, status: Status) -> Row:
    floor, why = _undo(ctx)
    expect = {"priority.nice": str(plan["nice"])}
    if floor == 0.0:
        expect["priority.renice"] = "refused"
    return {"control": "CPU priority", "section": SECTION, "key": "nice",
            "category": "priority.cpu", "value": f"nice {plan['nice']}", "status": status,
            "weight": max(cpu_residual(plan["nice"]), floor), "detail": why, "expect": expect}


def _autogroup_row(plan: PriorityPlan, status: Status) -> Row:
    row: Row = {"control": "autogroup priority", "section": SECTION, "key": "autogroup",
                "category": None, "value": f"autogroup nice {plan['nice']}", "status": status,
                "weight": 0.0, "detail": "not scored: the workload may reset it or leave it "
                                         "(setsid)"}
    kernel = kernel_autogroup()
    if plan["autogroup_lost"]:
        row["value"], row["status"], row["weight"] = "cannot be set", "not-available", 1.0
        row["detail"] = plan["autogroup_lost"]
    elif not plan["autogroup"]:
        row["value"], row["status"], row["weight"] = "not set", "not-configured", 1.0
    elif kernel == "none":
        row["value"], row["status"] = "no autogroups in this kernel", "not-available"
        row["weight"] = 1.0
    elif kernel == "off":
        row["value"] += " (autogroup scheduling is off: kernel.sched_autogroup_enabled = 0)"
    else:
        row["expect"] = {"priority.autogroup": str(plan["nice"])}
    return row


def _io_row(plan: PriorityPlan, status: Status) -> Row:
    if plan["ioprio"] is None:
        return {"control": "I/O priority", "section": SECTION, "key": "ioprio_class",
                "category": None, "value": "unchanged", "status": "not-configured",
                "weight": 1.0}
    text = describe(plan["ioprio"])
    return {"control": "I/O priority", "section": SECTION, "key": "ioprio_class",
            "category": None, "value": text, "status": status, "weight": 0.0,
            "detail": "not scored: a process may raise its own best-effort I/O priority",
            "expect": {"priority.ioprio": text}}


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    plan: PriorityPlan = ctx.plan
    status: Status = "enforced" if ctx.required(SECTION) else "best-effort"
    return [_cpu_row(ctx, plan, status), _autogroup_row(plan, status), _io_row(plan, status)]


# --- scoring a running process -------------------------------------------------------------

def _holds_sys_nice(facts: dict[str, str]) -> bool:
    try:
        eff = int(facts.get("status.CapEff", "") or "0", 16)
    except ValueError:
        return False
    return bool(eff >> CAP_SYS_NICE & 1) and facts.get("ns.user") != "new"


def judge_cpu(facts: dict[str, str]) -> Judged:
    """``priority.cpu`` of a running process: its nice value, unless it can raise its
    priority back (``priority.renice`` from the probe; without a probe, ``--pid``: holding
    ``CAP_SYS_NICE`` outside a user namespace)."""
    nice = facts.get("priority.nice", "")
    if not nice.lstrip("-").isdigit():
        return None
    renice = facts.get("priority.renice", "")
    if renice == "allowed" or (not renice and _holds_sys_nice(facts)):
        return 1.0, f"nice {nice}, and it can raise its priority back"
    return cpu_residual(int(nice)), f"nice {nice}"


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [Category("priority.cpu", "CPU priority", 0.1, judge=judge_cpu, combine="max",
                     meaning="the workload's nice value, which it cannot lower again: "
                             "(19 - nice) / 19; 1.0 when it can raise its priority back "
                             "(CAP_SYS_NICE in the initial user namespace, RLIMIT_NICE)")]


# --- live facts ------------------------------------------------------------------------------

@hookimpl
def secrun_live_probe() -> str:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")) as f:
        return f.read()


@hookimpl
def secrun_live_facts(ctx: AuditContext) -> dict[str, str]:
    if ctx.pid is None:
        return {}
    try:
        return observe(ctx.pid)
    except OSError as e:
        # gone, or not readable: said in the report; the rows' expectations then fail
        ctx.warn(f"process {ctx.pid}: {describe_oserror(e)}")
        return {}
