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

This package's ``__init__`` (this module) holds the stage hooks: a launch from the plan cache
imports it (and :mod:`.ioprio`, which the stages call) and nothing else of the plugin.

- :mod:`.plugin`: the module pluggy registers (imports of the hook implementations only);
- :mod:`.plan`: the section, the facts, ``secrun_compile`` and the plan's ``TypedDict``;
- the package itself: the stage hooks, ``rlimits`` (child) and ``attach`` (supervisor);
- :mod:`.ioprio`: the I/O priority system calls and their encoding;
- :mod:`.audit`: the audit rows, the scored categories ``priority.cpu`` and ``priority.io``
  with their judges, and the live facts (from inside: :mod:`.probe`; from outside:
  :mod:`.observe`);
- :mod:`.commands`: ``secrun priority show PID``.

The stages:

- ``rlimits`` (child, before the identity changes): the nice value and the I/O priority of the
  process that becomes the workload; everything it starts inherits both.
- ``attach`` (supervisor, while no workload code runs yet): the nice value of the workload's
  autogroup, written to ``/proc/PID/autogroup`` from outside (the child may no longer see
  ``/proc`` after its ``mounts`` stage, and the supervisor, not the sandbox, is privileged).
  Planned only when no pid or time namespace is made (see ``plan._autogroup_lost``).

Nothing here imports the planning or audit code: type-only imports sit behind
``TYPE_CHECKING`` (``typing`` itself costs a launch time).
"""

from __future__ import annotations

import errno
import os
import time

from secrun import hookimpl
from secrun.kernel import error

from . import ioprio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import PriorityPlan

# The kernel refuses autogroup writes from a process without CAP_SYS_ADMIN more often than once
# every 100 ms system-wide (EAGAIN): a rootless supervisor retries for a while.
_RETRIES = 15
_RETRY_S = 0.02


@hookimpl
def secrun_rlimits(ctx: RunContext) -> None:
    plan: PriorityPlan = ctx.plan
    try:
        os.setpriority(os.PRIO_PROCESS, 0, plan["nice"])
    except OSError as e:
        # below the caller's own nice value: needs CAP_SYS_NICE in the initial user namespace
        raise error(f"setpriority(PRIO_PROCESS, {plan['nice']})", e.errno) from None
    if plan["ioprio"] is not None:
        ioprio.set_self(plan["ioprio"])


@hookimpl
def secrun_attach(ctx: RunContext) -> None:
    plan: PriorityPlan = ctx.plan
    if not plan["autogroup"]:
        return
    path = f"/proc/{ctx.pid}/autogroup"
    for _ in range(_RETRIES):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            ctx.warn(f"priority: this kernel has no autogroups ({path}): only the nice value "
                     f"is set")
            return
        except OSError as e:
            raise error(path, e.errno) from None
        try:
            os.write(fd, f"{plan['nice']}\n".encode())
            break
        except OSError as e:
            if e.errno != errno.EAGAIN:
                raise error(f"{path} (write {plan['nice']})", e.errno) from None
        finally:
            os.close(fd)
        time.sleep(_RETRY_S)
    else:
        raise error(f"{path} (write {plan['nice']})", errno.EAGAIN)
    ctx.log(f"priority: {path} = {plan['nice']}")
