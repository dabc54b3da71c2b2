"""The ``landlock`` plugin's audit: a row for the filesystem ruleset and, with ``net = true``,
one for TCP, each with the facts ``secrun audit --live`` checks from inside (see
:mod:`.probe`).  No scored category: the rows are listed and checked live, the score is not
changed (Landlock narrows what the filesystem view already shows; its worth depends on the
rules, which a fixed importance would misstate)."""

from __future__ import annotations

from secrun import hookimpl
from secrun.audit.rows import Row, Status
from secrun.context import AuditContext

from . import SECTION, probe
from .plan import LandlockPlan, lost_notes

UNTESTABLE = "untestable"


def beneath(path: str, top: str) -> bool:
    """``path`` is ``top`` or below it."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def _listed(plan: LandlockPlan, key: str) -> list[str]:
    return [r["path"] for r in plan["paths"] if key in r["keys"]]


def _ports(ports: list[int]) -> str:
    return ", ".join(map(str, ports)) or "none"


def _status(ctx: AuditContext, plan: LandlockPlan) -> tuple[Status, str]:
    """The rows' status and, when nothing applies, why."""
    if not plan["enabled"]:
        return "not-configured", "enabled = false: no Landlock ruleset"
    if not plan["abi"]:
        return "not-available", ("this kernel offers no Landlock: " + (
            "a launch fails (required = true)" if ctx.required(SECTION)
            else "the workload runs without it (required = false)"))
    return ("enforced" if ctx.required(SECTION) else "best-effort"), ""


def _write_expect(plan: LandlockPlan) -> dict[str, str]:
    """``landlock.write:DIR`` for the probe's directories: allowed beneath a write rule,
    denied elsewhere (or untestable: missing or read-only in the view)."""
    write = _listed(plan, "write") + _listed(plan, "mirror")
    return {f"landlock.write:{d}": ("allowed" if any(beneath(d, w) for w in write)
                                    else "denied") + "|" + UNTESTABLE
            for d in probe.WRITE_DIRS}


def _fs_row(ctx: AuditContext, plan: LandlockPlan) -> Row:
    status, why = _status(ctx, plan)
    row: Row = {"control": "Landlock filesystem", "section": SECTION, "key": "enabled",
                "category": None, "status": status,
                "weight": 0.0 if status in ("enforced", "best-effort") else 1.0,
                "value": "off"}
    if why:
        row["detail"] = why
        if plan["enabled"]:
            row["value"] = "no Landlock on this kernel"
        return row
    read, write = _listed(plan, "read"), _listed(plan, "write")
    mirrored = [p for p in _listed(plan, "mirror") if p not in write]
    row["key"] = "write" if write else "mirror" if mirrored else "read"
    row["value"] = (f"ABI {plan['abi']}: read {', '.join(read) or 'nothing'}; "
                    f"write {', '.join(write) or 'nothing'}"
                    + (f"; and where the view is writable: {', '.join(mirrored)}"
                       if mirrored else ""))
    row["detail"] = "; ".join(["an allow-list: every path beneath neither is denied, "
                               "executing only beneath read"] + lost_notes(plan["abi"],
                                                                           plan["fs_lost"]))
    row["expect"] = {"landlock.abi": str(plan["abi"]), **_write_expect(plan)}
    return row


def _net_row(ctx: AuditContext, plan: LandlockPlan) -> Row:
    status, why = _status(ctx, plan)
    row: Row = {"control": "Landlock TCP", "section": SECTION, "key": "net",
                "category": None, "status": status,
                "weight": 0.0 if status in ("enforced", "best-effort") else 1.0,
                "value": f"bind {_ports(plan['tcp_bind'])}; connect "
                         f"{_ports(plan['tcp_connect'])}"}
    if why or plan["net_lost"]:
        row["status"] = status if why else "not-available"
        row["weight"] = 1.0
        row["detail"] = why or plan["net_lost"]
        return row
    bind = probe.BIND_PORT in plan["tcp_bind"]
    connect = probe.CONNECT_PORT in plan["tcp_connect"]
    row["detail"] = ("TCP bind and connect only to the ports listed (any address); other "
                     "protocols (UDP, UNIX sockets) are not restricted")
    row["expect"] = {"landlock.bind_tcp": ("allowed" if bind else "denied") + "|" + UNTESTABLE,
                     "landlock.connect_tcp": ("allowed" if connect else "denied") + "|"
                     + UNTESTABLE}
    return row


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    plan: LandlockPlan = ctx.plan
    rows = [_fs_row(ctx, plan)]
    if plan["enabled"] and ctx.config[SECTION]["net"]:
        rows.append(_net_row(ctx, plan))
    return rows


@hookimpl
def secrun_live_probe() -> str:
    with open(probe.__file__, encoding="utf-8") as f:
        return f.read()
