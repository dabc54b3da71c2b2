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

- :mod:`.stages`: the stage hooks (what a launch imports), with :mod:`.mount`, the mount
  machinery they run (new mount API, openat2, pivot_root through ``syscall(2)``);
- :mod:`.plan`: the schema, the facts it reads, ``secrun_compile`` and the plan's shape (the
  ``TypedDict`` of every operation);
- :mod:`.view`: planning the view (paths checked, the ordered operations, the working
  directory); :mod:`.entries`: ``binds`` and ``tmpfs`` entries and their option words;
  :mod:`.cgroupfs`: the host's cgroup hierarchies to show on a fresh sysfs;
- :mod:`.audit`: ``secrun_audit`` and the categories ``filesystem.root``, ``.home``,
  ``.tmp``, ``.dev``, ``.kernel``.
"""
