"""The ``namespaces`` plugin's audit: ``secrun_audit`` (a row per namespace, each with the
``ns.<name>`` fact ``secrun audit --live`` checks from inside) and the scored categories
``namespaces.<ns>``, one per namespace, with the judge that scores a running process."""

from __future__ import annotations

from secrun import hookimpl
from secrun.audit.categories import Category

from . import SECTION
from .plan import ORDER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from secrun.audit.rows import Row, Status
    from secrun.context import AuditContext

    from .plan import NamespacesPlan

    Judge = Callable[[dict[str, str]], tuple[float, str] | None]

# (the name in /proc/self/ns, importance in the exposure score)
NS_WEIGHTS = (("user", 0.3), ("pid", 0.3), ("mnt", 0.3), ("net", 0.8), ("ipc", 0.2),
              ("uts", 0.05), ("cgroup", 0.1), ("time", 0.05))


def judge_ns(name: str) -> Judge:
    """The judge of ``namespaces.<name>``: 0 for a new namespace, 1 for the host's; a new
    network namespace with interfaces other than loopback counts half."""
    def judge(facts: dict[str, str]) -> tuple[float, str] | None:
        v = facts.get(f"ns.{name}", "")
        if not v:
            return None
        if name == "net" and v == "new":
            links = [i for i in facts.get("net.interfaces", "").split() if i != "lo"]
            if links:
                return 0.5, f"new, with {' '.join(links)}"
            return 0.0, "new, loopback only"
        return (0.0 if v == "new" else 1.0), v
    return judge


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [Category(f"namespaces.{ns}", f"{ns} namespace", weight, judge=judge_ns(ns),
                     combine="max",
                     meaning=f"a new {ns} namespace" + (
                         " with loopback only (a new one with other interfaces counts half)"
                         if ns == "net" else ""))
            for ns, weight in NS_WEIGHTS]


MEANING = {
    "user": "ids and capabilities separate from the host's",
    "mount": "a private mount table",
    "pid": "sees only its own processes; a minimal init reaps and forwards signals",
    "uts": "own hostname",
    "ipc": "own SysV IPC and POSIX message queues",
    "cgroup": "sees only its own cgroup subtree",
    "time": "own monotonic/boottime clocks",
}


def _subid_value(plan: NamespacesPlan, in_uid: int) -> str:
    if not plan.get("subid"):
        return ""
    _u, _g, (start, count), _gids = plan["subid"]  # type: ignore[misc]
    return (f"0 = the caller, 1..{count} = its /etc/subuid range from {start} (newuidmap): "
            f"the workload's uid {in_uid} is host uid {start + in_uid - 1}, not the caller")


def _user_value(ctx: AuditContext, plan: NamespacesPlan) -> str:
    if plan["user"]:
        start, size = plan["range"]
        in_uid, in_gid = plan.get("inside", (0, 0))
        inside = {"self": "the caller's own uid/gid", "root": "uid/gid 0 (the caller)",
                  "range": f"ids 0..{size - 1} = host {start}..{start + size - 1}",
                  "identity": f"uid/gid {in_uid}/{in_gid} = the caller (its only ids)",
                  "subid": _subid_value(plan, in_uid),
                  }[plan["map"]]
        return f"new ({inside})"
    return "host" + (" (auto: secrun runs as root)" if ctx.config[SECTION]["user"] == "auto"
                     else "")


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    cfg = ctx.config[SECTION]
    plan: NamespacesPlan = ctx.plan
    required = ctx.required(SECTION)
    rows = [_row("user", "user", plan["user"], _user_value(ctx, plan), required)]
    made = {key for key, _ns, _flag in plan["unshare"]}
    for key, ns, _flag, _why in ORDER:
        if key == "net":
            continue
        on = key in made
        row = _row(key, ns, on, f"new ({MEANING[key]})" if on else "host", required)
        if key in plan.get("unavailable", ()):
            row["status"], row["value"] = "not-available", "host (this kernel has none)"
            row["detail"] = f"no /proc/self/ns/{ns}: asked for, not made (it may degrade)"
        rows.append(row)
    net_new = "net" in made
    row = _row("net", "net", net_new,
               "none (new namespace, loopback only)" if net_new else "host network", required)
    if net_new and plan["net"] == "none":
        row["expect"]["net.interfaces"] = "lo"
    rows.append(row)
    if cfg["uts"]:
        # how the UTS namespace is used, not a control of its own: listed, not scored
        rows.append({"control": "hostname", "section": SECTION, "key": "hostname",
                     "category": None,
                     "value": f"{cfg['hostname']} (domain {cfg['domainname']})",
                     "status": _status(True, required), "weight": 0.0})
    return rows


def _status(on: bool, required: bool) -> Status:
    if not on:
        return "not-configured"
    return "enforced" if required else "best-effort"


def _row(key: str, ns: str, on: bool, value: str, required: bool) -> Row:
    # weight: the share of this control's exposure that remains (docs/audit.md gives each
    # category its importance): none when the namespace is made, all of it when not.
    return {"control": f"namespace {ns}", "section": SECTION, "key": key, "value": value,
            "category": f"namespaces.{ns}", "status": _status(on, required),
            "weight": 0.0 if on else 1.0, "expect": {f"ns.{ns}": "new" if on else "host"}}
