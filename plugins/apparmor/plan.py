"""Planning for the ``apparmor`` plugin: the ``[apparmor]`` schema and ``secrun_compile``
(resolving ``profile_file`` and compiling it with ``apparmor_parser`` to the kernel's binary
format, so that a launch never spawns the parser).

Never imported by a cached launch (nor ``re``, ``shutil`` or ``subprocess``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import TypedDict
from zlib import crc32

from secrun import hookimpl
from secrun.compose import BUNDLED, check_safe
from secrun.context import PlanContext
from secrun.errors import ConfigError, ProfileError
from secrun.facts import Facts
from secrun.schema import Field, Section

SECTION = "apparmor"
CWD_VAR = "@{secrun_cwd}"
# Characters that AppArmor reads as pattern syntax or cannot quote in a variable's value.
_PATTERN_CHARS = set('*?[]{}^"\\,#') | {chr(c) for c in range(32)} | {"\x7f"}


class ApparmorPlan(TypedDict):
    file: str | None  # the profile file secrun loads (absolute), None: only `profile`
    policy: bytes | None  # its binary policy (apparmor_parser -QK -S), None: nothing to load
    names: list[str]  # the profile names the file defines
    renamed: dict[str, str]  # name in the file -> name loaded (per-directory, see CWD_VAR)
    error: str | None  # why the file cannot be loaded on this host (reported at launch)
    target: str  # the profile the workload enters at exec


def _check_name(value: str) -> None:
    if value and (any(c.isspace() or ord(c) < 32 for c in value) or value == "unconfined"):
        raise ValueError(f"{value!r} is not an AppArmor profile name secrun can enter "
                         f"(no spaces or control characters, not 'unconfined')")


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "AppArmor confinement of the workload (needs an AppArmor kernel).", [
        Field("profile", str, "",
              "AppArmor profile the workload enters at exec (aa_change_onexec); with "
              "profile_file, one of the names that file defines (default: its only one)",
              check=_check_name),
        Field("profile_file", str, "",
              "AppArmor profile file secrun compiles and loads before fork: a name shipped "
              "beside the profiles (\"secrun-strict\"), or a path; it stays loaded after the run"),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts()


# --- the profile file ----------------------------------------------------------------------------

def _resolve_file(value: str, origin: str, cwd: str) -> str:
    """The absolute path of ``profile_file``, relative to the secrun profile that set it."""
    base = os.path.dirname(origin) if origin and os.path.isabs(origin) else cwd
    if value.startswith("/"):
        return value
    if "/" not in value:
        tried = [os.path.join(base, "apparmor", value), os.path.join(BUNDLED, "apparmor", value)]
        for path in tried:
            if os.path.isfile(path):
                return os.path.realpath(path)
        raise ConfigError(SECTION, "profile_file",
                          f"no AppArmor profile file {value!r} (looked in "
                          f"{', '.join(os.path.dirname(p) for p in tried)})")
    return os.path.normpath(os.path.join(base, value))


def _parser() -> str | None:
    return shutil.which("apparmor_parser") or next(
        (p for p in ("/usr/sbin/apparmor_parser", "/sbin/apparmor_parser") if os.path.exists(p)),
        None)


def _run_parser(parser: str, args: list[str], text: str, path: str,
                preamble_lines: int) -> bytes:
    """Run ``apparmor_parser ARGS`` on ``text`` (stdin); return stdout bytes, or raise
    ConfigError with the parser's message, its line number mapped back to ``path``."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}
    cp = subprocess.run([parser, *args], input=text.encode(), capture_output=True, env=env)
    if cp.returncode == 0:
        return cp.stdout
    lines = [ln for ln in cp.stderr.decode(errors="replace").splitlines()
             if ln.strip() and not ln.startswith("Cache read/write disabled")]
    msg = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else
               f"apparmor_parser exited with status {cp.returncode}")

    def line(m: re.Match[str]) -> str:
        return f"at line {int(m.group(1)) - preamble_lines} of {path}"

    msg = msg.replace("AppArmor parser error", "apparmor_parser error").replace(" for stdin", "")
    if " at line " in msg:
        msg = re.sub(r"at line (\d+)", line, msg, count=1)
    else:
        msg = f"{path}: {msg}"
    raise ConfigError(SECTION, "profile_file", msg)


def _include_deps(ctx: PlanContext, preprocessed: str) -> None:
    """Record the files the profile includes (abstractions, tunables), so that editing one
    invalidates the cached binary policy."""
    for m in re.finditer(r'^\s*#{0,2}include(?:d)?\s+(?:if\s+exists\s+)?([<"])([^>"]+)[>"]',
                         preprocessed, re.M):
        rel = m.group(2)
        path = rel if rel.startswith("/") else os.path.join("/etc/apparmor.d", rel)
        ctx.depends_on(path)
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                ctx.depends_on(os.path.join(path, name))


def _read_file(ctx: PlanContext, path: str) -> str:
    ctx.depends_on(path)
    try:
        check_safe(path)  # as root, refuse a policy file that others could have written
        with open(path, encoding="utf-8") as f:
            return f.read()
    except ProfileError as e:
        raise ConfigError(SECTION, "profile_file",
                          str(e).replace("profile file", "AppArmor profile file")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(SECTION, "profile_file",
                          f"{path}: {getattr(e, 'strerror', e)}") from None


def _cwd_preamble(ctx: PlanContext, path: str, text: str) -> tuple[str, str | None]:
    """(the text defining ``@{secrun_cwd}``, the per-directory suffix of the profile names),
    or ("", None) for a file that does not use the variable."""
    if CWD_VAR not in text:
        return "", None
    cwd = ctx.cwd
    bad = sorted(set(cwd) & _PATTERN_CHARS)
    if bad:
        raise ConfigError(SECTION, "profile_file",
                          f"{path} uses {CWD_VAR}, but the working directory {cwd!r} "
                          f"contains characters AppArmor reads as patterns ({''.join(bad)!r})")
    return f'@{{secrun_cwd}} = "{cwd.rstrip("/")}"\n', f"{crc32(cwd.encode()):08x}"


def _rename(path: str, text: str, names: list[str], suffix: str) -> tuple[str, dict[str, str]]:
    """The file's text with each profile given its per-directory name, so that runs from
    different directories never replace each other's profile; and {name: new name}."""
    renamed = {}
    for n in names:
        new = f"{n}.{suffix}"
        text, count = re.subn(r"^(\s*profile\s+)" + re.escape(n) + r"(?=[\s{])",
                              r"\g<1>" + new.replace("\\", "\\\\"), text, flags=re.M)
        if count != 1:
            raise ConfigError(SECTION, "profile_file",
                              f"{path} uses {CWD_VAR}: declare each profile as "
                              f"'profile NAME ... {{' on its own line ({n!r} is not)")
        renamed[n] = new
    return text, renamed


def _compile_file(ctx: PlanContext, path: str) -> ApparmorPlan:
    text = _read_file(ctx, path)
    parser = _parser()
    if parser is None:
        # Not a profile error: on a host without AppArmor a best-effort section must still
        # launch.  prepare reports it (after saying whether AppArmor is active at all).
        return ApparmorPlan(file=path, policy=None, names=[], renamed={}, target="",
                            error="apparmor_parser not found (install the Debian package "
                                  "'apparmor')")
    preamble, suffix = _cwd_preamble(ctx, path, text)
    n_pre = preamble.count("\n")
    names = _run_parser(parser, ["-QK", "-N"], preamble + text, path, n_pre).decode().split()
    if not names:
        raise ConfigError(SECTION, "profile_file", f"{path}: defines no AppArmor profile")
    renamed = {n: n for n in names}
    if suffix:
        text, renamed = _rename(path, text, names, suffix)
    full = preamble + text
    policy = _run_parser(parser, ["-QK", "-q", "-S"], full, path, n_pre)
    pre = _run_parser(parser, ["-QK", "-p"], full, path, n_pre).decode(errors="replace")
    _include_deps(ctx, pre)
    return ApparmorPlan(file=path, policy=policy, names=names, renamed=renamed, error=None,
                        target="")


# --- the plan ------------------------------------------------------------------------------------

def _target(plan: ApparmorPlan, profile: str) -> str:
    """The profile the workload enters: ``profile`` (renamed as loaded), else the file's only
    one."""
    if not plan["names"]:
        # no file, or no parser to read it: the name given, or a best guess for the audit
        return profile or os.path.basename(plan["file"] or "")
    if not profile:
        if len(plan["names"]) != 1:
            raise ConfigError(SECTION, "profile",
                              f"{plan['file']} defines several profiles "
                              f"({', '.join(plan['names'])}): name the one to enter")
        return plan["renamed"][plan["names"][0]]
    if profile not in plan["renamed"]:
        raise ConfigError(SECTION, "profile",
                          f"{profile!r} is not defined in {plan['file']} "
                          f"(it defines {', '.join(plan['names'])})")
    return plan["renamed"][profile]


@hookimpl
def secrun_compile(ctx: PlanContext) -> ApparmorPlan:
    cfg = ctx.config[SECTION]
    profile, pfile = cfg["profile"], cfg["profile_file"]
    if not profile and not pfile:
        raise ConfigError(SECTION, "profile",
                          "set profile (a loaded AppArmor profile) or profile_file (one to load)")
    plan = ApparmorPlan(file=None, policy=None, names=[], renamed={}, error=None, target="")
    if pfile:
        origin = ctx.origins.get(SECTION, {}).get("profile_file", "")
        plan = _compile_file(ctx, _resolve_file(pfile, origin, ctx.cwd))
    plan["target"] = _target(plan, profile)
    return plan
