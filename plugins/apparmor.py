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

This module is what a launch imports: ``prepare`` and ``lsm``.  The schema, the compilation and
the audit live in :mod:`secrun.plugins._apparmor_plan`, imported only on a plan cache miss or by
``secrun audit``/``profiles``.

A profile loaded by secrun stays loaded after the run: removing it would move every process
still confined by it (a workload's daemonised leftovers, a concurrent run) to ``unconfined``.
Loading again replaces it in place, which is idempotent.
"""

import os

from secrun import hookimpl
from secrun.errors import NotAvailable, SetupError

SECTION = "apparmor"
LSM_LIST = "/sys/kernel/security/lsm"
AAFS = "/sys/kernel/security/apparmor"
AA_ENABLED = "/sys/module/apparmor/parameters/enabled"


# --- planning (schema, compilation and audit live in _apparmor_plan) ---------------------------

@hookimpl
def secrun_profile_sections():
    from secrun.plugins import _apparmor_plan

    return _apparmor_plan.sections()


@hookimpl
def secrun_compile(ctx):
    from secrun.plugins import _apparmor_plan

    ctx.plan[SECTION] = _apparmor_plan.compile_plan(ctx)


@hookimpl
def secrun_audit(ctx):
    from secrun.plugins import _apparmor_plan

    return _apparmor_plan.audit(ctx)


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

    from secrun.kernel import error, get_errno

    try:
        lib = ctypes.CDLL("libapparmor.so.1", use_errno=True)
    except OSError as e:
        raise NotAvailable("libapparmor.so.1", f"cannot load it ({e}); install the Debian "
                           "package 'libapparmor1'") from None
    lib.aa_is_enabled.restype, lib.aa_is_enabled.argtypes = ctypes.c_int, ()
    lib.aa_change_onexec.restype = ctypes.c_int
    lib.aa_change_onexec.argtypes = (ctypes.c_char_p,)
    if lib.aa_is_enabled() != 1:
        err = get_errno()
        raise NotAvailable("aa_is_enabled", "AppArmor is not enabled in this kernel"
                           + (f" ({os.strerror(err)})" if err else ""), err or None)
    if plan["error"]:
        raise SetupError(plan["file"] or "profile_file", plan["error"])
    if plan["policy"] is not None:
        replace = os.path.join(AAFS, ".replace")
        fd = os.open(replace, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, plan["policy"])  # the kernel takes the whole policy in one write
        except OSError as e:
            raise error(f"{replace} (loading {plan['file']})", e.errno) from None
        finally:
            os.close(fd)
    mode = _loaded_mode(plan["target"])
    if mode is None:
        raise SetupError(os.path.join(AAFS, "profiles"),
                         f"AppArmor profile {plan['target']!r} is not loaded (load it with "
                         "apparmor_parser -r, or set [apparmor].profile_file)")
    ctx.state[SECTION] = {"lib": lib, "label": plan["target"], "mode": mode,
                          "error": error}
    ctx.log(f"apparmor: workload enters {plan['target']!r} ({mode or 'mode unknown'}) at exec")


@hookimpl
def secrun_lsm(ctx):
    st = ctx.state.get(SECTION)
    if st is None:
        return  # prepare found AppArmor unavailable and the section is best-effort (reported)
    if st["lib"].aa_change_onexec(st["label"].encode()) != 0:
        raise st["error"](f"aa_change_onexec({st['label']})")
