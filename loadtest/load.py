"""``make load``: Locust EDC users against a real switch, then the money verdict.

    python -m loadtest.load [--duration-s 60] [--kpm 4000] [--terminals 40]

1. a fresh SQLite database with the demo world and this period's allocation
   (as ``make run`` seeds it, with more KPM and terminals);
2. ``bpnt-switch serve`` as a separate process on a free loopback port;
3. Locust, headless, in its own process (gevent must never meet pytest or
   asyncio), running ``loadtest/locustfile.py``: one user per EDC under the
   payday-spike shape, bounded in time, HTML and CSV reports in ``var/load``;
4. the switch stopped, then the money invariant checked on the database and the
   approvals the terminals saw matched one for one against ledger debits.

Exit 0 only if Locust finished in time, at least one purchase was approved, the
failures stay within ``--max-failure-pct``, the invariant holds and the approvals
match.  Every wait has a timeout; nothing listens beyond loopback.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from switch.admin.demo import build_world, seed_database
from switch.clock import SystemClock
from switch.db.schema import open_database
from switch.ledger.invariants import check_invariants, unreversed_purchases
from switch.ledger.postings import allocate_period
from switch.money import rupiah
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.demo import free_port, fresh_sqlite, start_switch, stop_switch

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
REPO = LOCUSTFILE.parent.parent
#: Locust may wait this long (times the EDC timeout) for users to finish their task
#: at a ramp-down or at the end: a reversal (3 tries) plus a purchase and a logon.
STOP_TIMEOUT_FACTOR = 6
#: Start-up and report writing on top of the shape's duration and the stop timeout.
LOCUST_MARGIN_S = 60.0


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


def seed(db_url: str, kpm: int, terminals: int, out: Callable[[str], None]) -> None:
    settings = load_settings()
    keys = Keyring.from_settings(settings)
    world = build_world(kpm_count=kpm, terminal_count=terminals)
    db = open_database(db_url)
    started = time.monotonic()
    seed_database(db, keys, world)
    period = SystemClock().now().strftime("%Y-%m")
    alloc = allocate_period(db, period, settings.period_amount_sen)
    out(f"seeded {len(world.cards)} cards, {terminals} active terminals in "
        f"{time.monotonic() - started:.1f} s; period {period}: {alloc.credited_count} KPM "
        f"credited {rupiah(alloc.total_credited_sen)}")


def run_locust(port: int, args: argparse.Namespace, workdir: Path,
               out: Callable[[str], None]) -> bool:
    """Locust headless in its own process; False if it failed or overran its bound."""
    stop_timeout_s = round(STOP_TIMEOUT_FACTOR * args.timeout_s)
    env = dict(os.environ, BPNT_LOAD_KPM=str(args.kpm), BPNT_LOAD_TERMINALS=str(args.terminals),
               BPNT_LOAD_DURATION_S=str(args.duration_s), BPNT_LOAD_TIMEOUT_S=str(args.timeout_s),
               BPNT_LOAD_PORT=str(port), BPNT_LOAD_SUMMARY=str(workdir / "terminals.json"))
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
               "--host", f"127.0.0.1:{port}", "--html", str(workdir / "report.html"),
               "--csv", str(workdir / "load"), "--run-time", f"{round(args.duration_s)}s",
               "--stop-timeout", str(stop_timeout_s), "--only-summary",
               "--exit-code-on-error", "0"]
    bound_s = args.duration_s + stop_timeout_s + LOCUST_MARGIN_S
    out(f"locust: {args.terminals} EDC users at peak, {args.duration_s:.0f} s payday spike "
        f"(log: {workdir / 'locust.log'})")
    with (workdir / "locust.log").open("wb") as log_file:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=bound_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            out(f"locust did not finish within {bound_s:.0f} s: killed")
            return False
    if code != 0:
        out(f"locust exited with code {code}")
    return code == 0


def unreversed_purchase_debits(db_url: str) -> tuple[int, int]:
    """(count, sen) of purchase debits in the ledger that no reversal undid."""
    return unreversed_purchases(open_database(db_url, create=False))


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


def verdict(db_url: str, workdir: Path, locust_ok: bool, max_failure_pct: float,
            out: Callable[[str], None]) -> int:
    problems = [] if locust_ok else ["locust did not complete"]
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
    summary_path = workdir / "terminals.json"
    seen = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    approvals = (seen.get("approved_purchases", -1), seen.get("approved_purchase_sen", -1))
    out(f"terminals: {seen.get('reversals_at_end', 0)} reversals still owed at the end "
        f"(delivered then), {seen.get('undelivered_reversals', 0)} undelivered, "
        f"{seen.get('interrupted', 0)} transactions interrupted by a user stop")
    if seen.get("undelivered_reversals", 0):
        problems.append("reversals left undelivered")
    debits = unreversed_purchase_debits(db_url)
    matched = debits == approvals
    out(f"ledger: {debits[0]} unreversed purchase debits of {rupiah(debits[1])}; terminals saw "
        f"{approvals[0]} approvals -> {'match' if matched else 'MISMATCH'}")
    if not matched:
        problems.append("approvals seen by the terminals do not match the ledger")
    report = check_invariants(open_database(db_url, create=False))
    out(report.summary())
    if not report.ok:
        problems.append("money invariant broken")
    out(f"\nreports: {workdir / 'report.html'}, {stats_path} (and load_failures.csv, "
        f"load_stats_history.csv), logs: {workdir / 'locust.log'}, {workdir / 'switch.log'}")
    out("VERDICT: " + ("load run passed, money invariant holds" if not problems
                       else "FAILED: " + "; ".join(problems)))
    return 0 if not problems else 1


def run(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("load_stats.csv", "load_failures.csv", "load_exceptions.csv",
                  "load_stats_history.csv", "report.html", "terminals.json"):
        (workdir / stale).unlink(missing_ok=True)
    db_url = fresh_sqlite(workdir / "load.db")
    seed(db_url, args.kpm, args.terminals, out)
    port = free_port()
    proc = start_switch(db_url, port, workdir / "switch.log")
    out(f"switch pid {proc.pid} on 127.0.0.1:{port} (log: {workdir / 'switch.log'})")
    try:
        locust_ok = run_locust(port, args, workdir, out)
    finally:
        stop_switch(proc)
    return verdict(db_url, workdir, locust_ok, args.max_failure_pct, out)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float,
                        default=_env_float("BPNT_LOAD_DURATION_S", 60.0))
    parser.add_argument("--kpm", type=int, default=int(_env_float("BPNT_LOAD_KPM", 4000)))
    parser.add_argument("--terminals", type=int,
                        default=int(_env_float("BPNT_LOAD_TERMINALS", 40)))
    parser.add_argument("--timeout-s", type=float, default=_env_float("BPNT_LOAD_TIMEOUT_S", 10),
                        help="the EDC's response timeout (HOST_SPEC §5 default is 30 s)")
    parser.add_argument("--max-failure-pct", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=Path("var/load"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
