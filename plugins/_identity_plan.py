"""Planning half of the ``identity`` plugin: the ``[identity]`` schema, name resolution through
the user database (``secrun_compile``) and ``secrun_audit``.

Imported lazily by the hooks in :mod:`secrun.plugins.identity`, so a cached launch never loads
it (nor ``pwd``/``grp``); the identity stage stays in that module.
"""

import os

from secrun.errors import ConfigError, shown
from secrun.plugins.identity import SECTION
from secrun.schema import UID_MAX, Field, Section, is_digits, parse_digits

MAX_ID = UID_MAX  # (uid_t)-1 means "unchanged" to the set*id syscalls, so it is no id
_BLANK = " \t"  # around a name or number, ignored (not str.strip()'s Unicode spaces)


def sections():
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


def _number(value, key: str, kind: str):
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


def _lookup(getnam, name: str, key: str, what: str):
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


def resolve(cfg: dict, depends_on=lambda path: None) -> dict:
    """{uid, gid, groups, user, group}: numbers (None = unchanged) and names for display."""
    import grp
    import pwd

    uid = gid = None
    user = group = None
    entry = None
    if cfg["uid"] != "":
        uid = _number(cfg["uid"], "uid", "uid")
        depends_on("/etc/passwd")
        if uid is None:
            entry = _lookup(pwd.getpwnam, cfg["uid"].strip(_BLANK), "uid", "user")
            uid = entry.pw_uid
        else:
            try:
                entry = pwd.getpwuid(uid)
            except KeyError:
                entry = None
        user = entry.pw_name if entry else None

    if cfg["gid"] != "":
        gid = _number(cfg["gid"], "gid", "gid")
        depends_on("/etc/group")
        if gid is None:
            gid = _lookup(grp.getgrnam, cfg["gid"].strip(_BLANK), "gid", "group").gr_gid
    elif uid is not None:
        # A uid without a gid runs with that user's primary group: keeping secrun's own gid
        # (often 0) would leave the workload root's group.
        if entry is None:
            raise ConfigError(SECTION, "uid", f"uid {uid} has no entry in /etc/passwd, so it "
                              f"has no primary group: set [identity].gid too")
        gid = entry.pw_gid
    if gid is not None:
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = None

    groups = []
    for g in cfg["groups"]:
        n = _number(g, "groups", "group")
        if n is None:
            depends_on("/etc/group")
            n = _lookup(grp.getgrnam, g.strip(_BLANK), "groups", "group").gr_gid
        if n not in groups:
            groups.append(n)
    return {"uid": uid, "gid": gid, "groups": groups, "user": user, "group": group}


def _show(num, name) -> str:
    return f"{num}({name})" if name else str(num)


def _plan_denies_setgroups(config) -> bool:
    """Whether [namespaces] makes a user namespace whose gid map is written with
    setgroups=deny (every map but "range"): the caller's own groups then stay."""
    ns = config.get("namespaces") or {}
    user = ns.get("user", False)
    made = os.geteuid() != 0 if user == "auto" else user is True
    return made and ns.get("user_map", "self") != "range"


def audit(ctx) -> list:
    plan = ctx.plan[SECTION]
    uid, gid, groups = plan["uid"], plan["gid"], plan["groups"]
    expect = {}
    if not _plan_denies_setgroups(ctx.config):
        expect["id.groups"] = " ".join(str(g) for g in groups)
    if uid is not None:
        expect["id.uid"] = str(uid)
    if gid is not None:
        expect["id.gid"] = str(gid)
    value = " ".join((
        "uid=" + (_show(uid, plan["user"]) if uid is not None else "unchanged"),
        "gid=" + (_show(gid, plan["group"]) if gid is not None else "unchanged"),
        "groups=" + (",".join(map(str, groups)) or "none")))
    if uid is None:
        weight, status = 0.5, "not-configured"
    else:
        weight, status = (0.5 if uid == 0 else 0.0), "enforced"
    return [{"control": "identity", "section": SECTION, "key": "uid", "value": value,
             "status": status, "weight": weight, "expect": expect,
             "detail": "ids as seen inside the sandbox (of its user namespace, if it has one)"}]
