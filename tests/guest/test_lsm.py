"""The apparmor and selinux plugins.

Host tests (this machine has neither LSM active): planning (the shipped AppArmor profile
compiles, parser errors name the file and line, config errors), and the availability contract
(required -> exit 125 with the reason and the workload never runs; best-effort -> it runs, with
a warning).

Guest tests (``@pytest.mark.apparmor`` / ``@pytest.mark.selinux``) run inside the user-mode-linux
kernel with the LSM enforcing (``tests/guest/run-guest-suites``) and assert confinement from
inside the workload: the label in /proc/self/attr, EACCES on a denied read.
"""

import os
import subprocess
import zlib

import pytest

from support import REPO, lsms, need

AA_ACTIVE = "apparmor" in lsms()
SE_ACTIVE = "selinux" in lsms()
STRICT_AA = os.path.join(REPO, "profiles", "apparmor", "secrun-strict")
# Prints "<label>|<errno name or 'ok'> of reading each path given" from inside the sandbox.
PROBE = ("import errno,sys\n"
         "def rd(p):\n"
         "    try: open(p).read(); return 'ok'\n"
         "    except OSError as e: return errno.errorcode[e.errno]\n"
         "def wr(p):\n"
         "    try: open(p,'w').write('x'); return 'ok'\n"
         "    except OSError as e: return errno.errorcode[e.errno]\n"
         "print(open(sys.argv[1]).read().strip('\\0\\n'))\n"
         "for a in sys.argv[2:]: print(a, (wr if a[0]=='w' else rd)(a[2:]))\n")


def probe(secrun, profile, attr, *ops, cwd=None):
    import sys

    r = secrun("--profile", profile, sys.executable, "-c", PROBE, attr, *ops, cwd=cwd)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    return lines[0], dict(line.rsplit(" ", 1) for line in lines[1:]), r


def plan_of(profile_path, cwd=None):
    from secrun import plan

    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        return plan.build([profile_path])
    finally:
        os.chdir(old)


# --- host: planning ----------------------------------------------------------------------------

@need("apparmor_parser")
def test_shipped_strict_profile_compiles_with_apparmor_parser():
    with open(STRICT_AA) as f:
        text = f.read()
    # Exactly what secrun feeds the parser: @{secrun_cwd} defined first.
    cp = subprocess.run(["apparmor_parser", "-qQK"], input='@{secrun_cwd} = "/srv/w"\n' + text,
                        capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr
    cp = subprocess.run(["apparmor_parser", "-qQK", STRICT_AA], capture_output=True, text=True)
    assert cp.returncode != 0 and "secrun_cwd" in cp.stderr  # the variable is secrun's to define


@need("apparmor_parser")
def test_strict_plan_holds_binary_policy_under_a_per_directory_name(write_profile, tmp_path):
    path = write_profile('[apparmor]\nprofile_file = "secrun-strict"\n')
    work = tmp_path / "w"
    work.mkdir()
    p = plan_of(path, cwd=work)["plan"]["apparmor"]
    assert p["file"] == os.path.realpath(STRICT_AA)
    assert p["target"] == "secrun-strict.%08x" % zlib.crc32(str(work).encode())
    assert p["names"] == ["secrun-strict"]
    assert isinstance(p["policy"], bytes) and b"secrun-strict." in p["policy"]
    # A profile without @{secrun_cwd} keeps its own name and is found beside the secrun profile.
    (tmp_path / "apparmor").mkdir()
    (tmp_path / "apparmor" / "mine").write_text("abi <abi/3.0>,\nprofile mine_t {\n /** r,\n}\n")
    p = plan_of(write_profile('[apparmor]\nprofile_file = "mine"\n', "m"))["plan"]["apparmor"]
    assert p["target"] == "mine_t" and p["file"] == str(tmp_path / "apparmor" / "mine")


@need("apparmor_parser")
def test_bad_apparmor_profile_names_file_and_line(secrun, write_profile, tmp_path):
    bad = tmp_path / "bad.aa"
    bad.write_text("abi <abi/3.0>,\nprofile bad_t {\n  /** r,\n  /etc/x rr\n}\n")
    marker = tmp_path / "ran"
    prof = write_profile(f'[apparmor]\nprofile_file = "{bad}"\nrequired = false\n')
    r = secrun("--profile", prof, "touch", marker)
    assert r.rc == 125, r
    assert f"at line 5 of {bad}" in r.err and "syntax error" in r.err and "profile_file" in r.err
    assert not marker.exists()


@pytest.mark.parametrize("text, key, msg", [
    ("[apparmor]\n", "profile", "set profile"),
    ('[apparmor]\nprofile = "a b"\n', "profile", "not an AppArmor profile name"),
    ('[apparmor]\nprofile_file = "no-such-aa"\n', "profile_file", "no AppArmor profile file"),
    ("[selinux]\n", "context", "set context"),
    ('[selinux]\ncontext = "a:b:c:s0"\ntype = "c"\n', "type", "not both"),
    ('[selinux]\ncontext = "nocolons"\n', "context", "not an SELinux context"),
    ('[selinux]\ntype = "a:b"\n', "type", "not an SELinux type"),
])
def test_config_errors(secrun, write_profile, text, key, msg):
    r = secrun("--dry-run", "--profile", write_profile(text), "true")
    assert r.rc == 125 and key in r.err and msg in r.err, r


@need("apparmor_parser")
def test_profile_must_be_defined_by_profile_file(secrun, write_profile):
    r = secrun("--dry-run", "--profile",
               write_profile('[apparmor]\nprofile = "other"\nprofile_file = "secrun-strict"\n'),
               "true")
    assert r.rc == 125 and "'other' is not defined in" in r.err, r


# --- host: availability ------------------------------------------------------------------------

UNAVAILABLE = [
    pytest.param("apparmor", '[apparmor]\nprofile = "secrun_t"\n',
                 "AppArmor is not enabled in this kernel",
                 marks=pytest.mark.skipif(AA_ACTIVE, reason="AppArmor is active here")),
    pytest.param("selinux", '[selinux]\ntype = "secrun_t"\n',
                 "SELinux is not enabled in this kernel",
                 marks=pytest.mark.skipif(SE_ACTIVE, reason="SELinux is active here")),
]


@pytest.mark.parametrize("plugin, text, reason", UNAVAILABLE)
def test_required_but_unavailable_stops_the_launch(secrun, write_profile, tmp_path,
                                                   plugin, text, reason):
    marker = tmp_path / "ran"
    r = secrun("--profile", write_profile(text), "touch", marker)
    assert r.rc == 125, r
    assert f"stage 'prepare' failed in plugin '{plugin}'" in r.err and reason in r.err, r
    assert not marker.exists()


@pytest.mark.parametrize("plugin, text, reason", UNAVAILABLE)
def test_best_effort_unavailable_runs_with_a_warning(secrun, write_profile, tmp_path,
                                                     plugin, text, reason):
    r = secrun("--profile", write_profile(text + "required = false\n"), "echo", "ran")
    assert r.rc == 0 and r.out == "ran\n", r
    assert "warning" in r.err and "not applied" in r.err and reason in r.err, r


@pytest.mark.skipif(AA_ACTIVE or SE_ACTIVE, reason="an LSM is active here")
@pytest.mark.parametrize("text", ['[apparmor]\nprofile = "x_t"\nrequired = false\n',
                                  '[selinux]\ncontext = "u:r:x_t:s0"\n'])
def test_audit_reports_not_available(write_profile, text):
    from secrun.audit.planned import plan_rows

    p = plan_of(write_profile(text))
    section = next(iter(p["plan"]))
    rows, _, _ = plan_rows(p)
    (row,) = [r for r in rows if r["plugin"] == section]
    assert row["category"] == "mac"
    assert row["status"] == "not-available" and "not enabled in this kernel" in row["detail"]
    assert not row.get("expect")  # (the audit gives every row an expect, empty here)


@pytest.mark.skipif(AA_ACTIVE, reason="AppArmor is active here")
def test_bundled_strict_still_runs_without_apparmor(secrun):
    r = secrun("--profile", "strict", "echo", "ran", cwd="/tmp")
    assert r.rc == 0 and r.out == "ran\n", r
    assert "apparmor: best-effort control not applied" in r.err, r


# --- guest: AppArmor enforcing -----------------------------------------------------------------

needs_aa = pytest.mark.skipif(not AA_ACTIVE, reason="AppArmor not active (guest test)")


@pytest.fixture
def secret(tmp_path):
    p = tmp_path / "secret.txt"
    p.write_text("secret\n")
    p.chmod(0o644)
    return p


@pytest.mark.apparmor
@needs_aa
@pytest.mark.parametrize("nnp", [True, False])
def test_apparmor_named_profile_confines(secrun, write_profile, tmp_path, secret, nnp):
    aa = tmp_path / "secrun_test_t"
    aa.write_text("abi <abi/3.0>,\ninclude <tunables/global>\nprofile secrun_test_t {\n"
                  " include <abstractions/base>\n /** rmix,\n"
                  f" deny {secret} r,\n}}\n")
    subprocess.run(["apparmor_parser", "-K", "-r", str(aa)], check=True)
    prof = write_profile('[apparmor]\nprofile = "secrun_test_t"\n'
                         f"[process]\nno_new_privs = {str(nnp).lower()}\n")
    label, res, r = probe(secrun, prof, "/proc/self/attr/apparmor/current",
                          f"r:{secret}", "r:/proc/self/status")
    assert label == "secrun_test_t (enforce)"
    assert res[f"r:{secret}"] == "EACCES"
    assert res["r:/proc/self/status"] == "ok"
    r = secrun("--profile", prof, "grep", "NoNewPrivs", "/proc/self/status")
    assert r.out.split() == ["NoNewPrivs:", "1" if nnp else "0"], r


@pytest.mark.apparmor
@needs_aa
def test_apparmor_shipped_strict_profile(secrun, write_profile, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    plain = write_profile("[process]\n", "plain")
    conf = write_profile('[apparmor]\nprofile_file = "secrun-strict"\n', "conf")
    ops = ("r:/etc/shadow", f"w:{work}/out", f"w:{tmp_path}/out", "w:/dev/shm/secrun-x",
           "w:/run/secrun-x")
    # Without AppArmor (root, no capability dropped) every operation succeeds ...
    label, res, _ = probe(secrun, plain, "/proc/self/attr/apparmor/current", *ops, cwd=work)
    assert label == "unconfined" and set(res.values()) == {"ok"}, res
    os.unlink("/dev/shm/secrun-x")
    os.unlink("/run/secrun-x")
    # ... and under secrun-strict only the working directory and /tmp are writable.
    label, res, _ = probe(secrun, conf, "/proc/self/attr/apparmor/current", *ops, cwd=work)
    assert label == "secrun-strict.%08x (enforce)" % zlib.crc32(str(work).encode())
    assert res == {"r:/etc/shadow": "EACCES", f"w:{work}/out": "ok", f"w:{tmp_path}/out": "ok",
                   "w:/dev/shm/secrun-x": "EACCES", "w:/run/secrun-x": "EACCES"}, res
    # Raw sockets, tracing (even its own child) and mounting are denied too.
    code = ("import socket,ctypes,errno,subprocess\n"
            "try: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1); print('raw ok')\n"
            "except OSError as e: print('raw', errno.errorcode[e.errno])\n"
            "l=ctypes.CDLL(None, use_errno=True)\n"
            "c=subprocess.Popen(['sleep','30'], stdout=-3, stderr=-3)\n"
            "r=l.ptrace(16, c.pid, 0, 0)\n"
            "print('ptrace', r, errno.errorcode.get(ctypes.get_errno()))\n"
            "c.kill(); c.wait()\n"
            "r=l.mount(b'none', b'mnt', b'tmpfs', 0, None)\n"
            "print('mount', r, errno.errorcode.get(ctypes.get_errno()))\n")
    (work / "mnt").mkdir()
    r = secrun("--profile", plain, "python3", "-c", code, cwd=work)
    subprocess.run(["umount", str(work / "mnt")], check=True)
    assert r.out.splitlines() == ["raw ok", "ptrace 0 None", "mount 0 None"], r
    r = secrun("--profile", conf, "python3", "-c", code, cwd=work)
    assert r.rc == 0, r
    assert r.out.splitlines() == ["raw EACCES", "ptrace -1 EACCES", "mount -1 EACCES"], r


@pytest.mark.apparmor
@needs_aa
def test_apparmor_bundled_strict_profile_enters_its_label(secrun, tmp_path):
    # The UML guest kernel has no time namespaces (unshare(CLONE_NEWTIME) is EINVAL there).
    r = secrun("--profile", "strict", "--set", "namespaces.time=false",
               "cat", "/proc/self/attr/apparmor/current", cwd=tmp_path)
    assert r.rc == 0, r
    assert r.out.strip() == "secrun-strict.%08x (enforce)" % zlib.crc32(str(tmp_path).encode())


@pytest.mark.apparmor
@needs_aa
def test_apparmor_bad_profile_file_fails_before_exec(secrun, write_profile, tmp_path):
    bad = tmp_path / "bad.aa"
    bad.write_text("abi <abi/3.0>,\nprofile bad_t {\n  /** r,\n  network foo,\n}\n")
    marker = tmp_path / "ran"
    r = secrun("--profile", write_profile(f'[apparmor]\nprofile_file = "{bad}"\n'),
               "touch", marker)
    assert r.rc == 125 and str(bad) in r.err and "apparmor_parser error" in r.err, r
    assert not marker.exists()


@pytest.mark.apparmor
@needs_aa
def test_apparmor_profile_not_loaded_fails_before_exec(secrun, write_profile, tmp_path):
    marker = tmp_path / "ran"
    r = secrun("--profile", write_profile('[apparmor]\nprofile = "secrun_never_loaded"\n'),
               "touch", marker)
    assert r.rc == 125 and "'secrun_never_loaded' is not loaded" in r.err, r
    assert not marker.exists()


# --- guest: SELinux enforcing (tests/guest/secrun-test.cil loaded) -----------------------------

needs_se = pytest.mark.skipif(not SE_ACTIVE, reason="SELinux not active (guest test)")
SANDBOX = "system_u:system_r:secrun_sandbox_t:s0"


@pytest.mark.selinux
@needs_se
@pytest.mark.parametrize("key, nnp", [("type", True), ("context", False)])
def test_selinux_domain_confines(secrun, write_profile, tmp_path, secret, key, nnp):
    with open("/sys/fs/selinux/enforce") as f:
        assert f.read().strip() == "1"
    subprocess.run(["chcon", "system_u:object_r:secrun_secret_t:s0", str(secret)], check=True)
    other = tmp_path / "other.txt"
    other.write_text("fine\n")
    value = "secrun_sandbox_t" if key == "type" else SANDBOX
    prof = write_profile(f'[selinux]\n{key} = "{value}"\n'
                         f"[process]\nno_new_privs = {str(nnp).lower()}\n")
    label, res, _ = probe(secrun, prof, "/proc/self/attr/current", f"r:{secret}", f"r:{other}")
    assert label == SANDBOX
    assert res == {f"r:{secret}": "EACCES", f"r:{other}": "ok"}, res
    # The same read outside the domain succeeds: the denial is the policy's.
    label, res, _ = probe(secrun, write_profile("[process]\n", "plain"), "/proc/self/attr/current",
                          f"r:{secret}")
    assert label != SANDBOX and res == {f"r:{secret}": "ok"}


@pytest.mark.selinux
@needs_se
@pytest.mark.parametrize("key, value", [("type", "secrun_no_such_t"),
                                        ("context", "system_u:object_r:secrun_nope_t:s0")])
def test_selinux_invalid_context_fails_before_exec(secrun, write_profile, tmp_path, key, value):
    marker = tmp_path / "ran"
    r = secrun("--profile", write_profile(f'[selinux]\n{key} = "{value}"\n'), "touch", marker)
    assert r.rc == 125, r
    assert "security_check_context" in r.err and "not a valid context" in r.err, r
    assert not marker.exists()
