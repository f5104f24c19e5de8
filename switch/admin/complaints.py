"""Complaints (issue 16, docs/CONSOLE.md "Complaints"): a KPM's, an agent's or an
operator's complaint about a card, a KPM, a transaction or an e-warong, and its history.

A complaint names at least one of: a card (by its PAN, found by its token as the
registry does; the PAN is never stored), a KPM (NIK), a transaction (RRN, DE 37: its
request record; the e-warong follows from the record's terminal, and the card from
the record's card) or an e-warong (MID).  Names that agree are filled in from each
other (a card gives its KPM); names that do not agree are refused.

Status: ``open`` -> ``investigating`` -> ``resolved`` | ``rejected`` (an open complaint
may be rejected at once); resolving or rejecting needs a note.  Every step (opened,
assigned, a status, a comment) writes a :class:`~switch.db.tables.ComplaintEvent` and an
audit record (``complaint.open|assign|status|comment``, subject ``complaint:<id>``) in
the caller's transaction, with the actor.  Nothing is committed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from switch.admin.delivery import MAX_RECORD_ID, record_id_of
from switch.admin.errors import AdminError, InvalidInput, NotFound, Refused
from switch.clock import Clock
from switch.db import audit as chain
from switch.db.tables import (
    Card,
    Complaint,
    ComplaintEvent,
    Ewarong,
    Kpm,
    RequestRecord,
    Terminal,
)
from switch.protocol.message import mask_pan
from switch.security.keyring import Keyring
from switch.security.keys import pan_token

__all__ = [
    "SOURCES", "STATUSES", "TRANSITIONS", "ComplaintError", "ComplaintEventView",
    "ComplaintInvalid", "ComplaintNotFound", "ComplaintRefused", "ComplaintView",
    "assign_complaint", "comment_complaint", "get_complaint", "list_complaints",
    "mask_nik", "move_complaint", "open_complaint",
]

STATUSES = ("open", "investigating", "resolved", "rejected")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("investigating", "rejected"),
    "investigating": ("resolved", "rejected"),
    "resolved": (),
    "rejected": (),
}
#: Who a complaint is from ("operator": taken on the phone, say).
SOURCES = ("kpm", "ewarong", "operator")
#: Statuses that end a complaint: moving to one needs a note.
CLOSING = ("resolved", "rejected")
_SUBJECT_MAX = 120
_NAME_MAX = 60
_LIST_MAX = 1000


class ComplaintError(AdminError):
    """Any refusal of the complaints module (nothing was written)."""


class ComplaintNotFound(ComplaintError, NotFound):
    """No such complaint, card, KPM, transaction or e-warong (exit 2)."""


class ComplaintInvalid(ComplaintError, InvalidInput):
    """A malformed argument (exit 2)."""


class ComplaintRefused(ComplaintError, Refused):
    """A transition the workflow does not allow, or names that disagree (exit 1)."""


@dataclass(frozen=True)
class ComplaintEventView:
    at: datetime
    actor: str
    #: "opened", "assigned", "status", "comment"
    kind: str
    from_status: str | None
    to_status: str | None
    note: str


@dataclass(frozen=True)
class ComplaintView:
    id: int
    status: str
    source: str
    subject: str
    description: str
    #: ``cards.pan_masked``: never the PAN.
    card_masked: str | None
    #: :func:`mask_nik` of the KPM's NIK.
    kpm_nik_masked: str | None
    rrn: str | None
    mid: str | None
    assignee: str | None
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    events: tuple[ComplaintEventView, ...]

    @property
    def allowed(self) -> tuple[str, ...]:
        """The statuses it may move to next."""
        return TRANSITIONS[self.status]


def mask_nik(nik: str) -> str:
    """The first 4 digits (province and regency) and the last 4, the rest ``*``.

    >>> mask_nik("3201014507900001")
    '3201********0001'
    """
    if len(nik) <= 8:
        return "*" * len(nik)
    return nik[:4] + "*" * (len(nik) - 8) + nik[-4:]


# -- the steps ------------------------------------------------------------------------

@dataclass
class _About:
    card: Card | None = None
    kpm: Kpm | None = None
    rrn: str | None = None
    ewarong: Ewarong | None = None


def open_complaint(session: Session, keys: Keyring, *, actor: str, source: str,
                   subject: str, description: str = "", pan: str | None = None,
                   nik: str | None = None, rrn: str | None = None, mid: str | None = None,
                   clock: Clock) -> ComplaintView:
    """A new ``open`` complaint about what ``pan``, ``nik``, ``rrn`` and ``mid`` name (at
    least one); audit ``complaint.open``."""
    actor = _name(actor, "actor")
    if source not in SOURCES:
        raise ComplaintInvalid(f"source {source!r} is not one of {', '.join(SOURCES)}")
    subject = subject.strip()
    if not subject:
        raise ComplaintInvalid("a complaint needs a subject")
    if len(subject) > _SUBJECT_MAX:
        raise ComplaintInvalid(f"the subject is longer than {_SUBJECT_MAX} characters")
    about = _about(session, keys, pan=pan, nik=nik, rrn=rrn, mid=mid)
    now = clock.now()
    complaint = Complaint(
        opened_at=now.astimezone(UTC), updated_at=now.astimezone(UTC), status="open",
        source=source, subject=subject, description=description,
        card_id=about.card.id if about.card else None,
        kpm_id=about.kpm.id if about.kpm else None, rrn=about.rrn,
        ewarong_id=about.ewarong.id if about.ewarong else None, opened_by=actor)
    session.add(complaint)
    session.flush()
    _event(session, keys, complaint, now, actor, "opened", action="complaint.open",
           to_status="open", note=description,
           detail={"source": source, "subject": subject,
                   "card": about.card.pan_masked if about.card else None,
                   "kpm": about.kpm.id if about.kpm else None, "rrn": about.rrn,
                   "mid": about.ewarong.mid if about.ewarong else None})
    return get_complaint(session, complaint.id)


def assign_complaint(session: Session, keys: Keyring, complaint_id: int, *, assignee: str,
                     actor: str, clock: Clock) -> ComplaintView:
    """Give the complaint to ``assignee`` (a closed one is refused); audit
    ``complaint.assign``."""
    actor, assignee = _name(actor, "actor"), _name(assignee, "assignee")
    complaint = _locked(session, complaint_id)
    if not TRANSITIONS[complaint.status]:
        raise ComplaintRefused(f"refused: complaint {complaint_id} is {complaint.status}: "
                               "a closed complaint is not assigned")
    before = complaint.assignee
    now = clock.now()
    complaint.assignee = assignee
    _event(session, keys, complaint, now, actor, "assigned", action="complaint.assign",
           note=assignee, detail={"assignee": assignee, "before": before})
    return get_complaint(session, complaint_id)


def move_complaint(session: Session, keys: Keyring, complaint_id: int, *, to_status: str,
                   note: str, actor: str, clock: Clock) -> ComplaintView:
    """Move the complaint along :data:`TRANSITIONS` (anything else is refused, naming
    the allowed ones); resolved and rejected need a ``note``; audit
    ``complaint.status``."""
    actor = _name(actor, "actor")
    if to_status not in STATUSES:
        raise ComplaintInvalid(f"status {to_status!r} is not one of {', '.join(STATUSES)}")
    complaint = _locked(session, complaint_id)
    before = complaint.status
    allowed = TRANSITIONS[before]
    if to_status not in allowed:
        raise ComplaintRefused(
            f"refused: complaint {complaint_id} is {before}; it can move to "
            + (", ".join(allowed) if allowed else "nothing (it is closed)"))
    note = note.strip()
    if to_status in CLOSING and not note:
        raise ComplaintInvalid(f"a complaint is {to_status} with a note saying why")
    now = clock.now()
    complaint.status = to_status
    _event(session, keys, complaint, now, actor, "status", action="complaint.status",
           from_status=before, to_status=to_status, note=note,
           detail={"from": before, "to": to_status, "note": note})
    return get_complaint(session, complaint_id)


def comment_complaint(session: Session, keys: Keyring, complaint_id: int, *, note: str,
                      actor: str, clock: Clock) -> ComplaintView:
    """A note on the complaint's history (also once it is closed); audit
    ``complaint.comment``."""
    actor = _name(actor, "actor")
    note = note.strip()
    if not note:
        raise ComplaintInvalid("a comment needs a note")
    complaint = _locked(session, complaint_id)
    _event(session, keys, complaint, clock.now(), actor, "comment",
           action="complaint.comment", note=note, detail={"note": note})
    return get_complaint(session, complaint_id)


# -- reading --------------------------------------------------------------------------

def get_complaint(session: Session, complaint_id: int) -> ComplaintView:
    """The complaint with its history (oldest step first)."""
    views = _views(session, select(Complaint).where(Complaint.id == complaint_id))
    if not views:
        raise ComplaintNotFound(f"no complaint {complaint_id}")
    return views[0]


def list_complaints(session: Session, *, status: str | None = None,
                    ewarong_id: int | None = None, limit: int = 200) -> list[ComplaintView]:
    """The newest complaints first (of one status, about one e-warong), at most
    ``limit``."""
    if status is not None and status not in STATUSES:
        raise ComplaintInvalid(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if not 1 <= limit <= _LIST_MAX:
        raise ComplaintInvalid(f"limit {limit}: from 1 to {_LIST_MAX}")
    query = select(Complaint).order_by(Complaint.opened_at.desc(), Complaint.id.desc())
    if status is not None:
        query = query.where(Complaint.status == status)
    if ewarong_id is not None:
        query = query.where(Complaint.ewarong_id == ewarong_id)
    return _views(session, query.limit(limit))


def _views(session: Session, query: Any) -> list[ComplaintView]:
    complaints: Sequence[Complaint] = session.scalars(query).all()
    if not complaints:
        return []
    ids = [c.id for c in complaints]
    events: dict[int, list[ComplaintEventView]] = {i: [] for i in ids}
    for e in session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id.in_(ids))
                             .order_by(ComplaintEvent.id)):
        events[e.complaint_id].append(ComplaintEventView(
            _utc(e.at), e.actor, e.kind, e.from_status, e.to_status, e.note))
    cards = _lookup(session, Card.id, Card.pan_masked, {c.card_id for c in complaints})
    niks = _lookup(session, Kpm.id, Kpm.nik, {c.kpm_id for c in complaints})
    mids = _lookup(session, Ewarong.id, Ewarong.mid, {c.ewarong_id for c in complaints})
    return [ComplaintView(
        c.id, c.status, c.source, c.subject, c.description,
        cards.get(c.card_id) if c.card_id is not None else None,
        mask_nik(niks[c.kpm_id]) if c.kpm_id is not None and c.kpm_id in niks else None,
        c.rrn, mids.get(c.ewarong_id) if c.ewarong_id is not None else None, c.assignee,
        c.opened_by, _utc(c.opened_at), _utc(c.updated_at), tuple(events[c.id]))
        for c in complaints]


def _lookup(session: Session, key: Any, value: Any, ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {int(k): str(v) for k, v in session.execute(select(key, value)
                                                       .where(key.in_(wanted)))}


# -- helpers ----------------------------------------------------------------------------

def _utc(at: datetime) -> datetime:
    """SQLite gives back the naive UTC that was written, PostgreSQL an aware time."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _name(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise ComplaintInvalid(f"no {what} given")
    if len(text) > _NAME_MAX:
        raise ComplaintInvalid(f"the {what} is longer than {_NAME_MAX} characters")
    return text


def _locked(session: Session, complaint_id: int) -> Complaint:
    """The complaint's row, locked to the end of the transaction (PostgreSQL ``FOR
    UPDATE``: two concurrent moves of one complaint happen one after the other)."""
    complaint = session.scalars(select(Complaint).where(Complaint.id == complaint_id)
                                .with_for_update()).first()
    if complaint is None:
        raise ComplaintNotFound(f"no complaint {complaint_id}")
    return complaint


def _event(session: Session, keys: Keyring, complaint: Complaint, now: datetime, actor: str,
           kind: str, *, action: str, detail: dict[str, Any], from_status: str | None = None,
           to_status: str | None = None, note: str = "") -> None:
    complaint.updated_at = now.astimezone(UTC)
    session.add(ComplaintEvent(complaint_id=complaint.id, at=now.astimezone(UTC), actor=actor,
                               kind=kind, from_status=from_status, to_status=to_status,
                               note=note))
    session.flush()
    chain.append(session, keys.audit_key, at=now, actor=actor, action=action,
                 subject=f"complaint:{complaint.id}", detail=detail)


def _about(session: Session, keys: Keyring, *, pan: str | None, nik: str | None,
           rrn: str | None, mid: str | None) -> _About:
    """What the names point at, each checked against the others."""
    if not any((pan, nik, rrn, mid)):
        raise ComplaintInvalid("a complaint is about a card (PAN), a KPM (NIK), a "
                               "transaction (RRN) or an e-warong (MID): none given")
    about = _About()
    if rrn:
        try:
            record_id = record_id_of(rrn)
        except InvalidInput as exc:
            raise ComplaintInvalid(str(exc)) from None
        record = session.get(RequestRecord, record_id) if record_id <= MAX_RECORD_ID else None
        if record is None:
            raise ComplaintNotFound(f"no transaction with RRN {rrn}")
        about.rrn = rrn
        ewarong_id = session.scalar(select(Terminal.ewarong_id)
                                    .where(Terminal.tid == record.tid))
        if ewarong_id is not None:
            about.ewarong = session.get(Ewarong, ewarong_id)
        if record.card_id is not None:
            about.card = session.get(Card, record.card_id)
    if mid:
        ewarong = session.scalars(select(Ewarong).where(Ewarong.mid == mid)).first()
        if ewarong is None:
            raise ComplaintNotFound(f"no e-warong {mid}")
        if about.ewarong is not None and about.ewarong.id != ewarong.id:
            raise ComplaintRefused(f"refused: RRN {rrn} is a transaction of e-warong "
                                   f"{about.ewarong.mid}, not {mid}")
        about.ewarong = ewarong
    if pan:
        card = session.scalars(select(Card).where(
            Card.pan_token == pan_token(keys.pan_token_key, pan))).first()
        if card is None:
            raise ComplaintNotFound(f"no card {mask_pan(pan)}")
        if about.card is not None and about.card.id != card.id:
            raise ComplaintRefused(f"refused: RRN {rrn} was made with card "
                                   f"{about.card.pan_masked}, not {card.pan_masked}")
        about.card = card
    if about.card is not None:
        about.kpm = session.get(Kpm, about.card.kpm_id)
    if nik:
        kpm = session.scalars(select(Kpm).where(Kpm.nik == nik)).first()
        if kpm is None:
            raise ComplaintNotFound(f"no KPM with NIK {mask_nik(nik)}")
        if about.kpm is not None and about.kpm.id != kpm.id:
            assert about.card is not None
            raise ComplaintRefused(f"refused: card {about.card.pan_masked} belongs to KPM "
                                   f"{mask_nik(about.kpm.nik)}, not {mask_nik(nik)}")
        about.kpm = kpm
    return about
