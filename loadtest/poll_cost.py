"""What one dashboard poll costs the console process per new record (no switch, no
load generator: a few seconds of one core).

    python -m loadtest.poll_cost [--records 20000 --rounds 3 --history 100000 --regions
                                  --engines sqlite,postgresql
                                  --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

For each engine: a fresh database (SQLite: a temporary file; PostgreSQL: a new database
on ``--pg-url``'s server, dropped afterwards) seeded with the demo world
(``switch.admin.demo``: ``--terminals`` terminals at half as many e-warongs, ``--kpm``
KPM with cards; the demo e-warongs have no region, so every record's region comes from
its card's NIK; ``--regions`` gives each e-warong a regency code instead), then
``--history`` records created two hours ago (a poll reads the tail of a big table, as
in production; PostgreSQL then runs ``ANALYZE``), and a
:class:`console.live.poller.Poller` that has done its start-up back-fill.

Then ``--rounds`` times: ``--records`` new ``request_records`` are written straight to
the table (not timed) as a saturated switch writes them (created over the last
``records / 1250`` seconds; 94 % purchases, of which 4 % declined 51 or 55; 2 %
balance inquiries; 3 % reversals of a recent purchase, 1 % with no original), and one
``poll_once`` reads them, timed: the console process's CPU (``time.process_time``),
the wall time and, on PostgreSQL, the CPU of the database's backends (``/proc``; 10 ms
ticks).  A last poll with nothing new gives a poll's fixed cost.  It prints the median
of the rounds, per poll and per record.

It uses only ``Poller(db, clock=..., metrics_urls=[])`` and ``poll_once()``, so the same
script measures any version of the console: run it in each checkout (``PYTHONPATH``)
one after the other.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import String, create_engine, func, insert, select, text, update
from sqlalchemy.engine import make_url

from console.live.poller import Poller
from switch.admin.demo import build_world, seed_database
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.tables import Card, Ewarong, RequestRecord, Terminal
from switch.security.keyring import Keyring
from switch.settings import Settings

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SWITCH_RATE_PER_S = 1250
INSERT_CHUNK = 2000


@dataclass(frozen=True)
class Cost:
    records: int
    cpu_s: float
    wall_s: float
    backend_cpu_s: float | None

    def line(self, label: str) -> str:
        per = (f"{self.cpu_s / self.records * 1e6:7.1f} µs CPU/record"
               if self.records else "")
        backend = "" if self.backend_cpu_s is None else \
            f", PostgreSQL backends {self.backend_cpu_s * 1e3:7.1f} ms"
        return (f"  {label:<22} {self.records:6d} records: console CPU "
                f"{self.cpu_s * 1e3:7.1f} ms/poll {per}; wall {self.wall_s * 1e3:7.1f} ms"
                f"{backend}")


@contextmanager
def fresh_database(engine_name: str, pg_url: str) -> Iterator[str]:
    if engine_name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="poll-cost-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'host.db'}"
        return
    name = f"bpnt_poll_cost_{secrets.token_hex(4)}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def backend_cpu(db: Database) -> Callable[[], float] | None:
    """On PostgreSQL: a reader of the CPU seconds of this database's backends so far
    (``None`` elsewhere, or where /proc does not show them)."""
    if db.engine.dialect.name != "postgresql":
        return None
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        with db.engine.connect() as conn:
            pids = list(conn.scalars(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")))
        total = 0.0
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    try:
        read()
    except OSError:
        return None
    return read


class Writer:
    """New records as a saturated switch writes them (module docstring)."""

    def __init__(self, db: Database, seed: int = 16) -> None:
        self.db = db
        self.rng = random.Random(seed)
        with db.engine.connect() as conn:
            self.tids = list(conn.scalars(select(Terminal.tid).where(
                Terminal.status == "active").order_by(Terminal.tid)))
            self.cards = list(conn.scalars(select(Card.id).order_by(Card.id)))
        self.stan = 0
        self.purchases: list[int] = []

    def write(self, count: int, end: datetime) -> None:
        start = end - timedelta(seconds=count / SWITCH_RATE_PER_S)
        with self.db.engine.begin() as conn:
            next_id = int(conn.scalar(select(func.max(RequestRecord.id))) or 0) + 1
            rows = []
            for i in range(count):
                rows.append(self._row(next_id + i, start + (end - start) * i / count))
                if len(rows) == INSERT_CHUNK:
                    conn.execute(insert(RequestRecord), rows)
                    rows = []
            if rows:
                conn.execute(insert(RequestRecord), rows)

    def _row(self, record_id: int, at: datetime) -> dict[str, object]:
        self.stan = self.stan % 999_999 + 1
        roll = self.rng.random()
        kind, code, rc, mti, card, original = "request", "000000", "00", "0210", \
            self.rng.choice(self.cards), None
        if roll < 0.04:
            rc = self.rng.choice(("51", "55"))
        elif roll < 0.06:
            code = "310000"
        elif roll < 0.10:
            kind, mti, card = "reversal", "0410", None
            if roll < 0.09 and self.purchases:
                original = self.rng.choice(self.purchases[-500:])
        if kind == "request" and code == "000000" and rc == "00":
            self.purchases.append(record_id)
        return {"id": record_id, "tid": self.rng.choice(self.tids), "local_date": "1123",
                "key_date": at.strftime("%Y%m%d"), "stan": f"{self.stan:06d}", "kind": kind,
                "mti": mti, "processing_code": code, "amount_sen": 6_500_000,
                "request_hash": "0" * 64, "response_code": rc, "response_unit": b"\0" * 80,
                "card_id": card, "original_record_id": original,
                "created_at": at.astimezone(UTC)}


def measure(db: Database, poller: Poller, backends: Callable[[], float] | None,
            records: int) -> Cost:
    before_backends = backends() if backends else None
    wall, cpu = time.perf_counter(), time.process_time()
    poller.poll_once()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    backend = None if backends is None or before_backends is None \
        else backends() - before_backends
    if poller.state.database_error:
        raise RuntimeError(poller.state.database_error)
    return Cost(records, cpu, wall, backend)


def run_engine(engine_name: str, args: argparse.Namespace) -> None:
    with fresh_database(engine_name, args.pg_url) as url:
        settings = Settings(database_url=url)
        db = open_database(url)
        try:
            seed_database(db, Keyring.from_settings(settings),
                          build_world(kpm_count=args.kpm, terminal_count=args.terminals),
                          stock_units=0)
            if args.regions:
                with db.engine.begin() as conn:
                    conn.execute(update(Ewarong).values(
                        region=func.substr("3201" + func.cast(Ewarong.id, String), 1, 6)))
            writer, backends = Writer(db), backend_cpu(db)
            if args.history:
                writer.write(args.history, datetime.now(UTC) - timedelta(hours=2))
                if db.engine.dialect.name == "postgresql":
                    with db.engine.connect().execution_options(
                            isolation_level="AUTOCOMMIT") as conn:
                        conn.execute(text("ANALYZE"))
            poller = Poller(db, clock=lambda: datetime.now(UTC), metrics_urls=[])
            poller.poll_once()  # the start-up back-fill (nothing in the last hour)
            costs = []
            for _ in range(args.rounds):
                writer.write(args.records, datetime.now(UTC))
                costs.append(measure(db, poller, backends, args.records))
            idle = measure(db, poller, backends, 0)
        finally:
            db.dispose()
    median = Cost(args.records, statistics.median(c.cpu_s for c in costs),
                  statistics.median(c.wall_s for c in costs),
                  None if costs[0].backend_cpu_s is None
                  else statistics.median(c.backend_cpu_s or 0.0 for c in costs))
    print(f"{engine_name}: median of {args.rounds} polls ({args.history} older records, "
          f"e-warong regions: {'yes' if args.regions else 'none, the NIK decides'})")
    print(median.line("new records"))
    print(idle.line("nothing new"))
    for n, cost in enumerate(costs, start=1):
        print(cost.line(f"  round {n}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--terminals", type=int, default=32)
    parser.add_argument("--kpm", type=int, default=200)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--regions", action="store_true")
    args = parser.parse_args(argv)
    if args.records < 1 or args.rounds < 1:
        parser.error("--records and --rounds must be at least 1")
    for engine_name in args.engines.split(","):
        run_engine(engine_name.strip(), args)


if __name__ == "__main__":
    main()
