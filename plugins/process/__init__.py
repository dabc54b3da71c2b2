"""The ``process`` plugin: environment, working directory, umask, rlimits and no_new_privs.

Section ``[process]``.  Child stages: ``rlimits`` (limits, umask, cwd, environment) and
``no_new_privs``.  It is the single owner of no_new_privs in secrun.

- :mod:`.stages`: the two child stages (what a launch imports);
- :mod:`.plan`: the schema and ``secrun_compile`` (limits parsed and packed into
  ``struct rlimit`` bytes at planning time, so a launch never loads the ``resource`` module);
- :mod:`.audit`: ``secrun_audit`` and the categories ``process.no_new_privs``,
  ``process.environment`` and ``process.rlimits``.
"""
