"""Load the facts of a request from the database (read-only)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from switch.authorize.facts import CardFacts, ItemFacts, TerminalFacts
from switch.host.keyring import Keyring
from switch.ledger.models import Account, Card, Ewarong, Item, Kpm, Terminal
from switch.security.keys import pan_token, unwrap_key


def load_terminal(session: Session, keys: Keyring, tid: str) -> tuple[Terminal, Ewarong] | None:
    row = session.execute(
        select(Terminal, Ewarong).join(Ewarong, Terminal.ewarong_id == Ewarong.id).where(
            Terminal.tid == tid
        )
    ).first()
    return (row[0], row[1]) if row else None


def terminal_facts(keys: Keyring, terminal: Terminal, ewarong: Ewarong) -> TerminalFacts:
    def clear(wrapped: bytes | None, kind: str) -> bytes | None:
        return unwrap_key(keys.kek, wrapped, f"{kind}:{terminal.tid}") if wrapped else None

    return TerminalFacts(
        tid=terminal.tid,
        active=terminal.status == "active",
        mid=ewarong.mid,
        ewarong_active=ewarong.status == "active",
        tpk=clear(terminal.tpk_wrapped, "TPK"),
        tak=clear(terminal.tak_wrapped, "TAK"),
    )


def load_card(session: Session, keys: Keyring, pan: str) -> tuple[Card, CardFacts] | None:
    row = session.execute(
        select(Card, Kpm, Account)
        .join(Kpm, Card.kpm_id == Kpm.id)
        .join(Account, Kpm.wallet_account_id == Account.id)
        .where(Card.pan_token == pan_token(keys.pan_token_key, pan))
    ).first()
    if row is None:
        return None
    card, kpm, wallet = row
    return card, CardFacts(
        card_id=card.id,
        status=card.status,
        expiry_yymm=card.expiry_yymm,
        pin_offset=card.pin_offset,
        wrong_pin_count=card.wrong_pin_count,
        kpm_active=kpm.status == "active",
        wallet_account_id=wallet.id,
        balance_sen=wallet.balance_sen,
    )


def load_items(session: Session, codes: Iterable[str]) -> dict[str, ItemFacts]:
    wanted = sorted(set(codes))
    rows = session.scalars(select(Item).where(Item.code.in_(wanted))).all()
    return {i.code: ItemFacts(i.code, i.category, i.allowed) for i in rows}
