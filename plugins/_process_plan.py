"""Planning half of the ``process`` plugin: the ``[process]`` schema, ``secrun_compile``
(rlimit values parsed and packed for the kernel) and ``secrun_audit``.

Imported lazily by the hooks in :mod:`secrun.plugins.process`, so a cached launch never loads
it (nor the ``resource`` extension module); the child stages stay in that module.
"""

import resource

from secrun.errors import ConfigError, shown
from secrun.schema import Field, Section, parse_scaled

RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_RLIM_T = (1 << 64) - 1  # rlim_t is 64 bits unsigned; RLIM_INFINITY is all ones


def _check_umask(v):
    if v and not (len(v) <= 4 and all(c in "01234567" for c in v)):
        raise ValueError(f"{v!r} is not an octal umask such as \"077\"")


def sections():
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
    """One side of a limit: ``"unlimited"``, or ASCII digits with an optional K/M/G/T (binary
    multiples), at most what ``rlim_t`` holds (2^64-1, which is also RLIM_INFINITY)."""
    t = text.strip()
    if t.isascii() and t.lower() in ("unlimited", "infinity"):
        return resource.RLIM_INFINITY
    try:
        return parse_scaled(t, _RLIM_T, _SUFFIX, "limit")
    except ValueError as e:
        raise ConfigError("process", "rlimits", f"{key}: {e} ('unlimited': no limit)") \
            from None


def _packed(soft: int, hard: int) -> bytes:
    """``struct rlimit`` {rlim_t rlim_cur, rlim_max} as the kernel reads it."""
    return (soft & _RLIM_T).to_bytes(8, "little") + (hard & _RLIM_T).to_bytes(8, "little")


def compile_plan(cfg) -> dict:
    limits = []
    for name, value in cfg["rlimits"].items():
        if not name.isascii() or name.lower() not in RLIMITS:  # (the Kelvin sign lowers to "k")
            raise ConfigError("process", "rlimits",
                              f"unknown resource {shown(name)} (known: {', '.join(RLIMITS)})")
        if isinstance(value, int):
            if value < 0:
                raise ConfigError("process", "rlimits", f"{name}: negative limit "
                                  f"{shown(value)}")
            soft = hard = value
        else:
            parts = value.split(":")
            if len(parts) > 2:
                raise ConfigError("process", "rlimits", f"{name}: {shown(value)}: use "
                                  f"SOFT:HARD")
            soft, hard = _limit(parts[0], name), _limit(parts[-1], name)
        inf = resource.RLIM_INFINITY
        if hard != inf and (soft == inf or soft > hard):
            raise ConfigError("process", "rlimits", f"{name}: soft limit above hard limit")
        if soft > _RLIM_T or hard > _RLIM_T:
            raise ConfigError("process", "rlimits", f"{name}: {shown(value)} is above the "
                              f"largest limit ({_RLIM_T})")
        limits.append((getattr(resource, "RLIMIT_" + name.upper()), _packed(soft, hard),
                       name))
    for name, value in cfg["env_set"].items():
        if not name or "=" in name or "\0" in name:
            raise ConfigError("process", "env_set", f"{name!r} is not a variable name (it "
                              f"must be non-empty, without '=' or NUL)")
        if "\0" in value:
            raise ConfigError("process", "env_set", f"{name}: the value contains a NUL")
    if "\0" in cfg["cwd"]:
        raise ConfigError("process", "cwd", "the path contains a NUL")
    allow = cfg["env_allow"]
    return {
        "rlimits": limits,
        "umask": int(cfg["umask"], 8) if cfg["umask"] else None,
        "env_all": "*" in allow,
        "env_names": [a for a in allow if not a.endswith("*")],
        "env_prefixes": [a[:-1] for a in allow if a.endswith("*") and a != "*"],
    }


def audit(ctx) -> list:
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
