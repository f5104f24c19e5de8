"""A helper process the harness starts itself (its own Mosquitto, its own HAProxy): its
PID is ours, its files live in a directory of its own, and it is stopped by that PID,
never by name.  Subclasses set ``proc`` and ``_dir`` and implement :meth:`start`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

STOP_TIMEOUT_S = 10.0
KILL_WAIT_S = 5.0


def debian_binary(name: str) -> str | None:
    """A daemon's path (on PATH, else Debian's /usr/sbin), or None when not installed."""
    found = shutil.which(name)
    if found is not None:
        return found
    return f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None


def accepts(port: int, timeout_s: float = 0.2) -> bool:
    """Something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


class OwnProcess:
    proc: subprocess.Popen[bytes] | None
    _dir: Path

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> int | None:
        """SIGTERM by PID (SIGKILL if it does not go in time); its exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(KILL_WAIT_S)
        return proc.returncode

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
