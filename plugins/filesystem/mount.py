"""The mount machinery of the ``filesystem`` plugin: builds the view in the child's ``mounts``
stage with the new mount API (open_tree, move_mount, fsopen/fsmount, mount_setattr), openat2
and pivot_root, all through :mod:`secrun.kernel`.  The package imports it, so a launch that has a
``[filesystem]`` section loads it before fork: it holds only what the stages run.  The plan
arrives ready (operations, byte paths, flags; see :mod:`.view`) and the stage only loops over
it.

How the view is built, and why in this order:

1. Propagation of every mount is made private (``MS_REC|MS_PRIVATE`` on /), first, so nothing
   done below can propagate back to the host's mount namespace.
2. Everything that names a *host* path is opened before anything is covered: a recursive clone
   of the root (``open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)``), one clone per bind source, O_PATH
   handles on the host's device nodes.  From here on nothing is looked up by host path, so a
   mount made later cannot change what a bind source means.  The working directory is never
   looked up by path at all: its clone is of the process's own working directory (``"."``),
   checked against the device and inode the supervisor recorded in ``prepare``.
3. The root clone gets its flags in one ``mount_setattr(AT_RECURSIVE)``: read-only applies to
   every submount too, atomically, before the tree is attached anywhere.
4. The clone is attached on a staging directory (``/tmp`` of the host, in this private mount
   namespace only) and every mount is made inside it.  Destinations are opened with
   ``openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)`` relative to the clone's root: a symlink or
   ``..`` that would leave the root fails with EXDEV, and the launch is refused.  Mounts attach
   to the opened O_PATH descriptor (``move_mount(MOVE_MOUNT_T_EMPTY_PATH)``), never to a path
   looked up again, so the checked place is the place mounted on.  The plan lists the mounts
   parents before children, so a mount below another one always ends up on top of it.
5. ``pivot_root(".", ".")`` inside the clone, then ``umount2(".", MNT_DETACH)`` detaches the old
   root, staging mount included: no path leads back to the host's tree.  The working directory
   is entered by its path in the view (no symlink followed) only if it is the recorded
   directory.

System calls go straight to ``syscall(2)``, bound to their numbers at import
(:func:`secrun.kernel.syscall`), with arguments that need no conversion (bytes, Python ints for
the kernel's ``int`` parameters, prebuilt ``c_size_t`` for the sizes); the text naming a failed
call is built only when it fails.
"""

from __future__ import annotations

import errno
import os
import sys
from stat import S_ISDIR

from secrun.errors import SetupError, describe_oserror, errno_text
from secrun.kernel import c_size_t, c_ulong, error, get_errno, libc, syscall

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from secrun.context import RunContext

    from .plan import (
        BindOp,
        CgroupLayout,
        CgroupMount,
        CwdOp,
        FilesystemPlan,
        FsOptions,
        HideOp,
        Op,
        RoOp,
        TmpfsOp,
    )

    # an opened bind source: (its mount clone, a directory, the host mounts it read-only)
    Source = tuple[int, bool, bool]

_mount = libc.mount      # looked up here, not in the child
_umount2 = libc.umount2
_pivot_root = syscall("pivot_root")
_open_tree = syscall("open_tree")
_move_mount = syscall("move_mount")
_fsopen = syscall("fsopen")
_fsconfig = syscall("fsconfig")
_fsmount = syscall("fsmount")
_openat2 = syscall("openat2")
_mount_setattr = syscall("mount_setattr")

MS_REC_PRIVATE = c_ulong(0x4000 | (1 << 18))  # MS_REC | MS_PRIVATE
MNT_DETACH = 2
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
ST_RDONLY = 1
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
O_PATH = os.O_PATH | os.O_CLOEXEC
# open_tree(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH), without and with AT_RECURSIVE
CLONE_FD = 1 | os.O_CLOEXEC | AT_EMPTY_PATH
CLONE_FD_REC = CLONE_FD | AT_RECURSIVE
CLONE_PATH_REC = 1 | os.O_CLOEXEC | AT_RECURSIVE
MOVE_EMPTY = 0x4 | 0x40  # MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
FSOPEN_CLOEXEC = FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSCONFIG_CMD_CREATE = 0, 1, 6

# MOUNT_ATTR_* bits (linux/mount.h)
RDONLY, NOSUID, NODEV, NOEXEC = 0x1, 0x2, 0x4, 0x8

_BO = sys.byteorder
# struct open_how {flags, mode, resolve} for every destination lookup
_HOW = O_PATH.to_bytes(8, _BO) + bytes(8) + (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS).to_bytes(
    8, _BO)
# the working directory's destination and the final chdir: a directory, no symlink at all on
# the way (its path is the one getcwd() gave, which has none unless changed since)
_HOW_DIR = (O_PATH | os.O_DIRECTORY).to_bytes(8, _BO) + bytes(8) + (
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS).to_bytes(8, _BO)
_HOW_SIZE = c_size_t(24)
_ATTR_SIZE = c_size_t(32)


def mount_attr(set_: int, clr: int) -> bytes:
    """struct mount_attr {attr_set, attr_clr, propagation, userns_fd} as bytes (the kernel
    only reads it, so a bytes object is passed as the pointer)."""
    return set_.to_bytes(8, _BO) + clr.to_bytes(8, _BO) + bytes(16)


_A_RDONLY = mount_attr(RDONLY, 0)
_KERNEL_FS = RDONLY | NOSUID | NODEV | NOEXEC  # the fresh sysfs and the cgroup mounts on it
_A_DEV = mount_attr(NOSUID | NOEXEC, 0)  # the minimal /dev and what is mounted in it

DEV_NODES = (b"null", b"zero", b"full", b"random", b"urandom", b"tty")
DEV_LINKS = (("pts/ptmx", "ptmx"), ("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
             ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"))
_DEV_FS = ((b"mode", b"755"), (b"size", b"64k"))  # /dev and hidden directories
_SHM_FS = ((b"mode", b"1777"),)
_PTS_FS = ((b"newinstance", None), (b"ptmxmode", b"0666"), (b"mode", b"0620"))
STAGING = ("/tmp", "/mnt", "/var/tmp", "/run")
_CREATE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_MISSING = (errno.ENOENT, errno.ENOTDIR)


class Escape(SetupError):
    """A mount destination leads out of the root."""

    def __init__(self, dst: str) -> None:
        super().__init__(f"mount destination {dst}",
                         "leads out of the root through a symlink or '..': refused")


def _fail(what: str) -> NoReturn:
    raise error(what)


# --- small wrappers -----------------------------------------------------------------------------

def resolve(rootfd: int, dst: str) -> int:
    """O_PATH descriptor of ``dst`` (absolute, inside the view) resolved beneath ``rootfd``."""
    fd = _openat2(rootfd, os.fsencode(dst.lstrip("/") or "."), _HOW, _HOW_SIZE)
    if fd == -1:
        if get_errno() == errno.EXDEV:
            raise Escape(dst)
        _fail(f"openat2({dst})")
    return fd


def attach(mfd: int, dstfd: int, what: str) -> None:
    if _move_mount(mfd, b"", dstfd, b"", MOVE_EMPTY) == -1:
        _fail(f"move_mount({what})")


def set_attr(mfd: int, attr: bytes, flags: int, what: str) -> None:
    if _mount_setattr(mfd, b"", flags, attr, _ATTR_SIZE) == -1:
        _fail(f"mount_setattr({what})")


def clone(fd: int, flags: int, what: str) -> int:
    mfd = _open_tree(fd, b"", flags)
    if mfd == -1:
        _fail(f"open_tree({what})")
    return mfd


def new_fs(fstype: bytes, options: FsOptions, attrs: int, what: str, fds: list[int]) -> int:
    """A new, detached filesystem mount: fsopen + fsconfig + fsmount.  ``options`` is a list
    of (key, value) bytes; value None sets a flag option.  Both descriptors go to ``fds``."""
    fsfd = _fsopen(fstype, FSOPEN_CLOEXEC)
    if fsfd == -1:
        _fail(f"fsopen({fstype.decode()})")
    fds.append(fsfd)
    # the source shown in /proc/self/mountinfo
    if _fsconfig(fsfd, FSCONFIG_SET_STRING, b"source", b"secrun", 0) == -1:
        _fail(f"fsconfig({fstype.decode()} source, for {what})")
    for key, value in options:
        cmd = FSCONFIG_SET_FLAG if value is None else FSCONFIG_SET_STRING
        if _fsconfig(fsfd, cmd, key, value, 0) == -1:
            _fail(f"fsconfig({fstype.decode()} {key.decode()}"
                  f"{'' if value is None else '=' + value.decode()}, for {what})")
    if _fsconfig(fsfd, FSCONFIG_CMD_CREATE, None, None, 0) == -1:
        _fail(f"fsconfig({fstype.decode()} create, for {what})")
    mfd = _fsmount(fsfd, FSMOUNT_CLOEXEC, attrs)
    if mfd == -1:
        _fail(f"fsmount({what})")
    fds.append(mfd)
    return mfd


def detach_here(fd: int, what: str) -> bool:
    """Detach the mount whose root ``fd`` is (nothing if it is a plain directory, or a mount
    locked by a user namespace: the new mount then simply covers it)."""
    os.fchdir(fd)
    if _umount2(b".", MNT_DETACH) == -1:
        err = get_errno()
        if err not in (errno.EINVAL, errno.EPERM):
            raise error(f"umount2({what})", err)
        return False
    return True


def park(fd: int, dst: str, fds: list[int]) -> bool:
    """Move the mount whose root ``fd`` is (with its submounts) onto ``dst`` of the old root,
    the host's tree in this private mount namespace, which the ``umount2`` after
    ``pivot_root`` detaches whole: the clones of the host's /proc, /dev and /sys then go with
    it, instead of a detach each, which waits for an RCU grace period each (~0.1-1 ms).  Only
    for those three (never a staging directory's path, which holds the view itself).  False
    when it cannot (not a mount, a mount locked by a user namespace, no such path on the
    host): the caller detaches it or covers it as before."""
    try:
        target = os.open(dst, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    fds.append(target)
    return _move_mount(fd, b"", target, b"", MOVE_EMPTY) == 0


def _close_all(fds: list[int]) -> None:
    """Close descriptors, one close_range per run of consecutive numbers."""
    fds.sort()
    n, i = len(fds), 0
    while i < n:
        j = i
        while j + 1 < n and fds[j + 1] == fds[j] + 1:
            j += 1
        os.closerange(fds[i], fds[j] + 1)
        i = j + 1


# --- building the view -------------------------------------------------------------------------

class _View:
    """The view being built: its root (the clone's descriptor), every descriptor opened on the
    way (closed together at the end), and what the hidden paths share."""

    def __init__(self, rootfd: int, fds: list[int], host_dev: dict[bytes, int]) -> None:
        self.rootfd = rootfd
        self.fds = fds      # every descriptor opened here, closed together at the end
        self.ours: list[int] = []  # mount fds of our tmpfs mounts: mount points may be created
        self.host_dev = host_dev  # O_PATH descriptors of the host's device nodes, by name
        self.hidden: list[tuple[int, str]] = []  # private hidden directories: ro at the end
        self.shared: int | None = None  # the read-only empty tmpfs other hidden dirs clone
        self.null: int | None = None    # the read-only /dev/null every hidden file clones

    def find(self, dst: str, rel: bytes) -> int | None:
        """O_PATH fd of an existing destination, or None when it is missing."""
        fd = _openat2(self.rootfd, rel, _HOW, _HOW_SIZE)
        if fd == -1:
            err = get_errno()
            if err in _MISSING:
                return None
            if err == errno.EXDEV:
                raise Escape(dst)
            _fail(f"openat2({dst})")
        self.fds.append(fd)
        return fd

    def ensure(self, dst: str, rel: bytes, is_dir: bool) -> int:
        """O_PATH fd of ``dst``, creating it (and its parents) when missing, but only inside a
        tmpfs mounted by secrun in this view: the host's files and a given root are never
        written to."""
        fd = self.find(dst, rel)
        if fd is not None:
            return fd
        parts = dst.strip("/").split("/")
        parent, depth = None, 0
        for depth in range(len(parts) - 1, 0, -1):
            path = "/".join(parts[:depth])
            parent = self.find("/" + path, os.fsencode(path))
            if parent is not None:
                break
        else:
            depth, parent = 0, self.rootfd
        if os.fstat(parent).st_dev not in {os.fstat(m).st_dev for m in self.ours}:
            raise SetupError(f"mount destination {dst}",
                             "does not exist in the view (mount points are created only "
                             "inside a tmpfs that secrun mounts; create it in the root)")
        return self._create(dst, parent, parts, depth, is_dir)

    def _create(self, dst: str, parent: int, parts: list[str], depth: int, is_dir: bool) -> int:
        """Create ``parts[depth:]`` below ``parent`` (a directory of our own tmpfs)."""
        for i, name in enumerate(parts[depth:]):
            last = depth + i == len(parts) - 1
            try:
                if last and not is_dir:
                    os.close(os.open(name, _CREATE, 0o644, dir_fd=parent))
                else:
                    os.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass
            except OSError as e:
                raise error(f"create mount point {dst}", e.errno) from None
            fd = _openat2(parent, os.fsencode(name), _HOW, _HOW_SIZE)
            if fd == -1:
                _fail(f"openat2({dst})")
            self.fds.append(fd)
            parent = fd
        return parent

    def top(self, dst: str, rel: bytes, kernel_fs: bool = False) -> int:
        """The destination of /proc, /dev or /tmp: the mount there is taken away first (the
        root clone brought the host's), then the directory under it is the place.  For
        /proc, /dev and /sys (``kernel_fs``) it is moved onto the same path of the old root
        (:func:`park`), else detached."""
        fd = self.ensure(dst, rel, True)
        if kernel_fs and park(fd, dst, self.fds) or detach_here(fd, dst):
            fd = self.ensure(dst, rel, True)
        return fd

    def new(self, fstype: bytes, options: FsOptions, attrs: int, what: str,
            ours: bool = True) -> int:
        mfd = new_fs(fstype, options, attrs, what, self.fds)
        if ours:
            self.ours.append(mfd)
        return mfd


def _staging() -> tuple[str, int]:
    for path in STAGING:
        try:
            return path, os.open(path, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
    raise SetupError("staging directory", f"none of {', '.join(STAGING)} is a directory")


def prepare(plan: FilesystemPlan, state: dict) -> None:
    """The supervisor's ``prepare`` stage, before fork: pin the working directory.

    ``.`` is opened once (``O_PATH``): the descriptor keeps the directory's inode alive, so its
    device and inode numbers name that directory and no other for the whole launch.  The child
    never looks the working directory up by its path to decide what to mount: the bind source
    is the child's own working directory (inherited, moved into the new mount namespace by
    ``unshare``, compared with these numbers), and the final ``chdir`` inside the view is
    checked against them.  (A descriptor of the host's mount namespace cannot itself be cloned
    from the new one, ``open_tree`` refuses it, and must never become the working directory
    inside the view: that would put the workload outside the view's mount tree.)
    Fills ``state``, which the other stages read."""
    fd = os.open(".", O_PATH | os.O_DIRECTORY)
    st = os.fstat(fd)
    state["cwd_fd"] = fd
    state["cwd_id"] = (st.st_dev, st.st_ino)
    if plan["cgroup"] is not None:
        state["cgroup"] = cgroup_state()


def _open_source(op: BindOp | CwdOp, cwd_id: tuple[int, int]) -> int:
    """The clone of a bind's source (a host path) or of the working directory."""
    if op["kind"] == "bind":
        mfd = _open_tree(AT_FDCWD, op["src_b"], CLONE_PATH_REC)
        if mfd == -1:
            _fail(f"open_tree({op['src']})")
        return mfd
    # the process's own working directory: not a path lookup, nothing to swap
    mfd = _open_tree(AT_FDCWD, b".", CLONE_PATH_REC)
    if mfd == -1:
        _fail(f"open_tree(the working directory {op['dst']})")
    st = os.fstat(mfd)
    if (st.st_dev, st.st_ino) != cwd_id:
        os.close(mfd)
        raise SetupError(f"working directory {op['dst']}",
                         "is not the directory secrun was started in: refused")
    return mfd


def _open_sources(ops: list[Op], cwd_id: tuple[int, int], fds: list[int]) -> dict[int, Source]:
    """{index of the op: source} for every bind and the working directory, opened before
    anything is covered."""
    sources = {}
    for i, op in enumerate(ops):
        if op["kind"] != "bind" and op["kind"] != "cwd":
            continue
        mfd = _open_source(op, cwd_id)
        fds.append(mfd)
        # the clone's root is the source and it carries the source mount's flags
        sources[i] = (mfd, S_ISDIR(os.fstat(mfd).st_mode),
                      bool(os.fstatvfs(mfd).f_flag & ST_RDONLY))
    return sources


def _open_host_dev(names: tuple[bytes, ...], fds: list[int]) -> dict[bytes, int]:
    host_dev = {}
    for name in names:
        try:
            fd = os.open(b"/dev/" + name, O_PATH)
        except OSError as e:
            raise error(f"/dev/{name.decode()}", e.errno) from None
        fds.append(fd)
        host_dev[name] = fd
    return host_dev


def build_view(ctx: RunContext, plan: FilesystemPlan, state: dict) -> None:
    """The ``mounts`` stage: build the view described by ``plan`` and pivot_root into it."""
    if _mount(None, b"/", None, MS_REC_PRIVATE, None) == -1:
        _fail("mount(/, MS_REC|MS_PRIVATE)")
    ops = plan["ops"]
    root = plan["root"]
    home = os.open(".", O_PATH)
    fds = [home, state["cwd_fd"]]
    try:
        # 2. every host path, before anything is covered
        rootm = _open_tree(AT_FDCWD, plan["root_b"], CLONE_PATH_REC)
        if rootm == -1:
            _fail(f"open_tree({root or '/'})")
        fds.append(rootm)
        sources = _open_sources(ops, state["cwd_id"], fds)
        host_dev = _open_host_dev(plan["host_dev"], fds)
        # 3. the root's flags, recursively, before it is attached
        if plan["root_set"]:
            set_attr(rootm, mount_attr(plan["root_set"], 0), AT_EMPTY_PATH | AT_RECURSIVE,
                     root or "/")
        # 4. attach on the staging directory and build inside it
        staging, sfd = _staging()
        fds.append(sfd)
        attach(rootm, sfd, f"root on {staging}")
        _build_and_enter(ctx, _View(rootm, fds, host_dev), ops, sources, home, staging)
        if _umount2(b".", MNT_DETACH) == -1:
            _fail("umount2(old root, MNT_DETACH)")
        os.chdir("/")
        _enter_cwd(ctx, plan, state["cwd_id"])
    finally:
        _close_all(fds)


def _build_and_enter(ctx: RunContext, view: _View, ops: list[Op], sources: dict[int, Source],
                     home: int, staging: str) -> None:
    """Build the view on the staging directory, then ``pivot_root`` into it (5.); on a
    failure, the staging mount is detached again."""
    try:
        _build(ctx, view, ops, sources)
        # 5. enter the view; detach the old root
        os.fchdir(view.rootfd)
        if _pivot_root(b".", b".") == -1:
            _fail("pivot_root")
    except BaseException:
        os.fchdir(home)
        _umount2(os.fsencode(staging), MNT_DETACH)
        raise


def _enter_cwd(ctx: RunContext, plan: FilesystemPlan, cwd_id: tuple[int, int]) -> None:
    """Inside the view: make the working directory secrun's own, if the view shows it.

    Looked up by its path in the view without following any symlink, and entered only if it
    is the very directory secrun was started in (device and inode); the descriptor entered is
    one of the view's.  Otherwise the workload stays in /: a launch whose working directory
    was bound read-write fails instead (it was swapped while secrun started)."""
    mode, rel = plan["cwd"]["mode"], plan["cwd"]["rel"]
    if mode == "hidden":
        return  # covered: said once, in prepare
    fd = _openat2(AT_FDCWD, rel or b".", _HOW_DIR, _HOW_SIZE)
    if fd == -1:
        err = get_errno()
        why = ("a symlink on its path in the view" if err == errno.ELOOP else
               f"{errno_text(err)} in the view")
    else:
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == cwd_id:
                os.fchdir(fd)
                return
        finally:
            os.close(fd)
        why = "another directory at its path in the view"
    if mode == "bind":
        raise SetupError(f"working directory {ctx.cwd}",
                         f"{why} (changed while secrun started?): refused")
    if not plan["root"]:
        ctx.warn(f"filesystem: the working directory {ctx.cwd} cannot be entered: {why}: the "
                 f"workload starts in /")


def _build(ctx: RunContext, view: _View, ops: list[Op], sources: dict[int, Source]) -> None:
    for i, op in enumerate(ops):
        if op["kind"] == "hide":
            _hide(view, op)
        elif op["kind"] == "ro":
            _read_only(view, op)
        elif op["kind"] == "tmpfs":
            _tmpfs(view, op)
        elif op["kind"] == "bind":
            _bind(view, op, sources[i])
        elif op["kind"] == "cwd":
            _bind_cwd(view, op, sources[i])
        else:
            _kernel_fs(ctx, view, op["kind"])
    for mfd, dst in view.hidden:
        set_attr(mfd, _A_RDONLY, AT_EMPTY_PATH, dst)


def _hide(view: _View, op: HideOp) -> None:
    dst = op["dst"]
    fd = view.find(dst, op["rel"])
    if fd is None:
        return
    if S_ISDIR(os.fstat(fd).st_mode):
        mfd = _empty_dir(view, dst, op["private"])
    elif view.null is None:
        mfd = view.null = clone(view.host_dev[b"null"], CLONE_FD, f"/dev/null for {dst}")
        view.fds.append(mfd)
        set_attr(mfd, mount_attr(RDONLY | NOSUID | NOEXEC, 0), AT_EMPTY_PATH, dst)
    else:
        mfd = clone(view.null, CLONE_FD, f"/dev/null for {dst}")
        view.fds.append(mfd)
    attach(mfd, fd, dst)


def _empty_dir(view: _View, dst: str, private: bool) -> int:
    """The empty tmpfs that hides directory ``dst``."""
    if private:
        # writable while the view is built (binds go inside), read-only at the end
        mfd = view.new(b"tmpfs", _DEV_FS, NOSUID | NODEV | NOEXEC, dst)
        view.hidden.append((mfd, dst))
    elif view.shared is None:
        mfd = view.shared = view.new(b"tmpfs", _DEV_FS, RDONLY | NOSUID | NODEV | NOEXEC, dst,
                                     ours=False)
    else:
        mfd = clone(view.shared, CLONE_FD, f"empty tmpfs for {dst}")
        view.fds.append(mfd)
    return mfd


def _read_only(view: _View, op: RoOp) -> None:
    dst = op["dst"]
    fd = view.find(dst, op["rel"])
    if fd is None:
        return
    mfd = clone(fd, CLONE_FD_REC, dst)
    view.fds.append(mfd)
    set_attr(mfd, _A_RDONLY, AT_EMPTY_PATH | AT_RECURSIVE, dst)
    attach(mfd, fd, dst)


def _tmpfs(view: _View, op: TmpfsOp) -> None:
    dst, rel = op["dst"], op["rel"]
    if op["top"]:
        fd = view.top(dst, rel)
        mfd = view.new(b"tmpfs", op["options"], op["attrs"], dst)
    else:
        mfd = view.new(b"tmpfs", op["options"], op["attrs"], dst)
        fd = view.ensure(dst, rel, True)
    attach(mfd, fd, dst)


def _bind(view: _View, op: BindOp, source: Source) -> None:
    _mfd, is_dir, _host_ro = source
    dstfd = view.ensure(op["dst"], op["rel"], is_dir)
    _attach_source(source, dstfd, op["src"], op["dst"], op["set"], op["clr"])


def _bind_cwd(view: _View, op: CwdOp, source: Source) -> None:
    """The working directory, read-write: at its path in the view with no symlink on the way
    (never redirected elsewhere in the view)."""
    path = op["dst"]
    dstfd = _openat2(view.rootfd, op["rel"], _HOW_DIR, _HOW_SIZE)
    if dstfd == -1:
        err = get_errno()
        raise SetupError(f"working directory {path}",
                         f"cannot be bound at its path in the view "
                         f"({errno.errorcode.get(err, err)}: a symlink on the way, "
                         f"changed while secrun started?): refused", err)
    view.fds.append(dstfd)
    _attach_source(source, dstfd, path, path, NOSUID | NODEV, RDONLY)


def _attach_source(source: Source, dstfd: int, src: str, dst: str, set_: int,
                   clr: int) -> None:
    mfd, _is_dir, host_ro = source
    if host_ro:
        # "rw" never makes writable what the host itself mounts read-only
        clr &= ~RDONLY
    if set_ or clr:
        set_attr(mfd, mount_attr(set_, clr), AT_EMPTY_PATH | AT_RECURSIVE, dst)
    attach(mfd, dstfd, f"{src} on {dst}")


def _kernel_fs(ctx: RunContext, view: _View, kind: str) -> None:
    if kind == "proc":
        fd = view.top("/proc", b"proc", kernel_fs=True)
        attach(view.new(b"proc", (), NOSUID | NODEV | NOEXEC, "/proc", ours=False), fd,
               "/proc")
    elif kind == "dev":
        _dev(view, ctx.plan.get("shm_size", b""))
    elif kind == "sys":
        _sys(ctx, view)
    else:
        raise SetupError("filesystem plan", f"unknown operation {kind!r} (stale plan?)")


def _dev(view: _View, shm_size: bytes) -> None:
    """A minimal /dev: a small tmpfs, device nodes bind-mounted from the host (so this works in
    a user namespace, where mknod cannot), a private devpts instance and /dev/shm.  The tmpfs
    is new and empty, so its entries are made relative to its own descriptor."""
    fds = view.fds
    fd = view.top("/dev", b"dev", kernel_fs=True)
    dev = view.new(b"tmpfs", _DEV_FS, NOSUID | NODEV | NOEXEC, "/dev")
    attach(dev, fd, "/dev")
    for name in DEV_NODES:
        mfd = clone(view.host_dev[name], CLONE_FD, f"/dev/{name.decode()}")
        fds.append(mfd)
        try:
            point = os.open(name, _CREATE, 0o644, dir_fd=dev)
        except OSError as e:
            raise error(f"create mount point /dev/{name.decode()}", e.errno) from None
        fds.append(point)
        attach(mfd, point, f"/dev/{name.decode()}")
    for target, link in DEV_LINKS:
        os.symlink(target, link, dir_fd=dev)
    pts = view.new(b"devpts", _PTS_FS, NOSUID | NOEXEC, "/dev/pts", ours=False)
    attach(pts, _subdir(dev, "pts", fds), "/dev/pts")
    # nosuid, noexec on the device binds (and again on the tmpfs and devpts, which have them)
    set_attr(dev, _A_DEV, AT_EMPTY_PATH | AT_RECURSIVE, "/dev")
    shm = view.new(b"tmpfs", _SHM_FS + (((b"size", shm_size),) if shm_size else ()),
                   NOSUID | NODEV, "/dev/shm")
    attach(shm, _subdir(dev, "shm", fds), "/dev/shm")


def _sys(ctx: RunContext, view: _View) -> None:
    """A fresh sysfs on /sys, read-only: it shows the network namespace of the process that
    mounts it (this one, in the sandbox's), so /sys/class/net lists the sandbox's interfaces,
    and none of the host's submounts (cgroup trees, debugfs, tracefs, securityfs...) come
    along.  Where the kernel refuses it (a user namespace that does not own the network
    namespace), /sys is an empty read-only tmpfs instead."""
    fd = view.top("/sys", b"sys", kernel_fs=True)
    try:
        mfd = view.new(b"sysfs", (), _KERNEL_FS, "/sys", ours=False)
    except OSError as e:
        ctx.warn(f"filesystem: no sysfs of the sandbox's network namespace "
                 f"({describe_oserror(e)}): /sys is an empty read-only tmpfs")
        mfd = view.new(b"tmpfs", _DEV_FS, _KERNEL_FS, "/sys", ours=False)
    attach(mfd, fd, "/sys")


# --- /sys/fs/cgroup (stage hostname, after the cgroup namespace is made) ----------------------

def cgroup_paths() -> dict[str, str]:
    """{controllers key: path} from /proc/self/cgroup (the key as in ``plan["cgroup"]``)."""
    own = {}
    fd = os.open(b"/proc/self/cgroup", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    for line in data.decode().splitlines():
        _hid, ctrls, path = line.split(":", 2)
        own[",".join(sorted(ctrls.split(","))) if ctrls else ""] = path
    return own


def cgroup_state() -> dict | None:
    """Supervisor, in ``prepare``: secrun's own cgroup namespace and cgroups.  The child's
    groups (read in ``hostname`` before the cgroup namespace is made, once the supervisor has
    attached it) are compared with these: a hierarchy in which the child is still in secrun's
    group is not the sandbox's own, and is never shown."""
    try:
        return {"ns": os.stat("/proc/self/ns/cgroup").st_ino, "secrun": cgroup_paths()}
    except (OSError, ValueError):
        return None  # nothing to compare with: nothing is shown


def mount_cgroups(ctx: RunContext, layout: CgroupLayout, cg: dict) -> None:
    """Child, stage ``rlimits``, inside the view and the cgroup namespace made in ``hostname``:
    on the fresh sysfs's /sys/fs/cgroup, the host's hierarchies mounted again from inside the
    sandbox's cgroup namespace, read-only, each showing only the sandbox's own group (the
    namespace's root) and what is created below it.  Only the hierarchies in which the sandbox
    has a group of its own (``cg["sandbox"]`` differs from ``cg["secrun"]``) are mounted: in
    the others the namespace's root would be secrun's group, or the whole hierarchy.  Without
    a cgroup namespace of its own nothing is mounted: /sys/fs/cgroup stays sysfs's empty
    directory.  With cgroup v1 the hierarchies sit on a small read-only tmpfs, as on the
    host."""
    mine = cg.get("sandbox")
    if mine is None or os.stat("/proc/self/ns/cgroup").st_ino == cg["ns"]:
        return
    theirs = cg["secrun"]
    wanted = [m for m in layout["mounts"]
              if mine.get(m["key"]) is not None and mine[m["key"]] != theirs.get(m["key"])]
    if not wanted:
        return
    fds: list[int] = []
    try:
        rootfd = os.open("/", O_PATH | os.O_DIRECTORY)  # the view's root (cwd is the workload's)
        fds.append(rootfd)
        top = _openat2(rootfd, b"sys/fs/cgroup", _HOW_DIR, _HOW_SIZE)
        if top == -1:
            return  # /sys masked (no sysfs could be mounted): nothing to show it on
        fds.append(top)
        tmp = None
        if not layout["v2"]:
            tmp = new_fs(b"tmpfs", _DEV_FS, NOSUID | NODEV | NOEXEC, "/sys/fs/cgroup", fds)
            attach(tmp, top, "/sys/fs/cgroup")
        try:
            _mount_hierarchies(ctx, wanted, top, tmp, fds)
            if tmp is not None:
                for name, target in layout["links"]:
                    os.symlink(target, name, dir_fd=tmp)
        finally:
            if tmp is not None:
                set_attr(tmp, _A_RDONLY, AT_EMPTY_PATH, "/sys/fs/cgroup")
    finally:
        _close_all(fds)


def _mount_hierarchies(ctx: RunContext, wanted: list[CgroupMount], top: int, tmp: int | None,
                       fds: list[int]) -> None:
    for m in wanted:
        name = m["name"]
        what = f"/sys/fs/cgroup/{name.decode()}"
        try:
            mfd = new_fs(m["fstype"], m["options"], _KERNEL_FS, what, fds)
            attach(mfd, top if tmp is None else _subdir(tmp, name, fds, "/sys/fs/cgroup"),
                   what)
        except OSError as e:
            # showing less is never a risk: the launch goes on without this one
            ctx.log(f"filesystem: {what} not shown: {describe_oserror(e)}")


def _subdir(dirfd: int, name: str | bytes, fds: list[int], top: str = "/dev") -> int:
    try:
        os.mkdir(name, 0o755, dir_fd=dirfd)
        fd = os.open(name, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
    except OSError as e:
        raise error(f"create mount point {top}/{os.fsdecode(name)}", e.errno) from None
    fds.append(fd)
    return fd
