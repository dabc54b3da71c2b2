"""secrun run by an ordinary user (uid 4242, which has no passwd entry, and nobody, 65534),
through ``setpriv`` with no capabilities: the bundled profiles unchanged, from /, from a home
directory and from /tmp."""

import os
import shutil
import subprocess

import pytest

from support import SECRUN, needs_root, nobody_can_run_secrun

pytestmark = [needs_root]

UIDS = [4242, 65534]


@pytest.fixture(scope="module", autouse=True)
def _reachable():
    if not nobody_can_run_secrun():
        pytest.skip("this checkout's secrun cannot be started by an ordinary user")


def as_user(uid, *args, cwd="/", timeout=120):
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all", "--", SECRUN, *map(str, args)]
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME")}
    env["HOME"] = "/nonexistent"  # no cache of root's: each user plans for itself
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env)


@pytest.fixture(params=["/", "home", "/tmp"])
def where(request, tmp_path_factory):
    if request.param != "home":
        yield request.param
        return
    home = tmp_path_factory.mktemp("home")
    os.chmod(home, 0o755)
    os.chmod(os.path.dirname(home), 0o755)
    yield str(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("uid", UIDS)
def test_strict_maps_the_caller_to_its_identity(uid, where):
    """A single mapping (the caller's own uid and gid, seen inside as strict's 65534) needs
    no subordinate ids, so strict's [identity] works rootless."""
    r = as_user(uid, "-p", "strict", "--set", "cgroups.required=false", "--", "sh", "-c",
                "id -u; id -g; cat /proc/self/uid_map", cwd=where)
    assert r.returncode == 0, r
    lines = r.stdout.split("\n")
    assert lines[0] == "65534" and lines[1] == "65534", r
    assert lines[2].split() == ["65534", str(uid), "1"], r


@pytest.mark.parametrize("uid", UIDS)
def test_default_runs_rootless(uid, where):
    r = as_user(uid, "-p", "default", "--", "sh", "-c", "id -u", cwd=where)
    assert r.returncode == 0, r
    assert r.stdout == f"{uid}\n", r
