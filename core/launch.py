"""The isolation core: fork, the sync protocol, exec and supervision.

Plugins own every control; this module only walks :data:`secrun.stages.STAGES` and calls each
stage's hook implementations from the plan's dispatch table.  It is on the launch path of every
sandboxed command, so it imports nothing beyond ``os``, ``sys``, ``_signal``, ``marshal``
(through :mod:`secrun.protocol`) and :mod:`secrun.kernel` (libc through ``_ctypes``: every
launch sets the death signal and the supervisor's dumpability, which only ``prctl`` does).

Processes::

    secrun (supervisor) --fork--> child: user_namespace | after_fork (parent) | namespaces
                                     [--fork--> pid 1 of the new pid namespace, if one was made;
                                      the child exits and the supervisor, a subreaper, adopts it]
                                  mounts ... seccomp
                                     [pid 1 forks the workload and stays as a minimal init]
                                  exec(workload)

Two generic drivers, and the table says what happens where.  In the child, :class:`_Walk` runs
the child stages in order and crosses the barriers each row names before and after it (announce
to the supervisor, wait for its release, hand over to pid 1 of a new pid namespace, close
descriptors).  In the supervisor, :class:`_Answer` reads the child's messages and answers each
one by running the parent stage that the table attaches to it (``on``), then releasing the
child with that stage's byte.  No stage is special-cased here.

Pipes (the messages and their shapes: :mod:`secrun.protocol`): ``status`` (child -> supervisor,
close-on-exec) carries ``ready`` (the first contact, after user_namespace), ``attach`` or
``pid`` (the process to attach: the child itself, or pid 1 of a new pid namespace after the
hand-over), ``init`` (a minimal init runs), ``warn``, ``error`` and ``exec_error``; EOF after
the first contact means the workload was exec'd (or died), before it that the setup process
died.  ``go`` (supervisor -> child) releases the child past a parent
stage (byte ``g`` after ``after_fork``, ``a`` after ``attach`` or the hand-over); EOF without
the byte aborts it.  ``final`` (init -> supervisor) carries ``stop`` and ``exit`` records of the
workload when a minimal init sits between them.  ``life``: the supervisor holds its only write
end and never writes; its EOF tells the sandbox that the supervisor is gone.

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

from __future__ import annotations

import _signal
import errno
import gc
import os
import sys
from time import perf_counter as _now

from .context import RunContext
from .errors import EXIT_FAILED, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, describe_oserror
from .kernel import (
    NR,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_PDEATHSIG,
    buffer,
    byref,
    c_char_p,
    c_int,
    error,
    libc,
    prctl,
)
from .protocol import FINAL, STATUS, ProtocolError, Reader, release, released, send
from .stages import (
    ANNOUNCE,
    ANSWERS,
    BEFORE_FORK,
    BY_NAME,
    CHILD_ROWS,
    CLOSE_FDS,
    ENDED,
    EXECED,
    HANDOVER,
    STAGES,
    SYNC,
    WAIT,
    hook_name,  # noqa: F401  (documentation)
)

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from types import FrameType

    from .plan import Plan
    from .protocol import Kinds, Record
    from .registry import Dispatch
    from .terminal import _Relay

FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGUSR1, _signal.SIGUSR2)


class StageFailure(Exception):
    def __init__(self, stage: str, plugin: str, text: str) -> None:
        super().__init__(stage, plugin, text)
        self.stage, self.plugin, self.text = stage, plugin, text

    def line(self) -> str:
        return f"stage '{self.stage}' failed in plugin '{self.plugin}': {self.text}"


def call_stage(ctx: RunContext, dispatch: Dispatch, stage: str) -> None:
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
        except Exception as exc:  # every failure must name stage and plugin
            text = describe_oserror(exc)
            if required:
                raise StageFailure(stage, plugin, text) from None
            ctx.warn(f"{plugin}: best-effort control not applied at stage '{stage}': {text}")
        if ctx.verbose:
            side = "child" if ctx.in_child else "parent"
            ctx.log(f"[{side}] stage {stage} ({plugin}): {(_now() - t0) * 1000:.2f} ms")


# --- supervisor -----------------------------------------------------------------------------------

class Supervisor:
    """Signal forwarding state of the secrun process."""

    def __init__(self) -> None:
        self.target: int | None = None
        self.received: list[int] = []

    def handler(self, sig: int, frame: FrameType | None) -> None:
        # The workload is in a session of its own: a key typed on the caller's terminal
        # signals only secrun, which passes it on.
        self.received.append(sig)
        if self.target is not None:
            try:
                os.kill(self.target, sig)
            except ProcessLookupError:
                pass

    def install(self) -> None:
        for s in FORWARDED:
            _signal.signal(s, self.handler)
        # A caller that ignores or blocks SIGCHLD would otherwise hand that on to the
        # supervisor and pid 1: with it ignored, the kernel reaps children itself and every
        # wait finds nothing (the exit status would read 0); blocked, a relay that waits for
        # it would wait for ever.
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, (_signal.SIGCHLD,))


def run(plan: Plan, argv: list[str], verbose: int = 0, env: dict[str, str] | None = None,
        tty: str = "auto", sup: Supervisor | None = None) -> int:
    """Launch ``argv`` under ``plan``; returns secrun's exit status.  ``tty``: ``auto``,
    ``always`` or ``never`` (see :mod:`secrun.terminal`).  ``sup``: the :class:`Supervisor`
    whose handlers are already in place (the command installs them first thing)."""
    ctx = RunContext(plan["config"], plan["origins"], plan["plan"], plan["facts"], plan["reads"],
                     argv, env, verbose)
    ctx.log("plan ready")
    dispatch = plan["dispatch"]
    if sup is None:
        sup = Supervisor()
        sup.install()
    if sup.received:
        return _interrupted(sup)
    try:
        call_stage(ctx, dispatch, ANSWERS[BEFORE_FORK].name)
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


def _interrupted(sup: Supervisor) -> int:
    """secrun was told to stop before the workload ran: 128+N, and one line unless it was ^C."""
    sig = sup.received[0]
    if sig != _signal.SIGINT:
        import signal

        sys.stderr.write(f"secrun: stopped by {signal.Signals(sig).name} before the workload "
                         f"ran\n")
    return 128 + sig


def _preload(dispatch: Dispatch) -> None:
    """Import every plugin module of the plan before fork.  After the ``mounts`` stage the
    child may no longer see the Python installation (a hidden /root, a pivot_root), so nothing
    may be imported lazily in child stages: plugins import what their child stages need at
    module level, and the core imports the modules here, once, in the supervisor."""
    for rows in dispatch.values():
        for modname, _fname, _plugin, _required in rows:
            if modname not in sys.modules:
                __import__(modname)


class _Child:
    """What the forked side needs from the supervisor: the pipe ends (see the module
    docstring), the supervisor's pid, and the workload's terminal."""

    __slots__ = ("r_status", "w_status", "r_go", "w_go", "r_final", "w_final", "r_life",
                 "w_life", "sup_pid", "term", "has_init")

    def __init__(self, tty: str) -> None:
        self.r_status, self.w_status = os.pipe2(os.O_CLOEXEC)
        self.r_go, self.w_go = os.pipe2(os.O_CLOEXEC)
        self.r_final, self.w_final = os.pipe2(os.O_CLOEXEC)
        self.r_life, self.w_life = os.pipe2(os.O_CLOEXEC)
        self.sup_pid = os.getpid()
        self.has_init = False  # a minimal init sits between the supervisor and the workload
        self.term: _Relay | None = None  # the workload's terminal (see secrun.terminal)
        if tty == "always" or os.isatty(0) or os.isatty(1) or os.isatty(2):
            from .terminal import needed

            self.term = needed(tty)


def _threads() -> int:
    """How many threads secrun has (1 where /proc cannot tell)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _launch(ctx: RunContext, dispatch: Dispatch, sup: Supervisor, tty: str) -> int:
    try:
        c = _Child(tty)
    except OSError as e:
        return _fail(f"stage 'fork' failed in plugin 'core': {describe_oserror(e)} (the "
                     f"workload's pipes or terminal; --tty=never goes without a terminal)")
    _preload(dispatch)
    threads = _threads()
    if threads > 1:
        # A multi-threaded process cannot enter a new user or time namespace, and a lock a
        # thread holds stays held in the child: the contract forbids threads at fork.
        if c.term is not None:
            c.term.finish()
        return _fail(f"stage 'fork' failed in plugin 'core': {threads} threads alive in secrun "
                     f"at fork (/proc/self/task): a plugin left a thread running, which the "
                     f"plugin contract forbids")
    if _may_hand_over(dispatch):
        prctl(PR_SET_CHILD_SUBREAPER, 1, what="prctl(PR_SET_CHILD_SUBREAPER)")
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
    prctl(PR_SET_DUMPABLE, 0, what="prctl(PR_SET_DUMPABLE)")
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


def _may_hand_over(dispatch: Dispatch) -> bool:
    """Whether a child stage after which the setup process may hand over to pid 1 of a new pid
    namespace has hooks in this plan: the supervisor is then a child subreaper, to adopt pid 1
    when the process that forked it exits."""
    return any(s.name in dispatch for s in CHILD_ROWS for kind, _ in s.after if kind == HANDOVER)


def _supervise(ctx: RunContext, dispatch: Dispatch, sup: Supervisor, c: _Child,
               pid: int) -> int:
    answer = _Answer(ctx, dispatch, sup, c, pid)
    failure = answer.run()
    if failure is not None:
        for p in answer.waited:
            _kill_and_reap(p)
        if sup.received and answer.eof:
            return _interrupted(sup)  # the forwarded signal ended the set-up
        return _fail(failure)

    exec_error = answer.exec_error
    if exec_error is None:
        try:
            call_stage(ctx, dispatch, ANSWERS[EXECED].name)
        except StageFailure as f:
            for p in answer.waited:
                _kill_and_reap(p)
            return _fail(f.line())

    # The workload runs: the supervisor may live long now, so the collector goes back on (see
    # deps/secrun-launcher.in), for what it allocates from here on: the set-up's objects are
    # frozen first, or its first pass would scan them all (~2 ms, while the workload that has
    # just been exec'd waits for the CPU).
    gc.freeze()
    gc.enable()
    waiter = _Waiter(answer.waited[0], c)
    status = c.term.relay(waiter) if c.term is not None else waiter.wait()
    os.close(c.r_final)
    ctx.status = status
    if exec_error is not None:
        _, err, prog = exec_error
        sys.stderr.write(f"secrun: {prog}: {os.strerror(err)}\n")
        return EXIT_NOT_FOUND if err == 2 else EXIT_NOT_EXECUTABLE
    return _exit_code(status, sup.received)


# Where each parent stage sits in the table, and the ones the child always syncs with (its
# first contact): until they ran, only ``warn`` and ``error`` may come, and EOF is a death.
_POSITION = {s.name: i for i, s in enumerate(STAGES)}
_CONTACT = tuple(ANSWERS[arg].name for s in CHILD_ROWS for kind, arg in s.before + s.after
                 if kind == SYNC)


class _Answer:
    """The supervisor's side of the set-up: reads the setup process's messages until its status
    pipe closes, and answers each one the table attaches a parent stage to (``on``) by running
    that stage and releasing the child with the stage's byte.  The stages answer in table
    order, each at most once.  Afterwards: ``waited``, the processes to reap (the child, or pid
    1 of a new pid namespace once it was handed over); ``exec_error``; ``eof``, whether the
    status pipe closed (rather than a failure ending the set-up)."""

    __slots__ = ("ctx", "dispatch", "sup", "c", "waited", "exec_error", "eof", "done",
                 "contact", "go_open")

    def __init__(self, ctx: RunContext, dispatch: Dispatch, sup: Supervisor, c: _Child,
                 pid: int) -> None:
        self.ctx, self.dispatch, self.sup, self.c = ctx, dispatch, sup, c
        self.waited = [pid]
        self.exec_error: Record | None = None
        self.eof = False
        self.done = -1  # the position of the last parent stage that answered a message
        self.contact = set(_CONTACT)  # first-contact stages not answered yet
        self.go_open = True

    def run(self) -> str | None:
        """The failure line, or None: the workload was exec'd (or died after the contact)."""
        records = Reader(self.c.r_status, STATUS)
        failure: str | None = None
        try:
            while failure is None:
                msg = records.next()
                if msg is None:
                    self.eof = True
                    if self.contact:
                        failure = ("the sandbox setup process died before reporting (see "
                                   "messages above)")
                    break
                failure = self.on(msg)
        except ProtocolError as e:
            failure = _unexpected(e.what)
        if self.go_open:
            os.close(self.c.w_go)
        os.close(self.c.r_status)
        return failure

    def on(self, msg: Record) -> str | None:
        """Handle one message; the failure line it means, or None."""
        kind = msg[0]
        if kind == "warn":
            sys.stderr.write(f"secrun: warning: {msg[1]}\n")
            return None
        if kind == "error":
            return StageFailure(*msg[1:]).line()
        stage = ANSWERS.get(kind)
        if stage is None:
            # ``init``, ``exec_error``: only once the contact is made
            if self.contact:
                return _unexpected(repr(msg))
            if kind == "init":
                self.c.has_init = True
            else:
                self.exec_error = msg
            return None
        pos = _POSITION[stage.name]
        if pos <= self.done or any(_POSITION[s] < pos for s in self.contact):
            return _unexpected(repr(msg))  # out of the table's order
        self.done = pos
        self.contact.discard(stage.name)
        if kind == "pid":
            # The hand-over: the child forked pid 1 of a new pid namespace and exits; as
            # subreaper the supervisor adopts pid 1 and waits for it instead.  Once the child
            # is reaped, pid 1's parent is this process, and the release after the stage lets
            # pid 1 bind its life to ours.
            _reap(self.waited[0])
            self.waited = [msg[1]]
            self.ctx.pid = self.sup.target = msg[1]
        try:
            call_stage(self.ctx, self.dispatch, stage.name)
        except StageFailure as f:
            return f.line()  # the go pipe closes: the child aborts at its next barrier
        if self.go_open and not release(self.c.w_go, stage.release):
            # the child already failed: its error record is on the status pipe
            os.close(self.c.w_go)
            self.go_open = False
        return None


def _unexpected(what: str) -> str:
    return f"unexpected record from the sandbox setup process: {what}"


class _Waiter:
    """Waits for the workload and reflects its stops.

    Without a minimal init the workload is the supervisor's child and ``waitpid(WUNTRACED)``
    shows its stops.  With one, pid 1 sends ``("stop", signal)`` and finally ``("exit", raw
    status)`` records up the final pipe.  A stopped workload stops secrun too, with the same
    kind of signal (as ``sudo`` does), so the caller's shell sees a stopped job it can ``fg``
    or ``bg``; when secrun is continued, it continues the workload."""

    def __init__(self, pid: int, c: _Child) -> None:
        self.pid, self.c = pid, c
        self.records = Reader(c.r_final, FINAL)
        self.status: int | None = None

    def fds(self) -> list[int]:
        """What to watch besides SIGCHLD."""
        return [self.c.r_final] if self.c.has_init else []

    def wait(self) -> int:
        """Block until the workload ended; its raw wait status."""
        status = self.status
        while status is None:
            status = self.step(block=True)
        return status

    def step(self, block: bool = False) -> int | None:
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
        try:
            msg = self.records.next()
        except ProtocolError:
            # not pid 1's: something else in the sandbox reached the pipe; end it all
            _kill_and_reap(self.pid)
            sys.stderr.write("secrun: error: the sandbox's pid 1 sent a malformed record; "
                             "the sandbox was killed\n")
            self.status = 125 << 8  # reported as exit status 125
            return self.status
        if msg is not None and msg[0] == "stop":
            self.stopped(msg[1])
            return None
        st = _reap(self.pid)  # pid 1 exits right after its last record
        # without a record pid 1 was killed: its own status tells how
        self.status = st if msg is None else msg[1]
        return self.status

    def stopped(self, sig: int) -> None:
        if not _job_control():
            # Nobody could continue a stopped secrun (no shell has it as a job in the
            # foreground of a terminal): the workload stays stopped until something continues
            # it, and secrun goes on waiting, its signals and cleanup intact.
            return
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


def _job_control() -> bool:
    """Whether secrun is the foreground process group of the terminal on one of its standard
    streams: a shell's job, which the user can continue with fg or bg."""
    for fd in (0, 1, 2):
        try:
            if os.tcgetpgrp(fd) == os.getpgrp():
                return True
        except OSError:
            continue
    return False


def _readable(fd: int) -> bool:
    import select

    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


_REAPED: dict[int, int] = {}


def _reap(pid: int, flags: int = 0) -> int | None:
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


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _fail(line: str) -> int:
    sys.stderr.write(f"secrun: error: {line}\n")
    return EXIT_FAILED


def _exit_code(status: int, forwarded: list[int]) -> int:
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


def _cleanup(ctx: RunContext, dispatch: Dispatch) -> None:
    stage = ANSWERS[ENDED].name
    rows = dispatch.get(stage)
    if not rows:
        return
    for modname, fname, plugin, _required in rows:
        try:
            call_stage(ctx, {stage: [(modname, fname, plugin, True)]}, stage)
        except StageFailure as f:
            sys.stderr.write(f"secrun: warning: {f.line()}\n")


# --- child ---------------------------------------------------------------------------------------

def _child(ctx: RunContext, dispatch: Dispatch, c: _Child) -> None:
    """Runs in the forked child; never returns."""
    try:
        # Die with the supervisor from the first instruction on; a supervisor that died before
        # this line shows as a closed life pipe.
        prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, what="prctl(PR_SET_PDEATHSIG)")
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
        for s in FORWARDED:
            _signal.signal(s, _abort_setup if init else _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
        os.close(c.r_status)
        os.close(c.w_go)
        os.close(c.r_final)
        w_status = c.w_status
        ctx.in_child = True
        ctx._warn_sink = lambda text: send(w_status, STATUS, "warn", text)
        walk = _Walk(ctx, dispatch, c, init)
        walk.run()
        if walk.init:
            _init(ctx, c)
        _exec(ctx, c, c.sup_pid)
    except StageFailure as f:
        _try_send(c.w_status, STATUS, "error", f.stage, f.plugin, f.text)
    except BaseException as exc:
        _try_send(c.w_status, STATUS, "error", ctx.stage or "core", ctx.plugin or "core",
                  describe_oserror(exc))
    os._exit(EXIT_FAILED)


class _Walk:
    """The setup process's side of the set-up: runs the child stages in table order and
    crosses the barriers each row names before and after it (see :mod:`secrun.stages`).
    ``init``: whether this process is pid 1 of the sandbox's pid namespace (made before fork,
    or by the hand-over), which stays as its minimal init."""

    __slots__ = ("ctx", "dispatch", "c", "init", "announced", "owed")

    def __init__(self, ctx: RunContext, dispatch: Dispatch, c: _Child, init: bool) -> None:
        self.ctx, self.dispatch, self.c, self.init = ctx, dispatch, c, init
        self.announced: set[str] = set()  # parent stages told to run
        self.owed: list[str] = []  # ... whose release this process has not read yet

    def run(self) -> None:
        ctx, dispatch = self.ctx, self.dispatch
        for stage in CHILD_ROWS:
            for kind, arg in stage.before:
                self.cross(kind, arg)
            call_stage(ctx, dispatch, stage.name)
            for kind, arg in stage.after:
                self.cross(kind, arg)
        # a hand-over is complete only with its release (pid 1's parent is the supervisor)
        for name in tuple(self.owed):
            self.wait(name)

    def cross(self, kind: str, arg: str) -> None:
        c = self.c
        if kind == CLOSE_FDS:
            # Nothing but 0-2, our own pipes and the workload's terminal may reach the workload.
            _close_fds(keep=(c.w_status, c.w_final, c.r_life, c.r_go))
        elif kind == SYNC:
            self.announce(arg)
            self.wait(ANSWERS[arg].name)
        elif kind == ANNOUNCE:
            name = ANSWERS[arg].name
            if name in self.dispatch and name not in self.announced:
                self.announce(arg)
        elif kind == WAIT:
            if arg in self.dispatch and arg in self.owed:
                self.wait(arg)
        elif kind == HANDOVER:
            if self.ctx.fork_after_namespaces:
                # A new pid/time namespace applies to the next child: continue there, as pid 1.
                # The supervisor learns its pid from the message and adopts it.
                pid = os.fork()
                if pid:
                    send(c.w_status, STATUS, arg, pid)
                    os._exit(0)
                self.init = True
                _guard_pid1()
                self.told(ANSWERS[arg].name)
        else:
            raise ValueError(f"unknown barrier {kind!r} in secrun.stages")

    def announce(self, message: str) -> None:
        send(self.c.w_status, STATUS, message)
        self.told(ANSWERS[message].name)

    def told(self, name: str) -> None:
        self.announced.add(name)
        self.owed.append(name)

    def wait(self, name: str) -> None:
        if not released(self.c.r_go, BY_NAME[name].release):
            os._exit(EXIT_FAILED)  # the supervisor stopped the launch (or died)
        self.owed.remove(name)


def _supervisor_gone(c: _Child) -> bool:
    """Whether the supervisor has exited: the life pipe's only write end is closed."""
    os.set_blocking(c.r_life, False)
    try:
        return os.read(c.r_life, 1) == b""
    except BlockingIOError:
        return False


def _try_send(fd: int, kinds: Kinds, *record: str | int) -> None:
    try:
        send(fd, kinds, *record)
    except (OSError, ProtocolError):
        pass


def _close_fds(keep: tuple[int, ...]) -> None:
    lo = 3
    for fd in sorted(keep):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


# rt_sigaction(2), for the signals libc keeps for itself (32 and 33: its sigaction() refuses
# them), which a caller may still have left ignored
_NR_RT_SIGACTION = NR.get("rt_sigaction")


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
        old = buffer(32)  # struct sigaction as the kernel has it
        for sig in range(32, 34):
            if sig not in valid and libc.syscall(_NR_RT_SIGACTION, sig, None, old, 8) == 0 \
                    and old.raw[:8] == (1).to_bytes(8, "little"):  # SIG_IGN
                libc.syscall(_NR_RT_SIGACTION, sig, buffer(32), None, 8)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())


def _exec(ctx: RunContext, c: _Child, parent: int | None) -> None:
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
    prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, what="prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent or _supervisor_gone(c):
        os._exit(EXIT_FAILED)
    ctx.log(f"exec {prog}")
    err = 2  # ENOENT
    for candidate in _candidates(ctx):
        try:
            os.execve(candidate, ctx.argv, ctx.env)
        except OSError as e:
            err = _exec_errno(err, e.errno or 0)
    _try_send(w_status, STATUS, "exec_error", err, prog)
    os._exit(EXIT_NOT_FOUND if err in (2, 20) else EXIT_NOT_EXECUTABLE)


def _candidates(ctx: RunContext) -> list[str]:
    """The paths to try for the workload, as execvp searches the sandbox's PATH."""
    prog = ctx.argv[0]
    if "/" in prog:
        return [prog]
    path = ctx.env.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    return [os.path.join(d or ".", prog) for d in path.split(":")]


def _exec_errno(err: int, new: int) -> int:
    """Like execvp: the first "found but cannot run" error wins over "not found here"."""
    return new if err in (2, 20) and new else err


# posix_spawn's attributes (glibc's spawn.h): the workload's own session, an empty signal mask
# and every signal at its default action.  The default set is written as raw bits: glibc's
# sigaddset refuses its two internal signals (32 and 33), which posix_spawn otherwise leaves
# ignored in the new process, and posix_spawnattr_setsigdefault copies the set as given.
_SPAWN_FLAGS = 0x04 | 0x08 | 0x80  # POSIX_SPAWN_SETSIGDEF | _SETSIGMASK | _SETSID
_ALL_SIGNALS = ((1 << 64) - 1 & ~(1 << 8 | 1 << 18)).to_bytes(8, sys.byteorder) + bytes(120)
_NO_SIGNALS = bytes(128)  # (a sigset_t is 1024 bits)


def _spawn(ctx: RunContext, c: _Child) -> int:
    """In pid 1 when the workload has no terminal to take: start it with ``posix_spawn``
    (glibc's clone(CLONE_VM | CLONE_VFORK) and exec), which copies none of secrun's memory,
    where a fork copies the interpreter's page tables and its child pays copy-on-write faults
    and an address-space teardown before exec (~3 ms here).  The new process starts as
    :func:`_exec` starts it: its own session, default signal dispositions, an empty signal
    mask, the sandbox's PATH searched like execvp.  It has no death signal of its own: its
    parent is pid 1 of its pid namespace, whose death (bound to the supervisor's) makes the
    kernel kill it.  Returns its pid; on an exec error, reports it and ends pid 1 as the
    workload would have ended.  EAGAIN and ENOMEM (no process could be made: a process limit,
    memory) are pid 1's failure, as a failed fork is, not the workload's."""
    prog = ctx.argv[0]
    argv = [os.fsencode(a) for a in ctx.argv]
    envp = [os.fsencode(f"{k}={v}") for k, v in ctx.env.items()]
    if any(b"\0" in a for a in argv + envp):
        raise ValueError("embedded null byte in the workload's arguments or environment")
    c_argv = (c_char_p * (len(argv) + 1))(*argv, None)
    c_envp = (c_char_p * (len(envp) + 1))(*envp, None)
    attr = buffer(1024)  # a posix_spawnattr_t (336 bytes in glibc), zeroed by its init
    for ret in (libc.posix_spawnattr_init(attr),
                libc.posix_spawnattr_setflags(attr, _SPAWN_FLAGS),
                libc.posix_spawnattr_setsigmask(attr, _NO_SIGNALS),
                libc.posix_spawnattr_setsigdefault(attr, _ALL_SIGNALS)):
        if ret:
            raise error("posix_spawnattr", ret)
    ctx.log(f"exec {prog}")
    err, pid = 2, c_int(0)  # ENOENT
    for candidate in _candidates(ctx):
        try:
            os.stat(candidate)  # (a PATH entry without it costs no clone)
        except OSError as e:
            err = _exec_errno(err, e.errno or 0)
            continue
        ret = libc.posix_spawn(byref(pid), os.fsencode(candidate), None, attr, c_argv, c_envp)
        if ret == 0:
            return pid.value
        if ret in (errno.EAGAIN, errno.ENOMEM):
            raise error(f"posix_spawn({candidate})", ret)
        err = _exec_errno(err, ret)
    code = EXIT_NOT_FOUND if err in (2, 20) else EXIT_NOT_EXECUTABLE
    _try_send(c.w_status, STATUS, "exec_error", err, prog)
    _try_send(c.w_final, FINAL, "exit", code << 8)
    os._exit(code)


def _abort_setup(sig: int, frame: FrameType | None) -> None:
    os._exit(128 + sig)


def _guard_pid1() -> None:
    """pid 1 of a new pid namespace: the kernel drops a signal for which pid 1 has no
    handler, so until the workload runs a forwarded signal aborts the setup (as it kills the
    child when there is no pid namespace)."""
    for s in FORWARDED:
        _signal.signal(s, _abort_setup)


def _init(ctx: RunContext, c: _Child) -> None:
    """pid 1 of the sandbox's pid namespace: fork the workload, forward signals to it, reap
    every orphan, report the workload's stops and finally its raw status up the final pipe,
    and exit with it.  Its parent is the supervisor now (directly, or by adoption after the
    hand-over), so its death signal is bound to the supervisor: when secrun dies, pid 1 dies,
    and the kernel kills every process of the namespace.  Never returns."""
    ctx.stage, ctx.plugin = "init", "core"
    w_status, w_final = c.w_status, c.w_final
    prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, what="prctl(PR_SET_PDEATHSIG)")
    if _supervisor_gone(c):
        os._exit(EXIT_FAILED)
    send(w_status, STATUS, "init")
    # Not dumpable: the workload (same uid, and pid 1 is its parent) may not ptrace pid 1, read
    # its memory or open its descriptors through /proc/1/fd; exec makes the workload dumpable.
    prctl(PR_SET_DUMPABLE, 0, what="prctl(PR_SET_DUMPABLE)")
    # Signals that arrive around the fork stay pending (blocked) instead of hitting
    # _abort_setup: the workload gets them with their default action once it unblocks them,
    # the init forwards them once its handlers are in place.
    relayed = FORWARDED + (_signal.SIGCONT,)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, relayed)
    if c.term is None:
        pid = _spawn(ctx, c)
    else:  # the workload's terminal is made its controlling one after the fork, in _exec
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            for s in FORWARDED:
                _signal.signal(s, _signal.SIG_DFL)
            os.close(w_final)
            _exec(ctx, c, me)
    os.close(w_status)
    _relay_signals(pid, relayed)
    status = _wait_workload(pid, w_final)
    _try_send(w_final, FINAL, "exit", status)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else EXIT_FAILED)


def _relay_signals(pid: int, relayed: tuple[int, ...]) -> None:
    """In the minimal init: forward ``relayed`` to the workload.  The workload has a session
    and a terminal of its own: what its terminal's keys send reaches it directly, what the
    supervisor forwards (and SIGCONT after a reflected stop) reaches it through here."""

    def forward(sig: int, frame: FrameType | None) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for s in relayed:
        _signal.signal(s, forward)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, relayed)


def _wait_workload(pid: int, w_final: int) -> int:
    """In the minimal init: reap every orphan until the workload ends, reporting its stops up
    the final pipe; its raw wait status (0 if it was never seen)."""
    while True:
        try:
            wpid, st = os.waitpid(-1, os.WUNTRACED)
        except ChildProcessError:
            return 0
        if wpid != pid:
            continue
        if os.WIFSTOPPED(st):
            _try_send(w_final, FINAL, "stop", os.WSTOPSIG(st))
            continue
        return st
