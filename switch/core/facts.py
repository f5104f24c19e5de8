"""What a decision reads besides the request (:mod:`switch.core.request`): the batch's
facts as the store found them and the decisions before it have left them.

:class:`BatchFacts` is filled by :meth:`switch.host.store.BatchStore.read` (one round
trip) and moved on by :meth:`BatchFacts.apply` after each decision, so the second
request for a card in a batch sees the first one's debit, PIN count and ATC, and a
duplicate later in the batch replays the stored response of an earlier one.
Deciders only read it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import NamedTuple

from switch.core.batch import PURCHASE_CODE, VOID_CODE, BatchEntry, OpenBatch
from switch.core.effects import (
    AlertRaise,
    AuditEntry,
    CardChange,
    Effect,
    KeysChange,
    LogLine,
    RecordWrite,
    RrnIssued,
    SettlementWrite,
    StockMove,
    UploadWrite,
    VoidMark,
)
from switch.core.policy import OFF, Policy
from switch.core.request import RequestKey
from switch.core.verify import Checks
from switch.ledger.money import Posting, apply_postings
from switch.protocol.errors import InvariantError


@dataclass(frozen=True)
class TerminalFacts:
    tid: str
    active: bool
    mid: str
    ewarong_active: bool
    #: Clear TPK of the current logon session; ``None`` until the terminal logs on.
    tpk: bytes | None
    #: Clear TAK of the current logon session (HOST_SPEC §6 MAC key).
    tak: bytes | None = None
    #: The last logon's DE 11 and time (HOST_SPEC §4: a repeat within 60 s).
    logon_stan: str | None = None
    logon_at: datetime | None = None


@dataclass(frozen=True)
class EwarongRules:
    """What the programme rules need of a terminal's e-warong (docs/RULES.md)."""

    #: Region code for reference prices (``""``: national prices only).
    region: str = ""
    #: Opening hours, local HHMM (``None``: always open), and the offset from UTC.
    open_hhmm: str | None = None
    close_hhmm: str | None = None
    utc_offset_minutes: int = 420
    #: Zone prefixes it serves (empty: every zone).
    zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Terminal:
    """A terminal as the batch knows it: the gate's facts, where its sales are credited,
    its e-warong's rules, and (read only for a terminal logging on in the batch) its
    clear TMK."""

    facts: TerminalFacts
    payable_account_id: int
    tmk: bytes | None = None
    ewarong_id: int = 0
    rules: EwarongRules = EwarongRules()


@dataclass(frozen=True)
class CardFacts:
    """A card as the rules see it (the balance is its KPM's wallet, shared by the
    KPM's cards)."""

    card_id: int
    status: str
    expiry_yymm: str
    pin_offset: str
    wrong_pin_count: int
    kpm_active: bool
    wallet_account_id: int
    balance_sen: int
    #: The latest of issue, last use and reactivation (dormancy counts from it).
    active_since: datetime | None = None
    #: The KPM's zone (zoning).
    zone: str = ""


@dataclass(frozen=True)
class Card:
    """A card as the batch knows it: its row, and the chip state decisions change."""

    card_id: int
    pan_masked: str
    psn: str
    expiry_yymm: str
    pin_offset: str
    kpm_active: bool
    wallet_account_id: int
    status: str
    wrong_pin_count: int
    last_atc: int | None
    last_used_at: datetime | None
    issued_at: datetime | None = None
    reactivated_at: datetime | None = None
    zone: str = ""

    def facts(self, balance_sen: int) -> CardFacts:
        return CardFacts(self.card_id, self.status, self.expiry_yymm, self.pin_offset,
                         self.wrong_pin_count, self.kpm_active, self.wallet_account_id,
                         balance_sen, self.active_since, self.zone)

    @cached_property
    def active_since(self) -> datetime | None:
        """The latest of issue, last use and reactivation, in UTC (once per card row:
        a changed card is a new one)."""
        latest = None
        for moment in (self.issued_at, self.last_used_at, self.reactivated_at):
            if moment is not None:
                at = utc(moment)
                if latest is None or at > latest:
                    latest = at
        return latest


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes; PostgreSQL aware ones."""
    zone = moment.tzinfo
    if zone is UTC:  # the common case, on every rule's path: no conversion
        return moment
    return moment.replace(tzinfo=UTC) if zone is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class StockLevel:
    """An e-warong's units of one item, and its low-stock threshold (``None``: the
    policy's)."""

    units: int
    low_threshold: int | None = None


@dataclass(frozen=True)
class ItemFacts:
    code: str
    category: str
    allowed: bool


class StoredRecord(NamedTuple):
    """An idempotency record (HOST_SPEC §4) with its stored response and, when it moved
    money, the transfer's accounts (what a reversal of it needs)."""

    kind: str
    tid: str
    stan: str
    request_hash: str
    response_code: str
    response_unit: bytes
    transfer_id: int | None
    amount_sen: int = 0
    debit_account_id: int | None = None
    credit_account_id: int | None = None
    record_id: int = 0
    processing_code: str = ""
    #: A void: the purchase it cancels; a purchase: the void that stands against it.
    original_record_id: int | None = None
    voided_by_record_id: int | None = None
    #: A purchase's DE 48 (a void: its original's), and the e-warong whose stock it took
    #: (a void: gave back); ``None``: no stock moved.
    basket: str | None = None
    stock_ewarong_id: int | None = None


class PinOutcome(enum.Enum):
    NOT_CHECKED = "not_checked"
    CORRECT = "correct"
    WRONG = "wrong"
    #: Wrong, and the tries are used up: the card is blocked (RC 75).
    BLOCKED = "blocked"


@dataclass
class BatchFacts:
    """Everything a batch's decisions read (see the module).  Built by the store or,
    in tests of the core, by hand; changed only by :meth:`apply`."""

    now: datetime
    checks: Checks
    max_pin_tries: int
    terminals: dict[str, Terminal] = field(default_factory=dict)
    #: By PAN (the store asked for the batch's PANs by token).
    cards: dict[str, Card] = field(default_factory=dict)
    #: Balances the batch holds: its cards' wallets.
    balances: dict[int, int] = field(default_factory=dict)
    records: dict[RequestKey, dict[str, StoredRecord]] = field(default_factory=dict)
    catalogue: dict[str, ItemFacts] = field(default_factory=dict)
    #: The open batches of the terminals that void or settle in this batch (HOST_SPEC §4).
    open_batches: dict[str, OpenBatch] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    #: Stock by (e-warong id, item code), of the e-warongs and items the batch may move.
    stock: dict[tuple[int, str], StockLevel] = field(default_factory=dict)
    #: Reference unit prices by (item code, region prefix; ``""`` national).
    reference_prices: dict[tuple[str, str], int] = field(default_factory=dict)
    #: The velocity window: by TID, cards it saw and when, oldest first (the store
    #: reads the most recent of the window; the batch's own cards follow) ...
    recent_cards: dict[str, dict[int, datetime]] = field(default_factory=dict)
    #: ... and how many distinct cards it saw within the window (absent: counted
    #: from ``recent_cards``).
    window_counts: dict[str, int] = field(default_factory=dict)
    #: Ids reserved for the batch's new idempotency records and transfers.
    record_ids: list[int] = field(default_factory=list)
    transfer_ids: list[int] = field(default_factory=list)
    records_used: int = 0
    transfers_used: int = 0
    #: ``now`` in UTC (the rules compare stored UTC moments with it).
    now_utc: datetime = field(init=False)
    #: The velocity window's start (``now_utc`` less the window's minutes).
    velocity_since: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.now_utc = utc(self.now)
        self.velocity_since = self.now_utc - timedelta(
            minutes=self.policy.velocity_window_minutes)

    def terminal(self, tid: str) -> Terminal | None:
        return self.terminals.get(tid)

    def card(self, pan: str) -> tuple[Card, CardFacts] | None:
        card = self.cards.get(pan)
        if card is None:
            return None
        return card, card.facts(self.balances[card.wallet_account_id])

    def record(self, key: RequestKey, kind: str) -> StoredRecord | None:
        found = self.records.get(key)
        return found.get(kind) if found else None

    def open_batch(self, tid: str) -> OpenBatch:
        found = self.open_batches.get(tid)
        if found is None:
            raise InvariantError(f"the store did not read the open batch of {tid}")
        return found

    def next_record_id(self) -> int:
        return _next(self.record_ids, self.records_used, "request_records")

    def next_transfer_id(self) -> int:
        return _next(self.transfer_ids, self.transfers_used, "transfers")

    def apply(self, effects: Iterable[Effect]) -> BatchFacts:
        """The facts after ``effects`` (in place: a batch's facts are its own)."""
        for effect in effects:
            if isinstance(effect, Posting):
                apply_postings(self.balances, (effect,))
                self.transfers_used += 1
                if effect.reverses_transfer_id is not None:
                    for batch in self.open_batches.values():
                        batch.reverse_transfer(effect.reverses_transfer_id)
            elif isinstance(effect, CardChange):
                self.cards[effect.pan] = replace(
                    self.cards[effect.pan], status=effect.status,
                    wrong_pin_count=effect.wrong_pin_count, last_atc=effect.last_atc,
                    last_used_at=effect.last_used_at)
            elif isinstance(effect, RecordWrite):
                self._record(effect)
            elif isinstance(effect, RrnIssued):
                self.records_used += 1
            elif isinstance(effect, VoidMark):
                self._void_mark(effect)
            elif isinstance(effect, UploadWrite):
                self.open_batch(effect.upload.tid).uploads.append(effect.upload)
            elif isinstance(effect, SettlementWrite):
                if effect.closed:
                    assert effect.next_batch_number is not None
                    self.open_batches[effect.tid] = OpenBatch(effect.tid,
                                                              effect.next_batch_number)
            elif isinstance(effect, StockMove):
                key = (effect.ewarong_id, effect.item_code)
                level = self.stock.get(key)
                self.stock[key] = (StockLevel(effect.delta_units) if level is None else
                                   StockLevel(level.units + effect.delta_units,
                                              level.low_threshold))
            elif isinstance(effect, KeysChange):
                terminal = self.terminals[effect.tid]
                self.terminals[effect.tid] = replace(terminal, facts=replace(
                    terminal.facts, tpk=effect.tpk, tak=effect.tak, logon_stan=effect.stan,
                    logon_at=effect.at))
            else:
                assert isinstance(effect, AuditEntry | LogLine | AlertRaise), effect
        return self

    def _record(self, write: RecordWrite) -> None:
        self.records.setdefault(write.key, {})[write.kind] = StoredRecord(
            write.kind, write.key.tid, write.key.stan, write.request_hash,
            write.response_code, write.response_unit, write.transfer_id, write.amount_sen,
            write.debit_account_id, write.credit_account_id, write.record_id,
            write.processing_code, write.original_record_id, basket=write.basket,
            stock_ewarong_id=write.stock_ewarong_id)
        self.records_used += 1
        if write.card_id is not None and write.joins_window and self.policy.velocity != OFF:
            seen = self.recent_cards.setdefault(write.key.tid, {})
            last = seen.get(write.card_id)
            if write.key.tid in self.window_counts and (
                    last is None or last < self.velocity_since):
                self.window_counts[write.key.tid] += 1  # a new card in the window
            seen.pop(write.card_id, None)  # the window stays oldest first
            seen[write.card_id] = self.now_utc
        batch = self.open_batches.get(write.key.tid)
        if (batch is not None and write.kind == "request" and write.response_code == "00"
                and write.processing_code in (PURCHASE_CODE, VOID_CODE)):
            batch.entries[write.record_id] = BatchEntry(
                write.record_id, write.key, write.processing_code, write.amount_sen,
                write.invoice, write.transfer_id, write.debit_account_id,
                write.credit_account_id, original_record_id=write.original_record_id,
                basket=write.basket, stock_ewarong_id=write.stock_ewarong_id)

    def _void_mark(self, mark: VoidMark) -> None:
        for kinds in self.records.values():
            stored = kinds.get("request")
            if stored is not None and stored.record_id == mark.record_id:
                kinds["request"] = stored._replace(voided_by_record_id=mark.voided_by_record_id)
        for batch in self.open_batches.values():
            batch.mark(mark.record_id, voided_by_record_id=mark.voided_by_record_id)


def _next(ids: list[int], used: int, table: str) -> int:
    if used >= len(ids):
        raise InvariantError(f"the store reserved {len(ids)} ids of {table}; more are used")
    return ids[used]
