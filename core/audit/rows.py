"""The shape of an audit row, as a plugin's ``secrun_audit`` returns it (see the hookspec), and
as the report carries it."""

from typing import Literal, NotRequired, TypedDict

from ..errors import SecrunError

# "substituted": enforced by another mechanism than the control's own (the row's value says
# which), as where a caller without a writable cgroup tree gets rlimits instead of cgroups
Status = Literal["enforced", "substituted", "best-effort", "not-available", "not-configured"]
STATUSES: tuple[Status, ...] = ("enforced", "substituted", "best-effort", "not-available",
                                "not-configured")


class AuditError(SecrunError):
    """The audit itself could not run (exit status 125)."""


class Row(TypedDict):
    """One control a plugin will apply (or could not, or was not asked to)."""

    control: str  # short name, e.g. "seccomp filter"
    value: str  # what will be applied, as text
    status: Status
    weight: float  # 0.0 fully confined .. 1.0 not at all (the residual exposure)
    section: NotRequired[str | None]  # where in the profile it comes from
    key: NotRequired[str | None]
    detail: NotRequired[str]
    category: NotRequired[str | None]  # a declared Category id; None: listed, not scored
    expect: NotRequired[dict[str, str]]  # fact -> value that --live must observe


class Check(TypedDict):
    """One ``expect`` fact of a row, compared with what the live audit observed."""

    fact: str
    expected: str
    observed: str | None
    ok: bool


class AuditRow(TypedDict):
    """A row of the report (``controls`` in the JSON): a plugin's row, checked, with where it
    came from and what it scores."""

    plugin: str
    control: str
    value: str
    status: Status
    weight: float
    section: str | None
    key: str | None
    detail: str
    category: str | None
    expect: dict[str, str]
    origin: str
    residual: NotRequired[float]
    importance: NotRequired[float]
    points: NotRequired[float]
    checks: NotRequired[list[Check]]
    verified: NotRequired[bool | None]


class Mismatch(TypedDict):
    """An ``expect`` fact of an enforced row that did not hold (exit status 2)."""

    plugin: str
    control: str
    fact: str
    expected: str
    observed: str | None
