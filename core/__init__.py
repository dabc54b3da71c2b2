"""secrun: run a program confined by a composable, auditable security profile.

This module is imported on every launch, so it stays tiny: it must not import pluggy, click,
tomllib, typing or anything else that costs start-up time.  Plugin authors use :data:`hookimpl`
from here; it produces the same marker that :class:`pluggy.HookimplMarker` produces, so pluggy
accepts these functions as hook implementations while a cached launch can call them without
importing pluggy at all (see ``docs/architecture.md``).
"""

__version__ = "0.1.0"
PROJECT = "secrun"


def hookimpl(function=None, *, tryfirst=False, trylast=False, optionalhook=False, specname=None):
    """Mark a function as an implementation of a secrun hook (pluggy-compatible marker).

    Stage hooks must be plain functions: wrappers are not supported, because a cached launch
    replays the call order pluggy computed at planning time.
    """

    def mark(func):
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
