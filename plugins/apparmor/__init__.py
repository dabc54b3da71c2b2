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

Modules: :mod:`.stages` (``prepare`` and ``lsm``, the availability checks: all a launch
imports), :mod:`.plan` (the schema, resolving and compiling the profile file), :mod:`.audit`
(the row, and the plugin's part of the category ``mac``).
"""
