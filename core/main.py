"""Entry point of the ``secrun`` command.

The launch path (``secrun [OPTIONS] [--] PROGRAM [ARGS...]``) is parsed here by hand and, when
the plan cache is valid, runs without importing click, pluggy or tomllib: every sandboxed
command pays secrun's start-up.  Everything else (subcommands, ``--help``) goes to the click
CLI in :mod:`secrun.cli`.

A word is a subcommand only as the very first argument; after any launch option or ``--``,
words are the workload's.  So ``secrun -- audit`` or ``secrun ./audit`` runs a program named
``audit``, and ``secrun --profile strict ./app --profile x`` passes ``--profile x`` to ``./app``.
Besides the built-in subcommands, a bare first word may name one an installed third-party
plugin adds (:mod:`secrun.commands`), unless it also names a program on the search path: that
is refused, and ``secrun -- WORD`` runs the program.
"""

from __future__ import annotations

import sys

from .errors import SecrunError

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .launch import Supervisor

SUBCOMMANDS = ("profiles", "plugins", "audit", "seccomp", "cgroups", "docs")
HELP = ("-h", "--help", "--version")


class LaunchOptions:
    __slots__ = ("profiles", "sets", "plugins", "verbose", "dry_run", "no_cache", "tty",
                 "command")

    def __init__(self) -> None:
        self.profiles: list[str] = []
        self.sets: list[str] = []
        self.plugins: list[str] = []
        self.verbose = 0
        self.dry_run = False
        self.no_cache = False
        self.tty = "auto"
        self.command: list[str] = []


# option -> (attribute, takes a value)
_OPTIONS = {
    "--profile": ("profiles", True), "-p": ("profiles", True),
    "--set": ("sets", True), "-s": ("sets", True),
    "--plugin": ("plugins", True),
    "--verbose": ("verbose", False), "-v": ("verbose", False),
    "--dry-run": ("dry_run", False), "-n": ("dry_run", False),
    "--no-cache": ("no_cache", False),
    "--tty": ("tty", True),
}
# short flags for --tty=always / --tty=never
_TTY_FLAGS = {"-t": "always", "-T": "never"}


def parse_launch(argv: list[str]) -> LaunchOptions:
    """Parse launch options up to the program; the rest is the workload's argv, untouched."""
    opts = LaunchOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        i = _option(opts, argv, i)
    opts.command = argv[i:]
    return opts


def _option(opts: LaunchOptions, argv: list[str], i: int) -> int:
    """Apply the launch option at ``argv[i]`` (and its value); the index after it."""
    arg = argv[i]
    name, eq, value = arg.partition("=")
    if not eq and _flags(opts, name):
        return i + 1
    spec = _OPTIONS.get(name)
    if spec is None:
        raise SecrunError(f"unknown option {arg!r} (put -- before a program whose name "
                          f"starts with '-'; see secrun --help)")
    attr, takes = spec
    if not takes:
        if eq:
            raise SecrunError(f"option {name} takes no value")
        if attr == "verbose":
            opts.verbose += 1
        else:
            setattr(opts, attr, True)
        return i + 1
    if not eq:
        if i + 1 >= len(argv):
            raise SecrunError(f"option {name} needs a value")
        i += 1
        value = argv[i]
    if attr == "tty":
        if value not in ("auto", "always", "never"):
            raise SecrunError(f"--tty takes auto, always or never, not {value!r}")
        opts.tty = value
    else:
        getattr(opts, attr).append(value)
    return i + 1


def _flags(opts: LaunchOptions, name: str) -> bool:
    """The short flags that are not in :data:`_OPTIONS`: -t, -T and -vv...; whether ``name``
    was one."""
    if name in _TTY_FLAGS:
        opts.tty = _TTY_FLAGS[name]
        return True
    if name.startswith("-v") and name.strip("v") == "-":
        opts.verbose += len(name) - 1
        return True
    return False


def launch(argv: list[str], sup: Supervisor | None = None) -> int:
    # A launch allocates little and lives briefly (the supervisor then only waits): no cyclic
    # garbage collection, whose passes would otherwise land at random points of the setup.
    import gc

    gc.disable()
    from . import plan as _plan

    opts = parse_launch(argv)
    if not opts.command:
        raise SecrunError("no program given (usage: secrun [--profile NAME] [--] PROGRAM "
                          "[ARGS...]; see secrun --help)")
    profiles = opts.profiles or ["default"]
    if opts.command[0] == "":
        sys.stderr.write("secrun: '': No such file or directory\n")
        return 127
    plan = _plan.get(profiles, opts.sets, opts.plugins, use_cache=not opts.no_cache)
    if opts.dry_run:
        from .report import print_plan

        print_plan(plan, opts.command)
        return 0
    from .launch import run

    return run(plan, opts.command, opts.verbose, tty=opts.tty, sup=sup)


# Variables through which the interpreter would run or load code that is not secrun's.
_UNSAFE_PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE",
                      "PYTHONINSPECT", "PYTHONPLATLIBDIR", "PYTHONWARNINGS", "PYTHONBREAKPOINT",
                      "PYTHONEXECUTABLE", "PYTHONPYCACHEPREFIX", "PYTHONSAFEPATH")


def _isolate(argv: list[str]) -> None:
    """A privileged secrun honours the caller's Python environment as little as it can.  The
    installed command starts the interpreter with ``-IS`` (see deps/secrun-launcher.in): that
    is what makes it safe.  Where another installer wrote a console script without it and
    secrun runs as root (or set-id) with a variable that loads code set, secrun starts itself
    again isolated (keeping its ``-X`` options), so none of its own imports come from that
    variable; what the interpreter's start-up ran before this line (a ``sitecustomize`` on
    PYTHONPATH, say) is beyond its reach."""
    import os

    if sys.flags.isolated or (os.geteuid() != 0 and os.getuid() == os.geteuid()):
        return
    if any(k in os.environ for k in _UNSAFE_PYTHON_ENV):
        xopts = [f"-X{k}" if v is True else f"-X{k}={v}" for k, v in sys._xoptions.items()]
        os.execv(sys.executable, [sys.executable, "-I", *xopts, "-m", "secrun", *argv])


def _subcommand() -> None:
    """A subcommand runs as any Python program: the signals the launcher held delivered, and
    the garbage collector it turned off back on (see deps/secrun-launcher.in)."""
    import gc

    gc.enable()
    _release_signals()


def _release_signals() -> None:
    """Deliver the signals the launcher held (see deps/secrun-launcher.in)."""
    import _signal

    from .launch import FORWARDED

    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``secrun`` command.  Called with ``argv`` it returns the exit status; as the console
    script (no ``argv``) a launch ends the process itself, see below."""
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if as_command:
        _isolate(argv)
    sup = None
    try:
        if not argv or argv[0] in SUBCOMMANDS or argv[0] in HELP:
            _subcommand()
            from .cli import run_cli

            return run_cli(argv)
        if not argv[0].startswith("-"):
            # a bare first word: a subcommand a third-party plugin adds, or a program
            from .commands import plugin_for

            hit = plugin_for(argv[0], SUBCOMMANDS + HELP)
            if hit is not None:
                _subcommand()
                from .cli import run_cli

                return run_cli(argv, *hit)
        if as_command:
            # From here on a forwarded signal is recorded, and acted on at the next step of
            # the launch: before the fork it ends secrun with 128+N, nothing run.
            from .launch import Supervisor

            sup = Supervisor()
            sup.install()
            _release_signals()
        code = launch(argv, sup)
    except SecrunError as e:
        sys.stderr.write(f"secrun: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    if not as_command:
        return code
    # The launch is over and cleanup has run: skip the interpreter's teardown (module and
    # object finalisation costs a few milliseconds of every sandboxed command).
    sys.stdout.flush()
    sys.stderr.flush()
    import os

    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
