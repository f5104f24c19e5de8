"""PostgreSQL that fails over: a primary and a synchronous standby, two clusters of our
own on free loopback ports (docs/SCALING.md "PostgreSQL that fails over").

    python -m loadtest.pg_standby                        # the pair for 10 minutes
    python -m loadtest.pg_standby --duration-s 60        # bounded
    python -m loadtest.pg_standby --failover-after-s 20  # kill -9 the primary at 20 s, promote
    make pg-standby                                      # DURATION=S FAILOVER=S

What is here:

* :class:`Node`: one cluster's data directory, port, log and postmaster (started and
  stopped with ``pg_ctl`` by its data directory, as the ``postgres`` user when we are
  root: PostgreSQL refuses root);
* :class:`StandbyPair`: the primary (``initdb``, or a physical copy of an existing
  cluster: the chaos harness's seeded one) with ``wal_level=replica``,
  ``synchronous_standby_names`` naming the standby and ``synchronous_commit=on``; the
  standby a ``pg_basebackup`` of it (``-X stream``, its own replication slot), with
  ``primary_conninfo`` naming it (``application_name``) and ``standby.signal``; both
  started, and ready once ``pg_stat_replication`` shows the standby ``sync``.
  :meth:`StandbyPair.kill_primary` ends the primary as a crashed machine would
  (SIGKILL of the postmaster and of every process it had started, at once);
  :meth:`StandbyPair.promote` is the scripted promotion (``pg_ctl promote -w``);
  :attr:`StandbyPair.url` the switch's multi-host URL (``target_session_attrs=
  read-write``: libpq tries the hosts in turn and keeps the one that takes writes);
* :func:`main`: the launcher; everything stopped by PID / data directory on Ctrl-C,
  SIGTERM or the end of ``--duration-s``, the directories removed.

The promoted standby runs with ``synchronous_standby_names = ''``: with no standby
left, its commits wait for nobody (one copy) until a new standby is attached.  Never
the system server on 5432: loopback only, directories of our own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from loadtest.chaos.postgres import OwnCluster, pg_bindir
from loadtest.own_process import accepts
from terminal_sim.demo import free_port

PRIMARY, STANDBY = "bpnt_primary", "bpnt_standby"
#: The database the launcher creates (the chaos scenario copies the harness's).
DATABASE = "bpnt"
INITDB_TIMEOUT_S = 120.0
PG_CTL_TIMEOUT_S = 60
BASEBACKUP_TIMEOUT_S = 120.0
SYNC_TIMEOUT_S = 30.0
GONE_TIMEOUT_S = 5.0
POLL_S = 0.05
#: libpq's wait for one host (a crashed machine does not refuse: it does not answer).
CONNECT_TIMEOUT_S = 2
DEFAULT_DURATION_S = 600.0
#: A server whose machine died sends no RST: without these a query sent to it waits
#: for the kernel's retransmissions (about 15 minutes).  tcp_user_timeout (ms): data
#: sent and not acknowledged; keepalives: a connection idle (waiting for an answer)
#: to a peer that no longer answers.  Both about 5-8 s, under the EDC's 30 s.  A SIGKILL
#: on loopback is refused at once, so the chaos run does not exercise them.
DEAD_PEER_PARAMS = ("keepalives=1&keepalives_idle=5&keepalives_interval=1&keepalives_count=3"
                    "&tcp_user_timeout=5000")


def unavailable() -> str | None:
    """Why a pair cannot be made here (None: it can)."""
    bindir = pg_bindir()
    if bindir is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not found"
    missing = [tool for tool in ("initdb", "pg_ctl", "pg_basebackup", "pg_isready")
               if not (bindir / tool).exists()]
    return f"{', '.join(missing)} not in {bindir}" if missing else None


def multi_host_url(ports: Sequence[int], database: str) -> str:
    """The switch's ``BPNT_DATABASE_URL``: SQLAlchemy's psycopg dialect turns repeated
    ``host=h:p`` into libpq's ``host=h1,h2 port=p1,p2``; ``target_session_attrs=
    read-write`` makes libpq skip a server in recovery (the standby, until promoted)."""
    hosts = "&".join(f"host=127.0.0.1:{port}" for port in ports)
    return (f"postgresql+psycopg://postgres@/{database}?{hosts}"
            f"&target_session_attrs=read-write&connect_timeout={CONNECT_TIMEOUT_S}"
            f"&{DEAD_PEER_PARAMS}")


def _conninfo(port: int, dbname: str = "postgres") -> str:
    return (f"host=127.0.0.1 port={port} user=postgres dbname={dbname} connect_timeout=5 "
            "options='-c statement_timeout=30000'")


def _query(port: int, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(_conninfo(port, dbname), autocommit=True) as conn:
        cursor = conn.execute(sql.encode())
        return list(cursor.fetchall()) if cursor.description is not None else []


def _children(pid: int) -> list[int]:
    """The PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ")"
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (not yet reaped by init) is gone for our purposes
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


class Node:
    """One cluster: ``dir/data``, its port, its log; run as ``postgres`` when root."""

    def __init__(self, root: Path, name: str, bindir: Path, user: str | None) -> None:
        self.name = name
        self.bindir = bindir
        self.port = free_port()
        self.dir = root / name
        self.data = self.dir / "data"
        self.log_path = self.dir / "server.log"
        self._user = user
        self.dir.mkdir()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    def run(self, tool: str, *args: str, timeout_s: float) -> str:
        done = subprocess.run([str(self.bindir / tool), *args], capture_output=True,
                              text=True, timeout=timeout_s, check=False, user=self._user,
                              cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: {tool} {' '.join(args[:4])} failed "
                               f"({done.returncode}): {(done.stderr or done.stdout)[-400:]}")
        return done.stdout

    def configure(self, settings: dict[str, str]) -> None:
        """Append ``settings`` to postgresql.conf (a later line wins over an earlier one,
        so the standby's lines go over those it copied from the primary)."""
        lines = [f"\n# {self.name} (loadtest/pg_standby.py)"]
        lines += [f"{key} = {value}" for key, value in settings.items()]
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n".join(lines) + "\n")

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "start", "-w",
                 "-t", str(PG_CTL_TIMEOUT_S), timeout_s=PG_CTL_TIMEOUT_S + 10)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and _alive(pid)

    def query(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        return _query(self.port, sql, dbname)

    def in_recovery(self) -> bool:
        return bool(self.query("SELECT pg_is_in_recovery()")[0][0])

    def close(self) -> None:
        """Stop it if it runs (``pg_ctl stop -m immediate`` by its data directory)."""
        if not self.running():
            return
        try:
            self.run("pg_ctl", "-D", str(self.data), "stop", "-m", "immediate", "-w",
                     "-t", str(PG_CTL_TIMEOUT_S), timeout_s=PG_CTL_TIMEOUT_S + 10)
        except (subprocess.SubprocessError, OSError, RuntimeError):
            pid = self.postmaster_pid()
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


class StandbyPair:
    """``with StandbyPair() as pair:`` a primary and its synchronous standby, running;
    ``pair.url`` the switch's multi-host URL.

    ``source``: make the primary a physical copy (``pg_basebackup``) of that running
    cluster instead of a fresh ``initdb`` (the chaos scenario: the harness's cluster,
    already seeded); ``database`` is then that cluster's database.  ``fsync``: off
    only where the data dies with the run and speed matters more than the truth of a
    power cut (a SIGKILL keeps the kernel's page cache either way).
    """

    def __init__(self, *, source: OwnCluster | None = None, database: str = DATABASE,
                 fsync: bool = True) -> None:
        problem = unavailable()
        if problem is not None:
            raise RuntimeError(problem)
        bindir = pg_bindir()
        assert bindir is not None
        self.source = source
        self.database = database
        self.fsync = fsync
        self._user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="bpnt-pg-standby-"))
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.primary = Node(self.root, PRIMARY, bindir, self._user)
        self.standby = Node(self.root, STANDBY, bindir, self._user)
        #: Set by kill_primary / promote (time.monotonic()).
        self.killed_at: float | None = None
        self.promoted_at: float | None = None
        self._held: int | None = None

    @property
    def url(self) -> str:
        return multi_host_url([self.primary.port, self.standby.port], self.database)

    # -- building it -------------------------------------------------------------------

    def __enter__(self) -> Self:
        try:
            self._make_primary()
            self._make_standby()
            # only now: with it named and no standby yet, every commit would wait
            # (CREATE DATABASE above included); FIRST 1: a commit returns once the
            # standby has flushed its WAL
            self.primary.configure({"synchronous_standby_names": f"'FIRST 1 ({STANDBY})'"})
            self.primary.query("SELECT pg_reload_conf()")
            if not self.wait_sync(SYNC_TIMEOUT_S):
                raise RuntimeError(f"the standby is not sync within {SYNC_TIMEOUT_S:g} s: "
                                   f"{self.replication()}")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _common(self, node: Node) -> dict[str, str]:
        return {
            "listen_addresses": "'127.0.0.1'",
            "port": str(node.port),
            "unix_socket_directories": f"'{node.dir}'",
            "cluster_name": f"'{node.name}'",
            "max_connections": "100",
            "fsync": "on" if self.fsync else "off",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "max_replication_slots": "5",
            "hot_standby": "on",
            # the standby answers the primary's keepalives: a dead standby is noticed
            "wal_sender_timeout": "'10s'",
            "wal_receiver_status_interval": "'1s'",
        }

    def _make_primary(self) -> None:
        node = self.primary
        if self.source is None:
            node.run("initdb", "-D", str(node.data), "-U", "postgres", "-A", "trust",
                     "-E", "UTF8", "--no-sync", timeout_s=INITDB_TIMEOUT_S)
        else:
            # a physical copy of the running source, its WAL streamed alongside: started
            # without standby.signal it recovers to the copy's end and takes writes
            node.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.source.port),
                     "-U", "postgres", "-D", str(node.data), "-X", "stream", "-c", "fast",
                     "--no-sync", timeout_s=BASEBACKUP_TIMEOUT_S)
        node.configure({**self._common(node), "synchronous_commit": "on"})
        _trust_replication(node.data)
        node.start()
        if self.source is None:
            node.query(f"CREATE DATABASE {self.database}")
        node.query(f"SELECT pg_create_physical_replication_slot('{STANDBY}')")

    def _make_standby(self) -> None:
        node, primary = self.standby, self.primary
        node.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                 "-D", str(node.data), "-X", "stream", "-c", "fast", "--no-sync",
                 timeout_s=BASEBACKUP_TIMEOUT_S)
        node.configure({
            **self._common(node),
            "primary_conninfo": (f"'host=127.0.0.1 port={primary.port} user=postgres "
                                 f"application_name={STANDBY} connect_timeout=2'"),
            "primary_slot_name": f"'{STANDBY}'",
            # promoted, it is alone: its commits wait for no standby (one copy)
            "synchronous_standby_names": "''",
        })
        (node.data / "standby.signal").touch()
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(node.data / "standby.signal", entry.pw_uid, entry.pw_gid)
        node.start()

    # -- watching it ---------------------------------------------------------------------

    def replication(self) -> list[tuple[str, str, str]]:
        """The primary's ``pg_stat_replication``: (application_name, state, sync_state)."""
        rows = self.primary.query(
            "SELECT application_name, state, sync_state FROM pg_stat_replication")
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def wait_sync(self, timeout_s: float) -> bool:
        """Until the standby streams and is the synchronous one (True), or the time-out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if (STANDBY, "streaming", "sync") in self.replication():
                    return True
            time.sleep(POLL_S)
        return False

    def pids(self) -> dict[str, int | None]:
        return {PRIMARY: self.primary.postmaster_pid(), STANDBY: self.standby.postmaster_pid()}

    def writable_port(self) -> int | None:
        """The port of the server that ``url`` reaches now (None: none takes writes)."""
        import psycopg

        conninfo = (f"host=127.0.0.1,127.0.0.1 port={self.primary.port},{self.standby.port} "
                    f"user=postgres dbname={self.database} target_session_attrs=read-write "
                    f"connect_timeout={CONNECT_TIMEOUT_S}")
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                row = conn.execute(b"SELECT inet_server_port()").fetchone()
        except psycopg.OperationalError:
            return None
        return None if row is None else int(row[0])

    # -- the fault ------------------------------------------------------------------------

    def kill_primary(self) -> int:
        """SIGKILL the primary's postmaster and every process it started, at once (a
        crashed machine: no backend finishes what it was doing, none answers again).
        The postmaster is stopped first so that it forks nothing meanwhile.  Returns
        its PID, once it and its children are gone."""
        pid = self.primary.postmaster_pid()
        if pid is None or not _alive(pid):
            raise RuntimeError("the primary is not running")
        os.kill(pid, signal.SIGSTOP)
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.killed_at = time.monotonic()
        deadline = self.killed_at + GONE_TIMEOUT_S
        while any(_alive(p) for p in (pid, *children)) or accepts(self.primary.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the primary (pid {pid}) still there {GONE_TIMEOUT_S:g} s "
                                   "after SIGKILL")
            time.sleep(POLL_S)
        return pid

    def promote(self) -> float:
        """The scripted promotion: ``pg_ctl promote -w`` on the standby, then until it
        takes writes; returns the seconds it took."""
        started = time.monotonic()
        self.standby.run("pg_ctl", "-D", str(self.standby.data), "promote", "-w",
                         "-t", str(PG_CTL_TIMEOUT_S), timeout_s=PG_CTL_TIMEOUT_S + 10)
        deadline = started + PG_CTL_TIMEOUT_S
        while self.standby.in_recovery():
            if time.monotonic() > deadline:
                raise RuntimeError("the standby still in recovery after pg_ctl promote")
            time.sleep(POLL_S)
        self.promoted_at = time.monotonic()
        return self.promoted_at - started

    def walreceiver_pid(self) -> int | None:
        """The standby's walreceiver (the process that receives, flushes and acks WAL)."""
        pid = self.standby.postmaster_pid()
        if pid is None:
            return None
        for child in _children(pid):
            try:
                title = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"walreceiver" in title:
                return child
        return None

    def hold_standby(self) -> int:
        """SIGSTOP the standby's walreceiver: it acknowledges nothing more, so every
        commit on the primary waits for it (sent, not returned): the in-flight case
        made certain instead of left to chance.  Returns its PID."""
        pid = self.walreceiver_pid()
        if pid is None:
            raise RuntimeError("the standby has no walreceiver")
        os.kill(pid, signal.SIGSTOP)
        self._held = pid
        return pid

    def release_standby(self) -> None:
        """SIGCONT the walreceiver :meth:`hold_standby` stopped (it then reads what the
        kernel still holds of the primary's stream)."""
        pid, self._held = self._held, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    # -- the end ------------------------------------------------------------------------

    def close(self) -> None:
        """Both stopped (by data directory; a killed primary's leftovers by PID), the
        directories removed."""
        self.release_standby()  # a stopped process ignores pg_ctl's SIGQUIT
        for node in (self.standby, self.primary):
            with contextlib.suppress(Exception):
                node.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _trust_replication(data: Path) -> None:
    """initdb -A trust already trusts loopback replication; a copy of a cluster made
    elsewhere may not, so say it (first match wins: prepend)."""
    hba = data / "pg_hba.conf"
    text = hba.read_text(encoding="utf-8")
    line = "host replication postgres 127.0.0.1/32 trust\n"
    if line not in text:
        hba.write_text(line + text, encoding="utf-8")


# -- the launcher ---------------------------------------------------------------------

class Stop(BaseException):
    """SIGTERM (or SIGINT): unwind, stopping both clusters."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.pg_standby",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=DEFAULT_DURATION_S,
                        help=f"stop after this long (default {DEFAULT_DURATION_S:g})")
    parser.add_argument("--failover-after-s", type=float, default=None,
                        help="kill -9 the primary this long after the pair is up, then "
                        "promote the standby (the scripted failover)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="fsync=off on both (faster; the data dies with the run anyway)")
    ns = parser.parse_args(argv)
    if ns.duration_s <= 0:
        parser.error("--duration-s must be positive")
    if ns.failover_after_s is not None and not 0 <= ns.failover_after_s < ns.duration_s:
        parser.error("--failover-after-s must be within --duration-s")
    return ns


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    ns = parse_args(argv)
    problem = unavailable()
    if problem is not None:
        out(f"pg-standby: {problem}")
        return 2
    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with StandbyPair(fsync=not ns.no_fsync) as pair:
            started = time.monotonic()
            pids = pair.pids()
            out(f"primary {PRIMARY}: pid {pids[PRIMARY]} on 127.0.0.1:{pair.primary.port} "
                f"({pair.primary.data})")
            out(f"standby {STANDBY}: pid {pids[STANDBY]} on 127.0.0.1:{pair.standby.port} "
                f"({pair.standby.data}), {', '.join('/'.join(r) for r in pair.replication())}")
            out(f"BPNT_DATABASE_URL='{pair.url}'")
            out("Ctrl-C or SIGTERM stops both; stopping by itself in "
                f"{ns.duration_s:g} s")
            if ns.failover_after_s is not None:
                time.sleep(max(0.0, started + ns.failover_after_s - time.monotonic()))
                pid = pair.kill_primary()
                out(f"primary (pid {pid}) killed (SIGKILL, with its backends)")
                took = pair.promote()
                out(f"standby promoted in {took:.2f} s; the URL now reaches port "
                    f"{pair.writable_port()}")
            time.sleep(max(0.0, started + ns.duration_s - time.monotonic()))
            out("--duration-s is over: stopping")
    except Stop as exc:
        out(f"{exc}: stopped both clusters")
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
