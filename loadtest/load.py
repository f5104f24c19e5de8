"""``make load``: Locust EDC users against a real switch, then the money verdict.

    python -m loadtest.load [--duration-s 60] [--kpm 4000] [--terminals 40]
                            [--engine sqlite|postgresql] [--workers N] [--ui]

1. a fresh database with the demo world and this period's allocation (as
   ``make run`` seeds it, with more KPM and terminals): SQLite ``var/load/load.db``,
   or with ``--engine postgresql`` a database ``bpnt_bench_<random>`` on
   ``--pg-url`` (:func:`loadtest.bench.bench_database`), dropped at the end;
2. ``bpnt-switch serve`` as a separate process on a free loopback port, with its
   ``/metrics`` on ``--metrics-port`` (9585, or a free port when that is taken; printed);
3. Locust in its own process (gevent must never meet pytest or asyncio), running
   ``loadtest/locustfile.py``: one user per EDC under the payday-spike shape,
   HTML and CSV reports in ``var/load``; with ``--workers N`` a Locust master and N
   worker processes on loopback, each worker driving its share of the terminals,
   the master aggregating the stats.  Locust is started with ``--autostart`` and
   its web UI on 127.0.0.1 (a free port, printed);
4. without ``--ui`` Locust quits when the shape ends; with ``--ui`` the switch and
   the web UI stay up (re-run the spike from the UI if you like) until SIGINT
   (Ctrl-C) or SIGTERM, or ``--max-runtime-s``; then the test is stopped over the web
   API, the terminals deliver the reversals they owe, and Locust is told to quit;
5. ``/metrics`` scraped once in the middle of the run and once after the users
   stopped, and compared with Locust's request counts per request type
   (:mod:`loadtest.load_metrics`);
6. the switch stopped, then the money invariant checked on the database and the
   approvals the terminals saw matched one for one against ledger debits.

Exit 0 only if Locust ended cleanly (by itself, or on the stop asked for with
``--ui``), at least one purchase was approved, the failures stay within
``--max-failure-pct``, every load process reported its terminals, the switch's
``bpnt_requests_total`` equals Locust's counts at the end (and brackets them in the
middle), the invariant holds and the approvals match.  Every child runs in its own process group (a
Ctrl-C reaches this process only, which stops them in order, by PID; a second
Ctrl-C aborts); every wait has a timeout; nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from loadtest import load_metrics
from loadtest.bench import PG_BASE_URL, bench_database
from switch.admin.demo import build_world, seed_database
from switch.clock import SystemClock
from switch.db.schema import open_database
from switch.ledger.invariants import check_invariants, unreversed_purchases
from switch.ledger.postings import allocate_period
from switch.money import rupiah
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.demo import READY_TIMEOUT_S, free_port, fresh_sqlite, wait_until_listening

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REPO = LOCUSTFILE.parent.parent
#: Locust may wait this long (times the EDC timeout) for users to finish their task
#: at a ramp-down or at the end: a reversal (3 tries) plus a purchase and a logon.
STOP_TIMEOUT_FACTOR = 6
#: Start-up and report writing on top of the shape's duration and the stop timeout.
LOCUST_MARGIN_S = 60.0
#: ``--ui`` runs stay up at most this long by default.
MAX_RUNTIME_S = 2 * 3600.0
SUMMARY = "terminals.json"
POLL_S = 0.2
HTTP_TIMEOUT_S = 5.0
#: POST /stop returns once the test has stopped: the stop timeout, then (master) the
#: workers' tallies (locustfile.TALLY_MARGIN_S) and Locust's own 60 s for workers.
STOP_HTTP_MARGIN_S = 150.0
SUMMARY_TIMEOUT_S = 60.0
QUIT_TIMEOUT_S = 60.0
WORKER_QUIT_TIMEOUT_S = 30.0
TERM_TIMEOUT_S = 15.0
#: The master waits this long for its workers to connect before it gives up.
EXPECT_WORKERS_MAX_WAIT_S = 60


@dataclass(frozen=True)
class Row:
    """One line of Locust's ``*_stats.csv``; times in ms."""

    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def successes(self) -> int:
        return self.requests - self.failures


def read_stats(path: Path) -> list[Row]:
    """The per-request-type rows and the ``Aggregated`` row of a Locust stats CSV."""
    with path.open(newline="") as handle:
        return [Row(name=r["Name"], requests=int(r["Request Count"]),
                    failures=int(r["Failure Count"]), rps=float(r["Requests/s"]),
                    p50_ms=_ms(r["50%"]), p95_ms=_ms(r["95%"]), p99_ms=_ms(r["99%"]),
                    max_ms=_ms(r["Max Response Time"]))
                for r in csv.DictReader(handle)]


def _ms(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


# -- the database and the switch --------------------------------------------------------

@contextmanager
def load_database(args: argparse.Namespace, workdir: Path) -> Iterator[str]:
    """A fresh database URL: SQLite in ``workdir``, or a PostgreSQL database made and
    dropped by the bench's helper (it reads ``engine`` and ``pg_url`` only)."""
    if args.engine == "sqlite":
        yield fresh_sqlite(workdir / "load.db")
        return
    with bench_database(args, workdir) as url:  # type: ignore[arg-type]
        yield url


def seed(db_url: str, kpm: int, terminals: int, out: Callable[[str], None]) -> None:
    settings = load_settings()
    keys = Keyring.from_settings(settings)
    world = build_world(kpm_count=kpm, terminal_count=terminals)
    db = open_database(db_url)
    started = time.monotonic()
    seed_database(db, keys, world)
    period = SystemClock().now().strftime("%Y-%m")
    alloc = allocate_period(db, period, settings.period_amount_sen)
    db.engine.dispose()
    out(f"seeded {len(world.cards)} cards, {terminals} active terminals in "
        f"{time.monotonic() - started:.1f} s; period {period}: {alloc.credited_count} KPM "
        f"credited {rupiah(alloc.total_credited_sen)}")


def start_switch_apart(db_url: str, port: int, log_path: Path,
                       metrics_port: int = 0) -> subprocess.Popen[bytes]:
    """``bpnt-switch serve`` as ``terminal_sim.demo.start_switch`` starts it, but in a
    process group of its own: a Ctrl-C must not stop it before the terminals have
    delivered their last reversals; ``/metrics`` on ``metrics_port`` (0: none)."""
    env = dict(os.environ, BPNT_DATABASE_URL=db_url, BPNT_PORT=str(port),
               BPNT_HOST="127.0.0.1", BPNT_METRICS_PORT=str(metrics_port))
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "switch.cli", "serve"], env=env,
                                stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, process_group=0)
    try:
        wait_until_listening(port, proc, READY_TIMEOUT_S)
    except RuntimeError:
        end_process(proc, TERM_TIMEOUT_S, lambda _line: None, "switch", terminate=True)
        raise
    return proc


def pick_metrics_port(wanted: int) -> tuple[int, str]:
    """``wanted`` if it is free on loopback, else (and for 0) a free port; and a note
    saying why when it is not ``wanted``."""
    if wanted:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the switch's
            try:
                sock.bind(("127.0.0.1", wanted))
                return wanted, ""
            except OSError:
                pass
        return free_port(), f" (port {wanted} is taken)"
    return free_port(), ""


def end_process(proc: subprocess.Popen[bytes], grace_s: float, out: Callable[[str], None],
                name: str, *, terminate: bool = False) -> bool:
    """Give ``proc`` ``grace_s`` to exit (after a SIGTERM when ``terminate``), then
    SIGTERM it, then SIGKILL it; True if it needed no more than it was asked."""
    if terminate and proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=grace_s)
        return True
    except subprocess.TimeoutExpired:
        pass
    if not terminate:
        out(f"{name} (pid {proc.pid}) still running after {grace_s:.0f} s: SIGTERM")
        proc.terminate()
        try:
            proc.wait(timeout=TERM_TIMEOUT_S)
            return False
        except subprocess.TimeoutExpired:
            pass
    out(f"{name} (pid {proc.pid}) did not end on SIGTERM: SIGKILL")
    proc.kill()
    proc.wait(timeout=10)
    return False


# -- Locust ---------------------------------------------------------------------------

@dataclass
class LocustRun:
    """The Locust processes of one run: the master (or lone process) and its workers."""

    master: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    web_url: str
    summary: Path
    logs: list[Path] = field(default_factory=list)

    def pids(self) -> str:
        return ", ".join(str(p.pid) for p in [self.master, *self.workers])


def locust_env(port: int, args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    return dict(os.environ, BPNT_LOAD_KPM=str(args.kpm), BPNT_LOAD_TERMINALS=str(args.terminals),
                BPNT_LOAD_DURATION_S=str(args.duration_s), BPNT_LOAD_TIMEOUT_S=str(args.timeout_s),
                BPNT_LOAD_PORT=str(port), BPNT_LOAD_SUMMARY=str(workdir / SUMMARY),
                BPNT_LOAD_WORKERS=str(max(1, args.workers)), BPNT_LOAD_PARENT_PID=str(os.getpid()))


def master_command(port: int, web_port: int, master_port: int, args: argparse.Namespace,
                   workdir: Path) -> list[str]:
    """The lone Locust process, or the master of ``args.workers`` workers.  Always
    ``--autostart`` with the web UI on loopback (the shape reads its duration from
    ``BPNT_LOAD_DURATION_S``); ``--autoquit 0`` unless ``--ui``.  Not ``--headless``:
    a headless master quits its workers at the end without stopping them first."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
               "--host", f"127.0.0.1:{port}", "--web-host", "127.0.0.1",
               "--web-port", str(web_port), "--autostart",
               "--html", str(workdir / "report.html"), "--csv", str(workdir / "load"),
               "--stop-timeout", str(stop_timeout_s(args)), "--only-summary",
               "--exit-code-on-error", "0"]
    if not args.ui:
        command += ["--autoquit", "0"]
    if args.workers:
        command += ["--master", "--master-bind-host", "127.0.0.1",
                    "--master-bind-port", str(master_port),
                    "--expect-workers", str(args.workers),
                    "--expect-workers-max-wait", str(EXPECT_WORKERS_MAX_WAIT_S)]
    return command


def worker_command(master_port: int) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
            "--master-host", "127.0.0.1", "--master-port", str(master_port)]


def stop_timeout_s(args: argparse.Namespace) -> int:
    return round(STOP_TIMEOUT_FACTOR * float(args.timeout_s))


def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log_file:
        return subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT, process_group=0)


def start_locust(port: int, args: argparse.Namespace, workdir: Path,
                 out: Callable[[str], None]) -> LocustRun:
    env = locust_env(port, args, workdir)
    web_port, master_port = free_port(), free_port()
    logs = [workdir / "locust.log"]
    master = _spawn(master_command(port, web_port, master_port, args, workdir), env, logs[0])
    run = LocustRun(master, [], f"http://127.0.0.1:{web_port}", workdir / SUMMARY, logs)
    for n in range(args.workers):
        logs.append(workdir / f"locust-worker-{n}.log")
        run.workers.append(_spawn(worker_command(master_port), env, logs[-1]))
    shape = "Locust" if not args.workers else f"Locust master + {args.workers} workers"
    out(f"{shape} (pid {run.pids()}): {args.terminals} EDC users at peak, "
        f"{args.duration_s:.0f} s payday spike (logs: {', '.join(str(p) for p in logs)})")
    return run


def http_get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def summary_settled(path: Path) -> bool:
    """No test running as far as the terminals' summary says (or Locust never got as
    far as writing one)."""
    if not path.exists():
        return True
    try:
        return not json.loads(path.read_text())["in_progress"]
    except (ValueError, KeyError):
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def stop_locust(run: LocustRun, args: argparse.Namespace, out: Callable[[str], None]) -> bool:
    """Stop the test over the web API (the terminals deliver what they owe), wait for
    the terminals' final summary, then SIGINT the master (HTML report, a last CSV
    pass) and wait for it, then end the workers; any process that overruns is forced.
    True if every step finished in time."""
    clean = True
    if run.master.poll() is None:
        request = urllib.request.Request(run.web_url + "/stop", data=b"", method="POST")
        try:
            with urllib.request.urlopen(
                    request, timeout=stop_timeout_s(args) + STOP_HTTP_MARGIN_S) as response:
                response.read()
        except OSError as exc:
            out(f"locust: POST /stop failed: {exc}")
            clean = False
        if not wait_until(lambda: summary_settled(run.summary), SUMMARY_TIMEOUT_S):
            out(f"the terminals' summary still says a test is running after "
                f"{SUMMARY_TIMEOUT_S:.0f} s")
            clean = False
        if run.master.poll() is None:
            run.master.send_signal(signal.SIGINT)
    clean &= end_process(run.master, QUIT_TIMEOUT_S, out, "locust master")
    return end_workers(run, out) and clean


def end_workers(run: LocustRun, out: Callable[[str], None]) -> bool:
    """SIGTERM each worker once the master has gone (their tallies are in by then), and
    wait: a worker that was sent "stop" sleeps ``--stop-timeout`` before it reads the
    master's "quit", so it is not left to notice the quit by itself."""
    clean = True
    for n, worker in enumerate(run.workers):
        clean &= end_process(worker, WORKER_QUIT_TIMEOUT_S, out, f"locust worker {n}",
                             terminate=True)
    return clean


Handler = Callable[[int, FrameType | None], Any] | int


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP noted for the supervising loop; a second one aborts
    (``KeyboardInterrupt``: the cleanup still stops every child by PID)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[signal.Signals, Handler] = {}

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            previous = signal.signal(sig, self._note)
            self._previous[sig] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, _type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name


@dataclass(frozen=True)
class Ending:
    """How the supervised run ended: ``exited`` (Locust quit by itself), ``signal``,
    ``deadline``, or ``child`` (the switch or a worker died)."""

    kind: str
    text: str


def supervise(run: LocustRun, switch: subprocess.Popen[bytes], deadline: float,
              signals: StopSignals, mid_run: Callable[[], None] | None = None,
              mid_at: float = math.inf) -> Ending:
    """Wait for the Locust master to exit, or for what comes first: a stop signal,
    the switch or a worker exiting, or the deadline.  ``mid_run()`` once, at ``mid_at``
    (monotonic time)."""
    while True:
        if mid_run is not None and time.monotonic() >= mid_at:
            mid_run()
            mid_run = None
        if signals.received:
            return Ending("signal", f"{signals.received} received")
        if run.master.poll() is not None:
            return Ending("exited", f"Locust exited (code {run.master.returncode})")
        if switch.poll() is not None:
            return Ending("child", f"the switch exited (code {switch.returncode})")
        if any(worker.poll() is not None for worker in run.workers):
            return Ending("child", "a Locust worker exited")
        if time.monotonic() >= deadline:
            return Ending("deadline", "deadline")
        time.sleep(POLL_S)


def drive_locust(port: int, switch: subprocess.Popen[bytes], args: argparse.Namespace,
                 workdir: Path, signals: StopSignals, out: Callable[[str], None],
                 scrapes: load_metrics.Scrapes | None = None) -> list[str]:
    """Run Locust to its end (module docstring, 3 and 4); the problems, if any.  With
    ``scrapes``, the mid-run scrape halfway through the spike."""
    run = start_locust(port, args, workdir, out)
    started = time.monotonic()
    problems: list[str] = []
    try:
        if not wait_until(lambda: run.master.poll() is not None or http_get_ok(run.web_url),
                          READY_TIMEOUT_S):
            problems.append(f"the Locust web UI did not answer within {READY_TIMEOUT_S:.0f} s")
        elif run.master.poll() is None:
            out(f"Locust web UI: {run.web_url} (stats: {run.web_url}/stats/requests)")
        if args.ui:
            out(f"  up until Ctrl-C (SIGINT) or SIGTERM, at most {args.max_runtime_s:.0f} s; "
                "then the run stops and the verdict is printed")
            bound_s = args.max_runtime_s
        else:
            bound_s = args.duration_s + stop_timeout_s(args) + LOCUST_MARGIN_S
        mid_run = None if scrapes is None else functools.partial(
            scrapes.mid_run, run.web_url, started, out)
        ending = supervise(run, switch, time.monotonic() + bound_s, signals, mid_run,
                           started + args.duration_s / 2)
        if ending.kind == "exited":
            if args.ui:
                problems.append("Locust exited before it was asked to stop")
            if not end_workers(run, out):
                problems.append("a Locust worker did not quit")
        else:
            if ending.kind == "deadline":
                text = ("--max-runtime-s reached" if args.ui
                        else f"not finished within {bound_s:.0f} s")
            else:
                text = ending.text
            out(f"stopping Locust: {text}")
            if not (args.ui and ending.kind in ("signal", "deadline")):
                problems.append(f"locust did not complete: {text}")
            if not stop_locust(run, args, out):
                problems.append("locust did not stop cleanly")
        if run.master.returncode:
            problems.append(f"locust exited with code {run.master.returncode}")
    finally:
        for proc in [run.master, *run.workers]:
            if proc.poll() is None:
                end_process(proc, TERM_TIMEOUT_S, out, "locust", terminate=True)
    return problems


# -- the verdict ----------------------------------------------------------------------

def peak_of_history(path: Path) -> tuple[float, int]:
    """(highest req/s, highest user count) of the ``Aggregated`` rows Locust writes to
    ``*_stats_history.csv`` each second (req/s there is a rolling ~10 s window)."""
    if not path.exists():
        return 0.0, 0
    with path.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Name"] == "Aggregated"]
    return (max((float(r["Requests/s"]) for r in rows), default=0.0),
            max((int(r["User Count"]) for r in rows), default=0))


def print_stats(rows: list[Row], out: Callable[[str], None]) -> None:
    out(f"\n  {'request':28} {'count':>7} {'fail':>5} {'req/s':>7} {'p50 ms':>7} "
        f"{'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for r in rows:
        out(f"  {r.name:28} {r.requests:7} {r.failures:5} {r.rps:7.1f} {r.p50_ms:7.0f} "
            f"{r.p95_ms:7.0f} {r.p99_ms:7.0f} {r.max_ms:7.0f}")


def verdict(db_url: str, workdir: Path, run_problems: list[str], max_failure_pct: float,
            out: Callable[[str], None], scrapes: load_metrics.Scrapes | None = None) -> int:
    problems = list(run_problems)
    stats_path = workdir / "load_stats.csv"
    rows = read_stats(stats_path) if stats_path.exists() else []
    total = next((r for r in rows if r.name == "Aggregated"), None)
    print_stats(rows, out)
    purchases = sum(r.successes for r in rows if r.name == "purchase")
    host_errors = sum(r.requests for r in rows if r.name.endswith((" 91", " 96")))
    if total is None or purchases == 0:
        problems.append("no purchase was approved")
    elif total.failures * 100 > max_failure_pct * total.requests:
        problems.append(f"{total.failures} failures in {total.requests} requests "
                        f"(more than {max_failure_pct} %)")
    if total is not None:
        peak_rps, peak_users = peak_of_history(workdir / "load_stats_history.csv")
        out(f"\n  {total.requests} requests, {total.failures} failures, {total.rps:.1f} req/s "
            f"over the run, peak {peak_rps:.1f} req/s with {peak_users} EDCs; "
            f"{purchases} approved purchases; RC 91/96: {host_errors}")
    summary_path = workdir / SUMMARY
    seen = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    approvals = (seen.get("approved_purchases", -1), seen.get("approved_purchase_sen", -1))
    out(f"terminals: {seen.get('reversals_at_end', 0)} reversals still owed at the end "
        f"(delivered then), {seen.get('undelivered_reversals', 0)} undelivered, "
        f"{seen.get('interrupted', 0)} transactions interrupted by a user stop; "
        f"{seen.get('processes_reported', 0)} of {seen.get('processes', 1)} load "
        f"process(es) reported")
    if total is not None and approvals[0] != purchases:
        out(f"  (Locust's stats hold the last test only, {purchases} approved purchases; the "
            f"terminals count every test of the run, {approvals[0]}: a re-run from the UI)")
    if scrapes is not None:
        locust = load_metrics.locust_counts((r.name, r.requests) for r in rows)
        problems += scrapes.report(locust, whole_run=total is not None
                                   and approvals[0] == purchases,
                                   interrupted=int(seen.get("interrupted", 0)), out=out)
    if seen.get("undelivered_reversals", 0):
        problems.append("reversals left undelivered")
    if not seen or seen.get("in_progress") \
            or seen.get("processes_reported", 0) < seen.get("processes", 1):
        problems.append("not every load process reported its terminals at the end")
    db = open_database(db_url, create=False)
    try:
        debits = unreversed_purchases(db)
        matched = debits == approvals
        out(f"ledger: {debits[0]} unreversed purchase debits of {rupiah(debits[1])}; "
            f"terminals saw {approvals[0]} approvals -> {'match' if matched else 'MISMATCH'}")
        if not matched:
            problems.append("approvals seen by the terminals do not match the ledger")
        report = check_invariants(db)
    finally:
        db.engine.dispose()
    out(report.summary())
    if not report.ok:
        problems.append("money invariant broken")
    logs = ", ".join(str(p) for p in sorted(workdir.glob("*.log")))
    out(f"\nreports: {workdir / 'report.html'}, {stats_path} (and load_failures.csv, "
        f"load_stats_history.csv), logs: {logs}")
    out("VERDICT: " + ("load run passed, money invariant holds" if not problems
                       else "FAILED: " + "; ".join(problems)))
    return 0 if not problems else 1


# -- the run --------------------------------------------------------------------------

STALE = ("load_stats.csv", "load_failures.csv", "load_exceptions.csv", "load_stats_history.csv",
         "report.html", SUMMARY, "terminals.tmp")


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in STALE:
        (workdir / stale).unlink(missing_ok=True)
    with StopSignals() as signals, load_database(args, workdir) as db_url:
        where = db_url if args.engine == "sqlite" else db_url.rsplit("/", 1)[-1]
        out(f"database: {args.engine} ({where})")
        seed(db_url, args.kpm, args.terminals, out)
        port = free_port()
        metrics_port, why = pick_metrics_port(args.metrics_port)
        switch = start_switch_apart(db_url, port, workdir / "switch.log", metrics_port)
        out(f"switch pid {switch.pid} on 127.0.0.1:{port} (log: {workdir / 'switch.log'})")
        scrapes = load_metrics.Scrapes(f"http://127.0.0.1:{metrics_port}/metrics",
                                       args.terminals, args.workers)
        out(f"switch metrics: {scrapes.metrics_url}{why}")
        try:
            problems = drive_locust(port, switch, args, workdir, signals, out, scrapes)
            scrapes.at_end()
        finally:
            end_process(switch, TERM_TIMEOUT_S, out, "switch", terminate=True)
        return verdict(db_url, workdir, problems, args.max_failure_pct, out, scrapes)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float,
                        default=_env_float("BPNT_LOAD_DURATION_S", 60.0),
                        help="the payday spike's length")
    parser.add_argument("--kpm", type=int, default=int(_env_float("BPNT_LOAD_KPM", 4000)))
    parser.add_argument("--terminals", type=int,
                        default=int(_env_float("BPNT_LOAD_TERMINALS", 40)))
    parser.add_argument("--timeout-s", type=float, default=_env_float("BPNT_LOAD_TIMEOUT_S", 10),
                        help="the EDC's response timeout (HOST_SPEC §5 default is 30 s)")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL", PG_BASE_URL),
                        help="PostgreSQL server URL without database name")
    parser.add_argument("--workers", type=int, default=0,
                        help="Locust worker processes under a master (0: one Locust process)")
    parser.add_argument("--ui", action="store_true",
                        help="keep the switch and Locust's web UI up until Ctrl-C / SIGTERM")
    parser.add_argument("--max-runtime-s", type=float, default=MAX_RUNTIME_S,
                        help="--ui: stop by itself after this long")
    parser.add_argument("--max-failure-pct", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=Path("var/load"))
    parser.add_argument("--metrics-port", type=int, default=9585,
                        help="the switch's /metrics port (a free one when it is taken; 0: "
                             "a free one)")
    args = parser.parse_args(argv)
    if args.duration_s <= 0 or args.kpm < 1 or args.terminals < 1 or args.max_runtime_s <= 0:
        parser.error("duration, kpm, terminals and max runtime must be > 0")
    if not 0 <= args.workers <= args.terminals:
        parser.error("--workers must be between 0 and --terminals (each drives its terminals)")
    args.pg_url = args.pg_url.rstrip("/")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args, out=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("load run ABORTED (second stop signal); its processes were stopped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
