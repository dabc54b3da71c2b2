"""The kernel interface: secrun's one libc handle, its prototypes, system call numbers, errors.

- :data:`libc`: the C library, opened once for the whole of secrun (errno kept for
  :func:`get_errno`), with ``argtypes``/``restype`` declared for every function secrun calls
  through it.  Variadic functions (``syscall``, ``prctl``, ``ioctl``) declare their fixed
  parameters only; the rest are passed as given (a Python int as a C ``int``, bytes as a
  pointer, None as NULL, or a value of one of the C types below).
- The C types (:class:`c_short`, :class:`c_int`, :class:`c_uint32`, :class:`c_long`,
  :class:`c_ulong`, :class:`c_size_t`, :class:`c_char`, :class:`c_char_p`, :class:`c_void_p`),
  :func:`buffer`, :func:`address`, ``byref``/``POINTER``/``sizeof``, and :class:`Library` for
  another shared library (libapparmor, libselinux): the machinery of the standard ``ctypes``,
  taken from its C core ``_ctypes`` directly.  ``import ctypes`` costs about 2.5 ms of every
  launch here (its ``__init__`` builds dozens of types and imports ``struct`` and ``types``);
  these few cost about 0.2 ms.  Their values are not ``ctypes``' classes: a plugin passes
  Python ints, bytes, None or these types to the functions of :data:`libc`.
- :func:`nr` and :func:`syscall`: system call numbers per architecture (:data:`SYSCALLS`), for
  the calls libc has no wrapper for.  A machine missing from the table is refused when a call
  is made (a :class:`~secrun.errors.SetupError` naming the call and the machine), not at import.
- :func:`check` and :func:`error`: a failed call becomes a
  :class:`~secrun.errors.SyscallError` ("what: strerror (ENAME)"), which keeps the errno as
  ``.errno`` (it is also an ``OSError``).
- :func:`prctl` and the ``PR_*`` options secrun uses.
- The capabilities: :data:`CAP_NAMES` by number (include/uapi/linux/capability.h),
  :func:`last_cap`, masks as text and :func:`parse_cap_names` for the names a profile writes
  (the capabilities plugin's sets, the seccomp plugin's Docker/OCI import).

The live-audit probe (:mod:`secrun.audit.probe`) runs without
secrun inside the sandbox, so it keeps its own table of the calls it probes.
"""

from __future__ import annotations

import os
from _ctypes import (
    FUNCFLAG_CDECL,
    FUNCFLAG_USE_ERRNO,
    POINTER,
    CFuncPtr,
    _SimpleCData,
    addressof,
    byref,
    dlopen,
    get_errno,
    sizeof,
)

from .errors import SetupError, SyscallError

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from ctypes import (
        Array,
        c_char,
        c_char_p,
        c_int,
        c_long,
        c_short,
        c_size_t,
        c_uint32,
        c_ulong,
        c_void_p,
    )
    from typing import Any
else:
    # The C types, made as ctypes/__init__.py makes them (the type code picks the C type).
    class c_short(_SimpleCData):
        _type_ = "h"

    class c_int(_SimpleCData):
        _type_ = "i"

    class c_uint32(_SimpleCData):
        _type_ = "I"

    class c_long(_SimpleCData):
        _type_ = "l"

    class c_ulong(_SimpleCData):
        _type_ = "L"

    class c_char(_SimpleCData):
        _type_ = "c"

    class c_char_p(_SimpleCData):
        _type_ = "z"

    class c_void_p(_SimpleCData):
        _type_ = "P"

    c_size_t = c_ulong  # LP64: Linux on x86_64 and aarch64

__all__ = ["POINTER", "addressof", "byref", "c_char", "c_char_p", "c_int", "c_long", "c_short",
           "c_size_t", "c_uint32", "c_ulong", "c_void_p", "get_errno", "sizeof"]

_int, _long, _ulong, _size = c_int, c_long, c_ulong, c_size_t
_str, _ptr = c_char_p, c_void_p


def buffer(size: int) -> Array[c_char]:
    """A zeroed, writable ``char[size]`` for the kernel to fill (its bytes: ``.raw``)."""
    return (c_char * size)()


def address(data: bytes) -> int:
    """The address of the bytes of ``data``, valid while ``data`` lives (a pointer inside a
    structure the kernel reads)."""
    ptr = c_char_p(data)
    return c_void_p.from_address(addressof(ptr)).value or 0

# name: (restype, fixed argtypes); pointers the kernel only reads may be passed as bytes
PROTOTYPES = {
    "syscall": (_long, (_long,)),                          # long syscall(long number, ...)
    "prctl": (_int, (_int,)),                              # int prctl(int option, ...)
    "ioctl": (_int, (_int, _ulong)),                       # int ioctl(int fd, unsigned long, ...)
    "ptrace": (_long, (_int, _int, _ptr, _ptr)),           # request, pid, addr, data
    "mount": (_int, (_str, _str, _str, _ulong, _ptr)),     # source, target, type, flags, data
    "umount2": (_int, (_str, _int)),
    "unshare": (_int, (_int,)),
    "setns": (_int, (_int, _int)),
    "socket": (_int, (_int, _int, _int)),
    "sethostname": (_int, (_str, _size)),
    "setdomainname": (_int, (_str, _size)),
    "capget": (_int, (_ptr, _ptr)),                        # header, data
    "capset": (_int, (_ptr, _ptr)),
    "setrlimit": (_int, (_int, _ptr)),                     # resource, struct rlimit
    "getrlimit": (_int, (_int, _ptr)),
    # pid, path, file actions, attributes, argv, envp; the result is 0 or an errno value
    "posix_spawn": (_int, (POINTER(_int), _str, _ptr, _ptr, _ptr, _ptr)),
    "posix_spawnattr_init": (_int, (_ptr,)),
    "posix_spawnattr_setflags": (_int, (_ptr, c_short)),
    "posix_spawnattr_setsigmask": (_int, (_ptr, _ptr)),         # attr, sigset_t
    "posix_spawnattr_setsigdefault": (_int, (_ptr, _ptr)),
}


class Library:
    """A shared library (``dlopen``); a function gets its prototype, from ``prototypes``
    (name: (restype, argtypes)), the first time it is looked up (a lookup is a ``dlsym``: a
    launch pays only for the functions it calls).  Every call keeps its errno for
    :func:`get_errno`.  OSError when the library cannot be loaded, AttributeError for a
    function it lacks."""

    def __init__(self, name: str | None,
                 prototypes: Mapping[str, tuple[Any, tuple[Any, ...]]]) -> None:
        self._handle = dlopen(name)  # type: ignore[arg-type]  # (None: the program itself)
        self._prototypes = prototypes

    def __getattr__(self, name: str) -> Callable[..., int]:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        fn = _Function((name, self))  # type: ignore[arg-type]  # (a CDLL's part: ._handle)
        proto = self._prototypes.get(name)
        if proto is not None:
            fn.restype, fn.argtypes = proto
        setattr(self, name, fn)
        return fn


class _Function(CFuncPtr):
    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO
    _restype_ = c_int


libc = Library(None, PROTOTYPES)

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47


def check(ret: int, what: str) -> int:
    """``ret``, unless a libc call returned -1: then raise :func:`error` naming ``what`` (the
    call, e.g. "prctl(PR_SET_NO_NEW_PRIVS)") with the errno libc left."""
    if ret == -1:
        raise error(what)
    return ret


def error(what: str, err: int | None = None, hint: str | None = None) -> SyscallError:
    """The error for a failed call: "what: strerror (ENAME)", then ": hint" if given.  ``err``
    defaults to the errno of the last libc call; pass ``e.errno`` to name a failed ``os`` call
    (``raise error(path, e.errno) from None``)."""
    return SyscallError(what, get_errno() if err is None else err, hint)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0,
          what: str = "prctl") -> int:
    return check(libc.prctl(option, _ulong(arg2), _ulong(arg3), _ulong(arg4), _ulong(arg5)),
                 what)


# --- system call numbers ---------------------------------------------------------------------
# name: (x86_64, aarch64), from the kernel's arch/x86/entry/syscalls/syscall_64.tbl and the
# generic include/uapi/asm-generic/unistd.h that arm64 uses (checked with libseccomp's
# seccomp_syscall_resolve_name_arch).  Since Linux 5.1 new calls have one number everywhere.
SYSCALLS = {
    "rt_sigaction": (13, 134),
    "pivot_root": (155, 41),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "openat2": (437, 437),
    "mount_setattr": (442, 442),
    "landlock_create_ruleset": (444, 444),
    "landlock_add_rule": (445, 445),
    "landlock_restrict_self": (446, 446),
    "ioprio_set": (251, 30),
    "ioprio_get": (252, 31),
}
MACHINE = os.uname().machine
_COLUMN = {"x86_64": 0, "aarch64": 1, "arm64": 1}.get(MACHINE)
# this machine's numbers; empty on a machine secrun has no table for
NR: dict[str, int] = {} if _COLUMN is None else {
    name: numbers[_COLUMN] for name, numbers in SYSCALLS.items()}


def unsupported(name: str) -> SetupError:
    """The error for a call whose number secrun does not know on this machine."""
    return SetupError(name, f"secrun does not know this system call's number on {MACHINE} "
                            "(its table has x86_64 and aarch64)")


def nr(name: str) -> int:
    """The number of system call ``name`` on this machine; SetupError where secrun has none."""
    number = NR.get(name)
    if number is None:
        raise unsupported(name)
    return number


def syscall(name: str) -> Callable[..., int]:
    """libc's ``syscall(2)`` bound to ``name``'s number: ``syscall("pivot_root")(b".", b".")``
    returns what the kernel did (-1 and errno on failure; see :func:`check`).  Made once, at
    import, by the modules that call it; where the machine has no number for ``name`` the
    function it returns raises :func:`unsupported` when called."""
    number = NR.get(name)
    if number is None:
        def missing(*_args: object) -> int:
            raise unsupported(name)
        return missing
    call, n = libc.syscall, _long(number)

    def bound(*args: object) -> int:
        return call(n, *args)
    return bound


def write_file(path: str, data: bytes | str, what: str | None = None) -> None:
    """Write ``data`` to the kernel file ``path`` in one ``write`` (a /proc or securityfs file
    takes a map, a label or a policy as one write); a failure is a
    :class:`~secrun.errors.SyscallError` naming the file (or ``what``)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise error(path, e.errno) from None
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
    except OSError as e:
        raise error(what or path, e.errno) from None
    finally:
        os.close(fd)


# --- capabilities ---------------------------------------------------------------------------

# Index = capability number.  Numbers above the running kernel's cap_last_cap are refused;
# numbers above this table are accepted as cap_<n>.
CAP_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)
CAP_NUMBERS = {n: i for i, n in enumerate(CAP_NAMES)}


def cap_name(n: int) -> str:
    return "cap_" + (CAP_NAMES[n] if n < len(CAP_NAMES) else str(n))


def cap_names_of(mask: int) -> list[str]:
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
    n = 0
    while libc.prctl(PR_CAPBSET_READ, n + 1, 0, 0, 0) >= 0:
        n += 1
    return n


def _cap_number(value: str, last: int) -> int:
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
    if bare in CAP_NUMBERS and value.isascii():  # (the Kelvin sign lowers to "k")
        return CAP_NUMBERS[bare]
    raise ValueError(f"unknown capability {shown(value)} (names are "
                     f"CAP_CHOWN .. {cap_name(min(last, len(CAP_NAMES) - 1)).upper()}, "
                     f"with or without CAP_, or cap_<n>, or \"all\")")


def parse_cap_names(values: Iterable[str | int], last: int) -> tuple[bool, int]:
    """(``"all"`` was given, mask of the named capabilities) for a list of capabilities:
    ``CAP_CHOWN``, ``chown`` (any case), ``cap_<n>`` and plain numbers, for capabilities
    0 .. ``last``.  ValueError (a one-line message) for anything else."""
    from .errors import shown

    everything, mask = False, 0
    for value in values:
        if isinstance(value, str) and value.strip().lower() == "all":
            everything = True
            continue
        num = value if isinstance(value, int) else _cap_number(value, last)
        if num < 0 or num > last:
            raise ValueError(f"capability {shown(value)} is not known to the running kernel "
                             f"(cap_last_cap = {last})")
        mask |= 1 << num
    return everything, mask
