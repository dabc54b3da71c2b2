"""I/O scheduling priority: ``ioprio_set(2)``/``ioprio_get(2)`` and their encoding.

glibc has no wrapper for either call: they go through :func:`secrun.kernel.syscall`, which
knows their numbers per architecture.  A priority is ``class << 13 | level``.

Imported by the launch (with :mod:`secrun_example`): ``ctypes`` comes through
:mod:`secrun.kernel`, which a launch that runs any raw call imports anyway.
"""

from __future__ import annotations

from secrun.kernel import error, syscall

IOPRIO_WHO_PROCESS = 1
CLASS_SHIFT = 13
CLASSES = {0: "none", 1: "realtime", 2: "best-effort", 3: "idle"}
CLASS_OF = {name: number for number, name in CLASSES.items()}

_ioprio_set = syscall("ioprio_set")
_ioprio_get = syscall("ioprio_get")


def encode(cls: str, level: int) -> int:
    """The kernel's value for a class name and level (the idle class has no levels)."""
    return CLASS_OF[cls] << CLASS_SHIFT | (level if cls in ("best-effort", "realtime") else 0)


def describe(value: int) -> str:
    """``"idle"``, ``"best-effort:7"``, ``"none"`` (the default: follows the nice value)."""
    cls = CLASSES.get(value >> CLASS_SHIFT, str(value >> CLASS_SHIFT))
    level = value & ((1 << CLASS_SHIFT) - 1)
    return f"{cls}:{level}" if cls in ("best-effort", "realtime") else cls


def set_self(value: int) -> None:
    """``ioprio_set(IOPRIO_WHO_PROCESS, 0, value)``: this process (and what it starts)."""
    if _ioprio_set(IOPRIO_WHO_PROCESS, 0, value) != 0:
        raise error(f"ioprio_set({describe(value)})")


def get(pid: int) -> int:
    """``ioprio_get(IOPRIO_WHO_PROCESS, pid)``: a process's I/O priority (0: none set)."""
    value = _ioprio_get(IOPRIO_WHO_PROCESS, pid)
    if value == -1:
        raise error(f"ioprio_get({pid})")
    return value
