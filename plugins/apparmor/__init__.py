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
- ``secrun_prepare`` (supervisor, before fork): checks that AppArmor is active, loads the
  binary policy, checks that the target profile is loaded and opens ``libapparmor.so.1``.
- ``secrun_lsm`` (child): ``aa_change_onexec(name)``: the label takes effect at exec.

A profile loaded by secrun stays loaded after the run: removing it would move every process
still confined by it (a workload's daemonised leftovers, a concurrent run) to ``unconfined``.
Loading again replaces it in place, which is idempotent.  The plugin publishes and reads no
facts.

Modules: the package itself (``prepare`` and ``lsm``, the availability checks: all a launch
imports), :mod:`.plan` (the schema, resolving and compiling the profile file), :mod:`.audit`
(the row, and the plugin's part of the category ``mac``).

The stages (this module: all that a launch from the plan cache imports of the plugin):

- ``prepare`` (supervisor, before fork): checks that AppArmor is active
  (``/sys/kernel/security/lsm``, then ``aa_is_enabled``), writes the binary policy the plan
  carries to ``/sys/kernel/security/apparmor/.replace`` (what ``apparmor_parser -r`` does),
  checks that the target profile is loaded, and opens ``libapparmor.so.1`` (here, while the
  host's filesystem is still visible: the child's ``mounts`` stage may hide it);
- ``lsm`` (child): ``aa_change_onexec(name)``: the label takes effect at exec.  It imports
  nothing: ``prepare`` keeps the library for it.
"""

from __future__ import annotations

import os

from secrun import hookimpl
from secrun.errors import NotAvailable, SetupError
from secrun.kernel import Library, c_char_p, c_int, error, get_errno, write_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from secrun.context import RunContext

    from .plan import ApparmorPlan

LSM_LIST = "/sys/kernel/security/lsm"
AAFS = "/sys/kernel/security/apparmor"
AA_ENABLED = "/sys/module/apparmor/parameters/enabled"


# --- availability ------------------------------------------------------------------------------

def _active_lsms() -> list[str] | None:
    try:
        with open(LSM_LIST) as f:
            return f.read().strip().split(",")
    except OSError:
        return None


def check_available() -> None:
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


def loaded_mode(name: str) -> str | None:
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


def _library() -> Library:
    """libapparmor, with the prototypes of the two calls secrun makes, once AppArmor is known
    to be enabled (``aa_is_enabled``)."""

    try:
        lib = Library("libapparmor.so.1", {"aa_is_enabled": (c_int, ()),
                                           "aa_change_onexec": (c_int, (c_char_p,))})
    except OSError as e:
        raise NotAvailable("libapparmor.so.1", f"cannot load it ({e}); install the Debian "
                           "package 'libapparmor1'") from None
    if lib.aa_is_enabled() != 1:
        err = get_errno()
        raise NotAvailable("aa_is_enabled", "AppArmor is not enabled in this kernel"
                           + (f" ({os.strerror(err)})" if err else ""), err or None)
    return lib


def _load(plan: ApparmorPlan) -> None:
    """Load (or replace) the plan's binary policy in the kernel."""
    policy = plan["policy"]
    if policy is None:
        return
    replace = os.path.join(AAFS, ".replace")
    # the kernel takes the whole policy in one write
    write_file(replace, policy, f"{replace} (loading {plan['file']})")


# --- launching ---------------------------------------------------------------------------------

@hookimpl
def secrun_prepare(ctx: RunContext) -> None:
    plan: ApparmorPlan = ctx.plan
    check_available()
    lib = _library()
    if plan["error"]:
        raise SetupError(plan["file"] or "profile_file", plan["error"])
    _load(plan)
    mode = loaded_mode(plan["target"])
    if mode is None:
        raise SetupError(os.path.join(AAFS, "profiles"),
                         f"AppArmor profile {plan['target']!r} is not loaded (load it with "
                         "apparmor_parser -r, or set [apparmor].profile_file)")
    ctx.state.update(lib=lib, label=plan["target"])
    ctx.log(f"apparmor: workload enters {plan['target']!r} ({mode or 'mode unknown'}) at exec")


@hookimpl
def secrun_lsm(ctx: RunContext) -> None:
    st = ctx.state
    if "lib" not in st:
        return  # prepare found AppArmor unavailable and the section is best-effort (reported)
    if st["lib"].aa_change_onexec(st["label"].encode()) != 0:
        raise error(f"aa_change_onexec({st['label']})")
