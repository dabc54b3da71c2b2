"""The ``cgroups`` plugin's hook implementations, as pluggy registers them."""

from . import (
    secrun_attach,
    secrun_cleanup,
    secrun_prepare,
    secrun_rlimits,
    secrun_started,
)
from .audit import secrun_audit, secrun_audit_categories
from .cli import secrun_register_commands
from .plan import secrun_compile, secrun_facts, secrun_profile_sections

__all__ = ["secrun_attach", "secrun_audit", "secrun_audit_categories",
           "secrun_cleanup", "secrun_compile", "secrun_facts", "secrun_prepare",
           "secrun_profile_sections", "secrun_register_commands", "secrun_rlimits",
           "secrun_started"]
