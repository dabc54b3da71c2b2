"""The ``seccomp`` plugin's part of a live audit: the ``syscall.<name>`` facts.

- Inside (``secrun audit --live``): :func:`secrun_live_probe` returns the source of
  :mod:`.probe`, which calls each sensitive call of its table harmlessly.
- Outside (``secrun audit --pid``): :func:`secrun_live_facts` reads the process's seccomp
  filters with ``PTRACE_SECCOMP_GET_FILTER`` (the process is seized and stopped for the few
  microseconds that takes, then detached; needs ``CAP_SYS_ADMIN`` and ptrace access, otherwise
  the facts are left out with a warning; a process that does not stop within a second is let
  go, with a warning too) and evaluates them with a small classic-BPF interpreter on the
  probe's own calls and arguments.  A filter that reads the instruction pointer (which the
  evaluation cannot know) makes the facts unverifiable: none are reported, with a warning.

Audit time only: a launch never imports this module.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from secrun import hookimpl
from secrun.context import AuditContext

from . import probe

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_SECCOMP_GET_FILTER = 0x420C
WALL = 0x40000000
# AUDIT_ARCH_* per column of probe.SYSCALLS (x86_64, aarch64)
AUDIT_ARCH = (0xC000003E, 0xC00000B7)
RET_ALLOW, RET_LOG = 0x7FFF0000, 0x7FFC0000
M32 = 0xFFFFFFFF
# Capabilities that count only in the initial user namespace: sys_module, sys_pacct (and
# sys_boot for kexec_load, see _capable).
INIT_ONLY = (16, 20)
# How long the process may take to reach the interrupt-stop its filters are read in (seconds)
STOP_TIMEOUT = 1.0
# seccomp_data.instruction_pointer: bytes 8..15
IP_START, IP_END = 8, 16


@hookimpl
def secrun_live_probe() -> str:
    with open(probe.__file__, encoding="utf-8") as f:
        return f.read()


@hookimpl
def secrun_live_facts(ctx: AuditContext) -> dict[str, str]:
    """``syscall.<name>`` of ``ctx.pid``, from its filters.  Not when this plugin's plan is
    audited live: the probe then reports the same calls from inside, and that view wins."""
    if ctx.pid is None or ctx.plan is not None:
        return {}
    try:
        return filtered_syscalls(ctx.pid)
    except Unverifiable as e:
        ctx.warn(str(e))
        return {}
    except OSError as e:
        ctx.warn(f"system calls not evaluated: reading the seccomp filters of {ctx.pid} "
                 f"failed ({e.filename or 'ptrace'}: {os.strerror(e.errno or 0)})")
        return {}


# --- reading the filters -----------------------------------------------------------------------

class Unverifiable(Exception):
    """The filters cannot be read or evaluated faithfully: the audit reports no ``syscall.*``
    facts, and says why (the text ends in "system calls not evaluated")."""


def read_filters(pid: int, timeout: float = STOP_TIMEOUT) -> list[bytes]:
    """The process's seccomp filter programs, newest first (as the kernel runs them).

    A thread of its own is the tracer, and it ends with the reading: a process that does not
    reach the interrupt-stop within ``timeout`` seconds (an uninterruptible sleep that
    ``PTRACE_INTERRUPT`` does not end, e.g. a ``vfork`` parent whose child blocks before its
    exec) cannot be detached (``PTRACE_DETACH`` needs a stopped tracee), but the tracer's exit
    releases it, now rather than when the audit ends; :class:`Unverifiable` is raised then."""
    import threading

    out: list[list[bytes]] = []
    failed: list[BaseException] = []

    def tracer() -> None:
        try:
            out.append(_read_filters(pid, timeout))
        except BaseException as e:  # re-raised in the caller's thread
            failed.append(e)

    t = threading.Thread(target=tracer, name=f"secrun-ptrace-{pid}")
    t.start()
    t.join()
    if failed:
        raise failed[0]
    return out[0]


def _stopped(pid: int, timeout: float) -> bool:
    """Whether the seized, interrupted ``pid`` reported a stop (or its end) within
    ``timeout`` seconds (polled: ``waitpid`` has no timeout)."""
    import time

    end = time.monotonic() + timeout
    nap = 0.0002
    while True:
        if os.waitpid(pid, os.WNOHANG | WALL)[0] == pid:
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(nap)
        nap = min(nap * 2, 0.02)


def _read_filters(pid: int, timeout: float) -> list[bytes]:
    import ctypes
    import errno

    from secrun.kernel import check, libc

    def pt(req: int, addr: int | None = None, data: int | None = None,
           what: str = "ptrace") -> int:
        return check(libc.ptrace(req, pid, addr, data), what)

    pt(PTRACE_SEIZE, what="ptrace(PTRACE_SEIZE)")
    try:
        pt(PTRACE_INTERRUPT, what="ptrace(PTRACE_INTERRUPT)")
        if not _stopped(pid, timeout):
            raise Unverifiable(
                f"process {pid} did not stop within {timeout:g} s for its seccomp filters to be "
                "read (an uninterruptible sleep, e.g. a vfork parent waiting for its child): "
                "system calls not evaluated")
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
        # fails (ESRCH) when the process never stopped: the tracer thread's exit releases it
        libc.ptrace(PTRACE_DETACH, pid, None, None)


# --- classic BPF as seccomp runs it --------------------------------------------------------------

class Machine:
    """The registers of a classic-BPF program over a ``seccomp_data``."""

    __slots__ = ("a", "x", "mem", "data")

    def __init__(self, data: bytes) -> None:
        self.a = self.x = 0
        self.mem = [0] * 16
        self.data = data


def _ld(m: Machine, code: int, k: int) -> None:
    mode = code & 0xE0
    if mode == 0x20:
        if k < IP_END and k + 4 > IP_START:
            raise Unverifiable(
                "a filter depends on the instruction pointer: it loads seccomp_data offset "
                f"{k}, the address a call is made from, which is not known outside the process")
        m.a = struct.unpack_from("<I", m.data, k)[0]
    elif mode == 0x00:
        m.a = k
    elif mode == 0x60:
        m.a = m.mem[k]
    elif mode == 0x80:
        m.a = len(m.data)
    else:
        raise ValueError(f"bpf: load mode {code:#x}")


def _ldx(m: Machine, code: int, k: int) -> None:
    mode = code & 0xE0
    m.x = k if mode == 0x00 else m.mem[k] if mode == 0x60 else len(m.data)


def _st(m: Machine, code: int, k: int) -> None:
    m.mem[k] = m.a


def _stx(m: Machine, code: int, k: int) -> None:
    m.mem[k] = m.x


_ALU: dict[int, Callable[[int, int], int]] = {
    0x00: lambda a, s: a + s,
    0x10: lambda a, s: a - s,
    0x20: lambda a, s: a * s,
    0x30: lambda a, s: a // s if s else 0,
    0x40: lambda a, s: a | s,
    0x50: lambda a, s: a & s,
    0x60: lambda a, s: a << s if s < 32 else 0,
    0x70: lambda a, s: a >> s,
    0x80: lambda a, s: -a,
    0x90: lambda a, s: a % s if s else 0,
    0xA0: lambda a, s: a ^ s,
}


def _alu(m: Machine, code: int, k: int) -> None:
    op = _ALU.get(code & 0xF0)
    if op is not None:
        m.a = op(m.a, m.x if code & 0x08 else k) & M32


def _misc(m: Machine, code: int, k: int) -> None:
    if code & 0xF8 == 0x00:  # TAX
        m.x = m.a
    else:  # TXA
        m.a = m.x


_STEP: dict[int, Callable[[Machine, int, int], None]] = {
    0x00: _ld, 0x01: _ldx, 0x02: _st, 0x03: _stx, 0x04: _alu, 0x07: _misc}

_JUMP: dict[int, Callable[[int, int], bool]] = {
    0x10: lambda a, s: a == s,
    0x20: lambda a, s: a > s,
    0x30: lambda a, s: a >= s,
}


def _jump(m: Machine, code: int, jt: int, jf: int, k: int) -> int:
    """How far a jump instruction moves the program counter."""
    op = code & 0xF0
    if op == 0x00:  # JA
        return k
    src = m.x if code & 0x08 else k
    cond = _JUMP.get(op, lambda a, s: bool(a & s))(m.a, src)
    return jt if cond else jf


def run_bpf(prog: bytes, data: bytes) -> int:
    """Classic BPF as seccomp runs it, over the 64-byte ``seccomp_data`` ``data``.  Raises
    :class:`Unverifiable` when the program, on the path ``data`` takes, loads the instruction
    pointer: the one field of ``data`` that is not the probe's to choose but the call site's,
    unknown here (a path that never loads it gives the same answer whatever its value)."""
    insns = [struct.unpack_from("<HBBI", prog, i) for i in range(0, len(prog), 8)]
    m = Machine(data)
    pc = 0
    while pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x06:  # RET
            return (m.a if code & 0x18 == 0x10 else k) & M32
        if cls == 0x05:
            pc += _jump(m, code, jt, jf, k)
        else:
            _STEP[cls](m, code, k)
    return 0  # falling off the end: the kernel rejects such programs; treat as kill


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def filter_action(progs: list[bytes], nr: int, args: Sequence[int], arch: int) -> int:
    """The action all filters together take (the most restrictive one wins) on call ``nr``
    with ``args``; the instruction pointer is 0, and a filter that reads it raises
    :class:`Unverifiable`."""
    words = [(a & 0xFFFFFFFFFFFFFFFF) for a in (list(args) + [0] * 6)[:6]]
    data = struct.pack("<iIQ6Q", nr, arch, 0, *words)
    best = RET_ALLOW
    for prog in progs:
        ret = run_bpf(prog, data)
        if _s32(ret & 0xFFFF0000) < _s32(best & 0xFFFF0000):
            best = ret
    return best


# --- the verdicts ------------------------------------------------------------------------------

class Process(NamedTuple):
    """What decides a call's verdict for a process seen from outside."""

    mode: str  # /proc/PID/status Seccomp: "0" none, "1" strict, "2" filters
    progs: list[bytes]  # its filters
    caps: int  # its effective capabilities
    userns: bool  # in another user namespace than the initial one
    baseline: dict[str, str]  # what the kernel refuses to everyone (the auditor's own probe)


def _status(proc: str) -> dict[str, str]:
    with open(f"{proc}/status", encoding="utf-8", errors="replace") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def _initial_userns() -> str:
    for ref in ("/proc/1/ns/user", "/proc/self/ns/user"):
        try:
            return os.readlink(ref)
        except OSError:
            continue
    return ""


def _baseline(caps: int) -> dict[str, str]:
    """What the kernel itself refuses (a call it lacks: ENOSYS; modules disabled, lockdown:
    EPERM) shows in the auditor's own probe, when the auditor is unfiltered and holds every
    capability the process holds."""
    own = _status("/proc/self")
    if own.get("Seccomp", "0") != "0" or caps & ~int(own.get("CapEff", "0") or "0", 16):
        return {}
    return probe.probe_syscalls()


def observe(pid: int) -> Process:
    """The process's seccomp mode, filters, capabilities and user namespace."""
    st = _status(f"/proc/{pid}")
    mode = st.get("Seccomp", "0")
    caps = int(st.get("CapEff", "0") or "0", 16)
    userns = os.readlink(f"/proc/{pid}/ns/user") != _initial_userns()
    progs = read_filters(pid) if mode == "2" else []
    return Process(mode, progs, caps, userns, _baseline(caps))


def _capable(p: Process, name: str, cap: int | None) -> bool:
    """Whether the process passes the capability check a call makes before its arguments;
    module, kexec and accounting capabilities count only in the initial user namespace."""
    if cap is None:
        return True
    init_only = cap in INIT_ONLY or name == "kexec_load"
    return bool(p.caps >> cap & 1) and not (init_only and p.userns)


def blocked(p: Process, name: str, column: int) -> bool:
    """Whether call ``name`` of :data:`probe.SYSCALLS` is refused to the process."""
    _, _, args, cap, _ = probe.SYSCALLS[name]
    nr = probe.number(name, column)
    if p.mode == "1" or nr is None:
        return True
    try:
        act = filter_action(p.progs, nr, args, AUDIT_ARCH[column])
    except Unverifiable as e:
        raise Unverifiable(f"{e} (on the path of {name}); the filters' verdicts cannot be "
                           "evaluated faithfully: system calls not evaluated") from None
    return (act & 0xFFFF0000 not in (RET_ALLOW, RET_LOG) or not _capable(p, name, cap)
            or p.baseline.get(f"syscall.{name}") == "blocked")


def filtered_syscalls(pid: int) -> dict[str, str]:
    """{"syscall.NAME": "blocked"|"allowed"} of process ``pid``, as its probe would see them."""
    column = probe.machine_column()
    if column is None:
        return {}
    p = observe(pid)
    return {f"syscall.{name}": "blocked" if blocked(p, name, column) else "allowed"
            for name in probe.SYSCALLS if probe.number(name, column) is not None}
