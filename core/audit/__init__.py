"""``secrun audit``: which controls apply to a workload — planned, verified live, or for any
running process.

- Planned (``secrun audit --profile NAME [-- ./app]``): every active plugin's ``secrun_audit``
  rows, plus a row for each category of the control table (:mod:`secrun.audit.categories`) that no
  plugin reports, and the exposure score.
- Live (``--live``): the sandbox is launched for real with the probe (:mod:`secrun.probe`) as the
  workload; its facts, seen from inside and (for cgroup limits) from outside, are checked against
  every row's ``expect`` and scored by the same control table.
- Any process (``--pid PID``): the facts of that process, read from ``/proc/PID``, and the same
  score.

Exit status: 0; 1 the exposure is above ``--threshold``; 2 (``--live``) a control the plan says
is enforced is not in effect; 125 the audit itself could not run.  The JSON output follows
``secrun/data/audit-schema-v1.json`` (``docs/audit.md``).
"""

import json
import os
import sys

import click

from ..errors import SecrunError

SCHEMA_ID = "https://secrun.invalid/schemas/audit-v1.json"
SCHEMA_VERSION = "1"
STATUSES = ("enforced", "best-effort", "not-available", "not-configured")
EXIT_THRESHOLD = 1
EXIT_MISMATCH = 2


class AuditError(SecrunError):
    pass


# --- planned -----------------------------------------------------------------------------------

def _origin(plan: dict, section, key) -> str:
    from ..compose import BUILTIN_DEFAULT

    if not section or section not in plan["config"]:
        return "-"
    origins = plan["origins"].get(section, {})
    if key:
        where = origins.get(key, BUILTIN_DEFAULT)
        return where if where == BUILTIN_DEFAULT else f"{where} [{section}].{key}"
    files = sorted({v for v in origins.values() if v != BUILTIN_DEFAULT})
    return f"{' + '.join(files)} [{section}]" if files else BUILTIN_DEFAULT


def _check_row(plugin: str, row) -> dict:
    def bad(msg):
        raise AuditError(f"plugin {plugin!r}: secrun_audit returned a bad row ({msg}): {row!r}")

    if not isinstance(row, dict):
        bad("not a dict")
    for k in ("control", "value", "status", "weight"):
        if k not in row:
            bad(f"no {k!r}")
    if row["status"] not in STATUSES:
        bad(f"status must be one of {', '.join(STATUSES)}")
    try:
        w = float(row["weight"])
    except (TypeError, ValueError):
        bad("weight is not a number")
    if not 0.0 <= w <= 1.0:
        bad("weight outside 0.0-1.0")
    expect = row.get("expect") or {}
    if not isinstance(expect, dict):
        bad("expect is not a dict")
    return {"control": str(row["control"]), "value": str(row["value"]),
            "status": row["status"], "weight": w,
            "section": row.get("section"), "key": row.get("key"),
            "detail": str(row.get("detail") or ""), "category": row.get("category"),
            "expect": {str(k): str(v) for k, v in expect.items()}}


def plan_rows(plan: dict, argv=()) -> tuple[list, list, dict]:
    """(rows, plugins, residuals): every active plugin's audit rows, categorized, with their
    origin, and a not-configured row for each category no plugin reports."""
    from ..context import AuditContext
    from ..registry import Plugins
    from . import categories as ac

    third = [p[0] for p in plan["plugins"] if not p[4]]
    plugins = Plugins(third)
    ctx = AuditContext(plan["config"], plan["origins"], plan["plan"], plan["facts"],
                       plan["reads"], list(argv), legacy=plan.get("legacy", ()))
    rows = []
    for plugin, fn in plugins.order("secrun_audit", plan["active"]):
        ctx.plugin = plugin
        try:
            got = fn(ctx=ctx) or []
        except SecrunError:
            raise
        except Exception as e:  # noqa: BLE001 - name the plugin
            raise AuditError(f"plugin {plugin!r}: secrun_audit failed: "
                             f"{type(e).__name__}: {e}") from None
        if not isinstance(got, (list, tuple)):
            raise AuditError(f"plugin {plugin!r}: secrun_audit must return a list of rows")
        for raw in got:
            row = _check_row(plugin, raw)
            row["plugin"] = plugin
            row["category"] = ac.categorize(row)
            row["origin"] = _origin(plan, row["section"], row["key"])
            rows.append(row)
    rows += core_rows()
    covered = {r["category"] for r in rows}
    for c in ac.CATEGORIES:
        if c.id in covered:
            continue
        owner = c.plugin.split("|")[0]
        active = [p for p in c.plugin.split("|") if p in plan["active"]]
        why = (f"plugin {', '.join(active)} is active but does not report it" if active
               else f"no [{owner}] section in the profile" if owner != "-"
               else "no plugin provides it")
        rows.append({"plugin": active[0] if active else owner, "control": c.title,
                     "value": "not configured", "status": "not-configured", "weight": 1.0,
                     "section": None, "key": None, "detail": why, "category": c.id,
                     "expect": {}, "origin": "-"})
    residuals = ac.planned(rows)
    scored: set = set()
    for r in rows:
        r["residual"] = ac.residual_of(r)
        cat = ac.BY_ID.get(r["category"] or "")
        r["importance"] = cat.importance if cat else 0.0
        # The category's points go to the first row that sets its residual, so that the rows'
        # points add up to the score; the other rows of the category show 0.
        decisive = cat is not None and cat.id not in scored and \
            r["residual"] == residuals[cat.id]
        if decisive:
            scored.add(r["category"])
        r["points"] = round(10.0 * r["importance"] * r["residual"] / ac.TOTAL, 2) \
            if decisive else 0.0
    loaded = [{"name": n, "distribution": d, "version": v, "file": f, "builtin": bool(b),
               "sections": list(s), "active": n in plan["active"]}
              for n, d, v, f, b, s in plan["plugins"]]
    return rows, loaded, residuals


def cached_plan_state(plan: dict, profiles, sets, plugins) -> str:
    """What a launch with these arguments, from this directory, would take from the plan
    cache: ``"fresh"`` (the plan just compiled), ``"stale"`` (another policy) or ``"none"``
    (no valid entry: it compiles afresh)."""
    from .. import plan as _plan

    try:
        cached = _plan.load_cached(_plan.cache_key(profiles, sets, plugins))
    except Exception:  # noqa: BLE001 - an unreadable cache is a miss for a launch too
        return "none"
    if cached is None:
        return "none"
    same = all(cached.get(k) == plan.get(k) for k in ("config", "plan", "dispatch", "active"))
    return "fresh" if same else "stale"


def core_rows() -> list:
    """What the core itself promises for every launch (:mod:`secrun.launch`), checked live like
    the plugins' rows.  Not scored: no profile can turn them off."""
    def row(control, value, expect):
        return {"plugin": "core", "control": control, "value": value, "status": "enforced",
                "weight": 0.0, "section": None, "key": None, "detail": "", "category": None,
                "expect": expect, "origin": "secrun core", "residual": 0.0}

    return [
        row("session", "own session and process group; controlling terminal: a new pty "
            "relayed by secrun, or none", {"proc.session": "own", "proc.pgrp": "own",
                                           "proc.tty": "none|own"}),
        row("supervision", "dies with secrun (death signal; pid 1 takes its pid namespace "
            "along)", {"proc.pdeathsig": "SIGKILL"}),
        row("signals", "default dispositions and an empty signal mask at exec",
            {"proc.sig_ignored": "none", "proc.sig_blocked": "none"}),
        row("plan cache", "a launch from here takes this plan, or compiles it afresh",
            {"plan.cache": "fresh|none"}),
    ]


# --- live ----------------------------------------------------------------------------------------

def probe_python(explicit=None) -> str:
    """An interpreter for the probe that the sandbox's filesystem view is likely to contain."""
    if explicit:
        return explicit
    real = os.path.realpath(sys.executable)
    if real.startswith("/usr/"):
        return real
    for p in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(p, os.X_OK):
            return p
    return real


def _descendants(root: int) -> set:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out.add(c)
                todo.append(c)
    return out


def _find_probe(secrun_pid: int, nonce: str):
    for pid in sorted(_descendants(secrun_pid)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 5 and argv[1:4] == [b"-I", b"-S", b"-c"] and nonce.encode() in argv:
            return pid
    return None


# The probe's launcher: the shell reads the signal dispositions the workload started with
# (builtins only, in the same process) and execs the probe with them.
# (PWD: the shell would export it, and the probe counts the environment the workload gets.)
PROBE_SHELL = ('while read -r k v; do case $k in SigIgn:) i=$v;; SigBlk:) b=$v;; esac; '
               'done </proc/self/status; unset PWD; exec "$0" -I -S -c "$1" "$2" "$3" "$i" "$b"')


def run_live(profiles, sets, extra_plugins, python, timeout=60.0,
             paths=()) -> tuple[dict, list]:
    """Launch the sandbox with the probe; (facts, notes).  ``paths``: those whose visible
    mount the rows ask about (``mount:PATH`` facts)."""
    import secrets
    import select
    import subprocess

    from .. import audit_facts, probe

    ref = audit_facts.reference("self")
    ref["linger"] = timeout
    ref["paths"] = sorted(set(paths))
    nonce = "secrun-audit-probe-" + secrets.token_hex(8)
    with open(probe.__file__) as f:
        source = f.read()
    # --no-cache: verify the plan just compiled for the rows, never an older cached one.
    # -t: the probe runs on a pty of its own, the path an interactive launch takes
    cmd = [sys.executable, "-I", "-m", "secrun", "--no-cache", "-t"]
    for p in profiles:
        cmd += ["--profile", p]
    for s in sets:
        cmd += ["--set", s]
    for p in extra_plugins:
        cmd += ["--plugin", p]
    cmd += ["--", "/bin/sh", "-c", PROBE_SHELL, python, source, json.dumps(ref), nonce]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    notes: list = []
    line = b""
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if ready:
            line = proc.stdout.readline()
        if not line.strip():
            proc.kill()
            _, raw = proc.communicate(timeout=10)
            text = raw.decode(errors="replace").strip().splitlines()
            raise AuditError("the live probe did not report (sandbox exit status "
                             f"{proc.returncode}): " + (" | ".join(text[-3:]) or "no message"))
        inside = json.loads(line)
        host_pid = _find_probe(proc.pid, nonce)
        facts: dict = {}
        if host_pid is None:
            notes.append("the probe's process was not found from outside; cgroup limits "
                         "are as seen inside")
        else:
            try:
                facts, more = audit_facts.outside(host_pid, ref, syscalls=False)
                notes += more
            except OSError as e:
                notes.append(f"outside view of the probe failed: {e}")
            facts["probe.host_pid"] = str(host_pid)
            # session, process group and terminal, against secrun's caller (this process)
            facts.update(probe.session_facts(f"/proc/{host_pid}"))
        outside_view = dict(facts)
        facts.update(inside)
        # A cgroup namespace shows the probe its group as "/": the host's path is the useful one.
        facts.update({k: v for k, v in outside_view.items() if k.startswith("cgroup.")})
        for k, v in outside_view.items():
            if k.startswith(("status.", "ns.", "id.", "fs.")) and inside.get(k, v) != v:
                notes.append(f"{k}: inside the probe saw {inside[k]!r}, outside {v!r}")
        if "probe.error" in inside:
            notes.append(f"probe error: {inside['probe.error']}")
        facts["_pid"] = host_pid
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.returncode not in (0, None):
        notes.append(f"the sandboxed probe exited with status {proc.returncode}"
                     + (f": {err.splitlines()[-1]}" if err else ""))
    return facts, notes


def _same(fact: str, expected: str, observed) -> bool:
    """Whether an observed fact is what a row expects.  ``A|B`` expects either; a ``mount:``
    fact's expectation may use ``*`` for any one word (e.g. "/proc/sys * ro")."""
    if observed is None:
        return False
    if "|" in expected:
        return any(_same(fact, alt, observed) for alt in expected.split("|"))
    e, o = expected.strip(), str(observed).strip()
    if fact.startswith("mount:"):
        from fnmatch import fnmatchcase

        return fnmatchcase(o, e)
    if fact.startswith("status.Cap"):
        try:
            return int(e, 16) == int(o, 16)
        except ValueError:
            return False
    if fact in ("id.groups", "net.interfaces"):
        return set(e.split()) == set(o.split())
    return e == o


def check_expects(rows: list, facts: dict) -> list:
    """Fill each row's ``checks``; return the mismatches of enforced rows."""
    from .. import audit_facts

    pid = facts.get("_pid")
    dirs = audit_facts.cgroup_dirs(pid) if pid else {}
    mismatches = []
    for r in rows:
        checks = []
        for fact, want in sorted(r["expect"].items()):
            seen = facts.get(fact)
            if seen is None and fact.startswith("cgroup.") and dirs:
                seen = audit_facts.cgroup_file(dirs, fact[len("cgroup."):])
            ok = _same(fact, want, seen)
            checks.append({"fact": fact, "expected": want, "observed": seen, "ok": ok})
            if not ok and r["status"] == "enforced":
                mismatches.append({"plugin": r["plugin"], "control": r["control"],
                                   "fact": fact, "expected": want, "observed": seen})
        r["checks"] = checks
        r["verified"] = (None if not checks else all(c["ok"] for c in checks))
    return mismatches


# --- the report ----------------------------------------------------------------------------------

def build_report(mode, plan=None, rows=None, loaded=None, residuals=None, facts=None, notes=(),
                 mismatches=(), argv=(), pid=None, threshold=None, reference=None) -> dict:
    from .. import __version__
    from . import categories as ac

    eff = ac.effective(facts) if facts is not None else None
    cats = []
    for c in ac.CATEGORIES:
        item = {"id": c.id, "title": c.title, "plugin": c.plugin, "importance": c.importance}
        if residuals is not None:
            item["planned"] = round(residuals[c.id], 3)
        if eff is not None:
            item["effective"] = round(eff[c.id][0], 3)
            item["observed"] = eff[c.id][1]
        cats.append(item)
    exposure = {"planned": ac.score(residuals) if residuals is not None else None,
                "effective": ac.score({k: v[0] for k, v in eff.items()}) if eff else None}
    headline = (exposure["effective"] if mode != "planned" else exposure["planned"]) or 0.0
    report = {
        "$schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "secrun_version": __version__,
        "mode": mode,
        "command": list(argv),
        "pid": pid,
        "profiles": [{"name": n, "path": p, "source": s} for n, p, s in plan["profiles"]]
        if plan else [],
        "plugins": loaded or [],
        "controls": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows or []],
        "categories": cats,
        "exposure": exposure,
        "score": headline,
        "rating": ac.rating(headline),
        "mismatches": list(mismatches),
        "facts": {k: v for k, v in sorted((facts or {}).items()) if not k.startswith("_")}
        if facts is not None else None,
        "reference": reference,
        "notes": list(notes),
        "threshold": threshold,
        "above_threshold": threshold is not None and headline > threshold,
    }
    return report


# --- rendering -----------------------------------------------------------------------------------

class _Style:
    def __init__(self, on):
        self.on = on

    def __call__(self, text, color=None, bold=False):
        if not self.on or (color is None and not bold):
            return text
        return click.style(text, fg=color, bold=bold)


STATUS_COLOR = {"enforced": "green", "best-effort": "yellow", "not-available": "red",
                "not-configured": "red"}
STATUS_MARK = {"enforced": "+", "best-effort": "~", "not-available": "!", "not-configured": "-"}


def _trim(text, width):
    text = str(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def render_table(rep: dict, color: bool) -> str:
    st = _Style(color)
    out = []
    mode = rep["mode"]
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
    cats = {c["id"]: c for c in rep["categories"]}
    if rep["controls"]:
        live = mode == "live"
        by_plugin: dict = {}
        for r in rep["controls"]:
            by_plugin.setdefault(r["plugin"], []).append(r)
        for plugin, rows in by_plugin.items():
            out.append("")
            out.append(st(plugin, bold=True))
            for r in rows:
                mark = STATUS_MARK[r["status"]]
                status = st(f"{r['status']:<14}", STATUS_COLOR[r["status"]])
                out.append(f"  {mark} {_trim(r['control'], 24):<24} {status} {r['points']:>5.2f}"
                           f"  {r['value']}")
                if r["origin"] != "-":
                    out.append(f"      from {r['origin']}")
                if live:
                    c = cats.get(r["category"] or "")
                    seen = f"observed: {c['observed']}" if c and "observed" in c else ""
                    if r.get("verified") is True:
                        out.append("      " + st("verified", "green") + (f"; {seen}" if seen
                                                                           else ""))
                    elif r.get("verified") is False:
                        out.append("      " + st("NOT IN EFFECT", "red", bold=True)
                                   + (f"; {seen}" if seen else ""))
                    elif seen:
                        out.append(f"      {seen}")
                if r["detail"] and r["status"] == "not-configured" and r["origin"] == "-":
                    out.append(f"      ({r['detail']})")
                for ch in r.get("checks", []):
                    if not ch["ok"]:
                        out.append("      " + st(f"expected {ch['fact']} = {ch['expected']!r}, "
                                                 f"observed {ch['observed']!r}", "red"))
    if mode != "planned" or not rep["controls"]:
        out.append("")
        out.append(st("effective, by category", bold=True) + "   (0 = confined, 1 = not; "
                   "xN: the category's importance, docs/audit.md)")
        for c in rep["categories"]:
            if "effective" not in c:
                continue
            plan = f"planned {c['planned']:.2f}  " if "planned" in c else ""
            col = "green" if c["effective"] == 0 else "red" if c["effective"] >= 1 else "yellow"
            out.append(f"  {c['title']:<26} {plan}effective "
                       f"{st(format(c['effective'], '.2f'), col)}  x{c['importance']:<4}  "
                       f"{c['observed']}")
    out.append("")
    for n in rep["notes"]:
        out.append(st(f"note: {n}", "yellow"))
    for m in rep["mismatches"]:
        out.append(st(f"MISMATCH: plugin {m['plugin']!r} claims {m['control']!r} enforced, but "
                      f"{m['fact']} is {m['observed']!r}, expected {m['expected']!r}", "red",
                      bold=True))
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
    return "\n".join(out)


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(rep: dict) -> str:
    out = [f"## secrun audit ({rep['mode']})", ""]
    if rep["profiles"]:
        out.append("Profile: " + " → ".join(f"`{p['name']}`" for p in rep["profiles"]) + "  ")
    if rep["command"]:
        out.append("Command: `" + " ".join(rep["command"]) + "`  ")
    if rep["pid"] is not None:
        out.append(f"Process: {rep['pid']}  ")
    out.append(f"**Overall exposure: {rep['score']:.1f} / 10 ({rep['rating']})**")
    out.append("")
    if rep["plugins"]:
        out.append("Plugins loaded: " + ", ".join(
            f"`{p['name']}` ({p['distribution']} {p['version']}"
            f"{'' if p['builtin'] else ', third-party'})" for p in rep["plugins"]))
        out.append("")
    cats = {c["id"]: c for c in rep["categories"]}
    if rep["controls"]:
        live = rep["mode"] == "live"
        head = "| plugin | control | value | origin | status | weight | points |"
        sep = "|---|---|---|---|---|---:|---:|"
        if live:
            head += " live |"
            sep += "---|"
        out += [head, sep]
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
        out.append("")
    if rep["mode"] != "planned":
        out += ["| category | importance | effective | observed |", "|---|---:|---:|---|"]
        for c in rep["categories"]:
            out.append(f"| {c['title']} | {c['importance']} | {c['effective']:.2f} | "
                       f"{_md(c['observed'])} |")
        out.append("")
    for m in rep["mismatches"]:
        out.append(f"- **mismatch**: `{m['plugin']}` claims *{m['control']}* enforced, but "
                   f"`{m['fact']}` is `{m['observed']}` (expected `{m['expected']}`)")
    for n in rep["notes"]:
        out.append(f"- note: {n}")
    return "\n".join(out).rstrip() + "\n"


def _location(origin: str):
    """A SARIF location for an origin "PATH [section].key" (with the line when found)."""
    if not origin or origin == "-" or not origin.startswith("/"):
        return None
    path, _, where = origin.rpartition(" [")
    path = path.split(" + ")[-1]
    if not os.path.isfile(path):
        return None
    loc: dict = {"physicalLocation": {"artifactLocation": {"uri": "file://" + path}}}
    section, _, key = ("[" + where).partition("].")
    section = section.strip("[]")
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return loc
    in_sec = False
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("["):
            in_sec = s == f"[{section}]"
            if in_sec and not key:
                loc["physicalLocation"]["region"] = {"startLine": i}
                break
        elif in_sec and key and s.split("=", 1)[0].strip() == key:
            loc["physicalLocation"]["region"] = {"startLine": i}
            break
    return loc


def render_sarif(rep: dict) -> dict:
    from . import categories as ac

    rules = [{"id": c.id, "name": c.title, "shortDescription": {"text": c.title},
              "fullDescription": {"text": c.meaning},
              "properties": {"importance": c.importance}} for c in ac.CATEGORIES]
    rules.append({"id": "secrun.extra", "name": "other control",
                  "shortDescription": {"text": "a plugin control outside the control table"},
                  "fullDescription": {"text": "listed and checked live; not scored"}})
    rules.append({"id": "secrun.live-mismatch", "name": "claimed control not in effect",
                  "shortDescription": {"text": "a control the plan says is enforced is not in "
                                               "effect in the running sandbox"},
                  "fullDescription": {"text": "an expect fact of an enforced row did not hold"},
                  "defaultConfiguration": {"level": "error"}})
    index = {r["id"]: i for i, r in enumerate(rules)}
    results = []
    for r in rep["controls"]:
        if r["residual"] <= 0.0 or r["points"] <= 0.0:
            continue
        rid = r["category"] or "secrun.extra"
        level = "error" if r["points"] >= 0.5 else "warning" if r["points"] >= 0.1 else "note"
        res = {"ruleId": rid, "ruleIndex": index[rid], "level": level,
               "message": {"text": f"{r['plugin']}: {r['control']} = {r['value']} "
                                   f"({r['status']}); {r['points']:.2f} exposure points"},
               "properties": {"plugin": r["plugin"], "status": r["status"],
                              "weight": r["residual"], "points": r["points"]}}
        loc = _location(r["origin"])
        if loc:
            res["locations"] = [loc]
        results.append(res)
    if rep["mode"] == "pid":
        for c in rep["categories"]:
            if c.get("effective", 0) > 0:
                pts = round(10 * c["importance"] * c["effective"] / ac.TOTAL, 2)
                results.append({"ruleId": c["id"], "ruleIndex": index[c["id"]],
                                "level": "error" if pts >= 0.5 else "warning" if pts >= 0.1
                                else "note",
                                "message": {"text": f"process {rep['pid']}: {c['title']}: "
                                                    f"{c['observed']}"}})
    for m in rep["mismatches"]:
        res = {"ruleId": "secrun.live-mismatch", "ruleIndex": index["secrun.live-mismatch"],
               "level": "error",
               "message": {"text": f"plugin {m['plugin']} claims {m['control']} enforced, but "
                                   f"{m['fact']} is {m['observed']!r} (expected "
                                   f"{m['expected']!r})"}}
        results.append(res)
    from .. import __version__

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


def render(rep: dict, fmt: str, color: bool) -> str:
    if fmt == "json":
        return json.dumps(rep, indent=2)
    if fmt == "markdown":
        return render_markdown(rep)
    if fmt == "sarif":
        return json.dumps(render_sarif(rep), indent=2)
    return render_table(rep, color)


def schema_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                        "audit-schema-v1.json")


# --- the command ---------------------------------------------------------------------------------

@click.command("audit", context_settings={"ignore_unknown_options": True,
                                          "allow_interspersed_args": False})
@click.option("--profile", "-p", "profiles", multiple=True, metavar="NAME|PATH",
              help="profile to audit (repeatable, composed left to right; default: 'default')")
@click.option("--set", "-s", "sets", multiple=True, metavar="S.K=V",
              help="override one value, as for a launch")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="also load this installed third-party plugin")
@click.option("--live", is_flag=True,
              help="launch the sandbox with a probe and check every claim from inside")
@click.option("--pid", type=int, default=None, help="audit this running process instead")
@click.option("--reference", default="1", show_default=True, metavar="PID|self",
              help="--pid: the process whose namespaces and /tmp count as the host's")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown", "sarif"]),
              default="table", show_default=True)
@click.option("--threshold", type=float, default=None, metavar="X",
              help="exit 1 when the exposure (effective with --live/--pid) is above X")
@click.option("--probe-python", "probe_python_", default=None, metavar="PATH",
              help="--live: the interpreter that runs the probe inside the sandbox")
@click.option("--schema", "show_schema", is_flag=True, help="print the JSON schema and exit")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def audit(profiles, sets, plugins, live, pid, reference, fmt, threshold, probe_python_,
          show_schema, command):
    """Which controls apply to a workload, and how exposed it is (0 = confined, 10 = not).

    \b
      secrun audit --profile strict [-- ./app]          what the profile would apply
      secrun audit --live --profile strict [-- ./app]   launch a probe in it and verify
      secrun audit --pid PID                            what confines a running process

    \b
    Exit status: 0; 1 exposure above --threshold; 2 (--live) a control the plan
    says is enforced is not in effect; 125 the audit could not run.
    """
    if show_schema:
        with open(schema_path()) as f:
            click.echo(f.read().rstrip())
        return
    command = list(command)
    if command and command[0] == "--":
        command = command[1:]
    if pid is not None and (live or profiles or sets or plugins or command):
        raise click.UsageError("--pid audits a running process: it takes no profile, "
                               "--live or command")
    if pid is not None:
        rep = _audit_pid(pid, reference, threshold)
    else:
        rep = _audit_profile(list(profiles) or ["default"], list(sets), list(plugins), command,
                             live, probe_python_, threshold)
    color = fmt == "table" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    click.echo(render(rep, fmt, color))
    sys.stdout.flush()
    ctx = click.get_current_context()
    if rep["mismatches"]:
        ctx.exit(EXIT_MISMATCH)
    if rep["above_threshold"]:
        ctx.exit(EXIT_THRESHOLD)



def _audit_profile(profiles, sets, plugins, command, live, python, threshold) -> dict:
    from .. import plan as _plan

    plan = _plan.build(profiles, sets, plugins)
    rows, loaded, residuals = plan_rows(plan, command)
    if not live:
        return build_report("planned", plan, rows, loaded, residuals, argv=command,
                            threshold=threshold)
    paths = [f[len("mount:"):] for r in rows for f in r["expect"] if f.startswith("mount:")]
    facts, notes = run_live(profiles, sets, plugins, probe_python(python), paths=paths)
    facts["plan.cache"] = cached_plan_state(plan, profiles, sets, plugins)
    mismatches = check_expects(rows, facts)
    return build_report("live", plan, rows, loaded, residuals, facts, notes, mismatches,
                        argv=command, threshold=threshold, pid=facts.get("_pid"),
                        reference="secrun (the auditor)")


def _audit_pid(pid, reference, threshold) -> dict:
    from .. import audit_facts

    notes = []
    ref_pid = "self" if reference == "self" else reference
    ref = audit_facts.reference(ref_pid)
    if not all(ref["ns"].values()):
        notes.append(f"the namespaces of process {reference} are not readable; "
                     "compared with the auditor's own instead")
        ref, ref_pid = audit_facts.reference("self"), "self"
    try:
        facts, more = audit_facts.outside(pid, ref)
    except ProcessLookupError:
        raise AuditError(f"no process {pid}") from None
    except OSError as e:
        raise AuditError(f"cannot read process {pid}: {e}") from None
    notes += more
    return build_report("pid", facts=facts, notes=notes, pid=pid, threshold=threshold,
                        reference=f"process {ref_pid}" if ref_pid != "self"
                        else "secrun (the auditor)")
