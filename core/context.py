"""The object every hook receives.  Kept import-free: it is built on every launch."""

import os
import sys
from time import perf_counter

from .errors import SecrunError

# When secrun started (close enough: this module is imported first thing on every launch);
# -v prefixes each line with the milliseconds since then.
T0 = perf_counter()


def working_directory() -> str:
    """os.getcwd(), or the one-line error a removed (or unreachable) working directory gets:
    every relative path, the plan cache's key and the sandbox's view depend on it."""
    try:
        return os.getcwd()
    except OSError as e:
        why = os.strerror(e.errno) if e.errno else str(e)
        raise SecrunError(f"the working directory is gone or unreachable (getcwd: {why}): "
                          f"change to an existing directory") from None


class Context:
    """What a hook may read and write.

    - ``config``: {section: {key: value}}, the validated, merged profile (read-only by contract).
    - ``origins``: {section: {key: "file:[section].key"}}, where each value came from.
    - ``plan``: {section: data}, what ``secrun_compile`` stored (read-only after planning).
    - ``state``: {section: anything}, per-run scratch space, lives in the supervisor and (forked
      copy) in the child.
    - ``argv``: the workload's argv; ``env``: the environment it will get (dict, mutable in the
      ``rlimits`` stage); ``cwd``: the directory secrun was started from.
    - ``pid``: in the supervisor, the child's pid (after fork); ``status``: raw wait status.
    - ``fork_after_namespaces``: set by a plugin that made a pid/time namespace.
    """

    __slots__ = ("config", "origins", "plan", "state", "argv", "env", "cwd", "pid", "status",
                 "verbose", "fork_after_namespaces", "stage", "plugin", "warnings", "reports",
                 "deps", "uid", "gid", "_warn_sink", "in_child")

    def __init__(self, config, origins, plan, argv=(), env=None, verbose=0):
        self.config = config
        self.origins = origins
        self.plan = plan
        self.state = {}
        self.argv = list(argv)
        self.env = dict(os.environ) if env is None else env
        self.cwd = working_directory()
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.pid = None
        self.status = None
        self.verbose = verbose
        self.fork_after_namespaces = False
        self.stage = None
        self.plugin = None
        self.warnings = []
        self.reports = []
        self.deps = []
        self.in_child = False
        self._warn_sink = None

    def section(self, name):
        """The section's config, or None when the profile does not have it."""
        return self.config.get(name)

    def required(self, section):
        return bool(self.config.get(section, {}).get("required", True))

    def warn(self, text):
        """Report a best-effort control that was not applied (stderr, and the audit)."""
        self.warnings.append(text)
        if self._warn_sink is not None:
            self._warn_sink(text)
        else:
            sys.stderr.write(f"secrun: warning: {text}\n")

    def report(self, text):
        """Say something about the run to the user (e.g. why the workload was killed)."""
        self.reports.append(text)
        sys.stderr.write(f"secrun: {text}\n")

    def log(self, text):
        """Verbose (-v) diagnostics, with the time since secrun started."""
        if self.verbose:
            sys.stderr.write(f"secrun: {(perf_counter() - T0) * 1000:7.2f} ms  {text}\n")

    def depends_on(self, path):
        """At planning time: the compiled plan depends on this file; a change invalidates it."""
        self.deps.append(os.path.abspath(path))
