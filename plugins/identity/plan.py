"""Planning for the ``identity`` plugin: the ``[identity]`` schema and ``secrun_compile``, which
resolves names through the user database (``pwd``/``grp``, never loaded by a cached launch) and
publishes the workload's ids as the facts ``identity.uid`` and ``identity.gid``."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable
from typing import Any, TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError, shown
from secrun.facts import Facts
from secrun.schema import UID_MAX, Field, Section, is_digits, parse_digits

SECTION = "identity"
MAX_ID = UID_MAX  # (uid_t)-1 means "unchanged" to the set*id syscalls, so it is no id
_BLANK = " \t"  # around a name or number, ignored (not str.strip()'s Unicode spaces)


class IdentityPlan(TypedDict):
    uid: int | None  # None: unchanged
    gid: int | None  # None: unchanged
    groups: list[int]  # the supplementary groups ([]: none)
    user: str | None  # names, for display (None: the number has no entry)
    group: str | None


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "The user and groups the workload runs as (ids of the user "
                    "namespace, if [namespaces] makes one).", [
        Field("uid", (int, str), "",
              "user name or number (\"\": unchanged, secrun's own)"),
        Field("gid", (int, str), "",
              "group name or number (\"\": the user's primary group when uid is set, "
              "else unchanged)"),
        Field("groups", [(int, str)], [],
              "supplementary groups, names or numbers ([]: none)"),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts(
        publishes={
            "identity.uid": (None, "the workload's uid (of its user namespace, if any); "
                                   "None: unchanged"),
            "identity.gid": (None, "the workload's gid; None: unchanged"),
        },
        uses=("capabilities.managed", "namespaces.setgroups_denied"),
    )


def _number(value: int | str, key: str, kind: str) -> int | None:
    """An id from a TOML integer or a string of ASCII digits (an optional sign); None for a
    name; errors for the rest.  Only ASCII digits are a number: to int() "٠" (Arabic-Indic
    zero) is 0, which would make a value shown as a name run as root."""
    if isinstance(value, int):
        n = value
    else:
        text = value.strip(_BLANK)
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not is_digits(digits):
            return None
        if text.startswith("-"):
            n = -1
        else:
            try:
                n = parse_digits(digits, MAX_ID)
            except ValueError:
                n = MAX_ID + 1
    if n < 0 or n > MAX_ID:
        raise ConfigError(SECTION, key, f"{kind} {shown(value)} is out of range "
                          f"(0 .. {MAX_ID}; negative ids do not exist)")
    return n


def _lookup(getnam: Callable[[str], Any], name: str, key: str, what: str) -> Any:
    """``getnam`` (pwd.getpwnam or grp.getgrnam) of a name; ConfigError when there is none."""
    try:
        if "\0" in name:
            raise KeyError(name)  # (Python's lookups raise ValueError for it)
        return getnam(name)
    except KeyError:
        db = "user database, /etc/passwd" if what == "user" else "group database, /etc/group"
        hint = ("; a number is written in ASCII digits 0-9" if any(
            c.isnumeric() and not c.isascii() for c in name) else "")
        raise ConfigError(SECTION, key, f"unknown {what} {shown(name)} (not in the "
                          f"{db}{hint})") from None


def _user(value: int | str, ctx: PlanContext) -> tuple[int, pwd.struct_passwd | None]:
    """(uid, its passwd entry or None) of ``[identity].uid``."""
    uid = _number(value, "uid", "uid")
    ctx.depends_on("/etc/passwd")
    if uid is None:
        assert isinstance(value, str)  # (an int is a number)
        entry: pwd.struct_passwd = _lookup(pwd.getpwnam, value.strip(_BLANK), "uid", "user")
        return entry.pw_uid, entry
    try:
        return uid, pwd.getpwuid(uid)
    except KeyError:
        return uid, None


def _group(value: int | str, key: str, ctx: PlanContext) -> int:
    gid = _number(value, key, "gid" if key == "gid" else "group")
    if gid is None:
        assert isinstance(value, str)
        ctx.depends_on("/etc/group")
        gid = _lookup(grp.getgrnam, value.strip(_BLANK), key, "group").gr_gid
    return gid


def _primary_gid(uid: int, entry: pwd.struct_passwd | None) -> int:
    # A uid without a gid runs with that user's primary group: keeping secrun's own gid
    # (often 0) would leave the workload root's group.
    if entry is None:
        raise ConfigError(SECTION, "uid", f"uid {uid} has no entry in /etc/passwd, so it "
                          f"has no primary group: set [identity].gid too")
    return entry.pw_gid


def _group_name(gid: int | None) -> str | None:
    if gid is None:
        return None
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def resolve(cfg: dict[str, Any], ctx: PlanContext) -> IdentityPlan:
    """Numbers (None = unchanged) and names for display."""
    uid: int | None = None
    gid: int | None = None
    entry = None
    if cfg["uid"] != "":
        uid, entry = _user(cfg["uid"], ctx)
    if cfg["gid"] != "":
        ctx.depends_on("/etc/group")
        gid = _group(cfg["gid"], "gid", ctx)
    elif uid is not None:
        gid = _primary_gid(uid, entry)
    groups: list[int] = []
    for g in cfg["groups"]:
        n = _group(g, "groups", ctx)
        if n not in groups:
            groups.append(n)
    return {"uid": uid, "gid": gid, "groups": groups,
            "user": entry.pw_name if entry else None, "group": _group_name(gid)}


@hookimpl
def secrun_compile(ctx: PlanContext) -> IdentityPlan:
    plan = resolve(ctx.config[SECTION], ctx)
    ctx.publish("identity.uid", plan["uid"])
    ctx.publish("identity.gid", plan["gid"])
    return plan
