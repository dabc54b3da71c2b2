"""The ``namespaces`` plugin: which kernel namespaces the workload gets.

Section ``[namespaces]``.  Stages, in the order the core calls them:

- ``prepare`` (supervisor, before fork): without a user namespace, the pid and time namespaces
  are made here, so that the child is pid 1 from its first instruction.
- ``user_namespace`` (child): ``unshare(CLONE_NEWUSER)`` first of all, so that every namespace
  created afterwards is owned by it (and privileged operations in them need only the
  capabilities the child holds inside it).
- ``after_fork`` (supervisor): ``/proc/<child>/setgroups`` then ``uid_map`` and ``gid_map``.
  The supervisor writes them, not the child: an unprivileged writer may map only its own
  effective uid/gid, and only from the parent namespace; ``setgroups`` must be ``deny`` before
  an unprivileged ``gid_map`` is accepted.
- ``namespaces`` (child): the other namespaces, one ``unshare`` each in the order of the plan
  (``ORDER`` in :mod:`.plan` says why each sits where it does), the loopback interface of a new
  network namespace brought up, and ``ctx.fork_after_namespaces`` set for pid/time made here,
  which apply only to the next child: the core forks and keeps a minimal init as pid 1
  (``secrun.launch._init``).
- ``hostname`` (child): the cgroup namespace, then ``sethostname``/``setdomainname`` in the new
  UTS namespace.

Rootless: when secrun runs as an ordinary user, ``user = "auto"`` (the default) makes a user
namespace mapping that user (to itself, or to root inside with ``user_map = "root"``), so every
other namespace can be created inside it.  Without one, a namespace that needs CAP_SYS_ADMIN
fails with a message saying so and naming the key to set.

Facts it publishes for the other plugins (``secrun_facts``): ``namespaces.made``,
``namespaces.user_root``, ``namespaces.setgroups_denied``, ``namespaces.net``.

- :mod:`.stages`: the stage hooks and the system calls they make (what a launch imports; only
  ``ctypes`` through :mod:`secrun.kernel`, which the core imports before fork anyway, and the
  built-in ``fcntl``: loopback is brought up with libc's socket and ioctl);
- :mod:`.plan`: the ``[namespaces]`` schema, the facts, ``secrun_compile`` and the plan's shape;
- :mod:`.audit`: ``secrun_audit`` and the categories ``namespaces.<ns>`` (one per namespace).
"""
