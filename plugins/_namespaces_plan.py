"""Planning half of the ``namespaces`` plugin: the ``[namespaces]`` schema, ``secrun_compile``
and ``secrun_audit``.

Imported lazily by the hooks in :mod:`secrun.plugins.namespaces`, so a cached launch (which
only runs the stage hooks) never loads it.  The stage hooks stay in that module.
"""

import os

from secrun.errors import ConfigError
from secrun.plugins.namespaces import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUTS,
    SECTION,
    _wants_user,
)
from secrun.schema import Field, Section, check_range

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
NET_MODES = ("host", "none")  # later: "veth", "user" (user-mode networking)
USER_MAPS = ("self", "root", "range")
HOST_NAME_MAX = 64
ID_MAX = (1 << 32) - 1  # (uid_t)-1 is never a valid id


def _check_id_count(v):
    # Only 1 .. 2^32-2 can be a start or a size of an id map; the "range" mapping checks the
    # two together when it is used.
    check_range(v, 1, ID_MAX - 1)


def _check_range_start(v):
    if v == 0:
        raise ValueError("0 would map host root into the namespace (1 .. "
                         f"{ID_MAX - 1})")
    _check_id_count(v)


def _check_user(v):
    if not isinstance(v, bool) and v != "auto":
        raise ValueError(f"{v!r}: expected true, false or \"auto\"")


def _check_hostname(v):
    if not 1 <= len(v.encode()) <= HOST_NAME_MAX:
        raise ValueError(f"{v!r}: a hostname has 1 to {HOST_NAME_MAX} bytes")
    for label in v.split("."):
        if not label or label[0] == "-" or label[-1] == "-" or not all(
                c.isascii() and (c.isalnum() or c == "-") for c in label):
            raise ValueError(f"{v!r} is not a valid hostname (letters, digits and '-', in "
                             f"dot-separated labels not starting or ending with '-')")


def _check_domainname(v):
    if len(v.encode()) > HOST_NAME_MAX:
        raise ValueError(f"{v!r}: a domain name has at most {HOST_NAME_MAX} bytes")
    if not all(c.isascii() and c.isprintable() and not c.isspace() for c in v):
        raise ValueError(f"{v!r}: only printable ASCII without spaces")


def sections():
    return [Section(SECTION, "Kernel namespaces of the workload.", [
        Field("user", (bool, str), "auto",
              "a user namespace: true, false, or \"auto\" (one exactly when secrun does not "
              "run as root, so an ordinary user can create the other namespaces)",
              check=_check_user),
        Field("user_map", str, "self",
              "who the caller is inside the user namespace: \"self\" (the same uid/gid), "
              "\"root\" (uid/gid 0), or \"range\" (as root only: inside ids 0..range_size-1 are "
              "host ids range_start..; the workload becomes the namespace's root, an "
              "unprivileged host uid)", choices=USER_MAPS),
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


def compile_plan(cfg) -> dict:
    start, size = cfg["range_start"], cfg["range_size"]
    if cfg["user_map"] == "range":
        if cfg["user"] is not True:
            raise ConfigError(SECTION, "user_map",
                              f"\"range\" maps the ids of a user namespace: it needs user = "
                              f"true (user = {cfg['user']!r} makes none when run as root)")
        if os.geteuid() != 0:
            raise ConfigError(SECTION, "user_map",
                              "\"range\" needs secrun to run as root (an ordinary user may map "
                              "only its own uid: use \"self\" or \"root\")")
        if not 1 <= start < ID_MAX:
            raise ConfigError(SECTION, "range_start",
                              f"{start}: must be 1..{ID_MAX - 1} (0 would map host root)")
        if not 1 <= size <= ID_MAX - start:
            raise ConfigError(SECTION, "range_size",
                              f"{size}: must be 1..{ID_MAX - start} (the range ends below "
                              f"{ID_MAX})")
    unshare = [(key, ns, flag) for key, ns, flag, _why in ORDER
               if (cfg["net"] != "host" if key == "net" else cfg[key])]
    return {
        "user": cfg["user"],
        "map": cfg["user_map"],
        "range": (start, size),
        "unshare": unshare,
        "net": cfg["net"],
        "fork": bool(cfg["pid"] or cfg["time"]),
        "hostname": cfg["hostname"] if cfg["uts"] else None,
        "domainname": cfg["domainname"] if cfg["uts"] else None,
    }


# --- audit ----------------------------------------------------------------------------------------

MEANING = {
    "user": "ids and capabilities separate from the host's",
    "mount": "a private mount table",
    "pid": "sees only its own processes; a minimal init reaps and forwards signals",
    "uts": "own hostname",
    "ipc": "own SysV IPC and POSIX message queues",
    "cgroup": "sees only its own cgroup subtree",
    "time": "own monotonic/boottime clocks",
}


def audit(ctx) -> list:
    cfg = ctx.config[SECTION]
    plan = ctx.plan[SECTION]
    rows = []
    user = _wants_user(plan)
    if user:
        start, size = plan["range"]
        inside = {"self": "the caller's own uid/gid", "root": "uid/gid 0 (the caller)",
                  "range": f"ids 0..{size - 1} = host {start}..{start + size - 1}"}[plan["map"]]
        value = f"new ({inside})"
    else:
        value = "host" + (" (auto: secrun runs as root)" if cfg["user"] == "auto" else "")
    rows.append(_row("user", "user", user, value, ctx.required(SECTION)))
    made = {key for key, _ns, _flag in plan["unshare"]}
    for key, ns, _flag, _why in ORDER:
        if key == "net":
            continue
        on = key in made
        rows.append(_row(key, ns, on, f"new ({MEANING[key]})" if on else "host",
                         ctx.required(SECTION)))
    net_new = "net" in made
    row = _row("net", "net", net_new,
               "none (new namespace, loopback only)" if net_new else "host network",
               ctx.required(SECTION))
    if net_new and plan["net"] == "none":
        row["expect"]["net.interfaces"] = "lo"
    rows.append(row)
    if cfg["uts"]:
        rows.append({"control": "hostname", "section": SECTION, "key": "hostname",
                     "category": "namespaces.hostname",
                     "value": f"{cfg['hostname']} (domain {cfg['domainname']})",
                     "status": _status(True, ctx.required(SECTION)), "weight": 0.0})
    return rows


def _status(on, required):
    if not on:
        return "not-configured"
    return "enforced" if required else "best-effort"


def _row(key, ns, on, value, required):
    # weight: the share of this control's exposure that remains (docs/audit.md gives each
    # category its importance): none when the namespace is made, all of it when not.
    return {"control": f"namespace {ns}", "section": SECTION, "key": key, "value": value,
            "category": f"namespaces.{key}", "status": _status(on, required),
            "weight": 0.0 if on else 1.0, "expect": {f"ns.{ns}": "new" if on else "host"}}
