"""Which installed plugin adds a subcommand: the ``secrun.commands`` entry points, indexed.

``secrun WORD ...`` is a launch of the program WORD unless WORD is a subcommand: a built-in one
(:data:`secrun.main.SUBCOMMANDS`) or one a third-party plugin adds.  A plugin lists the words it
adds as entry points of the group ``secrun.commands`` (name: the word; value: the plugin's
module, as in its ``secrun.plugins`` entry point).  Looking that up must not cost a launch the
tens of milliseconds a scan of every installed distribution takes, so the words are kept in an
index in the caller's cache directory, valid while the directories on the module search path
are unchanged (installing or removing a distribution changes its directory).  The index is
read and written only under the plan cache's rules (see :mod:`secrun.plan`: every directory
on the way root's or the caller's); anything else is a scan, and nothing is stored.

For each word the index records the plugin's name and its module; the first distribution on
the search path that declares the word wins, as the loader takes the first entry point of a
plugin name.  Before the subcommand's plugin is imported, its entry point must still name
that module, or the subcommand is refused (:func:`check_module`): the index and the loader
never run two different plugins' code for one word.

Only a bare first word is looked up (``secrun -- WORD`` and ``secrun ./WORD`` always run a
program), and a word that names a built-in subcommand cannot be taken by a plugin.  Installing
a plugin must not change what an existing command line runs: a word that is also a program on
the launch's search path is refused (:func:`plugin_for`), ``secrun -- WORD`` runs the program.
"""

import os
import sys

COMMANDS_GROUP = "secrun.commands"
PLUGINS_GROUP = "secrun.plugins"
_MAGIC = "secrun-commands/2"
# the launch's search path when PATH is unset, and what the bundled profiles set
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


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


def scan() -> dict[str, tuple[str, str, str]]:
    """{word: (plugin entry-point name, distribution directory, module)} of every installed
    distribution's ``secrun.commands`` entry points (the first on the search path wins)."""
    found: dict[str, tuple[str, str, str]] = {}
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
                    found[word] = (plugin, os.path.join(d, info), module)
    return found


def _index_file() -> str:
    from .plan import cache_dir

    return os.path.join(os.path.dirname(cache_dir()), "commands")


def index() -> dict[str, tuple[str, str, str]]:
    """:func:`scan`, from the cached index while the search path is unchanged."""
    import marshal

    from .plan import _read_regular, _trusted_dir

    key = [_MAGIC, _search_path()]
    path = _index_file()
    d = os.path.dirname(path)
    trusted = _trusted_dir(d)
    data = _read_regular(path) if trusted else None
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
        if trusted or _trusted_dir(d, create=True):
            tmp = f"{path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(marshal.dumps((key, found)))
            os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache costs a scan next time, nothing else
    return found


def program(word: str) -> str | None:
    """The executable ``word`` names on the caller's PATH or on :data:`DEFAULT_PATH` (the
    launch searches the one its profile leaves, the caller's unless the profile sets one),
    or None."""
    seen = set()
    for d in (os.environ.get("PATH") or "").split(":") + DEFAULT_PATH.split(":"):
        if d in seen:
            continue
        seen.add(d)
        candidate = os.path.join(d or ".", word)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def plugin_for(word: str, builtin: tuple[str, ...]) -> tuple[str, str] | None:
    """(plugin name, module) of the plugin that adds the subcommand ``word``, or None (a
    program).  A word that is both is refused: installing a plugin does not change what
    ``secrun WORD`` runs from a launch of the program into the plugin's code."""
    if not word or word.startswith("-") or "/" in word or word in builtin:
        return None
    hit = index().get(word)
    if not (isinstance(hit, tuple) and len(hit) == 3 and all(isinstance(x, str) for x in hit)):
        return None
    found = program(word)
    if found is not None:
        from .errors import SecrunError

        raise SecrunError(f"{word!r} is both a subcommand the plugin {hit[0]!r} adds and the "
                          f"program {found}: `secrun -- {word}` runs the program; the "
                          f"subcommand runs only where no program {word!r} is on PATH")
    return hit[0], hit[2]


def check_module(plugin: str, module: str) -> None:
    """Refuse (before importing anything of it) a plugin whose entry point names another
    module than the index recorded for the subcommand being run."""
    from .errors import PluginError
    from .registry import _entry_points

    ep = _entry_points().get(plugin)
    value = ep.value.strip() if ep is not None else None
    if value != module:
        raise PluginError(f"plugin {plugin!r}: its entry point names {value or 'nothing'} but "
                          f"the subcommand index {module}: not loaded (do two installed "
                          f"distributions declare the plugin {plugin!r}?)")
