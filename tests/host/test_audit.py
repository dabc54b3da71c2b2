"""``secrun audit``: planned, live (a probe inside the real sandbox) and ``--pid``.

Every test runs the real ``secrun`` binary; the live ones launch real sandboxes on this kernel.
The lying plugin (``tests/dists/audit-plugin-dist``, entry point ``audit-liar``) is pip-installed
into the venv once per session if it is not there yet.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from support import REPO, needs_root, run_secrun

AUDIT_DOC = os.path.join(REPO, "docs", "audit.md")
LIAR_DIST = os.path.join(REPO, "tests", "dists", "audit-plugin-dist")


def audit_json(*args, rc=0):
    r = run_secrun("audit", "--format", "json", *args)
    assert r.rc == rc, r
    return json.loads(r.out)


def _liar_installed():
    from importlib.metadata import entry_points

    return any(ep.name == "audit-liar" for ep in entry_points(group="secrun.plugins"))


@pytest.fixture(scope="session")
def liar(tmp_path_factory):
    """The lying plugin, installed into the venv (from a copy: the tree stays clean)."""
    if not _liar_installed():
        src = tmp_path_factory.mktemp("liar") / "dist"
        shutil.copytree(LIAR_DIST, src)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--disable-pip-version-check", str(src)],
                       check=True, capture_output=True)
    return "audit-liar"


@pytest.fixture(scope="session")
def schema():
    jsonschema = pytest.importorskip("jsonschema")
    from secrun.audit.report import schema_path

    with open(schema_path()) as f:
        doc = json.load(f)
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


# --- planned -------------------------------------------------------------------------------------

def builtin_table():
    """The score's categories as the built-in plugins declare them."""
    from secrun.audit.categories import table
    from secrun.registry import Plugins

    return table(Plugins())


def test_every_category_appears_with_plugin_origin_status_weight():
    rep = audit_json("--profile", "strict", "--", "./app")
    assert rep["mode"] == "planned" and rep["command"] == ["./app"]
    cats = {r["category"] for r in rep["controls"]}
    assert {c.id for c in builtin_table().categories} <= cats
    assert [c["id"] for c in rep["categories"]] == [c.id for c in builtin_table().categories]
    for r in rep["controls"]:
        for k in ("plugin", "control", "value", "origin", "status", "weight"):
            assert k in r, r
    nnp = next(r for r in rep["controls"] if r["control"] == "no_new_privs")
    assert nnp["status"] == "enforced"
    assert nnp["origin"].endswith("default.toml [process].no_new_privs")
    # where the plugins came from
    names = {p["name"]: p for p in rep["plugins"]}
    assert names["process"]["builtin"] and \
        names["process"]["file"].endswith(("process.py", "process/plugin.py"))


def test_unconfigured_controls_count_full_weight():
    rep = audit_json("--profile", "unconfined")
    assert rep["score"] >= 9.5, rep["score"]
    assert all(r["status"] == "not-configured" and r["residual"] == 1.0
               for r in rep["controls"] if r["category"])
    sc = next(r for r in rep["controls"] if r["category"] == "seccomp.filter")
    assert sc["value"] == "not configured" and sc["origin"] == "-"
    assert "no [seccomp] section" in sc["detail"]


def test_scores_order_unconfined_default_strict():
    u = audit_json("--profile", "unconfined")["score"]
    d = audit_json("--profile", "default")["score"]
    s = audit_json("--profile", "strict")["score"]
    assert u > d > s, (u, d, s)
    assert s <= 4.0, s


def test_command_line_origin():
    rep = audit_json("--profile", "default", "--set", "process.no_new_privs=false")
    nnp = next(r for r in rep["controls"] if r["control"] == "no_new_privs")
    assert nnp["origin"] == "command line [process].no_new_privs" and nnp["residual"] == 1.0


def test_planned_json_validates(schema):
    for prof in ("unconfined", "default", "strict"):
        schema.validate(audit_json("--profile", prof))


def test_schema_option_prints_the_shipped_schema(schema):
    r = run_secrun("audit", "--schema")
    assert r.rc == 0 and json.loads(r.out) == schema.schema


def test_sarif_is_valid_2_1_0():
    sarif = pytest.importorskip("sarif_pydantic")
    r = run_secrun("audit", "--profile", "default", "--format", "sarif")
    assert r.rc == 0, r
    log = sarif.Sarif.model_validate_json(r.out)
    assert log.version == "2.1.0" and len(log.runs) == 1
    run = log.runs[0]
    rules = [rule.id for rule in run.tool.driver.rules]
    assert len(rules) == len(set(rules))
    assert run.results, "default leaves exposure, so there are findings"
    for res in run.results:
        assert res.rule_id in rules and rules[res.rule_index] == res.rule_id
        assert res.level.value in ("note", "warning", "error") and res.message.text
        for loc in res.locations or ():
            uri = loc.physical_location.artifact_location.uri
            path = uri[len("file://"):]
            assert uri.startswith("file:///") and os.path.isfile(path), uri
            line = loc.physical_location.region.start_line
            text = open(path).read().splitlines()[line - 1]
            assert "=" in text or text.startswith("["), (path, line, text)
    doc = json.loads(r.out)
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")


def test_threshold_exit_status():
    assert run_secrun("audit", "--profile", "unconfined", "--threshold", "9").rc == 1
    assert run_secrun("audit", "--profile", "unconfined", "--threshold", "10").rc == 0
    r = run_secrun("audit", "--profile", "strict", "--threshold", "5")
    assert r.rc == 0, r
    assert "threshold 5.0: ok" in r.out
    rep = audit_json("--profile", "unconfined", "--threshold", "2", rc=1)
    assert rep["above_threshold"] is True


def test_table_and_markdown():
    r = run_secrun("audit", "--profile", "strict", "--", "./app")
    assert r.rc == 0, r
    assert "\x1b[" not in r.out, "no colours when stdout is not a terminal"
    assert re.search(r"^process$", r.out, re.M) and re.search(r"^seccomp$", r.out, re.M)
    assert "plugins loaded:" in r.out and "Overall exposure:" in r.out
    m = run_secrun("audit", "--profile", "strict", "--format", "markdown")
    assert m.rc == 0 and "| plugin | control | value | origin | status |" in m.out
    assert "**Overall exposure:" in m.out


def test_docs_table_matches_the_code():
    cats = builtin_table().categories
    with open(AUDIT_DOC) as f:
        doc = f.read()
    for c in cats:
        assert re.search(rf"^\| `{re.escape(c.id)}` \|[^\n]*\| {c.importance:g} \|", doc, re.M), \
            f"docs/audit.md lacks the row of {c.id} with importance {c.importance:g}"
    documented = re.findall(r"^\| `([a-z_.]+)` \| [^|]+ \| [^|]+ \| [0-9.]+ \|", doc, re.M)
    assert sorted(documented) == sorted(c.id for c in cats)
    assert f"Total importance: **{round(sum(c.importance for c in cats), 6):g}**" in doc


def test_bad_rows_are_refused_naming_the_plugin():
    from secrun.audit.planned import check_row
    from secrun.audit.rows import AuditError

    ok = {"control": "c", "value": "v", "status": "enforced", "weight": 0.5}
    assert check_row("p", ok)["weight"] == 0.5
    for bad in ({**ok, "status": "sure"}, {**ok, "weight": 3}, {"control": "c"},
                {**ok, "expect": ["x"]}, "row"):
        with pytest.raises(AuditError, match="plugin 'p'"):
            check_row("p", bad)


# --- live ----------------------------------------------------------------------------------------

@needs_root
def test_live_strict_has_no_mismatch(schema):
    rep = audit_json("--live", "--profile", "strict", "--", "./app")
    schema.validate(rep)
    assert rep["mismatches"] == [], rep["mismatches"]
    f = rep["facts"]
    # seen from inside the sandbox
    assert f["id.uid"] == "65534" and f["status.CapEff"] == "0000000000000000"
    assert f["status.NoNewPrivs"] == "1" and f["status.Seccomp"] == "2"
    assert f["ns.net"] == "new" and f["net.interfaces"] == "lo"
    assert f["syscall.ptrace"] == "blocked" and f["syscall.mount"] == "blocked"
    assert f["fs.root_writable"] == "no"
    claimed = [r for r in rep["controls"] if r["expect"] and r["status"] == "enforced"]
    assert claimed and all(r["verified"] for r in claimed)
    assert rep["exposure"]["effective"] <= 3.0


@needs_root
def test_live_unconfined_is_near_10_and_strict_clearly_lower():
    u = audit_json("--live", "--profile", "unconfined")
    s = audit_json("--live", "--profile", "strict")
    assert u["exposure"]["effective"] >= 9.0, u["exposure"]
    assert u["facts"]["status.Seccomp"] == "0" and u["facts"]["syscall.ptrace"] == "allowed"
    assert s["exposure"]["effective"] <= u["exposure"]["effective"] - 5


@needs_root
def test_lying_plugin_fails_live_and_is_named(liar, write_profile):
    prof = write_profile("""\
        extends = ["unconfined"]
        [liar]
    """)
    planned = audit_json("--plugin", liar, "--profile", prof)
    assert planned["mismatches"] == []
    row = next(r for r in planned["controls"] if r["plugin"] == liar)
    assert row["category"] == "seccomp.filter" and row["status"] == "enforced"
    assert planned["score"] < audit_json("--profile", "unconfined")["score"], \
        "the lie lowers the planned score: only the live check catches it"
    r = run_secrun("audit", "--live", "--plugin", liar, "--profile", prof)
    assert r.rc == 2, r
    assert "MISMATCH: plugin 'audit-liar' claims 'liar syscall filter' enforced" in r.out
    assert "syscall.ptrace is 'allowed', expected 'blocked'" in r.out
    rep = audit_json("--live", "--plugin", liar, "--profile", prof, "--format", "json", rc=2)
    assert {m["fact"] for m in rep["mismatches"]} == {
        "status.Seccomp", "syscall.ptrace", "syscall.bpf"}
    assert all(m["plugin"] == liar for m in rep["mismatches"])
    sarif = run_secrun("audit", "--live", "--plugin", liar, "--profile", prof,
                       "--format", "sarif")
    assert sarif.rc == 2
    assert any(x["ruleId"] == "secrun.live-mismatch" and x["level"] == "error"
               for x in json.loads(sarif.out)["runs"][0]["results"])


# --- any process ---------------------------------------------------------------------------------

def _workload_pid(parent, prog, timeout=10.0):
    from secrun.audit.live import descendants

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for p in sorted(descendants(parent)):
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0] == prog.encode():
                        return p
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"{prog} did not start under secrun")


COMPARED = ("status.", "ns.", "id.", "fs.", "net.", "syscall.", "rlimit.", "env.", "lsm.",
            "cgroup.memory", "cgroup.pids", "cgroup.cpu")


@needs_root
def test_pid_of_a_strict_process_matches_live(schema):
    from support import SECRUN

    proc = subprocess.Popen([SECRUN, "--profile", "strict", "--", "/bin/sleep", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = _workload_pid(proc.pid, "/bin/sleep")
        by_pid = audit_json("--pid", str(pid), "--reference", "self")
    finally:
        proc.terminate()  # forwarded to the workload: nothing is left behind
        proc.wait(timeout=30)
    live = audit_json("--live", "--profile", "strict")
    schema.validate(by_pid)
    assert by_pid["mode"] == "pid" and by_pid["pid"] == pid
    assert not any("not evaluated" in n for n in by_pid["notes"]), by_pid["notes"]
    a = {k: v for k, v in by_pid["facts"].items() if k.startswith(COMPARED)}
    b = {k: v for k, v in live["facts"].items() if k.startswith(COMPARED)}
    assert a == b
    assert by_pid["score"] == live["exposure"]["effective"]
    assert [c["effective"] for c in by_pid["categories"]] == \
        [c["effective"] for c in live["categories"]]


def test_pid_of_an_unconfined_process():
    proc = subprocess.Popen(["/bin/sleep", "60"])
    try:
        rep = audit_json("--pid", str(proc.pid), "--reference", "self")
    finally:
        proc.kill()
        proc.wait()
    assert rep["facts"]["status.Seccomp"] == "0" and rep["facts"]["ns.pid"] == "host"
    assert rep["score"] >= 8.5, rep["score"]
    assert rep["controls"] == [] and rep["profiles"] == []


def test_pid_errors():
    r = run_secrun("audit", "--pid", "999999999")
    assert r.rc == 125 and "no process 999999999" in r.err
    r = run_secrun("audit", "--pid", "1", "--live")
    assert r.rc == 125 and "--pid" in r.err


@needs_root
def test_plugin_that_undoes_a_hide_fails_live_naming_the_hide(liar, write_profile):
    """A plugin that removes a hiding mount after the view is built (a broken or hostile
    plugin, or a later mount re-exposing the path): the filesystem plugin's row for that hide
    is contradicted from inside (``mount:PATH`` shows what is really on top) and the live audit
    fails naming that row."""
    prof = write_profile("""\
        extends = ["strict"]
        [liar]
        claim = false
        unhide = "/sys/firmware"
    """)
    planned = audit_json("--plugin", liar, "--profile", prof)
    assert planned["mismatches"] == []
    rep = audit_json("--live", "--plugin", liar, "--profile", prof, "--format", "json", rc=2)
    bad = [m for m in rep["mismatches"] if m["fact"] == "mount:/sys/firmware"]
    assert bad and bad[0]["plugin"] == "filesystem", rep["mismatches"]
    assert "tmpfs" not in str(bad[0]["observed"]), bad


# --- categories and live facts from plugins -------------------------------------------------------

def _extra_plugin(name, **hooks):
    """A plugin module made of ``hooks`` (hook name: function)."""
    import types

    from secrun import hookimpl

    mod = types.ModuleType(f"secrun_test_{name.replace('-', '_')}")
    for hook, fn in hooks.items():
        fn.__name__ = hook
        setattr(mod, hook, hookimpl(fn))
    return mod


def _with_plugins(*mods):
    """The built-in plugins plus ``mods`` (name, module), registered as third-party ones."""
    from secrun.registry import PluginInfo, Plugins

    plugins = Plugins()
    for name, mod in mods:
        plugins._register(PluginInfo(name, mod, "test", "0", False))
    return plugins


def test_a_category_declared_by_a_plugin_is_scored():
    from secrun import plan as _plan
    from secrun.audit.categories import Category, table
    from secrun.audit.planned import plan_rows
    from secrun.audit.report import Audit, build_report

    def judge(facts):
        return (0.0, "sealed") if facts.get("vault.sealed") == "yes" else (1.0, "open")

    vault = _extra_plugin(
        "vault",
        secrun_audit_categories=lambda: [Category("vault.sealed", "sealed vault", 2.0,
                                                  judge=judge, meaning="the vault is sealed")],
        secrun_audit=lambda ctx: [{"control": "vault", "value": "sealed", "status": "enforced",
                                   "weight": 0.0, "category": "vault.sealed"}])
    plugins = _with_plugins(("vault", vault))
    t = table(plugins)
    assert t.by_id["vault.sealed"].plugins == ["vault"]
    assert t.total == pytest.approx(builtin_table().total + 2.0)
    plan = _plan.build(["strict"])
    plan["active"] = [*plan["active"], "vault"]
    rows, loaded, residuals = plan_rows(plan, [], plugins, t)
    row = next(r for r in rows if r["plugin"] == "vault")
    assert row["category"] == "vault.sealed" and row["importance"] == 2.0
    assert residuals["vault.sealed"] == 0.0
    sealed = build_report(t, Audit("planned", plan, rows, loaded, residuals))
    # the same plan with the vault open scores worse, by the category's share
    open_rows = [dict(r) for r in rows]
    next(r for r in open_rows if r["plugin"] == "vault")["status"] = "not-configured"
    from secrun.audit.planned import residuals as planned_residuals

    opened = build_report(t, Audit("planned", plan, open_rows, loaded,
                                   planned_residuals(open_rows, t)))
    assert opened["score"] - sealed["score"] == pytest.approx(10 * 2.0 / t.total, abs=0.11)
    cat = next(c for c in sealed["categories"] if c["id"] == "vault.sealed")
    assert cat["plugin"] == "vault" and cat["planned"] == 0.0
    # live: its judge scores the facts
    live = build_report(t, Audit("pid", facts={"vault.sealed": "yes"}, pid=1))
    cat = next(c for c in live["categories"] if c["id"] == "vault.sealed")
    assert cat["effective"] == 0.0 and cat["observed"] == "sealed"


def test_one_category_from_two_plugins_must_agree_on_importance():
    from secrun.audit.categories import Category, table
    from secrun.errors import PluginError

    def declares(importance, residual):
        return _extra_plugin(
            f"mac-{importance}-{residual}",
            secrun_audit_categories=lambda: [Category(
                "extra.mac", "extra MAC", importance, combine="min",
                judge=lambda facts: (residual, f"judged {residual}"))])

    a, b, c = declares(0.5, 1.0), declares(0.5, 0.0), declares(0.7, 0.0)
    both = table(_with_plugins(("lsm-a", a), ("lsm-b", b)))
    cat = both.by_id["extra.mac"]
    assert cat.plugins == ["lsm-a", "lsm-b"] and cat.importance == 0.5
    assert cat.judge({}) == (0.0, "judged 0.0"), "combine min: the best of the judges"
    with pytest.raises(PluginError, match="'lsm-a' and 'lsm-c'.*'extra.mac'.*0.5 and 0.7"):
        table(_with_plugins(("lsm-a", a), ("lsm-c", c)))


def test_plugin_live_facts_must_be_strings():
    from secrun.audit import live as lv
    from secrun.errors import PluginError

    good = _extra_plugin("good", secrun_live_facts=lambda ctx: {"good.pid": str(ctx.pid)})
    assert lv.plugin_facts(_with_plugins(("good", good)), lv.live_context(1))[0] == \
        {"good.pid": "1"}
    bad = _extra_plugin("bad", secrun_live_facts=lambda ctx: {"bad.pid": ctx.pid})
    with pytest.raises(PluginError, match="plugin 'bad'"):
        lv.plugin_facts(_with_plugins(("bad", bad)), lv.live_context(1))


PROBE_SOURCE = '''
import os

def probe(facts, ref):
    facts["demo.uid"] = str(os.getuid())
    facts["demo.ref_paths"] = " ".join(ref.get("paths", ())) or "none"
'''


@needs_root
def test_a_plugins_live_probe_and_live_facts_reach_expect():
    """A plugin's probe source runs inside the strict sandbox; its facts and those its
    ``secrun_live_facts`` reads from outside (about the probe's pid) are checked by ``expect``;
    a failing probe is ``probe.error`` naming its plugin."""
    from secrun.audit import live as lv
    from secrun.audit.planned import check_row

    demo = _extra_plugin(
        "demo",
        secrun_live_probe=lambda: PROBE_SOURCE,
        secrun_live_facts=lambda ctx: {"demo.outside": "seen" if ctx.pid else "no pid"})
    broken = _extra_plugin("broken", secrun_live_probe=lambda: "def probe(facts, ref):\n"
                                                               "    1 / 0\n")
    plugins = _with_plugins(("demo", demo), ("broken", broken))
    probes = lv.plugin_probes(plugins)
    assert sorted(p for p, _ in probes) == ["broken", "demo", "landlock", "seccomp"]
    seen = lv.run_live(lv.Launch(["strict"], [], []), lv.probe_python(), probes,
                       lv.observer(plugins), timeout=30)
    assert seen.facts["demo.uid"] == "65534", seen.facts  # strict runs it as nobody
    assert seen.facts["demo.outside"] == "seen"
    assert "plugin 'broken': ZeroDivisionError" in seen.facts["probe.error"]
    assert any("probe error: plugin 'broken'" in n for n in seen.notes), seen.notes
    row = check_row("demo", {"control": "demo", "value": "v", "status": "enforced",
                             "weight": 0.0, "expect": {"demo.uid": "65534",
                                                       "demo.outside": "seen"}})
    assert lv.check_expects([row], seen.facts, seen.pid) == [] and row["verified"] is True
    row = check_row("demo", {"control": "demo", "value": "v", "status": "enforced",
                             "weight": 0.0, "expect": {"demo.uid": "0"}})
    (bad,) = lv.check_expects([row], seen.facts, seen.pid)
    assert bad["fact"] == "demo.uid" and bad["observed"] == "65534"
