"""Two ``bpnt-switch serve`` processes on one PostgreSQL database (HOST_SPEC §4).

The same MAC'd unit sent to both at the same moment debits once and both callers
get the same bytes; a reversal racing its original in the other process ends
either approved-and-reversed or declined 05, never debited-and-forgotten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from switch.db.audit import verify
from switch.ledger.invariants import check_invariants
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from switch.protocol.unit import decode_unit
from terminal_sim.demo import free_port, start_switch, stop_switch
from terminal_sim.link import TcpLink
from tests.postgres.world import PERIOD_SEN, SeededWorld, seed, send_at_once

TEMPE = BasketLine("TMP001", 1, 500_000)
ROUNDS = 8
TIMEOUT_S = 15.0

pytestmark = pytest.mark.slow


@pytest.fixture
def switches(pg_url: str, tmp_path: Path) -> Iterator[tuple[SeededWorld, list[int]]]:
    world = seed(pg_url)
    procs, ports = [], []
    try:
        for n in range(2):
            ports.append(free_port())
            procs.append(start_switch(pg_url, ports[-1], tmp_path / f"switch{n}.log"))
        yield world, ports
    finally:
        for proc in procs:
            stop_switch(proc)
        report = check_invariants(world.db)
        world.db.dispose()
        verdict = report.summary()  # always rendered: PostgreSQL sums arrive as Decimal
        assert report.ok, verdict


def _at_once(sends: list[tuple[TcpLink, bytes]]) -> list[bytes]:
    return send_at_once(sends, TIMEOUT_S)


def _fields(reply: bytes) -> tuple[str | None, str | None]:
    message = decode_unit(reply).message
    return message.opt_text(39), message.opt_text(37)


def test_same_unit_to_two_processes_debits_once(
        switches: tuple[SeededWorld, list[int]]) -> None:
    world, ports = switches
    links = [TcpLink("127.0.0.1", port) for port in ports]
    card = world.card()
    edc = world.edc(links[0], card)
    try:
        assert edc.ensure_logged_on()
        for _ in range(ROUNDS):
            unit = edc.prepare_purchase([TEMPE], card.pin)
            first, second = _at_once([(links[0], unit), (links[1], unit)])
            assert _fields(first)[0] == codes.APPROVED
            assert first == second  # same RC, RRN, balance, and the same TAK's MAC
    finally:
        for link in links:
            link.close()
    assert _wallet_sen(world, card.pan) == PERIOD_SEN - ROUNDS * TEMPE.total_sen
    with world.db.transaction() as session:
        assert verify(session, world.keys.audit_key).ok


def test_reversal_racing_its_original_in_another_process(
        switches: tuple[SeededWorld, list[int]]) -> None:
    world, ports = switches
    links = [TcpLink("127.0.0.1", port) for port in ports]
    card = world.card(index=1)
    edc = world.edc(links[0], card)
    outcomes: Counter[str] = Counter()
    try:
        assert edc.ensure_logged_on()
        for n in range(ROUNDS):
            before = _wallet_sen(world, card.pan)
            unit = edc.prepare_purchase([TEMPE], card.pin)
            request = decode_unit(unit).message
            reversal = edc.encode_unit(Message("0400", {
                k: v for k, v in request.fields.items() if k not in (52, 64)}))
            # Alternate which process gets the original.
            a, b = (links[0], links[1]) if n % 2 == 0 else (links[1], links[0])
            purchase_reply, reversal_reply = _at_once([(a, unit), (b, reversal)])
            rc, _ = _fields(purchase_reply)
            assert _fields(reversal_reply)[0] == codes.APPROVED
            assert rc in (codes.APPROVED, codes.DO_NOT_HONOUR)
            outcomes[rc or "none"] += 1
            # Either way the wallet is where it was: reversed, or never debited.
            assert _wallet_sen(world, card.pan) == before
            # And the original's answer is remembered (replayed by either process).
            assert _at_once([(b, unit)]) == [purchase_reply]
    finally:
        for link in links:
            link.close()
    print(f"original approved then reversed / declined 05: {dict(outcomes)}")


def _wallet_sen(world: SeededWorld, pan: str) -> int:
    from sqlalchemy import select

    from switch.db.tables import Account, Card, Kpm
    from switch.security.keys import pan_token

    with world.db.transaction() as session:
        balance = session.scalar(
            select(Account.balance_sen).join(Kpm, Kpm.wallet_account_id == Account.id)
            .join(Card, Card.kpm_id == Kpm.id)
            .where(Card.pan_token == pan_token(world.keys.pan_token_key, pan)))
    assert balance is not None
    return int(balance)
