"""The ``filesystem`` plugin: the filesystem view of the sandbox.

Section ``[filesystem]``.  Planning (``secrun_compile``, cached) checks every path and turns the
section into a ready list of mount operations (:mod:`secrun.plugins._fs_plan`, imported only
when planning, auditing or listing sections); the child stage ``mounts`` applies them in the
private mount namespace that ``[namespaces].mount`` creates (:mod:`secrun.plugins._fs_mount`,
the kernel-facing half, imported here at module level so the core loads it before fork).

The view is always built as a detached copy of a root (the host's ``/``, or ``root``) and
entered with ``pivot_root``; the old root is detached (``MNT_DETACH``), so nothing outside the
view stays reachable.  Mount destinations are resolved inside the new root with
``openat2(RESOLVE_BENEATH)``: a symlink or ``..`` leading out of it is refused, at planning time
when it is already there and again when mounting.  Mounts are made parents before children
(by destination depth, the working directory included), and a working directory the view
covers is never bound back.

Stages: ``prepare`` (supervisor) pins the working directory (an ``O_PATH`` descriptor, its
device and inode) and says once when the view will not show it; ``mounts`` (child) builds the
view; with a fresh sysfs and a cgroup namespace, ``hostname`` (child, before the namespace is
made) reads the child's cgroups and ``rlimits`` (child, inside it) mounts the sandbox's own
cgroup hierarchies on /sys/fs/cgroup; ``cleanup`` closes the descriptor.
"""

import os

from secrun import hookimpl
from secrun.plugins import _fs_mount

SECTION = "filesystem"


@hookimpl
def secrun_profile_sections():
    from secrun.plugins import _fs_plan

    return _fs_plan.sections()


@hookimpl
def secrun_compile(ctx):
    from secrun.plugins import _fs_plan

    _fs_plan.compile_plan(ctx)


@hookimpl
def secrun_prepare(ctx):
    """Pin the working directory (see ``_fs_mount.prepare``) and say, once, when the view does
    not show it."""
    plan = ctx.plan[SECTION]
    ctx.state[SECTION] = _fs_mount.prepare(plan)
    warning = plan["cwd"][2]
    if warning:
        ctx.warn(warning)


@hookimpl
def secrun_mounts(ctx):
    _fs_mount.build_view(ctx, ctx.plan[SECTION], ctx.state[SECTION])


@hookimpl(tryfirst=True)
def secrun_hostname(ctx):
    """The child's cgroups, now that the supervisor has attached it and before the namespaces
    plugin makes the cgroup namespace in this same stage (hence tryfirst): which hierarchies
    hold a group of the sandbox's own (see ``_fs_mount.mount_cgroups``)."""
    cg = ctx.state[SECTION].get("cgroup")
    if cg is not None:
        try:
            cg["sandbox"] = _fs_mount.cgroup_paths()
        except (OSError, ValueError):
            pass  # not shown


@hookimpl
def secrun_rlimits(ctx):
    """/sys/fs/cgroup on the fresh sysfs, from inside the cgroup namespace (made in
    ``hostname``), while the child still holds its privileges."""
    cg = ctx.state[SECTION].get("cgroup")
    if cg is not None:
        _fs_mount.mount_cgroups(ctx, ctx.plan[SECTION]["cgroup"], cg)


@hookimpl
def secrun_cleanup(ctx):
    state = ctx.state.get(SECTION)
    if state and state.get("cwd_fd") is not None:
        os.close(state.pop("cwd_fd"))


@hookimpl
def secrun_audit(ctx):
    """Rows for the control table's filesystem categories (root, home, tmp, dev, kernel), each
    with the mountinfo fact ``secrun audit --live`` checks from inside."""
    from secrun.plugins import _fs_plan

    return _fs_plan.audit(ctx)
