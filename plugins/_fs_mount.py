"""The kernel-facing half of the ``filesystem`` plugin: builds the view in the child's
``mounts`` stage with the new mount API (open_tree, move_mount, fsopen/fsmount, mount_setattr),
openat2 and pivot_root, all through ctypes.

How the view is built, and why in this order:

1. Propagation of every mount is made private (``MS_REC|MS_PRIVATE`` on /), first, so nothing
   done below can propagate back to the host's mount namespace.
2. Everything that names a *host* path is opened before anything is covered: a recursive clone
   of the root (``open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)``), one clone per bind source and for
   the working directory, O_PATH handles on the host's device nodes.  From here on nothing is
   looked up by host path, so a mount made later cannot change what a bind source means.
3. The root clone gets its flags in one ``mount_setattr(AT_RECURSIVE)``: read-only applies to
   every submount too, atomically, before the tree is attached anywhere.
4. The clone is attached on a staging directory (``/tmp`` of the host, in this private mount
   namespace only) and every mount is made inside it.  Destinations are opened with
   ``openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)`` relative to the clone's root: a symlink or
   ``..`` that would leave the root fails with EXDEV, and the launch is refused.  Mounts attach
   to the opened O_PATH descriptor (``move_mount(MOVE_MOUNT_T_EMPTY_PATH)``), never to a path
   looked up again, so the checked place is the place mounted on.
5. ``pivot_root(".", ".")`` inside the clone, then ``umount2(".", MNT_DETACH)`` detaches the old
   root, staging mount included: no path leads back to the host's tree.
"""

import ctypes
import errno
import os
import stat

from secrun.errors import SetupError
from secrun.kernel import libc

# syscall numbers (x86_64; the same on every architecture using the generic table for these)
SYS_PIVOT_ROOT = 155
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_OPENAT2 = 437
SYS_MOUNT_SETATTR = 442

MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
ST_RDONLY = 1

RDONLY, NOSUID, NODEV, NOEXEC = 0x1, 0x2, 0x4, 0x8
O_PATH = os.O_PATH | os.O_CLOEXEC

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"))
STAGING = ("/tmp", "/mnt", "/var/tmp", "/run")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class Escape(SetupError):
    """A mount destination leads out of the root."""

    def __init__(self, dst):
        super().__init__(f"mount destination {dst}",
                         "leads out of the root through a symlink or '..': refused")


def _arg(a):
    if a is None or isinstance(a, (ctypes._SimpleCData, ctypes._Pointer, ctypes.Array)):
        return a
    if isinstance(a, str):
        return ctypes.c_char_p(os.fsencode(a))
    if isinstance(a, bytes):
        return ctypes.c_char_p(a)
    if isinstance(a, int):
        return ctypes.c_long(a)
    return a  # byref()


def _sys(nr, *args, what):
    ret = libc.syscall(ctypes.c_long(nr), *map(_arg, args))
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return ret


# --- small wrappers -----------------------------------------------------------------------------

def os_open_root(path):
    return os.open(path, O_PATH | os.O_DIRECTORY)


def openat2(dirfd, path, flags, resolve, what):
    how = _OpenHow(flags, 0, resolve)
    return _sys(SYS_OPENAT2, dirfd, path, ctypes.byref(how), ctypes.sizeof(how), what=what)


def resolve(rootfd, dst):
    """O_PATH descriptor of ``dst`` (absolute, inside the view) resolved beneath ``rootfd``."""
    rel = dst.lstrip("/") or "."
    try:
        return openat2(rootfd, rel, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
                       f"openat2({dst})")
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise Escape(dst) from None
        raise


def clone_path(path, recursive=True):
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    return _sys(SYS_OPEN_TREE, AT_FDCWD, path, flags, what=f"open_tree({path})")


def clone_fd(fd, what, recursive=True):
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | (
        AT_RECURSIVE if recursive else 0)
    return _sys(SYS_OPEN_TREE, fd, "", flags, what=f"open_tree({what})")


def set_attr(mfd, set_, clr, what, recursive=True):
    if not set_ and not clr:
        return
    attr = _MountAttr(set_, clr, 0, 0)
    _sys(SYS_MOUNT_SETATTR, mfd, "", AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0),
         ctypes.byref(attr), ctypes.sizeof(attr), what=f"mount_setattr({what})")


def attach(mfd, dstfd, what):
    _sys(SYS_MOVE_MOUNT, mfd, "", dstfd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
         what=f"move_mount({what})")


def new_fs(fstype, options, attrs, what):
    """A new, detached filesystem mount: fsopen + fsconfig + fsmount.  ``options`` is a list
    of (key, value); value None sets a flag option."""
    fsfd = _sys(SYS_FSOPEN, fstype, FSOPEN_CLOEXEC, what=f"fsopen({fstype})")
    try:
        # the source shown in /proc/self/mountinfo
        _sys(SYS_FSCONFIG, fsfd, FSCONFIG_SET_STRING, "source", "secrun", 0,
             what=f"fsconfig({fstype} source, for {what})")
        for key, value in options:
            if value is None:
                _sys(SYS_FSCONFIG, fsfd, FSCONFIG_SET_FLAG, key, None, 0,
                     what=f"fsconfig({fstype} {key}, for {what})")
            else:
                _sys(SYS_FSCONFIG, fsfd, FSCONFIG_SET_STRING, key, value, 0,
                     what=f"fsconfig({fstype} {key}={value}, for {what})")
        _sys(SYS_FSCONFIG, fsfd, FSCONFIG_CMD_CREATE, None, None, 0,
             what=f"fsconfig({fstype} create, for {what})")
        return _sys(SYS_FSMOUNT, fsfd, FSMOUNT_CLOEXEC, attrs, what=f"fsmount({what})")
    finally:
        os.close(fsfd)


def detach_here(fd, what):
    """Detach the mount whose root ``fd`` is (nothing if it is a plain directory, or a mount
    locked by a user namespace: the new mount then simply covers it)."""
    os.fchdir(fd)
    if libc.umount2(b".", ctypes.c_int(MNT_DETACH)) == -1:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.EPERM):
            raise OSError(err, os.strerror(err), f"umount2({what})")
        return False
    return True


# --- building the view -------------------------------------------------------------------------

class _View:
    def __init__(self, rootfd):
        self.rootfd = rootfd
        self.ours = set()   # st_dev of the tmpfs mounts made here: mount points may be created
        self.fds = []

    def keep(self, fd):
        self.fds.append(fd)
        return fd

    def close(self):
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def find(self, dst):
        """O_PATH fd of an existing destination, or None when it is missing."""
        try:
            return self.keep(resolve(self.rootfd, dst))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def ensure(self, dst, is_dir):
        """O_PATH fd of ``dst``, creating it (and its parents) when missing, but only inside a
        tmpfs mounted by secrun in this view: the host's files and a given root are never
        written to."""
        fd = self.find(dst)
        if fd is not None:
            return fd
        parts = dst.strip("/").split("/")
        parent, depth = None, 0
        for depth in range(len(parts) - 1, 0, -1):
            parent = self.find("/" + "/".join(parts[:depth]))
            if parent is not None:
                break
        else:
            depth, parent = 0, self.rootfd
        if os.fstat(parent).st_dev not in self.ours:
            raise SetupError(f"mount destination {dst}",
                             "does not exist in the view (mount points are created only "
                             "inside a tmpfs that secrun mounts; create it in the root)")
        for i, name in enumerate(parts[depth:]):
            last = depth + i == len(parts) - 1
            try:
                if last and not is_dir:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o644, dir_fd=parent))
                else:
                    os.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass
            except OSError as e:
                raise OSError(e.errno, e.strerror, f"create mount point {dst}") from None
            parent = self.keep(openat2(parent, name, O_PATH,
                                       RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
                                       f"openat2({dst})"))
        return parent

    def mount_fs(self, fstype, options, attrs, dst, ours=True):
        mfd = self.keep(new_fs(fstype, options, attrs, dst))
        if ours:
            self.ours.add(os.fstat(mfd).st_dev)
        attach(mfd, self.ensure(dst, True), dst)
        return mfd


def _tmpfs_data(text):
    out = []
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        out.append((key, value))
    return out


def _staging():
    for path in STAGING:
        try:
            return path, os.open(path, O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
    raise SetupError("staging directory", f"none of {', '.join(STAGING)} is a directory")


def _on_readonly_mount(fd):
    return bool(os.fstatvfs(fd).f_flag & ST_RDONLY)


def build_view(ctx, plan):
    """The ``mounts`` stage: build the view described by ``plan`` and pivot_root into it."""
    if libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "mount(/, MS_REC|MS_PRIVATE)")
    ops = plan["ops"]
    root = plan["root"]
    home = os.open(".", O_PATH)
    opened = [home]
    try:
        # 2. every host path, before anything is covered
        rootm = clone_path(root or "/")
        opened.append(rootm)
        sources = {}
        for i, op in enumerate(ops):
            if op[0] in ("bind", "cwd"):
                src = op[1]
                if op[0] == "cwd" and src == "/":
                    ctx.warn("filesystem: writable_cwd: the working directory is / (the whole "
                             "root would become writable): it stays read-only")
                    continue
                pfd = os.open(src, O_PATH)
                opened.append(pfd)
                mfd = clone_fd(pfd, src)
                opened.append(mfd)
                sources[i] = (mfd, stat.S_ISDIR(os.fstat(pfd).st_mode),
                              _on_readonly_mount(pfd))
        host_dev = {}
        need_null = any(op[0] == "hide" for op in ops)
        if any(op[0] == "dev" for op in ops) or need_null:
            for name in DEV_NODES if any(op[0] == "dev" for op in ops) else ("null",):
                try:
                    host_dev[name] = os.open("/dev/" + name, O_PATH)
                except OSError as e:
                    raise OSError(e.errno, e.strerror, f"/dev/{name}") from None
                opened.append(host_dev[name])
        # 3. the root's flags, recursively, before it is attached
        set_attr(rootm, plan["root_set"], 0, root or "/")
        # 4. attach on the staging directory and build inside it
        staging, sfd = _staging()
        opened.append(sfd)
        attach(rootm, sfd, f"root on {staging}")
        try:
            view = _View(rootm)
            try:
                _build(ctx, view, ops, sources, host_dev)
            finally:
                view.close()
            # 5. enter the view; detach the old root
            os.fchdir(rootm)
            _sys(SYS_PIVOT_ROOT, ".", ".", what="pivot_root")
        except BaseException:
            os.fchdir(home)
            libc.umount2(os.fsencode(staging), ctypes.c_int(MNT_DETACH))
            raise
        if libc.umount2(b".", ctypes.c_int(MNT_DETACH)) == -1:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), "umount2(old root, MNT_DETACH)")
        os.chdir("/")
        try:
            os.chdir(ctx.cwd)
        except OSError:
            # not in the view: start in / (said only for the host's root, where it is a
            # surprise: hidden or covered by a tmpfs)
            if not root:
                ctx.report(f"the working directory {ctx.cwd} is not in the filesystem view "
                           f"(hidden or covered): the workload starts in /")
    finally:
        for fd in opened:
            try:
                os.close(fd)
            except OSError:
                pass


def _build(ctx, view, ops, sources, host_dev):
    hidden = []
    for i, op in enumerate(ops):
        kind = op[0]
        if kind == "proc":
            detach_here(view.ensure("/proc", True), "/proc")
            view.mount_fs("proc", [], NOSUID | NODEV | NOEXEC, "/proc", ours=False)
        elif kind == "dev":
            _dev(view, host_dev)
        elif kind == "tmpfs":
            _, dst, set_, _clr, data, detach = op
            if detach:
                detach_here(view.ensure(dst, True), dst)
            view.mount_fs("tmpfs", _tmpfs_data(data), set_, dst)
        elif kind == "hide":
            dst = op[1]
            fd = view.find(dst)
            if fd is None:
                continue
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                # writable while the view is built (binds may go inside), read-only at the end
                hidden.append((view.mount_fs("tmpfs", [("mode", "755"), ("size", "64k")],
                                             NOSUID | NODEV | NOEXEC, dst), dst))
            else:
                mfd = view.keep(clone_fd(host_dev["null"], f"/dev/null for {dst}", False))
                set_attr(mfd, RDONLY | NOSUID | NOEXEC, 0, dst, False)
                attach(mfd, fd, dst)
        elif kind in ("bind", "cwd"):
            if i not in sources:
                continue
            mfd, is_dir, host_ro = sources[i]
            if kind == "bind":
                _, src, dst, set_, clr = op
            else:
                src = dst = op[1]
                set_, clr = NOSUID | NODEV, RDONLY
            if host_ro:
                # "rw" never makes writable what the host itself mounts read-only
                clr &= ~RDONLY
            set_attr(mfd, set_, clr, dst)
            attach(mfd, view.ensure(dst, is_dir), f"{src} on {dst}")
        elif kind == "ro":
            dst = op[1]
            fd = view.find(dst)
            if fd is None:
                continue
            mfd = view.keep(clone_fd(fd, dst))
            set_attr(mfd, RDONLY, 0, dst)
            attach(mfd, fd, dst)
        else:
            raise SetupError("filesystem plan", f"unknown operation {kind!r} (stale plan?)")
    for mfd, dst in hidden:
        set_attr(mfd, RDONLY, 0, dst, False)


def _dev(view, host_dev):
    """A minimal /dev: a small tmpfs, device nodes bind-mounted from the host (so this works in
    a user namespace, where mknod cannot), a private devpts instance and /dev/shm."""
    detach_here(view.ensure("/dev", True), "/dev")
    view.mount_fs("tmpfs", [("mode", "755"), ("size", "64k")], NOSUID | NODEV | NOEXEC, "/dev")
    devfd = view.ensure("/dev", True)
    for name in DEV_NODES:
        mfd = view.keep(clone_fd(host_dev[name], f"/dev/{name}", False))
        set_attr(mfd, NOSUID | NOEXEC, 0, f"/dev/{name}", False)
        attach(mfd, view.ensure(f"/dev/{name}", False), f"/dev/{name}")
    for name, target in DEV_LINKS:
        os.symlink(target, name, dir_fd=devfd)
    view.mount_fs("devpts", [("newinstance", None), ("ptmxmode", "0666"), ("mode", "0620")],
                  NOSUID | NOEXEC, "/dev/pts", ours=False)
    view.mount_fs("tmpfs", [("mode", "1777")], NOSUID | NODEV, "/dev/shm")
