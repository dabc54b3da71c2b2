"""A process's scheduling priorities, seen from outside it (``/proc/PID`` and
``ioprio_get``): the live facts of :func:`.audit.secrun_live_facts` and what
``secrun priority show`` prints.

- ``priority.nice``: the nice value (field 19 of ``/proc/PID/stat``);
- ``priority.ioprio``: ``"idle"``, ``"best-effort:N"``, ``"realtime:N"`` or ``"none"`` (no
  class set: the I/O schedulers derive one from the nice value);
- ``priority.autogroup``: the nice value of the process's autogroup (``/proc/PID/autogroup``),
  ``"off"`` when the kernel does not schedule by autogroup
  (``kernel.sched_autogroup_enabled = 0``), ``"none"`` when it has no autogroups, ``"root"``
  when the process is in the kernel's default group (never made a session of its own since
  boot: the kernel prints nothing for it).
"""

from __future__ import annotations

from . import ioprio

AUTOGROUP_SYSCTL = "/proc/sys/kernel/sched_autogroup_enabled"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def kernel_autogroup() -> str:
    """``"on"``, ``"off"`` or ``"none"``: this kernel's autogroup scheduling."""
    try:
        return "on" if _read(AUTOGROUP_SYSCTL).strip() == "1" else "off"
    except FileNotFoundError:
        return "none"


def nice(pid: int) -> int:
    """The nice value: ``/proc/PID/stat`` field 19 (counted after the ``)`` that ends the
    command name, which may hold spaces and parentheses itself)."""
    fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    return int(fields[19 - 3])


def autogroup(pid: int) -> str:
    state = kernel_autogroup()
    if state != "on":
        return state
    try:
        text = _read(f"/proc/{pid}/autogroup")  # "/autogroup-123 nice 10"
    except FileNotFoundError:
        return "none"
    words = text.split()
    return words[-1] if words else "root"


def observe(pid: int) -> dict[str, str]:
    """The facts of process ``pid``; OSError (ProcessLookupError...) if it cannot be read."""
    return {"priority.nice": str(nice(pid)),
            "priority.ioprio": ioprio.describe(ioprio.get(pid)),
            "priority.autogroup": autogroup(pid)}
