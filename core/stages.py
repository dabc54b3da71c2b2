"""The setup stages, in order.  This tuple is the only place that says what runs when.

Each stage is one pluggy hook, ``secrun_<name>``, declared in :mod:`secrun.hookspecs`.  The core
(:mod:`secrun.launch`) walks this tuple; it owns fork, the sync pipes, exec and supervision, and
the plugins own every control.  The order is the one the reference runtimes converge on
(nsjail's ``containProc``, youki's init process, runc's ``standard_init_linux``): prepare early in
the parent so mistakes surface before anything irreversible, apply late in the child, seccomp last.

``side`` says which process runs the stage: ``parent`` is the secrun supervisor, ``child`` is the
process that will become the workload.

The table also says where the two processes meet (the messages are those of
:mod:`secrun.protocol`).  A child stage lists the barriers it crosses ``before`` and ``after``
running, each ``(kind, argument)``:

- ``(SYNC, message)``: send ``message`` on the status pipe, which makes the supervisor run the
  parent stage whose ``on`` names it, and block until the supervisor releases the child past
  that stage.  Always made, hooks or none: it is the first contact, and a status pipe that
  closes before it was answered is a setup process that died, never an exec'd workload;
- ``(ANNOUNCE, message)``: send ``message`` (the supervisor runs the stage that answers it
  and then releases the child) without waiting;
- ``(WAIT, parent stage)``: block until the supervisor releases the child past that stage;
- ``(HANDOVER, message)``: when a plugin set ``ctx.fork_after_namespaces`` (a new pid or time
  namespace applies to the next child only), fork; the new process, pid 1 of the namespace,
  goes on, and the old one sends ``(message, pid)`` and exits.  The supervisor (a child
  subreaper) adopts pid 1 and runs the stage that answers ``message``; its release also tells
  pid 1 that its parent is now the supervisor;
- ``(CLOSE_FDS, "")``: close every descriptor but 0-2, the sync pipes and the terminal.

An ``ANNOUNCE`` or a ``WAIT`` for a parent stage with no hook implementation in the plan is
skipped, and an announcement a hand-over made is not repeated; a release still owed after the
last child stage (a hand-over's, when its stage has no hooks) is waited for then, before the
workload starts.  A parent stage lists ``on``, what makes it run: a moment of the launch
(``BEFORE_FORK``, ``EXECED``, ``ENDED``) or the child's messages, which it answers in table
order; and ``release``, the byte on the go pipe that lets the child go on after it.
"""

from __future__ import annotations

PARENT = "parent"
CHILD = "child"

# barriers around a child stage
SYNC = "sync"
ANNOUNCE = "announce"
WAIT = "wait"
HANDOVER = "handover"
CLOSE_FDS = "close_fds"

# moments of the launch a parent stage runs at (besides the child's messages)
BEFORE_FORK = "before_fork"
EXECED = "execed"  # the status pipe closed without an exec error
ENDED = "ended"  # the workload ended, the launch failed, or secrun was told to stop


class Stage:
    """One row of :data:`STAGES` (see the module docstring)."""

    __slots__ = ("name", "side", "why", "before", "after", "on", "release")

    def __init__(self, name: str, side: str, *, why: str,
                 before: tuple[tuple[str, str], ...] = (),
                 after: tuple[tuple[str, str], ...] = (), on: tuple[str, ...] = (),
                 release: bytes = b"") -> None:
        self.name, self.side, self.why = name, side, why
        self.before, self.after, self.on, self.release = before, after, on, release


# Stage(name, side, [barriers or what it runs on,] why=why it sits exactly here)
STAGES = (
    Stage("prepare", PARENT, on=(BEFORE_FORK,), why=(
        "Before fork, in secrun itself: create cgroups, load LSM profiles, open files.  "
        "Anything that can fail fails here, while nothing irreversible has happened and no "
        "child exists.")),
    Stage("user_namespace", CHILD, after=((SYNC, "ready"),), why=(
        "First thing after fork: the user namespace must exist before the parent writes its "
        "uid/gid maps and before any other namespace is created, so that those are owned by it.")),
    Stage("after_fork", PARENT, on=("ready",), release=b"g", why=(
        "The parent acts on the waiting child: uid/gid maps, which every later stage needs.  "
        "The child blocks on the sync pipe until this stage is done.")),
    Stage("namespaces", CHILD, after=((HANDOVER, "pid"), (ANNOUNCE, "attach")), why=(
        "The remaining namespaces (mount, pid, net, uts, ipc, cgroup, time), now owned by the "
        "user namespace and rooted at the child's cgroup.  A new pid or time namespace applies "
        "to the next child only, so the core forks right after this stage when a plugin asks it "
        "to.")),
    Stage("mounts", CHILD, why=(
        "The filesystem view: needs the mount namespace, and /proc needs the new pid namespace, "
        "so it follows them; it precedes everything that opens paths inside the sandbox.")),
    Stage("attach", PARENT, on=("attach", "pid"), release=b"a", why=(
        "The parent attaches the process that will exec (pid 1 of a new pid namespace, known "
        "only after the fork above) to per-run resources such as cgroups.  It runs while the "
        "child builds its filesystem view, because a cgroup migration can wait a kernel RCU "
        "grace period (5-15 ms); the child waits for it before the next stage, so it creates "
        "its cgroup namespace inside its group and no workload code ever runs outside it.")),
    Stage("hostname", CHILD, before=((WAIT, "attach"),), why=(
        "Needs the UTS namespace; done while still privileged.  Also where the cgroup namespace "
        "is created: the first child stage after `attach`.")),
    Stage("rlimits", CHILD, why=(
        "Process attributes (rlimits, umask, working directory, environment): need the final "
        "filesystem view and must be set while still privileged (raising a hard limit needs "
        "CAP_SYS_RESOURCE).")),
    Stage("lsm", CHILD, why=(
        "AppArmor/SELinux exec labels (aa_change_onexec, setexeccon): they take effect at exec, "
        "and writing /proc/self/attr needs the privileges that the next stages drop.")),
    Stage("identity", CHILD, why=(
        "setgroups/setresgid/setresuid: after everything that needs root, before capabilities "
        "so the capability sets computed for the final uid are the ones that survive exec.")),
    Stage("capabilities", CHILD, why=(
        "Bounding, permitted, effective, inheritable and ambient sets, for the final identity.")),
    Stage("no_new_privs", CHILD, why=(
        "PR_SET_NO_NEW_PRIVS: after identity and capabilities (so setuid transitions are done), "
        "before Landlock and seccomp, which need it when unprivileged.")),
    Stage("landlock", CHILD, why=(
        "Landlock rulesets: need no_new_privs (or CAP_SYS_ADMIN); after all path setup.")),
    Stage("seccomp", CHILD, before=((CLOSE_FDS, ""),), why=(
        "Last before exec: a filter loaded earlier would also filter secrun's own setup "
        "syscalls.")),
    Stage("started", PARENT, on=(EXECED,), why=(
        "In the supervisor, once the workload has been exec'd (the child's close-on-exec status "
        "pipe closed): report, record pids.")),
    Stage("cleanup", PARENT, on=(ENDED,), why=(
        "In the supervisor after the workload exited (or secrun was told to stop): kill "
        "leftovers, remove cgroups, report OOM kills.  Runs on every exit path after prepare "
        "succeeded.")),
)

STAGE_NAMES = tuple(s.name for s in STAGES)
CHILD_STAGES = tuple(s.name for s in STAGES if s.side == CHILD)
PARENT_STAGES = tuple(s.name for s in STAGES if s.side == PARENT)
CHILD_ROWS = tuple(s for s in STAGES if s.side == CHILD)
BY_NAME = {s.name: s for s in STAGES}
# a moment of the launch, or a message of the child -> the parent stage that answers it
ANSWERS = {on: s for s in STAGES for on in s.on}


def hook_name(stage: str) -> str:
    """The pluggy hook name of a stage."""
    return "secrun_" + stage
