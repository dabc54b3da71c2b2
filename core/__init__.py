"""secrun: run a program confined by a composable, auditable security profile.

This module is imported on every launch, so it stays tiny: it must not import pluggy, click,
tomllib, typing or anything else that costs start-up time.  Plugin authors use :data:`hookimpl`
from here; it produces the same marker that :class:`pluggy.HookimplMarker` produces, so pluggy
accepts these functions as hook implementations while a cached launch can call them without
importing pluggy at all (see ``docs/architecture.md``).
"""

from __future__ import annotations

__version__ = "0.1.0"
PROJECT = "secrun"

# For the type checker only (mypy honours a module-level TYPE_CHECKING): `typing` costs
# start-up time and this module is imported on every launch.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar, overload

    F = TypeVar("F", bound=Callable[..., object])

if TYPE_CHECKING:  # the decorator's two forms, @hookimpl and @hookimpl(tryfirst=True)

    @overload
    def hookimpl(function: F, *, tryfirst: bool = False, trylast: bool = False,
                 optionalhook: bool = False, specname: str | None = None) -> F: ...

    @overload
    def hookimpl(function: None = None, *, tryfirst: bool = False, trylast: bool = False,
                 optionalhook: bool = False, specname: str | None = None
                 ) -> Callable[[F], F]: ...


def hookimpl(function: F | None = None, *, tryfirst: bool = False, trylast: bool = False,
             optionalhook: bool = False, specname: str | None = None) -> F | Callable[[F], F]:
    """Mark a function as an implementation of a secrun hook (pluggy-compatible marker).

    Stage hooks must be plain functions: wrappers are not supported, because a cached launch
    replays the call order pluggy computed at planning time.  Typed as the decorator it is:
    the marked function keeps its own signature (``@hookimpl`` and ``@hookimpl(tryfirst=True)``).
    """

    def mark(func: F) -> F:
        setattr(
            func,
            PROJECT + "_impl",
            {
                "wrapper": False,
                "hookwrapper": False,
                "optionalhook": optionalhook,
                "tryfirst": tryfirst,
                "trylast": trylast,
                "specname": specname,
            },
        )
        return func

    return mark(function) if function is not None else mark
