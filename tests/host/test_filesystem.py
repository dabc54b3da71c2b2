"""The ``filesystem`` plugin on the real kernel: every assertion about the view is made from
inside a sandbox launched by the real ``secrun`` (a probe script reports errnos, directory
listings and mount flags), as root and, where it matters, as ``nobody`` through ``setpriv``
(rootless: a user namespace)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from support import FS_PROBE, REPO, SECRUN, needs_root, run_secrun, write_file

# Workloads run under Debian's python3: the venv's interpreter lives under /root, which
# `nobody` cannot reach, and which strict hides.
PY = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
NS = "[namespaces]\nmount = true\npid = true\n"
USERS = [pytest.param(None, id="root", marks=needs_root), pytest.param("nobody", id="nobody")]
MINIMAL_DEV = ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
               "stdout", "tty", "urandom", "zero"]

@pytest.fixture
def wdir():
    """A scratch directory ``nobody`` can read (pytest's tmp_path is root-only), outside /tmp
    (the sandbox gets a private /tmp, so the host's is not in the view)."""
    d = tempfile.mkdtemp(prefix="secrun-fs-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# Host paths a test tries to write through the sandbox; a regression could create them.
SENTINELS = ("/etc/secrun-fs-test", "/secrun-fs-test")


@pytest.fixture(autouse=True)
def _no_host_leftovers():
    """Remove a sentinel a failing test wrote on the host (the test itself reports it)."""
    before = {p for p in SENTINELS if os.path.lexists(p)}
    yield
    for p in SENTINELS:
        if p not in before and os.path.lexists(p):
            os.unlink(p)


write = write_file


def profile(d, body, name="p", ns=NS):
    return write(d, name + ".toml", ns + "[filesystem]\n" + textwrap.dedent(body))


def probe(d, prof, *ops, user=None, cwd="/", args=()):
    """Run the probe under ``prof``; returns (results, Result)."""
    r = run_secrun(*args, "--profile", prof, "--", PY, "-c", FS_PROBE,
                   json.dumps([list(o) for o in ops]), user=user, cwd=cwd)
    assert r.rc == 0, r
    return json.loads(r.out.strip().splitlines()[-1]), r


def mountinfo_host():
    with open("/proc/self/mountinfo") as f:
        return f.read()


# --- the host root, read-only ---------------------------------------------------------------------

@pytest.mark.parametrize("user", USERS)
def test_host_root_read_only_with_every_submount(wdir, user):
    prof = profile(wdir, "read_only = true\n")
    target = os.path.join(wdir, "written")
    (w_etc, w_wdir, ro_sys, mounts), _ = probe(
        wdir, prof, ("write", "/etc/secrun-fs-test"), ("write", target), ("ro", "/sys"),
        ("mountinfo", ""), user=user)
    assert w_etc == "EROFS" and w_wdir == "EROFS" and ro_sys is True
    assert not os.path.exists(target) and not os.path.exists("/etc/secrun-fs-test")
    # Recursive: every mount inherited from the host (all but the fresh /proc, /dev, /tmp
    # secrun made) is read-only, submounts included.
    fresh = ("/proc", "/dev", "/tmp")
    inherited = [m for m in mounts if not any(
        m["point"] == p or m["point"].startswith(p + "/") for p in fresh)]
    assert len(inherited) > 1
    assert all("ro" in m["opts"] and "nosuid" in m["opts"] for m in inherited), inherited


@needs_root
def test_read_only_reaches_a_submount_made_just_before(wdir):
    """A tmpfs mounted (in a throw-away mount namespace) right before launch is read-only in the
    view too: the recursive mount_setattr covers submounts it has never heard of."""
    sub = os.path.join(wdir, "sub")
    os.mkdir(sub)
    prof = profile(wdir, "read_only = true\n")
    ops = json.dumps([["write", os.path.join(sub, "x")], ["ro", sub]])
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
           'mount -t tmpfs t "$1" && touch "$1/before" && exec "$2" --profile "$3" -- '
           '"$4" -c "$5" "$6"', "sh", sub, os.path.join(os.path.dirname(sys.executable),
                                                       "secrun"),
           prof, PY, FS_PROBE, ops]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp
    assert json.loads(cp.stdout.strip().splitlines()[-1]) == ["EROFS", True]
    assert os.listdir(sub) == []  # the tmpfs never reached the host


@needs_root
def test_writable_root_when_read_only_is_false(wdir):
    prof = profile(wdir, "read_only = false\n")
    target = os.path.join(wdir, "written")
    (res,), _ = probe(wdir, prof, ("write", target, "hello"))
    assert res == "ok"
    with open(target) as f:
        assert f.read() == "hello"


# --- /tmp, /proc, /dev ----------------------------------------------------------------------------

@pytest.mark.parametrize("user", USERS)
def test_tmp_is_empty_and_private(wdir, user):
    marker = tempfile.mkstemp(prefix="secrun-fs-host-", dir="/tmp")[1]
    inside = f"/tmp/secrun-fs-inside-{os.getpid()}"
    try:
        prof = profile(wdir, "tmp = true\n")
        (listing, wrote, mode, mounts), _ = probe(
            wdir, prof, ("list", "/tmp"), ("write", inside), ("mode", "/tmp"),
            ("mountinfo", ""), user=user)
        assert listing == [] and wrote == "ok" and mode == "0o1777"
        tmp = [m for m in mounts if m["point"] == "/tmp"]
        assert tmp[-1]["fstype"] == "tmpfs" and {"nosuid", "nodev"} <= set(tmp[-1]["opts"])
        assert not os.path.exists(inside)
    finally:
        os.unlink(marker)


@pytest.mark.parametrize("user", USERS)
def test_fresh_proc_shows_only_the_sandbox(wdir, user):
    prof = profile(wdir, "proc = true\n")
    (pids, mounts), _ = probe(wdir, prof, ("pids", "/proc"), ("mountinfo", ""), user=user)
    assert pids and max(pids) < 10, pids  # the init, the workload: a new pid namespace's /proc
    proc = [m for m in mounts if m["point"] == "/proc"][-1]
    assert proc["fstype"] == "proc" and proc["source"] == "secrun"
    assert {"nosuid", "nodev", "noexec"} <= set(proc["opts"])


@pytest.mark.parametrize("user", USERS)
def test_minimal_dev(wdir, user):
    prof = profile(wdir, "dev = true\n")
    (listing, pts, null_w, zero_r, full_w, shm_w, ptmx, pts_after, mounts), _ = probe(
        wdir, prof, ("list", "/dev"), ("list", "/dev/pts"), ("write", "/dev/null"),
        ("read", "/dev/zero"), ("write", "/dev/full"), ("write", "/dev/shm/x"),
        ("ptmx", "/dev/ptmx"), ("list", "/dev/pts"), ("mountinfo", ""), user=user)
    assert listing == MINIMAL_DEV  # no disks, no /dev/mem, nothing of the host's hardware
    assert pts == ["ptmx"]  # a private devpts instance: none of the host's terminals
    assert null_w == "ok" and full_w == "ENOSPC" and shm_w == "ok" and zero_r == "\0" * 4096
    assert ptmx == 0 and "0" in pts_after  # the first pty of the private instance
    points = {m["point"]: m for m in mounts}
    assert points["/dev/pts"]["fstype"] == "devpts" and points["/dev/shm"]["fstype"] == "tmpfs"
    assert {"nosuid", "nodev", "noexec"} <= set(points["/dev"]["opts"])


# --- binds, tmpfs, hide, read-only paths, mount flags ------------------------------------------

@pytest.mark.parametrize("user", USERS)
def test_binds_read_write_and_read_only(wdir, user):
    rw, ro = os.path.join(wdir, "rw"), os.path.join(wdir, "ro")
    for d in (rw, ro):
        os.mkdir(d)
        os.chmod(d, 0o777)
        write(d, "f", "host\n")
    prof = profile(wdir, f"""
        binds = ["{rw}:/tmp/rw:rw", {{ src = "{ro}", dst = "/tmp/ro" }}, "{rw}"]
    """)
    (rw_w, rw_same, ro_w, ro_r), _ = probe(
        wdir, prof, ("write", "/tmp/rw/new", "from inside"), ("write", f"{rw}/same", "same"),
        ("write", "/tmp/ro/new"), ("read", "/tmp/ro/f"), user=user)
    assert rw_w == "ok" and ro_w == "EROFS" and ro_r == "host\n"
    with open(os.path.join(rw, "new")) as f:
        assert f.read() == "from inside"  # the write is visible on the host
    assert rw_same == "EROFS"  # "SRC" alone: at its own path, read-only by default
    assert not os.path.exists(os.path.join(ro, "new"))


@needs_root
def test_mount_flags_per_mount(wdir):
    src = os.path.join(wdir, "src")
    os.mkdir(src)
    write(src, "run.sh", "#!/bin/sh\nexit 7\n", mode=0o755)
    prof = profile(wdir, f"""
        binds = ["{src}:/tmp/exec:rw,exec", "{src}:/tmp/noexec:rw,noexec"]
        tmpfs = ["/tmp/t:size=1M,mode=700,noexec", {{ dst = "/tmp/u", options = ["exec"] }}]
    """)
    (ok, denied, mode, mounts), _ = probe(
        wdir, prof, ("exec", "/tmp/exec/run.sh"), ("exec", "/tmp/noexec/run.sh"),
        ("mode", "/tmp/t"), ("mountinfo", ""))
    assert ok == 7 and denied == "EACCES" and mode == "0o700"
    points = {m["point"]: m for m in mounts}
    assert {"nosuid", "nodev", "noexec"} <= set(points["/tmp/t"]["opts"])
    assert "noexec" not in points["/tmp/u"]["opts"]
    assert "noexec" not in points["/tmp/exec"]["opts"]
    assert {"nosuid", "nodev", "noexec"} <= set(points["/tmp/noexec"]["opts"])


@pytest.mark.parametrize("user", USERS)
def test_hidden_paths_are_empty(wdir, user):
    secret_dir = os.path.join(wdir, "secrets")
    os.mkdir(secret_dir)
    write(secret_dir, "key", "k")
    secret_file = write(wdir, "token", "t")
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    write(share, "f", "shared")
    prof = profile(wdir, f"""
        hide = ["{secret_dir}", "{secret_file}", "{wdir}/missing"]
        binds = ["{share}:{secret_dir}/share"]
    """)
    (listing, inner, key, token, w), _ = probe(
        wdir, prof, ("list", secret_dir), ("read", f"{secret_dir}/share/f"),
        ("read", f"{secret_dir}/key"), ("read", secret_file), ("write", f"{secret_dir}/x"),
        user=user)
    # Empty but for the bind placed inside it; the file reads as /dev/null; read-only.
    assert listing == ["share"] and inner == "shared"
    assert key == "ENOENT" and token == "" and w == "EROFS"


@pytest.mark.parametrize("user", USERS)
def test_hidden_paths_stay_apart(wdir, user):
    """Several hidden directories and files: each empty and read-only; the mount point of a
    bind placed inside one hidden directory shows in no other one (hidden directories with
    nothing inside share one read-only tmpfs, the one with a bind inside has its own)."""
    dirs = [os.path.join(wdir, n) for n in ("a", "b", "c")]
    for d in dirs:
        os.mkdir(d)
        write(d, "secret", "s")
    files = [write(wdir, n, n) for n in ("f1", "f2")]
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    write(share, "f", "shared")
    a, b, c = dirs
    prof = profile(wdir, f"""
        hide = {json.dumps(dirs + files)}
        binds = ["{share}:{b}/share"]
    """)
    ops = [("list", d) for d in dirs] + [("write", f"{d}/x") for d in dirs]
    ops += [("read", f) for f in files] + [("write", files[0], "overwritten"), ("mountinfo", "")]
    res, _ = probe(wdir, prof, *ops, user=user)
    lists, writes, reads, w_file, mounts = res[:3], res[3:6], res[6:8], res[8], res[9]
    assert lists == [[], ["share"], []]
    assert writes == ["EROFS"] * 3 and reads == ["", ""]
    # a hidden file is the host's /dev/null: a write goes nowhere
    assert w_file == "ok" and open(files[0]).read() == "f1"
    points = {m["point"]: m for m in mounts}
    for d in dirs:
        assert points[d]["fstype"] == "tmpfs" and "ro" in points[d]["opts"], points[d]
        assert {"nosuid", "nodev", "noexec"} <= set(points[d]["opts"])
    for f in files:
        assert "ro" in points[f]["opts"], points[f]
    assert "ro" in points[f"{b}/share"]["opts"]


@pytest.mark.parametrize("user", USERS)
def test_bind_through_a_symlink_into_a_hidden_directory(wdir, user):
    """A bind destination reaching a hidden directory through a symlink (inside the root) is
    placed in it like one named by its path."""
    hidden, other = os.path.join(wdir, "hidden"), os.path.join(wdir, "other")
    os.mkdir(hidden)
    os.mkdir(other)
    write(hidden, "secret", "s")
    os.symlink("hidden", os.path.join(wdir, "link"))
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    write(share, "f", "shared")
    prof = profile(wdir, f"""
        hide = ["{hidden}", "{other}"]
        binds = ["{share}:{wdir}/link/share"]
    """)
    (listing, inner, rest, w), _ = probe(
        wdir, prof, ("list", hidden), ("read", f"{wdir}/link/share/f"), ("list", other),
        ("write", f"{hidden}/x"), user=user)
    assert listing == ["share"] and inner == "shared" and rest == [] and w == "EROFS"


@needs_root
def test_read_only_paths(wdir):
    rodir, other = os.path.join(wdir, "rodir"), os.path.join(wdir, "other")
    os.mkdir(rodir)
    os.mkdir(other)
    prof = profile(wdir, f"""
        read_only = false
        read_only_paths = ["{rodir}", "/nonexistent/skipped"]
    """)
    (a, b), _ = probe(wdir, prof, ("write", f"{rodir}/x"), ("write", f"{other}/x"))
    assert a == "EROFS" and b == "ok"


@pytest.mark.parametrize("user", USERS)
def test_writable_cwd(wdir, user):
    proj = os.path.join(wdir, "proj")
    os.mkdir(proj)
    os.chmod(proj, 0o777)
    prof = profile(wdir, "writable_cwd = true\n")
    (cwd, w, etc), _ = probe(wdir, prof, ("cwd", ""), ("write", "out.txt", "built"),
                             ("write", "/etc/secrun-fs-test"), user=user, cwd=proj)
    assert cwd == proj and w == "ok" and etc == "EROFS"
    with open(os.path.join(proj, "out.txt")) as f:
        assert f.read() == "built"


@needs_root
def test_writable_cwd_never_opens_the_whole_root(wdir):
    prof = profile(wdir, "writable_cwd = true\n")
    (w,), r = probe(wdir, prof, ("write", "/secrun-fs-test"), cwd="/")
    assert w == "EROFS"
    assert "working directory is /" in r.err


# --- pivot_root into a given root ---------------------------------------------------------------

def busybox_root(wdir):
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox (Debian busybox-static, deps/apt.txt) is not installed")
    out = subprocess.run(["file", "-L", busybox], capture_output=True, text=True).stdout \
        if shutil.which("file") else "statically linked"
    assert "statically linked" in out or "static-pie" in out, out
    root = os.path.join(wdir, "root")
    for d in ("bin", "proc", "dev", "tmp", "data"):
        os.makedirs(os.path.join(root, d))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    write(root, "hello", "inside the root\n")
    return root


@pytest.mark.parametrize("user", USERS)
def test_pivot_root_into_a_busybox_root(wdir, user):
    root = busybox_root(wdir)
    write(wdir, "host-marker", "host")
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    os.chmod(share, 0o777)
    prof = profile(wdir, f"""
        root = "{root}"
        binds = ["{share}:/data:rw"]
    """)
    script = (f"busybox ls -a /; echo --; busybox ls -a /..; echo --; busybox cat /hello; "
              f"busybox cat /proc/self/mountinfo; echo --; busybox pwd; "
              f"busybox ls {wdir}/host-marker 2>&1; busybox touch /x 2>&1; "
              f"echo hi > /data/from-inside; echo done")
    r = run_secrun("--profile", prof, "--", "/bin/sh", "-c", script, user=user, cwd=wdir)
    assert r.rc == 0, r
    top, up, rest = r.out.split("--\n", 2)
    entries = set(top.split())
    assert entries == {".", "..", "bin", "proc", "dev", "tmp", "data", "hello"}
    assert set(up.split()) == entries  # / is its own parent: nothing above the new root
    assert "inside the root" in rest
    mount_points = [line.split(" - ")[0].split()[4] for line in rest.split("--\n")[0]
                    .splitlines() if " - " in line]
    # The old root is detached: no mount outside the view is left in the mount table.
    allowed = ("/", "/data", "/proc", "/dev", "/tmp")
    assert all(p in allowed or p.startswith("/dev/") for p in mount_points), mount_points
    tail = rest.split("--\n")[1]
    assert tail.splitlines()[0] == "/"  # secrun's working directory is not in the root
    assert "No such file or directory" in tail  # the host's files are unreachable
    assert "Read-only file system" in tail
    assert tail.rstrip().endswith("done")
    with open(os.path.join(share, "from-inside")) as f:
        assert f.read() == "hi\n"


@needs_root
def test_missing_mount_point_in_a_given_root_is_not_created(wdir):
    root = busybox_root(wdir)
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    prof = profile(wdir, f"""
        root = "{root}"
        binds = ["{share}:/srv/data"]
    """)
    r = run_secrun("--profile", prof, "--", "/bin/sh", "-c", "echo ran")
    assert r.rc == 125 and "ran" not in r.out
    assert "stage 'mounts' failed in plugin 'filesystem'" in r.err and "/srv/data" in r.err
    assert not os.path.exists(os.path.join(root, "srv"))


# --- destinations never lead out of the root ----------------------------------------------------

@needs_root
@pytest.mark.parametrize("link", ["/etc", "../../../../../../etc"])
def test_symlink_escape_on_a_bind_destination_is_refused(wdir, link):
    root = busybox_root(wdir)
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    write(share, "passwd", "not the host's\n")
    before = open("/etc/passwd").read()
    os.symlink(link, os.path.join(root, "evil"))
    prof = profile(wdir, f"""
        root = "{root}"
        binds = ["{share}/passwd:/evil/passwd:rw"]
    """)
    r = run_secrun("--profile", prof, "--", "/bin/sh", "-c", "echo ran")
    assert r.rc == 125 and "ran" not in r.out
    assert "[filesystem].binds" in r.err and "/evil/passwd" in r.err and "refused" in r.err
    assert open("/etc/passwd").read() == before


@needs_root
def test_symlink_planted_after_planning_is_refused_when_mounting(wdir):
    """The plan is cached; a symlink swapped in afterwards is caught by openat2 at mount time."""
    root = busybox_root(wdir)
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    write(share, "f", "shared\n")
    sub = os.path.join(root, "data", "sub")
    os.mkdir(sub)
    write(sub, "f", "")
    prof = profile(wdir, f"""
        root = "{root}"
        binds = ["{share}/f:/data/sub/f"]
    """)
    r = run_secrun("--profile", prof, "--", "/bin/busybox", "cat", "/data/sub/f")
    assert r.rc == 0 and r.out == "shared\n", r
    os.rename(sub, sub + ".real")
    os.symlink("/etc", sub)  # the root's directory mtime is not a plan dependency
    r = run_secrun("--profile", prof, "--", "/bin/busybox", "cat", "/data/sub/f")
    assert r.rc == 125, r
    assert "stage 'mounts' failed in plugin 'filesystem'" in r.err
    assert "/data/sub/f" in r.err and "refused" in r.err
    assert not os.path.exists("/etc/f")


@needs_root
def test_symlink_in_a_host_path_destination_is_refused(wdir):
    os.symlink("/etc", os.path.join(wdir, "link"))
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    prof = profile(wdir, f'binds = ["{share}:{wdir}/link/secrun-x"]\n')
    r = run_secrun("--profile", prof, "--", "true")
    assert r.rc == 125 and "[filesystem].binds" in r.err and "refused" in r.err, r


# --- bad input: exit 125 before anything runs ----------------------------------------------------

BAD = [
    ('binds = ["/nonexistent/secrun-src:/tmp/x"]', "binds", "/nonexistent/secrun-src"),
    ('binds = ["relative/src:/tmp/x"]', "binds", "relative/src"),
    ('binds = ["/etc:tmp/x"]', "binds", "tmp/x"),
    ('binds = ["/etc:/tmp/../../etc"]', "binds", "/tmp/../../etc"),
    ('binds = ["/etc:/tmp/x:rw,bogus"]', "binds", "bogus"),
    ('binds = [{ src = "/etc", into = "/x" }]', "binds", "into"),
    ('tmpfs = ["run"]', "tmpfs", "run"),
    ('tmpfs = ["/run:size"]', "tmpfs", "size"),
    ('hide = ["home"]', "hide", "home"),
    ('read_only_paths = ["/proc/../etc"]', "read_only_paths", "/proc/../etc"),
    ('root = "relative/root"', "root", "relative/root"),
    ('root = "/nonexistent/secrun-root"', "root", "/nonexistent/secrun-root"),
    ('root_options = ["ro"]', "root_options", "ro"),
]


@pytest.mark.parametrize("body,key,word", BAD, ids=[b[0] for b in BAD])
def test_bad_paths_exit_125_naming_key_and_path(wdir, body, key, word):
    prof = profile(wdir, body + "\n")
    before = mountinfo_host()
    r = run_secrun("--profile", prof, "--", "echo", "ran")
    assert r.rc == 125 and "ran" not in r.out, r
    line = r.err.strip()
    assert line.startswith("secrun: error: profile") and prof in line, r
    assert f"[filesystem].{key}" in line and word in line, r
    assert mountinfo_host() == before


def test_needs_a_mount_namespace(wdir):
    prof = profile(wdir, "tmp = true\n", ns="[namespaces]\nmount = false\n")
    r = run_secrun("--profile", prof, "--", "echo", "ran")
    assert r.rc == 125 and "ran" not in r.out
    assert "[filesystem]" in r.err and "[namespaces].mount = true" in r.err


@needs_root
def test_best_effort_failure_removes_the_staging_mount(wdir):
    """required = false and a mount that fails halfway: the launch goes on with a warning, in
    the starting directory, and the half-built view (attached on the host's /tmp, inside the
    sandbox's mount namespace) is gone."""
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    marker = tempfile.NamedTemporaryFile(dir="/tmp", prefix="secrun-fs-marker-")
    prof = profile(wdir, f"""
        required = false
        binds = ["{share}:/nonexistent-secrun-dir/x"]
    """)
    (seen, etc, cwd), r = probe(wdir, prof, ("exists", marker.name), ("exists", "/tmp/etc"),
                                ("cwd", ""), cwd=wdir)
    marker.close()
    assert seen is True and etc is False and cwd == wdir
    assert "best-effort control not applied at stage 'mounts'" in r.err
    assert "/nonexistent-secrun-dir/x" in r.err


# --- the launch path ------------------------------------------------------------------------------

def test_cached_launch_imports_no_planning_code(wdir):
    """With the plan cached, a launch loads the kernel-facing module (before fork: nothing may
    be imported once the view is entered) and never the planning module."""
    prof = profile(wdir, f'hide = ["{wdir}/h"]\nbinds = ["{wdir}:{wdir}/h/in"]\n')
    os.mkdir(os.path.join(wdir, "h"))
    assert run_secrun("--profile", prof, "--", "true").rc == 0  # plans and caches
    cmd = [sys.executable, "-X", "importtime", SECRUN, "-v", "--profile", prof, "--", "true"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    mods = [s.split("|")[-1].strip() if s.startswith("import time:") else "" for s in lines]
    mount_mod = [i for i, m in enumerate(mods) if m == "secrun.plugins.filesystem.mount"]
    fork = [i for i, s in enumerate(lines) if s.endswith(" fork")]
    assert mount_mod and fork and mount_mod[0] < fork[0], r.stderr
    for planning in ("plan", "view", "entries", "cgroupfs", "audit"):
        assert f"secrun.plugins.filesystem.{planning}" not in mods, r.stderr


# --- nothing left behind -------------------------------------------------------------------------

@needs_root
def test_nothing_left_mounted_after_100_runs(wdir):
    share = os.path.join(wdir, "share")
    os.mkdir(share)
    hidden = os.path.join(wdir, "hidden")
    os.mkdir(hidden)
    prof = profile(wdir, f"""
        writable_cwd = true
        binds = ["{share}:/tmp/share:rw", "{share}:/tmp/share-ro"]
        tmpfs = ["/tmp/t"]
        hide = ["{hidden}", "/etc/shadow"]
        read_only_paths = ["/proc/sys"]
    """)
    before = mountinfo_host()
    for _ in range(100):
        r = run_secrun("--profile", prof, "--", "true", cwd=wdir)
        assert r.rc == 0, r
    assert mountinfo_host() == before
    assert os.listdir(share) == [] and os.listdir(hidden) == []


# --- the bundled profiles -------------------------------------------------------------------------

@needs_root
def test_default_profile_root_read_only_but_working_directory(wdir):
    proj = os.path.join(wdir, "proj")
    os.mkdir(proj)
    r = run_secrun("--profile", "default", "--", PY, "-c", FS_PROBE, json.dumps(
        [["write", "out"], ["write", "/etc/secrun-fs-test"], ["list", "/tmp"],
         ["list", "/dev"]]), cwd=proj)
    assert r.rc == 0, r
    assert json.loads(r.out.splitlines()[-1]) == ["ok", "EROFS", [], MINIMAL_DEV]
    assert os.path.exists(os.path.join(proj, "out"))


@needs_root
def test_strict_profile_masks(wdir):
    import tomllib

    with open(os.path.join(REPO, "profiles", "strict.toml"), "rb") as f:
        fs = tomllib.load(f)["filesystem"]
    masked = [p for p in fs["hide"] if os.path.lexists(p)]
    assert "/proc/keys" in masked and "/sys/firmware" in masked and "/home" in masked
    ops = [["list" if os.path.isdir(p) else "read", p] for p in masked]
    ops += [["ro", p] for p in fs["read_only_paths"] if os.path.exists(p)]
    ops += [["list", "/tmp"], ["list", "/dev"], ["list", "/run"], ["write", "/etc/secrun-fs-test"],
            ["exists", "/proc/kcore"], ["mountinfo", ""]]
    r = run_secrun("--profile", "strict", "--", PY, "-c", FS_PROBE,
                   json.dumps(ops), cwd="/")
    assert r.rc == 0, r
    res = json.loads(r.out.splitlines()[-1])
    n = len(masked)
    for path, got in zip(masked, res[:n], strict=True):
        assert got in ([], ""), (path, got)  # empty directory or /dev/null
    ro = res[n:len(ops) - 6]
    assert ro and all(v is True for v in ro)  # /proc/sys and friends
    tmp, dev, run, etc, kcore, mounts = res[len(ops) - 6:]
    assert tmp == [] and dev == MINIMAL_DEV and run == [] and etc in ("EROFS", "EACCES")
    if not os.path.exists("/proc/kcore"):
        assert kcore is False  # not on this kernel; masked above where it exists
    sysfs = [m for m in mounts if m["point"] == "/proc/sys"]
    assert sysfs and "ro" in sysfs[-1]["opts"]
    root = [m for m in mounts if m["point"] == "/"][-1]
    assert {"ro", "nosuid", "nodev"} <= set(root["opts"])


# --- the audit's claims hold in the live sandbox ------------------------------------------------

def _live_rows(wdir, *args):
    r = run_secrun("audit", "--live", *args, "--format", "json", cwd=wdir)
    assert r.rc == 0, r
    return [c for c in json.loads(r.out)["controls"] if c.get("plugin") == "filesystem"]


@needs_root
@pytest.mark.parametrize("name", ["default", "strict"])
def test_audit_facts_hold_live_for_bundled_profiles(wdir, name):
    rows = _live_rows(wdir, "--profile", name)
    cats = {r["category"] for r in rows if r.get("category")}
    assert cats == {"filesystem.root", "filesystem.home", "filesystem.tmp", "filesystem.dev",
                    "filesystem.kernel"}
    checked = [c for r in rows for c in r.get("checks", [])]
    assert all(c["ok"] for c in checked), rows
    facts = {c["fact"]: c["observed"] for c in checked}
    assert {"fs.root_writable", "fs.home", "fs.tmp", "fs.dev", "fs.proc_sys"} <= set(facts)
    assert facts["fs.root_writable"] == "no" and facts["fs.proc_sys"] == "ro"
    assert facts["fs.home"] == ("hidden" if name == "strict" else "ro")
    # the mount on top at each covered, read-only and hidden path, and at the working directory
    assert facts["mount:/proc/sys"] == "/proc/sys proc ro" and facts["mount:/tmp"].startswith(
        "/tmp tmpfs")
    assert f"mount:{wdir}" in facts
    if name == "strict":
        assert facts["mount:/home"] == "/home tmpfs ro" and facts["fs.sys"] == "netns"
        assert facts[f"mount:{wdir}"].startswith("/var/tmp tmpfs")  # not bound back


@needs_root
def test_audit_facts_hold_live_for_a_loose_view(wdir):
    """The opposite claims (writable root, host /dev and /tmp, writable /proc/sys) are checked
    as well, so the facts are not constant."""
    prof = profile(wdir, "read_only = false\ndev = false\ntmp = false\nroot_options = []\n")
    rows = _live_rows(wdir, "--profile", prof)
    facts = {c["fact"]: (c["observed"], c["ok"]) for r in rows for c in r.get("checks", [])}
    summary = {k: v for k, v in facts.items() if not k.startswith("mount:")}
    assert summary == {"fs.root_writable": ("yes", True), "fs.home": ("rw", True),
                       "fs.tmp": ("host", True), "fs.dev": ("host", True),
                       "fs.proc_sys": ("rw", True), "fs.sys_cgroup": ("host", True)}, rows
    assert facts["mount:/proc"] == ("/proc proc rw", True), rows


@needs_root
def test_strict_does_not_show_a_covered_working_directory(wdir):
    """Run from a directory strict covers (here under /var/tmp, which strict replaces with an
    empty tmpfs), the working directory is not bound back (that would re-expose what the cover
    hides): the workload starts in /, with one warning, and nothing of the covered directory is
    in the view.  (Until issue 12 it was bound back read-only, visible_cwd; see
    tests/host/test_fs_escapes.py for the escapes that made it go.)"""
    sibling = tempfile.mkdtemp(prefix="secrun-fs-sibling-", dir="/var/tmp")
    try:
        write(wdir, "app.sh", "#!/bin/sh\necho app ran in $(pwd)\n", mode=0o755)
        r = run_secrun("--profile", "strict", "--", "./app.sh", cwd=wdir)
        assert r.rc == 127, r
        warned = [ln for ln in r.err.splitlines() if "working directory" in ln]
        assert len(warned) == 1 and wdir in warned[0] and "starts in /" in warned[0], r
        r = run_secrun("--profile", "strict", "--", "sh", "-c",
                       f"pwd; ls -A /var/tmp; ls {wdir} 2>&1", cwd=wdir)
        assert r.rc != 0 and r.out.splitlines()[0] == "/", r
        assert os.path.basename(sibling) not in r.out and "app.sh" not in r.out, r
    finally:
        shutil.rmtree(sibling, ignore_errors=True)


@needs_root
def test_a_home_directory_is_never_shown_as_the_working_directory():
    """Run from root's home (a hidden path and a home directory), strict still hides it."""
    home = os.path.expanduser("~root")
    r = run_secrun("--profile", "strict", "--", "sh", "-c", f"ls -A {home} | wc -l", cwd=home)
    assert r.rc == 0 and r.out.strip() == "0", r
