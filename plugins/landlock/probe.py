"""The ``landlock`` plugin's live probe: whether the workload may create files in the usual
world-writable directories and bind or connect TCP sockets, tried for real.

Standard library only, no ``secrun`` import, on purpose: ``secrun_live_probe`` (in
:mod:`.audit`) returns this file's *source*, which the audit's probe runs inside the sandbox
(``python -I -S``) and whose :func:`probe` it calls.  Landlock shows nowhere in ``/proc``, so
the probe attempts the operations and reads the errno (EACCES: denied); a directory that is
missing, read-only (mount or permission bits, per ``access(2)``, which Landlock does not
answer) or an operation refused for another reason is ``untestable``.

Facts (see ``docs/landlock.md``):

- ``landlock.write:PATH`` for each of :data:`WRITE_DIRS`: ``allowed`` (a file was created
  there, then removed), ``denied`` (EACCES although the directory is writable by its mount and
  permission bits) or ``untestable``;
- ``landlock.bind_tcp``: binding a TCP socket to 127.0.0.1 port 0 (an ephemeral port);
- ``landlock.connect_tcp``: connecting to 127.0.0.1 port :data:`CONNECT_PORT` (nothing is
  expected to listen: a refused connection is ``allowed``, Landlock answers before the
  network does); both ``allowed``, ``denied`` or ``untestable`` (no TCP socket).
"""

from __future__ import annotations

import errno
import os
import socket

WRITE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
BIND_PORT = 0
CONNECT_PORT = 1


def try_write(path: str) -> str:
    """Create (exclusively) and remove a file in directory ``path``."""
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        return "untestable"
    name = os.path.join(path, f".secrun-landlock-probe-{os.getpid()}")
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        return "denied" if e.errno == errno.EACCES else "untestable"
    os.close(fd)
    os.unlink(name)
    return "allowed"


def try_tcp(connect: bool) -> str:
    """Bind 127.0.0.1:0, or connect to 127.0.0.1:1, with a fresh TCP socket."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return "untestable"
    try:
        s.settimeout(2.0)
        if connect:
            s.connect(("127.0.0.1", CONNECT_PORT))
        else:
            s.bind(("127.0.0.1", BIND_PORT))
    except OSError as e:
        return "denied" if e.errno == errno.EACCES else "allowed"
    finally:
        s.close()
    return "allowed"


def probe(facts: dict[str, str], ref: dict) -> None:
    """The ``secrun_live_probe`` entry point, inside the sandbox."""
    for path in WRITE_DIRS:
        facts[f"landlock.write:{path}"] = try_write(path)
    facts["landlock.bind_tcp"] = try_tcp(False)
    facts["landlock.connect_tcp"] = try_tcp(True)
