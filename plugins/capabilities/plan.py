"""Planning for the ``capabilities`` plugin: the ``[capabilities]`` schema, capability name
parsing and ``secrun_compile`` (the mask to keep, for the running kernel's capabilities)."""

from __future__ import annotations

from typing import TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError
from secrun.facts import Facts
from secrun.kernel import last_cap, parse_cap_names
from secrun.schema import Field, Section

SECTION = "capabilities"


class CapabilitiesPlan(TypedDict):
    last: int  # the running kernel's cap_last_cap
    want: int  # the mask of the capabilities the profile keeps (limited at launch to the held)


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "Linux capabilities of the workload: bounding, permitted, effective, "
                    "inheritable and ambient sets (see docs/capabilities.md).", [
        Field("keep", [(str, int)], ["all"],
              "capabilities that may survive, everything else is dropped from every set: names "
              "with or without CAP_, any case, cap_<n> or numbers; [\"all\"] keeps what secrun "
              "holds, [] keeps nothing"),
        Field("drop", [(str, int)], [],
              "capabilities removed from what `keep` leaves ([\"all\"]: everything)"),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts(
        publishes={"capabilities.managed": (False, "True when this launch sets the workload's "
                                                   "capability sets (the capabilities stage)")},
        uses=("identity.uid", "namespaces.made", "namespaces.user_root"),
    )


def parse_names(values: list[str | int], last: int, key: str) -> tuple[bool, int]:
    """:func:`secrun.kernel.parse_cap_names`, a refusal naming ``[capabilities].key``."""
    try:
        return parse_cap_names(values, last)
    except ValueError as e:
        raise ConfigError(SECTION, key, str(e)) from None


@hookimpl
def secrun_compile(ctx: PlanContext) -> CapabilitiesPlan:
    cfg = ctx.config[SECTION]
    last = last_cap()
    full = (1 << (last + 1)) - 1
    keep_all, keep = parse_names(cfg["keep"], last, "keep")
    drop_all, drop = parse_names(cfg["drop"], last, "drop")
    want = 0 if drop_all else (full if keep_all else keep) & ~drop
    ctx.publish("capabilities.managed", True)
    return {"last": last, "want": want}
