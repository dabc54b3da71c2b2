"""Planning half of the ``selinux`` plugin: the ``[selinux]`` schema, ``secrun_compile`` (the
syntax of the context) and ``secrun_audit``.

Imported lazily by the hooks in :mod:`secrun.plugins.selinux`, so a cached launch never loads
it; checking the context against the loaded policy and setting it stay in that module.
"""

from secrun.errors import ConfigError, NotAvailable, SetupError
from secrun.plugins.selinux import (
    SECTION,
    _check_available,
    _enforcing,
    _full_context,
    _ident,
    _lib,
    _split,
)
from secrun.schema import Field, Section


def _check_type(value):
    if value and not _ident(value):
        raise ValueError(f"{value!r} is not an SELinux type name (letters, digits, _ . -)")


def sections():
    return [Section(SECTION, "SELinux domain of the workload (needs an SELinux kernel).", [
        Field("context", str, "",
              "full context the workload runs in, \"user:role:type:level\" (setexeccon)"),
        Field("type", str, "",
              "only the domain type; user, role and level are secrun's own at launch",
              check=_check_type),
    ])]


def compile_plan(ctx) -> dict:
    cfg = ctx.config[SECTION]
    context, typ = cfg["context"].strip(), cfg["type"]
    if context and typ:
        raise ConfigError(SECTION, "type", "set either context or type, not both")
    if not context and not typ:
        raise ConfigError(SECTION, "context", "set context (\"user:role:type:level\") or type")
    if context and _split(context) is None:
        raise ConfigError(SECTION, "context", f"{context!r} is not an SELinux context "
                          "(user:role:type[:level], e.g. \"system_u:system_r:secrun_t:s0\")")
    return {"context": context, "type": typ}


# --- audit -----------------------------------------------------------------------------------

def audit(ctx) -> list:
    plan = ctx.plan[SECTION]
    cfg = ctx.config[SECTION]
    key = "context" if plan["context"] else "type"
    row = {"control": "selinux", "section": SECTION, "key": key,
           "value": plan["context"] or f"type {plan['type']}"}
    try:
        _check_available()
        lib = _lib()
        context = _full_context(lib, plan)
    except (NotAvailable, SetupError, OSError) as e:
        row.update(status="not-available", weight=0.15,
                   detail=f"{e}: " + ("a launch fails (required = true)" if cfg["required"]
                                      else "the workload runs without it (required = false)"))
        return [row]
    row["value"] = context
    if lib.security_check_context(context.encode()) != 0:
        row.update(status="not-available", weight=0.15,
                   detail="not a valid context in the loaded policy: a launch fails")
        return [row]
    row["expect"] = {"lsm.selinux": context}
    if _enforcing():
        row.update(status="enforced", weight=0.0)
    else:
        row.update(status="best-effort", weight=0.1,
                   detail="permissive mode: denials are logged, not enforced")
    return [row]
