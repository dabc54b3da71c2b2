"""The ``capabilities`` plugin: which Linux capabilities survive into the workload.

Section ``[capabilities]``.  Child stage ``capabilities``, which runs after ``identity`` (the
workload's uid, gid and groups are final) and before ``no_new_privs`` (owned by the ``process``
plugin), ``landlock`` and ``seccomp``.

All five sets are handled deliberately.  With K = the capabilities the profile keeps, limited to
those secrun itself holds (a profile can only take capabilities away, never grant new ones):

=========== ======================= ===========================================================
set          root workload           non-root workload
=========== ======================= ===========================================================
bounding     K                       K             (``PR_CAPBSET_DROP`` for every other cap)
permitted    K                       K             (``capset``)
effective    K                       K             (``capset``)
inheritable  empty                   K             (``capset``; ambient needs it)
ambient      empty                   K             (``PR_CAP_AMBIENT_RAISE``)
=========== ======================= ===========================================================

A root workload needs no ambient or inheritable capabilities: at ``execve`` the kernel gives
uid 0 its whole bounding set (K).  A non-root workload loses its permitted set at ``execve``
unless the capabilities are ambient, and an ambient capability must be permitted and
inheritable.  Inside a user namespace "root" means uid 0 of that namespace.

The valid capability numbers are 0 .. ``/proc/sys/kernel/cap_last_cap`` of the running kernel;
names for numbers beyond the known table are written ``cap_<n>`` (or just the number).

Facts: publishes ``capabilities.managed`` (True: this launch sets the capability sets, so the
identity stage keeps the permitted set across its uid change); the audit uses ``identity.uid``,
``namespaces.made`` and ``namespaces.user_root`` to tell which sets the workload ends up with.

- the package itself: the stage and the kernel interface it uses (capget/capset/prctl), what a
  launch imports (the capability names are :mod:`secrun.kernel`'s, shared with seccomp);
- :mod:`.plan`: the schema, the profile's capability lists and ``secrun_compile``;
- :mod:`.audit`: ``secrun_audit``, the category ``capabilities`` and the one table of what each
  capability weighs in the exposure score.

The stages (this module: all that a launch from the plan cache imports of the plugin):

The child stage and the kernel interface it uses: capget/capset
(v3) and prctl.
"""

from __future__ import annotations

import errno
import os

from secrun import hookimpl
from secrun.errors import SetupError
from secrun.kernel import (
    PR_CAP_AMBIENT,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    c_uint32,
    cap_name,
    cap_names_of,
    error,
    hexmask,
    libc,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from secrun.context import RunContext

    from .plan import CapabilitiesPlan

CAP_SETPCAP = 8

LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


# --- the kernel interface: capget/capset (v3) and prctl ------------------------------------------
# Everything the child stage touches is made here, when the supervisor imports the module before
# fork: the libc functions, and one header and one data buffer for capget/capset, reused by
# every call (C objects made first in the forked child cost more there, and after the
# mounts and identity stages Python may no longer be able to read its own library).
# The v3 header is {u32 version; int pid}; the data is two {u32 effective, permitted,
# inheritable} structs, for capabilities 0-31 and 32-63.

_prctl = libc.prctl
_capget = libc.capget
_capset = libc.capset
_U32x6 = c_uint32 * 6
_HEADER = _U32x6(LINUX_CAPABILITY_VERSION_3, 0)
_DATA = _U32x6()


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread, as 64-bit masks."""
    d = _DATA
    if _capget(_HEADER, d) != 0:
        raise error("capget")
    return d[0] | d[3] << 32, d[1] | d[4] << 32, d[2] | d[5] << 32


def capset(effective: int, permitted: int, inheritable: int) -> None:
    d = _DATA
    d[0], d[1], d[2] = effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF
    d[3], d[4], d[5] = effective >> 32, permitted >> 32, inheritable >> 32
    if _capset(_HEADER, d) != 0:
        raise error(f"capset(effective={hexmask(effective)}, "
                           f"permitted={hexmask(permitted)}, inheritable={hexmask(inheritable)})")


def bounding(last: int) -> int:
    mask = 0
    for n in range(last + 1):
        r = _prctl(PR_CAPBSET_READ, n, 0, 0, 0)
        if r == 1:
            mask |= 1 << n
        elif r == -1:
            raise error(f"prctl(PR_CAPBSET_READ, {n})")
    return mask


def ambient(last: int) -> int:
    mask = 0
    for n in range(last + 1):
        if _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, n, 0, 0) == 1:
            mask |= 1 << n
    return mask


def _bounding_failed(n: int, held: int) -> NoReturn:
    exc = error(f"prctl(PR_CAPBSET_DROP, {cap_name(n)})")
    if exc.errno == errno.EPERM and not held >> CAP_SETPCAP & 1:
        exc = error(exc.what, exc.errno, "secrun does not hold CAP_SETPCAP, so the bounding "
                    "set cannot be reduced (run as root, in a user namespace, or set "
                    "[capabilities].required = false)")
    raise exc


def workload_is_root() -> bool:
    """Whether the kernel treats the next execve as root's (uid 0 of the current user
    namespace as real or effective uid): then it grants the bounding set by itself."""
    return os.getuid() == 0 or os.geteuid() == 0


def apply(want: int, last: int) -> tuple[int, bool]:
    """Reduce this process's five capability sets to ``want`` (limited to what it holds).

    Returns (the capabilities kept, whether they were made ambient).  Raises OSError naming
    the syscall, or SetupError when the result read back differs from the intent.
    """
    eff, prm, inh = capget()
    bnd = bounding(last)
    # A capability outside the bounding set cannot be passed on through execve (neither to
    # root, which gets exactly the bounding set, nor as ambient, which needs inheritable and
    # so the bounding set): what the workload can get is permitted AND bounding.
    final = want & prm & bnd
    root = workload_is_root()

    # 1. Effective := permitted.  The identity stage may have changed the uid with
    #    PR_SET_KEEPCAPS, which keeps the permitted set but empties the effective one, and
    #    PR_CAPBSET_DROP below needs CAP_SETPCAP *effective*.
    if eff != prm:
        capset(prm, prm, inh)

    # 2. Bounding set first, while CAP_SETPCAP is still effective (step 4 may drop it).  Only
    #    capabilities still present are dropped: PR_CAPBSET_DROP needs CAP_SETPCAP even for an
    #    absent one, and an unprivileged secrun whose bounding set is already empty holds none.
    for n in range(last + 1):
        if bnd >> n & 1 and not final >> n & 1:
            if _prctl(PR_CAPBSET_DROP, n, 0, 0, 0) != 0:
                _bounding_failed(n, eff | prm)

    # 3. Ambient: start from nothing.  A kernel without ambient capabilities (< 4.3) answers
    #    EINVAL; that only matters when step 5 must raise some.
    amb_ok = _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0

    # 4. Permitted, effective and inheritable in one capset.  Inheritable is K only for a
    #    non-root workload, because step 5 needs it; root gets nothing inheritable, so a file
    #    with inheritable file capabilities cannot widen what a root workload's children get.
    capset(final, final, 0 if root else final)

    # 5. Ambient := K for a non-root workload, so that K survives its execve (permitted and
    #    effective are otherwise emptied for a non-root uid executing a file without file
    #    capabilities).  Raising needs the capability permitted and inheritable (step 4).
    made_ambient = bool(final) and not root
    if made_ambient:
        if not amb_ok:
            raise SetupError("prctl(PR_CAP_AMBIENT)", "this kernel has no ambient capabilities, "
                             "so capabilities cannot survive execve for a non-root uid")
        for n in range(last + 1):
            if final >> n & 1 and _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n, 0, 0) != 0:
                raise error(f"prctl(PR_CAP_AMBIENT_RAISE, {cap_name(n)})")

    # Read everything back: a set that is not what was intended must stop the launch.
    got = capget() + (bounding(last), ambient(last) if amb_ok else 0)
    expected = (final, final, 0 if root else final, final, final if made_ambient else 0)
    if got != expected:
        sets = ("effective", "permitted", "inheritable", "bounding", "ambient")
        diff = ", ".join(f"{s} {hexmask(g)} (wanted {hexmask(e)})"
                         for s, g, e in zip(sets, got, expected, strict=True) if g != e)
        raise SetupError("capget", f"capability sets differ from the plan: {diff}")
    return final, made_ambient


@hookimpl
def secrun_capabilities(ctx: RunContext) -> None:
    plan: CapabilitiesPlan = ctx.plan
    final, made_ambient = apply(plan["want"], plan["last"])
    if ctx.verbose:
        lost = plan["want"] & ~final & ((1 << (plan["last"] + 1)) - 1)
        ctx.log(f"capabilities: kept {', '.join(cap_names_of(final)) or 'none'}"
                f"{' (ambient)' if made_ambient else ''}"
                + (f"; not held by secrun, so not kept: {', '.join(cap_names_of(lost))}"
                   if lost else ""))
