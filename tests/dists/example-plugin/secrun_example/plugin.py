"""The ``priority`` plugin's hook implementations, as pluggy registers them (the
``secrun.plugins`` entry point names this module).  Imports only: each hook lives in the module
of its phase, and a launch from the plan cache imports the package (its stages) alone."""

from . import secrun_attach, secrun_rlimits
from .audit import secrun_audit, secrun_audit_categories, secrun_live_facts, secrun_live_probe
from .commands import secrun_register_commands
from .plan import secrun_compile, secrun_facts, secrun_profile_sections

__all__ = ["secrun_attach", "secrun_audit", "secrun_audit_categories", "secrun_compile",
           "secrun_facts", "secrun_live_facts", "secrun_live_probe", "secrun_profile_sections",
           "secrun_register_commands", "secrun_rlimits"]
