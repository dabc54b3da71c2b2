"""The ``cgroups`` plugin: memory, swap, pids, CPU and io limits in a fresh cgroup per run.

Section ``[cgroups]``.  Stages: ``prepare`` (supervisor, before fork: create the run's group(s),
start warming up the kernel's cgroup migration in a helper process, write the limits),
``attach`` (supervisor: reap that helper and move the process that will exec into the groups
while it builds its filesystem view; it waits for this before its next stage, so the workload
runs no code of its own outside its group), ``started`` (remove dead runs' leftovers, while
the workload runs), ``cleanup`` (kill whatever is left, remove the groups, report OOM kills and
a hit pids limit).
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
so the lock is free exactly when the supervisor is gone (:mod:`.lock`).  ``started`` removes the
empty groups whose lock is free next to the run's own (:func:`.lock.sweep`), and ``secrun
cgroups gc`` kills and removes any group whose lock is free (:mod:`.gc`).  Groups named
``secrun-<pid>-<8 hex>`` were made by a secrun before the lock existed: gc removes them only
when empty.

Modules:

- the package itself: the three stages; with :mod:`.layout` (the host's hierarchies, group names,
  cgroupfs file access), :mod:`.lock` (the run's lock, the launch's sweep), :mod:`.v1` and
  :mod:`.v2` (per-version groups, limits, kill and statistics), all a launch imports;
- :mod:`.plan`: the schema, unit parsing, ``secrun_compile`` and the fact;
- :mod:`.audit`: ``secrun_audit`` and the categories ``cgroups.memory``, ``cgroups.pids`` and
  ``cgroups.cpu``;
- :mod:`.gc` and :mod:`.cli`: ``secrun cgroups gc`` / ``list``.

The stages (this module: all that a launch from the plan cache imports of the plugin):

With :mod:`.layout` and :mod:`.lock`; :mod:`.v1` and :mod:`.v2` are imported as the host's
hierarchies need them (every hook here runs in the supervisor, which always sees the
installation).

- ``prepare`` (supervisor, before fork): the run's groups are made and locked, the warm-up of
  the kernel's cgroup migration starts in a helper process (:func:`_start_warmup`), the
  limits are written;
- ``attach`` (supervisor, while the child builds its filesystem view): the helper is reaped
  and the process that will exec is moved into the groups;
- ``started`` (supervisor, once the workload runs): the sweep of dead runs' leftovers;
- ``cleanup``: the helper is reaped (whatever failed before), the statistics read, what is
  left in the groups killed, the groups removed, an OOM kill or a hit pids limit reported.
"""

from __future__ import annotations

import _signal
import errno
import os
import sys

from secrun import hookimpl
from secrun.errors import SetupError, errno_text
from secrun.kernel import buffer, error, get_errno, libc

from .layout import (
    CONTROLLER_OF,
    CPU_PERIOD_US,
    SECTION,
    Layout,
    detect,
    human,
    new_name,
    parent_dir,
    read,
    set_limits,
)
from .lock import sweep

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .layout import Manager
    from .plan import CgroupsPlan


# --- which manager carries what ---------------------------------------------------------------

def _v1_name(controller: str) -> str:
    return "blkio" if controller == "io" else controller


def managers_for(layout: Layout, plan: CgroupsPlan, name: str) -> tuple[list[Manager], set[str]]:
    """Decide which manager carries which controller; returns (managers, missing): each
    controller is used where the host binds it, v1 first; the v2 group, where there is a v2
    tree, tracks the run (and carries the limits no v1 hierarchy can)."""
    needed = {CONTROLLER_OF[k] for k in set_limits(plan)}
    parent = plan["parent"] or layout.delegated() or ""
    v1_ctrls = {_v1_name(c) for c in needed if _v1_name(c) in layout.v1}
    rest = {c for c in needed if _v1_name(c) not in v1_ctrls}
    v2_dir = None
    v2_ctrls: set[str] = set()
    if layout.v2 is not None:
        v2_dir = parent_dir(layout.v2[0], layout.v2[1], parent)
        if rest:  # only then does the v2 tree have to carry a limit
            v2_ctrls = rest & layout.v2_controllers(v2_dir)
    mgrs: list[Manager] = []
    if v1_ctrls or layout.v2 is None:
        if layout.v2 is None:
            # the v1 way to kill a whole group, and CPU time for the report
            extra = {"freezer", "cpuacct"} if "cpu" in v1_ctrls else {"freezer"}
            v1_ctrls |= extra & set(layout.v1)
        if v1_ctrls:
            from .v1 import V1Manager  # (the supervisor only: imported as the host needs it)

            mgrs.append(V1Manager({c: parent_dir(layout.v1[c][0], layout.v1[c][1],
                                                 parent) for c in sorted(v1_ctrls)},
                                  name))
    if v2_dir is not None:
        from .v2 import V2Manager

        mgrs.append(V2Manager(v2_dir, name, sorted(v2_ctrls)))
    return mgrs, rest - v2_ctrls


def limits_text(plan: CgroupsPlan) -> str:
    parts = []
    if plan["memory_max"] is not None:
        parts.append(f"memory_max={human(plan['memory_max'])}")
    if plan["swap_max"] is not None:
        parts.append(f"swap_max={human(plan['swap_max'])}")
    if plan["pids_max"] is not None:
        parts.append(f"pids_max={plan['pids_max']}")
    q = plan["cpu_max"]
    if q is not None:
        parts.append(f"cpu_max={q / CPU_PERIOD_US:g} CPUs" if isinstance(q, int)
                     else "cpu_max=max")
    if plan["cpu_weight"] is not None:
        parts.append(f"cpu_weight={plan['cpu_weight']}")
    if plan["io_weight"] is not None:
        parts.append(f"io_weight={plan['io_weight']}")
    return ", ".join(parts) or "no limits (tracking only)"


# --- prepare -------------------------------------------------------------------------------------

@hookimpl(tryfirst=True)  # first: the warm-up below starts the kernel's wait early
def secrun_prepare(ctx: RunContext) -> None:
    plan: CgroupsPlan = ctx.plan
    st = ctx.state
    made: list[Manager] = []
    st["managers"] = made  # filled as the groups are made: cleanup removes whatever exists
    layout = detect()
    if layout.kind == "none":
        raise SetupError("/proc/self/mountinfo", "no cgroup hierarchy is mounted")
    # The warm-up helper starts now and waits for the groups to exist (see _start_warmup).
    own = layout.own_procs()
    if own is not None:
        st["warm"] = _start_warmup(own)
    made_all = False
    try:
        try:
            mgrs = _make_groups(ctx, layout, made)
        except SetupError as e:
            if e.errno not in NO_ACCESS or not plan["substitutes"]:
                raise
            _substitute(ctx, e, made)
            return
        made_all = True
    finally:
        # As soon as the groups exist (or never, when making them failed: its pipe must not
        # outlive prepare, the child would inherit it): the no-op migration holds the kernel's
        # cgroup_mutex while it waits, which mkdir needs too, but the limit writes do not.
        _release_warmup(st, go=made_all)
    for m in mgrs:
        m.apply(plan, ctx)
    if ctx.verbose:
        ctx.log(f"cgroups: {layout.kind} layout; groups "
                + ", ".join(d for m in mgrs for d in m.dirs) + f"; {limits_text(plan)}")


# the errors of a caller without a writable cgroup tree
NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


def _substitute(ctx: RunContext, e: SetupError, made: list[Manager]) -> None:
    """No writable cgroup tree: the groups made so far go, and the plan's rlimits stand in
    for the limits they have (applied in the child's ``rlimits`` stage), said on stderr."""
    plan: CgroupsPlan = ctx.plan
    for m in made:
        try:
            m.remove()
        except OSError:
            pass  # empty, and locked by us: what is left, gc removes
    made.clear()
    ctx.state["substituted"] = True
    subs = plan["substitutes"]
    done = {s["key"] for s in subs}
    rest = [k for k in set_limits(plan) if k not in done]
    ctx.warn(f"cgroups: no writable cgroup tree ({e.what}: {errno_text(e.errno or 0)}); "
             f"substituted: "
             + "; ".join(f"{s['key']} {human(s['value'])} by RLIMIT_{s['name'].upper()} "
                         f"({s['means']})" for s in subs)
             + (f"; not applied: {', '.join(rest)}" if rest else ""))


def _make_groups(ctx: RunContext, layout: Layout, made: list[Manager]) -> list[Manager]:
    """Decide the managers, refuse (or report) the controllers the host lacks and make the
    run's groups; ``made`` records each manager first."""
    plan: CgroupsPlan = ctx.plan
    mgrs, missing = managers_for(layout, plan, new_name())
    for c in sorted(missing):
        keys = [k for k in set_limits(plan) if CONTROLLER_OF[k] == c]
        text = (f"the {c} controller is not available to secrun on this host "
                f"({layout.kind} layout): {', '.join(f'[cgroups].{k}' for k in keys)} "
                f"not applied")
        if ctx.required(SECTION):
            raise SetupError(f"cgroup {c} controller", text)
        ctx.warn(text)
    for m in mgrs:
        made.append(m)  # recorded first: a failed create leaves what it made to cleanup
        m.create()
    return mgrs


# --- the warm-up of the kernel's cgroup migration ------------------------------------------------
# Moving a task between cgroups takes the kernel's global ``cgroup_threadgroup_rwsem`` for
# writing, and the first writer after a quiet spell waits a full RCU grace period (5-15 ms
# here) before it gets it; writers within ~14 ms after that do not wait.  So, as early as
# possible, a helper process rewrites its own pid into the ``cgroup.procs`` of the group it is
# already in (a migration that moves nothing): the grace period then elapses while the
# supervisor prepares and forks and the child makes its namespaces and builds its filesystem
# view, and ``attach`` finds the lock warm.  A process, not a thread: no thread may be alive
# when secrun forks or enters a namespace, and a thread started only after the fork leaves
# the grace period too little time (attach took ~9-13 ms instead of ~2-4 ms here).  The helper
# is reaped in ``attach`` and, on every path where attach did not run, in ``cleanup``.

def _start_warmup(path: str) -> tuple[int, int] | None:
    """Start the helper that makes the no-op migration; returns (its pid, the write end of the
    pipe that releases it), or None (not started).

    ``/bin/sh -c 'read -r x && echo 0 >"$1"'``, spawned (vfork and exec: the supervisor neither
    waits for it nor shares its memory copy-on-write with it, which a forked copy of the
    supervisor would make it pay in page faults while the helper waits).  It is started before
    the groups are made, so that its exec is over by the time they exist, and it writes when
    :func:`_release_warmup` sends it a line; if the launch fails first, the pipe's EOF ends it
    without a write.  Started before the namespaces plugin makes the pid and time namespaces
    for the child (the last thing in ``prepare``): a process started after that would be the
    sandbox's pid 1, so then there is no warm-up."""
    try:
        if os.readlink("/proc/self/ns/pid_for_children") != os.readlink("/proc/self/ns/pid"):
            return None
        r, w = os.pipe2(os.O_CLOEXEC)
    except OSError:
        return None
    try:
        # stdin is the pipe; stdout and stderr /dev/null; nothing else of secrun's (nor the
        # caller's inherited descriptors), and default signal dispositions
        actions = [(os.POSIX_SPAWN_DUP2, r, 0), *_QUIET,
                   *((os.POSIX_SPAWN_CLOSE, fd) for fd in _open_fds() if fd > 2)]
        pid = os.posix_spawn(_SH, [_SH, "-c", 'read -r x && echo 0 >"$1"', "sh", path], {},
                             file_actions=actions, setsigdef=_SIGDEF)
    except OSError:
        os.close(w)
        return None  # only an optimisation: the real attach reports real errors
    finally:
        os.close(r)
    return pid, w


def _release_warmup(st: dict, go: bool) -> None:
    """Let the helper make its migration now (``go``: the groups exist), or end it unused; its
    pipe is closed either way."""
    warm = st.get("warm")
    if warm is not None and warm[1] >= 0:
        if go:
            try:
                os.write(warm[1], b"\n")
            except OSError:
                pass
        os.close(warm[1])
        st["warm"] = (warm[0], -1)


_SH = "/bin/sh"
_SIGDEF = (_signal.SIGPIPE, _signal.SIGXFSZ)  # ignored in Python, and so in what it spawns


def _open_fds() -> list[int]:
    """The descriptors open in secrun now."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            os.fstat(fd)  # (the listing's own descriptor is closed by now)
        except OSError:
            continue
        fds.append(fd)
    return fds
# the helper's other standard streams: /dev/null (it has nothing to say, holds no terminal)
_QUIET = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (1, 2)]


def _join_warmup(st: dict) -> None:
    """Reap the warm-up helper, if one was started and not yet reaped: it exits as soon as
    its migration is done, or at once when it was never released (its pipe closed here)."""
    warm = st.pop("warm", None)
    if warm is not None:
        pid, w = warm
        if w >= 0:
            os.close(w)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass  # the core's wait for any child (an adopted orphan) reaped it already


# --- attach --------------------------------------------------------------------------------------

@hookimpl
def secrun_attach(ctx: RunContext) -> None:
    st = ctx.state
    try:
        if st.get("managers") and ctx.pid is not None:
            _check_usage(ctx.plan, ctx.pid)  # needs no lock: done while the warm-up waits
            _join_warmup(st)
            for m in st["managers"]:
                m.add_task(ctx.pid)
    finally:
        _join_warmup(st)


def _check_usage(plan: CgroupsPlan, pid: int) -> None:
    """Refuse a memory limit below what the waiting child already holds: its private
    (anonymous) memory is what its remaining setup touches and gets charged for, so the
    workload would be OOM-killed before it ran a line of its own.  The figure is RssAnon,
    read as resident - shared pages from ``/proc/PID/statm`` (the same kernel counters, a
    cheaper file than ``status``)."""
    mem = plan["memory_max"]
    if isinstance(mem, int):
        path = f"/proc/{pid}/statm"
        f = read(path).split()
        rss = (int(f[1]) - int(f[2])) * os.sysconf("SC_PAGE_SIZE") if len(f) > 2 else 0
        if mem < rss:
            raise SetupError(f"[cgroups].memory_max = {human(mem)}",
                             f"the limit ({mem} bytes) is below the current usage of the "
                             f"process being placed in the group ({rss} bytes of private "
                             f"memory, RssAnon from {path}): raise memory_max")


# --- rlimits (the child) -------------------------------------------------------------------------

@hookimpl
def secrun_rlimits(ctx: RunContext) -> None:
    """Where ``prepare`` found no writable cgroup tree: the substitute rlimits.  A hard limit
    already lower than the substitute stays (raising it needs CAP_SYS_RESOURCE of the host)."""
    if not ctx.state.get("substituted"):
        return
    for s in ctx.plan["substitutes"]:
        if _setrlimit(s["resource"], s["packed"]) == 0:
            continue
        err = get_errno()
        current = _RLIMIT_BUF
        if _getrlimit(s["resource"], current) != 0 \
                or int.from_bytes(current.raw[8:16], sys.byteorder) > s["value"]:
            raise error(f"setrlimit(RLIMIT_{s['name'].upper()}) (substituting "
                        f"[cgroups].{s['key']})", err)


_setrlimit = libc.setrlimit  # looked up before fork
_getrlimit = libc.getrlimit
_RLIMIT_BUF = buffer(16)


# --- started -------------------------------------------------------------------------------------

@hookimpl
def secrun_started(ctx: RunContext) -> None:
    """The workload runs: now, off the launch's path, remove the leftovers of dead runs next
    to this run's groups (a supervisor that was SIGKILLed cannot clean up after itself)."""
    mgrs: list[Manager] = ctx.state.get("managers") or []
    sweep({p for m in mgrs for p in m.parents()})


# --- cleanup -------------------------------------------------------------------------------------

@hookimpl
def secrun_cleanup(ctx: RunContext) -> None:
    st = ctx.state
    _join_warmup(st)
    mgrs: list[Manager] = st.get("managers") or []
    if not mgrs:
        return
    # The v2 group first: it holds every process of the run (on a hybrid host it exists to
    # track them), and cgroup.kill takes its whole tree at once.
    mgrs = sorted(mgrs, key=lambda m: m.kind != "v2")
    stats = _stats(mgrs, full=bool(ctx.verbose))
    errors = _remove(mgrs)
    if ctx.status is not None or stats.get("oom_kill"):
        _report(ctx, stats)
    if errors:
        raise errors[0]


def _stats(mgrs: list[Manager], full: bool) -> dict[str, int]:
    stats: dict[str, int] = {}
    for m in mgrs:
        try:
            for k, v in m.stats(full=full).items():
                stats[k] = max(stats.get(k, 0), v)
        except Exception:  # a statistic is not worth failing for
            pass
    return stats


def _remove(mgrs: list[Manager]) -> list[Exception]:
    """Kill what is left and remove the groups, v2 first; the errors met, in order."""
    errors: list[Exception] = []
    # If the v2 group can be removed right away, no process of the run is left and none made a
    # group of its own: the other groups need no kill pass, only their rmdir, which still falls
    # back to kill-and-retry should one of them hold anything.
    if not mgrs[0].discard():
        for m in mgrs:
            try:
                m.kill()
            except Exception as e:  # go on removing the other groups
                errors.append(e)
    for m in mgrs:
        try:
            m.remove()
        except Exception as e:
            errors.append(e)
    return errors


def _report(ctx: RunContext, stats: dict[str, int]) -> None:
    plan: CgroupsPlan = ctx.plan
    oom = stats.get("oom_kill", 0)
    status = ctx.status
    if oom:
        mem = plan["memory_max"]
        limit = f"{human(mem)} ({mem} bytes)" if isinstance(mem, int) else str(mem)
        who = ("the workload was" if status is not None and os.WIFSIGNALED(status)
               and os.WTERMSIG(status) == 9 else f"{oom} process(es) of the workload were")
        ctx.report(f"{who} killed by the memory limit: [cgroups].memory_max = {limit} "
                   f"(OOM kills in the group: {oom})")
    hits = stats.get("pids_max_hits", 0)
    if hits:
        ctx.report(f"the workload hit the pids limit: [cgroups].pids_max = {plan['pids_max']} "
                   f"({hits} fork/clone call(s) failed with EAGAIN)")
    if ctx.verbose:
        _log_usage(ctx, stats)


def _log_usage(ctx: RunContext, stats: dict[str, int]) -> None:
    parts = []
    if stats.get("memory_peak"):
        parts.append(f"peak memory {human(stats['memory_peak'])} "
                     f"({stats['memory_peak']} bytes)")
    if "cpu_usec" in stats:
        parts.append(f"CPU time {stats['cpu_usec'] / 1e6:.3f} s")
    if "pids_peak" in stats:
        parts.append(f"peak processes {stats['pids_peak']}")
    if parts:
        ctx.log("cgroups: " + ", ".join(parts))
