"""The ``identity`` plugin: the uid, gid and supplementary groups the workload runs as.

Section ``[identity]``.  Child stage ``identity``: after every stage that needs root (mounts,
hostname, rlimits, LSM labels), before ``capabilities`` (which computes the capability sets for
the final uid) and ``no_new_privs``.

Names are resolved at planning time (``secrun_compile``) through the host's user database
(``/etc/passwd``, ``/etc/group``; the plan is recomputed when they change).  Inside a user
namespace the numbers are the namespace's ids, which must be mapped by ``[namespaces]``.

Facts: publishes ``identity.uid`` and ``identity.gid`` (the workload's ids, None = unchanged);
uses ``capabilities.managed`` (its stage keeps the permitted capabilities across the uid change
for the capabilities stage) and ``namespaces.setgroups_denied`` (the audit then expects the
caller's groups to stay).

- the package itself: the identity stage (what a launch imports);
- :mod:`.plan`: the schema and ``secrun_compile`` (name resolution);
- :mod:`.audit`: ``secrun_audit`` and the category ``identity``.

The stages (this module: all that a launch from the plan cache imports of the plugin):

Child stage: supplementary groups, gid and uid, in this order.
"""

from __future__ import annotations

import errno
import os

from secrun import hookimpl
from secrun.kernel import PR_SET_KEEPCAPS, error, prctl  # at module level: see docs/plugins.md

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from secrun.context import RunContext

    from .plan import IdentityPlan


def _setgroups_denied() -> bool:
    """A user namespace whose gid map was written with setgroups=deny forbids setgroups."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def _fail(exc: OSError, what: str) -> Exception:
    # The set*id calls answer EINVAL for an id that the current user namespace does not map.
    return error(what, exc.errno, "the id is not mapped in this user namespace (see "
                 "[namespaces].user_map)" if exc.errno == errno.EINVAL else None)


def _set_groups(groups: list[int], log: Callable[[str], None]) -> None:
    if sorted(set(os.getgroups())) == sorted(groups):
        return
    try:
        os.setgroups(groups)
    except OSError as e:
        # In a user namespace with setgroups=deny the kernel keeps the caller's own
        # (unmapped) supplementary groups on purpose, so that dropping them cannot escape a
        # group-based denial; asking for none there is the best the namespace allows.
        denied = _setgroups_denied()
        if groups and denied:
            raise error(f"setgroups({groups})", e.errno, "this user namespace denies "
                        "setgroups (its gid map was written with setgroups=deny); "
                        "supplementary groups need a map that root writes, "
                        "[namespaces].user_map = \"range\"") from None
        if not denied:
            raise _fail(e, f"setgroups({groups})") from None
        log("identity: setgroups is denied in this user namespace; the caller's "
            "supplementary groups stay (shown as the overflow gid)")


def _set_uid(uid: int, keep_caps: bool) -> None:
    # Leaving uid 0 empties the permitted set unless PR_SET_KEEPCAPS is on.  When the
    # capabilities stage follows, it keeps the profile's set for the new uid (and makes it
    # ambient), so the permitted set must survive until then; that stage drops the rest.
    if keep_caps:
        prctl(PR_SET_KEEPCAPS, 1, what="prctl(PR_SET_KEEPCAPS, 1)")
    try:
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise _fail(e, f"setresuid({uid})") from None
    if keep_caps:
        prctl(PR_SET_KEEPCAPS, 0, what="prctl(PR_SET_KEEPCAPS, 0)")


def apply(plan: IdentityPlan, keep_caps: bool,
          log: Callable[[str], None] = lambda text: None) -> None:
    """setgroups, setresgid, setresuid, in this order: changing groups and gid needs
    CAP_SETGID, which a non-root uid no longer has, so the uid changes last.  A call whose
    result already holds is skipped (an unprivileged secrun may ask for its own ids)."""
    gid, uid = plan["gid"], plan["uid"]
    _set_groups(plan["groups"], log)
    if gid is not None and os.getresgid() != (gid, gid, gid):
        try:
            os.setresgid(gid, gid, gid)
        except OSError as e:
            raise _fail(e, f"setresgid({gid})") from None
    if uid is not None and os.getresuid() != (uid, uid, uid):
        _set_uid(uid, keep_caps)


def kept_groups(setgroups_denied: object) -> list[int]:
    """The caller's supplementary groups that stay in the workload: all of them when the user
    namespace denies setgroups (an ordinary user's: the kernel keeps them, so that dropping
    a group cannot escape a group-based denial, and a file those groups may read stays
    readable), else none."""
    if not setgroups_denied:
        return []
    own = os.getgid()
    return sorted(g for g in set(os.getgroups()) if g != own)


@hookimpl
def secrun_prepare(ctx: RunContext) -> None:
    """Say, before anything runs, that the caller's supplementary groups will stay."""
    kept = kept_groups(ctx.fact("namespaces.setgroups_denied"))
    if kept:
        ctx.warn(f"identity: the caller's supplementary groups {', '.join(map(str, kept))} "
                 f"stay (an ordinary user cannot drop them in a user namespace: the kernel "
                 f"keeps them); what those groups may read or write, the workload may too")


@hookimpl
def secrun_identity(ctx: RunContext) -> None:
    apply(ctx.plan, keep_caps=bool(ctx.fact("capabilities.managed")), log=ctx.log)
