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

- :mod:`.stages`: the identity stage (what a launch imports);
- :mod:`.plan`: the schema and ``secrun_compile`` (name resolution);
- :mod:`.audit`: ``secrun_audit`` and the category ``identity``.
"""
