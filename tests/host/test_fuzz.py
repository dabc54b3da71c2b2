"""Property-based fuzz of the profile loader, ``--set`` and the CLI (issue 13).

The bundled profiles (``profiles/*.toml``) are mutated, as data (a value of any section and
key replaced by a wrong type, a huge or negative number, non-ASCII digits, a long string, a
NUL, deep nesting, a bad path; keys and sections deleted or invented; ``extends`` cycles,
chains and bad references) and as text (lines deleted, duplicated, swapped or replaced,
binary garbage inserted, the file cut short), and given with generated ``--set`` items to
``profiles check``, ``profiles show``, ``audit`` (planned) and a launch's ``--dry-run``.

Properties, for every command:

- exit 0, or exit 125 with exactly one line on stderr, ``secrun: error: ...``, naming the
  profile file (or the ``--set`` item / the command line) the bad input came from;
- never a traceback, a hang, another exit status, or the core's "a bug in that plugin" line
  (a plugin that let a value through its checks and then choked on it);
- for a profile that loads: ``--dry-run`` prints exactly what ``profiles show`` prints, and
  (for a few examples, with the installed command) a real launch of ``id -u`` runs as the uid
  that ``profiles show`` reports.

The CLI runs in-process (``secrun.main.main(argv)`` returns the exit status) where that is
equivalent; a few examples also run the installed ``secrun``.

Examples: ``SECRUN_FUZZ_EXAMPLES`` (default 200, seconds in CI; 5000 for a long run).  With
``SECRUN_FUZZ_REPORT=FILE`` (``make reliability``) every failing example is recorded instead
of stopping at the first, and the figures are written to FILE as JSON.  A failing example
found is kept as an explicit case in ``test_bad_input.py`` (or as an ``@example`` here).
"""

import contextlib
import gc
import io
import json
import os
import pwd
import re
import signal
import subprocess
import tempfile
import time
import tomllib

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from secrun.main import main
from secrun.registry import Plugins
from support import REPO, SECRUN

EXAMPLES = int(os.environ.get("SECRUN_FUZZ_EXAMPLES") or 200)
REPORT = os.environ.get("SECRUN_FUZZ_REPORT")
HANG = 30  # seconds: a command takes well under one
BUNDLED = {}
for _name in ("default", "strict", "unconfined"):
    with open(os.path.join(REPO, "profiles", _name + ".toml")) as _f:
        BUNDLED[_name] = _f.read()
_SECTIONS = Plugins().sections
SCHEMA = {name: sorted(sec.fields) for name, sec in _SECTIONS.items()}
KEYS = [(s, k) for s, keys in sorted(SCHEMA.items()) for k in keys]
FIELDS = {(s, k): _SECTIONS[s].fields[k] for s, k in KEYS}
LIST_KEYS = [sk for sk in KEYS if FIELDS[sk].is_list]

# The core's one line for a plugin that raised something other than ConfigError: better than
# a traceback, still a bug (in the plugin named).
PLUGIN_BUG = re.compile(r"a bug in (that|the) plugin")


# --- values ----------------------------------------------------------------------------------

class Raw(str):
    """TOML text written as is (a value TOML has no literal for, e.g. deep nesting)."""


NON_ASCII_DIGITS = ["٠", "٣", "²", "१", "０", "𝟘", "٣G", "１M", "cap_²", "٠:٠", "9٠"]
HUGE = [2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 63, 2 ** 64 - 1, 2 ** 64, 10 ** 30,
        10 ** 400, -1, -(2 ** 63), -(10 ** 400)]
NUMBER_TEXT = ["18446744073709551616", "18446744073709551615", "4294967295", "9" * 400,
               "9" * 5000, "1e30", "-1", "+5", "0x10", "1_000", "nan", "inf", "1.5", "0", ""]
PATHS = ["/etc\0", "/etc\0/x", "relative", "../../etc", "/", "//", "/" + "a" * 5000, "/proc",
         "/proc/self/root", "/dev/null", "/nonexistent/x", "~", "/tmp/../etc", "/etc:/x",
         "/x:size=abc", "/x:mode=9999", "/x:size=٣", "/run:mode=755:size=1e30", " /etc"]
NAMES = ["root", "nobody", "nogroup", "no-such-user", "all", "@system-service", "@nope",
         "CAP_SYS_ADMIN", "cap_99", "AF_UNIX", "AF_NOPE", "errno:EPERM", "errno:99999",
         "errno:٣", "kill_process", "TIOCSTI", "PER_LINUX|QUERY", "auto", "max", "unlimited",
         "10:20", "1G", "0", "host", "none", "range", "root", "self", "a" * 10000, "\x1b[2J",
         "line\nbreak", "\u202eevil", "\ud7ff"]


def toml_string(s: str) -> str:
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def bare_or_quoted(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(v) -> str:
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{bare_or_quoted(k)} = {toml_value(x)}"
                               for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(data: dict) -> str:
    lines = [f"{bare_or_quoted(k)} = {toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines.append(f"\n[{bare_or_quoted(section)}]")
            lines += [f"{bare_or_quoted(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


text_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2 ** 70), 2 ** 70),
    st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NON_ASCII_DIGITS + NUMBER_TEXT + PATHS + NAMES),
    text_values,
    st.integers(1, 200_000).map(lambda n: "x" * n),
)


def nested(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw("{a = " * depth + "1" + "}" * depth)


strings = st.one_of(
    st.sampled_from(NON_ASCII_DIGITS + NUMBER_TEXT + PATHS + NAMES),
    text_values,
    st.integers(1, 200_000).map(lambda n: "x" * n),
    st.builds(lambda a, b: a + b, st.sampled_from(NAMES + NUMBER_TEXT + PATHS),
              st.sampled_from(NON_ASCII_DIGITS + ["\0", "\n", "G", "M", ":", "/..", "*"])),
)
DICT_KEYS = st.one_of(st.sampled_from(["nofile", "core", "as", "cpu", "NOFILE", "PATH", "A",
                                       "ptrace", "@mount", "A=B", "", "a\0b", "x" * 300]),
                      text_values)


def typed(spec):
    """Values of the declared type, with hostile content (most of the time the type is right,
    so that the plugin's own checks are what is exercised)."""
    if spec is bool:
        return st.booleans()
    if spec is int:
        return st.one_of(st.integers(-10, 2 ** 33), st.sampled_from(HUGE))
    if spec is float:
        return st.floats(allow_nan=True, allow_infinity=True)
    if spec is str:
        return strings
    if isinstance(spec, tuple):
        return st.one_of(*(typed(x) for x in spec))
    if isinstance(spec, list):
        return st.lists(typed(spec[0]), max_size=4)
    if isinstance(spec, dict):
        ((_, vspec),) = spec.items()
        return st.dictionaries(DICT_KEYS, typed(vspec), max_size=3)
    return values  # object


# Realistic values per key besides the bundled profiles' and the defaults: what perturb()
# starts from, so that one aspect of a value that loads is changed at a time.
SEEDS = {
    ("cgroups", "memory_max"): ["512M", "1G", 1073741824, "max"],
    ("cgroups", "swap_max"): ["0", "64M", "max"],
    ("cgroups", "pids_max"): [128, "64", "max"],
    ("cgroups", "cpu_max"): ["1", 0.5, 2, "max", "50000 100000"],
    ("cgroups", "cpu_weight"): [50, 100],
    ("cgroups", "io_weight"): [50, 100],
    ("filesystem", "tmpfs"): ["/run:mode=755", "/var/tmp:mode=1777,size=64M", "/scratch"],
    ("filesystem", "binds"): ["/usr/share:/mnt:ro", "/srv:/out:rw", "/etc/hostname"],
    ("filesystem", "hide"): ["/home", "/root", "/etc/shadow"],
    ("filesystem", "read_only_paths"): ["/proc/sys"],
    ("process", "rlimits"): [{"nofile": 1024}, {"as": "1G", "cpu": "10:20"}, {"core": 0}],
    ("process", "umask"): ["077", "022"],
    ("process", "env_set"): [{"PATH": "/usr/bin:/bin", "HOME": "/tmp"}],
    ("process", "cwd"): ["/", "/tmp"],
    ("identity", "uid"): [65534, "65534", "nobody", "root", 0, 1000],
    ("identity", "gid"): [65534, "65534", "nogroup", "root"],
    ("identity", "groups"): [[], ["65534"], ["nogroup", 0]],
    ("capabilities", "keep"): [["chown"], ["CAP_KILL", "cap_12", 5], []],
    ("seccomp", "default_action"): ["errno:EPERM", "errno:38", "kill_process", "allow", 1],
    ("seccomp", "actions"): [{"ptrace": "kill_process", "@mount": "errno:ENOTSUP"}],
    ("seccomp", "personalities"): [["PER_LINUX", "QUERY", 8]],
    ("seccomp", "deny_ioctls"): [["TIOCSTI", 21524]],
    ("namespaces", "range_start"): [100000],
    ("namespaces", "range_size"): [65536],
    ("namespaces", "hostname"): ["sandbox", "a.b-c"],
    ("selinux", "context"): ["system_u:system_r:container_t:s0"],
    ("apparmor", "profile"): ["unconfined", "secrun-strict"],
}
for _text in BUNDLED.values():
    for _section, _table in tomllib.loads(_text).items():
        if isinstance(_table, dict):
            for _key, _value in _table.items():
                SEEDS.setdefault((_section, _key), []).append(_value)
for (_s, _k), _f in FIELDS.items():
    SEEDS.setdefault((_s, _k), []).append(_f.default)
    SEEDS[(_s, _k)] += list(_f.choices or ())

OTHER_DIGITS = {"0": "٠۰０𝟘⁰", "1": "١۱１𝟙¹", "2": "٢۲２²", "3": "٣۳３³", "4": "٤۴４", "5": "٥۵５",
                "6": "٦۶６", "7": "٧۷７", "8": "٨۸８", "9": "٩۹９"}


@st.composite
def perturb(draw, value):
    """``value`` changed in one way that a loader must notice (or that is harmless)."""
    if isinstance(value, bool):
        return draw(st.sampled_from([not value, int(value), str(value).lower(), [value]]))
    if isinstance(value, int):
        return draw(st.sampled_from([value + 2 ** 64, -value - 1, value * 10 ** 30, 2 ** 32 - 1,
                                     2 ** 64, 2 ** 63, 0, -1, 10 ** 400, str(value),
                                     float(value), value + 2 ** 32]))
    if isinstance(value, float):
        return draw(st.sampled_from([float("inf"), float("nan"), -value, 1e30, 1e-300, 0.0,
                                     -0.0, str(value), int(value)]))
    if isinstance(value, str):
        how = draw(st.sampled_from(["digits", "digits", "nul", "huge", "huge", "append", "cut",
                                    "repeat", "case", "space"]))
        digits = [i for i, c in enumerate(value) if c.isascii() and c.isdigit()]
        if how == "digits" and digits:
            i = draw(st.sampled_from(digits))
            return value[:i] + draw(st.sampled_from(OTHER_DIGITS[value[i]])) + value[i + 1:]
        if how == "nul":
            i = draw(st.integers(0, len(value)))
            return value[:i] + "\0" + value[i:]
        if how == "huge":
            big = draw(st.sampled_from(["18446744073709551616", "9" * 400, "9" * 5000,
                                        "4294967295", "1e30", "-1"]))
            if digits:
                i, j = digits[0], digits[-1] + 1
                return value[:i] + big + value[j:]
            return big + value
        if how == "append":
            return value + draw(st.sampled_from(
                ["\0", "/..", ":", ":size=abc", ",size=٣", "G", "٣", "\n", "//", " ", "*", "="]))
        if how == "cut" and value:
            i = draw(st.integers(0, len(value) - 1))
            return value[:i]
        if how == "repeat":
            return value * draw(st.sampled_from([2, 1000, 30000]))
        if how == "case":
            return value.upper() if value.islower() else value.lower()
        return " " + value + "\t"
    if isinstance(value, list):
        if value and draw(st.booleans()):
            i = draw(st.integers(0, len(value) - 1))
            return value[:i] + [draw(perturb(value[i]))] + value[i + 1:]
        return value + [draw(st.one_of(strings, st.sampled_from(HUGE)))]
    if isinstance(value, dict):
        if value and draw(st.booleans()):
            k = draw(st.sampled_from(sorted(value)))
            return dict(value, **{k: draw(perturb(value[k]))})
        return dict(value, **{draw(DICT_KEYS): draw(st.one_of(strings, st.sampled_from(HUGE)))})
    return value


def field_value(section, key):
    field = FIELDS[(section, key)]
    seeds = st.sampled_from(SEEDS[(section, key)])
    return st.one_of(seeds.flatmap(perturb), seeds.flatmap(perturb), seeds.flatmap(perturb),
                     typed(field.type), typed(field.type), seeds, values)


values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.sampled_from(["add", "remove", "nofile", "core", "A", "x", "A=B", ""]),
                    st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=3),
    st.builds(nested, st.integers(1, 700), st.sampled_from(["list", "table"])),
)


# --- profiles and --set items ----------------------------------------------------------------

# Keys whose values are (or hold) ids, sizes, counts, limits or numbered names: there a
# non-ASCII digit ("٠" is 0 to int()) or a number of 2^64 or more (wrapped by the kernel) must
# be refused, never taken as some other number.
NUMERIC = {("identity", "uid"), ("identity", "gid"), ("identity", "groups"),
           ("capabilities", "keep"), ("capabilities", "drop"),
           ("cgroups", "memory_max"), ("cgroups", "swap_max"), ("cgroups", "pids_max"),
           ("cgroups", "cpu_max"), ("cgroups", "cpu_weight"), ("cgroups", "io_weight"),
           ("process", "rlimits"), ("process", "umask"),
           ("seccomp", "default_action"), ("seccomp", "deny_action"), ("seccomp", "actions"),
           ("seccomp", "other_abis"), ("seccomp", "personalities"), ("seccomp", "deny_ioctls"),
           ("namespaces", "range_start"), ("namespaces", "range_size")}


EXTENDS = [["./p.toml"], ["./q.toml"], ["./missing.toml"], ["../x"], [""], "strict", [1],
           ["strict", "default", "unconfined"], ["strict", "strict"], ["./chain0.toml"],
           ["/nonexistent/x.toml"], ["./p.toml\0"], ["Strict"], []]


def table(data: dict, section: str) -> dict:
    """data[section], made a table if it is not one."""
    if not isinstance(data.get(section), dict):
        data[section] = {}
    return data[section]


@st.composite
def structural(draw, data: dict, files: dict) -> None:
    """Mutate the parsed profile ``data`` in place (and add sibling files to ``files``)."""
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 2, 3]))):
        what = draw(st.sampled_from(["set"] * 14 + ["list-edit"] * 2 + [
            "delete", "delete", "invent", "extends", "top-level"]))
        if what == "set":
            # (the keys that parse numbers out of text are where the bugs were: more often)
            section, key = draw(st.sampled_from(KEYS + sorted(NUMERIC) * 2))
            table(data, section)[key] = draw(field_value(section, key))
        elif what == "delete":
            tables = [s for s, t in data.items() if isinstance(t, dict) and t]
            if tables:
                section = draw(st.sampled_from(tables))
                if draw(st.booleans()):
                    del data[section]
                else:
                    del data[section][draw(st.sampled_from(sorted(data[section])))]
        elif what == "invent":
            section = draw(st.sampled_from(sorted(SCHEMA) + ["nope", "", "a.b", "Process"]))
            key = draw(st.one_of(st.sampled_from(["nope", "", "required", "x\ny"]), text_values))
            table(data, section)[key] = draw(values)
        elif what == "list-edit":
            section, key = draw(st.sampled_from(LIST_KEYS))
            spec = FIELDS[(section, key)].type
            table(data, section)[key] = draw(st.dictionaries(
                st.sampled_from(["add", "remove", "add", "remove", "replace"]),
                st.one_of(typed(spec), values), max_size=2))
        elif what == "extends":
            ext = draw(st.sampled_from(EXTENDS))
            data["extends"] = ext
            if ext == ["./q.toml"]:
                files["q.toml"] = draw(st.sampled_from(
                    ['extends = ["./p.toml"]\n', 'extends = ["strict"]\n[identity]\nuid = 0\n',
                     "\xff", 'extends = ["./q.toml"]\n']))
            elif ext == ["./chain0.toml"]:
                n = draw(st.integers(1, 60))
                for i in range(n):
                    files[f"chain{i}.toml"] = f'extends = ["./chain{i + 1}.toml"]\n'
                files[f"chain{n}.toml"] = draw(st.sampled_from(
                    ['extends = ["strict"]\n', 'extends = ["./chain0.toml"]\n', "[nope]\n"]))
        else:
            key = draw(st.sampled_from(["description", "plugins", "extends", "nope"]))
            data[key] = draw(values)


LINE_EDITS = ["delete", "duplicate", "swap", "replace", "insert", "garbage", "truncate"]


@st.composite
def textual(draw, text: str) -> bytes:
    """Line-level damage to a profile's text."""
    lines = text.encode().split(b"\n")
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(LINE_EDITS))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if what == "delete" and lines:
            del lines[i]
        elif what == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif what == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif what in ("replace", "insert"):
            section, key = draw(st.sampled_from(KEYS))
            new = draw(st.one_of(
                st.just(f"[{section}]"),
                field_value(section, key).map(lambda v, k=key: f"{k} = {toml_value(v)}"),
                text_values)).encode()
            if what == "replace" and lines:
                lines[i] = new
            else:
                lines.insert(i, new)
        elif what == "garbage":
            blob = b"\n".join(lines)
            at = draw(st.integers(0, len(blob)))
            junk = draw(st.one_of(st.binary(min_size=1, max_size=16),
                                  text_values.map(lambda t: t.encode())))
            blob = blob[:at] + junk + blob[at:]
            lines = blob.split(b"\n")
        elif what == "truncate":
            blob = b"\n".join(lines)
            lines = blob[:draw(st.integers(0, len(blob)))].split(b"\n")
    return b"\n".join(lines)


@st.composite
def set_items(draw):
    """--set SECTION.KEY=VALUE items: mostly a real key with a hostile value (as TOML or as
    the plain text --set also takes), some with another operator, some just text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(text_values)
    section, key = draw(st.sampled_from(KEYS))
    op = draw(st.sampled_from(["=", "=", "=", "+=", "-=", " = ", "==", "=+"]))
    value = draw(st.one_of(field_value(section, key).map(toml_value), strings))
    return f"{section}.{key}{op}{value}"


COMMANDS = ("check", "show", "audit", "dry-run")

def must_refuse(value) -> bool:
    """Whether a value of a NUMERIC key holds a non-ASCII digit or a number >= 2^64."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 2 ** 64
    if isinstance(value, str):
        return any(c.isdigit() and not c.isascii() for c in value) or any(
            len(run) > 20 or int(run) >= 2 ** 64 for run in re.findall(r"[0-9]+", value))
    if isinstance(value, list):
        return any(must_refuse(v) for v in value)
    if isinstance(value, dict):
        return any(must_refuse(k) or must_refuse(v) for k, v in value.items())
    return False


def refusals(data: dict, sets: list) -> list[str]:
    """The NUMERIC values (set whole: not a list edit) of a profile and --set items that
    must be refused, as "[section].key"."""
    out = [f"[{s}].{k}" for (s, k) in sorted(NUMERIC)
           if isinstance(data.get(s), dict) and k in data[s]
           and not (FIELDS[(s, k)].is_list and isinstance(data[s][k], dict))
           and must_refuse(data[s][k])]
    for item in sets:
        m = re.fullmatch(r"([a-z_]+)\.([a-z_]+)=(.*)", item, re.S)
        if m and (m[1], m[2]) in NUMERIC and must_refuse(m[3]):
            out.append(f"[{m[1]}].{m[2]}")
    return out


@st.composite
def cases(draw):
    base = draw(st.sampled_from(sorted(BUNDLED)))
    files: dict = {}
    data = tomllib.loads(BUNDLED[base])
    if base != "default" and draw(st.booleans()):
        data["extends"] = [base]  # by name: the bundled file with the mutations on top
        data = {k: v for k, v in data.items() if k == "extends"}
    style = draw(st.sampled_from(["data"] * 14 + ["text"] * 2 + ["both"] * 2 + ["none"] * 2))
    if style in ("data", "both"):
        draw(structural(data, files))
    text = to_toml(data)
    raw = draw(textual(text)) if style in ("text", "both") else text.encode()
    files["p.toml"] = raw
    sets = draw(st.one_of(st.just([]), st.just([]), st.lists(set_items(), max_size=2)))
    return {
        "files": files,
        "sets": sets,
        # (after text damage the data no longer says what the file holds)
        "refuse": refusals(data if style in ("data", "none") else {}, []),
        "refuse_sets": refusals({}, sets),
        "command": draw(st.sampled_from(COMMANDS)),
        "compare": draw(st.booleans()),
        "real": draw(st.integers(0, 3)) == 0,
    }


# --- running the CLI -------------------------------------------------------------------------

class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def __repr__(self):
        return (f"<secrun {self.argv!r:.300} rc={self.rc}\n--- stdout\n{self.out[-1500:]}\n"
                f"--- stderr\n{self.err[-3000:]}>")


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def cli(*argv) -> Result:
    """``secrun ARGV`` in this process; a traceback is the exception's text in stderr."""
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(list(argv))
            except Hang:
                rc = "hang"
            except BaseException as e:  # what escapes main() is a traceback
                import traceback

                err.write("Traceback (most recent call last):\n" + "".join(
                    traceback.format_exception(e)))
                rc = 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        gc.enable()  # a launch turns the cyclic collector off for its process
    return Result(argv, rc, out.getvalue(), err.getvalue())


def real(*argv) -> Result:
    try:
        cp = subprocess.run([SECRUN, *argv], capture_output=True, text=True, timeout=HANG,
                            errors="replace")
    except subprocess.TimeoutExpired as e:
        return Result(argv, "hang", str(e.stdout), str(e.stderr))
    return Result(argv, cp.returncode, cp.stdout, cp.stderr)


def argv_for(command, path, sets):
    s = [f"--set={item}" for item in sets]
    if command == "check":
        return ["profiles", "check", path]
    if command == "show":
        return ["profiles", "show", *s, "--", path]
    if command == "audit":
        return ["audit", "-p", path, *s, "--", "true"]
    return ["--no-cache", "-n", "-p", path, *s, "--", "true"]


def problems(r: Result, where: list[str]) -> list[str]:
    """What is wrong with one command's outcome (nothing: [])."""
    out = []
    if r.rc == "hang":
        return [f"hang (no exit within {HANG} s)"]
    if "Traceback" in r.err:
        out.append("traceback")
    if r.rc not in (0, 125):
        out.append(f"exit status {r.rc}")
    lines = r.err.splitlines()
    if r.rc == 125:
        if len(lines) != 1 or not lines[0].startswith("secrun: error: "):
            out.append("not exactly one 'secrun: error:' line")
        elif not any(w in lines[0] for w in where):
            out.append("the error names neither the profile file nor the --set item")
        elif PLUGIN_BUG.search(lines[0]):
            out.append("a plugin raised instead of refusing the value (core's net)")
    elif r.rc == 0 and any(ln.startswith("secrun: error") for ln in lines):
        out.append("exit 0 with an error line")
    return out


def expected_uid(config: dict):
    """The uid the workload must run as, read from what `profiles show` reports."""
    uid = (config.get("identity") or {}).get("uid", "")
    if uid == "":
        return 0  # unchanged: secrun's own (root), also root of any user namespace it makes
    if isinstance(uid, int):
        return uid
    text = uid.strip(" \t")
    if text.isascii() and text.lstrip("+").isdigit():
        return int(text)
    return pwd.getpwnam(text).pw_uid


# --- the property ----------------------------------------------------------------------------

FIGURES = {"examples": 0, "commands": 0, "launches": 0, "loaded": 0, "refused": 0,
           "failures": [], "started": None, "errors": {}}


@pytest.fixture(scope="module", autouse=True)
def _memoised_apparmor_parser():
    """apparmor_parser is a pure function of its arguments and stdin, and is most of a
    planning's time (0.1 s): run it once per distinct input.  Everything else is unchanged."""
    from secrun.plugins.apparmor import plan as A

    real_run, memo = A._run_parser, {}

    def run(parser, args, text, path, preamble_lines):
        key = (parser, tuple(args), text, path, preamble_lines)
        if key not in memo:
            try:
                memo[key] = (True, real_run(parser, args, text, path, preamble_lines))
            except Exception as e:  # replayed as raised
                memo[key] = (False, e)
        ok, value = memo[key]
        if ok:
            return value
        raise value

    A._run_parser = run
    FIGURES["started"] = time.monotonic()
    yield
    A._run_parser = real_run
    if REPORT:
        with open(REPORT, "w") as f:
            json.dump(dict(FIGURES, seconds=round(time.monotonic() - FIGURES["started"], 1),
                           requested=EXAMPLES), f, indent=2)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    d.chmod(0o755)
    return d


def excerpt(case, found) -> str:
    """The part of a failing example that matters, for the figures: the error line, or the
    profile lines and --set items of the keys concerned."""
    err = re.search(r"secrun: error: [^\n]*", found[0])
    if err and "accepted" not in found[0]:
        return err.group(0)[:400]
    keys = re.findall(r"\[([a-z]+)\]\.([a-z_]+)", found[0].split(":", 1)[0])
    text = case["files"]["p.toml"]
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    lines = [ln for ln in text.splitlines() for _s, k in keys if ln.startswith(k + " =")]
    lines += [f"--set {item}" for item in case["sets"] for s_, k in keys
              if item.startswith(f"{s_}.{k}")]
    return " / ".join(ln[:200] for ln in lines) or repr(case)[:300]


def run_case(case, workdir) -> list[str]:
    d = tempfile.mkdtemp(dir=workdir)
    os.chmod(d, 0o755)
    for name, content in case["files"].items():
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
        os.chmod(path, 0o644)
    path = os.path.join(d, "p.toml")
    sets = case["sets"] if case["command"] != "check" else []
    where = [d, "--set", "command line"]
    FIGURES["examples"] += 1
    found = []

    def check(r):
        FIGURES["commands"] += 1
        found.extend(f"{p}: {r!r}" for p in problems(r, where))
        return r

    first = check(cli(*argv_for(case["command"], path, sets)))
    refuse = case.get("refuse", []) + (case.get("refuse_sets", []) if sets else [])
    if not found and first.rc == 0 and refuse:
        found.append(f"accepted what must be refused ({', '.join(refuse)}): a non-ASCII "
                     f"digit or a number >= 2^64: {first!r}")
    FIGURES["loaded" if first.rc == 0 else "refused"] += 1
    if first.rc == 125:
        # the kind of error, for the figures: its text up to the first quoted value
        kind = re.sub(r"^secrun: error: (profile \S+|--set \S+|command line)?:? ?", "",
                      first.err.strip())
        kind = re.split(r"['\"(]", kind.replace(d, "DIR"), maxsplit=1)[0]
        kind = re.sub(r"[0-9]+", "N", kind)[:60]
        FIGURES["errors"][kind] = FIGURES["errors"].get(kind, 0) + 1
    if found or first.rc != 0 or not case["compare"]:
        return found
    # The profile loads: --dry-run prints what `profiles show` prints, and a launch runs as
    # the uid it reports.
    show = check(cli(*argv_for("show", path, sets)))
    dry = check(cli(*argv_for("dry-run", path, sets)))
    if found:
        return found
    if dry.out.split("\n", 1)[1:] != [show.out]:
        found.append(f"--dry-run and profiles show differ:\n{dry!r}\n{show!r}")
    if not case["real"] or any("\0" in s for s in sets):
        return found
    shown = json.loads(check(cli("profiles", "show", "--json", *argv_for("show", path, sets)[2:]))
                       .out)
    try:
        want = expected_uid(shown["config"])
    except KeyError as e:
        return found + [f"profiles show reports a uid no user has: {e}"]
    s = [f"--set={item}" for item in sets]
    r = real("-p", path, *s, "--", "id", "-u")
    FIGURES["launches"] += 1
    if r.rc == "hang" or "Traceback" in r.err:
        found.append(f"launch: hang or traceback: {r!r}")
    elif r.rc == 125 and sum(ln.startswith("secrun: error:") for ln in r.err.splitlines()) != 1:
        found.append(f"launch: not one error line: {r!r}")
    elif r.rc == 0 and r.out.strip() != str(want):
        found.append(f"launch ran as uid {r.out.strip()}, profiles show reports {want}: {r!r}")
    return found


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          derandomize=bool(os.environ.get("CI")) and not REPORT,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much])
@given(case=cases())
# Regressions found by this test, kept (each is an explicit case in test_bad_input.py too):
# a plugin a profile asks for named no file; a section refused as a whole named no file.
@example(case={"files": {"p.toml": b'extends = ["strict"]\nplugins = ["A=B"]\n'}, "sets": [],
               "refuse": [], "command": "check", "compare": False, "real": False})
@example(case={"files": {"p.toml": b"[filesystem]\n"}, "sets": [], "refuse": [],
               "command": "check", "compare": False, "real": False})
# And the reproductions: a non-ASCII digit uid (ran as root), a non-UTF-8 file, -=.
@example(case={"files": {"p.toml": 'extends = ["strict"]\n[identity]\nuid = "٠"\n'},
               "sets": [], "refuse": ["[identity].uid"], "command": "show", "compare": True,
               "real": True})
@example(case={"files": {"p.toml": b"\xff"}, "sets": [], "refuse": [], "command": "check",
               "compare": False, "real": False})
@example(case={"files": {"p.toml": b'extends = ["strict"]\n'}, "sets": ["process.rlimits-=x"],
               "refuse": [], "command": "show", "compare": False, "real": False})
def test_bad_input_is_one_error_line_or_a_consistent_success(case, workdir):
    found = run_case(case, workdir)
    if found:
        FIGURES["failures"].append({"case": repr(case)[:4000], "problems": found,
                                    "excerpt": excerpt(case, found)})
        if not REPORT:
            raise AssertionError("\n\n".join(found))


# --- make reliability: the long runs' figures -> docs/reliability.md -------------------------

def _junit(path):
    """[(test name, seconds, outcome, first line of the failure)] of a pytest --junitxml
    file, or None."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    rows = []
    for tc in root.iter("testcase"):
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = tc.find(tag)
            if node is not None:
                outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                detail = " ".join((node.get("message") or "").split())[:240]
        rows.append((tc.get("name", "?"), float(tc.get("time") or 0), outcome, detail))
    return rows


def write_reliability_doc(results: str, out: str, settings_line: str) -> int:
    """Render ``results``/fuzz.json and ``results``/soak.xml as ``out``; the number of
    failures (fuzz examples and soak tests) is the exit status's truth."""
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "?"
    lines = [
        "# Reliability: the long runs",
        "",
        "Generated by `make reliability` (" + settings_line + "); the same tests run in CI "
        "with a few hundred fuzz examples and a short soak.  What each one checks: the "
        "docstrings of `tests/host/test_fuzz.py`, `tests/host/test_supervision.py` and "
        "`tests/host/test_faults.py`.  Every failing example is listed, to be kept as a case in "
        "`tests/host/test_bad_input.py` once fixed.",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} at commit `{commit}`.",
        "",
        "## Fuzz of profiles, `--set` and the CLI",
        "",
    ]
    failures = 0
    try:
        with open(os.path.join(results, "fuzz.json")) as f:
            fz = json.load(f)
    except (OSError, ValueError):
        fz = None
        lines.append("Not run (no figures).")
        failures += 1
    run = _junit(os.path.join(results, "fuzz.xml")) or []
    broken = [f"{name}: {outcome} {detail}" for name, _secs, outcome, detail in run
              if outcome != "passed"]
    if broken:
        failures += len(broken)
        lines += ["The fuzz test itself did not pass (see its output): " + "; ".join(broken),
                  ""]
    if fz is not None:
        failures += len(fz["failures"])
        lines += [
            "| examples tried | commands run | loaded (exit 0) | refused (exit 125) "
            "| real launches | failing examples | duration |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {fz['examples']} | {fz['commands']} | {fz['loaded']} | {fz['refused']} "
            f"| {fz['launches']} | {len(fz['failures'])} | {fz['seconds']} s |",
            "",
        ]
        kinds: dict = {}
        for fail in fz["failures"]:
            for p in fail["problems"]:
                head = p.split(" (", 1)[0] if p.startswith("accepted") else p.split(":", 1)[0]
                err = re.search(r"secrun: error: (.*)", p)
                where = re.search(r"\[[a-z]+\]\.?[a-z_]*", err.group(1) if err else p)
                key = (head, where.group(0) if where else "")
                kinds.setdefault(key, []).append(fail.get("excerpt") or fail["case"][:300])
        if kinds:
            lines += ["Failing examples, by problem and section/key (one example each):", ""]
            for (head, where), cases_ in sorted(kinds.items()):
                lines.append(f"- {len(cases_)} x {head} {where}".rstrip() + ": `"
                             + cases_[0].replace("`", "'") + "`")
            lines.append("")
        errors = sorted(fz.get("errors", {}).items(), key=lambda kv: -kv[1])[:15]
        if errors:
            lines += ["The most frequent refusals (the kinds of bad input exercised):", ""]
            lines += [f"- {n} x `{k.strip() or '(other)'}`" for k, n in errors]
            lines.append("")
    lines += ["## Fault soak", ""]
    soak = _junit(os.path.join(results, "soak.xml"))
    if not soak:
        lines.append("Not run (no soak tests found, or they did not report).")
    else:
        lines += ["| test | outcome | duration |", "| --- | --- | ---: |"]
        for name, secs, outcome, _detail in soak:
            lines.append(f"| `{name}` | {outcome} | {secs:.0f} s |")
            failures += outcome in ("FAILED", "ERROR")
        for name, _secs, outcome, detail in soak:
            if outcome in ("FAILED", "ERROR"):
                lines += ["", f"`{name}`: `{detail.replace('`', chr(39))}`"]
        lines.append("")
    with open(out, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    return failures


if __name__ == "__main__":
    import sys

    # python tests/host/test_fuzz.py RESULTS_DIR OUT.md "SETTINGS"
    sys.exit(1 if write_reliability_doc(sys.argv[1], sys.argv[2], sys.argv[3]) else 0)
