"""Planning half of the ``seccomp`` plugin: profile -> rule model -> one BPF program.

Imported only at planning time (``secrun_compile``, ``secrun seccomp export``): it imports
``json`` and pyseccomp (whose import alone costs ~35 ms), which a cached launch never pays.

The policy is compiled with libseccomp into two programs and stitched into one:

- the *argument checks* (default: allow) hold the rules that look at arguments and must take
  precedence over an unconditional allow: clone/unshare namespace flags, socket address
  families, denied ioctl requests;
- the *main filter* (default: the profile's ``default_action``) holds one unconditional action
  per system call (plus the listed ``personality`` values and conditional rules imported from a
  JSON profile).

libseccomp cannot express "allow ioctl, except TIOCSTI" in one filter (an unconditional rule
absorbs conditional ones on the same call, and a rule whose action equals the default action is
refused), while the kernel resolves several filters by taking the strictest answer.  Instead of
loading two filters, every ``ret ALLOW`` of the argument checks is rewritten into a jump to the
first instruction of the main filter: the result is exactly the stacked semantics (argument
checks refuse -> refused; otherwise the main filter decides), loaded with a single
``seccomp()`` call, and exportable as one BPF blob.  System calls whose answer does not depend
on their arguments (getppid, read, write...) stay cacheable by the kernel's per-syscall
"always allow" bitmap, so they run at the cost floor of having any filter at all.
"""

import errno as _errno
import json
import os
import struct

from secrun.errors import ConfigError, SecrunError, shown
from secrun.schema import is_digits, parse_digits

SECTION = "seccomp"
GROUPS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                           "seccomp_groups.json")

# Kernel action values (linux/seccomp.h), as libseccomp takes them.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
ACTIONS = {"allow": ACT_ALLOW, "kill_process": ACT_KILL_PROCESS, "kill_thread": ACT_KILL_THREAD,
           "kill": ACT_KILL_THREAD, "trap": ACT_TRAP, "log": ACT_LOG}
MAX_ERRNO = 4095
U32_MAX = 0xFFFFFFFF  # ioctl's cmd and personality()'s persona are 32-bit to the kernel
BPF_MAXINSNS = 4096

# libseccomp comparison operators (enum scmp_compare)
CMP = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
CMP_NAME = {v: k for k, v in CMP.items()}
EQ, GT, MASKED_EQ = 4, 6, 7

NAMESPACE_FLAGS = {"mnt": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000,
                   "ipc": 0x08000000, "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000,
                   "time": 0x00000080}
# Address families (linux/socket.h).  AF_MAX is 46 on 6.x kernels; anything above the last
# known family is refused too.
ADDRESS_FAMILIES = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4,
    "AF_APPLETALK": 5, "AF_NETROM": 6, "AF_BRIDGE": 7, "AF_ATMPVC": 8, "AF_X25": 9,
    "AF_INET6": 10, "AF_ROSE": 11, "AF_DECnet": 12, "AF_NETBEUI": 13, "AF_SECURITY": 14,
    "AF_KEY": 15, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_ASH": 18, "AF_ECONET": 19,
    "AF_ATMSVC": 20, "AF_RDS": 21, "AF_SNA": 22, "AF_IRDA": 23, "AF_PPPOX": 24,
    "AF_WANPIPE": 25, "AF_LLC": 26, "AF_IB": 27, "AF_MPLS": 28, "AF_CAN": 29, "AF_TIPC": 30,
    "AF_BLUETOOTH": 31, "AF_IUCV": 32, "AF_RXRPC": 33, "AF_ISDN": 34, "AF_PHONET": 35,
    "AF_IEEE802154": 36, "AF_CAIF": 37, "AF_ALG": 38, "AF_NFC": 39, "AF_VSOCK": 40,
    "AF_KCM": 41, "AF_QIPCRTR": 42, "AF_SMC": 43, "AF_XDP": 44, "AF_MCTP": 45,
}
AF_LAST = 45
# ioctl requests that can be named (asm-generic/ioctls.h; x86 uses the generic values).
IOCTLS = {"TIOCSTI": 0x5412, "TIOCLINUX": 0x541C, "TIOCSETD": 0x5423, "TIOCCONS": 0x541D,
          "TIOCSCTTY": 0x540E, "FIONREAD": 0x541B}
PERSONALITIES = {"PER_LINUX": 0x0, "PER_LINUX32": 0x8, "UNAME26": 0x20000,
                 "ADDR_NO_RANDOMIZE": 0x40000, "READ_IMPLIES_EXEC": 0x400000,
                 "QUERY": 0xFFFFFFFF}
# Arch names: secrun's, the OCI/Docker SCMP_ARCH_* names and the Go names Docker's
# includes/excludes use.  Values are libseccomp's (AUDIT_ARCH_*).
ARCHES = {"x86_64": 0xC000003E, "x86": 0x40000003, "x32": 0x4000003E,
          "aarch64": 0xC00000B7, "arm": 0x40000028}
OCI_ARCH = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32",
            "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_ARM": "arm"}
GO_ARCH = {"amd64": "x86_64", "386": "x86", "x86": "x86", "x32": "x32", "arm64": "aarch64",
           "arm": "arm"}
OCI_ACTIONS = {"SCMP_ACT_ALLOW": ACT_ALLOW, "SCMP_ACT_KILL": ACT_KILL_THREAD,
               "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD, "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
               "SCMP_ACT_TRAP": ACT_TRAP, "SCMP_ACT_LOG": ACT_LOG}

# Sensitive calls a live audit probes (reported "blocked" when the policy refuses them).
PROBES = ("mount", "umount2", "pivot_root", "ptrace", "bpf", "perf_event_open", "init_module",
          "kexec_load", "reboot", "swapon", "keyctl", "add_key", "acct", "iopl", "settimeofday")


# --- actions -------------------------------------------------------------------------------

def errno_number(text, key):
    """'EPERM' / 'eperm' / '95' / 95 -> 95; ConfigError naming the key otherwise.  A number is
    ASCII digits, 1 .. MAX_ERRNO (0 would make a refused call return success)."""
    if isinstance(text, int):
        n = text
    else:
        t = text.strip()
        if is_digits(t):
            try:
                n = parse_digits(t, MAX_ERRNO)
            except ValueError:
                n = MAX_ERRNO + 1  # too large: refused below
        else:
            found = getattr(_errno, t.upper(), None) if t.isascii() and t[:1] in "Ee" else None
            if not isinstance(found, int):
                raise ConfigError(SECTION, key, f"unknown errno {shown(text)} (use a name such "
                                  f"as EPERM, ENOSYS, ENOTSUP, or a number 1..{MAX_ERRNO})")
            n = found
    if not 1 <= n <= MAX_ERRNO:
        raise ConfigError(SECTION, key, f"errno {shown(text)} out of range 1..{MAX_ERRNO}")
    return n


def parse_action(value, key):
    """A profile action -> the kernel action value.

    ``allow``, ``kill_process``, ``kill_thread``, ``trap``, ``log``, ``errno`` (EPERM),
    ``errno:NAME``/``errno:N``, a bare errno name (``ENOSYS``) or an integer (an errno)."""
    if isinstance(value, int):
        return ACT_ERRNO | errno_number(value, key)
    v = value.strip()
    low = v.lower() if v.isascii() else v  # (the Kelvin sign lowers to "k")
    if low in ACTIONS:
        return ACTIONS[low]
    if low == "errno":
        return ACT_ERRNO | _errno.EPERM
    if low.startswith("errno:") or low.startswith("errno(") and low.endswith(")"):
        arg = v[6:].rstrip(")")
        return ACT_ERRNO | errno_number(arg, key)
    if v.startswith("E") and v == v.upper() and v.isalnum():
        return ACT_ERRNO | errno_number(v, key)
    raise ConfigError(SECTION, key, f"unknown action {shown(value)} (one of allow, errno:NAME, "
                      f"errno:N, kill_process, kill_thread, trap, log)")


def action_text(act: int) -> str:
    if act == ACT_ALLOW:
        return "allow"
    if act == ACT_LOG:
        return "log"
    if act == ACT_KILL_PROCESS:
        return "kill_process"
    if act == ACT_KILL_THREAD:
        return "kill_thread"
    if act == ACT_TRAP:
        return "trap"
    if act & 0xFFFF0000 == ACT_ERRNO:
        n = act & 0xFFFF
        return f"errno:{_errno.errorcode.get(n, n)}"
    return hex(act)


def refuses(act: int) -> bool:
    return act not in (ACT_ALLOW, ACT_LOG)


# --- libseccomp ------------------------------------------------------------------------------

def lib():
    """pyseccomp, imported on first use (planning only)."""
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as e:
        raise SecrunError(f"[seccomp]: cannot compile the filter: pyseccomp/libseccomp is not "
                          f"usable ({e}); install the Debian package libseccomp2") from None
    return pyseccomp


def resolver():
    """name -> syscall number on the native arch (negative: a pseudo number for a call this
    arch does not have, which libseccomp accepts and ignores); None when libseccomp does not
    know the name at all."""
    sc = lib()
    fn = sc._libseccomp.seccomp_syscall_resolve_name_arch
    import ctypes

    fn.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    fn.restype = ctypes.c_int
    cache: dict = {}

    def resolve(name):
        if name not in cache:
            # (a C string ends at NUL: "read\0x" would resolve as "read")
            n = fn(0, name.encode()) if name.isascii() and name.isprintable() else -1
            cache[name] = None if n == -1 else n
        return cache[name]

    return resolve


# --- groups ----------------------------------------------------------------------------------

def load_groups():
    with open(GROUPS_FILE) as f:
        return json.load(f)


def expand(name, groups, key, seen=()):
    """'@group' -> its syscall names (recursively); a plain name -> [name]."""
    if not name.startswith("@"):
        return [name]
    g = groups.get(name)
    if g is None:
        raise ConfigError(SECTION, key, f"unknown syscall group {name!r} (known: "
                          f"{', '.join(sorted(groups))}; see `secrun seccomp groups`)")
    if name in seen:
        raise ConfigError(SECTION, key, f"syscall group {name!r} includes itself")
    out = []
    for member in g["syscalls"]:
        out.extend(expand(member, groups, key, seen + (name,)))
    return out


# --- the rule model ----------------------------------------------------------------------------
# rules: {syscall name: [(action, conds)]}; conds: tuple of (arg index, op, datum_a, datum_b).
# An entry with empty conds is the call's unconditional action.

class Model:
    def __init__(self):
        self.default = ACT_ERRNO | _errno.EPERM
        self.badarch = ACT_KILL_PROCESS
        self.arches: list = []          # extra arches besides the native one
        self.rules: dict = {}           # main filter
        self.forbid: list = []          # argument checks: (name, action, conds, why)
        self.origin: dict = {}          # syscall -> where its action came from
        self.skipped: list = []         # names libseccomp does not know (groups, imports)
        self.notes: list = []           # restrictions, for the audit and the docs

    def base(self, name):
        """The unconditional action of a call (None: conditional or unlisted)."""
        rules = self.rules.get(name)
        if rules is None:
            return self.default
        if len(rules) == 1 and not rules[0][1]:
            return rules[0][0]
        return None


def build_model(cfg: dict, import_path: str | None, resolve,
                allow_is_builtin: bool = False) -> Model:
    m = Model()
    groups = load_groups()
    # (default_action and import_caps are checked with or without an imported file)
    m.default = parse_action(cfg["default_action"], "default_action")
    caps = held_caps(cfg["import_caps"])
    if import_path:
        try:
            import_oci(m, import_path, caps, resolve)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
            # a field of the wrong JSON type somewhere in the file (the checks above name the
            # common mistakes; this names the rest)
            raise ConfigError(SECTION, "import", f"{import_path}: malformed Docker/OCI seccomp "
                              f"profile ({type(e).__name__}: {str(e)[:120]})") from None
    m.badarch = parse_action(cfg["other_abis"], "other_abis")
    for a in cfg["arches"]:
        arch = a.lower().replace("-", "_")
        if arch not in ("x86", "x32"):
            raise ConfigError(SECTION, "arches", f"unknown or unsupported arch {a!r} (on x86_64: "
                              f"x86 for the i386 int 0x80 ABI, x32)")
        if arch not in m.arches:
            m.arches.append(arch)

    def names_of(entry, key, strict):
        out = []
        for n in expand(entry, groups, key):
            if resolve(n) is None:
                if strict and not entry.startswith("@"):
                    raise ConfigError(SECTION, key, f"unknown syscall {n!r} (not known to "
                                      f"libseccomp on this system)")
                if n not in m.skipped:
                    m.skipped.append(n)
                continue
            out.append(n)
        return out

    def set_action(entry, act, key):
        for n in names_of(entry, key, strict=True):
            m.rules[n] = [(act, ())]
            m.origin[n] = f"{key}: {entry}"

    # Precedence, lowest first: import < allow < deny < actions.  An imported file is the base
    # of the allowlist: the schema's default `allow` list does not widen it (one set in a
    # profile does).
    allow = [] if import_path and allow_is_builtin else cfg["allow"]
    for entry in allow:
        set_action(entry, ACT_ALLOW, "allow")
    deny_act = parse_action(cfg["deny_action"], "deny_action")
    for entry in cfg["deny"]:
        set_action(entry, deny_act, "deny")
    for entry, value in cfg["actions"].items():
        set_action(entry, parse_action(value, "actions"), "actions")

    add_restrictions(m, cfg, deny_act)
    return m


def _allowed(m, name):
    b = m.base(name)
    return b is not None and not refuses(b)


def add_restrictions(m: Model, cfg: dict, deny_act: int) -> None:
    if deny_act == ACT_ALLOW and (cfg["deny_namespaces"] or cfg["deny_ioctls"]):
        raise ConfigError(SECTION, "deny_action", "'allow' cannot be the action of denied "
                          "namespaces or ioctls")
    # Namespaces: clone/unshare with a denied CLONE_NEW* flag are refused; clone3 passes its
    # flags in memory the filter cannot read, so it answers ENOSYS and libc falls back to clone.
    mask = 0
    for ns in cfg["deny_namespaces"]:
        flag = NAMESPACE_FLAGS.get(ns.lower().removeprefix("clone_new"))
        if flag is None:
            raise ConfigError(SECTION, "deny_namespaces", f"unknown namespace {ns!r} (one of "
                              f"{', '.join(NAMESPACE_FLAGS)})")
        mask |= flag
    if mask:
        for call in ("clone", "unshare"):
            if _allowed(m, call):
                for ns, flag in NAMESPACE_FLAGS.items():
                    if mask & flag:
                        m.forbid.append((call, deny_act, ((0, MASKED_EQ, flag, flag),),
                                         f"{call} with CLONE_NEW{ns.upper()}"))
        if _allowed(m, "clone3"):
            m.rules["clone3"] = [(ACT_ERRNO | _errno.ENOSYS, ())]
            m.origin["clone3"] = "deny_namespaces (clone3 flags cannot be inspected)"
        m.notes.append("no new namespaces: " + ", ".join(cfg["deny_namespaces"])
                       + " (clone/unshare flags; clone3 -> ENOSYS)")
    # Address families: socket() with any other family answers EAFNOSUPPORT, as the kernel
    # does for a family it does not support, so programs fall back gracefully.
    if cfg["address_families"]:
        allowed = set()
        for fam in cfg["address_families"]:
            n = ADDRESS_FAMILIES.get(fam.upper() if fam.upper() != "AF_DECNET" else "AF_DECnet")
            if n is None:
                raise ConfigError(SECTION, "address_families", f"unknown address family {fam!r}"
                                  f" (e.g. AF_UNIX, AF_INET, AF_INET6, AF_NETLINK)")
            allowed.add(n)
        if _allowed(m, "socket"):
            act = ACT_ERRNO | _errno.EAFNOSUPPORT
            for n in range(AF_LAST + 1):
                if n not in allowed:
                    m.forbid.append(("socket", act, ((0, EQ, n, 0),), f"socket family {n}"))
            m.forbid.append(("socket", act, ((0, GT, AF_LAST, 0),), "socket family > AF_MCTP"))
        m.notes.append("socket families: only " + ", ".join(cfg["address_families"]))
    # ioctl requests: compared on the low 32 bits, as the kernel reads `unsigned int cmd`.
    # (The values are checked whether or not ioctl is allowed.)
    requests = [_ioctl_request(req) for req in cfg["deny_ioctls"]]
    if requests and _allowed(m, "ioctl"):
        for req, n in zip(cfg["deny_ioctls"], requests, strict=True):
            m.forbid.append(("ioctl", deny_act, ((1, MASKED_EQ, U32_MAX, n),), f"ioctl {req}"))
        m.notes.append("ioctl denied: " + ", ".join(map(str, cfg["deny_ioctls"])))
    # personality: only the listed values (32 bits: the kernel reads `unsigned int`).
    values = [_personality(p) for p in cfg["personalities"]]
    if values and _allowed(m, "personality"):
        if m.default == ACT_ALLOW:
            raise ConfigError(SECTION, "personalities", "limiting personality() needs a "
                              "default_action that refuses (the unlisted values get it)")
        act = m.base("personality")
        m.rules["personality"] = [(act, ((0, MASKED_EQ, U32_MAX, v),))
                                  for v in dict.fromkeys(values)]
        m.notes.append("personality: only " + ", ".join(map(str, cfg["personalities"])))


def _u32(value, key, what) -> int | None:
    """A number for a 32-bit argument: an integer, or text of ASCII decimal digits or 0x and
    hex digits; None for text that is no number.  ConfigError when it does not fit 32 bits
    unsigned (the kernel would compare only the low 32 bits: another value)."""
    if isinstance(value, int):
        n = value
    else:
        t = value.strip()
        if t[:2] in ("0x", "0X") and t[2:] and all(c in "0123456789abcdefABCDEF" for c in t[2:]):
            n = int(t[2:], 16) if len(t[2:].lstrip("0")) <= 8 else U32_MAX + 1
        elif is_digits(t):
            try:
                n = parse_digits(t, U32_MAX)
            except ValueError:
                n = U32_MAX + 1
        else:
            return None
    if not 0 <= n <= U32_MAX:
        raise ConfigError(SECTION, key, f"{what} {shown(value)} does not fit 32 bits unsigned "
                          f"(0 .. {U32_MAX:#x}), which is all the kernel compares")
    return n


def _ioctl_request(req) -> int:
    name = req.strip().upper() if isinstance(req, str) and req.isascii() else None
    if name in IOCTLS:
        return IOCTLS[name]
    n = _u32(req, "deny_ioctls", "ioctl request")
    if n is None:
        raise ConfigError(SECTION, "deny_ioctls", f"unknown ioctl {shown(req)} (known: "
                          f"{', '.join(IOCTLS)}, or a number)")
    return n


def _personality(p) -> int:
    if isinstance(p, int):
        n = _u32(p, "personalities", "personality")
        assert n is not None  # (None only for text)
        return n
    v = 0
    for part in p.split("|"):
        part = part.strip().upper() if part.isascii() else part  # ("ſ" uppers to "S")
        if part not in PERSONALITIES:
            raise ConfigError(SECTION, "personalities", f"unknown personality {shown(p)} "
                              f"(known: {', '.join(PERSONALITIES)}, combined with |)")
        v |= PERSONALITIES[part]
    return v


# --- Docker / OCI JSON import ---------------------------------------------------------------------

def held_caps(values) -> set:
    """``import_caps`` -> the ``CAP_*`` names an imported file's includes/excludes.caps are
    matched against.  Names are taken as ``[capabilities]`` takes them (any case, with or
    without CAP_, cap_<n>, "all"), for the capabilities the running kernel knows."""
    from secrun.plugins.capabilities.names import names_of
    from secrun.plugins.capabilities.plan import last_cap, parse_names

    last = last_cap()
    try:
        everything, mask = parse_names(values, last, "import_caps")
    except ConfigError as e:
        raise ConfigError(SECTION, "import_caps", e.message) from None
    if everything:
        mask = (1 << (last + 1)) - 1
    return {name.upper() for name in names_of(mask)}


def import_oci(m: Model, path: str, caps: set, resolve) -> None:
    """``m`` from a Docker/OCI seccomp file; ``caps``: the capabilities its rules' includes
    and excludes treat as held (:func:`held_caps`)."""
    key = "import"
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigError(SECTION, key, f"{path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(SECTION, key, f"{path}: malformed JSON: {e}") from None

    def bad(msg):
        return ConfigError(SECTION, key, f"{path}: {msg}")

    if not isinstance(data, dict):
        raise bad("expected a JSON object with defaultAction and syscalls")

    def action(name, errno_ret, where):
        if name == "SCMP_ACT_ERRNO":
            n = errno_ret if errno_ret is not None else _errno.EPERM
            if not isinstance(n, int) or not 0 <= n <= MAX_ERRNO:
                raise bad(f"{where}: bad errnoRet {n!r}")
            return ACT_ERRNO | n
        if name in OCI_ACTIONS:
            return OCI_ACTIONS[name]
        raise bad(f"{where}: unsupported action {name!r} (supported: SCMP_ACT_ERRNO, "
                  f"{', '.join(OCI_ACTIONS)})")

    if "defaultAction" not in data:
        raise bad("missing defaultAction")
    m.default = action(data["defaultAction"], data.get("defaultErrnoRet"), "defaultAction")
    # Arches: the native arch's sub-architectures (archMap) or the listed architectures are
    # filtered with the same rules.
    native = "x86_64"
    subs: list = []
    for entry in data.get("archMap") or []:
        if OCI_ARCH.get(entry.get("architecture")) == native:
            subs += entry.get("subArchitectures") or []
    subs += data.get("architectures") or []
    for a in subs:
        arch = OCI_ARCH.get(a)
        if arch is None:
            raise bad(f"unknown architecture {a!r}")
        if arch in ("x86", "x32") and arch not in m.arches:
            m.arches.append(arch)
    kernel = _kernel_version()
    calls = data.get("syscalls") or []
    if not isinstance(calls, list):
        raise bad("syscalls must be a list")
    for i, rule in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(rule, dict):
            raise bad(f"{where}: expected an object")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names or not all(isinstance(n, str) for n in names):
            raise bad(f"{where}: no syscall names")
        if not _applies(rule, caps, kernel, bad, where):
            continue
        act = action(rule.get("action"), rule.get("errnoRet"), where)
        args = rule.get("args") or []
        conds = []
        for j, a in enumerate(args):
            try:
                idx, op = int(a["index"]), CMP[a["op"]]
                va, vb = int(a.get("value", 0)), int(a.get("valueTwo", 0))
            except (KeyError, TypeError, ValueError):
                raise bad(f"{where}.args[{j}]: needs index, value, op (SCMP_CMP_*)") from None
            if not 0 <= idx <= 5:
                raise bad(f"{where}.args[{j}]: index {idx} out of range 0..5")
            conds.append((idx, op, va, vb))
        # Several conditions on the same argument are alternatives (one rule each);
        # conditions on different arguments must all hold (one rule).
        idxs = [c[0] for c in conds]
        alternatives = [(c,) for c in conds] if len(set(idxs)) < len(idxs) else [tuple(conds)]
        for n in names:
            if resolve(n) is None:
                if n not in m.skipped:
                    m.skipped.append(n)
                continue
            cur = m.rules.setdefault(n, [])
            for alt in alternatives:
                if not alt:
                    cur[:] = [(act, ())]
                elif not (len(cur) == 1 and not cur[0][1]):
                    cur.append((act, alt))
            m.origin[n] = f"import: {os.path.basename(path)}"


def _kernel_version():
    rel = os.uname().release.split("-")[0].split(".")
    try:
        return tuple(int(x) for x in rel[:2])
    except ValueError:
        return (0, 0)


def _applies(rule, caps, kernel, bad, where) -> bool:
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    native = {"x86_64", "amd64"}
    if inc.get("arches") and not any(GO_ARCH.get(a, a) == "x86_64" or a in native
                                     for a in inc["arches"]):
        return False
    if exc.get("arches") and any(GO_ARCH.get(a, a) == "x86_64" or a in native
                                 for a in exc["arches"]):
        return False
    if inc.get("caps") and not all(c.upper() in caps for c in inc["caps"]):
        return False
    if exc.get("caps") and any(c.upper() in caps for c in exc["caps"]):
        return False
    if inc.get("minKernel"):
        try:
            want = tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2])
        except ValueError:
            raise bad(f"{where}: bad minKernel {inc['minKernel']!r}") from None
        if kernel < want:
            return False
    return True


# --- building ----------------------------------------------------------------------------------

def _arg(sc, c):
    return sc.Arg(c[0], c[1], c[2], c[3])


def build_filters(m: Model):
    """(argument checks or None, main filter) as pyseccomp filters."""
    sc = lib()

    def new(default, badarch):
        f = sc.SyscallFilter(default)
        f.set_attr(sc.Attr.ACT_BADARCH, badarch)
        f.set_attr(sc.Attr.CTL_NNP, 0)        # no_new_privs belongs to [process]
        f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)   # binary tree over syscall numbers
        for a in m.arches:
            f.add_arch(ARCHES[a])
        return f

    main = new(m.default, m.badarch)
    for name in sorted(m.rules):
        for act, conds in m.rules[name]:
            if act == m.default:
                continue  # unmatched arguments get the default anyway
            try:
                main.add_rule(act, name, *[_arg(sc, c) for c in conds])
            except OSError as e:
                raise ConfigError(SECTION, None, f"libseccomp refused the rule "
                                  f"{action_text(act)} for {name!r}: {e.strerror}") from None
    checks = None
    if m.forbid:
        checks = new(ACT_ALLOW, ACT_ALLOW)
        for name, act, conds, why in m.forbid:
            try:
                checks.add_rule(act, name, *[_arg(sc, c) for c in conds])
            except OSError as e:
                raise ConfigError(SECTION, None, f"libseccomp refused the argument check "
                                  f"{why!r}: {e.strerror}") from None
    return checks, main


def _export(f, kind: str) -> bytes:
    fd = os.memfd_create("secrun-seccomp")
    try:
        with os.fdopen(fd, "w+b", closefd=False) as fo:
            (f.export_bpf if kind == "bpf" else f.export_pfc)(fo)
        os.lseek(fd, 0, os.SEEK_SET)
        out = b""
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return out
            out += chunk
    finally:
        os.close(fd)


def stitch(checks: bytes, main: bytes) -> bytes:
    """One program: the argument checks, whose every ``ret ALLOW`` jumps to the main filter."""
    n = len(checks) // 8
    out = bytearray(checks)
    for i in range(n):
        code, jt, jf, k = struct.unpack_from("=HBBI", checks, i * 8)
        if code & 0x07 == 0x06:                     # BPF_RET
            if code != 0x06:                        # BPF_RET | BPF_A: not produced by libseccomp
                raise SecrunError("[seccomp]: unexpected BPF_RET|BPF_A in the argument checks")
            if k == ACT_ALLOW:
                struct.pack_into("=HBBI", out, i * 8, 0x05, 0, 0, n - i - 1)  # BPF_JMP|BPF_JA
    return bytes(out) + main


def compile_bpf(m: Model) -> tuple[bytes, int]:
    checks, main = build_filters(m)
    prog = _export(main, "bpf")
    if checks is not None:
        prog = stitch(_export(checks, "bpf"), prog)
    n = len(prog) // 8
    if n > BPF_MAXINSNS:
        raise ConfigError(SECTION, None, f"the filter has {n} instructions, more than the "
                          f"kernel's limit of {BPF_MAXINSNS}")
    return prog, n


def pfc(m: Model) -> str:
    checks, main = build_filters(m)
    text = ""
    if checks is not None:
        text += ("# secrun: part 1 of 1 program: argument checks.  Every 'action ALLOW' below "
                 "continues with part 2.\n" + _export(checks, "pfc").decode())
        text += "# secrun: part 2: the main filter.\n"
    return text + _export(main, "pfc").decode()


# --- OCI JSON export ------------------------------------------------------------------------------

def _oci_action(act):
    if act & 0xFFFF0000 == ACT_ERRNO and act not in (ACT_ALLOW, ACT_LOG):
        return {"action": "SCMP_ACT_ERRNO", "errnoRet": act & 0xFFFF}
    for k, v in OCI_ACTIONS.items():
        if v == act and k != "SCMP_ACT_KILL":
            return {"action": k}
    raise ValueError(hex(act))


def _oci_args(conds):
    return [{"index": c[0], "value": c[2], "valueTwo": c[3], "op": CMP_NAME[c[1]]}
            for c in conds]


def oci(m: Model) -> tuple[dict, list]:
    """The policy as an OCI ``linux.seccomp`` object (also Docker's format), and the list of
    restrictions that format cannot express exactly."""
    lost = []
    default = _oci_action(m.default)
    out = {"defaultAction": default["action"]}
    if "errnoRet" in default:
        out["defaultErrnoRet"] = default["errnoRet"]
    out["architectures"] = ["SCMP_ARCH_X86_64"] + [k for k, v in OCI_ARCH.items()
                                                    if v in m.arches]
    rules = {name: list(r) for name, r in m.rules.items()}
    # Argument checks become allow rules on the permitted values where that is exact.
    forbid: dict = {}
    for name, act, conds, why in m.forbid:
        forbid.setdefault(name, []).append((act, conds, why))
    for name, items in forbid.items():
        acts = {a for a, _, _ in items}
        if name in ("clone", "unshare"):
            mask = 0
            for _, conds, _ in items:
                mask |= conds[0][2]
            rules[name] = [(ACT_ALLOW, ((0, MASKED_EQ, mask, 0),))]
        elif name == "socket":
            denied = {c[0][2] for _, c, _ in items if c[0][1] == EQ}
            rules[name] = [(ACT_ALLOW, ((0, EQ, n, 0),)) for n in range(AF_LAST + 1)
                           if n not in denied]
        elif name == "ioctl" and len(items) == 1:
            rules[name] = [(ACT_ALLOW, ((1, 1, items[0][1][0][3], 0),))]
        else:
            lost.append(", ".join(why for _, _, why in items) + ": exported as allowed")
            continue
        if acts != {m.default}:
            lost.append(f"{name}: refused with {action_text(m.default)} instead of "
                        f"{', '.join(action_text(a) for a in sorted(acts))}")
    groups: dict = {}
    for name in sorted(rules):
        for act, conds in rules[name]:
            if act == m.default and not conds:
                continue
            groups.setdefault((act, conds), []).append(name)
    calls = []
    for (act, conds), names in groups.items():
        entry = {"names": names, **_oci_action(act)}
        if conds:
            entry["args"] = _oci_args(conds)
        calls.append(entry)
    out["syscalls"] = calls
    return out, lost


# --- the plan ------------------------------------------------------------------------------------

def import_path(ctx) -> str | None:
    cfg = ctx.config[SECTION]
    p = cfg["import"]
    if not p:
        return None
    if "\0" in p:
        raise ConfigError(SECTION, "import", f"{shown(p)}: a path cannot contain a NUL")
    p = os.path.expanduser(p)
    if not os.path.isabs(p):
        origin = ctx.origins.get(SECTION, {}).get("import", "")
        origin = origin.split(" + ")[-1]
        base = os.path.dirname(origin) if os.path.isabs(origin) else os.getcwd()
        p = os.path.join(base, p)
    return os.path.normpath(p)


def model_from_ctx(ctx) -> Model:
    cfg = ctx.config[SECTION]
    path = import_path(ctx)
    if path:
        ctx.depends_on(path)
    ctx.depends_on(GROUPS_FILE)
    ctx.depends_on(os.path.abspath(__file__))
    builtin = ctx.origins.get(SECTION, {}).get("allow") == "built-in default"
    return build_model(cfg, path, resolver(), builtin)


def compile_plan(ctx) -> dict:
    m = model_from_ctx(ctx)
    prog, n = compile_bpf(m)
    allowed = sorted(k for k in m.rules if m.base(k) is not None and not refuses(m.base(k)))
    conditional = sorted(k for k in m.rules if m.base(k) is None)
    probes = {}
    for name in PROBES:
        b = m.base(name)
        if b is not None:
            probes[name] = "allowed" if not refuses(b) else "blocked"
    return {
        "bpf": prog,
        "insns": n,
        "default": action_text(m.default),
        "other_abis": action_text(m.badarch),
        "arches": ["x86_64"] + m.arches,
        "allowed": len(allowed),
        "conditional": conditional,
        "refused": sorted(k for k in m.rules if m.base(k) is not None and refuses(m.base(k))),
        "notes": m.notes,
        "skipped": m.skipped,
        "probes": probes,
        "import": import_path(ctx) or "",
    }
