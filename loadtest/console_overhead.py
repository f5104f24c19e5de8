"""Does the console slow the switch?  The issue-16 acceptance line: "the console
reading a PostgreSQL database under a 1,000/s bench point does not lower the switch's
throughput by more than 5 %".

    python -m loadtest.console_overhead [--rate 1000 --duration-s 30 --switches 2]

One fresh PostgreSQL database and one set of switch processes (``loadtest.bench``'s
seed, terminals, cards and open-loop generator: the bench's own 1,000/s point), then,
one after the other on the same machine:

1. open loop at ``--rate`` for ``--duration-s``: **without** the console;
2. the same **with** the console (``bpnt-switch console``, its own process, polling
   the database and scraping every switch's ``/metrics`` every 2 s) and
   ``--sse-clients`` real HTTP clients (another process) logged in and reading
   ``/events/dashboard``;
3. the same **without** again (so a drift of the machine shows);
4. closed loop (``--peak-connections`` connections, each sending its next purchase as
   soon as the last is answered) for ``--peak-s``: without, with, without, and that
   ``--peak-rounds`` times.  At 1,000/s offered the throughput may not move even where
   latency does; the peak shows what the console costs in capacity.  One round is not
   enough on a shared 2-core machine: the two "without" points of one round have
   differed by 10 % and more, so each round gives its own ratio and the verdict is
   their median.

It reports approved/s, p50 and p99 for each, and the ratio with / mean(without).  The
whole run is bounded by ``--max-total-s``; every process it started is stopped by its
PID; the database is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from loadtest import bench
from loadtest.bench_load import _open_all, cpu_seconds, reduce, run_point
from switch.clock import SystemClock
from switch.db.schema import open_database
from switch.ledger.invariants import check_invariants
from switch.protocol.unit import decode_unit
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.demo import free_port, start_switch, stop_switch

CONSOLE_READY_TIMEOUT_S = 30.0
SSE_READY_TIMEOUT_S = 30.0
PEAK_UNITS_PER_S = 3500
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SSE_PASSWORD_ENV = "BPNT_OVERHEAD_SSE_PASSWORD"


@dataclass
class Figures:
    label: str
    approved_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    switch_cpu_pct: float = 0.0
    console_cpu_pct: float | None = None
    events: int | None = None
    #: with the console: whether its last polls had scraped every switch's /metrics
    scraped: bool | None = None

    def line(self) -> str:
        extra = f"; switches CPU {self.switch_cpu_pct:.0f} %"
        if self.console_cpu_pct is not None:
            extra = f"; console CPU {self.console_cpu_pct:.0f} % of a core"
        if self.events is not None:
            extra += f"; {self.events} SSE events read"
        if self.scraped is not None:
            extra += "; switches' /metrics scraped" if self.scraped else \
                "; switches' /metrics NOT scraped"
        return (f"  {self.label:<28} {self.approved_per_s:8.1f} approved/s  p50 "
                f"{self.p50_ms:7.1f} ms  p99 {self.p99_ms:7.1f} ms  errors {self.errors}{extra}")


# -- the SSE clients (a process of their own: ``sse-clients``) --------------------------

def _log_in(client: object, username: str, password: str) -> None:
    import httpx

    assert isinstance(client, httpx.Client)
    page = client.get("/login")
    match = CSRF.search(page.text)
    if match is None:
        raise RuntimeError("no CSRF token on the login page")
    answer = client.post("/login", data={"csrf": match.group(1), "username": username,
                                         "password": password}, follow_redirects=False)
    if answer.status_code != 303:
        raise RuntimeError(f"login refused: {answer.status_code}")


def sse_clients(url: str, username: str, password: str, count: int) -> int:
    """``count`` logged-in clients reading the dashboard's stream until SIGTERM; prints
    the snapshot events each read (JSON) and exits."""
    import httpx

    stop = threading.Event()
    events = [0] * count
    scraped = [False] * count

    def read(index: int) -> None:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            _log_in(client, username, password)
            with client.stream("GET", "/events/dashboard") as stream:
                snapshot_next = False
                for line in stream.iter_lines():
                    if line.startswith("event: snapshot"):
                        events[index] += 1
                        snapshot_next = True
                    elif snapshot_next and line.startswith("data: "):
                        # whether the console's last poll scraped the switches
                        switch = json.loads(line[len("data: "):]).get("switch") or {}
                        scraped[index] = bool(switch.get("available"))
                        snapshot_next = False
                    if stop.is_set():
                        return

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    while not stop.is_set() and any(t.is_alive() for t in threads):
        stop.wait(0.2)
    for thread in threads:
        thread.join(timeout=10)
    print(json.dumps({"events": events, "scraped": all(scraped)}), flush=True)
    return 0


# -- the console ------------------------------------------------------------------------

class Console:
    """``bpnt-switch console`` over the bench database, and the SSE clients."""

    def __init__(self, url: str, login: tuple[str, str], clients: int, log: Path,
                 metrics_ports: list[int]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # It scrapes the switches' /metrics as in production (that costs them too).
        scraped = json.dumps([f"http://127.0.0.1:{p}/metrics" for p in metrics_ports])
        env = dict(os.environ, BPNT_DATABASE_URL=url, BPNT_CONSOLE_PORT=str(self.port),
                   BPNT_CONSOLE_SWITCH_METRICS_URLS=scraped)
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "switch.cli", "console"],
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
        self._wait(lambda: self._get("/login") == 200, CONSOLE_READY_TIMEOUT_S,
                   "the console did not answer")
        self.clients: subprocess.Popen[str] | None = None
        #: the clients' last snapshots said the switches' /metrics were scraped
        self.scraped = False
        if clients:
            self.clients = subprocess.Popen(
                [sys.executable, "-m", "loadtest.console_overhead", "sse-clients",
                 "--url", self.base, "--username", login[0], "--clients", str(clients)],
                env=dict(os.environ, **{SSE_PASSWORD_ENV: login[1]}), stdout=subprocess.PIPE,
                text=True)
            self._wait(lambda: self.sse_connected() == clients, SSE_READY_TIMEOUT_S,
                       f"{clients} SSE clients did not connect")

    def _get(self, path: str) -> int | None:
        import httpx

        try:
            return httpx.get(self.base + path, timeout=2.0).status_code
        except httpx.HTTPError:
            return None

    def sse_connected(self) -> int:
        import httpx

        try:
            text = httpx.get(self.base + "/metrics", timeout=2.0).text
        except httpx.HTTPError:
            return -1
        found = re.search(r"^bpnt_console_sse_clients (\S+)$", text, re.M)
        return int(float(found.group(1))) if found else -1

    def _wait(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(what)
            time.sleep(0.2)

    def stop(self) -> int | None:
        """Stop the clients and the console (by PID); the events the clients read."""
        events = None
        if self.clients is not None:
            self.clients.send_signal(signal.SIGTERM)
            try:
                out, _ = self.clients.communicate(timeout=20)
                read = json.loads(out.strip().splitlines()[-1])
                events = sum(read["events"])
                self.scraped = bool(read["scraped"])
            except (subprocess.TimeoutExpired, ValueError, IndexError, KeyError):
                self.clients.kill()
                self.clients.wait(timeout=5)
            self.clients = None
        stop_switch(self.proc)  # terminate, then kill after 15 s
        return events


# -- closed loop ------------------------------------------------------------------------

async def closed_loop(units: list[bytes], ports: list[int], connections: int,
                      seconds: float) -> tuple[int, float, list[float], int]:
    """Each connection sends its next unit when the last is answered, for
    ``seconds``: (approved, elapsed s, latencies ms, errors)."""
    loop = asyncio.get_running_loop()
    conns = await _open_all(ports, connections)
    queue = iter(units)
    approved = errors = 0
    latencies: list[float] = []
    deadline = loop.time() + seconds
    started = loop.time()

    async def worker(conn: object) -> None:
        nonlocal approved, errors
        while loop.time() < deadline:
            unit = next(queue, None)
            if unit is None:
                return
            sent = loop.time()
            try:
                answer = await asyncio.wait_for(conn.exchange(unit), 30.0)  # type: ignore[attr-defined]
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                errors += 1
                return
            latencies.append((loop.time() - sent) * 1e3)
            approved += decode_unit(answer).message.opt_text(39) == "00"

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = loop.time() - started
    for conn in conns:
        conn.close()
    return approved, elapsed, latencies, errors


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


# -- the run ----------------------------------------------------------------------------

class Aborted(BaseException):
    pass


def _abort(_signum: int, _frame: FrameType | None) -> None:
    raise Aborted("--max-total-s ran out")


def run(ns: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    args = bench.Args("postgresql", ns.kpm, ns.terminals, ns.switches, [ns.rate],
                      ns.duration_s, ns.connections, 30.0, 200, False, 0,
                      ns.pg_url.rstrip("/"), Path(ns.out), 0.0, 0.0, ns.max_total_s)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / f"overhead-{secrets.token_hex(3)}"
    workdir.mkdir(parents=True)
    keys = Keyring.from_settings(load_settings())
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if line.startswith("Model name")), "?")
    out(f"console overhead: PostgreSQL, {ns.switches} switch process(es), {ns.rate:g}/s x "
        f"{ns.duration_s:g} s open loop, {ns.peak_connections} connections x {ns.peak_s:g} s "
        f"closed loop, {ns.sse_clients} SSE clients; {os.cpu_count()} CPU ({cpu})")
    procs: list[subprocess.Popen[bytes]] = []
    console: Console | None = None
    figures: list[Figures] = []
    try:
        with bench.bench_database(args, workdir) as url:
            cards = bench.seed(url, args, workdir, out)
            from console.seed import seed_demo_users

            db = open_database(url, create=False)
            logins = {role: (name, password) for name, role, password
                      in seed_demo_users(db, keys, SystemClock())}
            db.dispose()
            ports = [free_port() for _ in range(ns.switches)]
            metrics_ports = [free_port() for _ in range(ns.switches)]
            for n, (port, metrics_port) in enumerate(zip(ports, metrics_ports, strict=True)):
                procs.append(start_switch(url, port, workdir / f"switch-{n}.log",
                                          {"BPNT_METRICS_PORT": str(metrics_port)}))
            pids = [p.pid for p in procs]
            edcs = bench.logged_on_edcs(args, ports)
            open_units = round(ns.rate * ns.duration_s)
            peak_units = round(PEAK_UNITS_PER_S * ns.peak_s)
            counts = [200, *[open_units] * 3, *[peak_units] * (3 * ns.peak_rounds)]
            built = time.perf_counter()
            batches = bench.build_requests(edcs, cards, keys.imk_ac, counts)
            out(f"built {sum(counts)} purchases in {time.perf_counter() - built:.1f} s "
                "(not measured)")
            asyncio.run(run_point(batches[0], 50.0, ports, 64, 30.0))
            bench.drain(edcs, ports)

            def open_point(label: str, units: list[bytes], with_console: bool) -> None:
                nonlocal console
                if with_console:
                    console = Console(url, logins["operator"], ns.sse_clients,
                                      workdir / "console.log", metrics_ports)
                cpu0 = cpu_seconds([console.proc.pid]) if console else 0.0
                switch0 = cpu_seconds(pids)
                outcomes, start, _ = asyncio.run(run_point(units, ns.rate, ports,
                                                           ns.connections, 30.0))
                stats = reduce(outcomes, ns.rate, ns.duration_s, start)
                switch_used = cpu_seconds(pids) - switch0
                used = cpu_seconds([console.proc.pid]) - cpu0 if console else None
                events = console.stop() if console else None
                scraped = console.scraped if console else None
                console = None
                figures.append(Figures(label, stats.approved_per_s, stats.p50_ms,
                                       stats.p99_ms, sum(stats.errors.values()),
                                       100 * switch_used / stats.wall_s,
                                       None if used is None else 100 * used / stats.wall_s,
                                       events, scraped))
                out(figures[-1].line())
                bench.drain(edcs, ports)

            def peak_point(label: str, units: list[bytes], with_console: bool) -> None:
                nonlocal console
                if with_console:
                    console = Console(url, logins["operator"], ns.sse_clients,
                                      workdir / "console.log", metrics_ports)
                cpu0 = cpu_seconds([console.proc.pid]) if console else 0.0
                switch0 = cpu_seconds(pids)
                approved, elapsed, latencies, errors = asyncio.run(
                    closed_loop(units, ports, ns.peak_connections, ns.peak_s))
                switch_used = cpu_seconds(pids) - switch0
                used = cpu_seconds([console.proc.pid]) - cpu0 if console else None
                events = console.stop() if console else None
                scraped = console.scraped if console else None
                console = None
                figures.append(Figures(label, approved / elapsed, _pct(latencies, 0.5),
                                       _pct(latencies, 0.99), errors,
                                       100 * switch_used / elapsed,
                                       None if used is None else 100 * used / elapsed,
                                       events, scraped))
                out(figures[-1].line())
                bench.drain(edcs, ports)

            out(f"open loop at {ns.rate:g}/s offered:")
            open_point("without console", batches[1], False)
            open_point(f"with console + {ns.sse_clients} SSE", batches[2], True)
            open_point("without console (again)", batches[3], False)
            for round_no in range(ns.peak_rounds):
                out(f"closed loop, {ns.peak_connections} connections, round "
                    f"{round_no + 1} of {ns.peak_rounds}:")
                first = 4 + 3 * round_no
                peak_point("without console", batches[first], False)
                peak_point(f"with console + {ns.sse_clients} SSE", batches[first + 1], True)
                peak_point("without console (again)", batches[first + 2], False)
            for proc in procs:
                stop_switch(proc)
            procs.clear()
            report = check_invariants(open_database(url, create=False))
            out(f"money invariant: {'holds' if report.ok else 'BROKEN'}")
    finally:
        if console is not None:
            console.stop()
        for proc in procs:
            stop_switch(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    peak_ratios = []
    triples = [("open loop", figures[:3])] + [
        (f"closed loop, round {n + 1}", figures[3 + 3 * n:6 + 3 * n])
        for n in range(ns.peak_rounds)]
    for name, part in triples:
        ratio = with_ratio(part)
        if name != "open loop":
            peak_ratios.append(ratio)
        out(f"{name}: with / mean(without) = {ratio:.3f} approved/s "
            f"({100 * (ratio - 1):+.1f} %); p99 {part[1].p99_ms:.1f} ms with vs "
            f"{part[0].p99_ms:.1f} / {part[2].p99_ms:.1f} ms without")
    if peak_ratios:
        out(f"closed loop, median of {len(peak_ratios)} rounds: "
            f"{statistics.median(peak_ratios):.3f}")
    return 0 if report.ok else 1


def with_ratio(triple: list[Figures]) -> float:
    """A without / with / without triple's ratio: with ÷ mean(without)."""
    base = statistics.mean([triple[0].approved_per_s, triple[2].approved_per_s])
    return triple[1].approved_per_s / base if base else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.console_overhead",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    clients = sub.add_parser("sse-clients", help="(internal) the SSE readers")
    clients.add_argument("--url", required=True)
    clients.add_argument("--username", required=True)
    clients.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--switches", type=int, default=2)
    parser.add_argument("--kpm", type=int, default=12_000)  # 3 peak rounds need 10,130
    parser.add_argument("--terminals", type=int, default=32)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--sse-clients", type=int, default=5)
    parser.add_argument("--peak-s", type=float, default=10.0)
    parser.add_argument("--peak-connections", type=int, default=64)
    parser.add_argument("--peak-rounds", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL",
                                                           bench.PG_BASE_URL))
    parser.add_argument("--out", default=str(bench.OUT_DIR))
    parser.add_argument("--max-total-s", type=float, default=600.0)
    ns = parser.parse_args(argv)
    if ns.command == "sse-clients":
        return sse_clients(ns.url, ns.username, os.environ[SSE_PASSWORD_ENV], ns.clients)
    signal.signal(signal.SIGALRM, _abort)
    signal.alarm(max(1, int(ns.max_total_s)))
    try:
        return run(ns)
    except Aborted as exc:
        print(f"console overhead ABORTED: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
