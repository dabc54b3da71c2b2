"""The core's promises about the workload's process: its own session and terminal, its life
bound to the supervisor's, default signal dispositions, and an isolated interpreter.

Each test attacks real ``secrun`` on the real kernel: a background workload that tries to take
the caller's terminal (driven through a pty, as a user's interactive shell), ``kill(0, ...)``,
SIGKILL of the supervisor at random points of the launch, inherited ignored signals, and a
PYTHONPATH that a root-run secrun must not honour.
"""

import os
import pty
import random
import select
import signal
import subprocess
import sys
import time

import pytest

from support import SECRUN, is_root, needs_root, nobody_can_run_secrun, run_secrun

PROFILES = ["strict", "default"]


# --- session and terminal ----------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_kill_zero_stays_inside(profile, tmp_path):
    """``kill(0, SIGKILL)`` from the workload signals its own process group, not the caller's
    (here: the shell script that started secrun)."""
    script = f"{SECRUN} -p {profile} -- sh -c 'kill -9 0'; echo caller-survived $?"
    cp = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                        cwd=tmp_path, start_new_session=True)
    assert "caller-survived 137" in cp.stdout, cp


@pytest.mark.parametrize("profile", PROFILES)
def test_own_session_and_group(profile, tmp_path):
    """Inside, the session and process group are the sandbox's own (the leader is visible in
    the sandbox's pid namespace, not 0 as for a session led from outside)."""
    r = run_secrun("-p", profile, "--", "python3", "-I", "-c",
                   "import os; print(os.getsid(0), os.getpgrp(), os.getpid())", cwd=tmp_path)
    assert r.rc == 0, r
    sid, pgrp, pid = map(int, r.out.split())
    assert sid != 0 and pgrp != 0, r
    assert sid in (pid, 1, 2) and pgrp in (pid, 1, 2), r


def _read_until(fd, needle: bytes, timeout: float) -> bytes:
    out = b""
    end = time.monotonic() + timeout
    while needle not in out and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


ATTACKER = r"""
import os, signal, sys
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
signal.signal(signal.SIGTTIN, signal.SIG_IGN)
try:
    os.setpgid(0, 0)  # a group of its own, nameable inside a pid namespace
except OSError as e:
    print("attacker: setpgid failed:", e, flush=True)
try:
    os.tcsetpgrp(0, os.getpgrp())
except OSError as e:
    print("attacker: tcsetpgrp failed:", e, flush=True)
print("attacker-ready", flush=True)
data = os.read(0, 200)
print("STOLEN:" + data.decode(errors="replace").strip() + ":", flush=True)
"""


@pytest.mark.parametrize("profile", PROFILES)
def test_background_workload_cannot_read_the_users_next_line(profile, tmp_path):
    """A user's interactive shell (bash with job control, on a terminal) starts a sandboxed
    program in the background and then types a command.  The program tries to make itself the
    terminal's foreground (TIOCSPGRP) and read that line.  It must not get it: the line goes to
    the user's shell, which runs it."""
    attacker = tmp_path / "attacker.py"
    attacker.write_text(ATTACKER)
    attacker.chmod(0o644)
    tmp_path.chmod(0o755)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.environ["PS1"] = "user$ "
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
    try:
        _read_until(fd, b"user$ ", 10)
        # (the program's text on the command line: the working directory under /tmp is not
        # in the sandbox's view)
        os.write(fd, f'{SECRUN} -p {profile} -- python3 -I -c "$(cat attacker.py)" &\n'.encode())
        seen = _read_until(fd, b"attacker-ready", 20)
        assert b"attacker-ready" in seen, seen
        time.sleep(0.5)
        os.write(fd, b"echo typed-by-user-$((6*7))\n")
        seen += _read_until(fd, b"typed-by-user-42", 5)
        time.sleep(0.5)
        seen += _read_until(fd, b"\x00", 0.5)
        assert b"STOLEN:echo" not in seen, seen
        assert b"typed-by-user-42" in seen, seen
    finally:
        try:
            os.write(fd, b"kill -9 %1 2>/dev/null; exit\n")
        except OSError:
            pass
        time.sleep(0.3)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)


def _in_pty(argv, data=b"", timeout=20):
    """Run ``argv`` on a new terminal; (exit status, everything it printed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    out = b""
    if data:
        time.sleep(0.3)
        os.write(fd, data)
    end = time.monotonic() + timeout
    open_ = True
    while time.monotonic() < end:
        r, _, _ = select.select([fd] if open_ else [], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                open_ = False  # EIO: the terminal's other side is closed
            out += chunk
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            out += _read_until(fd, b"\x00", 0.2)
            os.close(fd)
            return os.waitstatus_to_exitcode(status), out
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(fd)
    raise AssertionError(f"timed out: {out!r}")


@pytest.mark.parametrize("profile", PROFILES)
def test_terminal_is_a_new_pty_relayed(profile):
    """On a terminal the workload gets a pseudo-terminal of its own as its controlling
    terminal: it is a terminal, in the foreground of its own session, not the caller's; input
    and output are relayed."""
    prog = ("import os, sys; t = os.open('/dev/tty', os.O_RDWR); "
            "print('fg', os.tcgetpgrp(0) == os.getpgrp(), 'sid', os.getsid(0) == os.getpid()); "
            "print('isatty', sys.stdin.isatty(), sys.stdout.isatty()); "
            "line = sys.stdin.readline(); print('got', line.strip()); sys.exit(7)")
    rc, out = _in_pty([SECRUN, "-p", profile, "--", "python3", "-I", "-c", prog],
                      b"hello-through-the-pty\n")
    assert rc == 7, out
    assert b"fg True sid True" in out, out
    assert b"isatty True True" in out, out
    assert b"got hello-through-the-pty" in out, out


def test_tty_never_gives_no_terminal():
    prog = ("import os, sys\ntry:\n os.open('/dev/tty', os.O_RDWR)\n print('ctty')\n"
            "except OSError as e:\n print('no ctty', e.errno)\n"
            "print('stdin', sys.stdin.isatty(), sys.stdin.read() == '')")
    rc, out = _in_pty([SECRUN, "-T", "-p", "strict", "--", "python3", "-I", "-c", prog])
    assert rc == 0, out
    assert b"no ctty 6" in out, out  # ENXIO
    assert b"stdin False True" in out, out


def test_tty_option_is_checked(secrun):
    r = secrun("--tty=sometimes", "-p", "strict", "--", "true")
    assert r.rc == 125 and "--tty takes auto, always or never" in r.err, r


# --- the sandbox dies with the supervisor ------------------------------------------------------

def _alive_with(marker: str) -> list:
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def _workload_running(marker: str) -> bool:
    """Whether ``sleep MARKER`` itself runs (not only secrun, whose argv also names it)."""
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read() == b"sleep\0" + marker.encode() + b"\0":
                        return True
            except OSError:
                pass
    return False


def _kill_soak(profile, rounds, user=None, tmp_path=None):
    survivors = []
    prefix = []
    if user is not None:
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                  "--inh-caps=-all", "--bounding-set=-all", "--"]
    for i in range(rounds):
        marker = f"{1000 + random.randrange(10**6)}.{i}"
        proc = subprocess.Popen([*prefix, SECRUN, "-p", profile, "--", "sleep", marker],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=tmp_path or "/",
                                start_new_session=True)
        time.sleep(random.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        end = time.monotonic() + 5
        while _alive_with(marker) and time.monotonic() < end:
            time.sleep(0.02)
        left = _alive_with(marker)
        if left:
            survivors.append(marker)
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return survivors


SOAK = int(os.environ.get("SECRUN_SOAK_KILLS", "25"))


def _free_secrun_groups() -> list:
    """secrun's cgroups whose lock no supervisor holds (leftovers of dead runs)."""
    import fcntl

    out = []
    for top in os.listdir("/sys/fs/cgroup"):
        for d, dirs, _ in os.walk(os.path.join("/sys/fs/cgroup", top)):
            for name in [n for n in dirs if n.startswith("secrun-")]:
                path = os.path.join(d, name)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    out.append(path)
                except OSError:
                    pass
                finally:
                    os.close(fd)
            dirs[:] = [n for n in dirs if not n.startswith("secrun-")]
    return out


@needs_root
@pytest.mark.parametrize("profile", PROFILES)
def test_sigkill_of_the_supervisor_kills_the_sandbox(profile, tmp_path):
    """SIGKILL to secrun at random points of the launch (0-300 ms: the whole set-up and the
    run): no workload is left alive, at any point; after ``secrun cgroups gc`` no group of a
    dead run is left, and the host's mount table is as it was."""
    with open("/proc/self/mountinfo") as f:
        mounts = len(f.readlines())
    assert _kill_soak(profile, SOAK, tmp_path=tmp_path) == []
    r = run_secrun("cgroups", "gc")
    assert r.rc == 0, r
    assert _free_secrun_groups() == []
    with open("/proc/self/mountinfo") as f:
        assert len(f.readlines()) == mounts


@needs_root
def test_sigkill_of_the_supervisor_kills_the_sandbox_rootless(tmp_path):
    """The same as an ordinary user: the pid namespace is made inside a user namespace and
    pid 1 is handed over to the supervisor (the other way of making pid 1)."""
    if not nobody_can_run_secrun():
        pytest.skip("this checkout's secrun cannot be started by an ordinary user")
    assert _kill_soak("default", max(SOAK // 2, 10), user="nobody", tmp_path="/") == []


@needs_root
def test_supervisor_killed_while_running_kills_the_workload(tmp_path):
    proc = subprocess.Popen([SECRUN, "-p", "strict", "--", "sleep", "4321.5"],
                            stdin=subprocess.DEVNULL, cwd=tmp_path)
    end = time.monotonic() + 10
    while not _workload_running("4321.5") and time.monotonic() < end:
        time.sleep(0.02)
    assert _workload_running("4321.5")
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    end = time.monotonic() + 5
    while _alive_with("4321.5") and time.monotonic() < end:
        time.sleep(0.02)
    assert _alive_with("4321.5") == []


# --- signal dispositions -----------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_sigpipe_kills_the_writer(profile, tmp_path):
    """``yes | head -c1``: yes dies of SIGPIPE (141), as outside any sandbox."""
    r = run_secrun("-p", profile, "--", "bash", "-c",
                   "yes | head -c1 >/dev/null; echo ${PIPESTATUS[0]}", cwd=tmp_path)
    assert r.rc == 0 and r.out.strip() == "141", r
    # and secrun itself as the writer: its status is 128+SIGPIPE, without a message
    cp = subprocess.run(["bash", "-c", f"{SECRUN} -p {profile} -- yes | head -c1 >/dev/null; "
                         "echo ${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=60,
                        cwd=tmp_path)
    assert cp.stdout.strip() == "141", cp
    assert "Broken pipe" not in cp.stderr, cp


def test_file_size_limit_kills_with_sigxfsz(write_profile, tmp_path):
    prof = write_profile("""
        extends = ["strict"]
        [process]
        rlimits = { fsize = 1024 }
        """)
    r = run_secrun("-p", prof, "--", "bash", "-c",
                   "head -c 4096 /dev/zero > /tmp/big; echo $?", cwd=tmp_path)
    assert r.out.strip() == str(128 + signal.SIGXFSZ), r


@pytest.mark.parametrize("profile", PROFILES)
def test_ignored_and_blocked_signals_are_not_inherited(profile, tmp_path):
    """A caller that ignores SIGHUP and SIGINT (nohup, a background job) and blocks SIGTERM and
    SIGUSR1: the workload starts with every default and an empty mask."""
    def caller():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
        # and the two signals libc keeps for itself (its sigaction refuses them; a caller's
        # environment may still ignore them, as a CI runner's did)
        import ctypes

        nr = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)
        if nr is not None:
            ign = ctypes.create_string_buffer((1).to_bytes(8, "little") + bytes(24), 32)
            for sig in (32, 33):
                ctypes.CDLL(None).syscall(nr, sig, ign, None, 8)

    cp = subprocess.run([SECRUN, "-p", profile, "--", "grep", "-E", "^Sig(Ign|Blk)",
                         "/proc/self/status"], capture_output=True, text=True, timeout=60,
                        cwd=tmp_path, preexec_fn=caller, restore_signals=False)
    assert cp.returncode == 0, cp
    assert "SigIgn:\t0000000000000000" in cp.stdout, cp
    assert "SigBlk:\t0000000000000000" in cp.stdout, cp


# --- the interpreter of a root-run secrun -------------------------------------------------------

@needs_root
def test_python_environment_is_not_honoured(tmp_path):
    """``sudo -E secrun ...`` with another user's PYTHONPATH (a sitecustomize) or PYTHONHOME:
    nothing of it runs, secrun works, and nothing is imported from the working directory."""
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').write('x')\n"
    (evil / "sitecustomize.py").write_text(code)
    (evil / "usercustomize.py").write_text(code)
    (evil / "pluggy.py").write_text(code)
    (tmp_path / "sitecustomize.py").write_text(code)
    env = dict(os.environ, PYTHONPATH=str(evil), PYTHONSTARTUP=str(evil / "pluggy.py"),
               PYTHONUSERBASE=str(evil), PYTHONINSPECT="1")
    for args in (["-p", "unconfined", "--", "true"], ["profiles", "show", "strict"]):
        cp = subprocess.run([SECRUN, *args], capture_output=True, text=True, timeout=60,
                            env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, cp
        assert not marker.exists(), args
    cp = subprocess.run([SECRUN, "-p", "unconfined", "--", "true"], capture_output=True,
                        text=True, timeout=60, env=dict(os.environ, PYTHONHOME=str(evil)),
                        cwd=tmp_path)
    assert cp.returncode == 0, cp


@needs_root
def test_script_without_isolation_isolates_itself(tmp_path):
    """An installer that writes the console script without ``-I``: a root-run secrun with
    PYTHON* variables set starts itself again isolated before importing anything more, so a
    ``click`` planted on PYTHONPATH is not what its command line runs on (what ran in site
    before that is the installer's concern)."""
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "pwned"
    (evil / "click.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    prog = ("import sys; from secrun.main import main; sys.argv[0] = 'secrun'; "
            "sys.exit(main())")
    cp = subprocess.run([sys.executable, "-c", prog, "profiles", "show", "strict"],
                        capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, PYTHONPATH=str(evil)), cwd=tmp_path)
    assert cp.returncode == 0, cp
    assert not marker.exists()
    # the workload's environment is still the caller's own
    cp = subprocess.run([sys.executable, "-c", prog, "-p", "unconfined", "--", "python3",
                         "-c", "import os; print(os.environ.get('PYTHONPATH'))"],
                        capture_output=True, text=True, timeout=60,
                        env=dict(os.environ, PYTHONPATH=str(evil)), cwd=tmp_path)
    assert cp.returncode == 0 and cp.stdout.strip() == str(evil), cp


def test_console_script_is_isolated():
    with open(SECRUN) as f:
        first = f.readline()
    assert first.startswith("#!") and first.rstrip().split()[-1] in ("-I", "-IS"), first


# --- the live audit sees these promises -------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_live_audit_verifies_session_supervision_and_signals(profile, tmp_path):
    import json

    cp = subprocess.run([SECRUN, "audit", "--live", "-p", profile, "--format", "json"],
                        capture_output=True, text=True, timeout=120, cwd=tmp_path,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode in (0, 1), cp
    rep = json.loads(cp.stdout)
    core = {r["control"]: r for r in rep["controls"] if r["plugin"] == "core"}
    assert set(core) == {"session", "supervision", "signals", "plan cache"}, core
    for r in core.values():
        assert r["verified"] is True, r
    facts = rep["facts"]
    assert facts["proc.session"] == "own" and facts["proc.pgrp"] == "own"
    # the probe runs with -t (the path an interactive launch takes): pid 1 forks it, and it
    # sets its own death signal
    assert facts["proc.bound"] == "pdeathsig" and facts["proc.pdeathsig"] == "SIGKILL", facts
    assert facts["proc.sig_ignored"] == "none" and facts["proc.sig_blocked"] == "none"


@pytest.mark.parametrize("profile", PROFILES)
def test_a_workload_without_a_terminal_starts_as_a_fresh_process(profile, tmp_path):
    """Without a terminal, pid 1 starts the workload with posix_spawn: its own session and
    process group, pid 1 as its parent and no death signal of its own (the namespace dies with
    pid 1), and the same start as after a fork (the signal state: the test above)."""
    code = ("import ctypes, os; s = ctypes.c_int(); "
            "ctypes.CDLL(None).prctl(2, ctypes.byref(s), 0, 0, 0); "
            "print(os.getpid(), os.getsid(0), os.getpgrp(), os.getppid(), s.value)")
    cp = subprocess.run([SECRUN, "-p", profile, "--", "python3", "-c", code],
                        capture_output=True, text=True, timeout=60, cwd=tmp_path,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp
    pid, sid, pgrp, ppid, pdeathsig = map(int, cp.stdout.split())
    assert pid == sid == pgrp == 2 and ppid == 1 and pdeathsig == 0, cp.stdout
    # an exec error is the workload's, as after a fork: 127 not found, 126 not executable
    cp = subprocess.run([SECRUN, "-p", profile, "--", "no-such-program-here"],
                        capture_output=True, text=True, timeout=60, cwd=tmp_path,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 127 and cp.stderr.endswith(
        "secrun: no-such-program-here: No such file or directory\n"), cp
    cp = subprocess.run([SECRUN, "-p", profile, "--", "/etc/passwd"], capture_output=True,
                        text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert cp.returncode == 126 and "Permission denied" in cp.stderr, cp


def test_probe_detects_a_workload_in_the_callers_session(tmp_path):
    """The probe itself, run as a workload without secrun (in its caller's session, SIGPIPE
    ignored, no death signal): the facts disprove every core row, and the check names each."""
    from secrun.audit import live, planned, probe

    src = open(probe.__file__).read()
    ref = json_ref()

    def caller():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    proc = subprocess.Popen(["/bin/sh", "-c", live.PROBE_SHELL, sys.executable, src, ref,
                             "nonce"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            preexec_fn=caller, restore_signals=False, cwd=tmp_path)
    line = proc.stdout.readline()
    facts = __import__("json").loads(line)
    facts.update(probe.session_facts(f"/proc/{proc.pid}"))
    proc.stdin.close()
    proc.wait(timeout=30)
    rows = [dict(r) for r in planned.core_rows()]
    bad = live.check_expects(rows, facts)
    named = {(m["control"], m["fact"]) for m in bad}
    assert ("session", "proc.session") in named and ("session", "proc.pgrp") in named, bad
    assert ("supervision", "proc.bound") in named, bad
    assert facts["proc.bound"] == "none", facts
    assert ("signals", "proc.sig_ignored") in named, bad
    assert "SIGPIPE" in facts["proc.sig_ignored"].split(), facts


def json_ref() -> str:
    import json

    from secrun.audit import outside

    ref = outside.reference("self")
    ref["linger"] = 5
    return json.dumps(ref)


@pytest.mark.skipif(not is_root, reason="needs root")
def test_probe_mount_facts_see_through_a_shadowing_mount(tmp_path):
    """``mount:PATH`` is the mount a lookup of PATH ends on: a mount hidden by a later mount
    of its parent is not it."""
    from secrun.audit import probe

    base = tmp_path / "m"
    (base / "sub").mkdir(parents=True)
    script = (f"mount -t tmpfs -o ro none {base}/sub && mount --bind / {base} && "
              f"cat /proc/self/mountinfo")
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp
    mi = tmp_path / "mountinfo"
    mi.write_text(cp.stdout)
    tree = []
    for line in cp.stdout.splitlines():
        parts = line.split(" ")
        sep = parts.index("-")
        tree.append((int(parts[0]), int(parts[1]), parts[4], parts[sep + 1],
                     parts[5].split(","), parts[3]))
    seen = probe.mount_text(probe.visible_mount(tree, f"{base}/sub"))
    assert seen.startswith(f"{base} ") and "tmpfs" not in seen, seen
    # and the longest-prefix answer would have been the (shadowed) tmpfs
    assert probe.mount_for([(t[2], t[3], t[4], "") for t in tree], f"{base}/sub")[1] == "tmpfs"


def test_live_audit_catches_a_stale_cached_plan(tmp_path, monkeypatch):
    """A cache entry that would give a launch from this directory another policy than the
    profile's (here: default's plan filed under strict's key) fails the live audit, naming
    the plan cache row; a launch would have run under it."""
    import json

    from secrun import plan as _plan

    monkeypatch.chdir(tmp_path)
    key = _plan.cache_key(["strict"], [], [])
    _plan.store(key, _plan.build(["default"]))
    assert _plan.load_cached(key) is not None
    cp = subprocess.run([SECRUN, "audit", "--live", "-p", "strict", "--format", "json"],
                        capture_output=True, text=True, timeout=120, cwd=tmp_path,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode == 2, cp
    rep = json.loads(cp.stdout)
    assert rep["facts"]["plan.cache"] == "stale"
    assert any(m["control"] == "plan cache" for m in rep["mismatches"]), rep["mismatches"]
    os.unlink(_plan._cache_file(key))


def test_group_lock_fact(tmp_path):
    """``cgroup.locked``: "yes" while a supervisor holds its group's lock, "no" once free."""
    import fcntl

    from secrun.audit import outside

    d = tmp_path / "secrun-1-abcdef012345"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; "
                               f"fd = os.open({str(d)!r}, os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert outside.group_locked({"memory": str(d)}) == "yes"
    finally:
        holder.kill()
        holder.wait()
    assert outside.group_locked({"memory": str(d)}) == "no"
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the test lock was dropped
    os.close(fd)
    assert outside.group_locked({"memory": "/sys/fs/cgroup/memory"}) == "none"


# --- no process of the sandbox holds the caller's terminal --------------------------------------

def _on_terminal(argv, data=b"", timeout=30):
    """Run ``argv`` with a new terminal as its stdin, stdout and stderr (the "caller's"); (exit
    status, output, the terminal's device number)."""
    master, slave = os.openpty()
    rdev = os.fstat(slave).st_rdev
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, cwd="/")
    os.close(slave)
    if data:
        time.sleep(0.5)
        os.write(master, data)
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                chunk = b""
            out += chunk
            if not chunk and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    rc = proc.wait(timeout=max(1, end - time.monotonic()))
    os.close(master)
    return rc, out.decode(errors="replace"), rdev


DEVICES = ("import os\nfor p in ['/proc/1/fd/0', '/proc/1/fd/1', '/proc/1/fd/2', "
           "'/proc/self/fd/0', '/proc/self/fd/1', '/proc/self/fd/2']:\n"
           "    try:\n        print(p, os.stat(p).st_rdev)\n"
           "    except OSError as e:\n        print(p, 'errno', e.errno)\n")


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("tty", ["-t", "-T"])
def test_no_sandbox_process_holds_the_callers_terminal(profile, tty):
    """The caller's terminal is not reachable from inside: not through the workload's own
    streams (a pty, or pipes and /dev/null with -T) and not through pid 1's
    (/proc/1/fd/N; pid 1 is not dumpable).  Reaching it let a background workload read what
    the user typed, even with -T (by reopening its own stderr)."""
    rc, out, rdev = _on_terminal([SECRUN, tty, "-p", profile, "--", "python3", "-I", "-c",
                                  DEVICES])
    assert rc == 0, out
    seen = [line for line in out.splitlines() if line.startswith("/proc/")]
    assert len(seen) == 6, out
    assert not any(line.split()[-1] == str(rdev) for line in seen), (rdev, out)


@pytest.mark.parametrize("profile", PROFILES)
def test_pid_1_is_not_reachable_from_the_workload(profile, tmp_path):
    """The workload may not open pid 1's descriptors or memory (it shares pid 1's uid, and pid
    1 is its parent: without this it could clear pid 1's death signal or forge its records)."""
    code = ("import os\nfor p in ('/proc/1/fd/0', '/proc/1/mem'):\n    try:\n"
            "        open(p, 'rb').close()\n"
            "        print(p, 'open')\n    except OSError as e:\n        print(p, e.errno)\n")
    r = run_secrun("-p", profile, "--", "python3", "-I", "-c", code, cwd=tmp_path)
    assert r.rc == 0, r
    assert "open" not in r.out and r.out.count("/proc/1/") == 2, r


def test_relay_does_not_block_on_input_nobody_reads():
    """Input the workload never reads (300 KB piped into a pty, the workload only sleeps):
    secrun ends when the workload does."""
    t0 = time.monotonic()
    cp = subprocess.run(["sh", "-c", f"head -c 300000 /dev/zero | {SECRUN} -t -p strict -- "
                         "sh -c 'sleep 1'"], capture_output=True, timeout=60, cwd="/")
    assert cp.returncode == 0, cp
    assert time.monotonic() - t0 < 15


def test_relay_ends_when_the_workload_does_though_a_leftover_writes(write_profile):
    """Without a pid namespace a process the workload left behind may keep writing to the
    terminal: secrun still returns (the copying after the workload ended is bounded)."""
    prof = write_profile("""
        extends = ["default"]
        [namespaces]
        pid = false
        """)
    marker = f"leftover-{random.randrange(10**6)}"
    t0 = time.monotonic()
    try:
        cp = subprocess.run([SECRUN, "-t", "-p", prof, "--", "sh", "-c",
                             f"setsid sh -c 'while :; do echo x; sleep 0.01; done' {marker} & "
                             "sleep 0.3; exit 3"],
                            capture_output=True, timeout=60, cwd="/")
        assert cp.returncode == 3, cp
        assert time.monotonic() - t0 < 15
    finally:
        subprocess.run(["pkill", "-f", marker])


@pytest.mark.parametrize("how", ["ignored", "blocked"])
@pytest.mark.parametrize("profile", ["unconfined", "strict"])
def test_the_exit_status_survives_a_caller_that_ignores_or_blocks_sigchld(profile, how,
                                                                          tmp_path):
    """A caller with SIGCHLD ignored (the kernel then reaps children itself, and a wait finds
    nothing) or blocked: secrun still reports the workload's own status and signal."""
    def caller():
        if how == "ignored":
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        else:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})

    for script, rc in (("exit 7", 7), ("kill -SEGV $$", 128 + signal.SIGSEGV)):
        cp = subprocess.run([SECRUN, "-p", profile, "--", "sh", "-c", script],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, preexec_fn=caller)
        assert cp.returncode == rc, (script, cp)
    # on a terminal (the relay waits for SIGCHLD), without a pid namespace
    main, sub = os.openpty()
    try:
        cp = subprocess.run([SECRUN, "-p", profile, "--", "sh", "-c", "exit 5"],
                            stdin=sub, stdout=sub, stderr=sub, timeout=60, cwd=tmp_path,
                            preexec_fn=caller)
    finally:
        os.close(sub)
        os.close(main)
    assert cp.returncode == 5, cp
