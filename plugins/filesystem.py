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
when it is already there and again when mounting.
"""

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
def secrun_mounts(ctx):
    _fs_mount.build_view(ctx, ctx.plan[SECTION])


@hookimpl
def secrun_audit(ctx):
    """Rows for the control table's filesystem categories (root, home, tmp, dev, kernel), each
    with the mountinfo fact ``secrun audit --live`` checks from inside."""
    from secrun.plugins import _fs_plan

    return _fs_plan.audit(ctx)
