"""The audit's report (the JSON document every format is rendered from), its score and rating.

The JSON follows ``secrun/audit/data/audit-schema-v1.json`` (``docs/audit.md``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .categories import Judged, Table
    from .rows import AuditRow, Mismatch

SCHEMA_ID = "https://secrun.invalid/schemas/audit-v1.json"
SCHEMA_VERSION = "1"

# systemd-analyze security's bands (exposure at or above the value -> the word).
BANDS = ((10.0, "DANGEROUS"), (9.0, "UNSAFE"), (7.5, "EXPOSED"), (5.0, "MEDIUM"),
         (1.0, "OK"), (0.1, "SAFE"), (0.0, "PERFECT"))


def schema_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                        "audit-schema-v1.json")


def rating(exposure: float) -> str:
    for low, word in BANDS:
        if exposure >= low:
            return word
    return "PERFECT"


def score(table: Table, residuals: dict[str, float]) -> float:
    """10 x the importance-weighted mean residual (10.0 when there is nothing to score)."""
    if not table.total:
        return 10.0
    total = sum(c.importance * residuals[c.id] for c in table.categories)
    return round(10.0 * total / table.total, 1)


def effective(table: Table, facts: dict[str, str]) -> dict[str, Judged]:
    """{category id: (residual, observed text)} from a process's facts."""
    return {c.id: c.judge(facts) for c in table.categories}


class Audit(NamedTuple):
    """What one audit found, before it is reported."""

    mode: str  # "planned", "live" or "pid"
    plan: dict | None = None
    rows: list[AuditRow] | None = None
    loaded: list[dict] | None = None
    residuals: dict[str, float] | None = None
    facts: dict[str, str] | None = None
    notes: Sequence[str] = ()
    mismatches: Sequence[Mismatch] = ()
    argv: Sequence[str] = ()
    pid: int | None = None
    reference: str | None = None


def _categories(table: Table, residuals: dict[str, float] | None,
                eff: dict[str, Judged] | None) -> list[dict[str, Any]]:
    cats = []
    for c in table.categories:
        item: dict[str, Any] = {"id": c.id, "title": c.title, "plugin": c.plugin,
                                "importance": c.importance}
        if residuals is not None:
            item["planned"] = round(residuals[c.id], 3)
        if eff is not None:
            item["effective"] = round(eff[c.id][0], 3)
            item["observed"] = eff[c.id][1]
        cats.append(item)
    return cats


def build_report(table: Table, a: Audit, threshold: float | None = None) -> dict[str, Any]:
    from .. import __version__

    eff = effective(table, a.facts) if a.facts is not None else None
    exposure = {"planned": score(table, a.residuals) if a.residuals is not None else None,
                "effective": score(table, {k: v[0] for k, v in eff.items()}) if eff else None}
    headline = (exposure["effective"] if a.mode != "planned" else exposure["planned"]) or 0.0
    plan = a.plan
    return {
        "$schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "secrun_version": __version__,
        "mode": a.mode,
        "command": list(a.argv),
        "pid": a.pid,
        "profiles": [{"name": n, "path": p, "source": s} for n, p, s in plan["profiles"]]
        if plan else [],
        "plugins": a.loaded or [],
        "controls": list(a.rows or []),
        "categories": _categories(table, a.residuals, eff),
        "exposure": exposure,
        "score": headline,
        "rating": rating(headline),
        "mismatches": list(a.mismatches),
        "facts": dict(sorted(a.facts.items())) if a.facts is not None else None,
        "reference": a.reference,
        "notes": list(a.notes),
        "threshold": threshold,
        "above_threshold": threshold is not None and headline > threshold,
    }
