"""Purchases over a noisy serial line at a real baud rate, and the money checked after.

``python -m terminal_sim.serial_noise --baud 9600 --corruption 0.0005 --purchases 100``

A fresh SQLite world; ``bpnt-switch serve --no-tcp --serial PTY`` as a separate
process on one end of a :class:`~terminal_sim.links.cable.NoisyCable` and an EDC on
the other.  The cable carries each direction at ``baud`` (8N1: 960 bytes/s at 9600)
and flips one bit of each byte with probability ``corruption``.

The EDC logs on while the line is clean, then makes ``purchases`` purchases over the
noisy line, cycling over the world's cards.  A purchase that fails must fail cleanly:
``TIME-OUT``, the EDC idle, its reversal pending (the link went down: no ACK after 3
retransmissions; or no response in time).  The line then recovers (corruption 0), the
reversal is delivered, and the noise comes back for the next purchase.  At the end:
no reversal pending, ``check_invariants`` holds, and every card's wallet is the period
allocation less exactly its approved purchases (each approval one debit, each failed
purchase net zero, debited and reversed or never debited).

:func:`run_serial_noise` returns a :class:`NoiseReport` (its ``verdict()`` is what the
command prints) for chaos harnesses and tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from card_emulator.card import KksCard
from card_emulator.profile import profile_for
from switch.admin.demo import PRICES_SEN, DemoCard, build_world, seed_database
from switch.clock import SystemClock
from switch.db.engine import Database
from switch.db.schema import open_database
from switch.db.tables import Account, Card, Kpm
from switch.ledger.invariants import check_invariants
from switch.ledger.postings import allocate_period
from switch.protocol.bpnt import BasketLine
from switch.protocol.serial_framing import LineStats
from switch.security.keyring import Keyring
from switch.security.keys import pan_token
from switch.settings import Settings
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.demo import stop_switch
from terminal_sim.edc import Edc, EdcConfig, State, TxnResult
from terminal_sim.links.cable import Direction, NoisyCable
from terminal_sim.links.pty import open_terminal_port
from terminal_sim.links.serial import SerialLink

BASKET = (BasketLine("SYR001", 1, PRICES_SEN["SYR001"]),)
#: Rounds of ``send_pending_reversal`` (3 attempts each) on the recovered line.
RECOVERY_ROUNDS = 3
#: Seconds for ``bpnt-switch serve`` to open its end of the cable.
SWITCH_READY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Outcome:
    """One purchase as the EDC ended it, and what became of its reversal."""

    number: int
    card_index: int
    result: TxnResult
    #: ``approved``, ``declined``, ``link down`` (request never ACKed), ``no response``
    #: (or an unreadable one), or ``refused`` (never sent: its logon failed).
    ending: str
    #: The EDC was idle with a reversal pending after a failure (``None``: no failure).
    clean: bool | None = None
    reversal_delivered: bool | None = None


@dataclass
class NoiseReport:
    baud: int
    corruption: float
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    terminal_line: LineStats = field(default_factory=LineStats)
    #: "serial link down" in the switch's log: responses it gave up retransmitting.
    switch_links_down: int = 0
    to_switch: Direction = field(default_factory=lambda: Direction("terminal → switch"))
    to_terminal: Direction = field(default_factory=lambda: Direction("switch → terminal"))
    pending_at_end: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def bytes_carried(self) -> int:
        return self.to_switch.bytes_carried + self.to_terminal.bytes_carried

    @property
    def bytes_corrupted(self) -> int:
        return self.to_switch.bytes_corrupted + self.to_terminal.bytes_corrupted

    @property
    def endings(self) -> Counter[str]:
        return Counter(o.ending for o in self.outcomes)

    @property
    def declines(self) -> Counter[str]:
        """Declined purchases by response code (63: a frame the LRC let through damaged,
        refused by the MAC)."""
        return Counter(o.result.rc or "" for o in self.outcomes if o.ending == "declined")

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.clean is not None]

    @property
    def passed(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        endings = self.endings
        failed = self.failed
        lines = [
            f"serial at {self.baud} baud, byte corruption {self.corruption:.4%}: "
            f"{len(self.outcomes)} purchases in {self.elapsed_s:.1f} s: "
            f"{endings['approved']} approved, {endings['declined']} declined"
            + (f" (RC {', '.join(f'{rc} x{n}' for rc, n in sorted(self.declines.items()))})"
               if self.declines else "") + ", "
            f"{endings['link down']} link down, {endings['no response']} no response, "
            f"{endings['refused']} refused",
            f"  failed cleanly (TIME-OUT, EDC idle, reversal pending): "
            f"{sum(1 for o in failed if o.clean)}/{len(failed)}; reversal delivered on "
            f"the recovered line: {sum(1 for o in failed if o.reversal_delivered)}"
            f"/{len(failed)}; pending at the end: {'yes' if self.pending_at_end else 'no'}",
            f"  line: {self.bytes_carried} bytes carried, {self.bytes_corrupted} corrupted "
            f"({self.to_switch.bytes_corrupted} of {self.to_switch.bytes_carried} to the "
            f"switch, {self.to_terminal.bytes_corrupted} of "
            f"{self.to_terminal.bytes_carried} to the terminal); terminal: "
            f"{self.terminal_line.naks_received} NAKs received, "
            f"{self.terminal_line.bad_frames} frames NAKed, "
            f"{self.terminal_line.retransmits} retransmissions, "
            f"{self.terminal_line.implicit_acks} implicit ACKs, "
            f"{self.terminal_line.links_down} links down; switch: "
            f"{self.switch_links_down} links down",
        ]
        if self.problems:
            lines += [f"  PROBLEM: {p}" for p in self.problems]
            lines.append("FAIL")
        else:
            lines.append("PASS: invariants hold; each approval one debit, each failed "
                         "purchase net zero")
        return "\n".join(lines)


def wallet_balance_sen(db: Database, keys: Keyring, pan: str) -> int:
    with db.transaction() as session:
        balance = session.scalar(
            select(Account.balance_sen)
            .join(Kpm, Kpm.wallet_account_id == Account.id)
            .join(Card, Card.kpm_id == Kpm.id)
            .where(Card.pan_token == pan_token(keys.pan_token_key, pan)))
    assert balance is not None, "card not in the ledger"
    return int(balance)


def run_serial_noise(*, baud: int = 9600, corruption: float = 0.0005, purchases: int = 100,
                     seed: int = 1, timeout_s: float = 10.0, cards: int = 12,
                     workdir: Path | None = None,
                     progress: Callable[[str], None] | None = None) -> NoiseReport:
    """Run the line (see the module docstring); ``workdir`` keeps the SQLite file."""
    with tempfile.TemporaryDirectory(prefix="serial-noise-") as scratch:
        directory = workdir or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        return _run(directory / "serial-noise.db", baud, corruption, purchases, seed,
                    timeout_s, cards, progress or (lambda _line: None))


def _run(db_path: Path, baud: int, corruption: float, purchases: int, seed: int,
         timeout_s: float, card_count: int, progress: Callable[[str], None]) -> NoiseReport:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    db_url = f"sqlite:///{db_path}"
    settings = Settings(database_url=db_url)
    keys = Keyring.from_settings(settings)
    db = open_database(db_url)
    world = build_world(kpm_count=card_count, terminal_count=1)
    seed_database(db, keys, world)
    allocate_period(db, SystemClock().now().strftime("%Y-%m"), settings.period_amount_sen)
    cards = world.cards_labelled("ok")[:card_count]
    report = NoiseReport(baud, corruption)
    cable = NoisyCable(baud=baud, seed=seed).start()
    log_path = db_path.with_suffix(".switch.log")
    try:
        switch = _start_switch(db_url, cable.switch_path, baud, log_path)
        try:
            link = SerialLink(open_terminal_port(cable.terminal_path, baud))
            terminal = next(t for t in world.terminals if t.label == "ok")
            screen: list[str] = []
            edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=timeout_s),
                      link, EmulatedReader(), on_screen=screen.append)
            try:
                started = time.monotonic()
                if not edc.ensure_logged_on():
                    report.problems.append("no logon on the clean line")
                else:
                    _purchases(edc, cards, keys, cable, corruption, purchases, screen,
                               report, progress)
                cable.byte_error_rate = 0.0
                report.pending_at_end = not _recover(edc)
                report.elapsed_s = time.monotonic() - started
            finally:
                link.close()
            report.terminal_line = link.channel.connection.stats
        finally:
            stop_switch(switch)
        report.switch_links_down = log_path.read_text(errors="replace").count(
            "serial link down")
    finally:
        cable.close()
    report.to_switch, report.to_terminal = cable.to_switch, cable.to_terminal
    _check_money(db, keys, cards, report, settings.period_amount_sen)
    db.dispose()
    return report


def _start_switch(db_url: str, serial_path: str, baud: int,
                  log_path: Path) -> subprocess.Popen[bytes]:
    """``bpnt-switch serve`` on the cable's switch end, once it listens there."""
    env = dict(os.environ, BPNT_DATABASE_URL=db_url, BPNT_METRICS_PORT="0")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "serve", "--no-tcp", "--serial", serial_path,
             "--serial-baud", str(baud)], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + SWITCH_READY_TIMEOUT_S
    while "serial listener on" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_switch(proc)
            raise RuntimeError(f"the switch did not start on {serial_path}: "
                               f"{log_path.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)  # polling its log for the readiness line, bounded above
    return proc




def _purchases(edc: Edc, cards: Sequence[DemoCard], keys: Keyring,
               cable: NoisyCable, corruption: float, purchases: int,
               screen: list[str], report: NoiseReport,
               progress: Callable[[str], None]) -> None:
    kks = [KksCard(profile_for(c.pan, c.psn, c.expiry_yymm, keys.imk_ac)) for c in cards]
    reader = edc.reader
    assert isinstance(reader, EmulatedReader)
    for number in range(1, purchases + 1):
        card_index = (number - 1) % len(cards)
        reader.swap(kks[card_index])
        cable.byte_error_rate = corruption
        shown, sent_before = len(screen), edc.last_request
        try:
            result = edc.purchase(BASKET, cards[card_index].pin)
        except Exception as exc:  # not a clean ending: say so, and go on
            report.problems.append(f"purchase {number}: the EDC raised "
                                   f"{type(exc).__name__}: {exc}")
            edc.state = State.IDLE
            result = TxnResult("purchase", None, f"EDC ERROR {type(exc).__name__}")
        sent = edc.last_request is not sent_before
        ending = _ending(result, screen[shown:]) if sent else "refused"
        outcome = Outcome(number, card_index, result, ending)
        if sent and not result.approved and result.rc is None:
            clean = result.timed_out and edc.state is State.IDLE \
                and edc.pending_reversal is not None
            cable.byte_error_rate = 0.0  # the line recovers
            delivered = _recover(edc)
            outcome = Outcome(number, card_index, result, ending, clean, delivered)
            if not clean:
                report.problems.append(f"purchase {number} did not fail cleanly: "
                                       f"{result.display}, EDC {edc.state.value}")
            if not delivered:
                report.problems.append(f"purchase {number}: reversal not delivered on the "
                                       "recovered line")
        elif edc.pending_reversal is not None:
            report.problems.append(f"purchase {number} ({ending}) left a reversal pending")
        report.outcomes.append(outcome)
        progress(f"purchase {number}: {ending}"
                 + (f", reversal delivered: {outcome.reversal_delivered}"
                    if outcome.clean is not None else ""))


def _ending(result: TxnResult, shown: Sequence[str]) -> str:
    """How a purchase that was sent ended."""
    if result.approved:
        return "approved"
    if result.rc is not None:
        return "declined"
    if any("serial link down" in line for line in shown):
        return "link down"
    return "no response"


def _recover(edc: Edc) -> bool:
    """Deliver the pending reversal on a clean line (bounded); True when none is left.

    Bytes damaged before the line recovered may still sit in a deframer and cost the
    first attempts (a NAK, a stale frame): HOST_SPEC §4 repeats until answered."""
    for _ in range(RECOVERY_ROUNDS):
        if edc.send_pending_reversal():
            return True
    return edc.pending_reversal is None


def _check_money(db: Database, keys: Keyring, cards: Sequence[DemoCard],
                 report: NoiseReport, period_sen: int) -> None:
    invariants = check_invariants(db)
    if not invariants.ok:
        report.problems.append(f"invariants: {invariants.summary()}")
    if report.pending_at_end:
        report.problems.append("a reversal is still pending at the end")
    approved_sen: Counter[int] = Counter()
    for outcome in report.outcomes:
        if outcome.result.approved:
            approved_sen[outcome.card_index] += outcome.result.amount_sen
    for index, card in enumerate(cards):
        expected = period_sen - approved_sen[index]
        balance = wallet_balance_sen(db, keys, card.pan)
        if balance != expected:
            report.problems.append(f"card {index}: wallet {balance} sen, expected "
                                   f"{expected} (period less its approved purchases)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m terminal_sim.serial_noise",
        description="Purchases over a noisy serial line at a real baud rate; the verdict.")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--corruption", type=float, default=0.0005,
                        help="probability that a byte has a bit flipped, each way")
    parser.add_argument("--purchases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=10.0,
                        help="the EDC's response timeout")
    parser.add_argument("--cards", type=int, default=12)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the SQLite database here (default: a temporary directory)")
    parser.add_argument("-v", "--verbose", action="store_true", help="each purchase's ending")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    report = run_serial_noise(baud=args.baud, corruption=args.corruption,
                              purchases=args.purchases, seed=args.seed,
                              timeout_s=args.timeout_s, cards=args.cards,
                              workdir=args.workdir,
                              progress=print if args.verbose else None)
    print(report.verdict())
    return 0 if report.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
