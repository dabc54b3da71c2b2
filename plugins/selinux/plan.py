"""Planning for the ``selinux`` plugin: the ``[selinux]`` schema and ``secrun_compile`` (the
syntax of the context only: whether it is valid is a question for the policy loaded at launch).

Never imported by a cached launch."""

from __future__ import annotations

from typing import TypedDict

from secrun import hookimpl
from secrun.context import PlanContext
from secrun.errors import ConfigError
from secrun.facts import Facts
from secrun.schema import Field, Section

from . import is_ident, split_context

SECTION = "selinux"


class SelinuxPlan(TypedDict):
    context: str  # the full context, "user:role:type[:level]"; "": built from `type` at launch
    type: str  # only the type (the rest is secrun's own context); "" with `context`


def _check_type(value: str) -> None:
    if value and not is_ident(value):
        raise ValueError(f"{value!r} is not an SELinux type name (letters, digits, _ . -)")


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "SELinux domain of the workload (needs an SELinux kernel).", [
        Field("context", str, "",
              "full context the workload runs in, \"user:role:type:level\" (setexeccon)"),
        Field("type", str, "",
              "only the domain type; user, role and level are secrun's own at launch",
              check=_check_type),
    ])]


@hookimpl
def secrun_facts() -> Facts:
    return Facts()


@hookimpl
def secrun_compile(ctx: PlanContext) -> SelinuxPlan:
    cfg = ctx.config[SECTION]
    context, typ = cfg["context"].strip(), cfg["type"]
    if context and typ:
        raise ConfigError(SECTION, "type", "set either context or type, not both")
    if not context and not typ:
        raise ConfigError(SECTION, "context", "set context (\"user:role:type:level\") or type")
    if context and split_context(context) is None:
        raise ConfigError(SECTION, "context", f"{context!r} is not an SELinux context "
                          "(user:role:type[:level], e.g. \"system_u:system_r:secrun_t:s0\")")
    return SelinuxPlan(context=context, type=typ)
