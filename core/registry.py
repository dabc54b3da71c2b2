"""Loading plugins with pluggy.  Planning-time only: a cached launch never imports this.

Every plugin is an entry point of the group ``secrun.plugins``.  The built-in ones are those of
secrun's own distribution: they are read from secrun's own ``entry_points.txt`` (one small file,
not a scan of every installed distribution, which costs tens of milliseconds), always loaded,
in the order that file lists them.  Their result is cached with the plan, so a launch from the
cache reads no entry points at all.

Third-party plugins are loaded only when asked for: by a profile's ``plugins = [...]`` key or
by ``--plugin NAME``.  A root-run sandbox launcher must not run arbitrary installed code by
surprise, so merely installing a distribution with a ``secrun.plugins`` entry point changes no
launch.  ``secrun plugins`` lists (and imports) every installed one.
"""

from __future__ import annotations

import importlib
import os
import sys

import pluggy

from . import __version__, hookspecs
from .commands import entry_point_group
from .errors import PluginError
from .facts import Facts
from .stages import STAGE_NAMES, hook_name

TYPE_CHECKING = False  # (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from importlib.metadata import EntryPoint
    from types import ModuleType
    from typing import Any

    from .schema import Section

    # the cached launch's call table: {stage: [(module, function, plugin, required)]}
    Dispatch = dict[str, list[tuple[str, str, str, bool]]]

GROUP = "secrun.plugins"


def builtin_entry_points() -> dict[str, str]:
    """{name: module} of the ``secrun.plugins`` entry points of secrun's own distribution, in
    the order its ``entry_points.txt`` lists them (found on ``sys.path`` as
    ``importlib.metadata.distribution("secrun")`` would find it)."""
    for d in sys.path:
        try:
            names = sorted(e for e in os.listdir(d or ".")
                           if e.startswith("secrun-") and e.endswith(".dist-info"))
        except OSError:
            continue
        for name in names:
            if name[len("secrun-"):-len(".dist-info")] != __version__:
                continue
            try:
                with open(os.path.join(d, name, "entry_points.txt")) as f:
                    return entry_point_group(f.read(), GROUP)
            except OSError:
                continue
    raise PluginError(f"secrun {__version__}'s own entry points (secrun-{__version__}.dist-info/"
                      f"entry_points.txt) are not on the module search path: reinstall secrun")


class PluginInfo:
    __slots__ = ("name", "module", "dist", "version", "builtin", "sections")

    def __init__(self, name: str, module: ModuleType, dist: str, version: str,
                 builtin: bool) -> None:
        self.name, self.module, self.dist, self.version = name, module, dist, version
        self.builtin = builtin
        self.sections: list[str] = []

    @property
    def file(self) -> str:
        f = getattr(self.module, "__file__", "") or ""
        return os.path.realpath(f) if f else ""


def _entry_points() -> dict[str, EntryPoint]:
    """{name: entry point} of the installed plugins; of two with one name, the first on the
    search path (as the subcommand index takes it, :mod:`secrun.commands`)."""
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)
    return found


def _load(name: str, ep: EntryPoint) -> PluginInfo:
    """Import a third-party plugin's module; any failure is a PluginError naming it."""
    dist = getattr(ep.dist, "name", "?") if ep.dist else "?"
    ver = getattr(ep.dist, "version", "?") if ep.dist else "?"
    try:
        module = ep.load()
    except Exception as e:  # any import failure is the plugin's
        raise PluginError(f"plugin {name!r} (distribution {dist} {ver}) failed to "
                          f"import: {type(e).__name__}: {e}") from None
    if not hasattr(module, "__file__") or not hasattr(module, "__name__"):
        raise PluginError(f"plugin {name!r} (distribution {dist} {ver}): entry "
                          f"point {ep.value!r} must name a module")
    return PluginInfo(name, module, dist, ver, False)


class Plugins:
    """The registered plugins, their sections and hooks."""

    def __init__(self, third_party: Iterable[str] = (), all_installed: bool = False,
                 keep_going: bool = False) -> None:
        self.pm = pluggy.PluginManager("secrun")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        # With keep_going (for `secrun plugins`), a broken plugin is recorded here instead of
        # stopping everything: {name: error text}.
        self.errors: dict[str, str] = {}
        self.keep_going = keep_going
        for name, value in builtin_entry_points().items():
            module = importlib.import_module(value.partition(":")[0].strip())
            self._register(PluginInfo(name, module, "secrun", __version__, True))
        self._load_third_party(list(third_party), all_installed)
        self.sections: dict[str, Section] = {}
        self.owner: dict[str, str] = {}
        for name, info in self.info.items():
            self._claim_sections(name, info)
        self.facts: dict[str, Facts] = {}
        for name, info in self.info.items():
            self._declare_facts(name, info)

    def _broken(self, name: str, err: str) -> None:
        """A plugin breaks the contract: an error, or with keep_going a recorded one."""
        if not self.keep_going:
            raise PluginError(err)
        self.errors[name] = err

    def _load_third_party(self, wanted: list[str], all_installed: bool) -> None:
        """Register the installed plugins asked for by name (or all of them)."""
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
            try:
                self._register(_load(name, ep))
            except PluginError as e:
                self._broken(name, str(e))

    def _claim_sections(self, name: str, info: PluginInfo) -> None:
        """The profile sections the plugin declares; a section has one owner."""
        impl = getattr(info.module, "secrun_profile_sections", None)
        if impl is None:
            return
        for sec in impl() or ():
            if sec.name in self.owner:
                self._broken(name, f"plugins {self.owner[sec.name]!r} and {name!r} "
                                   f"({info.dist} {info.version}) both claim the profile "
                                   f"section [{sec.name}]")
                continue
            self.owner[sec.name] = name
            self.sections[sec.name] = sec
            info.sections.append(sec.name)

    def _declare_facts(self, name: str, info: PluginInfo) -> None:
        """The facts the plugin declares (none, when it has no ``secrun_facts``)."""
        impl = getattr(info.module, "secrun_facts", None)
        declared = impl() if impl is not None else None
        if declared is not None and not isinstance(declared, Facts):
            self._broken(name, f"plugin {name!r}: secrun_facts must return a secrun.facts.Facts")
            return
        self.facts[name] = declared or Facts()

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

    def active(self, config: dict[str, Any]) -> list[str]:
        """Plugins that own at least one section present in the effective profile."""
        return [n for n, i in self.info.items() if any(s in config for s in i.sections)]

    def hooks_of(self, name: str) -> list[str]:
        module = self.info[name].module
        return [c.name for c in self.pm.get_hookcallers(module) or ()]

    def call(self, hook: str, active: list[str], **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a hook on the active plugins only, in pluggy's order; returns [(plugin, result)]."""
        out = []
        for plugin, fn in self.order(hook, active):
            out.append((plugin, fn(**kwargs)))
        return out

    def order(self, hook: str, active: list[str]) -> list[tuple[str, Callable[..., Any]]]:
        """(plugin name, function) in the order pluggy calls them."""
        caller = getattr(self.pm.hook, hook)
        impls = list(reversed(caller.get_hookimpls()))
        return [(i.plugin_name, i.function) for i in impls if i.plugin_name in active]

    def dispatch(self, active: list[str], config: dict[str, Any]) -> Dispatch:
        """The cached launch's call table: {stage: [(module, function, plugin, required)]}."""
        table: Dispatch = {}
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

    def categories(self) -> list[tuple[str, Any]]:
        """Every registered plugin's scored audit categories, [(plugin, Category)]."""
        out = []
        for name, fn in self.order("secrun_audit_categories", list(self.info)):
            for cat in fn() or ():
                out.append((name, cat))
        return out

    def files(self) -> list[str]:
        """Files whose change invalidates a cached plan: the planning code, every file of the
        built-in plugins (their packages and data), and every Python file of a third-party
        plugin's top-level package (or its module, when it is not in a package)."""
        core = os.path.dirname(os.path.abspath(__file__))
        own = [os.path.join(core, f) for f in ("registry.py", "compose.py", "plan.py", "facts.py",
                                                "schema.py", "hookspecs.py", "stages.py",
                                                "context.py", "kernel.py", "launch.py")]
        own += _tree(os.path.join(core, "plugins"))
        for info in self.info.values():
            if info.builtin or not info.file:
                continue
            top = sys.modules.get(info.module.__name__.partition(".")[0])
            paths = getattr(top, "__path__", None) or ()
            own += [f for d in paths for f in _tree(d) if f.endswith(".py")] or [info.file]
        return own


def _tree(root: str) -> list[str]:
    """Every file under ``root`` (no caches, no hidden files), in a stable order."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not x.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if not f.startswith(".")]
    return out
