"""10,000 idle terminal connections held while a purchase completes within 1 s (issue 17).

    python -m loadtest.idle_connections                      # 10,000, SQLite in a temp dir
    python -m loadtest.idle_connections --connections 2000 --engine postgresql
    make idle-connections

1. a fresh demo database (SQLite in a temporary directory, or a PostgreSQL database
   ``bpnt_bench_<hex>`` dropped afterwards), this period's allocation;
2. ONE real ``bpnt-switch serve`` process on a free loopback port, with
   ``BPNT_MAX_CONNECTIONS`` above the count and ``/metrics`` on a port of its own; it
   is started with a soft open-file limit of at most 1,024 (a common default: its own
   start-up must raise it, switch/transports/nofile.py), its per-address limit left
   at the default (1,024);
3. this process raises its own RLIMIT_NOFILE soft limit to the hard limit (fails with
   the reason when that is below what the run needs), then opens ``--connections`` TCP
   connections that send nothing, from 127.0.0.1, 127.0.0.2, ... with at most
   ``--per-address`` (1,000) from each: real e-warongs come from many addresses, and
   the switch's per-address limit (which stops one e-warong's NAT from starving the
   others) refuses the 1,025th from one.  Opening is paced: at most
   :data:`PACE_WINDOW` connections are ever waiting in the switch's listen backlog
   (asyncio's default is 100; connections beyond it are dropped by the kernel and
   retried a second later), counted from the switch's ``bpnt_connections`` gauge;
4. held: the gauge reads exactly N and no client socket has been closed (or reset,
   or written to) by the switch;
5. ONE purchase through a real terminal_sim EDC (logged on first) over a new TCP
   connection, its time from sending the request to the answer measured;
6. held again (gauge and sockets), then everything closed and the switch stopped by
   PID.

Figures: connections, the time to open them, the switch's RSS (``/proc/PID/status``
VmRSS) before, with them held and after the purchase, the purchase's RC and time, and
a VERDICT line: PASS only if all N were held before and after the purchase and the
purchase was approved (RC 00) within ``--within-s`` (1 s).  Exit status 0 on PASS, 1
on FAIL, 2 when the run cannot be made here (open-file limit) or ran out of
``--max-total-s``.  Everything it starts is stopped by PID, on loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from terminal_sim.link import Link

#: The switch's listen backlog is asyncio's (and uvloop's) default, 100: at most this
#: many connections are ever waiting in it (connected, not yet accepted by the switch).
PACE_WINDOW = 64
#: Connections opened at once (each a non-blocking connect; then the window is checked).
PACE_CHUNK = 32
#: How long the gauge may stay still before opening goes on anyway: a switch that
#: refuses connections (its limit reached) accepts and closes them, so they never
#: show in the gauge; the refused sockets are counted when the connections are checked.
PACE_STALL_S = 0.2
PACE_POLL_S = 0.002
CONNECT_TIMEOUT_S = 10.0
#: How long the gauge may take to settle on the expected count.
SETTLE_TIMEOUT_S = 10.0
SETTLE_STILL_S = 1.0
#: Descriptors this process needs besides its N connections (the EDC's, the database's,
#: the metrics scrapes', the interpreter's own).
OWN_MARGIN = 128
#: The switch's limit is the count plus this (BPNT_MAX_CONNECTIONS): the readiness
#: probe, the EDC and the metrics scrapes must fit as well.
SWITCH_MARGIN = 64
#: The switch is started with at most this soft open-file limit (a common default), so
#: its own start-up must raise it for the run's connections.
SWITCH_START_SOFT_NOFILE = 1024
EDC_TIMEOUT_S = 10.0
START_TIMEOUT_S = 20.0
#: SIGALRM (main) this long after --max-total-s: stopping the switch takes up to 15 s.
BACKSTOP_S = 30
STOP_TIMEOUT_S = 15.0
KPM = 20
#: Linux: bind() a source address without taking a port until connect() (the
#: 4-tuple then only has to be unique), so 1,000 binds to one address cost nothing.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
GAUGE = re.compile(r'^bpnt_connections\{transport="tcp"\} ([0-9.e+]+)$', re.MULTILINE)


class RunAborted(BaseException):
    """``--max-total-s`` ran out (raised from SIGALRM, so cleanup still runs)."""


@dataclass
class Args:
    connections: int = 10_000
    engine: str = "sqlite"
    pg_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432"
    per_address: int = 1000
    #: The switch's BPNT_MAX_CONNECTIONS (None: the count + :data:`SWITCH_MARGIN`).
    switch_max_connections: int | None = None
    within_s: float = 1.0
    max_total_s: float = 120.0
    #: Run directory (database, switch log); None: a temporary one, removed after.
    out: Path | None = None


@dataclass
class Held:
    """What the check of the N connections found."""

    gauge: int | None
    open: int
    closed: int
    reset: int
    written: int

    def all_held(self, count: int) -> bool:
        return self.gauge == count and self.open == count

    def describe(self) -> str:
        return (f"gauge bpnt_connections{{transport=\"tcp\"}} = {self.gauge}; client sockets "
                f"open {self.open}, closed by the switch {self.closed}, reset {self.reset}, "
                f"written to {self.written}")


@dataclass
class Result:
    connections: int
    opened: int = 0
    failed_connects: int = 0
    open_s: float = 0.0
    rss_kb: dict[str, int] = field(default_factory=dict)
    before: Held | None = None
    after: Held | None = None
    logon_rc: str | None = None
    purchase_rc: str | None = None
    purchase_s: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


# -- limits, the database, the switch ------------------------------------------------

def raise_own_nofile(needed: int) -> tuple[int, int, int]:
    """This process's soft RLIMIT_NOFILE raised to the hard limit; (before, now, hard).
    Raises SystemExit with the reason when the hard limit is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        target = max(soft, needed) if soft != resource.RLIM_INFINITY else soft
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target != resource.RLIM_INFINITY and target < needed:
        raise SystemExit(
            f"open-file limit: this run needs {needed} descriptors but the hard limit is "
            f"{hard} (soft {soft}); raise it (ulimit -Hn as root, or LimitNOFILE= / "
            f"/etc/security/limits.conf) or run with fewer --connections")
    return soft, target, hard


@contextmanager
def demo_database(args: Args, workdir: Path, out: Callable[[str], None]) -> Iterator[str]:
    """A fresh database seeded with the demo world and this period's allocation."""
    from loadtest.bench import bench_database
    from loadtest.bench import parse_args as bench_args
    from switch.admin.demo import build_world, seed_database
    from switch.clock import SystemClock
    from switch.db.schema import open_database
    from switch.ledger.postings import allocate_period
    from switch.security.keyring import Keyring
    from switch.settings import load_settings

    with bench_database(bench_args(["--engine", args.engine, "--pg-url", args.pg_url]),
                        workdir) as url:
        settings = load_settings(database_url=url)
        db = open_database(url)
        world = build_world(kpm_count=KPM)
        seed_database(db, Keyring.from_settings(settings), world)
        period = SystemClock().now().strftime("%Y-%m")
        alloc = allocate_period(db, period, settings.period_amount_sen)
        db.engine.dispose()
        out(f"database {url.split('@')[-1]}: demo world, {len(world.terminals)} terminals, "
            f"{alloc.credited_count} KPM credited for {period}")
        yield url


@dataclass
class Switch:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def gauge(self) -> int | None:
        """``bpnt_connections{transport="tcp"}`` from its ``/metrics`` (None: no answer)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as answer:  # loopback only
                text = answer.read().decode()
        except OSError:
            return None
        found = GAUGE.search(text)
        return int(float(found.group(1))) if found else None

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) if found else -1

    def nofile(self) -> str:
        """Its open-file limit as the kernel reports it (soft / hard)."""
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft} / {hard}"
        return "?"

    def stop(self) -> int | None:
        """SIGTERM by PID (SIGKILL if it does not go in time); its exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5.0)
        return self.proc.returncode


def start_switch(url: str, max_connections: int, log_path: Path,
                 nofile: tuple[int, int]) -> Switch:
    """``bpnt-switch serve`` on free loopback ports, started with the open-file limit
    ``nofile`` (a low soft limit: the switch raises its own); returns once
    it accepts TCP connections and answers ``/metrics``."""
    from terminal_sim.demo import free_port, wait_until_listening

    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "BPNT_DATABASE_URL": url, "BPNT_HOST": "127.0.0.1",
           "BPNT_PORT": str(port), "BPNT_METRICS_HOST": "127.0.0.1",
           "BPNT_METRICS_PORT": str(metrics_port),
           "BPNT_MAX_CONNECTIONS": str(max_connections)}

    # the limit set, then exec'd into the switch (the same PID): no preexec_fn, which
    # is unsafe in a process with threads (pytest's may have some)
    trampoline = ("import os, resource, sys; "
                  f"resource.setrlimit(resource.RLIMIT_NOFILE, {tuple(nofile)!r}); "
                  "os.execv(sys.executable, [sys.executable, '-m', 'switch.cli', 'serve'])")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-c", trampoline], env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    switch = Switch(proc, port, metrics_port, log_path)
    try:
        wait_until_listening(port, proc, START_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        while switch.gauge() is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"switch /metrics not answering on {metrics_port}; "
                                   f"see {log_path}")
            time.sleep(0.05)
    except BaseException:
        switch.stop()
        raise
    return switch


# -- the idle connections ---------------------------------------------------------------

def source_address(index: int, per_address: int) -> str:
    """127.0.0.1 for the first ``per_address`` connections, 127.0.0.2 for the next..."""
    n = index // per_address + 1
    if n > 254 * 254:
        raise ValueError("too many connections for 127.0.x.y sources")
    return f"127.0.{n // 255}.{n % 255}" if n >= 255 else f"127.0.0.{n}"


async def _connect(source: str, port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
            sock, ("127.0.0.1", port)), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError):
        sock.close()
        return None
    return sock


async def open_idle(count: int, per_address: int, switch: Switch, deadline: float,
                    problems: list[str]) -> tuple[list[socket.socket], int]:
    """``count`` connections that send nothing, paced by the switch's gauge: at most
    :data:`PACE_WINDOW` not yet accepted.  (sockets, failed connects); a switch whose
    ``/metrics`` stops answering ends the opening, with the reason in ``problems``."""
    socks: list[socket.socket] = []
    failed = 0
    base = switch.gauge() or 0
    index = 0
    while index < count:
        if time.monotonic() > deadline:
            raise RunAborted(f"--max-total-s ran out with {len(socks)} of {count} open")
        chunk = range(index, min(count, index + PACE_CHUNK))
        opened = await asyncio.gather(*(_connect(source_address(i, per_address), switch.port)
                                        for i in chunk))
        index = chunk.stop
        for sock in opened:
            if sock is None:
                failed += 1
            else:
                socks.append(sock)
        last, still_since = -1, time.monotonic()
        while True:
            gauge = await asyncio.to_thread(switch.gauge)
            if gauge is None:
                problems.append(f"switch /metrics stopped answering with {len(socks)} "
                                f"connections opened (out of descriptors?)")
                return socks, failed
            if len(socks) - (gauge - base) <= PACE_WINDOW:
                break
            if gauge != last:
                last, still_since = gauge, time.monotonic()
            elif time.monotonic() - still_since > PACE_STALL_S:
                break  # not accepting more: refused (closed) ones never show in the gauge
            await asyncio.sleep(PACE_POLL_S)
    return socks, failed


def listen_overflows() -> int | None:
    """The kernel's TcpExt ListenOverflows (this network namespace, every listener)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table["ListenOverflows"]) if "ListenOverflows" in table else None
    return None


def check_sockets(socks: Sequence[socket.socket]) -> tuple[int, int, int, int]:
    """(open, closed by the peer, reset, written to): a peek that must find nothing."""
    held = closed = reset = written = 0
    for sock in socks:
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            held += 1
        except OSError:
            reset += 1
        else:
            if data:
                written += 1
            else:
                closed += 1
    return held, closed, reset, written


def held(switch: Switch, socks: Sequence[socket.socket], expected: int) -> Held:
    """The gauge once it reads ``expected`` (or what it reads once it has stayed still
    for :data:`SETTLE_STILL_S`, at most :data:`SETTLE_TIMEOUT_S`), and the client
    sockets."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    gauge = switch.gauge()
    still_since = time.monotonic()
    while gauge != expected and time.monotonic() < deadline \
            and time.monotonic() - still_since < SETTLE_STILL_S:
        time.sleep(0.05)
        now = switch.gauge()
        if now != gauge:
            gauge, still_since = now, time.monotonic()
    return Held(gauge, *check_sockets(socks))


# -- the purchase -----------------------------------------------------------------------

class TimedLink:
    """A link that times each exchange: from sending the unit to the whole answer."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.seconds: list[float] = []

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        started = time.perf_counter()
        try:
            return self.inner.exchange(unit, timeout_s)
        finally:
            self.seconds.append(time.perf_counter() - started)

    def close(self) -> None:
        self.inner.close()


def one_purchase(port: int, result: Result, out: Callable[[str], None]) -> None:
    """Log on, then one purchase through a real EDC over a new TCP connection."""
    from card_emulator.card import KksCard
    from card_emulator.profile import profile_for
    from loadtest.bench import BASKET
    from switch.admin.demo import build_world
    from switch.security.keyring import Keyring
    from switch.settings import load_settings
    from terminal_sim.card_reader import EmulatedReader
    from terminal_sim.edc import Edc, EdcConfig
    from terminal_sim.link import TcpLink

    world = build_world(kpm_count=KPM)
    term = world.terminal_labelled("ok")
    card = world.cards_labelled("ok")[0]
    imk_ac = Keyring.from_settings(load_settings()).imk_ac
    link = TimedLink(TcpLink("127.0.0.1", port))
    reader = EmulatedReader()
    edc = Edc(EdcConfig(term.tid, term.mid, term.tmk, timeout_s=EDC_TIMEOUT_S), link, reader)
    try:
        logon = edc.logon()
        result.logon_rc = logon.rc
        out(f"logon: {term.tid} RC {logon.rc} in {link.seconds[-1] * 1000:.1f} ms")
        if not logon.approved:
            result.problems.append(f"logon answered RC {logon.rc} ({logon.display})")
            return
        reader.swap(KksCard(profile_for(card.pan, card.psn, card.expiry_yymm, imk_ac)))
        started = time.perf_counter()
        sent_before = len(link.seconds)
        purchase = edc.purchase(BASKET, card.pin)
        whole_s = time.perf_counter() - started
        result.purchase_rc = purchase.rc
        if len(link.seconds) > sent_before:
            result.purchase_s = link.seconds[sent_before]
        timed = "no answer" if result.purchase_s is None else \
            f"{result.purchase_s * 1000:.1f} ms from sending to answer"
        out(f"purchase: RC {purchase.rc} ({purchase.display}) {timed}; "
            f"{whole_s * 1000:.1f} ms with the EDC's card read, PIN block and MAC")
    finally:
        link.close()


# -- the run ------------------------------------------------------------------------------

def _in_time(deadline: float, where: str) -> None:
    if time.monotonic() > deadline:
        raise RunAborted(f"--max-total-s ran out {where}")


def run(args: Args, out: Callable[[str], None] = print) -> Result:
    """The whole check (module docstring); the figures go to ``out``."""
    started = time.monotonic()
    deadline = started + args.max_total_s
    result = Result(args.connections)
    soft, now, hard = raise_own_nofile(args.connections + OWN_MARGIN)
    out(f"open-file limit of this process: soft {soft} -> {now} (hard {hard})")
    switch_max = args.switch_max_connections or args.connections + SWITCH_MARGIN
    with ExitStack() as stack:
        if args.out is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idle-")))
        else:
            workdir = args.out
            workdir.mkdir(parents=True, exist_ok=True)
        url = stack.enter_context(demo_database(args, workdir, out))
        # the soft limit a shell or service manager commonly gives (1,024): the switch
        # must raise its own (switch/transports/nofile.py), as a deployment's would
        switch = start_switch(url, switch_max, workdir / "switch.log",
                              (min(soft, SWITCH_START_SOFT_NOFILE), hard))
        stack.callback(lambda: out(f"switch stopped by PID {switch.pid}: exit "
                                   f"{switch.stop()}"))
        raised = [line for line in switch.log_path.read_text(errors="replace").splitlines()
                  if "open-file limit" in line]
        for line in raised:
            out(f"switch log: {line.strip()}")
        out(f"switch: pid {switch.pid} on 127.0.0.1:{switch.port}, metrics "
            f"{switch.metrics_port}, BPNT_MAX_CONNECTIONS={switch_max}, per-address limit "
            f"default, open-file limit {switch.nofile()} (log {switch.log_path})")
        result.rss_kb["start"] = switch.rss_kb()
        sources = -(-args.connections // args.per_address)
        socks: list[socket.socket] = []

        def close_all() -> None:
            for sock in socks:
                sock.close()

        stack.callback(close_all)
        overflows = listen_overflows()
        t0 = time.monotonic()
        opened, failed = asyncio.run(open_idle(args.connections, args.per_address, switch,
                                               deadline, result.problems))
        socks.extend(opened)
        result.open_s = time.monotonic() - t0
        result.opened, result.failed_connects = len(opened), failed
        last_source = source_address(args.connections - 1, args.per_address)
        out(f"opened {len(opened)} of {args.connections} idle connections from {sources} "
            f"source address(es) (127.0.0.1-{last_source}, at most {args.per_address} "
            f"each) in {result.open_s:.2f} s"
            + (f"; {failed} connects failed" if failed else ""))
        overflows_now = listen_overflows()
        if overflows is not None and overflows_now is not None:
            out(f"listen queue overflows meanwhile (kernel TcpExt ListenOverflows, every "
                f"listener on this machine): {overflows_now - overflows}")
        _in_time(deadline, "before the first check")
        result.before = held(switch, socks, args.connections)
        result.rss_kb["held"] = switch.rss_kb()
        out(f"held before the purchase: {result.before.describe()}")
        if not result.before.all_held(args.connections):
            result.problems.append(f"not all {args.connections} held before the purchase: "
                                   f"{result.before.describe()}")
        _in_time(deadline, "before the purchase")
        one_purchase(switch.port, result, out)
        result.rss_kb["after"] = switch.rss_kb()
        _in_time(deadline, "before the second check")
        result.after = held(switch, socks, args.connections)
        out(f"held after the purchase: {result.after.describe()}")
        if not result.after.all_held(args.connections):
            result.problems.append(f"not all {args.connections} held after the purchase: "
                                   f"{result.after.describe()}")
        if result.purchase_rc != "00":
            result.problems.append(f"purchase answered RC {result.purchase_rc}, not 00")
        elif result.purchase_s is None or result.purchase_s > args.within_s:
            result.problems.append(f"purchase took {result.purchase_s:.3f} s, more than "
                                   f"{args.within_s:g} s")
        rss = result.rss_kb
        per_conn = (rss["held"] - rss["start"]) * 1024 / max(1, result.before.open)
        out(f"switch RSS: {rss['start'] / 1024:.1f} MiB before, {rss['held'] / 1024:.1f} MiB "
            f"with the connections held, {rss['after'] / 1024:.1f} MiB after the purchase "
            f"(about {per_conn / 1024:.1f} KiB per idle connection)")
        if result.problems:
            for line in switch_complaints(switch.log_path):
                out(f"switch log: {line}")
    out(f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; run {time.monotonic() - started:.1f} s")
    for problem in result.problems:
        out(f"problem: {problem}")
    out(f"VERDICT: {result.verdict}: {args.connections} idle connections held before and "
        f"after one purchase RC {result.purchase_rc} in "
        + ("-" if result.purchase_s is None else f"{result.purchase_s * 1000:.1f} ms")
        + f" (must be 00 within {args.within_s:g} s)")
    return result


def switch_complaints(log_path: Path, most: int = 5) -> list[str]:
    """The switch log's distinct WARNING/ERROR lines (without their time), at most
    ``most``, each with how often it came."""
    seen: dict[str, int] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        found = re.search(r"\b(WARNING|ERROR|CRITICAL)\b.*", line)
        if found:
            key = re.sub(r"\d+", "N", found.group(0))[:160]
            seen[key] = seen.get(key, 0) + 1
    return [f"{text} (x{n})" for text, n in list(seen.items())[:most]]


def parse_args(argv: Sequence[str] | None) -> Args:
    from loadtest.bench import PG_BASE_URL

    parser = argparse.ArgumentParser(prog="python -m loadtest.idle_connections",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL", PG_BASE_URL))
    parser.add_argument("--per-address", type=int, default=1000,
                        help="connections from one source address (the switch refuses "
                        "more than BPNT_MAX_CONNECTIONS_PER_ADDRESS, 1,024, from one)")
    parser.add_argument("--switch-max-connections", type=int, default=None,
                        help="the switch's BPNT_MAX_CONNECTIONS (default: the count + "
                        f"{SWITCH_MARGIN}); below the count the check must FAIL")
    parser.add_argument("--within-s", type=float, default=1.0)
    parser.add_argument("--max-total-s", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: a temporary one, removed after)")
    ns = parser.parse_args(argv)
    if ns.connections < 1 or not 1 <= ns.per_address <= 1024 or ns.max_total_s <= 0:
        parser.error("--connections positive, --per-address 1..1024, --max-total-s positive")
    return Args(connections=ns.connections, engine=ns.engine, pg_url=ns.pg_url,
                per_address=ns.per_address, switch_max_connections=ns.switch_max_connections,
                within_s=ns.within_s, max_total_s=ns.max_total_s, out=ns.out)


def _abort(_signum: int, _frame: FrameType | None) -> None:
    raise RunAborted("--max-total-s ran out")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    old = signal.signal(signal.SIGALRM, _abort)
    # the backstop, should a step hang: run() checks its own deadline at every step, and
    # the alarm leaves it time to stop what it started
    signal.alarm(int(args.max_total_s) + BACKSTOP_S)
    try:
        result = run(args)
    except SystemExit as exc:  # the open-file limit: the reason, and no run
        print(f"VERDICT: FAIL: {exc}")
        return 2
    except RunAborted as exc:
        print(f"VERDICT: FAIL: {exc}; everything started was stopped")
        return 2
    except RuntimeError as exc:  # the switch did not start
        print(f"VERDICT: FAIL: {exc}")
        return 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
