"""The ``identity`` plugin: the uid, gid and supplementary groups the workload runs as.

Section ``[identity]``.  Child stage ``identity``: after every stage that needs root (mounts,
hostname, rlimits, LSM labels), before ``capabilities`` (which computes the capability sets for
the final uid) and ``no_new_privs``.

Names are resolved at planning time (``secrun_compile``) through the host's user database
(``/etc/passwd``, ``/etc/group``; the plan is recomputed when they change).  Inside a user
namespace the numbers are the namespace's ids, which must be mapped by ``[namespaces]``.
"""

import os

from secrun import hookimpl
from secrun.errors import ConfigError, SetupError
from secrun.kernel import PR_SET_KEEPCAPS, prctl  # at module level: see docs/plugins.md
from secrun.schema import Field, Section

SECTION = "identity"
MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "unchanged" to the set*id syscalls, so it is no id


@hookimpl
def secrun_profile_sections():
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


@hookimpl
def secrun_compile(ctx):
    ctx.plan[SECTION] = resolve(ctx.config[SECTION], ctx.depends_on)


def _setgroups_denied() -> bool:
    """A user namespace whose gid map was written with setgroups=deny forbids setgroups."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def _fail(exc: OSError, what: str) -> Exception:
    import errno

    if exc.errno == errno.EINVAL:
        # The set*id calls answer EINVAL for an id that the current user namespace does not map.
        return SetupError(what, f"{os.strerror(exc.errno)} (EINVAL): the id is not mapped in "
                          f"this user namespace (see [namespaces].user_map)")
    return OSError(exc.errno, os.strerror(exc.errno or 0), what)


def apply(plan: dict, keep_caps: bool, log=lambda text: None) -> None:
    """setgroups, setresgid, setresuid, in this order: changing groups and gid needs
    CAP_SETGID, which a non-root uid no longer has, so the uid changes last.  A call whose
    result already holds is skipped (an unprivileged secrun may ask for its own ids)."""
    groups, gid, uid = plan["groups"], plan["gid"], plan["uid"]
    if sorted(set(os.getgroups())) != sorted(groups):
        try:
            os.setgroups(groups)
        except OSError as e:
            # In a user namespace with setgroups=deny the kernel keeps the caller's own
            # (unmapped) supplementary groups on purpose, so that dropping them cannot escape a
            # group-based denial; asking for none there is the best the namespace allows.
            denied = _setgroups_denied()
            if groups and denied:
                raise SetupError(f"setgroups({groups})", "Operation not permitted (EPERM): this "
                                 "user namespace denies setgroups (its gid map was written "
                                 "with setgroups=deny); supplementary groups need a map that "
                                 "root writes, [namespaces].user_map = \"range\"") from None
            if not denied:
                raise _fail(e, f"setgroups({groups})") from None
            log("identity: setgroups is denied in this user namespace; the caller's "
                "supplementary groups stay (shown as the overflow gid)")
    if gid is not None and os.getresgid() != (gid, gid, gid):
        try:
            os.setresgid(gid, gid, gid)
        except OSError as e:
            raise _fail(e, f"setresgid({gid})") from None
    if uid is not None and os.getresuid() != (uid, uid, uid):
        # Leaving uid 0 empties the permitted set unless PR_SET_KEEPCAPS is on.  When the
        # capabilities stage follows, it keeps the profile's set for the new uid (and makes it
        # ambient), so the permitted set must survive until then; that stage drops the rest.
        if keep_caps:
            prctl(PR_SET_KEEPCAPS, 1, what="prctl(PR_SET_KEEPCAPS, 1)")
        try:
            os.setresuid(uid, uid, uid)
        except OSError as e:
            raise _fail(e, f"setresuid({uid})") from None
        if keep_caps:
            prctl(PR_SET_KEEPCAPS, 0, what="prctl(PR_SET_KEEPCAPS, 0)")


@hookimpl
def secrun_identity(ctx):
    apply(ctx.plan[SECTION], keep_caps="capabilities" in ctx.config, log=ctx.log)


def _show(num, name) -> str:
    return f"{num}({name})" if name else str(num)


def _plan_denies_setgroups(config) -> bool:
    """Whether [namespaces] makes a user namespace whose gid map is written with
    setgroups=deny (every map but "range"): the caller's own groups then stay."""
    ns = config.get("namespaces") or {}
    user = ns.get("user", False)
    made = os.geteuid() != 0 if user == "auto" else user is True
    return made and ns.get("user_map", "self") != "range"


@hookimpl
def secrun_audit(ctx):
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
