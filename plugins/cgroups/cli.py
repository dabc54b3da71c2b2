"""``secrun cgroups gc`` and ``secrun cgroups list`` on the command line (the logic is in
:mod:`.gc`).  Imported only when a subcommand is being parsed."""

from __future__ import annotations

from secrun import hookimpl

from .gc import find_groups, gc, state

TYPE_CHECKING = False
if TYPE_CHECKING:
    import click


@hookimpl
def secrun_register_commands(cli: click.Group) -> None:
    import click  # (here: planning loads this module too, and click costs it ~10 ms)

    @cli.group("cgroups")
    def cgroups_cmd() -> None:
        """Cgroups made by secrun."""

    @cgroups_cmd.command("gc")
    @click.option("--dry-run", "-n", is_flag=True, help="list what would be removed")
    def gc_cmd(dry_run: bool) -> None:
        """Remove groups left behind by a secrun that was killed (SIGKILL): kill what still
        runs in them and remove them.  A running secrun holds a lock on each of its groups
        (flock on the group directory) until it has removed them; a group whose lock is
        held is left alone, whatever pid namespace its secrun runs in."""
        n = gc(dry_run=dry_run, echo=click.echo)
        click.echo(f"{n} orphaned group(s) {'found' if dry_run else 'removed'}")

    @cgroups_cmd.command("list")
    def list_cmd() -> None:
        """List every secrun group and whether its secrun is still running."""
        for path, kind in find_groups():
            click.echo(f"{path}  {state(path, kind)}")
