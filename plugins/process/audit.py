"""The ``process`` plugin's audit: its rows and the categories it scores
(``process.no_new_privs``, ``process.environment``, ``process.rlimits``) with their judges."""

from __future__ import annotations

from secrun import hookimpl
from secrun.audit.categories import Category
from secrun.audit.rows import Row
from secrun.context import AuditContext

from .plan import SECTION

UNLIMITED = 1 << 62  # a live limit at least this large counts as none
Judged = tuple[float, str] | None


@hookimpl
def secrun_audit(ctx: AuditContext) -> list[Row]:
    cfg = ctx.config[SECTION]
    allow = cfg["env_allow"]
    nnp = bool(cfg["no_new_privs"])
    return [
        {"control": "no_new_privs", "section": SECTION, "key": "no_new_privs",
         "category": "process.no_new_privs", "value": "on" if nnp else "off",
         "status": "enforced" if nnp else "not-configured", "weight": 0.0 if nnp else 0.6},
        {"control": "environment", "section": SECTION, "key": "env_allow",
         "category": "process.environment",
         "value": "inherited" if "*" in allow else f"only {', '.join(allow) or 'nothing'}",
         "status": "not-configured" if "*" in allow else "enforced",
         "weight": 0.1 if "*" in allow else 0.0},
        {"control": "rlimits", "section": SECTION, "key": "rlimits",
         "category": "process.rlimits",
         "value": ", ".join(f"{k}={v}" for k, v in cfg["rlimits"].items()) or "inherited",
         "status": "enforced" if cfg["rlimits"] else "not-configured",
         "weight": 0.0 if cfg["rlimits"] else 0.1},
    ]


# --- judges: facts -> (residual 0..1, what was observed) or None (facts missing) ------------------

def judge_no_new_privs(facts: dict[str, str]) -> Judged:
    v = facts.get("status.NoNewPrivs", "")
    return (0.0, "on") if v == "1" else (1.0, "off")


def judge_environment(facts: dict[str, str]) -> Judged:
    n = facts.get("env.count", "")
    if not n:
        return None
    return (0.0 if int(n) <= 12 else 1.0), f"{n} variables"


def _limit(facts: dict[str, str], name: str, part: int) -> int | None:
    v = facts.get(f"rlimit.{name}", "")
    if not v:
        return None
    x = v.split(":")[part]
    return UNLIMITED if x == "unlimited" else int(x)


def _shown(n: int | None) -> str:
    return "unlimited" if n == UNLIMITED else str(n)


def judge_rlimits(facts: dict[str, str]) -> Judged:
    core, nofile = _limit(facts, "core", 0), _limit(facts, "nofile", 1)
    if core is None:
        return None
    r = 1.0 - (0.5 if core == 0 else 0.0) - (0.5 if nofile is not None and nofile <= 4096
                                               else 0.0)
    return r, f"core {_shown(core)}, nofile hard {_shown(nofile)}"


@hookimpl
def secrun_audit_categories() -> list[Category]:
    return [
        Category("process.no_new_privs", "no_new_privs", 0.6, judge=judge_no_new_privs,
                 meaning="PR_SET_NO_NEW_PRIVS: setuid binaries and file capabilities grant "
                         "nothing"),
        Category("process.environment", "environment", 0.1, judge=judge_environment,
                 meaning="the caller's environment (secrets in variables) is not passed on; "
                         "judged live as at most 12 variables"),
        Category("process.rlimits", "resource limits", 0.1, judge=judge_rlimits,
                 meaning="core dumps off (half) and open files bounded to 4096 or less "
                         "(half)"),
    ]
