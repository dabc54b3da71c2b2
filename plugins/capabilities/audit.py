"""The ``capabilities`` plugin's audit: its row (the sets the workload will show), the category
``capabilities`` with its judge, and the one table of what each capability weighs.

The planned row and the live judge score the same way: the weighted share of the capabilities
the workload holds or can gain (:data:`WEIGHTS`), halved in a new user namespace.  The planned
row applies it to the sets the workload is expected to show; the judge to the sets observed."""

from __future__ import annotations

import os

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row
from secrun.context import AuditContext
from secrun.kernel import cap_names_of, hexmask

from .plan import SECTION, CapabilitiesPlan

# What a capability gives a process over the rest of the system, by number (the judge works
# from the raw masks); the others weigh 0.3 each.
WEIGHTS = {
    21: 3.0,  # sys_admin
    16: 3.0,  # sys_module
    17: 3.0,  # sys_rawio
    19: 2.0,  # sys_ptrace
    2: 2.0,   # dac_read_search
    1: 2.0,   # dac_override
    12: 2.0,  # net_admin
    39: 2.0,  # bpf
    7: 1.5,   # setuid
    6: 1.0,   # setgid
    8: 1.0,   # setpcap
    13: 1.0,  # net_raw
    22: 1.0,  # sys_boot
    38: 1.0,  # perfmon
    25: 1.0,  # sys_time
    27: 1.0,  # mknod
    31: 1.0,  # setfcap
    0: 1.0,   # chown
    3: 1.0,   # fowner
    18: 0.5,  # sys_chroot
    24: 1.0,  # sys_resource
    33: 1.0,  # mac_override
    32: 1.0,  # mac_admin
}
OTHERS = 0.3
KNOWN_LAST = 40  # the share is over at least capabilities 0..40 (checkpoint_restore)


def exposure(reach: int, bounding: int, in_user_namespace: bool) -> float:
    """The weighted share of the capabilities in ``reach``, among those up to the highest of
    ``bounding`` (at least :data:`KNOWN_LAST`); halved in a new user namespace, whose
    capabilities count only over its own resources."""
    last = max(bounding.bit_length() - 1, KNOWN_LAST)
    total = sum(WEIGHTS.get(i, OTHERS) for i in range(last + 1))
    held = sum(WEIGHTS.get(i, OTHERS) for i in range(last + 1) if reach >> i & 1)
    return held / total * (0.5 if in_user_namespace else 1.0)


# --- planned --------------------------------------------------------------------------------------

def _status_masks() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Cap"):
                    k, _, v = line.partition(":")
                    out[k] = int(v.strip(), 16)
    except OSError:
        pass
    return out


def expected_sets(want: int, workload_root: bool, user_namespace: bool) -> dict[str, int]:
    """The /proc/self/status masks the workload should show, for the process running secrun.

    In a new user namespace the sandbox starts with every capability of that namespace, bounded
    by the bounding set it inherits; otherwise with secrun's own permitted set.
    """
    st = _status_masks()
    bnd = st.get("CapBnd", 0)
    avail = bnd if user_namespace else st.get("CapPrm", 0) & bnd
    final = want & avail
    return {"CapInh": 0 if workload_root else final, "CapPrm": final, "CapEff": final,
            "CapBnd": final, "CapAmb": 0 if workload_root or not final else final}


def _workload_uid(ctx: AuditContext) -> int:
    """The workload's uid: [identity]'s, else secrun's own, or root of a user namespace that
    maps the caller to uid 0."""
    uid = ctx.fact("identity.uid")
    if isinstance(uid, int):
        return uid
    return 0 if ctx.fact("namespaces.user_root") else os.geteuid()


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    plan: CapabilitiesPlan = ctx.plan
    userns = "user" in (ctx.fact("namespaces.made") or [])
    uid = _workload_uid(ctx)
    sets = expected_sets(plan["want"], uid == 0, userns)
    final = sets["CapEff"]
    kept = cap_names_of(final)
    lost = plan["want"] & ~final & ((1 << (plan["last"] + 1)) - 1)
    detail = (f"workload uid {uid}: " + ("root, so nothing inheritable or ambient"
                                         if uid == 0 else "non-root, so the kept set is ambient")
              + (f"; asked for but not held by secrun: {', '.join(cap_names_of(lost))}"
                 if lost else ""))
    return [{
        "control": "capabilities", "section": SECTION, "key": "keep",
        "category": "capabilities",
        "value": ", ".join(kept) if kept else "none (every set empty)",
        "status": "enforced", "weight": exposure(final, final, userns),
        "detail": detail,
        "expect": {"status." + k: hexmask(v) for k, v in sets.items()},
    }]


# --- live -----------------------------------------------------------------------------------------

def _hex(facts: dict[str, str], name: str) -> int:
    try:
        return int(facts.get(name, "0") or "0", 16)
    except ValueError:
        return 0


def judge_capabilities(facts: dict[str, str]) -> tuple[float, str] | None:
    if not facts.get("status.CapEff", ""):
        return None
    reach = _hex(facts, "status.CapPrm") | _hex(facts, "status.CapEff") | \
        _hex(facts, "status.CapAmb")
    bounding = _hex(facts, "status.CapBnd")
    if facts.get("status.NoNewPrivs", "") != "1":
        reach |= bounding  # a setuid-root or file-capability exec gains these
    userns = facts.get("ns.user", "") == "new"
    n = bin(reach).count("1")
    return exposure(reach, bounding, userns), \
        f"{n} capabilit{'y' if n == 1 else 'ies'} reachable" + \
        (" (in a user namespace)" if userns and n else "")


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [Category("capabilities", "capabilities", 1.0, judge=judge_capabilities,
                     meaning="weighted share of the capabilities the workload holds or can gain "
                             "(bounding set too when no_new_privs is off); halved in a user "
                             "namespace")]
