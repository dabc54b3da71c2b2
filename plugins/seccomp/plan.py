"""Planning for the ``seccomp`` plugin: the ``[seccomp]`` schema and ``secrun_compile``, which
builds the rule model (:mod:`.rules`, on an imported Docker/OCI file: :mod:`.oci`) and compiles
it into one BPF program (:mod:`.bpf`) stored as bytes in the plan."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError, shown
from secrun.facts import Facts
from secrun.schema import Field, Section

from . import bpf, oci
from .rules import (
    GROUPS_FILE,
    SECTION,
    Model,
    action_text,
    add_arches,
    add_profile_rules,
    parse_action,
    refuses,
)

# Sensitive calls a live audit probes (reported "blocked" when the policy refuses them).
PROBES = ("mount", "umount2", "pivot_root", "ptrace", "bpf", "perf_event_open", "init_module",
          "kexec_load", "reboot", "swapon", "keyctl", "add_key", "acct", "iopl", "settimeofday")


class SeccompPlan(TypedDict):
    bpf: bytes  # the program the stage loads (struct sock_filter[])
    insns: int  # its length in instructions
    default: str  # the action for calls no rule names, as text (e.g. "errno:EPERM")
    other_abis: str  # the action for other ABIs, as text
    arches: list[str]  # the ABIs filtered with the rules, the native one first
    allowed: int  # how many calls are allowed whatever their arguments
    refused: list[str]  # the calls refused whatever their arguments
    restrictions: list[str]  # the argument checks, in words
    skipped: list[str]  # names this libseccomp does not know (from groups or the import)
    probes: dict[str, str]  # a live audit's probed call -> "allowed" | "blocked"
    imported: str  # the Docker/OCI file the policy is based on ("": none)


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "System call filter (seccomp-BPF), compiled at planning time.", [
        Field("default_action", (str, int), "errno:EPERM",
              "action for calls no rule names: allow, errno:NAME|N (or a bare errno name or "
              "number), kill_process, kill_thread, trap, log"),
        Field("allow", [str], ["@system-service"],
              "calls allowed: syscall names and @groups (`secrun seccomp groups`)"),
        Field("deny", [str], [],
              "calls refused with deny_action: names and @groups; deny wins over allow"),
        Field("deny_action", (str, int), "errno:EPERM",
              "action for deny entries, denied namespace flags and denied ioctls"),
        Field("actions", {str: (str, int)}, {},
              "per-call actions, winning over allow and deny: { ptrace = \"kill_process\", "
              "\"@mount\" = \"errno:ENOTSUP\" }"),
        Field("deny_namespaces", [str], [],
              "namespaces clone/unshare may not create (user, mnt, pid, net, uts, ipc, cgroup, "
              "time); clone3 then answers ENOSYS so libc falls back to clone"),
        Field("address_families", [str], [],
              "socket() families allowed, e.g. [\"AF_UNIX\", \"AF_INET\", \"AF_INET6\"]; others "
              "answer EAFNOSUPPORT ([]: any)"),
        Field("deny_ioctls", [(str, int)], [],
              "ioctl requests refused with deny_action, e.g. [\"TIOCSTI\", \"TIOCLINUX\"]"),
        Field("personalities", [(str, int)], [],
              "personality() values allowed (PER_LINUX, PER_LINUX32, UNAME26, QUERY, "
              "combined with |); others get default_action ([]: any)"),
        Field("other_abis", (str, int), "kill_process",
              "action for system calls made through another ABI (i386 int 0x80, x32)"),
        Field("arches", [str], [],
              "other ABIs filtered with the same rules instead (x86, x32)"),
        Field("import", str, "",
              "a Docker/OCI seccomp JSON file (relative to the profile) used as the base: its "
              "defaultAction replaces default_action; allow/deny/actions apply on top"),
        Field("import_caps", [str], [],
              "capabilities the imported file's includes/excludes.caps treat as held"),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts()


def import_path(cfg: dict[str, Any], origins: dict[str, str]) -> str | None:
    """``[seccomp].import`` as an absolute path (relative to the profile that set it), or
    None."""
    p = cfg["import"]
    if not p:
        return None
    if "\0" in p:
        raise ConfigError(SECTION, "import", f"{shown(p)}: a path cannot contain a NUL")
    p = os.path.expanduser(p)
    if not os.path.isabs(p):
        origin = origins.get("import", "").split(" + ")[-1]
        base = os.path.dirname(origin) if os.path.isabs(origin) else os.getcwd()
        p = os.path.join(base, p)
    return os.path.normpath(p)


def build_model(cfg: dict[str, Any], origins: dict[str, str],
                depends_on: Callable[[str], None] = lambda path: None) -> Model:
    """The rule model of a ``[seccomp]`` section (``origins``: where its values came from).
    ``default_action`` and ``import_caps`` are checked with or without an imported file."""
    path = import_path(cfg, origins)
    if path:
        depends_on(path)
    depends_on(GROUPS_FILE)
    resolve = bpf.resolver()
    m = Model()
    m.default = parse_action(cfg["default_action"], "default_action")
    caps = oci.held_caps(cfg["import_caps"])
    if path:
        oci.import_file(m, path, caps, resolve)
    m.badarch = parse_action(cfg["other_abis"], "other_abis")
    add_arches(m, cfg["arches"])
    # An imported file is the base of the allowlist: the schema's default `allow` list does not
    # widen it (one set in a profile does).
    builtin_allow = origins.get("allow") == "built-in default"
    add_profile_rules(m, cfg, resolve, with_allow=not (path and builtin_allow))
    return m


def _probes(m: Model) -> dict[str, str]:
    out = {}
    for name in PROBES:
        b = m.base(name)
        if b is not None:
            out[name] = "allowed" if not refuses(b) else "blocked"
    return out


@hookimpl
def secrun_compile(ctx: PlanContext) -> SeccompPlan:
    cfg = ctx.config[SECTION]
    origins = ctx.origins.get(SECTION, {})
    m = build_model(cfg, origins, ctx.depends_on)
    prog, n = bpf.compile_bpf(m)
    for text in m.restrictions:
        ctx.note(text)
    bases = {name: m.base(name) for name in m.rules}
    return {
        "bpf": prog,
        "insns": n,
        "default": action_text(m.default),
        "other_abis": action_text(m.badarch),
        "arches": ["x86_64"] + m.arches,
        "allowed": sum(1 for b in bases.values() if b is not None and not refuses(b)),
        "refused": sorted(k for k, b in bases.items() if b is not None and refuses(b)),
        "restrictions": m.restrictions,
        "skipped": m.skipped,
        "probes": _probes(m),
        "imported": import_path(cfg, origins) or "",
    }
