"""The ``selinux`` plugin: run the workload in an SELinux domain.

Section ``[selinux]``: ``context = "user:role:type:level"``, or just ``type = "..."`` (the user,
role and level are taken from secrun's own context at launch).

Where each step runs, and why:

- ``secrun_compile`` (planning, cached) checks only the syntax.  Whether a context is valid is
  a question for the policy loaded in the running kernel, which an administrator can change at
  any time (``semodule -i``) without anything secrun could record as a cache dependency; so the
  policy check is done at every launch, where it costs one write to selinuxfs.
- ``secrun_prepare`` (supervisor, before fork): checks that SELinux is active
  (``/sys/kernel/security/lsm``, a mounted selinuxfs), builds the full context for
  ``type``, validates it with ``security_check_context`` (an invalid context stops the launch
  here, before anything runs) and opens ``libselinux.so.1`` while the host's filesystem is still
  visible (libselinux also finds selinuxfs only when loaded after it is mounted).
- ``secrun_lsm`` (child): ``setexeccon(context)``: the domain transition happens at exec.

The policy must allow the transition: ``process { transition }`` from secrun's domain to the
target, ``file { entrypoint }`` on the workload's executable, and, when no_new_privs is set
(the default), ``process2 { nnp_transition }`` (or a bounded target type).  Otherwise exec fails
with EACCES/EPERM and secrun reports it.

This module is what a launch imports: ``prepare`` and ``lsm``.  The schema, the syntax check
and the audit live in :mod:`secrun.plugins._selinux_plan`, imported only on a plan cache miss
or by ``secrun audit``/``profiles``.
"""

import os

from secrun import hookimpl
from secrun.errors import NotAvailable, SetupError

SECTION = "selinux"
LSM_LIST = "/sys/kernel/security/lsm"
SELINUXFS = "/sys/fs/selinux"
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_LEVEL_CHARS = _IDENT_CHARS | frozenset(",:")


def _ident(value, chars=_IDENT_CHARS):
    """A non-empty name of the given characters (no `re`: it costs ms on the launch path)."""
    return bool(value) and all(c in chars for c in value)


def _split(context):
    """user, role, type, level ('' without MLS) of a context string, or None."""
    parts = context.split(":", 3)
    if len(parts) < 3 or not all(_ident(p) for p in parts[:3]):
        return None
    if len(parts) == 4 and not _ident(parts[3], _LEVEL_CHARS):
        return None
    return parts + [""] * (4 - len(parts))


# --- planning (schema, syntax check and audit live in _selinux_plan) ---------------------------

@hookimpl
def secrun_profile_sections():
    from secrun.plugins import _selinux_plan

    return _selinux_plan.sections()


@hookimpl
def secrun_compile(ctx):
    from secrun.plugins import _selinux_plan

    ctx.plan[SECTION] = _selinux_plan.compile_plan(ctx)


@hookimpl
def secrun_audit(ctx):
    from secrun.plugins import _selinux_plan

    return _selinux_plan.audit(ctx)


# --- availability ----------------------------------------------------------------------------

def _check_available():
    try:
        with open(LSM_LIST) as f:
            lsms = f.read().strip().split(",")
    except OSError:
        lsms = None
    if lsms is not None and "selinux" not in lsms:
        raise NotAvailable(LSM_LIST, "SELinux is not enabled in this kernel (active LSMs: "
                           f"{','.join(lsms)})")
    if not os.path.isdir(SELINUXFS):
        # The kernel creates this mount point only when SELinux is active.
        raise NotAvailable(SELINUXFS, "SELinux is not enabled in this kernel")
    if not os.path.exists(os.path.join(SELINUXFS, "enforce")):
        raise NotAvailable(SELINUXFS, "SELinux is enabled but selinuxfs is not mounted here")


def _lib():
    import ctypes

    try:
        lib = ctypes.CDLL("libselinux.so.1", use_errno=True)
    except OSError as e:
        raise NotAvailable("libselinux.so.1", f"cannot load it ({e}); install the Debian "
                           "package 'libselinux1'") from None
    char_pp = ctypes.POINTER(ctypes.c_char_p)
    for name, restype, argtypes in (("getcon", ctypes.c_int, (char_pp,)),
                                    ("freecon", None, (ctypes.c_char_p,)),
                                    ("security_check_context", ctypes.c_int, (ctypes.c_char_p,)),
                                    ("setexeccon", ctypes.c_int, (ctypes.c_char_p,))):
        f = getattr(lib, name)
        f.restype, f.argtypes = restype, argtypes
    # Not gated on is_selinux_enabled(): it also demands /etc/selinux/config, a distribution's
    # configuration file that a kernel with a loaded policy does not need.  The kernel's own
    # facts (the LSM list, a mounted selinuxfs) were checked by _check_available.
    return lib


def _getcon(lib):
    import ctypes

    from secrun.kernel import check

    con = ctypes.c_char_p()
    check(lib.getcon(ctypes.byref(con)), "getcon")
    value = (con.value or b"").decode()
    lib.freecon(con)
    return value


def _full_context(lib, plan):
    if plan["context"]:
        return plan["context"]
    current = _getcon(lib)
    parts = _split(current)
    if parts is None:
        raise SetupError("getcon", f"cannot parse secrun's own context {current!r}")
    parts[2] = plan["type"]
    return ":".join(p for p in parts if p)


def _enforcing():
    try:
        with open(os.path.join(SELINUXFS, "enforce")) as f:
            return f.read().strip() == "1"
    except OSError:
        return None


# --- launching -------------------------------------------------------------------------------

@hookimpl
def secrun_prepare(ctx):
    _check_available()
    lib = _lib()
    context = _full_context(lib, ctx.plan[SECTION])
    if lib.security_check_context(context.encode()) != 0:
        key = "context" if ctx.plan[SECTION]["context"] else "type"
        raise SetupError("security_check_context",
                         f"[selinux].{key}: {context!r} is not a valid context in the loaded "
                         "SELinux policy")
    if _enforcing() is False:
        ctx.warn(f"selinux: the kernel is in permissive mode: the workload runs in {context}, "
                 "but denials are only logged")
    from secrun.kernel import error  # the lsm stage must not import

    ctx.state[SECTION] = {"lib": lib, "context": context, "error": error}
    ctx.log(f"selinux: workload enters {context} at exec")


@hookimpl
def secrun_lsm(ctx):
    st = ctx.state.get(SECTION)
    if st is None:
        return  # prepare found SELinux unavailable and the section is best-effort (reported)
    if st["lib"].setexeccon(st["context"].encode()) != 0:
        raise st["error"](f"setexeccon({st['context']})")
