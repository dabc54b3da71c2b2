"""I/O scheduling priority: ``ioprio_set(2)``/``ioprio_get(2)`` and their encoding.

glibc has no wrapper for either call, and :data:`secrun.kernel.SYSCALLS` does not list them, so
the numbers are here (x86_64 from ``arch/x86/entry/syscalls/syscall_64.tbl``, aarch64 from
``include/uapi/asm-generic/unistd.h``).  A priority is ``class << 13 | level``.

Imported by the launch (with :mod:`secrun_example`): ``ctypes`` comes through
:mod:`secrun.kernel`, which a launch that runs any raw call imports anyway.
"""

from __future__ import annotations

import os

from secrun.errors import SetupError
from secrun.kernel import error, libc

IOPRIO_WHO_PROCESS = 1
CLASS_SHIFT = 13
CLASSES = {0: "none", 1: "realtime", 2: "best-effort", 3: "idle"}
CLASS_OF = {name: number for number, name in CLASSES.items()}

# name: (x86_64, aarch64)
_NUMBERS = {"ioprio_set": (251, 30), "ioprio_get": (252, 31)}
_COLUMN = {"x86_64": 0, "aarch64": 1, "arm64": 1}.get(os.uname().machine)


def encode(cls: str, level: int) -> int:
    """The kernel's value for a class name and level (the idle class has no levels)."""
    return CLASS_OF[cls] << CLASS_SHIFT | (level if cls in ("best-effort", "realtime") else 0)


def describe(value: int) -> str:
    """``"idle"``, ``"best-effort:7"``, ``"none"`` (the default: follows the nice value)."""
    cls = CLASSES.get(value >> CLASS_SHIFT, str(value >> CLASS_SHIFT))
    level = value & ((1 << CLASS_SHIFT) - 1)
    return f"{cls}:{level}" if cls in ("best-effort", "realtime") else cls


def _call(name: str, *args: int) -> int:
    if _COLUMN is None:
        raise SetupError(name, f"this plugin has no system call number for "
                               f"{os.uname().machine} (its table: x86_64, aarch64)")
    return int(libc.syscall(_NUMBERS[name][_COLUMN], *args))


def set_self(value: int) -> None:
    """``ioprio_set(IOPRIO_WHO_PROCESS, 0, value)``: this process (and what it starts)."""
    if _call("ioprio_set", IOPRIO_WHO_PROCESS, 0, value) != 0:
        raise error(f"ioprio_set({describe(value)})")


def get(pid: int) -> int:
    """``ioprio_get(IOPRIO_WHO_PROCESS, pid)``: a process's I/O priority (0: none set)."""
    value = _call("ioprio_get", IOPRIO_WHO_PROCESS, pid)
    if value == -1:
        raise error(f"ioprio_get({pid})")
    return value
