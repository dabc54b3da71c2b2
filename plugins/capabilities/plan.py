"""Planning for the ``capabilities`` plugin: the ``[capabilities]`` schema, capability name
parsing and ``secrun_compile`` (the mask to keep, for the running kernel's capabilities)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError, shown
from secrun.facts import Facts
from secrun.schema import Field, Section, is_digits, parse_digits

from .names import NAMES, NUMBERS, cap_name

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


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    # No /proc (or an odd one): PR_CAPBSET_READ answers EINVAL past the last capability.
    from secrun.kernel import PR_CAPBSET_READ, libc

    n = 0
    while libc.prctl(PR_CAPBSET_READ, n + 1, 0, 0, 0) >= 0:
        n += 1
    return n


def _number(value: str, last: int, key: str) -> int:
    """The number of one capability written as text (``"all"`` excepted)."""
    text = value.strip().lower()
    bare = text[4:] if text.startswith("cap_") else text
    if is_digits(bare):
        # (ASCII digits only, and no int() of thousands of them: see secrun.schema)
        try:
            return parse_digits(bare, last)
        except ValueError:
            return last + 1  # too large: refused by the caller
    if bare in NUMBERS and value.isascii():  # (the Kelvin sign lowers to "k")
        return NUMBERS[bare]
    raise ConfigError(SECTION, key, f"unknown capability {shown(value)} (names are "
                      f"CAP_CHOWN .. {cap_name(min(last, len(NAMES) - 1)).upper()}, "
                      f"with or without CAP_, or cap_<n>, or \"all\")")


def parse_names(values: Iterable[str | int], last: int, key: str) -> tuple[bool, int]:
    """(``"all"`` was given, mask of the named capabilities) for a ``keep``/``drop`` list.

    Accepted: ``CAP_CHOWN``, ``chown`` (any case), ``cap_<n>`` and plain numbers, for
    capabilities 0 .. ``last``.
    """
    everything, mask = False, 0
    for value in values:
        if isinstance(value, str) and value.strip().lower() == "all":
            everything = True
            continue
        num = value if isinstance(value, int) else _number(value, last, key)
        if num < 0 or num > last:
            raise ConfigError(SECTION, key, f"capability {shown(value)} is not known to the "
                              f"running kernel (cap_last_cap = {last})")
        mask |= 1 << num
    return everything, mask


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
