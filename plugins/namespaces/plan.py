"""The ``namespaces`` plugin's planning: the ``[namespaces]`` schema, the facts it publishes,
``secrun_compile`` and the plan's shape.  Imported only on a plan cache miss, by ``secrun
audit`` and ``secrun profiles``; a cached launch never loads it.
"""

from __future__ import annotations

import os
from typing import Literal, TypedDict

from secrun import hookimpl
from secrun.errors import ConfigError
from secrun.facts import Facts
from secrun.schema import Field, Section, check_range

from . import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUTS,
    SECTION,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import PlanContext


class NamespacesPlan(TypedDict):
    """What ``secrun_compile`` returns and the stages read."""

    user: bool  # a user namespace is made ("auto" resolved for the caller)
    map: Literal["self", "root", "range", "identity", "subid"]  # user_map, "auto" resolved
    range: tuple[int, int]  # (range_start, range_size) of the "range" map
    inside: tuple[int, int]  # (uid, gid) the caller is inside with the "identity" map
    unavailable: list[str]  # keys asked for that this kernel lacks and that may degrade
    # the "subid" map: (newuidmap, newgidmap, (uid start, count), (gid start, count))
    subid: tuple[str, str, tuple[int, int], tuple[int, int]] | None
    unshare: list[tuple[str, str, int]]  # (profile key, /proc/self/ns name, CLONE_NEW*), ORDER
    net: str  # the net mode: "host" | "none"
    hostname: str | None  # None: no UTS namespace
    domainname: str | None


# The order of the namespaces created in the `namespaces` stage (the user namespace already
# exists: it is the `user_namespace` stage).  (profile key, /proc/self/ns name, flag, why here)
# The plan keeps (key, ns, flag) of the ones a profile asks for, in this order.
ORDER = (
    ("mount", "mnt", CLONE_NEWNS,
     "first: its propagation is made slave at once, so no mount made by anything that follows "
     "(the filesystem plugin, the workload) can propagate back to the host"),
    ("uts", "uts", CLONE_NEWUTS,
     "independent; the hostname is set later, in the hostname stage"),
    ("ipc", "ipc", CLONE_NEWIPC,
     "independent; before any SysV/POSIX IPC object could be created"),
    ("net", "net", CLONE_NEWNET,
     "its loopback is brought up right after, while the child is still privileged"),
    ("pid", "pid", CLONE_NEWPID,
     "last with time: it applies only to children, so the core forks right after this stage "
     "(or secrun makes it itself before fork, when there is no user namespace)"),
    ("time", "time", CLONE_NEWTIME,
     "last with pid: it applies only to children (offsets could be written before that fork)"),
    ("cgroup", "cgroup", CLONE_NEWCGROUP,
     "not in the namespaces stage but in the hostname stage, the first after the supervisor's "
     "attach stage: the namespace's root is then the sandbox's own cgroup, not secrun's"),
)
# Namespaces that add little to confinement and that a supported kernel may lack (time: Linux
# 5.6 and CONFIG_TIME_NS; cgroup: CONFIG_CGROUPS): asked for on a kernel without them, they are
# not made, with a warning at every launch and a not-available audit row, instead of failing
# the launch.  The ones that carry the promise (user, mount, pid, net, ipc, uts) stay as
# required as their section.
DEGRADABLE = ("time", "cgroup")


def kernel_has(ns: str) -> bool:
    """Whether this kernel has namespaces of kind ``ns`` (its /proc/self/ns entry).  Plans are
    cached per boot, so the answer holds for the plan's life."""
    return os.path.exists(f"/proc/self/ns/{ns}")


NET_MODES = ("host", "none")  # later: "veth", "user" (user-mode networking)
USER_MAPS = ("auto", "self", "root", "range", "identity")
HOST_NAME_MAX = 64
ID_MAX = (1 << 32) - 1  # (uid_t)-1 is never a valid id


def _check_id_count(v: int) -> None:
    # Only 1 .. 2^32-2 can be a start or a size of an id map; the "range" mapping checks the
    # two together when it is used.
    check_range(v, 1, ID_MAX - 1)


def _check_range_start(v: int) -> None:
    if v == 0:
        raise ValueError("0 would map host root into the namespace (1 .. "
                         f"{ID_MAX - 1})")
    _check_id_count(v)


def _check_user(v: object) -> None:
    if not isinstance(v, bool) and v != "auto":
        raise ValueError(f"{v!r}: expected true, false or \"auto\"")


def _check_hostname(v: str) -> None:
    if not 1 <= len(v.encode()) <= HOST_NAME_MAX:
        raise ValueError(f"{v!r}: a hostname has 1 to {HOST_NAME_MAX} bytes")
    for label in v.split("."):
        if not label or label[0] == "-" or label[-1] == "-" or not all(
                c.isascii() and (c.isalnum() or c == "-") for c in label):
            raise ValueError(f"{v!r} is not a valid hostname (letters, digits and '-', in "
                             f"dot-separated labels not starting or ending with '-')")


def _check_domainname(v: str) -> None:
    if len(v.encode()) > HOST_NAME_MAX:
        raise ValueError(f"{v!r}: a domain name has at most {HOST_NAME_MAX} bytes")
    if not all(c.isascii() and c.isprintable() and not c.isspace() for c in v):
        raise ValueError(f"{v!r}: only printable ASCII without spaces")


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "Kernel namespaces of the workload.", [
        Field("user", (bool, str), "auto",
              "a user namespace: true, false, or \"auto\" (one exactly when secrun does not "
              "run as root, so an ordinary user can create the other namespaces)",
              check=_check_user),
        Field("user_map", str, "auto",
              "who the caller is inside the user namespace: \"auto\" (run by an ordinary "
              "user whose profile sets [identity] ids, e.g. 65534: those ids in its "
              "/etc/subuid and /etc/subgid ranges through newuidmap/newgidmap when it has "
              "them, else \"identity\"; otherwise \"self\"), \"identity\" (the caller's own "
              "uid/gid seen as the [identity] ids: one id each, no subordinate ids), \"self\" "
              "(the same uid/gid), \"root\" (uid/gid 0), or \"range\" (as root only: inside "
              "ids 0..range_size-1 are host ids range_start..; the workload becomes the "
              "namespace's root, an unprivileged host uid)",
              choices=USER_MAPS),
        Field("range_start", int, 100000, "first host uid/gid of the \"range\" mapping",
              check=_check_range_start),
        Field("range_size", int, 65536, "number of uids/gids of the \"range\" mapping",
              check=_check_id_count),
        Field("mount", bool, False, "a mount namespace (propagation to the host cut at once)"),
        Field("pid", bool, False,
              "a pid namespace; secrun keeps a minimal init as its pid 1 (forwards signals, "
              "reaps orphans, exits with the workload's status)"),
        Field("uts", bool, False, "a UTS namespace, with hostname/domainname below"),
        Field("ipc", bool, False, "an IPC namespace (SysV IPC, POSIX message queues)"),
        Field("cgroup", bool, False, "a cgroup namespace rooted at the workload's cgroup"),
        Field("time", bool, False, "a time namespace (monotonic/boottime clocks)"),
        Field("net", str, "host",
              "network: \"host\" keeps the host's network namespace; \"none\" gives a new one "
              "with only the loopback interface, up", choices=NET_MODES),
        Field("hostname", str, "sandbox", "hostname inside the UTS namespace (uts = true)",
              check=_check_hostname),
        Field("domainname", str, "(none)",
              "NIS domain name inside the UTS namespace (\"(none)\" is the kernel's unset "
              "value)", check=_check_domainname),
    ])]


FACTS = {
    "namespaces.made": ([], "the namespaces this launch makes, among user, mnt, pid, net, uts, "
                            "ipc, cgroup, time (user = \"auto\" resolved for the caller)"),
    "namespaces.user_root": (False, "the caller is uid 0 inside the new user namespace"),
    "namespaces.setgroups_denied": (False, "the gid map is written with setgroups=deny, so the "
                                           "caller's supplementary groups stay"),
    "namespaces.net": ("host", "the profile's network mode: \"host\" or \"none\""),
}


@hookimpl
def secrun_facts() -> Facts:
    # identity: "auto" maps an ordinary user to the workload's ids (read in its compile)
    return Facts(publishes=FACTS, requires=("identity.uid", "identity.gid"))


def wants_user(user: bool | str) -> bool:
    """Whether a launch makes a user namespace ("auto": exactly when secrun is not root)."""
    return os.geteuid() != 0 if user == "auto" else bool(user)


def _check_range(cfg: dict) -> None:
    start, size = cfg["range_start"], cfg["range_size"]
    if cfg["user"] is not True:
        raise ConfigError(SECTION, "user_map",
                          f"\"range\" maps the ids of a user namespace: it needs user = "
                          f"true (user = {cfg['user']!r} makes none when run as root)")
    if os.geteuid() != 0:
        raise ConfigError(SECTION, "user_map",
                          "\"range\" needs secrun to run as root (an ordinary user may map "
                          "only its own uid: use \"auto\", \"self\" or \"root\")")
    if not 1 <= start < ID_MAX:
        raise ConfigError(SECTION, "range_start",
                          f"{start}: must be 1..{ID_MAX - 1} (0 would map host root)")
    if not 1 <= size <= ID_MAX - start:
        raise ConfigError(SECTION, "range_size",
                          f"{size}: must be 1..{ID_MAX - start} (the range ends below "
                          f"{ID_MAX})")


SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"


def subid_range(path: str, names: tuple[str, ...], need: int) -> tuple[int, int] | None:
    """The caller's first range in /etc/subuid or /etc/subgid (``name:start:count``, the name
    or the number) with at least ``need`` ids, or None."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in names and parts[1].isdigit() \
                and parts[2].isdigit() and int(parts[2]) >= need and int(parts[1]) > 0:
            return int(parts[1]), int(parts[2])
    return None


def _subid(ctx: PlanContext, inside: tuple[int, int]) -> tuple[
        str, str, tuple[int, int], tuple[int, int]] | None:
    """newuidmap/newgidmap and the caller's ranges, when it has both and both tools are
    installed: the workload's ids (``inside``) then map into those ranges, not onto the
    caller.  newuidmap needs a user name (a uid without a passwd entry has no ranges)."""
    import pwd
    import shutil

    for path in (SUBUID, SUBGID):
        ctx.depends_on(path)
    tools = shutil.which("newuidmap"), shutil.which("newgidmap")
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None
    if tools[0] is None or tools[1] is None:
        return None
    uids = subid_range(SUBUID, (name, str(os.geteuid())), inside[0])
    gids = subid_range(SUBGID, (name, str(os.geteuid())), inside[1])
    if uids is None or gids is None:
        return None
    return tools[0], tools[1], uids, gids


def _resolve_map(ctx: PlanContext, user_map: str) -> tuple[
        Literal["self", "root", "range", "identity", "subid"], tuple[int, int]]:
    """``user_map`` with "auto" resolved, and the (uid, gid) the caller is inside.  An ordinary
    user may map its own uid to any one id inside (and its gid likewise): "auto" maps it to the
    [identity] ids, so the workload can become them (65534 for strict) without subordinate
    ids.  Root keeps "self": mapping host uid 0 to an unprivileged id inside would give the
    workload host root's file access wherever the mount view shows the host's files."""
    uid, gid = os.geteuid(), os.getegid()
    if user_map not in ("auto", "identity"):
        return user_map, (uid, gid)  # type: ignore[return-value]  # (one of USER_MAPS)
    want_uid, want_gid = ctx.fact("identity.uid"), ctx.fact("identity.gid")
    if uid == 0 or (want_uid is None and want_gid is None):
        return "self", (uid, gid)
    inside = (want_uid if isinstance(want_uid, int) else uid,
              want_gid if isinstance(want_gid, int) else gid)
    if user_map == "auto" and _subid(ctx, inside) is not None:
        return "subid", inside
    return "identity", inside


@hookimpl
def secrun_compile(ctx: PlanContext) -> NamespacesPlan:
    cfg = ctx.config[SECTION]
    if cfg["user_map"] == "range":
        _check_range(cfg)
    wanted = [(key, ns, flag) for key, ns, flag, _why in ORDER
              if (cfg["net"] != "host" if key == "net" else cfg[key])]
    unavailable = [key for key, ns, _f in wanted if key in DEGRADABLE and not kernel_has(ns)]
    unshare = [w for w in wanted if w[0] not in unavailable]
    user = wants_user(cfg["user"])
    mapping, inside = _resolve_map(ctx, cfg["user_map"])
    subid = _subid(ctx, inside) if mapping == "subid" else None
    plan: NamespacesPlan = {
        "user": user,
        "map": mapping,
        "range": (cfg["range_start"], cfg["range_size"]),
        "inside": inside,
        "unavailable": unavailable,
        "subid": subid,
        "unshare": unshare,
        "net": cfg["net"],
        "hostname": cfg["hostname"] if cfg["uts"] else None,
        "domainname": cfg["domainname"] if cfg["uts"] else None,
    }
    ctx.publish("namespaces.made", (["user"] if user else []) + [ns for _k, ns, _f in unshare])
    ctx.publish("namespaces.user_root", user and (
        mapping in ("root", "range", "subid") or mapping == "self" and os.geteuid() == 0
        or mapping == "identity" and inside[0] == 0))
    ctx.publish("namespaces.setgroups_denied", user and plan["map"] not in ("range", "subid"))
    ctx.publish("namespaces.net", cfg["net"])
    return plan
