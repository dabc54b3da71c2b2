"""The ``seccomp`` plugin's live probe: which sensitive system calls a process may make.

Standard library only, no ``secrun`` import, on purpose: :func:`secrun_live_probe` (in
:mod:`.live`) returns this file's *source*, which the audit's probe runs inside the sandbox
(``python -I -S``) and whose :func:`probe` it calls.  The same table serves outside the sandbox:
:mod:`.live` evaluates a process's filters on these calls and arguments (``secrun audit
--pid``), and :mod:`.audit`'s judge of ``seccomp.filter`` scores over these names.

Each call is made once, in a forked child (a ``kill`` action kills only that child), with
arguments the kernel rejects (EINVAL/EFAULT/EBADF/ESRCH/EOPNOTSUPP) before anything happens,
so a call that gets past a filter does nothing.  A call that is refused (EPERM/EACCES/ENOSYS,
or the child is killed) is ``blocked``, otherwise ``allowed``.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# name: (x86_64 number, aarch64 number, args, capability checked before the arguments or None,
#        what the probe proves).  The numbers are here, not in secrun.kernel.SYSCALLS, because
#        this file runs without secrun; checked against libseccomp's tables like those.
SYSCALLS: dict[str, tuple[int, int | None, tuple[int, ...], int | None, str]] = {
    "unshare": (272, 97, (0x10000001,), None, "new namespaces (CLONE_NEWUSER, invalid flag)"),
    "setns": (308, 268, (-1, 0), None, "joining other namespaces (fd -1)"),
    "mount": (165, 40, (0, 0, 0, 0, 0), None, "mounting (NULL target)"),
    "umount2": (166, 39, (0, 0xffffffff), None, "unmounting (bad flags)"),
    "pivot_root": (155, 41, (0, 0), 21, "changing the root (NULL paths)"),
    "chroot": (161, 51, (0,), None, "chroot (NULL path)"),
    "ptrace": (101, 117, (0x7fff, 0, 0, 0), None, "tracing other processes (bad request, pid 0)"),
    "process_vm_readv": (310, 270, (0, 0, 0, 0, 0, 1), None,
                         "reading other processes' memory (bad flags)"),
    "keyctl": (250, 219, (-1, 0, 0, 0, 0), None, "kernel keyrings (bad command)"),
    "add_key": (248, 217, (0, 0, 0, 0, 0), None, "kernel keyrings (NULL type)"),
    "bpf": (321, 280, (-1, 0, 0), None, "eBPF programs and maps (bad command)"),
    "perf_event_open": (298, 241, (0, 0, -1, -1, 0), None, "performance counters (NULL attr)"),
    "open_by_handle_at": (304, 265, (-1, 0, 0), None, "opening files by handle (fd -1)"),
    "init_module": (175, 105, (0, 0, 0), 16, "loading kernel modules (NULL image)"),
    "finit_module": (313, 273, (-1, 0, 0), 16, "loading kernel modules (fd -1)"),
    "delete_module": (176, 106, (0, 0), 16, "unloading kernel modules (NULL name)"),
    "kexec_load": (246, 104, (0, 0, 0, 0xffffffff), 22, "loading a new kernel (bad flags)"),
    "reboot": (169, 142, (0, 0, 0, 0), 22, "rebooting (wrong magic)"),
    "swapon": (167, 224, (0, 0xffffffff), None, "swap devices (bad flags)"),
    "clock_settime": (227, 112, (-1, 0), None, "setting the clock (bad clock)"),
    "settimeofday": (164, 170, (1, 0), None, "setting the clock (bad pointer)"),
    "iopl": (172, None, (4,), None, "raw I/O port access (level 4, x86 only)"),
    "acct": (163, 89, (1,), 20, "process accounting (bad pointer)"),
}
BLOCKED_ERRNOS = (errno.EPERM, errno.EACCES, errno.ENOSYS)


def machine_column() -> int | None:
    """Which number of :data:`SYSCALLS` this machine uses: 0 (x86_64), 1 (aarch64) or None."""
    m = os.uname().machine
    return 0 if m == "x86_64" else 1 if m in ("aarch64", "arm64") else None


def number(name: str, column: int) -> int | None:
    """Call ``name``'s number in :func:`machine_column` ``column`` (None: not on this
    machine)."""
    spec = SYSCALLS[name]
    return spec[1] if column else spec[0]


def _verdict(err: int) -> str:
    return "blocked" if err in BLOCKED_ERRNOS else "allowed"


def _call(ctypes: Any, libc: Any, nr: int, args: tuple[int, ...]) -> str:
    """"blocked" or "allowed": the call made in a forked child (in this process when no fork
    is allowed: a kill action then ends the probe)."""
    cargs = [ctypes.c_long(a) for a in args]
    try:
        pid = os.fork()
    except OSError:
        ret = libc.syscall(nr, *cargs)
        return _verdict(0 if ret >= 0 else ctypes.get_errno())
    if pid == 0:
        ret = libc.syscall(nr, *cargs)
        os._exit(0 if ret >= 0 else min(ctypes.get_errno(), 250) or 251)
    _, status = os.waitpid(pid, 0)
    return "blocked" if os.WIFSIGNALED(status) else _verdict(os.WEXITSTATUS(status))


def probe_syscalls() -> dict[str, str]:
    """{"syscall.NAME": "blocked"|"allowed"} for every call of :data:`SYSCALLS` this machine
    has, as this process sees them."""
    import ctypes

    column = machine_column()
    if column is None:
        return {}
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype, libc.syscall.argtypes = ctypes.c_long, (ctypes.c_long,)
    out: dict[str, str] = {}
    for name, spec in SYSCALLS.items():
        nr = number(name, column)
        if nr is not None:
            out[f"syscall.{name}"] = _call(ctypes, libc, nr, spec[2])
    return out


def probe(facts: dict[str, str], ref: dict) -> None:
    """The ``secrun_live_probe`` entry point, inside the sandbox: the ``syscall.<name>``
    facts."""
    facts.update(probe_syscalls())
