"""The ``process`` plugin: environment, working directory, umask, rlimits and no_new_privs.

Section ``[process]``.  Child stages: ``rlimits`` (limits, umask, cwd, environment) and
``no_new_privs``.  It is the single owner of no_new_privs in secrun.
"""

import os
import resource  # used in the child stage; see "imports" in docs/plugins.md

from secrun import hookimpl
from secrun.errors import ConfigError
from secrun.kernel import PR_SET_NO_NEW_PRIVS, prctl
from secrun.schema import Field, Section

RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _check_umask(v):
    if v and not (len(v) <= 4 and all(c in "01234567" for c in v)):
        raise ValueError(f"{v!r} is not an octal umask such as \"077\"")


@hookimpl
def secrun_profile_sections():
    return [Section("process", "Process attributes of the workload.", [
        Field("env_allow", [str], ["*"],
              "environment variables passed through: names, or prefixes ending in '*' "
              "(['*'] keeps everything, [] passes nothing)"),
        Field("env_set", {str: str}, {}, "variables set (after env_allow filtered)"),
        Field("cwd", str, "", "working directory inside the sandbox (\"\": secrun's own)"),
        Field("umask", str, "", "umask in octal, e.g. \"077\" (\"\": inherited)",
              check=_check_umask),
        Field("rlimits", {str: (int, str)}, {},
              "resource limits: {nofile = 1024, core = 0, as = \"1G\", cpu = \"10:20\"}; a "
              "number or size sets soft and hard, \"SOFT:HARD\" each, \"unlimited\" none"),
        Field("no_new_privs", bool, True,
              "set PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities grant nothing"),
    ])]


def _limit(text, key):
    t = str(text).strip().lower()
    if t in ("unlimited", "infinity"):
        return resource.RLIM_INFINITY
    mult = _SUFFIX.get(t[-1:], 1)
    num = t[:-1] if mult != 1 else t
    if not num.isdigit():
        raise ConfigError("process", "rlimits", f"{key}: {text!r} is not a number, a size "
                          f"(K/M/G/T) or 'unlimited'")
    return int(num) * mult


@hookimpl
def secrun_compile(ctx):
    cfg = ctx.config["process"]
    limits = []
    for name, value in cfg["rlimits"].items():
        if name.lower() not in RLIMITS:
            raise ConfigError("process", "rlimits",
                              f"unknown resource {name!r} (known: {', '.join(RLIMITS)})")
        if isinstance(value, int):
            if value < 0:
                raise ConfigError("process", "rlimits", f"{name}: negative limit {value}")
            soft = hard = value
        else:
            parts = value.split(":")
            if len(parts) > 2:
                raise ConfigError("process", "rlimits", f"{name}: {value!r}: use SOFT:HARD")
            soft, hard = _limit(parts[0], name), _limit(parts[-1], name)
        inf = resource.RLIM_INFINITY
        if hard != inf and (soft == inf or soft > hard):
            raise ConfigError("process", "rlimits", f"{name}: soft limit above hard limit")
        limits.append((getattr(resource, "RLIMIT_" + name.upper()), soft, hard, name))
    allow = cfg["env_allow"]
    ctx.plan["process"] = {
        "rlimits": limits,
        "umask": int(cfg["umask"], 8) if cfg["umask"] else None,
        "env_all": "*" in allow,
        "env_names": [a for a in allow if not a.endswith("*")],
        "env_prefixes": [a[:-1] for a in allow if a.endswith("*") and a != "*"],
    }


@hookimpl
def secrun_rlimits(ctx):
    plan = ctx.plan["process"]
    cfg = ctx.config["process"]
    if plan["rlimits"]:
        for res, soft, hard, name in plan["rlimits"]:
            try:
                resource.setrlimit(res, (soft, hard))
            except (OSError, ValueError) as e:
                raise OSError(getattr(e, "errno", 1) or 1, str(e),
                              f"setrlimit(RLIMIT_{name.upper()})") from None
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
    cfg = ctx.config["process"]
    allow = cfg["env_allow"]
    return [
        {"control": "no_new_privs", "section": "process", "key": "no_new_privs",
         "value": "on" if cfg["no_new_privs"] else "off",
         "status": "enforced" if cfg["no_new_privs"] else "not-configured",
         "weight": 0.0 if cfg["no_new_privs"] else 0.6},
        {"control": "environment", "section": "process", "key": "env_allow",
         "value": "inherited" if "*" in allow else f"only {', '.join(allow) or 'nothing'}",
         "status": "not-configured" if "*" in allow else "enforced",
         "weight": 0.1 if "*" in allow else 0.0},
        {"control": "rlimits", "section": "process", "key": "rlimits",
         "value": ", ".join(f"{k}={v}" for k, v in cfg["rlimits"].items()) or "inherited",
         "status": "enforced" if cfg["rlimits"] else "not-configured",
         "weight": 0.0 if cfg["rlimits"] else 0.1},
    ]
