"""The ``capabilities`` plugin: which Linux capabilities survive into the workload.

Section ``[capabilities]``.  Child stage ``capabilities``, which runs after ``identity`` (the
workload's uid, gid and groups are final) and before ``no_new_privs`` (owned by the ``process``
plugin), ``landlock`` and ``seccomp``.

All five sets are handled deliberately.  With K = the capabilities the profile keeps, limited to
those secrun itself holds (a profile can only take capabilities away, never grant new ones):

=========== ======================= ===========================================================
set          root workload           non-root workload
=========== ======================= ===========================================================
bounding     K                       K             (``PR_CAPBSET_DROP`` for every other cap)
permitted    K                       K             (``capset``)
effective    K                       K             (``capset``)
inheritable  empty                   K             (``capset``; ambient needs it)
ambient      empty                   K             (``PR_CAP_AMBIENT_RAISE``)
=========== ======================= ===========================================================

A root workload needs no ambient or inheritable capabilities: at ``execve`` the kernel gives
uid 0 its whole bounding set (K).  A non-root workload loses its permitted set at ``execve``
unless the capabilities are ambient, and an ambient capability must be permitted and
inheritable.  Inside a user namespace "root" means uid 0 of that namespace.

The valid capability numbers are 0 .. ``/proc/sys/kernel/cap_last_cap`` of the running kernel;
names for numbers beyond the known table are written ``cap_<n>`` (or just the number).

Facts: publishes ``capabilities.managed`` (True: this launch sets the capability sets, so the
identity stage keeps the permitted set across its uid change); the audit uses ``identity.uid``,
``namespaces.made`` and ``namespaces.user_root`` to tell which sets the workload ends up with.

- :mod:`.stages`: the stage and the kernel interface it uses (capget/capset/prctl), what a
  launch imports (the capability names are :mod:`secrun.kernel`'s, shared with seccomp);
- :mod:`.plan`: the schema, the profile's capability lists and ``secrun_compile``;
- :mod:`.audit`: ``secrun_audit``, the category ``capabilities`` and the one table of what each
  capability weighs in the exposure score.
"""
