"""The ``landlock`` plugin's hook implementations, as pluggy registers them."""

from . import secrun_landlock, secrun_prepare
from .audit import secrun_audit, secrun_live_probe
from .plan import secrun_compile, secrun_facts, secrun_profile_sections

__all__ = ["secrun_audit", "secrun_compile", "secrun_facts", "secrun_landlock",
           "secrun_live_probe", "secrun_prepare", "secrun_profile_sections"]
