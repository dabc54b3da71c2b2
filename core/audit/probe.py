"""The live-audit probe: facts about one process, read from ``/proc`` (and, inside, by probing).

This file is self-contained on purpose (standard library only, no ``secrun`` import): ``secrun
audit --live`` passes its *source* to ``python -I -S -c`` as the sandbox's workload, so it runs
under any profile whose filesystem view contains a Python interpreter, whatever the uid, the
environment or the visible files.  The same functions read another process's facts from outside
(``secrun audit --pid``), so the live and the ``--pid`` views are computed by the same code.

As a workload: ``python -I -S -c SOURCE REF_JSON NONCE [SIGIGN SIGBLK]`` prints one JSON line of
facts (the vocabulary of the ``secrun_audit`` hookspec) and then waits until its stdin is closed,
so that the auditor can look at it from outside meanwhile.  ``REF_JSON`` carries the auditor's
own namespace links and its ``/tmp`` device, which "new"/"host" and "private"/"host" compare
with, the paths whose visible mount is asked for (``mount:PATH`` facts), and the plugins'
``secrun_live_probe`` sources (``probes``: ``[[plugin, source]]``; each is run in a namespace of
its own and its ``probe(facts, ref)`` called, see :func:`plugin_probes`).  ``SIGIGN`` and
``SIGBLK`` are the signal masks the workload started with, read by the shell that execs the
probe (see :func:`inside`).
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # (mount point, fstype, per-mount options, major:minor)
    Mount = tuple[str, str, list[str], str]
    # (id, parent id, mount point, fstype, per-mount options, root, major:minor)
    Node = tuple[int, int, str, str, list[str], str, str]

NAMESPACES = ("user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time")
CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

RLIMIT_NAMES = {
    "Max cpu time": "cpu", "Max file size": "fsize", "Max data size": "data",
    "Max stack size": "stack", "Max core file size": "core", "Max resident set": "rss",
    "Max processes": "nproc", "Max open files": "nofile", "Max locked memory": "memlock",
    "Max address space": "as", "Max file locks": "locks", "Max pending signals": "sigpending",
    "Max msgqueue size": "msgqueue", "Max nice priority": "nice",
    "Max realtime priority": "rtprio", "Max realtime timeout": "rttime",
}


def _read(path: str, default: str = "") -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return default


def _status(proc: str) -> dict[str, str]:
    out = {}
    for line in _read(f"{proc}/status").splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def ns_links(proc: str) -> dict[str, str]:
    out = {}
    for ns in NAMESPACES:
        try:
            out[ns] = os.readlink(f"{proc}/ns/{ns}")
        except OSError:
            out[ns] = ""
    return out


def mounts(proc: str) -> list[Mount]:
    """[(mount point, fstype, mount options, major:minor)] in mount order."""
    return [(m[2], m[3], m[4], m[6]) for m in mount_tree(proc)]


def mount_tree(proc: str) -> list[Node]:
    """[(id, parent id, mount point, fstype, per-mount options, root, major:minor)] in mount
    order, from ``PROC/mountinfo``."""
    rows: list[Node] = []
    for line in _read(f"{proc}/mountinfo").splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-")
            rows.append((int(parts[0]), int(parts[1]), _unescape(parts[4]), parts[sep + 1],
                         parts[5].split(","), _unescape(parts[3]), parts[2]))
        except (ValueError, IndexError):
            continue
    return rows


def _unescape(s: str) -> str:
    for esc, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        s = s.replace(esc, ch)
    return s


def visible_mount(tree: list[Node], path: str) -> Node | None:
    """The mount a lookup of ``path`` (absolute, no symlinks) ends on, walking the mount tree by
    parent ids the way the kernel does: a mount hidden under a later mount of one of its
    ancestors, or under another mount at the same place, is not visible.  (The longest matching
    mount point is not enough: a hide below a later bind of its parent directory is in
    mountinfo, yet not what the path shows.)"""
    ids = {m[0] for m in tree}
    kids: dict[int, list[Node]] = {}
    for m in tree:
        kids.setdefault(m[1], []).append(m)

    def top(m: Node) -> Node:
        # mounts stacked on ``m`` at its own mount point
        while True:
            above = [k for k in kids.get(m[0], ()) if k[2] == m[2] and k is not m]
            if not above:
                return m
            m = above[-1]

    roots = [m for m in tree if m[2] == "/" and (m[1] not in ids or m[1] == m[0])]
    if not roots:
        return None
    cur = top(roots[-1])
    prefix = ""
    for comp in [c for c in path.split("/") if c]:
        prefix += "/" + comp
        here = [k for k in kids.get(cur[0], ()) if k[2] == prefix]
        if here:
            cur = top(here[-1])
    return cur


def mount_text(m: Node | None) -> str:
    """How a ``mount:PATH`` fact shows a mount: "POINT FSTYPE ro|rw"."""
    if m is None:
        return "none"
    return f"{m[2]} {m[3]} {'ro' if 'ro' in m[4] else 'rw'}"


def view_facts(tree: list[Node], paths: list[str] | tuple[str, ...], ns_cgroup: str,
               proc: str = "/proc/self", root: str = "") -> dict[str, str]:
    """``mount:PATH`` for each requested path, and what /sys shows (``fs.sys``,
    ``fs.sys_cgroup``), for the process ``proc`` whose root directory the reader sees at
    ``root`` ("" inside, /proc/PID/root outside)."""
    facts = {f"mount:{p}": mount_text(visible_mount(tree, p)) for p in paths}
    if not os.path.isdir(root + "/sys/class/net"):
        facts["fs.sys"] = "none"
    else:
        own = set()
        for line in _read(f"{proc}/net/dev").splitlines()[2:]:
            own.add(line.split(":", 1)[0].strip())
        seen = set(_listdir(root + "/sys/class/net"))
        facts["fs.sys"] = "netns" if seen <= own else "host"
    groups = [m for m in tree if m[3] in ("cgroup", "cgroup2")
              and (m[2] + "/").startswith("/sys/fs/cgroup/")
              and visible_mount(tree, m[2]) is m]
    if not groups:
        facts["fs.sys_cgroup"] = "none"
    elif ns_cgroup != "new" or any(m[5].startswith("/..") for m in groups):
        facts["fs.sys_cgroup"] = "host"
    else:
        facts["fs.sys_cgroup"] = "own"
    return facts


SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
                7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV",
                12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT",
                17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN",
                22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM",
                27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS"}


def signal_set(mask_hex: str) -> str:
    """A /proc status signal mask as names ("none" when empty, "?" when unreadable)."""
    try:
        mask = int(mask_hex, 16)
    except (TypeError, ValueError):
        return "?"
    names = [SIGNAL_NAMES.get(n, f"SIGRT{n - 34}" if n >= 34 else str(n))
             for n in range(1, 65) if mask >> (n - 1) & 1]
    return " ".join(names) or "none"


def stat_fields(proc: str) -> tuple[int, int, int] | None:
    """(pgrp, session, tty_nr) from ``PROC/stat``, or None."""
    text = _read(f"{proc}/stat")
    try:
        rest = text.rsplit(")", 1)[1].split()
        return int(rest[2]), int(rest[3]), int(rest[4])
    except (IndexError, ValueError):
        return None


def session_facts(proc: str, ref_proc: str = "/proc/self") -> dict[str, str]:
    """``proc.session``/``proc.pgrp``: "own" or "caller" (the same as ``ref_proc``'s);
    ``proc.tty``: "none", "own" or "caller" (the controlling terminal)."""
    mine, ref = stat_fields(proc), stat_fields(ref_proc)
    if mine is None or ref is None:
        return {}
    return {"proc.pgrp": "caller" if mine[0] == ref[0] else "own",
            "proc.session": "caller" if mine[1] == ref[1] else "own",
            "proc.tty": "none" if mine[2] == 0 else "caller" if mine[2] == ref[2] else "own"}


def mount_for(rows: list[Mount], path: str) -> Mount | None:
    """The mount that covers ``path`` (the longest mount point; the last one mounted wins)."""
    best = None
    for row in rows:
        point = row[0]
        if path == point or point == "/" or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best[0]):
                best = row
    return best


def fs_facts(rows: list[Mount], root: str, ref: dict) -> dict[str, str]:
    facts = {}
    r = mount_for(rows, "/")
    facts["fs.root_writable"] = "no" if r is None or "ro" in r[2] else "yes"
    home = mount_for(rows, "/home")
    if not os.path.isdir(root + "/home") or (home and home[0] == "/home" and home[1] == "tmpfs"
                                             and not _listdir(root + "/home")):
        facts["fs.home"] = "hidden"
    else:
        facts["fs.home"] = "ro" if home is None or "ro" in home[2] else "rw"
    tmp = mount_for(rows, "/tmp")
    facts["fs.tmp"] = "private" if tmp and tmp[3] != ref.get("tmp_dev") else "host"
    dev = mount_for(rows, "/dev")
    facts["fs.dev"] = "host" if dev is None or dev[1] == "devtmpfs" else "minimal"
    ps = mount_for(rows, "/proc/sys")
    facts["fs.proc_sys"] = "ro" if ps is None or "ro" in ps[2] else "rw"
    return facts


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def rlimits(proc: str) -> dict[str, str]:
    out = {}
    for line in _read(f"{proc}/limits").splitlines()[1:]:
        for label, name in RLIMIT_NAMES.items():
            if line.startswith(label + " "):
                vals = line[len(label):].split()
                if len(vals) >= 2:
                    out[f"rlimit.{name}"] = f"{vals[0]}:{vals[1]}"
    return out


def proc_facts(proc: str, ref: dict, root: str | None = None) -> dict[str, str]:
    """Facts readable from ``/proc/<pid>`` (``proc``) by anyone allowed to read them.

    ``ref``: {"ns": {name: link}, "tmp_dev": "maj:min"} of the reference process.  ``root``: the
    process's root directory as seen by the reader ("" inside, /proc/PID/root outside)."""
    st = _status(proc)
    facts = {}
    for k in CAP_FIELDS:
        if k in st:
            facts[f"status.{k}"] = st[k]
    facts["status.NoNewPrivs"] = st.get("NoNewPrivs", "0")
    facts["status.Seccomp"] = st.get("Seccomp", "0")
    facts["status.Seccomp_filters"] = st.get("Seccomp_filters", "0")
    uids = st.get("Uid", "").split()
    gids = st.get("Gid", "").split()
    facts["id.uid"] = uids[1] if len(uids) > 1 else ""
    facts["id.gid"] = gids[1] if len(gids) > 1 else ""
    facts["id.groups"] = " ".join(st.get("Groups", "").split())
    links = ns_links(proc)
    for ns, link in links.items():
        want = ref.get("ns", {}).get(ns, "")
        if link:
            facts[f"ns.{ns}"] = "host" if link == want else "new"
    facts["lsm.apparmor"] = _read(f"{proc}/attr/apparmor/current").strip().strip("\0")
    facts["lsm.selinux"] = _read(f"{proc}/attr/current").strip().strip("\0")
    paths = {}
    for line in _read(f"{proc}/cgroup").splitlines():
        hid, ctrl, p = line.split(":", 2)
        for c in (ctrl.split(",") if hid != "0" else ["unified"]):
            paths[c] = p
    facts["cgroup.path"] = paths.get("memory", paths.get("unified", ""))
    names = []
    for line in _read(f"{proc}/net/dev").splitlines()[2:]:
        names.append(line.split(":", 1)[0].strip())
    facts["net.interfaces"] = " ".join(sorted(names))
    env = _read(f"{proc}/environ")
    facts["env.count"] = str(len([e for e in env.split("\0") if e]))
    facts.update(rlimits(proc))
    facts.update(fs_facts(mounts(proc), proc + "/root" if root is None else root, ref))
    return facts


# --- inside only: the death signal -------------------------------------------------------------

_LIBC: list[tuple[Any, Any]] = []


def _libc() -> tuple[Any, Any]:
    """The C library through ctypes, opened once, with the prototype the probe uses (not
    :mod:`secrun.kernel`: this file runs without secrun)."""
    if not _LIBC:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl.restype, libc.prctl.argtypes = ctypes.c_int, (ctypes.c_int,)
        _LIBC.append((ctypes, libc))
    return _LIBC[0]


PR_GET_PDEATHSIG = 2


def pdeathsig() -> str:
    ctypes, libc = _libc()
    sig = ctypes.c_int(0)
    if libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0) != 0:
        return "?"
    return SIGNAL_NAMES.get(sig.value, str(sig.value)) if sig.value else "none"


def bound(death_signal: str) -> str:
    """What ends this process when its parent dies: ``"pdeathsig"``, ``"init"`` (the parent is
    pid 1 of this process's pid namespace: its death makes the kernel kill the namespace) or
    ``"none"``."""
    if death_signal == "SIGKILL":
        return "pdeathsig"
    return "init" if os.getppid() == 1 and os.getpid() != 1 else "none"


def inside(ref: dict, dispositions: list[str] | None = None) -> dict[str, str]:
    """Facts from inside.  ``dispositions``: (SigIgn, SigBlk) as the workload started with them
    (read by the shell that execs this probe: Python itself ignores SIGPIPE and SIGXFSZ at
    start-up, so this process cannot see what it inherited)."""
    facts = proc_facts("/proc/self", ref, root="")
    facts.update(view_facts(mount_tree("/proc/self"), ref.get("paths", ()),
                            facts.get("ns.cgroup", "")))
    facts["proc.pdeathsig"] = pdeathsig()
    facts["proc.bound"] = bound(facts["proc.pdeathsig"])
    if dispositions:
        facts["proc.sig_ignored"] = signal_set(dispositions[0])
        facts["proc.sig_blocked"] = signal_set(dispositions[1])
    facts["id.uid"] = str(os.getuid())
    facts["id.gid"] = str(os.getgid())
    facts["id.groups"] = " ".join(str(g) for g in os.getgroups())
    return facts


def plugin_probes(facts: dict[str, str], ref: dict, probes: list[list[str]]) -> list[str]:
    """Run each plugin's ``secrun_live_probe`` source (``[[plugin, source]]``) in a namespace
    of its own and call its ``probe(facts, ref)``; the errors, naming the plugin (a fact that
    is not a string is dropped and is one)."""
    errors = []
    for plugin, source in probes:
        before = dict(facts)
        try:
            space: dict = {"__name__": f"secrun_live_probe_{plugin}"}
            exec(compile(source, f"<secrun_live_probe of {plugin}>", "exec"), space)
            space["probe"](facts, ref)
        except (Exception, SystemExit) as e:  # report, do not die silently
            errors.append(f"plugin {plugin!r}: {type(e).__name__}: {e}")
        for k, v in list(facts.items()):
            if not isinstance(k, str) or not isinstance(v, str):
                errors.append(f"plugin {plugin!r}: fact {k!r} is not a string: {v!r}"[:200])
                del facts[k]
                if k in before:
                    facts[k] = before[k]
    return errors


def main(argv: list[str]) -> int:
    ref = json.loads(argv[1]) if len(argv) > 1 else {}
    probes = ref.pop("probes", [])
    errors = []
    try:
        facts = inside(ref, argv[3:5] if len(argv) > 4 else None)
    except Exception as e:  # report, do not die silently inside a sandbox
        facts = {}
        errors.append(f"{type(e).__name__}: {e}")
    errors += plugin_probes(facts, ref, probes)
    if errors:
        facts["probe.error"] = "; ".join(errors)
    facts["probe.pid"] = str(os.getpid())
    sys.stdout.write(json.dumps(facts, sort_keys=True) + "\n")
    sys.stdout.flush()
    import select

    # Stay alive until the auditor closes stdin (it looks at this process from outside).
    try:
        select.select([0], [], [], float(ref.get("linger", 30)))
    except (OSError, ValueError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
