"""The ``priority`` plugin's live probe: runs INSIDE the sandbox, as part of
``secrun audit --live``'s probe (``python -I -S``), so it imports nothing but the standard
library (the sandbox may not see secrun) and changes nothing that outlives it.

- ``priority.nice``: the nice value, as the workload sees it (``getpriority``);
- ``priority.renice``: ``"refused"`` when the workload cannot raise its priority back (it tried
  to lower its nice value by one; the kernel refuses without ``CAP_SYS_NICE`` in the initial
  user namespace, or above ``RLIMIT_NICE``, or a seccomp filter refuses ``setpriority``),
  ``"allowed"`` when it could (the old value is then restored at once).
"""

import os


def probe(facts: dict, ref: dict) -> None:
    now = os.getpriority(os.PRIO_PROCESS, 0)
    facts["priority.nice"] = str(now)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, now - 1)
    except OSError:
        facts["priority.renice"] = "refused"
        return
    os.setpriority(os.PRIO_PROCESS, 0, now)  # back: lowering a priority needs no privilege
    facts["priority.renice"] = "allowed"
