"""The ``filesystem`` plugin's stages: ``prepare`` (supervisor) pins the working directory,
``mounts`` (child) builds the view, ``hostname`` and ``rlimits`` (child) show the sandbox's own
cgroup hierarchies on a fresh sysfs, ``cleanup`` closes the pinned descriptor.  What a launch
imports of the plugin, with :mod:`.mount` (imported here at module level, so the core loads it
before fork: nothing may be imported once the view is entered)."""

from __future__ import annotations

import os

from secrun import hookimpl

from . import mount

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import FilesystemPlan


@hookimpl
def secrun_prepare(ctx: RunContext) -> None:
    """Pin the working directory (see :func:`.mount.prepare`) and say, once, when the view
    does not show it."""
    plan: FilesystemPlan = ctx.plan
    mount.prepare(plan, ctx.state)
    warning = plan["cwd"]["warning"]
    if warning:
        ctx.warn(warning)


@hookimpl
def secrun_mounts(ctx: RunContext) -> None:
    mount.build_view(ctx, ctx.plan, ctx.state)


@hookimpl(tryfirst=True)
def secrun_hostname(ctx: RunContext) -> None:
    """The child's cgroups, now that the supervisor has attached it and before the namespaces
    plugin makes the cgroup namespace in this same stage (hence tryfirst): which hierarchies
    hold a group of the sandbox's own (see :func:`.mount.mount_cgroups`)."""
    cg = ctx.state.get("cgroup")
    if cg is not None:
        try:
            cg["sandbox"] = mount.cgroup_paths()
        except (OSError, ValueError):
            pass  # not shown


@hookimpl
def secrun_rlimits(ctx: RunContext) -> None:
    """/sys/fs/cgroup on the fresh sysfs, from inside the cgroup namespace (made in
    ``hostname``), while the child still holds its privileges."""
    cg = ctx.state.get("cgroup")
    layout = ctx.plan["cgroup"]
    if cg is not None and layout is not None:
        mount.mount_cgroups(ctx, layout, cg)


@hookimpl
def secrun_cleanup(ctx: RunContext) -> None:
    fd = ctx.state.pop("cwd_fd", None)
    if fd is not None:
        os.close(fd)
