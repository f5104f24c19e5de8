"""Audit tables (same metadata as the ledger, so one schema)."""

from __future__ import annotations

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from switch.ledger.models import Base


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
