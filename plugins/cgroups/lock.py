"""The run's lock: how a live run's groups are told from a dead run's leftovers.

Whether a run is alive is never told from the pid in its group's name (namespace-local) nor
from a command line: the supervisor holds an exclusive ``flock`` on each of its group
directories from right after ``mkdir`` (:func:`make_group`) until it has removed them
(:func:`unlock`).  The lock lives as long as the open file description: the supervisor's fd is
``O_CLOEXEC`` (it never reaches an exec'd program) and is closed in every child right after
fork, so the lock is released exactly when the supervisor exits or is killed, whatever pid
namespace it runs in.  An ordinary user can open a group directory (0755) and hold its lock
too: that only makes a dead run's group look alive (it is kept), never a live one dead.

:func:`sweep` is what a launch does with that: before making its own groups it removes the
empty, unlocked groups of dead runs next to them.  ``secrun cgroups gc`` (:mod:`.gc`) also
kills what still runs in unlocked groups.
"""

from __future__ import annotations

import fcntl  # built into the interpreter; the namespaces plugin loads it on a launch anyway
import os

from secrun.errors import SetupError

from .layout import err, group_name_kind, new_name, wait_until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

_LOCKS: dict[str, int] = {}  # group directory -> fd holding its lock (in the supervisor)
LOCK_WAIT = 0.5  # seconds a new group's lock may be held by a sweep before it is given up


def _close_locks_in_child() -> None:
    for fd in _LOCKS.values():
        try:
            os.close(fd)  # the parent's reference keeps the lock
        except OSError:
            pass
    _LOCKS.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


def open_dir(d: str) -> int:
    return os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on an open group directory without waiting."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_dir(d: str, fd: int) -> bool:
    try:
        a, b = os.stat(d), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def make_group(d: str) -> str:
    """Create group directory ``d`` and take its lock, held until :func:`unlock`; returns the
    directory made (another name in the same parent if ``d`` had to be given up).

    Between ``mkdir`` and ``flock`` the new group is empty and unlocked, so a sweep of another
    secrun (or gc) may lock and remove it.  So the lock is taken without waiting forever, and
    then the path must still be the directory locked; otherwise the group is made again under
    a new name."""
    for _ in range(4):
        try:
            os.mkdir(d, 0o755)
        except OSError as e:
            raise err(d, e, None, None) from None
        try:
            fd = open_dir(d)
        except FileNotFoundError:
            d = _renamed(d)  # removed by a sweep already
            continue
        try:
            locked = _lock_soon(fd)
            if locked and _same_dir(d, fd):
                _LOCKS[d] = fd
                return d
        except BaseException:
            os.close(fd)
            _rmdir_quietly(d)
            raise
        os.close(fd)
        if not locked:  # held past a sweep's moment by another process: give the name up
            _rmdir_quietly(d)
        d = _renamed(d)
    raise SetupError(d, "the run's group was removed or locked by another process as soon as "
                        "it was made, four times in a row")


def _lock_soon(fd: int) -> bool:
    """Take the lock of a group just made, waiting at most :data:`LOCK_WAIT` for a sweep that
    holds it to let go."""
    return try_lock(fd) or wait_until(lambda: try_lock(fd), timeout=LOCK_WAIT)


def _rmdir_quietly(d: str) -> None:
    try:
        os.rmdir(d)
    except OSError:
        pass


def _renamed(d: str) -> str:
    return os.path.join(os.path.dirname(d), new_name())


def unlock(d: str) -> None:
    fd = _LOCKS.pop(d, None)
    if fd is not None:
        os.close(fd)


def sweep(parents: Iterable[str]) -> list[str]:
    """Remove the leftover groups of dead runs in ``parents`` (the directories this run's
    groups are made in): every ``secrun-<pid>-<12 hex>`` whose lock is free and that the
    kernel lets go of at once (no process in it, no group below it).  A group that still
    holds something is left for ``secrun cgroups gc``, which kills.  Returns what was removed.
    Costs one directory listing per hierarchy when there is nothing to remove."""
    removed = []
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            # cheap tests first: the parent also lists control files and legacy groups
            if name[-13:-12] != "-" or not name.startswith("secrun-") \
                    or group_name_kind(name) != "locked":
                continue
            d = os.path.join(parent, name)
            if _remove_if_unlocked(d):
                removed.append(d)
    return removed


def _remove_if_unlocked(d: str) -> bool:
    """rmdir ``d`` while holding its lock, if the lock is free; False if it is held, or the
    kernel refuses (a process or a group is in it)."""
    try:
        fd = open_dir(d)
    except OSError:
        return False
    try:
        if try_lock(fd):
            os.rmdir(d)
            return True
    except OSError:
        pass  # busy: processes or groups left in it
    finally:
        os.close(fd)
    return False
