"""The ``namespaces`` plugin's hook implementations, as pluggy registers them."""

from . import (
    secrun_after_fork,
    secrun_cleanup,
    secrun_hostname,
    secrun_namespaces,
    secrun_prepare,
    secrun_user_namespace,
)
from .audit import secrun_audit, secrun_audit_categories
from .plan import secrun_compile, secrun_facts, secrun_profile_sections

__all__ = ["secrun_after_fork", "secrun_audit", "secrun_audit_categories", "secrun_cleanup",
           "secrun_compile", "secrun_facts", "secrun_hostname", "secrun_namespaces",
           "secrun_prepare", "secrun_profile_sections", "secrun_user_namespace"]
