"""The ``selinux`` plugin's audit: its row (the context the workload would run in, checked
against the loaded policy, and the label a live audit must see) and its part of the category
``mac``, which it shares with the ``apparmor`` plugin (either one confining the workload
suffices)."""

from __future__ import annotations

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row
from secrun.context import AuditContext
from secrun.errors import NotAvailable, SetupError

from . import check_available, enforcing, full_context, library
from .plan import SECTION, SelinuxPlan

Judged = tuple[float, str] | None
# Domains that confine nothing (the reference policy's unconfined ones, and the kernel's)
_UNCONFINED_TYPES = (":unconfined_t:", ":kernel_t:", ":initrc_t:")


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    plan: SelinuxPlan = ctx.plan
    row: Row = {"control": "selinux", "section": SECTION, "category": "mac",
                "key": "context" if plan["context"] else "type",
                "value": plan["context"] or f"type {plan['type']}",
                "status": "not-available", "weight": 0.15}
    try:
        check_available()
        lib = library()
        context = full_context(lib, plan)
    except (NotAvailable, SetupError, OSError) as e:
        row["detail"] = f"{e}: " + ("a launch fails (required = true)"
                                    if ctx.required(SECTION)
                                    else "the workload runs without it (required = false)")
        return [row]
    row["value"] = context
    if lib.security_check_context(context.encode()) != 0:
        row["detail"] = "not a valid context in the loaded policy: a launch fails"
        return [row]
    row["expect"] = {"lsm.selinux": context}
    if enforcing():
        row["status"], row["weight"] = "enforced", 0.0
    else:
        row["status"], row["weight"] = "best-effort", 0.1
        row["detail"] = "permissive mode: denials are logged, not enforced"
    return [row]


def judge_selinux(facts: dict[str, str]) -> Judged:
    """The workload's SELinux context (``lsm.selinux``): confined unless in an unconfined
    domain; None where the kernel shows no SELinux context."""
    context = facts.get("lsm.selinux", "")
    if not context:
        return None
    if context.startswith("unconfined") or any(t in context for t in _UNCONFINED_TYPES):
        return 1.0, f"unconfined ({context})"
    return 0.0, f"selinux {context}"


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [Category("mac", "mandatory access control", 0.5, judge=judge_selinux,
                     combine="min",
                     meaning="an AppArmor profile or an SELinux domain other than unconfined "
                             "(either one suffices)")]
