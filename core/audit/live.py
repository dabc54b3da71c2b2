"""The live audit: the facts of a running process, and the rows' ``expect`` checked against them.

- ``--live``: the sandbox is launched for real with the probe (:mod:`secrun.audit.probe`, and
  every registered plugin's ``secrun_live_probe`` source, run by it) as the workload; its facts
  seen from inside are merged with those read from outside (:mod:`secrun.audit.outside`, and
  every registered plugin's ``secrun_live_facts``).
- ``--pid PID``: the facts of that process, read from ``/proc/PID`` and by the plugins'
  ``secrun_live_facts``.

Precedence when two sources name the same fact: the core's outside view, then the plugins'
``secrun_live_facts``, then what the probe saw inside; but ``cgroup.*`` from outside (a cgroup
namespace shows the probe its own group as "/").
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from ..context import AuditContext
from ..errors import PluginError, SecrunError, shown
from . import outside, probe
from .rows import AuditError, AuditRow, Check, Mismatch

if TYPE_CHECKING:
    import subprocess

    from ..registry import Plugins

Facts = dict[str, str]
# pid -> (facts, notes): what the plugins observe from outside (secrun_live_facts)
Observe = Callable[[int], tuple[Facts, list[str]]]

# The probe's launcher: the shell reads the signal dispositions the workload started with
# (builtins only, in the same process) and execs the probe with them.
# (PWD: the shell would export it, and the probe counts the environment the workload gets.)
PROBE_SHELL = ('while read -r k v; do case $k in SigIgn:) i=$v;; SigBlk:) b=$v;; esac; '
               'done </proc/self/status; unset PWD; exec "$0" -I -S -c "$1" "$2" "$3" "$i" "$b"')


class Launch(NamedTuple):
    """What ``secrun`` is asked to launch: the same arguments as the audited plan."""

    profiles: list[str]
    sets: list[str]
    plugins: list[str]


class Observed(NamedTuple):
    facts: Facts
    notes: list[str]
    pid: int | None


# --- the plugins' part -------------------------------------------------------------------------

class LiveContext(AuditContext):
    """The context of ``secrun_live_facts``: a warning becomes a note of the report."""

    __slots__ = ()

    def warn(self, text: str) -> None:
        self.warnings.append(f"{self.plugin}: {text}")


def live_context(pid: int, plan: dict | None = None, argv: list[str] | None = None
                 ) -> LiveContext:
    """A context for ``secrun_live_facts`` about process ``pid`` (with the plan's config and
    facts when a plan was audited)."""
    if plan is None:
        return LiveContext({}, {}, {}, {}, {}, list(argv or ()), pid=pid)
    return LiveContext(plan["config"], plan["origins"], plan["plan"], plan["facts"],
                       plan["reads"], list(argv or ()), pid=pid)


def plugin_probes(plugins: Plugins) -> list[list[str]]:
    """[[plugin, source]]: every registered plugin's ``secrun_live_probe``."""
    out = []
    for plugin, fn in plugins.order("secrun_live_probe", list(plugins.info)):
        try:
            source = fn()
        except Exception as e:  # name the plugin
            raise PluginError(f"plugin {plugin!r}: secrun_live_probe failed: "
                              f"{type(e).__name__}: {e}") from None
        if source is None or source == "":
            continue
        if not isinstance(source, str):
            raise PluginError(f"plugin {plugin!r}: secrun_live_probe must return Python "
                              f"source (a str), not {shown(source)}")
        out.append([plugin, source])
    return out


def _strings(plugin: str, got: object) -> Facts:
    if got is None:
        return {}
    if not isinstance(got, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in got.items()):
        raise PluginError(f"plugin {plugin!r}: secrun_live_facts must return a dict of "
                          f"strings (fact name: value), not {shown(got)}")
    return dict(got)


def plugin_facts(plugins: Plugins, ctx: LiveContext) -> tuple[Facts, list[str]]:
    """(facts, notes): every registered plugin's ``secrun_live_facts`` about ``ctx.pid``."""
    facts: Facts = {}
    for plugin, fn in plugins.order("secrun_live_facts", list(plugins.info)):
        ctx.plugin = plugin
        try:
            got = fn(ctx=ctx)
        except SecrunError:
            raise
        except Exception as e:  # name the plugin
            raise PluginError(f"plugin {plugin!r}: secrun_live_facts failed: "
                              f"{type(e).__name__}: {e}") from None
        facts.update(_strings(plugin, got))
    return facts, list(ctx.warnings)


def observer(plugins: Plugins, plan: dict | None = None,
             argv: list[str] | None = None) -> Observe:
    """The plugins' outside view of a process, as :func:`run_live` and :func:`pid_facts`
    take it."""
    def observe(pid: int) -> tuple[Facts, list[str]]:
        return plugin_facts(plugins, live_context(pid, plan, argv))
    return observe


# --- launching the probe -----------------------------------------------------------------------

def probe_python(explicit: str | None = None) -> str:
    """An interpreter for the probe that the sandbox's filesystem view is likely to contain."""
    if explicit:
        return explicit
    real = os.path.realpath(sys.executable)
    if real.startswith("/usr/"):
        return real
    for p in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(p, os.X_OK):
            return p
    return real


def _parents() -> dict[int, int]:
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return parent


def descendants(root: int) -> set[int]:
    """Every process below ``root``."""
    parent = _parents()
    out: set[int] = set()
    todo = [root]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out.add(c)
                todo.append(c)
    return out


def find_probe(secrun_pid: int, nonce: str) -> int | None:
    """The probe's pid as the auditor sees it: the descendant whose argv carries the nonce."""
    for pid in sorted(descendants(secrun_pid)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 5 and argv[1:4] == [b"-I", b"-S", b"-c"] and nonce.encode() in argv:
            return pid
    return None


def cached_plan_state(plan: dict, launch: Launch) -> str:
    """What a launch with these arguments, from this directory, would take from the plan
    cache: ``"fresh"`` (the plan just compiled), ``"stale"`` (another policy) or ``"none"``
    (no valid entry: it compiles afresh)."""
    from .. import plan as _plan

    try:
        cached = _plan.load_cached(_plan.cache_key(launch.profiles, launch.sets,
                                                   launch.plugins))
    except Exception:  # an unreadable cache is a miss for a launch too
        return "none"
    if cached is None:
        return "none"
    same = all(cached.get(k) == plan.get(k) for k in ("config", "plan", "dispatch", "active"))
    return "fresh" if same else "stale"


def _command(launch: Launch, python: str, ref: dict, nonce: str) -> list[str]:
    with open(probe.__file__) as f:
        source = f.read()
    # --no-cache: verify the plan just compiled for the rows, never an older cached one.
    # -t: the probe runs on a pty of its own, the path an interactive launch takes
    cmd = [sys.executable, "-I", "-m", "secrun", "--no-cache", "-t"]
    for p in launch.profiles:
        cmd += ["--profile", p]
    for s in launch.sets:
        cmd += ["--set", s]
    for p in launch.plugins:
        cmd += ["--plugin", p]
    return cmd + ["--", "/bin/sh", "-c", PROBE_SHELL, python, source, json.dumps(ref), nonce]


def _first_line(proc: subprocess.Popen[bytes], out: IO[bytes], timeout: float) -> Facts:
    """The probe's facts, as it printed them; an :class:`AuditError` if it did not."""
    import select

    line = b""
    ready, _, _ = select.select([out], [], [], timeout)
    if ready:
        line = out.readline()
    if not line.strip():
        proc.kill()
        _, raw = proc.communicate(timeout=10)
        text = raw.decode(errors="replace").strip().splitlines()
        raise AuditError("the live probe did not report (sandbox exit status "
                         f"{proc.returncode}): " + (" | ".join(text[-3:]) or "no message"))
    got = json.loads(line)
    if not isinstance(got, dict):
        raise AuditError(f"the live probe reported {shown(got)}, not facts")
    return {str(k): str(v) for k, v in got.items()}


def _outside_view(pid: int, ref: dict) -> tuple[Facts, list[str]]:
    """The core's view of the probe from outside: its cgroups, session and terminal."""
    notes: list[str] = []
    facts: Facts = {}
    try:
        facts, more = outside.outside(pid, ref)
        notes += more
    except OSError as e:
        notes.append(f"outside view of the probe failed: {e}")
    facts["probe.host_pid"] = str(pid)
    # session, process group and terminal, against secrun's caller (this process)
    facts.update(probe.session_facts(f"/proc/{pid}"))
    return facts, notes


def merge_views(inside: Facts, pid: int | None, ref: dict,
                observe: Observe) -> tuple[Facts, list[str]]:
    """(facts, notes): the probe's view merged with the outside ones (see the module's
    precedence)."""
    notes: list[str] = []
    seen: Facts = {}
    facts: Facts = {}
    if pid is None:
        notes.append("the probe's process was not found from outside; cgroup limits "
                     "are as seen inside")
    else:
        seen, more = _outside_view(pid, ref)
        theirs, also = observe(pid)
        notes += more + also
        facts = {**seen, **theirs}
    facts.update(inside)
    # A cgroup namespace shows the probe its group as "/": the host's path is the useful one.
    facts.update({k: v for k, v in seen.items() if k.startswith("cgroup.")})
    notes += [f"{k}: inside the probe saw {inside[k]!r}, outside {v!r}"
              for k, v in seen.items()
              if k.startswith(("status.", "ns.", "id.", "fs.")) and inside.get(k, v) != v]
    if "probe.error" in inside:
        notes.append(f"probe error: {inside['probe.error']}")
    return facts, notes


def _stop(proc: subprocess.Popen[bytes], stdin: IO[bytes], stderr: IO[bytes]) -> list[str]:
    """Let the probe go (stdin closed) and wait for the sandbox; a note if it failed."""
    import subprocess

    try:
        stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.returncode in (0, None) or stderr.closed:
        return []
    err = stderr.read().decode(errors="replace").strip()
    return [f"the sandboxed probe exited with status {proc.returncode}"
            + (f": {err.splitlines()[-1]}" if err else "")]


def run_live(launch: Launch, python: str, probes: list[list[str]], observe: Observe,
             timeout: float = 60.0, paths: list[str] | tuple[str, ...] = ()) -> Observed:
    """Launch the sandbox with the probe (and the plugins' probe sources ``probes``) and
    gather its facts.  ``paths``: those whose visible mount the rows ask about (``mount:PATH``
    facts)."""
    import secrets
    import subprocess

    ref: dict[str, Any] = outside.reference("self")
    ref["linger"] = timeout
    ref["paths"] = sorted(set(paths))
    ref["probes"] = probes
    nonce = "secrun-audit-probe-" + secrets.token_hex(8)
    proc = subprocess.Popen(_command(launch, python, ref, nonce), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    try:
        inside = _first_line(proc, proc.stdout, timeout)
        pid = find_probe(proc.pid, nonce)
        facts, notes = merge_views(inside, pid, ref, observe)
    finally:
        ended = _stop(proc, proc.stdin, proc.stderr)
    return Observed(facts, notes + ended, pid)


# --- any process -------------------------------------------------------------------------------

def pid_facts(pid: int, reference: str, observe: Observe) -> tuple[Observed, str]:
    """(the facts of process ``pid``, the reference they were compared with)."""
    notes: list[str] = []
    ref_pid = reference
    ref = outside.reference(ref_pid)
    if not all(ref["ns"].values()):
        notes.append(f"the namespaces of process {reference} are not readable; "
                     "compared with the auditor's own instead")
        ref, ref_pid = outside.reference("self"), "self"
    try:
        facts, more = outside.outside(pid, ref)
    except ProcessLookupError:
        raise AuditError(f"no process {pid}") from None
    except OSError as e:
        raise AuditError(f"cannot read process {pid}: {e}") from None
    theirs, also = observe(pid)
    facts.update(theirs)
    where = f"process {ref_pid}" if ref_pid != "self" else "secrun (the auditor)"
    return Observed(facts, notes + more + also, pid), where


# --- checking the rows' expectations ------------------------------------------------------------

def same(fact: str, expected: str, observed: str | None) -> bool:
    """Whether an observed fact is what a row expects.  ``A|B`` expects either; a ``mount:``
    fact's expectation may use ``*`` for any one word (e.g. "/proc/sys * ro")."""
    if observed is None:
        return False
    if "|" in expected:
        return any(same(fact, alt, observed) for alt in expected.split("|"))
    e, o = expected.strip(), str(observed).strip()
    if fact.startswith("mount:"):
        from fnmatch import fnmatchcase

        return fnmatchcase(o, e)
    if fact.startswith("status.Cap"):
        try:
            return int(e, 16) == int(o, 16)
        except ValueError:
            return False
    if fact in ("id.groups", "net.interfaces"):
        return set(e.split()) == set(o.split())
    return e == o


def check_expects(rows: list[AuditRow], facts: Facts, pid: int | None = None
                  ) -> list[Mismatch]:
    """Fill each row's ``checks`` and ``verified``; return the mismatches of enforced rows.
    ``pid``: the process whose cgroup files answer ``cgroup.*`` facts not gathered."""
    dirs = outside.cgroup_dirs(pid) if pid else {}
    mismatches: list[Mismatch] = []
    for r in rows:
        checks: list[Check] = []
        for fact, want in sorted(r["expect"].items()):
            seen = facts.get(fact)
            if seen is None and fact.startswith("cgroup.") and dirs:
                seen = outside.cgroup_file(dirs, fact[len("cgroup."):])
            ok = same(fact, want, seen)
            checks.append({"fact": fact, "expected": want, "observed": seen, "ok": ok})
            if not ok and r["status"] == "enforced":
                mismatches.append({"plugin": r["plugin"], "control": r["control"],
                                   "fact": fact, "expected": want, "observed": seen})
        r["checks"] = checks
        r["verified"] = None if not checks else all(c["ok"] for c in checks)
    return mismatches
