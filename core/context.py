"""The objects hooks receive: one per phase, each with only what that phase may use.

- :class:`PlanContext` for ``secrun_compile`` (planning, in secrun, cached);
- :class:`RunContext` for the stage hooks and ``secrun_cleanup`` (a launch);
- :class:`AuditContext` for ``secrun_audit`` and ``secrun_live_facts``.

Each hook sees its own plugin's plan and state only (``ctx.plan``, ``ctx.state``); what one
plugin tells others goes through declared *facts* (``ctx.publish`` at compile time,
``ctx.fact`` anywhere), see ``docs/plugins.md``.  Kept import-free: a :class:`RunContext` is
built on every launch.
"""

from __future__ import annotations

import os
import sys
from time import perf_counter

from .errors import PluginError, SecrunError

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    # {section: {key: value}}: the validated, merged profile
    Config = dict[str, dict[str, Any]]
    # {section: {key: "file"}}: where each value came from
    Origins = dict[str, dict[str, str]]
    # {plugin: the facts it may read (or publish)}
    FactNames = dict[str, tuple[str, ...]]

# When secrun started (close enough: this module is imported first thing on every launch);
# -v prefixes each line with the milliseconds since then.
T0 = perf_counter()


def working_directory() -> str:
    """os.getcwd(), or the one-line error a removed (or unreachable) working directory gets:
    every relative path, the plan cache's key and the sandbox's view depend on it."""
    try:
        return os.getcwd()
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        raise SecrunError(f"the working directory is gone or unreachable (getcwd: {why}): "
                          f"change to an existing directory") from None


class _Context:
    """What every phase offers.

    - ``config``: {section: {key: value}}, the validated, merged profile (read-only).
    - ``origins``: {section: {key: "file"}}, where each value came from.
    - ``plugin``: the name of the plugin whose hook is running.
    - ``verbose``: the number of ``-v`` given.
    - ``cwd``, ``uid``, ``gid``: the directory secrun was started from and the caller's ids
      (all three are part of the plan cache's key).
    """

    __slots__ = ("config", "origins", "verbose", "plugin", "warnings", "_facts", "_requires",
                 "cwd", "uid", "gid")

    def __init__(self, config: Config, origins: Origins, facts: dict[str, object],
                 requires: FactNames, verbose: int = 0) -> None:
        self.config = config
        self.origins = origins
        self.verbose = verbose
        self.plugin: str | None = None
        self.warnings: list[str] = []
        self._facts = facts
        self._requires = requires
        self.cwd = working_directory()
        self.uid = os.getuid()
        self.gid = os.getgid()

    def section(self, name: str) -> dict[str, Any] | None:
        """The section's config, or None when the profile does not have it."""
        return self.config.get(name)

    def required(self, section: str) -> bool:
        """Whether a failure of the section's controls stops the launch (``required = true``,
        the default) rather than being reported (best-effort)."""
        return bool(self.config.get(section, {}).get("required", True))

    def fact(self, name: str, default: object = None) -> Any:
        """The value of a fact another plugin (or this one) published at compile time, or
        ``default`` when no active plugin published it.  A plugin may read only the facts it
        declared in ``requires`` (or ``publishes``) of its ``secrun_facts``: reading an
        undeclared one is a plugin bug, and an error.  (Typed ``Any``: a fact's type is what
        its publisher declared, e.g. ``namespaces.made`` is a list of str.)"""
        declared = self._requires.get(self.plugin or "", ())
        if name not in declared:
            raise PluginError(f"plugin {self.plugin!r} reads the fact {name!r} without "
                              f"declaring it (secrun_facts: requires)")
        return self._facts.get(name, default)

    def warn(self, text: str) -> None:
        """Report a best-effort control that was not applied, or anything the user should
        know about the policy (stderr, prefixed ``secrun: warning:``; the audit lists it)."""
        self.warnings.append(text)
        sys.stderr.write(f"secrun: warning: {text}\n")

    def log(self, text: str) -> None:
        """Verbose (``-v``) diagnostics, with the time since secrun started."""
        if self.verbose:
            sys.stderr.write(f"secrun: {(perf_counter() - T0) * 1000:7.2f} ms  {text}\n")


class PlanContext(_Context):
    """What ``secrun_compile`` may use, besides :class:`_Context`'s members."""

    __slots__ = ("deps", "notes", "_publishes")

    def __init__(self, config: Config, origins: Origins, requires: FactNames,
                 publishes: FactNames, verbose: int = 0) -> None:
        super().__init__(config, origins, {}, requires, verbose)
        self.deps: list[str] = []
        self.notes: list[str] = []
        self._publishes = publishes

    @property
    def facts(self) -> dict[str, object]:
        """Every fact published so far (the core's copy; read with :meth:`fact`)."""
        return self._facts

    def publish(self, name: str, value: object) -> None:
        """Publish a fact (plain data: it is cached with the plan) for the plugins that
        declared they require it; their compile hooks run after this one.  Only a fact this
        plugin declared in ``publishes`` of its ``secrun_facts`` may be published."""
        if name not in self._publishes.get(self.plugin or "", ()):
            raise PluginError(f"plugin {self.plugin!r} publishes the fact {name!r} without "
                              f"declaring it (secrun_facts: publishes)")
        self._facts[name] = value

    def depends_on(self, path: str) -> None:
        """The compiled plan depends on this file: a change of it invalidates the cached plan."""
        self.deps.append(os.path.abspath(path))

    def note(self, text: str) -> None:
        """A one-line remark about the policy that is not an error (e.g. which working
        directories the view will not show); ``secrun profiles check`` prints it."""
        self.notes.append(f"{self.plugin}: {text}" if self.plugin else text)


class RunContext(_Context):
    """What a stage hook and ``secrun_cleanup`` may use, besides :class:`_Context`'s members.

    - ``plan``: this plugin's compiled plan (what its ``secrun_compile`` returned).
    - ``state``: this plugin's per-run dict (in the supervisor, and a forked copy in the
      child); ``secrun_cleanup`` sees what the parent-side stages stored.
    - ``argv``: the workload's argv; ``env``: the environment it will get (a dict, mutable
      until the ``rlimits`` stage is done).
    - ``pid``: in the supervisor, the process the parent-side stage acts on (after fork);
      ``status``: the workload's raw wait status in ``secrun_cleanup`` (None if it never ran).
    - ``stage``: the running stage's name; ``in_child``: whether this is the child side.
    - ``fork_after_namespaces``: set by a plugin whose ``namespaces`` stage made a pid or
      time namespace, so that the core forks into it.
    """

    __slots__ = ("argv", "env", "pid", "status", "stage", "in_child",
                 "fork_after_namespaces", "reports", "_plans", "_states", "_warn_sink")

    def __init__(self, config: Config, origins: Origins, plans: dict[str, Any],
                 facts: dict[str, object], requires: FactNames, argv: Sequence[str] = (),
                 env: dict[str, str] | None = None, verbose: int = 0) -> None:
        super().__init__(config, origins, facts, requires, verbose)
        self._plans = plans
        self._states: dict[str, dict[str, Any]] = {}  # {plugin: its state}
        self.argv = list(argv)
        self.env = dict(os.environ) if env is None else env
        self.pid: int | None = None
        self.status: int | None = None
        self.stage: str | None = None
        self.in_child = False
        self.fork_after_namespaces = False
        self.reports: list[str] = []
        self._warn_sink: Callable[[str], object] | None = None

    @property
    def plan(self) -> Any:
        """This plugin's compiled plan (None if its compile returned nothing); typed ``Any``:
        it is the plugin's own plan TypedDict (``plan: XPlan = ctx.plan``)."""
        return self._plans.get(self.plugin or "")

    @property
    def state(self) -> dict[str, Any]:
        """This plugin's per-run scratch dict."""
        key = self.plugin or ""
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = {}
        return st

    def warn(self, text: str) -> None:
        # in the child, warnings travel to the supervisor, which prints them
        if self._warn_sink is not None:
            self.warnings.append(text)
            self._warn_sink(text)
        else:
            super().warn(text)

    def report(self, text: str) -> None:
        """Say something about the run to the user (e.g. why the workload was killed)."""
        self.reports.append(text)
        sys.stderr.write(f"secrun: {text}\n")


class AuditContext(_Context):
    """What ``secrun_audit`` and ``secrun_live_facts`` may use, besides :class:`_Context`'s.

    - ``plan``: this plugin's compiled plan; ``argv``: the workload's argv, if one was given.
    - ``pid``: for ``secrun_live_facts``, a process inside the running sandbox (the audit's
      probe), to be looked at from outside (``/proc/<pid>/...``); None in ``secrun_audit``.
    """

    __slots__ = ("argv", "pid", "_plans")

    def __init__(self, config: Config, origins: Origins, plans: dict[str, Any],
                 facts: dict[str, object], requires: FactNames, argv: Sequence[str] = (),
                 pid: int | None = None) -> None:
        super().__init__(config, origins, facts, requires)
        self._plans = plans
        self.argv = list(argv)
        self.pid = pid

    @property
    def plan(self) -> Any:
        """This plugin's compiled plan (None if its compile returned nothing); typed ``Any``:
        it is the plugin's own plan TypedDict (``plan: XPlan = ctx.plan``)."""
        return self._plans.get(self.plugin or "")
