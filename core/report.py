"""Human-readable views of a plan: ``--dry-run`` and ``secrun profiles show``."""

import json
from collections.abc import Sequence

from .stages import STAGE_NAMES


def _fmt(value: object) -> str:
    if isinstance(value, (dict, list, bool)) or value is None:
        return json.dumps(value)
    return str(value)


def effective_lines(plan: dict) -> list[str]:
    lines: list[str] = []
    for section in sorted(plan["config"]):
        lines.append(f"[{section}]")
        values = plan["config"][section]
        origins = plan["origins"].get(section, {})
        width = max((len(k) for k in values), default=0)
        for key in sorted(values):
            lines.append(f"  {key:<{width}} = {_fmt(values[key])}    # {origins.get(key, '?')}")
    return lines


def print_plan(plan: dict, command: Sequence[str] | None = None) -> None:
    out: list[str] = []
    if command is not None:
        out.append("command: " + " ".join(command))
    out.append("profiles: " + " -> ".join(f"{n} ({p})" for n, p, _ in plan["profiles"]))
    out.append("plugins active: " + (", ".join(plan["active"]) or "none"))
    out.extend(effective_lines(plan))
    out.append("stages:")
    for stage in STAGE_NAMES:
        rows = plan["dispatch"].get(stage, ())
        who = ", ".join(f"{p}{'' if req else ' (best-effort)'}" for _, _, p, req in rows)
        out.append(f"  {stage:<15} {who or '-'}")
    print("\n".join(out))
