"""The ``selinux`` plugin: run the workload in an SELinux domain.

Section ``[selinux]``: ``context = "user:role:type:level"``, or just ``type = "..."`` (the user,
role and level are taken from secrun's own context at launch).

Where each step runs, and why:

- ``secrun_compile`` (planning, cached) checks only the syntax.  Whether a context is valid is
  a question for the policy loaded in the running kernel, which an administrator can change at
  any time (``semodule -i``) without anything secrun could record as a cache dependency; so the
  policy check is done at every launch, where it costs one write to selinuxfs.
- ``secrun_prepare`` (supervisor, before fork): checks that SELinux is active, builds the full
  context, validates it against the loaded policy and opens ``libselinux.so.1``.
- ``secrun_lsm`` (child): ``setexeccon(context)``: the domain transition happens at exec.

The policy must allow the transition: ``process { transition }`` from secrun's domain to the
target, ``file { entrypoint }`` on the workload's executable, and, when no_new_privs is set
(the default), ``process2 { nnp_transition }`` (or a bounded target type).  Otherwise exec fails
with EACCES/EPERM and secrun reports it.  The plugin publishes and reads no facts.

Modules: :mod:`.stages` (``prepare`` and ``lsm``, the availability checks and the context
syntax: all a launch imports), :mod:`.plan` (the schema and the syntax check), :mod:`.audit`
(the row, and the plugin's part of the category ``mac``).
"""
