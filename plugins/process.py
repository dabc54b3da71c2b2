"""The ``process`` plugin: environment, working directory, umask, rlimits and no_new_privs.

Section ``[process]``.  Child stages: ``rlimits`` (limits, umask, cwd, environment) and
``no_new_privs``.  It is the single owner of no_new_privs in secrun.

This module is what a launch imports: the two child stages.  The schema, the parsing of limits
(packed into ``struct rlimit`` bytes at planning time) and the audit live in
:mod:`secrun.plugins._process_plan`, imported only on a plan cache miss or by ``secrun
audit``/``profiles``.
"""

import os

from secrun import hookimpl
from secrun.kernel import PR_SET_NO_NEW_PRIVS, error, libc, prctl

# Looked up in the supervisor, before fork (see "imports" in docs/plugins.md): setrlimit(2)
# through libc, so a launch does not load the ``resource`` extension module.
_setrlimit = libc.setrlimit


@hookimpl
def secrun_profile_sections():
    from secrun.plugins import _process_plan

    return _process_plan.sections()


@hookimpl
def secrun_compile(ctx):
    from secrun.plugins import _process_plan

    ctx.plan["process"] = _process_plan.compile_plan(ctx.config["process"])


@hookimpl
def secrun_rlimits(ctx):
    plan = ctx.plan["process"]
    cfg = ctx.config["process"]
    for res, packed, name in plan["rlimits"]:
        # packed: struct rlimit {rlim_cur, rlim_max}, which the kernel only reads
        if _setrlimit(res, packed) != 0:
            raise error(f"setrlimit(RLIMIT_{name.upper()})")
    if plan["umask"] is not None:
        os.umask(plan["umask"])
    if cfg["cwd"]:
        os.chdir(cfg["cwd"])
    if not plan["env_all"]:
        names, prefixes = set(plan["env_names"]), tuple(plan["env_prefixes"])
        ctx.env = {k: v for k, v in ctx.env.items() if k in names or k.startswith(prefixes)}
    ctx.env.update(cfg["env_set"])


@hookimpl
def secrun_no_new_privs(ctx):
    if ctx.config["process"]["no_new_privs"]:
        prctl(PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")


@hookimpl
def secrun_audit(ctx):
    from secrun.plugins import _process_plan

    return _process_plan.audit(ctx)
