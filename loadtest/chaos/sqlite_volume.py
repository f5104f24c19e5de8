"""A small tmpfs for the SQLite database, which a scenario fills to make the disk
full (SQLITE_FULL on the switch's next write) and then frees.

Mounting needs root (``id -u`` = 0) and CAP_SYS_ADMIN; :func:`unavailable` says why
not otherwise.  Making the directory read-only is no substitute here: the switch
keeps its database files open (their descriptors stay writable) and root ignores
the mode bits anyway.

Filling alone is not enough to fail the next write at once: the WAL file is rewritten
in place after each checkpoint, so SQLite reaches the full disk only when the WAL
grows past its high-water mark.  :meth:`TmpfsVolume.fill` therefore truncates the
WAL first (``PRAGMA wal_checkpoint(TRUNCATE)``, a checkpoint any SQLite client may
run), then fills the volume: from then on every commit needs new pages.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

MOUNT_TIMEOUT_S = 30.0
CHUNK_BYTES = 1 << 20
CHECKPOINT_ATTEMPTS = 20
CHECKPOINT_BUSY_TIMEOUT_S = 2.0


def unavailable() -> str | None:
    """Why a tmpfs cannot be mounted here (None: it can)."""
    if os.geteuid() != 0:
        return (f"mounting a tmpfs needs root (id -u = {os.geteuid()}); the SQLite outage "
                "cannot be made here: run it as root, or use --engine postgresql")
    probe = Path(tempfile.mkdtemp(prefix="bpnt-chaos-probe-"))
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                              capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S,
                              check=False)
        if done.returncode != 0:
            return f"mount -t tmpfs failed: {done.stderr.strip()[:200]}"
        subprocess.run(["umount", str(probe)], capture_output=True, timeout=MOUNT_TIMEOUT_S,
                       check=True)
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


class TmpfsVolume:
    """``with TmpfsVolume(size_mb) as vol:`` ``vol.path`` is the mounted directory."""

    def __init__(self, size_mb: int) -> None:
        self.size_mb = size_mb
        self.path = Path(tempfile.mkdtemp(prefix="bpnt-chaos-sqlite-"))
        self.filler = self.path / "filler.bin"
        self._mounted = False

    def __enter__(self) -> TmpfsVolume:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700",
                        "tmpfs", str(self.path)], capture_output=True, text=True,
                       timeout=MOUNT_TIMEOUT_S, check=True)
        self._mounted = True
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._mounted:
            done = subprocess.run(["umount", str(self.path)], capture_output=True,
                                  timeout=MOUNT_TIMEOUT_S, check=False)
            if done.returncode != 0:  # still open somewhere: detach it now, freed later
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True,
                               timeout=MOUNT_TIMEOUT_S, check=False)
            self._mounted = False
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def fill(self, database: Path) -> int:
        """Truncate ``database``'s WAL, then fill the volume; returns the bytes written."""
        _truncate_wal(database)
        written = 0
        with self.filler.open("wb", buffering=0) as handle:
            chunk = bytes(CHUNK_BYTES)
            while len(chunk) >= 512:
                try:
                    written += handle.write(chunk) or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk = chunk[: len(chunk) // 2]
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def _truncate_wal(database: Path) -> None:
    """``PRAGMA wal_checkpoint(TRUNCATE)``, repeated while a writer keeps it busy."""
    conn = sqlite3.connect(str(database), timeout=CHECKPOINT_BUSY_TIMEOUT_S)
    try:
        for _ in range(CHECKPOINT_ATTEMPTS):
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.05)
    finally:
        conn.close()
