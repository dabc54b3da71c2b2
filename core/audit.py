"""``secrun audit`` (being built: see its issue)."""

import click


@click.command("audit")
def audit():
    """Which controls apply to a workload."""
    raise click.ClickException("secrun audit is not built yet")
