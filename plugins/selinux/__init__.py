"""The ``selinux`` plugin: run the workload in an SELinux domain.

Section ``[selinux]``: ``context = "user:role:type:level"``, or just ``type = "..."`` (the user,
role and level are taken from secrun's own context at launch).

Where each step runs, and why:

- ``secrun_compile`` (planning, cached) checks only the syntax.  Whether a context is valid is
  a question for the policy loaded in the running kernel, which an administrator can change at
  any time (``semodule -i``) without anything secrun could record as a cache dependency; so the
  policy check is done at every launch, where it costs one write to selinuxfs.
- ``secrun_prepare`` (supervisor, before fork): checks that SELinux is active, builds the full
  context, validates it against the loaded policy and opens ``libselinux.so.1``.
- ``secrun_lsm`` (child): ``setexeccon(context)``: the domain transition happens at exec.

The policy must allow the transition: ``process { transition }`` from secrun's domain to the
target, ``file { entrypoint }`` on the workload's executable, and, when no_new_privs is set
(the default), ``process2 { nnp_transition }`` (or a bounded target type).  Otherwise exec fails
with EACCES/EPERM and secrun reports it.  The plugin publishes and reads no facts.

Modules: the package itself (``prepare`` and ``lsm``, the availability checks and the context
syntax: all a launch imports), :mod:`.plan` (the schema and the syntax check), :mod:`.audit`
(the row, and the plugin's part of the category ``mac``).

The stages (this module: all that a launch from the plan cache imports of the plugin):

- ``prepare`` (supervisor, before fork): checks that SELinux is active
  (``/sys/kernel/security/lsm``, a mounted selinuxfs), builds the full context for ``type``,
  validates it with ``security_check_context`` (an invalid context stops the launch here,
  before anything runs) and opens ``libselinux.so.1`` while the host's filesystem is still
  visible (libselinux also finds selinuxfs only when loaded after it is mounted);
- ``lsm`` (child): ``setexeccon(context)``: the domain transition happens at exec.  It imports
  nothing: ``prepare`` keeps the library for it.

Also the context syntax (:func:`split_context`), which planning checks with the same code.
"""

from __future__ import annotations

import os

from secrun import hookimpl
from secrun.errors import NotAvailable, SetupError
from secrun.kernel import POINTER, Library, byref, c_char_p, c_int, check, error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import SelinuxPlan

LSM_LIST = "/sys/kernel/security/lsm"
SELINUXFS = "/sys/fs/selinux"
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_LEVEL_CHARS = _IDENT_CHARS | frozenset(",:")


def is_ident(value: str, chars: frozenset[str] = _IDENT_CHARS) -> bool:
    """A non-empty name of the given characters (no `re`: it costs ms on the launch path)."""
    return bool(value) and all(c in chars for c in value)


def split_context(context: str) -> list[str] | None:
    """user, role, type, level ('' without MLS) of a context string, or None."""
    parts = context.split(":", 3)
    if len(parts) < 3 or not all(is_ident(p) for p in parts[:3]):
        return None
    if len(parts) == 4 and not is_ident(parts[3], _LEVEL_CHARS):
        return None
    return parts + [""] * (4 - len(parts))


# --- availability ------------------------------------------------------------------------------

def check_available() -> None:
    """Raise NotAvailable unless SELinux is active, with its selinuxfs mounted."""
    try:
        with open(LSM_LIST) as f:
            lsms: list[str] | None = f.read().strip().split(",")
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


def library() -> Library:
    """libselinux, with the prototypes of the calls secrun makes."""

    try:
        lib = Library("libselinux.so.1", {
            "getcon": (c_int, (POINTER(c_char_p),)), "freecon": (None, (c_char_p,)),
            "security_check_context": (c_int, (c_char_p,)), "setexeccon": (c_int, (c_char_p,))})
    except OSError as e:
        raise NotAvailable("libselinux.so.1", f"cannot load it ({e}); install the Debian "
                           "package 'libselinux1'") from None
    # Not gated on is_selinux_enabled(): it also demands /etc/selinux/config, a distribution's
    # configuration file that a kernel with a loaded policy does not need.  The kernel's own
    # facts (the LSM list, a mounted selinuxfs) were checked by check_available.
    return lib


def _getcon(lib: Library) -> str:
    con = c_char_p()
    check(lib.getcon(byref(con)), "getcon")
    value = (con.value or b"").decode()
    lib.freecon(con)
    return value


def full_context(lib: Library, plan: SelinuxPlan) -> str:
    """The context the workload gets: the plan's, or secrun's own with the plan's type."""
    if plan["context"]:
        return plan["context"]
    current = _getcon(lib)
    parts = split_context(current)
    if parts is None:
        raise SetupError("getcon", f"cannot parse secrun's own context {current!r}")
    parts[2] = plan["type"]
    return ":".join(p for p in parts if p)


def enforcing() -> bool | None:
    """Whether SELinux enforces (False: permissive; None: cannot tell)."""
    try:
        with open(os.path.join(SELINUXFS, "enforce")) as f:
            return f.read().strip() == "1"
    except OSError:
        return None


# --- launching ---------------------------------------------------------------------------------

@hookimpl
def secrun_prepare(ctx: RunContext) -> None:
    plan: SelinuxPlan = ctx.plan
    check_available()
    lib = library()
    context = full_context(lib, plan)
    if lib.security_check_context(context.encode()) != 0:
        key = "context" if plan["context"] else "type"
        raise SetupError("security_check_context",
                         f"[selinux].{key}: {context!r} is not a valid context in the loaded "
                         "SELinux policy")
    if enforcing() is False:
        ctx.warn(f"selinux: the kernel is in permissive mode: the workload runs in {context}, "
                 "but denials are only logged")
    ctx.state.update(lib=lib, context=context)
    ctx.log(f"selinux: workload enters {context} at exec")


@hookimpl
def secrun_lsm(ctx: RunContext) -> None:
    st = ctx.state
    if "lib" not in st:
        return  # prepare found SELinux unavailable and the section is best-effort (reported)
    if st["lib"].setexeccon(st["context"].encode()) != 0:
        raise error(f"setexeccon({st['context']})")
