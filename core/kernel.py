"""Small ctypes helpers shared by plugins: the libc handle, prctl and errno-checked calls.

Imported only by plugins that need raw syscalls (``import ctypes`` costs a few milliseconds,
which an unconfined launch does not pay).
"""

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAPBSET_READ = 23
PR_CAP_AMBIENT = 47
PR_SET_DUMPABLE = 4


def check(ret: int, what: str) -> int:
    """Raise OSError naming ``what`` (the syscall, e.g. "prctl(PR_SET_NO_NEW_PRIVS)") when a
    libc call returned -1.  The error prints as "what: strerror (ENAME)"."""
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return ret


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0,
          what: str = "prctl") -> int:
    return check(libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                            ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), what)
