"""The core: stage pipeline, plugin contract, profiles, CLI and exit codes — all through the
real ``secrun`` command and a real third-party plugin distribution (tests/dists/plugin-dist)."""

import os
import signal
import subprocess
import time

import pytest

from secrun.stages import CHILD_STAGES, PARENT_STAGES, STAGE_NAMES
from support import REPO, SECRUN, is_root, needs_root

PY = os.path.join(os.path.dirname(SECRUN), "python")


def marker_profile(write_profile, tmp_path, **keys):
    log = tmp_path / "stages.log"
    extra = "".join(f"{k} = {v!r}\n".replace("'", '"') if not isinstance(v, bool)
                    else f"{k} = {str(v).lower()}\n" for k, v in keys.items())
    path = write_profile(f'plugins = ["marker"]\n[marker]\nlog = "{log}"\n{extra}', "marker")
    return path, log


def read_log(log):
    return [line.split() for line in log.read_text().splitlines()]


# --- the stage pipeline --------------------------------------------------------------------------

def test_every_stage_runs_once_in_order_in_the_right_process(secrun, write_profile, tmp_path):
    prof, log = marker_profile(write_profile, tmp_path)
    r = secrun("-p", prof, "--", "sh", "-c", f"echo workload $$ $PPID >> {log}")
    assert r.rc == 0, r
    rows = read_log(log)
    stages = [row[0] for row in rows]
    # `attach` (parent) runs concurrently with `mounts` (child), and `started` (parent) with
    # the workload: each must only land between its neighbours.
    def without(names):
        return [s for s in stages if s not in names]

    expected = [s for s in STAGE_NAMES if s not in ("started", "cleanup")] + ["workload",
                                                                            "cleanup"]
    assert without({"attach", "started"}) == [s for s in expected if s != "attach"], stages
    assert stages.index("namespaces") < stages.index("attach") < stages.index("hostname")
    assert stages.index("seccomp") < stages.index("started") < stages.index("cleanup")
    pid_of = {row[0]: row[1] for row in rows}
    supervisor = pid_of["prepare"]
    child = pid_of["user_namespace"]
    assert supervisor != child
    for s in PARENT_STAGES:
        assert pid_of[s] == supervisor, s
    for s in CHILD_STAGES:
        assert pid_of[s] == child, s
    # the workload is the child itself, exec'd in place
    assert pid_of["workload"] == child


def test_fork_after_namespaces_runs_later_stages_in_the_new_child(secrun, write_profile,
                                                                  tmp_path):
    prof, log = marker_profile(write_profile, tmp_path, fork=True)
    r = secrun("-p", prof, "--", "sh", "-c", f"echo workload $$ $PPID >> {log}; exit 7")
    assert r.rc == 7, r
    pid_of = {row[0]: row[1:] for row in read_log(log)}
    assert pid_of["namespaces"][0] != pid_of["mounts"][0]
    assert pid_of["mounts"][0] == pid_of["seccomp"][0]
    # the workload is a child of the minimal init (which ran the late stages)
    assert pid_of["workload"][1] == pid_of["seccomp"][0]


@pytest.mark.parametrize("fork", [False, True])
def test_sigterm_to_secrun_reaches_the_workload(write_profile, tmp_path, fork):
    prof, _ = marker_profile(write_profile, tmp_path, fork=fork)
    flag = tmp_path / "got-term"
    p = subprocess.Popen([SECRUN, "-p", prof, "--", "sh", "-c",
                          f"trap 'echo term > {flag}; exit 42' TERM; "
                          "echo ready; while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 42
    assert flag.read_text().strip() == "term"


# --- fail closed --------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [s for s in STAGE_NAMES if s not in ("started", "cleanup")])
def test_failing_stage_stops_the_launch_before_exec(secrun, write_profile, tmp_path, stage):
    prof, _ = marker_profile(write_profile, tmp_path, fail_stage=stage)
    sentinel = tmp_path / "workload-ran"
    r = secrun("-p", prof, "--", "touch", sentinel)
    assert r.rc == 125, r
    assert not sentinel.exists()
    lines = r.err.strip().splitlines()
    assert len(lines) == 1, r.err
    assert f"stage '{stage}'" in lines[0] and "plugin 'marker'" in lines[0]
    assert f"/marker/{stage}" in lines[0]  # the file/syscall that failed


def test_failing_stage_with_fork_stops_the_launch(secrun, write_profile, tmp_path):
    prof, _ = marker_profile(write_profile, tmp_path, fork=True, fail_stage="seccomp")
    sentinel = tmp_path / "workload-ran"
    r = secrun("-p", prof, "--", "touch", sentinel)
    assert r.rc == 125 and not sentinel.exists(), r
    assert "stage 'seccomp' failed in plugin 'marker'" in r.err


def test_best_effort_section_failure_is_reported_and_the_workload_runs(secrun, write_profile,
                                                                       tmp_path):
    prof, _ = marker_profile(write_profile, tmp_path, fail_stage="mounts", required=False)
    r = secrun("-p", prof, "--", "echo", "ran")
    assert r.rc == 0 and r.out == "ran\n", r
    assert "warning: marker: best-effort control not applied at stage 'mounts'" in r.err


def test_cleanup_runs_after_a_failed_launch(secrun, write_profile, tmp_path):
    prof, log = marker_profile(write_profile, tmp_path, fail_stage="landlock")
    assert secrun("-p", prof, "--", "true").rc == 125
    assert read_log(log)[-1][0] == "cleanup"


def test_a_thread_alive_at_fork_stops_the_launch(secrun, write_profile, tmp_path):
    """The contract forbids threads at fork (a multi-threaded process cannot enter a new user or
    time namespace, and a lock a thread holds stays held in the child): a plugin that leaves
    one running from prepare gets the launch refused, nothing run, cleanup done."""
    prof, log = marker_profile(write_profile, tmp_path, thread=True)
    marker = tmp_path / "ran"
    r = secrun("-p", prof, "--", "touch", str(marker))
    assert r.rc == 125, r
    assert "stage 'fork' failed in plugin 'core': 2 threads alive" in r.err, r
    assert not marker.exists()
    assert [line[0] for line in read_log(log)] == ["prepare", "cleanup"]


# --- exit codes and pass-through ---------------------------------------------------------------

def test_exit_codes(secrun, tmp_path):
    assert secrun("-p", "unconfined", "--", "sh", "-c", "exit 3").rc == 3
    assert secrun("-p", "unconfined", "--", "true").rc == 0
    r = secrun("-p", "unconfined", "--", "no-such-program-xyz")
    assert r.rc == 127 and "no-such-program-xyz" in r.err
    noexec = tmp_path / "noexec"
    noexec.write_text("#!/bin/sh\necho hi\n")
    noexec.chmod(0o644)
    r = secrun("-p", "unconfined", "--", str(noexec))
    if is_root:  # root may read it, but not execute a file with no x bit
        assert r.rc == 126, r
    r = secrun("-p", "unconfined", "--", "sh", "-c", "kill -USR1 $$")
    assert r.rc == 128 + signal.SIGUSR1
    r = secrun("-p", "unconfined", "--", "sh", "-c", "kill -KILL $$")
    assert r.rc == 137 and "SIGKILL" in r.err
    r = secrun("--bogus-option", "true")
    assert r.rc == 125 and "--bogus-option" in r.err
    assert secrun("-p", "unconfined").rc == 125


def test_workload_options_are_never_secruns(secrun):
    r = secrun("--profile", "unconfined", "echo", "--profile", "x", "-v", "--", "--set")
    assert r.rc == 0 and r.out == "--profile x -v -- --set\n", r
    # a program named like a subcommand
    r = secrun("--", "echo", "audit")
    assert r.out == "audit\n"


def test_stdin_stdout_pass_through_and_fds_are_closed(secrun):
    r = secrun("-p", "unconfined", "--", "sh", "-c", "cat; ls /proc/self/fd", input="data\n")
    assert r.rc == 0
    lines = r.out.splitlines()
    assert lines[0] == "data"
    assert sorted(lines[1:]) == ["0", "1", "2", "3"]  # 3 is ls's own directory fd


def test_verbose_logs_every_stage_with_its_duration(secrun, write_profile, tmp_path):
    prof, _ = marker_profile(write_profile, tmp_path)
    r = secrun("-v", "-p", prof, "--", "true")
    assert r.rc == 0
    for stage in STAGE_NAMES:
        assert f"stage {stage} (marker):" in r.err, stage


def test_process_plugin_controls_are_applied(secrun, write_profile):
    prof = write_profile("""
        [process]
        env_allow = ["KEEP_*"]
        env_set = { SET_ME = "yes" }
        umask = "027"
        cwd = "/usr"
        rlimits = { nofile = 77, core = 0 }
        no_new_privs = true
        """)
    r = secrun("-p", prof, "--", "/bin/sh", "-c",
               "env | sort; umask; pwd; ulimit -n; ulimit -c; grep NoNewPrivs /proc/self/status",
               env={"KEEP_A": "1", "DROP_B": "2"})
    assert r.rc == 0, r
    out = r.out.splitlines()
    assert "KEEP_A=1" in out and "SET_ME=yes" in out
    assert not any(line.startswith("DROP_B") for line in out)
    assert "0027" in out and "/usr" in out and "77" in out and "0" in out
    assert "NoNewPrivs:\t1" in out


# --- profiles ------------------------------------------------------------------------------------

BAD_PROFILES = {
    "unknown key": ("[process]\nno_such_key = 1\n", "[process].no_such_key"),
    "unknown section": ("[no_such_section]\nx = 1\n", "[no_such_section]"),
    "wrong type": ('[process]\nno_new_privs = "yes"\n', "expected boolean"),
    "bad value": ('[process]\numask = "999"\n', "[process].umask"),
    "bad toml": ("[process\n", "invalid TOML"),
    "unknown top-level": ("colour = 1\n", "colour"),
    "bad rlimit": ("[process]\nrlimits = { nofiles = 3 }\n", "unknown resource 'nofiles'"),
    "unknown plugin": ('plugins = ["nope"]\n', "plugin 'nope' is not installed"),
    "broken plugin": ('plugins = ["broken"]\n', "distribution secrun-testplugin 1.2.3"),
    "duplicate section owner": ('plugins = ["dupe"]\n', "both claim the profile section"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_fails_with_one_clear_line_and_runs_nothing(secrun, write_profile,
                                                                tmp_path, case):
    text, expected = BAD_PROFILES[case]
    prof = write_profile(text)
    sentinel = tmp_path / "ran"
    r = secrun("-p", prof, "--", "touch", sentinel)
    assert r.rc == 125, r
    assert not sentinel.exists()
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], r.err
    if case not in ("unknown plugin", "broken plugin", "duplicate section owner"):
        assert prof in lines[0]  # names the file


def test_extends_cycle_names_the_chain(secrun, write_profile, tmp_path):
    a = write_profile('extends = ["./b.toml"]\n', "a")
    write_profile('extends = ["./c.toml"]\n', "b")
    write_profile('extends = ["./a.toml"]\n', "c")
    r = secrun("-p", a, "--", "touch", tmp_path / "ran")
    assert r.rc == 125 and "cycle" in r.err
    assert "a.toml -> " in r.err and "b.toml -> " in r.err and "c.toml -> " in r.err
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("name", ["no-such-profile", "../strict", "a/b", "Strict", ".hidden",
                                  "strict.toml"])
def test_bad_profile_names_are_refused(secrun, tmp_path, name):
    r = secrun("-p", name, "--", "touch", tmp_path / "ran")
    assert r.rc == 125 and len(r.err.strip().splitlines()) == 1, r
    assert not (tmp_path / "ran").exists()


@needs_root
@pytest.mark.parametrize("what", ["file", "directory"])
def test_root_refuses_a_profile_writable_by_others(secrun, tmp_path, what):
    d = tmp_path / "profdir"
    d.mkdir()
    prof = d / "p.toml"
    prof.write_text("[process]\n")
    if what == "file":
        prof.chmod(0o666)
    else:
        prof.chmod(0o644)
        d.chmod(0o777)
    r = secrun("-p", str(prof), "--", "touch", tmp_path / "ran")
    assert r.rc == 125 and "writable" in r.err, r
    assert not (tmp_path / "ran").exists()


def test_extends_composition_list_edits_and_origins(secrun, write_profile):
    base = write_profile("""
        [process]
        env_allow = ["A", "B", "C"]
        rlimits = { nofile = 100 }
        umask = "022"
        """, "base")
    child = write_profile("""
        extends = ["./base.toml"]
        [process]
        env_allow = { add = ["D"], remove = ["B"] }
        rlimits = { core = 0 }
        """, "child")
    r = secrun("profiles", "show", child, "--set", "process.umask=077",
               "--set", "process.env_allow+=E", "--json")
    assert r.rc == 0, r
    import json

    data = json.loads(r.out)
    cfg, org = data["config"]["process"], data["origins"]["process"]
    assert cfg["env_allow"] == ["A", "C", "D", "E"]
    assert cfg["rlimits"] == {"nofile": 100, "core": 0}
    assert cfg["umask"] == "077" and org["umask"] == "command line"
    assert base in org["env_allow"] and child in org["env_allow"]
    assert org["no_new_privs"] == "built-in default"
    assert [p[1] for p in data["profiles"]] == [base, child]


def test_several_profiles_compose_left_to_right(secrun, write_profile):
    a = write_profile('[process]\numask = "011"\n', "a")
    b = write_profile('[process]\numask = "022"\n', "b")
    assert secrun("-p", a, "-p", b, "--", "sh", "-c", "umask").out == "0022\n"
    assert secrun("-p", b, "-p", a, "--", "sh", "-c", "umask").out == "0011\n"


def test_a_changed_profile_is_never_served_stale_from_the_cache(secrun, write_profile):
    prof = write_profile('[process]\numask = "011"\n')
    assert secrun("-p", prof, "--", "sh", "-c", "umask").out == "0011\n"
    assert secrun("-p", prof, "--", "sh", "-c", "umask").out == "0011\n"  # cached
    time.sleep(0.01)
    with open(prof, "w") as f:
        f.write('[process]\numask = "033"\n')
    assert secrun("-p", prof, "--", "sh", "-c", "umask").out == "0033\n"


def test_cache_is_used_and_private(secrun, write_profile, _private_cache):
    prof = write_profile('[process]\numask = "011"\n')
    secrun("-p", prof, "--", "true")
    plans = _private_cache / "secrun" / "plans"
    assert oct(plans.stat().st_mode & 0o777) == "0o700"
    assert any(p.name.endswith(".plan") for p in plans.iterdir())


def test_third_party_plugins_load_only_when_asked(secrun, write_profile):
    prof = write_profile("[marker]\n")
    r = secrun("-p", prof, "--", "true")
    assert r.rc == 125 and "unknown section [marker]" in r.err
    assert secrun("--plugin", "marker", "-p", prof, "--", "true").rc == 0


def test_dry_run_prints_the_plan_and_runs_nothing(secrun, tmp_path):
    r = secrun("--dry-run", "-p", "strict", "--", "touch", tmp_path / "ran")
    assert r.rc == 0 and "[process]" in r.out and "stages:" in r.out
    assert not (tmp_path / "ran").exists()


def test_profiles_list_and_check(secrun, write_profile):
    r = secrun("profiles")
    assert r.rc == 0
    for name in ("unconfined", "default", "strict"):
        assert name in r.out
    good = write_profile("[process]\n")
    assert secrun("profiles", "check", good).rc == 0
    bad = write_profile("[process]\nx = 1\n", "bad")
    r = secrun("profiles", "check", bad)
    assert r.rc == 125 and "[process].x" in r.err


def test_plugins_lists_builtin_and_third_party(secrun):
    r = secrun("plugins", "--json")
    import json

    data = json.loads(r.out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["process"]["builtin"] and by_name["process"]["sections"] == ["process"]
    m = by_name["marker"]
    assert (m["distribution"], m["version"], m["builtin"]) == ("secrun-testplugin", "1.2.3",
                                                                False)
    assert m["stages"] == list(STAGE_NAMES)
    assert "broken" in data["errors"] and "secrun-testplugin" in data["errors"]["broken"]
    assert r.rc == 125  # a broken installed plugin is an error, after listing everything


# --- contract ------------------------------------------------------------------------------------





def test_generated_docs_are_up_to_date(secrun):
    r = secrun("docs", "--out", os.path.join(REPO, "docs"), "--check")
    assert r.rc == 0, r




@pytest.mark.parametrize("name", ["unconfined", "default", "strict"])
def test_bundled_profiles_load_and_validate(secrun, name):
    r = secrun("profiles", "check", name)
    assert r.rc == 0, r




def test_secrun_compile_and_profile_sections_hooks_are_called(secrun, write_profile, tmp_path):
    # secrun_compile / secrun_profile_sections / secrun_audit of the marker plugin
    prof, _ = marker_profile(write_profile, tmp_path)
    from secrun import plan

    p = plan.build([prof])
    assert p["plan"]["marker"]["compiled_in"] > 0  # secrun_compile ran at planning time
    assert "marker" in p["config"]  # secrun_profile_sections declared [marker]




def test_help_and_version(secrun):
    r = secrun("--help")
    assert r.rc == 0 and "--profile" in r.out and "Exit status" in r.out
    assert secrun("--version").out.startswith("secrun, version")


def test_python_dash_m_secrun_works():
    r = subprocess.run([PY, "-m", "secrun", "-p", "unconfined", "--", "echo", "ok"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "ok\n"


# --- a plugin's subcommand word that is also a program ------------------------------------------
# A throw-away distribution, installed into the venv for these tests and removed after: its
# plugin adds the subcommand `factor` (also /usr/bin/factor, a program no other test runs) and
# `clashprobe` (no program has that name).

CLASH_DIST = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "secrun-clash-probe"
        version = "0.0.1"

        [project.entry-points."secrun.plugins"]
        clashprobe = "secrun_clash_probe"

        [project.entry-points."secrun.commands"]
        factor = "secrun_clash_probe"
        clashprobe = "secrun_clash_probe"

        [tool.setuptools]
        py-modules = ["secrun_clash_probe"]
        """,
    "secrun_clash_probe.py": """\
        from secrun import hookimpl


        @hookimpl
        def secrun_register_commands(cli):
            import click

            @cli.command("factor", context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1)
            def factor(args):
                click.echo("the plugin's factor")

            @cli.command("clashprobe")
            def clashprobe():
                click.echo("the plugin's clashprobe")
        """,
}


@pytest.fixture(scope="module")
def clash_plugin(tmp_path_factory):
    import shutil
    import sys
    import textwrap

    src = tmp_path_factory.mktemp("clash") / "dist"
    src.mkdir()
    for name, text in CLASH_DIST.items():
        (src / name).write_text(textwrap.dedent(text))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(src)],
                   check=True, capture_output=True)
    try:
        yield "clashprobe"
    finally:
        subprocess.run([*pip, "uninstall", "-y", "secrun-clash-probe"], capture_output=True)
        shutil.rmtree(src, ignore_errors=True)


def test_a_subcommand_word_that_is_a_program_on_path_is_refused(secrun, clash_plugin):
    import shutil

    assert shutil.which("factor"), "the test needs the program factor on PATH"
    r = secrun("factor", "12")
    assert r.rc == 125 and r.out == "", r
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("secrun: error: "), r
    assert "`secrun -- factor`" in r.err and "clashprobe" in r.err, r


def test_dash_dash_runs_the_program_and_an_unclashing_word_the_subcommand(secrun, clash_plugin):
    r = secrun("--", "factor", "12")
    assert r.rc == 0 and r.out == "12: 2 2 3\n", r
    r = secrun("clashprobe")
    assert r.rc == 0 and r.out == "the plugin's clashprobe\n", r
