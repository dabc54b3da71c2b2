"""Planning on a kernel without time namespaces, through the namespaces plugin's one seam
(``kernel_has``): the real thing runs in the 6.1 guest (tests/guest/test_old_kernel.py)."""

from secrun import plan as P
from secrun.plugins.namespaces import plan as ns_plan


def test_a_missing_time_namespace_is_dropped_and_recorded(monkeypatch):
    monkeypatch.setattr(ns_plan, "kernel_has", lambda ns: ns != "time")
    p = P.build(["strict"])
    ns = p["plan"]["namespaces"]
    assert ns["unavailable"] == ["time"]
    assert "time" not in [key for key, _ns, _flag in ns["unshare"]]
    assert "time" not in p["facts"]["namespaces.made"]
    assert "pid" in p["facts"]["namespaces.made"]  # what carries the promise stays


def test_what_carries_the_promise_never_degrades(monkeypatch):
    monkeypatch.setattr(ns_plan, "kernel_has", lambda ns: False)
    p = P.build(["strict"])
    assert sorted(p["plan"]["namespaces"]["unavailable"]) == ["cgroup", "time"]
    made = p["facts"]["namespaces.made"]
    assert {"mnt", "pid", "net", "ipc", "uts"} <= set(made), made
