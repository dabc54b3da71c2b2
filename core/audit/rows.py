"""The shape of an audit row, as a plugin's ``secrun_audit`` returns it (see the hookspec)."""

from typing import Literal, NotRequired, TypedDict

Status = Literal["enforced", "best-effort", "not-available", "not-configured"]


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
