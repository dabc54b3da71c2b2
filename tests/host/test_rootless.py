"""secrun run by an ordinary user (uid 4242, which has no passwd entry, and nobody, 65534),
through ``setpriv`` with no capabilities: the bundled profiles unchanged, from /, from a home
directory and from /tmp."""

import os
import shutil
import subprocess

import pytest

from support import SECRUN, needs_root, nobody_can_run_secrun

pytestmark = [needs_root, pytest.mark.oldkernel]  # also in the 6.1 guest (tests/guest)

UIDS = [4242, 65534]


@pytest.fixture(scope="module", autouse=True)
def _reachable():
    if not nobody_can_run_secrun():
        pytest.skip("this checkout's secrun cannot be started by an ordinary user")


def as_user(uid, *args, cwd="/", timeout=120):
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all", "--", SECRUN, *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME")}
    env["HOME"] = "/nonexistent"  # no cache of root's: each user plans for itself
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env)


@pytest.fixture(params=["/", "home", "/tmp"])
def where(request, tmp_path_factory):
    if request.param != "home":
        yield request.param
        return
    home = tmp_path_factory.mktemp("home")
    os.chmod(home, 0o755)
    os.chmod(os.path.dirname(home), 0o755)
    yield str(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("uid", UIDS)
def test_strict_maps_the_caller_to_its_identity(uid, where):
    """A single mapping (the caller's own uid and gid, seen inside as strict's 65534) needs
    no subordinate ids, so strict's [identity] works rootless."""
    r = as_user(uid, "-p", "strict", "--", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map",
                cwd=where)
    assert r.returncode == 0, r
    lines = r.stdout.split("\n")
    assert lines[0] == "65534" and lines[1] == "65534", r
    assert lines[2].split() == ["65534", str(uid), "1"], r


@pytest.mark.parametrize("uid", UIDS)
def test_default_runs_rootless(uid, where):
    r = as_user(uid, "-p", "default", "--", "sh", "-c", "id -u", cwd=where)
    assert r.returncode == 0, r
    assert r.stdout == f"{uid}\n", r


# --- strict's promises, rootless ---------------------------------------------------------------

ESCAPES = r"""
import errno, os, socket, sys
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "done"
    except MemoryError:
        out[name] = "MemoryError"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
host_dir, secret, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
attempt("write", lambda: open(os.path.join(host_dir, "escaped"), "w").write("x"))
attempt("secret", lambda: open(secret).read())
def connect():
    s = socket.socket()
    s.settimeout(3)
    s.connect(("127.0.0.1", port))
attempt("connect", connect)
out["pids"] = str(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
out["net"] = " ".join(sorted(os.listdir("/sys/class/net")))
kids = []
def bomb():
    for _ in range(400):
        pid = os.fork()
        if pid == 0:
            import time
            time.sleep(5)
            os._exit(0)
        kids.append(pid)
attempt("fork_bomb", bomb)
out["forked"] = str(len(kids))
attempt("memory", lambda: bytearray(2 << 30))
print(repr(out))
"""


@pytest.mark.parametrize("uid", UIDS)
def test_strict_rootless_keeps_its_promises(uid, tmp_path):
    """No host file written, no secret read, no host process seen, no network, a fork bomb
    and a memory hog contained (by the substitutes: an ordinary user has no writable cgroup
    tree here)."""
    import ast
    import socket

    host_dir = tmp_path / "writable-by-the-user"
    host_dir.mkdir()
    os.chown(host_dir, uid, uid)
    os.chmod(tmp_path, 0o755)
    home = tmp_path.parent / f"home-{uid}"
    home.mkdir(exist_ok=True)
    secret = home / "secret"
    secret.write_text("s3cret")
    os.chown(home, uid, uid)
    os.chown(secret, uid, uid)
    os.chmod(secret, 0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    host_sleep = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                   "--clear-groups", "sleep", "60"])
    try:
        r = as_user(uid, "-p", "strict", "--", "python3", "-c", ESCAPES, host_dir, secret,
                    listener.getsockname()[1], cwd="/")
    finally:
        host_sleep.kill()
        host_sleep.wait()
        listener.close()
    assert r.returncode == 0, r
    assert "substituted: pids_max 128 by RLIMIT_NPROC" in r.stderr, r.stderr
    out = ast.literal_eval(r.stdout.strip().splitlines()[-1])
    assert out["write"] in ("EROFS", "EACCES", "ENOENT"), out
    assert os.listdir(host_dir) == [], out
    assert out["secret"] in ("ENOENT", "EACCES"), out
    assert out["connect"] in ("ECONNREFUSED", "ENETUNREACH", "EACCES"), out  # (EACCES: Landlock)
    assert out["net"] == "lo", out
    pids = ast.literal_eval(out["pids"])
    assert host_sleep.pid not in pids or len(pids) <= 3, out
    assert len(pids) <= 3, out  # pid 1 (secrun's init) and the workload (+ a transient one)
    assert out["fork_bomb"] == "EAGAIN" and int(out["forked"]) < 128, out
    assert out["memory"] == "MemoryError", out


@pytest.mark.parametrize("uid", UIDS)
def test_the_views_tmpfs_mounts_are_capped_when_memory_is_substituted(uid):
    """Without a memory cgroup, files in a tmpfs would be unbounded host memory: every tmpfs
    of the view, /dev/shm included, gets size = memory_max (64M here, so that the test fits
    the guest's memory too)."""
    r = as_user(uid, "-p", "strict", "--set", "cgroups.memory_max=64M", "--", "sh", "-c",
                "head -c 70M /dev/zero > /dev/shm/f; echo $?; rm -f /dev/shm/f; "
                "df -k /tmp /dev/shm /run /var/tmp | tail -n 4")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == "1", r  # No space left on device
    sizes = [int(line.split()[1]) for line in lines[1:]]
    assert sizes == [64 << 10] * 4, r  # 64 MiB in KiB, each


@pytest.mark.parametrize("uid", UIDS)
def test_rootless_audit_shows_the_substitutes_and_live_agrees(uid, tmp_path):
    import json

    r = as_user(uid, "audit", "--live", "-p", "strict", "--format", "json", cwd="/")
    assert r.returncode in (0, 1), r
    rep = json.loads(r.stdout)
    assert rep["mismatches"] == [], rep["mismatches"]
    rows = {c["control"]: c for c in rep["controls"] if c["plugin"] == "cgroups"}
    assert rows["cgroup pids limit"]["status"] == "substituted", rows
    assert rows["cgroup pids limit"]["value"].startswith("128: RLIMIT_NPROC"), rows
    assert rows["cgroup memory limit"]["status"] == "substituted", rows
    assert rows["cgroup pids limit"]["verified"] is True, rows
    assert rows["cgroup CPU quota"]["status"] == "not-available", rows
    cats = {c["id"]: c for c in rep["categories"]}
    assert cats["cgroups.pids"]["effective"] == 0.3, cats["cgroups.pids"]
    assert cats["cgroups.memory"]["effective"] == 0.7, cats["cgroups.memory"]
    assert "swap_max not applied" in rows["cgroup memory limit"]["detail"], rows


def test_required_without_substitutes_refuses_rootless():
    """substitutes = false with required = true: an ordinary user without a writable cgroup
    tree is refused, as before the substitutes existed."""
    import tempfile

    d = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(d, 0o755)
        prof = os.path.join(d, "p.toml")
        with open(prof, "w") as f:
            f.write('extends = ["strict"]\n[cgroups]\nsubstitutes = false\n')
        os.chmod(prof, 0o644)
        r = as_user(4242, "-p", prof, "--", "true")
    finally:
        shutil.rmtree(d)
    assert r.returncode == 125, r
    assert "stage 'prepare' failed in plugin 'cgroups'" in r.stderr, r


def test_the_callers_supplementary_groups_are_said_to_stay():
    """An ordinary user cannot drop its supplementary groups in a user namespace
    (setgroups=deny: the kernel keeps them for group-based denials): the launch says so, and
    the audit lists them as not available instead of claiming groups = []."""
    import json

    cmd = ["setpriv", "--reuid=4242", "--regid=4242", "--groups=42", "--inh-caps=-all",
           "--bounding-set=-all", "--", SECRUN]
    env = dict(os.environ, HOME="/nonexistent")
    r = subprocess.run([*cmd, "-p", "strict", "--", "true"], capture_output=True, text=True,
                       cwd="/", env=env, timeout=120)
    assert r.returncode == 0, r
    assert "identity: the caller's supplementary groups 42 stay" in r.stderr, r.stderr
    a = subprocess.run([*cmd, "audit", "-p", "strict", "--format", "json"],
                       capture_output=True, text=True, cwd="/", env=env, timeout=120)
    rows = {c["control"]: c for c in json.loads(a.stdout)["controls"]
            if c["plugin"] == "identity"}
    assert rows["caller's groups"]["status"] == "not-available", rows
    assert "kept: 42" in rows["caller's groups"]["value"], rows


@pytest.fixture
def subids():
    """nobody gets ranges in /etc/subuid and /etc/subgid (restored after), as an
    administrator gives a user for rootless containers."""
    saved = {}
    if not os.access("/etc", os.W_OK):
        pytest.skip("/etc is read-only here (the guest's host root)")
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                saved[path] = f.read()
        except FileNotFoundError:
            saved[path] = None
        with open(path, "a") as f:
            f.write("nobody:300000:65536\n")
    yield 300000
    for path, text in saved.items():
        if text is None:
            os.unlink(path)
        else:
            with open(path, "w") as f:
                f.write(text)


@pytest.mark.skipif(shutil.which("newuidmap") is None, reason="no newuidmap (Debian uidmap)")
def test_strict_maps_into_the_callers_subordinate_ids(subids):
    """A user with /etc/subuid and /etc/subgid ranges: newuidmap/newgidmap map the workload's
    65534 into them (host uid 300000 + 65533: not the caller), setgroups stays allowed, so
    the caller's supplementary groups go (a group-readable file stays unreadable)."""
    import json

    secret = "/etc/secrun-test-group-secret"
    with open(secret, "w") as f:
        f.write("s3cret")
    os.chown(secret, 0, 42)
    os.chmod(secret, 0o640)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--groups=42", "--", SECRUN]
    env = dict(os.environ, HOME="/nonexistent")
    try:
        r = subprocess.run([*cmd, "-p", "strict", "--", "sh", "-c",
                            f"id -u; cat /proc/self/uid_map; cat /proc/self/setgroups; "
                            f"cat {secret}"], capture_output=True, text=True, cwd="/",
                           env=env, timeout=120)
        a = subprocess.run([*cmd, "audit", "-p", "strict", "--format", "json"],
                           capture_output=True, text=True, cwd="/", env=env, timeout=120)
    finally:
        os.unlink(secret)
    lines = r.stdout.split("\n")
    assert lines[0] == "65534", r
    assert lines[1].split() == ["0", "65534", "1"], r
    assert lines[2].split() == ["1", str(subids), "65536"], r
    assert lines[3] == "allow", r
    assert "s3cret" not in r.stdout and "Permission denied" in r.stderr, r
    assert "supplementary groups" not in r.stderr, r.stderr
    rows = {c["control"]: c for c in json.loads(a.stdout)["controls"]}
    user = rows["namespace user"]["value"]
    assert f"host uid {subids + 65533}, not the caller" in user, user
    assert "caller's groups" not in rows, rows


def test_the_audit_says_which_mounts_are_covered_instead_of_detached():
    """Rootless, the host's /proc, /dev and /sys copies are locked in the user namespace:
    the view covers them instead of detaching them, and the audit says so (root's does not)."""
    import json

    r = as_user(4242, "audit", "-p", "strict", "--format", "json")
    rows = {c["control"]: c for c in json.loads(r.stdout)["controls"]
            if c["plugin"] == "filesystem"}
    for control, path in (("fresh /proc", "/proc"), ("minimal /dev", "/dev"), ("/sys", "/sys")):
        assert f"the host's {path} stays beneath, covered" in rows[control]["detail"], rows
    root = subprocess.run([SECRUN, "audit", "-p", "strict", "--format", "json"],
                          capture_output=True, text=True, cwd="/", timeout=120)
    rows = {c["control"]: c for c in json.loads(root.stdout)["controls"]
            if c["plugin"] == "filesystem"}
    assert "covered" not in rows["fresh /proc"]["detail"], rows
