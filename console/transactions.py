"""The transactions the console shows: request records with their terminal, e-warong
and card (masked PAN only), searched by RRN, TID, PAN and WIB day.

A full PAN typed into the search is never echoed: it is turned into its token (the
lookup key the switch stores) and shown back masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import Session

from switch.core.request import rrn_for
from switch.db.tables import (
    Card,
    Delivery,
    Ewarong,
    RequestRecord,
    Terminal,
    Transfer,
)
from switch.protocol.bpnt import BasketLine, decode_basket
from switch.protocol.errors import ProtocolError
from switch.protocol.message import mask_pan
from switch.reports.recon_model import day_window
from switch.security.keyring import Keyring
from switch.security.keys import pan_token

MAX_RECORD_ID = 2**31 - 1


@dataclass(frozen=True)
class Search:
    rrn: str = ""
    tid: str = ""
    #: What the user typed, masked if it was a full PAN (what the form shows again).
    pan: str = ""
    day: date | None = None
    #: A full PAN's token (never shown).
    pan_token: str | None = None


def parse_search(params: dict[str, str], keys: Keyring) -> Search:
    pan = params.get("pan", "").strip().replace(" ", "")[:19]
    token = None
    if pan.isdigit() and len(pan) >= 12:  # a full PAN: search by its token, show it masked
        token = pan_token(keys.pan_token_key, pan)
        pan = mask_pan(pan)
    day = None
    if text := params.get("date", "").strip():
        try:
            day = date.fromisoformat(text)
        except ValueError:
            day = None
    return Search(params.get("rrn", "").strip()[:12], params.get("tid", "").strip()[:8],
                  pan, day, token)


@dataclass(frozen=True)
class TransactionRow:
    rrn: str
    at: datetime
    kind: str
    mti: str
    tid: str
    mid: str | None
    ewarong_id: int | None
    pan_masked: str | None
    processing_code: str
    amount_sen: int
    response_code: str

    def as_json(self) -> dict[str, Any]:
        return {"rrn": self.rrn, "at": self.at.isoformat(), "kind": self.kind,
                "mti": self.mti, "tid": self.tid, "mid": self.mid,
                "pan_masked": self.pan_masked, "processing_code": self.processing_code,
                "amount_sen": self.amount_sen, "response_code": self.response_code}


def _base() -> Any:
    return (select(RequestRecord.id, RequestRecord.created_at, RequestRecord.kind,
                   RequestRecord.mti, RequestRecord.tid, Ewarong.mid, Ewarong.id,
                   Card.pan_masked, RequestRecord.processing_code, RequestRecord.amount_sen,
                   RequestRecord.response_code)
            .outerjoin(Terminal, Terminal.tid == RequestRecord.tid)
            .outerjoin(Ewarong, Ewarong.id == Terminal.ewarong_id)
            .outerjoin(Card, Card.id == RequestRecord.card_id))


def _row(values: Any) -> TransactionRow:
    (record_id, at, kind, mti, tid, mid, ewarong_id, masked, code, amount, rc) = values
    return TransactionRow(rrn_for(record_id), at, kind, mti, tid, mid, ewarong_id, masked,
                          code, int(amount), rc)


def _filtered(query: Select[Any], search: Search, ewarong_id: int | None) -> Select[Any]:
    if ewarong_id is not None:
        query = query.where(Terminal.ewarong_id == ewarong_id)
    if search.rrn:
        rrn_id = int(search.rrn) if search.rrn.isdigit() else -1
        query = query.where(RequestRecord.id == (rrn_id if rrn_id <= MAX_RECORD_ID else -1))
    if search.tid:
        query = query.where(RequestRecord.tid == search.tid)
    if search.pan_token is not None:
        query = query.where(Card.pan_token == search.pan_token)
    elif search.pan:
        if "*" in search.pan:
            query = query.where(Card.pan_masked == search.pan)
        else:  # the last digits
            query = query.where(Card.pan_masked.like(f"%{search.pan.replace('%', '')}"))
    if search.day is not None:
        window = day_window(search.day)
        query = query.where(and_(RequestRecord.created_at >= window.start,
                                 RequestRecord.created_at < window.end))
    return query


def search_transactions(session: Session, search: Search, *, ewarong_id: int | None,
                        limit: int, offset: int) -> tuple[list[TransactionRow], int]:
    """A page of matching transactions, newest first, and how many match in all."""
    query = _filtered(_base(), search, ewarong_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(RequestRecord.id.desc()).limit(limit)
                           .offset(offset)).all()
    return [_row(values) for values in rows], int(total)


@dataclass(frozen=True)
class TransactionDetail:
    row: TransactionRow
    basket: list[BasketLine] | None
    stock_mid: str | None
    delivery: Delivery | None
    voided_by: str | None
    original: str | None
    reversed: bool
    invoice: str | None
    settled: bool


def transaction_detail(session: Session, record_id: int) -> TransactionDetail | None:
    if not 0 < record_id <= MAX_RECORD_ID:
        return None
    values = session.execute(_base().where(RequestRecord.id == record_id)).first()
    if values is None:
        return None
    record = session.get(RequestRecord, record_id)
    assert record is not None
    basket = None
    if record.basket:
        try:
            basket = decode_basket(record.basket)
        except ProtocolError:
            basket = None
    stock_mid = session.scalar(select(Ewarong.mid).where(
        Ewarong.id == record.stock_ewarong_id)) if record.stock_ewarong_id else None
    reversed_ = record.transfer_id is not None and session.scalar(
        select(Transfer.id).where(Transfer.reverses_transfer_id == record.transfer_id)
    ) is not None
    return TransactionDetail(
        _row(values), basket, stock_mid, session.get(Delivery, record_id),
        rrn_for(record.voided_by_record_id) if record.voided_by_record_id else None,
        rrn_for(record.original_record_id) if record.original_record_id else None,
        reversed_, record.invoice, record.settlement_id is not None)


def ewarong_of_record(session: Session, record_id: int) -> int | None:
    """The e-warong a record belongs to (by its terminal), for the ewarong scope."""
    if not 0 < record_id <= MAX_RECORD_ID:
        return None
    return session.scalar(select(Terminal.ewarong_id).join(
        RequestRecord, RequestRecord.tid == Terminal.tid).where(RequestRecord.id == record_id))
