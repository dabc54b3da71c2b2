"""The ``cgroups`` plugin: memory, swap, pids, CPU and io limits in a fresh cgroup per run.

Section ``[cgroups]``.  Stages: ``prepare`` (supervisor, before fork: create the run's group(s),
start warming up the kernel's cgroup migration in a helper process, write the limits),
``attach`` (supervisor: reap that helper and move the process that will exec into the groups
while it builds its filesystem view; it waits for this before its next stage, so the workload
runs no code of its own outside its group), ``cleanup`` (kill whatever is left, remove the
groups, report OOM kills and a hit pids limit).
``secrun cgroups gc`` removes groups left behind by a secrun that was SIGKILLed.  Fact:
``cgroups.attach`` (None, ``"required"`` or ``"best-effort"``), for the plugins whose work
depends on the workload having a group of its own (the cgroup namespace, the cgroup mounts).

Layouts, detected at run time from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``:

- pure cgroup v2: one group in the v2 tree carries the limits (:class:`.v2.V2Manager`);
- legacy v1: one group per controller hierarchy (:class:`.v1.V1Manager`), the freezer kills;
- hybrid: each controller is used where it is bound (here: v1), and a v2 group in the unified
  tree tracks the run, so ``cgroup.kill`` removes the whole process tree at cleanup.

Both managers have the same interface (:class:`.layout.Manager`): ``create``, ``apply``,
``add_task``, ``kill``, ``remove``, ``discard``, ``stats``.  Groups are named
``secrun-<pid>-<12 hex>``; the pid is only informative (it is namespace-local when secrun runs in
a pid namespace).  Whether a run is alive is told by a lock: the supervisor holds an exclusive
``flock`` on each of its group directories from right after ``mkdir`` until it has removed them,
so the lock is free exactly when the supervisor is gone (:mod:`.lock`).  ``prepare`` removes the
empty groups whose lock is free next to the run's own (:func:`.lock.sweep`), and ``secrun
cgroups gc`` kills and removes any group whose lock is free (:mod:`.gc`).  Groups named
``secrun-<pid>-<8 hex>`` were made by a secrun before the lock existed: gc removes them only
when empty.

Modules:

- :mod:`.stages`: the three stages; with :mod:`.layout` (the host's hierarchies, group names,
  cgroupfs file access), :mod:`.lock` (the run's lock, the launch's sweep), :mod:`.v1` and
  :mod:`.v2` (per-version groups, limits, kill and statistics), all a launch imports;
- :mod:`.plan`: the schema, unit parsing, ``secrun_compile`` and the fact;
- :mod:`.audit`: ``secrun_audit`` and the categories ``cgroups.memory``, ``cgroups.pids`` and
  ``cgroups.cpu``;
- :mod:`.gc` and :mod:`.cli`: ``secrun cgroups gc`` / ``list``.
"""
