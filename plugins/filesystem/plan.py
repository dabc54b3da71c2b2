"""The ``filesystem`` plugin's planning: the ``[filesystem]`` schema, the facts it reads,
``secrun_compile`` and the plan's shape (what the stages read).  Imported only on a plan cache
miss, by ``secrun audit`` and ``secrun profiles``; a cached launch never loads it.
"""

from __future__ import annotations

from typing import Literal, TypedDict, cast

from secrun import hookimpl
from secrun.errors import ConfigError
from secrun.facts import Facts
from secrun.schema import Field, Section

from . import mount
from .entries import parse_bind, parse_tmpfs
from .mount import RDONLY
from .view import SECTION, plan_view

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from secrun.context import PlanContext

ROOT_WORDS = ("nosuid", "nodev", "noexec")

# --- the plan -----------------------------------------------------------------------------------

# fsconfig options of a new filesystem: (key, value) bytes, value None for a flag option
FsOptions = tuple[tuple[bytes, bytes | None], ...]


class KernelFsOp(TypedDict):
    """A fresh procfs on /proc, the minimal /dev, or a fresh read-only sysfs on /sys."""

    kind: Literal["proc", "dev", "sys"]


class TmpfsOp(TypedDict):
    """A tmpfs on ``dst``; ``top``: the mount already there is detached first (/tmp)."""

    kind: Literal["tmpfs"]
    dst: str
    rel: bytes  # dst as opened below the view's root
    attrs: int  # MOUNT_ATTR_* bits
    options: FsOptions
    top: bool


class HideOp(TypedDict):
    """``dst`` hidden; ``private`` when something is mounted inside it later (a tmpfs of its
    own, read-only at the end); the others share one read-only empty tmpfs (or /dev/null)."""

    kind: Literal["hide"]
    dst: str
    rel: bytes
    private: bool


class BindOp(TypedDict):
    """The host path ``src`` bound on ``dst`` with MOUNT_ATTR_* bits set and cleared."""

    kind: Literal["bind"]
    src: str
    src_b: bytes
    dst: str
    rel: bytes
    set: int
    clr: int


class CwdOp(TypedDict):
    """The working directory bound read-write at its own path ``dst`` (the clone of the
    process's own working directory)."""

    kind: Literal["cwd"]
    dst: str
    rel: bytes


class RoOp(TypedDict):
    """``dst`` made read-only, recursively."""

    kind: Literal["ro"]
    dst: str
    rel: bytes


Op = KernelFsOp | TmpfsOp | HideOp | BindOp | CwdOp | RoOp
CwdMode = Literal["bind", "view", "hidden"]


class CwdPlan(TypedDict):
    """Where the working directory stands: ``mode`` "bind" (bound read-write by a cwd op),
    "view" (shown by the view itself) or "hidden" (hidden or covered: the workload starts in
    /); ``warning`` is said once per launch, in ``prepare`` ("" for none)."""

    mode: CwdMode
    rel: bytes
    warning: str


class CgroupMount(TypedDict):
    """A host cgroup hierarchy to mount again under the fresh sysfs's /sys/fs/cgroup."""

    name: bytes  # below /sys/fs/cgroup (b"": /sys/fs/cgroup itself, cgroup2)
    fstype: bytes  # b"cgroup" | b"cgroup2"
    options: FsOptions
    key: str  # its controllers field in /proc/self/cgroup (sorted; "" for cgroup2)
    point: str  # the host's mount point


class CgroupLayout(TypedDict):
    v2: bool  # cgroup2 on /sys/fs/cgroup itself
    mounts: list[CgroupMount]
    links: list[tuple[bytes, bytes]]  # (name, target) symlinks beside v1 hierarchies


class FilesystemPlan(TypedDict):
    """What ``secrun_compile`` returns: a ready list the ``mounts`` stage loops over."""

    root: str  # "" for the host's /
    root_b: bytes  # what is cloned, as bytes
    root_set: int  # MOUNT_ATTR_* bits set on the whole root tree
    host_dev: tuple[bytes, ...]  # the host's device nodes opened before anything is covered
    ops: list[Op]  # parents before children
    cwd: CwdPlan
    cgroup: CgroupLayout | None  # hierarchies shown on the fresh sysfs, if any
    shm_size: bytes  # size= of /dev/shm (b"": none; see cgroups.memory_substitute)


# --- the schema ---------------------------------------------------------------------------------

def _check_list(parse: Callable[[object], object]) -> Callable[[list], None]:
    def check(values: list) -> None:
        for v in values:
            parse(v)
    return check


def _check_root_options(values: list[str]) -> None:
    for v in values:
        if v not in ROOT_WORDS:
            raise ValueError(f"{v!r} is not one of {', '.join(ROOT_WORDS)} (read-only is "
                             f"the key read_only)")


@hookimpl
def secrun_profile_sections() -> list[Section]:
    return [Section(SECTION, "The filesystem view: a read-only host root or a given root "
                    "directory (entered with pivot_root), fresh /proc, minimal /dev, private "
                    "/tmp, bind and tmpfs mounts, hidden and read-only paths.  Needs "
                    "[namespaces].mount = true.", [
        Field("root", str, "",
              "\"\": the view is a copy of the host's /; otherwise an absolute path of a "
              "directory that becomes / (entered with pivot_root; the host's root is detached "
              "and unreachable)"),
        Field("read_only", bool, True,
              "the root is mounted read-only, every submount included (writes fail with "
              "EROFS); binds with \"rw\", tmpfs mounts and the working directory stay writable"),
        Field("root_options", [str], ["nosuid"],
              "flags for the whole root tree, recursively: nosuid, nodev, noexec (with dev = "
              "false, nodev also disables the root's own /dev)", check=_check_root_options),
        Field("writable_cwd", bool, False,
              "bind secrun's working directory read-write at the same path, below every "
              "mount above it; not when it is / or at or below a read-only path, a read-only "
              "bind or /proc, /dev, /sys (it stays read-only, with a warning), nor when the "
              "view covers it (see visible_cwd)"),
        Field("visible_cwd", bool, True,
              "no effect, kept for older profiles: the working directory is shown where the "
              "view shows the host's directory; one that the view hides or covers (a hidden "
              "path, a tmpfs, the private /tmp, the fresh /proc, /dev, /sys) is never bound "
              "back, which would re-expose what the cover hides: the workload starts in / "
              "with a warning"),
        Field("proc", bool, True,
              "mount a fresh /proc (nosuid, nodev, noexec) showing the sandbox's pid namespace"),
        Field("dev", bool, True,
              "a minimal /dev: tmpfs with null, zero, full, random, urandom, tty bind-mounted "
              "from the host, a private devpts with ptmx, /dev/shm (tmpfs), and the fd/stdin/"
              "stdout/stderr links; false keeps the root's own /dev"),
        Field("tmp", bool, True,
              "a private, empty tmpfs on /tmp (mode 1777, nosuid, nodev), gone with the sandbox"),
        Field("tmpfs", [object], [],
              "more tmpfs mounts: \"/run\", \"/run:size=16M,mode=755,noexec\" or "
              "{ dst = \"/run\", options = [\"size=16M\"] }; default flags nosuid, nodev",
              check=_check_list(parse_tmpfs)),
        Field("binds", [object], [],
              "bind mounts of host paths: \"SRC\", \"SRC:DST\", \"SRC:DST:rw,noexec\" or "
              "{ src = \"...\", dst = \"...\", options = [\"rw\"] }; read-only, nosuid and "
              "nodev unless the options say rw, suid, dev; recursive (submounts come along)",
              check=_check_list(parse_bind)),
        Field("hide", [str], [],
              "paths made invisible: an empty read-only tmpfs over a directory, /dev/null over "
              "anything else; paths missing from the view are skipped; binds may still be "
              "placed inside a hidden directory"),
        Field("read_only_paths", [str], [],
              "paths made read-only (recursively), e.g. /proc/sys; missing paths are skipped"),
    ])]


# --- compile ------------------------------------------------------------------------------------

@hookimpl
def secrun_facts() -> Facts:
    return Facts(requires=("namespaces.made", "namespaces.net", "cgroups.memory_substitute"),
                 uses=("cgroups.attach",),
                 publishes={"filesystem.writable": (
                     [], "the places the view lets the workload write (as paths inside the "
                         "view): \"/\" when the root is writable, private tmpfs entries, "
                         "read-write binds, the working directory when bound read-write, and "
                         "with the minimal /dev its nodes, /dev/pts and /dev/shm; [] without a "
                         "[filesystem] section")})


# what the minimal /dev lets the workload write (mount.DEV_NODES, its devpts, its tmpfs)
DEV_WRITABLE = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                "/dev/tty", "/dev/ptmx", "/dev/pts", "/dev/shm"]


def writable(plan: FilesystemPlan) -> list[str]:
    """The places the view lets the workload write (see the fact filesystem.writable)."""
    out = ["/"] if not plan["root_set"] & RDONLY else []
    for op in plan["ops"]:
        if op["kind"] == "dev":
            out += DEV_WRITABLE
        elif op["kind"] == "tmpfs" and not op["attrs"] & RDONLY or op["kind"] == "cwd" or \
                op["kind"] == "bind" and not op["set"] & RDONLY:
            out.append(op["dst"])  # type: ignore[typeddict-item]  # (these kinds have one)
    return out


@hookimpl
def secrun_compile(ctx: PlanContext) -> FilesystemPlan:
    """The section -> the plan (see :func:`.view.plan_view`).  Refused without a private mount
    namespace: mounts made in the host's own would be the host's."""
    made = cast("list[str]", ctx.fact("namespaces.made"))
    if "mnt" not in made:
        raise ConfigError(SECTION, None, "the filesystem view needs a private mount namespace: "
                          "set [namespaces].mount = true (it keeps every mount away from the "
                          "host)")
    ctx.depends_on(mount.__file__)
    plan = plan_view(ctx, ctx.config[SECTION], str(ctx.fact("namespaces.net")),
                     "cgroup" in made)
    cap = ctx.fact("cgroups.memory_substitute")
    if isinstance(cap, int):
        _cap_tmpfs(plan, str(cap).encode())
    ctx.publish("filesystem.writable", writable(plan))
    return plan


def _cap_tmpfs(plan: FilesystemPlan, size: bytes) -> None:
    """No memory cgroup will hold the run (cgroups.memory_substitute): every tmpfs the view
    mounts without a size of its own, /dev/shm included, gets size=memory_max, or the
    workload could fill the host's memory through files (the rlimit that stands in counts
    private memory only)."""
    plan["shm_size"] = size
    for op in plan["ops"]:
        if op["kind"] == "tmpfs" and not any(k == b"size" for k, _v in op["options"]):
            op["options"] = (*op["options"], (b"size", size))
