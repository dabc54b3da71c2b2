"""The ``apparmor`` plugin: run the workload under an AppArmor profile.

Section ``[apparmor]``:

- ``profile = "name"``: enter this profile at exec.  It must be loaded (by the administrator,
  or by ``profile_file``).
- ``profile_file = "..."``: an AppArmor profile file that secrun loads (or replaces) in the
  kernel before fork.  A bare name (``"secrun-strict"``) is looked up in an ``apparmor/``
  folder beside the secrun profile that names it, then among the profiles shipped with secrun
  (``profiles/apparmor/``); a relative path is relative to the secrun profile's folder.

Where each step runs, and why:

- ``secrun_compile`` (planning, cached): reads the file, defines ``@{secrun_cwd}`` when the
  file uses it, and runs ``apparmor_parser`` to check it (a syntax error stops here, with the
  parser's message and the file's line), list its profile names and compile it to the kernel's
  binary format.  The plan keeps the binary policy, so a launch never spawns the parser.
- ``secrun_prepare`` (supervisor, before fork): checks that AppArmor is active
  (``/sys/kernel/security/lsm``, then ``aa_is_enabled``), writes the binary policy to
  ``/sys/kernel/security/apparmor/.replace`` (what ``apparmor_parser -r`` does), checks that
  the target profile is loaded, and opens ``libapparmor.so.1`` (here, while the host's
  filesystem is still visible: the child's ``mounts`` stage may hide it).
- ``secrun_lsm`` (child): ``aa_change_onexec(name)``: the label takes effect at exec.

A profile loaded by secrun stays loaded after the run: removing it would move every process
still confined by it (a workload's daemonised leftovers, a concurrent run) to ``unconfined``.
Loading again replaces it in place, which is idempotent.
"""

import os

from secrun import hookimpl
from secrun.errors import ConfigError, NotAvailable, SetupError
from secrun.schema import Field, Section

SECTION = "apparmor"
LSM_LIST = "/sys/kernel/security/lsm"
AAFS = "/sys/kernel/security/apparmor"
AA_ENABLED = "/sys/module/apparmor/parameters/enabled"
CWD_VAR = "@{secrun_cwd}"
# Characters that AppArmor reads as pattern syntax or cannot quote in a variable's value.
_PATTERN_CHARS = set('*?[]{}^"\\,#') | {chr(c) for c in range(32)} | {"\x7f"}


def _check_name(value):
    if value and (any(c.isspace() or ord(c) < 32 for c in value) or value == "unconfined"):
        raise ValueError(f"{value!r} is not an AppArmor profile name secrun can enter "
                         f"(no spaces or control characters, not 'unconfined')")


@hookimpl
def secrun_profile_sections():
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
    from secrun.profiles import BUNDLED

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

    from secrun.errors import ProfileError
    from secrun.profiles import check_safe

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


@hookimpl
def secrun_compile(ctx):
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
    ctx.plan[SECTION] = plan


# --- availability ----------------------------------------------------------------------------

def _active_lsms():
    try:
        with open(LSM_LIST) as f:
            return f.read().strip().split(",")
    except OSError:
        return None


def _check_available():
    """Raise NotAvailable unless AppArmor is the active LSM it claims to be."""
    lsms = _active_lsms()
    if lsms is not None and "apparmor" not in lsms:
        raise NotAvailable(LSM_LIST, "AppArmor is not enabled in this kernel (active LSMs: "
                           f"{','.join(lsms)})")
    if not os.path.isdir(AAFS):
        try:
            with open(AA_ENABLED) as f:
                enabled = f.read().strip() == "Y"
        except OSError:
            enabled = False
        if not enabled:
            raise NotAvailable(AA_ENABLED, "AppArmor is not enabled in this kernel")
        raise NotAvailable(AAFS, "AppArmor is enabled but securityfs is not mounted on "
                           "/sys/kernel/security")


def _loaded_mode(name):
    """'enforce'/'complain'/... of a loaded profile, None if not loaded, '' if unknown."""
    try:
        with open(os.path.join(AAFS, "profiles")) as f:
            for line in f:
                n, _, mode = line.rstrip("\n").rpartition(" (")
                if n == name:
                    return mode.rstrip(")")
    except OSError:
        return ""
    return None


# --- launching -------------------------------------------------------------------------------

@hookimpl
def secrun_prepare(ctx):
    plan = ctx.plan[SECTION]
    _check_available()
    import ctypes

    try:
        lib = ctypes.CDLL("libapparmor.so.1", use_errno=True)
    except OSError as e:
        raise NotAvailable("libapparmor.so.1", f"cannot load it ({e}); install the Debian "
                           "package 'libapparmor1'") from None
    if lib.aa_is_enabled() != 1:
        err = ctypes.get_errno()
        raise NotAvailable("aa_is_enabled", "AppArmor is not enabled in this kernel"
                           + (f" ({os.strerror(err)})" if err else ""))
    if plan["error"]:
        raise SetupError(plan["file"] or "profile_file", plan["error"])
    if plan["policy"] is not None:
        replace = os.path.join(AAFS, ".replace")
        fd = os.open(replace, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, plan["policy"])  # the kernel takes the whole policy in one write
        except OSError as e:
            raise OSError(e.errno, e.strerror, f"{replace} (loading {plan['file']})") from None
        finally:
            os.close(fd)
    mode = _loaded_mode(plan["target"])
    if mode is None:
        raise SetupError(os.path.join(AAFS, "profiles"),
                         f"AppArmor profile {plan['target']!r} is not loaded (load it with "
                         "apparmor_parser -r, or set [apparmor].profile_file)")
    ctx.state[SECTION] = {"lib": lib, "label": plan["target"], "mode": mode}
    ctx.log(f"apparmor: workload enters {plan['target']!r} ({mode or 'mode unknown'}) at exec")


@hookimpl
def secrun_lsm(ctx):
    st = ctx.state.get(SECTION)
    if st is None:
        return  # prepare found AppArmor unavailable and the section is best-effort (reported)
    import ctypes

    if st["lib"].aa_change_onexec(st["label"].encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), f"aa_change_onexec({st['label']})")


# --- audit -----------------------------------------------------------------------------------

def _consequence(required):
    return ("a launch fails (required = true)" if required
            else "the workload runs without it (required = false)")


@hookimpl
def secrun_audit(ctx):
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
