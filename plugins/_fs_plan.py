"""Planning half of the ``filesystem`` plugin: the section's schema, parsing and checks of its
entries, ``secrun_compile`` (the ready list of mount operations the ``mounts`` stage loops over)
and ``secrun_audit``.  Imported only on a plan-cache miss, by ``secrun audit`` and ``secrun
profiles``; a cached launch never loads it.
"""

import os

from secrun.errors import ConfigError
from secrun.plugins import _fs_mount as k
from secrun.schema import Field, Section

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
    for o in opts:
        key, eq, val = o.partition("=")
        if eq:
            if key not in TMPFS_DATA or not val:
                raise ValueError(f"tmpfs {dst}: unknown option {o!r} "
                                 f"(known: {', '.join(FLAG_WORDS + TMPFS_DATA)})")
            if key == "mode" and not all(c in "01234567" for c in val):
                raise ValueError(f"tmpfs {dst}: mode={val} is not octal")
        elif o not in FLAG_WORDS:
            raise ValueError(f"tmpfs {dst}: unknown option {o!r} "
                             f"(known: {', '.join(FLAG_WORDS + TMPFS_DATA)})")
    return dst, opts


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
              "bind secrun's working directory read-write at the same path (skipped, with a "
              "warning, when it is / itself)"),
        Field("visible_cwd", bool, True,
              "when the view hides or covers secrun's working directory (a hidden /home, a "
              "tmpfs over /var/tmp, the private /tmp), bind it back read-only at the same "
              "path, so `secrun ./app` finds ./app; never a home directory itself or a hidden "
              "path itself"),
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

def _dest(key, path):
    """Check a destination path (absolute, no '..', not /) and normalise it."""
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


def compile_plan(ctx):
    """The section -> the plan: ``root`` ("" for the host's), ``root_b`` (what is cloned, as
    bytes), ``root_set`` (its MOUNT_ATTR_* flags), ``host_dev`` (device nodes opened before
    anything is covered) and ``ops``, in order, each ready for the stage:

    - ``("proc",)``, ``("dev",)``;
    - ``("tmpfs", dst, rel, attrs, options, top)``: ``top`` detaches the mount already there;
    - ``("hide", dst, rel, private)``: ``private`` when something is mounted inside later (a
      tmpfs of its own, read-only at the end); the others share one read-only empty tmpfs;
    - ``("bind", src, src_b, dst, rel, set, clr)``, ``("cwd", path, path_b, rel, writable)``;
    - ``("ro", dst, rel)``.
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
    ops: list[tuple] = []
    if cfg["proc"]:
        ops.append(("proc",))
    if cfg["dev"]:
        ops.append(("dev",))
    if cfg["tmp"]:
        ops.append(("tmpfs", "/tmp", b"tmp", NOSUID | NODEV, ((b"mode", b"1777"),), True))
    hidden = []
    for path in cfg["hide"]:
        dst = _dest("hide", path)
        _check_beneath("hide", view, dst)
        hidden.append(dst)
    inside: list[str] = []  # destinations where mount points may be created
    later: list[tuple] = []
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
    for entry in cfg["binds"]:
        try:
            src, dst, opts = parse_bind(entry)
        except ValueError as e:
            raise ConfigError(SECTION, "binds", str(e)) from None
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
    if cfg["writable_cwd"]:
        later.append(("cwd", ctx.cwd, os.fsencode(ctx.cwd), _rel(ctx.cwd), True))
        inside.append(ctx.cwd)
    elif _cwd_shown_read_only(ctx, cfg, hidden):
        later.append(("cwd", ctx.cwd, os.fsencode(ctx.cwd), _rel(ctx.cwd), False))
        inside.append(ctx.cwd)
    for path in cfg["read_only_paths"]:
        dst = _dest("read_only_paths", path)
        _check_beneath("read_only_paths", view, dst)
        later.append(("ro", dst, _rel(dst)))
    # A hidden directory something is mounted inside of (by its path, or through a symlink
    # present now) gets a writable tmpfs of its own; see docs/filesystem.md.
    real = [_in_view(root, d) for d in inside]
    for dst in hidden:
        h = _in_view(root, dst)
        private = any(_under(d, dst) for d in inside) or any(_under(d, h) for d in real)
        ops.append(("hide", dst, _rel(dst), private))
    ops += later
    host_dev = k.DEV_NODES if cfg["dev"] else ((b"null",) if hidden else ())
    ctx.plan[SECTION] = {"root": root, "root_b": os.fsencode(root or "/"),
                         "root_set": root_set, "host_dev": host_dev, "ops": ops}


# --- audit ---------------------------------------------------------------------------------

def _cwd_shown_read_only(ctx, cfg, hidden) -> bool:
    """Whether the working directory is bound back read-only (``visible_cwd``): only on the
    host's root, only when the view would hide or cover it, and never when it is a hidden
    path itself or a user's home directory (that would show the whole home)."""
    cwd = ctx.cwd
    if not cfg["visible_cwd"] or cfg["root"] or cwd == "/":
        return False
    covering = list(hidden) + [parse_tmpfs(t)[0] for t in cfg["tmpfs"]]
    covering += [d for d, on in (("/tmp", cfg["tmp"]), ("/dev", cfg["dev"]),
                                 ("/proc", cfg["proc"])) if on]
    if not any(_under(cwd, d) for d in covering):
        return False  # visible (read-only) through the root already
    if cwd in hidden:
        return False
    import pwd

    ctx.depends_on("/etc/passwd")
    homes = {os.path.normpath(pw.pw_dir) for pw in pwd.getpwall() if pw.pw_dir.startswith("/")}
    return cwd not in homes


def _bind_text(entry):
    src, dst, opts = parse_bind(entry)
    mode = "rw" if "rw" in opts else "ro"
    return f"{src}" + (f" -> {dst}" if dst != src else "") + f" ({mode})"


def _under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


def audit(ctx):
    """Rows for the control table's filesystem categories (root, home, tmp, dev, kernel), each
    with the mountinfo fact ``secrun audit --live`` checks from inside."""
    cfg = ctx.config[SECTION]
    plan = ctx.plan.get(SECTION, {})
    root = plan.get("root", cfg["root"])
    ro = cfg["read_only"]
    hide, ro_paths = cfg["hide"], cfg["read_only_paths"]
    binds = [parse_bind(b) for b in cfg["binds"]]
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
    if _under(ctx.cwd, "/home") and (cfg["writable_cwd"] or _cwd_shown_read_only(
            ctx, cfg, [_dest("hide", h) for h in hide])):
        into_home.append(ctx.cwd)
    if "/home" in hide:
        home, w = ("hidden", 0.0) if not into_home else ("hidden except " + ", ".join(
            into_home), 0.2)
        expect = {} if into_home else {"fs.home": "hidden"}
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
                 "expect": {"fs.tmp": "private"} if cfg["tmp"] else
                 ({} if root else {"fs.tmp": "host"})})
    rows.append({"control": "minimal /dev", "category": "filesystem.dev", "section": SECTION,
                 "key": "dev",
                 "value": "tmpfs with null zero full random urandom tty, private devpts, shm"
                          if cfg["dev"] else "the root's own",
                 "status": "enforced" if cfg["dev"] else "not-configured",
                 "weight": 0.0 if cfg["dev"] else 1.0,
                 "expect": {"fs.dev": "minimal"} if cfg["dev"] else
                 ({} if root else {"fs.dev": "host"})})

    # kernel interfaces: /proc/sys and the masked /proc, /sys paths
    kernel_hidden = [p for p in hide if _under(p, "/proc") or _under(p, "/sys")]
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
                 "expect": {"fs.proc_sys": "ro" if proc_sys_ro else "rw"}})

    rows.append({"control": "fresh /proc", "section": SECTION, "key": "proc",
                 "value": "procfs of the sandbox's pid namespace (nosuid, nodev, noexec)"
                          if cfg["proc"] else "the root's own",
                 "status": "enforced" if cfg["proc"] else "not-configured",
                 "weight": 0.0 if cfg["proc"] else 1.0})
    mounts = [_bind_text(b) for b in cfg["binds"]]
    if cfg["writable_cwd"]:
        mounts.append(f"{ctx.cwd} (rw, the working directory)")
    elif _cwd_shown_read_only(ctx, cfg, [_dest("hide", h) for h in hide]):
        mounts.append(f"{ctx.cwd} (ro, the working directory, shown through the masks)")
    mounts += [f"tmpfs {parse_tmpfs(t)[0]}" for t in cfg["tmpfs"]]
    others = [p for p in hide if p not in kernel_hidden and p != "/home"]
    if others:
        mounts.append("hidden: " + ", ".join(others))
    rw = any("(rw" in m for m in mounts)
    rows.append({"control": "bind and tmpfs mounts", "section": SECTION, "key": "binds",
                 "value": "; ".join(mounts) or "none",
                 "status": "enforced" if mounts else "not-configured",
                 "weight": 0.3 if rw else 0.0})
    return rows
