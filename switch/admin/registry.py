"""Registration and status changes of KPM, cards, e-warongs, terminals and goods.

Non-money rows; accounts are opened through the ledger and balances only ever
change in :mod:`switch.ledger.postings`.  Every change is written to the audit
chain in the same transaction, with who made it (FAILURES F3: the cause of a
block is visible in the audit trail).
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from switch.admin.nik import validate_nik
from switch.clock import Clock, SystemClock
from switch.db import audit as chain
from switch.db.tables import Card, Ewarong, Item, Kpm, Terminal
from switch.ledger.accounts import get_or_create_account
from switch.protocol.message import mask_pan
from switch.security.keyring import Keyring
from switch.security.keys import pan_token, wrap_key
from switch.security.pin import pin_offset

CARD_STATUSES = frozenset({"active", "blocked", "lost", "stolen", "dormant"})
PARTY_STATUSES = frozenset({"active", "inactive"})


class RegistrationError(ValueError):
    pass


class Registry:
    """Admin operations, each audited as ``actor``."""

    def __init__(self, session: Session, keys: Keyring, *, actor: str,
                 clock: Clock | None = None) -> None:
        self.session = session
        self.keys = keys
        self.actor = actor
        self.clock = clock or SystemClock()

    def _audit(self, action: str, subject: str, **detail: Any) -> None:
        chain.append(self.session, self.keys.audit_key, at=self.clock.now(), actor=self.actor,
                     action=action, subject=subject, detail=detail)

    def register_kpm(self, *, nik: str, name: str, status: str = "active") -> Kpm:
        if reason := validate_nik(nik):
            raise RegistrationError(f"NIK {nik[:6]}…: {reason}")
        _check(status, PARTY_STATUSES)
        wallet = get_or_create_account(self.session, "kpm_wallet", f"NIK:{nik}")
        kpm = Kpm(nik=nik, name=name, status=status, wallet_account_id=wallet.id,
                  zone=nik[:6])
        self.session.add(kpm)
        self.session.flush()
        self._audit("kpm.register", f"kpm:{kpm.id}", status=status, region=nik[:6])
        return kpm

    def issue_card(self, *, kpm: Kpm, pan: str, pin: str, psn: str = "01", expiry_yymm: str,
                   status: str = "active") -> Card:
        """Personalise a card: only the PAN token, masked PAN and PIN offset are kept."""
        _check(status, CARD_STATUSES)
        card = Card(pan_token=pan_token(self.keys.pan_token_key, pan), pan_masked=mask_pan(pan),
                    kpm_id=kpm.id, psn=psn, expiry_yymm=expiry_yymm, status=status,
                    pin_offset=pin_offset(self.keys.pvk, pin, pan), wrong_pin_count=0,
                    issued_at=self.clock.now().astimezone(UTC))
        self.session.add(card)
        self.session.flush()
        self._audit("card.issue", card.pan_masked, kpm=kpm.id, status=status,
                    expiry=expiry_yymm)
        return card

    def register_ewarong(self, *, mid: str, name: str, status: str = "active") -> Ewarong:
        if len(mid) != 15:
            raise RegistrationError("MID must be 15 characters")
        _check(status, PARTY_STATUSES)
        payable = get_or_create_account(self.session, "ewarong_payable", mid)
        ewarong = Ewarong(mid=mid, name=name, status=status, payable_account_id=payable.id)
        self.session.add(ewarong)
        self.session.flush()
        self._audit("ewarong.register", mid, status=status)
        return ewarong

    def register_terminal(self, *, tid: str, ewarong: Ewarong, tmk: bytes,
                          status: str = "active") -> Terminal:
        """A terminal with its master key (wrapped); working keys come at logon."""
        if len(tid) != 8:
            raise RegistrationError("TID must be 8 characters")
        _check(status, PARTY_STATUSES)
        terminal = Terminal(tid=tid, ewarong_id=ewarong.id, status=status,
                            tmk_wrapped=wrap_key(self.keys.kek, tmk, f"TMK:{tid}"))
        self.session.add(terminal)
        self.session.flush()
        self._audit("terminal.register", tid, mid=ewarong.mid, status=status)
        return terminal

    def add_item(self, *, code: str, name: str, category: str, allowed: bool) -> Item:
        item = Item(code=code, name=name, category=category, allowed=allowed)
        self.session.add(item)
        self._audit("item.add", code, category=category, allowed=allowed)
        return item

    def set_card_status(self, pan: str, status: str, *, reason: str) -> Card:
        """Block, report lost/stolen, mark dormant or reactivate a card (FAILURES F3)."""
        _check(status, CARD_STATUSES)
        card = self.session.scalars(
            select(Card).where(Card.pan_token == pan_token(self.keys.pan_token_key, pan))
        ).first()
        if card is None:
            raise RegistrationError(f"no card {mask_pan(pan)}")
        return self._change_card_status(card, status, reason=reason)

    def set_card_status_by_id(self, card_id: int, status: str, *, reason: str) -> Card:
        """:meth:`set_card_status` for the card with this id (the console has no PAN)."""
        _check(status, CARD_STATUSES)
        card = self.session.get(Card, card_id)
        if card is None:
            raise RegistrationError(f"no card with id {card_id}")
        return self._change_card_status(card, status, reason=reason)

    def _change_card_status(self, card: Card, status: str, *, reason: str) -> Card:
        before = card.status
        card.status = status
        if status == "active":
            card.wrong_pin_count = 0
            if before == "dormant":  # its dormancy counts again from now
                card.reactivated_at = self.clock.now().astimezone(UTC)
        self._audit("card.status", card.pan_masked, before=before, after=status, reason=reason)
        return card

    def set_kpm_status(self, nik: str, status: str, *, reason: str) -> Kpm:
        _check(status, PARTY_STATUSES)
        kpm = self.session.scalars(select(Kpm).where(Kpm.nik == nik)).first()
        if kpm is None:
            raise RegistrationError(f"no KPM with NIK {nik[:6]}…")
        before = kpm.status
        kpm.status = status
        self._audit("kpm.status", f"kpm:{kpm.id}", before=before, after=status, reason=reason)
        return kpm


def _check(status: str, allowed: frozenset[str]) -> None:
    if status not in allowed:
        raise RegistrationError(f"status {status!r} is not one of {sorted(allowed)}")
