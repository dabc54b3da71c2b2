"""The ``secrun audit`` command: compiles the plan, gathers the rows and facts, reports."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from .rows import AuditRow

if TYPE_CHECKING:
    from .categories import Table

EXIT_THRESHOLD = 1
EXIT_MISMATCH = 2


@click.command("audit", context_settings={"ignore_unknown_options": True,
                                          "allow_interspersed_args": False})
@click.option("--profile", "-p", "profiles", multiple=True, metavar="NAME|PATH",
              help="profile to audit (repeatable, composed left to right; default: 'default')")
@click.option("--set", "-s", "sets", multiple=True, metavar="S.K=V",
              help="override one value, as for a launch")
@click.option("--plugin", "plugins", multiple=True, metavar="NAME",
              help="also load this installed third-party plugin")
@click.option("--live", is_flag=True,
              help="launch the sandbox with a probe and check every claim from inside")
@click.option("--pid", type=int, default=None, help="audit this running process instead")
@click.option("--reference", default="1", show_default=True, metavar="PID|self",
              help="--pid: the process whose namespaces and /tmp count as the host's")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown", "sarif"]),
              default="table", show_default=True)
@click.option("--threshold", type=float, default=None, metavar="X",
              help="exit 1 when the exposure (effective with --live/--pid) is above X")
@click.option("--probe-python", "probe_python_", default=None, metavar="PATH",
              help="--live: the interpreter that runs the probe inside the sandbox")
@click.option("--schema", "show_schema", is_flag=True, help="print the JSON schema and exit")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def audit(profiles: tuple[str, ...], sets: tuple[str, ...], plugins: tuple[str, ...],
          live: bool, pid: int | None, reference: str, fmt: str, threshold: float | None,
          probe_python_: str | None, show_schema: bool, command: tuple[str, ...]) -> None:
    """Which controls apply to a workload, and how exposed it is (0 = confined, 10 = not).

    \b
      secrun audit --profile strict [-- ./app]          what the profile would apply
      secrun audit --live --profile strict [-- ./app]   launch a probe in it and verify
      secrun audit --pid PID                            what confines a running process

    \b
    Exit status: 0; 1 exposure above --threshold; 2 (--live) a control the plan
    says is enforced is not in effect; 125 the audit could not run.
    """
    from .render import render
    from .report import schema_path

    if show_schema:
        with open(schema_path()) as f:
            click.echo(f.read().rstrip())
        return
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if pid is not None and (live or profiles or sets or plugins or argv):
        raise click.UsageError("--pid audits a running process: it takes no profile, "
                               "--live or command")
    if pid is not None:
        rep, table = audit_pid(pid, reference, threshold)
    else:
        rep, table = audit_profile(list(profiles) or ["default"], list(sets), list(plugins),
                                   argv, live, probe_python_, threshold)
    color = fmt == "table" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    click.echo(render(rep, fmt, color, table))
    sys.stdout.flush()
    ctx = click.get_current_context()
    if rep["mismatches"]:
        ctx.exit(EXIT_MISMATCH)
    if rep["above_threshold"]:
        ctx.exit(EXIT_THRESHOLD)


def mount_paths(rows: list[AuditRow]) -> list[str]:
    """The paths whose visible mount the rows ask about (``mount:PATH`` facts)."""
    return [f[len("mount:"):] for r in rows for f in r["expect"] if f.startswith("mount:")]


def audit_profile(profiles: list[str], sets: list[str], plugins: list[str], argv: list[str],
                  live: bool, python: str | None, threshold: float | None
                  ) -> tuple[dict[str, Any], Table]:
    """(the report, the category table) of a profile: planned, or verified live."""
    from .. import plan as _plan
    from ..registry import Plugins
    from . import live as lv
    from .categories import table as category_table
    from .planned import plan_rows
    from .report import Audit, build_report

    plan = _plan.build(profiles, sets, plugins)
    registered = Plugins([p[0] for p in plan["plugins"] if not p[4]])
    table = category_table(registered)
    rows, loaded, residuals = plan_rows(plan, argv, registered, table)
    if not live:
        a = Audit("planned", plan, rows, loaded, residuals, argv=argv)
        return build_report(table, a, threshold), table
    launch = lv.Launch(profiles, sets, plugins)
    seen = lv.run_live(launch, lv.probe_python(python), lv.plugin_probes(registered),
                       lv.observer(registered, plan, argv), paths=mount_paths(rows))
    seen.facts["plan.cache"] = lv.cached_plan_state(plan, launch)
    mismatches = lv.check_expects(rows, seen.facts, seen.pid)
    a = Audit("live", plan, rows, loaded, residuals, seen.facts, seen.notes, mismatches,
              argv, seen.pid, "secrun (the auditor)")
    return build_report(table, a, threshold), table


def audit_pid(pid: int, reference: str,
              threshold: float | None) -> tuple[dict[str, Any], Table]:
    """(the report, the category table) of a running process."""
    from ..registry import Plugins
    from . import live as lv
    from .categories import table as category_table
    from .report import Audit, build_report

    registered = Plugins()
    table = category_table(registered)
    seen, where = lv.pid_facts(pid, "self" if reference == "self" else reference,
                               lv.observer(registered))
    a = Audit("pid", facts=seen.facts, notes=seen.notes, pid=pid, reference=where)
    return build_report(table, a, threshold), table
