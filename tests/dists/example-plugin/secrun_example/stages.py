"""The ``priority`` plugin's stages: what a launch imports of it.

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
