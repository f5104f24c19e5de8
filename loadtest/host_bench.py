"""Baseline: approved purchases per second through ``HostService`` in process.

    python -m loadtest.host_bench --requests 2000 [--batch 64] [--engine postgresql]

No network and no load generator in the measured loop: requests are built first
(real EDC, real card ARQC, PIN block, MAC), then handed one by one to the host on
a fresh seeded SQLite database (or, with ``--engine postgresql``, a fresh
PostgreSQL database on ``--pg-url``, dropped afterwards), ``--batch`` at a time through
``HostService.process_batch`` (group commit: one transaction per batch; ``--batch
1`` is one transaction per request).  It measures the host's own cost (codec,
gate, crypto, SQL, commit) — the floor under any TCP figure.  A request's
latency is its whole batch's time.  The open-loop TCP bench is ``loadtest.bench``.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from loadtest.bench import PG_BASE_URL, _pg_admin_exec
from switch.admin.demo import build_world, seed_database
from switch.db.schema import open_database
from switch.host.service import HostService
from switch.ledger.postings import allocate_period
from switch.protocol.bpnt import BasketLine
from switch.protocol.unit import TPDU_LEN, decode_unit
from switch.security.keyring import Keyring
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink

TEMPE = BasketLine("TMP001", 1, 500_000)


@contextmanager
def _database_url(engine: str, pg_url: str) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{Path(tempfile.mkdtemp(prefix='bpnt-bench-')) / 'bench.db'}"
        return
    name = f"bpnt_host_bench_{secrets.token_hex(4)}"
    _pg_admin_exec(pg_url, f"CREATE DATABASE {name}")
    try:
        yield f"{pg_url.rstrip('/')}/{name}"
    finally:
        _pg_admin_exec(pg_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run(requests: int, kpm: int, synchronous: str, batch: int = 1, engine: str = "sqlite",
        pg_url: str = PG_BASE_URL) -> int:
    with _database_url(engine, pg_url) as url:
        return _run(url, requests, kpm, synchronous, batch)


def _run(url: str, requests: int, kpm: int, synchronous: str, batch: int) -> int:
    settings = Settings(database_url=url)
    keys = Keyring.from_settings(settings)
    db = open_database(settings.database_url, sqlite_synchronous=synchronous)
    world = build_world(kpm_count=kpm, terminal_count=2)
    seed_database(db, keys, world)
    allocate_period(db, "2026-11", settings.period_amount_sen)
    host = HostService(db, settings)
    terminal = world.terminals[0]
    reader = EmulatedReader()
    edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk),
              DirectLink(host.process_unit), reader)
    assert edc.ensure_logged_on()
    cards = world.cards_labelled("ok")
    emulated = {c.pan: KksCard(profile_for(c.pan, c.psn, c.expiry_yymm, keys.imk_ac))
                for c in cards}
    built = time.perf_counter()
    units = []
    for n in range(requests):
        card = cards[n % len(cards)]
        reader.swap(emulated[card.pan])
        units.append(edc.prepare_purchase([TEMPE], card.pin))
    build_s = time.perf_counter() - built
    latencies_ms, approved = [], 0
    started = time.perf_counter()
    for first in range(0, len(units), batch):
        t0 = time.perf_counter()
        answers = host.process_batch(units[first:first + batch])
        batch_ms = (time.perf_counter() - t0) * 1e3
        for answer in answers:
            assert answer is not None and answer[TPDU_LEN:]
            latencies_ms.append(batch_ms)  # each request waits for its whole batch
            approved += decode_unit(answer).message.opt_text(39) == "00"
    elapsed_s = time.perf_counter() - started
    cuts = statistics.quantiles(latencies_ms, n=100)
    engine = "SQLite synchronous=" + synchronous if url.startswith("sqlite") else "PostgreSQL"
    print(f"host_bench: {requests} purchases on {kpm} KPM, {engine}, "
          f"batches of {batch}, "
          f"Python {platform.python_version()}, {platform.processor() or platform.machine()}")
    print(f"  built in {build_s:.1f} s ({build_s / requests * 1e3:.2f} ms each, not measured)")
    print(f"  {approved} approved in {elapsed_s:.2f} s = {approved / elapsed_s:.0f} approved/s; "
          f"batch latency p50 {cuts[49]:.2f} ms, p95 {cuts[94]:.2f} ms, p99 {cuts[98]:.2f} ms")
    return 0 if approved == requests else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.host_bench", description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--kpm", type=int, default=500)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--batch", type=int, default=64,
                        help="requests per transaction (group commit; the switch default)")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("BPNT_BENCH_PG_URL", PG_BASE_URL),
                        help="PostgreSQL server URL without a database name")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    return run(args.requests, args.kpm, args.synchronous, args.batch, args.engine, args.pg_url)


if __name__ == "__main__":
    sys.exit(main())
