"""Planning: profiles + plugins -> a compiled, cacheable launch plan.

A plan is plain data (dict) so that it can be cached with :mod:`marshal` and replayed by
:mod:`secrun.launch` without importing pluggy, tomllib or the profile code:

- ``config`` / ``origins``: the effective, validated profile and where each value came from;
- ``plan``: what each plugin's ``secrun_compile`` precomputed (e.g. seccomp BPF bytes);
- ``dispatch``: {stage: [(module, function, plugin, required)]} in pluggy's call order;
- ``plugins``: [(name, dist, version, file, builtin, sections)] of the loaded plugins;
- ``profiles``: [(name, path, source)] the files merged, in order;
- ``deps``: [(path, stat identity or None)]: files whose change invalidates the cache.
"""

import os

from . import __version__
from .context import Context
from .errors import ConfigError, ProfileError


def build(profile_refs, sets=(), extra_plugins=()) -> dict:
    from . import profiles
    from .registry import Plugins

    probed: list = []
    chain = profiles.load_chain(list(profile_refs), probed)
    wanted = profiles.third_party_plugins(chain) + [p for p in extra_plugins]
    plugins = Plugins(wanted)
    config, origins = profiles.merge(chain, plugins.sections, list(sets))
    active = plugins.active(config)
    ctx = Context(config, origins, {})
    for plugin, fn in plugins.order("secrun_compile", active):
        ctx.plugin = plugin
        try:
            fn(ctx=ctx)
        except ConfigError as e:
            origin = origins.get(e.section, {}).get(e.key or "", "")
            where = f"profile {origin}" if origin and origin not in (
                profiles.COMMAND_LINE, profiles.BUILTIN_DEFAULT) else (origin or "profile")
            raise ProfileError(f"{where}: {e}") from None
    dispatch = plugins.dispatch(active, config)
    files = [p.path for p in chain] + probed + plugins.files() + ctx.deps
    return {
        "version": __version__,
        "config": config,
        "origins": origins,
        "plan": ctx.plan,
        "dispatch": dispatch,
        "active": active,
        "plugins": [(i.name, i.dist, i.version, i.file, i.builtin, list(i.sections))
                    for i in plugins.info.values()],
        "profiles": [(p.name, p.path, p.source) for p in chain],
        "deps": [(f, _ident(f)) for f in dict.fromkeys(files)],
    }


def _ident(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


# --- the plan cache ---------------------------------------------------------------------------
# Keyed by everything that can change a plan besides the files in ``deps``: the arguments, the
# identity of the caller, the search path settings and the boot (kernel facts such as
# cap_last_cap are fixed for a boot).  The cache lives in the caller's own cache directory,
# which must be owned by the caller and not writable by others, or it is not used.

def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "secrun", "plans")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def cache_key(profile_refs, sets, extra_plugins) -> str:
    env = os.environ
    return repr((__version__, tuple(profile_refs), tuple(sets), tuple(extra_plugins),
                 os.getcwd(), os.getuid(), os.getgid(), os.geteuid(),
                 env.get("SECRUN_PROFILE_PATH"), env.get("XDG_CONFIG_HOME"), env.get("HOME"),
                 _boot_id()))


def _cache_file(key: str) -> str:
    from zlib import crc32

    return os.path.join(cache_dir(), "%08x-%d.plan" % (crc32(key.encode()), len(key)))


def _safe_dir(d: str) -> bool:
    try:
        st = os.stat(d)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def load_cached(key: str):
    import marshal

    path = _cache_file(key)
    if not _safe_dir(os.path.dirname(path)):
        return None
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return None
            entry = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    plan = entry["plan"]
    for f, ident in plan["deps"]:
        if _ident(f) != ident:
            return None
    return plan


def store(key: str, plan: dict) -> None:
    import marshal

    path = _cache_file(key)
    d = os.path.dirname(path)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        if not _safe_dir(d):
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            marshal.dump({"key": key, "plan": plan}, f)
        os.replace(tmp, path)
    except (OSError, ValueError):
        # An unwritable cache only costs speed; an unmarshallable plan is a plugin bug that
        # the contract tests catch.  Neither may stop a launch.
        try:
            os.unlink(tmp)
        except (OSError, UnboundLocalError):
            pass


def get(profile_refs, sets=(), extra_plugins=(), use_cache=True) -> dict:
    """The plan for these arguments, from the cache when it is still valid."""
    if not use_cache or os.environ.get("SECRUN_NO_CACHE"):
        return build(profile_refs, sets, extra_plugins)
    key = cache_key(profile_refs, sets, extra_plugins)
    plan = load_cached(key)
    if plan is None:
        plan = build(profile_refs, sets, extra_plugins)
        store(key, plan)
    return plan
