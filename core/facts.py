"""Facts: what one plugin knows about a launch and tells the others, declared up front.

A plugin declares, in ``secrun_facts``, the facts it publishes (with a default and a line of
meaning) and the facts it reads.  The core compiles the publishers of a fact before the plugins
that require it (:func:`compile_order`), refuses a cycle, and caches the published values with
the plan, so stage hooks read them without recomputing anything.  Planning-time only.
"""

from __future__ import annotations

from .errors import PluginError


class Facts:
    """A plugin's declaration.

    - ``publishes``: {name: (default, meaning)}, the facts its ``secrun_compile`` sets;
    - ``requires``: the facts its ``secrun_compile`` reads (their publishers compile first);
    - ``uses``: the facts it reads only after planning (audit, stages, cleanup): no ordering.

    A plugin may always read the facts it publishes."""

    __slots__ = ("publishes", "requires", "uses")

    def __init__(self, publishes: dict[str, tuple[object, str]] | None = None,
                 requires: tuple[str, ...] | list[str] = (),
                 uses: tuple[str, ...] | list[str] = ()) -> None:
        self.publishes = dict(publishes or {})
        self.requires = tuple(requires)
        self.uses = tuple(uses)
        for name, spec in self.publishes.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str)):
                raise PluginError(f"fact {name!r}: publishes takes {{name: (default, meaning)}}")


def compile_order(active: list[str], declared: dict[str, Facts]) -> list[str]:
    """``active`` reordered so that every fact's publishers come before the plugins that
    require it; otherwise the given order is kept.  A cycle is a :class:`PluginError`."""
    check(declared)
    publishers: dict[str, list[str]] = {}
    for name in active:
        for fact in declared.get(name, Facts()).publishes:
            publishers.setdefault(fact, []).append(name)
    after = {name: [p for fact in declared.get(name, Facts()).requires
                    for p in publishers.get(fact, ()) if p != name] for name in active}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being placed, 2: placed

    def place(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise PluginError("plugins require each other's facts in a cycle: "
                              + " -> ".join(cycle))
        state[name] = 1
        for dep in after[name]:
            place(dep, path + [name])
        state[name] = 2
        order.append(name)

    for name in active:
        place(name, [])
    return order


def check(declared: dict[str, Facts]) -> None:
    """Every fact has one publisher, and its name starts with that plugin's name and a dot
    (``namespaces.made``): no plugin can publish, or shadow, another plugin's fact."""
    owner: dict[str, str] = {}
    for plugin, facts in declared.items():
        for fact in facts.publishes:
            if not fact.startswith(plugin + "."):
                raise PluginError(f"plugin {plugin!r} declares the fact {fact!r}: a plugin "
                                  f"publishes only facts named {plugin}.<name>")
            if fact in owner:
                raise PluginError(f"plugins {owner[fact]!r} and {plugin!r} both publish the "
                                  f"fact {fact!r}")
            owner[fact] = plugin


def defaults(declared: dict[str, Facts]) -> dict[str, object]:
    """Every declared fact's default (what it reads as when no active plugin published it)."""
    out: dict[str, object] = {}
    for facts in declared.values():
        for name, (default, _meaning) in facts.publishes.items():
            out.setdefault(name, default)
    return out


def readable(declared: dict[str, Facts]) -> dict[str, tuple[str, ...]]:
    """{plugin: the facts it may read}: what it requires, uses and publishes."""
    return {name: f.requires + f.uses + tuple(f.publishes) for name, f in declared.items()}


def publishable(declared: dict[str, Facts]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(f.publishes) for name, f in declared.items()}
