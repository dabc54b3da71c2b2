"""The ``priority`` plugin: the workload's CPU and I/O scheduling priority, lowered.

A third-party secrun plugin (distribution ``secrun-example-plugin``), written as the complete
example of the plugin contract that ``docs/plugins.md`` walks through.  Section ``[priority]``::

    plugins = ["priority"]

    [priority]
    nice = 10                  # the workload's nice value, 0 (normal) to 19 (lowest)
    ioprio_class = "idle"      # "idle", "best-effort" or "unchanged"
    ioprio_level = 7           # best-effort only: 0 (highest) to 7 (lowest)
    autogroup = true           # also the nice value of the workload's autogroup

What it applies, and why each part:

- ``setpriority(PRIO_PROCESS)``: the nice value, inherited by every process the workload
  starts.  Only a process with ``CAP_SYS_NICE`` in the initial user namespace can lower it
  again, so it binds a workload in a new user namespace or under another uid.
- ``ioprio_set(IOPRIO_WHO_PROCESS)``: the I/O scheduling class, honoured by the BFQ and
  mq-deadline I/O schedulers (``idle``: disk time only when nobody else wants it).
- the *autogroup* nice (``/proc/PID/autogroup``): with ``kernel.sched_autogroup_enabled``,
  the kernel shares CPU time between sessions first, and secrun runs the workload in a session
  of its own, so a nice value alone weighs only against the workload's own processes.  A
  workload that calls ``setsid()`` starts a new autogroup at nice 0 (its nice value stays):
  only a cgroup CPU weight (the ``cgroups`` plugin) bounds that.  With a pid or time namespace
  (the ``default`` and ``strict`` profiles make a pid one), the process that execs the workload
  was forked for the namespace and is not the leader of the session the stages ran in, so it
  starts a session of its own at exec: its autogroup cannot be set, which the plugin notes
  (``secrun profiles check``) and its audit says.

This package's ``__init__`` holds no code and imports nothing: a launch imports
``secrun_example.stages`` (and so this file) and nothing else of the plugin.

- :mod:`.plugin`: the module pluggy registers (imports of the hook implementations only);
- :mod:`.plan`: the section, the facts, ``secrun_compile`` and the plan's ``TypedDict``;
- :mod:`.stages`: the stage hooks, ``rlimits`` (child) and ``attach`` (supervisor);
- :mod:`.ioprio`: the I/O priority system calls and their encoding;
- :mod:`.audit`: the audit rows, the scored categories ``priority.cpu`` and ``priority.io``
  with their judges, and the live facts (from inside: :mod:`.probe`; from outside:
  :mod:`.observe`);
- :mod:`.commands`: ``secrun priority show PID``.
"""
