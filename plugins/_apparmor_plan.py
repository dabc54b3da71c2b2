"""Planning half of the ``apparmor`` plugin: the ``[apparmor]`` schema, ``secrun_compile``
(resolving ``profile_file`` and compiling it with ``apparmor_parser``) and ``secrun_audit``.

Imported lazily by the hooks in :mod:`secrun.plugins.apparmor`, so a cached launch never loads
it (nor ``re``, ``shutil`` or ``subprocess``); loading the policy and entering the profile stay
in that module.
"""

import os

from secrun.errors import ConfigError, NotAvailable
from secrun.plugins.apparmor import SECTION, _check_available, _loaded_mode
from secrun.schema import Field, Section

CWD_VAR = "@{secrun_cwd}"
# Characters that AppArmor reads as pattern syntax or cannot quote in a variable's value.
_PATTERN_CHARS = set('*?[]{}^"\\,#') | {chr(c) for c in range(32)} | {"\x7f"}


def _check_name(value):
    if value and (any(c.isspace() or ord(c) < 32 for c in value) or value == "unconfined"):
        raise ValueError(f"{value!r} is not an AppArmor profile name secrun can enter "
                         f"(no spaces or control characters, not 'unconfined')")


def sections():
    return [Section(SECTION, "AppArmor confinement of the workload (needs an AppArmor kernel).", [
        Field("profile", str, "",
              "AppArmor profile the workload enters at exec (aa_change_onexec); with "
              "profile_file, one of the names that file defines (default: its only one)",
              check=_check_name),
        Field("profile_file", str, "",
              "AppArmor profile file secrun compiles and loads before fork: a name shipped "
              "beside the profiles (\"secrun-strict\"), or a path; it stays loaded after the run"),
    ])]


# --- planning --------------------------------------------------------------------------------

def _resolve_file(value, origin, cwd):
    """The absolute path of ``profile_file``, relative to the secrun profile that set it."""
    from secrun.compose import BUNDLED

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


def _parser():
    import shutil

    return shutil.which("apparmor_parser") or next(
        (p for p in ("/usr/sbin/apparmor_parser", "/sbin/apparmor_parser") if os.path.exists(p)),
        None)


def _run_parser(parser, args, text, path, preamble_lines):
    """Run ``apparmor_parser ARGS`` on ``text`` (stdin); return stdout bytes, or raise
    ConfigError with the parser's message, its line number mapped back to ``path``."""
    import re
    import subprocess

    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}
    cp = subprocess.run([parser, *args], input=text.encode(), capture_output=True, env=env)
    if cp.returncode == 0:
        return cp.stdout
    lines = [ln for ln in cp.stderr.decode(errors="replace").splitlines()
             if ln.strip() and not ln.startswith("Cache read/write disabled")]
    msg = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else
               f"apparmor_parser exited with status {cp.returncode}")

    def line(m):
        return f"at line {int(m.group(1)) - preamble_lines} of {path}"

    msg = msg.replace("AppArmor parser error", "apparmor_parser error").replace(" for stdin", "")
    if " at line " in msg:
        msg = re.sub(r"at line (\d+)", line, msg, count=1)
    else:
        msg = f"{path}: {msg}"
    raise ConfigError(SECTION, "profile_file", msg)


def _include_deps(ctx, preprocessed: str):
    """Record the files the profile includes (abstractions, tunables), so that editing one
    invalidates the cached binary policy."""
    import re

    for m in re.finditer(r'^\s*#{0,2}include(?:d)?\s+(?:if\s+exists\s+)?([<"])([^>"]+)[>"]',
                         preprocessed, re.M):
        rel = m.group(2)
        path = rel if rel.startswith("/") else os.path.join("/etc/apparmor.d", rel)
        ctx.depends_on(path)
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                ctx.depends_on(os.path.join(path, name))


def _compile_file(ctx, path):
    import re
    from zlib import crc32

    from secrun.compose import check_safe
    from secrun.errors import ProfileError

    ctx.depends_on(path)
    try:
        check_safe(path)  # as root, refuse a policy file that others could have written
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except ProfileError as e:
        raise ConfigError(SECTION, "profile_file",
                          str(e).replace("profile file", "AppArmor profile file")) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(SECTION, "profile_file", f"{path}: {getattr(e, 'strerror', e)}") from None
    parser = _parser()
    if parser is None:
        # Not a profile error: on a host without AppArmor a best-effort section must still
        # launch.  prepare reports it (after saying whether AppArmor is active at all).
        return {"file": path, "policy": None, "names": [], "renamed": {},
                "error": "apparmor_parser not found (install the Debian package 'apparmor')"}
    preamble = ""
    suffix = None
    if CWD_VAR in text:
        cwd = ctx.cwd
        bad = sorted(set(cwd) & _PATTERN_CHARS)
        if bad:
            raise ConfigError(SECTION, "profile_file",
                              f"{path} uses {CWD_VAR}, but the working directory {cwd!r} "
                              f"contains characters AppArmor reads as patterns ({''.join(bad)!r})")
        preamble = f'@{{secrun_cwd}} = "{cwd.rstrip("/")}"\n'
        suffix = "%08x" % crc32(cwd.encode())
    n_pre = preamble.count("\n")
    names = _run_parser(parser, ["-QK", "-N"], preamble + text, path, n_pre).decode().split()
    if not names:
        raise ConfigError(SECTION, "profile_file", f"{path}: defines no AppArmor profile")
    renamed = {n: n for n in names}
    if suffix:
        # The compiled policy depends on the working directory: give it a per-directory name,
        # so that runs from different directories never replace each other's profile.
        for n in names:
            new = f"{n}.{suffix}"
            text, count = re.subn(r"^(\s*profile\s+)" + re.escape(n) + r"(?=[\s{])",
                                  r"\g<1>" + new.replace("\\", "\\\\"), text, flags=re.M)
            if count != 1:
                raise ConfigError(SECTION, "profile_file",
                                  f"{path} uses {CWD_VAR}: declare each profile as "
                                  f"'profile NAME ... {{' on its own line ({n!r} is not)")
            renamed[n] = new
    full = preamble + text
    policy = _run_parser(parser, ["-QK", "-q", "-S"], full, path, n_pre)
    pre = _run_parser(parser, ["-QK", "-p"], full, path, n_pre).decode(errors="replace")
    _include_deps(ctx, pre)
    return {"file": path, "policy": policy, "names": names, "renamed": renamed, "error": None}


def compile_plan(ctx) -> dict:
    cfg = ctx.config[SECTION]
    profile, pfile = cfg["profile"], cfg["profile_file"]
    if not profile and not pfile:
        raise ConfigError(SECTION, "profile",
                          "set profile (a loaded AppArmor profile) or profile_file (one to load)")
    plan: dict = {"file": None, "policy": None, "names": [], "renamed": {}, "error": None}
    if pfile:
        origin = ctx.origins.get(SECTION, {}).get("profile_file", "")
        plan = _compile_file(ctx, _resolve_file(pfile, origin, ctx.cwd))
    target = profile
    if plan["names"]:
        if not profile:
            if len(plan["names"]) != 1:
                raise ConfigError(SECTION, "profile",
                                  f"{plan['file']} defines several profiles "
                                  f"({', '.join(plan['names'])}): name the one to enter")
            target = plan["names"][0]
        elif profile not in plan["renamed"]:
            raise ConfigError(SECTION, "profile",
                              f"{profile!r} is not defined in {plan['file']} "
                              f"(it defines {', '.join(plan['names'])})")
        target = plan["renamed"][target]
    elif not profile:
        target = os.path.basename(plan["file"] or "")  # parser missing: best guess, for audit
    plan["target"] = target
    return plan


# --- audit -----------------------------------------------------------------------------------

def _consequence(required):
    return ("a launch fails (required = true)" if required
            else "the workload runs without it (required = false)")


def audit(ctx) -> list:
    plan = ctx.plan[SECTION]
    cfg = ctx.config[SECTION]
    label = plan["target"]
    value = label + (f" (loaded from {plan['file']})" if plan["file"] else "")
    row = {"control": "apparmor", "section": SECTION,
           "key": "profile_file" if plan["file"] else "profile", "value": value}
    try:
        _check_available()
    except NotAvailable as e:
        row.update(status="not-available", weight=0.15,
                   detail=f"{e.message}: " + _consequence(cfg["required"]))
        return [row]
    mode = "enforce" if plan["file"] else _loaded_mode(label)
    if mode is None:
        row.update(status="not-available", weight=0.15,
                   detail=f"AppArmor profile {label!r} is not loaded")
        return [row]
    if mode == "complain":
        row.update(status="best-effort", weight=0.1,
                   detail="complain mode: violations are logged, not denied")
    else:
        row.update(status="enforced", weight=0.0)
    if mode:
        row["expect"] = {"lsm.apparmor": f"{label} ({mode})"}
    if plan["error"]:
        row.update(status="not-available", weight=0.15, detail=plan["error"])
        row.pop("expect", None)
    return [row]
