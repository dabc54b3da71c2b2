"""Planning for the ``landlock`` plugin: the ``[landlock]`` schema, ``secrun_compile`` (paths
and ports checked, the kernel's Landlock ABI read, the handled rights limited to it, the rules
merged per path) and the plan's shape.

Never imported by a cached launch."""

from __future__ import annotations

import os
from typing import Any, TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError, SetupError, shown
from secrun.facts import Facts
from secrun.kernel import c_ulong
from secrun.schema import Field, Section

from . import (
    FS_RIGHTS,
    LANDLOCK_CREATE_RULESET_VERSION,
    NET_ABI,
    NET_RIGHTS,
    SECTION,
    _create_ruleset,
)

PORT_MAX = 65535
# what a path in `read` allows beneath it; `write` allows every handled right but execute
READ_ACCESS = FS_RIGHTS["execute"][0] | FS_RIGHTS["read_file"][0] | FS_RIGHTS["read_dir"][0]
EXECUTE = FS_RIGHTS["execute"][0]


class PathRule(TypedDict):
    """One path-beneath rule: the path as the sandbox's view shows it, the rights allowed
    beneath it (limited to the handled ones), the keys that listed it."""

    path: str
    access: int
    keys: list[str]  # "read", "write", "mirror" (the view's writable places)


class LandlockPlan(TypedDict):
    enabled: bool  # false: the stages do nothing
    abi: int  # the kernel's Landlock ABI at planning time (0: none)
    fs: int  # handled_access_fs: every filesystem right this ABI knows
    net: int  # handled_access_net: TCP bind and connect, with net = true and ABI >= 4; else 0
    paths: list[PathRule]
    tcp_bind: list[int]
    tcp_connect: list[int]
    fs_lost: list[str]  # filesystem rights this ABI does not know, so does not restrict
    net_lost: str  # why net = true cannot be honoured ("": it can, or was not asked)


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "Landlock: a kernel-enforced allow-list of the files and TCP "
                    "ports the workload may use, applied after the filesystem view is built "
                    "(rule paths are paths inside the view).  Every path not beneath a "
                    "`read` or `write` entry is denied; see docs/landlock.md.", [
        Field("enabled", bool, False,
              "apply a Landlock ruleset; false: the section does nothing"),
        Field("read", [str], [],
              "absolute paths (inside the view) beneath which files may be read and executed "
              "and directories listed, e.g. [\"/\"] for the whole view"),
        Field("write", [str], [],
              "absolute paths (inside the view) beneath which files may be read, written, "
              "truncated, created, removed, renamed and linked and device ioctls made; not "
              "executed, unless also in or beneath a read path (rights are inherited down the "
              "tree); a file (e.g. /dev/null) gets only the file rights"),
        Field("mirror", bool, True,
              "also allow writing wherever the filesystem view lets the workload write (the "
              "fact filesystem.writable: private tmpfs entries, read-write binds, a bound "
              "working directory, the minimal /dev's nodes and /dev/shm, or / when the root "
              "is writable), so a bind added to a profile needs no [landlock] entry of its "
              "own; false: only the write paths listed here"),
        Field("net", bool, False,
              "also restrict TCP (Landlock ABI 4, Linux 6.7): bind and connect only to the "
              "ports listed in tcp_bind and tcp_connect; false: TCP is not restricted"),
        Field("tcp_bind", [int], [],
              "with net = true, the TCP ports the workload may bind (0: an ephemeral port "
              "the kernel picks; listen on an unbound socket is not checked); [] = none"),
        Field("tcp_connect", [int], [],
              "with net = true, the TCP ports the workload may connect to, on any "
              "address; [] = none"),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts(requires=("filesystem.writable",))  # read in compile (mirror = true)


def kernel_abi() -> int:
    """The Landlock ABI version the running kernel offers (0: none: no Landlock built in,
    not enabled at boot, or a machine whose call numbers secrun does not know)."""
    try:
        ret = _create_ruleset(None, c_ulong(0), LANDLOCK_CREATE_RULESET_VERSION)
    except SetupError:
        return 0
    return ret if ret > 0 else 0


def handled_fs(abi: int) -> int:
    """Every filesystem right the ABI knows (the ruleset handles them all: deny by default)."""
    return sum(bit for bit, since in FS_RIGHTS.values() if since <= abi) if abi else 0


def lost_notes(abi: int, fs_lost: list[str]) -> list[str]:
    """What an old ABI means for the ruleset: rights it cannot restrict, and (ABI 1, without
    ``refer``) moves and links into another directory, which it always denies."""
    out = []
    free = [name for name in fs_lost if name != "refer"]
    if free:
        out.append(f"Landlock ABI {abi} does not know the rights {', '.join(free)}: they stay "
                   "unrestricted")
    if "refer" in fs_lost:
        out.append(f"Landlock ABI {abi} has no 'refer' right: renaming or linking a file into "
                   "another directory is always denied")
    return out


def _path(key: str, value: str) -> str:
    if "\0" in value:
        raise ConfigError(SECTION, key, f"{shown(value)}: a path cannot contain a NUL")
    if not value.startswith("/"):
        raise ConfigError(SECTION, key, f"{shown(value)} is a relative path: Landlock rules "
                          "take absolute paths inside the sandbox's view")
    if ".." in value.split("/"):
        raise ConfigError(SECTION, key, f"{shown(value)}: '..' is not allowed in a rule path")
    norm = os.path.normpath(value)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def _ports(key: str, values: list[int]) -> list[int]:
    out: list[int] = []
    for port in values:
        if not 0 <= port <= PORT_MAX:
            raise ConfigError(SECTION, key, f"{shown(port)} is not a TCP port (0-{PORT_MAX})")
        if port not in out:
            out.append(port)
    return out


def _rules(cfg: dict[str, Any], fs: int, mirrored: list[str]) -> list[PathRule]:
    """The rules per path, in the order listed (read, then write, then the view's writable
    places when mirrored); a path listed by several keys gets every set of rights."""
    rules: dict[str, PathRule] = {}
    for key, access, values in (("read", READ_ACCESS & fs, cfg["read"]),
                                ("write", fs & ~EXECUTE, cfg["write"]),
                                ("mirror", fs & ~EXECUTE, mirrored)):
        for value in values:
            path = _path(key, value)
            rule = rules.setdefault(path, {"path": path, "access": 0, "keys": []})
            rule["access"] |= access
            if key not in rule["keys"]:
                rule["keys"].append(key)
    return list(rules.values())


@hookimpl
def secrun_compile(ctx: PlanContext) -> LandlockPlan:
    cfg = ctx.config[SECTION]
    bind, connect = _ports("tcp_bind", cfg["tcp_bind"]), _ports("tcp_connect", cfg["tcp_connect"])
    if not cfg["net"] and (bind or connect):
        raise ConfigError(SECTION, "tcp_bind" if bind else "tcp_connect",
                          "ports are listed but net = false: set net = true for Landlock to "
                          "handle TCP (without it every port is allowed)")
    abi = kernel_abi()
    fs = handled_fs(abi)
    view = ctx.fact("filesystem.writable")
    rules = _rules(cfg, fs, list(view) if cfg["mirror"] and isinstance(view, list) else [])
    enabled = bool(cfg["enabled"])
    fs_lost = [name for name, (_, since) in FS_RIGHTS.items() if abi and since > abi]
    net_lost = ""
    if cfg["net"] and abi < NET_ABI:
        net_lost = (f"TCP rules (net = true) need Landlock ABI {NET_ABI} (Linux 6.7); this "
                    f"kernel offers ABI {abi}")
    net = sum(bit for bit, _ in NET_RIGHTS.values()) if cfg["net"] and abi >= NET_ABI else 0
    if enabled:
        if not abi:
            ctx.note("this kernel offers no Landlock: "
                     + ("the launch fails (required = true)" if ctx.required(SECTION)
                        else "the workload runs without it (required = false)"))
        for note in lost_notes(abi, fs_lost):
            ctx.note(note)
        if net_lost:
            ctx.note(net_lost)
        if not rules:
            ctx.note("read and write are empty: every file access is denied, even the "
                     "workload's own program cannot be executed")
    return {"enabled": enabled, "abi": abi, "fs": fs, "net": net, "paths": rules,
            "tcp_bind": bind, "tcp_connect": connect, "fs_lost": fs_lost,
            "net_lost": net_lost}
