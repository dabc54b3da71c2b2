"""Planning half of the ``filesystem`` plugin: the section's schema, parsing and checks of its
entries, ``secrun_compile`` (the ready list of mount operations the ``mounts`` stage loops over)
and ``secrun_audit``.  Imported only on a plan-cache miss, by ``secrun audit`` and ``secrun
profiles``; a cached launch never loads it.
"""

import os

from secrun.errors import ConfigError, shown
from secrun.plugins import _fs_mount as k
from secrun.schema import Field, Section, parse_digits, parse_scaled

SECTION = "filesystem"

# MOUNT_ATTR_* bits (linux/mount.h), the flags mount_setattr/fsmount take.
RDONLY, NOSUID, NODEV, NOEXEC = k.RDONLY, k.NOSUID, k.NODEV, k.NOEXEC
_FLAG = {"ro": RDONLY, "nosuid": NOSUID, "nodev": NODEV, "noexec": NOEXEC}
_UNFLAG = {"rw": RDONLY, "suid": NOSUID, "dev": NODEV, "exec": NOEXEC}
FLAG_WORDS = tuple(_FLAG) + tuple(_UNFLAG)
ROOT_WORDS = ("nosuid", "nodev", "noexec")
TMPFS_DATA = ("size", "mode", "nr_inodes")

# The OCI runtime spec's default masked and read-only paths; profiles/strict.toml uses them.
OCI_MASKED = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
              "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
              "/sys/firmware", "/sys/devices/virtual/powercap"]
OCI_READ_ONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


# --- parsing entries (shared by the schema checks and compile) --------------------------------

def _split_opts(text):
    return [o.strip() for o in text.split(",") if o.strip()]


def parse_bind(entry):
    """A ``binds`` entry -> (src, dst, [options]).  Raises ValueError on a malformed one.

    Forms: ``"SRC"``, ``"SRC:DST"``, ``"SRC:DST:OPT,OPT"``, or a table
    ``{ src = "...", dst = "...", options = ["rw", "noexec"] }``."""
    if isinstance(entry, str):
        parts = entry.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ValueError(f"bind {entry!r}: expected SRC[:DST[:OPTIONS]] (use the table form "
                             f"for a path containing ':')")
        src = parts[0]
        dst = parts[1] if len(parts) > 1 and parts[1] else src
        opts = _split_opts(parts[2]) if len(parts) > 2 else []
    elif isinstance(entry, dict):
        extra = set(entry) - {"src", "dst", "options"}
        if extra:
            raise ValueError(f"bind {entry!r}: unknown key(s) {', '.join(sorted(extra))} "
                             f"(known: src, dst, options)")
        src = entry.get("src", "")
        dst = entry["dst"] if "dst" in entry else src
        opts = entry.get("options", [])
        if not isinstance(src, str) or not src:
            raise ValueError(f"bind {entry!r}: 'src' (a path) is required")
        if not isinstance(dst, str) or not isinstance(opts, list) or \
                not all(isinstance(o, str) for o in opts):
            raise ValueError(f"bind {entry!r}: 'dst' is a path and 'options' a list of strings")
    else:
        raise ValueError(f"bind {entry!r}: expected a string or a table")
    for o in opts:
        if o not in FLAG_WORDS:
            raise ValueError(f"bind {src}: unknown option {o!r} "
                             f"(known: {', '.join(FLAG_WORDS)})")
    return src, dst, opts


# tmpfs's own parsing (mm/shmem.c), checked when planning so that a value the mount would
# refuse, or read as another one, is refused naming the key: size= is a byte count (memparse:
# digits and K, M, G, T, P, E; 2^64 or more wraps, to 0 = unlimited) or a percentage of RAM;
# nr_inodes= a count (memparse too), EINVAL above ULONG_MAX / 1024; mode= octal, of which the
# kernel keeps the low 12 bits (17777 would be 7777).  Sizes and counts are passed on in
# decimal and modes in octal, without leading zeros: memparse reads "010" as 8 and "0x10" as 16.
TMPFS_SIZE_MAX = (1 << 63) - 1  # as the cgroup memory limits: what a signed 64-bit count holds
TMPFS_PERCENT_MAX = 1000        # ten times the RAM: (percent << PAGE_SHIFT) * RAM pages must fit
TMPFS_INODES_MAX = ((1 << 64) - 1) // 1024


def _tmpfs_size(value):
    if value.endswith("%"):
        try:
            return f"{parse_digits(value[:-1], TMPFS_PERCENT_MAX)}%"
        except ValueError:
            raise ValueError(f"{shown(value)} is not a percentage of RAM from 0% to "
                             f"{TMPFS_PERCENT_MAX}% (ASCII digits)") from None
    return str(parse_scaled(value, TMPFS_SIZE_MAX, what="size in bytes"))


def _tmpfs_inodes(value):
    return str(parse_scaled(value, TMPFS_INODES_MAX, what="inode count"))


def _tmpfs_mode(value):
    if not (value.isascii() and all(c in "01234567" for c in value)):
        raise ValueError(f"{shown(value)} is not octal (such as 755 or 1777)")
    significant = value.lstrip("0") or "0"
    if len(significant) > 4:
        raise ValueError(f"{shown(value)} is above 7777 (set-id, sticky and permission bits)")
    return significant


_TMPFS_VALUE = {"size": _tmpfs_size, "nr_inodes": _tmpfs_inodes, "mode": _tmpfs_mode}


def parse_tmpfs(entry):
    """A ``tmpfs`` entry -> (dst, [options]).  ``"DST"``, ``"DST:OPT,OPT"`` (options: the flag
    words and ``size=``, ``mode=``, ``nr_inodes=``) or ``{ dst = "...", options = [...] }``."""
    if isinstance(entry, str):
        dst, _, rest = entry.partition(":")
        opts = _split_opts(rest)
    elif isinstance(entry, dict):
        extra = set(entry) - {"dst", "options"}
        if extra:
            raise ValueError(f"tmpfs {entry!r}: unknown key(s) {', '.join(sorted(extra))} "
                             f"(known: dst, options)")
        dst, opts = entry.get("dst", ""), entry.get("options", [])
        if not isinstance(dst, str) or not isinstance(opts, list) or \
                not all(isinstance(o, str) for o in opts):
            raise ValueError(f"tmpfs {entry!r}: 'dst' (a path) is required and 'options' is a "
                             f"list of strings")
    else:
        raise ValueError(f"tmpfs {entry!r}: expected a string or a table")
    if not dst:
        raise ValueError(f"tmpfs {entry!r}: no destination")
    out = []
    for o in opts:
        key, eq, val = o.partition("=")
        if eq:
            if key not in TMPFS_DATA or not val:
                raise ValueError(f"tmpfs {shown(dst)}: unknown option {shown(o)} "
                                 f"(known: {', '.join(FLAG_WORDS + TMPFS_DATA)})")
            try:
                val = _TMPFS_VALUE[key](val)
            except ValueError as e:
                raise ValueError(f"tmpfs {shown(dst)}: {key}={e}") from None
            o = f"{key}={val}"
        elif o not in FLAG_WORDS:
            raise ValueError(f"tmpfs {shown(dst)}: unknown option {shown(o)} "
                             f"(known: {', '.join(FLAG_WORDS + TMPFS_DATA)})")
        out.append(o)
    return dst, out


def _check_list(parse):
    def check(values):
        for v in values:
            parse(v)
    return check


def _check_root_options(values):
    for v in values:
        if v not in ROOT_WORDS:
            raise ValueError(f"{v!r} is not one of {', '.join(ROOT_WORDS)} (read-only is "
                             f"the key read_only)")


def sections():
    return [Section(SECTION, "The filesystem view: a read-only host root or a given root "
                    "directory (entered with pivot_root), fresh /proc, minimal /dev, private "
                    "/tmp, bind and tmpfs mounts, hidden and read-only paths.  Needs "
                    "[namespaces].mount = true.", [
        Field("root", str, "",
              "\"\": the view is a copy of the host's /; otherwise an absolute path of a "
              "directory that becomes / (entered with pivot_root; the host's root is detached "
              "and unreachable)"),
        Field("read_only", bool, True,
              "the root is mounted read-only, every submount included (writes fail with "
              "EROFS); binds with \"rw\", tmpfs mounts and the working directory stay writable"),
        Field("root_options", [str], ["nosuid"],
              "flags for the whole root tree, recursively: nosuid, nodev, noexec (with dev = "
              "false, nodev also disables the root's own /dev)", check=_check_root_options),
        Field("writable_cwd", bool, False,
              "bind secrun's working directory read-write at the same path, below every "
              "mount above it; not when it is / or at or below a read-only path, a read-only "
              "bind or /proc, /dev, /sys (it stays read-only, with a warning), nor when the "
              "view covers it (see visible_cwd)"),
        Field("visible_cwd", bool, True,
              "no effect, kept for older profiles: the working directory is shown where the "
              "view shows the host's directory; one that the view hides or covers (a hidden "
              "path, a tmpfs, the private /tmp, the fresh /proc, /dev, /sys) is never bound "
              "back, which would re-expose what the cover hides: the workload starts in / "
              "with a warning"),
        Field("proc", bool, True,
              "mount a fresh /proc (nosuid, nodev, noexec) showing the sandbox's pid namespace"),
        Field("dev", bool, True,
              "a minimal /dev: tmpfs with null, zero, full, random, urandom, tty bind-mounted "
              "from the host, a private devpts with ptmx, /dev/shm (tmpfs), and the fd/stdin/"
              "stdout/stderr links; false keeps the root's own /dev"),
        Field("tmp", bool, True,
              "a private, empty tmpfs on /tmp (mode 1777, nosuid, nodev), gone with the sandbox"),
        Field("tmpfs", [object], [],
              "more tmpfs mounts: \"/run\", \"/run:size=16M,mode=755,noexec\" or "
              "{ dst = \"/run\", options = [\"size=16M\"] }; default flags nosuid, nodev",
              check=_check_list(parse_tmpfs)),
        Field("binds", [object], [],
              "bind mounts of host paths: \"SRC\", \"SRC:DST\", \"SRC:DST:rw,noexec\" or "
              "{ src = \"...\", dst = \"...\", options = [\"rw\"] }; read-only, nosuid and "
              "nodev unless the options say rw, suid, dev; recursive (submounts come along)",
              check=_check_list(parse_bind)),
        Field("hide", [str], [],
              "paths made invisible: an empty read-only tmpfs over a directory, /dev/null over "
              "anything else; paths missing from the view are skipped; binds may still be "
              "placed inside a hidden directory"),
        Field("read_only_paths", [str], [],
              "paths made read-only (recursively), e.g. /proc/sys; missing paths are skipped"),
    ])]


# --- planning ---------------------------------------------------------------------------------

def _no_nul(key, path):
    """A path with a NUL cannot be passed to the kernel (nor to os.*): refused, naming the key."""
    if "\0" in path:
        raise ConfigError(SECTION, key, f"{shown(path)}: a path cannot contain a NUL")


def _dest(key, path):
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


def _flags(words, set_, clr):
    for w in words:
        if w in _FLAG:
            set_, clr = set_ | _FLAG[w], clr & ~_FLAG[w]
        elif w in _UNFLAG:
            set_, clr = set_ & ~_UNFLAG[w], clr | _UNFLAG[w]
    return set_, clr


def _check_beneath(key, root, dst):
    """At planning time: refuse a destination that already leads out of the root through a
    symlink (the same check runs again when mounting; this one fails before anything is
    mounted, naming the key)."""
    try:
        fd = os.open(root, k.O_PATH | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.close(k.resolve(fd, dst))
    except k.Escape as e:
        raise ConfigError(SECTION, key, str(e)) from None
    except OSError:
        pass  # missing, or not a directory on the way: decided when mounting
    finally:
        os.close(fd)


def _in_view(root, path):
    """``path`` with the symlinks of its existing part resolved inside the view's root."""
    if not root:
        return os.path.realpath(path)
    real = os.path.realpath(root + path)
    return (real[len(root):] or "/") if _under(real, root) else path


def _rel(dst):
    """A destination as the mounts stage opens it: bytes, relative to the view's root."""
    return os.fsencode(dst.lstrip("/"))


def _tmpfs_options(opts):
    """fsconfig (key, value) pairs of a tmpfs entry's ``size=``, ``mode=``, ``nr_inodes=``."""
    out = []
    for o in opts:
        key, eq, value = o.partition("=")
        if eq:
            out.append((key.encode(), value.encode()))
    return tuple(out)


def _depth(root, dst):
    """How deep a destination sits (components of its path with the symlinks present now
    resolved): mounts are made parents before children."""
    return _in_view(root, dst).rstrip("/").count("/")


KERNEL_DIRS = ("/proc", "/dev", "/sys")  # kernel interfaces: never bound as the working dir


def compile_plan(ctx):
    """The section -> the plan: ``root`` ("" for the host's), ``root_b`` (what is cloned, as
    bytes), ``root_set`` (its MOUNT_ATTR_* flags), ``host_dev`` (device nodes opened before
    anything is covered), ``ops``, ``cwd`` and ``cgroup``.

    ``ops`` are sorted by the depth of their destination, parents before children (a stable
    sort: at equal depth, in the order below), so that a mount below another one always ends
    up on top of it, whatever section key it comes from:

    - ``("proc",)``, ``("dev",)``, ``("sys",)`` (a fresh read-only sysfs);
    - ``("tmpfs", dst, rel, attrs, options, top)``: ``top`` detaches the mount already there;
    - ``("hide", dst, rel, private)``: ``private`` when something is mounted inside later (a
      tmpfs of its own, read-only at the end); the others share one read-only empty tmpfs;
    - ``("bind", src, src_b, dst, rel, set, clr)``, ``("cwd", path, rel)`` (the working
      directory, read-write: the clone of the process's own working directory);
    - ``("ro", dst, rel)``.

    ``cwd`` is ``(mode, rel, warning)``: ``mode`` "bind" (bound read-write by the "cwd" op),
    "view" (shown by the view itself, read-only) or "hidden" (hidden or covered: the workload
    starts in /); ``warning`` is said once per launch, in ``prepare`` ("" for none).
    ``cgroup`` is None or the host's cgroup hierarchies to show (from inside the sandbox's
    cgroup namespace) on the fresh sysfs; see :func:`_cgroup_layout`.
    """
    cfg = ctx.config[SECTION]
    ns = ctx.config.get("namespaces", {})
    if ns.get("mount") is not True:
        raise ConfigError(SECTION, None, "the filesystem view needs a private mount namespace: "
                          "set [namespaces].mount = true (it keeps every mount away from the "
                          "host)")
    ctx.depends_on(k.__file__)
    root = cfg["root"]
    if root:
        _no_nul("root", root)
        if not root.startswith("/"):
            raise ConfigError(SECTION, "root", f"root {root!r} is a relative path: give an "
                              f"absolute directory")
        ctx.depends_on(root)
        if not os.path.isdir(root):
            raise ConfigError(SECTION, "root", f"root {root} does not exist or is not a "
                              f"directory")
        root = os.path.realpath(root)
        if root == "/":
            root = ""
    view = root or "/"

    root_set, _ = _flags(cfg["root_options"], RDONLY if cfg["read_only"] else 0, 0)
    first: list[tuple] = []
    if cfg["proc"]:
        first.append(("proc",))
    if cfg["dev"]:
        first.append(("dev",))
    if cfg["tmp"]:
        first.append(("tmpfs", "/tmp", b"tmp", NOSUID | NODEV, ((b"mode", b"1777"),), True))
    sys_fresh = fresh_sysfs(root, ns)
    if sys_fresh:
        first.append(("sys",))
    hidden = []
    for path in cfg["hide"]:
        dst = _dest("hide", path)
        _check_beneath("hide", view, dst)
        hidden.append(dst)
    inside: list[str] = []  # destinations where mount points may be created
    later: list[tuple] = []
    tmpfs_dsts = []
    for entry in cfg["tmpfs"]:
        try:
            dst, opts = parse_tmpfs(entry)
        except ValueError as e:
            raise ConfigError(SECTION, "tmpfs", str(e)) from None
        dst = _dest("tmpfs", dst)
        _check_beneath("tmpfs", view, dst)
        set_, _ = _flags([o for o in opts if "=" not in o], NOSUID | NODEV, 0)
        later.append(("tmpfs", dst, _rel(dst), set_, _tmpfs_options(opts), False))
        inside.append(dst)
        tmpfs_dsts.append(dst)
    binds = []
    for entry in cfg["binds"]:
        try:
            src, dst, opts = parse_bind(entry)
        except ValueError as e:
            raise ConfigError(SECTION, "binds", str(e)) from None
        _no_nul("binds", src)
        if not src.startswith("/"):
            raise ConfigError(SECTION, "binds", f"bind source {src!r} is a relative path: "
                              f"give an absolute host path")
        ctx.depends_on(src)
        if not os.path.exists(src):
            raise ConfigError(SECTION, "binds", f"bind source {src} does not exist")
        dst = _dest("binds", dst)
        _check_beneath("binds", view, dst)
        set_, clr = _flags(opts, RDONLY | NOSUID | NODEV, 0)
        later.append(("bind", src, os.fsencode(src), dst, _rel(dst), set_, clr))
        inside.append(dst)
        binds.append((src, dst, bool(set_ & RDONLY)))
    ro_paths = []
    for path in cfg["read_only_paths"]:
        dst = _dest("read_only_paths", path)
        _check_beneath("read_only_paths", view, dst)
        ro_paths.append(dst)
    mode, warning = cwd_mode(ctx, cfg, root, hidden, tmpfs_dsts, binds, ro_paths, sys_fresh)
    if mode == "bind":
        later.append(("cwd", ctx.cwd, _rel(ctx.cwd)))
        inside.append(ctx.cwd)
    later += [("ro", dst, _rel(dst)) for dst in ro_paths]
    # A hidden directory something is mounted inside of (by its path, or through a symlink
    # present now) gets a writable tmpfs of its own; see docs/filesystem.md.
    real = [_in_view(root, d) for d in inside]
    ops = list(first)
    for dst in hidden:
        h = _in_view(root, dst)
        private = any(_under(d, dst) for d in inside) or any(_under(d, h) for d in real)
        ops.append(("hide", dst, _rel(dst), private))
    ops += later
    ops.sort(key=lambda op: _op_depth(root, op))  # stable: equal depths keep the order above
    host_dev = k.DEV_NODES if cfg["dev"] else ((b"null",) if hidden else ())
    covered = sorted({p for p, _ in _covers(cfg, root, hidden, tmpfs_dsts, binds, sys_fresh)})
    covered = [p for p in covered if not any(_under(p, q) and p != q for q in covered)]
    notes = [warning] if warning else []
    if covered and not root:
        notes.append("filesystem: a working directory at or below " + ", ".join(covered)
                     + " is covered by the view and not shown: a workload started there "
                       "starts in /")
    ctx.plan[SECTION] = {"root": root, "root_b": os.fsencode(root or "/"),
                         "root_set": root_set, "host_dev": host_dev, "ops": ops,
                         "notes": notes,  # for `secrun profiles check` (not read on launch)
                         "cwd": (mode, _rel(ctx.cwd), warning),
                         "cgroup": _cgroup_layout(ctx) if sys_fresh and ns.get("cgroup") is True
                         else None}


def _op_depth(root, op):
    kind = op[0]
    if kind in ("proc", "dev", "sys"):
        return 1
    if kind == "bind":
        return _depth(root, op[3])
    return _depth(root, op[1])  # tmpfs, hide, cwd, ro


def fresh_sysfs(root, ns) -> bool:
    """Whether /sys is a fresh sysfs: on the host's root (``root`` as compiled: ""), when the
    sandbox has a network namespace of its own (sysfs shows the network namespace of the
    process mounting it)."""
    return not root and ns.get("net", "host") != "host"


def _covers(cfg, root, hidden, tmpfs_dsts, binds, sys_fresh):
    """[(path, what)] of the mounts of the view that put something other than the host's files
    at a path: the working directory at or below one of them is not the host's directory."""
    out = [(d, "the private /tmp" if d == "/tmp" else f"the fresh {d}") for d, on in (
        ("/tmp", cfg["tmp"]), ("/proc", cfg["proc"]), ("/dev", cfg["dev"]),
        ("/sys", sys_fresh)) if on]
    out += [(d, f"the hidden {d}") for d in hidden]
    out += [(d, f"the tmpfs on {d}") for d in tmpfs_dsts]
    out += [(dst, f"the bind of {src} on {dst}") for src, dst, _ro in binds
            if os.path.realpath(src) != _in_view(root, dst)]
    return [(_in_view(root, d), what) for d, what in out]


def cwd_mode(ctx, cfg, root, hidden, tmpfs_dsts, binds, ro_paths, sys_fresh):
    """How the working directory appears in the view: ("bind" | "view" | "hidden", warning).

    It is bound (read-write, ``writable_cwd``) only where the view shows the host's directory
    read-only: never at or below a mount that covers it (the private /tmp, the fresh /proc,
    /dev, /sys, a tmpfs entry, a hidden path, a bind of something else), which binding it back
    would undo, nor at or below a read-only path, a read-only bind or a kernel interface
    (/proc, /dev, /sys), which it would make writable.  A covered working directory is not
    shown at all: the workload starts in / (with one warning)."""
    cwd = ctx.cwd
    for path, what in _covers(cfg, root, hidden, tmpfs_dsts, binds, sys_fresh):
        if _under(cwd, path):
            if root and not cfg["writable_cwd"]:
                return "hidden", ""  # a given root: the host's directories are not in it
            return "hidden", (f"filesystem: the working directory {cwd} is covered by {what} "
                              f"(binding it back would expose what that hides): the workload "
                              f"starts in /")
    if not cfg["writable_cwd"]:
        return "view", ""
    if cwd == "/":
        return "view", ("filesystem: writable_cwd: the working directory is / (the whole root "
                        "would become writable): it stays read-only")
    ro = [d for d in KERNEL_DIRS if _under(cwd, d)]
    ro += [d for d in ro_paths if _under(cwd, _in_view(root, d))]
    ro += [d for src, d, is_ro in binds if is_ro and _under(cwd, _in_view(root, d))]
    if ro:
        return "view", (f"filesystem: writable_cwd: the working directory {cwd} is below "
                        f"{ro[0]}, which the view keeps read-only: it stays read-only")
    if any(_under(cwd, _in_view(root, d)) for _src, d, _ro in binds):
        return "view", ""  # already writable through a read-write bind of itself
    return "bind", ""


def _cgroup_layout(ctx):
    """The host's cgroup hierarchies mounted at or under /sys/fs/cgroup, to mount again on the
    fresh sysfs from inside the sandbox's cgroup namespace (see ``_fs_mount.mount_cgroups``):
    ``{"v2": bool (cgroup2 on /sys/fs/cgroup itself), "mounts": [(name, fstype, options, key,
    host mount point)], "links": [(name, target)]}``, or None when there is none.  ``key`` is
    the hierarchy's controllers field of /proc/self/cgroup (sorted; "" for cgroup2)."""
    mounts: list = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        a, b = left.split(), right.split()
        if len(a) < 5 or len(b) < 3 or b[0] not in ("cgroup", "cgroup2"):
            continue
        point = _unescape(a[4])
        if point == "/sys/fs/cgroup" and b[0] == "cgroup2":
            return {"v2": True, "mounts": [(b"", b"cgroup2", (), "", point)], "links": []}
        if os.path.dirname(point) != "/sys/fs/cgroup":
            continue
        if b[0] == "cgroup2":
            mounts.append((os.fsencode(os.path.basename(point)), b"cgroup2", (), "", point))
            continue
        opts: list = []
        words = []
        for o in b[2].split(","):
            key, eq, value = o.partition("=")
            if eq and key == "name":
                opts.append((b"name", value.encode()))
                words.append(o)
            elif o in _V1_SUBSYS:
                opts.append((o.encode(), None))
                words.append(o)
        if words:
            mounts.append((os.fsencode(os.path.basename(point)), b"cgroup", tuple(opts),
                           ",".join(sorted(words)), point))
    if not mounts:
        return None
    links = []
    try:
        for name in sorted(os.listdir("/sys/fs/cgroup")):
            path = os.path.join("/sys/fs/cgroup", name)
            if os.path.islink(path):
                links.append((os.fsencode(name), os.fsencode(os.readlink(path))))
    except OSError:
        pass
    return {"v2": False, "mounts": mounts, "links": links}


_V1_SUBSYS = ("cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls",
              "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc", "debug")


def _unescape(s):
    """A mountinfo field: spaces, tabs, newlines and backslashes are octal escapes."""
    if "\\" not in s:
        return s
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


# --- audit ---------------------------------------------------------------------------------

def _expected_mounts(cfg, plan):
    """{path: "POINT FSTYPE ro|rw"}: the mount ``secrun audit --live`` must see on top at each
    destination of the plan (``mount:PATH`` facts; ``*`` is any word), in the plan's order (a
    later mount at the same place wins).  Paths are the ones the view has, with the symlinks
    present now resolved.  A hidden or read-only path missing from the view is skipped, as
    the mounts stage skips it (missing now, or below an empty tmpfs secrun mounts first)."""
    root = plan.get("root", "")
    out = {}
    empty = []  # mount points of empty tmpfs mounts: what was below them is gone
    for op in plan.get("ops", ()):
        kind = op[0]
        if kind in ("proc", "dev", "sys"):
            p = "/" + kind
            out[p] = {"proc": "/proc proc rw", "dev": "/dev tmpfs rw", "sys": "/sys * ro"}[kind]
            if kind == "dev":
                empty.append(p)
            continue
        dst = op[3] if kind == "bind" else op[1]
        p = _in_view(root, dst)
        host = (root or "") + p
        gone = any(_under(p, e) and p != e for e in empty)
        if kind == "hide":
            if gone or not os.path.lexists(host):
                continue
            out[p] = f"{p} tmpfs ro" if os.path.isdir(host) else f"{p} * ro"
            empty.append(p)
        elif kind == "ro":
            if not gone and os.path.lexists(host):
                out[p] = f"{p} * ro"
        elif kind == "tmpfs":
            out[p] = f"{p} tmpfs {'ro' if op[3] & RDONLY else 'rw'}"
            empty.append(p)
        else:  # bind, cwd
            src = op[1]
            writable = kind == "cwd" or not op[5] & RDONLY
            out[p] = f"{p} * {'rw' if writable and not _host_ro(src) else 'ro'}"
    return out


def _host_ro(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _on_top(expected, path):
    """The expectation of the deepest planned mount at or above ``path`` (None: none)."""
    best = None
    for p in expected:
        if _under(path, p) and (best is None or len(p) > len(best)):
            best = p
    return None if best is None else expected[best]


def _bind_text(entry):
    src, dst, opts = parse_bind(entry)
    mode = "rw" if "rw" in opts else "ro"
    return f"{src}" + (f" -> {dst}" if dst != src else "") + f" ({mode})"


def _under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


def audit(ctx):
    """Rows for the control table's filesystem categories (root, home, tmp, dev, kernel), each
    with the facts ``secrun audit --live`` checks from inside: the mountinfo summaries and the
    mount on top at every hidden, covered, read-only and bound path (``mount:PATH``), at the
    working directory, and what /sys shows."""
    cfg = ctx.config[SECTION]
    ns = ctx.config.get("namespaces", {})
    plan = ctx.plan.get(SECTION, {})
    root = plan.get("root", cfg["root"])
    ro = cfg["read_only"]
    hide, ro_paths = cfg["hide"], cfg["read_only_paths"]
    binds = [parse_bind(b) for b in cfg["binds"]]
    cwd_mode_ = plan.get("cwd", ("view", b"", ""))[0]
    expected = _expected_mounts(cfg, plan)

    def mounts_at(paths):
        return {f"mount:{p}": expected[p] for p in paths if p in expected}

    def in_view(p):
        return _in_view(root, os.path.normpath(p))

    where = f"pivot_root into {root}" if root else "the host's root"
    rows = [{
        "control": "read-only root", "category": "filesystem.root", "section": SECTION,
        "key": "read_only",
        "value": f"{where}, {'read-only' if ro else 'writable'}, every submount included "
                 f"({', '.join(cfg['root_options']) or 'no flags'}); old root detached",
        "status": "enforced", "weight": 0.0 if ro else (0.5 if root else 1.0),
        "expect": {"fs.root_writable": "no" if ro else "yes"}}]

    # home directories
    into_home = [d for _, d, _ in binds if _under(d, "/home")]
    if _under(ctx.cwd, "/home") and cwd_mode_ == "bind":
        into_home.append(ctx.cwd)
    if "/home" in hide:
        home, w = ("hidden", 0.0) if not into_home else ("hidden except " + ", ".join(
            into_home), 0.2)
        expect = {} if into_home else {"fs.home": "hidden", **mounts_at([in_view("/home")])}
    else:
        home, w = ("read-only", 0.5) if ro else ("writable", 1.0)
        expect = {} if root else {"fs.home": "ro" if ro else "rw"}
        if into_home:
            home += " (binds inside: " + ", ".join(into_home) + ")"
    rows.append({"control": "home directories", "category": "filesystem.home",
                 "section": SECTION, "key": "hide", "value": home, "status": "enforced",
                 "weight": w, "expect": expect})

    rows.append({"control": "private /tmp", "category": "filesystem.tmp", "section": SECTION,
                 "key": "tmp", "value": "private tmpfs" if cfg["tmp"] else "the root's own",
                 "status": "enforced" if cfg["tmp"] else "not-configured",
                 "weight": 0.0 if cfg["tmp"] else 1.0,
                 "expect": {"fs.tmp": "private", **mounts_at(["/tmp"])} if cfg["tmp"] else
                 ({} if root else {"fs.tmp": "host"})})
    rows.append({"control": "minimal /dev", "category": "filesystem.dev", "section": SECTION,
                 "key": "dev",
                 "value": "tmpfs with null zero full random urandom tty, private devpts, shm"
                          if cfg["dev"] else "the root's own",
                 "status": "enforced" if cfg["dev"] else "not-configured",
                 "weight": 0.0 if cfg["dev"] else 1.0,
                 "expect": {"fs.dev": "minimal", **mounts_at(["/dev"])} if cfg["dev"] else
                 ({} if root else {"fs.dev": "host"})})

    # kernel interfaces: /proc/sys and the masked /proc, /sys paths
    kernel_hidden = [p for p in hide if _under(p, "/proc") or _under(p, "/sys")]
    kernel_ro = [p for p in ro_paths if _under(p, "/proc") or _under(p, "/sys")]
    proc_sys_ro = (any(_under("/proc/sys", p) for p in ro_paths + kernel_hidden)
                   or (not cfg["proc"] and ro))
    parts = []
    if ro_paths:
        parts.append("read-only: " + ", ".join(ro_paths))
    if kernel_hidden:
        parts.append("masked: " + ", ".join(kernel_hidden))
    rows.append({"control": "kernel interfaces (/proc/sys, masked paths)",
                 "category": "filesystem.kernel", "section": SECTION, "key": "read_only_paths",
                 "value": "; ".join(parts) or "/proc/sys writable (fresh /proc)",
                 "status": "enforced" if proc_sys_ro else "not-configured",
                 "weight": 0.0 if proc_sys_ro and kernel_hidden else (0.3 if proc_sys_ro
                                                                        else 1.0),
                 "expect": {"fs.proc_sys": "ro" if proc_sys_ro else "rw",
                            **mounts_at(in_view(p) for p in kernel_hidden + kernel_ro)}})

    rows.append({"control": "fresh /proc", "section": SECTION, "key": "proc",
                 "value": "procfs of the sandbox's pid namespace (nosuid, nodev, noexec)"
                          if cfg["proc"] else "the root's own",
                 "status": "enforced" if cfg["proc"] else "not-configured",
                 "weight": 0.0 if cfg["proc"] else 1.0,
                 "expect": mounts_at(["/proc"]) if cfg["proc"] else {}})
    rows.append(_sys_row(ctx, cfg, ns, root, expected))
    mounts = [_bind_text(b) for b in cfg["binds"]]
    mounts += [f"tmpfs {parse_tmpfs(t)[0]}" for t in cfg["tmpfs"]]
    others = [p for p in hide if p not in kernel_hidden and p != "/home"]
    if others:
        mounts.append("hidden: " + ", ".join(others))
    other_ro = [p for p in ro_paths if p not in kernel_ro]
    if other_ro:
        mounts.append("read-only: " + ", ".join(other_ro))
    rw = any("(rw" in m for m in mounts)
    rows.append({"control": "bind and tmpfs mounts", "section": SECTION, "key": "binds",
                 "value": "; ".join(mounts) or "none",
                 "status": "enforced" if mounts else "not-configured",
                 "weight": 0.3 if rw else 0.0,
                 "expect": mounts_at(in_view(p) for p in
                                     [d for _, d, _ in binds] + others + other_ro
                                     + [parse_tmpfs(t)[0] for t in cfg["tmpfs"]])})
    rows.append(_cwd_row(ctx, cfg, plan, cwd_mode_, expected))
    return rows


def _cwd_row(ctx, cfg, plan, mode, expected):
    """The working directory: bound read-write, shown read-only by the view, or not shown
    (covered); ``mount:CWD`` is the mount the workload's working directory path shows, so a
    working directory that re-exposes a hidden or covered directory fails the live audit."""
    cwd = ctx.cwd
    on_top = _on_top(expected, cwd)
    if mode == "bind":
        value = f"{cwd}: bound read-write at its path (writable_cwd), below every mount above it"
    elif mode == "hidden":
        value = (f"{cwd}: covered by the view, not bound back (the workload starts in /)"
                 if not plan.get("root") else f"{cwd}: not in the given root (starts in /)")
        if on_top is not None:
            on_top = on_top.split(" ", 1)[0] + " * *"  # that cover's mount, whatever its flags
    else:
        value = (f"{cwd}: shown by the view itself ("
                 f"{'read-only' if cfg['read_only'] else 'as the root shows it'})")
    expect = {}
    if on_top is not None:
        expect[f"mount:{cwd}"] = on_top
    elif not plan.get("root") and cfg["read_only"]:
        expect[f"mount:{cwd}"] = "* * ro"
    return {"control": "working directory", "section": SECTION, "key": "writable_cwd",
            "value": value, "status": "enforced",
            "weight": 0.3 if mode == "bind" else 0.0, "expect": expect}


def _sys_row(ctx, cfg, ns, root, expected):
    """/sys: a fresh read-only sysfs of the sandbox's network namespace, with its cgroup
    hierarchies from inside the cgroup namespace; or the root's own."""
    if fresh_sysfs(root, ns):
        cgroup = ns.get("cgroup") is True
        cg_req = "cgroups" in ctx.config and ctx.config["cgroups"].get("required", True)
        value = ("fresh sysfs of the sandbox's network namespace, read-only; /sys/fs/cgroup: "
                 + ("the host's hierarchies mounted from inside the cgroup namespace, "
                    "read-only, each only where the sandbox has a group of its own"
                    if cgroup else "empty (no cgroup namespace)"))
        expect = {"fs.sys": "netns", "mount:/sys": expected.get("/sys", "/sys * ro"),
                  "fs.sys_cgroup": ("own" if cg_req else "own|none") if cgroup else "none"}
        return {"control": "/sys", "section": SECTION, "value": value,
                "status": "enforced", "weight": 0.0, "expect": expect}
    if root:
        shown = any(_under(p, "/sys") for p in expected)
        return {"control": "/sys", "section": SECTION,
                "value": "not mounted in the given root" if not shown else "bound or covered",
                "status": "enforced", "weight": 0.0,
                "expect": {} if shown else {"fs.sys": "none"}}
    return {"control": "/sys", "section": SECTION,
            "value": "the host's sysfs (" + ("read-only" if cfg["read_only"] else "writable")
                     + "): the host's devices and cgroup tree; network interfaces of the "
                       "sandbox's network namespace, the host's",
            "status": "not-configured", "weight": 1.0,
            "expect": {"fs.sys_cgroup": "host"}}
