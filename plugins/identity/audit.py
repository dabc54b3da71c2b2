"""The ``identity`` plugin's audit: its row and the category ``identity`` with its judge."""

from __future__ import annotations

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row, Status
from secrun.context import AuditContext

from . import kept_groups
from .plan import SECTION, IdentityPlan


def _show(num: int, name: str | None) -> str:
    return f"{num}({name})" if name else str(num)


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    plan: IdentityPlan = ctx.plan
    uid, gid, groups = plan["uid"], plan["gid"], plan["groups"]
    expect = {}
    # With setgroups=deny the caller's own groups stay: nothing to expect of them.
    if not ctx.fact("namespaces.setgroups_denied"):
        expect["id.groups"] = " ".join(str(g) for g in groups)
    if uid is not None:
        expect["id.uid"] = str(uid)
    if gid is not None:
        expect["id.gid"] = str(gid)
    value = " ".join((
        "uid=" + (_show(uid, plan["user"]) if uid is not None else "unchanged"),
        "gid=" + (_show(gid, plan["group"]) if gid is not None else "unchanged"),
        "groups=" + (",".join(map(str, groups)) or "none")))
    status: Status = "not-configured" if uid is None else "enforced"
    rows: list[Row] = [{
        "control": "identity", "section": SECTION, "key": "uid", "category": "identity",
        "value": value, "status": status, "weight": 0.0 if uid else 0.5, "expect": expect,
        "detail": "ids as seen inside the sandbox (of its user namespace, if it has one)"}]
    kept = kept_groups(ctx.fact("namespaces.setgroups_denied"))
    if kept:
        rows.append({"control": "caller's groups", "section": SECTION, "key": "groups",
                     "category": None, "status": "not-available", "weight": 1.0,
                     "value": f"kept: {', '.join(map(str, kept))} (shown inside as the "
                              f"overflow gid)",
                     "detail": "an ordinary user cannot drop its supplementary groups in a "
                               "user namespace (setgroups=deny): the kernel keeps them, and "
                               "their file access with them"})
    return rows


def judge_identity(facts: dict[str, str]) -> tuple[float, str] | None:
    """Root of the host (1.0), root of a user namespace (0.3) or another uid (0); the
    supplementary groups weigh 0.2 of it (none 0, root's 1, others 0.5)."""
    uid, groups = facts.get("id.uid", ""), facts.get("id.groups", "").split()
    if not uid:
        return None
    if uid == "0":
        u, what = (0.3, "root of a new user namespace") if facts.get("ns.user", "") == "new" \
            else (1.0, "root")
    else:
        u, what = 0.0, f"uid {uid}"
    g = 0.0 if not groups else 1.0 if "0" in groups else 0.5
    what += f", groups {' '.join(groups) or 'none'}"
    return (u * 1.0 + g * 0.2) / 1.2, what


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [Category("identity", "user and groups", 1.2, judge=judge_identity,
                     meaning="runs as root of the host (1.0), root of a user namespace (0.3) "
                             "or another uid (0); supplementary groups weigh 0.2 of it")]
