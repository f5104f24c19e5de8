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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from switch.audit.chain import Entry
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
    """A logon's new working keys (clear here; the store wraps them under the KEK)."""

    tid: str
    tpk: bytes
    tak: bytes


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


Effect = Posting | CardChange | KeysChange | RecordWrite | AuditEntry | LogLine


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
