"""The bundled profiles on the user-mode-linux guest's kernel (6.1, without time namespaces),
for real: ``strict`` and ``default`` run, root and rootless, and what this kernel lacks and may
degrade (``DEGRADABLE`` in the namespaces plugin) is said at launch and in the audit instead
of failing the launch.  The guest suite ``kernel`` runs this file and tests/host/test_rootless.py
(marker ``oldkernel``); on the host these cases are skipped, since its kernel has them all."""

import json
import os
import subprocess

import pytest
from test_rootless import as_user

from support import SECRUN

pytestmark = [
    pytest.mark.oldkernel,
    pytest.mark.skipif(os.path.exists("/proc/self/ns/time"),
                       reason="this kernel has time namespaces (the guest's has none)"),
]

def launch(*args, rootless=False):
    if rootless:
        return as_user(4242, *args)
    return subprocess.run([SECRUN, *args], capture_output=True, text=True, timeout=120, cwd="/")


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
@pytest.mark.parametrize("profile", ["strict", "default"])
def test_bundled_profiles_run_and_say_what_this_kernel_lacks(profile, rootless):
    r = launch("-p", profile, "--", "sh", "-c", "id -u; ls /proc/self/ns", rootless=rootless)
    assert r.returncode == 0, r
    lines = r.stdout.split()
    assert lines[0] == ("65534" if profile == "strict" else "4242" if rootless else "0"), r
    assert "time" not in lines, r
    warned = ("namespaces: this kernel has no time namespaces (no /proc/self/ns/time): "
              "[namespaces].time not applied")
    assert (warned in r.stderr) == (profile == "strict"), r.stderr  # only strict asks for one


def test_strict_audit_shows_the_missing_namespace_and_live_agrees():
    r = launch("audit", "--live", "-p", "strict", "--format", "json")
    assert r.returncode in (0, 1), r
    rep = json.loads(r.stdout)
    assert rep["mismatches"] == [], rep["mismatches"]
    rows = {c["control"]: c for c in rep["controls"] if c["plugin"] == "namespaces"}
    assert rows["namespace time"]["status"] == "not-available", rows["namespace time"]
    assert rows["namespace pid"]["status"] == "enforced", rows["namespace pid"]
    assert rows["namespace cgroup"]["status"] == "enforced", rows["namespace cgroup"]
