"""The ``secrun`` command line for everything but the launch itself (see :mod:`secrun.main`).

Plugins add subcommands with the ``secrun_register_commands`` hook.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import SecrunError

TYPE_CHECKING = False  # (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

LAUNCH_HELP = """Run PROGRAM confined by the controls a named profile composes.

\b
  secrun [--profile NAME]... [--set SECTION.KEY=VALUE]... [-v] [--dry-run] [--] PROGRAM [ARGS]...
  secrun SUBCOMMAND ...

\b
Launch options (before PROGRAM; everything after PROGRAM is PROGRAM's own):
  -p, --profile NAME|PATH   profile to apply (repeatable, composed left to right;
                            default: 'default'); a path is ./NAME.toml or absolute
  -s, --set S.K=V           override one value for this run (S.K+=V / S.K-=V edit a list)
  --plugin NAME             also load this installed third-party plugin
  -v, --verbose             log every stage with its duration to stderr
  -n, --dry-run             print the effective plan and exit
  --no-cache                plan from scratch, ignoring the plan cache
  -t, -T, --tty=auto|always|never
                            the workload's terminal: a new pseudo-terminal that secrun
                            relays (auto: when stdin, stdout or stderr is a terminal;
                            -t always), or none (-T: no controlling terminal, and a
                            terminal on stdin is replaced by /dev/null)

\b
A word is a subcommand only as the first argument: `secrun -- audit` or
`secrun ./audit` runs a program named like a subcommand.  A plugin's
subcommand whose word is also a program on PATH is refused: `secrun -- WORD`
runs the program.

\b
Exit status: the workload's own; 125 secrun failed (nothing ran); 126 PROGRAM
not executable; 127 PROGRAM not found; 128+N the workload was killed by signal N.
"""


@click.group(help=LAUNCH_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="secrun")
def cli() -> None:
    pass


# --- profiles ---------------------------------------------------------------------------------

@cli.group(invoke_without_command=True)
@click.pass_context
def profiles(ctx: click.Context) -> None:
    """List the available profiles (and show or check one)."""
    if ctx.invoked_subcommand is not None:
        return
    from .compose import available, search_path

    click.echo("search path: " + " : ".join(f"{d} ({label})" for label, d in search_path()))
    for name, path, source, shadowed in available():
        note = "  (shadowed)" if shadowed else ""
        desc = ""
        try:
            import tomllib

            with open(path, "rb") as f:
                desc = tomllib.load(f).get("description", "")
        except Exception:  # listing must not fail on one bad file
            desc = "(unreadable)"
        click.echo(f"{name:<16} {source:<8} {path}{note}\n{'':<16} {desc}")


@profiles.command("show")
@click.argument("names", nargs=-1, required=True)
@click.option("--set", "-s", "sets", multiple=True, help="override SECTION.KEY=VALUE")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def profiles_show(names: tuple[str, ...], sets: tuple[str, ...], as_json: bool) -> None:
    """Print the effective, merged policy of NAMES with each value's origin."""
    from . import plan as _plan
    from .report import print_plan

    p = _plan.build(list(names), list(sets))
    if as_json:
        import json

        click.echo(json.dumps({k: p[k] for k in ("profiles", "active", "config", "origins")},
                              indent=2, default=str))
    else:
        print_plan(p)


@profiles.command("check")
@click.argument("files", nargs=-1, required=True)
def profiles_check(files: tuple[str, ...]) -> None:
    """Validate profile FILES (names or paths) against the plugins' schemas, and print what
    the plugins note about the policy (e.g. where a working directory would not be shown)."""
    from . import plan as _plan

    for f in files:
        ref = f if f.startswith("/") or not f.endswith(".toml") or f.startswith("./") \
            else "./" + f
        p = _plan.build([ref])
        click.echo(f"{f}: ok")
        for note in p["notes"]:
            click.echo(f"{f}: note: {note}")


# --- plugins ----------------------------------------------------------------------------------

@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_cmd(as_json: bool) -> None:
    """List every plugin (built-in and installed): distribution, version, stages, sections.

    This imports every installed third-party plugin; a launch imports only those its profile
    names."""
    from .registry import Plugins
    from .stages import STAGE_NAMES, hook_name

    pl = Plugins(all_installed=True, keep_going=True)
    stage_hooks = {hook_name(s): s for s in STAGE_NAMES}
    rows: list[dict[str, Any]] = []
    for name, info in pl.info.items():
        hooks = pl.hooks_of(name)
        rows.append({
            "name": name, "distribution": info.dist, "version": info.version,
            "builtin": info.builtin, "module": info.module.__name__, "file": info.file,
            "sections": info.sections,
            "stages": [s for s in STAGE_NAMES if hook_name(s) in hooks],
            "hooks": [h for h in hooks if h not in stage_hooks],
        })
    if as_json:
        import json

        click.echo(json.dumps({"plugins": rows, "errors": pl.errors}, indent=2))
        if pl.errors:
            raise SecrunError("; ".join(pl.errors.values()))
        return
    for r in rows:
        kind = "built-in" if r["builtin"] else "third-party"
        click.echo(f"{r['name']}  ({r['distribution']} {r['version']}, {kind}, {r['file']})")
        click.echo(f"    sections: {', '.join('[' + s + ']' for s in r['sections']) or '-'}")
        click.echo(f"    stages:   {', '.join(r['stages']) or '-'}")
        if r["hooks"]:
            click.echo(f"    hooks:    {', '.join(r['hooks'])}")
    for name, err in pl.errors.items():
        click.echo(f"{name}  BROKEN: {err}")
    if pl.errors:
        raise SecrunError("; ".join(pl.errors.values()))


# --- audit ---------------------------------------------------------------------------------

from .audit.command import audit  # noqa: E402

cli.add_command(audit)


# --- docs ------------------------------------------------------------------------------------

@cli.command("docs", hidden=True)
@click.option("--out", default="docs", show_default=True, type=click.Path(file_okay=False))
@click.option("--check", is_flag=True, help="fail if the generated files are out of date")
def docs_cmd(out: str, check: bool) -> None:
    """Regenerate docs/hooks.md and docs/profiles.md from the hookspecs and schemas."""
    from .docgen import write_docs

    stale = write_docs(out, check=check)
    if check and stale:
        raise SecrunError("generated docs are out of date: " + ", ".join(stale)
                          + " (run: make docs)")


def _register_plugin_commands(plugin: str | None, module: str | None = None) -> None:
    """Let the built-in plugins (and ``plugin``, a third-party one that adds the subcommand
    being run, whose entry point must name ``module`` as the subcommand index does) add their
    subcommands."""
    from .registry import Plugins

    if plugin is not None and module is not None:
        from .commands import check_module

        check_module(plugin, module)
    pl = Plugins([plugin] if plugin else [])
    for name, fn in pl.order("secrun_register_commands", list(pl.info)):
        before = dict(cli.commands)
        fn(cli=cli)
        taken = sorted(c for c, cmd in before.items() if cli.commands.get(c) is not cmd)
        if taken:  # click would replace them silently
            raise SecrunError(f"plugin {name!r} redefines the subcommand(s) "
                              f"{', '.join(taken)}")


def run_cli(argv: Sequence[str], plugin: str | None = None, module: str | None = None) -> int:
    """The click command line; ``plugin`` is the third-party plugin that adds ``argv[0]``, and
    ``module`` the module the subcommand index recorded for it."""
    builtin = set(cli.commands)
    if plugin is not None or not argv or argv[0] not in cli.commands:
        try:
            _register_plugin_commands(plugin, module)
        except SecrunError as e:
            sys.stderr.write(f"secrun: error: {e}\n")
            return e.exit_code
    try:
        rv = cli.main(args=argv, prog_name="secrun", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.UsageError as e:
        # one line, like every secrun error; the usage is one --help away
        from .errors import one_line

        cmd = e.ctx.command_path if e.ctx is not None else "secrun"
        sys.stderr.write(f"secrun: error: {one_line(e.format_message())} "
                         f"(see {cmd} --help)\n")
        return 125
    except click.ClickException as e:
        from .errors import one_line

        sys.stderr.write(f"secrun: error: {one_line(e.format_message())}\n")
        return 125
    except click.exceptions.Abort:
        return 130
    except SecrunError as e:
        sys.stderr.write(f"secrun: error: {e}\n")
        return e.exit_code
    except Exception as e:  # a plugin subcommand's bug is one line too, not a traceback
        if not argv or argv[0] in builtin:
            raise
        from .errors import one_line

        sys.stderr.write(f"secrun: error: subcommand {argv[0]!r} (a plugin's) failed: "
                         f"{type(e).__name__}: {one_line(str(e))}\n")
        return 125
    # a command's return value is its exit status (click returns ctx.exit(n)'s n here too)
    return rv if isinstance(rv, int) else 0


def main() -> None:  # pragma: no cover - for python -m secrun.cli
    sys.exit(run_cli(sys.argv[1:]))
