"""Group commit and a crash (issue 3; FAILURES F14): ``kill -9`` of a real
``bpnt-switch serve`` in the middle of traffic loses no approval a terminal saw.

Answers leave only after their batch commits, so every approval received before
the kill must be in the ledger afterwards, with its debit; what was in flight is
simply not there (the terminals time out and reverse; nothing to restore).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from switch.db.tables import RequestRecord, Transfer
from switch.ledger.invariants import check_invariants
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.unit import decode_unit
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.demo import free_port, start_switch
from terminal_sim.link import LinkDown, TcpLink
from tests.postgres.world import seed

TEMPE = BasketLine("TMP001", 1, 500_000)
APPROVALS_BEFORE_KILL = 60
#: Each terminal stops by itself after this many purchases (a bound).
MAX_PER_TERMINAL = 200
TIMEOUT_S = 10.0

pytestmark = pytest.mark.slow

Key = tuple[str, str, str]


def test_kill_9_mid_traffic_loses_no_acknowledged_approval(tmp_path: Path) -> None:
    world = seed(f"sqlite:///{tmp_path / 'crash.db'}")
    port = free_port()
    proc = start_switch(world.url, port, tmp_path / "switch.log",
                        {"BPNT_GROUP_COMMIT_MAX_DELAY_MS": "2"})
    approved: list[Key] = []
    enough = threading.Event()
    lock = threading.Lock()

    def terminal(index: int) -> None:
        link = TcpLink("127.0.0.1", port)
        cards = [world.card(index=index * 5 + n) for n in range(5)]
        edc = world.edc(link, cards[0], world.terminal(index))
        reader = edc.reader
        assert isinstance(reader, EmulatedReader)
        try:
            if not edc.ensure_logged_on():
                return
            for n in range(MAX_PER_TERMINAL):
                card = cards[n % len(cards)]
                reader.swap(world.kks(card))
                unit = edc.prepare_purchase([TEMPE], card.pin)
                request = decode_unit(unit).message
                reply = decode_unit(link.exchange(unit, TIMEOUT_S)).message
                if reply.opt_text(39) == codes.APPROVED:
                    with lock:
                        approved.append((request.text(41), request.text(13),
                                         request.text(11)))
                        if len(approved) >= APPROVALS_BEFORE_KILL:
                            enough.set()
        except (OSError, LinkDown):
            return  # the switch is gone: what was in flight is the terminal's to reverse
        finally:
            link.close()

    threads = [threading.Thread(target=terminal, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(60), "the terminals never got enough approvals"
        proc.kill()  # SIGKILL: no shutdown, no flush, mid-batch
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    for thread in threads:
        thread.join(TIMEOUT_S * 2)
        assert not thread.is_alive()

    with lock:
        seen = set(approved)
    with world.db.transaction() as session:
        rows = session.execute(
            select(RequestRecord.tid, RequestRecord.local_date, RequestRecord.stan,
                   RequestRecord.response_code, Transfer.amount_sen)
            .join(Transfer, Transfer.id == RequestRecord.transfer_id)
            .where(RequestRecord.kind == "request")).all()
    in_ledger = {(tid, date, stan): (rc, amount) for tid, date, stan, rc, amount in rows}
    missing = [key for key in seen if key not in in_ledger]
    assert not missing, f"approvals a terminal saw but the ledger lost: {missing[:5]}"
    assert all(in_ledger[key] == (codes.APPROVED, TEMPE.total_sen) for key in seen)
    report = check_invariants(world.db)
    world.db.dispose()
    assert report.ok, report.summary()
