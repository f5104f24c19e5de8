"""Registration of KPM, cards, e-warongs, terminals and goods (non-money rows).

Accounts are opened through the ledger; balances are only ever changed by
:mod:`switch.ledger.postings`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from switch.admin.nik import validate_nik
from switch.host.keyring import Keyring
from switch.ledger.models import Card, Ewarong, Item, Kpm, Terminal
from switch.ledger.postings import get_or_create_account
from switch.protocol.message import mask_pan
from switch.security.keys import pan_token, wrap_key
from switch.security.pin import pin_offset


class RegistrationError(ValueError):
    pass


def register_kpm(session: Session, *, nik: str, name: str, status: str = "active") -> Kpm:
    if reason := validate_nik(nik):
        raise RegistrationError(f"NIK {nik[:6]}…: {reason}")
    wallet = get_or_create_account(session, "kpm_wallet", f"NIK:{nik}")
    kpm = Kpm(nik=nik, name=name, status=status, wallet_account_id=wallet.id)
    session.add(kpm)
    session.flush()
    return kpm


def issue_card(
    session: Session,
    keys: Keyring,
    *,
    kpm: Kpm,
    pan: str,
    pin: str,
    psn: str = "01",
    expiry_yymm: str,
    status: str = "active",
) -> Card:
    """Personalise a card: only the PAN token, masked PAN and PIN offset are kept."""
    card = Card(
        pan_token=pan_token(keys.pan_token_key, pan),
        pan_masked=mask_pan(pan),
        kpm_id=kpm.id,
        psn=psn,
        expiry_yymm=expiry_yymm,
        status=status,
        pin_offset=pin_offset(keys.pvk, pin, pan),
        wrong_pin_count=0,
    )
    session.add(card)
    session.flush()
    return card


def register_ewarong(session: Session, *, mid: str, name: str, status: str = "active") -> Ewarong:
    if len(mid) != 15:
        raise RegistrationError("MID must be 15 characters")
    payable = get_or_create_account(session, "ewarong_payable", mid)
    ewarong = Ewarong(mid=mid, name=name, status=status, payable_account_id=payable.id)
    session.add(ewarong)
    session.flush()
    return ewarong


def register_terminal(
    session: Session,
    keys: Keyring,
    *,
    tid: str,
    ewarong: Ewarong,
    tmk: bytes,
    status: str = "active",
) -> Terminal:
    """A terminal with its master key (wrapped); working keys come at logon."""
    if len(tid) != 8:
        raise RegistrationError("TID must be 8 characters")
    terminal = Terminal(
        tid=tid,
        ewarong_id=ewarong.id,
        status=status,
        tmk_wrapped=wrap_key(keys.kek, tmk, f"TMK:{tid}"),
        tpk_wrapped=None,
        tak_wrapped=None,
    )
    session.add(terminal)
    session.flush()
    return terminal


def add_item(session: Session, *, code: str, name: str, category: str, allowed: bool) -> Item:
    item = Item(code=code, name=name, category=category, allowed=allowed)
    session.add(item)
    return item
