"""The ``cgroups`` plugin's stages: what a launch imports of the plugin (with :mod:`.layout`,
:mod:`.lock`, :mod:`.v1` and :mod:`.v2`).

- ``prepare`` (supervisor, before fork): the run's groups are made, locked and limited;
- ``after_fork`` (supervisor, the child waiting): the warm-up of the kernel's cgroup
  migration starts, in a helper thread (:func:`_start_warmup`);
- ``attach`` (supervisor, while the child builds its filesystem view): the warm-up is joined
  and the process that will exec is moved into the groups;
- ``cleanup``: the warm-up is joined (whatever failed before), the statistics read, what is
  left in the groups killed, the groups removed, an OOM kill or a hit pids limit reported.
"""

from __future__ import annotations

import _thread
import os
import sys

from secrun import hookimpl
from secrun.errors import SetupError

from .layout import (
    CONTROLLER_OF,
    CPU_PERIOD_US,
    SECTION,
    Layout,
    detect,
    human,
    new_name,
    parent_dir,
    put,
    read,
    set_limits,
)
from .lock import sweep
from .v1 import V1Manager
from .v2 import V2Manager

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
    v1_ctrls = {_v1_name(c) for c in needed if _v1_name(c) in layout.v1}
    rest = {c for c in needed if _v1_name(c) not in v1_ctrls}
    v2_dir = None
    v2_ctrls: set[str] = set()
    if layout.v2 is not None:
        v2_dir = parent_dir(layout.v2[0], layout.v2[1], plan["parent"])
        if rest:  # only then does the v2 tree have to carry a limit
            v2_ctrls = rest & layout.v2_controllers(v2_dir)
    mgrs: list[Manager] = []
    if v1_ctrls or layout.v2 is None:
        if layout.v2 is None:
            # the v1 way to kill a whole group, and CPU time for the report
            extra = {"freezer", "cpuacct"} if "cpu" in v1_ctrls else {"freezer"}
            v1_ctrls |= extra & set(layout.v1)
        if v1_ctrls:
            mgrs.append(V1Manager({c: parent_dir(layout.v1[c][0], layout.v1[c][1],
                                                 plan["parent"]) for c in sorted(v1_ctrls)},
                                  name))
    if v2_dir is not None:
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

@hookimpl
def secrun_prepare(ctx: RunContext) -> None:
    plan: CgroupsPlan = ctx.plan
    st = ctx.state
    made: list[Manager] = []
    st["managers"] = made  # filled as the groups are made: cleanup removes whatever exists
    layout = detect()
    if layout.kind == "none":
        raise SetupError("/proc/self/mountinfo", "no cgroup hierarchy is mounted")
    mgrs, missing = managers_for(layout, plan, new_name())
    for c in sorted(missing):
        keys = [k for k in set_limits(plan) if CONTROLLER_OF[k] == c]
        text = (f"the {c} controller is not available to secrun on this host "
                f"({layout.kind} layout): {', '.join(f'[cgroups].{k}' for k in keys)} "
                f"not applied")
        if ctx.required(SECTION):
            raise SetupError(f"cgroup {c} controller", text)
        ctx.warn(text)
    # Leftovers of dead runs next to ours (a supervisor that was SIGKILLed cannot clean up).
    sweep({p for m in mgrs for p in m.parents()})
    for m in mgrs:
        made.append(m)  # recorded first: a failed create leaves what it made to cleanup
        m.create()
    st["warm_path"] = layout.own_procs()  # for after_fork
    for m in mgrs:
        m.apply(plan, ctx)
    if ctx.verbose:
        ctx.log(f"cgroups: {layout.kind} layout; groups "
                + ", ".join(d for m in mgrs for d in m.dirs) + f"; {limits_text(plan)}")


# --- the warm-up of the kernel's cgroup migration ------------------------------------------------
# Moving a task between cgroups takes the kernel's global ``cgroup_threadgroup_rwsem`` for
# writing, and the first writer after a quiet spell waits a full RCU grace period (5-15 ms
# here) before it gets it; writers within ~14 ms after that do not wait.  So a helper thread of
# the supervisor rewrites the supervisor's own pid into the ``cgroup.procs`` of the group it is
# already in (a migration that moves nothing) as soon as the child exists, and the grace period
# elapses while the child makes its namespaces and builds its filesystem view; ``attach`` then
# finds the lock warm.  The thread starts after the fork, never before: no thread may be alive
# when secrun forks (nor when it enters a namespace, which the namespaces plugin does in its own
# after_fork, hence ``trylast``).  It is joined in ``attach``, and in ``cleanup`` on every path
# where ``attach`` did not run.

@hookimpl(trylast=True)
def secrun_after_fork(ctx: RunContext) -> None:
    st = ctx.state
    path = st.pop("warm_path", None)
    if path is not None and st.get("managers"):
        st["warm_done"] = _start_warmup(path)


def _start_warmup(path: str) -> _thread.LockType:
    """Start the no-op migration in a helper thread; returns the lock it releases as its last
    act (see :func:`_join_warmup`)."""
    done = _thread.allocate_lock()
    done.acquire()

    def warm() -> None:
        try:
            put(path, b"0")
        except OSError:
            pass  # only an optimisation: the real attach reports real errors
        finally:
            done.release()

    # The thread needs the GIL for the few bytecodes before its syscall: have the supervisor
    # hand it over within 0.1 ms rather than after the default 5 ms switch interval.
    sys.setswitchinterval(1e-4)
    _thread.start_new_thread(warm, ())
    return done


def _join_warmup(st: dict) -> None:
    """Wait for the warm-up thread, if one was started and not yet joined."""
    done = st.pop("warm_done", None)
    if done is not None:
        done.acquire()
        sys.setswitchinterval(0.005)


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
