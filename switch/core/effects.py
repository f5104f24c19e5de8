"""What a decision changes, as data (DESIGN.md: the host as a pure decision core).

A :class:`Decision` carries the response and its effects.  The batch's facts follow
the effects in memory (:meth:`switch.core.facts.BatchFacts.apply`); the store writes
them, all of a batch in one round trip and one commit
(:meth:`switch.host.store.BatchStore.write`).  Money moves only as
:class:`~switch.ledger.money.Posting` (written by :mod:`switch.ledger.postings`).
Log lines are written after the commit, so a line never tells of a decision that
rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from switch.audit.chain import Entry
from switch.core.batch import Difference, Totals, Upload
from switch.core.request import RequestKey
from switch.ledger.money import Posting


@dataclass(frozen=True)
class CardChange:
    """A card's chip state after a decision (PIN try counter, status, ATC, last use)."""

    pan: str
    card_id: int
    status: str
    wrong_pin_count: int
    last_atc: int | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class KeysChange:
    """A logon's new working keys (clear here; the store wraps them under the KEK), and
    the logon's DE 11 and time (a repeat within 60 s gets the same keys, HOST_SPEC §4)."""

    tid: str
    tpk: bytes
    tak: bytes
    stan: str
    at: datetime


@dataclass(frozen=True)
class RrnIssued:
    """An answer that took a reserved record id for its RRN (DE 37) and writes no record
    (a refusal, a 94): the id is used up."""

    record_id: int


@dataclass(frozen=True)
class VoidMark:
    """A purchase record's standing void (``None``: the void was reversed), HOST_SPEC §4."""

    record_id: int
    voided_by_record_id: int | None


@dataclass(frozen=True)
class RecordWrite:
    """A new idempotency record (HOST_SPEC §4) with its stored response (MAC placeholder)."""

    record_id: int
    key: RequestKey
    kind: str
    mti: str
    processing_code: str
    amount_sen: int
    request_hash: str
    response_code: str
    response_unit: bytes
    transfer_id: int | None = None
    #: The accounts of ``transfer_id`` (so a later reversal in the batch finds them).
    debit_account_id: int | None = None
    credit_account_id: int | None = None
    #: DE 62 of a purchase or void.
    invoice: str | None = None
    #: A void: the purchase record it cancels.
    original_record_id: int | None = None
    #: A card request's card (the velocity window).
    card_id: int | None = None
    #: A purchase's DE 48 (a void: its original's) and the e-warong whose stock it moved.
    basket: str | None = None
    stock_ewarong_id: int | None = None
    #: ``False``: the velocity rule declined it, so its card does not join the
    #: terminal's window (a retry of the refused card is refused again, FAILURES F9).
    joins_window: bool = True


@dataclass(frozen=True)
class StockMove:
    """Units of an item off (negative) or back onto an e-warong's shelf (docs/RULES.md)."""

    ewarong_id: int
    item_code: str
    delta_units: int


@dataclass(frozen=True)
class AlertRaise:
    """A programme rule's hit: ``action`` ``decline`` (the request was declined for it)
    or ``flag`` (only recorded); ``record_id`` the request's record (low stock: the sale's)."""

    rule: str
    action: str
    tid: str | None
    ewarong_id: int | None
    record_id: int | None
    card_ids: tuple[int, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadWrite:
    """A batch upload (0320) as received: what the terminal holds.  Moves no money."""

    upload: Upload
    stan: str
    local_time: str
    local_date: str


@dataclass(frozen=True)
class SettlementWrite:
    """A settlement (0500), HOST_SPEC §4: the totals on both sides and, when ``closed``,
    the batch it closes (its records and uploads), the differences a batch upload
    showed, and the terminal's next batch number."""

    settlement_id: int
    tid: str
    batch_number: str
    processing_code: str
    stan: str
    local_date: str
    response_code: str
    closed: bool
    terminal_totals: Totals
    switch_totals: Totals
    differences: tuple[Difference, ...] = ()
    closed_record_ids: tuple[int, ...] = ()
    closed_upload_ids: tuple[int, ...] = ()
    next_batch_number: str | None = None


#: One record for the tamper-evident chain (linked and MACed by the store when it
#: writes the batch): ``AuditEntry(at, actor, action, subject, detail)``.
AuditEntry = Entry


@dataclass(frozen=True)
class LogLine:
    """``logging.getLogger("bpnt.host").log(level, msg, *args)`` once the batch commits."""

    level: int
    msg: str
    args: tuple[Any, ...] = ()


def info(msg: str, *args: Any) -> LogLine:
    return LogLine(logging.INFO, msg, args)


def warning(msg: str, *args: Any) -> LogLine:
    return LogLine(logging.WARNING, msg, args)


Effect = (Posting | CardChange | KeysChange | RecordWrite | RrnIssued | VoidMark
          | UploadWrite | SettlementWrite | StockMove | AlertRaise | AuditEntry | LogLine)


@dataclass(frozen=True)
class Decision:
    """The answer to one request and what it changes.

    ``response``: the encoded response message (no TPDU), with a MAC placeholder when
    ``sign_with`` is set (the host signs it, in one place, after the commit);
    ``None``: close the connection without an answer.
    """

    response: bytes | None
    sign_with: bytes | None = None
    effects: tuple[Effect, ...] = ()


_Kind = TypeVar("_Kind")


class ByKind:
    """A batch's effects grouped by class, each group in the batch's order (one pass
    over them, whichever writers then ask for their kinds)."""

    __slots__ = ("_groups",)

    def __init__(self, effects: Iterable[Effect]) -> None:
        groups: dict[type, list[Any]] = {}
        for effect in effects:
            group = groups.get(type(effect))
            if group is None:
                groups[type(effect)] = [effect]
            else:
                group.append(effect)
        self._groups = groups

    def of(self, kind: type[_Kind]) -> list[_Kind]:
        """The effects of exactly ``kind`` (not of its subclasses)."""
        found: list[_Kind] = self._groups.get(kind, [])
        return found
