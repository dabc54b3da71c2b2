"""Planning half of the ``seccomp`` plugin besides the compiler: the ``[seccomp]`` schema,
``secrun_audit`` and the ``secrun seccomp`` commands.

Imported lazily by the hooks in :mod:`secrun.plugins.seccomp`, so a cached launch never loads
it; the BPF compiler is :mod:`secrun.plugins._seccomp_compile`.
"""

from secrun.plugins.seccomp import SECTION
from secrun.schema import Field, Section


def sections():
    return [Section(SECTION, "System call filter (seccomp-BPF), compiled at planning time.", [
        Field("default_action", (str, int), "errno:EPERM",
              "action for calls no rule names: allow, errno:NAME|N (or a bare errno name or "
              "number), kill_process, kill_thread, trap, log"),
        Field("allow", [str], ["@system-service"],
              "calls allowed: syscall names and @groups (`secrun seccomp groups`)"),
        Field("deny", [str], [],
              "calls refused with deny_action: names and @groups; deny wins over allow"),
        Field("deny_action", (str, int), "errno:EPERM",
              "action for deny entries, denied namespace flags and denied ioctls"),
        Field("actions", {str: (str, int)}, {},
              "per-call actions, winning over allow and deny: { ptrace = \"kill_process\", "
              "\"@mount\" = \"errno:ENOTSUP\" }"),
        Field("deny_namespaces", [str], [],
              "namespaces clone/unshare may not create (user, mnt, pid, net, uts, ipc, cgroup, "
              "time); clone3 then answers ENOSYS so libc falls back to clone"),
        Field("address_families", [str], [],
              "socket() families allowed, e.g. [\"AF_UNIX\", \"AF_INET\", \"AF_INET6\"]; others "
              "answer EAFNOSUPPORT ([]: any)"),
        Field("deny_ioctls", [(str, int)], [],
              "ioctl requests refused with deny_action, e.g. [\"TIOCSTI\", \"TIOCLINUX\"]"),
        Field("personalities", [(str, int)], [],
              "personality() values allowed (PER_LINUX, PER_LINUX32, UNAME26, QUERY, "
              "combined with |); others get default_action ([]: any)"),
        Field("other_abis", (str, int), "kill_process",
              "action for system calls made through another ABI (i386 int 0x80, x32)"),
        Field("arches", [str], [],
              "other ABIs filtered with the same rules instead (x86, x32)"),
        Field("import", str, "",
              "a Docker/OCI seccomp JSON file (relative to the profile) used as the base: its "
              "defaultAction replaces default_action; allow/deny/actions apply on top"),
        Field("import_caps", [str], [],
              "capabilities the imported file's includes/excludes.caps treat as held"),
    ])]


def audit(ctx) -> list:
    p = ctx.plan[SECTION]
    required = ctx.required(SECTION)
    refusing = p["default"] != "allow" and p["default"] != "log"
    style = "allowlist" if refusing else "denylist"
    value = (f"{style}: {p['allowed']} calls allowed, "
             + (f"all others {p['default']}" if refusing else f"{len(p['refused'])} refused")
             + f"; {p['insns']} BPF instructions")
    if p["import"]:
        value += f"; imported from {p['import']}"
    expect = {"status.Seccomp": "2"}
    for name, verdict in p["probes"].items():
        if verdict == "blocked":
            expect[f"syscall.{name}"] = "blocked"
    status = "enforced" if required else "best-effort"
    rows = [{
        "control": "seccomp filter", "section": SECTION, "key": "allow",
        "category": "seccomp.filter", "value": value, "status": status,
        "weight": 0.05 if refusing else 0.5,
        "detail": ("refused: " + ", ".join(p["refused"][:40])
                   + (" ..." if len(p["refused"]) > 40 else "")) if p["refused"] else "",
        "expect": expect,
    }, {
        "control": "seccomp other ABIs", "section": SECTION, "key": "other_abis",
        "value": (f"filtered like the native ABI: {', '.join(p['arches'][1:])}; "
                  if len(p["arches"]) > 1 else "")
        + f"any other ABI (i386 int 0x80, x32): {p['other_abis']}",
        "status": status, "weight": 0.0,
    }]
    if p["notes"]:
        rows.append({
            "control": "seccomp argument checks", "section": SECTION, "key": "deny_namespaces",
            "value": "; ".join(p["notes"]), "status": status, "weight": 0.0,
        })
    if p["skipped"]:
        detail = str(rows[0]["detail"])
        rows[0]["detail"] = detail + ("; " if detail else "") + (
            "names unknown to this libseccomp, skipped: " + ", ".join(p["skipped"]))
    return rows


def register_commands(cli):
    import click

    if "seccomp" in getattr(cli, "commands", {}):
        return

    @cli.group("seccomp")
    def seccomp_group():
        """Seccomp policies: export a compiled policy, list the syscall groups."""

    @seccomp_group.command("export")
    @click.option("--profile", "-p", "profiles", multiple=True, required=True,
                  help="profile name or path (repeatable, composed left to right)")
    @click.option("--set", "-s", "sets", multiple=True, help="override SECTION.KEY=VALUE")
    @click.option("--format", "-f", "fmt", type=click.Choice(["oci-json", "bpf", "pfc"]),
                  default="oci-json", show_default=True)
    @click.option("--output", "-o", type=click.Path(dir_okay=False), default="-",
                  help="file to write (default: stdout)")
    def export(profiles, sets, fmt, output):
        """Write the compiled [seccomp] policy of a profile: OCI/Docker JSON, raw BPF (the
        exact program secrun loads) or PFC (libseccomp's readable pseudo code)."""
        import sys

        from secrun import plan as _plan
        from secrun.context import Context
        from secrun.errors import SecrunError
        from secrun.plugins import _seccomp_compile as c

        p = _plan.build(list(profiles), list(sets))
        if SECTION not in p["config"]:
            raise SecrunError(f"profile {', '.join(profiles)} has no [seccomp] section")
        if fmt == "bpf":
            data = p["plan"][SECTION]["bpf"]
        else:
            m = c.model_from_ctx(Context(p["config"], p["origins"], {}))
            if fmt == "pfc":
                data = c.pfc(m).encode()
            else:
                import json

                obj, lost = c.oci(m)
                for line in lost:
                    sys.stderr.write(f"secrun: warning: oci-json cannot express: {line}\n")
                data = (json.dumps(obj, indent=2) + "\n").encode()
        if output == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            with open(output, "wb") as f:
                f.write(data)

    @seccomp_group.command("groups")
    @click.argument("names", nargs=-1)
    def groups(names):
        """List the named syscall groups (or the members of NAMES)."""
        from secrun.plugins import _seccomp_compile as c

        g = c.load_groups()
        for name in names or sorted(g):
            if name not in g:
                raise click.ClickException(f"unknown group {name!r}")
            click.echo(f"{name}: {g[name]['help']}")
            if names:
                click.echo("  " + " ".join(g[name]["syscalls"]))
