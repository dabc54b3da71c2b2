"""The plugin contract: every hook a secrun plugin can implement.

These docstrings are the plugin author's documentation; ``docs/hooks.md`` is generated from them
(``make docs``).  A plugin is a Python module with functions decorated by ``secrun.hookimpl``,
registered under the entry-point group ``secrun.plugins`` (see ``docs/plugins.md``).

Lifecycle:

1. *Declaring*: :func:`secrun_profile_sections` (and :func:`secrun_register_commands`).
2. *Planning*, in secrun before anything runs, and cached: :func:`secrun_compile`, then
   :func:`secrun_audit` when an audit is asked for.
3. *Launching*: one hook per stage of :data:`secrun.stages.STAGES`, in that order, parent-side
   and child-side.  A plugin's stage hooks are called only when the effective profile contains
   one of the plugin's sections.
4. *Cleaning up*: :func:`secrun_cleanup`.

Every hook receives ``ctx``, a :class:`secrun.context.Context`: ``ctx.config[section]`` is the
validated, merged section (a dict of plain values); ``ctx.plan[section]`` is what the plugin's
``secrun_compile`` stored (plain data: it is cached with ``marshal``); ``ctx.state`` is a per-run
dict for the plugin's own runtime state (use your section name as the key).

Failing: raise :class:`secrun.errors.SetupError` ("which syscall or file", "what went wrong")
or let an ``OSError`` escape.  The launch stops before exec, the workload never runs, and secrun
exits 125 naming the stage and the plugin — unless the section says ``required = false``, in
which case the failure is reported on stderr and in the audit, and the launch goes on.

Stage hooks must be plain functions (no wrappers): a cached launch replays, without pluggy, the
call order pluggy computed at planning time.

Imports: the core imports every active plugin module in the supervisor before fork; after the
``mounts`` stage the child may no longer see the Python installation.  Import what child stages
need at module level, never inside a child-stage hook.
"""

import pluggy

hookspec = pluggy.HookspecMarker("secrun")


# --- declaring ---------------------------------------------------------------------------------

@hookspec
def secrun_profile_sections():
    """Return the profile sections this plugin owns, as a list of :class:`secrun.schema.Section`.

    Runs in: secrun, at planning time, once per plugin.  Two plugins declaring the same section
    name is an error.  Every section automatically gets a ``required`` field (default ``true``).
    """


@hookspec
def secrun_register_commands(cli):
    """Add subcommands to the ``secrun`` command line (``cli`` is a :class:`click.Group`).

    Runs in: secrun, only when a subcommand is being parsed (never on the launch path).
    """


# --- planning ----------------------------------------------------------------------------------

@hookspec
def secrun_compile(ctx):
    """Check the plugin's sections deeply and precompute everything the launch needs.

    Runs in: secrun, before fork, at planning time; the result is cached and reused by later
    launches while the profile files, the plugin modules and the files recorded with
    ``ctx.depends_on(path)`` are unchanged.  So this hook must be pure: read files and the
    kernel's fixed facts, but change nothing on the system, and store only plain data
    (str, bytes, int, float, bool, None, list, tuple, dict) in ``ctx.plan[section]``.

    Raise :class:`secrun.errors.ConfigError` (section, key, message) for a bad value; the error
    names the profile file the value came from.  Unknown syscall names, capability names, users,
    units belong here, so ``secrun profiles check`` and ``--dry-run`` catch them.

    A plan that is a dict may carry ``"notes"``: a list of one-line strings about the policy
    that are not errors (e.g. which working directories the view will not show);
    ``secrun profiles check`` prints them.
    """


@hookspec
def secrun_audit(ctx):
    """Describe the controls this plugin will apply, for ``secrun audit``.

    Runs in: secrun, after ``secrun_compile``, nothing applied.  Return a list of dicts with keys
    ``control`` (short name), ``value`` (what will be applied, as text), ``status`` (one of
    ``enforced``, ``best-effort``, ``not-available``, ``not-configured``), ``weight`` (0.0–1.0,
    the fraction of the control's exposure that remains: 0.0 fully confined, 1.0 not at all;
    ``not-configured`` and ``not-available`` always count 1.0), and optionally
    ``section``/``key`` (where in the profile it comes from), ``detail``, ``category`` and
    ``expect``.

    ``category`` names a row of the control table in ``docs/audit.md`` (e.g. ``seccomp.filter``,
    ``namespaces.net``, ``filesystem.root``); the table gives each category its importance in the
    exposure score.  Without it, the audit matches the row by its section, key and control name;
    a row that matches no category is listed and checked live but does not change the score.

    ``expect`` is what ``secrun audit --live`` must observe from inside the running sandbox for
    the row to count as in effect: a dict of *fact* -> expected value (strings; ``"A|B"``
    accepts either).  A row whose
    status is ``enforced`` and whose expected fact does not hold fails the live audit (exit 2);
    an unknown fact name fails it too.  Facts:

    - ``status.CapInh|CapPrm|CapEff|CapBnd|CapAmb``: hex masks as in ``/proc/self/status``
      (16 hex digits, e.g. ``"0000000000000000"``); ``status.NoNewPrivs``: ``"0"``/``"1"``;
      ``status.Seccomp``: ``"0"``/``"1"``/``"2"``; ``status.Seccomp_filters``: a number;
    - ``ns.<user|pid|mnt|net|uts|ipc|cgroup|time>``: ``"new"`` (differs from secrun's own) or
      ``"host"``;
    - ``id.uid``, ``id.gid``: numbers as text (as seen inside); ``id.groups``: space-separated;
    - ``lsm.apparmor``: the label from ``/proc/self/attr/apparmor/current``;
      ``lsm.selinux``: the context from ``/proc/self/attr/current``;
    - ``cgroup.<file>``: the content of that file in the workload's cgroup, e.g.
      ``cgroup.memory.max`` or (v1) ``cgroup.memory.limit_in_bytes``; ``cgroup.locked``:
      ``"yes"`` when the supervisor holds the lock of each of the workload's secrun groups,
      ``"no"``, or ``"none"`` (in no secrun group);
    - ``plan.cache``: ``"fresh"``, ``"stale"`` or ``"none"``: what a launch with the same
      arguments from the same directory would take from the plan cache;
    - ``syscall.<name>``: ``"blocked"`` or ``"allowed"``, probed harmlessly (``"blocked"``: refused
      with EPERM/EACCES/ENOSYS or killed before the kernel looked at the arguments); the probed
      names are listed in ``docs/audit.md``;
    - ``fs.root_writable``: ``"yes"``/``"no"``; ``fs.home``: ``"hidden"``/``"ro"``/``"rw"``;
      ``fs.tmp``: ``"private"``/``"host"``; ``fs.dev``: ``"minimal"``/``"host"``;
      ``fs.proc_sys``: ``"ro"``/``"rw"`` (the mounts at those paths, from ``mountinfo``);
    - ``mount:PATH``: the mount a lookup of PATH ends on inside the sandbox, as
      ``"POINT FSTYPE ro|rw"`` (the mount tree is walked by parent ids, so a mount hidden under
      a later mount of a parent directory is not it); the expected value may use ``*`` for a
      word, e.g. ``"/proc/sys * ro"``; ``fs.sys``: ``"netns"`` (sysfs shows only the
      sandbox's own network interfaces), ``"host"`` or ``"none"``; ``fs.sys_cgroup``:
      ``"own"`` (cgroup mounts under /sys/fs/cgroup rooted in the sandbox's cgroup
      namespace), ``"host"`` or ``"none"``;
    - ``proc.session``, ``proc.pgrp``: ``"own"`` or ``"caller"`` (shared with the process that
      started secrun); ``proc.tty``: ``"none"``, ``"own"`` or ``"caller"`` (the controlling
      terminal); ``proc.pdeathsig``: the death signal's name or ``"none"``;
      ``proc.sig_ignored``, ``proc.sig_blocked``: the signals ignored / blocked when the
      workload started, space-separated names or ``"none"``;
    - ``net.interfaces``: space-separated names;
    - ``rlimit.<name>``: ``"SOFT:HARD"`` as numbers or ``unlimited`` (e.g. ``rlimit.core``);
    - ``landlock.abi``: the ABI version the kernel offers (``"0"``: none).
    """


# --- launching: one hook per stage, in the order of secrun.stages.STAGES ---------------------

@hookspec
def secrun_prepare(ctx):
    """Stage ``prepare``. Runs in: the secrun supervisor, before fork.

    May assume: the plan is compiled; nothing has been changed on the system yet.  Use it for
    per-run resources (a cgroup, a loaded LSM profile) and record them in ``ctx.state`` so that
    ``secrun_cleanup`` can undo them; cleanup runs for every plugin whose prepare ran.
    """


@hookspec
def secrun_user_namespace(ctx):
    """Stage ``user_namespace``. Runs in: the child, first thing after fork.

    May assume: nothing but fork has happened; the parent waits for this stage before running
    ``secrun_after_fork`` (which writes the uid/gid maps).
    """


@hookspec
def secrun_after_fork(ctx):
    """Stage ``after_fork``. Runs in: the secrun supervisor; ``ctx.pid`` is the child's pid.

    May assume: the child has finished ``user_namespace`` and is blocked on the sync pipe; it
    runs no further code until every ``after_fork`` hook has returned.  Write uid/gid maps here.
    """


@hookspec
def secrun_namespaces(ctx):
    """Stage ``namespaces``. Runs in: the child, after the parent's ``after_fork``.

    May assume: the child's user namespace is mapped.  It is not yet in its cgroups (see
    ``secrun_attach``), so a cgroup namespace belongs in ``hostname``.  A plugin that
    creates a pid or time namespace sets ``ctx.fork_after_namespaces = True``; the core then
    forks, so that later stages run in the new namespaces, and keeps a minimal init as pid 1.
    """


@hookspec
def secrun_mounts(ctx):
    """Stage ``mounts``. Runs in: the child (pid 1 of a new pid namespace, if one was made).

    May assume: all namespaces exist.  Build the filesystem view here.
    """


@hookspec
def secrun_attach(ctx):
    """Stage ``attach``. Runs in: the secrun supervisor; ``ctx.pid`` is the process that will
    exec the workload (pid 1 of a new pid namespace if one was made, else the child).

    May assume: the child has finished ``namespaces`` (and forked into its pid namespace); it
    runs ``mounts`` meanwhile and waits for this stage before ``hostname``, so no workload code
    runs before this stage is done.  Attach cgroups here.
    """


@hookspec
def secrun_hostname(ctx):
    """Stage ``hostname``. Runs in: the child, in its UTS namespace if one was made."""


@hookspec
def secrun_rlimits(ctx):
    """Stage ``rlimits``. Runs in: the child, still privileged.

    Resource limits, umask, working directory and ``ctx.env`` (the environment the workload gets).
    """


@hookspec
def secrun_lsm(ctx):
    """Stage ``lsm``. Runs in: the child, still privileged.

    Set AppArmor/SELinux labels that take effect at exec (``aa_change_onexec``, ``setexeccon``).
    """


@hookspec
def secrun_identity(ctx):
    """Stage ``identity``. Runs in: the child.

    Supplementary groups, gid and uid of the workload (inside the user namespace, if any).
    """


@hookspec
def secrun_capabilities(ctx):
    """Stage ``capabilities``. Runs in: the child, with its final identity."""


@hookspec
def secrun_no_new_privs(ctx):
    """Stage ``no_new_privs``. Runs in: the child, after identity and capabilities."""


@hookspec
def secrun_landlock(ctx):
    """Stage ``landlock``. Runs in: the child; no_new_privs is set if the profile asked for it."""


@hookspec
def secrun_seccomp(ctx):
    """Stage ``seccomp``. Runs in: the child, the very last stage before exec.

    May assume: every other control is applied and file descriptors other than 0-2 and the
    core's status pipe are closed.  Anything this hook does after loading a filter is filtered.
    """


@hookspec
def secrun_started(ctx):
    """Stage ``started``. Runs in: the secrun supervisor, after the workload was exec'd.

    ``ctx.pid`` is the pid the supervisor waits for (the workload, or the sandbox's init).
    """


@hookspec
def secrun_cleanup(ctx):
    """Stage ``cleanup``. Runs in: the secrun supervisor, after the workload exited or the launch
    failed after ``prepare``.

    ``ctx.status`` is the raw wait status (None if the workload never ran).  Kill leftovers,
    remove per-run resources, and explain the exit with ``ctx.report(text)`` (e.g. an OOM kill).
    Exceptions here are reported but do not change the exit status.
    """
