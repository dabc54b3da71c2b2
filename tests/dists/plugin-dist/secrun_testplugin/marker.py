"""Records every stage hook call (stage, pid, ppid) to ``[marker].log``; optionally fails in
``[marker].fail_stage`` to test that secrun fails closed."""

import os

from secrun import hookimpl
from secrun.errors import SetupError
from secrun.schema import Field, Section
from secrun.stages import STAGE_NAMES


@hookimpl
def secrun_profile_sections():
    return [Section("marker", "Test plugin: records stage calls.", [
        Field("log", str, "", "file to append 'stage pid ppid' lines to"),
        Field("fail_stage", str, "", "stage in which to raise", choices=("",) + STAGE_NAMES),
        Field("fork", bool, False, "ask the core to fork after the namespaces stage"),
        Field("thread", bool, False, "leave a thread running from the prepare stage (which "
              "the contract forbids)"),
    ])]


@hookimpl
def secrun_compile(ctx):
    return {"compiled_in": os.getpid()}


@hookimpl
def secrun_audit(ctx):
    return [{"control": "marker", "value": "records stages", "status": "enforced",
             "weight": 0.0, "section": "marker", "key": "log"}]


def _record(ctx, stage):
    cfg = ctx.config["marker"]
    if cfg["log"]:
        fd = os.open(cfg["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{stage} {os.getpid()} {os.getppid()}\n".encode())
        os.close(fd)
    if cfg["fail_stage"] == stage:
        raise SetupError(f"/marker/{stage}", "deliberate failure")


def _make(stage):
    def hook(ctx):
        _record(ctx, stage)
        if stage == "namespaces" and ctx.config["marker"]["fork"]:
            ctx.fork_after_namespaces = True
        if stage == "prepare" and ctx.config["marker"]["thread"]:
            import threading
            import time

            threading.Thread(target=time.sleep, args=(2,), daemon=True).start()

    hook.__name__ = "secrun_" + stage
    return hookimpl(hook)


for _stage in STAGE_NAMES:
    globals()["secrun_" + _stage] = _make(_stage)
