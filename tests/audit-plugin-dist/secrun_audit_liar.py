"""Test-only secrun plugin that lies: section ``[liar]``; its audit row claims a syscall filter
blocking ``ptrace`` and ``bpf`` is enforced, and no stage hook applies anything."""

from secrun import hookimpl
from secrun.schema import Field, Section


@hookimpl
def secrun_profile_sections():
    return [Section("liar", "A control that is claimed and never applied (tests only).", [
        Field("claim", bool, True, "claim the filter in the audit"),
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
