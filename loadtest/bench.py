"""Open-loop TCP bench of the switch (issue 3), on SQLite or PostgreSQL.

    python -m loadtest.bench --engine sqlite --rate 100 --duration-s 60
    python -m loadtest.bench --engine sqlite --sweep 50,100,150,200 --duration-s 20
    python -m loadtest.bench --engine postgresql --sweep 25,50,100,200 --pgbench

1. a fresh database (SQLite file, or PostgreSQL database ``bpnt_bench_<random>``
   dropped afterwards): the catalogue, e-warongs and ``--terminals`` terminals of
   the demo world (registry), ``--kpm`` KPM with cards (``make_kpm_csv`` file and
   the ``import-kpm`` importer), this period's allocation;
2. ``--switches`` ``bpnt-switch serve`` processes on free loopback ports; with
   ``--haproxy``, HAProxy in TCP mode in front of them (:mod:`loadtest.haproxy`,
   docs/SCALING.md) and the load sent to its one address instead (logon and the
   drain still reach each switch directly);
3. not timed: every terminal logs on with a real EDC over TCP, then every request
   is built by ``Edc.prepare_purchase`` with a real emulated card (ARQC, PIN block,
   MAC), cards taken round-robin so no wallet runs dry and each card's ATC rises
   in the order the requests are offered;
4. timed: each rate is offered open-loop (:mod:`loadtest.bench_load`) for
   ``--duration-s``; the switch is drained (an echo answered) before the next rate;
5. PostgreSQL with ``--pgbench``: pgbench's TPC-B-like script on a separate
   database of the same server (``-i -s 10``), with pgbench's defaults (one client:
   the issue's yardstick) and with ``-c 8 -j 2``, ``-T 30`` each (:data:`PGBENCH_RUNS`);
6. the switches stopped, ``check_invariants`` on the database (the bench fails if
   it does not hold), a CSV per sweep, the latency-vs-throughput plot, and a
   Markdown block for docs/BENCHMARKS.md.

Everything runs on loopback, every wait has a timeout, and ``--max-total-s`` bounds
the whole run; the switches and temporary databases are removed on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from loadtest.bench_load import (
    PointStats,
    cpu_by_pid,
    cpu_seconds,
    cpu_used_since,
    pids_named,
    reduce,
    run_point,
)
from loadtest.haproxy import Haproxy, switch_env
from loadtest.make_kpm_csv import pin_for, write_csv
from switch.admin.demo import DEMO_STOCK_UNITS, DemoWorld, build_world, seed_database
from switch.admin.importer import import_kpm
from switch.clock import SystemClock
from switch.db.schema import open_database
from switch.ledger.invariants import InvariantReport, check_invariants
from switch.ledger.postings import allocate_period
from switch.protocol.bpnt import BasketLine
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.demo import free_port, fresh_sqlite, start_switch, stop_switch
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import TcpLink

#: One tempe, Rp 5.000: 40 purchases per KPM on the Rp 200.000 allocation.
BASKET = [BasketLine("TMP001", 1, 500_000)]
KPM_SEED = 8583
PG_BASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432"
OUT_DIR = Path("var/bench")
DRAIN_TIMEOUT_S = 120.0
LOGON_TIMEOUT_S = 10.0
PGBENCH_INIT_TIMEOUT_S = 300.0
CMD_TIMEOUT_S = 60.0


class BenchAborted(BaseException):
    """``--max-total-s`` ran out (raised from SIGALRM, so cleanup still runs)."""


@dataclass
class Args:
    engine: str
    kpm: int
    terminals: int
    switches: int
    rates: list[float]
    duration_s: float
    connections: int
    timeout_s: float
    warmup: int
    pgbench: bool
    pgbench_seconds: int
    pg_url: str
    out: Path
    profile_s: float
    profile_at: float
    max_total_s: float
    #: The load through one HAProxy address in front of the switches.
    haproxy: bool = False


@dataclass
class RunResult:
    engine: str
    points: list[PointStats]
    invariants: InvariantReport
    pgbench: PgbenchResult | None = None
    notes: list[str] = field(default_factory=list)


# -- databases ------------------------------------------------------------------------

def _pg_admin_exec(base_url: str, sql: str) -> None:
    import psycopg

    parts = urlsplit(base_url.replace("+psycopg", ""))
    conninfo = f"host={parts.hostname or '127.0.0.1'} port={parts.port or 5432} " \
               f"user={parts.username or 'postgres'} dbname=postgres connect_timeout=10"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.encode())  # names are ours: bpnt_bench_<hex>


@contextmanager
def bench_database(args: Args, workdir: Path) -> Iterator[str]:
    """A fresh database URL for the run; PostgreSQL databases are dropped afterwards."""
    if args.engine == "sqlite":
        yield fresh_sqlite(workdir / "bench.db")
        return
    name = f"bpnt_bench_{secrets.token_hex(4)}"
    _pg_admin_exec(args.pg_url, f"CREATE DATABASE {name}")
    try:
        yield f"{args.pg_url}/{name}"
    finally:
        _pg_admin_exec(args.pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class BenchCard:
    pan: str
    pin: str
    expiry_yymm: str
    psn: str = "01"


def seed(url: str, args: Args, workdir: Path, out: Callable[[str], None], *,
         world: DemoWorld | None = None, stock_units: int = DEMO_STOCK_UNITS
         ) -> list[BenchCard]:
    """Terminals through the registry, KPM through the importer, then the allocation.
    ``world``: the terminals (default: the demo world's ``args.terminals``);
    ``stock_units``: of every allowed item at every e-warong (0: no stock rows)."""
    settings = load_settings(database_url=url)
    keys = Keyring.from_settings(settings)
    started = time.monotonic()
    db = open_database(url)
    if world is None:
        world = build_world(kpm_count=0, terminal_count=args.terminals)
    seed_database(db, keys, world, stock_units=stock_units)
    csv_path = workdir / f"kpm-{args.kpm}.csv"
    write_csv(csv_path, args.kpm, seed=KPM_SEED)
    report = import_kpm(db, keys, csv_path, actor="bench")
    if report.imported != args.kpm:
        raise RuntimeError(f"import-kpm imported {report.imported} of {args.kpm}")
    period = SystemClock().now().strftime("%Y-%m")
    alloc = allocate_period(db, period, settings.period_amount_sen)
    db.engine.dispose()
    out(f"seeded {args.terminals} terminals and {args.kpm} KPM, {alloc.credited_count} "
        f"credited for {period} in {time.monotonic() - started:.1f} s")
    cards = []
    with csv_path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            cards.append(BenchCard(row["pan"], pin_for(KPM_SEED, row["pan"]),
                                   row["expiry_yymm"]))
    return cards


# -- requests ---------------------------------------------------------------------------

def logged_on_edcs(args: Args, ports: list[int], world: DemoWorld | None = None
                   ) -> list[tuple[Edc, EmulatedReader]]:
    """One real EDC per terminal, logged on over TCP (working keys from the switch);
    ``world``: the one :func:`seed` registered (default: the demo world's)."""
    if world is None:
        world = build_world(kpm_count=0, terminal_count=args.terminals)
    edcs: list[tuple[Edc, EmulatedReader]] = []
    for term in world.terminals:
        if term.label != "ok":
            continue
        reader = EmulatedReader()
        link = TcpLink("127.0.0.1", ports[len(edcs) % len(ports)])
        edc = Edc(EdcConfig(term.tid, term.mid, term.tmk, timeout_s=LOGON_TIMEOUT_S),
                  link, reader)
        if not edc.ensure_logged_on():
            raise RuntimeError(f"terminal {term.tid} could not log on")
        # closed (reopened on demand): a thousand terminals' idle logon connections
        # would otherwise count against the switch's per-address limit during the load
        link.close()
        edcs.append((edc, reader))
    return edcs


def build_requests(edcs: list[tuple[Edc, EmulatedReader]], cards: list[BenchCard],
                   imk_ac: bytes, counts: list[int], basket: list[BasketLine] | None = None
                   ) -> list[list[bytes]]:
    """``counts[j]`` signed purchase units of ``basket`` (default :data:`BASKET`) for
    point j; terminals and cards round-robin."""
    basket = BASKET if basket is None else basket
    per_card = math.ceil(sum(counts) / len(cards))
    budget = load_settings().period_amount_sen // sum(line.total_sen for line in basket)
    if per_card > budget:
        raise SystemExit(f"{sum(counts)} purchases need {per_card} per card but a wallet "
                         f"pays for {budget}: raise --kpm to {math.ceil(sum(counts) / budget)}")
    emulated: dict[str, KksCard] = {}
    batches: list[list[bytes]] = []
    k = 0
    for count in counts:
        batch = []
        for _ in range(count):
            edc, reader = edcs[k % len(edcs)]
            card = cards[k % len(cards)]
            if card.pan not in emulated:
                emulated[card.pan] = KksCard(
                    profile_for(card.pan, card.psn, card.expiry_yymm, imk_ac))
            reader.swap(emulated[card.pan])
            batch.append(edc.prepare_purchase(basket, card.pin))
            k += 1
        batches.append(batch)
    return batches


def drain(edcs: list[tuple[Edc, EmulatedReader]], ports: list[int]) -> bool:
    """An echo answered by every switch: its writer thread has worked off the backlog."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    for port in ports:
        edc, _ = edcs[0]
        edc.link = TcpLink("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                if edc.echo().rc is not None:
                    break
            else:
                return False
        finally:
            edc.link.close()
    return True


# -- profile ------------------------------------------------------------------------------

BUCKETS = [
    ("sqlalchemy ORM/Core", ("sqlalchemy/",)),
    ("psycopg / libpq", ("psycopg",)),
    ("sqlite3", ("sqlite3/",)),
    ("crypto (psec, pyemv, cryptography)", ("psec/", "pyemv/", "cryptography/")),
    ("ISO 8583 codec", ("iso8583/", "switch/protocol/")),
    ("switch ledger/host/audit code", ("switch/",)),
    ("asyncio / transport", ("asyncio/", "selectors.py")),
]


def summarize_profile(raw: Path, top: int = 12) -> list[str]:
    """py-spy ``--format raw`` (collapsed stacks) of the switch -> where its time goes."""
    buckets: dict[str, int] = {}
    selfs: dict[str, int] = {}
    total = writer = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        writer += count if "concurrent/futures/thread.py" in stack else 0
        leaf = frames[-1]
        selfs[leaf] = selfs.get(leaf, 0) + count
        # the innermost frame that belongs to a known bucket decides
        name = "other (stdlib, interpreter)"
        for frame in reversed(frames):
            match = next((b for b, keys in BUCKETS if any(k in frame for k in keys)), None)
            if match:
                name = match
                break
        buckets[name] = buckets.get(name, 0) + count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples of the switch process (all threads, idle excluded); "
             f"{100 * writer / total:.0f} % on the ledger writer thread, the rest on the "
             "event loop",
             "| where (innermost known frame) | share |", "|---|---|"]
    lines += [f"| {name} | {100 * n / total:.0f} % |"
              for name, n in sorted(buckets.items(), key=lambda kv: -kv[1])]
    lines.append("")
    lines.append(f"top {top} self-time frames:")
    lines += [f"  {100 * n / total:5.1f} %  {leaf[:110]}"
              for leaf, n in sorted(selfs.items(), key=lambda kv: -kv[1])[:top]]
    return lines


def start_profile(pid: int, seconds: float, raw: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    return subprocess.Popen(
        [spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200",
         "-f", "raw", "-o", str(raw), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summary(report: InvariantReport) -> str:
    """``report.summary()``; on PostgreSQL ``SUM(bigint)`` comes back as a Decimal,
    which :func:`switch.money.rupiah` refuses, so the totals are made int first."""
    for name in ("total_credited_sen", "wallets_sen", "ewarong_sen", "program_sen"):
        setattr(report, name, int(getattr(report, name)))
    return report.summary()


# -- pgbench ----------------------------------------------------------------------------

#: pgbench invocations, each on the same ``-i -s 10`` database: its defaults (one
#: client, one thread: the issue's yardstick, "pgbench's default TPC-B-like script"),
#: then eight clients on two threads (PostgreSQL's own group commit across clients).
PGBENCH_RUNS = (("default, 1 client", ()), ("-c 8 -j 2", ("-c", "8", "-j", "2")))


@dataclass
class PgbenchResult:
    tps: dict[str, float]

    @property
    def default_tps(self) -> float | None:
        return self.tps.get(PGBENCH_RUNS[0][0])


def run_pgbench(args: Args, out: Callable[[str], None]) -> PgbenchResult | None:
    exe = shutil.which("pgbench")
    if exe is None:
        out("pgbench: not installed (apt-get install postgresql-client); skipped")
        return None
    parts = urlsplit(args.pg_url.replace("+psycopg", ""))
    conn = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
            "-U", parts.username or "postgres"]
    name = f"bpnt_pgbench_{secrets.token_hex(4)}"
    result = PgbenchResult({})
    _pg_admin_exec(args.pg_url, f"CREATE DATABASE {name}")
    try:
        subprocess.run([exe, *conn, "-i", "-s", "10", "-q", name], check=True,
                       capture_output=True, timeout=PGBENCH_INIT_TIMEOUT_S)
        for label, options in PGBENCH_RUNS:
            done = subprocess.run(
                [exe, *conn, *options, "-T", str(args.pgbench_seconds), name],
                check=True, capture_output=True, text=True,
                timeout=args.pgbench_seconds + 60)
            found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)",
                              done.stdout)
            latency = re.search(r"latency average = ([0-9.]+) ms", done.stdout)
            if found is None:
                out(f"pgbench ({label}): no tps in its output:\n" + done.stdout[-500:])
                continue
            result.tps[label] = float(found[1])
            out(f"pgbench (TPC-B-like, -s 10, {label}, -T {args.pgbench_seconds}): "
                f"{float(found[1]):.0f} tps, latency average "
                f"{latency[1] if latency else '?'} ms")
    finally:
        _pg_admin_exec(args.pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return result if result.tps else None


# -- the run ----------------------------------------------------------------------------

def fmt_ms(value: float, timeout_s: float) -> str:
    return f"> {timeout_s:.0f} s (time-out)" if math.isinf(value) else f"{value:.1f}"


def describe(point: PointStats, timeout_s: float) -> str:
    declines = ", ".join(f"{rc}: {n}" for rc, n in sorted(point.declines.items())) or "none"
    errors = ", ".join(f"{k}: {n}" for k, n in sorted(point.errors.items())) or "none"
    return (f"  offered {point.rate:g}/s for {point.duration_s:g} s ({point.scheduled} "
            f"requests): {point.approved} approved = {point.approved_per_s:.1f} approved/s "
            f"over {point.wall_s:.1f} s\n"
            f"    latency from scheduled send p50 {fmt_ms(point.p50_ms, timeout_s)} ms, "
            f"p95 {fmt_ms(point.p95_ms, timeout_s)} ms, p99 {fmt_ms(point.p99_ms, timeout_s)} "
            f"ms, max {fmt_ms(point.max_ms, timeout_s)} ms\n"
            f"    declines by RC: {declines}; errors: {errors}; late sends (> 5 ms, no free "
            f"connection): {point.late_sends}\n"
            f"    CPU (of one core): generator {point.gen_cpu_pct:.0f} %, switch "
            f"{point.switch_cpu_pct:.0f} %, "
            + (f"haproxy {point.lb_cpu_pct:.0f} %, " if point.lb_cpu_pct else "")
            + f"database server {point.db_cpu_pct:.0f} %")


def run(args: Args, out: Callable[[str], None] = print) -> RunResult:
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / f"run-{args.engine}-{secrets.token_hex(3)}"
    workdir.mkdir(parents=True)
    settings = load_settings()
    keys = Keyring.from_settings(settings)
    out(f"bench: {args.engine}, {args.switches} switch process(es), {args.terminals} "
        f"terminals, {args.kpm} KPM, {args.connections} connections, rates "
        f"{', '.join(f'{r:g}' for r in args.rates)}/s x {args.duration_s:g} s, "
        f"time-out {args.timeout_s:g} s")
    out(f"machine: {os.cpu_count()} CPU, {platform.machine()}, Python "
        f"{platform.python_version()}, {platform.platform(terse=True)}")
    procs: list[subprocess.Popen[bytes]] = []
    lb: Haproxy | None = None
    try:
        with bench_database(args, workdir) as url:
            cards = seed(url, args, workdir, out)
            ports = [free_port() for _ in range(args.switches)]
            env = switch_env() if args.haproxy else None
            for n, port in enumerate(ports):
                procs.append(start_switch(url, port, args.out / f"switch-{args.engine}-{n}.log",
                                          env))
            out(f"switch pid(s) {', '.join(str(p.pid) for p in procs)} on 127.0.0.1 port(s) "
                f"{', '.join(map(str, ports))}")
            load_ports = ports
            if args.haproxy:
                lb = Haproxy(ports, args.out)
                lb.start()
                if not lb.wait_all_up(DRAIN_TIMEOUT_S):
                    raise RuntimeError(f"HAProxy's echo check failed: {lb.servers()}")
                load_ports = [lb.port]
                out(f"haproxy pid {lb.pid} on {lb.address} in front of them (config "
                    f"{lb.config_path}): the load goes there")
            edcs = logged_on_edcs(args, ports)
            counts = [args.warmup] + [round(r * args.duration_s) for r in args.rates]
            built = time.perf_counter()
            batches = build_requests(edcs, cards, keys.imk_ac, counts)
            build_s = time.perf_counter() - built
            out(f"built {sum(counts)} purchases in {build_s:.1f} s "
                f"({build_s / max(1, sum(counts)) * 1e3:.2f} ms each, not measured)")
            points = measure(args, batches, ports, procs, edcs, out, load_ports,
                             lb.pid if lb is not None else None)
            if lb is not None:
                out(f"haproxy at the end: {lb.servers()}")
                lb.close()
                lb = None
            for proc in procs:
                stop_switch(proc)
            procs.clear()
            report = check_invariants(open_database(url, create=False))
            out(summary(report))
            result = RunResult(args.engine, points, report)
            if args.engine == "postgresql" and args.pgbench:
                result.pgbench = run_pgbench(args, out)
    finally:
        if lb is not None:
            lb.close()
        for proc in procs:
            stop_switch(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def measure(args: Args, batches: list[list[bytes]], ports: list[int],
            procs: list[subprocess.Popen[bytes]], edcs: list[tuple[Edc, EmulatedReader]],
            out: Callable[[str], None], load_ports: list[int] | None = None,
            lb_pid: int | None = None) -> list[PointStats]:
    """Each rate offered to ``load_ports`` (default: the switches' ``ports``; HAProxy's
    with ``--haproxy``), the switches drained through ``ports`` after each."""
    pids = [p.pid for p in procs]
    target = ports if load_ports is None else load_ports
    points = []
    if batches[0]:
        rate = min(50.0, args.rates[0])
        asyncio.run(run_point(batches[0], rate, target, min(args.connections, 64),
                              args.timeout_s))
        drain(edcs, ports)
        out(f"warm-up: {len(batches[0])} purchases at {rate:g}/s (not reported)")
    profile_rate = args.profile_at or max(args.rates)
    peak = min(range(len(args.rates)), key=lambda j: abs(args.rates[j] - profile_rate))
    for j, (rate, units) in enumerate(zip(args.rates, batches[1:], strict=True)):
        spy = None
        if args.profile_s > 0 and j == peak:
            raw = args.out / f"profile-{args.engine}.txt"
            spy = start_profile(pids[0], min(args.profile_s, args.duration_s), raw)
        db0 = cpu_by_pid(pids_named("postgres")) if args.engine == "postgresql" else {}
        sw0 = cpu_seconds(pids)
        lb0 = cpu_seconds([lb_pid]) if lb_pid is not None else 0.0
        outcomes, start, gen_cpu = asyncio.run(
            run_point(units, rate, target, args.connections, args.timeout_s))
        point = reduce(outcomes, rate, args.duration_s, start)
        wall = max(point.wall_s, 1e-9)
        point.gen_cpu_pct = 100 * gen_cpu / wall
        point.switch_cpu_pct = 100 * (cpu_seconds(pids) - sw0) / wall
        if lb_pid is not None:
            point.lb_cpu_pct = 100 * (cpu_seconds([lb_pid]) - lb0) / wall
        if args.engine == "postgresql":
            point.db_cpu_pct = 100 * cpu_used_since(db0, "postgres") / wall
        out(describe(point, args.timeout_s))
        points.append(point)
        if spy is not None:
            try:
                spy.wait(timeout=args.profile_s + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(timeout=5)
            raw = args.out / f"profile-{args.engine}.txt"
            if raw.exists():
                out(f"profile of switch pid {pids[0]} at {rate:g}/s offered ({raw}):")
                out("\n".join("    " + line for line in summarize_profile(raw)))
            else:
                out("profile: py-spy wrote nothing (ptrace not permitted?)")
        if not drain(edcs, ports):
            raise RuntimeError(f"the switch did not drain within {DRAIN_TIMEOUT_S:.0f} s")
    return points


# -- outputs ----------------------------------------------------------------------------

CSV_FIELDS = ["engine", "switches", "offered_per_s", "duration_s", "scheduled", "sent",
              "approved", "approved_per_s", "declined", "errors", "p50_ms", "p95_ms",
              "p99_ms", "max_ms", "late_sends", "gen_cpu_pct", "switch_cpu_pct",
              "db_cpu_pct"]


def write_csv_rows(path: Path, result: RunResult, switches: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for p in result.points:
            writer.writerow([result.engine, switches, p.rate, p.duration_s, p.scheduled, p.sent,
                             p.approved, f"{p.approved_per_s:.1f}", sum(p.declines.values()),
                             sum(p.errors.values()), f"{p.p50_ms:.2f}", f"{p.p95_ms:.2f}",
                             f"{p.p99_ms:.2f}", f"{p.max_ms:.2f}", p.late_sends,
                             f"{p.gen_cpu_pct:.0f}", f"{p.switch_cpu_pct:.0f}",
                             f"{p.db_cpu_pct:.0f}"])


def plot(out_dir: Path, timeout_s: float) -> Path | None:
    """Every ``sweep-*.csv`` in ``out_dir`` on one figure (both engines after both runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = sorted(out_dir.glob("sweep-*.csv"))
    if not sweeps:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=80)
    cap_ms = timeout_s * 1e3
    top = 0.0
    for n, path in enumerate(sweeps):
        color = f"C{n}"
        with path.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            continue
        label = f"{rows[0]['engine']} ({rows[0]['switches']} switch)" + \
            (" via HAProxy" if path.stem.endswith("-haproxy") else "")
        offered = [float(r["offered_per_s"]) for r in rows]
        achieved = [float(r["approved_per_s"]) for r in rows]
        top = max(top, *offered)
        left.plot(offered, achieved, "o-", color=color, label=label)
        for key, style in (("p50_ms", "o-"), ("p99_ms", "s--")):
            values = [min(float(r[key]), cap_ms) for r in rows]
            right.plot(achieved, values, style, color=color, label=f"{label} {key[:3]}")
    left.plot([0, top], [0, top], ":", color="grey", label="achieved = offered")
    left.set_xlabel("offered purchases/s")
    left.set_ylabel("approved purchases/s")
    left.set_title("throughput")
    left.legend(fontsize=8)
    right.set_yscale("log")
    right.axhline(50, color="red", linewidth=0.8, linestyle=":")
    right.text(0, 55, "issue-3 p99 target 50 ms", color="red", fontsize=7)
    right.set_xlabel("approved purchases/s achieved")
    right.set_ylabel(f"ms from scheduled send (log; {timeout_s:g} s = time-out)")
    right.set_title("latency vs throughput")
    right.legend(fontsize=7)
    fig.tight_layout()
    target = out_dir / "latency_vs_throughput.png"
    fig.savefig(target)
    plt.close(fig)
    return target


def markdown(args: Args, result: RunResult, command: str) -> list[str]:
    lines = [f"`{command}` ({date.today().isoformat()}, {os.cpu_count()} vCPU, "
             f"Python {platform.python_version()}, {args.switches} switch process(es)"
             f"{' behind HAProxy (one address)' if args.haproxy else ''}, "
             f"{args.terminals} terminals, {args.kpm} KPM, {args.connections} connections, "
             f"time-out {args.timeout_s:g} s):", "",
             "| offered/s | approved/s | p50 ms | p95 ms | p99 ms | declines | errors "
             f"| CPU gen / switch{' / haproxy' if args.haproxy else ''} / db |",
             "|---|---|---|---|---|---|---|---|"]
    for p in result.points:
        declines = ", ".join(f"{rc}×{n}" for rc, n in sorted(p.declines.items())) or "0"
        errors = ", ".join(f"{k}×{n}" for k, n in sorted(p.errors.items())) or "0"
        lines.append(
            f"| {p.rate:g} | {p.approved_per_s:.0f} | {fmt_ms(p.p50_ms, args.timeout_s)} | "
            f"{fmt_ms(p.p95_ms, args.timeout_s)} | {fmt_ms(p.p99_ms, args.timeout_s)} | "
            f"{declines} | {errors} | {p.gen_cpu_pct:.0f} / {p.switch_cpu_pct:.0f} / "
            + (f"{p.lb_cpu_pct:.0f} / " if args.haproxy else "")
            + f"{p.db_cpu_pct:.0f} % |")
    peak = max((p.approved_per_s for p in result.points), default=0.0)
    lines += ["", f"Peak: {peak:.0f} approved purchases/s. Money invariant: "
              f"{'holds' if result.invariants.ok else 'BROKEN'} "
              f"({result.invariants.approved_purchases} approved purchases in the ledger)."]
    if result.pgbench is not None:
        for label, tps in result.pgbench.tps.items():
            lines.append(f"pgbench TPC-B-like (`-i -s 10`, {label}, `-T "
                         f"{args.pgbench_seconds}`) on the same server after the sweep: "
                         f"{tps:.0f} tps; peak approved/s ÷ pgbench tps = {peak / tps:.2f}.")
    return lines


def parse_args(argv: list[str] | None) -> Args:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--kpm", type=int, default=10_000)
    parser.add_argument("--terminals", type=int, default=32)
    parser.add_argument("--switches", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0, help="offered purchases/s")
    parser.add_argument("--sweep", help="comma-separated rates, e.g. 50,100,200,400")
    parser.add_argument("--duration-s", type=float, default=60.0, help="per rate")
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--timeout-s", type=float, default=30.0,
                        help="terminal time-out from the scheduled send (HOST_SPEC §5)")
    parser.add_argument("--warmup", type=int, default=200, help="purchases, not reported")
    parser.add_argument("--pgbench", action=argparse.BooleanOptionalAction, default=True,
                        help="PostgreSQL: run pgbench on the same server (default on)")
    parser.add_argument("--pgbench-seconds", type=int, default=30)
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL", PG_BASE_URL),
                        help="server URL without database name")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--profile-s", type=float, default=0.0,
                        help="py-spy the (first) switch for this long at one rate")
    parser.add_argument("--profile-at", type=float, default=0.0,
                        help="the rate to profile at (default: the highest)")
    parser.add_argument("--max-total-s", type=float, default=3600.0,
                        help="abort (and clean up) after this long")
    parser.add_argument("--haproxy", action="store_true",
                        help="send the load to one HAProxy address in front of the "
                             "switches (loadtest/haproxy.py; needs haproxy installed)")
    ns = parser.parse_args(argv)
    rates = [float(r) for r in ns.sweep.split(",")] if ns.sweep else [ns.rate]
    if any(r <= 0 for r in rates) or ns.duration_s <= 0 or ns.switches < 1 \
            or ns.terminals < 1 or ns.kpm < 1 or ns.connections < 1:
        parser.error("rates, duration, switches, terminals, kpm, connections must be > 0")
    return Args(ns.engine, ns.kpm, ns.terminals, ns.switches, rates, ns.duration_s,
                ns.connections, ns.timeout_s, ns.warmup, ns.pgbench, ns.pgbench_seconds,
                ns.pg_url.rstrip("/"), ns.out, ns.profile_s, ns.profile_at, ns.max_total_s,
                ns.haproxy)


def _abort(_signum: int, _frame: FrameType | None) -> None:
    raise BenchAborted("--max-total-s ran out")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m loadtest.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGALRM, _abort)
    signal.alarm(max(1, int(args.max_total_s)))
    try:
        result = run(args)
    except BenchAborted as exc:
        print(f"bench ABORTED: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    name = "sweep" if len(args.rates) > 1 else "rate"
    csv_path = args.out / f"{name}-{args.engine}{'-haproxy' if args.haproxy else ''}.csv"
    write_csv_rows(csv_path, result, args.switches)
    png = plot(args.out, args.timeout_s)
    print(f"\nCSV: {csv_path}" + (f"; plot: {png}" if png else ""))
    print("\n---- for docs/BENCHMARKS.md ----")
    print("\n".join(markdown(args, result, command)))
    print("---- end ----")
    if not result.invariants.ok:
        print("bench FAILED: the money invariant does not hold", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
