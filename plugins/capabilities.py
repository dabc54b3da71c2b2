"""The ``capabilities`` plugin: which Linux capabilities survive into the workload.

Section ``[capabilities]``.  Child stage ``capabilities``, which runs after ``identity`` (the
workload's uid, gid and groups are final) and before ``no_new_privs`` (owned by the ``process``
plugin), ``landlock`` and ``seccomp``.

All five sets are handled deliberately.  With K = the capabilities the profile keeps, limited to
those secrun itself holds (a profile can only take capabilities away, never grant new ones):

=========== ======================= ===========================================================
set          root workload           non-root workload
=========== ======================= ===========================================================
bounding     K                       K             (``PR_CAPBSET_DROP`` for every other cap)
permitted    K                       K             (``capset``)
effective    K                       K             (``capset``)
inheritable  empty                   K             (``capset``; ambient needs it)
ambient      empty                   K             (``PR_CAP_AMBIENT_RAISE``)
=========== ======================= ===========================================================

A root workload needs no ambient or inheritable capabilities: at ``execve`` the kernel gives
uid 0 its whole bounding set (K).  A non-root workload loses its permitted set at ``execve``
unless the capabilities are ambient, and an ambient capability must be permitted and
inheritable.  Inside a user namespace "root" means uid 0 of that namespace.

The valid capability numbers are 0 .. ``/proc/sys/kernel/cap_last_cap`` of the running kernel;
names for numbers beyond the table below are written ``cap_<n>`` (or just the number).
"""

import os

from secrun import hookimpl
from secrun.errors import ConfigError, SetupError
from secrun.schema import Field, Section

SECTION = "capabilities"

# Index = capability number (include/uapi/linux/capability.h).  Numbers above the running
# kernel's cap_last_cap are rejected; numbers above this table are accepted as cap_<n>.
NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)
NUMBERS = {n: i for i, n in enumerate(NAMES)}

# Capabilities that amount to (or easily lead to) full control of the host: keeping any of them
# leaves most of the exposure in place (audit weight).
HOST_LEVEL = frozenset(NUMBERS[n] for n in (
    "sys_admin", "sys_module", "sys_rawio", "sys_ptrace", "dac_read_search", "net_admin",
    "sys_boot", "mac_admin", "mac_override", "bpf", "perfmon", "setfcap", "mknod",
    "linux_immutable", "sys_time", "syslog", "audit_control", "checkpoint_restore"))

LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def cap_name(n: int) -> str:
    return "cap_" + (NAMES[n] if n < len(NAMES) else str(n))


def names_of(mask: int) -> list[str]:
    return [cap_name(i) for i in range(mask.bit_length()) if mask >> i & 1]


def hexmask(mask: int) -> str:
    """A mask as /proc/self/status prints it."""
    return "%016x" % mask


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
            if bare.isdigit():
                num = int(bare)
            elif bare in NUMBERS:
                num = NUMBERS[bare]
            else:
                raise ConfigError(SECTION, key, f"unknown capability {value!r} (names are "
                                  f"CAP_CHOWN .. {cap_name(min(last, len(NAMES) - 1)).upper()}, "
                                  f"with or without CAP_, or cap_<n>, or \"all\")")
        if num < 0 or num > last:
            raise ConfigError(SECTION, key, f"capability {value!r} ({num}) is not known to the "
                              f"running kernel (cap_last_cap = {last})")
        mask |= 1 << num
    return everything, mask


@hookimpl
def secrun_profile_sections():
    return [Section(SECTION, "Linux capabilities of the workload: bounding, permitted, effective, "
                    "inheritable and ambient sets (see docs/capabilities.md).", [
        Field("keep", [(str, int)], ["all"],
              "capabilities that may survive, everything else is dropped from every set: names "
              "with or without CAP_, any case, cap_<n> or numbers; [\"all\"] keeps what secrun "
              "holds, [] keeps nothing"),
        Field("drop", [(str, int)], [],
              "capabilities removed from what `keep` leaves ([\"all\"]: everything)"),
    ])]


@hookimpl
def secrun_compile(ctx):
    cfg = ctx.config[SECTION]
    last = last_cap()
    full = (1 << (last + 1)) - 1
    keep_all, keep = parse_names(cfg["keep"], last, "keep")
    drop_all, drop = parse_names(cfg["drop"], last, "drop")
    want = 0 if drop_all else (full if keep_all else keep) & ~drop
    ctx.plan[SECTION] = {"last": last, "want": want}


# --- the kernel interface: capget/capset (v3) and prctl ------------------------------------------

_STRUCTS: tuple = ()


def _structs():
    global _STRUCTS
    if _STRUCTS:
        return _STRUCTS
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    _STRUCTS = (ctypes, Header, Data * 2)
    return _STRUCTS


def capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread, as 64-bit masks."""
    from secrun.kernel import check, libc

    ctypes, Header, Data2 = _structs()
    hdr, data = Header(LINUX_CAPABILITY_VERSION_3, 0), Data2()
    check(libc.capget(ctypes.byref(hdr), data), "capget")
    lo, hi = data[0], data[1]
    return (lo.effective | hi.effective << 32, lo.permitted | hi.permitted << 32,
            lo.inheritable | hi.inheritable << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    from secrun.kernel import check, libc

    ctypes, Header, Data2 = _structs()
    hdr, data = Header(LINUX_CAPABILITY_VERSION_3, 0), Data2()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = effective >> shift & 0xFFFFFFFF
        data[i].permitted = permitted >> shift & 0xFFFFFFFF
        data[i].inheritable = inheritable >> shift & 0xFFFFFFFF
    check(libc.capset(ctypes.byref(hdr), data),
          f"capset(effective={hexmask(effective)}, permitted={hexmask(permitted)}, "
          f"inheritable={hexmask(inheritable)})")


def bounding(last: int) -> int:
    from secrun.kernel import PR_CAPBSET_READ, check, libc

    mask = 0
    for n in range(last + 1):
        if check(libc.prctl(PR_CAPBSET_READ, n, 0, 0, 0),
                 f"prctl(PR_CAPBSET_READ, {n})") == 1:
            mask |= 1 << n
    return mask


def ambient(last: int) -> int:
    from secrun.kernel import PR_CAP_AMBIENT, libc

    mask = 0
    for n in range(last + 1):
        if libc.prctl(PR_CAP_AMBIENT, 1, n, 0, 0) == 1:  # PR_CAP_AMBIENT_IS_SET
            mask |= 1 << n
    return mask


def _bounding_failed(n: int, held: int):
    import ctypes
    import errno

    err = ctypes.get_errno()
    what = f"prctl(PR_CAPBSET_DROP, {cap_name(n)})"
    if err == errno.EPERM and not held >> NUMBERS["setpcap"] & 1:
        raise SetupError(what, "Operation not permitted (EPERM): secrun does not hold "
                         "CAP_SETPCAP, so the bounding set cannot be reduced (run as root, in a "
                         "user namespace, or set [capabilities].required = false)")
    raise OSError(err, os.strerror(err), what)


def workload_is_root() -> bool:
    """Whether the kernel treats the next execve as root's (uid 0 of the current user
    namespace as real or effective uid): then it grants the bounding set by itself."""
    return os.getuid() == 0 or os.geteuid() == 0


def apply(want: int, last: int) -> tuple[int, bool]:
    """Reduce this process's five capability sets to ``want`` (limited to what it holds).

    Returns (the capabilities kept, whether they were made ambient).  Raises OSError naming
    the syscall, or SetupError when the result read back differs from the intent.
    """
    from secrun.kernel import PR_CAP_AMBIENT, PR_CAPBSET_DROP, libc, prctl

    eff, prm, inh = capget()
    bnd = bounding(last)
    # A capability outside the bounding set cannot be passed on through execve (neither to
    # root, which gets exactly the bounding set, nor as ambient, which needs inheritable and
    # so the bounding set): what the workload can get is permitted AND bounding.
    final = want & prm & bnd
    root = workload_is_root()

    # 1. Effective := permitted.  The identity stage may have changed the uid with
    #    PR_SET_KEEPCAPS, which keeps the permitted set but empties the effective one, and
    #    PR_CAPBSET_DROP below needs CAP_SETPCAP *effective*.
    if eff != prm:
        capset(prm, prm, inh)

    # 2. Bounding set first, while CAP_SETPCAP is still effective (step 4 may drop it).  Only
    #    capabilities still present are dropped: PR_CAPBSET_DROP needs CAP_SETPCAP even for an
    #    absent one, and an unprivileged secrun whose bounding set is already empty holds none.
    for n in range(last + 1):
        if bnd >> n & 1 and not final >> n & 1:
            if libc.prctl(PR_CAPBSET_DROP, n, 0, 0, 0) != 0:
                _bounding_failed(n, eff | prm)

    # 3. Ambient: start from nothing.  A kernel without ambient capabilities (< 4.3) answers
    #    EINVAL; that only matters when step 5 must raise some.
    amb_ok = libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0

    # 4. Permitted, effective and inheritable in one capset.  Inheritable is K only for a
    #    non-root workload, because step 5 needs it; root gets nothing inheritable, so a file
    #    with inheritable file capabilities cannot widen what a root workload's children get.
    capset(final, final, 0 if root else final)

    # 5. Ambient := K for a non-root workload, so that K survives its execve (permitted and
    #    effective are otherwise emptied for a non-root uid executing a file without file
    #    capabilities).  Raising needs the capability permitted and inheritable (step 4).
    made_ambient = bool(final) and not root
    if made_ambient:
        if not amb_ok:
            raise SetupError("prctl(PR_CAP_AMBIENT)", "this kernel has no ambient capabilities, "
                             "so capabilities cannot survive execve for a non-root uid")
        for n in range(last + 1):
            if final >> n & 1:
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, n,
                      what=f"prctl(PR_CAP_AMBIENT_RAISE, {cap_name(n)})")

    # Read everything back: a set that is not what was intended must stop the launch.
    got = capget() + (bounding(last), ambient(last) if amb_ok else 0)
    expected = (final, final, 0 if root else final, final, final if made_ambient else 0)
    if got != expected:
        sets = ("effective", "permitted", "inheritable", "bounding", "ambient")
        diff = ", ".join(f"{s} {hexmask(g)} (wanted {hexmask(e)})"
                         for s, g, e in zip(sets, got, expected, strict=True) if g != e)
        raise SetupError("capget", f"capability sets differ from the plan: {diff}")
    return final, made_ambient


@hookimpl
def secrun_prepare(ctx):
    """In the supervisor, before fork: load ctypes and the capget/capset structures now.  The
    child's capabilities stage runs after the mounts stage changed the filesystem view and the
    identity stage changed the uid; either may leave the interpreter's library unreadable."""
    _structs()
    import secrun.kernel  # noqa: F401


@hookimpl
def secrun_capabilities(ctx):
    plan = ctx.plan[SECTION]
    final, made_ambient = apply(plan["want"], plan["last"])
    if ctx.verbose:
        lost = plan["want"] & ~final & ((1 << (plan["last"] + 1)) - 1)
        ctx.log(f"capabilities: kept {', '.join(names_of(final)) or 'none'}"
                f"{' (ambient)' if made_ambient else ''}"
                + (f"; not held by secrun, so not kept: {', '.join(names_of(lost))}"
                   if lost else ""))


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


@hookimpl
def secrun_audit(ctx):
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
