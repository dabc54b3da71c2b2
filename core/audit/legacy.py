"""LEGACY — delete this module when every built-in plugin declares its audit categories.

The control table as it was before plugins declared their categories with
``secrun_audit_categories``: its entries stay in use for the built-in plugins that declare none
yet (by each entry's ``plugin``; ``mac`` belongs to apparmor and selinux), and the rows of those
plugins are still categorized by guessing from their section, key and control name
(:func:`categorize`).  A plugin on the new contract names its category in every row, and
nothing here applies to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .categories import Category, Judge, Judged

# Capabilities weighted by what they give a process over the rest of the system (the others
# weigh 0.3 each).  Numbers, not names: the judge works from the raw masks.
CAP_WEIGHTS = {
    21: 3.0, 16: 3.0, 17: 3.0,  # sys_admin, sys_module, sys_rawio
    19: 2.0, 2: 2.0, 1: 2.0, 12: 2.0, 39: 2.0,  # sys_ptrace, dac_*, net_admin, bpf
    7: 1.5,  # setuid
    6: 1.0, 8: 1.0, 13: 1.0, 22: 1.0, 38: 1.0, 25: 1.0, 27: 1.0, 31: 1.0, 0: 1.0, 3: 1.0,
    18: 0.5,  # sys_chroot
    24: 1.0, 33: 1.0, 32: 1.0,
}
UNLIMITED = 1 << 62
Facts = dict[str, str]


def _hex(facts: Facts, name: str) -> int:
    try:
        return int(facts.get(name, "0") or "0", 16)
    except ValueError:
        return 0


def j_identity(facts: Facts) -> Judged | None:
    uid, groups = facts.get("id.uid", ""), facts.get("id.groups", "").split()
    if not uid:
        return None
    if uid == "0":
        u, what = (0.3, "root of a new user namespace") if facts.get("ns.user") == "new" \
            else (1.0, "root")
    else:
        u, what = 0.0, f"uid {uid}"
    g = 0.0 if not groups else 1.0 if "0" in groups else 0.5
    what += f", groups {' '.join(groups) or 'none'}"
    return (u * 1.0 + g * 0.2) / 1.2, what


def j_capabilities(facts: Facts) -> Judged | None:
    if not facts.get("status.CapEff"):
        return None
    reach = _hex(facts, "status.CapPrm") | _hex(facts, "status.CapEff") | \
        _hex(facts, "status.CapAmb")
    if facts.get("status.NoNewPrivs") != "1":
        reach |= _hex(facts, "status.CapBnd")  # a setuid-root or file-capability exec gains these
    last = max(_hex(facts, "status.CapBnd").bit_length() - 1, 40)
    total = sum(CAP_WEIGHTS.get(i, 0.3) for i in range(last + 1))
    held = sum(CAP_WEIGHTS.get(i, 0.3) for i in range(last + 1) if reach >> i & 1)
    r = held / total
    n = bin(reach).count("1")
    userns = facts.get("ns.user") == "new"
    if userns:
        r *= 0.5
    return r, f"{n} capabilit{'y' if n == 1 else 'ies'} reachable" + \
        (" (in a user namespace)" if userns and n else "")


def j_nnp(facts: Facts) -> Judged | None:
    return (0.0, "on") if facts.get("status.NoNewPrivs") == "1" else (1.0, "off")


def j_env(facts: Facts) -> Judged | None:
    n = facts.get("env.count", "")
    if not n:
        return None
    return (0.0 if int(n) <= 12 else 1.0), f"{n} variables"


def _limit(facts: Facts, name: str, part: int) -> int | None:
    v = facts.get(f"rlimit.{name}", "")
    if not v:
        return None
    x = v.split(":")[part]
    return UNLIMITED if x == "unlimited" else int(x)


def j_rlimits(facts: Facts) -> Judged | None:
    core, nofile = _limit(facts, "core", 0), _limit(facts, "nofile", 1)
    if core is None:
        return None
    r = 1.0 - (0.5 if core == 0 else 0.0) - (0.5 if nofile is not None and nofile <= 4096
                                               else 0.0)
    return r, f"core {core if core != UNLIMITED else 'unlimited'}, nofile hard " \
        f"{nofile if nofile != UNLIMITED else 'unlimited'}"


def j_seccomp(facts: Facts) -> Judged | None:
    from .probe import SYSCALLS

    mode = facts.get("status.Seccomp", "0")
    probed = [p for p in (facts.get(f"syscall.{n}", "") for n in SYSCALLS) if p]
    if mode == "0":
        return 1.0, "no filter"
    if mode == "1":
        return 0.0, "strict mode"
    nf = facts.get("status.Seccomp_filters", "?")
    if not probed:
        return 0.5, f"{nf} filter(s), rules not observable"
    allowed = probed.count("allowed")
    return allowed / len(probed), f"{nf} filter(s); {len(probed) - allowed}/{len(probed)} " \
        f"sensitive calls blocked"


def j_ns(name: str) -> Judge:
    def judge(facts: Facts) -> Judged | None:
        v = facts.get(f"ns.{name}", "")
        if not v:
            return None
        if name == "net" and v == "new":
            links = [i for i in facts.get("net.interfaces", "").split() if i != "lo"]
            if links:
                return 0.5, f"new, with {' '.join(links)}"
            return 0.0, "new, loopback only"
        return (0.0 if v == "new" else 1.0), v
    return judge


def j_fact(name: str, scale: dict[str, float]) -> Judge:
    def judge(facts: Facts) -> Judged | None:
        v = facts.get(name, "")
        if not v:
            return None
        return scale.get(v, 1.0), v
    return judge


def _cg(facts: Facts, *names: str) -> tuple[str, str] | tuple[None, None]:
    for n in names:
        v = facts.get(f"cgroup.{n}", "")
        if v:
            return n, v
    return None, None


def j_cg_memory(facts: Facts) -> Judged | None:
    n, v = _cg(facts, "memory.max", "memory.limit_in_bytes")
    if v is None:
        return 1.0, "no limit"
    if v == "max" or (v.isdigit() and int(v) >= UNLIMITED):
        return 1.0, f"{n}: unlimited"
    return 0.0, f"{n} = {v}"


def j_cg_pids(facts: Facts) -> Judged | None:
    n, v = _cg(facts, "pids.max")
    if v is None or v == "max":
        return 1.0, "no limit"
    return 0.0, f"{n} = {v}"


def j_cg_cpu(facts: Facts) -> Judged | None:
    n, v = _cg(facts, "cpu.max", "cpu.cfs_quota_us")
    if v is None or v.startswith("max") or v == "-1":
        return 1.0, "no limit"
    return 0.0, f"{n} = {v}"


def _selinux_confined(se: str) -> bool:
    return bool(se) and not se.startswith("unconfined") and not any(
        f":{t}:" in se for t in ("unconfined_t", "kernel_t", "initrc_t"))


def j_mac(facts: Facts) -> Judged | None:
    aa, se = facts.get("lsm.apparmor", ""), facts.get("lsm.selinux", "")
    if aa and not aa.startswith("unconfined"):
        return 0.0, f"apparmor {aa}"
    if _selinux_confined(se):
        return 0.0, f"selinux {se}"
    return 1.0, "unconfined" + (f" ({aa or se})" if aa or se else "")


def j_landlock(facts: Facts) -> Judged | None:
    return 1.0, "not observable from /proc (ABI " + facts.get("landlock.abi", "?") + ")"


class LegacyCategory(Category):
    """An entry of the legacy table: a category with its owner(s) and how rows were guessed
    into it."""

    __slots__ = ("controls", "keys", "plugin")

    def __init__(self, id: str, title: str, plugin: str, importance: float,
                 keys: Iterable[tuple[str, str | None]] = (), controls: str | None = None,
                 *, judge: Callable[[Facts], Judged | None], meaning: str,
                 combine: str = "max") -> None:
        super().__init__(id, title, importance, judge=judge,
                         combine="min" if combine == "min" else "max", meaning=meaning)
        self.plugin = plugin
        self.keys = tuple(keys)  # (section, key or None) pairs that belong to this category
        self.controls = re.compile(controls) if controls else None


NS_WEIGHTS = (("user", 0.3), ("pid", 0.3), ("mnt", 0.3), ("net", 0.8), ("ipc", 0.2),
              ("uts", 0.05), ("cgroup", 0.1), ("time", 0.05))
_L = LegacyCategory

CATEGORIES = [
    _L("identity", "user and groups", "identity", 1.2, [("identity", None)],
       r"^(identity|user|uid|groups?)$", judge=j_identity,
       meaning="runs as root of the host (1.0), root of a user namespace (0.3) or another uid "
               "(0); supplementary groups weigh 0.2 of it"),
    _L("capabilities", "capabilities", "capabilities", 1.0, [("capabilities", None)],
       r"capabilit", judge=j_capabilities,
       meaning="weighted share of the capabilities the workload holds or can gain (bounding "
               "set too when no_new_privs is off); halved in a user namespace"),
    _L("process.no_new_privs", "no_new_privs", "process", 0.6, [("process", "no_new_privs")],
       r"no.new.privs", judge=j_nnp,
       meaning="PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities grant nothing"),
    _L("process.environment", "environment", "process", 0.1,
       [("process", "env_allow"), ("process", "env_set")], r"^environment$", judge=j_env,
       meaning="the caller's environment (secrets in variables) is not passed on; judged live "
               "as at most 12 variables"),
    _L("process.rlimits", "resource limits", "process", 0.1, [("process", "rlimits")],
       r"^rlimits?$", judge=j_rlimits,
       meaning="core dumps off (half) and open files bounded to 4096 or less (half)"),
    _L("seccomp.filter", "syscall filter", "seccomp", 1.0, [("seccomp", None)],
       r"seccomp|syscall", judge=j_seccomp,
       meaning="share of the probed sensitive system calls that are not blocked"),
    *[_L(f"namespaces.{ns}", f"{ns} namespace", "namespaces", w, [], rf"^namespace {ns}$",
         judge=j_ns(ns),
         meaning=f"a new {ns} namespace" + (" with loopback only (a new one with other "
                                           "interfaces counts half)" if ns == "net" else ""))
      for ns, w in NS_WEIGHTS],
    _L("filesystem.root", "read-only root", "filesystem", 0.6,
       [("filesystem", "read_only"), ("filesystem", "root")],
       r"^(root|read.only root|root filesystem|rootfs)",
       judge=j_fact("fs.root_writable", {"no": 0.0, "yes": 1.0}),
       meaning="the root filesystem is mounted read-only"),
    _L("filesystem.home", "home directories", "filesystem", 0.4, [], r"home",
       judge=j_fact("fs.home", {"hidden": 0.0, "ro": 0.5, "rw": 1.0}),
       meaning="/home hidden (0), read-only (0.5) or writable (1)"),
    _L("filesystem.tmp", "private /tmp", "filesystem", 0.2, [("filesystem", "tmp")],
       r"\btmp\b", judge=j_fact("fs.tmp", {"private": 0.0, "host": 1.0}),
       meaning="/tmp is not the host's"),
    _L("filesystem.dev", "minimal /dev", "filesystem", 0.3, [("filesystem", "dev")],
       r"\bdev(ices)?\b", judge=j_fact("fs.dev", {"minimal": 0.0, "host": 1.0}),
       meaning="/dev is a minimal tmpfs, not the host's devtmpfs"),
    _L("filesystem.kernel", "kernel tunables read-only", "filesystem", 0.4,
       [("filesystem", "read_only_paths"), ("filesystem", "hide")],
       r"proc|sys|kernel|mask", judge=j_fact("fs.proc_sys", {"ro": 0.0, "rw": 1.0}),
       meaning="/proc/sys (and the OCI-style masked paths) read-only"),
    _L("cgroups.memory", "memory limit", "cgroups", 0.2, [("cgroups", "memory_max")],
       r"memory", judge=j_cg_memory, meaning="a memory limit on the workload's cgroup"),
    _L("cgroups.pids", "process limit", "cgroups", 0.2, [("cgroups", "pids_max")],
       r"pids|tasks|process", judge=j_cg_pids, meaning="a pids limit (fork bombs)"),
    _L("cgroups.cpu", "CPU limit", "cgroups", 0.1, [("cgroups", "cpu_max")], r"cpu",
       judge=j_cg_cpu, meaning="a CPU quota"),
    _L("mac", "mandatory access control", "apparmor|selinux", 0.5,
       [("apparmor", None), ("selinux", None)], r"apparmor|selinux|mac\b",
       combine="min", judge=j_mac,
       meaning="an AppArmor profile or an SELinux domain other than unconfined (either one "
               "suffices)"),
    _L("landlock", "Landlock", "-", 0.2, [("landlock", None)], r"landlock", judge=j_landlock,
       meaning="a Landlock ruleset (no built-in plugin yet; not observable from /proc, so it "
               "never lowers the effective score)"),
]
BY_ID = {c.id: c for c in CATEGORIES}
# Declared categories spelled by the profile key rather than the kernel's name.
ALIASES = {"namespaces.mount": "namespaces.mnt", "namespaces.network": "namespaces.net",
           "namespaces.users": "namespaces.user", "filesystem.readonly": "filesystem.root"}
# Rows that describe how a control is applied rather than a control of their own: listed and
# checked live, not scored.
NOT_SCORED = {("filesystem", "proc"), ("filesystem", "binds"), ("namespaces", "hostname")}
OWNED_SECTIONS = {"filesystem", "namespaces", "cgroups"}


def contributions(plugins: set[str]) -> list[tuple[tuple[str, ...], Category]]:
    """The legacy entries still in use, with their owners among ``plugins`` (the built-in
    plugins that declare no category); the ownerless ``landlock`` while any is left."""
    out: list[tuple[tuple[str, ...], Category]] = []
    if not plugins:
        return out
    for c in CATEGORIES:
        owners = tuple(o for o in c.plugin.split("|") if o in plugins or o == "-")
        if owners:
            out.append((owners, c))
    return out


def _by_keys(section: str | None, key: str | None, expect: dict) -> str | None:
    for c in CATEGORIES:
        if (section, key) in c.keys:
            return c.id
    ns = [f for f in expect if f.startswith("ns.")]
    if section == "namespaces" and len(ns) == 1:
        return f"namespaces.{ns[0][3:]}"
    for c in CATEGORIES:
        if (section, None) in c.keys:
            return c.id
    return None


def _by_control(section: str | None, control: str) -> str | None:
    for c in CATEGORIES:
        owner = c.plugin.split("|")
        if c.controls and c.controls.search(control) and (
                section is None or section in owner or section == c.id.split(".")[0]
                or section not in OWNED_SECTIONS):
            return c.id
    return None


def categorize(row: dict) -> str | None:
    """The category id of a legacy plugin's audit row, guessed, or None."""
    cat = row.get("category") or ""
    cat = ALIASES.get(cat, cat)
    if cat in BY_ID:
        return cat
    section, key = row.get("section"), row.get("key")
    if (section, key) in NOT_SCORED:
        return None
    return _by_keys(section, key, row.get("expect") or {}) or \
        _by_control(section, str(row.get("control", "")).lower())
