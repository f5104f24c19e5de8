"""A broken invariant stops the switch (DESIGN.md: crash loudly; never answer after it).

A real ``bpnt-switch serve`` finds a wallet below zero (written behind its back,
with the schema's CHECK switched off): it raises ``InvariantError`` instead of
deciding on it, answers nothing to that request or to any later one, and the
process exits with status 70.  Before the host checked, the same purchase was
answered (51 on a balance of -1 sen) and the switch went on serving.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from switch.db.tables import Account, Card, Kpm
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.unit import decode_unit
from switch.security.keys import pan_token
from switch.server import EXIT_INVARIANT
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.demo import free_port, start_switch
from terminal_sim.link import LinkDown, TcpLink
from tests.postgres.world import seed

TEMPE = BasketLine("TMP001", 1, 500_000)
TIMEOUT_S = 10.0
EXIT_WAIT_S = 30.0

pytestmark = pytest.mark.slow


def test_a_wallet_below_zero_stops_the_process_without_an_answer(tmp_path: Path) -> None:
    world = seed(f"sqlite:///{tmp_path / 'broken.db'}")
    healthy, broken = world.card(index=0), world.card(index=1)
    with world.db.transaction() as session:
        wallet = session.scalar(
            select(Kpm.wallet_account_id).join(Card, Card.kpm_id == Kpm.id)
            .where(Card.pan_token == pan_token(world.keys.pan_token_key, broken.pan)))
        assert session.get_one(Account, wallet).balance_sen > 0
    world.db.dispose()
    port = free_port()
    log_path = tmp_path / "switch.log"
    proc = start_switch(world.url, port, log_path)
    link = TcpLink("127.0.0.1", port)
    try:
        edc = world.edc(link, healthy, world.terminal(0))
        reader = edc.reader
        assert isinstance(reader, EmulatedReader)
        assert edc.ensure_logged_on()
        first = decode_unit(link.exchange(edc.prepare_purchase([TEMPE], healthy.pin),
                                          TIMEOUT_S)).message
        assert first.opt_text(39) == codes.APPROVED  # the switch serves

        raw = sqlite3.connect(tmp_path / "broken.db")  # behind the switch's back
        raw.execute("PRAGMA ignore_check_constraints = ON")
        raw.execute("UPDATE accounts SET balance_sen = -1 WHERE id = ?", (wallet,))
        raw.commit()
        raw.close()

        reader.swap(world.kks(broken))
        with pytest.raises((LinkDown, OSError)):
            link.exchange(edc.prepare_purchase([TEMPE], broken.pin), TIMEOUT_S)
        status = proc.wait(EXIT_WAIT_S)
    finally:
        link.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT_S)
    log = log_path.read_text()
    assert status == EXIT_INVARIANT, log[-2000:]
    assert "invariant broken" in log and "below zero" in log, log[-2000:]
    # nothing was answered, so nothing was recorded for the broken card's request
    assert log.count("purchase tid=") == 1, log[-2000:]
