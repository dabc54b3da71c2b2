"""The ``landlock`` plugin, on the real kernel (Landlock ABI 7 here; TCP rules need ABI 4):
every check launches ``secrun`` with a ``default``-based profile and looks from inside the
sandbox (the errno a write, an exec, a TCP bind or connect gets), or runs ``secrun audit`` on
it.  Every denial is paired with the same operation allowed (by the rules, or with the section
off), so a pass cannot come from the filesystem view or the permission bits refusing it."""

import json
import os
import shutil
import socket
import tempfile

import pytest

from support import is_root, needs_root, run_secrun

PY = "/usr/bin/python3"  # the system interpreter: visible under every profile

# Inside the sandbox: each argument is OP:PATH-or-PORT; prints {arg: "ok" | errno name}.
PROBE = r"""
import errno, json, os, shutil, socket, subprocess, sys
out = {}
for arg in sys.argv[1:]:
    op, _, where = arg.partition(":")
    try:
        if op == "write":
            with open(where, "w") as f:
                f.write("x")
        elif op == "read":
            with open(where) as f:
                f.read()
        elif op == "exec":  # /bin/true copied to WHERE (the copy is a write), then run
            shutil.copy("/bin/true", where)
            os.chmod(where, 0o755)
            subprocess.run([where], check=True)
        elif op in ("connect", "bind"):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            if op == "connect":
                s.connect(("127.0.0.1", int(where)))
            else:
                s.bind(("127.0.0.1", int(where)))
            s.close()
        out[arg] = "ok"
    except OSError as e:
        out[arg] = errno.errorcode.get(e.errno, str(e))
print(json.dumps(out))
"""


def kernel_abi():
    from secrun.plugins.landlock.plan import kernel_abi as abi

    return abi()


pytestmark = pytest.mark.skipif(kernel_abi() < 1, reason="this kernel offers no Landlock")
needs_net = pytest.mark.skipif(kernel_abi() < 4, reason="needs Landlock ABI 4 (TCP rules)")


def landlock_profile(write_profile, body, extends="default", name="p", more=""):
    """A profile with ``[landlock] body``: without ``mirror`` in it, mirror = false, so the
    write rules are exactly the ones listed (test_mirror... covers mirror = true)."""
    if "mirror" not in body and "bogus" not in body:
        body += "\nmirror = false"
    return write_profile(f'extends = ["{extends}"]\n{more}\n[landlock]\n{body}\n', name)


def probe(prof, *ops, user=None, rc=0):
    r = run_secrun("--profile", prof, "--", PY, "-c", PROBE, *ops, cwd="/", user=user)
    assert r.rc == rc, r
    return json.loads(r.out.strip().splitlines()[-1]) if rc == 0 else r


@pytest.fixture
def wdir():
    """A scratch directory ``nobody`` can read (pytest's tmp_path is root-only), outside /tmp
    (the sandbox gets a private /tmp): the profiles, and a directory bound read-write."""
    d = tempfile.mkdtemp(prefix="secrun-landlock-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def rw_dir(wdir):
    """A host directory the profile binds read-write at its own path."""
    d = os.path.join(wdir, "rw")
    os.mkdir(d)
    os.chmod(d, 0o777)
    with open(os.path.join(d, "existing"), "w") as f:
        f.write("readable\n")
    return d


def bind(rw_dir):
    return f'[filesystem]\nbinds = ["{rw_dir}:{rw_dir}:rw"]\n'


def in_wdir(wdir, text, name="p"):
    path = os.path.join(wdir, f"{name}.toml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


# --- the filesystem rules -------------------------------------------------------------------------

@needs_root
def test_writes_only_beneath_write(write_profile, rw_dir):
    f, existing = os.path.join(rw_dir, "f"), os.path.join(rw_dir, "existing")
    ops = ("write:/tmp/f", f"write:{f}", "write:/dev/shm/f", f"read:{existing}",
           "read:/etc/hostname")
    on = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\nwrite = ["/tmp"]',
                          more=bind(rw_dir), name="on")
    assert probe(on, *ops) == {"write:/tmp/f": "ok", f"write:{f}": "EACCES",
                               "write:/dev/shm/f": "EACCES", f"read:{existing}": "ok",
                               "read:/etc/hostname": "ok"}
    assert not os.path.exists(f)
    # the same profile with the section off: the bind and /dev/shm are writable
    off = landlock_profile(write_profile, 'enabled = false\nread = ["/"]\nwrite = ["/tmp"]',
                           more=bind(rw_dir), name="off")
    assert set(probe(off, *ops).values()) == {"ok"}
    with open(f) as fh:
        assert fh.read() == "x"
    # listed in write: allowed
    wider = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\n'
                             f'write = ["/tmp", "/dev/shm", "{rw_dir}"]', more=bind(rw_dir),
                             name="wider")
    assert set(probe(wider, *ops).values()) == {"ok"}


@pytest.mark.parametrize("user", [None, "nobody"])
def test_rootless_and_cached_launches_are_restricted_too(wdir, user):
    """Unprivileged (no_new_privs from [process]), and from the plan cache (the second launch
    imports only the stage module)."""
    if user is None and not is_root:
        pytest.skip("needs root")
    prof = in_wdir(wdir, 'extends = ["default"]\n[landlock]\nenabled = true\n'
                   'read = ["/"]\nwrite = ["/tmp"]\nmirror = false\n')
    for _ in range(2):
        assert probe(prof, "write:/tmp/f", "write:/dev/shm/f", user=user) == {
            "write:/tmp/f": "ok", "write:/dev/shm/f": "EACCES"}


@needs_root
def test_mirror_follows_the_filesystem_view(write_profile, rw_dir):
    """mirror = true (the default, and strict's): wherever the view lets the workload write
    is allowed without a [landlock] entry (a read-write bind a profile adds, /dev/shm), and
    nothing else is; strict itself restricts writes to its view's writable places."""
    f = os.path.join(rw_dir, "f")
    ops = ("write:/tmp/f", f"write:{f}", "write:/dev/shm/f", "write:/etc/secrun-x")
    prof = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\nmirror = true',
                            more=bind(rw_dir), name="mirror")
    got = probe(prof, *ops)
    assert {k: got[k] for k in ops[:3]} == dict.fromkeys(ops[:3], "ok"), got
    assert got["write:/etc/secrun-x"] in ("EROFS", "EACCES"), got
    off = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\nmirror = false',
                           more=bind(rw_dir), name="nomirror")
    got = probe(off, *ops)
    assert got[f"write:{f}"] == "EACCES" and got["write:/dev/shm/f"] == "EACCES", got
    # strict with a read-write bind added: the bind works, Landlock is on (the audit says so)
    strict = write_profile(f'extends = ["strict"]\n{bind(rw_dir)}', "strict-bind")
    f2 = os.path.join(rw_dir, "by-nobody")  # (f is root's now: strict runs as 65534)
    got = probe(strict, f"write:{f2}", "write:/dev/shm/f")
    assert set(got.values()) == {"ok"}, got
    rows = landlock_rows(audit_json("--profile", strict))
    assert rows["Landlock filesystem"]["status"] == "best-effort", rows
    assert rw_dir in rows["Landlock filesystem"]["value"], rows


@needs_root
def test_write_does_not_allow_execute(write_profile):
    """write grants everything but execute; a path also listed in read (or beneath a read
    path: rights are inherited down the tree) is executable."""
    read = '["/usr", "/etc", "/proc", "/dev"'
    wx = landlock_profile(write_profile, f'enabled = true\nread = {read}]\nwrite = ["/tmp"]')
    assert probe(wx, "exec:/tmp/true") == {"exec:/tmp/true": "EACCES"}
    rwx = landlock_profile(write_profile,
                           f'enabled = true\nread = {read}, "/tmp"]\nwrite = ["/tmp"]',
                           name="rwx")
    assert probe(rwx, "exec:/tmp/true") == {"exec:/tmp/true": "ok"}


@needs_root
def test_a_file_rule_and_a_missing_path(write_profile):
    """A rule on a file (/dev/null) gets the file rights only; a path the view does not have
    gets no rule, with one warning, and the launch goes on."""
    prof = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\n'
                            'write = ["/dev/null", "/no/such/dir", "/tmp"]')
    r = run_secrun("--profile", prof, "--", PY, "-c", PROBE, "write:/dev/null",
                   "write:/dev/zero", cwd="/")
    assert r.rc == 0, r
    assert json.loads(r.out) == {"write:/dev/null": "ok", "write:/dev/zero": "EACCES"}
    warnings = [line for line in r.err.splitlines() if "landlock" in line]
    assert warnings == ["secrun: warning: landlock: no rule for paths the sandbox's view does "
                        "not show: /no/such/dir (No such file or directory)"], r.err


# --- TCP ------------------------------------------------------------------------------------------

@pytest.fixture
def listener():
    """A TCP server on the host's 127.0.0.1 (the default profile keeps the host network)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@needs_net
@needs_root
def test_tcp_connect_and_bind_only_to_listed_ports(write_profile, listener):
    ops = (f"connect:{listener}", "bind:0")
    base = 'enabled = true\nread = ["/"]\nwrite = ["/tmp"]\n'
    # net not handled: TCP is not restricted
    assert set(probe(landlock_profile(write_profile, base, name="nonet"), *ops).values()) \
        == {"ok"}
    denied = landlock_profile(write_profile, base + "net = true\ntcp_connect = []\n",
                              name="denied")
    assert probe(denied, *ops) == {f"connect:{listener}": "EACCES", "bind:0": "EACCES"}
    allowed = landlock_profile(write_profile, base + f"net = true\ntcp_connect = [{listener}]\n"
                               "tcp_bind = [0]\n", name="allowed")
    assert probe(allowed, *ops) == {f"connect:{listener}": "ok", "bind:0": "ok"}


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, key, words", [
    ("enabled = true\nbogus = 1", "[landlock].bogus", "unknown key"),
    ("enabled = true\nnet = true\ntcp_bind = [70000]", "[landlock].tcp_bind",
     "70000 is not a TCP port (0-65535)"),
    ("enabled = true\nnet = true\ntcp_connect = [-1]", "[landlock].tcp_connect",
     "-1 is not a TCP port"),
    ('enabled = true\nread = ["usr/lib"]', "[landlock].read", "'usr/lib' is a relative path"),
    ('enabled = true\nwrite = ["/tmp/../etc"]', "[landlock].write", "'..'"),
    ("enabled = true\ntcp_connect = [443]", "[landlock].tcp_connect", "net = false"),
    ('enabled = "yes"', "[landlock].enabled", ""),
])
def test_bad_values_are_one_line_naming_file_and_key(write_profile, body, key, words):
    prof = landlock_profile(write_profile, body)
    r = run_secrun("--profile", prof, "--", "/bin/true", cwd="/")
    assert r.rc == 125, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secrun: error:"), r.err
    assert prof in lines[0] and key in lines[0] and words in lines[0], lines[0]
    check = run_secrun("profiles", "check", prof, cwd="/")
    assert check.rc == 125 and key in check.err, check


@needs_root
def test_without_no_new_privs_required_fails_and_best_effort_runs(write_profile):
    """Root without CAP_SYS_ADMIN and without no_new_privs cannot restrict itself (EPERM)."""
    more = "[process]\nno_new_privs = false\n[capabilities]\nkeep = []\n"
    body = 'enabled = true\nread = ["/"]\n'
    req = landlock_profile(write_profile, body, extends="unconfined", more=more, name="req")
    r = run_secrun("--profile", req, "--", "/bin/echo", "ran", cwd="/")
    assert r.rc == 125 and "ran" not in r.out, r
    assert ("secrun: error: stage 'landlock' failed in plugin 'landlock': "
            "landlock_restrict_self: Operation not permitted (EPERM): restricting a process "
            "with Landlock needs no_new_privs") in r.err, r.err
    best = landlock_profile(write_profile, body + "required = false", extends="unconfined",
                            more=more, name="best")
    r = run_secrun("--profile", best, "--", "/bin/echo", "ran", cwd="/")
    assert r.rc == 0 and r.out == "ran\n", r
    assert "secrun: warning: landlock: best-effort control not applied at stage 'landlock'" \
        in r.err, r.err


# --- audit ----------------------------------------------------------------------------------------

def audit_json(*args, rc=0):
    r = run_secrun("audit", "--format", "json", *args, cwd="/")
    assert r.rc == rc, r
    return json.loads(r.out)


def landlock_rows(rep):
    return {r["control"]: r for r in rep["controls"] if r["plugin"] == "landlock"}


@needs_net
def test_planned_audit_shows_the_abi_and_the_rules(write_profile):
    abi = kernel_abi()
    prof = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\n'
                            'write = ["/tmp", "/dev/shm"]\nnet = true\ntcp_connect = [443]')
    rows = landlock_rows(audit_json("--profile", prof))
    fs, tcp = rows["Landlock filesystem"], rows["Landlock TCP"]
    assert fs["status"] == "enforced" and fs["category"] is None
    assert fs["value"] == f"ABI {abi}: read /; write /tmp, /dev/shm"
    assert fs["origin"] == f"{prof} [landlock].write"
    assert fs["expect"] == {"landlock.abi": str(abi),
                            "landlock.write:/tmp": "allowed|untestable",
                            "landlock.write:/var/tmp": "denied|untestable",
                            "landlock.write:/dev/shm": "allowed|untestable"}
    assert tcp["status"] == "enforced" and tcp["value"] == "bind none; connect 443"
    assert tcp["expect"] == {"landlock.bind_tcp": "denied|untestable",
                             "landlock.connect_tcp": "denied|untestable"}
    text = run_secrun("audit", "--profile", prof, cwd="/")
    assert text.rc == 0 and f"Landlock filesystem      enforced        0.00  ABI {abi}: read /" \
        in text.out, text
    # off, and best-effort
    off = landlock_profile(write_profile, 'read = ["/"]', name="off")
    assert [(r["status"], r["value"]) for r in landlock_rows(audit_json("--profile", off))
            .values()] == [("not-configured", "off")]
    best = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\nrequired = false',
                            name="best")
    assert landlock_rows(audit_json("--profile", best))["Landlock filesystem"]["status"] \
        == "best-effort"


@needs_net
@needs_root
def test_live_audit_verifies_the_rows(write_profile):
    prof = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\nwrite = ["/tmp"]\n'
                            "net = true")
    rep = audit_json("--live", "--profile", prof)
    assert rep["mismatches"] == [], rep["mismatches"]
    rows = landlock_rows(rep)
    assert rows["Landlock filesystem"]["verified"] is True
    assert rows["Landlock TCP"]["verified"] is True
    f = rep["facts"]
    assert f["landlock.abi"] == str(kernel_abi())
    assert f["landlock.write:/tmp"] == "allowed" and f["landlock.write:/dev/shm"] == "denied"
    assert f["landlock.bind_tcp"] == "denied" and f["landlock.connect_tcp"] == "denied"
    # the probe without the section: nothing denied (so the denials above are Landlock's)
    plain = audit_json("--live", "--profile", "default")["facts"]
    assert plain["landlock.write:/dev/shm"] == "allowed"
    assert plain["landlock.bind_tcp"] == "allowed" and plain["landlock.connect_tcp"] == "allowed"
    assert "landlock" not in {r["plugin"] for r in
                              audit_json("--profile", "default")["controls"]}


@needs_root
def test_live_expectations_fail_on_an_unrestricted_sandbox(write_profile):
    """The row's expectations are not vacuous: against the facts of a sandbox without the
    ruleset (default), the planned /dev/shm expectation does not hold."""
    from secrun.audit.live import same

    prof = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\nwrite = ["/tmp"]')
    want = landlock_rows(audit_json("--profile", prof))["Landlock filesystem"]["expect"]
    facts = audit_json("--live", "--profile", "default")["facts"]
    assert want["landlock.write:/dev/shm"] == "denied|untestable"
    assert not same("landlock.write:/dev/shm", want["landlock.write:/dev/shm"],
                    facts["landlock.write:/dev/shm"])


@needs_net
def test_plan_is_plain_data(write_profile):
    import marshal

    from secrun import plan

    prof = landlock_profile(write_profile, 'enabled = true\nread = ["/"]\nwrite = ["/tmp"]\n'
                            "net = true\ntcp_bind = [0, 8080, 0]")
    p = plan.build([prof])
    assert marshal.loads(marshal.dumps(p)) == p
    ll = p["plan"]["landlock"]
    assert ll["abi"] == kernel_abi() and ll["net"] == 3 and ll["tcp_bind"] == [0, 8080]
    if kernel_abi() >= 5:
        assert ll["fs"] == (1 << 16) - 1  # every right up to IOCTL_DEV
    assert [(r["path"], r["keys"]) for r in ll["paths"]] == [("/", ["read"]),
                                                             ("/tmp", ["write"])]
    assert ll["paths"][1]["access"] == ll["fs"] & ~1  # write: everything but execute


def test_rule_paths_are_not_opened_at_planning(write_profile, tmp_path):
    """Planning reads the ABI only: rule paths are paths in the view, opened at launch."""
    prof = landlock_profile(write_profile, f'enabled = true\nread = ["{tmp_path}/later"]')
    r = run_secrun("profiles", "check", prof, cwd="/")
    assert r.rc == 0, r
