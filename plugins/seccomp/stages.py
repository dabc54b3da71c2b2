"""The ``seccomp`` plugin's stages: ``prepare`` (in the supervisor, before fork) sets up the
call, and the child's ``seccomp`` stage, the last before exec, loads the plan's BPF program with
``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` through ctypes.  What a launch imports of the
plugin: never pyseccomp (~35 ms) or libseccomp."""

from __future__ import annotations

import ctypes
import errno

from secrun import hookimpl
from secrun.errors import NotAvailable
from secrun.kernel import PR_SET_SECCOMP, error, libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import SeccompPlan

SECCOMP_MODE_FILTER = 2
_prctl = libc.prctl


@hookimpl
def secrun_prepare(ctx: RunContext) -> None:
    """Parent, before fork: the ``sock_fprog`` pointing at the BPF bytes and the call's
    arguments are made here, so the child only makes the one prctl() call (and imports nothing
    after the filesystem view may have hidden the interpreter's own library directory).  The
    ``sock_fprog`` {unsigned short len; struct sock_filter *filter} is plain bytes (the kernel
    only reads it), so no ctypes type is made on a launch."""
    plan: SeccompPlan = ctx.plan
    bpf = plan["bpf"]
    ptr = ctypes.c_char_p(bpf)  # points into the plan's bytes object, which outlives the run
    addr = ctypes.cast(ptr, ctypes.c_void_p).value or 0
    prog = (len(bpf) // 8).to_bytes(8, "little") + addr.to_bytes(8, "little")
    ctx.state["pointer"] = ptr  # (kept with the arguments, as long as the run)
    ctx.state["args"] = (PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), prog,
                         ctypes.c_ulong(0), ctypes.c_ulong(0))


@hookimpl
def secrun_seccomp(ctx: RunContext) -> None:
    if _prctl(*ctx.state["args"]) == 0:
        return
    exc = error("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)")
    if exc.errno == errno.EACCES:
        raise error(exc.what, exc.errno, "loading a seccomp filter needs no_new_privs or "
                    "CAP_SYS_ADMIN; set [process].no_new_privs = true (the default) or keep "
                    "sys_admin in [capabilities].keep")
    if exc.errno == errno.EINVAL:
        raise NotAvailable(exc.what, f"{exc.message}: this kernel does not support seccomp "
                           "filters (CONFIG_SECCOMP_FILTER)", exc.errno)
    raise exc
