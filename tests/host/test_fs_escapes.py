"""Regression tests for the filesystem view escapes of issue 12, each one the attack itself,
run against the real ``secrun`` on the real kernel and judged from inside the sandbox:

- item 3: the working directory re-exposing what the view hides or covers (a hide or a
  read-only bind below it, the host's /tmp, /proc, /run, /sys);
- item 4: the working directory swapped for a symlink while secrun starts
  (``renameat2(RENAME_EXCHANGE)`` in a loop, as in runc's CVE-2021-30465);
- item 7: the host's /sys (network interfaces, the host's cgroup tree) under ``net = "none"``.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from support import FS_PROBE, SECRUN, needs_root, run_secrun, write_file

# Workloads run under Debian's python3: the venv's interpreter lives under /root, which
# `nobody` cannot reach and strict hides.
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
USERS = [pytest.param(None, id="root", marks=needs_root), pytest.param("nobody", id="nobody")]
BUNDLED = ["strict", "default"]
SECRET = "secrun-escape-secret"

def probe(prof, *ops, user=None, cwd="/", rc=0):
    """Run the probe under ``prof`` from ``cwd``; returns (results, Result)."""
    r = run_secrun("--profile", prof, "--", PY, "-c", FS_PROBE, json.dumps([list(o) for o in ops]),
                   user=user, cwd=cwd)
    assert r.rc == rc, r
    return json.loads(r.out.strip().splitlines()[-1]), r


def cwd_warnings(r):
    """The lines of secrun's stderr about the working directory."""
    return [ln for ln in r.err.splitlines() if "working directory" in ln]


@pytest.fixture
def wdir():
    """A scratch directory under /var/tmp (strict covers /var/tmp with a tmpfs) that ``nobody``
    can read and write (pytest's tmp_path is root-only)."""
    d = tempfile.mkdtemp(prefix="secrun-esc-", dir="/var/tmp")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def profiles_dir():
    """Profiles live outside every directory a test starts from."""
    d = tempfile.mkdtemp(prefix="secrun-esc-prof-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def extending(d, base, body, name="p", user=None):
    """A profile extending ``base`` with ``body`` in its [filesystem] section.  Run as an
    ordinary user, strict's required cgroup limits are made best-effort (nobody has no
    writable cgroup tree here); nothing else changes."""
    extra = "[cgroups]\nrequired = false\n" if user is not None and base == "strict" else ""
    return write_file(d, name + ".toml", f'extends = ["{base}"]\n{extra}[filesystem]\n'
                      + textwrap.dedent(body))


def bundled(d, base, user):
    """``base`` itself, or for an ordinary user ``base`` with best-effort cgroup limits."""
    return base if user is None or base != "strict" else extending(d, base, "", "b", user)


def secret_dir(parent):
    s = os.path.join(parent, "secret")
    os.mkdir(s)
    os.chmod(s, 0o755)
    write_file(s, "key", SECRET)
    return s


# --- item 3: the working directory never undoes a hide, a read-only bind or a cover -------------

@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("base", BUNDLED)
def test_hide_below_the_working_directory_stays_hidden(wdir, profiles_dir, base, user):
    """`hide = [<cwd>/secret]` in a profile extending strict or default, started from <cwd>:
    the secret is not readable, by relative or absolute path."""
    secret = secret_dir(wdir)
    prof = extending(profiles_dir, base, f'hide = ["{secret}"]\n', user=user)
    (rel, absolute, listing, w), r = probe(
        prof, ("read", "secret/key"), ("read", f"{secret}/key"), ("list", secret),
        ("write", f"{secret}/new"), user=user, cwd=wdir)
    assert SECRET not in r.out, r
    assert rel == "ENOENT" and absolute == "ENOENT", r
    if base == "default":
        # the working directory is bound read-write; the hide below it is on top of it
        assert listing == [] and w == "EROFS", r
    else:
        # strict covers /var/tmp: the working directory is not shown at all
        assert listing == "ENOENT" and w == "ENOENT" and len(cwd_warnings(r)) == 1, r
    assert not os.path.exists(os.path.join(secret, "new"))


@pytest.mark.parametrize("user", USERS)
def test_read_only_bind_below_a_writable_working_directory_stays_read_only(
        wdir, profiles_dir, user):
    """default binds the working directory read-write; a read-only bind below it (here a
    directory bound onto itself, read-only by default) stays read-only."""
    ro = os.path.join(wdir, "ro")
    os.mkdir(ro)
    os.chmod(ro, 0o777)
    prof = extending(profiles_dir, "default", f'binds = ["{ro}"]\n')
    (top, below, below_abs), r = probe(
        prof, ("write", "top", "cwd"), ("write", "ro/new"), ("write", f"{ro}/new2"),
        user=user, cwd=wdir)
    assert top == "ok", r  # the working directory itself is writable (default)
    assert below == "EROFS" and below_abs == "EROFS", r
    assert os.listdir(ro) == []


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("base", BUNDLED)
def test_host_tmp_stays_covered_when_started_from_it(profiles_dir, base, user):
    """Started from the host's /tmp (or a directory below it): neither the host's /tmp listing,
    nor a host service's unix socket there, nor a write (default's writable working directory)
    reaches the host."""
    marker = tempfile.mkstemp(prefix="secrun-esc-marker-", dir="/tmp")[1]
    os.chmod(marker, 0o644)
    sub = tempfile.mkdtemp(prefix="secrun-esc-sub-", dir="/tmp")
    os.chmod(sub, 0o777)
    sock_path = f"/tmp/secrun-esc-{os.getpid()}.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    os.chmod(sock_path, 0o777)
    srv.listen(8)
    srv.settimeout(0.1)
    inside = f"secrun-esc-inside-{os.getpid()}"
    try:
        for start in ("/tmp", sub):
            (listing, conn, w, cwd), r = probe(
                bundled(profiles_dir, base, user), ("list", "/tmp"), ("connect", sock_path),
                ("write", inside), ("cwd", ""), user=user, cwd=start)
            assert os.path.basename(marker) not in listing, (start, r)
            assert os.path.basename(sock_path) not in listing, (start, r)
            assert conn in ("ENOENT", "ECONNREFUSED"), (start, r)
            assert not os.path.exists(os.path.join(start, inside)), (start, r)
            assert cwd == "/", (start, r)  # the covered working directory is not shown
            assert len(cwd_warnings(r)) == 1, (start, r)
            assert w in ("EROFS", "EACCES"), (start, r)  # "/" is read-only
    finally:
        srv.close()
        os.unlink(sock_path)
        os.unlink(marker)
        shutil.rmtree(sub, ignore_errors=True)


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("base", BUNDLED)
def test_host_proc_stays_covered_when_started_from_it(profiles_dir, base, user):
    """Started from /proc (or /proc/self's directory of the caller): the workload sees the
    fresh /proc of its own pid namespace, never the host's."""
    (pids, rel, cwd), r = probe(bundled(profiles_dir, base, user), ("pids", "/proc"),
                                ("pids", "."), ("cwd", ""), user=user, cwd="/proc")
    assert pids and max(pids) < 10, (pids, r)
    assert cwd == "/" and (rel == pids or rel == []), r
    assert len(cwd_warnings(r)) == 1, r


@needs_root
def test_host_run_stays_covered_when_started_from_it():
    """strict covers /run with an empty tmpfs (the host's service sockets): started from /run,
    the host's /run is not shown."""
    marker = tempfile.mkstemp(prefix="secrun-esc-marker-", dir="/run")[1]
    try:
        (listing, mine, cwd), r = probe("strict", ("list", "/run"), ("list", "."), ("cwd", ""),
                                        cwd="/run")
        assert listing == [] and os.path.basename(marker) not in mine and cwd == "/", r
        assert len(cwd_warnings(r)) == 1, r
    finally:
        os.unlink(marker)


@needs_root
def test_host_sysfs_never_bound_writable_as_the_working_directory():
    """default binds the working directory read-write: started from a directory of the host's
    /sys it must stay read-only (a root workload would change kernel settings)."""
    (ro, cwd), r = probe("default", ("ro", "."), ("ro", "/sys/kernel"), cwd="/sys/kernel")
    assert ro is True and cwd is True, r


@pytest.mark.parametrize("user", USERS)
def test_working_directory_below_a_hidden_home_is_not_shown(wdir, profiles_dir, user):
    """A hidden directory (strict hides /home; here a profile hides the parent of the working
    directory): the working directory is not bound back; the workload starts in / with one
    warning."""
    proj = os.path.join(wdir, "home", "proj")
    os.makedirs(proj)
    os.chmod(os.path.dirname(proj), 0o755)
    os.chmod(proj, 0o777)
    write_file(proj, "app.sh", "#!/bin/sh\necho app ran\n", mode=0o755)
    write_file(os.path.dirname(proj), "other", SECRET)
    prof = extending(profiles_dir, "default", f'hide = ["{os.path.dirname(proj)}"]\n')
    (cwd, app, other), r = probe(prof, ("cwd", ""), ("list", proj),
                                 ("read", os.path.join(os.path.dirname(proj), "other")),
                                 user=user, cwd=proj)
    assert cwd == "/" and app == "ENOENT" and other == "ENOENT", r
    assert SECRET not in r.out
    assert len(cwd_warnings(r)) == 1, r


# --- item 4: the working directory swapped for a symlink while secrun starts ---------------------

# Run as the unprivileged owner of the parent directory: swap the real working directory and
# a symlink to a root-owned directory, as fast as possible, until killed.
EXCHANGER = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
sys.stdout.write("go\n")
sys.stdout.flush()
while True:
    libc.renameat2(-100, a, -100, b, 2)  # AT_FDCWD, RENAME_EXCHANGE
'''
ATTACKER = 4242
RACE_SECONDS = 6.0


@needs_root
def test_working_directory_symlink_exchange_never_writes_outside():
    """An unprivileged user owning the parent of secrun's working directory exchanges it with
    a symlink to a root-owned directory in a loop while a root workload under default (which
    binds the working directory read-write) writes into `.`: nothing ever lands in the
    root-owned directory."""
    base = tempfile.mkdtemp(prefix="secrun-esc-race-", dir="/var/tmp")
    os.chmod(base, 0o755)
    parent, target = os.path.join(base, "u"), os.path.join(base, "target")
    real, link = os.path.join(parent, "w"), os.path.join(parent, "lnk")
    os.mkdir(target, 0o755)  # root's
    os.mkdir(parent, 0o755)
    os.mkdir(real, 0o777)
    os.symlink(target, link)
    for p in (parent, real, link):
        os.lchown(p, ATTACKER, ATTACKER)
    dirfd = os.open(real, os.O_RDONLY | os.O_DIRECTORY)
    exchanger = subprocess.Popen(
        ["setpriv", f"--reuid={ATTACKER}", f"--regid={ATTACKER}", "--clear-groups", "--",
         PY, "-c", EXCHANGER, real, link], stdout=subprocess.PIPE, text=True)
    runs = wrote = 0
    try:
        assert exchanger.stdout.readline() == "go\n"
        deadline = time.monotonic() + RACE_SECONDS
        while time.monotonic() < deadline:
            runs += 1
            # secrun starts in the real directory itself (fchdir: no path lookup that the
            # exchange could redirect), whatever name it has at that moment
            cp = subprocess.run([SECRUN, "--profile", "default", "--", "/bin/sh", "-c",
                                 f"echo pwned > ./pwned-{runs}"],
                                preexec_fn=lambda: os.fchdir(dirfd), capture_output=True,
                                text=True, timeout=60)
            assert cp.returncode in (0, 1, 2, 125), cp  # never a traceback
            assert os.listdir(target) == [], (runs, cp)
            wrote += cp.returncode == 0 and os.path.exists(os.path.join(f"/proc/self/fd/{dirfd}",
                                                                        f"pwned-{runs}"))
    finally:
        exchanger.kill()
        exchanger.wait()
        os.close(dirfd)
        leaked = os.listdir(target)
        shutil.rmtree(base, ignore_errors=True)
    assert leaked == [], f"{len(leaked)} of {runs} runs wrote into the root-owned directory"
    assert runs >= 10 and wrote >= 1, (runs, wrote)


# --- item 7: a fresh sysfs of the sandbox's own network namespace -------------------------------

@pytest.mark.parametrize("user", USERS)
def test_sys_shows_only_the_sandbox_network(profiles_dir, user):
    """strict (net = "none"): /sys/class/net lists only lo, /sys is a read-only sysfs, and the
    masks strict puts under /sys still apply to it."""
    ops = [("list", "/sys/class/net"), ("ro", "/sys"), ("fstype", "/sys"),
           ("ro", "/sys/kernel")]
    if os.path.isdir("/sys/firmware"):
        ops.append(("list", "/sys/firmware"))
    res, r = probe(bundled(profiles_dir, "strict", user), *ops, user=user)
    net, ro, (point, fstype, mode), w = res[:4]
    assert net == ["lo"], r
    assert ro is True and point == "/sys" and fstype == "sysfs" and mode == "ro", r
    assert w is True, r
    if len(res) > 4:
        assert res[4] == [], r  # /sys/firmware stays masked on the new sysfs


def _cgroup_mounts():
    """Host cgroup hierarchies mounted under /sys/fs/cgroup: [(mount point, fstype)]."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            a, b = line.split(" - ")
            point, fstype = a.split()[4], b.split()[0]
            if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup"):
                out.append((point, fstype))
    return out


@needs_root
def test_sys_fs_cgroup_shows_no_host_groups():
    """strict (net = "none", cgroup namespace): nothing of the host's cgroup tree is visible
    under /sys/fs/cgroup: a sentinel group made at the root of every host hierarchy is not
    seen, and what is seen is read-only."""
    sentinel = f"secrun-esc-sentinel-{os.getpid()}"
    made = []
    for point, _ in _cgroup_mounts():
        try:
            os.mkdir(os.path.join(point, sentinel))
            made.append(os.path.join(point, sentinel))
        except OSError:
            pass
    assert made, "no host cgroup hierarchy to plant a sentinel in"
    v1_memory = os.path.isdir("/sys/fs/cgroup/memory")
    limit = ("/sys/fs/cgroup/memory/memory.limit_in_bytes" if v1_memory
             else "/sys/fs/cgroup/memory.max")
    try:
        # started from a directory the view shows: the cgroup mounts are made after the
        # workload's working directory is set
        (tree, ro, mem, cwd), r = probe("strict", ("walk", "/sys/fs/cgroup"),
                                        ("ro", "/sys/fs/cgroup"), ("read", limit), ("cwd", ""),
                                        cwd="/usr")
        assert isinstance(tree, list) and cwd == "/usr", r
        assert not [p for p in tree if sentinel in p], r
        assert ro is True, r
        # what is shown is the sandbox's own group: strict's 1 GiB memory limit
        assert mem.strip() == str(1 << 30), r
    finally:
        for d in made:
            os.rmdir(d)
