"""The ``identity`` plugin's hook implementations, as pluggy registers them."""

from . import secrun_identity, secrun_prepare
from .audit import secrun_audit, secrun_audit_categories
from .plan import secrun_compile, secrun_facts, secrun_profile_sections

__all__ = ["secrun_audit", "secrun_audit_categories", "secrun_compile", "secrun_facts",
           "secrun_identity", "secrun_prepare", "secrun_profile_sections"]
