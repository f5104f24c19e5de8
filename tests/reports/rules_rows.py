"""Rows for the programme-rule reports, written straight into the tables (until the
host core writes ``card_id``, ``basket`` and ``stock_ewarong_id`` for real purchases):
purchases (a record, its debit through the ledger, the stock it takes), voids,
reversals, deliveries, alerts and extra e-warongs.  The money always goes through
:func:`post_transfer` / :func:`reverse_transfer`, so the world's money invariant holds
after every test; stock moves with the purchase unless a test asks it not to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from switch.clock import FixedClock
from switch.db.tables import (
    Account,
    Alert,
    Card,
    Delivery,
    Ewarong,
    Kpm,
    RequestRecord,
    Stock,
    StockReceipt,
    Terminal,
    Transfer,
)
from switch.ledger.postings import post_transfer, reverse_transfer
from switch.protocol.bpnt import BasketLine, encode_basket
from switch.security.keys import pan_token
from tests.world import HostWorld


@dataclass(frozen=True)
class Purchase:
    record_id: int
    transfer_id: int | None
    tid: str
    ewarong_id: int
    basket: tuple[BasketLine, ...]

    @property
    def rrn(self) -> str:
        return f"{self.record_id:012d}"


class Rows:
    """Row builder over ``world``'s database (``world.demo`` names the cards/terminals)."""

    def __init__(self, world: HostWorld) -> None:
        self.world = world
        self.db = world.db
        self._stan = count(1)

    # -- the registry ------------------------------------------------------------------

    def card_id(self, index: int) -> int:
        pan = self.world.card("ok", index).pan
        with self.db.transaction() as s:
            card = s.scalar(select(Card.id).where(
                Card.pan_token == pan_token(self.world.keys.pan_token_key, pan)))
        assert card is not None
        return int(card)

    def masked(self, index: int) -> str:
        card_id = self.card_id(index)
        with self.db.transaction() as s:
            masked = s.scalar(select(Card.pan_masked).where(Card.id == card_id))
        assert masked is not None
        return str(masked)

    def tid(self, index: int = 0) -> str:
        return self.world.terminal("ok", index).tid

    def mid(self, index: int = 0) -> str:
        return self.world.terminal("ok", index).mid

    def ewarong_id(self, tid: str) -> int:
        with self.db.transaction() as s:
            found = s.scalar(select(Terminal.ewarong_id).where(Terminal.tid == tid))
        assert found is not None
        return int(found)

    def add_ewarong(self, mid: str, tid: str, region: str | None = None) -> None:
        """A second e-warong (no stock) with one terminal ``tid``."""
        with self.db.transaction() as s:
            account = s.execute(insert(Account).values(
                kind="ewarong_payable", owner_ref=mid, balance_sen=0)).inserted_primary_key
            ewarong = s.execute(insert(Ewarong).values(
                mid=mid, name=f"e-Warong {mid[-3:]}", payable_account_id=account[0],
                region=region)).inserted_primary_key
            s.execute(insert(Terminal).values(tid=tid, ewarong_id=ewarong[0],
                                              tmk_wrapped=b"not a key"))

    def set_region(self, mid: str, region: str) -> None:
        with self.db.transaction() as s:
            s.execute(update(Ewarong).where(Ewarong.mid == mid).values(region=region))

    # -- money and stock ---------------------------------------------------------------

    def purchase(self, at: datetime, basket: list[BasketLine], *, card: int = 0,
                 tid: str | None = None, rc: str = "00", take_stock: bool = True,
                 decrement: bool = True, with_card: bool = True) -> Purchase:
        """A purchase request answered ``rc`` at ``at``; approved (00): its debit, and
        (``take_stock``) its e-warong's stock, decremented unless ``decrement`` is
        False (a broken conservation)."""
        tid = tid or self.tid()
        ewarong_id = self.ewarong_id(tid)
        card_id = self.card_id(card)
        amount = sum(line.total_sen for line in basket)
        stan = f"{next(self._stan):06d}"
        key_date = at.strftime("%Y%m%d")
        with self.db.transaction() as s:
            transfer_id = None
            if rc == "00":
                transfer_id = post_transfer(
                    s, idempotency_key=f"pur:{tid}:{key_date}:{stan}", kind="purchase",
                    debit_account_id=self._wallet(s, card_id),
                    credit_account_id=self._payable(s, ewarong_id), amount_sen=amount,
                    clock=FixedClock(at)).id
            record_id = self._record(
                s, at, tid, stan, "000000", rc, amount, transfer_id=transfer_id,
                card_id=card_id if with_card else None, basket=encode_basket(basket),
                stock_ewarong_id=ewarong_id if rc == "00" and take_stock else None,
                invoice=stan)
            if rc == "00" and take_stock and decrement:
                self._move(s, ewarong_id, basket, -1)
        return Purchase(record_id, transfer_id, tid, ewarong_id, tuple(basket))

    def void(self, purchase: Purchase, at: datetime) -> int:
        """An approved void of ``purchase`` that stands: money and stock back."""
        stan = f"{next(self._stan):06d}"
        with self.db.transaction() as s:
            original = s.get(Transfer, purchase.transfer_id)
            assert original is not None
            transfer = post_transfer(
                s, idempotency_key=f"void:{purchase.tid}:{at:%Y%m%d}:{stan}", kind="void",
                debit_account_id=original.credit_account_id,
                credit_account_id=original.debit_account_id,
                amount_sen=original.amount_sen, clock=FixedClock(at))
            void_id = self._record(s, at, purchase.tid, stan, "020000", "00",
                                   original.amount_sen, transfer_id=transfer.id,
                                   original_record_id=purchase.record_id, invoice=stan)
            s.execute(update(RequestRecord).where(RequestRecord.id == purchase.record_id)
                      .values(voided_by_record_id=void_id))
            self._move(s, purchase.ewarong_id, list(purchase.basket), +1)
        return void_id

    def reverse(self, purchase: Purchase, at: datetime) -> int:
        """A reversal (0400) of ``purchase`` that restored its debit and its stock."""
        stan = f"{next(self._stan):06d}"
        with self.db.transaction() as s:
            original = s.get(Transfer, purchase.transfer_id)
            assert original is not None
            transfer = reverse_transfer(s, original, clock=FixedClock(at),
                                        idempotency_key=f"rev:{purchase.tid}:{stan}")
            record_id = self._record(s, at, purchase.tid, stan, "000000", "00",
                                     original.amount_sen, transfer_id=transfer.id,
                                     kind="reversal", mti="0410",
                                     original_record_id=purchase.record_id)
            self._move(s, purchase.ewarong_id, list(purchase.basket), +1)
        return record_id

    def receive(self, mid: str, item: str, quantity: int, at: datetime, reference: str,
                kind: str = "receive") -> None:
        """A receipt (or ``adjust``) and the shelf moved by it, stamped ``at`` in UTC."""
        with self.db.transaction() as s:
            ewarong_id = s.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
            s.execute(insert(StockReceipt).values(
                ewarong_id=ewarong_id, item_code=item, kind=kind, quantity=quantity,
                reference=reference, actor="test", created_at=at.astimezone(UTC)))
            s.execute(update(Stock).where(Stock.ewarong_id == ewarong_id,
                                          Stock.item_code == item)
                      .values(quantity=Stock.quantity + quantity))

    def deliver(self, purchase: Purchase, at: datetime) -> None:
        with self.db.transaction() as s:
            s.execute(insert(Delivery).values(record_id=purchase.record_id,
                                              confirmed_at=at.astimezone(UTC),
                                              actor="test"))

    def alert(self, at: datetime, rule: str, action: str, detail: dict[str, Any], *,
              tid: str | None = None, cards: tuple[int, ...] = (),
              record_id: int | None = None, ewarong: bool = True) -> None:
        tid = tid or self.tid()
        ewarong_id = self.ewarong_id(tid) if ewarong else None
        card_ids = [self.card_id(c) for c in cards]
        with self.db.transaction() as s:
            s.execute(insert(Alert).values(
                created_at=at.astimezone(UTC), rule=rule, action=action, tid=tid,
                ewarong_id=ewarong_id, record_id=record_id, card_ids=json.dumps(card_ids),
                detail=json.dumps(detail)))

    # -- the parts ---------------------------------------------------------------------

    def _record(self, s: Session, at: datetime, tid: str, stan: str, code: str, rc: str,
                amount: int, *, kind: str = "request", mti: str = "0210",
                **values: Any) -> int:
        result = s.execute(insert(RequestRecord).values(
            tid=tid, local_date=at.strftime("%m%d"), key_date=at.strftime("%Y%m%d"),
            stan=stan, kind=kind, mti=mti, processing_code=code, amount_sen=amount,
            request_hash="0" * 64, response_code=rc, response_unit=b"",
            created_at=at.astimezone(UTC),
            **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    def _wallet(s: Session, card_id: int) -> int:
        wallet = s.scalar(select(Kpm.wallet_account_id).join(Card, Card.kpm_id == Kpm.id)
                          .where(Card.id == card_id))
        assert wallet is not None
        return int(wallet)

    @staticmethod
    def _payable(s: Session, ewarong_id: int) -> int:
        payable = s.scalar(select(Ewarong.payable_account_id).where(Ewarong.id == ewarong_id))
        assert payable is not None
        return int(payable)

    @staticmethod
    def _move(s: Session, ewarong_id: int, basket: list[BasketLine], sign: int) -> None:
        for line in basket:
            s.execute(update(Stock).where(Stock.ewarong_id == ewarong_id,
                                          Stock.item_code == line.item_code)
                      .values(quantity=Stock.quantity + sign * line.quantity))
