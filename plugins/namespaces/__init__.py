"""The ``namespaces`` plugin: which kernel namespaces the workload gets.

Section ``[namespaces]``.  Stages, in the order the core calls them:

- ``prepare`` (supervisor, before fork): without a user namespace, the pid and time namespaces
  are made here, so that the child is pid 1 from its first instruction.
- ``user_namespace`` (child): ``unshare(CLONE_NEWUSER)`` first of all, so that every namespace
  created afterwards is owned by it (and privileged operations in them need only the
  capabilities the child holds inside it).
- ``after_fork`` (supervisor): ``/proc/<child>/setgroups`` then ``uid_map`` and ``gid_map``.
  The supervisor writes them, not the child: an unprivileged writer may map only its own
  effective uid/gid, and only from the parent namespace; ``setgroups`` must be ``deny`` before
  an unprivileged ``gid_map`` is accepted.
- ``namespaces`` (child): the other namespaces, one ``unshare`` each in the order of the plan
  (``ORDER`` in :mod:`.plan` says why each sits where it does), the loopback interface of a new
  network namespace brought up, and ``ctx.fork_after_namespaces`` set for pid/time made here,
  which apply only to the next child: the core forks and keeps a minimal init as pid 1
  (``secrun.launch._init``).
- ``hostname`` (child): the cgroup namespace, then ``sethostname``/``setdomainname`` in the new
  UTS namespace.

Rootless: when secrun runs as an ordinary user, ``user = "auto"`` (the default) makes a user
namespace mapping that user, so every other namespace can be created inside it.  With
``user_map = "auto"`` (the default) the caller's own uid and gid are mapped to the [identity]
ids (65534 for strict: one id each, which needs no subordinate ids), else to themselves;
``"root"`` maps them to 0 inside.  Without one, a namespace that needs CAP_SYS_ADMIN
fails with a message saying so and naming the key to set.

Facts it publishes for the other plugins (``secrun_facts``): ``namespaces.made``,
``namespaces.user_root``, ``namespaces.setgroups_denied``, ``namespaces.net``.

- the package itself: the stage hooks and the system calls they make (what a launch imports; only
  ``ctypes`` through :mod:`secrun.kernel`, which the core imports before fork anyway, and the
  built-in ``fcntl``: loopback is brought up with libc's socket and ioctl);
- :mod:`.plan`: the ``[namespaces]`` schema, the facts, ``secrun_compile`` and the plan's shape;
- :mod:`.audit`: ``secrun_audit`` and the categories ``namespaces.<ns>`` (one per namespace).

The stages (this module: all that a launch from the plan cache imports of the plugin):

``prepare`` and ``after_fork`` (supervisor),
``user_namespace``, ``namespaces`` and ``hostname`` (child), ``cleanup``; and the system calls
they make.  What a launch imports of the plugin (see the package's documentation).
"""

from __future__ import annotations

import errno
import os
from fcntl import ioctl  # built into the interpreter: no file to load

from secrun import hookimpl
from secrun.errors import SetupError, describe_oserror
from secrun.kernel import check, error, get_errno, libc, write_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import NamespacesPlan

SECTION = "namespaces"

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

FLAG_NAMES = {CLONE_NEWUSER: "CLONE_NEWUSER", CLONE_NEWNS: "CLONE_NEWNS",
              CLONE_NEWCGROUP: "CLONE_NEWCGROUP", CLONE_NEWUTS: "CLONE_NEWUTS",
              CLONE_NEWIPC: "CLONE_NEWIPC", CLONE_NEWNET: "CLONE_NEWNET",
              CLONE_NEWPID: "CLONE_NEWPID", CLONE_NEWTIME: "CLONE_NEWTIME"}

MS_REC = 0x4000
MS_SLAVE = 1 << 19
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
AF_INET, SOCK_DGRAM = 2, 2  # (SOCK_CLOEXEC is O_CLOEXEC)
IFREQ_LO = b"lo".ljust(40, b"\0")  # struct ifreq: name, then ifr_flags at offset 16

# The libc functions the child stages call, looked up here, in the supervisor: a lookup made
# first in the forked child costs more there (its copy-on-write memory).
_libc_unshare = libc.unshare
_libc_mount = libc.mount
_libc_socket = libc.socket
_libc_sethostname = libc.sethostname
_libc_setdomainname = libc.setdomainname
_libc_setns = libc.setns  # after_fork, in the supervisor while the child waits


def _unshare(flag: int) -> None:
    if _libc_unshare(flag) != 0:
        raise unshare_error(flag, get_errno())


def unshare_error(flag: int, err: int) -> Exception:
    """The error for a failed unshare, with the hint that makes it actionable."""
    what = f"unshare({FLAG_NAMES.get(flag, hex(flag))})"
    hint = None
    euid = os.geteuid()
    if flag == CLONE_NEWUSER:
        if err == errno.EINVAL:
            hint = "the process has more than one thread"
        elif err in (errno.EPERM, errno.ENOSPC, errno.EUSERS):
            hint = ("user namespaces are disabled or exhausted here (sysctls "
                    "user.max_user_namespaces, kernel.unprivileged_userns_clone)")
    elif err == errno.EPERM and euid != 0:
        hint = (f"secrun runs as uid {euid} without a user namespace, so it lacks "
                f"CAP_SYS_ADMIN; set [namespaces] user = true or \"auto\"")
    return error(what, err, hint)


FOR_CHILDREN = {CLONE_NEWPID: "pid_for_children", CLONE_NEWTIME: "time_for_children"}


def _early(plan: NamespacesPlan) -> list[tuple[str, int]]:
    """The pid and time namespaces secrun makes itself, before fork: those requested when
    this launch makes no user namespace (they could not be owned by it otherwise)."""
    if plan["user"]:
        return []
    return [(key, flag) for key, _ns, flag in plan["unshare"] if flag in FOR_CHILDREN]


@hookimpl(trylast=True)
def secrun_prepare(ctx: RunContext) -> None:
    """Say which asked-for namespaces this kernel lacks (see ``DEGRADABLE`` in .plan).  Then,
    without a user namespace, make the pid and time namespaces in secrun itself, last thing
    before fork.  Both apply only to the next child, which is then pid 1 of its namespace from
    its first instruction: one fork (and one hand-over) fewer than making them in the child.
    secrun's own namespaces do not change, and its namespaces for later children are restored
    in ``after_fork`` (or ``cleanup``)."""
    for key in ctx.plan.get("unavailable", ()):
        ctx.warn(f"namespaces: this kernel has no {key} namespaces (no /proc/self/ns/{key}): "
                 f"[namespaces].{key} not applied")
    early = _early(ctx.plan)
    if not early:
        return
    st = ctx.state
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


def _restore_for_children(state: dict) -> None:
    """Put secrun's namespaces for later children back.  The pid namespace must be: once the
    sandbox's pid 1 exits, no process can be forked into it.  A later child of secrun would
    otherwise also share the sandbox's time namespace, whose clocks have no offsets.  (No
    thread of secrun is alive here: setns into a time namespace would fail with EUSERS.)"""
    restore = state.pop("restore", ())
    try:
        for fd, flag in restore:
            if _libc_setns(fd, flag) != 0:
                raise error(f"setns(/proc/self/ns/{FOR_CHILDREN[flag]})")
    finally:
        for fd, _flag in restore:
            os.close(fd)


@hookimpl
def secrun_cleanup(ctx: RunContext) -> None:
    _restore_for_children(ctx.state)


@hookimpl
def secrun_user_namespace(ctx: RunContext) -> None:
    plan: NamespacesPlan = ctx.plan
    if not plan["user"]:
        return
    if plan["map"] == "range":
        # Host supplementary groups (root's) would survive into the namespace, invisible
        # (shown as the overflow gid) but still honoured by host permission checks.
        os.setgroups([])
    _unshare(CLONE_NEWUSER)
    ctx.state["user"] = True


def _id_maps(plan: NamespacesPlan) -> tuple[str, str, str]:
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
    if plan["map"] == "identity":  # one id each, the caller's own, seen as the workload's
        inside_uid, inside_gid = plan["inside"]
        return f"{inside_uid} {uid} 1\n", f"{inside_gid} {gid} 1\n", "deny"
    return f"{uid} {uid} 1\n", f"{gid} {gid} 1\n", "deny"


@hookimpl
def secrun_after_fork(ctx: RunContext) -> None:
    plan: NamespacesPlan = ctx.plan
    _restore_for_children(ctx.state)
    if not plan["user"]:
        return
    proc = f"/proc/{ctx.pid}"
    try:
        if os.readlink(f"{proc}/ns/user") == os.readlink("/proc/self/ns/user"):
            # The child's unshare failed as a best-effort control (already reported).
            return
    except OSError as e:
        raise error(f"{proc}/ns/user", e.errno) from None
    if plan["map"] == "subid" and plan["subid"] is not None:
        _subid_maps(ctx.pid, plan["subid"])
        return
    uid_map, gid_map, setgroups = _id_maps(plan)
    for name, text in (("setgroups", setgroups), ("uid_map", uid_map), ("gid_map", gid_map)):
        path = f"{proc}/{name}"
        write_file(path, text, f"write {path} ({text.strip()!r})")


def _subid_maps(pid: int | None, subid: tuple[str, str, tuple[int, int], tuple[int, int]]
                ) -> None:
    """The "subid" map, written by the setuid newuidmap and newgidmap (both at once): the
    caller is the namespace's root (0), and ids 1.. are its ranges from /etc/subuid and
    /etc/subgid, so the workload's ids (65534 for strict) are none of the caller's, and the
    gid map leaves setgroups allowed (the identity stage can drop the caller's groups)."""
    newuidmap, newgidmap, (ustart, ucount), (gstart, gcount) = subid
    runs = []
    for tool, own, start, count in ((newuidmap, os.geteuid(), ustart, ucount),
                                    (newgidmap, os.getegid(), gstart, gcount)):
        argv = [tool, str(pid), "0", str(own), "1", "1", str(start), str(count)]
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            child = os.posix_spawn(tool, argv, {}, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, w, 2)])
        except OSError as e:
            os.close(r)
            raise error(tool, e.errno) from None
        finally:
            os.close(w)
        runs.append((argv, child, r))
    failed = []
    for argv, child, r in runs:
        with os.fdopen(r, "rb") as f:
            said = f.read(2000).decode(errors="replace").strip()
        _, status = os.waitpid(child, 0)
        if status != 0:
            failed.append(f"{' '.join(argv)}: {said or f'wait status {status}'}")
    if failed:
        raise SetupError("newuidmap/newgidmap", "; ".join(failed)
                         + " (see /etc/subuid and /etc/subgid; without setuid helpers, as in "
                           "a container with no CAP_SETUID in its bounding set, set "
                           "[namespaces].user_map = \"identity\")")


@hookimpl
def secrun_namespaces(ctx: RunContext) -> None:
    plan: NamespacesPlan = ctx.plan
    required = ctx.required(SECTION)
    if plan["map"] == "range" and ctx.state.get("user"):
        # The child is host root, which the range does not map: become the namespace's root,
        # i.e. the range's first (unprivileged) host id, before creating anything.  Modules
        # this stage needs are imported first: the new uid may not read secrun's own files.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    early = ctx.state.get("early", ())
    for key, _ns, flag in plan["unshare"]:
        # see ORDER in .plan: the cgroup namespace is made in the hostname stage; pid and
        # time may already exist (secrun_prepare)
        if flag != CLONE_NEWCGROUP and flag not in early:
            _make(ctx, key, flag, required)


def _make(ctx: RunContext, key: str, flag: int, required: bool) -> None:
    try:
        _unshare(flag)
        if flag == CLONE_NEWNS:
            _mount_slave()
        elif flag == CLONE_NEWNET:
            _loopback_up()
    except Exception as exc:  # best-effort: report each one and go on
        if required:
            raise
        ctx.warn(f"namespaces: {key} namespace: {describe_oserror(exc)}")
        return
    ctx.state.setdefault("made", []).append(key)
    if flag in (CLONE_NEWPID, CLONE_NEWTIME):
        ctx.fork_after_namespaces = True


def _mount_slave() -> None:
    """Cut propagation from the new mount namespace back to the host (host mounts still
    propagate in).  The filesystem plugin may make it private afterwards."""

    check(_libc_mount(b"none", b"/", None, MS_REC | MS_SLAVE, None),
          "mount(/, MS_REC|MS_SLAVE)")


def _loopback_up() -> None:
    """Set IFF_UP on ``lo`` in the new network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS), with
    libc's socket and the built-in ``fcntl.ioctl`` on bytes: the ``socket`` module would cost
    ~1 ms of import, and a ctypes buffer type made in the child costs more than this."""

    fd = check(_libc_socket(AF_INET, SOCK_DGRAM | os.O_CLOEXEC, 0), "socket(AF_INET, SOCK_DGRAM)")
    try:
        try:
            ifr = ioctl(fd, SIOCGIFFLAGS, IFREQ_LO)
        except OSError as e:
            raise error("ioctl(lo, SIOCGIFFLAGS)", e.errno) from None
        flags = int.from_bytes(ifr[16:18], "little") | IFF_UP
        try:
            ioctl(fd, SIOCSIFFLAGS, ifr[:16] + flags.to_bytes(2, "little") + ifr[18:])
        except OSError as e:
            raise error("ioctl(lo, SIOCSIFFLAGS IFF_UP)", e.errno) from None
    finally:
        os.close(fd)


@hookimpl
def secrun_hostname(ctx: RunContext) -> None:
    plan: NamespacesPlan = ctx.plan
    for key, _ns, flag in plan["unshare"]:
        if flag == CLONE_NEWCGROUP:
            _make(ctx, key, flag, ctx.required(SECTION))
    hostname, domainname = plan["hostname"], plan["domainname"]
    if hostname is None or domainname is None:
        return
    if "uts" not in ctx.state.get("made", ()):
        return  # best-effort and the UTS namespace failed: never rename the host

    name = hostname.encode()
    check(_libc_sethostname(name, len(name)), f"sethostname({hostname})")
    dom = domainname.encode()
    check(_libc_setdomainname(dom, len(dom)), f"setdomainname({domainname})")
