"""The ``seccomp`` plugin's filter building: the rule model (:mod:`.rules`) -> one classic-BPF
program, with libseccomp.

Imported only at planning time (``secrun_compile``, ``secrun seccomp export``): pyseccomp's
import alone costs ~35 ms, which a cached launch never pays.

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

from __future__ import annotations

import ctypes
import os
import struct
from typing import Any

from secrun.errors import ConfigError, SecrunError

from .rules import ACT_ALLOW, SECTION, Cond, Model, Resolver, action_text

BPF_MAXINSNS = 4096
# Values are libseccomp's (AUDIT_ARCH_*).
ARCHES = {"x86_64": 0xC000003E, "x86": 0x40000003, "x32": 0x4000003E,
          "aarch64": 0xC00000B7, "arm": 0x40000028}


def lib() -> Any:
    """pyseccomp, imported on first use (planning only)."""
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as e:
        raise SecrunError(f"[seccomp]: cannot compile the filter: pyseccomp/libseccomp is not "
                          f"usable ({e}); install the Debian package libseccomp2") from None
    return pyseccomp


def resolver() -> Resolver:
    """name -> syscall number on the native arch (negative: a pseudo number for a call this
    arch does not have, which libseccomp accepts and ignores); None when libseccomp does not
    know the name at all."""
    fn = lib()._libseccomp.seccomp_syscall_resolve_name_arch
    fn.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    fn.restype = ctypes.c_int
    cache: dict[str, int | None] = {}

    def resolve(name: str) -> int | None:
        if name not in cache:
            # (a C string ends at NUL: "read\0x" would resolve as "read")
            n = fn(0, name.encode()) if name.isascii() and name.isprintable() else -1
            cache[name] = None if n == -1 else n
        return cache[name]

    return resolve


def _args(sc: Any, conds: tuple[Cond, ...]) -> list[Any]:
    return [sc.Arg(c.arg, c.op, c.a, c.b) for c in conds]


def _new(sc: Any, m: Model, default: int, badarch: int) -> Any:
    f = sc.SyscallFilter(default)
    f.set_attr(sc.Attr.ACT_BADARCH, badarch)
    f.set_attr(sc.Attr.CTL_NNP, 0)        # no_new_privs belongs to [process]
    f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)   # binary tree over syscall numbers
    for a in m.arches:
        f.add_arch(ARCHES[a])
    return f


def build_filters(m: Model) -> tuple[Any, Any]:
    """(argument checks or None, main filter) as pyseccomp filters."""
    sc = lib()
    main = _new(sc, m, m.default, m.badarch)
    for name in sorted(m.rules):
        for act, conds in m.rules[name]:
            if act == m.default:
                continue  # unmatched arguments get the default anyway
            try:
                main.add_rule(act, name, *_args(sc, conds))
            except OSError as e:
                raise ConfigError(SECTION, None, f"libseccomp refused the rule "
                                  f"{action_text(act)} for {name!r}: {e.strerror}") from None
    checks = None
    if m.checks:
        checks = _new(sc, m, ACT_ALLOW, ACT_ALLOW)
        for check in m.checks:
            try:
                checks.add_rule(check.action, check.call, *_args(sc, check.conds))
            except OSError as e:
                raise ConfigError(SECTION, None, f"libseccomp refused the argument check "
                                  f"{check.why!r}: {e.strerror}") from None
    return checks, main


def _export(f: Any, kind: str) -> bytes:
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
        code, _jt, _jf, k = struct.unpack_from("=HBBI", checks, i * 8)
        if code & 0x07 == 0x06:                     # BPF_RET
            if code != 0x06:                        # BPF_RET | BPF_A: not produced by libseccomp
                raise SecrunError("[seccomp]: unexpected BPF_RET|BPF_A in the argument checks")
            if k == ACT_ALLOW:
                struct.pack_into("=HBBI", out, i * 8, 0x05, 0, 0, n - i - 1)  # BPF_JMP|BPF_JA
    return bytes(out) + main


def compile_bpf(m: Model) -> tuple[bytes, int]:
    """(the program, its number of instructions)."""
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
    """The program as libseccomp's pseudo filter code (readable), in its two parts."""
    checks, main = build_filters(m)
    text = ""
    if checks is not None:
        text += ("# secrun: part 1 of 1 program: argument checks.  Every 'action ALLOW' below "
                 "continues with part 2.\n" + _export(checks, "pfc").decode())
        text += "# secrun: part 2: the main filter.\n"
    return text + _export(main, "pfc").decode()
