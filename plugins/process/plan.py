"""Planning for the ``process`` plugin: the ``[process]`` schema and ``secrun_compile``
(rlimit values parsed and packed for the kernel, the environment filter precomputed).

Never imported by a cached launch (nor is the ``resource`` extension module it uses)."""

from __future__ import annotations

import resource
from typing import TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError, shown
from secrun.facts import Facts
from secrun.schema import Field, Section, parse_scaled

SECTION = "process"
RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
_SUFFIX = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_RLIM_T = (1 << 64) - 1  # rlim_t is 64 bits unsigned; RLIM_INFINITY is all ones


class Rlimit(TypedDict):
    """One resource limit, ready for setrlimit(2)."""

    resource: int  # RLIMIT_*
    packed: bytes  # struct rlimit {rlim_cur, rlim_max}
    name: str  # the profile's name for it, for error messages


class ProcessPlan(TypedDict):
    rlimits: list[Rlimit]
    umask: int | None  # None: inherited
    cwd: str  # "": secrun's own
    env_all: bool  # pass the whole environment through
    env_names: list[str]  # else: these variables
    env_prefixes: list[str]  # and those starting with these
    env_set: dict[str, str]  # then set these
    no_new_privs: bool


def _check_umask(v: str) -> None:
    if v and not (len(v) <= 4 and all(c in "01234567" for c in v)):
        raise ValueError(f"{v!r} is not an octal umask such as \"077\"")


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "Process attributes of the workload.", [
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


@hookimpl
def secrun_facts() -> Facts:
    return Facts()


def _limit(text: str, key: str) -> int:
    """One side of a limit: ``"unlimited"``, or ASCII digits with an optional K/M/G/T (binary
    multiples), at most what ``rlim_t`` holds (2^64-1, which is also RLIM_INFINITY)."""
    t = text.strip()
    if t.isascii() and t.lower() in ("unlimited", "infinity"):
        return resource.RLIM_INFINITY
    try:
        return parse_scaled(t, _RLIM_T, _SUFFIX, "limit")
    except ValueError as e:
        raise ConfigError(SECTION, "rlimits", f"{key}: {e} ('unlimited': no limit)") \
            from None


def _packed(soft: int, hard: int) -> bytes:
    """``struct rlimit`` {rlim_t rlim_cur, rlim_max} as the kernel reads it."""
    return (soft & _RLIM_T).to_bytes(8, "little") + (hard & _RLIM_T).to_bytes(8, "little")


def _soft_hard(name: str, value: int | str) -> tuple[int, int]:
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(SECTION, "rlimits", f"{name}: negative limit {shown(value)}")
        return value, value
    parts = value.split(":")
    if len(parts) > 2:
        raise ConfigError(SECTION, "rlimits", f"{name}: {shown(value)}: use SOFT:HARD")
    return _limit(parts[0], name), _limit(parts[-1], name)


def _rlimit(name: str, value: int | str) -> Rlimit:
    if not name.isascii() or name.lower() not in RLIMITS:  # (the Kelvin sign lowers to "k")
        raise ConfigError(SECTION, "rlimits",
                          f"unknown resource {shown(name)} (known: {', '.join(RLIMITS)})")
    soft, hard = _soft_hard(name, value)
    inf = resource.RLIM_INFINITY
    if hard != inf and (soft == inf or soft > hard):
        raise ConfigError(SECTION, "rlimits", f"{name}: soft limit above hard limit")
    if soft > _RLIM_T or hard > _RLIM_T:
        raise ConfigError(SECTION, "rlimits", f"{name}: {shown(value)} is above the "
                          f"largest limit ({_RLIM_T})")
    return {"resource": getattr(resource, "RLIMIT_" + name.upper()),
            "packed": _packed(soft, hard), "name": name}


def _check_env(env_set: dict[str, str]) -> None:
    for name, value in env_set.items():
        if not name or "=" in name or "\0" in name:
            raise ConfigError(SECTION, "env_set", f"{name!r} is not a variable name (it "
                              f"must be non-empty, without '=' or NUL)")
        if "\0" in value:
            raise ConfigError(SECTION, "env_set", f"{name}: the value contains a NUL")


@hookimpl
def secrun_compile(ctx: PlanContext) -> ProcessPlan:
    cfg = ctx.config[SECTION]
    limits = [_rlimit(name, value) for name, value in cfg["rlimits"].items()]
    _check_env(cfg["env_set"])
    if "\0" in cfg["cwd"]:
        raise ConfigError(SECTION, "cwd", "the path contains a NUL")
    allow = cfg["env_allow"]
    return {
        "rlimits": limits,
        "umask": int(cfg["umask"], 8) if cfg["umask"] else None,
        "cwd": cfg["cwd"],
        "env_all": "*" in allow,
        "env_names": [a for a in allow if not a.endswith("*")],
        "env_prefixes": [a[:-1] for a in allow if a.endswith("*") and a != "*"],
        "env_set": dict(cfg["env_set"]),
        "no_new_privs": bool(cfg["no_new_privs"]),
    }
