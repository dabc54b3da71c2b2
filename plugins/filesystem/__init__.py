"""The ``filesystem`` plugin: the filesystem view of the sandbox.

Section ``[filesystem]``.  Planning (``secrun_compile``, cached) checks every path and turns the
section into a ready list of mount operations; the child stage ``mounts`` applies them in the
private mount namespace that ``[namespaces].mount`` creates (the fact ``namespaces.made``
must list ``mnt``; ``namespaces.net`` decides whether /sys is a fresh sysfs).

The view is always built as a detached copy of a root (the host's ``/``, or ``root``) and
entered with ``pivot_root``; the old root is detached (``MNT_DETACH``), so nothing outside the
view stays reachable.  Host paths are opened before anything is covered, mount destinations
are resolved inside the new root with ``openat2(RESOLVE_BENEATH)`` (a symlink or ``..``
leading out of it is refused, at planning time when it is already there and again when
mounting), and mounts attach to the opened ``O_PATH`` descriptors.  Mounts are made parents
before children (by destination depth, the working directory included), and a working
directory the view covers is never bound back.

Stages: ``prepare`` (supervisor) pins the working directory (an ``O_PATH`` descriptor, its
device and inode) and says once when the view will not show it; ``mounts`` (child) builds the
view; with a fresh sysfs and a cgroup namespace, ``hostname`` (child, before the namespace is
made) reads the child's cgroups and ``rlimits`` (child, inside it) mounts the sandbox's own
cgroup hierarchies on /sys/fs/cgroup; ``cleanup`` closes the descriptor.

- the package itself: the stage hooks (what a launch imports), with :mod:`.mount`, the mount
  machinery they run (new mount API, openat2, pivot_root through ``syscall(2)``);
- :mod:`.plan`: the schema, the facts it reads, ``secrun_compile`` and the plan's shape (the
  ``TypedDict`` of every operation);
- :mod:`.view`: planning the view (paths checked, the ordered operations, the working
  directory); :mod:`.entries`: ``binds`` and ``tmpfs`` entries and their option words;
  :mod:`.cgroupfs`: the host's cgroup hierarchies to show on a fresh sysfs;
- :mod:`.audit`: ``secrun_audit`` and the categories ``filesystem.root``, ``.home``,
  ``.tmp``, ``.dev``, ``.kernel``.

The stages (this module: all that a launch from the plan cache imports of the plugin):

``prepare`` (supervisor) pins the working directory,
``mounts`` (child) builds the view, ``hostname`` and ``rlimits`` (child) show the sandbox's own
cgroup hierarchies on a fresh sysfs, ``cleanup`` closes the pinned descriptor.  What a launch
imports of the plugin, with :mod:`.mount` (imported here at module level, so the core loads it
before fork: nothing may be imported once the view is entered).
"""

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
