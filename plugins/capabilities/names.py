"""Capability names and numbers (include/uapi/linux/capability.h), and masks as text.  Imported
by the stage (for its messages) as well as by planning and the audit: no imports."""

# Index = capability number.  Numbers above the running kernel's cap_last_cap are rejected;
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
