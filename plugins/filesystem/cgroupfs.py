"""The host's cgroup hierarchies the fresh sysfs shows again from inside the sandbox's cgroup
namespace (:func:`.mount.mount_cgroups` mounts them in the ``rlimits`` stage): read from
``/proc/self/mountinfo`` when planning.  Planning only."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import CgroupLayout, CgroupMount

_V1_SUBSYS = ("cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls",
              "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc", "debug")


def layout() -> CgroupLayout | None:
    """The host's cgroup hierarchies mounted at or under /sys/fs/cgroup, or None when there is
    none: ``v2`` (cgroup2 on /sys/fs/cgroup itself), the ``mounts`` (see
    :class:`.plan.CgroupMount`) and the ``links`` (name, target) beside them (cgroup v1)."""
    mounts: list[CgroupMount] = []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, _, right = line.partition(" - ")
        a, b = left.split(), right.split()
        if len(a) < 5 or len(b) < 3 or b[0] not in ("cgroup", "cgroup2"):
            continue
        point = _unescape(a[4])
        if point == "/sys/fs/cgroup" and b[0] == "cgroup2":
            return {"v2": True, "links": [], "mounts": [
                {"name": b"", "fstype": b"cgroup2", "options": (), "key": "", "point": point}]}
        if os.path.dirname(point) == "/sys/fs/cgroup":
            m = _hierarchy(point, b[0], b[2])
            if m is not None:
                mounts.append(m)
    if not mounts:
        return None
    return {"v2": False, "mounts": mounts, "links": _links()}


def _hierarchy(point: str, fstype: str, superopts: str) -> CgroupMount | None:
    """One hierarchy mounted below /sys/fs/cgroup; ``key`` is its controllers field of
    /proc/self/cgroup (sorted; "" for cgroup2).  None: a v1 hierarchy of nothing secrun
    knows."""
    name = os.fsencode(os.path.basename(point))
    if fstype == "cgroup2":
        return {"name": name, "fstype": b"cgroup2", "options": (), "key": "", "point": point}
    opts: list[tuple[bytes, bytes | None]] = []
    words = []
    for o in superopts.split(","):
        key, eq, value = o.partition("=")
        if eq and key == "name":
            opts.append((b"name", value.encode()))
            words.append(o)
        elif o in _V1_SUBSYS:
            opts.append((o.encode(), None))
            words.append(o)
    if not words:
        return None
    return {"name": name, "fstype": b"cgroup", "options": tuple(opts),
            "key": ",".join(sorted(words)), "point": point}


def _links() -> list[tuple[bytes, bytes]]:
    """The symlinks in /sys/fs/cgroup (``cpu -> cpu,cpuacct``), made again on the tmpfs."""
    links = []
    try:
        for name in sorted(os.listdir("/sys/fs/cgroup")):
            path = os.path.join("/sys/fs/cgroup", name)
            if os.path.islink(path):
                links.append((os.fsencode(name), os.fsencode(os.readlink(path))))
    except OSError:
        pass
    return links


def _unescape(s: str) -> str:
    """A mountinfo field: spaces, tabs, newlines and backslashes are octal escapes."""
    if "\\" not in s:
        return s
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
