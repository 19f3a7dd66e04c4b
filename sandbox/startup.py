"""What `python -m sandbox` checks before it writes anything: its state directory is its own,
and its port is free. Either problem is one line and exit code 1, never a traceback."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from typing import IO


class StartupError(Exception):
    """The sandbox cannot start; the message is the one line to print."""


def hold_lock(path: Path, what: str) -> IO[str]:
    """Take an exclusive lock on `path` for the life of the process (the OS drops it when the
    process ends, however it ends), or say who holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise StartupError(f"{what} already runs in {path.parent} (pid {holder}); stop it or "
                           "choose another directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def bind_port(port: int, flag: str = "--port") -> socket.socket:
    """Bind 127.0.0.1:port; a busy port is one line naming the option to change it."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it every response body waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} is in use; choose another with {flag}") from None
        raise StartupError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    sock.listen(512)
    return sock
