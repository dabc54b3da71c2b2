"""Capabilities, identity and no_new_privs: the `capabilities` and `identity` plugins (and the
`process` plugin's no_new_privs), tested on the real kernel by launching `secrun` and looking
from inside the sandbox: /proc/self/status, `capsh --print` and the errno of blocked syscalls.

Each denial has a control run that shows the same probe succeeding (or failing differently)
without the control, so that a probe that always fails cannot pass for a working control.
"""

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import tomllib

import pytest

from support import REPO, need, needs_root, run_secrun

pytestmark = needs_root

# The workloads run as uid 65534 too: the venv's interpreter (under /root's pyenv) is not
# reachable for it, Debian's is.
SYS_PY = "/usr/bin/python3"
CAPSH = shutil.which("capsh") or "/usr/sbin/capsh"
SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

NAMES = ("chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
         "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin",
         "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace",
         "sys_pacct", "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time",
         "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
         "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read",
         "perfmon", "bpf", "checkpoint_restore")

with open("/proc/sys/kernel/cap_last_cap") as _f:
    LAST_CAP = int(_f.read())


def mask(*names) -> int:
    m = 0
    for n in names:
        m |= 1 << NAMES.index(n.lower().removeprefix("cap_"))
    return m


def status_of(text: str) -> dict:
    """The Cap*/NoNewPrivs/Uid/Gid/Groups lines of a /proc/self/status dump."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in SETS:
            out[key] = int(value.strip(), 16)
        elif sep and key in ("NoNewPrivs", "Uid", "Gid", "Groups"):
            out[key] = value.split()
    return out


def own_available() -> int:
    """What a sandbox started by this (root) test process can hold: permitted AND bounding.
    Root here lacks CAP_SYS_RESOURCE, so this is never assumed to be the full set."""
    st = status_of(open("/proc/self/status").read())
    return st["CapPrm"] & st["CapBnd"]


def capsh_sets(text: str) -> dict:
    """{'current': (set of names, flags), 'bounding': set, 'ambient': set, 'uid': ..., ...}
    from `capsh --print`."""
    out = {}
    for line in text.splitlines():
        if line.startswith("Current: "):
            spec = line[len("Current: "):].strip()
            names, _, flags = spec.rpartition("=")
            assert " " not in spec, f"unexpected mixed capability text {spec!r}"
            out["current"] = (set(filter(None, names.split(","))), flags)
        elif line.startswith("Bounding set ="):
            out["bounding"] = set(filter(None, line.split("=", 1)[1].split(",")))
        elif line.startswith("Ambient set ="):
            out["ambient"] = set(filter(None, line.split("=", 1)[1].split(",")))
        elif line.startswith("uid="):
            out["uid"] = line.split()[0]
        elif line.startswith("gid="):
            out["gid"] = line.strip()
        elif line.startswith("groups="):
            out["groups"] = line.strip()
        elif "no-new-privs=" in line:
            out["nnp"] = line.split("no-new-privs=")[1].rstrip(")")
    return out


def names_of(m: int) -> set:
    return {"cap_" + NAMES[i] for i in range(len(NAMES)) if m >> i & 1}


SHOW = f"cat /proc/self/status; echo '--- capsh'; {CAPSH} --print"


def run_show(secrun, profile):
    r = secrun("-p", profile, "--", "/bin/sh", "-c", SHOW)
    assert r.rc == 0, r
    status_text, _, capsh_text = r.out.partition("--- capsh\n")
    return status_of(status_text), capsh_sets(capsh_text)


@pytest.fixture
def pubdir():
    """A root-owned directory that uid 65534 can traverse (pytest's tmp_path is 0700), outside
    /tmp so that it is also visible (read-only) in profiles with a private /tmp."""
    d = tempfile.mkdtemp(prefix="secrun-caps-test-", dir="/var/lib")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --- strict -------------------------------------------------------------------------------------

@need("capsh")
def test_strict_no_capabilities_nobody_no_groups_no_new_privs(secrun):
    st, cs = run_show(secrun, "strict")
    assert {k: st[k] for k in SETS} == dict.fromkeys(SETS, 0), st
    assert st["NoNewPrivs"] == ["1"]
    assert st["Uid"] == ["65534"] * 4 and st["Gid"] == ["65534"] * 4
    assert st["Groups"] == []
    assert cs["current"] == (set(), "")          # "Current: ="
    assert cs["bounding"] == set() and cs["ambient"] == set()
    assert cs["uid"] == "uid=65534(nobody)" and cs["gid"] == "gid=65534(nogroup)"
    assert cs["groups"] == "groups=" and cs["nnp"] == "1"


# --- default ------------------------------------------------------------------------------------

def _profile_keep(name):
    with open(os.path.join(REPO, "profiles", f"{name}.toml"), "rb") as f:
        return tomllib.load(f)["capabilities"]["keep"]


@need("capsh")
def test_default_keeps_its_small_set_for_root(secrun):
    keep = _profile_keep("default")
    want = mask(*keep) & own_available()
    # The documented set: nothing that reaches past the sandbox.
    for dangerous in ("sys_admin", "sys_module", "sys_ptrace", "sys_rawio", "net_admin",
                      "net_raw", "mknod", "setfcap", "dac_read_search", "sys_time", "bpf"):
        assert not want & mask(dangerous), dangerous
    st, cs = run_show(secrun, "default")
    assert st["CapPrm"] == st["CapEff"] == st["CapBnd"] == want, st
    # A root workload needs nothing inheritable or ambient: execve gives uid 0 its bounding set.
    assert st["CapInh"] == 0 and st["CapAmb"] == 0
    assert st["NoNewPrivs"] == ["1"]
    assert cs["current"] == (names_of(want), "ep")
    assert cs["bounding"] == names_of(want) and cs["ambient"] == set()


# --- a non-root workload that keeps one capability ----------------------------------------------

BIND_AND_CHOWN = textwrap.dedent("""
    import errno, os, socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", 80)); s.listen(1); print("bind80=OK")
    except OSError as e:
        print("bind80=" + errno.errorcode[e.errno])
    try:
        os.chown(sys.argv[1], 0, 0); print("chown=OK")
    except OSError as e:
        print("chown=" + errno.errorcode[e.errno])
    print("uid=%d euid=%d" % (os.getuid(), os.geteuid()))
""")


def _netbind_profile(write_profile, keep):
    return write_profile(f"""
        [capabilities]
        keep = {keep}
        [identity]
        uid = 65534
        gid = 65534
        [process]
        no_new_privs = true
    """, "netbind")


def _result_lines(out):
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


@need("capsh")
def test_net_bind_service_only_as_nobody(secrun, write_profile, pubdir):
    prof = _netbind_profile(write_profile, '["Cap_Net_Bind_Service"]')
    st, cs = run_show(secrun, prof)
    nb = mask("net_bind_service")
    # Non-root: the kept capability is ambient (and so inheritable), or execve would drop it.
    assert {k: st[k] for k in SETS} == dict.fromkeys(SETS, nb), st
    assert st["Uid"] == ["65534"] * 4 and st["NoNewPrivs"] == ["1"]
    assert cs["current"] == ({"cap_net_bind_service"}, "eip")
    assert cs["bounding"] == cs["ambient"] == {"cap_net_bind_service"}

    # Its own file: even the owner cannot give a file away without CAP_CHOWN.
    target = os.path.join(pubdir, "mine")
    open(target, "w").close()
    os.chown(target, 65534, 65534)
    r = secrun("-p", prof, "--", SYS_PY, "-c", BIND_AND_CHOWN, target)
    assert r.rc == 0, r
    res = _result_lines(r.out)
    assert res["bind80"] == "OK", r
    assert res["chown"] == "EPERM", r
    assert os.stat(target).st_uid == 65534

    # Control: the same workload without the capability cannot bind port 80.
    r = secrun("-p", _netbind_profile(write_profile, "[]"), "--", SYS_PY, "-c", BIND_AND_CHOWN,
               target)
    assert r.rc == 0, r
    assert _result_lines(r.out)["bind80"] == "EACCES", r


# --- setuid-root binaries inside strict ---------------------------------------------------------

SUID_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    printf("euid=%d\n", (int)geteuid());
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "CapEff:", 7) == 0) printf("CapEff=%s", line + 8);
    fflush(stdout);
    execl("/usr/bin/id", "id", "-u", (char *)0);
    return 99;
}
"""


@pytest.fixture
def suid_binary(pubdir):
    src = os.path.join(pubdir, "suid.c")
    exe = os.path.join(pubdir, "suid")
    with open(src, "w") as f:
        f.write(SUID_C)
    subprocess.run(["gcc", "-O", "-o", exe, src], check=True)
    os.chown(exe, 0, 0)
    os.chmod(exe, 0o4755)
    return exe


def _suid_run(secrun, profile, exe):
    r = secrun("-p", profile, "--", exe)
    assert r.rc == 0, r
    lines = r.out.split()
    assert lines[0].startswith("euid=") and lines[1].startswith("CapEff="), r
    return lines[0].split("=")[1], int(lines[1].split("=")[1], 16), lines[2]


@need("gcc")
def test_setuid_root_binary_gains_nothing_in_strict(secrun, suid_binary):
    euid, capeff, id_u = _suid_run(secrun, "strict", suid_binary)
    assert (euid, capeff, id_u) == ("65534", 0, "65534")


@need("gcc")
def test_setuid_root_binary_no_new_privs_and_bounding_set(secrun, write_profile, suid_binary):
    """The two layers one by one, as uid 65534 with no capabilities and the host's (suid)
    filesystem: no_new_privs keeps the setuid bit from switching the uid; without it the
    binary does become euid 0 (so it is really setuid root and the probe can fail), yet the
    empty bounding set still leaves it without any capability."""
    base = "[capabilities]\nkeep = []\n[identity]\nuid = 65534\n[process]\n"
    nnp = write_profile(base + "no_new_privs = true\n", "nnp")
    assert _suid_run(secrun, nnp, suid_binary) == ("65534", 0, "65534")
    no_nnp = write_profile(base + "no_new_privs = false\n", "nonnp")
    assert _suid_run(secrun, no_nnp, suid_binary) == ("0", 0, "0")


# --- root without capabilities ------------------------------------------------------------------

PROBE = textwrap.dedent("""
    import ctypes, errno, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    mnt, victim, pid, control = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    print("pidns=" + ("host" if os.readlink("/proc/self/ns/pid") == sys.argv[5] else "new"))

    def res(name, ret):
        print(name + "=" + ("OK" if ret == 0 else errno.errorcode[ctypes.get_errno()]))
        return ret == 0

    if res("mount", libc.mount(b"none", mnt.encode(), b"tmpfs", 0, None)):
        libc.umount2(mnt.encode(), 0)
    res("init_module", libc.syscall(175, None, ctypes.c_ulong(0), b""))
    fd = os.open("/dev/null", os.O_RDONLY)
    res("finit_module", libc.syscall(313, fd, b"", 0))
    # usermodehelper/bset: the capabilities kernel-spawned helpers (modprobe) get; writing it
    # needs CAP_SYS_MODULE (and CAP_SETPCAP).  The same value is written back.
    try:
        with open("/proc/sys/kernel/usermodehelper/bset") as f:
            cur = f.read()
        with open("/proc/sys/kernel/usermodehelper/bset", "w") as f:
            f.write(cur)
        print("umh_bset=OK")
    except OSError as e:
        print("umh_bset=" + errno.errorcode[e.errno])
    if not control:   # never move the clock when the control run would succeed
        class TS(ctypes.Structure):
            _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
        ts = TS()
        libc.clock_gettime(0, ctypes.byref(ts))
        res("clock_settime", libc.clock_settime(0, ctypes.byref(ts)))
    try:
        os.chown(victim, 0, 0); print("chown=OK")
    except OSError as e:
        print("chown=" + errno.errorcode[e.errno])
    import tempfile                     # its own new file, given away to another uid
    with tempfile.NamedTemporaryFile(dir="/tmp") as own:
        try:
            os.chown(own.name, 1234, 1234); print("chown_own=OK")
        except OSError as e:
            print("chown_own=" + errno.errorcode[e.errno])
    if res("ptrace", libc.ptrace(16, pid, None, None)):          # PTRACE_ATTACH
        os.waitpid(pid, 0)
        libc.ptrace(17, pid, None, None)                          # PTRACE_DETACH
    print("uid=%d" % os.getuid())
""")

PIDNS = os.readlink("/proc/self/ns/pid")
MODULES = os.path.exists("/proc/modules")   # False: this kernel has no loadable modules


@pytest.fixture
def outside(pubdir):
    """A mount point, a file of another user and a process outside the sandbox."""
    mnt = os.path.join(pubdir, "mnt")
    os.mkdir(mnt)
    victim = os.path.join(pubdir, "victim")
    open(victim, "w").close()
    os.chown(victim, 1234, 1234)
    proc = subprocess.Popen(["sleep", "120"])
    try:
        yield mnt, victim, proc.pid
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["umount", "-q", mnt], capture_output=True)


ROOT_NO_CAPS = {
    "root, keep = []": '[capabilities]\nkeep = []\n[process]\nno_new_privs = true\n',
    "root, drop = [all]": '[capabilities]\ndrop = ["ALL"]\n',
    "root, uid 0 set, keep = []": '[capabilities]\nkeep = []\n[identity]\nuid = 0\ngid = 0\n',
}


def _probe(secrun, profile, outside, control="0"):
    mnt, victim, pid = outside
    r = secrun("-p", profile, "--", SYS_PY, "-c", PROBE, mnt, victim, pid, control, PIDNS)
    assert r.rc == 0, r
    return _result_lines(r.out), r


@pytest.mark.parametrize("text", ROOT_NO_CAPS.values(), ids=ROOT_NO_CAPS.keys())
def test_root_without_capabilities_gets_eperm(secrun, write_profile, outside, text):
    """Root on the host's filesystem and pid namespace, with every capability dropped: each
    privileged operation fails with the capability check's EPERM."""
    res, r = _probe(secrun, write_profile(text, "rootnocaps"), outside)
    assert res["uid"] == "0" and res["pidns"] == "host", r
    for op in ("mount", "clock_settime", "chown", "chown_own", "ptrace", "umh_bset"):
        assert res[op] == "EPERM", (op, r)
    if MODULES:
        assert res["init_module"] == res["finit_module"] == "EPERM", r
    else:
        # No module support compiled in: the syscalls do not exist, and the module-loading
        # capability is witnessed by the CAP_SYS_MODULE-gated usermodehelper set instead.
        assert res["init_module"] == res["finit_module"] == "ENOSYS", r
    mnt, victim, _ = outside
    assert os.stat(victim).st_uid == 1234 and not os.path.ismount(mnt)


def test_root_inside_strict_is_denied(secrun, write_profile, outside):
    """Root inside strict: the capability checks deny what they gate; where strict's other
    layers (read-only host filesystem, own pid namespace, seccomp) stop an operation first,
    the errno is theirs, and the operation is still denied.  The capability layer alone is
    asserted by test_root_without_capabilities_gets_eperm."""
    prof = write_profile('extends = ["strict"]\n[identity]\nuid = 0\ngid = 0\n', "rootstrict")
    res, r = _probe(secrun, prof, outside)
    assert res["uid"] == "0", r
    assert res["mount"] == "EPERM", r              # CAP_SYS_ADMIN is checked before anything
    assert res["clock_settime"] == "EPERM", r
    assert res["chown_own"] == "EPERM", r          # a writable file: only CAP_CHOWN decides
    assert res["chown"] in ("EPERM", "EROFS"), r   # the host file, read-only in strict
    assert res["umh_bset"] in ("EPERM", "EROFS"), r  # /proc/sys is read-only in strict
    # ptrace: EPERM from the capability check (or a seccomp rule), ESRCH when its own pid
    # namespace does not even show the process outside.
    assert res["ptrace"] in (("EPERM", "ESRCH") if res["pidns"] == "new" else ("EPERM",)), r
    # Module loading: EPERM from the capability check or a seccomp rule; ENOSYS only where the
    # kernel has no module support and nothing filters the call first.
    for op in ("init_module", "finit_module"):
        assert res[op] in (("EPERM",) if MODULES else ("EPERM", "ENOSYS")), (op, r)
    mnt, victim, _ = outside
    assert os.stat(victim).st_uid == 1234 and not os.path.ismount(mnt)


def test_root_probe_control_succeeds_with_capabilities(secrun, outside):
    """The same probes, under the unconfined profile, do succeed: the EPERMs above come from
    the dropped capabilities, not from the probes."""
    mnt, victim, pid = outside
    r = secrun("-p", "unconfined", "--", SYS_PY, "-c", PROBE, mnt, victim, pid, "1", PIDNS)
    assert r.rc == 0, r
    res = _result_lines(r.out)
    assert res["pidns"] == "host"
    for op in ("mount", "chown", "chown_own", "ptrace", "umh_bset"):
        assert res[op] == "OK", (op, r)
    if MODULES:
        assert res["init_module"] != "EPERM", r
    assert os.stat(victim).st_uid == 0


# --- names, keep and drop -----------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ('keep = ["CAP_NET_BIND_SERVICE", "chown", "Cap_Kill", "cap_3", 2]',
     lambda avail: mask("net_bind_service", "chown", "kill", "fowner", "dac_read_search")),
    ('drop = ["SYS_ADMIN", "cap_net_raw", 16]',
     lambda avail: avail & ~mask("sys_admin", "net_raw", "sys_module")),
    ('keep = ["chown", "kill", "setuid"]\ndrop = ["kill"]',
     lambda avail: mask("chown", "setuid")),
    ('drop = ["all"]', lambda avail: 0),
    ('keep = ["all"]', lambda avail: avail),
    ('keep = ["sys_resource", "chown"]', lambda avail: mask("chown")),  # root lacks it here
], ids=["keep-forms", "drop", "keep-minus-drop", "drop-all", "keep-all", "keep-unheld"])
def test_keep_and_drop_forms_as_root(secrun, write_profile, body, expected):
    avail = own_available()
    want = expected(avail) & avail
    prof = write_profile(f"[capabilities]\n{body}\n", "forms")
    r = secrun("-p", prof, "--", "cat", "/proc/self/status")
    assert r.rc == 0, r
    st = status_of(r.out)
    assert st["CapPrm"] == st["CapEff"] == st["CapBnd"] == want, (hex(want), st)
    assert st["CapInh"] == st["CapAmb"] == 0


def test_cap_numbers_beyond_the_name_table_are_accepted_as_numbers(secrun, write_profile):
    prof = write_profile(f'[capabilities]\nkeep = ["cap_{LAST_CAP}", {LAST_CAP}]\n', "num")
    r = secrun("-p", prof, "--", "cat", "/proc/self/status")
    assert r.rc == 0, r
    assert status_of(r.out)["CapBnd"] == (1 << LAST_CAP) & own_available()


def test_identity_by_name_with_groups(secrun, write_profile, pubdir):
    prof = write_profile("""
        [identity]
        uid = "nobody"
        groups = ["adm", 4242, "nogroup"]
        [capabilities]
        keep = []
    """, "byname")
    r = secrun("-p", prof, "--", "cat", "/proc/self/status")
    assert r.rc == 0, r
    st = status_of(r.out)
    assert st["Uid"] == ["65534"] * 4 and st["Gid"] == ["65534"] * 4   # nobody's primary group
    assert sorted(map(int, st["Groups"])) == [4, 4242, 65534]
    assert st["CapEff"] == st["CapBnd"] == 0


# --- bad input: exit 125, naming it, nothing run -------------------------------------------------

BAD = {
    "unknown capability": ('[capabilities]\nkeep = ["net_bind_servce"]\n',
                           ["[capabilities].keep", "net_bind_servce"]),
    "unknown capability in drop": ('[capabilities]\ndrop = ["CAP_SYS_GOD"]\n',
                                   ["[capabilities].drop", "CAP_SYS_GOD"]),
    "capability beyond the kernel": (f'[capabilities]\nkeep = ["cap_{LAST_CAP + 1}"]\n',
                                     [f"cap_{LAST_CAP + 1}", f"cap_last_cap = {LAST_CAP}"]),
    "unknown user": ('[identity]\nuid = "no-such-user-x"\n',
                     ["[identity].uid", "no-such-user-x"]),
    "negative uid": ('[identity]\nuid = -1\n', ["[identity].uid", "-1"]),
    "negative uid as text": ('[identity]\nuid = "-7"\n', ["[identity].uid", "-7"]),
    "unknown group": ('[identity]\nuid = 0\ngroups = ["no-such-group-x"]\n',
                      ["[identity].groups", "no-such-group-x"]),
    "uid without passwd entry nor gid": ('[identity]\nuid = 54321\n',
                                         ["[identity].uid", "54321", "gid"]),
}


@pytest.mark.parametrize("text, words", BAD.values(), ids=BAD.keys())
def test_bad_input_exits_125_naming_it_and_runs_nothing(secrun, write_profile, tmp_path,
                                                        text, words):
    prof = write_profile(text, "bad")
    sentinel = tmp_path / "ran"
    r = secrun("--no-cache", "-p", prof, "--", "touch", sentinel)
    assert r.rc == 125, r
    line = r.err.strip()
    assert len(line.splitlines()) == 1 and prof in line, r
    for w in words:
        assert w in line, (w, r)
    assert not sentinel.exists()
    # --dry-run plans without running, and catches it too.
    r = secrun("--no-cache", "-n", "-p", prof, "--", "touch", sentinel)
    assert r.rc == 125 and words[-1] in r.err, r


def test_identity_failure_at_launch_names_the_syscall(secrun, write_profile, tmp_path):
    """An id the kernel refuses (here: an unmapped one in a user namespace, or any failure)
    stops the launch at the identity stage."""
    prof = write_profile('[identity]\nuid = 65534\ngid = 65534\n'
                         '[namespaces]\nuser = true\nuser_map = "root"\n', "unmapped")
    sentinel = tmp_path / "ran"
    r = secrun("-p", prof, "--", "touch", sentinel)
    if "namespaces" in r.err and "unknown" in r.err:
        pytest.skip("no [namespaces] plugin yet")
    assert r.rc == 125, r
    assert "stage 'identity'" in r.err and "setresgid(65534)" in r.err and "EINVAL" in r.err, r
    assert not sentinel.exists()


# --- user namespaces: the ids are the namespace's -----------------------------------------------

def test_strict_in_a_user_namespace_maps_nobody_into_the_range(secrun, write_profile):
    prof = write_profile('extends = ["strict"]\n'
                         '[namespaces]\nuser = true\nuser_map = "range"\n', "userns")
    r = secrun("-p", prof, "--", "/bin/sh", "-c", "cat /proc/self/status /proc/self/uid_map")
    if r.rc == 125 and "[namespaces]" in r.err:
        pytest.skip(f"[namespaces] not usable: {r.err.strip()}")
    assert r.rc == 0, r
    st = status_of(r.out)
    assert {k: st[k] for k in SETS} == dict.fromkeys(SETS, 0), st
    assert st["Uid"] == ["65534"] * 4 and st["Groups"] == [] and st["NoNewPrivs"] == ["1"]
    assert r.out.split()[-3:] == ["0", "100000", "65536"], r   # the uid_map: not host ids


def test_kept_capability_for_nonroot_in_a_user_namespace(secrun, write_profile):
    prof = write_profile('[capabilities]\nkeep = ["net_bind_service"]\n'
                         '[identity]\nuid = 1000\ngid = 1000\n'
                         '[namespaces]\nuser = true\nuser_map = "range"\n', "userns2")
    r = secrun("-p", prof, "--", "cat", "/proc/self/status")
    if r.rc == 125 and "[namespaces]" in r.err:
        pytest.skip(f"[namespaces] not usable: {r.err.strip()}")
    assert r.rc == 0, r
    st = status_of(r.out)
    assert {k: st[k] for k in SETS} == dict.fromkeys(SETS, mask("net_bind_service")), st
    assert st["Uid"] == ["1000"] * 4


# --- audit: the expect facts are what a live sandbox shows ---------------------------------------

def _audit_rows(profile):
    r = run_secrun("audit", "--profile", profile, "--format", "json")
    assert r.rc in (0, 1), r  # (1: above the threshold)
    return [row for row in json.loads(r.out)["controls"]
            if row["plugin"] in ("capabilities", "identity")]


@pytest.mark.parametrize("which", ["strict", "default", "netbind"])
def test_audit_expectations_match_the_live_sandbox(secrun, write_profile, which):
    profile = which if which != "netbind" else _netbind_profile(write_profile,
                                                                '["net_bind_service"]')
    rows = _audit_rows(profile)
    expect = {}
    for row in rows:
        assert row["status"] in ("enforced", "not-configured")
        assert 0.0 <= row["weight"] <= 1.0
        expect.update(row.get("expect", {}))
    assert {f"status.{s}" for s in SETS} <= set(expect)
    r = secrun("-p", profile, "--", "cat", "/proc/self/status")
    assert r.rc == 0, r
    st = status_of(r.out)
    for fact, value in expect.items():
        kind, _, name = fact.partition(".")
        if kind == "status":
            assert "%016x" % st[name] == value, (fact, value, st)
        elif name == "uid":
            assert st["Uid"][0] == value
        elif name == "gid":
            assert st["Gid"][0] == value
        elif name == "groups":
            assert " ".join(st["Groups"]) == value
    if which == "strict":
        row = next(r for r in rows if r["control"] == "capabilities")
        assert row["weight"] == 0.0 and expect["id.uid"] == "65534"


def test_user_names_make_the_plan_depend_on_the_user_database(write_profile):
    from secrun import plan as _plan

    prof = write_profile('[identity]\nuid = "nobody"\ngid = "nogroup"\n', "deps")
    p = _plan.build([prof])
    deps = [d for d, _ in p["deps"]]
    assert "/etc/passwd" in deps and "/etc/group" in deps
    assert p["plan"]["identity"]["uid"] == 65534 and p["plan"]["identity"]["groups"] == []


def test_supplementary_groups_in_a_user_namespace(secrun, write_profile, tmp_path):
    """A root-written map ("range") allows setgroups, so groups are the namespace's; a map
    written with setgroups=deny refuses them, and the launch stops naming why."""
    prof = write_profile('[identity]\nuid = 1000\ngid = 1000\ngroups = ["adm", 20]\n'
                         '[namespaces]\nuser = true\nuser_map = "range"\n', "nsgroups")
    r = secrun("-p", prof, "--", "cat", "/proc/self/status")
    if r.rc == 125 and "[namespaces]" in r.err:
        pytest.skip(f"[namespaces] not usable: {r.err.strip()}")
    assert r.rc == 0, r
    assert sorted(map(int, status_of(r.out)["Groups"])) == [4, 20]

    prof = write_profile('[identity]\nuid = 0\ngroups = [4]\n'
                         '[namespaces]\nuser = true\nuser_map = "root"\n', "nsdeny")
    sentinel = tmp_path / "ran"
    r = secrun("-p", prof, "--", "touch", sentinel)
    assert r.rc == 125, r
    assert "stage 'identity'" in r.err and "setgroups([4])" in r.err and "deny" in r.err, r
    assert not sentinel.exists()


# --- [process] rlimits: set with libc's setrlimit from the limits packed at planning -------------

@needs_root
def test_rlimits_soft_hard_and_unlimited_hold_inside(secrun, write_profile):
    prof = write_profile('[process]\nrlimits = { nofile = "100:200", core = 0, cpu = "unlimited",'
                         ' fsize = "1M" }\n', "rlim")
    r = secrun("-p", prof, "--", "/bin/sh", "-c",
               "ulimit -Sn; ulimit -Hn; ulimit -Sc; ulimit -Hc; ulimit -St; ulimit -Ht; "
               "ulimit -Sf; ulimit -Hf")
    assert r.rc == 0, r
    # sh prints fsize in 512-byte blocks
    assert r.out.split() == ["100", "200", "0", "0", "unlimited", "unlimited", "2048", "2048"], r


@needs_root
def test_rlimit_the_kernel_refuses_stops_the_launch_naming_setrlimit(secrun, write_profile,
                                                                   tmp_path):
    # Above fs.nr_open the kernel refuses RLIMIT_NOFILE even to root (EPERM).
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1
    prof = write_profile(f"[process]\nrlimits = {{ nofile = {too_many} }}\n", "rlimbad")
    sentinel = tmp_path / "ran"
    r = secrun("-p", prof, "--", "touch", sentinel)
    assert r.rc == 125, r
    assert ("stage 'rlimits' failed in plugin 'process': setrlimit(RLIMIT_NOFILE): Operation "
            "not permitted (EPERM)") in r.err, r
    assert not sentinel.exists()


def test_rlimit_beyond_64_bits_is_refused_at_planning(secrun, write_profile):
    prof = write_profile('[process]\nrlimits = { as = "99999999999T" }\n', "rlimhuge")
    r = secrun("-p", prof, "--", "/bin/true")
    assert r.rc == 125, r
    assert prof in r.err and "[process].rlimits" in r.err and "largest limit" in r.err, r
