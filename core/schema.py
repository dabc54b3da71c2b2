"""Typed profile sections.  A plugin declares each section it owns as a :class:`Section` of
:class:`Field` objects (type, default, one-line meaning); the profile loader validates and merges
against them and ``docs/profiles.md`` is generated from them.

Types are written as Python values: ``bool``, ``int``, ``float``, ``str``, ``[str]`` (a list of
strings), ``{str: int}`` (a table), ``(str, int)`` (either), ``object`` (anything TOML can say).
"""

from __future__ import annotations

from .errors import shown

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from typing import Any

    # bool, int, float, str, object, [str], {str: int}, (str, int): see the module docstring
    TypeSpec = type | list[Any] | dict[Any, Any] | tuple[Any, ...]

# Every section gets this field from the core: whether failing to apply the section's controls
# stops the launch (the default: fail closed) or is reported and tolerated (best-effort).
REQUIRED_HELP = ("true: if a control of this section cannot be applied the workload never runs "
                 "(exit 125); false: best-effort, reported on stderr and in the audit")


class Field:
    """One key of a section: its type (see the module docstring), its default, its meaning
    (one line, in ``docs/profiles.md``), the values it may take (``choices``, for a list: each
    item) and ``check(value)``, which raises ValueError with a one-line reason (its return
    value is ignored)."""

    __slots__ = ("name", "type", "default", "help", "choices", "check")

    def __init__(self, name: str, type: TypeSpec, default: object, help: str,
                 choices: Collection[object] | None = None,
                 check: Callable[[Any], object] | None = None) -> None:
        self.name = name
        self.type = type
        self.default = default
        self.help = help
        self.choices = choices
        # check(value) -> None or raises ValueError with a message
        self.check = check

    @property
    def is_list(self) -> bool:
        return isinstance(self.type, list)

    @property
    def is_table(self) -> bool:
        return isinstance(self.type, dict)


class Section:
    """A profile section a plugin owns: its name, its meaning and its fields (the core adds
    ``required``)."""

    __slots__ = ("name", "help", "fields")

    def __init__(self, name: str, help: str, fields: Iterable[Field]) -> None:
        self.name = name
        self.help = help
        self.fields = {f.name: f for f in fields}
        if "required" not in self.fields:
            self.fields["required"] = Field("required", bool, True, REQUIRED_HELP)

    def defaults(self) -> dict[str, Any]:
        return {k: _copy(f.default) for k, f in self.fields.items()}


def _copy(value: object) -> object:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", object: "any value"}


def type_name(spec: TypeSpec) -> str:
    if isinstance(spec, list):
        return "list of " + type_name(spec[0]) + "s" if spec else "list"
    if isinstance(spec, dict):
        (k, v), = spec.items()
        return "table of " + type_name(v) + "s"
    if isinstance(spec, tuple):
        return " or ".join(type_name(s) for s in spec)
    return _NAMES.get(spec, getattr(spec, "__name__", str(spec)))


def conforms(value: object, spec: TypeSpec) -> bool:
    """Whether a TOML value has the declared type."""
    if spec is object:
        return True
    if isinstance(spec, tuple):
        return any(conforms(value, s) for s in spec)
    if isinstance(spec, list):
        return isinstance(value, list) and all(conforms(v, spec[0]) for v in value)
    if isinstance(spec, dict):
        (_, vspec), = spec.items()
        return isinstance(value, dict) and all(
            isinstance(k, str) and conforms(v, vspec) for k, v in value.items())
    if spec is bool:
        return isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, spec)


# --- numbers written as text --------------------------------------------------------------------
# Ids, sizes and counts given as strings ("65534", "512M", "cap_12") take ASCII digits only:
# str.isdigit() and int() also accept other scripts' digits ("٠", Arabic-Indic zero, is 0 to
# int()) and superscripts ("²" is a digit to isdigit() but not to int()), so a value could
# display as one thing and act as another.  And a value is checked against the largest the
# kernel can hold before it is converted (int() refuses more than 4,300 digits; the kernel
# wraps or truncates what does not fit).

UID_MAX = (1 << 32) - 2  # (uid_t)-1 means "unchanged" to the set*id calls: it is no id
U64_MAX = (1 << 64) - 1


def is_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII decimal digits, nothing else."""
    return text.isascii() and text.isdigit()


def parse_digits(text: str, maximum: int) -> int:
    """The value of a string of ASCII digits; ValueError (with a one-line reason) when
    ``text`` is not one, or when its value is above ``maximum``."""
    if not is_digits(text):
        raise ValueError(f"{shown(text)} is not a number (ASCII digits 0-9)")
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(maximum)) or int(significant) > maximum:
        raise ValueError(f"{shown(text)} is above the largest value allowed, {maximum}")
    return int(significant)


def check_range(value: int, minimum: int, maximum: int) -> None:
    """ValueError unless ``minimum <= value <= maximum`` (for a ``Field.check``)."""
    if not minimum <= value <= maximum:
        raise ValueError(f"{shown(value)} is out of range ({minimum} .. {maximum})")


BINARY_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50,
                "e": 1 << 60}


def parse_scaled(text: str, maximum: int, units: dict[str, int] = BINARY_UNITS,
                 what: str = "value allowed") -> int:
    """The value of ASCII digits with an optional one-letter unit of ``units`` (any case:
    ``"512M"``, ``"64k"``); ValueError (with a one-line reason) when ``text`` is not one, or
    when the value, unit applied, is above ``maximum`` ("above the largest ``what``")."""
    last = text[-1:]
    # (isascii first: the Kelvin sign lowers to "k")
    mult = units.get(last.lower(), 0) if last.isascii() else 0
    digits = text[:-1] if mult else text
    if not is_digits(digits):
        raise ValueError(f"{shown(text)} is not a number (ASCII digits 0-9) with an optional "
                         f"unit ({', '.join(u.upper() for u in units)})")
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(maximum)) or int(significant) * (mult or 1) > maximum:
        raise ValueError(f"{shown(text)} is above the largest {what}, {maximum}")
    return int(significant) * (mult or 1)
