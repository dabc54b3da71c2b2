"""``secrun cgroups gc`` and ``secrun cgroups list``: the groups of dead runs, everywhere.

A group's liveness is its lock (:mod:`.lock`): the supervisor holds ``flock(LOCK_EX)`` on each
of its group directories until it has removed them.  gc takes the lock itself, without waiting,
before it kills or removes anything, and holds it until the group is gone, so a secrun that is
making a group of that name at the same moment notices and makes another.  Groups named
``secrun-<pid>-<8 hex>`` were made by a secrun from before the lock: their liveness cannot be
told, so gc removes them only when they are empty.  Never imported by a launch (which only
sweeps the empty leftovers next to its own groups, :func:`.lock.sweep`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from secrun.errors import SetupError

from .layout import Layout, detect, group_name_kind, procs, rmdir_tree
from .lock import open_dir, try_lock
from .v1 import kill_v1_dir
from .v2 import kill_v2_dir

Echo = Callable[[str], None]


def find_groups(layout: Layout | None = None) -> list[tuple[str, str]]:
    """Every ``secrun-<pid>-<hex>`` group in every mounted hierarchy: [(path, kind)], kind
    "locked" (liveness is its lock) or "legacy" (made by a secrun before the lock)."""
    layout = layout or detect()
    mounts = {m for m, _ in layout.v1.values()}
    if layout.v2:
        mounts.add(layout.v2[0])
    found = []
    for mnt in sorted(mounts):
        for root, dirs, _files in os.walk(mnt):
            keep = []
            for d in dirs:
                kind = group_name_kind(d)
                if kind:
                    found.append((os.path.join(root, d), kind))
                else:
                    keep.append(d)
            dirs[:] = keep
    return found


def _empty(path: str) -> bool:
    """No process in the group and no group below it."""
    try:
        with os.scandir(path) as it:
            if any(e.is_dir(follow_symlinks=False) for e in it):
                return False
    except OSError:
        return False
    return not procs(path)


def state(path: str, kind: str) -> str:
    """A group's state for ``secrun cgroups list``: in use, orphaned, or for a legacy group
    "legacy, empty" or "legacy, in use or orphaned" (its liveness cannot be told)."""
    if kind == "legacy":
        return "legacy, empty" if _empty(path) else "legacy, in use or orphaned"
    try:
        fd = open_dir(path)
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "in use"  # cannot look: count it as alive
    try:
        return "orphaned" if try_lock(fd) else "in use"
    except OSError:
        return "in use"
    finally:
        os.close(fd)


class _Collector:
    """One gc pass: what it removed (or would), what it left and why."""

    def __init__(self, v2mnt: str | None, dry_run: bool, echo: Echo) -> None:
        self.v2mnt, self.dry_run, self.echo = v2mnt, dry_run, echo
        self.n = 0
        self.failed: list[str] = []
        self.legacy_busy: list[str] = []

    def _in_v2(self, path: str) -> bool:
        return self.v2mnt is not None and \
            (path + "/").startswith(self.v2mnt.rstrip("/") + "/")

    def legacy(self, path: str) -> None:
        """A group made before the lock: removed only when empty."""
        if not _empty(path):
            self.legacy_busy.append(path)
            return
        if self.dry_run:
            self.n += 1
            self.echo(f"would remove {path}")
            return
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return
        except OSError:
            self.legacy_busy.append(path)
            return
        self.n += 1
        self.echo(f"removed {path}")

    def locked(self, path: str) -> None:
        """A group whose liveness is its lock: killed and removed if the lock is free."""
        try:
            fd = open_dir(path)
        except OSError:
            return  # gone meanwhile, or not ours to look at
        try:
            if not try_lock(fd):
                return  # its secrun is alive
            self.n += 1
            if self.dry_run:
                self.echo(f"would remove {path}")
                return
            kill = (lambda: kill_v2_dir(path)) if self._in_v2(path) \
                else (lambda: kill_v1_dir(path))
            try:
                kill()
                rmdir_tree(path, kill=kill)
                self.echo(f"removed {path}")
            except OSError as e:
                self.failed.append(f"{path}: {os.strerror(e.errno or 0)}")
        finally:
            os.close(fd)  # after the rmdir: the lock covered the whole removal


def gc(dry_run: bool = False, echo: Echo = print) -> int:
    """Kill the processes left in orphaned groups and remove the groups; returns the count.
    A group whose lock is held (its secrun is alive, in whatever pid namespace) is left alone;
    a legacy group (made before the lock) is removed only when it is empty."""
    layout = detect()
    v2mnt = layout.v2[0] if layout.v2 else None
    c = _Collector(v2mnt, dry_run, echo)
    groups = find_groups(layout)
    # v2 groups first (cgroup.kill takes a whole tree at once), then the v1 freezer's (freeze
    # and kill), then the other v1 hierarchies, by then normally empty.
    groups.sort(key=lambda g: (not c._in_v2(g[0]), "/freezer/" not in g[0]))
    for path, kind in groups:
        if kind == "legacy":
            c.legacy(path)
        else:
            c.locked(path)
    for path in c.legacy_busy:
        echo(f"left alone {path}: made by a secrun without the run lock, and not empty, so "
             f"whether its secrun is alive cannot be told; kill what runs in it "
             f"({os.path.join(path, 'cgroup.procs')}) and run gc again")
    if c.failed:
        raise SetupError("secrun cgroups gc", "could not remove " + "; ".join(c.failed))
    return c.n
