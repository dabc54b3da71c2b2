"""Planning the view: every path of ``[filesystem]`` checked and turned into the ready list of
mount operations the ``mounts`` stage loops over (see :class:`.plan.FilesystemPlan`), with where
the working directory stands in it.  Planning only."""

from __future__ import annotations

import os

from secrun.errors import ConfigError, shown

from . import cgroupfs, mount
from .entries import flags, parse_bind, parse_tmpfs, tmpfs_options
from .mount import NODEV, NOSUID, RDONLY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from secrun.context import PlanContext

    from .plan import BindOp, CwdMode, CwdOp, FilesystemPlan, HideOp, Op, RoOp, TmpfsOp

SECTION = "filesystem"
KERNEL_DIRS = ("/proc", "/dev", "/sys")  # kernel interfaces: never bound as the working dir


# --- paths --------------------------------------------------------------------------------------

def under(path: str, top: str) -> bool:
    """``path`` is ``top`` or below it."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def in_view(root: str, path: str) -> str:
    """``path`` with the symlinks of its existing part resolved inside the view's root."""
    if not root:
        return os.path.realpath(path)
    real = os.path.realpath(root + path)
    return (real[len(root):] or "/") if under(real, root) else path


def fresh_sysfs(root: str, net: str) -> bool:
    """Whether /sys is a fresh sysfs: on the host's root (``root`` as compiled: ""), when the
    sandbox has a network namespace of its own (``net``, the fact ``namespaces.net``, is not
    "host"): sysfs shows the network namespace of the process mounting it."""
    return not root and net != "host"


def _no_nul(key: str, path: str) -> None:
    """A path with a NUL cannot be passed to the kernel (nor to os.*): refused, naming the key."""
    if "\0" in path:
        raise ConfigError(SECTION, key, f"{shown(path)}: a path cannot contain a NUL")


def _dest(key: str, path: object) -> str:
    """Check a destination path (absolute, no '..', not /, no NUL) and normalise it."""
    if isinstance(path, str):
        _no_nul(key, path)
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(SECTION, key, f"destination {path!r} is a relative path: mount "
                          f"destinations are absolute paths inside the sandbox")
    if ".." in path.split("/"):
        raise ConfigError(SECTION, key, f"destination {path}: '..' would lead out of the "
                          f"root: refused")
    norm = os.path.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/":
        raise ConfigError(SECTION, key, "destination /: the root itself is set with 'root'")
    return norm


def _check_beneath(key: str, root: str, dst: str) -> None:
    """At planning time: refuse a destination that already leads out of the root through a
    symlink (the same check runs again when mounting; this one fails before anything is
    mounted, naming the key)."""
    try:
        fd = os.open(root, mount.O_PATH | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.close(mount.resolve(fd, dst))
    except mount.Escape as e:
        raise ConfigError(SECTION, key, str(e)) from None
    except OSError:
        pass  # missing, or not a directory on the way: decided when mounting
    finally:
        os.close(fd)


def _checked(key: str, view: str, path: object) -> str:
    dst = _dest(key, path)
    _check_beneath(key, view, dst)
    return dst


def _rel(dst: str) -> bytes:
    """A destination as the mounts stage opens it: bytes, relative to the view's root."""
    return os.fsencode(dst.lstrip("/"))


def _depth(root: str, dst: str) -> int:
    """How deep a destination sits (components of its path with the symlinks present now
    resolved): mounts are made parents before children."""
    return in_view(root, dst).rstrip("/").count("/")


def _op_depth(root: str, op: Op) -> int:
    if op["kind"] == "proc" or op["kind"] == "dev" or op["kind"] == "sys":
        return 1
    return _depth(root, op["dst"])


def _host_path(ctx: PlanContext, key: str, what: str, path: str, absolute: str,
               exists: Callable[[str], bool], missing: str) -> None:
    """Check a host path the view is made of (``root``, a bind's source): no NUL, absolute,
    there (and the plan depends on it)."""
    _no_nul(key, path)
    if not path.startswith("/"):
        raise ConfigError(SECTION, key, f"{what} {path!r} is a relative path: give an "
                          f"absolute {absolute}")
    ctx.depends_on(path)
    if not exists(path):
        raise ConfigError(SECTION, key, f"{what} {path} {missing}")


def _root(ctx: PlanContext, cfg: dict) -> str:
    """``root`` checked: "" for the host's, else the real path of the given directory."""
    root = cfg["root"]
    if not root:
        return ""
    _host_path(ctx, "root", "root", root, "directory", os.path.isdir,
               "does not exist or is not a directory")
    root = os.path.realpath(root)
    return "" if root == "/" else root


# --- the entries --------------------------------------------------------------------------------

def _tmpfs_op(view: str, entry: object) -> TmpfsOp:
    try:
        dst, opts = parse_tmpfs(entry)
    except ValueError as e:
        raise ConfigError(SECTION, "tmpfs", str(e)) from None
    dst = _checked("tmpfs", view, dst)
    set_, _ = flags([o for o in opts if "=" not in o], NOSUID | NODEV, 0)
    return {"kind": "tmpfs", "dst": dst, "rel": _rel(dst), "attrs": set_,
            "options": tmpfs_options(opts), "top": False}


def _bind_op(ctx: PlanContext, view: str, entry: object) -> BindOp:
    try:
        src, dst, opts = parse_bind(entry)
    except ValueError as e:
        raise ConfigError(SECTION, "binds", str(e)) from None
    _host_path(ctx, "binds", "bind source", src, "host path", os.path.exists,
               "does not exist")
    dst = _checked("binds", view, dst)
    set_, clr = flags(opts, RDONLY | NOSUID | NODEV, 0)
    return {"kind": "bind", "src": src, "src_b": os.fsencode(src), "dst": dst, "rel": _rel(dst),
            "set": set_, "clr": clr}


class Entries:
    """The section's entries, checked (in this order: hide, tmpfs, binds, read_only_paths),
    with their destinations normalised; ``root`` as compiled ("" for the host's)."""

    def __init__(self, ctx: PlanContext, cfg: dict, root: str, sys_fresh: bool) -> None:
        view = root or "/"
        self.cfg, self.root, self.sys_fresh, self.cwd = cfg, root, sys_fresh, ctx.cwd
        self.hidden = [_checked("hide", view, p) for p in cfg["hide"]]
        self.tmpfs = [_tmpfs_op(view, e) for e in cfg["tmpfs"]]
        self.binds = [_bind_op(ctx, view, e) for e in cfg["binds"]]
        self.ro_paths = [_checked("read_only_paths", view, p) for p in cfg["read_only_paths"]]

    def covers(self) -> list[tuple[str, str]]:
        """[(path, what)] of the mounts of the view that put something other than the host's
        files at a path: the working directory at or below one of them is not the host's
        directory."""
        cfg, root = self.cfg, self.root
        out = [(d, "the private /tmp" if d == "/tmp" else f"the fresh {d}") for d, on in (
            ("/tmp", cfg["tmp"]), ("/proc", cfg["proc"]), ("/dev", cfg["dev"]),
            ("/sys", self.sys_fresh)) if on]
        out += [(d, f"the hidden {d}") for d in self.hidden]
        out += [(op["dst"], f"the tmpfs on {op['dst']}") for op in self.tmpfs]
        out += [(op["dst"], f"the bind of {op['src']} on {op['dst']}") for op in self.binds
                if os.path.realpath(op["src"]) != in_view(root, op["dst"])]
        return [(in_view(root, d), what) for d, what in out]


def cwd_mode(e: Entries) -> tuple[CwdMode, str]:
    """How the working directory appears in the view: ("bind" | "view" | "hidden", why).

    It is bound (read-write, ``writable_cwd``) only where the view shows the host's directory
    read-only: never at or below a mount that covers it (the private /tmp, the fresh /proc,
    /dev, /sys, a tmpfs entry, a hidden path, a bind of something else), which binding it back
    would undo, nor at or below a read-only path, a read-only bind or a kernel interface
    (/proc, /dev, /sys), which it would make writable.  A covered working directory is not
    shown at all: the workload starts in / (with one warning)."""
    cwd, cfg, root = e.cwd, e.cfg, e.root
    for path, what in e.covers():
        if under(cwd, path):
            if root and not cfg["writable_cwd"]:
                return "hidden", ""  # a given root: the host's directories are not in it
            return "hidden", (f"the working directory {cwd} is covered by {what} (binding it "
                              f"back would expose what that hides): the workload starts in /")
    if not cfg["writable_cwd"]:
        return "view", ""
    if cwd == "/":
        return "view", ("writable_cwd: the working directory is / (the whole root would "
                        "become writable): it stays read-only")
    ro = [d for d in KERNEL_DIRS if under(cwd, d)]
    ro += [d for d in e.ro_paths if under(cwd, in_view(root, d))]
    ro += [op["dst"] for op in e.binds
           if op["set"] & RDONLY and under(cwd, in_view(root, op["dst"]))]
    if ro:
        return "view", (f"writable_cwd: the working directory {cwd} is below {ro[0]}, which "
                        f"the view keeps read-only: it stays read-only")
    if any(under(cwd, in_view(root, op["dst"])) for op in e.binds):
        return "view", ""  # already writable through a read-write bind of itself
    return "bind", ""


# --- the plan -----------------------------------------------------------------------------------

def _first_ops(cfg: dict, sys_fresh: bool) -> list[Op]:
    first: list[Op] = []
    if cfg["proc"]:
        first.append({"kind": "proc"})
    if cfg["dev"]:
        first.append({"kind": "dev"})
    if cfg["tmp"]:
        first.append({"kind": "tmpfs", "dst": "/tmp", "rel": b"tmp", "attrs": NOSUID | NODEV,
                      "options": ((b"mode", b"1777"),), "top": True})
    if sys_fresh:
        first.append({"kind": "sys"})
    return first


def _hide_ops(e: Entries, inside: list[str]) -> list[HideOp]:
    """A hidden directory something is mounted inside of (by its path, or through a symlink
    present now) gets a writable tmpfs of its own (``private``); see docs/filesystem.md."""
    real = [in_view(e.root, d) for d in inside]
    ops: list[HideOp] = []
    for dst in e.hidden:
        h = in_view(e.root, dst)
        private = any(under(d, dst) for d in inside) or any(under(d, h) for d in real)
        ops.append({"kind": "hide", "dst": dst, "rel": _rel(dst), "private": private})
    return ops


def _note_covered(ctx: PlanContext, e: Entries) -> None:
    covered = sorted({p for p, _ in e.covers()})
    covered = [p for p in covered if not any(under(p, q) and p != q for q in covered)]
    if covered and not e.root:
        ctx.note("a working directory at or below " + ", ".join(covered) + " is covered by "
                 "the view and not shown: a workload started there starts in /")


def plan_view(ctx: PlanContext, cfg: dict, net: str, cgroup_ns: bool) -> FilesystemPlan:
    """The section -> the plan (:class:`.plan.FilesystemPlan`).  ``net`` and ``cgroup_ns``:
    the sandbox's network mode and whether it has a cgroup namespace of its own (facts of the
    namespaces plugin).  The ops are sorted by the depth of their destination, parents before
    children (a stable sort: at equal depth, kernel filesystems and /tmp, hidden paths, tmpfs
    entries, binds, the working directory, read-only paths), so that a mount below another one
    always ends up on top of it, whatever section key it comes from."""
    root = _root(ctx, cfg)
    sys_fresh = fresh_sysfs(root, net)
    e = Entries(ctx, cfg, root, sys_fresh)
    mode, why = cwd_mode(e)
    later: list[Op] = [*e.tmpfs, *e.binds]
    inside = [op["dst"] for op in e.tmpfs] + [op["dst"] for op in e.binds]
    if mode == "bind":
        cwd_op: CwdOp = {"kind": "cwd", "dst": ctx.cwd, "rel": _rel(ctx.cwd)}
        later.append(cwd_op)
        inside.append(ctx.cwd)
    ro_ops: list[RoOp] = [{"kind": "ro", "dst": dst, "rel": _rel(dst)} for dst in e.ro_paths]
    ops = _first_ops(cfg, sys_fresh) + [*_hide_ops(e, inside), *later, *ro_ops]
    ops.sort(key=lambda op: _op_depth(root, op))  # stable: equal depths keep the order above
    if why:
        ctx.note(why)
    _note_covered(ctx, e)
    root_set, _ = flags(cfg["root_options"], RDONLY if cfg["read_only"] else 0, 0)
    return {"root": root, "root_b": os.fsencode(root or "/"), "root_set": root_set,
            "host_dev": mount.DEV_NODES if cfg["dev"] else ((b"null",) if e.hidden else ()),
            "ops": ops,
            "cwd": {"mode": mode, "rel": _rel(ctx.cwd),
                    "warning": f"filesystem: {why}" if why else ""},
            "cgroup": cgroupfs.layout() if sys_fresh and cgroup_ns else None,
            "shm_size": b""}
