"""Facts between plugins: one publisher per fact, named after it, compile order from what each
plugin's compile requires, undeclared reads and writes refused."""

import pytest

from secrun.context import PlanContext
from secrun.errors import PluginError
from secrun.facts import Facts, check, compile_order, publishable, readable


def test_a_fact_is_published_by_the_plugin_it_is_named_after():
    check({"namespaces": Facts({"namespaces.made": ([], "the namespaces")})})
    with pytest.raises(PluginError, match="'spoof' declares the fact 'namespaces.made'"):
        check({"namespaces": Facts({"namespaces.made": ([], "x")}),
               "spoof": Facts({"namespaces.made": ([], "x")})})


def test_two_publishers_of_one_fact_are_refused():
    # (the name rule makes this hard to reach; the check does not rely on it)
    declared = {"a": Facts({"a.x": (0, "x")}), "b": Facts({"a.x": (0, "x")})}
    with pytest.raises(PluginError, match="fact 'a.x'"):
        check(declared)


def test_compile_order_puts_publishers_first_and_refuses_cycles():
    declared = {"fs": Facts(requires=("ns.made",)), "ns": Facts({"ns.made": ([], "m")}),
                "caps": Facts({"caps.managed": (False, "c")}, uses=("ns.made",))}
    assert compile_order(["fs", "caps", "ns"], declared) == ["ns", "fs", "caps"]
    cyclic = {"a": Facts({"a.x": (0, "x")}, requires=("b.y",)),
              "b": Facts({"b.y": (0, "y")}, requires=("a.x",))}
    with pytest.raises(PluginError, match="cycle"):
        compile_order(["a", "b"], cyclic)


def test_undeclared_reads_and_publications_are_refused():
    declared = {"a": Facts({"a.x": (1, "x")}, requires=("b.y",)), "b": Facts({"b.y": (2, "y")})}
    ctx = PlanContext({}, {}, readable(declared), publishable(declared))
    ctx.plugin = "a"
    ctx.publish("a.x", 5)
    assert ctx.fact("a.x") == 5 and ctx.fact("b.y", "default") == "default"
    with pytest.raises(PluginError, match="without declaring it"):
        ctx.publish("b.y", 1)
    ctx.plugin = "b"
    with pytest.raises(PluginError, match="without declaring it"):
        ctx.fact("a.x")
