"""Fuzz a live switch with hostile inputs (issue 4): ``make fuzz`` / ``python -m loadtest.fuzz``.

Starts ``bpnt-switch serve`` on a fresh SQLite demo database on loopback, logs
on as a real terminal (to MAC structured mutations), then sends N hostile inputs
from several connections.  Every input must get a response or a closed
connection within the hang bound; the switch must stay alive (an echo on a fresh
connection every ``--probe-every`` inputs), its memory must not grow without
bound, and afterwards the money invariant and the audit chain must hold.
Exit 0 only if there were zero crashes and zero hangs.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.mutations import Hostile, Mutator, frame
from switch.admin.demo import build_world, seed_database
from switch.db.audit import verify
from switch.db.schema import open_database
from switch.ledger.invariants import check_invariants
from switch.ledger.postings import allocate_period
from switch.protocol.message import Message, decode
from switch.protocol.unit import TPDU_LEN, Tpdu, decode_unit
from switch.security.keyring import Keyring
from switch.settings import load_settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.demo import free_port, fresh_sqlite, start_switch, stop_switch
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import TcpLink
from terminal_sim.world import SimWorld

CORPUS_DIR = Path(__file__).parent / "fuzz_corpus"
PARTIAL_FRAME_TIMEOUT_S = 1.0
HANG_BOUND_S = PARTIAL_FRAME_TIMEOUT_S + 4.0
MAX_RSS_GROWTH_KIB = 64 * 1024


@dataclass
class Stats:
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    hangs: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.kinds[kind] += 1
            self.outcomes[outcome] += 1


class Recorder:
    """A link that keeps every request unit it carries (to build the corpus)."""

    def __init__(self, inner: TcpLink) -> None:
        self.inner = inner
        self.units: list[bytes] = []

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        self.units.append(unit)
        return self.inner.exchange(unit, timeout_s)

    def close(self) -> None:
        self.inner.close()


def record_corpus(sim: SimWorld) -> list[bytes]:
    """Real requests of every kind, from a real EDC with a real card."""
    from terminal_sim.scenarios import RICE, Scenarios

    runner = Scenarios(sim)
    edc = sim.edc(runner.terminal)
    recorder = Recorder(edc.link)  # type: ignore[arg-type]
    edc.link = recorder
    card = sim.take_spare_card()
    sim.insert(edc, card)
    edc.echo()
    edc.balance_inquiry(card.pin)
    edc.purchase([RICE], card.pin)
    sim.faults(runner.terminal).drop_responses = 1
    edc.link = recorder.inner  # the fault lives on the FaultyLink underneath
    edc.purchase([RICE], card.pin)
    edc.link = recorder
    edc.balance_inquiry(card.pin)  # sends the pending 0400 first
    return recorder.units


def load_corpus() -> list[Message]:
    return [decode(bytes.fromhex(p.read_text().strip())[TPDU_LEN:])
            for p in sorted(CORPUS_DIR.glob("*.hex"))]


def write_corpus(units: list[bytes]) -> None:
    CORPUS_DIR.mkdir(exist_ok=True)
    for n, unit in enumerate(units):
        (CORPUS_DIR / f"seed-{n:02d}-{unit[TPDU_LEN:TPDU_LEN + 2].hex()}.hex").write_text(
            unit.hex() + "\n")


def _read_exact(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def send_one(sock: socket.socket, hostile: Hostile) -> str:
    """``rc:NN``, ``closed``, ``hang`` or ``bad-response``."""
    sock.settimeout(HANG_BOUND_S)
    try:
        sock.sendall(hostile.stream)
        header = _read_exact(sock, 2)
        if header is None:
            return "closed"
        body = _read_exact(sock, int.from_bytes(header, "big"))
    except TimeoutError:
        return "hang"
    except OSError:
        return "closed"
    if body is None:
        return "closed"
    try:
        return f"rc:{decode_unit(body).message.opt_text(39)}"
    except Exception:  # noqa: BLE001 - any undecodable answer is a finding
        return "bad-response"


def worker(port: int, mutator: Mutator, count: int, stats: Stats) -> None:
    sock: socket.socket | None = None
    for _ in range(count):
        hostile = mutator.next()
        if sock is None or hostile.fresh_connection:
            if sock is not None:
                sock.close()
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        outcome = send_one(sock, hostile)
        if outcome == "hang":
            stats.hangs.append(f"{hostile.kind} {hostile.stream.hex()}")
        if outcome == "bad-response":
            stats.bad_responses.append(f"{hostile.kind} {hostile.stream.hex()}")
        stats.add(hostile.kind, outcome)
        if outcome in ("closed", "hang") or hostile.fresh_connection:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def probe(port: int) -> bool:
    """The switch answers a clean echo on a fresh connection."""
    echo = Message("0800", {3: "990000", 11: "000001", 24: "001", 41: "EDC00001"})
    from switch.protocol.message import encode

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            return send_one(sock, Hostile("probe", frame(Tpdu().to_bytes() + encode(echo)))) \
                == "rc:00"
    except OSError:
        return False


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(inputs: int, workers: int, seed: int, workdir: Path, rerecord: bool) -> int:
    settings = load_settings()
    keys = Keyring.from_settings(settings)
    world = build_world(kpm_count=50)
    db_url = fresh_sqlite(workdir / "fuzz.db")
    db = open_database(db_url, sqlite_synchronous="NORMAL")
    seed_database(db, keys, world)
    allocate_period(db, "2026-11", settings.period_amount_sen)
    port = free_port()
    proc = start_switch(db_url, port, workdir / "fuzz-switch.log", {
        "BPNT_PARTIAL_FRAME_TIMEOUT_S": str(PARTIAL_FRAME_TIMEOUT_S),
        "BPNT_IDLE_TIMEOUT_S": "30"})
    sim = SimWorld(world, keys.imk_ac, "127.0.0.1", port, timeout_s=5.0)
    stats = Stats()
    alive = True
    try:
        if rerecord or not list(CORPUS_DIR.glob("*.hex")):
            write_corpus(record_corpus(sim))
        terminal = sim.world.terminals[0]
        edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk), TcpLink("127.0.0.1", port),
                  EmulatedReader())
        assert edc.ensure_logged_on(), "fuzzer could not log on"
        tak = edc._tak  # the fuzzer is the terminal: it holds the working key
        assert tak is not None
        seeds = load_corpus()
        started = time.monotonic()
        rss_start = rss_kib(proc.pid)
        per_round = max(1, min(2000, inputs // 10))
        done = 0
        while done < inputs and alive:
            batch = min(per_round, inputs - done)
            threads = [threading.Thread(target=worker, args=(
                port, Mutator(seeds, tak, Tpdu().to_bytes(), seed + done + i), batch // workers,
                stats)) for i in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(600)
            done += (batch // workers) * workers
            alive = proc.poll() is None and probe(port)
            print(f"  {done:7} inputs, {time.monotonic() - started:6.1f} s, switch "
                  f"{'alive' if alive else 'DEAD'}, rss {rss_kib(proc.pid) // 1024} MiB",
                  flush=True)
        elapsed_s = time.monotonic() - started
        rss_end = rss_kib(proc.pid) if proc.poll() is None else 0
        edc.link.close()
    finally:
        sim.close()
        crashed = proc.poll() is not None
        stop_switch(proc)
    report = check_invariants(db)
    with db.transaction() as session:
        audit = verify(session, keys.audit_key)
    growth_kib = rss_end - rss_start
    print(f"\nfuzz: {sum(stats.outcomes.values())} hostile inputs in {elapsed_s:.1f} s "
          f"({sum(stats.outcomes.values()) / elapsed_s:.0f}/s) with {workers} connections")
    for outcome, count in stats.outcomes.most_common():
        print(f"  {outcome:14} {count:7}")
    print("by mutation: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.kinds.items())))
    print(f"switch RSS {rss_start // 1024} -> {rss_end // 1024} MiB (growth {growth_kib} KiB)")
    print(report.summary())
    print(audit.summary())
    failures = []
    if crashed or not alive:
        failures.append("the switch died or stopped answering")
    if stats.hangs:
        failures.append(f"{len(stats.hangs)} hangs, first: {stats.hangs[0][:200]}")
    if stats.bad_responses:
        failures.append(f"{len(stats.bad_responses)} undecodable responses")
    if growth_kib > MAX_RSS_GROWTH_KIB:
        failures.append(f"memory grew {growth_kib} KiB")
    if not report.ok or not audit.ok:
        failures.append("money invariant or audit chain broken")
    print("VERDICT: " + ("zero crashes, zero hangs" if not failures else "; ".join(failures)))
    return 0 if not failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.fuzz", description=__doc__)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=8583)
    parser.add_argument("--workdir", default="var")
    parser.add_argument("--record-corpus", action="store_true",
                        help="re-record loadtest/fuzz_corpus from a real EDC first")
    args = parser.parse_args(argv)
    return run(args.inputs, args.workers, args.seed, Path(args.workdir), args.record_corpus)


if __name__ == "__main__":
    sys.exit(main())
