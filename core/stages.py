"""The setup stages, in order.  This tuple is the only place that says what runs when.

Each stage is one pluggy hook, ``secrun_<name>``, declared in :mod:`secrun.hookspecs`.  The core
(:mod:`secrun.launch`) walks this tuple; it owns fork, the sync pipes, exec and supervision, and
the plugins own every control.  The order is the one the reference runtimes converge on
(nsjail's ``containProc``, youki's init process, runc's ``standard_init_linux``): prepare early in
the parent so mistakes surface before anything irreversible, apply late in the child, seccomp last.

``side`` says which process runs the stage: ``parent`` is the secrun supervisor, ``child`` is the
process that will become the workload.
"""

PARENT = "parent"
CHILD = "child"

# (name, side, why it sits exactly here)
STAGES = (
    ("prepare", PARENT,
     "Before fork, in secrun itself: create cgroups, load LSM profiles, open files.  Anything "
     "that can fail fails here, while nothing irreversible has happened and no child exists."),
    ("user_namespace", CHILD,
     "First thing after fork: the user namespace must exist before the parent writes its uid/gid "
     "maps and before any other namespace is created, so that those are owned by it."),
    ("after_fork", PARENT,
     "The parent acts on the waiting child: uid/gid maps, which every later stage needs.  The "
     "child blocks on the sync pipe until this stage is done."),
    ("namespaces", CHILD,
     "The remaining namespaces (mount, pid, net, uts, ipc, cgroup, time), now owned by the user "
     "namespace and rooted at the child's cgroup.  A new pid or time namespace applies to the next "
     "child only, so the core forks right after this stage when a plugin asks it to."),
    ("mounts", CHILD,
     "The filesystem view: needs the mount namespace, and /proc needs the new pid namespace, so "
     "it follows them; it precedes everything that opens paths inside the sandbox."),
    ("attach", PARENT,
     "The parent attaches the process that will exec (pid 1 of a new pid namespace, known only "
     "after the fork above) to per-run resources such as cgroups.  It runs while the child "
     "builds its filesystem view, because a cgroup migration can wait a kernel RCU grace period "
     "(5-15 ms); the child waits for it before the next stage, so it creates its cgroup "
     "namespace inside its group and no workload code ever runs outside it."),
    ("hostname", CHILD,
     "Needs the UTS namespace; done while still privileged.  Also where the cgroup namespace is "
     "created: the first child stage after `attach`."),
    ("rlimits", CHILD,
     "Process attributes (rlimits, umask, working directory, environment): need the final "
     "filesystem view and must be set while still privileged (raising a hard limit needs "
     "CAP_SYS_RESOURCE)."),
    ("lsm", CHILD,
     "AppArmor/SELinux exec labels (aa_change_onexec, setexeccon): they take effect at exec, and "
     "writing /proc/self/attr needs the privileges that the next stages drop."),
    ("identity", CHILD,
     "setgroups/setresgid/setresuid: after everything that needs root, before capabilities so "
     "the capability sets computed for the final uid are the ones that survive exec."),
    ("capabilities", CHILD,
     "Bounding, permitted, effective, inheritable and ambient sets, for the final identity."),
    ("no_new_privs", CHILD,
     "PR_SET_NO_NEW_PRIVS: after identity and capabilities (so setuid transitions are done), "
     "before Landlock and seccomp, which need it when unprivileged."),
    ("landlock", CHILD,
     "Landlock rulesets: need no_new_privs (or CAP_SYS_ADMIN); after all path setup."),
    ("seccomp", CHILD,
     "Last before exec: a filter loaded earlier would also filter secrun's own setup syscalls."),
    ("started", PARENT,
     "In the supervisor, once the workload has been exec'd (the child's close-on-exec status "
     "pipe closed): report, record pids."),
    ("cleanup", PARENT,
     "In the supervisor after the workload exited (or secrun was told to stop): kill leftovers, "
     "remove cgroups, report OOM kills.  Runs on every exit path after prepare succeeded."),
)

STAGE_NAMES = tuple(s[0] for s in STAGES)
CHILD_STAGES = tuple(s[0] for s in STAGES if s[1] == CHILD)
PARENT_STAGES = tuple(s[0] for s in STAGES if s[1] == PARENT)


def hook_name(stage: str) -> str:
    """The pluggy hook name of a stage."""
    return "secrun_" + stage
