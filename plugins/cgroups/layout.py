"""The cgroup filesystems of this host, as a launch sees them: where each hierarchy is mounted
and where secrun sits in it (:func:`detect`), where a run's groups are made
(:func:`parent_dir`) and what they are called (:func:`new_name`), and the file access to
cgroupfs that the rest of the plugin shares.

Read at every launch from ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` (nothing is
cached: a host's layout is not a file a plan could depend on).  Files are read and written with
``os.open``/``os.read``: a text-mode ``open()`` costs ~80 µs more per file.
"""

from __future__ import annotations

import errno
import os
import time

from secrun.errors import SetupError, SyscallError, errno_text

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Protocol

    from secrun.context import RunContext

    from .plan import CgroupsPlan

    Mount = tuple[str, str]  # (mount point, secrun's own path below the mount's root)

SECTION = "cgroups"
CPU_PERIOD_US = 100_000
# Controllers (the v2 names; v1 calls io "blkio") each limit needs.
CONTROLLER_OF = {"memory_max": "memory", "swap_max": "memory", "pids_max": "pids",
                 "cpu_max": "cpu", "cpu_weight": "cpu", "io_weight": "io"}
LIMIT_KEYS = ("memory_max", "swap_max", "pids_max", "cpu_max", "cpu_weight", "io_weight")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer", "blkio")
_HEX = frozenset("0123456789abcdef")


def set_limits(plan: Mapping[str, object]) -> list[str]:
    """The limit keys a plan sets (in :data:`LIMIT_KEYS` order)."""
    return [k for k in LIMIT_KEYS if plan[k] is not None]


# --- where the hierarchies are -----------------------------------------------------------------

class Layout:
    """Where each cgroup hierarchy is mounted and where secrun sits in it.

    ``v1``: {controller: (mountpoint, own path)} for every mounted v1 controller;
    ``v2``: (mountpoint, own path) of the cgroup2 mount, or None.
    """

    __slots__ = ("v1", "v2")

    def __init__(self, v1: dict[str, Mount], v2: Mount | None) -> None:
        self.v1, self.v2 = v1, v2

    @property
    def kind(self) -> str:
        if self.v2 and not self.v1:
            return "v2"
        if self.v1 and self.v2:
            return "hybrid"
        return "v1" if self.v1 else "none"

    def v2_controllers(self, parent_dir: str) -> set[str]:
        return set(read(os.path.join(parent_dir, "cgroup.controllers")).split())

    def delegated(self) -> str | None:
        """On a pure v2 host, for an ordinary user running inside the subtree its service
        manager delegated to it (systemd's ``user@UID.service``, owned by the user): that
        subtree, as a path from the hierarchy's root; None otherwise.  The run's group is then
        made there (``[cgroups].parent = ""``): the user's own group, a scope below it, holds
        processes, so v2's "no internal processes" rule forbids controllers below it."""
        euid = os.geteuid()
        if euid == 0 or self.v1 or self.v2 is None:
            return None
        mount, own = self.v2
        parts = own.strip("/").split("/")
        for i in range(len(parts), 0, -1):
            if parts[i - 1] != f"user@{euid}.service":
                continue
            rel = "/" + "/".join(parts[:i])
            try:
                if os.stat(os.path.join(mount, rel.lstrip("/"))).st_uid == euid:
                    return rel
            except OSError:
                return None
        return None

    def own_procs(self) -> str | None:
        """The ``cgroup.procs`` of the group secrun itself is in (in its first hierarchy)."""
        own = next(iter(self.v1.values()), None) or self.v2
        if own is None:
            return None
        return os.path.join(own[0], own[1].lstrip("/"), "cgroup.procs")


def _own_groups(pid: str) -> tuple[dict[str, str], str | None]:
    """({v1 controller: path}, v2 path or None) of a process, from /proc/PID/cgroup."""
    own_v1: dict[str, str] = {}
    own_v2 = None
    for line in slurp(f"/proc/{pid}/cgroup").splitlines():
        hid, ctrls, path = line.split(":", 2)
        if hid == "0" and ctrls == "":
            own_v2 = path
        else:
            for c in ctrls.split(","):
                own_v1[c] = path
    return own_v1, own_v2


def detect(pid: str = "self") -> Layout:
    """Read the mount table and our own cgroup membership (no changes)."""
    own_v1, own_v2 = _own_groups(pid)
    v1: dict[str, Mount] = {}
    v2 = None
    for line in slurp(f"/proc/{pid}/mountinfo").splitlines():
        if "cgroup" not in line:
            continue
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype, opts = rfields[0], rfields[2]
        if fstype == "cgroup2" and v2 is None and own_v2 is not None:
            v2 = (_unescape(fields[4]), _below(own_v2, _unescape(fields[3])))
        elif fstype == "cgroup":
            for c in opts.split(","):
                if c in V1_CONTROLLERS and c not in v1 and c in own_v1:
                    v1[c] = (_unescape(fields[4]), _below(own_v1[c], _unescape(fields[3])))
    return Layout(v1, v2)


def _unescape(s: str) -> str:
    """A mountinfo field with its octal escapes (``\\040`` for a space) decoded."""
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        code = s[i + 1:i + 4]
        if s[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _below(path: str, root: str) -> str:
    """Our cgroup path relative to the mount's root (a mount may show a subtree)."""
    if root == "/" or not root:
        return path
    if path == root:
        return "/"
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")):]
    return path  # not below the mount root: use it as is, mkdir will fail clearly


def parent_dir(mount: str, own: str, parent: str) -> str:
    """The directory the run's group is created in, in one hierarchy."""
    if not parent:
        rel = own
    elif parent.startswith("/"):
        rel = parent
    else:
        rel = own.rstrip("/") + "/" + parent
    return os.path.normpath(mount + "/" + rel.strip("/"))


# --- what the groups are called ------------------------------------------------------------------

def new_name() -> str:
    """``secrun-<pid>-<12 hex>``: the 12 hex digits (not the 8 of groups made before the lock)
    tell gc that the group's liveness is its lock (see :mod:`.lock`).  The pid is only
    informative: it is namespace-local when secrun runs in a pid namespace."""
    return f"secrun-{os.getpid()}-{os.urandom(6).hex()}"


def group_name_kind(name: str) -> str | None:
    """What a group name says: ``locked`` for ``secrun-<pid>-<12 hex>``, ``legacy`` for
    ``secrun-<pid>-<8 hex>`` (made before the lock), None for any other name."""
    parts = name.split("-")
    if len(parts) != 3 or parts[0] != "secrun" or not parts[1].isdigit() \
            or not _HEX.issuperset(parts[2]):
        return None
    return {12: "locked", 8: "legacy"}.get(len(parts[2]))


def human(n: int | str | None) -> str:
    """A byte count as the profile would write it (``"50M"``)."""
    if not isinstance(n, int):
        return str(n)
    for unit, mult in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return f"{n}"


# --- cgroupfs file access -----------------------------------------------------------------------

def slurp(path: str) -> str:
    """The whole content of a procfs/cgroupfs file as text; OSError if it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 65536)
        if data:
            more = os.read(fd, 65536)
            while more:
                data += more
                more = os.read(fd, 65536)
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape")


def read(path: str, default: str = "") -> str:
    try:
        return slurp(path)
    except OSError:
        return default


def put(path: str, data: bytes) -> None:
    """Write ``data`` to a cgroup control file; OSError as the kernel gives it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write(path: str, value: object, key: str | None = None,
          human_value: object = None) -> None:
    """Write a cgroup control file; a failure names the file (and the profile key)."""
    try:
        put(path, str(value).encode())
    except OSError as e:
        raise err(path, e, key, human_value) from None


def err(path: str, e: OSError, key: str | None, hv: object) -> SetupError:
    """The error for a cgroup file that could not be written (or made): keeps ``e.errno``."""
    why = errno_text(e.errno or 0)
    if key:
        why = f"cannot set [cgroups].{key} = {hv}: {why}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why += " (no write access to this cgroup tree: run as root or name a delegated, " \
               "writable [cgroups].parent)"
    return SetupError(path, why, e.errno)


def keyed(path: str) -> dict[str, int]:
    """A 'key value' per line file (memory.events, cpu.stat, memory.oom_control) as ints."""
    out = {}
    for line in read(path).splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def number(path: str) -> int | None:
    """A file holding one integer (memory.peak, pids.peak, cpuacct.usage), or None."""
    try:
        return int(read(path, "0"))
    except ValueError:
        return None


def usage_stats(dir_of: Callable[[str], str | None],
                table: Iterable[tuple[str, str, str, str, str, str]],
                full: bool) -> dict[str, int]:
    """A run's statistics from its group files: for each (controller, events file, event,
    key, peak file, peak key) of ``table`` whose controller has a group (``dir_of``), the
    event's count as ``key`` and, with ``full``, the peak file's number as ``peak key``."""
    out = {}
    for ctrl, events, event, key, peak, peak_key in table:
        d = dir_of(ctrl)
        if d is None:
            continue
        out[key] = keyed(os.path.join(d, events)).get(event, 0)
        n = number(os.path.join(d, peak)) if full else None
        if n is not None:
            out[peak_key] = n
    return out


def procs(d: str) -> list[int]:
    """Pids in group ``d`` and every group below it."""
    out = []
    for root, _dirs, _files in os.walk(d):
        for line in read(os.path.join(root, "cgroup.procs")).split():
            out.append(int(line))
    return out


def remove_group(d: str, kill: Callable[[], None]) -> None:
    """Remove group ``d``.  One rmdir in the normal case: the kernel removes a group only when
    no process is in it and it has no child group, so success proves both.  Otherwise (a
    member still exiting, a group the workload made below) :func:`rmdir_tree` kills, removes
    deepest first and retries."""
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        rmdir_tree(d, kill=kill)


def rmdir_tree(d: str, kill: Callable[[], None] | None = None, timeout: float = 3.0) -> None:
    """Remove group ``d`` and its descendants, deepest first.  A group that is still busy
    (its last processes are exiting) is retried, calling ``kill`` again, until ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        busy = None
        for root, _dirs, _files in os.walk(d, topdown=False):
            try:
                os.rmdir(root)
            except FileNotFoundError:
                pass
            except OSError as e:
                busy = SyscallError(f"rmdir({root})", e.errno)
        if busy is None:
            return
        if time.monotonic() > deadline:
            raise busy
        if kill is not None:
            kill()
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def wait_until(cond: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    return True


def sigkill_all(pids: Iterable[int]) -> None:
    for p in pids:
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass


class LimitWriter:
    """Writes a run's limit files for a manager: ``dir_of(controller)`` is the group directory
    holding that controller's files (None: not available).  A failed write raises when the
    section is required and is reported otherwise; ``done`` lists (path, value) written."""

    def __init__(self, ctx: RunContext, dir_of: Callable[[str], str | None]) -> None:
        self.ctx, self.dir_of = ctx, dir_of
        self.required = ctx.required(SECTION)
        self.done: list[tuple[str, str]] = []

    def put(self, ctrl: str, fname: str, value: object, key: str, hv: object,
            if_missing: Callable[[], None] | None = None) -> None:
        d = self.dir_of(ctrl)
        if d is None:
            return
        path = os.path.join(d, fname)
        try:
            put(path, str(value).encode())
        except FileNotFoundError as e:
            if if_missing is not None:
                if_missing()
            else:
                self.fail(path, e, key, hv)
            return
        except OSError as e:
            self.fail(path, e, key, hv)
            return
        self.done.append((path, str(value)))

    def fail(self, path: str, e: OSError, key: str, hv: object) -> None:
        error = err(path, e, key, hv)
        if self.required:
            raise error
        self.ctx.warn(f"cgroups: best-effort limit not applied: {error}")


def swap_active() -> bool:
    """Whether the host has any swap (``/proc/swaps`` lists more than its header)."""
    return len(read("/proc/swaps").splitlines()) > 1


if TYPE_CHECKING:
    class Manager(Protocol):
        """What each hierarchy version implements (:class:`.v1.V1Manager`,
        :class:`.v2.V2Manager`).  ``dirs`` lists the group directories it made."""

        kind: str
        dirs: list[str]

        def create(self) -> None:
            """Make the run's group directories (recording each in ``dirs`` as it is made)
            and take their locks (:func:`.lock.make_group`)."""

        def parents(self) -> list[str]:
            """The directories the run's groups are made in."""

        def apply(self, plan: CgroupsPlan, ctx: RunContext) -> list[tuple[str, str]]:
            """Write the limits of ``plan``; returns [(file, value)] written."""

        def add_task(self, pid: int) -> None:
            """Move process ``pid`` into the group(s)."""

        def kill(self) -> None:
            """SIGKILL everything left in the group(s) and wait until they are empty."""

        def remove(self) -> None:
            """Remove the group(s), retrying while the last members exit."""

        def discard(self) -> bool:
            """Remove the group(s) at once if nothing is left in them; True if they are gone.
            Only a manager whose group holds every process of the run removes anything."""

        def stats(self, full: bool = True) -> dict[str, int]:
            """What the run did: oom_kill and pids_max_hits (reported on every run), and with
            ``full`` (``-v``) also pids_peak, memory_peak, cpu_usec."""
