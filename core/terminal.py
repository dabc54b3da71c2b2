"""The workload's terminal: a fresh pseudo-terminal that the supervisor relays.

A workload never shares the caller's terminal.  It runs in a session of its own (``setsid``,
done by :mod:`secrun.launch` for every launch), so it cannot make itself the foreground of the
caller's terminal (``TIOCSPGRP``), stop the supervisor with ``SIGTTOU``, read what the user
types next into their shell, or signal the caller's process group.  When secrun's standard
streams include a terminal, the workload gets a new pseudo-terminal instead (like ``sudo``'s
``use_pty``, ``docker run -t`` or ``ssh``): the pty is its controlling terminal, and the
supervisor copies bytes between it and the caller's terminal, which it puts in raw mode while
secrun is in the foreground.  Keys such as ^C and ^Z reach the workload through its own
terminal's line discipline, as they would outside.

``--tty`` chooses: ``auto`` (default: a pty when stdin, stdout or stderr is a terminal),
``always`` (``-t``: a pty even when none is) or ``never`` (``-T``: no pty; the workload has no
controlling terminal, and a terminal on stdin is replaced by ``/dev/null`` so that a background
workload cannot read what is typed to the shell; output streams are passed as they are).

This module is imported only when a pty is used; launches without a terminal never load it.
"""

import os

MODES = ("auto", "always", "never")
TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414


def wanted(mode: str) -> bool:
    if mode == "always":
        return True
    if mode == "never":
        return False
    return any(os.isatty(fd) for fd in (0, 1, 2))


class Pty:
    """The pseudo-terminal of one launch.  Made in the supervisor before fork."""

    def __init__(self):
        import termios

        self.termios = termios
        self.master, self.slave = os.openpty()
        os.set_inheritable(self.master, False)
        os.set_inheritable(self.slave, False)
        # which of secrun's standard streams are terminals: those become the pty inside
        self.targets = [fd for fd in (0, 1, 2) if os.isatty(fd)] or [0, 1, 2]
        self.user = next((fd for fd in (0, 1, 2) if os.isatty(fd)), None)
        self.saved = None
        if self.user is not None:
            try:
                # the workload's terminal starts with the user's settings and size
                termios.tcsetattr(self.slave, termios.TCSANOW, termios.tcgetattr(self.user))
            except termios.error:
                pass
            self.resize()

    # --- child side (before exec) -------------------------------------------------------------

    def attach_child(self) -> None:
        """In the process that execs, which leads a session of its own: make the pty its
        controlling terminal and its standard streams."""
        from .kernel import check, libc

        check(libc.ioctl(self.slave, TIOCSCTTY, 0), "ioctl(TIOCSCTTY)")
        for fd in self.targets:
            os.dup2(self.slave, fd)
        if self.slave not in self.targets:
            os.close(self.slave)

    # --- supervisor side -----------------------------------------------------------------------

    def resize(self, *_):
        import fcntl

        if self.user is None:
            return
        try:
            size = fcntl.ioctl(self.user, TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, TIOCSWINSZ, size)
        except OSError:
            pass

    def start(self) -> None:
        """After fork, in the supervisor: raw mode on the user's terminal, and the window size
        passed on when it changes."""
        import _signal

        os.close(self.slave)
        self.resume()
        if self.user is not None:
            _signal.signal(_signal.SIGWINCH, self.resize)

    def suspend(self) -> None:
        """The user's terminal as it was (secrun stops, or ends)."""
        if self.saved is not None:
            try:
                self.termios.tcsetattr(0, self.termios.TCSADRAIN, self.saved)
            except self.termios.error:
                pass
            self.saved = None

    def resume(self) -> None:
        """Raw mode on the user's terminal, only while secrun is its foreground (a background
        secrun must not touch it)."""
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

    def relay(self, waiter):
        """Copy between the caller's streams and the pty until the workload ended (``waiter``,
        see :class:`secrun.launch._Waiter`, is asked whenever a signal arrives, SIGCHLD
        included, or one of its descriptors is readable); its wait status.  Then copy what the
        workload left in the pty.  Runs in the supervisor's only thread: a
        thread cannot be started once secrun has made a pid namespace for its child."""
        import _signal
        import select

        r_wake, w_wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.signal(_signal.SIGCHLD, _noop)
        old_wake = _signal.set_wakeup_fd(w_wake)
        out = next((fd for fd in (1, 2, 0) if os.isatty(fd)), 1)
        inputs = [self.master, r_wake, *waiter.fds()]
        if self.user == 0 or 0 in self.targets:
            inputs.append(0)
        try:
            status = waiter.step()
            while status is None:
                try:
                    ready = select.select(inputs, [], [])[0]
                except OSError:
                    ready = []
                if r_wake in ready:
                    _drain(r_wake)
                if self.master in ready and not self._copy_out(out):
                    inputs.remove(self.master)
                if 0 in ready:
                    try:
                        data = os.read(0, 65536)
                    except OSError:
                        data = b""
                    if data:
                        _write_all(self.master, data)
                    else:
                        inputs.remove(0)
                        # end of input: the terminal's end-of-file character, as typed
                        cc = self.termios.tcgetattr(self.master)[6]
                        _write_all(self.master, cc[self.termios.VEOF])
                status = waiter.step()
            # what the workload wrote before it ended is still in the pty
            while self.master in inputs and select.select([self.master], [], [], 0.02)[0]:
                if not self._copy_out(out):
                    break
            return status
        finally:
            _signal.set_wakeup_fd(old_wake)
            os.close(r_wake)
            os.close(w_wake)

    def _copy_out(self, out) -> bool:
        try:
            data = os.read(self.master, 65536)
        except OSError:
            return False  # EIO: every slave descriptor is closed
        if not data:
            return False
        try:
            _write_all(out, data)
        except OSError:
            pass
        return True

    def finish(self) -> None:
        """Give the user their terminal back as it was."""
        self.suspend()
        os.close(self.master)


def _noop(*_):
    pass


def _drain(fd) -> None:
    try:
        while os.read(fd, 512):
            pass
    except OSError:
        pass


def _foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
