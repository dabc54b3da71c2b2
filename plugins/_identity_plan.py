"""Planning half of the ``identity`` plugin: the ``[identity]`` schema, name resolution through
the user database (``secrun_compile``) and ``secrun_audit``.

Imported lazily by the hooks in :mod:`secrun.plugins.identity`, so a cached launch never loads
it (nor ``pwd``/``grp``); the identity stage stays in that module.
"""

import os

from secrun.errors import ConfigError
from secrun.plugins.identity import SECTION
from secrun.schema import Field, Section

MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "unchanged" to the set*id syscalls, so it is no id


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
    """An id from a TOML integer or a string of digits; None for a name; errors for the rest."""
    if isinstance(value, int):
        n = value
    else:
        text = value.strip()
        if text.lstrip("+-").isdigit():
            n = int(text)
        else:
            return None
    if n < 0 or n > MAX_ID:
        raise ConfigError(SECTION, key, f"{kind} {value!r} is out of range "
                          f"(0 .. {MAX_ID}; negative ids do not exist)")
    return n


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
            try:
                entry = pwd.getpwnam(cfg["uid"].strip())
            except KeyError:
                raise ConfigError(SECTION, "uid", f"unknown user {cfg['uid']!r} "
                                  f"(not in the user database, /etc/passwd)") from None
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
            try:
                gid = grp.getgrnam(cfg["gid"].strip()).gr_gid
            except KeyError:
                raise ConfigError(SECTION, "gid", f"unknown group {cfg['gid']!r} "
                                  f"(not in the group database, /etc/group)") from None
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
            try:
                n = grp.getgrnam(g.strip()).gr_gid
            except KeyError:
                raise ConfigError(SECTION, "groups", f"unknown group {g!r} "
                                  f"(not in the group database, /etc/group)") from None
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
