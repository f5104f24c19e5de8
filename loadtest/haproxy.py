"""Several switches behind one address: HAProxy (Debian's ``haproxy``) in TCP mode in
front of N ``bpnt-switch serve`` processes (docs/SCALING.md).

    python -m loadtest.haproxy --switches 2                  # fresh PostgreSQL database
    python -m loadtest.haproxy --switches 2 --duration-s 60  # bounded
    python -m loadtest.haproxy --switches 3 --database-url postgresql+psycopg://...
    make haproxy                                             # SWITCHES=2 ENGINE=postgresql

What is here:

* :func:`echo_request` / :func:`echo_answer`: the health check's bytes, made by the
  switch's own encoder and reply builder (switch/protocol, switch/core/replies): a
  framed 0800/990000 echo test (HOST_SPEC §4; it needs no logon, no MAC and no
  database: the switch answers it for any TID) and the framed 0810 with RC 00 that a
  switch sends back for it, byte for byte;
* :func:`render_config`: the HAProxy configuration for N backends;
* :class:`Haproxy`: one ``haproxy`` process of our own (foreground, ``-db``, its PID
  ours, its configuration, stats socket and log in a directory of its own), its
  servers' state read from the stats socket (``show stat``), stopped by PID;
* :func:`main`: the launcher: a database (seeded with the demo world, as ``make
  serve`` seeds it), N switches on free loopback ports (:class:`SwitchFleet`, as the
  chaos harness starts them), HAProxy in front, the one address printed; everything
  it started stopped by PID on Ctrl-C, SIGTERM or ``--duration-s``.

Never the Debian service (``/etc/haproxy``, systemd): a process and a configuration
of our own, on loopback only.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from loadtest.own_process import OwnProcess, accepts, debian_binary
from switch.core.replies import build_response
from switch.protocol import codes
from switch.protocol.framing import frame_tcp
from switch.protocol.message import Message
from switch.protocol.unit import Tpdu, Unit, encode_unit
from terminal_sim.demo import free_port

#: The echo's TID: the switch answers an echo for any TID (no registry look-up), and
#: one that is no terminal's keeps the checks apart from the EDCs in a capture.
ECHO_TID = "HAPROXY1"
ECHO_STAN = "000001"
ECHO_NII = "001"
#: The TPDU an EDC sends (destination NII 0001, source 0000); the answer swaps them.
ECHO_TPDU = Tpdu("0001", "0000")

#: Health check timing (docs/SCALING.md says why each).
CHECK_INTER = "2s"
CHECK_FASTINTER = "500ms"
CHECK_DOWNINTER = "1s"
CHECK_FALL = 3
CHECK_RISE = 2
TIMEOUT_CHECK = "5s"
TIMEOUT_CONNECT = "2s"
#: ``timeout client`` and ``timeout server`` are the switch's idle time-out
#: (BPNT_IDLE_TIMEOUT_S, 120 s by default) plus this: longer than it and than the EDC's
#: response time-out (HOST_SPEC §5, 30 s), so the switch's idle rule is the one that
#: applies and HAProxy never cuts an EDC connection first.
IDLE_MARGIN_S = 30
#: The switch's per-address limit (BPNT_MAX_CONNECTIONS_PER_ADDRESS, 1024), applied by
#: HAProxy per EDC source address: behind HAProxy every connection a switch sees comes
#: from HAProxy's address, so the switches get a per-address limit of their total.
PER_SOURCE_MAX = 1024
SWITCH_MAX_CONNECTIONS = 4096
FRONTEND_MAXCONN = 8192

START_TIMEOUT_S = 10.0
POLL_S = 0.05
STATS_TIMEOUT_S = 2.0
BACKEND = "switches"
FRONTEND = "edc"


def echo_message() -> Message:
    """HOST_SPEC §4 echo test: 0800, DE 3 990000, with its required DEs 11, 24, 41."""
    return Message("0800", {3: "990000", 11: ECHO_STAN, 24: ECHO_NII, 41: ECHO_TID})


def echo_request() -> bytes:
    """The framed echo request (2-byte length + TPDU + 0800), as an EDC sends it."""
    return frame_tcp(encode_unit(Unit(ECHO_TPDU, echo_message())))


def echo_answer() -> bytes:
    """The framed 0810 a switch answers it with: the TPDU swapped, DE 3, 11, 24 and 41
    echoed, DE 39 ``00`` (HOST_SPEC §3: no RRN in an 0810), built by the switch's own
    reply builder, so every byte of it is the switch's real answer."""
    reply = build_response(echo_message(), codes.APPROVED)
    return frame_tcp(encode_unit(Unit(ECHO_TPDU.reply(), reply)))


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int


def render_config(listen_port: int, backends: Sequence[Backend], stats_socket: Path, *,
                  listen_host: str = "127.0.0.1", idle_timeout_s: float | None = None) -> str:
    """The HAProxy configuration: one TCP frontend, ``balance leastconn`` over the
    switches, each checked by a real echo test (docs/SCALING.md explains each line).
    ``idle_timeout_s``: the switches' (default: BPNT_IDLE_TIMEOUT_S as set here)."""
    if not backends:
        raise ValueError("at least one backend")
    if idle_timeout_s is None:
        from switch.settings import load_settings

        idle_timeout_s = load_settings().idle_timeout_s
    idle_s = math.ceil(idle_timeout_s) + IDLE_MARGIN_S
    servers = "\n".join(f"    server {b.name} {b.host}:{b.port}" for b in backends)
    return f"""\
# Written by loadtest/haproxy.py (docs/SCALING.md).  EDCs -> this frontend -> switches.
global
    maxconn {FRONTEND_MAXCONN}
    log stdout format raw local0 info
    stats socket {stats_socket} mode 600 level admin
    stats timeout 10s

defaults
    mode tcp
    log global
    option tcplog
    option dontlognull
    timeout connect {TIMEOUT_CONNECT}
    # longer than the switch's idle time-out ({idle_timeout_s:g} s): the switch's rule applies
    timeout client {idle_s}s
    timeout server {idle_s}s
    timeout check {TIMEOUT_CHECK}
    # a connect refused by a switch that has gone: try again, on another switch
    retries 3
    option redispatch 1

frontend {FRONTEND}
    bind {listen_host}:{listen_port}
    maxconn {FRONTEND_MAXCONN}
    # the switch's per-address limit, per EDC address (the switches see only ours)
    stick-table type ip size 100k expire 10m store conn_cur
    tcp-request connection track-sc0 src
    tcp-request connection reject if {{ sc0_conn_cur gt {PER_SOURCE_MAX} }}
    default_backend {BACKEND}

backend {BACKEND}
    # EDCs hold a connection for many requests: balance what is open, not what arrived
    balance leastconn
    # health check: a real echo test (HOST_SPEC §4, 0800/990000, no logon needed),
    # framed (2-byte length + TPDU); healthy only on the switch's exact 0810, RC 00
    option tcp-check
    tcp-check connect linger
    tcp-check send-binary {echo_request().hex()}
    tcp-check expect binary {echo_answer().hex()}
    default-server check inter {CHECK_INTER} fastinter {CHECK_FASTINTER} downinter \
{CHECK_DOWNINTER} fall {CHECK_FALL} rise {CHECK_RISE} observe layer4 error-limit 2 \
on-error mark-down on-marked-down shutdown-sessions maxconn {SWITCH_MAX_CONNECTIONS}
{servers}
"""


def haproxy_binary() -> str | None:
    return debian_binary("haproxy")


def unavailable() -> str | None:
    """Why no HAProxy can be started here (None: one can)."""
    if haproxy_binary() is None:
        return "haproxy is not installed (apt-get install haproxy)"
    return None


@dataclass(frozen=True)
class ServerState:
    """One backend server as ``show stat`` reports it."""

    name: str
    #: ``UP``, ``DOWN``, ``UP 1/3`` (going down), ``DOWN 1/2`` (coming up), ``MAINT``...
    status: str
    #: The last check: ``L7OK``, ``L4CON`` (refused), ``L7RSP`` (a wrong answer)...
    check_status: str
    #: Sessions now, and in all (EDC connections it was given).
    current: int
    total: int

    @property
    def up(self) -> bool:
        """UP on a passed echo check (a server HAProxy has not checked yet is UP too)."""
        return self.status == "UP" and self.check_status == "L7OK"

    @property
    def down(self) -> bool:
        return self.status == "DOWN"


def parse_show_stat(text: str, backend: str = BACKEND) -> dict[str, ServerState]:
    """The servers of ``backend`` in ``show stat`` CSV (its header starts ``# ``)."""
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    states = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        states[row["svname"]] = ServerState(row["svname"], row.get("status", ""),
                                            row.get("check_status", ""),
                                            int(row.get("scur") or 0), int(row.get("stot") or 0))
    return states


class Haproxy(OwnProcess):
    """``with Haproxy(ports, run_dir) as lb:`` HAProxy on ``lb.port`` in front of the
    switches on ``ports``; ``lb.servers()``, ``lb.wait_for(name, "DOWN", timeout_s)``."""

    def __init__(self, ports: Sequence[int], run_dir: Path | None = None, *,
                 listen_port: int | None = None) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError(unavailable())
        self.binary = binary
        # the stats socket's path must be short (sun_path: 108 bytes): a temp dir of ours
        self._dir = Path(tempfile.mkdtemp(prefix="bpnt-haproxy-"))
        self.run_dir = run_dir or self._dir
        self.port = listen_port or free_port()
        self.backends = [Backend(f"switch-{n}", "127.0.0.1", p) for n, p in enumerate(ports)]
        self.stats_socket = self._dir / "stats.sock"
        self.config_path = self.run_dir / "haproxy.cfg"
        self.log_path = self.run_dir / "haproxy.log"
        self.config_path.write_text(render_config(self.port, self.backends, self.stats_socket),
                                    encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def check_config(self) -> None:
        done = subprocess.run([self.binary, "-c", "-f", str(self.config_path)],
                              capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"haproxy -c refused {self.config_path}: "
                               f"{(done.stdout + done.stderr)[-800:]}")

    def start(self) -> None:
        """``haproxy -db -f CONFIG`` (foreground, our PID); returns once the frontend
        accepts and the stats socket answers."""
        assert self.proc is None or self.proc.poll() is not None, "haproxy is running"
        self.check_config()
        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen([self.binary, "-db", "-f", str(self.config_path)],
                                         stdout=log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (accepts(self.port) and self._stats_answers()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                raise RuntimeError(f"haproxy did not listen on {self.address} (exit {code}); "
                                   f"see {self.log_path}")
            time.sleep(POLL_S)  # the port and the socket are its only readiness signals

    def _stats_answers(self) -> bool:
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def command(self, line: str) -> str:
        """One command on the stats socket (``show stat``, ``disable server ...``)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(STATS_TIMEOUT_S)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")

    def servers(self) -> dict[str, ServerState]:
        return parse_show_stat(self.command("show stat"))

    def wait_for(self, name: str, status: str, timeout_s: float,
                 abort: threading.Event | None = None) -> float | None:
        """Poll ``show stat`` until server ``name``'s status is ``status`` (``UP``: and
        its last echo check passed; ``DOWN``); the seconds it took, or None at the
        deadline (or on ``abort``)."""
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            state = self.servers().get(name)
            if state is not None and (state.up if status == "UP" else state.status == status):
                return time.monotonic() - started
            if time.monotonic() > deadline or (abort is not None and abort.is_set()):
                return None
            time.sleep(POLL_S)  # the stats socket is polled: HAProxy pushes nothing

    def wait_all_up(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for backend in self.backends:
            if self.wait_for(backend.name, "UP", max(0.0, deadline - time.monotonic())) is None:
                return False
        return True


def switch_env() -> dict[str, str]:
    """Settings of a switch behind HAProxy: every connection it sees comes from
    HAProxy's address, so its per-address limit is its total (HAProxy applies the
    per-EDC-address one)."""
    return {"BPNT_MAX_CONNECTIONS": str(SWITCH_MAX_CONNECTIONS),
            "BPNT_MAX_CONNECTIONS_PER_ADDRESS": str(SWITCH_MAX_CONNECTIONS)}


# -- the launcher -------------------------------------------------------------------------

class Stop(BaseException):
    """SIGTERM (or SIGINT): unwind, stopping everything started."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


@contextmanager
def _database(engine: str, url: str | None, pg_url: str, workdir: Path,
              kpm: int, out: Callable[[str], None]) -> Iterator[str]:
    """The switches' one database: ``url`` as given (not seeded, never dropped), or a
    fresh one seeded with the demo world and this period's allocation (PostgreSQL: a
    database ``bpnt_bench_<hex>`` on ``pg_url``, dropped afterwards)."""
    if url is not None:
        yield url
        return
    from loadtest.bench import bench_database, parse_args
    from switch.admin.demo import build_world, seed_database
    from switch.clock import SystemClock
    from switch.db.schema import open_database
    from switch.ledger.postings import allocate_period
    from switch.security.keyring import Keyring
    from switch.settings import load_settings

    args = parse_args(["--engine", engine, "--pg-url", pg_url])
    with bench_database(args, workdir) as fresh:
        settings = load_settings(database_url=fresh)
        db = open_database(fresh)
        world = build_world(kpm_count=kpm)
        seed_database(db, Keyring.from_settings(settings), world)
        period = SystemClock().now().strftime("%Y-%m")
        alloc = allocate_period(db, period, settings.period_amount_sen)
        db.engine.dispose()
        out(f"database {fresh.split('@')[-1]}: demo world, {len(world.cards)} cards, "
            f"{len(world.terminals)} terminals, {alloc.credited_count} KPM credited for "
            f"{period}")
        yield fresh


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from loadtest.bench import PG_BASE_URL

    parser = argparse.ArgumentParser(prog="python -m loadtest.haproxy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=2)
    parser.add_argument("--engine", choices=["postgresql", "sqlite"], default="postgresql",
                        help="a fresh database (PostgreSQL: on --pg-url, dropped at the end)")
    parser.add_argument("--database-url", help="serve this database instead (as it is: not "
                        "seeded, not dropped)")
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL", PG_BASE_URL))
    parser.add_argument("--kpm", type=int, default=200, help="the demo world's size")
    parser.add_argument("--port", type=int, default=0,
                        help="HAProxy's loopback port (default: a free one)")
    parser.add_argument("--duration-s", type=float, default=0.0,
                        help="stop after this long (default: until Ctrl-C or SIGTERM)")
    parser.add_argument("--out", type=Path, default=Path("var/haproxy"),
                        help="run directory: haproxy.cfg, haproxy.log, switch-N.log")
    ns = parser.parse_args(argv)
    if ns.switches < 1 or ns.duration_s < 0:
        parser.error("--switches must be positive, --duration-s not negative")
    return ns


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    from loadtest.chaos.switches import SwitchFleet

    ns = parse_args(argv)
    problem = unavailable()
    if problem is not None:
        out(f"haproxy: {problem}")
        return 2
    if ns.engine == "sqlite" and ns.switches > 1 and ns.database_url is None:
        out("note: several switches on one SQLite file work on one machine, but this is "
            "a PostgreSQL deployment (docs/SCALING.md)")
    run_dir = ns.out / time.strftime("run-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with ExitStack() as stack:
            url = stack.enter_context(_database(ns.engine, ns.database_url, ns.pg_url,
                                                run_dir, ns.kpm, out))
            fleet = SwitchFleet(url, run_dir, extra_env=switch_env())
            stack.callback(fleet.stop_all)
            fleet.start_all(ns.switches)
            for slot in fleet.slots:
                out(f"switch-{slot.index}: pid {slot.pid} on 127.0.0.1:{slot.port} "
                    f"(log {slot.log_path})")
            lb = stack.enter_context(Haproxy(fleet.ports, run_dir, listen_port=ns.port or None))
            if not lb.wait_all_up(START_TIMEOUT_S + CHECK_RISE * 2):
                out(f"not every switch passed its echo check: {lb.servers()}")
                return 1
            out(f"haproxy: pid {lb.pid}, config {lb.config_path}, log {lb.log_path}, "
                f"stats socket {lb.stats_socket}")
            out(f"EDCs use ONE address: {lb.address}")
            out(f"  e.g. .venv/bin/python -m terminal_sim.cli scenario approved-purchase "
                f"--port {lb.port} --state {run_dir / 'edc-state.json'} --db {url}")
            out("Ctrl-C or SIGTERM stops haproxy and the switches"
                + (f"; stopping by itself in {ns.duration_s:g} s" if ns.duration_s else ""))
            deadline = time.monotonic() + ns.duration_s if ns.duration_s else None
            last: dict[str, str] = {}
            while deadline is None or time.monotonic() < deadline:
                states = {name: s.status for name, s in lb.servers().items()}
                for name, status in states.items():
                    if last.get(name) not in (None, status):
                        out(f"{name}: {last[name]} -> {status}")
                last = states
                time.sleep(0.5)
            out("--duration-s is over: stopping")
    except Stop as exc:
        out(f"{exc}: stopped haproxy and the switches")
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
