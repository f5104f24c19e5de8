"""``make run``: a switch on SQLite, a fleet of EDCs, every decline, the verdict.

1. a fresh SQLite database with the demo world (KPM, cards, e-warongs,
   terminals) and this period's allocation;
2. ``bpnt-switch serve`` as a real separate process on a free loopback port;
3. a fleet of simulated EDCs doing some hundreds of purchases and inquiries;
4. the named scenarios (each decline, duplicates, timeout-then-reversal, void,
   settlement, settlement-mismatch); then the programme-rule scenarios (dormant card,
   velocity, off-hours, zoning, over-price, out-of-stock) on a second switch process
   with its own fresh demo database and every rule declining
   (terminal_sim/rule_scenarios.py: RULES_SWITCH_MODES), so the fleet's hundreds of
   purchases are not declined by velocity;
5. the day's end: every EDC settles (one after a void, one through 95 and batch
   upload), the slips printed (terminal_sim/day_end.py);
6. the switches stopped, then the money invariant checked on each database, the
   terminals' approvals and voids matched one for one against ledger transfers, stock
   conservation (terminal_sim/stock_check.py), every closed batch's settled totals
   against the ledger, and the reconciliation summary.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from switch.admin.demo import build_world, seed_database
from switch.clock import WIB, SystemClock
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.ledger.invariants import (
    check_invariants,
    check_settlements,
    standing_voids,
    unreversed_purchases,
)
from switch.ledger.postings import AllocationResult, allocate_period
from switch.money import rupiah
from switch.protocol.codes import RESPONSE_CODES, display_for
from switch.reports.reconciliation import reconciliation, summary_lines
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.day_end import DayEnd, close_the_day
from terminal_sim.fleet import FleetReport, run_fleet
from terminal_sim.rule_scenarios import RULE_SCENARIOS, RULES_SWITCH_MODES, RuleScenarios
from terminal_sim.scenarios import SCENARIOS, Scenarios, Step
from terminal_sim.stock_check import stock_problems
from terminal_sim.world import SimWorld

READY_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Readiness probe: connect until the switch accepts, or fail with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"switch exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"switch not listening on port {port} after {timeout_s} s")


def start_switch(db_url: str, port: int, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``bpnt-switch serve`` as a separate process on loopback, once it accepts.
    Without ``/metrics`` (``BPNT_METRICS_PORT=0``) unless ``extra_env`` gives it a port:
    launchers start several switches on one machine."""
    env = {**os.environ, "BPNT_DATABASE_URL": db_url, "BPNT_PORT": str(port),
           "BPNT_HOST": "127.0.0.1", "BPNT_METRICS_PORT": "0", **(extra_env or {})}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "switch.cli", "serve"], env=env,
                                stdout=log_file, stderr=subprocess.STDOUT)
    wait_until_listening(port, proc, READY_TIMEOUT_S)
    return proc


def stop_switch(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def fresh_sqlite(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


#: The rule scenarios' world: enough spare cards for all six (velocity takes six).
RULES_KPM = 40


def run_demo(*, transactions: int = 400, kpm: int = 200, workdir: Path = Path("var"),
             out: Callable[[str], None] = print) -> int:
    settings = load_settings()
    keys = Keyring.from_settings(settings)
    db_url = fresh_sqlite(workdir / "demo.db")
    world = build_world(kpm_count=kpm)
    db = open_database(db_url)
    seed_database(db, keys, world)
    period = SystemClock().now().strftime("%Y-%m")
    alloc = allocate_period(db, period, settings.period_amount_sen)
    out(f"seeded {len(world.cards)} cards, {len(world.terminals)} terminals; "
        f"period {period}: {alloc.credited_count} KPM credited {display_amount(alloc)}")
    rules_url = fresh_sqlite(workdir / "rules.db")
    rules_world = build_world(kpm_count=RULES_KPM)
    rules_db = open_database(rules_url)
    seed_database(rules_db, keys, rules_world)
    allocate_period(rules_db, period, settings.period_amount_sen)
    port, rules_port = free_port(), free_port()
    proc = start_switch(db_url, port, workdir / "switch.log")
    out(f"switch pid {proc.pid} on 127.0.0.1:{port} (log: {workdir / 'switch.log'})")
    rules_proc: subprocess.Popen[bytes] | None = None
    sim = SimWorld(world, keys.imk_ac, "127.0.0.1", port, timeout_s=10.0)
    rules_sim = SimWorld(rules_world, keys.imk_ac, "127.0.0.1", rules_port, timeout_s=10.0)
    try:
        rules_proc = start_switch(rules_url, rules_port, workdir / "rules-switch.log",
                                  RULES_SWITCH_MODES.env())
        started = time.monotonic()
        fleet = run_fleet(sim, transactions=transactions)
        elapsed_s = time.monotonic() - started
        out(f"\nfleet: {len(fleet.results)} transactions on "
            f"{sum(1 for t in world.terminals if t.label == 'ok')} terminals in {elapsed_s:.1f} s")
        scenario_steps = run_scenarios(sim, out)
        out(f"\nrule scenarios: a second switch, pid {rules_proc.pid} on 127.0.0.1:{rules_port}, "
            f"its own demo database {workdir / 'rules.db'} "
            f"(log: {workdir / 'rules-switch.log'}), with {RULES_SWITCH_MODES.describe()}")
        rule_steps = run_rule_scenarios(rules_sim, rules_db, keys, out)
        day = close_the_day(sim, out)
    finally:
        sim.close()
        rules_sim.close()
        stop_switch(proc)
        if rules_proc is not None:
            stop_switch(rules_proc)
    approvals = approved_purchases(fleet, scenario_steps)
    code = verdict(db_url, fleet, scenario_steps, approvals, out)
    code = max(code, rules_verdict(rules_url, rule_steps, out))
    return day_end_verdict(db_url, day, scenario_steps, out) if code == 0 else code


def run_rule_scenarios(sim: SimWorld, db: Database, keys: Keyring,
                       out: Callable[[str], None]) -> dict[str, list[Step]]:
    """The six rule scenarios, each step with its EDC screen or after-state."""
    runner = RuleScenarios(sim, db, keys, RULES_SWITCH_MODES)
    results: dict[str, list[Step]] = {}
    for name, scenario in RULE_SCENARIOS.items():
        steps = scenario(runner)
        results[name] = steps
        for step in steps:
            mark = "ok " if step.ok else "FAIL"
            out(f"  [{mark}] {name:12} {step.what:52} expected {step.expected:4} "
                f"got {step.got:4} | {step.display}")
    return results


def rules_verdict(db_url: str, steps: dict[str, list[Step]],
                  out: Callable[[str], None]) -> int:
    """The rules switch's database: money invariant, the approvals the EDCs saw are its
    unreversed debits, stock conserved, and every rule step as expected."""
    db = open_database(db_url, create=False)
    report = check_invariants(db)
    count, total = unreversed_purchases(db)
    seen = [s.approved_purchase_sen for ss in steps.values() for s in ss
            if s.approved_purchase_sen]
    matched = (count, total) == (len(seen), sum(seen))
    rows, stock = stock_problems(db)
    failed = [f"{name}: {s.what}" for name, ss in steps.items() for s in ss if not s.ok]
    out(f"\nrules switch: {count} unreversed purchase debits of {rupiah(total)}; the EDCs saw "
        f"{len(seen)} approvals of {rupiah(sum(seen))} -> {'match' if matched else 'MISMATCH'}; "
        f"stock conserved on {rows - len(stock)} of {rows} rows; "
        f"invariant {'holds' if report.ok else 'BROKEN'}")
    for problem in stock:
        out(f"  STOCK NOT CONSERVED: {problem}")
    if not report.ok:
        out(report.summary())
    if failed:
        out("rule scenario steps that failed: " + "; ".join(failed))
    ok = report.ok and matched and not stock and not failed
    out(f"RULES VERDICT: {'every rule as set, money and stock invariant hold' if ok else 'FAILED'}")
    return 0 if ok else 1


def day_end_verdict(db_url: str, day: DayEnd, steps: dict[str, list[Step]],
                    out: Callable[[str], None]) -> int:
    """Every EDC settled; every closed batch's totals are the ledger's (HOST_SPEC §4);
    the voids the EDCs saw approved are the ledger's standing voids."""
    db = open_database(db_url, create=False)
    problems = check_settlements(db)
    voids_seen = [s.approved_void_sen for ss in steps.values() for s in ss
                  if s.approved_void_sen]
    if day.approved_void_sen:
        voids_seen.append(day.approved_void_sen)
    standing = standing_voids(db)
    out(f"\nday end: {len(day.settlements)} terminals settled "
        f"({sum(s.uploaded for s in day.settlements.values())} through batch upload); "
        f"ledger: {standing[0]} standing voids of {rupiah(standing[1])}, the EDCs saw "
        f"{len(voids_seen)} of {rupiah(sum(voids_seen))}")
    today = SystemClock().now().astimezone(WIB).date()  # the report's days are WIB days
    report = reconciliation(db, today)
    out(f"  reconciliation (in full: bpnt-switch report reconciliation --date {today}):")
    for line in summary_lines(report):
        out(f"    {line}")
    ok = (day.ok and not problems and report.ok
          and standing == (len(voids_seen), sum(voids_seen)))
    for problem in problems:
        out(f"  SETTLEMENT MISMATCH: {problem}")
    if not day.ok:
        out("  not every EDC's settlement was approved: "
            + ", ".join(f"{tid} rc {s.rc}" for tid, s in day.settlements.items()
                        if not s.approved))
    out(f"VERDICT: {'settled totals equal the ledger' if ok else 'FAILED'}")
    return 0 if ok else 1


def display_amount(alloc: AllocationResult) -> str:
    return f"({rupiah(alloc.total_credited_sen)} in all)"


def run_scenarios(sim: SimWorld, out: Callable[[str], None]) -> dict[str, list[Step]]:
    runner = Scenarios(sim)
    results: dict[str, list[Step]] = {}
    out("\nscenarios:")
    for name, scenario in SCENARIOS.items():
        steps = scenario(runner)
        results[name] = steps
        for step in steps:
            mark = "ok " if step.ok else "FAIL"
            out(f"  [{mark}] {name:26} {step.what:40} expected {step.expected:8} "
                f"got {step.got:8} | {step.display}")
    return results


def approved_purchases(fleet: FleetReport, steps: dict[str, list[Step]]) -> tuple[int, int]:
    """(count, sen) of purchases the terminals saw approved (none of them reversed:
    a reversal is only ever sent for a purchase that got no answer)."""
    scenario = [s.approved_purchase_sen for ss in steps.values() for s in ss
                if s.approved_purchase_sen]
    fleet_count = sum(1 for r in fleet.results if r.approved and r.kind == "purchase")
    return fleet_count + len(scenario), fleet.approved_purchase_sen + sum(scenario)


def verdict(db_url: str, fleet: FleetReport, steps: dict[str, list[Step]],
            approvals: tuple[int, int], out: Callable[[str], None]) -> int:
    receipt = next((s.receipt for ss in steps.values() for s in ss if s.receipt), ())
    if receipt:
        out("\na receipt, as the EDC printed it:")
        for line in receipt:
            out(f"    {line}")
    by_rc = Counter(fleet.by_rc)
    by_rc.update(s.got for ss in steps.values() for s in ss
                 if s.got in RESPONSE_CODES or s.got == "timeout")
    out(f"\nresponses by code (fleet + scenarios, {sum(by_rc.values())} in all):")
    for rc, count in sorted(by_rc.items()):
        shown = display_for(rc) if rc.isdigit() else "TIME-OUT / TRANSAKSI GAGAL"
        out(f"  {rc:8} {count:5}  {shown}")
    db = open_database(db_url, create=False)
    report = check_invariants(db)
    count, total = unreversed_purchases(db)
    matched = (count, total) == approvals
    failed = [f"{name}: {s.what}" for name, ss in steps.items() for s in ss if not s.ok]
    out(f"\nledger: {count} unreversed purchase debits of {rupiah(total)}; terminals saw "
        f"{approvals[0]} approvals of {rupiah(approvals[1])} -> "
        f"{'match' if matched else 'MISMATCH'}")
    out(report.summary())
    rows, stock = stock_problems(db)
    out(f"stock: conserved on {rows - len(stock)} of {rows} rows (receipts - standing sales)")
    for problem in stock:
        out(f"  STOCK NOT CONSERVED: {problem}")
    ok = report.ok and matched and not failed and not stock
    if failed:
        out("scenario steps that failed: " + "; ".join(failed))
    out(f"\nVERDICT: {'money invariant holds' if ok else 'FAILED'}")
    return 0 if ok else 1
