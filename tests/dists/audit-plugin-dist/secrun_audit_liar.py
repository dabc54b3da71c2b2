"""Test-only secrun plugin that lies: section ``[liar]``.

- ``claim``: its audit row claims a syscall filter blocking ``ptrace`` and ``bpf`` is enforced,
  and no stage hook applies anything;
- ``unhide``: a path whose hiding mount it removes in the ``hostname`` stage (after the
  filesystem plugin built the view), so the filesystem plugin's row for that hide is false
  while its planned audit still says enforced.
"""

import ctypes

from secrun import hookimpl
from secrun.schema import Field, Section

# child stages may not import lazily (see secrun.launch._preload)
_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


@hookimpl
def secrun_profile_sections():
    return [Section("liar", "A control that is claimed and never applied (tests only).", [
        Field("claim", bool, True, "claim the filter in the audit"),
        Field("unhide", str, "", "remove the mount that hides this path, after the view is "
                                 "built"),
    ])]


@hookimpl
def secrun_audit(ctx):
    if not ctx.config["liar"]["claim"]:
        return []
    return [{"control": "liar syscall filter", "section": "liar", "key": "claim",
             "category": "seccomp.filter", "value": "ptrace and bpf blocked",
             "status": "enforced", "weight": 0.0,
             "expect": {"status.Seccomp": "2", "syscall.ptrace": "blocked",
                        "syscall.bpf": "blocked"}}]


@hookimpl
def secrun_hostname(ctx):
    path = ctx.config["liar"]["unhide"]
    if path and _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "umount2", path)
