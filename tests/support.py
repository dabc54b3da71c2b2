"""Helpers shared by the test modules (``tests/`` is on pytest's pythonpath): launch the real
``secrun`` (the venv's console script) and check for tools.
"""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

BIN = os.path.dirname(sys.executable)
SECRUN = os.path.join(BIN, "secrun")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_CI = bool(os.environ.get("CI"))


def lsms() -> list[str]:
    try:
        with open("/sys/kernel/security/lsm") as f:
            return f.read().strip().split(",")
    except OSError:
        return []


class Result:
    def __init__(self, cp: subprocess.CompletedProcess):
        self.rc = cp.returncode
        self.out = cp.stdout
        self.err = cp.stderr
        self.args = cp.args

    def __repr__(self):
        return f"<secrun rc={self.rc}\n--- stdout\n{self.out}\n--- stderr\n{self.err}>"


_NOBODY_OK = None


def nobody_can_run_secrun() -> bool:
    """Whether an ordinary user can start this checkout's ``secrun`` at all: not when the
    checkout or its venv sits under a directory only root may enter (say, a 0700 home)."""
    global _NOBODY_OK
    if _NOBODY_OK is None:
        try:
            cp = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                 "--", SECRUN, "--version"], capture_output=True, timeout=60)
            _NOBODY_OK = cp.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _NOBODY_OK = False
    return _NOBODY_OK


NOBODY_SKIP = ("this checkout's secrun cannot be started by an ordinary user (its path or "
               "venv is not readable by nobody), so rootless runs cannot be tested here")


def run_secrun(*args, input=None, env=None, timeout=120, cwd=None, user=None) -> Result:
    """Run ``secrun ARGS...``; ``user`` (e.g. "nobody") runs it through ``setpriv`` as that
    user with no capabilities, as an ordinary user would."""
    cmd = [SECRUN, *map(str, args)]
    if user is not None and not nobody_can_run_secrun():
        pytest.skip(NOBODY_SKIP)
    if user is not None:
        import pwd

        pw = pwd.getpwnam(user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
               "--inh-caps=-all", "--bounding-set=-all", "--", *cmd]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    cp = subprocess.run(cmd, input=input, capture_output=True, text=True, env=full_env,
                        timeout=timeout, cwd=cwd)
    return Result(cp)


def need(*tools):
    """Skip unless every tool is on PATH.  The README's setup installs them all, so under CI a
    missing tool is a failure, not a skip."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing and IN_CI:
        return pytest.mark.usefixtures()  # run, and fail loudly where the tool is used
    return pytest.mark.skipif(bool(missing), reason=f"missing {', '.join(missing)}")


is_root = os.geteuid() == 0
needs_root = pytest.mark.skipif(not is_root, reason="needs root")


def write_file(d, name, text, mode=0o644):
    """Write dedented ``text`` to d/name with ``mode``; returns the path."""
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    os.chmod(path, mode)
    return path


# The filesystem probe (tests/host/test_filesystem.py, test_fs_escapes.py): run with
# `python3 -c FS_PROBE '[[op, path, arg], ...]'`, it prints one JSON list, a result per op (an
# errno name where the op failed).
FS_PROBE = r'''
import errno, json, os, sys

def run(op, path, arg):
    try:
        if op == "write":
            with open(path, "w") as f:
                f.write(arg or "x")
            return "ok"
        if op == "read":
            with open(path) as f:
                return f.read(4096)
        if op == "list":
            return sorted(os.listdir(path))
        if op == "ro":
            return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
        if op == "exists":
            return os.path.lexists(path)
        if op == "mkdir":
            os.mkdir(path)
            return "ok"
        if op == "exec":
            import subprocess
            return subprocess.run([path]).returncode  # an exec failure raises OSError here
        if op == "mode":
            return oct(os.stat(path).st_mode & 0o7777)
        if op == "cwd":
            return os.getcwd()
        if op == "mountinfo":
            rows = []
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    a, b = line.split(" - ")
                    a, b = a.split(), b.split()
                    rows.append({"root": a[3], "point": a[4], "opts": a[5].split(","),
                                 "fstype": b[0], "source": b[1]})
            return rows
        if op == "fstype":  # the mount a lookup of path ends on: [point, fstype, ro|rw]
            best = None
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    a, b = line.split(" - ")
                    point = a.split()[4]
                    if path == point or path.startswith(point.rstrip("/") + "/"):
                        if best is None or len(point) >= len(best[0]):
                            best = (point, b.split()[0], a.split()[5].split(",")[0])
            return list(best)
        if op == "walk":
            return sorted(os.path.join(d, n) for d, dirs, _ in os.walk(path) for n in dirs)
        if op == "pids":
            return sorted(int(p) for p in os.listdir(path) if p.isdigit())
        if op == "ptmx":
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
            import fcntl, struct
            TIOCGPTN = 0x80045430  # the pty number of a ptmx master
            return struct.unpack("I", fcntl.ioctl(fd, TIOCGPTN, b"\0\0\0\0"))[0]
        if op == "connect":
            import socket
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return "connected"
        raise SystemExit(f"unknown op {op}")
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

ops = json.loads(sys.argv[1])
print(json.dumps([run(*(op + [None] * (3 - len(op)))) for op in ops]))
'''
