"""Programme-rule data for the rule scenarios (docs/RULES.md), set straight on the
switch's database with SQLAlchemy: opening hours, zones, stock, a card's age; and the
after-state the scenarios show (balance, stock, card status, alerts).

Each change is one transaction and, where the admin path would audit it, one audit
record (``switch.db.audit.append``, actor :data:`ACTOR`); stock moves only through
:func:`switch.admin.stock.receive_stock` (a receipt, so conservation holds).  Until the
admin commands of issue 14 exist (``switch/admin/cli_rules.py``), this is how the
simulator sets a scene.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update

from switch.admin.stock import receive_stock
from switch.db import audit as chain
from switch.db.engine import Database
from switch.db.tables import (
    Account,
    Alert,
    Card,
    Ewarong,
    EwarongZone,
    Kpm,
    Stock,
    TerminalCard,
)
from switch.security.keyring import Keyring
from switch.security.keys import pan_token

ACTOR = "edc-sim"


def _now() -> datetime:
    return datetime.now(UTC)


def _ewarong_id(session: Any, mid: str) -> int:
    found = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
    if found is None:
        raise ValueError(f"no e-warong {mid}")
    return int(found)


def set_hours(db: Database, keys: Keyring, mid: str, open_hhmm: str | None,
              close_hhmm: str | None, utc_offset_minutes: int | None = None) -> None:
    """The e-warong's opening hours (HHMM local; ``None``: always open)."""
    with db.transaction() as session:
        values: dict[str, Any] = {"open_hhmm": open_hhmm, "close_hhmm": close_hhmm}
        if utc_offset_minutes is not None:
            values["utc_offset_minutes"] = utc_offset_minutes
        session.execute(update(Ewarong).where(Ewarong.mid == mid).values(**values))
        chain.append(session, keys.audit_key, at=_now(), actor=ACTOR, action="ewarong.hours",
                     subject=mid, detail=values)


def hours(db: Database, mid: str) -> tuple[str | None, str | None, int]:
    with db.transaction(exclusive=False) as session:
        row = session.execute(select(Ewarong.open_hhmm, Ewarong.close_hhmm,
                                     Ewarong.utc_offset_minutes)
                              .where(Ewarong.mid == mid)).one()
    return row[0], row[1], int(row[2])


def hours_excluding(now: datetime, utc_offset_minutes: int) -> tuple[str, str]:
    """One hour of opening, two hours from now local time: ``now`` is outside it.

    >>> hours_excluding(datetime(2026, 11, 23, 3, 0, tzinfo=UTC), 420)
    ('1200', '1300')
    >>> hours_excluding(datetime(2026, 11, 23, 15, 30, tzinfo=UTC), 420)
    ('0030', '0130')
    """
    local = now.astimezone(UTC) + timedelta(minutes=utc_offset_minutes)
    start = local + timedelta(hours=2)
    return start.strftime("%H%M"), (start + timedelta(hours=1)).strftime("%H%M")


def set_zones(db: Database, keys: Keyring, mid: str, prefixes: list[str]) -> None:
    """The zones the e-warong serves (``[]``: every zone)."""
    with db.transaction() as session:
        ewarong_id = _ewarong_id(session, mid)
        session.execute(delete(EwarongZone).where(EwarongZone.ewarong_id == ewarong_id))
        session.add_all(EwarongZone(ewarong_id=ewarong_id, zone_prefix=p) for p in prefixes)
        chain.append(session, keys.audit_key, at=_now(), actor=ACTOR, action="ewarong.zones",
                     subject=mid, detail={"zones": prefixes})


def zones(db: Database, mid: str) -> list[str]:
    with db.transaction(exclusive=False) as session:
        ewarong_id = _ewarong_id(session, mid)
        return sorted(session.scalars(select(EwarongZone.zone_prefix)
                                      .where(EwarongZone.ewarong_id == ewarong_id)))


def stock_units(db: Database, mid: str, item_code: str) -> int:
    with db.transaction(exclusive=False) as session:
        found = session.scalar(select(Stock.quantity).join(Ewarong, Ewarong.id == Stock.ewarong_id)
                               .where(Ewarong.mid == mid, Stock.item_code == item_code))
    return int(found or 0)


def set_stock(db: Database, keys: Keyring, mid: str, item_code: str, units: int,
              reason: str = "simulated stock count") -> int:
    """Adjust the shelf to ``units`` (a find or a write-off, a receipt of kind ``adjust``)."""
    with db.transaction() as session:
        ewarong_id = _ewarong_id(session, mid)
        current = int(session.scalar(select(Stock.quantity).where(
            Stock.ewarong_id == ewarong_id, Stock.item_code == item_code)) or 0)
        delta = units - current
        if delta:
            receive_stock(session, keys, mid=mid, item_code=item_code, quantity=delta,
                          actor=ACTOR, kind="adjust", reason=reason)
    return units


def receive(db: Database, keys: Keyring, mid: str, item_code: str, units: int,
            reference: str) -> int:
    """A delivery of ``units`` (kind ``receive``, the delivery note's ``reference``)."""
    with db.transaction() as session:
        return receive_stock(session, keys, mid=mid, item_code=item_code, quantity=units,
                             actor=ACTOR, reference=reference).quantity_after


@dataclass(frozen=True)
class CardState:
    card_id: int
    status: str
    balance_sen: int
    zone: str


def card_state(db: Database, keys: Keyring, pan: str) -> CardState:
    """The card's id, status, wallet balance (the ledger's) and its KPM's zone."""
    with db.transaction(exclusive=False) as session:
        row = session.execute(
            select(Card.id, Card.status, Account.balance_sen, Kpm.zone)
            .join(Kpm, Kpm.id == Card.kpm_id)
            .join(Account, Account.id == Kpm.wallet_account_id)
            .where(Card.pan_token == pan_token(keys.pan_token_key, pan))).one()
    return CardState(int(row[0]), str(row[1]), int(row[2]), str(row[3]))


def age_card(db: Database, keys: Keyring, pan: str, days: int) -> None:
    """Move the card's last activity (issued, last used, reactivated) ``days`` back, as
    if it had lain unused that long (the clocks stay where they are)."""
    with db.transaction() as session:
        token = pan_token(keys.pan_token_key, pan)
        card = session.execute(select(Card.id, Card.pan_masked)
                               .where(Card.pan_token == token)).one()
        then = _now() - timedelta(days=days)
        session.execute(update(Card).where(Card.id == card[0])
                        .values(issued_at=then, last_used_at=then, reactivated_at=None))
        chain.append(session, keys.audit_key, at=_now(), actor=ACTOR, action="sim.card_aged",
                     subject=str(card[1]), detail={"days": days})


def distinct_cards_since(db: Database, tid: str, minutes: int) -> set[int]:
    """The cards the terminal saw in the last ``minutes`` (the velocity window as the
    switch counts it: ``terminal_cards``)."""
    since = _now() - timedelta(minutes=minutes)
    with db.transaction(exclusive=False) as session:
        return {int(c) for c in session.scalars(
            select(TerminalCard.card_id).where(TerminalCard.tid == tid,
                                               TerminalCard.last_at >= since))}


@dataclass(frozen=True)
class AlertRow:
    rule: str
    action: str
    tid: str | None
    ewarong_id: int | None
    record_id: int | None
    card_ids: list[int]
    detail: dict[str, Any]

    def line(self) -> str:
        return (f"alert {self.rule}/{self.action} TID {self.tid} cards {self.card_ids} "
                f"{json.dumps(self.detail, sort_keys=True)}")


def last_alert_id(db: Database) -> int:
    with db.transaction(exclusive=False) as session:
        return int(session.scalar(select(func.max(Alert.id))) or 0)


def alerts_after(db: Database, alert_id: int) -> list[AlertRow]:
    """The alerts written since ``alert_id`` (:func:`last_alert_id`), oldest first."""
    with db.transaction(exclusive=False) as session:
        rows = session.execute(select(Alert.rule, Alert.action, Alert.tid, Alert.ewarong_id,
                                      Alert.record_id, Alert.card_ids, Alert.detail)
                               .where(Alert.id > alert_id).order_by(Alert.id)).all()
    return [AlertRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "[]"),
                     json.loads(r[6] or "{}")) for r in rows]
