"""Planning for the ``cgroups`` plugin: the ``[cgroups]`` schema, unit parsing (``"512M"``,
``"1.5"`` CPUs), the compiled plan (:class:`CgroupsPlan`) and the fact ``cgroups.attach``.

Never imported by a cached launch."""

from __future__ import annotations

import os
import re
import struct
from typing import TypedDict, TypeVar

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError, shown
from secrun.facts import Facts
from secrun.schema import Field, Section, is_digits, parse_digits

from .layout import CPU_PERIOD_US, SECTION, Layout, detect

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

Size = int | str | None  # bytes, "max" (no limit) or None (not set)
T = TypeVar("T")


class CgroupsPlan(TypedDict):
    """The run's limits as the kernel takes them; None: not set (the parent's applies)."""

    parent: str  # where the run's group is made ("" under secrun's own cgroup)
    memory_max: Size  # bytes or "max"
    swap_max: Size  # bytes or "max"; None unless memory_max is bytes
    pids_max: int | str | None  # a count or "max"
    cpu_max: int | str | None  # microseconds per CPU_PERIOD_US, or "max"
    cpu_weight: int | None  # 1-10000
    io_weight: int | None  # 1-10000
    # Where the caller has no writable cgroup tree (see the package docstring): the rlimits
    # applied instead, or [] when substitutes are off or impossible (no user namespace)
    substitutes: list[Substitute]


class Substitute(TypedDict):
    """An rlimit that stands in for a cgroup limit when no group can be made."""

    key: str  # the [cgroups] key it stands in for
    name: str  # the rlimit, lower case ("nproc", "data")
    resource: int  # RLIMIT_*
    value: int
    packed: bytes  # struct rlimit {value, value}, as setrlimit reads it
    means: str  # what it limits, for the warning and the audit


# [cgroups] key -> (rlimit, RLIMIT_* number on Linux, what it limits instead)
SUBSTITUTES = {
    "pids_max": ("nproc", 6, "counted in the sandbox's user namespace"),
    "memory_max": ("data", 2, "private memory per process; the view's tmpfs mounts capped "
                              "at it each; shared memory and memfd not bounded"),
}


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_PATTERN = r"^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$"
_CPUS_PATTERN = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[-+]?[0-9]+)?"

# The largest values the kernel takes, checked when planning (the launch would fail, or worse):
# - memory.max, memory.swap.max (v1: memory.limit_in_bytes, memory.memsw.limit_in_bytes, which
#   gets memory_max + swap_max) are page counters of a signed long: a size of 2^63 bytes or
#   more does not fit (and 2^64 or more wraps, to a limit of almost nothing);
SIZE_MAX = (1 << 63) - 1
# - pids.max is below PIDS_MAX = PID_MAX_LIMIT + 1 (EINVAL otherwise);
PIDS_LIMIT = 4 * 1024 * 1024 if struct.calcsize("l") > 4 else 32 * 1024
# - a CFS quota (cpu.max, cpu.cfs_quota_us) is at most max_cfs_runtime, 2^44-1 microseconds
#   (the bandwidth is kept in 64 - BW_SHIFT = 44 bits; ERANGE or EINVAL otherwise).
QUOTA_MAX_US = (1 << 44) - 1
_DECIMALS = 30  # more than a byte count needs: refused rather than rounded


# --- units -----------------------------------------------------------------------------------

def parse_size(value: object) -> Size:
    """'512M' -> 536870912; '' -> None (not set); 'max' -> 'max'.  Raises ValueError.

    ASCII digits (with an optional fraction) and a binary unit, at most :data:`SIZE_MAX`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative limit {shown(value)}")
        return _size_at_most(value, value)
    text = str(value).strip()
    if not text.isascii():  # (other scripts' digits; the Kelvin sign lowers to "k")
        raise ValueError(f"{shown(value)} is not a size such as \"512M\", \"2G\" or \"max\" "
                         f"(ASCII digits and units)")
    text = text.lower()
    if text == "":
        return None
    if text in ("max", "unlimited"):
        return "max"
    if text.startswith("-"):
        raise ValueError(f"negative limit {shown(value)}")
    return _size_of_text(text, value)


def _size_of_text(text: str, value: object) -> int:
    """The bytes of a size such as ``"1.5g"`` (lower case, ASCII, no sign)."""
    m = re.match(_SIZE_PATTERN, text)
    if not m:
        raise ValueError(f"{shown(value)} is not a size such as \"512M\", \"2G\" or \"max\"")
    num, unit = m.groups()
    given = str(value).strip()[m.start(2):]
    unit = unit[:-1] if unit.endswith("b") and unit != "b" else unit  # 512MB, 512MiB
    unit = unit[:-1] if unit.endswith("i") else unit
    if unit == "b":
        unit = ""
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {shown(given)} in {shown(value)} (use K, M, G, T or "
                         f"none for bytes; binary multiples)")
    # Exact (no float): "1.5G" is 1610612736 bytes, and "9" * 400 is too large, not inf.
    whole, _, frac = num.partition(".")
    whole, frac = whole.lstrip("0"), frac.rstrip("0")
    if len(whole) > len(str(SIZE_MAX)):
        return _size_at_most(SIZE_MAX + 1, value)
    if len(frac) > _DECIMALS:
        raise ValueError(f"{shown(value)}: more than {_DECIMALS} decimals")
    scale = 10 ** len(frac)
    return _size_at_most((int(whole or "0") * scale + int(frac or "0")) * _UNITS[unit] // scale,
                         value)


def _size_at_most(n: int, value: object) -> int:
    if n > SIZE_MAX:
        raise ValueError(f"{shown(value)} is above the largest limit the kernel holds, "
                         f"{SIZE_MAX} bytes (2^63 - 1: its page counters are signed 64-bit); "
                         f"\"max\" is no limit")
    return n


def _cpus_of_text(value: str) -> float | str | None:
    """The number of CPUs a text says, or None ('') / 'max'.  Raises ValueError."""
    text = value.strip()
    low = text.lower() if text.isascii() else text  # (the Kelvin sign lowers to "k")
    if low == "":
        return None
    if low in ("max", "unlimited"):
        return "max"
    if low.startswith("-") and re.fullmatch(_CPUS_PATTERN, low[1:]):
        raise ValueError(f"negative limit {shown(value)}")
    if not re.fullmatch(_CPUS_PATTERN, low):
        raise ValueError(f"{shown(value)} is not a number of CPUs such as \"0.5\" or "
                         f"\"1.5\" (ASCII digits)")
    return float(low)


def parse_cpus(value: object) -> int | str | None:
    """'1.5' (CPUs) -> quota in microseconds per CPU_PERIOD_US; '' -> None; 'max' -> 'max'.

    A finite positive number of CPUs (ASCII digits, an optional fraction and exponent) whose
    quota is at most :data:`QUOTA_MAX_US`; at least 1 ms per period (the kernel's least)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a number of CPUs")
    if isinstance(value, str):
        cpus = _cpus_of_text(value)
        if not isinstance(cpus, float):
            return cpus
    elif isinstance(value, int):  # (exact: no float of a 400-digit integer)
        if value < 0:
            raise ValueError(f"negative limit {shown(value)}")
        cpus = value if value * CPU_PERIOD_US <= QUOTA_MAX_US else float("inf")
    else:
        cpus = value
    if cpus != cpus:
        raise ValueError(f"{shown(value)}: a CPU quota must be a finite positive number of CPUs")
    if cpus < 0:
        raise ValueError(f"negative limit {shown(value)}")
    if cpus == 0:
        raise ValueError(f"{shown(value)}: a CPU quota must be a positive number of CPUs")
    if cpus == float("inf") or round(cpus * CPU_PERIOD_US) > QUOTA_MAX_US:
        raise ValueError(f"{shown(value)}: more CPUs than the largest quota the kernel takes, "
                         f"{QUOTA_MAX_US // CPU_PERIOD_US} CPUs (2^44 - 1 microseconds per "
                         f"{CPU_PERIOD_US // 1000} ms period); \"max\" is no limit")
    return max(1000, round(cpus * CPU_PERIOD_US))


def parse_count(value: object) -> int | str | None:
    """pids: 20 -> 20; 0/'max'/'' -> None or 'max'.  ASCII digits, at most the kernel's
    :data:`PIDS_LIMIT`."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not a number")
    given = value
    if isinstance(value, str):
        text = value.strip()
        low = text.lower() if text.isascii() else text
        if low in ("", "max", "unlimited"):
            return "max" if low else None
        if low.startswith("-") and is_digits(low[1:]):
            raise ValueError(f"negative limit {shown(value)}")
        if not is_digits(low):
            raise ValueError(f"{shown(value)} is not a number of processes (ASCII digits) or "
                             f"\"max\"")
        try:
            value = parse_digits(low, PIDS_LIMIT)
        except ValueError:
            value = PIDS_LIMIT + 1  # too large: refused below, naming the value given
    if value < 0:
        raise ValueError(f"negative limit {shown(value)}")
    if value > PIDS_LIMIT:
        raise ValueError(f"{shown(given)} is above the largest pids limit the kernel takes, "
                         f"{PIDS_LIMIT} (PID_MAX_LIMIT); 0 or \"max\" is no limit")
    return value or None


def parse_weight(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer weight")
    if value < 0:
        raise ValueError(f"negative weight {shown(value)}")
    if value > 10000:
        raise ValueError(f"weight {shown(value)} is above 10000 (the range is 1-10000, 100 is "
                         f"the default share)")
    return value or None


def _check_parent(value: str) -> None:
    if value and any(p in ("..", ".") for p in value.split("/")):
        raise ValueError(f"{value!r}: '.' and '..' are not allowed in a cgroup path")


def _checker(parse: Callable[[object], object]) -> Callable[[object], None]:
    def check(value: object) -> None:
        parse(value)
    return check


# --- schema, facts and plan ----------------------------------------------------------------------

@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "Resource limits: a fresh cgroup per run (v2, v1 or hybrid hosts).", [
        Field("memory_max", (int, str), "",
              "memory limit: bytes or a size with a binary unit (\"512M\", \"2G\"); \"\" or "
              "\"max\": none.  Exceeding it gets the workload OOM-killed (reported, exit 137)",
              check=_checker(parse_size)),
        Field("swap_max", (int, str), "0",
              "swap the workload may use on top of memory_max (\"0\": none, \"max\": any); "
              "applied with memory_max where the host accounts swap (v2 memory.swap.max, "
              "v1 memory.memsw.limit_in_bytes = memory_max + swap_max)",
              check=_checker(parse_size)),
        Field("pids_max", (int, str), 0,
              "most processes and threads alive in the group at once (0 or \"max\": no limit); "
              "fork() beyond it fails with EAGAIN and the run reports it",
              check=_checker(parse_count)),
        Field("cpu_max", (int, float, str), "",
              "CPU quota as a number of CPUs (\"0.5\", \"1.5\"), enforced per 100 ms period; "
              "\"\" or \"max\": none", check=_checker(parse_cpus)),
        Field("cpu_weight", int, 0,
              "relative CPU share under contention, 1-10000 (100 is the default share; v1: "
              "cpu.shares = weight * 1024 / 100); 0: inherited", check=_checker(parse_weight)),
        Field("io_weight", int, 0,
              "relative block-io share, 1-10000 (v2 io.weight / io.bfq.weight; v1 "
              "blkio.bfq.weight = weight / 10, clamped to 1-1000); 0: inherited",
              check=_checker(parse_weight)),
        Field("substitutes", bool, True,
              "where the caller has no writable cgroup tree (an ordinary user without a "
              "delegated subtree) and the launch makes a user namespace: stand in for pids_max "
              "with RLIMIT_NPROC (counted in that namespace) and for memory_max with "
              "RLIMIT_DATA (per process), reported on stderr and in the audit; false: refuse "
              "(required) or run without limits (best-effort) as without them"),
        Field("parent", str, "",
              "where the run's group is created: \"\" under secrun's own cgroup (from "
              "/proc/self/cgroup), or, for an ordinary user inside systemd's delegated "
              "user@UID.service on a pure v2 host, right under that; \"/a/b\" from the "
              "root of each hierarchy (e.g. a delegated subtree); \"a/b\" relative to "
              "secrun's own cgroup",
              check=_check_parent),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts(requires=("namespaces.made",), publishes={
        "cgroups.memory_substitute": (None, "the memory_max in bytes when the launch is "
                                            "expected to substitute it (no writable cgroup "
                                            "tree): a plugin that mounts memory-backed "
                                            "filesystems caps them at it; None otherwise"),
        "cgroups.attach": (None, "None: the launch makes no cgroup of its own; \"required\" or "
                                 "\"best-effort\": the workload is attached to a fresh group "
                                 "per run in the attach stage, before its hostname stage (a "
                                 "cgroup namespace made there is rooted in that group)"),
    })


def _value(cfg: dict[str, object], key: str, parse: Callable[[object], T]) -> T:
    """The parsed value of ``cfg[key]``; a bad one is a ConfigError naming the key."""
    try:
        return parse(cfg[key])
    except ValueError as e:
        raise ConfigError(SECTION, key, str(e)) from None


def denied_dir(layout: Layout, plan: CgroupsPlan) -> str | None:
    """None when this caller can make the run's groups; else a directory it may not write
    them in (what ``prepare`` would find when making them)."""
    from . import managers_for

    if layout.kind == "none":
        return None
    for m in managers_for(layout, plan, "check")[0]:
        for parent in m.parents():
            if not os.access(parent, os.W_OK | os.X_OK, effective_ids=True):
                return parent
    return None


def _substitutes(plan: CgroupsPlan) -> list[Substitute]:
    out = []
    for key, (name, resource, means) in SUBSTITUTES.items():
        value = plan[key]  # type: ignore[literal-required]
        if isinstance(value, int):
            out.append(Substitute(key=key, name=name, resource=resource, value=value,
                                  packed=struct.pack("=QQ", value, value), means=means))
    return out


@hookimpl
def secrun_compile(ctx: PlanContext) -> CgroupsPlan:
    cfg = ctx.config[SECTION]
    memory_max = _value(cfg, "memory_max", parse_size)
    swap_max = _value(cfg, "swap_max", parse_size)
    plan = CgroupsPlan(
        parent=cfg["parent"],
        memory_max=memory_max,
        swap_max=None if memory_max in (None, "max") else swap_max,  # only with memory
        pids_max=_value(cfg, "pids_max", parse_count),
        cpu_max=_value(cfg, "cpu_max", parse_cpus),
        cpu_weight=_value(cfg, "cpu_weight", parse_weight),
        io_weight=_value(cfg, "io_weight", parse_weight),
        substitutes=[],
    )
    made = ctx.fact("namespaces.made")
    if cfg["substitutes"] and isinstance(made, list) and "user" in made:
        plan["substitutes"] = _substitutes(plan)
    # A prediction for the other plugins (the launch decides again): a caller without a
    # writable cgroup tree gets the substitutes, and no group of its own.
    attach: str | None = "required" if ctx.required(SECTION) else "best-effort"
    memory = None
    if plan["substitutes"] and denied_dir(detect(), plan) is not None:
        attach = None
        memory = plan["memory_max"] if isinstance(plan["memory_max"], int) else None
    ctx.publish("cgroups.attach", attach)
    ctx.publish("cgroups.memory_substitute", memory)
    return plan
