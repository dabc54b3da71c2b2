"""Facts about a running process seen from outside it (``secrun audit --pid`` and, for the
probe of ``--live``, the part a sandboxed process cannot see of itself: its cgroup's limits).

The ``/proc`` parsing is shared with the probe (:mod:`secrun.audit.probe`), so both views agree by
construction.  Added here:

- ids as seen inside the process's user namespace (``/proc/PID/uid_map``);
- the limit files of the process's cgroups, found through the reader's cgroup mounts;
- which sensitive system calls the process's seccomp filters block: the filters are read with
  ``PTRACE_SECCOMP_GET_FILTER`` (the process is stopped for the few microseconds that takes, and
  resumed) and evaluated with a small classic-BPF interpreter on the same arguments the probe
  uses; needs ``CAP_SYS_ADMIN`` and ptrace access, otherwise the syscall facts are left out;
- the Landlock ABI the kernel offers.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

from . import probe

CGROUP_FILES = ("memory.max", "memory.swap.max", "memory.high", "pids.max", "cpu.max",
                "cpu.weight", "io.weight", "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes", "cpu.cfs_quota_us", "cpu.cfs_period_us",
                "cpu.shares")


def reference(pid: str = "self") -> dict:
    """What "host" means: the namespaces and the /tmp device of ``pid`` (the auditor itself
    for ``--live``, PID 1 for ``--pid``)."""
    proc = f"/proc/{pid}"
    tmp = probe.mount_for(probe.mounts(proc), "/tmp")
    return {"ns": probe.ns_links(proc), "tmp_dev": tmp[3] if tmp else ""}


def _map_id(proc: str, kind: str, seen: str) -> str:
    """An id as the reader sees it -> the id inside the process's user namespace."""
    try:
        outside = int(seen)
    except ValueError:
        return seen
    text = probe._read(f"{proc}/{kind}_map")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        inside, start, count = map(int, parts)
        if start <= outside < start + count:
            return str(outside - start + inside)
    return "65534" if text.strip() else str(outside)  # unmapped ids show as the overflow id


def outside(pid: int, ref: dict, syscalls: bool = True) -> tuple[dict[str, str], list[str]]:
    """(facts, notes) about process ``pid``."""
    proc = f"/proc/{pid}"
    if not os.path.isdir(proc):
        raise ProcessLookupError(f"no process {pid}")
    notes: list[str] = []
    facts = probe.proc_facts(proc, ref)
    if not facts.get("status.CapEff"):
        raise PermissionError(f"cannot read {proc}/status")
    facts["id.uid"] = _map_id(proc, "uid", facts["id.uid"])
    facts["id.gid"] = _map_id(proc, "gid", facts["id.gid"])
    facts["id.groups"] = " ".join(_map_id(proc, "gid", g) for g in facts["id.groups"].split())
    facts.update(cgroup_facts(pid))
    facts.update(probe.view_facts(probe.mount_tree(proc), (), facts.get("ns.cgroup", ""),
                                  proc=proc, root=f"{proc}/root"))
    facts["landlock.abi"] = landlock_abi()
    if syscalls:
        try:
            facts.update(filtered_syscalls(pid, facts))
        except OSError as e:
            notes.append(f"system calls not evaluated: reading the seccomp filters of {pid} "
                         f"failed ({e.filename or 'ptrace'}: {os.strerror(e.errno or 0)})")
    return facts, notes


# --- cgroups -----------------------------------------------------------------------------------

def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """{controller or "unified": (mount point, mount root)} of the reader."""
    out: dict[str, tuple[str, str]] = {}
    for line in probe._read("/proc/self/mountinfo").splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-")
        except ValueError:
            continue
        fstype, opts = parts[sep + 1], parts[sep + 3].split(",")
        if fstype == "cgroup2":
            out.setdefault("unified", (parts[4], parts[3]))
        elif fstype == "cgroup":
            for o in opts:
                out.setdefault(o, (parts[4], parts[3]))
    return out


def cgroup_dirs(pid: int | str) -> dict[str, str]:
    """{controller or "unified": directory of the process's group}."""
    mounts = _cgroup_mounts()
    dirs = {}
    for line in probe._read(f"/proc/{pid}/cgroup").splitlines():
        hid, ctrl, path = line.split(":", 2)
        for c in (["unified"] if hid == "0" else ctrl.split(",")):
            if c not in mounts:
                continue
            point, root = mounts[c]
            rel = path[len(root):] if root != "/" and path.startswith(root) else path
            dirs[c] = point + rel.rstrip("/") if rel != "/" else point
    return dirs


def cgroup_file(dirs: dict[str, str], name: str) -> str | None:
    """The content of cgroup file ``name`` for the process (v2 first, then the v1 controller
    named by the file's prefix), or None."""
    cands = [dirs.get("unified")]
    ctrl = name.split(".", 1)[0]
    cands.append(dirs.get(ctrl))
    if ctrl == "cpu":
        cands.append(dirs.get("cpuacct"))
    for d in cands:
        if d and os.path.exists(os.path.join(d, name)):
            return probe._read(os.path.join(d, name)).strip()
    return None


def cgroup_facts(pid: int) -> dict[str, str]:
    dirs = cgroup_dirs(pid)
    facts = {}
    for name in CGROUP_FILES:
        v = cgroup_file(dirs, name)
        if v is not None:
            facts[f"cgroup.{name}"] = v
    facts["cgroup.dirs"] = " ".join(f"{k}={v}" for k, v in sorted(dirs.items()))
    facts["cgroup.locked"] = group_locked(dirs)
    return facts


def group_locked(dirs: dict[str, str]) -> str:
    """``"yes"`` when every secrun group of the process is locked by its supervisor (the lock
    that ``secrun cgroups gc`` tells a live run by), ``"no"`` when one is free, ``"none"`` when
    the process is in no secrun group.  The test lock is dropped at once."""
    import fcntl

    groups = sorted({d for d in dirs.values() if os.path.basename(d).startswith("secrun-")})
    if not groups:
        return "none"
    for d in groups:
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return "no"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        except OSError:
            return "no"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return "no"
        finally:
            os.close(fd)
    return "yes"


def landlock_abi() -> str:
    """The Landlock ABI version the kernel offers ("0": none; "?": secrun does not know the
    call's number on this machine)."""
    from ..kernel import NR, syscall

    if "landlock_create_ruleset" not in NR:
        return "?"
    ret = syscall("landlock_create_ruleset")(None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return str(ret) if ret > 0 else "0"


LANDLOCK_CREATE_RULESET_VERSION = 1


# --- seccomp: read the filters, evaluate them --------------------------------------------------

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
RET_ALLOW, RET_LOG = 0x7FFF0000, 0x7FFC0000


def read_filters(pid: int) -> list[bytes]:
    """The process's seccomp filter programs, newest first (as the kernel runs them)."""
    import ctypes
    import errno

    from ..kernel import check, libc

    def pt(req: int, addr: int | None = None, data: int | None = None,
           what: str = "ptrace") -> int:
        return check(libc.ptrace(req, pid, addr, data), what)

    pt(PTRACE_SEIZE, what="ptrace(PTRACE_SEIZE)")
    try:
        pt(PTRACE_INTERRUPT, what="ptrace(PTRACE_INTERRUPT)")
        os.waitpid(pid, WALL)
        progs: list[bytes] = []
        for index in range(1024):
            try:
                n = pt(PTRACE_SECCOMP_GET_FILTER, index, None,
                       what="ptrace(PTRACE_SECCOMP_GET_FILTER)")
            except OSError as e:
                if e.errno == errno.ENOENT:  # no filter at this index
                    break
                raise
            buf = ctypes.create_string_buffer(n * 8)
            pt(PTRACE_SECCOMP_GET_FILTER, index, ctypes.addressof(buf))
            progs.append(buf.raw)
        return progs
    finally:
        libc.ptrace(PTRACE_DETACH, pid, None, None)


def run_bpf(prog: bytes, data: bytes) -> int:
    """Classic BPF as seccomp runs it, over the 64-byte ``seccomp_data`` ``data``."""
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    m32 = 0xFFFFFFFF
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # LD
            mode = code & 0xE0
            if mode == 0x20:
                a = struct.unpack_from("<I", data, k)[0]
            elif mode == 0x00:
                a = k
            elif mode == 0x60:
                a = mem[k]
            elif mode == 0x80:
                a = len(data)
            else:
                raise ValueError(f"bpf: load mode {code:#x}")
        elif cls == 0x01:  # LDX
            mode = code & 0xE0
            x = k if mode == 0x00 else mem[k] if mode == 0x60 else len(data)
        elif cls == 0x02:
            mem[k] = a
        elif cls == 0x03:
            mem[k] = x
        elif cls == 0x04:  # ALU
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x00:
                a = (a + src) & m32
            elif op == 0x10:
                a = (a - src) & m32
            elif op == 0x20:
                a = (a * src) & m32
            elif op == 0x30:
                a = a // src if src else 0
            elif op == 0x40:
                a |= src
            elif op == 0x50:
                a &= src
            elif op == 0x60:
                a = (a << src) & m32
            elif op == 0x70:
                a >>= src
            elif op == 0x80:
                a = (-a) & m32
            elif op == 0x90:
                a = a % src if src else 0
            elif op == 0xA0:
                a ^= src
        elif cls == 0x05:  # JMP
            op = code & 0xF0
            src = x if code & 0x08 else k
            if op == 0x00:
                pc += k
                continue
            cond = (a == src if op == 0x10 else a > src if op == 0x20 else
                    a >= src if op == 0x30 else bool(a & src))
            pc += jt if cond else jf
        elif cls == 0x06:  # RET
            return (a if code & 0x18 == 0x10 else k) & m32
        elif cls == 0x07:
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
    return 0  # falling off the end: the kernel rejects such programs; treat as kill


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def filter_action(progs: list[bytes], nr: int, args: Sequence[int], arch: int) -> int:
    """The action all filters together take (the most restrictive one wins)."""
    words = [(a & 0xFFFFFFFFFFFFFFFF) for a in (list(args) + [0] * 6)[:6]]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *words)
    best = RET_ALLOW
    for prog in progs:
        ret = run_bpf(prog, data)
        if _s32(ret & 0xFFFF0000) < _s32(best & 0xFFFF0000):
            best = ret
    return best


def filtered_syscalls(pid: int, facts: dict[str, str]) -> dict[str, str]:
    machine = os.uname().machine
    if machine not in AUDIT_ARCH:
        return {}
    mode = facts.get("status.Seccomp", "0")
    progs = read_filters(pid) if mode == "2" else []
    arch_i = 0 if machine == "x86_64" else 1
    eff = int(facts.get("status.CapEff", "0") or "0", 16)
    new_userns = facts.get("ns.user") == "new"
    # What the kernel itself refuses (a call it lacks: ENOSYS; modules disabled, lockdown:
    # EPERM) shows in the auditor's own probe, when the auditor is unfiltered and holds every
    # capability the process holds.
    own = probe._status("/proc/self")
    baseline = {}
    if own.get("Seccomp", "0") == "0" and not eff & ~int(own.get("CapEff", "0"), 16):
        baseline = probe.probe_syscalls()
    out = {}
    for name, spec in probe.SYSCALLS.items():
        nr, args, cap = spec[1] if arch_i else spec[0], spec[2], spec[3]
        if nr is None:
            continue
        if mode == "1":
            blocked = True
        else:
            act = filter_action(progs, nr, args, AUDIT_ARCH[machine])
            blocked = act & 0xFFFF0000 not in (RET_ALLOW, RET_LOG)
        if cap is not None and not blocked:
            # Calls that check a capability before their arguments are refused without it;
            # module, kexec and accounting capabilities count only in the initial user ns.
            init_only = cap in (16, 20) or name == "kexec_load"
            blocked = not eff >> cap & 1 or (init_only and new_userns)
        if baseline.get(f"syscall.{name}") == "blocked":
            blocked = True
        out[f"syscall.{name}"] = "blocked" if blocked else "allowed"
    return out
