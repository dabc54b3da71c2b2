"""Planning, audit and the ``secrun cgroups`` commands of the ``cgroups`` plugin.

Nothing here runs on a cached launch: :mod:`secrun.plugins.cgroups` imports this module only
inside the hooks that need it (``secrun_profile_sections``, ``secrun_compile``,
``secrun_audit``, ``secrun_register_commands``) and on the error paths of its stages.  It holds
the profile schema, unit parsing (``"512M"``, ``"1.5"`` CPUs), the compiled plan, the audit
rows and ``secrun cgroups gc`` / ``list``.
"""

import os
import re
import struct

from secrun.errors import ConfigError, SetupError, shown
from secrun.plugins.cgroups import (
    CPU_PERIOD_US,
    LIMIT_KEYS,
    SECTION,
    Layout,
    detect,
    group_name_kind,
    human,
    kill_v1_dir,
    kill_v2_dir,
    open_dir,
    parent_dir,
    procs,
    rmdir_tree,
    try_lock,
    v1_shares,
)
from secrun.schema import Field, Section, is_digits, parse_digits

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_PATTERN = r"^([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)$"
_CPUS_PATTERN = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[-+]?[0-9]+)?"

# The largest values the kernel takes, checked when planning (the launch would fail, or worse):
# - memory.max, memory.swap.max (v1: memory.limit_in_bytes, memory.memsw.limit_in_bytes, which
#   gets memory_max + swap_max) are page counters of a signed long: a size of 2^63 bytes or
#   more does not fit (and 2^64 or more wraps, to a limit of almost nothing);
SIZE_MAX = (1 << 63) - 1
# - pids.max is below PIDS_MAX = PID_MAX_LIMIT + 1 (EINVAL otherwise);
PIDS_LIMIT = 4 * 1024 * 1024 if struct.calcsize("l") > 4 else 32 * 1024
# - a CFS quota (cpu.max, cpu.cfs_quota_us) is at most max_cfs_runtime, 2^44-1 microseconds
#   (the bandwidth is kept in 64 - BW_SHIFT = 44 bits; ERANGE or EINVAL otherwise).
QUOTA_MAX_US = (1 << 44) - 1
_DECIMALS = 30  # more than a byte count needs: refused rather than rounded


# --- units -----------------------------------------------------------------------------------

def parse_size(value):
    """'512M' -> 536870912; '' -> None (not set); 'max' -> 'max'.  Raises ValueError.

    ASCII digits (with an optional fraction) and a binary unit, at most :data:`SIZE_MAX`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative limit {shown(value)}")
        return _size_at_most(value, value)
    text = str(value).strip()
    if not text.isascii():  # (other scripts' digits; the Kelvin sign lowers to "k")
        raise ValueError(f"{shown(value)} is not a size such as \"512M\", \"2G\" or \"max\" "
                         f"(ASCII digits and units)")
    text = text.lower()
    if text == "":
        return None
    if text in ("max", "unlimited"):
        return "max"
    if text.startswith("-"):
        raise ValueError(f"negative limit {shown(value)}")
    m = re.match(_SIZE_PATTERN, text)
    if not m:
        raise ValueError(f"{shown(value)} is not a size such as \"512M\", \"2G\" or \"max\"")
    num, unit = m.groups()
    given = str(value).strip()[m.start(2):]
    unit = unit[:-1] if unit.endswith("b") and unit != "b" else unit  # 512MB, 512MiB
    unit = unit[:-1] if unit.endswith("i") else unit
    if unit == "b":
        unit = ""
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {shown(given)} in {shown(value)} (use K, M, G, T or "
                         f"none for bytes; binary multiples)")
    # Exact (no float): "1.5G" is 1610612736 bytes, and "9" * 400 is too large, not inf.
    whole, _, frac = num.partition(".")
    whole, frac = whole.lstrip("0"), frac.rstrip("0")
    if len(whole) > len(str(SIZE_MAX)):
        return _size_at_most(SIZE_MAX + 1, value)
    if len(frac) > _DECIMALS:
        raise ValueError(f"{shown(value)}: more than {_DECIMALS} decimals")
    scale = 10 ** len(frac)
    return _size_at_most((int(whole or "0") * scale + int(frac or "0")) * _UNITS[unit] // scale,
                         value)


def _size_at_most(n, value):
    if n > SIZE_MAX:
        raise ValueError(f"{shown(value)} is above the largest limit the kernel holds, "
                         f"{SIZE_MAX} bytes (2^63 - 1: its page counters are signed 64-bit); "
                         f"\"max\" is no limit")
    return n


def parse_cpus(value):
    """'1.5' (CPUs) -> quota in microseconds per CPU_PERIOD_US; '' -> None; 'max' -> 'max'.

    A finite positive number of CPUs (ASCII digits, an optional fraction and exponent) whose
    quota is at most :data:`QUOTA_MAX_US`; at least 1 ms per period (the kernel's least)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number of CPUs")
    if isinstance(value, int):  # (exact: no float of a 400-digit integer)
        if value < 0:
            raise ValueError(f"negative limit {shown(value)}")
        cpus = value if value * CPU_PERIOD_US <= QUOTA_MAX_US else float("inf")
    elif isinstance(value, float):
        cpus = value
    else:
        text = value.strip()
        low = text.lower() if text.isascii() else text  # (the Kelvin sign lowers to "k")
        if low == "":
            return None
        if low in ("max", "unlimited"):
            return "max"
        if low.startswith("-") and re.fullmatch(_CPUS_PATTERN, low[1:]):
            raise ValueError(f"negative limit {shown(value)}")
        if not re.fullmatch(_CPUS_PATTERN, low):
            raise ValueError(f"{shown(value)} is not a number of CPUs such as \"0.5\" or "
                             f"\"1.5\" (ASCII digits)")
        cpus = float(low)
    if cpus != cpus:
        raise ValueError(f"{shown(value)}: a CPU quota must be a finite positive number of CPUs")
    if cpus < 0:
        raise ValueError(f"negative limit {shown(value)}")
    if cpus == 0:
        raise ValueError(f"{shown(value)}: a CPU quota must be a positive number of CPUs")
    if cpus == float("inf") or round(cpus * CPU_PERIOD_US) > QUOTA_MAX_US:
        raise ValueError(f"{shown(value)}: more CPUs than the largest quota the kernel takes, "
                         f"{QUOTA_MAX_US // CPU_PERIOD_US} CPUs (2^44 - 1 microseconds per "
                         f"{CPU_PERIOD_US // 1000} ms period); \"max\" is no limit")
    return max(1000, round(cpus * CPU_PERIOD_US))


def parse_count(value):
    """pids: 20 -> 20; 0/'max'/'' -> None or 'max'.  ASCII digits, at most the kernel's
    :data:`PIDS_LIMIT`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    given = value
    if isinstance(value, str):
        text = value.strip()
        low = text.lower() if text.isascii() else text
        if low in ("", "max", "unlimited"):
            return "max" if low else None
        if low.startswith("-") and is_digits(low[1:]):
            raise ValueError(f"negative limit {shown(value)}")
        if not is_digits(low):
            raise ValueError(f"{shown(value)} is not a number of processes (ASCII digits) or "
                             f"\"max\"")
        try:
            value = parse_digits(low, PIDS_LIMIT)
        except ValueError:
            value = PIDS_LIMIT + 1  # too large: refused below, naming the value given
    if value < 0:
        raise ValueError(f"negative limit {shown(value)}")
    if value > PIDS_LIMIT:
        raise ValueError(f"{shown(given)} is above the largest pids limit the kernel takes, "
                         f"{PIDS_LIMIT} (PID_MAX_LIMIT); 0 or \"max\" is no limit")
    return value or None


def parse_weight(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer weight")
    if value < 0:
        raise ValueError(f"negative weight {shown(value)}")
    if value > 10000:
        raise ValueError(f"weight {shown(value)} is above 10000 (the range is 1-10000, 100 is "
                         f"the default share)")
    return value or None


def _check_parent(value):
    if value and any(p in ("..", ".") for p in value.split("/")):
        raise ValueError(f"{value!r}: '.' and '..' are not allowed in a cgroup path")


def _checker(parse):
    def check(value):
        parse(value)
    return check


PARSERS = {"memory_max": parse_size, "swap_max": parse_size, "pids_max": parse_count,
           "cpu_max": parse_cpus, "cpu_weight": parse_weight, "io_weight": parse_weight}


# --- schema and plan ---------------------------------------------------------------------------

def profile_sections():
    return [Section(SECTION, "Resource limits: a fresh cgroup per run (v2, v1 or hybrid hosts).", [
        Field("memory_max", (int, str), "",
              "memory limit: bytes or a size with a binary unit (\"512M\", \"2G\"); \"\" or "
              "\"max\": none.  Exceeding it gets the workload OOM-killed (reported, exit 137)",
              check=_checker(parse_size)),
        Field("swap_max", (int, str), "0",
              "swap the workload may use on top of memory_max (\"0\": none, \"max\": any); "
              "applied with memory_max where the host accounts swap (v2 memory.swap.max, "
              "v1 memory.memsw.limit_in_bytes = memory_max + swap_max)",
              check=_checker(parse_size)),
        Field("pids_max", (int, str), 0,
              "most processes and threads alive in the group at once (0 or \"max\": no limit); "
              "fork() beyond it fails with EAGAIN and the run reports it",
              check=_checker(parse_count)),
        Field("cpu_max", (int, float, str), "",
              "CPU quota as a number of CPUs (\"0.5\", \"1.5\"), enforced per 100 ms period; "
              "\"\" or \"max\": none", check=_checker(parse_cpus)),
        Field("cpu_weight", int, 0,
              "relative CPU share under contention, 1-10000 (100 is the default share; v1: "
              "cpu.shares = weight * 1024 / 100); 0: inherited", check=_checker(parse_weight)),
        Field("io_weight", int, 0,
              "relative block-io share, 1-10000 (v2 io.weight / io.bfq.weight; v1 "
              "blkio.bfq.weight = weight / 10, clamped to 1-1000); 0: inherited",
              check=_checker(parse_weight)),
        Field("parent", str, "",
              "where the run's group is created: \"\" under secrun's own cgroup (from "
              "/proc/self/cgroup); \"/a/b\" from the root of each hierarchy (e.g. a "
              "delegated subtree); \"a/b\" relative to secrun's own cgroup",
              check=_check_parent),
    ])]


def compile_plan(ctx):
    cfg = ctx.config[SECTION]
    plan = {"parent": cfg["parent"]}
    for key in LIMIT_KEYS:
        try:
            plan[key] = PARSERS[key](cfg[key])
        except ValueError as e:
            raise ConfigError(SECTION, key, str(e)) from None
    if plan["memory_max"] in (None, "max"):
        plan["swap_max"] = None  # swap is limited only together with memory
    ctx.plan[SECTION] = plan


# --- audit -------------------------------------------------------------------------------------

def audit(ctx):
    plan = ctx.plan[SECTION]
    req = ctx.required(SECTION)
    try:
        layout = detect()
    except OSError:
        layout = Layout({}, None)
    where = {}
    for c in ("memory", "pids", "cpu", "io"):
        v1name = "blkio" if c == "io" else c
        if v1name in layout.v1:
            where[c] = "v1"
        elif layout.v2 is not None:
            d = parent_dir(layout.v2[0], layout.v2[1], plan["parent"])
            if c in layout.v2_controllers(d):
                where[c] = "v2"
    rows = []

    def row(control, key, value, expect, weight_unset, controller):
        configured = plan[key] is not None and plan[key] != "max"
        if not configured:
            status, weight, exp = "not-configured", weight_unset, None
        elif controller not in where:
            status, weight, exp = "not-available", weight_unset, None
        else:
            status, weight = ("enforced" if req else "best-effort"), 0.0
            exp = expect.get(where[controller])
        r = {"control": control, "section": SECTION, "key": key, "value": value,
             "status": status, "weight": weight,
             "detail": f"{layout.kind} layout; {controller} controller: "
                       f"{where.get(controller, 'not available')}"}
        if exp:
            r["expect"] = exp
        rows.append(r)

    mem, swap = plan["memory_max"], plan["swap_max"]
    mem_v1 = {"cgroup.memory.limit_in_bytes": str(mem)}
    if isinstance(mem, int) and isinstance(swap, int) and \
            os.path.exists(os.path.join(layout.v1.get("memory", ("/nonexistent",))[0],
                                        "memory.memsw.limit_in_bytes")):
        mem_v1["cgroup.memory.memsw.limit_in_bytes"] = str(mem + swap)
    mem_v2 = {"cgroup.memory.max": str(mem)}
    if isinstance(swap, int):
        mem_v2["cgroup.memory.swap.max"] = str(swap)
    rows_spec = [
        ("cgroup memory limit", "memory_max",
         f"{human(mem) if mem is not None else 'none'}"
         + (f" (+ swap {human(swap)})" if swap is not None else ""),
         {"v1": mem_v1, "v2": mem_v2}, 0.3, "memory"),
        ("cgroup pids limit", "pids_max", str(plan["pids_max"] or "none"),
         {"v1": {"cgroup.pids.max": str(plan["pids_max"])},
          "v2": {"cgroup.pids.max": str(plan["pids_max"])}}, 0.3, "pids"),
    ]
    q = plan["cpu_max"]
    rows_spec.append(("cgroup CPU quota", "cpu_max",
                      f"{q / CPU_PERIOD_US:g} CPUs" if isinstance(q, int) else "none",
                      {"v1": {"cgroup.cpu.cfs_quota_us": str(q),
                              "cgroup.cpu.cfs_period_us": str(CPU_PERIOD_US)},
                       "v2": {"cgroup.cpu.max": f"{q} {CPU_PERIOD_US}"}}, 0.1, "cpu"))
    w = plan["cpu_weight"]
    rows_spec.append(("cgroup CPU weight", "cpu_weight", str(w or "inherited"),
                      {"v1": {"cgroup.cpu.shares": str(v1_shares(w or 100))},
                       "v2": {"cgroup.cpu.weight": str(w)}}, 0.05, "cpu"))
    if plan["io_weight"] is not None:
        rows_spec.append(("cgroup io weight", "io_weight", str(plan["io_weight"]), {}, 0.05,
                          "io"))
    for spec in rows_spec:
        row(*spec)
    # The run's groups are locked by its supervisor for as long as it lives: that lock, not a
    # pid, is how `secrun cgroups gc` and the next launch tell a live run from a leftover.
    if where:
        rows.append({"control": "cgroup run lock", "section": SECTION, "key": "parent",
                     "value": "held by secrun while the run lives", "status":
                     "enforced" if req else "best-effort", "weight": 0.0,
                     "detail": "gc removes only groups whose lock is free",
                     "expect": {"cgroup.locked": "yes"}})
    return rows


# --- secrun cgroups gc / list ------------------------------------------------------------------
# A group's liveness is its lock (see plugins/cgroups.py): the supervisor holds flock(LOCK_EX) on
# each of its group directories until it has removed them.  gc takes the lock itself, without
# waiting, before it kills or removes anything, and holds it until the group is gone, so a
# secrun that is making a group of that name at the same moment notices and makes another.

def find_groups(layout=None):
    """Every ``secrun-<pid>-<hex>`` group in every mounted hierarchy: [(path, kind)], kind
    "locked" (liveness is its lock) or "legacy" (made by a secrun before the lock)."""
    layout = layout or detect()
    mounts = {m for m, _ in layout.v1.values()}
    if layout.v2:
        mounts.add(layout.v2[0])
    found = []
    for mnt in sorted(mounts):
        for root, dirs, _files in os.walk(mnt):
            keep = []
            for d in dirs:
                kind = group_name_kind(d)
                if kind:
                    found.append((os.path.join(root, d), kind))
                else:
                    keep.append(d)
            dirs[:] = keep
    return found


def _empty(path) -> bool:
    """No process in the group and no group below it."""
    try:
        with os.scandir(path) as it:
            if any(e.is_dir(follow_symlinks=False) for e in it):
                return False
    except OSError:
        return False
    return not procs(path)


def state(path, kind) -> str:
    """A group's state for ``secrun cgroups list``: in use, orphaned, or for a legacy group
    "legacy, empty" or "legacy, in use or orphaned" (its liveness cannot be told)."""
    if kind == "legacy":
        return "legacy, empty" if _empty(path) else "legacy, in use or orphaned"
    try:
        fd = open_dir(path)
    except FileNotFoundError:
        return "gone"
    except OSError:
        return "in use"  # cannot look: count it as alive
    try:
        return "orphaned" if try_lock(fd) else "in use"
    except OSError:
        return "in use"
    finally:
        os.close(fd)


def gc(dry_run=False, echo=print) -> int:
    """Kill the processes left in orphaned groups and remove the groups; returns the count.
    A group whose lock is held (its secrun is alive, in whatever pid namespace) is left alone;
    a legacy group (made before the lock) is removed only when it is empty."""
    layout = detect()
    v2mnt = layout.v2[0] if layout.v2 else None
    n = 0
    failed = []
    legacy_busy = []
    groups = find_groups(layout)
    # v2 groups first (cgroup.kill takes a whole tree at once), then the v1 freezer's (freeze
    # and kill), then the other v1 hierarchies, by then normally empty.
    groups.sort(key=lambda g: (not (v2mnt and g[0].startswith(v2mnt.rstrip("/") + "/")),
                               "/freezer/" not in g[0]))
    for path, kind in groups:
        if kind == "legacy":
            if not _empty(path):
                legacy_busy.append(path)
                continue
            n += 1
            if dry_run:
                echo(f"would remove {path}")
                continue
            try:
                os.rmdir(path)
                echo(f"removed {path}")
            except FileNotFoundError:
                pass
            except OSError:
                legacy_busy.append(path)
                n -= 1
            continue
        try:
            fd = open_dir(path)
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        try:
            if not try_lock(fd):
                continue  # its secrun is alive
            n += 1
            if dry_run:
                echo(f"would remove {path}")
                continue
            is_v2 = v2mnt is not None and (path + "/").startswith(v2mnt.rstrip("/") + "/")
            kill = (lambda p=path: kill_v2_dir(p)) if is_v2 else (lambda p=path: kill_v1_dir(p))
            try:
                kill()
                rmdir_tree(path, kill=kill)
                echo(f"removed {path}")
            except OSError as e:
                failed.append(f"{path}: {os.strerror(e.errno or 0)}")
        finally:
            os.close(fd)  # after the rmdir: the lock covered the whole removal
    for path in legacy_busy:
        echo(f"left alone {path}: made by a secrun without the run lock, and not empty, so "
             f"whether its secrun is alive cannot be told; kill what runs in it "
             f"({os.path.join(path, 'cgroup.procs')}) and run gc again")
    if failed:
        raise SetupError("secrun cgroups gc", "could not remove " + "; ".join(failed))
    return n


def register_commands(cli):
    import click

    @cli.group("cgroups")
    def cgroups_cmd():
        """Cgroups made by secrun."""

    @cgroups_cmd.command("gc")
    @click.option("--dry-run", "-n", is_flag=True, help="list what would be removed")
    def gc_cmd(dry_run):
        """Remove groups left behind by a secrun that was killed (SIGKILL): kill what still
        runs in them and remove them.  A running secrun holds a lock on each of its groups
        (flock on the group directory) until it has removed them; a group whose lock is
        held is left alone, whatever pid namespace its secrun runs in."""
        n = gc(dry_run=dry_run, echo=click.echo)
        click.echo(f"{n} orphaned group(s) {'found' if dry_run else 'removed'}")

    @cgroups_cmd.command("list")
    def list_cmd():
        """List every secrun group and whether its secrun is still running."""
        for path, kind in find_groups():
            click.echo(f"{path}  {state(path, kind)}")
