"""The entries of ``[filesystem]``: ``binds`` and ``tmpfs`` entries parsed and checked (by the
schema's checks, by ``secrun_compile`` and by the audit), and the flag words of their options
turned into ``MOUNT_ATTR_*`` bits and ``fsconfig`` options.  Planning only."""

from __future__ import annotations

from secrun.errors import shown
from secrun.schema import parse_digits, parse_scaled

from .mount import NODEV, NOEXEC, NOSUID, RDONLY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .plan import FsOptions

# the flag words of the options, as MOUNT_ATTR_* bits (linux/mount.h) they set or clear
_FLAG = {"ro": RDONLY, "nosuid": NOSUID, "nodev": NODEV, "noexec": NOEXEC}
_UNFLAG = {"rw": RDONLY, "suid": NOSUID, "dev": NODEV, "exec": NOEXEC}
FLAG_WORDS = tuple(_FLAG) + tuple(_UNFLAG)
TMPFS_DATA = ("size", "mode", "nr_inodes")


def _split_opts(text: str) -> list[str]:
    return [o.strip() for o in text.split(",") if o.strip()]


def parse_bind(entry: object) -> tuple[str, str, list[str]]:
    """A ``binds`` entry -> (src, dst, [options]).  Raises ValueError on a malformed one.

    Forms: ``"SRC"``, ``"SRC:DST"``, ``"SRC:DST:OPT,OPT"``, or a table
    ``{ src = "...", dst = "...", options = ["rw", "noexec"] }``."""
    if isinstance(entry, str):
        parts = entry.split(":")
        if len(parts) > 3 or not parts[0]:
            raise ValueError(f"bind {entry!r}: expected SRC[:DST[:OPTIONS]] (use the table form "
                             f"for a path containing ':')")
        src = parts[0]
        dst = parts[1] if len(parts) > 1 and parts[1] else src
        opts = _split_opts(parts[2]) if len(parts) > 2 else []
    elif isinstance(entry, dict):
        extra = set(entry) - {"src", "dst", "options"}
        if extra:
            raise ValueError(f"bind {entry!r}: unknown key(s) {', '.join(sorted(extra))} "
                             f"(known: src, dst, options)")
        src = entry.get("src", "")
        dst = entry["dst"] if "dst" in entry else src
        opts = entry.get("options", [])
        if not isinstance(src, str) or not src:
            raise ValueError(f"bind {entry!r}: 'src' (a path) is required")
        if not isinstance(dst, str) or not isinstance(opts, list) or \
                not all(isinstance(o, str) for o in opts):
            raise ValueError(f"bind {entry!r}: 'dst' is a path and 'options' a list of strings")
    else:
        raise ValueError(f"bind {entry!r}: expected a string or a table")
    for o in opts:
        if o not in FLAG_WORDS:
            raise ValueError(f"bind {src}: unknown option {o!r} "
                             f"(known: {', '.join(FLAG_WORDS)})")
    return src, dst, opts


# tmpfs's own parsing (mm/shmem.c), checked when planning so that a value the mount would
# refuse, or read as another one, is refused naming the key: size= is a byte count (memparse:
# digits and K, M, G, T, P, E; 2^64 or more wraps, to 0 = unlimited) or a percentage of RAM;
# nr_inodes= a count (memparse too), EINVAL above ULONG_MAX / 1024; mode= octal, of which the
# kernel keeps the low 12 bits (17777 would be 7777).  Sizes and counts are passed on in
# decimal and modes in octal, without leading zeros: memparse reads "010" as 8 and "0x10" as 16.
TMPFS_SIZE_MAX = (1 << 63) - 1  # as the cgroup memory limits: what a signed 64-bit count holds
TMPFS_PERCENT_MAX = 1000        # ten times the RAM: (percent << PAGE_SHIFT) * RAM pages must fit
TMPFS_INODES_MAX = ((1 << 64) - 1) // 1024


def _tmpfs_size(value: str) -> str:
    if value.endswith("%"):
        try:
            return f"{parse_digits(value[:-1], TMPFS_PERCENT_MAX)}%"
        except ValueError:
            raise ValueError(f"{shown(value)} is not a percentage of RAM from 0% to "
                             f"{TMPFS_PERCENT_MAX}% (ASCII digits)") from None
    return str(parse_scaled(value, TMPFS_SIZE_MAX, what="size in bytes"))


def _tmpfs_inodes(value: str) -> str:
    return str(parse_scaled(value, TMPFS_INODES_MAX, what="inode count"))


def _tmpfs_mode(value: str) -> str:
    if not (value.isascii() and all(c in "01234567" for c in value)):
        raise ValueError(f"{shown(value)} is not octal (such as 755 or 1777)")
    significant = value.lstrip("0") or "0"
    if len(significant) > 4:
        raise ValueError(f"{shown(value)} is above 7777 (set-id, sticky and permission bits)")
    return significant


_TMPFS_VALUE = {"size": _tmpfs_size, "nr_inodes": _tmpfs_inodes, "mode": _tmpfs_mode}


def parse_tmpfs(entry: object) -> tuple[str, list[str]]:
    """A ``tmpfs`` entry -> (dst, [options]).  ``"DST"``, ``"DST:OPT,OPT"`` (options: the flag
    words and ``size=``, ``mode=``, ``nr_inodes=``) or ``{ dst = "...", options = [...] }``."""
    if isinstance(entry, str):
        dst, _, rest = entry.partition(":")
        opts = _split_opts(rest)
    elif isinstance(entry, dict):
        extra = set(entry) - {"dst", "options"}
        if extra:
            raise ValueError(f"tmpfs {entry!r}: unknown key(s) {', '.join(sorted(extra))} "
                             f"(known: dst, options)")
        dst, opts = entry.get("dst", ""), entry.get("options", [])
        if not isinstance(dst, str) or not isinstance(opts, list) or \
                not all(isinstance(o, str) for o in opts):
            raise ValueError(f"tmpfs {entry!r}: 'dst' (a path) is required and 'options' is a "
                             f"list of strings")
    else:
        raise ValueError(f"tmpfs {entry!r}: expected a string or a table")
    if not dst:
        raise ValueError(f"tmpfs {entry!r}: no destination")
    return dst, [_tmpfs_option(dst, o) for o in opts]


def _tmpfs_option(dst: str, o: str) -> str:
    """One option of a tmpfs entry, checked; ``size=``, ``mode=`` and ``nr_inodes=`` values
    rewritten as the kernel must read them."""
    key, eq, val = o.partition("=")
    if eq:
        if key not in TMPFS_DATA or not val:
            raise ValueError(f"tmpfs {shown(dst)}: unknown option {shown(o)} "
                             f"(known: {', '.join(FLAG_WORDS + TMPFS_DATA)})")
        try:
            val = _TMPFS_VALUE[key](val)
        except ValueError as e:
            raise ValueError(f"tmpfs {shown(dst)}: {key}={e}") from None
        return f"{key}={val}"
    if o not in FLAG_WORDS:
        raise ValueError(f"tmpfs {shown(dst)}: unknown option {shown(o)} "
                         f"(known: {', '.join(FLAG_WORDS + TMPFS_DATA)})")
    return o


def flags(words: list[str], set_: int, clr: int) -> tuple[int, int]:
    """``(set, clr)`` MOUNT_ATTR_* bits after the flag words (a later word wins)."""
    for w in words:
        if w in _FLAG:
            set_, clr = set_ | _FLAG[w], clr & ~_FLAG[w]
        elif w in _UNFLAG:
            set_, clr = set_ & ~_UNFLAG[w], clr | _UNFLAG[w]
    return set_, clr


def tmpfs_options(opts: list[str]) -> FsOptions:
    """fsconfig (key, value) pairs of a tmpfs entry's ``size=``, ``mode=``, ``nr_inodes=``."""
    out = []
    for o in opts:
        key, eq, value = o.partition("=")
        if eq:
            out.append((key.encode(), value.encode()))
    return tuple(out)
