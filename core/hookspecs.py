"""The plugin contract: every hook a secrun plugin can implement.

These docstrings are the plugin author's documentation; ``docs/hooks.md`` is generated from them
(``make docs``).  A plugin is a Python module with functions decorated by ``secrun.hookimpl``,
registered under the entry-point group ``secrun.plugins`` (see ``docs/plugins.md``); the
built-in plugins are registered the same way, by secrun's own distribution.

Lifecycle:

1. *Declaring*: :func:`secrun_profile_sections`, :func:`secrun_facts`,
   :func:`secrun_audit_categories` (and :func:`secrun_register_commands`).
2. *Planning*, in secrun before anything runs, and cached: :func:`secrun_compile` (in the order
   the declared facts require), then :func:`secrun_audit` when an audit is asked for, and
   :func:`secrun_live_probe` and :func:`secrun_live_facts` when it looks at a running sandbox
   (from inside and from outside).
3. *Launching*: one hook per stage of :data:`secrun.stages.STAGES`, in that order, parent-side
   and child-side.  A plugin's hooks are called only when the effective profile contains one
   of the plugin's sections (it is *active*).
4. *Cleaning up*: :func:`secrun_cleanup`.

Each phase passes its own context (:mod:`secrun.context`): a
:class:`~secrun.context.PlanContext` to ``secrun_compile``, a
:class:`~secrun.context.RunContext` to the stage hooks and ``secrun_cleanup``, an
:class:`~secrun.context.AuditContext` to ``secrun_audit`` and ``secrun_live_facts``.  All of
them offer ``ctx.config[section]`` (the validated, merged section: a dict of plain values),
``ctx.fact(name)``, ``ctx.warn(text)`` and ``ctx.log(text)``; ``ctx.plan`` is the plugin's own
compiled plan and ``ctx.state`` its own per-run dict.  No plugin sees another's plan: what one
plugin tells others is a *fact* it declares and publishes (see :func:`secrun_facts`).

Failing: raise :class:`secrun.errors.SetupError` (the syscall or file, and what went wrong; it
keeps the errno) or let an ``OSError`` escape.  The launch stops before exec, the workload never
runs, and secrun exits 125 naming the stage and the plugin — unless the section says
``required = false``, in which case the failure is reported on stderr and in the audit, and the
launch goes on.

Stage hooks must be plain functions (no wrappers): a cached launch replays, without pluggy, the
call order pluggy computed at planning time, importing only the modules that define the stage
hooks (keep planning code in another module: a launch from the cache never imports it).

Threads: no thread may be alive when the core forks (a multi-threaded process cannot enter a new
user or time namespace, and a lock a thread holds stays held in the child); the core refuses the
fork, exit 125.  Work that should overlap the child's setup runs in a helper process (the cgroups
plugin spawns one in ``prepare`` and reaps it in ``attach``); a thread may start no earlier than
``attach`` (in ``after_fork`` the namespaces plugin may still enter a time namespace, which a
multi-threaded process cannot) and must end by ``cleanup``.

Imports: the core imports every active plugin's stage module in the supervisor before fork;
after the ``mounts`` stage the child may no longer see the Python installation.  Import what
child stages need at module level, never inside a child-stage hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .audit.categories import Category
    from .audit.rows import Row
    from .context import AuditContext, PlanContext, RunContext
    from .facts import Facts
    from .schema import Section

hookspec = pluggy.HookspecMarker("secrun")


# --- declaring ---------------------------------------------------------------------------------

@hookspec
def secrun_profile_sections() -> list[Section]:
    """Return the profile sections this plugin owns, as a list of :class:`secrun.schema.Section`.

    Runs in: secrun, at planning time, once per plugin.  Two plugins declaring the same section
    name is an error.  Every section automatically gets a ``required`` field (default ``true``).
    """


@hookspec
def secrun_facts() -> Facts:
    """Declare the facts this plugin publishes and the ones it reads: a
    :class:`secrun.facts.Facts`.

    Runs in: secrun, at planning time, once per plugin.  A fact is a named piece of plain data
    one plugin knows about the launch and others need (``namespaces.made``: the namespaces this
    launch makes; ``identity.uid``: the workload's uid; ...).  Its publisher sets it with
    ``ctx.publish(name, value)`` in ``secrun_compile``; a plugin that declared it reads it with
    ``ctx.fact(name)``: in its own ``secrun_compile`` if it declared it in ``requires`` (the
    core then compiles the fact's publishers first; a cycle is an error), in the audit, stage
    and cleanup hooks if it declared it in ``requires`` or ``uses``.  A fact no active plugin
    published reads as the default its declaring publisher gave, else None.  Facts are cached
    with the plan; ``docs/plugins.md`` lists the built-in plugins' facts.
    """


@hookspec
def secrun_audit_categories() -> list[Category]:
    """Return the scored categories of the exposure score this plugin contributes, as a list
    of :class:`secrun.audit.categories.Category` (id, title, importance, how the live audit
    judges it from facts).

    Runs in: secrun, by ``secrun audit`` and ``secrun docs``.  Every registered plugin's
    categories count, active or not: a category no active plugin reports on is exposure 1.0
    (not confined).  Several plugins may contribute to one category id (e.g. AppArmor and
    SELinux to ``mac``) if they agree on its importance.
    """


@hookspec
def secrun_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``secrun`` command line (``cli`` is a :class:`click.Group`).

    Runs in: secrun, only when a subcommand is being parsed (never on the launch path).  A
    third-party plugin lists the command names it adds as entry points of the group
    ``secrun.commands`` (name: the command word, value: the plugin module), so that
    ``secrun WORD`` finds the plugin without loading any other; a built-in subcommand name
    cannot be taken.  ``secrun -- WORD`` and ``secrun ./WORD`` still run a program.
    """


# --- planning ----------------------------------------------------------------------------------

@hookspec
def secrun_compile(ctx: PlanContext) -> object:
    """Check the plugin's sections deeply and precompute everything the launch needs; return
    the plugin's plan (what its stage hooks later find as ``ctx.plan``).

    Runs in: secrun, before fork, at planning time; the result is cached and reused by later
    launches while the profile files, the plugin modules and the files recorded with
    ``ctx.depends_on(path)`` are unchanged.  So this hook must be pure: read files and the
    kernel's fixed facts, but change nothing on the system, and return only plain data
    (str, bytes, int, float, bool, None, list, tuple, dict): it is cached with ``marshal``.
    Declare the plan's shape as a ``TypedDict`` so the stage hooks are type-checked.

    Raise :class:`secrun.errors.ConfigError` (section, key, message) for a bad value; the error
    names the profile file the value came from.  Unknown syscall names, capability names, users,
    units belong here, so ``secrun profiles check`` and ``--dry-run`` catch them.

    ``ctx.publish(name, value)`` sets the facts the plugin declared; ``ctx.note(text)`` records a
    remark about the policy that is not an error (``secrun profiles check`` prints them).
    """


@hookspec
def secrun_audit(ctx: AuditContext) -> list[Row]:
    """Describe the controls this plugin will apply, for ``secrun audit``.

    Runs in: secrun, after ``secrun_compile``, nothing applied.  Return a list of
    :class:`secrun.audit.rows.Row` (a ``TypedDict``) with keys
    ``control`` (short name), ``value`` (what will be applied, as text), ``status`` (one of
    ``enforced``, ``best-effort``, ``not-available``, ``not-configured``), ``weight`` (0.0–1.0,
    the fraction of the control's exposure that remains: 0.0 fully confined, 1.0 not at all;
    ``not-configured`` and ``not-available`` always count 1.0), and optionally
    ``section``/``key`` (where in the profile it comes from), ``detail``, ``category`` and
    ``expect``.

    ``category`` names one of the scored categories the registered plugins declare with
    :func:`secrun_audit_categories` (e.g. ``seccomp.filter``, ``namespaces.net``,
    ``filesystem.root``; the table in ``docs/audit.md`` lists them with their importance).  A row
    without a category (or with one nobody declared) is listed and checked live but does not
    change the score.

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
    - ``syscall.<name>``: ``"blocked"`` or ``"allowed"``, provided by the seccomp plugin, probed
      harmlessly (``"blocked"``: refused with EPERM/EACCES/ENOSYS or killed before the kernel
      looked at the arguments); the probed names are listed in ``docs/seccomp.md``;
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
      terminal); ``proc.pdeathsig``: the death signal's name or ``"none"``; ``proc.bound``:
      what ends the workload when its parent dies: ``"pdeathsig"`` (a SIGKILL death signal),
      ``"init"`` (its parent is pid 1 of its pid namespace, whose death kills the namespace)
      or ``"none"``;
      ``proc.sig_ignored``, ``proc.sig_blocked``: the signals ignored / blocked when the
      workload started, space-separated names or ``"none"``;
    - ``net.interfaces``: space-separated names;
    - ``rlimit.<name>``: ``"SOFT:HARD"`` as numbers or ``unlimited`` (e.g. ``rlimit.core``);
    - ``landlock.abi``: the ABI version the kernel offers (``"0"``: none).
    """


@hookspec
def secrun_live_probe() -> str:
    """Return Python source that observes facts from inside a running sandbox, for
    ``secrun audit --live``: a module defining ``probe(facts: dict, ref: dict) -> None`` that
    adds ``{name: value}`` strings to ``facts`` (e.g. ``syscall.<name>`` from calling them
    harmlessly and looking at the errno).

    Runs in: the sandbox, as part of the audit's probe (``python -I -S``), with the standard
    library only (no ``secrun`` import: the sandbox may not see it) and whatever the profile
    allows.  ``ref`` carries facts about the auditing process (its namespace links, the paths
    the rows ask about).  An exception is reported as the fact ``probe.error``.  Called for
    every registered plugin, active or not; keep it harmless and quick.
    """


@hookspec
def secrun_live_facts(ctx: AuditContext) -> dict[str, str]:
    """Observe a running sandbox from outside and return facts about it: ``{name: value}``
    (strings), for the ``expect`` of audit rows and the judges of audit categories.

    Runs in: the auditing secrun (``secrun audit --live`` or ``--pid``), outside the sandbox;
    ``ctx.pid`` is a process inside it (the audit's probe, or the process given with ``--pid``).
    Read ``/proc/<pid>/...`` and the like; change nothing.  Name the facts after your plugin
    (``myplugin.something``) and document them: a fact name no plugin and no probe provides
    fails every ``expect`` that names it.  Called for every registered plugin, active or not.
    """


# --- launching: one hook per stage, in the order of secrun.stages.STAGES ---------------------

@hookspec
def secrun_prepare(ctx: RunContext) -> None:
    """Stage ``prepare``. Runs in: the secrun supervisor, before fork.

    May assume: the plan is compiled; nothing has been changed on the system yet.  Use it for
    per-run resources (a cgroup, a loaded LSM profile) and record them in ``ctx.state`` so that
    ``secrun_cleanup`` can undo them (cleanup runs for every active plugin once the launch got
    this far, also when another plugin's prepare failed: find your own state, or nothing).
    """


@hookspec
def secrun_user_namespace(ctx: RunContext) -> None:
    """Stage ``user_namespace``. Runs in: the child, first thing after fork.

    May assume: nothing but fork has happened; the parent waits for this stage before running
    ``secrun_after_fork`` (which writes the uid/gid maps).
    """


@hookspec
def secrun_after_fork(ctx: RunContext) -> None:
    """Stage ``after_fork``. Runs in: the secrun supervisor; ``ctx.pid`` is the child's pid.

    May assume: the child has finished ``user_namespace`` and is blocked on the sync pipe; it
    runs no further code until every ``after_fork`` hook has returned.  Write uid/gid maps here.
    """


@hookspec
def secrun_namespaces(ctx: RunContext) -> None:
    """Stage ``namespaces``. Runs in: the child, after the parent's ``after_fork``.

    May assume: the child's user namespace is mapped.  It is not yet in its cgroups (see
    ``secrun_attach``), so a cgroup namespace belongs in ``hostname``.  A plugin that
    creates a pid or time namespace sets ``ctx.fork_after_namespaces = True``; the core then
    forks, so that later stages run in the new namespaces, and keeps a minimal init as pid 1.
    """


@hookspec
def secrun_mounts(ctx: RunContext) -> None:
    """Stage ``mounts``. Runs in: the child (pid 1 of a new pid namespace, if one was made).

    May assume: all namespaces exist.  Build the filesystem view here.
    """


@hookspec
def secrun_attach(ctx: RunContext) -> None:
    """Stage ``attach``. Runs in: the secrun supervisor; ``ctx.pid`` is the process that will
    exec the workload (pid 1 of a new pid namespace if one was made, else the child).

    May assume: the child has finished ``namespaces`` (and forked into its pid namespace); it
    runs ``mounts`` meanwhile and waits for this stage before ``hostname``, so no workload code
    runs before this stage is done.  Attach cgroups here.
    """


@hookspec
def secrun_hostname(ctx: RunContext) -> None:
    """Stage ``hostname``. Runs in: the child, in its UTS namespace if one was made."""


@hookspec
def secrun_rlimits(ctx: RunContext) -> None:
    """Stage ``rlimits``. Runs in: the child, still privileged.

    Resource limits, umask, working directory and ``ctx.env`` (the environment the workload gets).
    """


@hookspec
def secrun_lsm(ctx: RunContext) -> None:
    """Stage ``lsm``. Runs in: the child, still privileged.

    Set AppArmor/SELinux labels that take effect at exec (``aa_change_onexec``, ``setexeccon``).
    """


@hookspec
def secrun_identity(ctx: RunContext) -> None:
    """Stage ``identity``. Runs in: the child.

    Supplementary groups, gid and uid of the workload (inside the user namespace, if any).
    """


@hookspec
def secrun_capabilities(ctx: RunContext) -> None:
    """Stage ``capabilities``. Runs in: the child, with its final identity."""


@hookspec
def secrun_no_new_privs(ctx: RunContext) -> None:
    """Stage ``no_new_privs``. Runs in: the child, after identity and capabilities."""


@hookspec
def secrun_landlock(ctx: RunContext) -> None:
    """Stage ``landlock``. Runs in: the child; no_new_privs is set if the profile asked for it."""


@hookspec
def secrun_seccomp(ctx: RunContext) -> None:
    """Stage ``seccomp``. Runs in: the child, the very last stage before exec.

    May assume: every other control is applied and file descriptors other than 0-2 and the
    core's status pipe are closed.  Anything this hook does after loading a filter is filtered.
    """


@hookspec
def secrun_started(ctx: RunContext) -> None:
    """Stage ``started``. Runs in: the secrun supervisor, after the workload was exec'd.

    ``ctx.pid`` is the pid the supervisor waits for (the workload, or the sandbox's init).
    """


@hookspec
def secrun_cleanup(ctx: RunContext) -> None:
    """Stage ``cleanup``. Runs in: the secrun supervisor, after the workload exited, or after the
    launch failed or was stopped at any point from ``prepare`` on.

    Runs for every active plugin that implements it, in the order of the other parent stages,
    whether or not that plugin's own ``prepare`` ran or succeeded (``ctx.state`` is then empty).

    ``ctx.status`` is the raw wait status (None if the workload never ran).  Kill leftovers,
    remove per-run resources, and explain the exit with ``ctx.report(text)`` (e.g. an OOM kill).
    Exceptions here are reported but do not change the exit status.
    """
