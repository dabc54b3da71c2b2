"""The report, rendered: a table for a terminal, Markdown for CI summaries, SARIF 2.1.0, JSON."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from .categories import Table

Report = dict[str, Any]

STATUS_COLOR = {"enforced": "green", "substituted": "yellow", "best-effort": "yellow",
                "not-available": "red", "not-configured": "red"}
STATUS_MARK = {"enforced": "+", "substituted": "*", "best-effort": "~", "not-available": "!",
               "not-configured": "-"}


class _Style:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str, color: str | None = None, bold: bool = False) -> str:
        if not self.on or (color is None and not bold):
            return text
        return click.style(text, fg=color, bold=bold)


def _trim(text: object, width: int) -> str:
    s = str(text)
    return s if len(s) <= width else s[:width - 1] + "…"


# --- table ---------------------------------------------------------------------------------------

def _header(rep: Report) -> list[str]:
    out = []
    if rep["profiles"]:
        out.append("profile: " + " -> ".join(f"{p['name']} ({p['path']})"
                                             for p in rep["profiles"]))
    if rep["command"]:
        out.append("command: " + " ".join(rep["command"]))
    if rep["pid"] is not None:
        out.append(f"process: {rep['pid']}")
    if rep["plugins"]:
        out.append("plugins loaded:")
        for p in rep["plugins"]:
            kind = "built-in" if p["builtin"] else "third-party"
            act = "" if p["active"] else "  (inactive: no section in the profile)"
            out.append(f"  {p['name']:<13} {p['distribution']} {p['version']}, {kind}, "
                       f"{p['file']}{act}")
    return out


def _live_lines(st: _Style, r: dict, cat: dict | None) -> list[str]:
    seen = f"observed: {cat['observed']}" if cat and "observed" in cat else ""
    if r.get("verified") is True:
        return ["      " + st("verified", "green") + (f"; {seen}" if seen else "")]
    if r.get("verified") is False:
        return ["      " + st("NOT IN EFFECT", "red", bold=True) + (f"; {seen}" if seen else "")]
    return [f"      {seen}"] if seen else []


def _row_lines(st: _Style, r: dict, cats: dict[str, dict], live: bool) -> list[str]:
    status = st(f"{r['status']:<14}", STATUS_COLOR[r["status"]])
    out = [f"  {STATUS_MARK[r['status']]} {_trim(r['control'], 24):<24} {status} "
           f"{r['points']:>5.2f}  {r['value']}"]
    if r["origin"] != "-":
        out.append(f"      from {r['origin']}")
    if live:
        out += _live_lines(st, r, cats.get(r["category"] or ""))
    if r["detail"] and r["status"] == "not-configured" and r["origin"] == "-":
        out.append(f"      ({r['detail']})")
    for ch in r.get("checks", []):
        if not ch["ok"]:
            out.append("      " + st(f"expected {ch['fact']} = {ch['expected']!r}, "
                                     f"observed {ch['observed']!r}", "red"))
    return out


def _controls(st: _Style, rep: Report) -> list[str]:
    cats = {c["id"]: c for c in rep["categories"]}
    by_plugin: dict[str, list[dict]] = {}
    for r in rep["controls"]:
        by_plugin.setdefault(r["plugin"], []).append(r)
    out = []
    for plugin, rows in by_plugin.items():
        out += ["", st(plugin, bold=True)]
        for r in rows:
            out += _row_lines(st, r, cats, rep["mode"] == "live")
    return out


def _effective(st: _Style, rep: Report) -> list[str]:
    out = ["", st("effective, by category", bold=True) + "   (0 = confined, 1 = not; "
           "xN: the category's importance, docs/audit.md)"]
    for c in rep["categories"]:
        if "effective" not in c:
            continue
        plan = f"planned {c['planned']:.2f}  " if "planned" in c else ""
        col = "green" if c["effective"] == 0 else "red" if c["effective"] >= 1 else "yellow"
        out.append(f"  {c['title']:<26} {plan}effective "
                   f"{st(format(c['effective'], '.2f'), col)}  x{c['importance']:<4}  "
                   f"{c['observed']}")
    return out


def _footer(st: _Style, rep: Report) -> list[str]:
    out = [""]
    out += [st(f"note: {n}", "yellow") for n in rep["notes"]]
    out += [st(f"MISMATCH: plugin {m['plugin']!r} claims {m['control']!r} enforced, but "
               f"{m['fact']} is {m['observed']!r}, expected {m['expected']!r}", "red",
               bold=True) for m in rep["mismatches"]]
    exp = rep["exposure"]
    parts = []
    if exp["planned"] is not None:
        parts.append(f"planned {exp['planned']:.1f}")
    if exp["effective"] is not None:
        parts.append(f"effective {exp['effective']:.1f}")
    col = "green" if rep["score"] < 5 else "yellow" if rep["score"] < 7.5 else "red"
    out.append(st(f"Overall exposure: {rep['score']:.1f} / 10 {rep['rating']}", col, bold=True)
               + f"   ({', '.join(parts)}; 10 = nothing confines it)")
    if rep["threshold"] is not None:
        out.append(f"threshold {rep['threshold']}: "
                   + ("exceeded" if rep["above_threshold"] else "ok"))
    return out


def render_table(rep: Report, color: bool) -> str:
    st = _Style(color)
    out = _header(rep)
    if rep["controls"]:
        out += _controls(st, rep)
    if rep["mode"] != "planned" or not rep["controls"]:
        out += _effective(st, rep)
    return "\n".join(out + _footer(st, rep))


# --- markdown ------------------------------------------------------------------------------------

def _md(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_header(rep: Report) -> list[str]:
    out = [f"## secrun audit ({rep['mode']})", ""]
    if rep["profiles"]:
        out.append("Profile: " + " → ".join(f"`{p['name']}`" for p in rep["profiles"]) + "  ")
    if rep["command"]:
        out.append("Command: `" + " ".join(rep["command"]) + "`  ")
    if rep["pid"] is not None:
        out.append(f"Process: {rep['pid']}  ")
    out += [f"**Overall exposure: {rep['score']:.1f} / 10 ({rep['rating']})**", ""]
    if rep["plugins"]:
        out.append("Plugins loaded: " + ", ".join(
            f"`{p['name']}` ({p['distribution']} {p['version']}"
            f"{'' if p['builtin'] else ', third-party'})" for p in rep["plugins"]))
        out.append("")
    return out


def _md_controls(rep: Report) -> list[str]:
    cats = {c["id"]: c for c in rep["categories"]}
    live = rep["mode"] == "live"
    head = "| plugin | control | value | origin | status | weight | points |"
    sep = "|---|---|---|---|---|---:|---:|"
    out = [head + " live |" if live else head, sep + "---|" if live else sep]
    for r in rep["controls"]:
        line = (f"| {_md(r['plugin'])} | {_md(r['control'])} | {_md(r['value'])} | "
                f"{_md(r['origin'])} | {r['status']} | {r['residual']:.2f} | "
                f"{r['points']:.2f} |")
        if live:
            c = cats.get(r["category"] or "")
            v = {True: "verified", False: "**NOT IN EFFECT**", None: ""}[r.get("verified")]
            obs = c.get("observed", "") if c else ""
            line += f" {v}{'; ' if v and obs else ''}{_md(obs)} |"
        out.append(line)
    return out + [""]


def render_markdown(rep: Report) -> str:
    out = _md_header(rep)
    if rep["controls"]:
        out += _md_controls(rep)
    if rep["mode"] != "planned":
        out += ["| category | importance | effective | observed |", "|---|---:|---:|---|"]
        out += [f"| {c['title']} | {c['importance']} | {c['effective']:.2f} | "
                f"{_md(c['observed'])} |" for c in rep["categories"]]
        out.append("")
    for m in rep["mismatches"]:
        out.append(f"- **mismatch**: `{m['plugin']}` claims *{m['control']}* enforced, but "
                   f"`{m['fact']}` is `{m['observed']}` (expected `{m['expected']}`)")
    for n in rep["notes"]:
        out.append(f"- note: {n}")
    return "\n".join(out).rstrip() + "\n"


# --- SARIF ---------------------------------------------------------------------------------------

def _line_of(lines: list[str], section: str, key: str) -> int | None:
    in_sec = False
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("["):
            in_sec = s == f"[{section}]"
            if in_sec and not key:
                return i
        elif in_sec and key and s.split("=", 1)[0].strip() == key:
            return i
    return None


def _location(origin: str) -> dict | None:
    """A SARIF location for an origin "PATH [section].key" (with the line when found)."""
    if not origin or origin == "-" or not origin.startswith("/"):
        return None
    path, _, where = origin.rpartition(" [")
    path = path.split(" + ")[-1]
    if not os.path.isfile(path):
        return None
    loc: dict = {"physicalLocation": {"artifactLocation": {"uri": "file://" + path}}}
    section, _, key = ("[" + where).partition("].")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return loc
    line = _line_of(lines, section.strip("[]"), key)
    if line is not None:
        loc["physicalLocation"]["region"] = {"startLine": line}
    return loc


def _rules(table: Table) -> list[dict]:
    rules: list[dict] = [{"id": c.id, "name": c.title, "shortDescription": {"text": c.title},
                          "fullDescription": {"text": c.meaning},
                          "properties": {"importance": c.importance}}
                         for c in table.categories]
    rules.append({"id": "secrun.extra", "name": "other control",
                  "shortDescription": {"text": "a plugin control outside the control table"},
                  "fullDescription": {"text": "listed and checked live; not scored"}})
    rules.append({"id": "secrun.live-mismatch", "name": "claimed control not in effect",
                  "shortDescription": {"text": "a control the plan says is enforced is not in "
                                               "effect in the running sandbox"},
                  "fullDescription": {"text": "an expect fact of an enforced row did not hold"},
                  "defaultConfiguration": {"level": "error"}})
    return rules


def _level(points: float) -> str:
    return "error" if points >= 0.5 else "warning" if points >= 0.1 else "note"


def _row_results(rep: Report, index: dict[str, int]) -> list[dict]:
    results = []
    for r in rep["controls"]:
        if r["residual"] <= 0.0 or r["points"] <= 0.0:
            continue
        rid = r["category"] or "secrun.extra"
        res: dict[str, Any] = {
            "ruleId": rid, "ruleIndex": index[rid], "level": _level(r["points"]),
            "message": {"text": f"{r['plugin']}: {r['control']} = {r['value']} "
                                f"({r['status']}); {r['points']:.2f} exposure points"},
            "properties": {"plugin": r["plugin"], "status": r["status"],
                           "weight": r["residual"], "points": r["points"]}}
        loc = _location(r["origin"])
        if loc:
            res["locations"] = [loc]
        results.append(res)
    return results


def _process_results(rep: Report, index: dict[str, int]) -> list[dict]:
    total = sum(c["importance"] for c in rep["categories"])
    results = []
    for c in rep["categories"]:
        if c.get("effective", 0) > 0 and total:
            pts = round(10 * c["importance"] * c["effective"] / total, 2)
            results.append({"ruleId": c["id"], "ruleIndex": index[c["id"]], "level": _level(pts),
                            "message": {"text": f"process {rep['pid']}: {c['title']}: "
                                                f"{c['observed']}"}})
    return results


def _mismatch_results(rep: Report, index: dict[str, int]) -> list[dict]:
    return [{"ruleId": "secrun.live-mismatch", "ruleIndex": index["secrun.live-mismatch"],
             "level": "error",
             "message": {"text": f"plugin {m['plugin']} claims {m['control']} enforced, but "
                                 f"{m['fact']} is {m['observed']!r} (expected "
                                 f"{m['expected']!r})"}}
            for m in rep["mismatches"]]


def render_sarif(rep: Report, table: Table) -> dict:
    from .. import __version__

    rules = _rules(table)
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = _row_results(rep, index)
    if rep["mode"] == "pid":
        results += _process_results(rep, index)
    results += _mismatch_results(rep, index)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "secrun-audit", "version": __version__,
                                "semanticVersion": __version__, "rules": rules}},
            "invocations": [{"executionSuccessful": True,
                             "commandLine": " ".join(["secrun", "audit", *sys.argv[2:]])}],
            "results": results,
            "properties": {"exposure": rep["score"], "rating": rep["rating"],
                           "mode": rep["mode"]},
        }],
    }


def render(rep: Report, fmt: str, color: bool, table: Table) -> str:
    if fmt == "json":
        return json.dumps(rep, indent=2)
    if fmt == "markdown":
        return render_markdown(rep)
    if fmt == "sarif":
        return json.dumps(render_sarif(rep, table), indent=2)
    return render_table(rep, color)
