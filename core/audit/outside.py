"""Facts about a running process seen from outside it (``secrun audit --pid`` and, for the
probe of ``--live``, the part a sandboxed process cannot see of itself: its cgroup's limits).

The ``/proc`` parsing is shared with the probe (:mod:`secrun.audit.probe`), so both views agree by
construction.  Added here:

- ids as seen inside the process's user namespace (``/proc/PID/uid_map``);
- the limit files of the process's cgroups, found through the reader's cgroup mounts;
- the Landlock ABI the kernel offers.
"""

from __future__ import annotations

import os

from . import probe

CGROUP_FILES = ("memory.max", "memory.swap.max", "memory.high", "pids.max", "cpu.max",
                "cpu.weight", "io.weight", "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes", "cpu.cfs_quota_us", "cpu.cfs_period_us",
                "cpu.shares")


def reference(pid: str = "self") -> dict:
    """What "host" means: the namespaces and the /tmp device of ``pid`` (the auditor itself
    for ``--live``, PID 1 for ``--pid``)."""
    proc = f"/proc/{pid}"
    tmp = probe.mount_for(probe.mounts(proc), "/tmp")
    return {"ns": probe.ns_links(proc), "tmp_dev": tmp[3] if tmp else ""}


def _map_id(proc: str, kind: str, seen: str) -> str:
    """An id as the reader sees it -> the id inside the process's user namespace."""
    try:
        outside = int(seen)
    except ValueError:
        return seen
    text = probe._read(f"{proc}/{kind}_map")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        inside, start, count = map(int, parts)
        if start <= outside < start + count:
            return str(outside - start + inside)
    return "65534" if text.strip() else str(outside)  # unmapped ids show as the overflow id


def outside(pid: int, ref: dict) -> tuple[dict[str, str], list[str]]:
    """(facts, notes) about process ``pid``."""
    proc = f"/proc/{pid}"
    if not os.path.isdir(proc):
        raise ProcessLookupError(f"no process {pid}")
    notes: list[str] = []
    facts = probe.proc_facts(proc, ref)
    if not facts.get("status.CapEff"):
        raise PermissionError(f"cannot read {proc}/status")
    facts["id.uid"] = _map_id(proc, "uid", facts["id.uid"])
    facts["id.gid"] = _map_id(proc, "gid", facts["id.gid"])
    facts["id.groups"] = " ".join(_map_id(proc, "gid", g) for g in facts["id.groups"].split())
    facts.update(cgroup_facts(pid))
    facts.update(probe.view_facts(probe.mount_tree(proc), (), facts.get("ns.cgroup", ""),
                                  proc=proc, root=f"{proc}/root"))
    facts["landlock.abi"] = landlock_abi()
    return facts, notes


# --- cgroups -----------------------------------------------------------------------------------

def _cgroup_mounts() -> dict[str, tuple[str, str]]:
    """{controller or "unified": (mount point, mount root)} of the reader."""
    out: dict[str, tuple[str, str]] = {}
    for line in probe._read("/proc/self/mountinfo").splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-")
        except ValueError:
            continue
        fstype, opts = parts[sep + 1], parts[sep + 3].split(",")
        if fstype == "cgroup2":
            out.setdefault("unified", (parts[4], parts[3]))
        elif fstype == "cgroup":
            for o in opts:
                out.setdefault(o, (parts[4], parts[3]))
    return out


def cgroup_dirs(pid: int | str) -> dict[str, str]:
    """{controller or "unified": directory of the process's group}."""
    mounts = _cgroup_mounts()
    dirs = {}
    for line in probe._read(f"/proc/{pid}/cgroup").splitlines():
        hid, ctrl, path = line.split(":", 2)
        for c in (["unified"] if hid == "0" else ctrl.split(",")):
            if c not in mounts:
                continue
            point, root = mounts[c]
            rel = path[len(root):] if root != "/" and path.startswith(root) else path
            dirs[c] = point + rel.rstrip("/") if rel != "/" else point
    return dirs


def cgroup_file(dirs: dict[str, str], name: str) -> str | None:
    """The content of cgroup file ``name`` for the process (v2 first, then the v1 controller
    named by the file's prefix), or None."""
    cands = [dirs.get("unified")]
    ctrl = name.split(".", 1)[0]
    cands.append(dirs.get(ctrl))
    if ctrl == "cpu":
        cands.append(dirs.get("cpuacct"))
    for d in cands:
        if d and os.path.exists(os.path.join(d, name)):
            return probe._read(os.path.join(d, name)).strip()
    return None


def cgroup_facts(pid: int) -> dict[str, str]:
    dirs = cgroup_dirs(pid)
    facts = {}
    for name in CGROUP_FILES:
        v = cgroup_file(dirs, name)
        if v is not None:
            facts[f"cgroup.{name}"] = v
    facts["cgroup.dirs"] = " ".join(f"{k}={v}" for k, v in sorted(dirs.items()))
    facts["cgroup.locked"] = group_locked(dirs)
    return facts


def group_locked(dirs: dict[str, str]) -> str:
    """``"yes"`` when every secrun group of the process is locked by its supervisor (the lock
    that ``secrun cgroups gc`` tells a live run by), ``"no"`` when one is free, ``"none"`` when
    the process is in no secrun group.  The test lock is dropped at once."""
    import fcntl

    groups = sorted({d for d in dirs.values() if os.path.basename(d).startswith("secrun-")})
    if not groups:
        return "none"
    for d in groups:
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return "no"
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        except OSError:
            return "no"
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return "no"
        finally:
            os.close(fd)
    return "yes"


def landlock_abi() -> str:
    """The Landlock ABI version the kernel offers ("0": none; "?": secrun does not know the
    call's number on this machine)."""
    from ..kernel import NR, syscall

    if "landlock_create_ruleset" not in NR:
        return "?"
    ret = syscall("landlock_create_ruleset")(None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return str(ret) if ret > 0 else "0"


LANDLOCK_CREATE_RULESET_VERSION = 1
