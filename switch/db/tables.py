"""All tables: the registry (KPM, cards, e-warongs, terminals, goods), the money and the
audit chain.

Portable types only (SQLite is the embedded default, PostgreSQL the production
engine).  Money is ``BigInteger`` sen.  No clear PAN, PIN or key is stored: cards
carry an HMAC token and an IBM 3624 PIN offset, terminals carry wrapped keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from switch.money import TRANSFER_KINDS


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


ACCOUNT_KINDS = ("program", "kpm_wallet", "ewarong_payable")
CARD_STATUSES = ("active", "blocked", "lost", "stolen", "dormant")
#: HOST_SPEC §4 idempotency classes: 0100/0200 ("request"), their reversals (0400/0401),
#: batch upload (0320) and settlement (0500).
RECORD_KINDS = ("request", "reversal", "upload", "settlement")
DIFFERENCE_KINDS = ("switch_only", "terminal_only", "amount")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    """A portable CHECK (SQLite and PostgreSQL) that ``column`` is one of ``values``."""
    listed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({listed})", name)


ON_OFF = ("active", "inactive")


class Account(Base):
    """A ledger account.  The program account is the funding source: allocations
    debit it, so it goes negative by exactly what the program credited."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("kind", "owner_ref"),
        _one_of("kind", ACCOUNT_KINDS, "account_kind"),
        CheckConstraint("kind = 'program' OR balance_sen >= 0", "no_negative_wallet"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner_ref: Mapped[str] = mapped_column(String(40))
    balance_sen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Transfer(Base):
    """A movement of money: debit one account, credit another (two journal entries)."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint("amount_sen > 0", "positive_amount"),
        _one_of("kind", TRANSFER_KINDS, "transfer_kind"),
        CheckConstraint("debit_account_id <> credit_account_id", "two_accounts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_sen: Mapped[int] = mapped_column(BigInteger)
    #: Unique: a transfer is reversed at most once (HOST_SPEC §4).
    reverses_transfer_id: Mapped[int | None] = mapped_column(
        ForeignKey("transfers.id"), unique=True, default=None
    )
    memo: Mapped[str | None] = mapped_column(String(120), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JournalEntry(Base):
    """One side of a transfer: negative on the debited account, positive on the credited."""

    __tablename__ = "journal_entries"
    __table_args__ = (CheckConstraint("amount_sen <> 0", "nonzero_entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfers.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_sen: Mapped[int] = mapped_column(BigInteger)


def _zone_of_nik(context: Any) -> str:
    """A new KPM's zone when none is given: the first 6 digits of its NIK."""
    return str(context.get_current_parameters()["nik"])[:6]


class Kpm(Base):
    """A beneficiary family (Keluarga Penerima Manfaat)."""

    __tablename__ = "kpm"
    __table_args__ = (_one_of("status", ON_OFF, "kpm_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nik: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12), default="active")
    wallet_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    #: Where the KPM lives (zoning, issue 14): the NIK's province, regency and district
    #: code (its first 6 digits) at registration; ``bpnt-switch rules kpm-zone`` changes it.
    zone: Mapped[str] = mapped_column(String(6), default=_zone_of_nik)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Card(Base):
    """A KKS card; HOST_SPEC §5: a card not ``active`` is declined 62."""

    __tablename__ = "cards"
    __table_args__ = (_one_of("status", CARD_STATUSES, "card_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: HMAC-SHA256 of the PAN: the lookup key; the PAN itself is never stored.
    pan_token: Mapped[str] = mapped_column(String(64), unique=True)
    pan_masked: Mapped[str] = mapped_column(String(19))
    kpm_id: Mapped[int] = mapped_column(ForeignKey("kpm.id"), index=True)
    psn: Mapped[str] = mapped_column(String(2), default="01")
    expiry_yymm: Mapped[str] = mapped_column(String(4))
    #: active, blocked, lost, stolen, dormant
    status: Mapped[str] = mapped_column(String(12), default="active")
    #: IBM 3624 PIN offset: the PIN verification value, never a clear PIN.
    pin_offset: Mapped[str] = mapped_column(String(12))
    wrong_pin_count: Mapped[int] = mapped_column(Integer, default=0)
    last_atc: Mapped[int | None] = mapped_column(Integer, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    #: Dormancy (FAILURES F5) counts from the latest of issue, last use and reactivation.
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            default=None)


class Ewarong(Base):
    """An e-warong agent (DE 42 MID); its payable account collects purchases."""

    __tablename__ = "ewarongs"
    __table_args__ = (_one_of("status", ON_OFF, "ewarong_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mid: Mapped[str] = mapped_column(String(15), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12), default="active")
    payable_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    #: Region code (2, 4 or 6 digits: province, regency, district) whose reference
    #: prices apply; ``NULL``: the national ones.
    region: Mapped[str | None] = mapped_column(String(6), default=None)
    #: Opening hours in the e-warong's local time (HHMM; ``NULL``: always open) and its
    #: offset from UTC (WIB 420, WITA 480, WIT 540).
    open_hhmm: Mapped[str | None] = mapped_column(String(4), default=None)
    close_hhmm: Mapped[str | None] = mapped_column(String(4), default=None)
    utc_offset_minutes: Mapped[int] = mapped_column(Integer, default=420)


class EwarongZone(Base):
    """A zone an e-warong serves: KPM whose zone starts with ``zone_prefix`` (2, 4 or 6
    digits).  An e-warong with no rows serves every zone."""

    __tablename__ = "ewarong_zones"

    ewarong_id: Mapped[int] = mapped_column(ForeignKey("ewarongs.id"), primary_key=True)
    zone_prefix: Mapped[str] = mapped_column(String(6), primary_key=True)


class Terminal(Base):
    """An EDC (DE 41 TID); working keys arrive at logon (HOST_SPEC §6)."""

    __tablename__ = "terminals"
    __table_args__ = (_one_of("status", ON_OFF, "terminal_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tid: Mapped[str] = mapped_column(String(8), unique=True)
    ewarong_id: Mapped[int] = mapped_column(ForeignKey("ewarongs.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default="active")
    #: Keys wrapped under the key-encryption key (AES-GCM, TID-bound); never clear.
    tmk_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    tpk_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    tak_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    #: HOST_SPEC §4: the open batch's number as the switch expects it (n6), moved on by
    #: an accepted settlement.
    batch_number: Mapped[str] = mapped_column(String(6), default="000001")
    #: The last logon's DE 11 and time: a repeat within 60 s gets the same keys (§4).
    logon_stan: Mapped[str | None] = mapped_column(String(6), default=None)
    logon_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Item(Base):
    """A good an e-warong sells; only the BPNT food categories may be bought."""

    __tablename__ = "items"

    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    category: Mapped[str] = mapped_column(String(16))
    allowed: Mapped[bool] = mapped_column(Boolean, default=True)


class ReferencePrice(Base):
    """The programme's reference unit price of an item in a region ('' national; the
    longest region prefix of the e-warong's region applies)."""

    __tablename__ = "reference_prices"
    __table_args__ = (CheckConstraint("unit_price_sen > 0", "reference_price_positive"),)

    item_code: Mapped[str] = mapped_column(ForeignKey("items.code"), primary_key=True)
    region: Mapped[str] = mapped_column(String(6), primary_key=True, default="")
    unit_price_sen: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Stock(Base):
    """Units of an item on an e-warong's shelf (FAILURES F15).  Moved by receipts
    (:class:`StockReceipt`) and by the host's purchases, voids and reversals, in the
    same transaction as the debit; never below zero."""

    __tablename__ = "stock"
    __table_args__ = (CheckConstraint("quantity >= 0", "stock_not_negative"),)

    ewarong_id: Mapped[int] = mapped_column(ForeignKey("ewarongs.id"), primary_key=True)
    item_code: Mapped[str] = mapped_column(ForeignKey("items.code"), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Below this a sale raises a ``low_stock`` alert (``NULL``: the setting's).
    low_threshold: Mapped[int | None] = mapped_column(Integer, default=None)


STOCK_RECEIPT_KINDS = ("receive", "adjust")


class StockReceipt(Base):
    """Goods delivered to (or, ``adjust``, written off at) an e-warong.  A delivery's
    ``reference`` is unique per e-warong and item: importing a delivery note twice
    adds nothing."""

    __tablename__ = "stock_receipts"
    __table_args__ = (
        UniqueConstraint("ewarong_id", "item_code", "reference"),
        _one_of("kind", STOCK_RECEIPT_KINDS, "stock_receipt_kind"),
        CheckConstraint("quantity <> 0", "stock_receipt_not_zero"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ewarong_id: Mapped[int] = mapped_column(ForeignKey("ewarongs.id"), index=True)
    item_code: Mapped[str] = mapped_column(ForeignKey("items.code"))
    kind: Mapped[str] = mapped_column(String(8), default="receive")
    quantity: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str | None] = mapped_column(String(40), default=None)
    actor: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


ALERT_RULES = ("velocity", "off_hours", "zoning", "over_price", "low_stock")
ALERT_ACTIONS = ("decline", "flag")


class Alert(Base):
    """A programme rule's hit (issue 14): who, where, which cards, what was done."""

    __tablename__ = "alerts"
    __table_args__ = (
        _one_of("rule", ALERT_RULES, "alert_rule"),
        _one_of("action", ALERT_ACTIONS, "alert_action"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 index=True)
    rule: Mapped[str] = mapped_column(String(16))
    #: ``decline``: the request was declined for it; ``flag``: only recorded.
    action: Mapped[str] = mapped_column(String(8))
    tid: Mapped[str | None] = mapped_column(String(8), default=None)
    ewarong_id: Mapped[int | None] = mapped_column(ForeignKey("ewarongs.id"), default=None)
    #: The request record of the transaction that hit the rule (none for low stock).
    record_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: JSON list of the card ids involved (velocity: every card of the window).
    card_ids: Mapped[str] = mapped_column(Text, default="[]")
    #: JSON object: the rule's figures (e.g. cards in the window, the unit price and
    #: the reference price, the stock left).
    detail: Mapped[str] = mapped_column(Text, default="{}")


class TerminalCard(Base):
    """The velocity rule's memory (FAILURES F9): when a terminal last saw each card
    (written with every card request's record, one row per terminal and card)."""

    __tablename__ = "terminal_cards"
    __table_args__ = (Index("ix_terminal_cards_tid_last_at", "tid", "last_at"),)

    tid: Mapped[str] = mapped_column(String(8), primary_key=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id"), primary_key=True)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """The e-warong's confirmation that the goods of an approved purchase were handed
    over (FAILURES F10)."""

    __tablename__ = "deliveries"

    record_id: Mapped[int] = mapped_column(ForeignKey("request_records.id"), primary_key=True)
    confirmed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(60))


class Period(Base):
    """A benefit period (month) that has been allocated."""

    __tablename__ = "periods"

    code: Mapped[str] = mapped_column(String(7), primary_key=True)
    amount_sen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RequestRecord(Base):
    """The idempotency record of HOST_SPEC §4, with the exact response bytes.

    ``key_date`` is DE 13 placed in the year nearest the switch's clock (YYYYMMDD), so
    a key that comes round next year is a new record; a repeat is matched only
    against records created within the retention window (settings).
    """

    __tablename__ = "request_records"
    __table_args__ = (
        UniqueConstraint("tid", "key_date", "stan", "kind"),
        _one_of("kind", RECORD_KINDS, "record_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tid: Mapped[str] = mapped_column(String(8))
    local_date: Mapped[str] = mapped_column(String(4))
    key_date: Mapped[str] = mapped_column(String(8))
    stan: Mapped[str] = mapped_column(String(6))
    #: "request" (0100/0200), "reversal" (0400/0401), "upload" (0320), "settlement" (0500)
    kind: Mapped[str] = mapped_column(String(10))
    #: The response MTI (0110, 0210, 0330, 0410, 0510).
    mti: Mapped[str] = mapped_column(String(4))
    processing_code: Mapped[str] = mapped_column(String(6))
    amount_sen: Mapped[int] = mapped_column(BigInteger, default=0)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_code: Mapped[str] = mapped_column(String(2))
    response_unit: Mapped[bytes] = mapped_column(LargeBinary)
    transfer_id: Mapped[int | None] = mapped_column(
        ForeignKey("transfers.id"), unique=True, default=None
    )
    #: DE 62 of a purchase or void (HOST_SPEC §3: unique in the terminal's batch).
    invoice: Mapped[str | None] = mapped_column(String(6), default=None)
    #: A void: the purchase record it cancels.
    original_record_id: Mapped[int | None] = mapped_column(
        ForeignKey("request_records.id", ondelete="SET NULL"), default=None)
    #: A purchase: the approved void that stands against it (cleared if the void is
    #: reversed), HOST_SPEC §4.
    voided_by_record_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: The settlement that closed the batch this approved purchase or void was in;
    #: ``NULL``: in the terminal's open batch.
    settlement_id: Mapped[int | None] = mapped_column(
        ForeignKey("settlements.id"), default=None)
    #: A card request's card (the velocity rule counts a terminal's distinct cards).
    card_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: DE 48 of a purchase (the price report, and the stock a void or reversal returns).
    basket: Mapped[str | None] = mapped_column(Text, default=None)
    #: The e-warong whose stock an approved purchase took (``NULL``: none, inventory off).
    stock_ewarong_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Settlement(Base):
    """A settlement request (0500) and what the switch made of it, HOST_SPEC §4.  Its id is
    the id of the request's idempotency record (so its RRN)."""

    __tablename__ = "settlements"
    __table_args__ = (_one_of("processing_code", ("920000", "960000"), "settlement_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tid: Mapped[str] = mapped_column(String(8), index=True)
    #: DE 60, the terminal's batch number.
    batch_number: Mapped[str] = mapped_column(String(6))
    processing_code: Mapped[str] = mapped_column(String(6))
    stan: Mapped[str] = mapped_column(String(6))
    local_date: Mapped[str] = mapped_column(String(4))
    response_code: Mapped[str] = mapped_column(String(2))
    #: The batch was closed by this settlement (00).
    closed: Mapped[bool] = mapped_column(Boolean)
    #: DE 63 as the terminal sent it.
    terminal_purchase_count: Mapped[int] = mapped_column(Integer)
    terminal_purchase_sen: Mapped[int] = mapped_column(BigInteger)
    terminal_void_count: Mapped[int] = mapped_column(Integer)
    terminal_void_sen: Mapped[int] = mapped_column(BigInteger)
    #: The same totals from the switch's open batch.
    switch_purchase_count: Mapped[int] = mapped_column(Integer)
    switch_purchase_sen: Mapped[int] = mapped_column(BigInteger)
    switch_void_count: Mapped[int] = mapped_column(Integer)
    switch_void_sen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BatchUpload(Base):
    """One 0320 (HOST_SPEC §4): what the terminal holds of its batch.  Never money.  Its
    id is the id of the upload's idempotency record."""

    __tablename__ = "batch_uploads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tid: Mapped[str] = mapped_column(String(8), index=True)
    batch_number: Mapped[str] = mapped_column(String(6))
    stan: Mapped[str] = mapped_column(String(6))
    #: DE 3 as sent (the original's with the last digit 1: 000001, 020001).
    processing_code: Mapped[str] = mapped_column(String(6))
    amount_sen: Mapped[int] = mapped_column(BigInteger)
    #: DE 12/13: the original's local time and date.
    local_time: Mapped[str] = mapped_column(String(6))
    local_date: Mapped[str] = mapped_column(String(4))
    #: DE 37/38/62: the original's RRN, approval code and invoice.
    rrn: Mapped[str] = mapped_column(String(12))
    approval_code: Mapped[str] = mapped_column(String(6))
    invoice: Mapped[str] = mapped_column(String(6))
    #: The settlement (960000) that took it into account; ``NULL`` until then.
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SettlementDifference(Base):
    """A difference a batch upload showed (HOST_SPEC §4): on the switch only, on the
    terminal only, or a different amount.  For the reconciliation report."""

    __tablename__ = "settlement_differences"
    __table_args__ = (_one_of("kind", DIFFERENCE_KINDS, "difference_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    settlement_id: Mapped[int] = mapped_column(ForeignKey("settlements.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    rrn: Mapped[str | None] = mapped_column(String(12), default=None)
    invoice: Mapped[str | None] = mapped_column(String(6), default=None)
    #: The purchase or void code (000000 / 020000).
    processing_code: Mapped[str] = mapped_column(String(6))
    switch_amount_sen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    terminal_amount_sen: Mapped[int | None] = mapped_column(BigInteger, default=None)


class IdCounter(Base):
    """SQLite only: the last id handed out of a table whose ids are reserved before the
    rows exist (an id reserved and left unused, e.g. a refusal's RRN, is never handed
    out again).  PostgreSQL uses the table's sequence."""

    __tablename__ = "id_counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger)


class TerminalPresence(Base):
    """Last known presence of an MQTT terminal (HOST_SPEC §1: retained status and Last
    Will on ``bpnt/v1/edc/{tid}/status``).  Not money: written by the transports."""

    __tablename__ = "terminal_presence"

    tid: Mapped[str] = mapped_column(String(8), primary_key=True)
    #: "online" or "offline"
    status: Mapped[str] = mapped_column(String(8))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: Where the news came from, e.g. "mqtt".
    source: Mapped[str] = mapped_column(String(16))


class AuditRecord(Base):
    """One audited event.  ``mac`` = HMAC(key, prev_mac || canonical(record)), linked
    to the record before it in the same ``chain`` (issue 17: several chains, so switch
    processes append at once)."""

    __tablename__ = "audit_records"

    chain: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False,
                                       server_default="1")
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(60))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(80))
    detail: Mapped[str] = mapped_column(Text)
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """A chain's last link (``id``: the chain's number), updated with every append: a
    deleted tail shows."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(64))


# --- Operations console (issue 16): complaints and console users -------------------

COMPLAINT_STATUSES = ("open", "investigating", "resolved", "rejected")
CONSOLE_ROLES = ("admin", "operator", "auditor", "ewarong")


class Complaint(Base):
    """A KPM's or agent's complaint, tied to a card, a KPM or a transaction (RRN).
    Status: open -> investigating -> resolved | rejected; every step is a
    :class:`ComplaintEvent` and an audit record."""

    __tablename__ = "complaints"
    __table_args__ = (_one_of("status", COMPLAINT_STATUSES, "complaint_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    #: Who it is from: "kpm", "ewarong" or "operator" (taken on the phone, say).
    source: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    #: What it is about (any that apply): a card, a KPM, a transaction's RRN, an e-warong.
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), default=None)
    kpm_id: Mapped[int | None] = mapped_column(ForeignKey("kpm.id"), default=None)
    rrn: Mapped[str | None] = mapped_column(String(12), default=None, index=True)
    ewarong_id: Mapped[int | None] = mapped_column(ForeignKey("ewarongs.id"), default=None,
                                                   index=True)
    assignee: Mapped[str | None] = mapped_column(String(60), default=None)
    opened_by: Mapped[str] = mapped_column(String(60))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ComplaintEvent(Base):
    """One step of a complaint's history (opened, assigned, moved, commented)."""

    __tablename__ = "complaint_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(60))
    #: "opened", "assigned", "status", "comment"
    kind: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16), default=None)
    to_status: Mapped[str | None] = mapped_column(String(16), default=None)
    note: Mapped[str] = mapped_column(Text, default="")


class ConsoleUser(Base):
    """A console login.  ``password_hash``: argon2id (never a clear password);
    ``ewarong_id``: the one e-warong an ``ewarong`` user sees (required for that role)."""

    __tablename__ = "console_users"
    __table_args__ = (_one_of("role", CONSOLE_ROLES, "console_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    role: Mapped[str] = mapped_column(String(12))
    password_hash: Mapped[str] = mapped_column(String(200))
    ewarong_id: Mapped[int | None] = mapped_column(ForeignKey("ewarongs.id"), default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: Login throttling: failures since the last success, and until when logins are refused.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          default=None)


class ConsoleApiToken(Base):
    """A bearer token for the console's JSON API (a third party pulling reports); only
    its SHA-256 is stored.  It acts with its user's role."""

    __tablename__ = "console_api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id"), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                        default=None)
