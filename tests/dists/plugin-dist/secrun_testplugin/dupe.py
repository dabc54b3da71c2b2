from secrun import hookimpl
from secrun.schema import Field, Section


@hookimpl
def secrun_profile_sections():
    return [Section("process", "a second owner of [process]", [Field("x", bool, False, "x")])]
