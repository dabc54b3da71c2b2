"""The control table of ``secrun audit``: the one place that lists the control categories every
audit expects, their importance in the exposure score, and how each is judged from the facts of
a running process.  ``docs/audit.md`` documents this table; a test keeps the two equal.

Exposure (0.0–10.0, 10 = nothing confines the workload)::

    exposure = 10 * sum(importance[c] * residual[c]) / sum(importance[c])   over every category c

``residual`` is 0.0 (fully confined) to 1.0 (not confined).  *Planned*: the residual of a category
comes from the rows the plugins' ``secrun_audit`` return for it (their ``weight``;
``not-configured`` and ``not-available`` rows, and categories no plugin reports, count 1.0).
*Effective* (``--live``, ``--pid``): it is computed from the observed facts by the category's
judge below, the same function for both, so the two views score the same process the same way.
"""

import re

# Capabilities weighted by what they give a process over the rest of the system (the others
# weigh 0.3 each).  Numbers, not names: the judge works from the raw masks.
CAP_WEIGHTS = {
    21: 3.0,  # sys_admin
    16: 3.0,  # sys_module
    17: 3.0,  # sys_rawio
    19: 2.0,  # sys_ptrace
    2: 2.0,   # dac_read_search
    1: 2.0,   # dac_override
    12: 2.0,  # net_admin
    39: 2.0,  # bpf
    7: 1.5,   # setuid
    6: 1.0,   # setgid
    8: 1.0,   # setpcap
    13: 1.0,  # net_raw
    22: 1.0,  # sys_boot
    38: 1.0,  # perfmon
    25: 1.0,  # sys_time
    27: 1.0,  # mknod
    31: 1.0,  # setfcap
    0: 1.0,   # chown
    3: 1.0,   # fowner
    18: 0.5,  # sys_chroot
    24: 1.0,  # sys_resource
    33: 1.0,  # mac_override
    32: 1.0,  # mac_admin
}
UNLIMITED = 1 << 62


def _f(facts, name, default=""):
    return facts.get(name, default)


def _hex(facts, name):
    try:
        return int(_f(facts, name, "0") or "0", 16)
    except ValueError:
        return 0


# --- judges: facts -> (residual 0..1, what was observed) or None (facts missing) --------------

def j_identity(facts):
    uid, groups = _f(facts, "id.uid"), _f(facts, "id.groups").split()
    if not uid:
        return None
    if uid == "0":
        u, what = (0.3, "root of a new user namespace") if _f(facts, "ns.user") == "new" \
            else (1.0, "root")
    else:
        u, what = 0.0, f"uid {uid}"
    g = 0.0 if not groups else 1.0 if "0" in groups else 0.5
    what += f", groups {' '.join(groups) or 'none'}"
    return (u * 1.0 + g * 0.2) / 1.2, what


def j_capabilities(facts):
    if not _f(facts, "status.CapEff"):
        return None
    reach = _hex(facts, "status.CapPrm") | _hex(facts, "status.CapEff") | \
        _hex(facts, "status.CapAmb")
    if _f(facts, "status.NoNewPrivs") != "1":
        reach |= _hex(facts, "status.CapBnd")  # a setuid-root or file-capability exec gains these
    last = max(_hex(facts, "status.CapBnd").bit_length() - 1, 40)
    total = sum(CAP_WEIGHTS.get(i, 0.3) for i in range(last + 1))
    held = sum(CAP_WEIGHTS.get(i, 0.3) for i in range(last + 1) if reach >> i & 1)
    r = held / total
    n = bin(reach).count("1")
    if _f(facts, "ns.user") == "new":
        r *= 0.5
    return r, f"{n} capabilit{'y' if n == 1 else 'ies'} reachable" + \
        (" (in a user namespace)" if _f(facts, "ns.user") == "new" and n else "")


def j_nnp(facts):
    v = _f(facts, "status.NoNewPrivs")
    return (0.0, "on") if v == "1" else (1.0, "off")


def j_env(facts):
    n = _f(facts, "env.count")
    if not n:
        return None
    return (0.0 if int(n) <= 12 else 1.0), f"{n} variables"


def _limit(facts, name, part):
    v = _f(facts, f"rlimit.{name}")
    if not v:
        return None
    x = v.split(":")[part]
    return UNLIMITED if x == "unlimited" else int(x)


def j_rlimits(facts):
    core, nofile = _limit(facts, "core", 0), _limit(facts, "nofile", 1)
    if core is None:
        return None
    r = 1.0 - (0.5 if core == 0 else 0.0) - (0.5 if nofile is not None and nofile <= 4096
                                               else 0.0)
    return r, f"core {core if core != UNLIMITED else 'unlimited'}, nofile hard " \
        f"{nofile if nofile != UNLIMITED else 'unlimited'}"


def j_seccomp(facts):
    from ..probe import SYSCALLS

    mode = _f(facts, "status.Seccomp", "0")
    probed = [_f(facts, f"syscall.{n}") for n in SYSCALLS]
    probed = [p for p in probed if p]
    if mode == "0":
        return 1.0, "no filter"
    if mode == "1":
        return 0.0, "strict mode"
    nf = _f(facts, "status.Seccomp_filters", "?")
    if not probed:
        return 0.5, f"{nf} filter(s), rules not observable"
    allowed = probed.count("allowed")
    return allowed / len(probed), f"{nf} filter(s); {len(probed) - allowed}/{len(probed)} " \
        f"sensitive calls blocked"


def j_ns(name):
    def judge(facts):
        v = _f(facts, f"ns.{name}")
        if not v:
            return None
        if name == "net" and v == "new":
            links = [i for i in _f(facts, "net.interfaces").split() if i != "lo"]
            if links:
                return 0.5, f"new, with {' '.join(links)}"
            return 0.0, "new, loopback only"
        return (0.0 if v == "new" else 1.0), v
    return judge


def j_fact(name, scale):
    def judge(facts):
        v = _f(facts, name)
        if not v:
            return None
        return scale.get(v, 1.0), v
    return judge


def _cg(facts, *names):
    for n in names:
        v = _f(facts, f"cgroup.{n}")
        if v:
            return n, v
    return None, None


def j_cg_memory(facts):
    n, v = _cg(facts, "memory.max", "memory.limit_in_bytes")
    if v is None:
        return 1.0, "no limit"
    if v == "max" or (v.isdigit() and int(v) >= UNLIMITED):
        return 1.0, f"{n}: unlimited"
    return 0.0, f"{n} = {v}"


def j_cg_pids(facts):
    n, v = _cg(facts, "pids.max")
    if v is None or v == "max":
        return 1.0, "no limit"
    return 0.0, f"{n} = {v}"


def j_cg_cpu(facts):
    n, v = _cg(facts, "cpu.max", "cpu.cfs_quota_us")
    if v is None or v.startswith("max") or v == "-1":
        return 1.0, "no limit"
    return 0.0, f"{n} = {v}"


def j_mac(facts):
    aa, se = _f(facts, "lsm.apparmor"), _f(facts, "lsm.selinux")
    if aa and aa != "unconfined" and not aa.startswith("unconfined"):
        return 0.0, f"apparmor {aa}"
    if se and ":unconfined_t:" not in se and ":kernel_t:" not in se \
            and ":initrc_t:" not in se and not se.startswith("unconfined"):
        return 0.0, f"selinux {se}"
    return 1.0, "unconfined" + (f" ({aa or se})" if aa or se else "")


def j_landlock(facts):
    return 1.0, "not observable from /proc (ABI " + _f(facts, "landlock.abi", "?") + ")"


# --- the table ---------------------------------------------------------------------------------

class Category:
    """A scored category of the exposure score, as a plugin declares it in
    ``secrun_audit_categories``.

    - ``id``: dotted name, by convention ``<plugin>.<aspect>`` (``seccomp.filter``); audit rows
      name it in their ``category``.
    - ``title``: a few words for the report; ``meaning``: one line for ``docs/audit.md``.
    - ``importance``: its weight in the score (the built-in ones range 0.05-1.2).
    - ``judge(facts) -> (residual, observed text) | None``: how a running process is scored
      from the facts the live audit gathered (probe and ``secrun_live_facts``); None when the
      facts it needs are missing (scored 1.0, "not observed").  Without a judge the category
      is never lowered by a live look.
    - ``combine``: how several rows of the category make one residual: ``"max"`` (the weakest
      configured row counts) or ``"min"`` (any one row suffices, e.g. either of two MAC
      systems); also how the judges of several plugins contributing to one id combine.
    """

    __slots__ = ("id", "title", "plugin", "importance", "keys", "controls", "combine", "judge",
                 "meaning")

    def __init__(self, id, title, importance, judge=None, combine="max", meaning="", *,
                 plugin="", keys=(), controls=None):
        self.id, self.title, self.plugin, self.importance = id, title, plugin, importance
        self.keys = tuple(keys)  # (section, key or None) pairs that belong to this category
        self.controls = re.compile(controls) if controls else None
        self.combine = combine
        self.judge = judge
        self.meaning = meaning


NS_WEIGHTS = (("user", 0.3), ("pid", 0.3), ("mnt", 0.3), ("net", 0.8), ("ipc", 0.2),
              ("uts", 0.05), ("cgroup", 0.1), ("time", 0.05))

def _legacy(id, title, plugin, importance, keys=(), controls=None, **kw):
    """The built-in table's entries until each plugin declares its own."""
    return Category(id, title, importance, plugin=plugin, keys=keys, controls=controls, **kw)


CATEGORIES = [
    _legacy("identity", "user and groups", "identity", 1.2, [("identity", None)],
             r"^(identity|user|uid|groups?)$", judge=j_identity,
             meaning="runs as root of the host (1.0), root of a user namespace (0.3) or "
                     "another uid (0); supplementary groups weigh 0.2 of it"),
    _legacy("capabilities", "capabilities", "capabilities", 1.0, [("capabilities", None)],
             r"capabilit", judge=j_capabilities,
             meaning="weighted share of the capabilities the workload holds or can gain "
                     "(bounding set too when no_new_privs is off); halved in a user namespace"),
    _legacy("process.no_new_privs", "no_new_privs", "process", 0.6,
             [("process", "no_new_privs")], r"no.new.privs", judge=j_nnp,
             meaning="PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities grant nothing"),
    _legacy("process.environment", "environment", "process", 0.1, [("process", "env_allow"),
             ("process", "env_set")], r"^environment$", judge=j_env,
             meaning="the caller's environment (secrets in variables) is not passed on; "
                     "judged live as at most 12 variables"),
    _legacy("process.rlimits", "resource limits", "process", 0.1, [("process", "rlimits")],
             r"^rlimits?$", judge=j_rlimits,
             meaning="core dumps off (half) and open files bounded to 4096 or less (half)"),
    _legacy("seccomp.filter", "syscall filter", "seccomp", 1.0, [("seccomp", None)],
             r"seccomp|syscall", judge=j_seccomp,
             meaning="share of the probed sensitive system calls that are not blocked"),
    *[_legacy(f"namespaces.{ns}", f"{ns} namespace", "namespaces", w,
               [], rf"^namespace {ns}$", judge=j_ns(ns),
               meaning=f"a new {ns} namespace" + (" with loopback only (a new one with other "
                                                 "interfaces counts half)" if ns == "net" else ""))
      for ns, w in NS_WEIGHTS],
    _legacy("filesystem.root", "read-only root", "filesystem", 0.6,
             [("filesystem", "read_only"), ("filesystem", "root")],
             r"^(root|read.only root|root filesystem|rootfs)", judge=j_fact(
                 "fs.root_writable", {"no": 0.0, "yes": 1.0}),
             meaning="the root filesystem is mounted read-only"),
    _legacy("filesystem.home", "home directories", "filesystem", 0.4,
             [("filesystem", "home")], r"home",
             judge=j_fact("fs.home", {"hidden": 0.0, "ro": 0.5, "rw": 1.0}),
             meaning="/home hidden (0), read-only (0.5) or writable (1)"),
    _legacy("filesystem.tmp", "private /tmp", "filesystem", 0.2, [("filesystem", "tmp")],
             r"\btmp\b",
             judge=j_fact("fs.tmp", {"private": 0.0, "host": 1.0}),
             meaning="/tmp is not the host's"),
    _legacy("filesystem.dev", "minimal /dev", "filesystem", 0.3, [("filesystem", "dev")],
             r"\bdev(ices)?\b",
             judge=j_fact("fs.dev", {"minimal": 0.0, "host": 1.0}),
             meaning="/dev is a minimal tmpfs, not the host's devtmpfs"),
    _legacy("filesystem.kernel", "kernel tunables read-only", "filesystem", 0.4,
             [("filesystem", "read_only_paths"), ("filesystem", "hide"),
              ("filesystem", "mask")],
             r"proc|sys|kernel|mask", judge=j_fact("fs.proc_sys", {"ro": 0.0, "rw": 1.0}),
             meaning="/proc/sys (and the OCI-style masked paths) read-only"),
    _legacy("cgroups.memory", "memory limit", "cgroups", 0.2, [("cgroups", "memory"),
             ("cgroups", "memory_max"), ("cgroups", "memory_swap")], r"memory",
             judge=j_cg_memory, meaning="a memory limit on the workload's cgroup"),
    _legacy("cgroups.pids", "process limit", "cgroups", 0.2, [("cgroups", "pids"),
             ("cgroups", "pids_max")], r"pids|tasks|process", judge=j_cg_pids,
             meaning="a pids limit (fork bombs)"),
    _legacy("cgroups.cpu", "CPU limit", "cgroups", 0.1, [("cgroups", "cpu"),
             ("cgroups", "cpus"), ("cgroups", "cpu_max")], r"cpu", judge=j_cg_cpu,
             meaning="a CPU quota"),
    _legacy("mac", "mandatory access control", "apparmor|selinux", 0.5,
             [("apparmor", None), ("selinux", None)], r"apparmor|selinux|mac\b",
             combine="min", judge=j_mac,
             meaning="an AppArmor profile or an SELinux domain other than unconfined "
                     "(either one suffices)"),
    _legacy("landlock", "Landlock", "-", 0.2, [("landlock", None)], r"landlock",
             judge=j_landlock,
             meaning="a Landlock ruleset (no built-in plugin yet; not observable from /proc, "
                     "so it never lowers the effective score)"),
]
BY_ID = {c.id: c for c in CATEGORIES}
TOTAL = round(sum(c.importance for c in CATEGORIES), 6)
# Declared categories spelled by the profile key rather than the kernel's name.
ALIASES = {"namespaces.mount": "namespaces.mnt", "namespaces.network": "namespaces.net",
           "namespaces.users": "namespaces.user", "filesystem.readonly": "filesystem.root"}
# Rows that describe how a control is applied rather than a control of their own: listed and
# checked live, not scored.
NOT_SCORED = {("filesystem", "proc"), ("filesystem", "binds"), ("namespaces", "hostname")}
OWNED_SECTIONS = {"filesystem": "filesystem", "namespaces": "namespaces", "cgroups": "cgroups"}

# systemd-analyze security's bands (exposure at or above the value -> the word).
BANDS = ((10.0, "DANGEROUS"), (9.0, "UNSAFE"), (7.5, "EXPOSED"), (5.0, "MEDIUM"),
         (1.0, "OK"), (0.1, "SAFE"), (0.0, "PERFECT"))


def rating(exposure: float) -> str:
    for low, word in BANDS:
        if exposure >= low:
            return word
    return "PERFECT"


def categorize(row: dict) -> str | None:
    """The category id of a plugin's audit row, or None."""
    cat = row.get("category") or ""
    cat = ALIASES.get(cat, cat)
    if cat in BY_ID:
        return cat
    section, key = row.get("section"), row.get("key")
    if (section, key) in NOT_SCORED:
        return None
    control = str(row.get("control", "")).lower()
    for c in CATEGORIES:
        if (section, key) in c.keys:
            return c.id
    expect = row.get("expect") or {}
    ns = [f for f in expect if f.startswith("ns.")]
    if section == "namespaces" and len(ns) == 1:
        return f"namespaces.{ns[0][3:]}"
    for c in CATEGORIES:
        if (section, None) in c.keys:
            return c.id
    for c in CATEGORIES:
        owner = c.plugin.split("|")
        if c.controls and c.controls.search(control) and (
                section is None or section in owner or section == c.id.split(".")[0]
                or section not in OWNED_SECTIONS):
            return c.id
    return None


def residual_of(row: dict) -> float:
    if row["status"] in ("not-configured", "not-available"):
        return 1.0
    return min(1.0, max(0.0, float(row["weight"])))


def planned(rows: list) -> dict:
    """{category id: residual} from the plugins' rows (categories without rows: 1.0)."""
    by: dict = {c.id: [] for c in CATEGORIES}
    for r in rows:
        if r.get("category") in by:
            by[r["category"]].append(r)
    out = {}
    for c in CATEGORIES:
        vals = [residual_of(r) for r in by[c.id]]
        if c.combine == "min" or not vals:
            out[c.id] = min(vals, default=1.0)
            continue
        # The weakest configured row counts; a not-configured aspect of a category that other
        # rows do configure (e.g. an option left at its default) does not undo them.
        conf = [residual_of(r) for r in by[c.id]
                if r["status"] not in ("not-configured", "not-available")]
        out[c.id] = max(conf) if conf else max(vals)
    return out


def effective(facts: dict) -> dict:
    """{category id: (residual, observed text)} from a process's facts (missing facts: 1.0)."""
    out = {}
    for c in CATEGORIES:
        got = c.judge(facts) if c.judge else None
        out[c.id] = got if got is not None else (1.0, "not observed")
    return out


def score(residuals: dict) -> float:
    total = sum(c.importance * residuals[c.id] for c in CATEGORIES)
    return round(10.0 * total / TOTAL, 1)
