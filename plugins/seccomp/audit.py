"""The ``seccomp`` plugin's audit: its rows (the filter, other ABIs, argument checks) and the
category ``seccomp.filter`` with its judge (over the calls of :mod:`.probe`)."""

from __future__ import annotations

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row, Status
from secrun.context import AuditContext

from .plan import SECTION, SeccompPlan
from .probe import SYSCALLS


def _filter_row(p: SeccompPlan, status: Status) -> Row:
    refusing = p["default"] != "allow" and p["default"] != "log"
    style = "allowlist" if refusing else "denylist"
    value = (f"{style}: {p['allowed']} calls allowed, "
             + (f"all others {p['default']}" if refusing else f"{len(p['refused'])} refused")
             + f"; {p['insns']} BPF instructions")
    if p["imported"]:
        value += f"; imported from {p['imported']}"
    expect = {"status.Seccomp": "2"}
    expect.update({f"syscall.{name}": "blocked" for name, verdict in p["probes"].items()
                   if verdict == "blocked"})
    details = []
    if p["refused"]:
        details.append("refused: " + ", ".join(p["refused"][:40])
                       + (" ..." if len(p["refused"]) > 40 else ""))
    if p["skipped"]:
        details.append("names unknown to this libseccomp, skipped: " + ", ".join(p["skipped"]))
    return {"control": "seccomp filter", "section": SECTION, "key": "allow",
            "category": "seccomp.filter", "value": value, "status": status,
            "weight": 0.05 if refusing else 0.5, "detail": "; ".join(details),
            "expect": expect}


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    p: SeccompPlan = ctx.plan
    status: Status = "enforced" if ctx.required(SECTION) else "best-effort"
    rows: list[Row] = [_filter_row(p, status), {
        "control": "seccomp other ABIs", "section": SECTION, "key": "other_abis",
        "category": "seccomp.filter",
        "value": (f"filtered like the native ABI: {', '.join(p['arches'][1:])}; "
                  if len(p["arches"]) > 1 else "")
        + f"any other ABI (i386 int 0x80, x32): {p['other_abis']}",
        "status": status, "weight": 0.0,
    }]
    if p["restrictions"]:
        rows.append({
            "control": "seccomp argument checks", "section": SECTION, "key": "deny_namespaces",
            "category": "seccomp.filter", "value": "; ".join(p["restrictions"]), "status": status,
            "weight": 0.0,
        })
    return rows


def judge_filter(facts: dict[str, str]) -> tuple[float, str]:
    """The share of the probed sensitive calls (the ``syscall.<name>`` facts of the names in
    :data:`.probe.SYSCALLS`) that are not blocked; no filter 1.0, strict mode 0."""
    mode = facts.get("status.Seccomp", "0")
    if mode == "0":
        return 1.0, "no filter"
    if mode == "1":
        return 0.0, "strict mode"
    nf = facts.get("status.Seccomp_filters", "?")
    probed = [p for p in (facts.get(f"syscall.{name}", "") for name in SYSCALLS) if p]
    if not probed:
        return 0.5, f"{nf} filter(s), rules not observable"
    allowed = probed.count("allowed")
    return allowed / len(probed), f"{nf} filter(s); {len(probed) - allowed}/{len(probed)} " \
        f"sensitive calls blocked"


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [Category("seccomp.filter", "syscall filter", 1.0, judge=judge_filter,
                     meaning="share of the probed sensitive system calls that are not "
                             "blocked")]
