"""The workload's terminal: a fresh pseudo-terminal, or none, relayed by the supervisor.

A workload never holds the caller's terminal.  It runs in a session of its own (``setsid``,
done by :mod:`secrun.launch` for every launch), so it cannot make itself the foreground of the
caller's terminal (``TIOCSPGRP``), stop the supervisor with ``SIGTTOU``, or signal the caller's
process group; and no process of the sandbox (pid 1 included) has a descriptor of the caller's
terminal, so none can read what the user types into their shell, change its settings, or reopen
it through ``/proc/self/fd``.  The child replaces each standard stream that is a terminal
before its first stage:

- ``--tty=auto`` (a terminal among stdin, stdout, stderr) or ``always`` (``-t``): with a new
  pseudo-terminal (like ``sudo``'s ``use_pty``, ``docker run -t`` or ``ssh``), which becomes the
  workload's controlling terminal.  The supervisor copies bytes between it and the caller's
  terminal, which it puts in raw mode while secrun is in the foreground; keys such as ^C reach
  the workload through its own terminal's line discipline.
- ``--tty=never`` (``-T``): no terminal at all; a terminal stdin becomes ``/dev/null`` and a
  terminal stdout or stderr a pipe whose bytes the supervisor copies to the caller's terminal.

The supervisor's copying never blocks on the sandbox: the pty and the pipes are non-blocking,
input waits in a bounded buffer, and what is left when the workload has ended is copied for at
most a quarter of a second.  This module is imported only when a terminal is involved.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    import select
    from types import FrameType
    from typing import Any

    from .launch import _Waiter

TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
INPUT_BUFFER = 1 << 16
DRAIN_SECONDS = 0.25
# Signals whose default action ends secrun without its handlers: the caller's terminal is
# given back first (SIGKILL cannot be caught; a shell such as bash restores it then).  SIGPIPE
# and SIGXFSZ are not here: Python ignores them.
RESTORE_ON = ("SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGPWR", "SIGSTKFLT", "SIGIO",
              "SIGTRAP", "SIGSYS")


class _Relay:
    """What the child puts over its standard streams (``child_map``: stream -> descriptor)
    and what the supervisor copies afterwards (``copies``: readable -> writable)."""

    def __init__(self) -> None:
        self.child_map: dict[int, int] = {}
        self.copies: dict[int, int] = {}
        self.child_ends: list[int] = []  # descriptors only the child needs
        self.master = -1  # the pty's master side, when there is one
        self.user: int | None = None
        self.saved: list[Any] | None = None
        self.inbuf = b""
        self.stdin_open = False

    # --- child side (right after setsid, before any stage) -------------------------------------

    def install_child(self) -> None:
        for fd, src in self.child_map.items():
            os.dup2(src, fd)
        for fd in self.child_ends:
            if fd not in self.child_map:
                os.close(fd)

    def controlling(self) -> None:
        """In the process that execs (a session leader): take the terminal, if there is one."""

    # --- supervisor side -----------------------------------------------------------------------

    def start(self) -> None:
        """After fork, in the supervisor."""
        import _signal

        for fd in self.child_ends:
            os.close(fd)
        for src in self.copies:
            os.set_blocking(src, False)
        for name in RESTORE_ON:
            sig = getattr(_signal, name, None)
            if sig is not None and _signal.getsignal(sig) == _signal.SIG_DFL:
                _signal.signal(sig, self._die)
        _signal.signal(_signal.SIGCONT, self._continued)
        self.resume()

    def _die(self, sig: int, frame: FrameType | None) -> None:
        import _signal

        self.suspend()
        _signal.signal(sig, _signal.SIG_DFL)
        os.kill(os.getpid(), sig)

    def _continued(self, sig: int, frame: FrameType | None) -> None:
        self.resume()

    def suspend(self) -> None:
        """The user's terminal as it was (secrun stops, or ends)."""

    def resume(self) -> None:
        """Raw mode again, if secrun is the terminal's foreground."""

    def relay(self, waiter: _Waiter) -> int:
        """Copy until the workload ended (``waiter``, a :class:`secrun.launch._Waiter`, is asked
        whenever a signal arrives, SIGCHLD included, or one of its descriptors is readable);
        its wait status.  Runs in the supervisor's only thread: a thread cannot be started once
        secrun has made a pid namespace for its child."""
        import _signal
        import select

        r_wake, w_wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.signal(_signal.SIGCHLD, _noop)
        old_wake = _signal.set_wakeup_fd(w_wake)
        poller = select.poll()
        extra = waiter.fds()
        for fd in [r_wake, *extra, *self.copies]:
            poller.register(fd, select.POLLIN)
        self._stdin_poll(poller)
        try:
            status = waiter.step()
            while status is None:
                try:
                    events = poller.poll()
                except OSError:
                    events = []
                for fd, ev in events:
                    self._event(poller, r_wake, fd, ev)
                status = waiter.step()
            self._drain_copies()
            return status
        finally:
            _signal.set_wakeup_fd(old_wake)
            os.close(r_wake)
            os.close(w_wake)

    def _event(self, poller: select.poll, r_wake: int, fd: int, ev: int) -> None:
        """One descriptor's event while the workload runs: a signal woke us (``r_wake``), the
        caller typed (0), the pty takes input, or the sandbox wrote."""
        import select

        if fd == r_wake:
            _drain(r_wake)
            return
        if fd == 0:
            self._read_input(poller)
            return
        if fd == self.master and ev & select.POLLOUT:
            self._write_input(poller)
        if fd in self.copies and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            if not self._copy(fd):
                poller.unregister(fd)

    def _drain_copies(self) -> None:
        """What the workload wrote before it ended, for a bounded time (a process that
        outlived it may keep writing)."""
        import select
        import time

        end = time.monotonic() + DRAIN_SECONDS
        drain = select.poll()
        for fd in self.copies:
            drain.register(fd, select.POLLIN)
        live = len(self.copies)
        while live and time.monotonic() < end:
            ready = drain.poll(max(0, int((end - time.monotonic()) * 1000)))
            if not ready:
                break
            for fd, _ev in ready:
                if not self._copy(fd):
                    drain.unregister(fd)
                    live -= 1

    def _copy(self, src: int) -> bool:
        try:
            data = os.read(src, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False  # EIO: every slave descriptor is closed
        if not data:
            return False
        try:
            _write_all(self.copies[src], data)
        except OSError:
            pass
        return True

    def _stdin_poll(self, poller: select.poll) -> None:
        pass

    def _read_input(self, poller: select.poll) -> None:
        pass

    def _write_input(self, poller: select.poll) -> None:
        pass

    def finish(self) -> None:
        """Give the user their terminal back as it was."""
        self.suspend()
        for src in self.copies:
            try:
                os.close(src)
            except OSError:
                pass


class Pty(_Relay):
    """The pseudo-terminal of one launch.  Made in the supervisor before fork."""

    def __init__(self) -> None:
        import termios

        super().__init__()
        self.termios = termios
        self.master, slave = os.openpty()
        os.set_inheritable(self.master, False)
        os.set_inheritable(slave, False)
        # which of secrun's standard streams are terminals: those become the pty inside
        targets = [fd for fd in (0, 1, 2) if os.isatty(fd)] or [0, 1, 2]
        self.child_map = {fd: slave for fd in targets}
        self.child_ends = [slave]
        self.tty_fd = targets[0]
        self.user = next((fd for fd in (0, 1, 2) if os.isatty(fd)), None)
        out = next((fd for fd in (1, 2, 0) if os.isatty(fd)), 1)
        self.copies = {self.master: out}
        self.stdin_open = self.user == 0 or 0 in targets
        if self.user is not None:
            try:
                # the workload's terminal starts with the user's settings and size
                termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(self.user))
            except termios.error:
                pass
            self.resize()

    def controlling(self) -> None:
        from .kernel import check, libc

        check(libc.ioctl(self.tty_fd, TIOCSCTTY, 0), "ioctl(TIOCSCTTY)")

    def start(self) -> None:
        import _signal

        super().start()
        if self.user is not None:
            _signal.signal(_signal.SIGWINCH, self.resize)

    def resize(self, *_: object) -> None:
        import fcntl

        if self.user is None:
            return
        try:
            size = fcntl.ioctl(self.user, TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, TIOCSWINSZ, size)
        except OSError:
            pass

    def suspend(self) -> None:
        if self.saved is not None:
            try:
                self.termios.tcsetattr(0, self.termios.TCSADRAIN, self.saved)
            except self.termios.error:
                pass
            self.saved = None

    def resume(self) -> None:
        termios = self.termios
        if self.saved is None and self.user == 0 and _foreground(0):
            try:
                self.saved = termios.tcgetattr(0)
                raw = termios.tcgetattr(0)
                raw[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP
                            | termios.IXON)
                raw[1] &= ~termios.OPOST
                raw[2] = (raw[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
                raw[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
                raw[6][termios.VMIN] = 1
                raw[6][termios.VTIME] = 0
                termios.tcsetattr(0, termios.TCSADRAIN, raw)
            except termios.error:
                self.saved = None
        self.resize()

    # input: the caller's stdin -> a bounded buffer -> the pty, never blocking on either

    def _stdin_poll(self, poller: select.poll) -> None:
        import select

        if self.stdin_open:
            poller.register(0, select.POLLIN)

    def _read_input(self, poller: select.poll) -> None:
        import select

        try:
            data = os.read(0, INPUT_BUFFER - len(self.inbuf))
        except OSError:
            data = b""
        if not data:
            poller.unregister(0)
            self.stdin_open = False
            # end of input: the terminal's end-of-file character, as typed
            data = self.termios.tcgetattr(self.master)[6][self.termios.VEOF]
        self.inbuf += data
        if len(self.inbuf) >= INPUT_BUFFER and self.stdin_open:
            poller.unregister(0)  # full: read again once the workload took some
        poller.register(self.master, select.POLLIN | select.POLLOUT)

    def _write_input(self, poller: select.poll) -> None:
        import select

        try:
            n = os.write(self.master, self.inbuf)
        except BlockingIOError:
            n = 0
        except OSError:
            self.inbuf = b""
            n = 0
        self.inbuf = self.inbuf[n:]
        if not self.inbuf:
            poller.register(self.master, select.POLLIN)
            if self.stdin_open:
                poller.register(0, select.POLLIN)

    def finish(self) -> None:
        super().finish()  # closes the master


class Pipes(_Relay):
    """``--tty=never``: each terminal among stdout and stderr becomes a pipe inside, copied to
    it by the supervisor (stdin, if a terminal, is replaced by /dev/null in the child)."""

    def __init__(self) -> None:
        super().__init__()
        for fd in (1, 2):
            if os.isatty(fd):
                r, w = os.pipe2(os.O_CLOEXEC)
                self.child_map[fd] = w
                self.child_ends.append(w)
                self.copies[r] = fd
        if os.isatty(0):
            null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            self.child_map[0] = null
            self.child_ends.append(null)


def needed(mode: str) -> _Relay | None:
    """The relay a launch with ``--tty=MODE`` needs here, or None."""
    if mode == "never":
        return Pipes() if any(os.isatty(fd) for fd in (0, 1, 2)) else None
    if mode == "always" or any(os.isatty(fd) for fd in (0, 1, 2)):
        return Pty()
    return None


def _foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _noop(*_: object) -> None:
    pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
