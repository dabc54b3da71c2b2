"""Errors.  Everything secrun itself refuses or fails at becomes exit status 125 with one line.

Plugins raise :class:`ConfigError` from ``secrun_compile`` for a bad profile value (the core
adds the file the value came from) and :class:`SetupError` from a stage hook for a control that
could not be applied (the core adds the stage and the plugin).  Any other exception from a hook
is reported the same way, with its type.

Every message is printed as exactly one line: :class:`SecrunError` escapes line breaks and
every other character a terminal would not print as itself (a profile value or a file name
with a newline or an escape sequence in it cannot add lines or drive the terminal), and
:func:`shown` keeps a long value quoted in a message short.

This module is imported on every launch: no imports at module level.
"""

EXIT_FAILED = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


def one_line(text: str) -> str:
    """``text`` with every unprintable character (line breaks, NUL, escape sequences, bidi
    controls, ...) written as its Python escape, so it prints as one inert line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters with the full length
    said (a 5,000-digit number or a megabyte string is not worth printing whole)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** limit:
        # (not str(value): Python refuses to write out more than 4,300 digits)
        sign = "a negative" if value < 0 else "a"
        return f"{sign} number of about {value.bit_length() * 3 // 10} digits"
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, (list, dict)):
        size = f"{len(value)} items"
    elif isinstance(value, bytes):
        size = f"{len(value)} bytes"
    else:
        size = f"{len(value) if isinstance(value, str) else len(text)} characters"
    return f"{text[:limit - 3]}... ({size})"


class SecrunError(Exception):
    """secrun failed before the workload ran; the message is printed as one line."""

    exit_code = EXIT_FAILED

    def __str__(self) -> str:
        # Exception's own text, the message: not OSError's "[Errno N] ..." for SyscallError
        return one_line(Exception.__str__(self))


class ProfileError(SecrunError):
    """A profile file is missing, unsafe, malformed or does not validate."""


class ConfigError(SecrunError):
    """A plugin rejects the value of ``[section].key``; the core names the file it came from."""

    def __init__(self, section: str, key: str | None, message: str) -> None:
        self.section, self.key, self.message = section, key, message
        where = f"[{section}]" + (f".{key}" if key else "")
        super().__init__(f"{where}: {message}")


class SetupError(SecrunError):
    """A control could not be applied.  ``what`` is the syscall or file that failed; ``errno``
    the error number when a call failed (None otherwise), which callers compare instead of
    the message text.  Without ``message``, the message is the errno's text."""

    errno: int | None

    def __init__(self, what: str, message: str | None = None, errno: int | None = None) -> None:
        if message is None:
            message = errno_text(errno or 0)
        super().__init__(f"{what}: {message}")
        self.what, self.message, self.errno = what, message, errno


class SyscallError(SetupError, OSError):
    """A system call (or file operation) failed: "what: strerror (ENAME)[: hint]".

    Also an :class:`OSError` with ``errno``, ``strerror`` and ``filename`` (= ``what``) set, so
    code that catches ``OSError`` around a call sees it as before.  Made by
    :func:`secrun.kernel.error` (or directly, for an errno at hand)."""

    def __init__(self, what: str, errno: int | None, hint: str | None = None) -> None:
        text = errno_text(errno or 0)
        super().__init__(what, f"{text}: {hint}" if hint else text, errno)
        self.strerror, self.filename = text[:text.rindex(" (")], what


class NotAvailable(SetupError):
    """The control does not exist on this kernel/host (e.g. AppArmor not enabled)."""


class PluginError(SecrunError):
    """A plugin could not be loaded or breaks the plugin contract."""


def errno_text(err: int) -> str:
    """'Permission denied (EACCES)': the error number's text and name."""
    import errno as _errno
    import os as _os

    return f"{_os.strerror(err)} ({_errno.errorcode.get(err, str(err))})"


def describe_oserror(exc: BaseException) -> str:
    """'open /x: Permission denied (EACCES)' style text for an OSError, else str(exc)."""
    if isinstance(exc, SecrunError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno:
        text = errno_text(exc.errno)
        if exc.filename is not None:
            return f"{exc.filename}: {text}"
        return text
    return f"{type(exc).__name__}: {exc}"
