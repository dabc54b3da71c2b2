"""Linux capability names and numbers (include/uapi/linux/capability.h), as the kernel knows
them: the table, ``cap_last_cap``, masks as text and the parsing of names a profile writes.

Shared by the ``capabilities`` plugin (its sets) and the ``seccomp`` plugin (the capabilities
an imported Docker/OCI profile's rules are conditioned on), so neither imports the other.  The
parts a launch needs (names and masks as text, for messages) import nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Iterable

# Index = capability number.  Numbers above the running kernel's cap_last_cap are refused;
# numbers above this table are accepted as cap_<n>.
NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)
NUMBERS = {n: i for i, n in enumerate(NAMES)}


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
    from .kernel import PR_CAPBSET_READ, libc

    n = 0
    while libc.prctl(PR_CAPBSET_READ, n + 1, 0, 0, 0) >= 0:
        n += 1
    return n


def _number(value: str, last: int) -> int:
    """The number of one capability written as text (``"all"`` excepted)."""
    from .errors import shown
    from .schema import is_digits, parse_digits

    text = value.strip().lower()
    bare = text[4:] if text.startswith("cap_") else text
    if is_digits(bare):
        # (ASCII digits only, and no int() of thousands of them: see secrun.schema)
        try:
            return parse_digits(bare, last)
        except ValueError:
            return last + 1  # too large: refused by the caller
    if bare in NUMBERS and value.isascii():  # (the Kelvin sign lowers to "k")
        return NUMBERS[bare]
    raise ValueError(f"unknown capability {shown(value)} (names are "
                     f"CAP_CHOWN .. {cap_name(min(last, len(NAMES) - 1)).upper()}, "
                     f"with or without CAP_, or cap_<n>, or \"all\")")


def parse_names(values: Iterable[str | int], last: int) -> tuple[bool, int]:
    """(``"all"`` was given, mask of the named capabilities) for a list of capabilities:
    ``CAP_CHOWN``, ``chown`` (any case), ``cap_<n>`` and plain numbers, for capabilities
    0 .. ``last``.  ValueError (a one-line message) for anything else."""
    from .errors import shown

    everything, mask = False, 0
    for value in values:
        if isinstance(value, str) and value.strip().lower() == "all":
            everything = True
            continue
        num = value if isinstance(value, int) else _number(value, last)
        if num < 0 or num > last:
            raise ValueError(f"capability {shown(value)} is not known to the running kernel "
                             f"(cap_last_cap = {last})")
        mask |= 1 << num
    return everything, mask
