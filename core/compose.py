"""Named TOML profiles: finding them, checking they are safe to read, composing and validating.

A profile is a TOML file with optional top-level keys ``description``, ``extends`` (profile
names or paths, merged left to right before this file), ``plugins`` (third-party plugins this
profile needs) and one table per section, owned by a plugin's schema.

Merging (see ``docs/profiles.md``): scalars override; tables merge key by key; a list value
replaces the inherited list, while ``key = { add = [...], remove = [...] }`` edits it.  Every
effective value remembers the file and key it came from.

This module runs only at planning time (a cached launch never imports it).
"""

from __future__ import annotations

import os
import re
import stat
import tomllib

from .context import working_directory
from .errors import ProfileError, shown
from .schema import conforms, type_name

TYPE_CHECKING = False  # (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from .context import Config, Origins
    from .schema import Field, Section, TypeSpec

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
TOP_LEVEL: dict[str, TypeSpec] = {"description": str, "extends": (str, [str]), "plugins": [str]}
BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles")
# In an editable install the bundled files are symlinks into the checkout; name the real file.
SYSTEM = "/etc/secrun/profiles"
DEFAULT_PROFILE = "default"
COMMAND_LINE = "command line"
BUILTIN_DEFAULT = "built-in default"


def user_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "secrun", "profiles")


def search_path() -> list[tuple[str, str]]:
    """(label, directory) in lookup order: the first directory holding NAME.toml wins.

    ``SECRUN_PROFILE_PATH`` (colon-separated) replaces the user and system directories; the
    bundled profiles are always last.
    """
    env = os.environ.get("SECRUN_PROFILE_PATH")
    if env is not None:
        dirs = [("SECRUN_PROFILE_PATH", d) for d in env.split(":") if d]
    else:
        dirs = [("user", user_dir()), ("system", SYSTEM)]
    return dirs + [("bundled", BUNDLED)]


class RawProfile:
    __slots__ = ("name", "path", "source", "data")

    def __init__(self, name: str, path: str, source: str, data: dict[str, Any]) -> None:
        self.name, self.path, self.source, self.data = name, path, source, data


def is_path(ref: str) -> bool:
    return ref.startswith(("/", "./")) and ref.endswith(".toml")


def resolve(ref: str, base_dir: str | None = None,
            probed: list[str] | None = None) -> tuple[str, str]:
    """Profile name or path -> (path, source label).  ``probed`` collects every path looked at."""
    if is_path(ref):
        path = ref if ref.startswith("/") else os.path.join(base_dir or working_directory(), ref)
        path = os.path.normpath(path)
        if probed is not None:
            probed.append(path)
        if not os.path.isfile(path):
            raise ProfileError(f"profile file {path}: not found")
        return path, "path"
    if not NAME_RE.match(ref):
        raise ProfileError(
            f"invalid profile name {ref!r}: names match [a-z0-9][a-z0-9_-]* "
            f"(give a file as ./NAME.toml or an absolute path)")
    for label, d in search_path():
        path = os.path.join(d, ref + ".toml")
        if probed is not None:
            probed.append(path)
        if os.path.isfile(path):
            return (os.path.realpath(path) if label == "bundled" else path), label
    where = ", ".join(d for _, d in search_path())
    raise ProfileError(f"unknown profile {ref!r} (looked in {where})")


def check_safe(path: str) -> None:
    """As root, refuse a profile that anyone but root could have written (as sudo and sshd do):
    the file and every directory above it must be owned by root and not group/world-writable
    (a sticky directory such as /tmp is accepted for the path through it)."""
    if os.geteuid() != 0:
        return
    p = os.path.realpath(path)
    st = os.stat(p)
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise ProfileError(
            f"profile file {path}: refusing to read it as root: it is "
            + ("not owned by root" if st.st_uid != 0 else "group- or world-writable")
            + f" (mode {stat.filemode(st.st_mode)})")
    d = os.path.dirname(p)
    while True:
        st = os.stat(d)
        if st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            raise ProfileError(
                f"profile file {path}: refusing to read it as root: directory {d} is "
                + ("not owned by root" if st.st_uid != 0 else "group- or world-writable")
                + f" (mode {stat.filemode(st.st_mode)})")
        if d == "/":
            break
        d = os.path.dirname(d)


# A profile is a few levels deep (section, table value, list); anything much deeper is not a
# profile, and every later step (type checks, merging, printing, the cache) would recurse on it.
MAX_DEPTH = 32
MAX_SIZE = 16 << 20  # bytes; the bundled profiles are a few KB


def _parse(path: str, raw: bytes) -> dict[str, Any]:
    """TOML bytes -> data, every failure a ProfileError naming the file (and the line)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ProfileError(f"profile {path}: not UTF-8 text: byte 0x{raw[e.start]:02x} at line "
                           f"{line} (TOML files are UTF-8)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"profile {path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ProfileError(f"profile {path}: invalid TOML: nested too deeply "
                           f"(a profile has at most {MAX_DEPTH} levels)") from None
    except ValueError:
        # tomllib's int() of a number with more than 4,300 digits
        m = re.search(r"[0-9][0-9_]{4299,}", text)
        at = f" at line {text.count(chr(10), 0, m.start()) + 1}" if m else ""
        raise ProfileError(f"profile {path}: invalid TOML: a number with more than 4300 "
                           f"digits{at}") from None


def _too_deep(data: dict[str, Any]) -> str | None:
    """The dotted key of the first value nested more than MAX_DEPTH levels, or None."""
    stack: list[tuple[object, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where
        if isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else k, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def read(path: str, name: str, source: str) -> RawProfile:
    try:
        check_safe(path)
        with open(path, "rb") as f:
            raw = f.read(MAX_SIZE + 1)
    except OSError as e:
        raise ProfileError(f"profile {path}: {e.strerror}") from None
    if len(raw) > MAX_SIZE:
        raise ProfileError(f"profile {path}: larger than {MAX_SIZE >> 20} MiB: not a profile")
    data = _parse(path, raw)
    deep = _too_deep(data)
    if deep is not None:
        raise ProfileError(f"profile {path}: {shown(deep)}: nested more than {MAX_DEPTH} "
                           f"levels deep")
    for key, value in data.items():
        if isinstance(value, dict):
            continue
        if key not in TOP_LEVEL:
            raise ProfileError(f"profile {path}: unknown top-level key {shown(key)} "
                               f"(allowed: {', '.join(TOP_LEVEL)}, and [section] tables)")
        if not conforms(value, TOP_LEVEL[key]):
            raise ProfileError(f"profile {path}: {key}: expected {type_name(TOP_LEVEL[key])}, "
                               f"got {_tname(value)}")
    return RawProfile(name, path, source, data)


def load_chain(refs: Iterable[str], probed: list[str] | None = None) -> list[RawProfile]:
    """Resolve profiles and their ``extends``, depth first, into merge order.

    Each file is merged once, at its first position; a cycle is an error naming the chain.
    Iterative (an explicit stack, not recursion), so a chain of any length is resolved or
    refused with one line, never a RecursionError."""
    order: list[RawProfile] = []
    seen: set[str] = set()
    # The files being resolved, innermost last: [profile, path, parents still to visit] each;
    # `chain` is their paths, `on_chain` the same as a set.
    stack: list[tuple[RawProfile, str, list[str]]] = []
    chain: list[str] = []
    on_chain: set[str] = set()

    def enter(ref: str, base_dir: str | None, child: str | None) -> None:
        try:
            path, source = resolve(ref, base_dir, probed)
        except ProfileError as e:
            if child is None:
                raise
            raise ProfileError(f"profile {child}: extends: {e}") from None
        if path in on_chain:
            names = " -> ".join(chain[chain.index(path):] + [path])
            raise ProfileError(f"profile extends cycle: {names}")
        if path in seen:
            return
        prof = read(path, ref, source)
        ext = prof.data.get("extends", [])
        stack.append((prof, path, list(reversed([ext] if isinstance(ext, str) else ext))))
        chain.append(path)
        on_chain.add(path)

    for ref in refs:
        enter(ref, None, None)
        while stack:
            prof, path, parents = stack[-1]
            if parents:
                enter(parents.pop(), os.path.dirname(path), path)
                continue
            stack.pop()
            chain.pop()
            on_chain.discard(path)
            seen.add(path)
            order.append(prof)
    return order


def third_party_plugins(chain: list[RawProfile]) -> list[str]:
    names: list[str] = []
    for prof in chain:
        for n in prof.data.get("plugins", []):
            if n not in names:
                names.append(n)
    return names


def _tname(v: object) -> str:
    for t, n in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                 (list, "list"), (dict, "table")):
        if isinstance(v, t):
            return n
    return type(v).__name__


def _name(key: str) -> str:
    """A section or key name for a message: as it is when it looks like one, else quoted."""
    if key and len(key) <= 40 and key.isascii() and key.replace("_", "a").replace(
            "-", "a").isalnum():
        return key
    return shown(key)


def _edited(org: str, origin: str) -> str:
    return origin if org == BUILTIN_DEFAULT else f"{org} + {origin}"


def _field(schema: dict[str, Section], section: str, key: str, where: str
           ) -> tuple[Section, Field]:
    """The section and the field a profile value is for; an unknown one is a ProfileError."""
    sec = schema.get(section)
    if sec is None:
        raise ProfileError(f"{where}: unknown section [{_name(section)}] "
                           f"(known: {', '.join(sorted(schema)) or 'none'})")
    field = sec.fields.get(key)
    if field is None:
        raise ProfileError(f"{where}: unknown key [{section}].{_name(key)} "
                           f"(known: {', '.join(sorted(sec.fields))})")
    return sec, field


def _list_edit(field: Field, op: str, value: object, label: str) -> dict[str, object]:
    """``--set S.K+=V`` / ``-=``: the ``{add}`` / ``{remove}`` edit it is; only for a list."""
    if not field.is_list:
        raise ProfileError(f"{label}: {op} edits a list, and this value is not one "
                           f"({type_name(field.type)}): use = to set it")
    return {"add" if op == "+=" else "remove": value if isinstance(value, list) else [value]}


def _edit_list(field: Field, current: list[Any], edit: dict[str, Any], label: str
               ) -> list[Any]:
    """``current`` with a ``{add = [...], remove = [...]}`` edit applied."""
    extra = set(edit) - {"add", "remove"}
    if extra:
        raise ProfileError(f"{label}: a list edit takes only 'add' and 'remove', "
                           f"not {', '.join(_name(k) for k in sorted(extra))}")
    add, remove = edit.get("add", []), edit.get("remove", [])
    for part, items in (("add", add), ("remove", remove)):
        if not conforms(items, field.type):
            raise ProfileError(f"{label}.{part}: expected {type_name(field.type)}, "
                               f"got {_tname(items)}")
    return [x for x in current if x not in remove] + [
        x for x in add if x not in current and x not in remove]


def _apply(config: Config, origins: Origins, schema: dict[str, Section], section: str,
           key: str, value: object, origin: str, where: str, op: str = "=") -> None:
    """Apply one profile value to the effective config, validating it against the schema.

    ``op`` is ``=`` (set; a ``{add, remove}`` table edits a list) or, from ``--set``, ``+=``
    / ``-=``, which edit a list and are an error for any other field."""
    sec, field = _field(schema, section, key, where)
    cfg = config.setdefault(section, sec.defaults())
    org = origins.setdefault(section, {k: BUILTIN_DEFAULT for k in sec.fields})
    label = f"{where}: [{section}].{key}"
    if op != "=":
        value = _list_edit(field, op, value, label)
    if field.is_list and isinstance(value, dict):
        new = _edit_list(field, cfg[key], value, label)
        org[key] = _edited(org[key], origin)
        _check(field, new, label)
        cfg[key] = new
        return
    if not conforms(value, field.type):
        raise ProfileError(f"{label}: expected {type_name(field.type)}, got {_tname(value)}")
    if field.is_table and isinstance(cfg.get(key), dict) and isinstance(value, dict):
        value = {**cfg[key], **value}
        org[key] = _edited(org[key], origin)
    else:
        org[key] = origin
    _check(field, value, label)
    cfg[key] = value


def _check(field: Field, value: object, label: str) -> None:
    if field.choices is not None:
        vals = value if isinstance(value, list) else [value]
        bad = [v for v in vals if v not in field.choices]
        if bad:
            raise ProfileError(f"{label}: {shown(bad[0])} is not one of "
                               f"{', '.join(map(str, field.choices))}")
    if field.check is not None:
        try:
            field.check(value)
        except ValueError as e:
            raise ProfileError(f"{label}: {e}") from None
        except Exception as e:  # a check's bug is still one line, not a traceback
            raise ProfileError(f"{label}: the value could not be checked ({type(e).__name__}: "
                               f"{e}: a bug in the plugin that owns the section)") from None


def merge(chain: list[RawProfile], schema: dict[str, Section], sets: Iterable[str] = ()
          ) -> tuple[Config, Origins]:
    """Merge a profile chain (and ``--set`` overrides) into (config, origins)."""
    config: Config = {}
    origins: Origins = {}
    for prof in chain:
        for section, table in prof.data.items():
            if not isinstance(table, dict):
                continue
            if section not in schema:
                _apply(config, origins, schema, section, "", None, prof.path,
                       f"profile {prof.path}")
            if not table:
                cfg = config.setdefault(section, schema[section].defaults())
                origins.setdefault(section, {k: BUILTIN_DEFAULT for k in cfg})
            for key, value in table.items():
                _apply(config, origins, schema, section, key, value,
                       f"{prof.path}", f"profile {prof.path}")
    for item in sets:
        section, key, op, value = parse_set(item)
        shown_item = item if len(item) <= 100 else item[:97] + "..."
        _apply(config, origins, schema, section, key, value, COMMAND_LINE,
               f"--set {shown_item}", op)
    return config, origins


# SECTION.KEY then the operator: names are lowercase words joined by '_' or '-', and never end
# with '-', so the '-' of '-=' is the operator's (S.K-=V), not part of the key.
_SET_RE = re.compile(r"([a-z0-9_]+(?:-[a-z0-9_]+)*)\.([a-z0-9_]+(?:-[a-z0-9_]+)*)"
                     r"\s*(\+=|-=|=)(.*)\Z", re.S | re.ASCII)


def parse_set(item: str) -> tuple[str, str, str, object]:
    """'section.key=value' (or +=, -= for lists) -> (section, key, op, value).

    The value is read as a TOML value when it is one (true, 12, [..], "..") and as a plain
    string otherwise, so ``--set cgroups.memory_max=512M`` needs no quoting.  Only a whole
    value counts: ``1\nx = 2`` is not the TOML value 1 but the string it is."""
    m = _SET_RE.match(item)
    if not m:
        raise ProfileError(f"--set {shown(item)}: expected SECTION.KEY=VALUE "
                           f"(or SECTION.KEY+=VALUE / SECTION.KEY-=VALUE to edit a list)")
    section, key, op, raw = m.groups()
    value: object = raw
    try:
        doc = tomllib.loads("v = " + raw)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        pass  # not a TOML value (ValueError: a number of more than 4,300 digits)
    else:
        if list(doc) == ["v"]:
            value = doc["v"]
    deep = _too_deep({"v": value})
    if deep is not None:
        raise ProfileError(f"--set {shown(item)}: the value is nested more than {MAX_DEPTH} "
                           f"levels deep")
    return section, key, op, value


def available() -> list[tuple[str, str, str, bool]]:
    """Every profile name found on the search path: (name, path, source, shadowed)."""
    out: list[tuple[str, str, str, bool]] = []
    seen: set[str] = set()
    for label, d in search_path():
        try:
            names = sorted(n[:-5] for n in os.listdir(d) if n.endswith(".toml"))
        except OSError:
            continue
        for n in names:
            if NAME_RE.match(n):
                out.append((n, os.path.join(d, n + ".toml"), label, n in seen))
                seen.add(n)
    return out
