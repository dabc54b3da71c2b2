"""The ``seccomp`` plugin, on the real kernel: every check launches ``secrun`` and observes the
filter from inside the sandbox (the errno a call returns, the signal that ends the workload,
/proc/self/status).  Unusual errnos (ENOTSUP, 77, 123) are configured so that a pass cannot come
from the kernel refusing a call for its own reasons.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import pytest

from support import REPO, needs_root, run_secrun

PY = "/usr/bin/python3"          # the system interpreter: visible under every profile
DATA = os.path.join(REPO, "tests", "data", "seccomp")
DOCKER_DEFAULT = os.path.join(DATA, "docker-default.json")

# x86_64 syscall numbers used by the probes
NR = {"getpid": 39, "mkdir": 83, "rmdir": 84, "socket": 41, "unshare": 272, "mount": 165,
      "ioctl": 16, "clone3": 435, "personality": 135, "keyctl": 250, "chroot": 161,
      "ptrace": 101, "acct": 163, "fsync": 74, "umount2": 166, "pivot_root": 155, "bpf": 321,
      "perf_event_open": 298, "init_module": 175, "kexec_load": 246, "reboot": 169,
      "swapon": 167, "add_key": 248, "clone": 56, "iopl": 172, "settimeofday": 164, "getppid": 110}

# Runs inside the sandbox: each argument is NAME:ARG:ARG... (ints, 0x.., or s=STRING); prints
# a JSON object NAME -> [return value, errno].
PROBE = r"""
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = %r
out = {}
for spec in sys.argv[1:]:
    label, *args = spec.split(":")
    name = label.split("#")[0]
    cargs = []
    for a in args:
        if a.startswith("s="):
            cargs.append(ctypes.c_char_p(a[2:].encode()))
        else:
            cargs.append(ctypes.c_ulong(int(a, 0)))
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *cargs)
    out[label] = [r, ctypes.get_errno() if r == -1 else 0]
print(json.dumps(out))
""" % NR

# clone(CLONE_NEWUSER | CLONE_THREAD): the kernel itself rejects it (EINVAL: CLONE_THREAD needs
# CLONE_SIGHAND), so the probe never creates a process, while the filter refuses it first.
CLONE_NEWUSER_BAD = "clone:0x10010000:0:0:0:0"


def probe(*specs, profile=None, args=(), direct=False):
    """Run the syscall probe under ``profile`` (or directly); returns {label: (ret, errno)}."""
    if direct:
        cp = subprocess.run([PY, "-c", PROBE, *specs], capture_output=True, text=True)
        assert cp.returncode == 0, cp.stderr
        return {k: tuple(v) for k, v in json.loads(cp.stdout).items()}
    r = run_secrun(*args, "--profile", profile, PY, "-c", PROBE, *specs)
    assert r.rc == 0, r
    return {k: tuple(v) for k, v in json.loads(r.out.strip().splitlines()[-1]).items()}


def only_seccomp(write_profile, body, name="p"):
    """A profile with just [process] (no_new_privs) and the given [seccomp] body."""
    return write_profile("[process]\nno_new_privs = true\n\n[seccomp]\n" + body, name)


@pytest.fixture(scope="module")
def probe_bin(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc missing")
    d = tmp_path_factory.mktemp("seccomp-probe")
    os.chmod(d, 0o755)
    out = str(d / "probe")
    cmd = ["gcc", "-O2", "-static", "-o", out, os.path.join(DATA, "probe.c")]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        cmd.remove("-static")
        subprocess.run(cmd, check=True)
    return out


# --- actions -----------------------------------------------------------------------------------

def test_denied_call_returns_exactly_the_configured_errno(write_profile, tmp_path):
    p = only_seccomp(write_profile, """
        deny = ["mkdir"]
        deny_action = "errno:ENOTSUP"
        actions = { rmdir = 77 }
    """)
    target = str(tmp_path / "d")
    os.mkdir(str(tmp_path / "existing"))
    res = probe(f"mkdir:s={target}:0o700", f"rmdir:s={tmp_path}/existing", "getpid",
                profile=p)
    assert res["mkdir"] == (-1, errno.ENOTSUP)
    assert res["rmdir"] == (-1, 77)
    assert res["getpid"][0] > 0 and res["getpid"][1] == 0       # allowed calls work
    assert not os.path.exists(target)
    assert os.path.isdir(str(tmp_path / "existing"))
    # The same calls without secrun succeed: the errnos above came from the filter.
    res = probe(f"mkdir:s={target}:0o700", f"rmdir:s={tmp_path}/existing", direct=True)
    assert res == {"mkdir": (0, 0), "rmdir": (0, 0)}


def test_default_action_numeric_errno_and_status(write_profile):
    p = only_seccomp(write_profile, """
        default_action = 123
        allow = ["@system-service"]
    """)
    res = probe("acct:0", "keyctl:0:0", "getppid", profile=p)
    assert res["acct"] == (-1, 123) and res["keyctl"] == (-1, 123)
    assert res["getppid"][1] == 0
    r = run_secrun("--profile", p, "/bin/sh", "-c", "grep '^Seccomp:' /proc/self/status")
    assert r.rc == 0 and r.out.split() == ["Seccomp:", "2"], r


def test_denylist_style(write_profile, tmp_path):
    p = only_seccomp(write_profile, """
        default_action = "allow"
        allow = []
        deny = ["@mount", "acct"]
        deny_action = "errno:ENOTSUP"
        personalities = []
    """)
    res = probe("mount:s=none:s=/mnt:s=tmpfs:0:0", "acct:0", f"mkdir:s={tmp_path}/x:0o700",
                "umount2:s=/nonexistent:0", profile=p)
    assert res["mount"] == (-1, errno.ENOTSUP)
    assert res["umount2"] == (-1, errno.ENOTSUP)
    assert res["acct"] == (-1, errno.ENOTSUP)
    assert res["mkdir"] == (0, 0)


def test_kill_process_ends_the_workload_with_sigsys(write_profile, tmp_path):
    p = only_seccomp(write_profile, 'actions = { mkdir = "kill_process" }\n')
    r = run_secrun("--profile", p, "/bin/sh", "-c", f"echo before; exec mkdir {tmp_path}/k; "
                   "echo after")
    assert r.rc == 159, r
    assert "workload killed by signal SIGSYS" in r.err
    assert "before" in r.out and "after" not in r.out
    assert not os.path.exists(tmp_path / "k")


def test_groups_compose_with_list_edits(write_profile):
    base = only_seccomp(write_profile, """
        allow = ["@system-service", "@debug"]
        deny_action = "errno:ENOTSUP"
    """, name="base")
    child = write_profile(f"""
        extends = ["{base}"]
        [seccomp]
        allow = {{ remove = ["@debug"] }}
        deny = {{ add = ["@sync"] }}
    """, name="child")
    # ptrace(PTRACE_PEEKDATA, pid 0): allowed -> ESRCH from the kernel; removed -> EPERM.
    res = probe("ptrace:2:0:0:0", "fsync:1", profile=base)
    assert res["ptrace"] == (-1, errno.ESRCH)
    assert res["fsync"][1] != errno.ENOTSUP
    res = probe("ptrace:2:0:0:0", "fsync:1", profile=child)
    assert res["ptrace"] == (-1, errno.EPERM)
    assert res["fsync"] == (-1, errno.ENOTSUP)


# --- argument conditions and the bundled profiles ------------------------------------------------

def test_strict_argument_conditions():
    specs = ("unshare:0x10000000", "socket#packet:17:3:0", "socket#netlink:16:3:0",
             "socket#inet:2:1:0", "socket#unix:1:1:0", "ioctl#sti:0:0x5412:s=x",
             "ioctl#linux:0:0x541C:s=x", "ioctl#sti_hi:0:0x100005412:s=x", "clone3:0:0",
             "personality#norand:0x40000", "personality#query:0xffffffff",
             "mount:s=none:s=/mnt:s=tmpfs:0:0")
    res = probe(*specs, profile="strict")
    assert res["unshare"][0] == -1 and res["unshare"][1] != 0
    assert res["socket#packet"] == (-1, errno.EAFNOSUPPORT)
    assert res["socket#netlink"] == (-1, errno.EAFNOSUPPORT)
    assert res["socket#inet"][0] >= 0 and res["socket#unix"][0] >= 0
    assert res["ioctl#sti"] == (-1, errno.EPERM)
    assert res["ioctl#linux"] == (-1, errno.EPERM)
    assert res["ioctl#sti_hi"] == (-1, errno.EPERM)     # the kernel reads cmd as 32 bits
    assert res["clone3"] == (-1, errno.ENOSYS)
    assert res["personality#norand"] == (-1, errno.EPERM)
    assert res["personality#query"][0] >= 0
    assert res["mount"] == (-1, errno.EPERM)
    # With an unusual deny_action the refusals are provably the filter's.
    res = probe(CLONE_NEWUSER_BAD, "ioctl#sti:0:0x5412:s=x", profile="strict",
                args=("--set", "seccomp.deny_action=errno:ENOTSUP"))
    assert res == {"clone": (-1, errno.ENOTSUP), "ioctl#sti": (-1, errno.ENOTSUP)}
    # Unconfined, TIOCSTI on a non-terminal is the kernel's ENOTTY, and that clone EINVAL.
    res = probe("ioctl#sti:0:0x5412:s=x", CLONE_NEWUSER_BAD, direct=True)
    assert res == {"ioctl#sti": (-1, errno.ENOTTY), "clone": (-1, errno.EINVAL)}


def test_default_profile_argument_conditions():
    res = probe("unshare:0x10000000", CLONE_NEWUSER_BAD, "socket#packet:17:3:0",
                "socket#netlink:16:3:0", "socket#vsock:40:1:0", "ioctl#sti:0:0x5412:s=x",
                "clone3:0:0", profile="default",
                args=("--set", "seccomp.deny_action=errno:ENOTSUP"))
    assert res["unshare"] == (-1, errno.EPERM)          # not in the allowlist at all
    assert res["clone"] == (-1, errno.ENOTSUP)          # the namespace flag check
    assert res["socket#packet"] == (-1, errno.EAFNOSUPPORT)
    assert res["socket#vsock"] == (-1, errno.EAFNOSUPPORT)
    assert res["socket#netlink"][0] >= 0
    assert res["ioctl#sti"] == (-1, errno.ENOTSUP)
    assert res["clone3"] == (-1, errno.ENOSYS)


PROGRAMS = {
    "sh": ["/bin/sh", "-c", "x=$(echo ok); echo $x"],
    "coreutils": ["/bin/sh", "-c", "ls / >/dev/null && date >/dev/null && "
                  "printf 'b\\na\\n' | sort | head -1 && id -u >/dev/null && echo ok"],
    "python3": [PY, "-c", "import threading, subprocess, socket, tempfile, json\n"
                "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
                "assert subprocess.run(['true']).returncode == 0\n"
                "socket.socket(socket.AF_INET).close(); socket.socket(socket.AF_UNIX).close()\n"
                "print('ok')"],
    "busybox": ["busybox", "sh", "-c", "busybox ls / >/dev/null && busybox echo ok"],
}


@pytest.mark.parametrize("profile", ["default", "strict"])
@pytest.mark.parametrize("prog", sorted(PROGRAMS))
def test_ordinary_programs_run(profile, prog):
    if prog == "busybox" and shutil.which("busybox") is None:
        pytest.skip("busybox missing")
    r = run_secrun("--profile", profile, *PROGRAMS[prog])
    assert r.rc == 0, r
    assert r.out.strip().splitlines()[-1] in ("ok", "a"), r


# --- other ABIs ----------------------------------------------------------------------------------

def test_i386_int80_is_killed(write_profile, probe_bin):
    direct = subprocess.run([probe_bin, "int80"], capture_output=True, text=True)
    if int(direct.stdout) < 0:
        pytest.skip("this kernel has no i386 emulation")
    p = only_seccomp(write_profile, "")
    r = run_secrun("--profile", p, probe_bin, "int80")
    assert r.rc == 159 and "SIGSYS" in r.err, r
    p2 = only_seccomp(write_profile, 'other_abis = "errno:ENOTSUP"\n', name="p2")
    r = run_secrun("--profile", p2, probe_bin, "int80")
    assert r.rc == 0 and int(r.out) == -errno.ENOTSUP, r


def test_x32_is_killed(write_profile, probe_bin):
    p = only_seccomp(write_profile, "")
    r = run_secrun("--profile", p, probe_bin, "x32")
    assert r.rc == 159 and "SIGSYS" in r.err, r


# --- Docker/OCI import ---------------------------------------------------------------------------

def test_import_docker_default(write_profile):
    p = only_seccomp(write_profile, f'import = "{DOCKER_DEFAULT}"\n')
    res = probe("getpid", "socket#inet:2:1:0", "socket#packet:17:3:0", "socket#vsock:40:1:0",
                "mount:s=none:s=/mnt:s=tmpfs:0:0", "unshare:0x10000000", "clone3:0:0",
                "keyctl:0:0", "personality#linux:0", "personality#norand:0x40000",
                "ptrace:2:0:0:0", "chroot:s=/", "bpf:0:0:0", profile=p)
    # allowed by Docker's default (as root with its capabilities)
    assert res["getpid"][1] == 0
    assert res["socket#inet"][0] >= 0 and res["socket#packet"][0] >= 0
    assert res["personality#linux"][1] == 0
    assert res["ptrace"] == (-1, errno.ESRCH)
    # refused by it, with its defaultErrnoRet (1) or its rule's errnoRet (ENOSYS for clone3)
    for name in ("socket#vsock", "mount", "unshare", "keyctl", "personality#norand", "chroot",
                 "bpf"):
        assert res[name] == (-1, errno.EPERM), name
    assert res["clone3"] == (-1, errno.ENOSYS)
    # includes.caps: with CAP_SYS_CHROOT declared held, chroot is allowed
    p2 = only_seccomp(write_profile, f'import = "{DOCKER_DEFAULT}"\n'
                      'import_caps = ["CAP_SYS_CHROOT"]\n', name="p2")
    assert probe("chroot:s=/", profile=p2)["chroot"] == (0, 0)


def test_import_relative_to_profile_and_audit_names_it(write_profile, tmp_path):
    shutil.copy(DOCKER_DEFAULT, tmp_path / "docker.json")
    p = only_seccomp(write_profile, 'import = "docker.json"\n')
    plan = _plan(p)
    assert plan["plan"]["seccomp"]["imported"] == str(tmp_path / "docker.json")
    assert probe("mount:s=none:s=/mnt:s=tmpfs:0:0", profile=p)["mount"] == (-1, errno.EPERM)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,needle", [
    ('allow = ["@system-service", "no_such_call"]', "unknown syscall 'no_such_call'"),
    ('allow = ["@no-such-group"]', "unknown syscall group '@no-such-group'"),
    ('deny = ["mkdir"]\ndeny_action = "errno:EWHATEVER"', "unknown errno 'EWHATEVER'"),
    ('default_action = "explode"', "unknown action 'explode'"),
    ('address_families = ["AF_NOPE"]', "unknown address family 'AF_NOPE'"),
    ('deny_namespaces = ["userns"]', "unknown namespace 'userns'"),
    ('deny_ioctls = ["TIOCNOPE"]', "unknown ioctl 'TIOCNOPE'"),
])
def test_bad_input_is_refused_naming_it(write_profile, body, needle):
    p = only_seccomp(write_profile, body + "\n")
    r = run_secrun("--profile", p, "/bin/true")
    assert r.rc == 125, r
    assert needle in r.err and p in r.err and "[seccomp]" in r.err, r


def test_malformed_json_import(write_profile, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [ {"names": ["read"],')
    p = only_seccomp(write_profile, f'import = "{bad}"\n')
    r = run_secrun("--profile", p, "/bin/true")
    assert r.rc == 125 and "malformed JSON" in r.err and str(bad) in r.err, r
    bad.write_text('{"defaultAction": "SCMP_ACT_NOTIFY", "syscalls": []}')
    r = run_secrun("--profile", p, "/bin/true")
    assert r.rc == 125 and "SCMP_ACT_NOTIFY" in r.err, r


def test_no_new_privs_off_without_cap_sys_admin_fails_closed(write_profile):
    p = write_profile("""
        [process]
        no_new_privs = false
        [capabilities]
        keep = []
        [seccomp]
    """)
    r = run_secrun("--profile", p, "/bin/true")
    assert r.rc == 125, r
    assert "stage 'seccomp' failed in plugin 'seccomp'" in r.err
    assert "no_new_privs" in r.err and "sys_admin" in r.err


# --- export ---------------------------------------------------------------------------------------

def test_export_bpf_is_the_loaded_program(write_profile, tmp_path):
    p = only_seccomp(write_profile, 'deny = ["mkdir"]\ndeny_action = "errno:ENOTSUP"\n'
                     'deny_ioctls = ["TIOCSTI"]\n')
    out = tmp_path / "f.bpf"
    r = run_secrun("seccomp", "export", "--profile", p, "--format", "bpf", "-o", out)
    assert r.rc == 0, r
    data = out.read_bytes()
    assert data and len(data) % 8 == 0
    assert data == _plan(p)["plan"]["seccomp"]["bpf"]
    # Load the exported bytes ourselves, in a fresh process, and watch them act.
    loader = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
data = open(sys.argv[1], "rb").read()
buf = ctypes.create_string_buffer(data, len(data))
class P(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = P(len(data) // 8, ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, ctypes.get_errno()
try:
    os.mkdir(sys.argv[2])
except OSError as e:
    print(e.errno)
r = libc.ioctl(0, 0x5412, b"x")
print(ctypes.get_errno() if r == -1 else 0)
"""
    cp = subprocess.run([PY, "-c", loader, str(out), str(tmp_path / "m")], capture_output=True,
                        text=True, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.split() == [str(errno.ENOTSUP), str(errno.ENOTSUP)]


def test_export_pfc(write_profile):
    p = only_seccomp(write_profile, 'deny = ["mkdir"]\ndeny_action = "errno:ENOTSUP"\n')
    r = run_secrun("seccomp", "export", "-p", p, "-f", "pfc")
    assert r.rc == 0, r
    assert "ERRNO(95)" in r.out and 'filter for syscall "mkdir"' in r.out
    assert "invalid architecture action" in r.out and "KILL_PROCESS" in r.out


def test_export_oci_json_round_trips(write_profile, tmp_path):
    r = run_secrun("seccomp", "export", "--profile", "strict", "--format", "oci-json")
    assert r.rc == 0, r
    doc = json.loads(r.out)
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == 1
    assert doc["architectures"] == ["SCMP_ARCH_X86_64"]
    names = {n for rule in doc["syscalls"] for n in rule["names"]}
    assert "read" in names and "mount" not in names
    # oci-json cannot say "allow ioctl except TIOCSTI and TIOCLINUX": it says so
    assert "cannot express" in r.err and "TIOCSTI" in r.err
    exported = tmp_path / "strict.json"
    exported.write_text(r.out)
    p = only_seccomp(write_profile, f'import = "{exported}"\n')
    res = probe("mount:s=none:s=/mnt:s=tmpfs:0:0", "unshare:0x10000000", "socket#packet:17:3:0",
                "socket#inet:2:1:0", "clone3:0:0", "getppid", profile=p)
    assert res["mount"] == (-1, errno.EPERM) and res["unshare"] == (-1, errno.EPERM)
    assert res["socket#packet"] == (-1, errno.EPERM) and res["socket#inet"][0] >= 0
    assert res["clone3"] == (-1, errno.ENOSYS) and res["getppid"][1] == 0


def test_groups_command():
    r = run_secrun("seccomp", "groups")
    assert r.rc == 0, r
    for g in ("@system-service", "@mount", "@privileged", "@raw-io", "@module", "@reboot",
              "@swap", "@clock", "@debug", "@obsolete", "@cpu-emulation", "@keyring"):
        assert g + ":" in r.out
    r = run_secrun("seccomp", "groups", "@mount")
    assert "umount2" in r.out


# --- audit ----------------------------------------------------------------------------------------

def _plan(*profiles):
    from secrun import plan

    return plan.build(list(profiles))


def _audit_rows(*profiles):
    args = [a for p in profiles for a in ("--profile", p)]
    r = run_secrun("audit", *args, "--format", "json")
    assert r.rc in (0, 1), r  # (1: above the threshold)
    return [row for row in json.loads(r.out)["controls"] if row["plugin"] == "seccomp"]


def test_audit_rows_and_their_facts_hold_live():
    rows = _audit_rows("strict")
    main = rows[0]
    assert main["category"] == "seccomp.filter" and main["status"] == "enforced"
    assert main["expect"]["status.Seccomp"] == "2"
    blocked = [k.split(".", 1)[1] for k, v in main["expect"].items() if v == "blocked"]
    assert {"mount", "ptrace", "bpf", "kexec_load", "init_module"} <= set(blocked)
    # Every "blocked" fact the audit states holds inside the sandbox.  The probes pass NULL
    # pointers and invalid values, so even an allowed call would do nothing.
    args = {"mount": ":0:0:0:0:0", "umount2": ":s=/nonexistent:0", "pivot_root": ":0:0",
            "ptrace": ":2:0:0:0", "bpf": ":0xffff:0:0", "perf_event_open": ":0:0:0:0:0",
            "init_module": ":0:0:0", "kexec_load": ":0:0:0:0xffff", "reboot": ":0:0:0:0",
            "swapon": ":0:0", "keyctl": ":0xffff:0", "add_key": ":0:0:0:0:0", "acct": ":0",
            "iopl": ":0", "settimeofday": ":0:0"}
    res = probe(*(n + args[n] for n in blocked), profile="strict")
    for n in blocked:
        assert res[n] == (-1, errno.EPERM), n
    r = run_secrun("--profile", "strict", "/bin/sh", "-c", "grep '^Seccomp:' /proc/self/status")
    assert r.out.split() == ["Seccomp:", "2"], r


@needs_root
def test_filter_read_from_outside_agrees_with_probing_inside(tmp_path):
    """The --pid evaluation of a real libseccomp filter (argument checks included) gives, for
    every probed call, the verdict the probe gets by calling it inside the same process."""
    pytest.importorskip("pyseccomp")
    script = tmp_path / "filtered.py"
    script.write_text(
        "import errno, json, sys, pyseccomp as s\n"
        "from secrun.plugins.seccomp import probe\n"
        "f = s.SyscallFilter(s.ALLOW)\n"
        "for n in ('mount', 'ptrace', 'bpf', 'keyctl', 'swapon'):\n"
        "    f.add_rule(s.ERRNO(errno.EPERM), n)\n"
        "f.add_rule(s.ERRNO(errno.EPERM), 'unshare', s.Arg(0, s.MASKED_EQ, 0x10000000,"
        " 0x10000000))\n"
        "f.add_rule(s.KILL_PROCESS, 'kexec_load')\n"
        "f.add_rule(s.ERRNO(errno.EPERM), 'setns', s.Arg(1, s.EQ, 0))\n"
        "f.load()\n"
        "print(json.dumps(probe.probe_syscalls()), flush=True)\n"
        "sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        inside = json.loads(proc.stdout.readline())
        r = run_secrun("audit", "--format", "json", "--pid", str(proc.pid), "--reference", "self")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert r.rc == 0, r
    outside = {k: v for k, v in json.loads(r.out)["facts"].items() if k.startswith("syscall.")}
    assert outside == inside
    for n in ("mount", "ptrace", "unshare", "kexec_load", "setns"):
        assert outside[f"syscall.{n}"] == "blocked", n
    assert outside["syscall.chroot"] == "allowed"


# A process that installs one classic-BPF seccomp filter (no_new_privs first), given as
# "code,jt,jf,k;..." in argv[1], prints "ready", then runs argv[2] (Python) and waits on stdin.
FILTERED = r"""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
insns = [tuple(int(v, 0) for v in i.split(",")) for i in sys.argv[1].split(";")]
prog = ctypes.create_string_buffer(b"".join(struct.pack("<HBBI", *i) for i in insns))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(insns), ctypes.addressof(prog))
assert libc.prctl(38, 1, 0, 0, 0) == 0                          # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
exec(sys.argv[2])
sys.stdin.read()
"""
ALLOW_ALL = "0x06,0,0,0x7fff0000"
# ld [8] (instruction pointer, low word); jeq 0 -> ERRNO(EPERM), else ALLOW
ERRNO_AT_IP_0 = "0x20,0,0,8;0x15,0,1,0;0x06,0,0,0x00050001;0x06,0,0,0x7fff0000"


def _filtered(tmp_path, filt, then):
    script = tmp_path / "filtered.py"
    script.write_text(FILTERED)
    return subprocess.Popen([sys.executable, str(script), filt, then], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _state(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(line.split()[1] for line in f if line.startswith("State:"))


@needs_root
def test_pid_of_a_process_that_does_not_stop_is_not_waited_for(tmp_path):
    """A process in an uninterruptible sleep ptrace's interrupt does not end (a vfork parent
    whose child blocks, before its exec, opening a FIFO nobody writes) never reaches the stop
    the filters are read in: the audit gives up after about a second, says so, and reports no
    system calls; the process is released, and runs on once its child is unblocked."""
    import time

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    spawn = ("print('ready', flush=True); os.posix_spawn('/bin/true', ['true'], {}, "
             f"file_actions=[(os.POSIX_SPAWN_OPEN, 0, {str(fifo)!r}, os.O_RDONLY, 0)]); "
             "print('spawned', flush=True)")
    proc = _filtered(tmp_path, ALLOW_ALL, spawn)
    try:
        assert proc.stdout.readline() == "ready\n"
        end = time.monotonic() + 10
        while _state(proc.pid) != "D" and time.monotonic() < end:
            time.sleep(0.01)
        assert _state(proc.pid) == "D"
        start = time.monotonic()
        r = run_secrun("audit", "--format", "json", "--pid", str(proc.pid), "--reference",
                       "self", timeout=20)
        took = time.monotonic() - start
        assert r.rc == 0, r
        rep = json.loads(r.out)
        assert took < 5, took
        assert any(f"{proc.pid} did not stop within 1 s" in n and "system calls not evaluated"
                   in n for n in rep["notes"]), rep["notes"]
        assert not any(k.startswith("syscall.") for k in rep["facts"]), rep["facts"]
        (cat,) = [c for c in rep["categories"] if c["id"] == "seccomp.filter"]
        assert cat["effective"] == 0.5 and "not observable" in cat["observed"], cat
        # the reading, in this (long-lived) process: the tracer thread's end releases it
        from secrun.plugins.seccomp import live

        with pytest.raises(live.Unverifiable, match="did not stop within 0.2 s"):
            live.read_filters(proc.pid, timeout=0.2)
        for _ in range(100):  # (the thread's exit follows the join by a moment)
            with open(f"/proc/{proc.pid}/status") as f:
                status = f.read()
            if "TracerPid:\t0\n" in status:
                break
            time.sleep(0.01)
        assert "TracerPid:\t0\n" in status
        assert _state(proc.pid) == "D"
        # not left traced: once the FIFO opens, the spawn completes and the process goes on
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        assert proc.stdout.readline() == "spawned\n"
        with open(f"/proc/{proc.pid}/status") as f:
            assert "TracerPid:\t0\n" in f.read()
    finally:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        proc.stdin.close()
        proc.wait(timeout=10)
    # an ordinary filtered process is still evaluated
    proc = _filtered(tmp_path, ALLOW_ALL, "print('ready', flush=True)")
    try:
        assert proc.stdout.readline() == "ready\n"
        r = run_secrun("audit", "--format", "json", "--pid", str(proc.pid), "--reference",
                       "self", timeout=20)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert r.rc == 0, r
    rep = json.loads(r.out)
    assert not any("not evaluated" in n for n in rep["notes"]), rep["notes"]
    assert rep["facts"]["syscall.mount"] == "allowed"


@needs_root
def test_a_filter_on_the_instruction_pointer_is_not_evaluated(tmp_path):
    """A filter that refuses every call made from address 0 restricts nothing real; evaluated
    with a made-up instruction pointer of 0 it would look like a filter refusing everything.
    ``--pid`` says it cannot tell, and the filter scores as unobservable, not as 0."""
    mount = ("libc.syscall.restype = ctypes.c_long; "
             "r = libc.syscall(ctypes.c_long(%d), 0, 0, 0, 0, 0); "
             "print('mount', r, ctypes.get_errno(), flush=True)" % NR["mount"])
    proc = _filtered(tmp_path, ERRNO_AT_IP_0, mount)
    try:
        _, ret, err = proc.stdout.readline().split()
        r = run_secrun("audit", "--format", "json", "--pid", str(proc.pid), "--reference",
                       "self", timeout=20)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    # the process really reached mount's argument checks (NULL target: EFAULT, not EPERM)
    assert int(ret) == -1 and int(err) == errno.EFAULT, (ret, err)
    assert r.rc == 0, r
    rep = json.loads(r.out)
    assert rep["facts"].get("syscall.mount") != "blocked"
    assert not any(v == "blocked" for k, v in rep["facts"].items() if k.startswith("syscall."))
    assert any("depends on the instruction pointer" in n for n in rep["notes"]), rep["notes"]
    (cat,) = [c for c in rep["categories"] if c["id"] == "seccomp.filter"]
    assert cat["effective"] == 0.5, cat


def test_the_evaluator_refuses_an_instruction_pointer_it_does_not_know():
    """The interpreter itself: a program that reads the instruction pointer on the path a call
    takes makes the evaluation unverifiable; one that reads it only for other calls does not."""
    import struct

    from secrun.plugins.seccomp import live

    def prog(text):
        return b"".join(struct.pack("<HBBI", *(int(v, 0) for v in i.split(",")))
                        for i in text.split(";"))

    arch = live.AUDIT_ARCH[0]
    with pytest.raises(live.Unverifiable, match="instruction pointer"):
        live.filter_action([prog(ALLOW_ALL), prog(ERRNO_AT_IP_0)], NR["mount"], (), arch)
    # high word too (offset 12)
    with pytest.raises(live.Unverifiable):
        live.filter_action([prog("0x20,0,0,12;0x06,0,0,0x7fff0000")], NR["mount"], (), arch)
    # ld [0] (nr); jeq getpid -> (ld [8]; ret ERRNO) else ALLOW: mount never looks at the IP
    only_getpid = f"0x20,0,0,0;0x15,0,2,{NR['getpid']};0x20,0,0,8;0x06,0,0,0x00050001;" \
        "0x06,0,0,0x7fff0000"
    assert live.filter_action([prog(only_getpid)], NR["mount"], (), arch) == live.RET_ALLOW
    with pytest.raises(live.Unverifiable):
        live.filter_action([prog(only_getpid)], NR["getpid"], (), arch)


def test_the_judge_counts_the_probed_calls_only():
    """``seccomp.filter`` is judged over the calls of the plugin's own probe table: another
    ``syscall.*`` fact (a third-party plugin's, say) does not change the verdict."""
    from secrun.plugins.seccomp.audit import judge_filter
    from secrun.plugins.seccomp.probe import SYSCALLS

    facts = {"status.Seccomp": "2", "status.Seccomp_filters": "1"}
    facts.update({f"syscall.{n}": "blocked" for n in SYSCALLS})
    facts["syscall.ptrace"] = "allowed"
    judged = judge_filter(facts)
    assert judged == judge_filter({**facts, "syscall.not_probed": "allowed"})
    assert judged == (1 / len(SYSCALLS), f"1 filter(s); {len(SYSCALLS) - 1}/{len(SYSCALLS)} "
                      "sensitive calls blocked")


@needs_root
def test_launch_does_not_import_pyseccomp(write_profile):
    p = only_seccomp(write_profile, "")
    assert run_secrun("--profile", p, "/bin/true").rc == 0      # plan cached
    code = ("import sys; from secrun.main import main; rc = main(['--profile', %r, '/bin/true']);"
            "print(rc, 'pyseccomp' in sys.modules, 'secrun.plugins.seccomp.bpf' in "
            "sys.modules)" % p)
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert cp.stdout.split() == ["0", "False", "False"], cp


