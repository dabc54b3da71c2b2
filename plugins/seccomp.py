"""The ``seccomp`` plugin: which system calls the workload may make, with argument conditions.

Section ``[seccomp]``.  Planning (``secrun_compile``, cached): the profile's allow/deny lists,
named groups (``plugins/data/seccomp_groups.json``), per-call actions, argument conditions and an
optional Docker/OCI JSON import are compiled with libseccomp into one classic-BPF program (see
:mod:`secrun.plugins._seccomp_compile`), stored as bytes in the plan.  Child stage ``seccomp``,
the last before exec: the bytes are loaded with ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``
through ctypes, so a launch never imports pyseccomp (~35 ms) or libseccomp.

The kernel accepts a filter from a process that has no_new_privs set or holds CAP_SYS_ADMIN.
secrun does not set no_new_privs here: ``[process].no_new_privs`` (default true) owns it and
runs in the stage before.  A profile that turns it off must keep CAP_SYS_ADMIN (e.g. a root
workload without capability dropping); otherwise the load fails with EACCES and the launch
stops with an error naming both fixes.  See ``docs/seccomp.md``.

This module is what a launch imports: ``prepare`` and the ``seccomp`` stage.  The schema, the
audit and the ``secrun seccomp`` commands live in :mod:`secrun.plugins._seccomp_plan`.
"""

import errno

from secrun import hookimpl
from secrun.errors import NotAvailable

SECTION = "seccomp"
SECCOMP_MODE_FILTER = 2


# --- planning (schema, audit and commands in _seccomp_plan, the compiler in _seccomp_compile) --

@hookimpl
def secrun_profile_sections():
    from secrun.plugins import _seccomp_plan

    return _seccomp_plan.sections()


@hookimpl
def secrun_compile(ctx):
    from secrun.plugins import _seccomp_compile

    ctx.plan[SECTION] = _seccomp_compile.compile_plan(ctx)


@hookimpl
def secrun_audit(ctx):
    from secrun.plugins import _seccomp_plan

    return _seccomp_plan.audit(ctx)


@hookimpl
def secrun_register_commands(cli):
    from secrun.plugins import _seccomp_plan

    _seccomp_plan.register_commands(cli)


# --- launching -------------------------------------------------------------------------------

@hookimpl
def secrun_prepare(ctx):
    """Parent, before fork: ctypes and the ``sock_fprog`` pointing at the BPF bytes are set up
    here, so the child only makes the one prctl() call (and imports nothing after the
    filesystem view may have hidden the interpreter's own library directory).  The
    ``sock_fprog`` {unsigned short len; struct sock_filter *filter} is plain bytes (the kernel
    only reads it), so no ctypes type is made on a launch."""
    import ctypes

    from secrun.kernel import PR_SET_SECCOMP, error, libc

    bpf = ctx.plan[SECTION]["bpf"]
    ptr = ctypes.c_char_p(bpf)  # points into the plan's bytes object, which outlives the run
    addr = ctypes.cast(ptr, ctypes.c_void_p).value or 0
    prog = (len(bpf) // 8).to_bytes(8, "little") + addr.to_bytes(8, "little")
    args = (PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), prog, ctypes.c_ulong(0),
            ctypes.c_ulong(0))
    ctx.state[SECTION] = (libc.prctl, error, ptr, args)


@hookimpl
def secrun_seccomp(ctx):
    prctl, error, _ptr, args = ctx.state[SECTION]
    if prctl(*args) == 0:
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
