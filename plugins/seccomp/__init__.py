"""The ``seccomp`` plugin: which system calls the workload may make, with argument conditions.

Section ``[seccomp]``.  Planning (``secrun_compile``, cached): the profile's allow/deny lists,
named groups (``data/seccomp_groups.json``), per-call actions, argument conditions and an
optional Docker/OCI JSON import are compiled with libseccomp into one classic-BPF program,
stored as bytes in the plan.  Child stage ``seccomp``, the last before exec: the bytes are
loaded with ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`` through ctypes, so a launch never
imports pyseccomp (~35 ms) or libseccomp.

The kernel accepts a filter from a process that has no_new_privs set or holds CAP_SYS_ADMIN.
secrun does not set no_new_privs here: ``[process].no_new_privs`` (default true) owns it and
runs in the stage before.  A profile that turns it off must keep CAP_SYS_ADMIN (e.g. a root
workload without capability dropping); otherwise the load fails with EACCES and the launch
stops with an error naming both fixes.  See ``docs/seccomp.md``.

- :mod:`.stages`: ``prepare`` and the ``seccomp`` stage (what a launch imports);
- :mod:`.plan`: the schema and ``secrun_compile``;
- :mod:`.rules`: profile values -> actions, groups, the per-call rules and argument checks;
- :mod:`.oci`: the Docker/OCI JSON import (``[seccomp].import``) and export;
- :mod:`.bpf`: the rule model -> one BPF program, with libseccomp (pyseccomp);
- :mod:`.audit`: ``secrun_audit`` and the category ``seccomp.filter``;
- :mod:`.cli`: the ``secrun seccomp export|groups`` subcommands.
"""
