"""The ``apparmor`` plugin's audit: its row (the profile the workload would enter, in which
mode, and the label a live audit must see) and its part of the category ``mac``, which it shares
with the ``selinux`` plugin (either one confining the workload suffices)."""

from __future__ import annotations

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row
from secrun.context import AuditContext
from secrun.errors import NotAvailable

from . import check_available, loaded_mode
from .plan import SECTION, ApparmorPlan

Judged = tuple[float, str] | None


def _consequence(required: bool) -> str:
    return ("a launch fails (required = true)" if required
            else "the workload runs without it (required = false)")


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    plan: ApparmorPlan = ctx.plan
    label = plan["target"]
    row: Row = {"control": "apparmor", "section": SECTION, "category": "mac",
                "key": "profile_file" if plan["file"] else "profile",
                "value": label + (f" (loaded from {plan['file']})" if plan["file"] else ""),
                "status": "not-available", "weight": 0.15}
    try:
        check_available()
    except NotAvailable as e:
        row["detail"] = f"{e.message}: " + _consequence(ctx.required(SECTION))
        return [row]
    mode = "enforce" if plan["file"] else loaded_mode(label)
    if mode is None:
        row["detail"] = f"AppArmor profile {label!r} is not loaded"
    elif plan["error"]:
        row["detail"] = plan["error"]
    else:
        if mode == "complain":
            row["status"], row["weight"] = "best-effort", 0.1
            row["detail"] = "complain mode: violations are logged, not denied"
        else:
            row["status"], row["weight"] = "enforced", 0.0
        if mode:
            row["expect"] = {"lsm.apparmor": f"{label} ({mode})"}
    return [row]


def judge_apparmor(facts: dict[str, str]) -> Judged:
    """The workload's AppArmor label (``lsm.apparmor``): confined unless unconfined; None
    where the kernel shows no AppArmor label."""
    label = facts.get("lsm.apparmor", "")
    if not label:
        return None
    if label.startswith("unconfined"):
        return 1.0, f"unconfined ({label})"
    return 0.0, f"apparmor {label}"


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [Category("mac", "mandatory access control", 0.5, judge=judge_apparmor,
                     combine="min",
                     meaning="an AppArmor profile or an SELinux domain other than unconfined "
                             "(either one suffices)")]
