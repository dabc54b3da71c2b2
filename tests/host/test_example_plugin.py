"""The example third-party plugin ``priority`` (``tests/dists/example-plugin``, distribution
``secrun-example-plugin``), end to end: installed into the venv like any distribution, then
used through the real ``secrun`` on this kernel.

It exercises every hook of the contract that is not a stage by name: ``secrun_profile_sections``
and ``secrun_facts`` (declaring), ``secrun_compile`` (its plan, a ConfigError, a note, a
published fact), ``secrun_audit`` and ``secrun_audit_categories`` (a row, a scored category),
``secrun_live_probe`` and ``secrun_live_facts`` (what the live audit observes inside and
outside), ``secrun_register_commands`` (``secrun priority show``); and two stages, ``rlimits``
(child) and ``attach`` (supervisor).
"""

import ctypes
import json
import os
import shutil
import subprocess
import sys

import pytest

from support import REPO, SECRUN, needs_root, run_secrun

DIST = os.path.join(REPO, "tests", "dists", "example-plugin")
PACKAGE = os.path.join(DIST, "secrun_example")
IOPRIO_GET = {"x86_64": 252, "aarch64": 31}.get(os.uname().machine)

pytestmark = needs_root


def _installed_is_current() -> bool:
    """Whether the venv holds this checkout's version of the distribution (same files)."""
    import importlib.util
    from importlib.metadata import entry_points

    if not any(ep.name == "priority" for ep in entry_points(group="secrun.plugins")):
        return False
    spec = importlib.util.find_spec("secrun_example")
    if spec is None or not spec.submodule_search_locations:
        return False
    there = spec.submodule_search_locations[0]
    for name in os.listdir(PACKAGE):
        if name.endswith(".py"):
            try:
                with open(os.path.join(there, name)) as a, open(os.path.join(PACKAGE, name)) as b:
                    if a.read() != b.read():
                        return False
            except OSError:
                return False
    return True


@pytest.fixture(scope="session")
def plugin(tmp_path_factory):
    """The distribution, installed into the venv (from a copy: the tree stays clean), as
    ``make venv`` does; reinstalled when the checkout's files changed."""
    if not _installed_is_current():
        src = tmp_path_factory.mktemp("example") / "dist"
        shutil.copytree(DIST, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                 "__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--no-build-isolation", "--disable-pip-version-check",
                        "--force-reinstall", str(src)], check=True, capture_output=True)
        import importlib

        importlib.invalidate_caches()
    return "priority"


def _profile(write_profile, body: str, base: str = "strict", name: str = "prio") -> str:
    return write_profile(f'extends = ["{base}"]\nplugins = ["priority"]\n' + body, name)


PRINT = ("import os,ctypes; l=ctypes.CDLL(None, use_errno=True); "
         "print(os.getpriority(os.PRIO_PROCESS, 0), l.syscall({nr}, 1, 0), "
         "open('/proc/self/autogroup').read().split()[-1])")


def _inside(*args, rc=0):
    """Launch python3 under ``args`` and return (nice, ioprio, autogroup nice) it sees."""
    r = run_secrun(*args, "--", "/usr/bin/python3", "-c", PRINT.format(nr=IOPRIO_GET), cwd="/")
    assert r.rc == rc, r
    nice, ioprio, autogroup = r.out.split()
    return int(nice), int(ioprio), int(autogroup), r


# --- loading ---------------------------------------------------------------------------------

def test_installed_but_loaded_only_when_a_profile_or_the_command_line_asks(plugin,
                                                                          write_profile):
    r = run_secrun("plugins", "--json")
    info = next(p for p in json.loads(r.out)["plugins"] if p["name"] == plugin)
    assert info["distribution"] == "secrun-example-plugin" and not info["builtin"]
    assert info["module"] == "secrun_example.plugin" and info["sections"] == ["priority"]
    assert info["stages"] == ["attach", "rlimits"]
    assert set(info["hooks"]) == {
        "secrun_profile_sections", "secrun_facts", "secrun_compile", "secrun_audit",
        "secrun_audit_categories", "secrun_live_probe", "secrun_live_facts",
        "secrun_register_commands"}
    # installed, not asked for: not loaded, its section unknown
    rep = json.loads(run_secrun("audit", "--format", "json", "--profile", "strict").out)
    assert plugin not in {p["name"] for p in rep["plugins"]}
    prof = write_profile('extends = ["strict"]\n[priority]\nnice = 5\n', "noplugin")
    r = run_secrun("--profile", prof, "--", "/bin/true", cwd="/")
    assert r.rc == 125 and "priority" in r.err, r
    # asked for on the command line: loaded, and --set reaches its section
    nice, _, _, _ = _inside("--plugin", plugin, "--profile", "strict",
                            "--set", "priority.nice=6")
    assert nice == 6


# --- the control -----------------------------------------------------------------------------

def test_nice_ioprio_and_autogroup_applied_inside_the_sandbox(plugin, write_profile):
    prof = _profile(write_profile, "[priority]\nnice = 12\nioprio_class = \"idle\"\n")
    nice, ioprio, autogroup, _ = _inside("--profile", prof)
    assert nice == 12
    assert ioprio == 3 << 13  # IOPRIO_CLASS_IDLE
    # strict makes a pid namespace: the workload's session (and autogroup) is made at exec
    assert autogroup == 0
    prof = _profile(write_profile, "[priority]\nnice = 3\nioprio_class = \"best-effort\"\n"
                                   "ioprio_level = 5\nautogroup = false\n", name="be")
    nice, ioprio, autogroup, _ = _inside("--profile", prof)
    assert (nice, ioprio, autogroup) == (3, 2 << 13 | 5, 0)
    # inherited by what the workload starts, through exec
    r = run_secrun("--profile", prof, "--", "/bin/sh", "-c",
                   "exec /usr/bin/python3 -c 'import os; print(os.getpriority(0, 0))'", cwd="/")
    assert r.rc == 0 and r.out.strip() == "3", r


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no autogroups")
def test_autogroup_set_by_the_supervisor_when_no_namespace_forks_the_workload(plugin,
                                                                             write_profile):
    prof = _profile(write_profile, "[namespaces]\npid = false\ntime = false\n"
                                   "[priority]\nnice = 11\n", base="default", name="ag")
    nice, _, autogroup, _ = _inside("--profile", prof)
    assert (nice, autogroup) == (11, 11)
    off = _profile(write_profile, "[namespaces]\npid = false\ntime = false\n"
                                  "[priority]\nnice = 11\nautogroup = false\n",
                   base="default", name="agoff")
    assert _inside("--profile", off)[2] == 0


def test_without_the_section_nothing_changes(plugin):
    nice, ioprio, autogroup, _ = _inside("--plugin", plugin, "--profile", "strict")
    assert (nice, ioprio) == (os.getpriority(os.PRIO_PROCESS, 0), 0)


def test_bad_values_are_one_line_naming_the_file_and_key(plugin, write_profile):
    for body, key in (("nice = 25", "nice"), ("nice = -5", "nice"),
                      ('ioprio_class = "realtime"', "ioprio_class"),
                      ("ioprio_level = 9", "ioprio_level")):
        prof = _profile(write_profile, f"[priority]\n{body}\n", name="bad")
        r = run_secrun("--profile", prof, "--", "/bin/true", cwd="/")
        assert r.rc == 125, r
        assert r.err.count("\n") == 1 and r.err.startswith("secrun: error: "), r
        assert prof in r.err and f"[priority].{key}:" in r.err, r
        assert "Traceback" not in r.err


def test_compile_publishes_its_fact_and_notes_a_useless_value(plugin, write_profile):
    from secrun import plan

    prof = _profile(write_profile, "[priority]\nnice = 9\nioprio_level = 2\n")
    p = plan.build([prof])
    assert p["facts"]["priority.nice"] == 9
    assert {k: p["plan"]["priority"][k] for k in ("nice", "ioprio")} == {"nice": 9,
                                                                          "ioprio": 3 << 13}
    # the module that made the plan is a dependency of the cached plan
    assert any(d.endswith(os.path.join("secrun_example", "plan.py")) for d, _ in p["deps"])
    r = run_secrun("profiles", "check", prof)
    assert r.rc == 0, r
    assert "note: priority: ioprio_level = 2 has no effect with ioprio_class = 'idle'" in r.out
    # compiled after the namespaces plugin, whose fact says strict makes a pid namespace
    assert "note: priority: autogroup: with a new pid and time namespace the workload starts " \
           "a session of its own at exec" in r.out
    assert p["plan"]["priority"]["autogroup"] is False


def test_required_fails_closed_best_effort_warns(plugin, write_profile):
    """In a new user namespace, a nice value below the caller's own needs CAP_SYS_NICE in the
    initial namespace: the stage fails.  Required (the default): exit 125 naming the stage
    and the plugin, nothing ran.  ``required = false``: a warning, and the workload runs."""
    body = "[namespaces]\nuser = true\n[priority]\nnice = 2\n"
    prof = _profile(write_profile, body, base="default", name="userns")
    here = os.path.dirname(os.path.abspath(__file__))
    cmd = ["nice", "-n", "9", SECRUN, "--profile", prof, "--",
           "/bin/echo", "ran"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=here, timeout=60)
    assert r.returncode == 125 and "ran" not in r.stdout, r
    assert "stage 'rlimits' failed in plugin 'priority'" in r.stderr, r
    assert "setpriority(PRIO_PROCESS, 2)" in r.stderr and "EACCES" in r.stderr, r
    prof = _profile(write_profile, body + "required = false\n", base="default", name="soft")
    cmd[5] = prof
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=here, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ran", r
    assert "priority: best-effort control not applied at stage 'rlimits'" in r.stderr, r


# --- the audit -------------------------------------------------------------------------------

def _audit(*args, rc=0):
    r = run_secrun("audit", "--format", "json", *args, cwd="/")
    assert r.rc == rc, r
    return json.loads(r.out)


def test_planned_audit_lists_its_rows_and_scores_its_category(plugin, write_profile):
    prof = _profile(write_profile, "[priority]\nnice = 19\n")
    rep = _audit("--profile", prof)
    rows = {r["control"]: r for r in rep["controls"] if r["plugin"] == plugin}
    cpu = rows["CPU priority"]
    assert cpu["category"] == "priority.cpu" and cpu["status"] == "enforced"
    assert cpu["value"] == "nice 19" and cpu["residual"] == 0.0
    assert cpu["origin"] == f"{prof} [priority].nice"
    # strict runs the workload as nobody: it cannot raise its priority back, and says so
    assert cpu["expect"] == {"priority.nice": "19", "priority.renice": "refused"}
    assert rows["I/O priority"]["category"] is None
    assert rows["I/O priority"]["expect"] == {"priority.ioprio": "idle"}
    cats = {c["id"]: c for c in rep["categories"]}
    assert cats["priority.cpu"]["importance"] == 0.1 and cats["priority.cpu"]["planned"] == 0.0
    # the same plugin loaded without its section: the category counts as not confined
    off = _audit("--plugin", plugin, "--profile", "strict")
    off_cats = {c["id"]: c for c in off["categories"]}
    assert off_cats["priority.cpu"]["planned"] == 1.0
    uncovered = next(r for r in off["controls"] if r["category"] == "priority.cpu")
    assert uncovered["status"] == "not-configured"
    assert rep["score"] < off["score"], (rep["score"], off["score"])
    # as root in the initial user namespace the workload could renice itself back
    root = _profile(write_profile, "[priority]\nnice = 19\n", base="default", name="root")
    rows = {r["control"]: r for r in _audit("--profile", root)["controls"]
            if r["plugin"] == plugin}
    assert rows["CPU priority"]["residual"] >= 0.5
    assert "priority.renice" not in rows["CPU priority"]["expect"]


def test_live_audit_verifies_what_the_stages_applied(plugin, write_profile):
    prof = _profile(write_profile, "[priority]\nnice = 15\n")
    rep = _audit("--live", "--profile", prof)
    assert not rep["mismatches"], rep["mismatches"]
    facts = rep["facts"]
    # observed, inside (the probe) and outside (secrun_live_facts)
    assert facts["priority.nice"] == "15" and facts["priority.renice"] == "refused"
    assert facts["priority.ioprio"] == "idle"
    # strict makes a pid namespace: the probe's session is its own, not the one set in attach
    assert facts["priority.autogroup"] in ("0", "off", "none")
    checks = [c for r in rep["controls"] if r["plugin"] == plugin for c in r.get("checks", [])]
    assert {c["fact"] for c in checks} >= {"priority.nice", "priority.renice",
                                           "priority.ioprio"}
    assert all(c["ok"] for c in checks), checks
    cat = next(c for c in rep["categories"] if c["id"] == "priority.cpu")
    assert cat["effective"] == round(4 / 19, 3) and cat["observed"] == "nice 15"


def test_live_audit_sees_a_sandbox_the_control_did_not_lower(plugin):
    """The probe runs for every registered plugin: without [priority], it observes the normal
    priority, so an expectation of nice 15 could not hold there, and the judge scores 1.0."""
    rep = _audit("--live", "--plugin", plugin, "--profile", "strict")
    assert rep["facts"]["priority.nice"] == str(os.getpriority(os.PRIO_PROCESS, 0))
    assert rep["facts"]["priority.ioprio"] == "none"
    cat = next(c for c in rep["categories"] if c["id"] == "priority.cpu")
    assert cat["effective"] == 1.0


# --- the subcommand --------------------------------------------------------------------------

def observe_kernel_autogroup() -> str:
    with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
        return "on" if f.read().strip() == "1" else "off"


def test_a_plugin_subcommand_that_fails_is_one_line(monkeypatch, capsys):
    """A bug in a plugin's subcommand is one error line and 125, not a traceback."""
    import click

    from secrun import cli as cli_mod

    def register(plugin, module):
        @cli_mod.cli.command("broken-show")
        def broken() -> None:
            [].pop()

    monkeypatch.setattr(cli_mod, "_register_plugin_commands", register)
    try:
        assert cli_mod.run_cli(["broken-show"], plugin="priority") == 125
    finally:
        cli_mod.cli.commands.pop("broken-show", None)
    err = capsys.readouterr().err
    assert err == ("secrun: error: subcommand 'broken-show' (a plugin's) failed: "
                   "IndexError: pop from empty list\n"), err
    assert isinstance(cli_mod.cli, click.Group)


def test_priority_show_is_the_plugins_subcommand(plugin):
    def lowered():
        os.nice(7)
        ctypes.CDLL(None).syscall(251, 1, 0, 3 << 13)  # ioprio_set(idle) (x86_64 number)

    proc = subprocess.Popen(["sleep", "30"], preexec_fn=lowered if IOPRIO_GET == 252 else
                            (lambda: os.nice(7)))
    try:
        r = run_secrun("priority", "show", proc.pid)
        assert r.rc == 0, r
        lines = dict(line.split(None, 1) for line in r.out.splitlines())
        assert lines["nice"] == str(os.getpriority(os.PRIO_PROCESS, 0) + 7)
        if IOPRIO_GET == 252:
            assert lines["ioprio"] == "idle"
        facts = json.loads(run_secrun("priority", "show", "--json", proc.pid).out)
        assert facts["priority.nice"] == lines["nice"]
    finally:
        proc.kill()
        proc.wait()
    # pid 1 never made a session of its own: the kernel prints nothing for its autogroup
    if os.path.exists("/proc/1/autogroup") and observe_kernel_autogroup() == "on":
        r = run_secrun("priority", "show", "1")
        assert r.rc == 0 and r.out.splitlines()[-1].split() == ["autogroup", "root"], r
    r = run_secrun("priority", "show", "999999999")
    assert r.rc == 125 and r.err.startswith("secrun: error: process 999999999: "), r
    assert r.err.count("\n") == 1
    r = run_secrun("priority", "--help")
    assert r.rc == 0 and "show" in r.out


def test_after_double_dash_priority_is_a_program(plugin, tmp_path):
    prog = tmp_path / "priority"
    prog.write_text("#!/bin/sh\necho the program named priority\n")
    prog.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    r = run_secrun("--profile", "unconfined", "--", "priority", env=env, cwd="/")
    assert r.rc == 0 and r.out.strip() == "the program named priority", r
    r = run_secrun("--profile", "unconfined", "--", "priority", cwd="/")
    assert r.rc == 127 and "show" not in r.out, r


# --- the hooks, called as the core calls them ------------------------------------------------

def test_every_hook_by_name(plugin):
    """Each non-stage hook of the distribution, called directly with what the core passes."""
    import click

    from secrun.audit.categories import Category
    from secrun.context import AuditContext
    from secrun.facts import Facts
    from secrun.registry import Plugins

    loaded = Plugins([plugin])
    hooks = dict((h, dict(loaded.order(h, [plugin]))[plugin])
                 for h in ("secrun_profile_sections", "secrun_facts", "secrun_compile",
                           "secrun_audit", "secrun_audit_categories", "secrun_live_probe",
                           "secrun_live_facts", "secrun_register_commands"))
    (section,) = hooks["secrun_profile_sections"]()
    assert section.name == "priority" and set(section.fields) >= {"nice", "ioprio_class",
                                                                  "ioprio_level", "autogroup",
                                                                  "required"}
    facts = hooks["secrun_facts"]()
    assert isinstance(facts, Facts) and list(facts.publishes) == ["priority.nice"]
    assert facts.requires == ("namespaces.made",)  # read in its compile
    assert set(facts.uses) == {"identity.uid", "capabilities.managed"}  # read in its audit
    (cat,) = hooks["secrun_audit_categories"]()
    assert isinstance(cat, Category) and (cat.id, cat.importance) == ("priority.cpu", 0.1)
    assert cat.judge({"priority.nice": "19", "priority.renice": "refused"})[0] == 0.0
    assert cat.judge({"priority.nice": "19", "priority.renice": "allowed"})[0] == 1.0
    assert cat.judge({}) is None
    # secrun_live_probe: standard-library source with probe(facts, ref), here in this process
    source = hooks["secrun_live_probe"]()
    assert "import secrun" not in source
    space: dict = {}
    exec(compile(source, "<probe>", "exec"), space)
    seen: dict = {}
    space["probe"](seen, {})
    assert seen["priority.nice"] == str(os.getpriority(os.PRIO_PROCESS, 0))
    assert seen["priority.renice"] == "allowed"  # this test runs as root
    # secrun_live_facts: this process, seen from outside
    ctx = AuditContext({}, {}, {}, {}, {}, pid=os.getpid())
    ctx.plugin = plugin
    out = hooks["secrun_live_facts"](ctx=ctx)
    assert out["priority.nice"] == seen["priority.nice"] and "priority.ioprio" in out
    ctx.pid = None
    assert hooks["secrun_live_facts"](ctx=ctx) == {}
    group = click.Group("secrun")
    hooks["secrun_register_commands"](cli=group)
    assert set(group.commands["priority"].commands) == {"show"}
