"""E-warong stock under load (issue 14): one e-warong, many terminals, one item.

    python -m loadtest.stock_bench --engine sqlite --terminals 32 --rate 500 --duration-s 30 \\
        --item BRS005 --units-per-purchase 1 --received 10000

The acceptance line: "32 terminals of one e-warong buying the same item at 500/s for
30 s end with stock = received - sold exactly" (and the money invariant holds).

1. a fresh database (:func:`loadtest.bench.bench_database`): the demo catalogue and
   ``--terminals`` terminals, all registered at ONE e-warong (the demo world spreads
   them over several; :func:`one_ewarong_world` moves them), no stock rows, then one
   receipt (``receive_stock``) of ``--received`` units of ``--item``; KPM through the
   importer with this period's allocation, enough of them that no wallet runs dry
   (``--kpm 0``: computed);
2. ``--switches`` ``bpnt-switch serve`` processes; every terminal logs on with a real
   EDC; rate x duration signed purchases are built beforehand (not timed), each the
   basket ``--units-per-purchase`` x ``--item`` at its reference price;
3. offered open-loop at ``--rate`` for ``--duration-s`` (:mod:`loadtest.bench_load`),
   then drained (an echo answered by every switch) and the switches stopped;
4. the verdict, from the EDCs' answers and the database: stock = received - sold
   exactly, where sold = the units of the standing (approved, unvoided, unreversed)
   purchase records whose ``stock_ewarong_id`` is the e-warong (DE 48 decoded); sold =
   the 00 answers the EDCs got x units; the ST answers are the database's ST records;
   every request answered; the shelf never below zero, and empty (fewer units than a
   basket) when any ST came back; the money invariant; approvals = purchase debits.

With ``--received`` below rate x duration x units (the default) the shelf runs out
mid-run: the run is reported in two phases, before and from the first ST answer.
Exit status 1 when any check fails (2: ``--max-total-s`` ran out).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

from sqlalchemy import func, select

from loadtest.bench import (
    PG_BASE_URL,
    BenchAborted,
    _abort,
    bench_database,
    build_requests,
    describe,
    drain,
    fmt_ms,
    logged_on_edcs,
    seed,
    summary,
)
from loadtest.bench_load import (
    Outcome,
    PointStats,
    cpu_by_pid,
    cpu_seconds,
    cpu_used_since,
    pids_named,
    reduce,
    run_point,
)
from switch.admin.demo import CATALOG, PRICES_SEN, DemoWorld, build_world
from switch.admin.stock import receive_stock
from switch.db.schema import open_database
from switch.db.tables import Alert, Ewarong, RequestRecord, Stock, StockReceipt, Transfer
from switch.ledger.invariants import InvariantReport, check_invariants
from switch.protocol.bpnt import BasketLine, decode_basket
from switch.protocol.unit import decode_unit
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.demo import free_port, start_switch, stop_switch

OUT_DIR = Path("var/stock-bench")
RECEIPT_REFERENCE = "stock-bench"


@dataclass
class Args:
    engine: str
    terminals: int
    switches: int
    rate: float
    duration_s: float
    item: str
    units: int
    received: int
    kpm: int
    connections: int
    timeout_s: float
    pg_url: str
    out: Path
    max_total_s: float

    @property
    def purchases(self) -> int:
        return round(self.rate * self.duration_s)


@dataclass
class StockFacts:
    """What the database says after the run, for the e-warong and item."""

    received: int = 0
    left: int | None = None
    #: units of the item taken by standing approved purchases at the e-warong
    sold: int = 0
    approved: int = 0
    #: approved purchases whose record does not name the e-warong as the one whose
    #: stock it took (or whose basket is not the bench's)
    misattributed: int = 0
    #: purchase records by response code
    records_by_rc: Counter[str] = field(default_factory=Counter)
    #: purchase transfers no reversal undid (the debits)
    debits: int = 0
    #: approved records decided after the first ST record (record id order)
    approved_after_first_st: int = 0
    #: alerts by (rule, action): low_stock once as the shelf crosses the threshold
    alerts: Counter[str] = field(default_factory=Counter)


@dataclass
class StockResult:
    engine: str
    point: PointStats
    phases: list[tuple[str, PointStats]]
    facts: StockFacts
    invariants: InvariantReport
    problems: list[str]
    build_s: float = 0.0
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# -- the world ---------------------------------------------------------------------------

def one_ewarong_world(terminals: int) -> DemoWorld:
    """The demo world's ``terminals`` working terminals, all at its first e-warong
    (the demo's own inactive and unknown terminals left out)."""
    base = build_world(kpm_count=0, terminal_count=terminals)
    ok = [t for t in base.terminals if t.label == "ok"]
    mid = ok[0].mid
    return DemoWorld(base.cards, [replace(t, mid=mid) for t in ok])


def basket_for(args: Args) -> list[BasketLine]:
    return [BasketLine(args.item, args.units, PRICES_SEN[args.item])]


def kpm_needed(args: Args) -> int:
    """KPM enough that every purchase could be approved on this period's allocation."""
    per_kpm = load_settings().period_amount_sen // sum(
        line.total_sen for line in basket_for(args))
    if per_kpm < 1:
        raise SystemExit("one basket costs more than a period's allocation")
    return max(1, math.ceil(args.purchases / per_kpm))


# -- the facts and the verdict ----------------------------------------------------------

def read_facts(url: str, mid: str, item: str, units: int) -> StockFacts:
    facts = StockFacts()
    db = open_database(url, create=False)
    try:
        with db.transaction() as session:
            ewarong_id = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
            facts.received = int(session.scalar(
                select(func.coalesce(func.sum(StockReceipt.quantity), 0)).where(
                    StockReceipt.ewarong_id == ewarong_id,
                    StockReceipt.item_code == item)) or 0)
            left = session.scalar(select(Stock.quantity).where(
                Stock.ewarong_id == ewarong_id, Stock.item_code == item))
            facts.left = None if left is None else int(left)
            purchase = (RequestRecord.kind == "request",
                        RequestRecord.processing_code == "000000")
            for rc, n in session.execute(
                    select(RequestRecord.response_code, func.count()).where(*purchase)
                    .group_by(RequestRecord.response_code)):
                facts.records_by_rc[rc] = int(n)
            reversed_ids = select(Transfer.reverses_transfer_id).where(
                Transfer.reverses_transfer_id.is_not(None))
            standing = session.execute(
                select(RequestRecord.id, RequestRecord.basket, RequestRecord.stock_ewarong_id)
                .where(*purchase, RequestRecord.response_code == "00",
                       RequestRecord.voided_by_record_id.is_(None),
                       RequestRecord.transfer_id.not_in(reversed_ids))).all()
            first_st = session.scalar(select(func.min(RequestRecord.id)).where(
                *purchase, RequestRecord.response_code == "ST"))
            for rec_id, basket, stock_ewarong in standing:
                facts.approved += 1
                lines = decode_basket(basket or "")
                mine = sum(line.quantity for line in lines if line.item_code == item)
                if stock_ewarong != ewarong_id or mine != units or len(lines) != 1:
                    facts.misattributed += 1
                if stock_ewarong == ewarong_id:
                    facts.sold += mine
                if first_st is not None and rec_id > first_st:
                    facts.approved_after_first_st += 1
            for rule, action, n in session.execute(
                    select(Alert.rule, Alert.action, func.count())
                    .group_by(Alert.rule, Alert.action)):
                facts.alerts[f"{rule}/{action}"] = int(n)
            facts.debits = int(session.scalar(
                select(func.count()).select_from(Transfer).where(
                    Transfer.kind == "purchase", Transfer.id.not_in(reversed_ids))) or 0)
    finally:
        db.engine.dispose()
    return facts


def judge(args: Args, point: PointStats, facts: StockFacts, invariants: InvariantReport
          ) -> list[str]:
    """Every failed check, in words (none: the run passes)."""
    problems = []
    answered_ok = point.approved
    st = point.declines.get("ST", 0)
    others = sum(n for rc, n in point.declines.items() if rc != "ST")
    errors = sum(point.errors.values())
    if facts.left is None:
        problems.append("no stock row for the e-warong and item")
        left = 0
    else:
        left = facts.left
    if left != facts.received - facts.sold:
        problems.append(f"stock {left} != received {facts.received} - sold {facts.sold} "
                        f"(= {facts.received - facts.sold})")
    if facts.received != args.received:
        problems.append(f"receipts sum to {facts.received}, not --received {args.received}")
    if facts.sold != answered_ok * args.units:
        problems.append(f"sold {facts.sold} units (database) != {answered_ok} approvals the "
                        f"EDCs saw x {args.units} = {answered_ok * args.units}")
    if left < 0:
        problems.append(f"stock below zero: {left}")
    if st and left >= args.units:
        problems.append(f"{st} ST answers but the shelf still holds {left} units "
                        f"(a basket takes {args.units})")
    if not st and facts.received - args.purchases * args.units < 0 and not errors:
        problems.append(f"{args.purchases} purchases of {args.units} offered against "
                        f"{facts.received} units, yet no ST answer")
    if facts.misattributed:
        problems.append(f"{facts.misattributed} approved purchases do not name the e-warong's "
                        "stock or the bench's basket")
    if errors:
        problems.append(f"{errors} requests got no answer ({dict(point.errors)}): the EDCs "
                        "cannot tell what was sold")
    if answered_ok + st + others + errors != point.scheduled:
        problems.append(f"{point.scheduled} purchases != {answered_ok} approved + {st} ST + "
                        f"{others} other declines + {errors} errors")
    if facts.records_by_rc.get("ST", 0) != st:
        problems.append(f"{st} ST answers but {facts.records_by_rc.get('ST', 0)} ST records")
    if not (facts.approved == facts.debits == answered_ok):
        problems.append(f"approved records {facts.approved}, purchase debits {facts.debits}, "
                        f"00 answers {answered_ok}: not all equal")
    if not invariants.ok:
        problems.append("the money invariant does not hold")
    return problems


# -- the run -----------------------------------------------------------------------------

def answered(point: PointStats) -> int:
    return point.approved + sum(point.declines.values())


def phases(outcomes: list[Outcome], start: float, rate: float
           ) -> list[tuple[str, PointStats]]:
    """Before the first ST answer (in scheduled order) and from it on."""
    first = next((i for i, o in enumerate(outcomes) if o.response is not None
                  and decode_unit(o.response).message.opt_text(39) == "ST"), None)
    if first is None:
        return [("shelf stocked (no ST)", reduce(outcomes, rate, len(outcomes) / rate, start))]
    found = []
    if first:
        found.append((f"shelf stocked (requests 1-{first})",
                      reduce(outcomes[:first], rate, first / rate, start)))
    rest = outcomes[first:]
    found.append((f"shelf empty (requests {first + 1}-{len(outcomes)}, from the first ST)",
                  reduce(rest, rate, len(rest) / rate, start + first / rate)))
    return found


def run(args: Args, out: Callable[[str], None] = print,
        before_check: Callable[[str], None] | None = None) -> StockResult:
    """The whole bench; ``before_check(url)`` runs on the drained database before the
    verdict (the tests use it to break the database and see the verdict fail)."""
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / f"run-{args.engine}-{secrets.token_hex(3)}"
    workdir.mkdir(parents=True)
    keys = Keyring.from_settings(load_settings())
    world = one_ewarong_world(args.terminals)
    mid = world.terminals[0].mid
    basket = basket_for(args)
    if args.kpm <= 0:
        args.kpm = kpm_needed(args)
    out(f"stock bench: {args.engine}, {args.switches} switch process(es), {args.terminals} "
        f"terminals of e-warong {mid}, {args.kpm} KPM, {args.connections} connections, "
        f"{args.purchases} purchases of {args.units} x {args.item} at {args.rate:g}/s for "
        f"{args.duration_s:g} s against {args.received} units received")
    out(f"machine: {cpu_model()}, {os.cpu_count()} CPU, Python {platform.python_version()}")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with bench_database(args, workdir) as url:  # type: ignore[arg-type]
            cards = seed(url, args, workdir, out, world=world,  # type: ignore[arg-type]
                         stock_units=0)
            db = open_database(url, create=False)
            with db.transaction() as session:
                receive_stock(session, keys, mid=mid, item_code=args.item,
                              quantity=args.received, actor="stock-bench",
                              reference=RECEIPT_REFERENCE)
            db.engine.dispose()
            out(f"received {args.received} x {args.item} at {mid}")
            ports = [free_port() for _ in range(args.switches)]
            for n, port in enumerate(ports):
                procs.append(start_switch(url, port, args.out / f"switch-{args.engine}-{n}.log"))
            out(f"switch pid(s) {', '.join(str(p.pid) for p in procs)} on 127.0.0.1 port(s) "
                f"{', '.join(map(str, ports))}")
            edcs = logged_on_edcs(args, ports, world)  # type: ignore[arg-type]
            built = time.perf_counter()
            units = build_requests(edcs, cards, keys.imk_ac, [args.purchases], basket)[0]
            build_s = time.perf_counter() - built
            out(f"built {len(units)} purchases in {build_s:.1f} s (not measured)")
            pids = [p.pid for p in procs]
            db0 = cpu_by_pid(pids_named("postgres")) if args.engine == "postgresql" else {}
            sw0 = cpu_seconds(pids)
            outcomes, start, gen_cpu = asyncio.run(
                run_point(units, args.rate, ports, args.connections, args.timeout_s))
            point = reduce(outcomes, args.rate, args.duration_s, start)
            wall = max(point.wall_s, 1e-9)
            point.gen_cpu_pct = 100 * gen_cpu / wall
            point.switch_cpu_pct = 100 * (cpu_seconds(pids) - sw0) / wall
            if args.engine == "postgresql":
                point.db_cpu_pct = 100 * cpu_used_since(db0, "postgres") / wall
            out("whole run:")
            out(describe(point, args.timeout_s))
            out(f"    answered {answered(point)} = {answered(point) / wall:.1f} answers/s")
            split = phases(outcomes, start, args.rate)
            for label, stats in split:
                out(f"  phase {label}: {stats.approved} approved, declines "
                    f"{dict(sorted(stats.declines.items()))}, errors {dict(stats.errors)}; "
                    f"{answered(stats) / max(stats.wall_s, 1e-9):.1f} answers/s; p50 "
                    f"{fmt_ms(stats.p50_ms, args.timeout_s)} ms, p99 "
                    f"{fmt_ms(stats.p99_ms, args.timeout_s)} ms")
            if not drain(edcs, ports):
                raise RuntimeError("the switch did not drain")
            for proc in procs:
                stop_switch(proc)
            procs.clear()
            if before_check is not None:
                before_check(url)
            facts = read_facts(url, mid, args.item, args.units)
            invariants = check_invariants(open_database(url, create=False))
            out(summary(invariants))
            problems = judge(args, point, facts, invariants)
    finally:
        for proc in procs:
            stop_switch(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    result = StockResult(args.engine, point, split, facts, invariants, problems, build_s)
    result.lines = report_lines(args, result)
    for line in result.lines:
        out(line)
    return result


def report_lines(args: Args, result: StockResult) -> list[str]:
    f = result.facts
    lines = [f"stock of {args.item} at the e-warong: received {f.received}, sold {f.sold} "
             f"(standing approved purchases x units), left {f.left}; received - sold = "
             f"{f.received - f.sold}",
             f"purchase records by RC: {dict(sorted(f.records_by_rc.items()))}; approved "
             f"records {f.approved}, purchase debits {f.debits}, 00 answers "
             f"{result.point.approved}; approved decided after the first ST record: "
             f"{f.approved_after_first_st}; alerts {dict(sorted(f.alerts.items()))}"]
    if result.ok:
        lines.append("VERDICT: stock bench passed (stock = received - sold exactly; sold = "
                     "approvals x units; money invariant holds; approvals = debits)")
    else:
        lines.append("VERDICT: stock bench FAILED")
        lines += [f"  - {p}" for p in result.problems]
    return lines


def cpu_model() -> str:
    """``lscpu``'s model name (``platform.processor()`` where lscpu is missing)."""
    with suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                              check=False, env=dict(os.environ, LC_ALL="C"))
        for line in done.stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def markdown(args: Args, result: StockResult, command: str) -> list[str]:
    f = result.facts
    lines = [f"`{command}` ({date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} "
             f"vCPU, Python {platform.python_version()}, {args.engine}, {args.switches} "
             f"switch process(es), {args.terminals} terminals of one e-warong, {args.kpm} KPM, "
             f"{args.connections} connections, time-out {args.timeout_s:g} s):", "",
             "| phase | requests | answers/s | approved/s | p50 ms | p99 ms | RC counts "
             "| errors |",
             "|---|---|---|---|---|---|---|---|"]
    for label, p in [("whole run", result.point), *result.phases]:
        rcs = ", ".join(f"{rc}×{n}" for rc, n in
                        sorted({"00": p.approved, **p.declines}.items()) if n) or "0"
        errors = ", ".join(f"{k}×{n}" for k, n in sorted(p.errors.items())) or "0"
        lines.append(f"| {label} | {p.scheduled} | "
                     f"{answered(p) / max(p.wall_s, 1e-9):.0f} | {p.approved_per_s:.0f} | "
                     f"{fmt_ms(p.p50_ms, args.timeout_s)} | {fmt_ms(p.p99_ms, args.timeout_s)} "
                     f"| {rcs} | {errors} |")
    lines += ["", f"Stock of {args.item}: received {f.received}, sold {f.sold}, left {f.left} "
              f"(received − sold = {f.received - f.sold}). Approved records {f.approved}, "
              f"debits {f.debits}, 00 answers {result.point.approved}. Money invariant: "
              f"{'holds' if result.invariants.ok else 'BROKEN'}. Verdict: "
              f"{'passed' if result.ok else 'FAILED: ' + '; '.join(result.problems)}."]
    return lines


def parse_args(argv: list[str] | None) -> Args:
    parser = argparse.ArgumentParser(prog="python -m loadtest.stock_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--terminals", type=int, default=32)
    parser.add_argument("--switches", type=int, default=1)
    parser.add_argument("--rate", type=float, default=500.0, help="offered purchases/s")
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--item", default="BRS005",
                        choices=[code for code, _n, _c, allowed in CATALOG if allowed])
    parser.add_argument("--units-per-purchase", type=int, default=1)
    parser.add_argument("--received", type=int, default=10_000,
                        help="units the e-warong receives before the run")
    parser.add_argument("--kpm", type=int, default=0, help="0: enough for every purchase")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL", PG_BASE_URL))
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--max-total-s", type=float, default=900.0,
                        help="abort (and clean up) after this long")
    ns = parser.parse_args(argv)
    if ns.rate <= 0 or ns.duration_s <= 0 or ns.switches < 1 or ns.terminals < 1 \
            or ns.connections < 1 or ns.received < 1 or not 1 <= ns.units_per_purchase <= 999:
        parser.error("rate, duration, switches, terminals, connections, received must be > 0; "
                     "units per purchase 1..999")
    return Args(ns.engine, ns.terminals, ns.switches, ns.rate, ns.duration_s, ns.item,
                ns.units_per_purchase, ns.received, ns.kpm, ns.connections, ns.timeout_s,
                ns.pg_url.rstrip("/"), ns.out, ns.max_total_s)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m loadtest.stock_bench " + " ".join(
        sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGALRM, _abort)
    signal.alarm(max(1, int(args.max_total_s)))
    try:
        result = run(args)
    except BenchAborted as exc:
        print(f"stock bench ABORTED: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    md = markdown(args, result, command)
    path = args.out / f"stock-{args.engine}.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    print(f"\n---- summary ({path}) ----")
    print("\n".join(md))
    print("---- end ----")
    return 0 if result.ok else 1


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
