"""Errors.  Everything secrun itself refuses or fails at becomes exit status 125 with one line.

Plugins raise :class:`ConfigError` from ``secrun_compile`` for a bad profile value (the core
adds the file the value came from) and :class:`SetupError` from a stage hook for a control that
could not be applied (the core adds the stage and the plugin).  Any other exception from a hook
is reported the same way, with its type.
"""

EXIT_FAILED = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


class SecrunError(Exception):
    """secrun failed before the workload ran; the message is printed as one line."""

    exit_code = EXIT_FAILED


class ProfileError(SecrunError):
    """A profile file is missing, unsafe, malformed or does not validate."""


class ConfigError(SecrunError):
    """A plugin rejects the value of ``[section].key``; the core names the file it came from."""

    def __init__(self, section: str, key: str | None, message: str):
        self.section, self.key, self.message = section, key, message
        where = f"[{section}]" + (f".{key}" if key else "")
        super().__init__(f"{where}: {message}")


class SetupError(SecrunError):
    """A control could not be applied.  ``what`` is the syscall or file that failed."""

    def __init__(self, what: str, message: str):
        self.what, self.message = what, message
        super().__init__(f"{what}: {message}")


class NotAvailable(SetupError):
    """The control does not exist on this kernel/host (e.g. AppArmor not enabled)."""


class PluginError(SecrunError):
    """A plugin could not be loaded or breaks the plugin contract."""


def describe_oserror(exc: BaseException) -> str:
    """'open /x: Permission denied (EACCES)' style text for an OSError, else str(exc)."""
    if isinstance(exc, OSError) and exc.errno:
        import errno as _errno
        import os as _os

        name = _errno.errorcode.get(exc.errno, str(exc.errno))
        text = f"{_os.strerror(exc.errno)} ({name})"
        if exc.filename is not None:
            return f"{exc.filename}: {text}"
        return text
    if isinstance(exc, SecrunError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
