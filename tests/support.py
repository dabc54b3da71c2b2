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
