"""Planning for the ``priority`` plugin: the ``[priority]`` section, the facts it declares,
``secrun_compile`` and the plan it returns.

Never imported by a launch from the plan cache (only the package, which holds the stages, is).
"""

from __future__ import annotations

from typing import TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError, shown
from secrun.facts import Facts
from secrun.schema import Field, Section

from . import ioprio

SECTION = "priority"
IOPRIO_CLASSES = ("idle", "best-effort", "unchanged")
NICE_MAX = 19  # the lowest priority; 0 is the normal one
LEVEL_MAX = 7  # the lowest best-effort I/O level

# The fact this plugin publishes, and the built-in facts it reads: the namespaces decide in
# its compile whether the workload's autogroup can be set (see secrun_compile); whether the
# workload could raise its priority back depends on them, its uid and whether its capability
# sets are managed (see audit.py).
FACTS: dict[str, tuple[object, str]] = {
    "priority.nice": (None, "the nice value the workload starts with (0-19); None: unchanged "
                            "(no [priority] section)"),
}
REQUIRES = ("namespaces.made",)
USES = ("identity.uid", "capabilities.managed")
# A namespace whose making forks the process that becomes the workload (the core's hand-over):
# that process then starts a session of its own at exec, after every stage.
FORKING = ("pid", "time")


class PriorityPlan(TypedDict):
    """What the stage hooks get as ``ctx.plan`` (plain data: cached with marshal)."""

    nice: int  # for setpriority(PRIO_PROCESS, 0, nice)
    ioprio: int | None  # for ioprio_set (class << 13 | level); None: unchanged
    autogroup: bool  # also write the nice value to /proc/PID/autogroup
    autogroup_lost: str  # why a requested autogroup nice cannot be set ("": it can)


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "The workload's CPU and I/O scheduling priority, lowered "
                             "(third-party example plugin).", [
        Field("nice", int, 10, "the workload's nice value: 0 (normal) to 19 (lowest); only a "
                               "process with CAP_SYS_NICE can lower it again"),
        Field("ioprio_class", str, "idle",
              "I/O scheduling class: \"idle\" (disk time only when no one else wants it), "
              "\"best-effort\" (with ioprio_level) or \"unchanged\""),
        Field("ioprio_level", int, LEVEL_MAX,
              "best-effort level: 0 (highest) to 7 (lowest); ignored by the other classes"),
        Field("autogroup", bool, True,
              "also set the nice value of the workload's autogroup (its session), which the "
              "kernel's autogroup scheduling weighs against other sessions"),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts(publishes=FACTS, requires=REQUIRES, uses=USES)


def _check(cfg: dict) -> None:
    """A ConfigError naming the key for each value the kernel would refuse or that would raise
    a priority instead of lowering it."""
    nice, cls, level = cfg["nice"], cfg["ioprio_class"], cfg["ioprio_level"]
    if not 0 <= nice <= NICE_MAX:
        raise ConfigError(SECTION, "nice", f"{shown(nice)} is outside 0 (normal) to 19 "
                                           "(lowest): this control only lowers a priority")
    if cls not in IOPRIO_CLASSES:
        raise ConfigError(SECTION, "ioprio_class",
                          f"{shown(cls)} is not one of {', '.join(IOPRIO_CLASSES)} (the "
                          "realtime class raises a priority)")
    if not 0 <= level <= LEVEL_MAX:
        raise ConfigError(SECTION, "ioprio_level", f"{shown(level)} is outside 0 to 7")


def _autogroup_lost(ctx: PlanContext) -> str:
    """Why the workload's autogroup cannot be set, or "".  The supervisor sets it in the
    ``attach`` stage on the process that will exec, whose session the stages ran in.  With a
    pid or time namespace the core forked that process (the hand-over, and with a pid namespace
    the init's fork of the workload): it leads no session, so its ``setsid`` at exec makes a
    new one, with a new autogroup at nice 0."""
    forks = [ns for ns in ctx.fact("namespaces.made") or () if ns in FORKING]
    if not forks:
        return ""
    return (f"with a new {' and '.join(forks)} namespace the workload starts a session of its "
            f"own at exec, after every stage: its autogroup keeps nice 0")


@hookimpl
def secrun_compile(ctx: PlanContext) -> PriorityPlan:
    cfg = ctx.config[SECTION]
    _check(cfg)
    cls, level = cfg["ioprio_class"], cfg["ioprio_level"]
    if cls != "best-effort" and "ioprio_level" in ctx.origins.get(SECTION, {}) \
            and ctx.origins[SECTION]["ioprio_level"] != "built-in default":
        ctx.note(f"ioprio_level = {level} has no effect with ioprio_class = {cls!r}")
    lost = _autogroup_lost(ctx) if cfg["autogroup"] else ""
    if lost:
        ctx.note(f"autogroup: {lost}")
    # The core records the entry-point module (plugin.py) of a third-party plugin as a
    # dependency of the cached plan; the code that makes this plan lives in these two.
    ctx.depends_on(__file__)
    ctx.depends_on(ioprio.__file__)
    ctx.publish("priority.nice", cfg["nice"])
    plan: PriorityPlan = {
        "nice": cfg["nice"],
        "ioprio": None if cls == "unchanged" else ioprio.encode(cls, level),
        "autogroup": bool(cfg["autogroup"]) and not lost,
        "autogroup_lost": lost,
    }
    ctx.log(f"priority: {plan}")
    return plan
