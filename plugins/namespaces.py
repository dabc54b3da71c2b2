"""The ``namespaces`` plugin: which kernel namespaces the workload gets.

Section ``[namespaces]``.  Stages, in the order the core calls them:

- ``user_namespace`` (child): ``unshare(CLONE_NEWUSER)`` first of all, so that every namespace
  created afterwards is owned by it (and privileged operations in them need only the
  capabilities the child holds inside it).
- ``after_fork`` (supervisor): ``/proc/<child>/setgroups`` then ``uid_map`` and ``gid_map``.
  The supervisor writes them, not the child: an unprivileged writer may map only its own
  effective uid/gid, and only from the parent namespace; ``setgroups`` must be ``deny`` before
  an unprivileged ``gid_map`` is accepted.
- ``namespaces`` (child): the other namespaces, one ``unshare`` each in the order of
  :data:`ORDER` (each entry says why it sits there), the loopback interface of a new network
  namespace brought up, and ``ctx.fork_after_namespaces`` set for pid/time, which apply only to
  the next child: the core forks and keeps a minimal init as pid 1 (``secrun.launch._init``).
- ``hostname`` (child): ``sethostname``/``setdomainname`` in the new UTS namespace.

Rootless: when secrun runs as an ordinary user, ``user = "auto"`` (the default) makes a user
namespace mapping that user (to itself, or to root inside with ``user_map = "root"``), so every
other namespace can be created inside it.  Without one, a namespace that needs CAP_SYS_ADMIN
fails with a message saying so and naming the key to set.

Kept cheap on the launch path: only ``ctypes`` (through :mod:`secrun.kernel`), which the
core imports before fork; loopback is brought up with libc's socket and ioctl.
"""

import ctypes
import errno
import os

from secrun import hookimpl
from secrun.errors import ConfigError, SetupError
from secrun.kernel import check, libc
from secrun.schema import Field, Section

SECTION = "namespaces"

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# The order of the namespaces created in the `namespaces` stage (the user namespace already
# exists: it is the `user_namespace` stage).  (profile key, /proc/self/ns name, flag, why here)
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
     "last with time: it applies only to children, so the core forks right after this stage"),
    ("time", "time", CLONE_NEWTIME,
     "last with pid: it applies only to children (offsets could be written before that fork)"),
    ("cgroup", "cgroup", CLONE_NEWCGROUP,
     "not in the namespaces stage but in the hostname stage, the first after the supervisor's "
     "attach stage: the namespace's root is then the sandbox's own cgroup, not secrun's"),
)
FLAG_NAMES = {CLONE_NEWUSER: "CLONE_NEWUSER", CLONE_NEWNS: "CLONE_NEWNS",
              CLONE_NEWCGROUP: "CLONE_NEWCGROUP", CLONE_NEWUTS: "CLONE_NEWUTS",
              CLONE_NEWIPC: "CLONE_NEWIPC", CLONE_NEWNET: "CLONE_NEWNET",
              CLONE_NEWPID: "CLONE_NEWPID", CLONE_NEWTIME: "CLONE_NEWTIME"}
NET_MODES = ("host", "none")  # later: "veth", "user" (user-mode networking)
USER_MAPS = ("self", "root", "range")
HOST_NAME_MAX = 64
ID_MAX = (1 << 32) - 1  # (uid_t)-1 is never a valid id

MS_REC = 0x4000
MS_SLAVE = 1 << 19
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


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


@hookimpl
def secrun_profile_sections():
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
        Field("range_start", int, 100000, "first host uid/gid of the \"range\" mapping"),
        Field("range_size", int, 65536, "number of uids/gids of the \"range\" mapping"),
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


# --- planning -------------------------------------------------------------------------------------

def _wants_user(plan) -> bool:
    """Whether this launch makes a user namespace ("auto": exactly when not root)."""
    user = plan["user"]
    return os.geteuid() != 0 if user == "auto" else bool(user)


@hookimpl
def secrun_compile(ctx):
    cfg = ctx.config[SECTION]
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
    ctx.plan[SECTION] = {
        "user": cfg["user"],
        "map": cfg["user_map"],
        "range": (start, size),
        "unshare": unshare,
        "net": cfg["net"],
        "fork": bool(cfg["pid"] or cfg["time"]),
        "hostname": cfg["hostname"] if cfg["uts"] else None,
        "domainname": cfg["domainname"] if cfg["uts"] else None,
    }


# --- launching ------------------------------------------------------------------------------------

def _unshare(flag: int) -> None:
    if libc.unshare(flag) != 0:
        raise _unshare_error(flag, ctypes.get_errno())


def _unshare_error(flag, err) -> Exception:
    """The error for a failed unshare, with the hint that makes it actionable."""
    what = f"unshare({FLAG_NAMES.get(flag, hex(flag))})"
    text = f"{os.strerror(err)} ({errno.errorcode.get(err, err)})"
    euid = os.geteuid()
    if flag == CLONE_NEWUSER:
        if err == errno.EINVAL:
            text += ": the process has more than one thread"
        elif err in (errno.EPERM, errno.ENOSPC, errno.EUSERS):
            text += (": user namespaces are disabled or exhausted here (sysctls "
                     "user.max_user_namespaces, kernel.unprivileged_userns_clone)")
    elif err == errno.EPERM and euid != 0:
        text += (f": secrun runs as uid {euid} without a user namespace, so it lacks "
                 f"CAP_SYS_ADMIN; set [namespaces] user = true or \"auto\"")
    return SetupError(what, text)


def _state(ctx) -> dict:
    return ctx.state.setdefault(SECTION, {})


FOR_CHILDREN = {CLONE_NEWPID: "pid_for_children", CLONE_NEWTIME: "time_for_children"}


def _early(plan) -> list:
    """The pid and time namespaces secrun makes itself, before fork: those requested when
    this launch makes no user namespace (they could not be owned by it otherwise)."""
    if _wants_user(plan):
        return []
    return [(key, flag) for key, _ns, flag in plan["unshare"] if flag in FOR_CHILDREN]


@hookimpl(trylast=True)
def secrun_prepare(ctx):
    """Without a user namespace, make the pid and time namespaces in secrun itself, last
    thing before fork.  Both apply only to the next child, which is then pid 1 of its
    namespace from its first instruction: one fork (and one hand-over) fewer than making them
    in the child.  secrun's own namespaces do not change, and its namespaces for later
    children are restored in ``after_fork`` (or ``cleanup``)."""
    plan = ctx.plan[SECTION]
    early = _early(plan)
    if not early:
        return
    st = _state(ctx)
    restore = st["restore"] = []
    for key, flag in early:
        fd = os.open(f"/proc/self/ns/{FOR_CHILDREN[flag]}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _unshare(flag)
        except SetupError as exc:
            os.close(fd)
            if ctx.required(SECTION):
                raise
            ctx.warn(f"namespaces: {key} namespace: {exc}")
            continue
        restore.append((fd, flag))
        st.setdefault("made", []).append(key)
    st["early"] = [flag for _key, flag in early]


def _restore_for_children(ctx) -> None:
    """Put secrun's namespaces for later children back.  The pid namespace must be: once the
    sandbox's pid 1 exits, no process can be forked into it.  The time namespace is put back
    when the kernel allows it (not while secrun has a helper thread, EUSERS); a later child of
    secrun would otherwise share the sandbox's time namespace, whose clocks have no offsets."""
    pending = []
    for fd, flag in _state(ctx).pop("restore", ()):
        if libc.setns(fd, flag) == 0:
            os.close(fd)
        elif flag == CLONE_NEWTIME and ctypes.get_errno() == errno.EUSERS:
            pending.append((fd, flag))
        else:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, os.strerror(err), f"setns(/proc/self/ns/{FOR_CHILDREN[flag]})")
    if pending:
        _state(ctx)["restore"] = pending


@hookimpl
def secrun_cleanup(ctx):
    _restore_for_children(ctx)
    for fd, _flag in _state(ctx).pop("restore", ()):
        os.close(fd)


@hookimpl
def secrun_user_namespace(ctx):
    plan = ctx.plan[SECTION]
    if not _wants_user(plan):
        return
    if plan["map"] == "range":
        # Host supplementary groups (root's) would survive into the namespace, invisible
        # (shown as the overflow gid) but still honoured by host permission checks.
        os.setgroups([])
    _unshare(CLONE_NEWUSER)
    _state(ctx)["user"] = True


def _id_maps(plan):
    """(uid_map, gid_map, setgroups) the supervisor writes for the child."""
    if plan["map"] == "range":
        start, size = plan["range"]
        line = f"0 {start} {size}\n"
        # root writes this map, so setgroups may stay allowed: the identity stage can then
        # give the workload supplementary groups of the range (host groups were dropped).
        return line, line, "allow"
    uid, gid = os.geteuid(), os.getegid()
    if plan["map"] == "root":
        return f"0 {uid} 1\n", f"0 {gid} 1\n", "deny"
    return f"{uid} {uid} 1\n", f"{gid} {gid} 1\n", "deny"


def _write(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, e.strerror, path) from None
    try:
        os.write(fd, text.encode())
    except OSError as e:
        raise OSError(e.errno, e.strerror, f"write {path} ({text.strip()!r})") from None
    finally:
        os.close(fd)


@hookimpl
def secrun_after_fork(ctx):
    plan = ctx.plan[SECTION]
    _restore_for_children(ctx)
    if not _wants_user(plan):
        return
    proc = f"/proc/{ctx.pid}"
    try:
        if os.readlink(f"{proc}/ns/user") == os.readlink("/proc/self/ns/user"):
            # The child's unshare failed as a best-effort control (already reported).
            return
    except OSError as e:
        raise OSError(e.errno, e.strerror, f"{proc}/ns/user") from None
    uid_map, gid_map, setgroups = _id_maps(plan)
    _write(f"{proc}/setgroups", setgroups)
    _write(f"{proc}/uid_map", uid_map)
    _write(f"{proc}/gid_map", gid_map)


@hookimpl
def secrun_namespaces(ctx):
    plan = ctx.plan[SECTION]
    required = ctx.required(SECTION)
    if plan["map"] == "range" and _state(ctx).get("user"):
        # The child is host root, which the range does not map: become the namespace's root,
        # i.e. the range's first (unprivileged) host id, before creating anything.  Modules
        # this stage needs are imported first: the new uid may not read secrun's own files.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    early = _state(ctx).get("early", ())
    for key, _ns, flag in plan["unshare"]:
        # see ORDER: the cgroup namespace is made in the hostname stage; pid and time may
        # already exist (secrun_prepare)
        if flag != CLONE_NEWCGROUP and flag not in early:
            _make(ctx, key, flag, required)


def _make(ctx, key, flag, required) -> None:
    try:
        _unshare(flag)
        if flag == CLONE_NEWNS:
            _mount_slave()
        elif flag == CLONE_NEWNET:
            _loopback_up()
    except Exception as exc:  # noqa: BLE001 - best-effort: report each one and go on
        if required:
            raise
        from secrun.errors import describe_oserror

        ctx.warn(f"namespaces: {key} namespace: {describe_oserror(exc)}")
        return
    _state(ctx).setdefault("made", []).append(key)
    if flag in (CLONE_NEWPID, CLONE_NEWTIME):
        ctx.fork_after_namespaces = True


def _mount_slave() -> None:
    """Cut propagation from the new mount namespace back to the host (host mounts still
    propagate in).  The filesystem plugin may make it private afterwards."""

    check(libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None),
          "mount(/, MS_REC|MS_SLAVE)")


def _loopback_up() -> None:
    """Set IFF_UP on ``lo`` in the new network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS), with
    libc's socket and ioctl: the ``socket`` module would cost ~1 ms of import."""

    fd = check(libc.socket(2, 2 | 0o2000000, 0), "socket(AF_INET, SOCK_DGRAM)")  # CLOEXEC
    try:
        ifr = ctypes.create_string_buffer(b"lo".ljust(40, b"\0"), 40)
        check(libc.ioctl(fd, SIOCGIFFLAGS, ifr), "ioctl(lo, SIOCGIFFLAGS)")
        flags = int.from_bytes(ifr.raw[16:18], "little") | IFF_UP
        ctypes.memmove(ctypes.addressof(ifr) + 16, flags.to_bytes(2, "little"), 2)
        check(libc.ioctl(fd, SIOCSIFFLAGS, ifr), "ioctl(lo, SIOCSIFFLAGS IFF_UP)")
    finally:
        os.close(fd)


@hookimpl
def secrun_hostname(ctx):
    plan = ctx.plan[SECTION]
    for key, _ns, flag in plan["unshare"]:
        if flag == CLONE_NEWCGROUP:
            _make(ctx, key, flag, ctx.required(SECTION))
    if plan["hostname"] is None:
        return
    if "uts" not in _state(ctx).get("made", ()):
        return  # best-effort and the UTS namespace failed: never rename the host

    name = plan["hostname"].encode()
    check(libc.sethostname(name, len(name)), f"sethostname({plan['hostname']})")
    dom = plan["domainname"].encode()
    check(libc.setdomainname(dom, len(dom)), f"setdomainname({plan['domainname']})")


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


@hookimpl
def secrun_audit(ctx):
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
