"""The ``seccomp`` plugin's Docker/OCI JSON support: ``[seccomp].import`` reads such a file into
the rule model as the base of the policy, and ``secrun seccomp export --format oci-json`` writes
the model back in that format.  Planning only."""

from __future__ import annotations

import errno as _errno
import json
import os
from typing import Any

from secrun.errors import ConfigError
from secrun.kernel import cap_names_of, last_cap, parse_cap_names

from .rules import (
    ACT_ALLOW,
    ACT_ERRNO,
    ACT_KILL_PROCESS,
    ACT_KILL_THREAD,
    ACT_LOG,
    ACT_TRAP,
    AF_LAST,
    CMP,
    CMP_NAME,
    EQ,
    MASKED_EQ,
    MAX_ERRNO,
    NE,
    SECTION,
    Check,
    Cond,
    Model,
    Resolver,
    Rule,
    action_text,
)

# Arch names: secrun's, the OCI/Docker SCMP_ARCH_* names and the Go names Docker's
# includes/excludes use.
OCI_ARCH = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X86": "x86", "SCMP_ARCH_X32": "x32",
            "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_ARM": "arm"}
GO_ARCH = {"amd64": "x86_64", "386": "x86", "x86": "x86", "x32": "x32", "arm64": "aarch64",
           "arm": "arm"}
OCI_ACTIONS = {"SCMP_ACT_ALLOW": ACT_ALLOW, "SCMP_ACT_KILL": ACT_KILL_THREAD,
               "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD, "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
               "SCMP_ACT_TRAP": ACT_TRAP, "SCMP_ACT_LOG": ACT_LOG}
NATIVE = "x86_64"


def held_caps(values: list[str | int]) -> set[str]:
    """``import_caps`` -> the ``CAP_*`` names an imported file's includes/excludes.caps are
    matched against.  Names are taken as ``[capabilities]`` takes them (any case, with or
    without CAP_, cap_<n>, "all"), for the capabilities the running kernel knows."""
    last = last_cap()
    try:
        everything, mask = parse_cap_names(values, last)
    except ValueError as e:
        raise ConfigError(SECTION, "import_caps", str(e)) from None
    if everything:
        mask = (1 << (last + 1)) - 1
    return {name.upper() for name in cap_names_of(mask)}


# --- import ------------------------------------------------------------------------------------

class _Import:
    """One file being read into a model: its path for messages, the capabilities its rules'
    includes and excludes treat as held, the running kernel's version."""

    def __init__(self, path: str, caps: set[str]) -> None:
        self.path = path
        self.caps = caps
        self.kernel = _kernel_version()

    def bad(self, msg: str) -> ConfigError:
        return ConfigError(SECTION, "import", f"{self.path}: {msg}")

    def action(self, name: object, errno_ret: object, where: str) -> int:
        if name == "SCMP_ACT_ERRNO":
            n = errno_ret if errno_ret is not None else _errno.EPERM
            if not isinstance(n, int) or not 0 <= n <= MAX_ERRNO:
                raise self.bad(f"{where}: bad errnoRet {n!r}")
            return ACT_ERRNO | n
        if name in OCI_ACTIONS:  # (an unhashable value: TypeError, "malformed")
            return OCI_ACTIONS[str(name)]
        raise self.bad(f"{where}: unsupported action {name!r} (supported: SCMP_ACT_ERRNO, "
                       f"{', '.join(OCI_ACTIONS)})")

    def arches(self, data: dict[str, Any]) -> list[str]:
        """The native arch's sub-architectures (archMap) and the listed architectures, which
        are filtered with the same rules."""
        subs: list[str] = []
        for entry in data.get("archMap") or []:
            if OCI_ARCH.get(entry.get("architecture")) == NATIVE:
                subs += entry.get("subArchitectures") or []
        subs += data.get("architectures") or []
        out = []
        for a in subs:
            arch = OCI_ARCH.get(a)
            if arch is None:
                raise self.bad(f"unknown architecture {a!r}")
            out.append(arch)
        return out

    def applies(self, rule: dict[str, Any], where: str) -> bool:
        """Whether a rule's includes/excludes select it on this machine and kernel."""
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and not any(_native(a) for a in inc["arches"]):
            return False
        if exc.get("arches") and any(_native(a) for a in exc["arches"]):
            return False
        if inc.get("caps") and not all(c.upper() in self.caps for c in inc["caps"]):
            return False
        if exc.get("caps") and any(c.upper() in self.caps for c in exc["caps"]):
            return False
        if inc.get("minKernel"):
            try:
                want = tuple(int(x) for x in str(inc["minKernel"]).split(".")[:2])
            except ValueError:
                raise self.bad(f"{where}: bad minKernel {inc['minKernel']!r}") from None
            if self.kernel < want:
                return False
        return True

    def alternatives(self, args: list[dict[str, Any]], where: str) -> list[tuple[Cond, ...]]:
        """A rule's ``args`` as alternatives: several conditions on the same argument are
        alternatives (one rule each); conditions on different arguments must all hold (one
        rule)."""
        conds = []
        for j, a in enumerate(args):
            try:
                idx, op = int(a["index"]), CMP[a["op"]]
                va, vb = int(a.get("value", 0)), int(a.get("valueTwo", 0))
            except (KeyError, TypeError, ValueError):
                raise self.bad(f"{where}.args[{j}]: needs index, value, op (SCMP_CMP_*)") \
                    from None
            if not 0 <= idx <= 5:
                raise self.bad(f"{where}.args[{j}]: index {idx} out of range 0..5")
            conds.append(Cond(idx, op, va, vb))
        idxs = [c.arg for c in conds]
        return [(c,) for c in conds] if len(set(idxs)) < len(idxs) else [tuple(conds)]

    def rule(self, m: Model, i: int, rule: object, resolve: Resolver) -> None:
        where = f"syscalls[{i}]"
        if not isinstance(rule, dict):
            raise self.bad(f"{where}: expected an object")
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        if not names or not all(isinstance(n, str) for n in names):
            raise self.bad(f"{where}: no syscall names")
        if not self.applies(rule, where):
            return
        act = self.action(rule.get("action"), rule.get("errnoRet"), where)
        alternatives = self.alternatives(rule.get("args") or [], where)
        for n in names:
            if resolve(n) is None:
                m.skip(n)
                continue
            cur = m.rules.setdefault(n, [])
            for alt in alternatives:
                if not alt:
                    cur[:] = [Rule(act, ())]
                elif not (len(cur) == 1 and not cur[0].conds):
                    cur.append(Rule(act, alt))
            m.origin[n] = f"import: {os.path.basename(self.path)}"


def _native(arch: str) -> bool:
    return GO_ARCH.get(arch, arch) == NATIVE or arch in (NATIVE, "amd64")


def _kernel_version() -> tuple[int, ...]:
    rel = os.uname().release.split("-")[0].split(".")
    try:
        return tuple(int(x) for x in rel[:2])
    except ValueError:
        return (0, 0)


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigError(SECTION, "import", f"{path}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(SECTION, "import", f"{path}: malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(SECTION, "import", f"{path}: expected a JSON object with "
                          f"defaultAction and syscalls")
    return data


def _import(m: Model, path: str, caps: set[str], resolve: Resolver) -> None:
    imp = _Import(path, caps)
    data = _load(path)
    if "defaultAction" not in data:
        raise imp.bad("missing defaultAction")
    m.default = imp.action(data["defaultAction"], data.get("defaultErrnoRet"), "defaultAction")
    for arch in imp.arches(data):
        if arch in ("x86", "x32") and arch not in m.arches:
            m.arches.append(arch)
    calls = data.get("syscalls") or []
    if not isinstance(calls, list):
        raise imp.bad("syscalls must be a list")
    for i, rule in enumerate(calls):
        imp.rule(m, i, rule, resolve)


def import_file(m: Model, path: str, caps: set[str], resolve: Resolver) -> None:
    """``m`` from a Docker/OCI seccomp file; ``caps``: the capabilities its rules' includes
    and excludes treat as held (:func:`held_caps`)."""
    try:
        _import(m, path, caps, resolve)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        # a field of the wrong JSON type somewhere in the file (the checks name the common
        # mistakes; this names the rest)
        raise ConfigError(SECTION, "import", f"{path}: malformed Docker/OCI seccomp "
                          f"profile ({type(e).__name__}: {str(e)[:120]})") from None


# --- export ------------------------------------------------------------------------------------

def _oci_action(act: int) -> dict[str, Any]:
    if act & 0xFFFF0000 == ACT_ERRNO and act not in (ACT_ALLOW, ACT_LOG):
        return {"action": "SCMP_ACT_ERRNO", "errnoRet": act & 0xFFFF}
    for k, v in OCI_ACTIONS.items():
        if v == act and k != "SCMP_ACT_KILL":
            return {"action": k}
    raise ValueError(hex(act))


def _oci_args(conds: tuple[Cond, ...]) -> list[dict[str, Any]]:
    return [{"index": c.arg, "value": c.a, "valueTwo": c.b, "op": CMP_NAME[c.op]}
            for c in conds]


def _exact_rules(name: str, items: list[Check]) -> list[Rule] | None:
    """The allow rules on the permitted values that are exactly a call's argument checks, or
    None where the format cannot say it."""
    if name in ("clone", "unshare"):
        mask = 0
        for c in items:
            mask |= c.conds[0].a
        return [Rule(ACT_ALLOW, (Cond(0, MASKED_EQ, mask, 0),))]
    if name == "socket":
        denied = {c.conds[0].a for c in items if c.conds[0].op == EQ}
        return [Rule(ACT_ALLOW, (Cond(0, EQ, n, 0),)) for n in range(AF_LAST + 1)
                if n not in denied]
    if name == "ioctl" and len(items) == 1:
        return [Rule(ACT_ALLOW, (Cond(1, NE, items[0].conds[0].b, 0),))]
    return None


def _rules_with_checks(m: Model, lost: list[str]) -> dict[str, list[Rule]]:
    """The main filter's rules, with the argument checks made allow rules on the permitted
    values where that is exact (``lost``: what could not be said so)."""
    rules = {name: list(r) for name, r in m.rules.items()}
    by_call: dict[str, list[Check]] = {}
    for check in m.checks:
        by_call.setdefault(check.call, []).append(check)
    for name, items in by_call.items():
        exact = _exact_rules(name, items)
        if exact is None:
            lost.append(", ".join(c.why for c in items) + ": exported as allowed")
            continue
        rules[name] = exact
        acts = {c.action for c in items}
        if acts != {m.default}:
            lost.append(f"{name}: refused with {action_text(m.default)} instead of "
                        f"{', '.join(action_text(a) for a in sorted(acts))}")
    return rules


def export(m: Model) -> tuple[dict[str, Any], list[str]]:
    """The policy as an OCI ``linux.seccomp`` object (also Docker's format), and the list of
    restrictions that format cannot express exactly."""
    lost: list[str] = []
    default = _oci_action(m.default)
    out: dict[str, Any] = {"defaultAction": default["action"]}
    if "errnoRet" in default:
        out["defaultErrnoRet"] = default["errnoRet"]
    out["architectures"] = ["SCMP_ARCH_X86_64"] + [k for k, v in OCI_ARCH.items()
                                                    if v in m.arches]
    rules = _rules_with_checks(m, lost)
    groups: dict[tuple[int, tuple[Cond, ...]], list[str]] = {}
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
