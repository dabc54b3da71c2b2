"""The ``landlock`` plugin: an allow-list of the files and TCP ports the workload may use,
enforced by the kernel's Landlock LSM (``landlock_create_ruleset(2)``,
``landlock_add_rule(2)``, ``landlock_restrict_self(2)``).

Section ``[landlock]`` (off unless ``enabled = true``).  Planning (``secrun_compile``, cached):
the paths and ports are checked, the Landlock ABI of the running kernel is read (a per-boot
fact: plans are cached per boot) and the access rights the ruleset handles are limited to what
that ABI knows.  ``prepare`` (supervisor, before fork) packs the ruleset attribute and the
port rules; the child stage ``landlock`` (after ``no_new_privs``, before ``seccomp``, after the
filesystem view is built) creates the ruleset, opens every rule path with ``O_PATH`` *inside
the sandbox's view*, adds the path-beneath and port rules and calls
``landlock_restrict_self``.  See ``docs/landlock.md``.

- the package itself: the kernel constants and the two stages (what a launch imports);
- :mod:`.plan`: the schema, ``secrun_compile`` and the plan's ``TypedDict``;
- :mod:`.audit`: ``secrun_audit`` (no scored category) and ``secrun_live_probe``, whose
  source is :mod:`.probe` (standard library only, run inside the sandbox).

The stages (this module: all that a launch from the plan cache imports of the plugin):

``prepare`` builds the bytes that need no file descriptor, ``landlock`` (child) applies them.
A rule path that cannot be opened in the view (missing, or not reachable by the workload's
identity) gets no rule, which only takes access away; the stage says so in one warning.
"""

from __future__ import annotations

import errno
import os

from secrun import hookimpl
from secrun.errors import NotAvailable
from secrun.kernel import c_ulong, error, get_errno, syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import LandlockPlan

SECTION = "landlock"

# --- the kernel's interface (include/uapi/linux/landlock.h) ----------------------------------

LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_RULE_NET_PORT = 2

# filesystem access rights: name -> (bit, the first ABI that knows it)
FS_RIGHTS = {
    "execute": (1 << 0, 1),
    "write_file": (1 << 1, 1),
    "read_file": (1 << 2, 1),
    "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1),
    "remove_file": (1 << 5, 1),
    "make_char": (1 << 6, 1),
    "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1),
    "make_sock": (1 << 9, 1),
    "make_fifo": (1 << 10, 1),
    "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1),
    "refer": (1 << 13, 2),
    "truncate": (1 << 14, 3),
    "ioctl_dev": (1 << 15, 5),
}
# network access rights (ABI 4)
NET_RIGHTS = {
    "bind_tcp": (1 << 0, 4),
    "connect_tcp": (1 << 1, 4),
}
NET_ABI = 4
# the rights that apply to a file that is not a directory (others on a file: EINVAL)
FILE_ACCESS = (FS_RIGHTS["execute"][0] | FS_RIGHTS["write_file"][0] | FS_RIGHTS["read_file"][0]
               | FS_RIGHTS["truncate"][0] | FS_RIGHTS["ioctl_dev"][0])
_S_IFMT, _S_IFDIR = 0o170000, 0o040000

# Bound at import, in the supervisor (the child imports nothing once the view is entered).
_create_ruleset = syscall("landlock_create_ruleset")
_add_rule = syscall("landlock_add_rule")
_restrict_self = syscall("landlock_restrict_self")
_O_PATH = os.O_PATH | os.O_CLOEXEC


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


@hookimpl
def secrun_prepare(ctx: RunContext) -> None:
    """Parent, before fork: ``struct landlock_ruleset_attr`` {handled_access_fs,
    handled_access_net}, the rule paths as bytes with their rights, ``struct
    landlock_net_port_attr`` {allowed_access, port} per port; the child adds only the
    descriptors it opens."""
    plan: LandlockPlan = ctx.plan
    if not plan["enabled"]:
        return
    attr = _u64(plan["fs"]) + (_u64(plan["net"]) if plan["net"] else b"")
    bind, connect = NET_RIGHTS["bind_tcp"][0], NET_RIGHTS["connect_tcp"][0]
    ports: dict[int, int] = {}
    if plan["net"]:
        for port in plan["tcp_bind"]:
            ports[port] = ports.get(port, 0) | bind
        for port in plan["tcp_connect"]:
            ports[port] = ports.get(port, 0) | connect
    ctx.state["attr"] = (attr, c_ulong(len(attr)))
    ctx.state["paths"] = [(os.fsencode(r["path"]), r["path"], _u64(r["access"]),
                           _u64(r["access"] & FILE_ACCESS)) for r in plan["paths"]]
    ctx.state["ports"] = [_u64(access) + _u64(port) for port, access in ports.items()]


def _not_available(what: str, err: int) -> NotAvailable:
    return NotAvailable(what, f"{os.strerror(err)} ({errno.errorcode.get(err, err)}): "
                        "this kernel offers no Landlock (not built in, or not in the lsm= "
                        "list of the boot)", err)


def _add_paths(ctx: RunContext, ruleset: int) -> list[str]:
    """A path-beneath rule per path the view shows; the paths skipped, with why."""
    skipped: list[str] = []
    for path_b, path, access, file_access in ctx.state["paths"]:
        try:
            fd = os.open(path_b, _O_PATH)
        except OSError as e:
            skipped.append(f"{path} ({os.strerror(e.errno or 0)})")
            continue
        try:
            is_dir = os.fstat(fd).st_mode & _S_IFMT == _S_IFDIR
            rule = (access if is_dir else file_access) + fd.to_bytes(4, "little", signed=True)
            if _add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0) != 0:
                raise error(f"landlock_add_rule({path})")
        finally:
            os.close(fd)
    return skipped


def _create(ctx: RunContext, plan: LandlockPlan) -> int:
    """The ruleset's descriptor; NotAvailable when the kernel has no Landlock (or, with
    required = true, not the ABI that ``net = true`` needs)."""
    if not plan["abi"]:
        raise _not_available("landlock_create_ruleset", errno.EOPNOTSUPP)
    if plan["net_lost"]:
        if ctx.required(SECTION):
            raise NotAvailable("[landlock].net", plan["net_lost"] + " (required = true)")
        ctx.warn(f"landlock: {plan['net_lost']}: the rest of the ruleset is applied")
    attr, size = ctx.state["attr"]
    ruleset = _create_ruleset(attr, size, 0)
    if ruleset < 0:
        err = get_errno()
        if err in (errno.ENOSYS, errno.EOPNOTSUPP):
            raise _not_available("landlock_create_ruleset", err)
        raise error("landlock_create_ruleset", err)
    return ruleset


def _restrict(ruleset: int) -> None:
    if _restrict_self(ruleset, 0) == 0:
        return
    err = get_errno()
    hint = None
    if err == errno.EPERM:
        hint = ("restricting a process with Landlock needs no_new_privs or CAP_SYS_ADMIN: set "
                "[process].no_new_privs = true (the default) or keep sys_admin in "
                "[capabilities].keep")
    raise error("landlock_restrict_self", err, hint)


@hookimpl
def secrun_landlock(ctx: RunContext) -> None:
    plan: LandlockPlan = ctx.plan
    if not plan["enabled"]:
        return
    ruleset = _create(ctx, plan)
    try:
        skipped = _add_paths(ctx, ruleset)
        for rule in ctx.state["ports"]:
            if _add_rule(ruleset, LANDLOCK_RULE_NET_PORT, rule, 0) != 0:
                raise error(f"landlock_add_rule(port {int.from_bytes(rule[8:], 'little')})")
        _restrict(ruleset)
    finally:
        os.close(ruleset)
    if skipped:
        ctx.warn("landlock: no rule for paths the sandbox's view does not show: "
                 + ", ".join(skipped))
