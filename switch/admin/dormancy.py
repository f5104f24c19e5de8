"""Dormant cards (FAILURES F5, ``bpnt-switch dormancy run|reactivate``).

A card is dormant when it is ``active`` and the latest of its ``issued_at``,
``last_used_at`` and ``reactivated_at`` is ``days`` or more before the clock: the
host finds it so at the card's next request (62, docs/RULES.md), and ``dormancy run``
marks every such card at once.  The run is set-based: it selects the ids of the
cards due in chunks (by id, on the ``cards`` primary key) and updates each chunk with
one statement and its audit records with one insert, in one transaction per chunk (so
a switch serving meanwhile waits for one chunk at most).  A second run finds nothing.

Time: the clock's aware datetimes are compared in SQL with the stored ones; SQLite
keeps the wall time of what was written (the host and the registry write the
clock's WIB time), so the cutoff is given in the clock's own zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from switch.admin.errors import NotFound, Refused
from switch.audit.chain import Entry, link
from switch.clock import Clock
from switch.db import audit as chain
from switch.db.engine import Database
from switch.db.tables import Card
from switch.protocol.message import mask_pan
from switch.security.keyring import Keyring
from switch.security.keys import pan_token

CHUNK_CARDS = 1000


@dataclass(frozen=True)
class DormancyReport:
    cutoff: datetime
    days: int
    dormant: int

    def summary(self) -> str:
        return f"{self.dormant} cards made dormant (unused {self.days} days or more: " \
               f"last activity on or before {self.cutoff.isoformat()})"


def run_dormancy(db: Database, keys: Keyring, *, days: int, actor: str, clock: Clock,
                 chunk_cards: int = CHUNK_CARDS,
                 progress: Callable[[int, int], None] | None = None) -> DormancyReport:
    """Mark every active card unused ``days`` or more ``dormant``, each with an audit
    record ``card.dormant`` (subject the masked PAN); ``progress(done, total)`` after
    each chunk (the total counted first, only when ``progress`` is given)."""
    if days < 1:
        raise ValueError("dormancy counts at least one day")
    now = clock.now()
    cutoff = now.astimezone(UTC) - timedelta(days=days)  # stored in UTC
    due = and_(Card.status == "active", Card.issued_at <= cutoff,
               or_(Card.last_used_at.is_(None), Card.last_used_at <= cutoff),
               or_(Card.reactivated_at.is_(None), Card.reactivated_at <= cutoff))
    after_id, dormant, total = 0, 0, 0
    if progress is not None:
        with db.transaction() as session:
            total = int(session.scalar(select(func.count()).select_from(Card).where(due))
                        or 0)
        progress(0, total)
    while True:
        with db.transaction() as session:
            chunk = session.execute(
                select(Card.id, Card.pan_masked, Card.issued_at, Card.last_used_at,
                       Card.reactivated_at)
                .where(due, Card.id > after_id).order_by(Card.id).limit(chunk_cards)).all()
            if not chunk:
                break
            ids = [row.id for row in chunk]
            session.execute(update(Card).where(Card.id.in_(ids), due)
                            .values(status="dormant")
                            .execution_options(synchronize_session=False))
            entries = []
            for row in chunk:
                latest = max(_in_zone(at, now.tzinfo) for at in
                             (row.issued_at, row.last_used_at, row.reactivated_at)
                             if at is not None)
                entries.append(Entry(now, actor, "card.dormant", row.pan_masked, {
                    "last_activity": latest.date().isoformat(),
                    "days": (now - latest).days, "dormancy_days": days}))
            connection = session.connection()
            head = chain.head_of(chain.submit_head(connection), connection)
            rows, head = link(keys.audit_key, head, entries)
            chain.submit_rows(connection, rows, head)
            dormant += len(ids)
            after_id = ids[-1]
        if progress is not None:
            progress(dormant, max(total, dormant))
    return DormancyReport(cutoff, days, dormant)


def _in_zone(at: datetime, zone: tzinfo | None) -> datetime:
    """A stored time in the clock's zone (SQLite gives back the naive wall time)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=zone)
    return at.astimezone(zone)


@dataclass(frozen=True)
class Reactivated:
    pan_masked: str
    reactivated_at: datetime


def reactivate_card(session: Session, keys: Keyring, *, pan: str, reason: str, actor: str,
                    clock: Clock) -> Reactivated:
    """A dormant card back to ``active`` (its dormancy counts again from now), its PIN
    try counter cleared; audit ``card.reactivate``.  Any other status is refused."""
    card = session.scalars(select(Card).where(
        Card.pan_token == pan_token(keys.pan_token_key, pan))).first()
    if card is None:
        raise NotFound(f"no card {mask_pan(pan)}")
    if card.status != "dormant":
        raise Refused(f"refused: card {card.pan_masked} is {card.status}, not dormant "
                      "(a blocked, lost or stolen card goes back with card-status)")
    now = clock.now()
    card.status = "active"
    card.reactivated_at = now.astimezone(UTC)
    card.wrong_pin_count = 0
    session.flush()
    chain.append(session, keys.audit_key, at=now, actor=actor, action="card.reactivate",
                 subject=card.pan_masked, detail={"before": "dormant", "reason": reason})
    return Reactivated(card.pan_masked, now)
