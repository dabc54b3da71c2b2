"""Planning: profiles + plugins -> a compiled, cacheable launch plan.

A plan is plain data (dict) so that it can be cached with :mod:`marshal` and replayed by
:mod:`secrun.launch` without importing pluggy, tomllib or the profile code:

- ``config`` / ``origins``: the effective, validated profile and where each value came from;
- ``plan``: {plugin: what its ``secrun_compile`` returned} (e.g. seccomp BPF bytes);
- ``facts``: {name: value}, the facts the plugins published while compiling;
- ``reads``: {plugin: the fact names it declared it reads};
- ``notes``: remarks about the policy that are not errors (``secrun profiles check``);
- ``dispatch``: {stage: [(module, function, plugin, required)]} in pluggy's call order;
- ``plugins``: [(name, dist, version, file, builtin, sections)] of the loaded plugins;
- ``profiles``: [(name, path, source)] the files merged, in order;
- ``deps``: [(path, stat identity or None)]: files whose change invalidates the cache.

The plan cache
--------------
A cached plan is used only when all of this holds, and any failed check is a cache miss (the
plan is rebuilt from the profiles and stored again), never an error, a hang or another policy:

- **Key**: the cache file's entry carries the full key (:func:`cache_key`): secrun's version,
  the profile references, ``--set`` and ``--plugin`` arguments, the working directory, the
  caller's uid/gid/euid, ``SECRUN_PROFILE_PATH``, ``XDG_CONFIG_HOME``, ``HOME`` and the boot id.
- **Dependencies**: every file the plan was built from (profiles, every path probed while
  resolving them, the plugin modules and the files plugins declared) still has the identity
  it had: ``(mtime, ctime, size, inode, device)``, or is still missing.  The ctime is what
  catches an in-place rewrite of the same size with the mtime restored (``touch -r``): the
  kernel sets it on every change of content or metadata, and no unprivileged call sets it
  (only root, by moving the system clock).  A plan whose dependency changed while it was
  being built (ctime not older than the build's start, give or take a coarse kernel clock
  tick) is not stored: its identity could describe content newer than what was read.
  Not covered: a filesystem whose ctime granularity is a second or more (FAT, some network
  filesystems), where a same-size rewrite within the same second as the previous change and
  with the mtime restored keeps the identity; use ``--no-cache`` there.
- **The directory**: the cache is used (read or written) only when every component of its path,
  as given and, when a symlink is on the way, as resolved, is owned by root or the caller's
  euid and not writable by group or others; a sticky world-writable directory such as /tmp
  passes as an ancestor only, and a symlink only when root's or the euid's
  (:func:`_trusted_dir`).  Otherwise there is no cache (a miss, and nothing stored): root run
  with a caller's ``XDG_CACHE_HOME`` or ``HOME`` (``sudo -E``) never reads or writes where the
  caller chose.  Missing directories are made 0700, each only under a trusted parent.
- **The file itself**: opened with ``O_NOFOLLOW|O_NONBLOCK`` (a symlink or a FIFO planted at
  the path is refused, never followed or waited on) and used only when it is a regular file
  owned by the caller and not group/world-writable.
- **Integrity**: the file is ``MAGIC + blake2b-256(payload) + payload``; the digest is checked
  before the payload is unmarshalled, so a flipped bit, a truncation or a torn write is a miss
  rather than a plan that differs from the one built (a flipped byte in a marshalled int is a
  different uid).  After unmarshalling, the entry's shape is checked (a dict with the key, a
  plan dict whose fields have the types the launch path indexes).  The digest guards against
  corruption, not against an attacker: anyone who can write the caller's own 0700 cache
  directory can write a valid file with a digest of their own (and could as well edit the
  caller's profiles or shell start-up files).

Cost on a cached launch: importing ``_blake2`` (~0.1 ms, builtin; not ``hashlib``, whose
OpenSSL module costs ~17 ms), hashing the plan (~70 µs for 26 KB) and an ``lstat`` for each
component of the cache directory's path (the subcommand index's check, in the directory above,
leaves the plan's one to make).
"""

from __future__ import annotations

import os

from . import __version__
from .context import PlanContext, working_directory
from .errors import ConfigError, PluginError, ProfileError, SecrunError

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from types import ModuleType
    from typing import Any

    from .compose import RawProfile
    from .context import FactNames
    from .registry import Plugins

    # The compiled plan: the fields of the module docstring (marshal-able plain data).
    Plan = dict[str, Any]
    # A file's identity for the cache: (mtime, ctime, size, inode, device)
    Ident = tuple[int, int, int, int, int]

# A dependency whose ctime is this close to the build's start (or later) may have changed after
# its content was read: the kernel stamps ctime from its coarse clock, up to one tick (4 ms at
# HZ=250, 10 ms at HZ=100) behind the time the build started at.  (Kernels with multigrain
# timestamps, 6.13+ on ext4/xfs/btrfs/tmpfs, stamp a file whose ctime was looked at finely.)
_RACY_NS = 10_000_000


def build(profile_refs: Iterable[str], sets: Sequence[str] = (),
          extra_plugins: Iterable[str] = ()) -> Plan:
    from . import compose as profiles
    from . import facts as _facts

    probed: list[str] = []
    chain = profiles.load_chain(list(profile_refs), probed)
    plugins = _load_plugins(chain, extra_plugins)
    config, origins = profiles.merge(chain, plugins.sections, list(sets))
    active = plugins.active(config)
    reads = _facts.readable(plugins.facts)
    ctx = PlanContext(config, origins, reads, _facts.publishable(plugins.facts))
    ctx.facts.update(_facts.defaults(plugins.facts))
    try:
        order = _facts.compile_order(active, plugins.facts)
    except PluginError as e:
        raise ProfileError(f"profile {chain[-1].path}: {e}") from None
    plans = _compile(plugins, active, order, ctx, _Blame(chain, sets, origins))
    files = [p.path for p in chain] + probed + plugins.files() + ctx.deps
    return _assemble(plugins, active, ctx, plans, reads, chain, files)


def _load_plugins(chain: list[RawProfile], extra_plugins: Iterable[str]) -> Plugins:
    """The built-in plugins and the third-party ones the profiles (or --plugin) ask for; a
    plugin a profile asked for that cannot be loaded is that profile's error."""
    from . import compose as profiles
    from .registry import Plugins

    wanted = profiles.third_party_plugins(chain) + [p for p in extra_plugins]
    try:
        return Plugins(wanted)
    except PluginError as e:
        # name the profile that asked for the plugin (not --plugin: that is the command line)
        asking = next((prof.path for prof in chain for n in prof.data.get("plugins", [])
                       if f"plugin {n!r}" in str(e)), None)
        if asking is None:
            raise
        raise ProfileError(f"profile {asking}: plugins: {e}") from None


class _Blame:
    """Where a refused value came from, for a compile error's message."""

    __slots__ = ("chain", "sets", "origins")

    def __init__(self, chain: list[RawProfile], sets: Sequence[str],
                 origins: dict[str, dict[str, str]]) -> None:
        self.chain, self.sets, self.origins = chain, sets, origins

    def __call__(self, section: str, key: str | None) -> str:
        """The file (or --set) that set [section].key, else every file and --set that has the
        section (a value left at its default, or the section as a whole, was refused)."""
        from . import compose as profiles

        origin = self.origins.get(section, {}).get(key or "", "")
        if origin and origin != profiles.BUILTIN_DEFAULT:
            return _where(origin, profiles)
        having = [p.path for p in self.chain if isinstance(p.data.get(section), dict)]
        if any(profiles.parse_set(item)[0] == section for item in self.sets):
            having.append(profiles.COMMAND_LINE)
        if not having:
            return "profile"
        return ("profile " if having[0] != profiles.COMMAND_LINE else "") + ", ".join(having)


def _compile(plugins: Plugins, active: list[str], order: list[str], ctx: PlanContext,
             blame: _Blame) -> dict[str, Any]:
    """{plugin: its plan}: every active plugin's ``secrun_compile``, in fact order."""
    plans: dict[str, Any] = {}
    compilers = dict(plugins.order("secrun_compile", active))
    for plugin in order:
        fn = compilers.get(plugin)
        if fn is None:
            continue
        ctx.plugin = plugin
        try:
            got = fn(ctx=ctx)
            if got is not None:
                plans[plugin] = got
        except ConfigError as e:
            raise ProfileError(f"{blame(e.section, e.key)}: {e}") from None
        except SecrunError:
            raise
        except Exception as e:  # a plugin's bug is one line too, not a traceback
            raise _plugin_bug(plugins, plugin, ctx.config, blame, e) from None
    return plans


def _plugin_bug(plugins: Plugins, plugin: str, config: dict[str, Any], blame: _Blame,
                e: Exception) -> ProfileError:
    """A value the plugin's checks let through and its planning then choked on: name the
    section and the files that set it, and say whose bug it is."""
    section = next((s for s in plugins.info[plugin].sections if s in config), "?")
    text = f"{type(e).__name__}: {e}"
    return ProfileError(
        f"{blame(section, None)}: [{section}]: the {plugin} plugin could not plan "
        f"this section ({text[:200]}): a bug in that plugin, please report it")


def _assemble(plugins: Plugins, active: list[str], ctx: PlanContext, plans: dict[str, Any],
              reads: FactNames, chain: list[RawProfile], files: list[str]) -> Plan:
    """The plan's fields (see the module docstring)."""
    return {
        "version": __version__,
        "config": ctx.config,
        "origins": ctx.origins,
        "plan": plans,
        "facts": ctx.facts,
        "reads": {p: list(reads.get(p, ())) for p in active},
        "notes": ctx.notes,
        "dispatch": plugins.dispatch(active, ctx.config),
        "active": active,
        "plugins": [(i.name, i.dist, i.version, i.file, i.builtin, list(i.sections))
                    for i in plugins.info.values()],
        "profiles": [(p.name, p.path, p.source) for p in chain],
        "deps": [(f, _ident(f)) for f in dict.fromkeys(files)],
    }


def _where(origin: str, profiles: ModuleType) -> str:
    """'profile FILE' for the origin of a value, or 'command line' / 'profile'."""
    if origin and origin not in (profiles.COMMAND_LINE, profiles.BUILTIN_DEFAULT):
        return f"profile {origin}"
    return origin or "profile"


def _ident(path: str) -> Ident | None:
    """A file's identity for the cache: (mtime, ctime, size, inode, device), None if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


# --- the plan cache ---------------------------------------------------------------------------
# Keyed by everything that can change a plan besides the files in ``deps``: the arguments, the
# identity of the caller, the search path settings and the boot (kernel facts such as
# cap_last_cap are fixed for a boot).  The cache lives in the caller's own cache directory,
# used only when every directory on its path is root's or the caller's and not writable by
# others (:func:`_trusted_dir`).  What each check covers: see the module docstring.

MAGIC = b"secrun-plan/2\n"  # the format: MAGIC, blake2b-256 of the payload, marshal payload
_DIGEST_SIZE = 32
_MAX_SIZE = 64 << 20  # a plan is tens of KB; anything this large is not one of ours

# The fields of a plan and the types the launch path relies on.
_SHAPE = (("version", str), ("config", dict), ("origins", dict), ("plan", dict),
          ("facts", dict), ("reads", dict), ("notes", list), ("dispatch", dict),
          ("active", list), ("plugins", list), ("profiles", list),
          ("deps", list))


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "secrun", "plans")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _ns_kinds() -> tuple[str, ...]:
    """The namespace kinds this process sees (/proc/self/ns): fixed for a boot, unless /proc
    itself is not the kernel's (a plan made under a doctored /proc must not be taken where the
    real one shows more, or less)."""
    try:
        return tuple(sorted(os.listdir("/proc/self/ns")))
    except OSError:
        return ()


def cache_key(profile_refs: Iterable[str], sets: Iterable[str],
              extra_plugins: Iterable[str]) -> str:
    env = os.environ
    return repr((__version__, tuple(profile_refs), tuple(sets), tuple(extra_plugins),
                 working_directory(), os.getuid(), os.getgid(), os.geteuid(),
                 env.get("SECRUN_PROFILE_PATH"), env.get("XDG_CONFIG_HOME"), env.get("HOME"),
                 _boot_id(), _ns_kinds()))


def _cache_file(key: str) -> str:
    from zlib import crc32

    return os.path.join(cache_dir(), "%08x-%d.plan" % (crc32(key.encode()), len(key)))


# Directories found to be trusted ancestors in this process, {path: for this euid} (see
# :func:`_trusted_dir`).  Sound for the process's life: a directory that is root's or ours,
# below ones that are, can be replaced or made writable by others only by root or by us.
_TRUSTED_ANCESTORS: dict[str, int] = {}


def _trusted_dir(d: str, create: bool = False) -> bool:
    """Whether the cache may use the directory ``d`` (with ``create``, making missing directories
    0700, each only under a trusted parent).  The path is resolved here component by component,
    as the kernel would, and everything the resolution passes must be owned by root or by the
    euid: a symlink (and its target's path in turn), and every directory, which must also not
    be writable by group or others; a sticky directory writable by others (/tmp) passes as an
    ancestor only (what is below it is root's or ours, which others cannot remove or rename
    there).  Otherwise the cache is not used: root running with a caller's ``XDG_CACHE_HOME``
    or ``HOME`` (``sudo -E``) must not read or write where the caller chose.  Costs one
    ``lstat`` a component, none for a directory a previous check found trusted."""
    if not d.startswith("/"):
        return False
    euid = os.geteuid()
    todo = _names(d)
    path, final, links = "/", "/", 0  # final: where it ended, when not checked as the last yet
    if _TRUSTED_ANCESTORS.get("/") != euid and not _trusted_entry("/", euid, False):
        return False
    while todo:
        name = todo.pop()
        if name == "..":
            path = final = os.path.dirname(path)
            continue
        nxt = path + name if path == "/" else path + "/" + name
        last = not todo
        if not last and _TRUSTED_ANCESTORS.get(nxt) == euid:
            path = final = nxt
            continue
        st = _lstat(nxt, create)  # (made under ``path``, which passed)
        if st is None:
            return False
        if st.st_mode & 0o170000 == 0o120000:  # a symlink: root's or ours, then its target
            links += 1
            target = _link(nxt, st, euid, links)
            if target is None:
                return False
            path = final = "/" if target.startswith("/") else path
            todo += _names(target)
            continue
        if not _trusted_entry(nxt, euid, last, st):
            return False
        path, final = nxt, ""
    return not final or _trusted_entry(final, euid, True)


def _names(path: str) -> list[str]:
    """The components of ``path``, last first (a stack)."""
    return [n for n in reversed(path.split("/")) if n and n != "."]


def _lstat(path: str, create: bool) -> os.stat_result | None:
    """``lstat(path)``; with ``create``, a missing directory is made (0700) first."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        if not create:
            return None
    except OSError:
        return None
    try:
        os.mkdir(path, 0o700)
        return os.lstat(path)
    except OSError:
        return None


def _link(path: str, st: os.stat_result, euid: int, links: int) -> str | None:
    """The target of the symlink ``path`` when root or ``euid`` owns it and it is at most the
    40th link followed (the kernel's limit), else None."""
    if st.st_uid != 0 and st.st_uid != euid or links > 40:
        return None
    try:
        return os.readlink(path)
    except OSError:
        return None


def _trusted_entry(path: str, euid: int, last: bool, st: os.stat_result | None = None) -> bool:
    """``path`` is a directory owned by root or ``euid`` that only its owner may write (a sticky
    one also passes when not ``last``); it is then remembered as a trusted ancestor."""
    try:
        st = st or os.lstat(path)
    except OSError:
        return False
    mode = st.st_mode
    if st.st_uid != 0 and st.st_uid != euid or mode & 0o170000 != 0o040000 \
            or mode & 0o022 and (last or not mode & 0o1000):
        return False
    _TRUSTED_ANCESTORS[path] = euid
    return True


def _digest(payload: bytes) -> bytes:
    from _blake2 import blake2b

    return blake2b(payload, digest_size=_DIGEST_SIZE).digest()


def _seal(payload: bytes) -> bytes:
    """The cache file's bytes for a marshalled entry."""
    return MAGIC + _digest(payload) + payload


def _unseal(data: bytes) -> bytes | None:
    """The payload of a cache file's bytes, or None when the format or the digest is wrong."""
    start = len(MAGIC) + _DIGEST_SIZE
    if len(data) <= start or not data.startswith(MAGIC):
        return None
    payload = data[start:]
    if _digest(payload) != data[len(MAGIC):start]:
        return None
    return payload


def _read_regular(path: str) -> bytes | None:
    """The content of ``path`` if it is a regular file owned by us and not writable by
    others; None otherwise.  Never follows a symlink and never blocks on a FIFO."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() \
                or st.st_mode & 0o022 or st.st_size > _MAX_SIZE:
            return None
        chunks = []
        left = st.st_size + 1  # one more: a file that grew is read to its end, then refused
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return data if len(data) == st.st_size else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _well_formed(plan: object) -> bool:
    """The plan has every field, with the types the launch path and the cache check use."""
    if not isinstance(plan, dict):
        return False
    for field, kind in _SHAPE:
        if not isinstance(plan.get(field), kind):
            return False
    if plan["version"] != __version__:
        return False
    if not all(isinstance(rows, list) and all(_dispatch_row(row) for row in rows)
               for rows in plan["dispatch"].values()):
        return False
    if not all(_dep(dep) for dep in plan["deps"]):
        return False
    return all(isinstance(v, dict) for v in plan["config"].values())


def _dispatch_row(row: object) -> bool:
    """(module, function, plugin, required)"""
    return (isinstance(row, tuple) and len(row) == 4 and isinstance(row[0], str)
            and isinstance(row[1], str) and isinstance(row[2], str)
            and isinstance(row[3], bool))


def _dep(dep: object) -> bool:
    """(path, identity or None)"""
    return (isinstance(dep, tuple) and len(dep) == 2 and isinstance(dep[0], str)
            and (dep[1] is None or isinstance(dep[1], tuple)))


def load_cached(key: str) -> Plan | None:
    """The cached plan for ``key``, or None (a miss) when any check fails."""
    import marshal

    path = _cache_file(key)
    if not _trusted_dir(os.path.dirname(path)):
        return None
    data = _read_regular(path)
    if data is None:
        return None
    payload = _unseal(data)
    if payload is None:
        return None
    try:
        entry = marshal.loads(payload)
    except Exception:  # whatever marshal makes of bad bytes is a miss
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    plan = entry.get("plan")
    if not isinstance(plan, dict) or not _well_formed(plan):
        return None
    for f, ident in plan["deps"]:
        if _ident(f) != ident:
            return None
    return plan


def _changed_since(plan: Plan, start_ns: int) -> bool:
    """Whether a dependency changed after (or just before) ``start_ns``."""
    limit = start_ns - _RACY_NS
    return any(ident is not None and ident[1] >= limit for _f, ident in plan["deps"])


def store(key: str, plan: Plan) -> None:
    import marshal

    path = _cache_file(key)
    d = os.path.dirname(path)
    try:
        data = _seal(marshal.dumps({"key": key, "plan": plan}))
        if not _trusted_dir(d, create=True):
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except (OSError, ValueError):
        # An unwritable cache only costs speed; an unmarshallable plan is a plugin bug that
        # the contract tests catch.  Neither may stop a launch.
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass


def get(profile_refs: Iterable[str], sets: Sequence[str] = (),
        extra_plugins: Iterable[str] = (), use_cache: bool = True) -> Plan:
    """The plan for these arguments, from the cache when it is still valid."""
    if not use_cache or os.environ.get("SECRUN_NO_CACHE"):
        return build(profile_refs, sets, extra_plugins)
    key = cache_key(profile_refs, sets, extra_plugins)
    plan = load_cached(key)
    if plan is None:
        import time

        start = time.time_ns()
        plan = build(profile_refs, sets, extra_plugins)
        if not _changed_since(plan, start):
            store(key, plan)
    return plan
