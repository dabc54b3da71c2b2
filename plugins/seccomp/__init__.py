"""The ``seccomp`` plugin: which system calls the workload may make, with argument conditions.

Section ``[seccomp]``.  Planning (``secrun_compile``, cached): the profile's allow/deny lists,
named groups (``data/seccomp_groups.json``), per-call actions, argument conditions and an
optional Docker/OCI JSON import are compiled with libseccomp into one classic-BPF program,
stored as bytes in the plan.  Child stage ``seccomp``, the last before exec: the bytes are
loaded with ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` through :mod:`secrun.kernel`, so a
launch never imports pyseccomp (~35 ms) or libseccomp.

The kernel accepts a filter from a process that has no_new_privs set or holds CAP_SYS_ADMIN.
secrun does not set no_new_privs here: ``[process].no_new_privs`` (default true) owns it and
runs in the stage before.  A profile that turns it off must keep CAP_SYS_ADMIN (e.g. a root
workload without capability dropping); otherwise the load fails with EACCES and the launch
stops with an error naming both fixes.  See ``docs/seccomp.md``.

- the package itself: ``prepare`` and the ``seccomp`` stage (what a launch imports);
- :mod:`.plan`: the schema and ``secrun_compile``;
- :mod:`.rules`: profile values -> actions, groups, the per-call rules and argument checks;
- :mod:`.oci`: the Docker/OCI JSON import (``[seccomp].import``) and export;
- :mod:`.bpf`: the rule model -> one BPF program, with libseccomp (pyseccomp);
- :mod:`.audit`: ``secrun_audit`` and the category ``seccomp.filter``;
- :mod:`.cli`: the ``secrun seccomp export|groups`` subcommands.

The stages (this module: all that a launch from the plan cache imports of the plugin):

``prepare`` (in the supervisor, before fork) sets up the
call, and the child's ``seccomp`` stage, the last before exec, loads the plan's BPF program with
``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``.  What a launch imports of the
plugin: never pyseccomp (~35 ms) or libseccomp.
"""

from __future__ import annotations

import errno

from secrun import hookimpl
from secrun.errors import NotAvailable
from secrun.kernel import PR_SET_SECCOMP, address, c_ulong, error, libc

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
    only reads it)."""
    plan: SeccompPlan = ctx.plan
    bpf = plan["bpf"]
    # the filter's address: in the plan's bytes object, which outlives the run
    prog = (len(bpf) // 8).to_bytes(8, "little") + address(bpf).to_bytes(8, "little")
    ctx.state["args"] = (PR_SET_SECCOMP, c_ulong(SECCOMP_MODE_FILTER), prog, c_ulong(0),
                         c_ulong(0))


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
