"""Which installed plugin adds a subcommand: the ``secrun.commands`` entry points, indexed.

``secrun WORD ...`` is a launch of the program WORD unless WORD is a subcommand: a built-in one
(:data:`secrun.main.SUBCOMMANDS`) or one a third-party plugin adds.  A plugin lists the words it
adds as entry points of the group ``secrun.commands`` (name: the word; value: the plugin's
module, as in its ``secrun.plugins`` entry point).  Looking that up must not cost a launch the
tens of milliseconds a scan of every installed distribution takes, so the words are kept in an
index in the caller's cache directory, valid while the directories on the module search path
are unchanged (installing or removing a distribution changes its directory).  The index file is
trusted only under the plan cache's rules (see :mod:`secrun.plan`); anything else is a rebuild.

Only a bare first word is looked up (``secrun -- WORD`` and ``secrun ./WORD`` always run a
program), and a word that names a built-in subcommand cannot be taken by a plugin.
"""

import os
import sys

COMMANDS_GROUP = "secrun.commands"
PLUGINS_GROUP = "secrun.plugins"
_MAGIC = "secrun-commands/1"


def entry_point_group(text: str, group: str) -> dict[str, str]:
    """The entries of one ``[group]`` of an ``entry_points.txt`` (an INI file)."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == group and "=" in line:
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def _search_path() -> list[tuple[str, int]]:
    """The directories distributions are found in, with their modification times."""
    out = []
    for d in sys.path:
        try:
            out.append((d, os.stat(d or ".").st_mtime_ns))
        except OSError:
            continue
    return out


def scan() -> dict[str, tuple[str, str]]:
    """{word: (plugin entry-point name, distribution directory)} of every installed
    distribution's ``secrun.commands`` entry points (the first on the search path wins)."""
    found: dict[str, tuple[str, str]] = {}
    for d, _mtime in _search_path():
        try:
            infos = sorted(e for e in os.listdir(d or ".") if e.endswith(".dist-info"))
        except OSError:
            continue
        for info in infos:
            try:
                with open(os.path.join(d, info, "entry_points.txt")) as f:
                    text = f.read()
            except OSError:
                continue
            commands = entry_point_group(text, COMMANDS_GROUP)
            if not commands:
                continue
            plugins = {v: k for k, v in entry_point_group(text, PLUGINS_GROUP).items()}
            for word, module in commands.items():
                plugin = plugins.get(module)
                if plugin is not None and word not in found:
                    found[word] = (plugin, os.path.join(d, info))
    return found


def _index_file() -> str:
    from .plan import cache_dir

    return os.path.join(os.path.dirname(cache_dir()), "commands")


def index() -> dict[str, tuple[str, str]]:
    """:func:`scan`, from the cached index while the search path is unchanged."""
    import marshal

    from .plan import _read_regular, _safe_dir

    key = [_MAGIC, _search_path()]
    path = _index_file()
    data = _read_regular(path) if _safe_dir(os.path.dirname(path)) else None
    if data is not None:
        try:
            entry = marshal.loads(data)
            if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == key \
                    and isinstance(entry[1], dict):
                return entry[1]
        except Exception:  # a bad index is rebuilt
            pass
    found = scan()
    try:
        d = os.path.dirname(path)
        os.makedirs(d, mode=0o700, exist_ok=True)
        if _safe_dir(d):
            tmp = f"{path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps((key, found)))
            os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache costs a scan next time, nothing else
    return found


def plugin_for(word: str, builtin: tuple[str, ...]) -> str | None:
    """The name of the plugin that adds the subcommand ``word``, or None (a program)."""
    if not word or word.startswith("-") or "/" in word or word in builtin:
        return None
    hit = index().get(word)
    return hit[0] if hit else None
