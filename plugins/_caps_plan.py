"""Planning half of the ``capabilities`` plugin: the ``[capabilities]`` schema, name parsing,
``secrun_compile`` and ``secrun_audit``.

Imported lazily by the hooks in :mod:`secrun.plugins.capabilities`, so a cached launch never
loads it; the stage code (capget/capset/prctl) stays in that module.
"""

import os

from secrun.errors import ConfigError, shown
from secrun.plugins.capabilities import NAMES, SECTION, cap_name, hexmask, names_of
from secrun.schema import Field, Section, is_digits, parse_digits

NUMBERS = {n: i for i, n in enumerate(NAMES)}

# Capabilities that amount to (or easily lead to) full control of the host: keeping any of them
# leaves most of the exposure in place (audit weight).
HOST_LEVEL = frozenset(NUMBERS[n] for n in (
    "sys_admin", "sys_module", "sys_rawio", "sys_ptrace", "dac_read_search", "net_admin",
    "sys_boot", "mac_admin", "mac_override", "bpf", "perfmon", "setfcap", "mknod",
    "linux_immutable", "sys_time", "syslog", "audit_control", "checkpoint_restore"))


def sections():
    return [Section(SECTION, "Linux capabilities of the workload: bounding, permitted, effective, "
                    "inheritable and ambient sets (see docs/capabilities.md).", [
        Field("keep", [(str, int)], ["all"],
              "capabilities that may survive, everything else is dropped from every set: names "
              "with or without CAP_, any case, cap_<n> or numbers; [\"all\"] keeps what secrun "
              "holds, [] keeps nothing"),
        Field("drop", [(str, int)], [],
              "capabilities removed from what `keep` leaves ([\"all\"]: everything)"),
    ])]


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    # No /proc (or an odd one): PR_CAPBSET_READ answers EINVAL past the last capability.
    from secrun.kernel import PR_CAPBSET_READ, libc

    n = 0
    while libc.prctl(PR_CAPBSET_READ, n + 1, 0, 0, 0) >= 0:
        n += 1
    return n


def parse_names(values, last: int, key: str) -> tuple[bool, int]:
    """(``"all"`` was given, mask of the named capabilities) for a ``keep``/``drop`` list.

    Accepted: ``CAP_CHOWN``, ``chown`` (any case), ``cap_<n>`` and plain numbers, for
    capabilities 0 .. ``last``.
    """
    everything, mask = False, 0
    for value in values:
        if isinstance(value, int):
            num, text = value, str(value)
        else:
            text = value.strip().lower()
            if text == "all":
                everything = True
                continue
            bare = text[4:] if text.startswith("cap_") else text
            if is_digits(bare):
                # (ASCII digits only, and no int() of thousands of them: see secrun.schema)
                try:
                    num = parse_digits(bare, last)
                except ValueError:
                    num = last + 1  # too large: refused below
            elif bare in NUMBERS and value.isascii():  # (the Kelvin sign lowers to "k")
                num = NUMBERS[bare]
            else:
                raise ConfigError(SECTION, key, f"unknown capability {shown(value)} (names are "
                                  f"CAP_CHOWN .. {cap_name(min(last, len(NAMES) - 1)).upper()}, "
                                  f"with or without CAP_, or cap_<n>, or \"all\")")
        if num < 0 or num > last:
            raise ConfigError(SECTION, key, f"capability {shown(value)} is not known to the "
                              f"running kernel (cap_last_cap = {last})")
        mask |= 1 << num
    return everything, mask


def compile_plan(cfg) -> dict:
    last = last_cap()
    full = (1 << (last + 1)) - 1
    keep_all, keep = parse_names(cfg["keep"], last, "keep")
    drop_all, drop = parse_names(cfg["drop"], last, "drop")
    want = 0 if drop_all else (full if keep_all else keep) & ~drop
    return {"last": last, "want": want}


# --- audit -----------------------------------------------------------------------------------

def _status_masks() -> dict:
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


def expected_sets(want: int, workload_root: bool, user_namespace: bool) -> dict:
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


def user_namespace(config) -> tuple[bool, bool]:
    """(whether the launch makes a user namespace, whether the caller is uid 0 inside it),
    read from the [namespaces] section (keys ``user``: true/false/"auto" = when not root, and
    ``user_map``: "self" keeps the caller's uid, "root" and "range" make it uid 0)."""
    ns = config.get("namespaces") or {}
    user = ns.get("user", False)
    made = os.geteuid() != 0 if user == "auto" else user is True
    if not made:
        return False, False
    return True, ns.get("user_map", "self") != "self" or os.geteuid() == 0


def audit(ctx) -> list:
    plan = ctx.plan[SECTION]
    userns, mapped_as_root = user_namespace(ctx.config)
    uid = (ctx.plan.get("identity") or {}).get("uid")
    if uid is None:
        # Identity unchanged: secrun's own uid, or root of a user namespace that maps the
        # caller to uid 0.
        uid = 0 if mapped_as_root else os.geteuid()
    sets = expected_sets(plan["want"], uid == 0, userns)
    final = sets["CapEff"]
    kept = names_of(final)
    if not final:
        weight = 0.0
    elif any(final >> n & 1 for n in HOST_LEVEL):
        weight = 0.9
    else:
        weight = min(0.5, 0.05 * len(kept))
    lost = plan["want"] & ~final & ((1 << (plan["last"] + 1)) - 1)
    detail = (f"workload uid {uid}: " + ("root, so nothing inheritable or ambient"
                                         if uid == 0 else "non-root, so the kept set is ambient")
              + (f"; asked for but not held by secrun: {', '.join(names_of(lost))}"
                 if lost else ""))
    return [{
        "control": "capabilities", "section": SECTION, "key": "keep",
        "value": ", ".join(kept) if kept else "none (every set empty)",
        "status": "enforced", "weight": weight, "detail": detail,
        "expect": {"status." + k: hexmask(v) for k, v in sets.items()},
    }]
