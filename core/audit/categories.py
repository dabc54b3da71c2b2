"""The scored categories of ``secrun audit``: what plugins declare, and the table the score is
computed over.

Exposure (0.0–10.0, 10 = nothing confines the workload)::

    exposure = 10 * sum(importance[c] * residual[c]) / sum(importance[c])   over every category c

``residual`` is 0.0 (fully confined) to 1.0 (not confined).  *Planned*: the residual of a category
comes from the rows the plugins' ``secrun_audit`` return for it (their ``weight``;
``not-configured`` and ``not-available`` rows, and categories no plugin reports, count 1.0).
*Effective* (``--live``, ``--pid``): it is computed from the observed facts by the category's
judges, the same functions for both, so the two views score the same process the same way.

The categories are those the registered plugins declare with ``secrun_audit_categories``
(:meth:`secrun.registry.Plugins.categories`).  Several plugins may contribute to one id (AppArmor
and SELinux to ``mac``): one category, whose importance they must agree on, whose judges are
combined by its ``combine``.  A category no active plugin reports on counts 1.0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from math import isclose
from typing import TYPE_CHECKING, Literal

from ..errors import PluginError

if TYPE_CHECKING:
    from ..registry import Plugins

Judged = tuple[float, str]
"""(residual 0..1, what was observed, as text)."""
Judge = Callable[[dict[str, str]], "Judged | None"]
Combine = Literal["max", "min"]
COMBINES = ("max", "min")


class Category:
    """A scored category of the exposure score, as a plugin declares it in
    ``secrun_audit_categories``.

    - ``id``: dotted name, by convention ``<plugin>.<aspect>`` (``seccomp.filter``); audit rows
      name it in their ``category``.
    - ``title``: a few words for the report; ``meaning``: one line for ``docs/audit.md``.
    - ``importance``: its weight in the score (the built-in ones range 0.05-1.2).
    - ``judge(facts) -> (residual, observed text) | None``: how a running process is scored
      from the facts the live audit gathered (probe and ``secrun_live_facts``); None when the
      facts it needs are missing (scored 1.0, "not observed").  Without a judge the category
      is never lowered by a live look.
    - ``combine``: how several rows of the category make one residual: ``"max"`` (the weakest
      configured row counts) or ``"min"`` (any one row suffices, e.g. either of two MAC
      systems); also how the judges of several plugins contributing to one id combine.
    """

    __slots__ = ("combine", "id", "importance", "judge", "meaning", "title")

    def __init__(self, id: str, title: str, importance: float, judge: Judge | None = None,
                 combine: Combine = "max", meaning: str = "") -> None:
        self.id, self.title, self.importance = id, title, importance
        self.combine: Combine = combine
        self.judge = judge
        self.meaning = meaning

    def __repr__(self) -> str:
        return f"Category({self.id!r}, {self.title!r}, {self.importance!r})"


class Scored:
    """One category of the score: the contributions of every plugin that declares its id."""

    __slots__ = ("combine", "id", "importance", "judges", "meaning", "plugins", "title")

    def __init__(self, plugin: str, cat: Category) -> None:
        self.id, self.title, self.meaning = cat.id, cat.title, cat.meaning
        self.importance = float(cat.importance)
        self.combine: Combine = cat.combine
        self.plugins: list[str] = []
        self.judges: list[tuple[str, Judge]] = []
        self.add(plugin, cat)

    @property
    def plugin(self) -> str:
        """The contributing plugins, as the report shows them ("apparmor|selinux")."""
        return "|".join(self.plugins)

    def add(self, who: str, cat: Category) -> None:
        """Another plugin's contribution to this id."""
        if not isclose(float(cat.importance), self.importance, abs_tol=1e-9):
            raise PluginError(f"plugins {self.plugin!r} and {who!r} both declare the audit "
                              f"category {self.id!r}, with importance {self.importance:g} and "
                              f"{float(cat.importance):g}: they must agree")
        if cat.combine != self.combine:
            raise PluginError(f"plugins {self.plugin!r} and {who!r} both declare the audit "
                              f"category {self.id!r}, combined by {self.combine!r} and "
                              f"{cat.combine!r}: they must agree")
        if who not in self.plugins:
            self.plugins.append(who)
        if cat.judge is not None:
            self.judges.append((who, cat.judge))

    def judge(self, facts: dict[str, str]) -> Judged:
        """The effective residual from a process's facts: the judges' verdicts combined by
        ``combine`` ("min": the best of them, "max": the worst); 1.0 when none can tell."""
        got = [v for v in (self._one(who, fn, facts) for who, fn in self.judges) if v is not None]
        if not got:
            return 1.0, "not observed"
        pick = min if self.combine == "min" else max
        return pick(got, key=lambda v: v[0])

    def _one(self, who: str, fn: Judge, facts: dict[str, str]) -> Judged | None:
        try:
            got = fn(facts)
        except Exception as e:  # name the plugin
            raise PluginError(f"plugin {who!r}: the judge of audit category {self.id!r} "
                              f"failed: {type(e).__name__}: {e}") from None
        if got is None:
            return None
        try:
            residual, text = got
            return min(1.0, max(0.0, float(residual))), str(text)
        except (TypeError, ValueError):
            raise PluginError(f"plugin {who!r}: the judge of audit category {self.id!r} "
                              f"returned {got!r}, not (residual, text) or None") from None


class Table:
    """The categories the score is computed over, in report order."""

    __slots__ = ("by_id", "categories", "total")

    def __init__(self, categories: Iterable[Scored]) -> None:
        self.categories = list(categories)
        self.by_id = {c.id: c for c in self.categories}
        self.total = round(sum(c.importance for c in self.categories), 6)


def check_category(plugin: str, cat: object) -> Category:
    """A declared category, checked; a malformed one is the plugin's error."""
    def bad(msg: str) -> PluginError:
        return PluginError(f"plugin {plugin!r}: secrun_audit_categories returned a bad "
                           f"category ({msg}): {cat!r}")

    if not isinstance(cat, Category):
        raise bad("not a secrun.audit.categories.Category")
    if not isinstance(cat.id, str) or not cat.id:
        raise bad("its id must be a non-empty string")
    if isinstance(cat.importance, bool) or not isinstance(cat.importance, (int, float)) \
            or not cat.importance >= 0:
        raise bad("its importance must be a number >= 0")
    if cat.combine not in COMBINES:
        raise bad(f"combine must be one of {', '.join(COMBINES)}")
    if cat.judge is not None and not callable(cat.judge):
        raise bad("its judge is not callable")
    return cat


def declared(plugins: Plugins) -> list[tuple[str, Category]]:
    """[(plugin, Category)] of every registered plugin, checked."""
    try:
        got = plugins.categories()
    except PluginError:
        raise
    except Exception as e:  # a plugin's hook failed
        raise PluginError(f"secrun_audit_categories failed: {type(e).__name__}: {e}") from None
    return [(p, check_category(p, c)) for p, c in got]


def table(plugins: Plugins) -> Table:
    """The score's categories: the registered plugins' declared ones, merged by id, in the
    order of the plugins' registration."""
    merged: dict[str, Scored] = {}
    rank = {name: i for i, name in enumerate(plugins.info)}
    for plugin, cat in sorted(declared(plugins), key=lambda pc: rank.get(pc[0], len(rank))):
        have = merged.get(cat.id)
        if have is None:
            merged[cat.id] = Scored(plugin, cat)
        else:
            have.add(plugin, cat)
    return Table(merged.values())
