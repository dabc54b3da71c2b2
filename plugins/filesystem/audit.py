"""The ``filesystem`` plugin's audit: ``secrun_audit`` (a row per scored category -- root,
home, tmp, dev, kernel -- plus unscored rows for /proc, /sys, the bind and tmpfs mounts and the
working directory, each with the facts ``secrun audit --live`` checks from inside: the
mountinfo summaries and the mount on top at every hidden, covered, read-only and bound path
(``mount:PATH``), at the working directory, and what /sys shows) and the scored categories
``filesystem.root``, ``.home``, ``.tmp``, ``.dev`` and ``.kernel`` with their judges."""

from __future__ import annotations

import os

from secrun import hookimpl
from secrun.audit.categories import Category

from .entries import parse_bind, parse_tmpfs
from .mount import RDONLY
from .view import SECTION, fresh_sysfs, in_view, under

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from secrun.audit.rows import Row
    from secrun.context import AuditContext

    from .plan import FilesystemPlan

    Judge = Callable[[dict[str, str]], tuple[float, str] | None]


# --- the categories -----------------------------------------------------------------------------

def judge_fact(name: str, scale: dict[str, float]) -> Judge:
    """A judge that reads one fact and scores its value by ``scale`` (unknown values: 1.0)."""
    def judge(facts: dict[str, str]) -> tuple[float, str] | None:
        v = facts.get(name, "")
        if not v:
            return None
        return scale.get(v, 1.0), v
    return judge


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [
        Category("filesystem.root", "read-only root", 0.6,
                 judge=judge_fact("fs.root_writable", {"no": 0.0, "yes": 1.0}), combine="max",
                 meaning="the root filesystem is mounted read-only"),
        Category("filesystem.home", "home directories", 0.4,
                 judge=judge_fact("fs.home", {"hidden": 0.0, "ro": 0.5, "rw": 1.0}),
                 combine="max", meaning="/home hidden (0), read-only (0.5) or writable (1)"),
        Category("filesystem.tmp", "private /tmp", 0.2,
                 judge=judge_fact("fs.tmp", {"private": 0.0, "host": 1.0}), combine="max",
                 meaning="/tmp is not the host's"),
        Category("filesystem.dev", "minimal /dev", 0.3,
                 judge=judge_fact("fs.dev", {"minimal": 0.0, "host": 1.0}), combine="max",
                 meaning="/dev is a minimal tmpfs, not the host's devtmpfs"),
        Category("filesystem.kernel", "kernel tunables read-only", 0.4,
                 judge=judge_fact("fs.proc_sys", {"ro": 0.0, "rw": 1.0}), combine="max",
                 meaning="/proc/sys (and the OCI-style masked paths) read-only"),
    ]


# --- the mounts the live audit must find ------------------------------------------------------

def _host_ro(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


_KERNEL_FS = {"proc": "/proc proc rw", "dev": "/dev tmpfs rw", "sys": "/sys * ro"}


def expected_mounts(plan: FilesystemPlan) -> dict[str, str]:
    """{path: "POINT FSTYPE ro|rw"}: the mount ``secrun audit --live`` must see on top at each
    destination of the plan (``mount:PATH`` facts; ``*`` is any word), in the plan's order (a
    later mount at the same place wins).  Paths are the ones the view has, with the symlinks
    present now resolved.  A hidden or read-only path missing from the view is skipped, as
    the mounts stage skips it (missing now, or below an empty tmpfs secrun mounts first)."""
    root = plan["root"]
    out: dict[str, str] = {}
    empty: list[str] = []  # mount points of empty tmpfs mounts: what was below them is gone
    for op in plan["ops"]:
        if op["kind"] == "proc" or op["kind"] == "dev" or op["kind"] == "sys":
            p = "/" + op["kind"]
            out[p] = _KERNEL_FS[op["kind"]]
            if op["kind"] == "dev":
                empty.append(p)
            continue
        p = in_view(root, op["dst"])
        host = (root or "") + p
        shown = not any(under(p, e) and p != e for e in empty) and os.path.lexists(host)
        if op["kind"] == "hide":
            if shown:
                out[p] = f"{p} tmpfs ro" if os.path.isdir(host) else f"{p} * ro"
                empty.append(p)
        elif op["kind"] == "ro":
            if shown:
                out[p] = f"{p} * ro"
        elif op["kind"] == "tmpfs":
            out[p] = f"{p} tmpfs {'ro' if op['attrs'] & RDONLY else 'rw'}"
            empty.append(p)
        else:  # bind, cwd
            writable = op["kind"] == "cwd" or not op["set"] & RDONLY
            src = op["src"] if op["kind"] == "bind" else op["dst"]
            out[p] = f"{p} * {'rw' if writable and not _host_ro(src) else 'ro'}"
    return out


def _on_top(expected: dict[str, str], path: str) -> str | None:
    """The expectation of the deepest planned mount at or above ``path`` (None: none)."""
    best = None
    for p in expected:
        if under(path, p) and (best is None or len(p) > len(best)):
            best = p
    return None if best is None else expected[best]


def _bind_text(entry: object) -> str:
    src, dst, opts = parse_bind(entry)
    mode = "rw" if "rw" in opts else "ro"
    return f"{src}" + (f" -> {dst}" if dst != src else "") + f" ({mode})"


# --- the rows -----------------------------------------------------------------------------------

class _Audit:
    """What every row looks at: the section, the plan and the mounts expected live."""

    def __init__(self, ctx: AuditContext) -> None:
        self.ctx = ctx
        self.cfg: dict = ctx.config[SECTION]
        self.plan: FilesystemPlan = ctx.plan
        self.root = self.plan["root"]
        self.expected = expected_mounts(self.plan)
        self.cwd_mode = self.plan["cwd"]["mode"]
        self.binds = [parse_bind(b) for b in self.cfg["binds"]]
        self.kernel_hidden = [p for p in self.cfg["hide"]
                              if under(p, "/proc") or under(p, "/sys")]
        self.kernel_ro = [p for p in self.cfg["read_only_paths"]
                          if under(p, "/proc") or under(p, "/sys")]

    def covered(self, path: str) -> str:
        """What replaces the detach of the host's mount at ``path`` (/proc, /dev, /sys) when
        an ordinary user launches: its user namespace cannot detach the host's mounts, which
        the kernel locks, so the fresh one covers it ("" when the launch detaches it)."""
        made = self.ctx.fact("namespaces.made")
        if self.root or os.geteuid() == 0 or not (isinstance(made, list) and "user" in made):
            return ""
        return (f"run by an ordinary user: the host's {path} stays beneath, covered, not "
                f"detached (the kernel locks the host's mounts in its user namespace; nothing "
                f"inside can unmount the cover)")

    def mounts_at(self, paths: Iterable[str]) -> dict[str, str]:
        return {f"mount:{p}": self.expected[p] for p in paths if p in self.expected}

    def in_view(self, p: str) -> str:
        return in_view(self.root, os.path.normpath(p))


def _root_row(a: _Audit) -> Row:
    ro, root = a.cfg["read_only"], a.root
    where = f"pivot_root into {root}" if root else "the host's root"
    return {"control": "read-only root", "category": "filesystem.root", "section": SECTION,
            "key": "read_only",
            "value": f"{where}, {'read-only' if ro else 'writable'}, every submount included "
                     f"({', '.join(a.cfg['root_options']) or 'no flags'}); old root detached",
            "status": "enforced", "weight": 0.0 if ro else (0.5 if root else 1.0),
            "expect": {"fs.root_writable": "no" if ro else "yes"}}


def _home_row(a: _Audit) -> Row:
    ro = a.cfg["read_only"]
    into_home = [d for _, d, _ in a.binds if under(d, "/home")]
    if under(a.ctx.cwd, "/home") and a.cwd_mode == "bind":
        into_home.append(a.ctx.cwd)
    expect: dict[str, str]
    if "/home" in a.cfg["hide"]:
        home, w = ("hidden", 0.0) if not into_home else ("hidden except " + ", ".join(
            into_home), 0.2)
        expect = {} if into_home else {"fs.home": "hidden",
                                       **a.mounts_at([a.in_view("/home")])}
    else:
        home, w = ("read-only", 0.5) if ro else ("writable", 1.0)
        expect = {} if a.root else {"fs.home": "ro" if ro else "rw"}
        if into_home:
            home += " (binds inside: " + ", ".join(into_home) + ")"
    return {"control": "home directories", "category": "filesystem.home", "section": SECTION,
            "key": "hide", "value": home, "status": "enforced", "weight": w, "expect": expect}


def _tmp_dev_rows(a: _Audit) -> list[Row]:
    tmp, dev, root = a.cfg["tmp"], a.cfg["dev"], a.root
    return [
        {"control": "private /tmp", "category": "filesystem.tmp", "section": SECTION,
         "key": "tmp", "value": "private tmpfs" if tmp else "the root's own",
         "status": "enforced" if tmp else "not-configured", "weight": 0.0 if tmp else 1.0,
         "expect": {"fs.tmp": "private", **a.mounts_at(["/tmp"])} if tmp else
         ({} if root else {"fs.tmp": "host"})},
        {"control": "minimal /dev", "category": "filesystem.dev", "section": SECTION,
         "key": "dev",
         "value": "tmpfs with null zero full random urandom tty, private devpts, shm"
                  if dev else "the root's own",
         "status": "enforced" if dev else "not-configured", "weight": 0.0 if dev else 1.0,
         "detail": a.covered("/dev") if dev else "",
         "expect": {"fs.dev": "minimal", **a.mounts_at(["/dev"])} if dev else
         ({} if root else {"fs.dev": "host"})}]


def _kernel_row(a: _Audit) -> Row:
    """Kernel interfaces: /proc/sys and the masked /proc, /sys paths."""
    ro_paths = a.cfg["read_only_paths"]
    proc_sys_ro = (any(under("/proc/sys", p) for p in ro_paths + a.kernel_hidden)
                   or (not a.cfg["proc"] and a.cfg["read_only"]))
    parts = []
    if ro_paths:
        parts.append("read-only: " + ", ".join(ro_paths))
    if a.kernel_hidden:
        parts.append("masked: " + ", ".join(a.kernel_hidden))
    return {"control": "kernel interfaces (/proc/sys, masked paths)",
            "category": "filesystem.kernel", "section": SECTION, "key": "read_only_paths",
            "value": "; ".join(parts) or "/proc/sys writable (fresh /proc)",
            "status": "enforced" if proc_sys_ro else "not-configured",
            "weight": 0.0 if proc_sys_ro and a.kernel_hidden else (0.3 if proc_sys_ro
                                                                     else 1.0),
            "expect": {"fs.proc_sys": "ro" if proc_sys_ro else "rw",
                       **a.mounts_at(a.in_view(p) for p in a.kernel_hidden + a.kernel_ro)}}


def _proc_row(a: _Audit) -> Row:
    proc = a.cfg["proc"]
    return {"control": "fresh /proc", "category": None, "section": SECTION, "key": "proc",
            "value": "procfs of the sandbox's pid namespace (nosuid, nodev, noexec)"
                     if proc else "the root's own",
            "status": "enforced" if proc else "not-configured", "weight": 0.0 if proc else 1.0,
            "detail": a.covered("/proc") if proc else "",
            "expect": a.mounts_at(["/proc"]) if proc else {}}


def _sys_row(a: _Audit) -> Row:
    """/sys: a fresh read-only sysfs of the sandbox's network namespace, with its cgroup
    hierarchies from inside the cgroup namespace; or the root's own."""
    ctx, root = a.ctx, a.root
    row: Row = {"control": "/sys", "category": None, "section": SECTION,
                "status": "enforced", "weight": 0.0, "value": "", "expect": {}}
    if fresh_sysfs(root, str(ctx.fact("namespaces.net"))):
        made = ctx.fact("namespaces.made")
        cgroup = isinstance(made, list) and "cgroup" in made
        cg_req = ctx.fact("cgroups.attach") == "required"
        row["value"] = ("fresh sysfs of the sandbox's network namespace, read-only; "
                        "/sys/fs/cgroup: " + (
                            "the host's hierarchies mounted from inside the cgroup namespace, "
                            "read-only, each only where the sandbox has a group of its own"
                            if cgroup else "empty (no cgroup namespace)"))
        row["expect"] = {"fs.sys": "netns", "mount:/sys": a.expected.get("/sys", "/sys * ro"),
                         "fs.sys_cgroup": ("own" if cg_req else "own|none") if cgroup
                         else "none"}
        if a.covered("/sys"):
            row["detail"] = a.covered("/sys")
    elif root:
        shown = any(under(p, "/sys") for p in a.expected)
        row["value"] = "not mounted in the given root" if not shown else "bound or covered"
        row["expect"] = {} if shown else {"fs.sys": "none"}
    else:
        row["value"] = ("the host's sysfs (" + ("read-only" if a.cfg["read_only"] else
                                                "writable")
                        + "): the host's devices and cgroup tree; network interfaces of the "
                          "sandbox's network namespace, the host's")
        row["status"], row["weight"] = "not-configured", 1.0
        row["expect"] = {"fs.sys_cgroup": "host"}
    return row


def _mounts_row(a: _Audit) -> Row:
    cfg = a.cfg
    mounts = [_bind_text(b) for b in cfg["binds"]]
    mounts += [f"tmpfs {parse_tmpfs(t)[0]}" for t in cfg["tmpfs"]]
    others = [p for p in cfg["hide"] if p not in a.kernel_hidden and p != "/home"]
    if others:
        mounts.append("hidden: " + ", ".join(others))
    other_ro = [p for p in cfg["read_only_paths"] if p not in a.kernel_ro]
    if other_ro:
        mounts.append("read-only: " + ", ".join(other_ro))
    rw = any("(rw" in m for m in mounts)
    return {"control": "bind and tmpfs mounts", "category": None, "section": SECTION,
            "key": "binds", "value": "; ".join(mounts) or "none",
            "status": "enforced" if mounts else "not-configured",
            "weight": 0.3 if rw else 0.0,
            "expect": a.mounts_at(a.in_view(p) for p in
                                  [d for _, d, _ in a.binds] + others + other_ro
                                  + [parse_tmpfs(t)[0] for t in cfg["tmpfs"]])}


def _cwd_row(a: _Audit) -> Row:
    """The working directory: bound read-write, shown read-only by the view, or not shown
    (covered); ``mount:CWD`` is the mount the workload's working directory path shows, so a
    working directory that re-exposes a hidden or covered directory fails the live audit."""
    cwd, mode = a.ctx.cwd, a.cwd_mode
    on_top = _on_top(a.expected, cwd)
    if mode == "bind":
        value = f"{cwd}: bound read-write at its path (writable_cwd), below every mount above it"
    elif mode == "hidden":
        value = (f"{cwd}: covered by the view, not bound back (the workload starts in /)"
                 if not a.root else f"{cwd}: not in the given root (starts in /)")
        if on_top is not None:
            on_top = on_top.split(" ", 1)[0] + " * *"  # that cover's mount, whatever its flags
    else:
        value = (f"{cwd}: shown by the view itself ("
                 f"{'read-only' if a.cfg['read_only'] else 'as the root shows it'})")
    expect = {}
    if on_top is not None:
        expect[f"mount:{cwd}"] = on_top
    elif not a.root and a.cfg["read_only"]:
        expect[f"mount:{cwd}"] = "* * ro"
    return {"control": "working directory", "category": None, "section": SECTION,
            "key": "writable_cwd", "value": value, "status": "enforced",
            "weight": 0.3 if mode == "bind" else 0.0, "expect": expect}


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    """The rows of the five scored categories, then /proc, /sys, the mounts and the working
    directory (listed and checked live, not scored)."""
    a = _Audit(ctx)
    return [_root_row(a), _home_row(a), *_tmp_dev_rows(a), _kernel_row(a), _proc_row(a),
            _sys_row(a), _mounts_row(a), _cwd_row(a)]
