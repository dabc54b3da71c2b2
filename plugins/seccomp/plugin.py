"""The ``seccomp`` plugin's hook implementations, as pluggy registers them."""

from . import secrun_prepare, secrun_seccomp
from .audit import secrun_audit, secrun_audit_categories
from .cli import secrun_register_commands
from .live import secrun_live_facts, secrun_live_probe
from .plan import secrun_compile, secrun_facts, secrun_profile_sections

__all__ = ["secrun_audit", "secrun_audit_categories", "secrun_compile", "secrun_facts",
           "secrun_live_facts", "secrun_live_probe", "secrun_prepare",
           "secrun_profile_sections", "secrun_register_commands", "secrun_seccomp"]
