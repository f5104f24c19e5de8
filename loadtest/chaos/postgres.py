"""The harness's own PostgreSQL cluster: initdb in a temporary directory, a free
loopback port, started, stopped (``pg_ctl -m fast``) and started again by the
scenarios, removed on the way out.  The system server (5432) is never touched.

As root, initdb and the server run as the ``postgres`` user (PostgreSQL refuses
root), so the directory is handed to that user.  The cluster runs with
``fsync=off``: its data dies with the run, and a fast shutdown is clean anyway.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from terminal_sim.demo import free_port

INITDB_TIMEOUT_S = 120.0
PG_CTL_TIMEOUT_S = 60
READY_POLL_S = 0.05
PG_ISREADY_TIMEOUT_S = 1
DATABASE = "bpnt_chaos"
SERVER_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
                  "-c synchronous_commit=off -c max_connections=100")


def pg_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb and pg_ctl (None: not here)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


class OwnCluster:
    """``with OwnCluster() as pg:`` a running cluster; ``pg.url`` its database."""

    def __init__(self) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bpnt-chaos-pg-"))
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @property
    def base_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/{DATABASE}"

    def __enter__(self) -> OwnCluster:
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--no-sync", timeout_s=INITDB_TIMEOUT_S)
            self.start(wait=True)
            self._create_database()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- what scenarios do -------------------------------------------------------------

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``, waiting until the server is gone."""
        self._run("pg_ctl", "-D", str(self.data), "stop", "-m", mode, "-w",
                  "-t", str(PG_CTL_TIMEOUT_S), timeout_s=PG_CTL_TIMEOUT_S + 10)

    def start(self, *, wait: bool) -> None:
        """``pg_ctl start``; ``wait=False`` returns at once (then :meth:`wait_ready`)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "start",
                  "-w" if wait else "-W", "-t", str(PG_CTL_TIMEOUT_S),
                  "-o", f"-p {self.port} -k {self.dir} {SERVER_OPTIONS}",
                  timeout_s=PG_CTL_TIMEOUT_S + 10)

    def ready(self) -> bool:
        """``pg_isready``: the server accepts connections."""
        done = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
             "-t", str(PG_ISREADY_TIMEOUT_S), "-q"],
            capture_output=True, timeout=PG_ISREADY_TIMEOUT_S + 5, check=False)
        return done.returncode == 0

    def wait_ready(self, timeout_s: float) -> bool:
        """Poll :meth:`ready` until it succeeds (True) or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready():
                return True
            time.sleep(READY_POLL_S)
        return False

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- plumbing --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the server if it runs (by its data directory: only ours), remove it all."""
        if self.postmaster_pid() is not None:
            try:
                self.stop("immediate")
            except (subprocess.SubprocessError, OSError):
                pid = self.postmaster_pid()
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres "
                             "connect_timeout=10", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}".encode())

    def _run(self, tool: str, *args: str, timeout_s: float) -> None:
        done = subprocess.run([str(self.bindir / tool), *args], capture_output=True,
                              text=True, timeout=timeout_s, check=False, user=self._user,
                              cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args[:4])} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout)[-400:]}")

