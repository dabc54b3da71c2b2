"""The isolation core: fork, the sync protocol, exec and supervision.

Plugins own every control; this module only walks :data:`secrun.stages.STAGES` and calls each
stage's hook implementations from the plan's dispatch table.  It is on the launch path of every
sandboxed command, so it imports nothing beyond ``os``, ``sys``, ``marshal`` and ``_signal``.

Processes::

    secrun (supervisor) --fork--> child: user_namespace | after_fork (parent) | namespaces
                                     [--fork--> pid 1 of the new pid namespace, if one was made;
                                      the child exits and the supervisor, a subreaper, adopts it]
                                  mounts ... seccomp
                                     [pid 1 forks the workload and stays as a minimal init]
                                  exec(workload)

Pipes: ``status`` (child -> supervisor, close-on-exec) carries length-prefixed marshal records:
``("ready",)`` after user_namespace, ``("pid", n)`` when pid 1 of a new pid namespace took over,
``("warn", text)``, ``("error", stage, plugin, text)``, ``("exec_error", errno, program)``; EOF
means the workload was exec'd (or died).  ``go`` (supervisor -> child) releases the child after
``after_fork`` (byte ``g``) and after ``attach`` or the pid-namespace hand-over (byte ``a``); EOF
without the byte aborts it.  ``final`` (init -> supervisor) carries records of the workload's
stops and its raw wait status when a minimal init sits between them (pid 1 announces itself
with ``("init",)`` on the status pipe).  ``life``: the supervisor holds its only write end and
never writes; its EOF tells the sandbox that the supervisor is gone.

Lifetime and session (each a promise the live audit checks):

- The sandbox never outlives the supervisor.  The setup process has ``PR_SET_PDEATHSIG``
  (SIGKILL) from its first instruction, checked against a supervisor that died before it was
  set; a credential change clears that setting, so the process that execs and the minimal init
  set it again last thing, once the init's parent is the supervisor itself (after the
  hand-over), and check the ``life`` pipe.  pid 1's death takes its whole pid namespace along.
- The workload runs in a session of its own, never in the caller's session or process group,
  and never with the caller's terminal as its controlling terminal (see
  :mod:`secrun.terminal`).
- Every signal that was ignored in secrun (Python ignores SIGPIPE and SIGXFSZ; a caller may
  ignore more, e.g. ``nohup``) is reset to its default and the signal mask is emptied before
  exec: the workload starts with the dispositions a fresh process has.
"""

import _signal
import marshal
import os
import sys
from time import perf_counter as _now

from .context import Context
from .errors import EXIT_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, describe_oserror
from .stages import CHILD_STAGES, hook_name  # noqa: F401  (hook_name: documentation)

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGUSR1, _signal.SIGUSR2)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


class StageFailure(Exception):
    def __init__(self, stage, plugin, text):
        super().__init__(stage, plugin, text)
        self.stage, self.plugin, self.text = stage, plugin, text

    def line(self) -> str:
        return f"stage '{self.stage}' failed in plugin '{self.plugin}': {self.text}"


def call_stage(ctx: Context, dispatch: dict, stage: str) -> None:
    """Call every hook implementation of ``stage``; a required one's failure raises."""
    rows = dispatch.get(stage)
    if not rows:
        return
    for modname, fname, plugin, required in rows:
        module = sys.modules.get(modname)
        if module is None:
            __import__(modname)
            module = sys.modules[modname]
        ctx.stage, ctx.plugin = stage, plugin
        t0 = _now() if ctx.verbose else 0.0
        try:
            getattr(module, fname)(ctx=ctx)
        except Exception as exc:  # noqa: BLE001 - every failure must name stage and plugin
            text = describe_oserror(exc)
            if required:
                raise StageFailure(stage, plugin, text) from None
            ctx.warn(f"{plugin}: best-effort control not applied at stage '{stage}': {text}")
        if ctx.verbose:
            side = "child" if ctx.in_child else "parent"
            ctx.log(f"[{side}] stage {stage} ({plugin}): {(_now() - t0) * 1000:.2f} ms")


# --- records over the status pipe ----------------------------------------------------------------

def _send(fd: int, record: tuple) -> None:
    data = marshal.dumps(record)
    data = len(data).to_bytes(4, "little") + data
    while data:
        n = os.write(fd, data)
        data = data[n:]


MAX_RECORD = 1 << 20


class _Records:
    def __init__(self, fd):
        self.fd, self.buf = fd, b""

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def next(self):
        """The next record, or None at EOF; ``("bad",)`` for anything that is not one of
        ours (too large, not marshal data, not a tuple naming its kind)."""
        if not self._fill(4):
            return None
        size = int.from_bytes(self.buf[:4], "little")
        if size > MAX_RECORD:
            return ("bad",)
        if not self._fill(4 + size):
            return None
        data, self.buf = self.buf[4:4 + size], self.buf[4 + size:]
        try:
            rec = marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            return ("bad",)
        if not isinstance(rec, tuple) or not rec or not isinstance(rec[0], str):
            return ("bad",)
        return rec


# --- supervisor -----------------------------------------------------------------------------------

class Supervisor:
    """Signal forwarding state of the secrun process."""

    def __init__(self):
        self.target = None
        self.received = []

    def handler(self, sig, frame):
        # The workload is in a session of its own: a key typed on the caller's terminal
        # signals only secrun, which passes it on.
        self.received.append(sig)
        if self.target is not None:
            try:
                os.kill(self.target, sig)
            except ProcessLookupError:
                pass

    def install(self):
        for s in FORWARDED:
            _signal.signal(s, self.handler)


def _prctl(option: int, arg: int, what: str) -> None:
    from .kernel import check, libc

    check(libc.prctl(option, arg, 0, 0, 0), what)


def run(plan: dict, argv: list, verbose: int = 0, env=None, tty: str = "auto",
        sup=None) -> int:
    """Launch ``argv`` under ``plan``; returns secrun's exit status.  ``tty``: ``auto``,
    ``always`` or ``never`` (see :mod:`secrun.terminal`).  ``sup``: the :class:`Supervisor`
    whose handlers are already in place (the command installs them first thing)."""
    ctx = Context(plan["config"], plan["origins"], plan["plan"], argv, env, verbose)
    ctx.log("plan ready")
    dispatch = plan["dispatch"]
    if sup is None:
        sup = Supervisor()
        sup.install()
    if sup.received:
        return _interrupted(sup)
    try:
        call_stage(ctx, dispatch, "prepare")
    except StageFailure as f:
        _cleanup(ctx, dispatch)
        return _fail(f.line())
    if sup.received:
        _cleanup(ctx, dispatch)
        return _interrupted(sup)
    try:
        return _launch(ctx, dispatch, sup, tty)
    finally:
        _cleanup(ctx, dispatch)


def _interrupted(sup) -> int:
    """secrun was told to stop before the workload ran: 128+N, and one line unless it was ^C."""
    sig = sup.received[0]
    if sig != _signal.SIGINT:
        import signal

        sys.stderr.write(f"secrun: stopped by {signal.Signals(sig).name} before the workload "
                         f"ran\n")
    return 128 + sig


def _preload(dispatch) -> None:
    """Import every plugin module of the plan before fork.  After the ``mounts`` stage the
    child may no longer see the Python installation (a hidden /root, a pivot_root), so nothing
    may be imported lazily in child stages: plugins import what their child stages need at
    module level, and the core imports the modules here, once, in the supervisor."""
    for rows in dispatch.values():
        for modname, _fname, _plugin, _required in rows:
            if modname not in sys.modules:
                __import__(modname)
    # prctl for the death signal, in the child's first and last steps
    if "secrun.kernel" not in sys.modules:
        from . import kernel  # noqa: F401


class _Child:
    """What the forked side needs from the supervisor: the pipe ends (see the module
    docstring), the supervisor's pid, and the workload's terminal."""

    __slots__ = ("r_status", "w_status", "r_go", "w_go", "r_final", "w_final", "r_life",
                 "w_life", "sup_pid", "term", "has_init")

    def __init__(self, tty: str):
        self.r_status, self.w_status = os.pipe2(os.O_CLOEXEC)
        self.r_go, self.w_go = os.pipe2(os.O_CLOEXEC)
        self.r_final, self.w_final = os.pipe2(os.O_CLOEXEC)
        self.r_life, self.w_life = os.pipe2(os.O_CLOEXEC)
        self.sup_pid = os.getpid()
        self.has_init = False  # a minimal init sits between the supervisor and the workload
        self.term = None  # the relay of the workload's terminal (see secrun.terminal)
        if tty == "always" or os.isatty(0) or os.isatty(1) or os.isatty(2):
            from .terminal import needed

            self.term = needed(tty)


def _launch(ctx, dispatch, sup, tty) -> int:
    try:
        c = _Child(tty)
    except OSError as e:
        return _fail(f"stage 'fork' failed in plugin 'core': {describe_oserror(e)} (the "
                     f"workload's pipes or terminal; --tty=never goes without a terminal)")
    _preload(dispatch)
    if "namespaces" in dispatch:
        _prctl(PR_SET_CHILD_SUBREAPER, 1, "prctl(PR_SET_CHILD_SUBREAPER)")
    sys.stdout.flush()
    sys.stderr.flush()
    ctx.log("fork")
    # Forwarded signals stay pending across the fork until each side has its own handlers:
    # the supervisor's forward to the child; the child's abort the setup (see _child).  One
    # that arrived before (its handler had no child to forward to) stops the launch here.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED)
    if sup.received:
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
        if c.term is not None:
            c.term.finish()
        return _interrupted(sup)
    pid = os.fork()
    if pid == 0:
        _child(ctx, dispatch, c)
    ctx.pid = sup.target = pid
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
    # The supervisor holds the caller's terminal and its pipes to the sandbox: a workload of
    # the same uid may not open them through /proc/<secrun>/fd, nor ptrace secrun.
    _prctl(PR_SET_DUMPABLE, 0, "prctl(PR_SET_DUMPABLE)")
    os.close(c.w_status)
    os.close(c.r_go)
    os.close(c.w_final)
    os.close(c.r_life)
    if c.term is not None:
        c.term.start()
    try:
        return _supervise(ctx, dispatch, sup, c, pid)
    finally:
        if c.term is not None:
            c.term.finish()


def _supervise(ctx, dispatch, sup, c, pid) -> int:
    w_go = c.w_go
    records = _Records(c.r_status)
    failure = None
    exec_error = None
    waited = [pid]  # processes to reap: the child, and pid 1 of a new pid namespace
    go_open = True

    def release(byte):
        # The go pipe stays open until the record loop ends: the child reads ``a`` after
        # ``attach`` or after the pid-namespace hand-over; EOF without a byte aborts it.
        nonlocal go_open
        if byte:
            try:
                os.write(w_go, byte)
                return
            except BrokenPipeError:
                pass  # the child already failed: its error record is on the status pipe
        os.close(w_go)
        go_open = False

    def attach():
        # The process that goes on to exec (pid 1 of a new pid namespace, or the child) is
        # known now: run the parent's attach stage while the child builds its filesystem
        # view, then release it into the stages after `attach`.
        try:
            call_stage(ctx, dispatch, "attach")
        except StageFailure as f:
            release(None)
            return f.line()
        release(b"a")
        return None

    rec = records.next()
    while rec is not None and rec[0] == "warn":
        sys.stderr.write(f"secrun: warning: {rec[1]}\n")
        rec = records.next()
    if rec is None or rec[0] != "ready":
        failure = _record_failure(rec)
    else:
        try:
            call_stage(ctx, dispatch, "after_fork")
        except StageFailure as f:
            failure = f.line()
        else:
            release(b"g")
        while failure is None:
            rec = records.next()
            if rec is None:
                break
            kind = rec[0]
            if kind == "warn":
                sys.stderr.write(f"secrun: warning: {rec[1]}\n")
            elif kind == "pid":
                # The child forked pid 1 of a new pid namespace and exits; as subreaper we
                # adopt pid 1 and wait for it instead.  Once the child is reaped, pid 1's
                # parent is this process, and the ``a`` byte lets it bind its life to ours.
                _reap(pid)
                waited = [rec[1]]
                ctx.pid = sup.target = rec[1]
                failure = attach() if "attach" in dispatch else release(b"a")
            elif kind == "attach":
                failure = attach()
            elif kind == "init":
                c.has_init = True
            elif kind == "exec_error":
                exec_error = rec
            else:
                failure = _record_failure(rec)
    if go_open:
        os.close(w_go)
    os.close(c.r_status)

    if failure is not None:
        for p in waited:
            _kill_and_reap(p)
        if sup.received and rec is None:
            return _interrupted(sup)  # the forwarded signal ended the set-up
        return _fail(failure)

    if exec_error is None:
        try:
            call_stage(ctx, dispatch, "started")
        except StageFailure as f:
            for p in waited:
                _kill_and_reap(p)
            return _fail(f.line())

    waiter = _Waiter(waited[0], c)
    status = c.term.relay(waiter) if c.term is not None else waiter.wait()
    os.close(c.r_final)
    ctx.status = status
    if exec_error is not None:
        _, err, prog = exec_error
        sys.stderr.write(f"secrun: {prog}: {os.strerror(err)}\n")
        return EXIT_NOT_FOUND if err == 2 else EXIT_NOT_EXECUTABLE
    return _exit_code(status, sup.received)


class _Waiter:
    """Waits for the workload and reflects its stops.

    Without a minimal init the workload is the supervisor's child and ``waitpid(WUNTRACED)``
    shows its stops.  With one, pid 1 sends ``("stop", signal)`` and finally ``("exit", raw
    status)`` records up the final pipe.  A stopped workload stops secrun too, with the same
    kind of signal (as ``sudo`` does), so the caller's shell sees a stopped job it can ``fg``
    or ``bg``; when secrun is continued, it continues the workload."""

    def __init__(self, pid, c):
        self.pid, self.c = pid, c
        self.records = _Records(c.r_final)
        self.status = None

    def fds(self) -> list:
        """What to watch besides SIGCHLD."""
        return [self.c.r_final] if self.c.has_init else []

    def wait(self):
        """Block until the workload ended; its raw wait status."""
        while self.status is None:
            self.step(block=True)
        return self.status

    def step(self, block: bool = False):
        """Handle what happened (blocking for it, or not); the raw status once it ended."""
        if self.status is not None:
            return self.status
        if not self.c.has_init:
            st = _reap(self.pid, os.WUNTRACED | (0 if block else os.WNOHANG))
            if st is not None and os.WIFSTOPPED(st):
                self.stopped(os.WSTOPSIG(st))
                st = None
            self.status = st
            return st
        if not block and not _readable(self.c.r_final):
            return None
        rec = self.records.next()
        if rec is not None and len(rec) == 2 and isinstance(rec[1], int):
            if rec[0] == "stop":
                self.stopped(rec[1])
                return None
            if rec[0] != "exit":
                rec = ("bad",)
        elif rec is not None:
            rec = ("bad",)
        if rec is not None and rec[0] == "bad":
            # not pid 1's: something else in the sandbox reached the pipe; end it all
            _kill_and_reap(self.pid)
            sys.stderr.write("secrun: error: the sandbox's pid 1 sent a malformed record; "
                             "the sandbox was killed\n")
            self.status = 125 << 8  # reported as exit status 125
            return self.status
        st = _reap(self.pid)  # pid 1 exits right after its last record
        # without a record pid 1 was killed: its own status tells how
        self.status = st if rec is None else rec[1]
        return self.status

    def stopped(self, sig: int) -> None:
        term = self.c.term
        if term is not None:
            term.suspend()
        own = sig if sig in (_signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU) \
            else _signal.SIGSTOP
        os.kill(os.getpid(), own)
        # continued (fg/bg): the workload goes on too
        if term is not None:
            term.resume()
        try:
            os.kill(self.pid, _signal.SIGCONT)
        except ProcessLookupError:
            pass


def _readable(fd) -> bool:
    import select

    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


def _record_failure(rec) -> str:
    if rec is None:
        return "the sandbox setup process died before reporting (see messages above)"
    if rec[0] == "error":
        _, stage, plugin, text = rec
        return StageFailure(stage, plugin, text).line()
    return f"unexpected record from the sandbox setup process: {rec!r}"


_REAPED: dict = {}


def _reap(pid, flags=0):
    """Wait for ``pid``; any other child on the way is an orphan the supervisor adopted as a
    subreaper (set for the pid-namespace hand-over) and is reaped too, so none stays a zombie.
    Its status is kept, in case it is one we wait for later (pid 1, adopted early).  With
    ``os.WNOHANG``: None while ``pid`` still runs."""
    if pid in _REAPED:
        return _REAPED.pop(pid)
    while True:
        try:
            wpid, status = os.waitpid(-1, flags)
        except ChildProcessError:
            return 0
        if wpid == 0:
            return None  # WNOHANG: still running
        if wpid == pid:
            return status
        _REAPED[wpid] = status


def _kill_and_reap(pid) -> None:
    try:
        os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _fail(line: str) -> int:
    sys.stderr.write(f"secrun: error: {line}\n")
    return EXIT_FAILED


def _exit_code(status: int, forwarded) -> int:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        # SIGPIPE is how a writer learns that its reader is gone: shells say nothing either
        if sig not in forwarded and sig != _signal.SIGPIPE:
            import signal

            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = str(sig)
            why = " (a seccomp rule killed it)" if name == "SIGSYS" else ""
            sys.stderr.write(f"secrun: workload killed by signal {name}{why}\n")
        return 128 + sig
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return EXIT_FAILED


def _cleanup(ctx, dispatch) -> None:
    rows = dispatch.get("cleanup")
    if not rows:
        return
    for modname, fname, plugin, _required in rows:
        try:
            call_stage(ctx, {"cleanup": [(modname, fname, plugin, True)]}, "cleanup")
        except StageFailure as f:
            sys.stderr.write(f"secrun: warning: {f.line()}\n")


# --- child ---------------------------------------------------------------------------------------

def _child(ctx, dispatch, c) -> None:
    """Runs in the forked child; never returns."""
    try:
        # Die with the supervisor from the first instruction on; a supervisor that died before
        # this line shows as a closed life pipe.
        _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, "prctl(PR_SET_PDEATHSIG)")
        os.close(c.w_life)
        if _supervisor_gone(c):
            os._exit(EXIT_FAILED)
        # Out of the caller's session and process group before anything else: a key typed on
        # the caller's terminal now signals only the supervisor, and nothing here can reach
        # the caller's process group or make itself the terminal's foreground.
        os.setsid()
        # No process of the sandbox ever holds the caller's terminal: its streams become the
        # new pty, or pipes and /dev/null (see secrun.terminal).
        if c.term is not None:
            c.term.install_child()
        # pid 1 already if a plugin made the pid namespace before fork: stay as its init
        init = os.getpid() == 1
        forked = False
        for s in FORWARDED:
            _signal.signal(s, _abort_setup if init else _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
        os.close(c.r_status)
        os.close(c.w_go)
        os.close(c.r_final)
        w_status = c.w_status
        ctx.in_child = True
        ctx._warn_sink = lambda text: _send(w_status, ("warn", text))
        need_attach = "attach" in dispatch
        for stage in CHILD_STAGES:
            if stage == "seccomp":
                # Nothing but 0-2, our own pipes and the workload's terminal may reach the
                # workload.
                _close_fds(keep=(w_status, c.w_final, c.r_life, c.r_go))
            elif stage == "hostname" and need_attach:
                # Sync: the parent's attach stage (cgroup attach) ran while we built the
                # filesystem view; nothing after this point may run outside the groups.
                if os.read(c.r_go, 1) != b"a":
                    os._exit(EXIT_FAILED)
            call_stage(ctx, dispatch, stage)
            if stage == "user_namespace":
                # Sync: the parent runs after_fork (uid/gid maps) now.
                _send(w_status, ("ready",))
                if os.read(c.r_go, 1) != b"g":
                    os._exit(EXIT_FAILED)
            elif stage == "namespaces":
                if ctx.fork_after_namespaces:
                    # A new pid/time namespace applies to the next child: continue there, as
                    # pid 1.  The parent learns its pid from the record and attaches it.
                    pid = os.fork()
                    if pid:
                        _send(w_status, ("pid", pid))
                        os._exit(0)
                    init = forked = True
                    _guard_pid1()
                elif need_attach:
                    _send(w_status, ("attach",))
        if init:
            if forked and not need_attach and os.read(c.r_go, 1) != b"a":
                os._exit(EXIT_FAILED)  # the hand-over is complete only with the byte
            _init(ctx, c)
        _exec(ctx, c, c.sup_pid)
    except StageFailure as f:
        _try_send(c.w_status, ("error", f.stage, f.plugin, f.text))
    except BaseException as exc:  # noqa: BLE001
        _try_send(c.w_status, ("error", ctx.stage or "core", ctx.plugin or "core",
                               describe_oserror(exc)))
    os._exit(EXIT_FAILED)


def _supervisor_gone(c) -> bool:
    """Whether the supervisor has exited: the life pipe's only write end is closed."""
    os.set_blocking(c.r_life, False)
    try:
        return os.read(c.r_life, 1) == b""
    except BlockingIOError:
        return False


def _try_send(fd, record):
    try:
        _send(fd, record)
    except OSError:
        pass


def _close_fds(keep) -> None:
    lo = 3
    for fd in sorted(keep):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


# rt_sigaction(2), for the signals libc keeps for itself (32 and 33: its sigaction() refuses
# them), which a caller may still have left ignored
_NR_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)


def _reset_signals() -> None:
    """Every ignored signal back to its default action, and an empty signal mask: the workload
    starts as a fresh process would (Python ignores SIGPIPE and SIGXFSZ, and a caller may have
    ignored more).  Handlers need no reset: exec resets them; only "ignore" survives it."""
    getsignal, signal, ign, dfl = _signal.getsignal, _signal.signal, _signal.SIG_IGN, \
        _signal.SIG_DFL
    valid = _signal.valid_signals()
    for sig in valid:
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP) and getsignal(sig) == ign:
            signal(sig, dfl)
    if _NR_RT_SIGACTION is not None:
        import ctypes

        from .kernel import libc

        old = ctypes.create_string_buffer(32)  # struct sigaction as the kernel has it
        for sig in range(32, 34):
            if sig not in valid and libc.syscall(_NR_RT_SIGACTION, sig, None, old, 8) == 0 \
                    and old.raw[:8] == (1).to_bytes(8, "little"):  # SIG_IGN
                libc.syscall(_NR_RT_SIGACTION, sig, ctypes.create_string_buffer(32), None, 8)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def _exec(ctx, c, parent) -> None:
    """In the process that becomes the workload: its own session (and its terminal), default
    signal dispositions, the death signal; then execve the workload, searching the sandbox's
    PATH like execvp.  (Not os.execvpe: it imports ``warnings`` lazily, which may be
    unreachable inside the sandbox's filesystem.)  ``parent``: the pid its parent must have,
    or None when the parent is outside its pid namespace.  Never returns."""
    w_status = c.w_status
    prog = ctx.argv[0]
    ctx.stage, ctx.plugin = "exec", "core"
    try:
        os.setsid()
    except PermissionError:
        pass  # already the leader of the session made at fork
    if c.term is not None:
        c.term.controlling()
    _reset_signals()
    # last, after every credential change (which clears it): the death signal of the process
    # that becomes the workload, bound to its parent (the supervisor, or the minimal init)
    _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent or _supervisor_gone(c):
        os._exit(EXIT_FAILED)
    ctx.log(f"exec {prog}")
    err = 2  # ENOENT
    if "/" in prog:
        candidates = [prog]
    else:
        path = ctx.env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
        candidates = [os.path.join(d or ".", prog) for d in path.split(":")]
    for candidate in candidates:
        try:
            os.execve(candidate, ctx.argv, ctx.env)
        except OSError as e:
            # like execvp: the first "found but cannot run" error wins over "not found here"
            if err in (2, 20) and e.errno:
                err = e.errno
    _try_send(w_status, ("exec_error", err, prog))
    os._exit(EXIT_NOT_FOUND if err in (2, 20) else EXIT_NOT_EXECUTABLE)


def _abort_setup(sig, frame):
    os._exit(128 + sig)


def _guard_pid1() -> None:
    """pid 1 of a new pid namespace: the kernel drops a signal for which pid 1 has no
    handler, so until the workload runs a forwarded signal aborts the setup (as it kills the
    child when there is no pid namespace)."""
    for s in FORWARDED:
        _signal.signal(s, _abort_setup)


def _init(ctx, c) -> None:
    """pid 1 of the sandbox's pid namespace: fork the workload, forward signals to it, reap
    every orphan, report the workload's stops and finally its raw status up the final pipe,
    and exit with it.  Its parent is the supervisor now (directly, or by adoption after the
    hand-over), so its death signal is bound to the supervisor: when secrun dies, pid 1 dies,
    and the kernel kills every process of the namespace.  Never returns."""
    ctx.stage, ctx.plugin = "init", "core"
    w_status, w_final = c.w_status, c.w_final
    _prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, "prctl(PR_SET_PDEATHSIG)")
    if _supervisor_gone(c):
        os._exit(EXIT_FAILED)
    _send(w_status, ("init",))
    # Not dumpable: the workload (same uid, and pid 1 is its parent) may not ptrace pid 1, read
    # its memory or open its descriptors through /proc/1/fd; exec makes the workload dumpable.
    _prctl(PR_SET_DUMPABLE, 0, "prctl(PR_SET_DUMPABLE)")
    # Signals that arrive around the fork stay pending (blocked) instead of hitting
    # _abort_setup: the workload gets them with their default action once it unblocks them,
    # the init forwards them once its handlers are in place.
    relayed = FORWARDED + (_signal.SIGCONT,)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, relayed)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        for s in FORWARDED:
            _signal.signal(s, _signal.SIG_DFL)
        os.close(w_final)
        _exec(ctx, c, me)
    os.close(w_status)

    # The workload has a session and a terminal of its own: what its terminal's keys send
    # reaches it directly, what the supervisor forwards (and SIGCONT after a reflected stop)
    # reaches it through here.
    def forward(sig, frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for s in relayed:
        _signal.signal(s, forward)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, relayed)
    status = 0
    while True:
        try:
            wpid, st = os.waitpid(-1, os.WUNTRACED)
        except ChildProcessError:
            break
        if wpid != pid:
            continue
        if os.WIFSTOPPED(st):
            _try_send(w_final, ("stop", os.WSTOPSIG(st)))
            continue
        status = st
        break
    _try_send(w_final, ("exit", status))
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_FAILED)
