"""Loading plugins with pluggy.  Planning-time only: a cached launch never imports this.

Built-in plugins are the modules named in :data:`BUILTINS`; they are also declared as entry
points (group ``secrun.plugins``) in secrun's own ``pyproject.toml``, and a contract test keeps
both lists equal.  The launch path does not scan entry points for them.

Third-party plugins are loaded only when asked for: by a profile's ``plugins = [...]`` key or
by ``--plugin NAME``.  A root-run sandbox launcher must not run arbitrary installed code by
surprise, so merely installing a distribution with a ``secrun.plugins`` entry point changes no
launch.  ``secrun plugins`` lists (and imports) every installed one.
"""

import importlib
import os

import pluggy

from . import __version__, hookspecs
from .errors import PluginError
from .stages import STAGE_NAMES, hook_name

GROUP = "secrun.plugins"
BUILTINS = ("process", "namespaces", "filesystem", "identity", "capabilities", "seccomp", "cgroups",
            "apparmor", "selinux")


class PluginInfo:
    __slots__ = ("name", "module", "dist", "version", "builtin", "sections")

    def __init__(self, name, module, dist, version, builtin):
        self.name, self.module, self.dist, self.version = name, module, dist, version
        self.builtin = builtin
        self.sections: list = []

    @property
    def file(self) -> str:
        f = getattr(self.module, "__file__", "") or ""
        return os.path.realpath(f) if f else ""


def _entry_points():
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=GROUP)}


class Plugins:
    """The registered plugins, their sections and hooks."""

    def __init__(self, third_party=(), all_installed=False, keep_going=False):
        self.pm = pluggy.PluginManager("secrun")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        # With keep_going (for `secrun plugins`), a broken plugin is recorded here instead of
        # stopping everything: {name: error text}.
        self.errors: dict[str, str] = {}
        for name in BUILTINS:
            module = importlib.import_module(f"secrun.plugins.{name}")
            self._register(PluginInfo(name, module, "secrun", __version__, True))
        wanted = list(third_party)
        eps = None
        if wanted or all_installed:
            eps = _entry_points()
        if all_installed and eps:
            wanted += [n for n, ep in eps.items() if n not in wanted and n not in self.info]
        for name in wanted:
            if name in self.info:
                continue
            ep = (eps or {}).get(name)
            if ep is None:
                raise PluginError(f"plugin {name!r} is not installed "
                                  f"(no entry point {name!r} in group {GROUP})")
            dist = getattr(ep.dist, "name", "?") if ep.dist else "?"
            ver = getattr(ep.dist, "version", "?") if ep.dist else "?"
            try:
                try:
                    module = ep.load()
                except Exception as e:  # noqa: BLE001 - any import failure is the plugin's
                    raise PluginError(f"plugin {name!r} (distribution {dist} {ver}) failed to "
                                      f"import: {type(e).__name__}: {e}") from None
                if not hasattr(module, "__file__") or not hasattr(module, "__name__"):
                    raise PluginError(f"plugin {name!r} (distribution {dist} {ver}): entry "
                                      f"point {ep.value!r} must name a module")
                self._register(PluginInfo(name, module, dist, ver, False))
            except PluginError as e:
                if not keep_going:
                    raise
                self.errors[name] = str(e)
        self.sections: dict = {}
        self.owner: dict[str, str] = {}
        for name, info in self.info.items():
            impl = getattr(info.module, "secrun_profile_sections", None)
            if impl is None:
                continue
            for sec in impl() or ():
                if sec.name in self.owner:
                    err = (f"plugins {self.owner[sec.name]!r} and {name!r} "
                           f"({info.dist} {info.version}) both claim the profile section "
                           f"[{sec.name}]")
                    if not keep_going:
                        raise PluginError(err)
                    self.errors[name] = err
                    continue
                self.owner[sec.name] = name
                self.sections[sec.name] = sec
                info.sections.append(sec.name)

    def _register(self, info: PluginInfo) -> None:
        try:
            self.pm.register(info.module, info.name)
            for impl in self.pm.get_hookcallers(info.module) or ():
                for hi in impl.get_hookimpls():
                    if hi.plugin is info.module and (hi.wrapper or hi.hookwrapper):
                        raise PluginError(f"plugin {info.name!r}: hook wrappers are not "
                                          f"supported ({impl.name})")
        except pluggy.PluginValidationError as e:
            raise PluginError(f"plugin {info.name!r} (distribution {info.dist} "
                              f"{info.version}): {e}") from None
        self.info[info.name] = info

    def active(self, config) -> list[str]:
        """Plugins that own at least one section present in the effective profile."""
        return [n for n, i in self.info.items() if any(s in config for s in i.sections)]

    def hooks_of(self, name: str) -> list[str]:
        module = self.info[name].module
        return [c.name for c in self.pm.get_hookcallers(module) or ()]

    def call(self, hook: str, active: list[str], **kwargs):
        """Call a hook on the active plugins only, in pluggy's order; returns [(plugin, result)]."""
        out = []
        for plugin, fn in self.order(hook, active):
            out.append((plugin, fn(**kwargs)))
        return out

    def order(self, hook: str, active: list[str]):
        """(plugin name, function) in the order pluggy calls them."""
        caller = getattr(self.pm.hook, hook)
        impls = list(reversed(caller.get_hookimpls()))
        return [(i.plugin_name, i.function) for i in impls if i.plugin_name in active]

    def dispatch(self, active: list[str], config) -> dict:
        """The cached launch's call table: {stage: [(module, function, plugin, required)]}."""
        table = {}
        for stage in STAGE_NAMES:
            rows = []
            for plugin, fn in self.order(hook_name(stage), active):
                info = self.info[plugin]
                required = any(config.get(s, {}).get("required", True)
                               for s in info.sections if s in config)
                rows.append((fn.__module__, fn.__name__, plugin, required))
            if rows:
                table[stage] = rows
        return table

    def files(self) -> list[str]:
        """Files whose change invalidates a cached plan: the planning code, every built-in
        plugin module with its private helpers and data, and third-party plugin modules."""
        core = os.path.dirname(os.path.abspath(__file__))
        own = [os.path.join(core, f) for f in ("registry.py", "profiles.py", "plan.py",
                                                "schema.py", "hookspecs.py", "launch.py")]
        builtin_dir = os.path.join(core, "plugins")
        for d in (builtin_dir, os.path.join(builtin_dir, "data")):
            try:
                own += [os.path.join(d, f) for f in sorted(os.listdir(d))
                        if not f.startswith(".") and f != "__pycache__"]
            except OSError:
                pass
        return own + [i.file for i in self.info.values() if i.file and not i.builtin]
