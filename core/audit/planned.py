"""The planned audit: every active plugin's ``secrun_audit`` rows, checked, with their origin
and category, a not-configured row for each scored category no row covers, and the planned
residual of each category."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SecrunError
from .rows import STATUSES, AuditError, AuditRow

if TYPE_CHECKING:
    from ..registry import Plugins
    from .categories import Scored, Table

UNCONFINED = ("not-configured", "not-available")


def origin(plan: dict, section: str | None, key: str | None) -> str:
    """Where a row's value comes from: "FILE [section].key", the command line, or the
    built-in default ("-": no section)."""
    from ..compose import BUILTIN_DEFAULT

    if not section or section not in plan["config"]:
        return "-"
    origins = plan["origins"].get(section, {})
    if key:
        where = origins.get(key, BUILTIN_DEFAULT)
        return where if where == BUILTIN_DEFAULT else f"{where} [{section}].{key}"
    files = sorted({v for v in origins.values() if v != BUILTIN_DEFAULT})
    return f"{' + '.join(files)} [{section}]" if files else BUILTIN_DEFAULT


def _weight(row: dict) -> float | None:
    try:
        w = float(row["weight"])
    except (TypeError, ValueError):
        return None
    return w if 0.0 <= w <= 1.0 else None


def _problem(row: object) -> str | None:
    if not isinstance(row, dict):
        return "not a dict"
    for k in ("control", "value", "status", "weight"):
        if k not in row:
            return f"no {k!r}"
    if row["status"] not in STATUSES:
        return f"status must be one of {', '.join(STATUSES)}"
    if _weight(row) is None:
        return "weight is not a number within 0.0-1.0"
    if not isinstance(row.get("expect") or {}, dict):
        return "expect is not a dict"
    return None


def check_row(plugin: str, row: Any) -> AuditRow:
    """A plugin's row in the report's shape (origin and category still to fill in); a
    malformed one is an :class:`AuditError` naming the plugin."""
    problem = _problem(row)
    if problem:
        raise AuditError(f"plugin {plugin!r}: secrun_audit returned a bad row ({problem}): "
                         f"{row!r}")
    return {"control": str(row["control"]), "value": str(row["value"]),
            "status": row["status"], "weight": float(row["weight"]),
            "section": row.get("section"), "key": row.get("key"),
            "detail": str(row.get("detail") or ""), "category": row.get("category"),
            "expect": {str(k): str(v) for k, v in (row.get("expect") or {}).items()},
            "plugin": plugin, "origin": "-"}


def category_of(row: AuditRow, table: Table) -> str | None:
    """The scored category a row names (None: listed, not scored)."""
    cat = row["category"]
    return cat if cat in table.by_id else None


def _call(plugin: str, fn: Any, ctx: object) -> list:
    try:
        got = fn(ctx=ctx) or []
    except SecrunError:
        raise
    except Exception as e:  # name the plugin
        raise AuditError(f"plugin {plugin!r}: secrun_audit failed: "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(got, (list, tuple)):
        raise AuditError(f"plugin {plugin!r}: secrun_audit must return a list of rows")
    return list(got)


def plugin_rows(plugins: Plugins, plan: dict, table: Table, argv: list[str]) -> list[AuditRow]:
    """Every active plugin's rows, in pluggy's order, with origin and category."""
    from ..context import AuditContext

    ctx = AuditContext(plan["config"], plan["origins"], plan["plan"], plan["facts"],
                       plan["reads"], list(argv))
    rows = []
    for plugin, fn in plugins.order("secrun_audit", plan["active"]):
        ctx.plugin = plugin
        for raw in _call(plugin, fn, ctx):
            row = check_row(plugin, raw)
            row["category"] = category_of(row, table)
            row["origin"] = origin(plan, row["section"], row["key"])
            rows.append(row)
    return rows


def core_rows() -> list[AuditRow]:
    """What the core itself promises for every launch (:mod:`secrun.launch`), checked live like
    the plugins' rows.  Not scored: no profile can turn them off."""
    def row(control: str, value: str, expect: dict[str, str]) -> AuditRow:
        return {"plugin": "core", "control": control, "value": value, "status": "enforced",
                "weight": 0.0, "section": None, "key": None, "detail": "", "category": None,
                "expect": expect, "origin": "secrun core", "residual": 0.0}

    return [
        row("session", "own session and process group; controlling terminal: a new pty "
            "relayed by secrun, or none", {"proc.session": "own", "proc.pgrp": "own",
                                           "proc.tty": "none|own"}),
        row("supervision", "dies with secrun (its death signal, or its parent is pid 1 of its "
            "pid namespace, which takes the namespace along)", {"proc.bound": "pdeathsig|init"}),
        row("signals", "default dispositions and an empty signal mask at exec",
            {"proc.sig_ignored": "none", "proc.sig_blocked": "none"}),
        row("plan cache", "a launch from here takes this plan, or compiles it afresh",
            {"plan.cache": "fresh|none"}),
    ]


def uncovered_row(cat: Scored, active: list[str]) -> AuditRow:
    """The not-configured row of a category no row covers, saying why."""
    mine = [p for p in cat.plugins if p in active]
    owner = cat.plugins[0] if cat.plugins else "-"
    why = (f"plugin {', '.join(mine)} is active but does not report it" if mine
           else f"no [{owner}] section in the profile" if owner != "-"
           else "no plugin provides it")
    return {"plugin": mine[0] if mine else owner, "control": cat.title,
            "value": "not configured", "status": "not-configured", "weight": 1.0,
            "section": None, "key": None, "detail": why, "category": cat.id,
            "expect": {}, "origin": "-"}


def residual_of(row: AuditRow) -> float:
    if row["status"] in UNCONFINED:
        return 1.0
    return min(1.0, max(0.0, float(row["weight"])))


def residuals(rows: list[AuditRow], table: Table) -> dict[str, float]:
    """{category id: planned residual} from the rows (categories without rows: 1.0)."""
    by: dict[str, list[AuditRow]] = {c.id: [] for c in table.categories}
    for r in rows:
        if r["category"] in by:
            by[r["category"] or ""].append(r)
    out = {}
    for c in table.categories:
        vals = [residual_of(r) for r in by[c.id]]
        if c.combine == "min" or not vals:
            out[c.id] = min(vals, default=1.0)
            continue
        # The weakest configured row counts; a not-configured aspect of a category that other
        # rows do configure (e.g. an option left at its default) does not undo them.
        conf = [residual_of(r) for r in by[c.id] if r["status"] not in UNCONFINED]
        out[c.id] = max(conf) if conf else max(vals)
    return out


def score_rows(rows: list[AuditRow], table: Table, planned: dict[str, float]) -> None:
    """Fill each row's residual, importance and points.  A category's points go to the first
    row that sets its residual, so that the rows' points add up to the score; the other rows
    of the category show 0."""
    scored: set[str] = set()
    for r in rows:
        r["residual"] = residual_of(r)
        cat = table.by_id.get(r["category"] or "")
        r["importance"] = cat.importance if cat else 0.0
        decisive = cat is not None and cat.id not in scored and \
            r["residual"] == planned[cat.id]
        if cat is not None and decisive:
            scored.add(cat.id)
        r["points"] = round(10.0 * r["importance"] * r["residual"] / table.total, 2) \
            if decisive and table.total else 0.0


def loaded_plugins(plan: dict) -> list[dict]:
    """The plugins the plan loaded, for the report's header."""
    return [{"name": n, "distribution": d, "version": v, "file": f, "builtin": bool(b),
             "sections": list(s), "active": n in plan["active"]}
            for n, d, v, f, b, s in plan["plugins"]]


def plan_rows(plan: dict, argv: Sequence[str] = (), plugins: Plugins | None = None,
              table: Table | None = None
              ) -> tuple[list[AuditRow], list[dict], dict[str, float]]:
    """(rows, plugins loaded, planned residuals) of a compiled plan.  ``plugins``: the plan's
    plugins, registered (loaded afresh if not given); ``table``: their categories."""
    if plugins is None:
        from ..registry import Plugins

        plugins = Plugins([p[0] for p in plan["plugins"] if not p[4]])
    if table is None:
        from .categories import table as category_table

        table = category_table(plugins)
    rows = plugin_rows(plugins, plan, table, list(argv)) + core_rows()
    covered = {r["category"] for r in rows}
    rows += [uncovered_row(c, plan["active"]) for c in table.categories if c.id not in covered]
    planned = residuals(rows, table)
    score_rows(rows, table, planned)
    return rows, loaded_plugins(plan), planned
