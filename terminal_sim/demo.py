"""``make run``: a switch on SQLite, a fleet of EDCs, every decline, the verdict.

1. a fresh SQLite database with the demo world (KPM, cards, e-warongs,
   terminals) and this period's allocation;
2. ``bpnt-switch serve`` as a real separate process on a free loopback port;
3. a fleet of simulated EDCs doing some hundreds of purchases and inquiries;
4. the named scenarios (each decline, duplicates, timeout-then-reversal);
5. the switch stopped, then the money invariant checked on the database, and
   the terminals' approvals matched one for one against ledger debits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select
from switch.ledger.database import open_database
from switch.ledger.invariants import check_invariants
from switch.ledger.models import Transfer
from switch.ledger.postings import allocate_period

from switch.admin.demo import build_world, seed_database
from switch.clock import SystemClock
from switch.host.keyring import Keyring
from switch.protocol.codes import display_for
from switch.settings import load_settings
from terminal_sim.fleet import FleetReport, run_fleet
from terminal_sim.scenarios import SCENARIOS, Scenarios, Step
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


def start_switch(db_url: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BPNT_DATABASE_URL=db_url, BPNT_PORT=str(port),
               BPNT_HOST="127.0.0.1")
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
    port = free_port()
    proc = start_switch(db_url, port, workdir / "switch.log")
    out(f"switch pid {proc.pid} on 127.0.0.1:{port} (log: {workdir / 'switch.log'})")
    sim = SimWorld(world, keys.imk_ac, "127.0.0.1", port, timeout_s=10.0)
    try:
        started = time.monotonic()
        fleet = run_fleet(sim, transactions=transactions)
        elapsed_s = time.monotonic() - started
        out(f"\nfleet: {len(fleet.results)} transactions on "
            f"{sum(1 for t in world.terminals if t.label == 'ok')} terminals in {elapsed_s:.1f} s")
        scenario_steps = run_scenarios(sim, out)
    finally:
        sim.close()
        stop_switch(proc)
    approvals = approved_purchases(fleet, scenario_steps)
    return verdict(db_url, fleet, scenario_steps, approvals, out)


def display_amount(alloc: object) -> str:
    from terminal_sim.receipt import rupiah

    total = getattr(alloc, "total_credited_sen", 0)
    return f"({rupiah(total)} in all)"


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
    """(count, sen) of purchases the terminals saw approved and did not reverse."""
    count = sum(1 for r in fleet.results if r.approved and r.kind == "purchase")
    return count, fleet.approved_purchase_sen


def verdict(db_url: str, fleet: FleetReport, steps: dict[str, list[Step]],
            fleet_approvals: tuple[int, int], out: Callable[[str], None]) -> int:
    out("\nfleet responses by code:")
    for rc, count in sorted(fleet.by_rc.items()):
        out(f"  {rc:8} {count:5}  {display_for(rc) if rc.isdigit() else 'TIME-OUT'}")
    db = open_database(db_url, create=False)
    report = check_invariants(db)
    with db.transaction() as session:
        reversed_ids = select(Transfer.reverses_transfer_id).where(
            Transfer.reverses_transfer_id.is_not(None))
        count, total = session.execute(
            select(func.count(), func.coalesce(func.sum(Transfer.amount_sen), 0)).where(
                Transfer.kind == "purchase", Transfer.id.not_in(reversed_ids))
        ).one()
    scenario_approvals = sum(1 for name in ("approved-purchase", "duplicate")
                             for s in steps.get(name, []) if s.what.startswith("purchase")
                             and s.ok)
    expected = fleet_approvals[0] + scenario_approvals
    matched = count == expected
    failed = [f"{name}: {s.what}" for name, ss in steps.items() for s in ss if not s.ok]
    out(f"\nledger: {count} unreversed purchase debits; terminals saw {expected} approvals "
        f"-> {'match' if matched else 'MISMATCH'}")
    out(report.summary())
    ok = report.ok and matched and not failed
    if failed:
        out("scenario steps that failed: " + "; ".join(failed))
    out(f"\nVERDICT: {'money invariant holds' if ok else 'FAILED'}")
    return 0 if ok else 1
