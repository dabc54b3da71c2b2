"""``secrun priority show PID``: a process's scheduling priorities, as the live audit sees
them from outside (:mod:`.observe`).  Listed as the ``secrun.commands`` entry point
``priority``, so ``secrun priority ...`` loads this plugin (and no other third-party one)."""

from __future__ import annotations

from secrun import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    import click


@hookimpl
def secrun_register_commands(cli: click.Group) -> None:
    # click is imported here, not at module level: a launch that plans with this plugin
    # imports this module and never parses a subcommand.
    import click

    @cli.group("priority")
    def priority() -> None:
        """The [priority] plugin (secrun-example-plugin): scheduling priorities."""

    @priority.command("show")
    @click.argument("pid", type=int)
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
    def show(pid: int, as_json: bool) -> None:
        """Print the nice value, I/O priority and autogroup nice value of process PID."""
        from secrun.errors import SecrunError, describe_oserror

        from .observe import observe

        try:
            facts = observe(pid)
        except OSError as e:
            raise SecrunError(f"process {pid}: {describe_oserror(e)}") from None
        if as_json:
            import json

            click.echo(json.dumps(facts, indent=2))
            return
        for name, value in facts.items():
            click.echo(f"{name.split('.', 1)[1]:<10} {value}")
