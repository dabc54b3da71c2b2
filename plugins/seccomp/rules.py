"""The ``seccomp`` plugin's rule model: profile values -> actions, named groups, and the
per-call rules and argument checks :mod:`.bpf` compiles.  Planning only.

Two sets of rules (see :mod:`.bpf` for why the filter is built in two parts):

- ``Model.rules``: the *main filter*, {syscall name: [Rule(action, conditions)]}; a rule with
  no conditions is the call's unconditional action;
- ``Model.checks``: the *argument checks*, rules that look at arguments and must take
  precedence over an unconditional allow: clone/unshare namespace flags, socket address
  families, denied ioctl requests.
"""

from __future__ import annotations

import errno as _errno
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

from secrun.errors import ConfigError, shown
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

# libseccomp comparison operators (enum scmp_compare)
CMP = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
       "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
CMP_NAME = {v: k for k, v in CMP.items()}
NE, EQ, GT, MASKED_EQ = 1, 4, 6, 7

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

Resolver = Callable[[str], int | None]


class Cond(NamedTuple):
    """A condition on one argument, as libseccomp's ``scmp_arg_cmp``."""

    arg: int  # index 0..5
    op: int  # CMP value
    a: int  # datum_a (the mask for MASKED_EQ)
    b: int  # datum_b


class Rule(NamedTuple):
    action: int
    conds: tuple[Cond, ...]  # (): unconditional


class Check(NamedTuple):
    """An argument check: ``action`` for ``call`` when ``conds`` hold; ``why`` for messages."""

    call: str
    action: int
    conds: tuple[Cond, ...]
    why: str


# --- actions -------------------------------------------------------------------------------

def _errno_of_text(text: str, key: str) -> int:
    t = text.strip()
    if is_digits(t):
        try:
            return parse_digits(t, MAX_ERRNO)
        except ValueError:
            return MAX_ERRNO + 1  # too large: refused by the caller
    found = getattr(_errno, t.upper(), None) if t.isascii() and t[:1] in "Ee" else None
    if not isinstance(found, int):
        raise ConfigError(SECTION, key, f"unknown errno {shown(text)} (use a name such "
                          f"as EPERM, ENOSYS, ENOTSUP, or a number 1..{MAX_ERRNO})")
    return found


def errno_number(text: str | int, key: str) -> int:
    """'EPERM' / 'eperm' / '95' / 95 -> 95; ConfigError naming the key otherwise.  A number is
    ASCII digits, 1 .. MAX_ERRNO (0 would make a refused call return success)."""
    n = text if isinstance(text, int) else _errno_of_text(text, key)
    if not 1 <= n <= MAX_ERRNO:
        raise ConfigError(SECTION, key, f"errno {shown(text)} out of range 1..{MAX_ERRNO}")
    return n


def parse_action(value: str | int, key: str) -> int:
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


_ACTION_TEXT = {ACT_ALLOW: "allow", ACT_LOG: "log", ACT_KILL_PROCESS: "kill_process",
                ACT_KILL_THREAD: "kill_thread", ACT_TRAP: "trap"}


def action_text(act: int) -> str:
    if act in _ACTION_TEXT:
        return _ACTION_TEXT[act]
    if act & 0xFFFF0000 == ACT_ERRNO:
        n = act & 0xFFFF
        return f"errno:{_errno.errorcode.get(n, n)}"
    return hex(act)


def refuses(act: int) -> bool:
    return act not in (ACT_ALLOW, ACT_LOG)


# --- groups ----------------------------------------------------------------------------------

def load_groups() -> dict[str, Any]:
    """{"@name": {"help": text, "syscalls": [names and @groups]}}."""
    with open(GROUPS_FILE) as f:
        groups: dict[str, Any] = json.load(f)
    return groups


def expand(name: str, groups: dict[str, Any], key: str, seen: tuple[str, ...] = ()) -> list[str]:
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


# --- the model ---------------------------------------------------------------------------------

class Model:
    def __init__(self) -> None:
        self.default = ACT_ERRNO | _errno.EPERM
        self.badarch = ACT_KILL_PROCESS
        self.arches: list[str] = []             # extra arches besides the native one
        self.rules: dict[str, list[Rule]] = {}  # main filter
        self.checks: list[Check] = []           # argument checks
        self.origin: dict[str, str] = {}        # syscall -> where its action came from
        self.skipped: list[str] = []            # names libseccomp does not know (groups, imports)
        self.restrictions: list[str] = []       # the argument checks in words, for the audit

    def base(self, name: str) -> int | None:
        """The unconditional action of a call (None: conditional or unlisted)."""
        rules = self.rules.get(name)
        if rules is None:
            return self.default
        if len(rules) == 1 and not rules[0].conds:
            return rules[0].action
        return None

    def allowed(self, name: str) -> bool:
        """Whether the call is allowed whatever its arguments."""
        b = self.base(name)
        return b is not None and not refuses(b)

    def skip(self, name: str) -> None:
        if name not in self.skipped:
            self.skipped.append(name)


def add_arches(m: Model, values: list[str]) -> None:
    for a in values:
        arch = a.lower().replace("-", "_")
        if arch not in ("x86", "x32"):
            raise ConfigError(SECTION, "arches", f"unknown or unsupported arch {a!r} (on x86_64: "
                              f"x86 for the i386 int 0x80 ABI, x32)")
        if arch not in m.arches:
            m.arches.append(arch)


def add_profile_rules(m: Model, cfg: dict[str, Any], resolve: Resolver,
                      with_allow: bool = True) -> None:
    """The profile's allow, deny and actions on top of what ``m`` has (an imported file), then
    its argument restrictions.  Precedence, lowest first: import < allow < deny < actions."""
    groups = load_groups()

    def set_action(entry: str, act: int, key: str) -> None:
        for n in expand(entry, groups, key):
            if resolve(n) is None:
                if not entry.startswith("@"):
                    raise ConfigError(SECTION, key, f"unknown syscall {n!r} (not known to "
                                      f"libseccomp on this system)")
                m.skip(n)
                continue
            m.rules[n] = [Rule(act, ())]
            m.origin[n] = f"{key}: {entry}"

    for entry in cfg["allow"] if with_allow else ():
        set_action(entry, ACT_ALLOW, "allow")
    deny_act = parse_action(cfg["deny_action"], "deny_action")
    for entry in cfg["deny"]:
        set_action(entry, deny_act, "deny")
    for entry, value in cfg["actions"].items():
        set_action(entry, parse_action(value, "actions"), "actions")
    add_restrictions(m, cfg, deny_act)


# --- argument restrictions ---------------------------------------------------------------------

def add_restrictions(m: Model, cfg: dict[str, Any], deny_act: int) -> None:
    if deny_act == ACT_ALLOW and (cfg["deny_namespaces"] or cfg["deny_ioctls"]):
        raise ConfigError(SECTION, "deny_action", "'allow' cannot be the action of denied "
                          "namespaces or ioctls")
    _deny_namespaces(m, cfg["deny_namespaces"], deny_act)
    _address_families(m, cfg["address_families"])
    _deny_ioctls(m, cfg["deny_ioctls"], deny_act)
    _personalities(m, cfg["personalities"])


def _deny_namespaces(m: Model, names: list[str], deny_act: int) -> None:
    """clone/unshare with a denied CLONE_NEW* flag are refused; clone3 passes its flags in
    memory the filter cannot read, so it answers ENOSYS and libc falls back to clone."""
    mask = 0
    for ns in names:
        flag = NAMESPACE_FLAGS.get(ns.lower().removeprefix("clone_new"))
        if flag is None:
            raise ConfigError(SECTION, "deny_namespaces", f"unknown namespace {ns!r} (one of "
                              f"{', '.join(NAMESPACE_FLAGS)})")
        mask |= flag
    if not mask:
        return
    for call in ("clone", "unshare"):
        if m.allowed(call):
            m.checks += [Check(call, deny_act, (Cond(0, MASKED_EQ, flag, flag),),
                               f"{call} with CLONE_NEW{ns.upper()}")
                         for ns, flag in NAMESPACE_FLAGS.items() if mask & flag]
    if m.allowed("clone3"):
        m.rules["clone3"] = [Rule(ACT_ERRNO | _errno.ENOSYS, ())]
        m.origin["clone3"] = "deny_namespaces (clone3 flags cannot be inspected)"
    m.restrictions.append("no new namespaces: " + ", ".join(names)
                          + " (clone/unshare flags; clone3 -> ENOSYS)")


def _address_families(m: Model, families: list[str]) -> None:
    """socket() with any other family answers EAFNOSUPPORT, as the kernel does for a family it
    does not support, so programs fall back gracefully."""
    if not families:
        return
    allowed = set()
    for fam in families:
        n = ADDRESS_FAMILIES.get(fam.upper() if fam.upper() != "AF_DECNET" else "AF_DECnet")
        if n is None:
            raise ConfigError(SECTION, "address_families", f"unknown address family {fam!r}"
                              f" (e.g. AF_UNIX, AF_INET, AF_INET6, AF_NETLINK)")
        allowed.add(n)
    if m.allowed("socket"):
        act = ACT_ERRNO | _errno.EAFNOSUPPORT
        m.checks += [Check("socket", act, (Cond(0, EQ, n, 0),), f"socket family {n}")
                     for n in range(AF_LAST + 1) if n not in allowed]
        m.checks.append(Check("socket", act, (Cond(0, GT, AF_LAST, 0),),
                              "socket family > AF_MCTP"))
    m.restrictions.append("socket families: only " + ", ".join(families))


def _deny_ioctls(m: Model, requests: list[str | int], deny_act: int) -> None:
    """Compared on the low 32 bits, as the kernel reads ``unsigned int cmd``.  (The values are
    checked whether or not ioctl is allowed.)"""
    numbers = [_ioctl_request(req) for req in requests]
    if not numbers or not m.allowed("ioctl"):
        return
    m.checks += [Check("ioctl", deny_act, (Cond(1, MASKED_EQ, U32_MAX, n),), f"ioctl {req}")
                 for req, n in zip(requests, numbers, strict=True)]
    m.restrictions.append("ioctl denied: " + ", ".join(map(str, requests)))


def _personalities(m: Model, personalities: list[str | int]) -> None:
    """Only the listed values (32 bits: the kernel reads ``unsigned int``)."""
    values = [_personality(p) for p in personalities]
    if not values or not m.allowed("personality"):
        return
    if m.default == ACT_ALLOW:
        raise ConfigError(SECTION, "personalities", "limiting personality() needs a "
                          "default_action that refuses (the unlisted values get it)")
    act = m.base("personality")
    assert act is not None  # (allowed)
    m.rules["personality"] = [Rule(act, (Cond(0, MASKED_EQ, U32_MAX, v),))
                              for v in dict.fromkeys(values)]
    m.restrictions.append("personality: only " + ", ".join(map(str, personalities)))


def _u32_of_text(text: str) -> int | None:
    t = text.strip()
    if t[:2] in ("0x", "0X") and t[2:] and all(c in "0123456789abcdefABCDEF" for c in t[2:]):
        return int(t[2:], 16) if len(t[2:].lstrip("0")) <= 8 else U32_MAX + 1
    if is_digits(t):
        try:
            return parse_digits(t, U32_MAX)
        except ValueError:
            return U32_MAX + 1
    return None


def _u32(value: str | int, key: str, what: str) -> int | None:
    """A number for a 32-bit argument: an integer, or text of ASCII decimal digits or 0x and
    hex digits; None for text that is no number.  ConfigError when it does not fit 32 bits
    unsigned (the kernel would compare only the low 32 bits: another value)."""
    n = value if isinstance(value, int) else _u32_of_text(value)
    if n is not None and not 0 <= n <= U32_MAX:
        raise ConfigError(SECTION, key, f"{what} {shown(value)} does not fit 32 bits unsigned "
                          f"(0 .. {U32_MAX:#x}), which is all the kernel compares")
    return n


def _ioctl_request(req: str | int) -> int:
    name = req.strip().upper() if isinstance(req, str) and req.isascii() else None
    if name in IOCTLS:
        return IOCTLS[name]
    n = _u32(req, "deny_ioctls", "ioctl request")
    if n is None:
        raise ConfigError(SECTION, "deny_ioctls", f"unknown ioctl {shown(req)} (known: "
                          f"{', '.join(IOCTLS)}, or a number)")
    return n


def _personality(p: str | int) -> int:
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
