"""Faults the supervisor must survive, each with the exit status and message promised: signals
at random points of the launch (a short soak in CI, ``SECRUN_SOAK_SIGNALS=1000`` for the long
run), a workload that stops itself, and errors named by the stage that failed.
"""

import os
import random
import signal
import subprocess
import time

import pytest

from support import SECRUN, needs_root

SOAK = int(os.environ.get("SECRUN_SOAK_SIGNALS", "12"))


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


# --- signals during the launch ------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("profile", ["strict", "unconfined"])
def test_signal_at_any_point_of_the_launch_is_128_plus_n(profile, sig, tmp_path):
    """A signal to secrun at a random point of its start-up, set-up or run: secrun exits
    128+N soon (never the workload's own completion: it would sleep 3 s), with no traceback
    and no workload left."""
    marker = f"3.{random.randrange(10**6)}"
    rounds = SOAK if sig != signal.SIGHUP else max(SOAK // 3, 4)
    for _ in range(rounds):
        t0 = time.monotonic()
        proc = subprocess.Popen([SECRUN, "-p", profile, "--", "sleep", marker],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                start_new_session=True)
        time.sleep(random.uniform(0.0, 0.15))
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
        # (-N: the signal came before the interpreter ran secrun's first line and killed it
        # with its default action; a shell shows 128+N for both)
        assert proc.returncode in (128 + sig, -sig), (proc.returncode, err)
        assert took < 2.5, (took, err)
        assert "Traceback" not in err, err
        assert "died before reporting" not in err, err


def test_signal_before_the_fork_stops_the_launch(write_profile, tmp_path):
    """A signal that arrives while secrun prepares (here: a slow ``prepare`` of the test
    plugin is not needed: SIGTERM sent while the launch waits in planning) is never lost."""
    prof = write_profile("""
        extends = ["strict"]
        """)
    # --no-cache makes planning long enough (pluggy, tomllib, compiling seccomp) to land in it
    for delay in (0.02, 0.05, 0.08, 0.12):
        proc = subprocess.Popen([SECRUN, "--no-cache", "-p", prof, "--", "sleep", "3.5"],
                                stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                cwd=tmp_path)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), (delay, err)
        assert "Traceback" not in err


# --- a workload that stops itself ----------------------------------------------------------------

@pytest.mark.parametrize("profile", ["strict", "unconfined"])
def test_self_stopped_workload_stops_secrun_on_a_terminal_and_continues(profile, tmp_path):
    """``kill -STOP $$`` in the workload, secrun the foreground job of a terminal: secrun stops
    too (its caller's shell sees a stopped job); SIGCONT to secrun continues the workload,
    which finishes normally."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # a session of its own, the terminal's foreground: a shell's job
        os.chdir(tmp_path)
        os.execv(SECRUN, [SECRUN, "-p", profile, "--", "sh", "-c",
                          "kill -STOP $$; echo continued; exit 5"])
    try:
        end = time.monotonic() + 15
        while _proc_state(pid) != "T" and time.monotonic() < end:
            time.sleep(0.02)
        assert _proc_state(pid) == "T", "secrun did not reflect the workload's stop"
        os.kill(pid, signal.SIGCONT)
        out = b""
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break  # EIO: the terminal's other side is closed
            if not chunk:
                break
            out += chunk
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 5, out
        assert b"continued" in out, out
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


@pytest.mark.parametrize("profile", ["strict", "unconfined"])
def test_self_stopped_workload_without_a_terminal_leaves_secrun_waiting(profile, tmp_path):
    """No terminal (a pipeline, CI, a service): nobody could continue a stopped secrun, so a
    workload that stops itself leaves secrun waiting, not stopped; once something continues
    the workload (here its own background job), it finishes and secrun exits with it."""
    proc = subprocess.Popen([SECRUN, "-T", "-p", profile, "--", "sh", "-c",
                             "(sleep 0.5; kill -CONT $$) & kill -STOP $$; echo continued; "
                             "exit 5"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        state = _proc_state(proc.pid)
        proc.kill()
        proc.communicate()
        raise AssertionError(f"secrun did not finish (state {state})") from None
    assert proc.returncode == 5, err
    assert out.strip() == "continued"


# --- errors name the stage that failed ---------------------------------------------------------

def test_empty_program_name(secrun):
    r = secrun("-p", "strict", "--", "")
    assert r.rc == 127, r
    assert "seccomp" not in r.err and "''" in r.err, r


@pytest.mark.parametrize("line,key", [
    ('env_set = { A = "x\\u0000y" }', "env_set"),
    ('env_set = { "A=B" = "x" }', "env_set"),
    ('env_set = { "" = "x" }', "env_set"),
])
def test_bad_environment_is_a_profile_error_in_launch_and_audit(secrun, write_profile, line,
                                                                key):
    prof = write_profile(f"""
        extends = ["strict"]
        [process]
        {line}
        """)
    for args in (["-p", prof, "--", "true"], ["audit", "-p", prof]):
        r = secrun(*args)
        assert r.rc == 125, r
        errors = [x for x in r.err.splitlines() if x.startswith("secrun: error:")]
        assert len(errors) == 1 and f"[process].{key}" in errors[0] and prof in errors[0], r
        assert "seccomp" not in r.err


@needs_root
def test_init_fork_failure_names_the_init(secrun, write_profile):
    """pid 1 cannot fork the workload (a process limit of 1 for uid 65534): the error names
    the core's init, not the last plugin stage."""
    prof = write_profile("""
        extends = ["strict"]
        [process]
        rlimits = { nproc = 1 }
        """)
    r = secrun("-p", prof, "--", "true")
    assert r.rc == 125, r
    assert "stage 'init' failed in plugin 'core'" in r.err and "EAGAIN" in r.err, r


@pytest.mark.parametrize("args", [["profiles", "show"], ["profiles", "show", "strict", "--bogus"],
                                  ["audit", "--format", "nope"], ["cgroups", "frobnicate"]])
def test_command_line_usage_errors_are_one_line(secrun, args):
    r = secrun(*args)
    assert r.rc == 125, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secrun: error: ") and "--help" in lines[0], r
