"""Group commit (issue 3): many requests in one database transaction, answers only
after it commits, and no request's fate tied to its neighbour's."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import func, select

from switch.admin.demo import DemoCard
from switch.admin.registry import Registry
from switch.core import decide
from switch.core.request import Request
from switch.core.verify import Checks
from switch.db.tables import Card, Kpm, RequestRecord, Transfer
from switch.host import store
from switch.host.runner import AsyncHost
from switch.host.service import HostService, StagedBatch
from switch.ledger.postings import InsufficientFunds
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from switch.protocol.routing import TxnType
from switch.protocol.unit import TPDU_LEN, decode_unit
from switch.security.keys import pan_token
from terminal_sim.edc import Edc
from tests.world import PERIOD_SEN, HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
TEMPE = BasketLine("TMP001", 1, 500_000)
WAIT_S = 10.0


def _rc(answer: bytes | None) -> str | None:
    assert answer is not None
    return decode_unit(answer).message.opt_text(39)


def _stan(unit: bytes) -> str:
    return decode_unit(unit).message.text(11)


def _purchase_unit(world: HostWorld, edc: Edc, index: int, basket: list[BasketLine],
                   pin: str | None = None) -> bytes:
    card = world.card(index=index)
    world.insert(edc, card)
    return edc.prepare_purchase(basket, pin or card.pin)


def _count(world: HostWorld, model: Any) -> int:
    with world.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _purchases(world: HostWorld) -> int:
    with world.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Transfer)
                                  .where(Transfer.kind == "purchase")) or 0)


def _wrong_pin_count(world: HostWorld, index: int) -> int:
    pan = world.card(index=index).pan
    with world.db.transaction() as session:
        count = session.scalar(select(Card.wrong_pin_count).where(
            Card.pan_token == pan_token(world.keys.pan_token_key, pan)))
    assert count is not None
    return int(count)


def test_a_batch_decides_in_order_and_a_decline_rolls_back_nothing(world: HostWorld) -> None:
    edc = world.edc()
    assert edc.ensure_logged_on()
    approve_a = _purchase_unit(world, edc, 0, [RICE])
    wrong_pin = _purchase_unit(world, edc, 1, [RICE], pin="000000")
    approve_b = _purchase_unit(world, edc, 2, [RICE])
    # Card 3 asks twice for more than half its wallet: the second sees the first's debit.
    big = BasketLine("BRS005", 2, 6_500_000)  # Rp 130.000 of Rp 200.000
    first_big = _purchase_unit(world, edc, 3, [big])
    second_big = _purchase_unit(world, edc, 3, [big])
    batch = [approve_a, wrong_pin, approve_b, first_big, second_big, approve_a]

    answers = world.host.process_batch(batch)

    assert [_rc(a) for a in answers] == [codes.APPROVED, codes.WRONG_PIN, codes.APPROVED,
                                        codes.APPROVED, codes.INSUFFICIENT_BALANCE,
                                        codes.APPROVED]
    assert answers[5] == answers[0]  # the duplicate in the same batch replays the stored bytes
    assert _purchases(world) == 3  # the duplicate moved nothing
    assert _wrong_pin_count(world, 1) == 1
    assert world.balance_sen(world.card(index=0)) == PERIOD_SEN - RICE.total_sen
    assert world.balance_sen(world.card(index=3)) == PERIOD_SEN - big.total_sen


def test_a_unit_that_raises_is_taken_out_and_its_neighbours_commit(
        world: HostWorld, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bpnt.host")
    edc = world.edc()
    assert edc.ensure_logged_on()
    units = [_purchase_unit(world, edc, n, [TEMPE]) for n in range(3)]
    doomed = _stan(units[1])
    real = decide.DECIDERS[TxnType.PURCHASE]

    def explode_on_one(request: Request, facts: Any) -> Any:
        decision = real(request, facts)  # it has decided its debit...
        if request.message.text(11) == doomed:
            raise RuntimeError("a bug in one request")  # ...and then fails
        return decision

    monkeypatch.setitem(decide.DECIDERS, TxnType.PURCHASE, explode_on_one)
    answers = world.host.process_batch(units)

    assert [_rc(answers[0]), answers[1], _rc(answers[2])] == [codes.APPROVED, None,
                                                              codes.APPROVED]
    assert world.balance_sen(world.card(index=1)) == PERIOD_SEN  # its debit rolled back
    assert world.balance_sen(world.card(index=0)) == PERIOD_SEN - TEMPE.total_sen
    assert world.balance_sen(world.card(index=2)) == PERIOD_SEN - TEMPE.total_sen
    with world.db.transaction() as session:
        stans = set(session.scalars(select(RequestRecord.stan)
                                    .where(RequestRecord.kind == "request")))
    assert doomed not in stans and len(stans) == 2
    # Logged once each, and only what committed (the failed one's line with it).
    decided = [r.getMessage() for r in caplog.records if r.getMessage().startswith("purchase ")]
    assert len(decided) == 2 and all("rc=00" in line for line in decided), decided
    assert not any(f"stan={doomed}" in line for line in decided)


def test_a_failed_commit_answers_nothing_and_here_moved_nothing(
        world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOST_SPEC §5: a commit that raises may have landed, so no 91 (the terminals
    reverse); this one did not land (tests/host/test_unavailable.py: one that did)."""
    edc = world.edc()
    assert edc.ensure_logged_on()
    units = [_purchase_unit(world, edc, n, [TEMPE]) for n in range(4)]
    records_before = _count(world, RequestRecord)

    def disk_full(_dbapi_connection: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(world.db.engine.dialect, "do_commit", disk_full)
    answers = world.host.process_batch(units)
    monkeypatch.undo()

    assert answers == [None] * 4
    assert _count(world, RequestRecord) == records_before
    for n in range(4):
        assert world.balance_sen(world.card(index=n)) == PERIOD_SEN
    # The same units once the database is back: decided afresh, approved, debited once.
    assert [_rc(a) for a in world.host.process_batch(units)] == [codes.APPROVED] * 4


class _HeldCommit:
    """Holds the writer thread inside the database commit until released."""

    def __init__(self, world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()
        self.commits = 0
        real = world.db.engine.dialect.do_commit

        def held(dbapi_connection: Any) -> None:
            self.commits += 1
            if self.commits == 1:
                self.reached.set()
                assert self.release.wait(WAIT_S), "test never released the commit"
            real(dbapi_connection)

        monkeypatch.setattr(world.db.engine.dialect, "do_commit", held)


@contextmanager
def _async_host(world: HostWorld, **settings: float) -> Iterator[tuple[AsyncHost, Any]]:
    world.host.settings = world.host.settings.model_copy(update=settings)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = AsyncHost(world.host)
    try:
        yield host, loop
    finally:
        host.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()


def _batch_sizes(world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the writer commits, in order."""
    sizes: list[int] = []
    real = world.host.commit_batch

    def recorded(staged: StagedBatch) -> list[bytes | None]:
        sizes.append(len(staged.answers))
        return real(staged)

    monkeypatch.setattr(world.host, "commit_batch", recorded)
    return sizes


def _queued(host: AsyncHost, loop: Any) -> int:
    async def qsize() -> int:
        return host.queued()

    return asyncio.run_coroutine_threadsafe(qsize(), loop).result(WAIT_S)


def _purchases_from_one_edc(world: HostWorld, count: int) -> tuple[bytes, list[bytes]]:
    """``count`` purchase units (cards round-robin) from one logged-on EDC: first, rest."""
    edc = world.edc()
    assert edc.ensure_logged_on()
    units = [_purchase_unit(world, edc, n % 12, [TEMPE]) for n in range(count)]
    return units[0], units[1:]


def test_no_answer_leaves_before_its_batch_commits_and_waiting_requests_batch(
        world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    first, rest = _purchases_from_one_edc(world, 1 + 20)
    held = _HeldCommit(world, monkeypatch)
    sizes = _batch_sizes(world, monkeypatch)
    with _async_host(world, group_commit_max_batch=64, group_commit_max_delay_ms=0) as (
            host, loop):
        pending: list[Future[bytes | None]] = [
            asyncio.run_coroutine_threadsafe(host.handle(first), loop)]
        assert held.reached.wait(WAIT_S), "the first batch never reached its commit"
        pending += [asyncio.run_coroutine_threadsafe(host.handle(u), loop) for u in rest]
        _queued(host, loop)  # every handle() above has run by now
        assert not any(f.done() for f in pending)  # not even the first: not committed yet
        held.release.set()
        answers = [f.result(WAIT_S) for f in pending]

    assert [_rc(a) for a in answers] == [codes.APPROVED] * 21
    # 1, then the 20 that waited: at most one batch was taken (and prepared) while the
    # first one held the writer, the rest went together after it
    assert sizes[0] == 1 and sum(sizes) == 21 and len(sizes) in (2, 3), sizes
    assert (host.batches, host.batched_units) == (len(sizes), 21)
    assert held.commits == len(sizes)


def test_the_next_batch_is_prepared_while_one_holds_the_writer(
        world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    first, rest = _purchases_from_one_edc(world, 1 + 5)
    held = _HeldCommit(world, monkeypatch)
    prepared_during_hold = threading.Event()
    real = world.host.prepare_batch

    def watched(units: Any) -> StagedBatch:
        if held.reached.is_set() and not held.release.is_set():
            prepared_during_hold.set()
        return real(units)

    monkeypatch.setattr(world.host, "prepare_batch", watched)
    with _async_host(world, group_commit_max_batch=64, group_commit_max_delay_ms=0) as (
            host, loop):
        pending = [asyncio.run_coroutine_threadsafe(host.handle(first), loop)]
        assert held.reached.wait(WAIT_S)
        pending += [asyncio.run_coroutine_threadsafe(host.handle(u), loop) for u in rest]
        assert prepared_during_hold.wait(WAIT_S), "nothing was prepared during the commit"
        assert not any(f.done() for f in pending)  # prepared, but not decided or answered
        held.release.set()
        answers = [f.result(WAIT_S) for f in pending]
    assert [_rc(a) for a in answers] == [codes.APPROVED] * 6


def test_batch_size_is_bounded(world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    first, rest = _purchases_from_one_edc(world, 1 + 10)
    held = _HeldCommit(world, monkeypatch)
    sizes = _batch_sizes(world, monkeypatch)
    with _async_host(world, group_commit_max_batch=4, group_commit_max_delay_ms=0) as (
            host, loop):
        pending = [asyncio.run_coroutine_threadsafe(host.handle(first), loop)]
        assert held.reached.wait(WAIT_S)
        pending += [asyncio.run_coroutine_threadsafe(host.handle(u), loop) for u in rest]
        _queued(host, loop)
        held.release.set()
        answers = [f.result(WAIT_S) for f in pending]

    assert [_rc(a) for a in answers] == [codes.APPROVED] * 11
    assert sizes[0] == 1 and sum(sizes) == 11 and max(sizes) == 4, sizes  # never above 4
    assert (host.batches, host.batched_units) == (len(sizes), 11)


def test_a_key_rotated_inside_the_batch_is_checked_afresh(world: HostWorld) -> None:
    """The precheck ran before the batch's logon: its MAC verdict, made under the old
    TAK, must not carry over to the decision, which sees the new TAK (RC 63)."""
    world.host.settings = world.host.settings.model_copy(
        update={"group_commit_precheck": True})
    edc = world.edc()
    assert edc.ensure_logged_on()
    purchase = _purchase_unit(world, edc, 0, [TEMPE])  # signed under the current TAK
    terminal = world.terminal()
    logon = edc.encode_unit(Message("0800", {3: "920000", 11: "900001", 24: "001",
                                             41: terminal.tid, 42: terminal.mid}))
    assert _rc(world.host.process_batch([purchase])[0]) == codes.APPROVED  # the old TAK works
    again = _purchase_unit(world, edc, 1, [TEMPE])

    answers = world.host.process_batch([logon, again])

    assert [_rc(a) for a in answers] == [codes.APPROVED, codes.SECURITY_VIOLATION]
    assert world.balance_sen(world.card(index=1)) == PERIOD_SEN


def test_the_precheck_reads_without_the_writer_lock(world: HostWorld) -> None:
    """SQLite WAL: the precheck's read runs while another connection holds the write
    lock (BEGIN IMMEDIATE), so a second switch process can do its cryptography while
    the first one writes."""
    edc = world.edc()
    assert edc.ensure_logged_on()
    unit = _purchase_unit(world, edc, 0, [TEMPE])
    request = Request(decode_unit(unit).message, unit[TPDU_LEN:], TxnType.PURCHASE)
    checks = Checks(world.keys)
    # The write lock is held (BEGIN IMMEDIATE) until the end of the block.
    with world.db.transaction():
        world.host.store.precheck([request], checks)
    assert checks._macs and all(checks._macs.values())
    assert checks._pins and all(checks._pins.values())
    assert checks._arqcs and all(checks._arqcs.values())


def test_two_cards_of_one_family_share_its_wallet_within_a_run(
        world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KPM with a second active card: two purchases in one run draw on one wallet, so
    the second sees the first's debit (51), decided in one pass, not by the SQL guard."""
    first = world.card(index=0)
    second = DemoCard(pan=_luhn_pan("603298990000001"), pin="246810")
    with world.db.transaction() as session:
        kpm = session.scalars(select(Kpm).join(Card, Card.kpm_id == Kpm.id).where(
            Card.pan_token == pan_token(world.keys.pan_token_key, first.pan))).one()
        Registry(session, world.keys, actor="test").issue_card(
            kpm=kpm, pan=second.pan, pin=second.pin, expiry_yymm=second.expiry_yymm)
    edc = world.edc()
    assert edc.ensure_logged_on()
    big = BasketLine("BRS005", 2, 6_500_000)  # Rp 130.000 of the family's Rp 200.000
    world.insert(edc, first)
    unit_a = edc.prepare_purchase([big], first.pin)
    world.insert(edc, second)
    unit_b = edc.prepare_purchase([big], second.pin)
    attempts: list[int] = []
    real = HostService._decide_and_write

    def counting(self: HostService, *args: Any) -> Any:
        attempts.append(1)
        return real(self, *args)

    monkeypatch.setattr(HostService, "_decide_and_write", counting)
    answers = world.host.process_batch([unit_a, unit_b])

    assert [_rc(a) for a in answers] == [codes.APPROVED, codes.INSUFFICIENT_BALANCE]
    assert len(attempts) == 1  # decided right the first time
    assert world.balance_sen(first) == PERIOD_SEN - big.total_sen


def _luhn_pan(body: str) -> str:
    digits = [int(d) for d in body]
    total = sum(d if i % 2 else (2 * d if 2 * d < 10 else 2 * d - 9)
                for i, d in enumerate(reversed(digits)))
    return body + str((10 - total % 10) % 10)


def test_a_run_whose_write_fails_is_decided_again_one_by_one(
        world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing a run cannot blame one request: the run is re-run a request at a time,
    so only the one whose posting fails loses its answer (closed, never a guess)."""
    edc = world.edc()
    assert edc.ensure_logged_on()
    units = [_purchase_unit(world, edc, n, [TEMPE]) for n in range(3)]
    doomed_wallet = _wallet_account(world, 1)
    real = store.submit_postings
    calls: list[int] = []

    def refuse_one_wallet(connection: Any, postings: Any, at: Any) -> Any:
        calls.append(len(postings))
        if any(p.debit_account_id == doomed_wallet for p in postings):
            raise InsufficientFunds("pretend the guard refused it")
        return real(connection, postings, at)

    monkeypatch.setattr(store, "submit_postings", refuse_one_wallet)
    answers = world.host.process_batch(units)

    assert [_rc(answers[0]), answers[1], _rc(answers[2])] == [codes.APPROVED, None,
                                                              codes.APPROVED]
    # the whole batch, then one by one; the refused one once more (a shortfall may be
    # another process's debit landing first: decided again, it would see it)
    assert calls == [3, 1, 1, 1, 1]
    assert world.balance_sen(world.card(index=1)) == PERIOD_SEN
    assert world.balance_sen(world.card(index=0)) == PERIOD_SEN - TEMPE.total_sen
    assert world.balance_sen(world.card(index=2)) == PERIOD_SEN - TEMPE.total_sen


def _wallet_account(world: HostWorld, index: int) -> int:
    pan = world.card(index=index).pan
    with world.db.transaction() as session:
        wallet = session.scalar(select(Kpm.wallet_account_id).join(Card, Card.kpm_id == Kpm.id)
                                .where(Card.pan_token == pan_token(world.keys.pan_token_key,
                                                                   pan)))
    assert wallet is not None
    return int(wallet)
