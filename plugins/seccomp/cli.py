"""The ``secrun seccomp`` subcommands: ``export`` (a profile's compiled policy as OCI/Docker
JSON, raw BPF or libseccomp's pseudo code) and ``groups`` (the named syscall groups).

click is imported only when a subcommand is being parsed (``secrun_register_commands``), not
when planning loads the plugin."""

from __future__ import annotations

import sys

from secrun import hookimpl
from secrun.errors import SecrunError

from .rules import SECTION, load_groups

TYPE_CHECKING = False
if TYPE_CHECKING:
    import click


def export_policy(profiles: tuple[str, ...], sets: tuple[str, ...], fmt: str) -> bytes:
    """The compiled ``[seccomp]`` policy of the profiles: ``bpf`` (the program secrun loads),
    ``pfc`` (libseccomp's pseudo code) or ``oci-json`` (lossy: what the format cannot say is
    warned about on stderr)."""
    import json

    from secrun import plan as _plan

    from . import bpf, oci
    from .plan import build_model

    p = _plan.build(list(profiles), list(sets))
    if SECTION not in p["config"]:
        raise SecrunError(f"profile {', '.join(profiles)} has no [seccomp] section")
    if fmt == "bpf":
        data: bytes = p["plan"][SECTION]["bpf"]
        return data
    m = build_model(p["config"][SECTION], p["origins"].get(SECTION, {}))
    if fmt == "pfc":
        return bpf.pfc(m).encode()
    obj, lost = oci.export(m)
    for line in lost:
        sys.stderr.write(f"secrun: warning: oci-json cannot express: {line}\n")
    return (json.dumps(obj, indent=2) + "\n").encode()


def write(data: bytes, output: str) -> None:
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        with open(output, "wb") as f:
            f.write(data)


def list_groups(names: tuple[str, ...]) -> list[str]:
    """The lines of ``secrun seccomp groups [NAMES]``; KeyError for an unknown name."""
    g = load_groups()
    lines = []
    for name in names or sorted(g):
        if name not in g:
            raise KeyError(name)
        lines.append(f"{name}: {g[name]['help']}")
        if names:
            lines.append("  " + " ".join(g[name]["syscalls"]))
    return lines


@hookimpl
def secrun_register_commands(cli: click.Group) -> None:
    import click

    if "seccomp" in cli.commands:
        return

    @cli.group("seccomp")
    def seccomp_group() -> None:
        """Seccomp policies: export a compiled policy, list the syscall groups."""

    @seccomp_group.command("export")
    @click.option("--profile", "-p", "profiles", multiple=True, required=True,
                  help="profile name or path (repeatable, composed left to right)")
    @click.option("--set", "-s", "sets", multiple=True, help="override SECTION.KEY=VALUE")
    @click.option("--format", "-f", "fmt", type=click.Choice(["oci-json", "bpf", "pfc"]),
                  default="oci-json", show_default=True)
    @click.option("--output", "-o", type=click.Path(dir_okay=False), default="-",
                  help="file to write (default: stdout)")
    def export(profiles: tuple[str, ...], sets: tuple[str, ...], fmt: str, output: str) -> None:
        """Write the compiled [seccomp] policy of a profile: OCI/Docker JSON, raw BPF (the
        exact program secrun loads) or PFC (libseccomp's readable pseudo code)."""
        write(export_policy(profiles, sets, fmt), output)

    @seccomp_group.command("groups")
    @click.argument("names", nargs=-1)
    def groups(names: tuple[str, ...]) -> None:
        """List the named syscall groups (or the members of NAMES)."""
        try:
            lines = list_groups(names)
        except KeyError as e:
            raise click.ClickException(f"unknown group {e.args[0]!r}") from None
        for line in lines:
            click.echo(line)
