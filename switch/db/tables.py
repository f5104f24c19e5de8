"""All tables: the registry (KPM, cards, e-warongs, terminals, goods), the money and the
audit chain.

Portable types only (SQLite is the embedded default, PostgreSQL the production
engine).  Money is ``BigInteger`` sen.  No clear PAN, PIN or key is stored: cards
carry an HMAC token and an IBM 3624 PIN offset, terminals carry wrapped keys.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
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
RECORD_KINDS = ("request", "reversal")


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


class Kpm(Base):
    """A beneficiary family (Keluarga Penerima Manfaat)."""

    __tablename__ = "kpm"
    __table_args__ = (_one_of("status", ON_OFF, "kpm_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    nik: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12), default="active")
    wallet_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
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


class Ewarong(Base):
    """An e-warong agent (DE 42 MID); its payable account collects purchases."""

    __tablename__ = "ewarongs"
    __table_args__ = (_one_of("status", ON_OFF, "ewarong_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mid: Mapped[str] = mapped_column(String(15), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12), default="active")
    payable_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)


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


class Item(Base):
    """A good an e-warong sells; only the BPNT food categories may be bought."""

    __tablename__ = "items"

    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    category: Mapped[str] = mapped_column(String(16))
    allowed: Mapped[bool] = mapped_column(Boolean, default=True)


class Period(Base):
    """A benefit period (month) that has been allocated."""

    __tablename__ = "periods"

    code: Mapped[str] = mapped_column(String(7), primary_key=True)
    amount_sen: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RequestRecord(Base):
    """The idempotency record of HOST_SPEC §4, with the exact response bytes."""

    __tablename__ = "request_records"
    __table_args__ = (
        UniqueConstraint("tid", "local_date", "stan", "kind"),
        _one_of("kind", RECORD_KINDS, "record_kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tid: Mapped[str] = mapped_column(String(8))
    local_date: Mapped[str] = mapped_column(String(4))
    stan: Mapped[str] = mapped_column(String(6))
    #: "request" (0100/0200) or "reversal" (0400/0401)
    kind: Mapped[str] = mapped_column(String(10))
    #: The response MTI (0110, 0210, 0410).
    mti: Mapped[str] = mapped_column(String(4))
    processing_code: Mapped[str] = mapped_column(String(6))
    amount_sen: Mapped[int] = mapped_column(BigInteger, default=0)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_code: Mapped[str] = mapped_column(String(2))
    response_unit: Mapped[bytes] = mapped_column(LargeBinary)
    transfer_id: Mapped[int | None] = mapped_column(
        ForeignKey("transfers.id"), unique=True, default=None
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
    """One audited event.  ``mac`` = HMAC(key, prev_mac || canonical(record))."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(60))
    action: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(80))
    detail: Mapped[str] = mapped_column(Text)
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last link, updated with every append: a deleted tail shows."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(64))
