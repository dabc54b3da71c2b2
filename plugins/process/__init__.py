"""The ``process`` plugin: environment, working directory, umask, rlimits and no_new_privs.

Section ``[process]``.  Child stages: ``rlimits`` (limits, umask, cwd, environment) and
``no_new_privs``.  It is the single owner of no_new_privs in secrun.

- the package itself: the two child stages (what a launch imports);
- :mod:`.plan`: the schema and ``secrun_compile`` (limits parsed and packed into
  ``struct rlimit`` bytes at planning time, so a launch never loads the ``resource`` module);
- :mod:`.audit`: ``secrun_audit`` and the categories ``process.no_new_privs``,
  ``process.environment`` and ``process.rlimits``.

The stages (this module: all that a launch from the plan cache imports of the plugin):

Child stages: ``rlimits`` (limits, umask, working directory,
environment) and ``no_new_privs``.
"""

from __future__ import annotations

import os

from secrun import hookimpl
from secrun.kernel import PR_SET_NO_NEW_PRIVS, error, libc, prctl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import ProcessPlan

# Looked up in the supervisor, before fork (see "imports" in docs/plugins.md): setrlimit(2)
# through libc, so a launch does not load the ``resource`` extension module.
_setrlimit = libc.setrlimit


@hookimpl
def secrun_rlimits(ctx: RunContext) -> None:
    plan: ProcessPlan = ctx.plan
    for limit in plan["rlimits"]:
        # packed: struct rlimit {rlim_cur, rlim_max}, which the kernel only reads
        if _setrlimit(limit["resource"], limit["packed"]) != 0:
            raise error(f"setrlimit(RLIMIT_{limit['name'].upper()})")
    if plan["umask"] is not None:
        os.umask(plan["umask"])
    if plan["cwd"]:
        os.chdir(plan["cwd"])
    if not plan["env_all"]:
        names, prefixes = set(plan["env_names"]), tuple(plan["env_prefixes"])
        ctx.env = {k: v for k, v in ctx.env.items() if k in names or k.startswith(prefixes)}
    ctx.env.update(plan["env_set"])


@hookimpl
def secrun_no_new_privs(ctx: RunContext) -> None:
    plan: ProcessPlan = ctx.plan
    if plan["no_new_privs"]:
        prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")
