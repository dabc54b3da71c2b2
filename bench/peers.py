"""The peers secrun is measured against, and the command line each tool is launched with.

A comparison is only fair if the peers are configured like secrun's `strict` profile, so this
module installs them (Debian packages, when run as root), gives bubblewrap, runc and crun one
common seccomp deny-list (DENY), builds the OCI bundles for runc and crun (read-only busybox
rootfs, the usual namespaces, no capabilities, no_new_privs), makes the private cgroup2 mount
namespace crun needs on this host's hybrid cgroup layout, and describes every way of launching a
workload as a `Tool`: the references (bare /bin/true, `python -c pass`), the peers, and secrun
under its profiles.  Nothing here is timed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from harness import PY, SECRUN, WORK, log, note, run

# Debian package of each peer tool, installed by the harness when run as root.
PEER_PACKAGES = {"hyperfine": "hyperfine", "bwrap": "bubblewrap", "firejail": "firejail",
                 "runc": "runc", "crun": "crun", "busybox": "busybox-static", "gcc": "gcc",
                 "strace": "strace"}

# The seccomp deny-list given to bubblewrap, runc and crun: the calls every default container or
# sandbox profile refuses (kernel modules, kexec, mount, ptrace, keyrings, bpf, perf, clock and
# swap control, ...), EPERM, everything else allowed.  firejail uses its own built-in list
# (`--seccomp`), secrun its `strict` profile.
DENY = ["acct", "add_key", "adjtimex", "bpf", "clock_adjtime", "clock_settime",
        "delete_module", "fanotify_init", "finit_module", "init_module", "ioperm", "iopl",
        "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "modify_ldt",
        "mount", "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
        "open_tree", "fsopen", "fsmount", "perf_event_open", "pivot_root", "process_vm_readv",
        "process_vm_writev", "ptrace", "quotactl", "reboot", "request_key", "setns",
        "settimeofday", "swapoff", "swapon", "sysfs", "syslog", "umount2", "unshare", "uselib",
        "userfaultfd", "vhangup"]


# --- setup: peers, workloads, bundles -------------------------------------------------------------

def install_peers() -> None:
    missing = sorted({pkg for tool, pkg in PEER_PACKAGES.items() if not shutil.which(tool)})
    if not missing:
        return
    if os.geteuid() != 0:
        note(f"not root: cannot install {', '.join(missing)}; the tools they provide are skipped")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    base = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
    log(f"installing {' '.join(missing)} (apt)")
    if run(base + missing, env=env).returncode == 0:
        return
    run(["apt-get", "update", "-qq"], env=env)
    for pkg in missing:
        r = run(base + [pkg], env=env)
        if r.returncode != 0:
            note(f"apt-get install {pkg} failed ({r.stderr.strip().splitlines()[-1:]}); skipped")


def seccomp_bpf() -> str | None:
    """The deny-list compiled to classic BPF for bubblewrap's --seccomp FD (pyseccomp)."""
    path = os.path.join(WORK, "deny.bpf")
    code = (
        "import sys, errno, pyseccomp as s\n"
        "f = s.SyscallFilter(s.ALLOW)\n"
        "for n in sys.argv[2:]:\n"
        "    try: f.add_rule(s.ERRNO(errno.EPERM), n)\n"
        "    except OSError: pass\n"
        "with open(sys.argv[1], 'wb') as o: f.export_bpf(o)\n")
    r = run([PY, "-c", code, path] + DENY)
    if r.returncode != 0:
        note(f"could not compile the bubblewrap seccomp filter: {r.stderr.strip()[-300:]}")
        return None
    return path


def oci_bundle(runtime: str, workload: list[str], name: str) -> str | None:
    """An OCI bundle: rootfs = busybox-static as /bin/true and /bin/sleep; config.json from
    `<runtime> spec`, made comparable to secrun strict: read-only root, pid/net/ipc/uts/mount/
    cgroup namespaces, no capabilities, no_new_privs, the deny-list seccomp filter."""
    busybox = shutil.which("busybox")
    if not busybox:
        return None
    bundle = os.path.join(WORK, f"bundle-{runtime}-{name}")
    shutil.rmtree(bundle, ignore_errors=True)
    os.makedirs(os.path.join(bundle, "rootfs", "bin"))
    for applet in ("true", "sleep"):
        shutil.copy(busybox, os.path.join(bundle, "rootfs", "bin", applet))
    r = run([runtime, "spec"], cwd=bundle)
    if r.returncode != 0:
        note(f"{runtime} spec failed: {r.stderr.strip()}")
        return None
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    proc = cfg["process"]
    proc["terminal"] = False
    proc["args"] = workload
    proc["capabilities"] = {k: [] for k in ("bounding", "effective", "permitted", "ambient")}
    proc["noNewPrivileges"] = True
    cfg["root"] = {"path": "rootfs", "readonly": True}
    linux = cfg["linux"]
    types = {ns["type"] for ns in linux["namespaces"]}
    for t in ("pid", "network", "ipc", "uts", "mount", "cgroup"):
        if t not in types:
            linux["namespaces"].append({"type": t})
    if runtime == "crun":
        # crun puts a device allow-list into an eBPF cgroup program, which needs RLIMIT_MEMLOCK
        # raised, which needs CAP_SYS_RESOURCE (root lacks it here): no device rules for crun.
        linux.pop("resources", None)
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": DENY, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=1)
    return bundle


class CrunNamespace:
    """A persistent private mount namespace where only cgroup2 is mounted at /sys/fs/cgroup
    (crun 1.8 refuses this host's hybrid v1+v2 layout).  The timer's child setns()es into it
    before exec, so crun pays no extra exec for it."""

    def __init__(self):
        self.dir = None
        self.file = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="secrun-bench-", dir="/run")
        self.file = os.path.join(self.dir, "mnt")
        open(self.file, "w").close()
        for cmd in (["mount", "--bind", self.dir, self.dir], ["mount", "--make-private", self.dir]):
            r = run(cmd)
            if r.returncode:
                raise OSError(f"{' '.join(cmd)}: {r.stderr.strip()}")
        r = run(["unshare", f"--mount={self.file}", "--propagation", "private", "sh", "-c",
                 "umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup"])
        if r.returncode:
            raise OSError(f"unshare/mount cgroup2 failed: {r.stderr.strip()}")
        return self

    def __exit__(self, *exc):
        if self.file:
            run(["umount", self.file])
        if self.dir:
            run(["umount", self.dir])
            shutil.rmtree(self.dir, ignore_errors=True)


# --- the tools ---------------------------------------------------------------------------------

class Tool:
    """One way of launching a workload.  ``argv(workload, n)`` gives the command line;
    ``fds`` maps child fd -> file opened before exec; ``mntns`` is a mount namespace to enter."""

    def __init__(self, key, label, make, *, fds=None, mntns=None, kind="peer", confinement="",
                 workloads=("true", "sleep")):
        self.key, self.label, self.make = key, label, make
        self.fds = fds or {}
        self.mntns = mntns
        self.kind = kind
        self.confinement = confinement
        self.workloads = workloads
        self.ok = True
        self.why = ""

    def argv(self, workload="true", n=0) -> list[str]:
        return [a.replace("{n}", str(n)) for a in self.make(workload)]

    def shown(self, workload="true") -> str:
        extra = "".join(f" {fd}<{p}" for fd, p in self.fds.items())
        pre = "(in crun's cgroup2 mount namespace) " if self.mntns else ""
        return pre + " ".join(self.argv(workload, 1)).replace("bench-1", "bench-$N") + extra


WORKLOADS = {"true": ["/bin/true"], "sleep": ["/bin/sleep", "30"]}
ROOTLESS_UID = 4242


def rootless_cache() -> str | None:
    """A plan cache directory for the rootless row (the user's own, 0700, under /tmp), or None
    when this run cannot measure one (not root, no setpriv)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    d = f"/tmp/secrun-bench-{ROOTLESS_UID}"
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chown(d, ROOTLESS_UID, ROOTLESS_UID)
    os.chmod(d, 0o700)
    return d


def make_tools(ns: CrunNamespace | None, bpf: str | None, quick: bool) -> list[Tool]:
    tools = []
    which = shutil.which
    tools.append(Tool("true", "/bin/true (bare)", lambda w: WORKLOADS[w], kind="ref",
                      confinement="none"))
    tools.append(Tool("python", "python -c pass (venv)", lambda w: [PY, "-c", "pass"],
                      kind="ref", confinement="none (the interpreter secrun runs on)",
                      workloads=("true",)))
    if which("unshare"):
        u = which("unshare")
        tools.append(Tool("unshare", "unshare", lambda w: [u, "--pid", "--fork", "--mount",
                          "--uts", "--ipc", "--net"] + WORKLOADS[w],
                          confinement="pid, mount, uts, ipc, net namespaces; no cap drop, "
                          "no seccomp"))
    if which("bwrap") and bpf:
        b = which("bwrap")
        tools.append(Tool("bwrap", "bubblewrap", lambda w: [
            b, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--cap-drop", "ALL", "--seccomp", "9"] + WORKLOADS[w], fds={9: bpf},
            confinement=f"user/pid/net/ipc/uts/cgroup namespaces, read-only /, no caps, "
            f"{len(DENY)}-call deny-list seccomp"))
    elif not which("bwrap"):
        note("bubblewrap not installed: skipped")
    if which("firejail"):
        fj = which("firejail")
        tools.append(Tool("firejail", "firejail minimal", lambda w: [
            fj, "--noprofile", "--caps.drop=all", "--seccomp", "--net=none"] + WORKLOADS[w],
            confinement="mount/pid namespaces, net=none (new empty net ns), no caps, "
            "firejail's built-in default seccomp list"))
    else:
        note("firejail not installed: skipped")
    for rt in ("runc", "crun"):
        exe = which(rt)
        if not exe:
            note(f"{rt} not installed: skipped")
            continue
        if rt == "crun" and ns is None:
            note("crun skipped: its cgroup2 mount namespace could not be made")
            continue
        if rt == "crun":
            tools.append(Tool("true-ns", "/bin/true via setns helper", lambda w: WORKLOADS[w],
                              mntns=ns.file, kind="ref", workloads=("true",),
                              confinement="none: the cost crun's row pays for entering its "
                              "mount namespace (benchexec: setns + one extra exec)"))
        bundles = {w: oci_bundle(rt, WORKLOADS[w], w) for w in WORKLOADS}
        if not all(bundles.values()):
            note(f"{rt} skipped: no OCI bundle (busybox-static missing?)")
            continue
        tools.append(Tool(rt, rt, lambda w, exe=exe, b=bundles: [
            exe, "run", "--bundle", b[w], "bench-{n}"],
            mntns=ns.file if rt == "crun" else None,
            confinement="OCI bundle: pid/net/ipc/uts/mount/cgroup namespaces, read-only "
            f"busybox rootfs, no caps, no_new_privs, {len(DENY)}-call deny-list seccomp, "
            + ("cgroup v1 (cgroupfs)" if rt == "runc" else "cgroup v2")))
    for prof in ("unconfined", "strict"):
        tools.append(Tool(f"secrun-{prof}", f"secrun {prof}", lambda w, p=prof: [
            SECRUN, "--profile", p, "--"] + WORKLOADS[w], kind="secrun",
            confinement=f"profile `{prof}` (see below)"))
    cache = rootless_cache()
    if cache is not None:
        setpriv = which("setpriv")
        tools.append(Tool("secrun-strict-rootless", "secrun strict, rootless", lambda w: [
            setpriv, f"--reuid={ROOTLESS_UID}", f"--regid={ROOTLESS_UID}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--", "/usr/bin/env",
            f"XDG_CACHE_HOME={cache}", SECRUN, "--profile", "strict", "--"] + WORKLOADS[w],
            kind="secrun", workloads=("true",),
            confinement=f"profile `strict` run by uid {ROOTLESS_UID} (no passwd entry, no "
            "delegated cgroup tree: a user namespace mapping it to 65534, the cgroup limits "
            "substituted by rlimits); setpriv and env are exec'd before secrun (~1 ms)"))
    if not quick:
        tools.append(Tool("secrun-strict-nocache", "secrun strict, no plan cache", lambda w: [
            SECRUN, "--no-cache", "--profile", "strict", "--"] + WORKLOADS[w], kind="secrun",
            confinement="profile `strict`, plan rebuilt (cold cache)", workloads=("true",)))
    return tools
