"""The messages between the supervisor and the sandbox, and their encoding.

Every message has a kind and a fixed shape, like youki's ``channel.rs``: it travels as a
marshal tuple ``(kind, field, ...)``, length-prefixed (4 bytes, little-endian) and at most
:data:`MAX_RECORD` bytes.  Decoding checks the length, that the data is marshal, that it is a
tuple whose kind is one this pipe carries, and that each field has exactly the type the kind
says (``True`` is not a pid); anything else is a :class:`ProtocolError`.

``status`` (setup process -> supervisor, close-on-exec; EOF: the workload was exec'd, or the
setup process died):

=============  ======================  ===================================================
kind           fields                  meaning
=============  ======================  ===================================================
``ready``      --                      the user namespace exists: run ``after_fork``
``attach``     --                      the process to attach is the setup process itself
``pid``        pid                     hand-over: pid 1 of the new pid namespace is ``pid``;
                                       the sender exits, the supervisor adopts pid 1
``init``       --                      a minimal init runs (records follow on ``final``)
``warn``       text                    a best-effort control was not applied
``error``      stage, plugin, text     a stage failed: nothing will run
``exec_error`` errno, program          execve failed
=============  ======================  ===================================================

``final`` (the minimal init -> supervisor): ``stop`` (signal): the workload stopped;
``exit`` (raw wait status): it ended.

``go`` (supervisor -> setup process): single bytes, each the release of a parent stage
(:data:`secrun.stages.STAGES` names the byte: ``g`` after ``after_fork``, ``a`` after
``attach``).  EOF, or any other byte, aborts the setup process before it runs anything more.

On the launch path: imports nothing beyond ``os`` and ``marshal``.
"""

from __future__ import annotations

import marshal
import os

TYPE_CHECKING = False  # (typing costs launch time; mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any

    # kind -> the type of each field; a message is (kind, field, ...)
    Kinds = dict[str, tuple[type, ...]]
    Record = tuple[Any, ...]

MAX_RECORD = 1 << 20

# kind -> the type of each field, in order
STATUS: Kinds = {
    "ready": (),
    "attach": (),
    "pid": (int,),
    "init": (),
    "warn": (str,),
    "error": (str, str, str),
    "exec_error": (int, str),
}
FINAL: Kinds = {
    "stop": (int,),
    "exit": (int,),
}


class ProtocolError(Exception):
    """What came down a pipe is not a message that pipe carries (``what``: how it looked)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _valid(record: object, kinds: Kinds) -> bool:
    if type(record) is not tuple or not record:
        return False
    shape = kinds.get(record[0]) if type(record[0]) is str else None
    if shape is None or len(record) != len(shape) + 1:
        return False
    for value, kind in zip(record[1:], shape, strict=True):
        if type(value) is not kind:
            return False
    return True


def send(fd: int, kinds: Kinds, *record: str | int) -> None:
    """Write one message ``(kind, field, ...)``; its shape is checked against ``kinds`` first
    (a malformed message is a bug in secrun, never sent)."""
    if not _valid(record, kinds):
        raise ProtocolError(f"refusing to send a malformed message: {record!r}")
    data = marshal.dumps(record)
    data = len(data).to_bytes(4, "little") + data
    while data:
        n = os.write(fd, data)
        data = data[n:]


class Reader:
    """The messages of one pipe, in order, each validated against ``kinds``."""

    __slots__ = ("fd", "kinds", "buf")

    def __init__(self, fd: int, kinds: Kinds) -> None:
        self.fd, self.kinds, self.buf = fd, kinds, b""

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def next(self) -> Record | None:
        """The next message, a tuple ``(kind, field, ...)``; None at EOF (a message cut short
        by EOF is EOF too: its writer died while writing).  Raises :class:`ProtocolError` for
        anything else: too large, not marshal data, not a tuple, or not a kind of this pipe with
        its shape."""
        if not self._fill(4):
            return None
        size = int.from_bytes(self.buf[:4], "little")
        if size > MAX_RECORD:
            raise ProtocolError(f"a record of {size} bytes")
        if not self._fill(4 + size):
            return None
        data, self.buf = self.buf[4:4 + size], self.buf[4 + size:]
        try:
            record = marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            raise ProtocolError("not a marshal record") from None
        if not _valid(record, self.kinds):
            text = repr(record)
            raise ProtocolError(text if len(text) <= 200 else text[:200] + "...")
        return record


def release(fd: int, byte: bytes) -> bool:
    """The supervisor lets the setup process go on past a parent stage.  False when the setup
    process is gone (it failed: its error is on the status pipe)."""
    try:
        os.write(fd, byte)
    except BrokenPipeError:
        return False
    return True


def released(fd: int, byte: bytes) -> bool:
    """In the setup process: wait for the release ``byte``; False on EOF or any other byte
    (the supervisor stopped the launch, or died)."""
    return os.read(fd, 1) == byte
