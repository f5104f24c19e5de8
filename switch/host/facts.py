"""Load the facts of a request from the database (read-only).

The host's hot path (gate, card requests) reads through prebuilt Core statements
on the transaction's connection (:func:`gate_terminal`, :func:`card_row`,
:func:`item_facts`): no ORM unit of work, no per-call statement building.  The
ORM loaders (:func:`load_terminal`, :func:`load_card`) serve logon and admin code
that changes those rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from switch.authorize.facts import CardFacts, ItemFacts, TerminalFacts
from switch.host.keyring import Keyring
from switch.ledger.models import Account, Card, Ewarong, Item, Kpm, Terminal
from switch.ledger.prepared import Prepared
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


#: Clear working keys kept per process (bounded).  Keyed by the wrapped bytes, so a
#: logon anywhere (new wrapped keys in the database) is a new entry: the cache holds
#: no state, only spares the AES-GCM unwrap (DESIGN.md: stateless instances).
KEY_CACHE_SIZE = 65_536


@lru_cache(maxsize=KEY_CACHE_SIZE)
def _unwrap_cached(kek: bytes, wrapped: bytes, context: str) -> bytes:
    return unwrap_key(kek, wrapped, context)


@dataclass(frozen=True)
class GateTerminal:
    facts: TerminalFacts
    payable_account_id: int


_GATE_TERMINAL = Prepared(
    select(Terminal.status, Terminal.tpk_wrapped, Terminal.tak_wrapped, Ewarong.mid,
           Ewarong.status, Ewarong.payable_account_id)
    .join(Ewarong, Terminal.ewarong_id == Ewarong.id)
    .where(Terminal.tid == bindparam("tid"))
)


def gate_terminal(connection: Connection, keys: Keyring, tid: str) -> GateTerminal | None:
    """The terminal, its e-warong and its clear working keys (Core, one statement)."""
    row = _GATE_TERMINAL.execute(connection, {"tid": tid}).fetchone()
    if row is None:
        return None
    status, tpk_wrapped, tak_wrapped, mid, ewarong_status, payable_id = row

    def clear(wrapped: bytes | None, kind: str) -> bytes | None:
        return _unwrap_cached(keys.kek, wrapped, f"{kind}:{tid}") if wrapped else None

    facts = TerminalFacts(tid=tid, active=status == "active", mid=mid,
                          ewarong_active=ewarong_status == "active",
                          tpk=clear(tpk_wrapped, "TPK"), tak=clear(tak_wrapped, "TAK"))
    return GateTerminal(facts, payable_id)


_CARD_ROW = Prepared(
    select(Card.id, Card.status, Card.expiry_yymm, Card.pin_offset, Card.wrong_pin_count,
           Card.last_atc, Card.psn, Card.pan_masked, Kpm.status.label("kpm_status"),
           Account.id.label("wallet_account_id"), Account.balance_sen)
    .join(Kpm, Card.kpm_id == Kpm.id)
    .join(Account, Kpm.wallet_account_id == Account.id)
    .where(Card.pan_token == bindparam("token"))
)


@dataclass(frozen=True)
class CardRow:
    """A card as the hot path needs it: the decision's facts and the chip's state."""

    facts: CardFacts
    last_atc: int | None
    psn: str
    pan_masked: str


def card_row(connection: Connection, keys: Keyring, pan: str) -> CardRow | None:
    row = _CARD_ROW.execute(connection, {"token": pan_token(keys.pan_token_key, pan)}).fetchone()
    if row is None:
        return None
    (card_id, status, expiry_yymm, pin_offset, wrong_pin_count, last_atc, psn, pan_masked,
     kpm_status, wallet_account_id, balance_sen) = row
    facts = CardFacts(
        card_id=card_id, status=status, expiry_yymm=expiry_yymm, pin_offset=pin_offset,
        wrong_pin_count=wrong_pin_count, kpm_active=kpm_status == "active",
        wallet_account_id=wallet_account_id, balance_sen=int(balance_sen),
    )
    return CardRow(facts, last_atc, psn, pan_masked)


_CATALOGUE = Prepared(select(Item.code, Item.category, Item.allowed))
_CATALOGUE_INFO = "bpnt.host.catalogue"


def item_facts(session: Session, codes: Iterable[str]) -> dict[str, ItemFacts]:
    """The goods named, from the catalogue read once per transaction (a batch).

    The catalogue is small (the BPNT food list) and changes only by an admin
    command, which takes the same writer lock, so it cannot change under a batch.
    """
    catalogue: dict[str, ItemFacts] | None = session.info.get(_CATALOGUE_INFO)
    if catalogue is None:
        rows = _CATALOGUE.execute(session.connection()).fetchall()
        catalogue = {code: ItemFacts(code, category, bool(allowed))
                     for code, category, allowed in rows}
        session.info[_CATALOGUE_INFO] = catalogue
    return {code: catalogue[code] for code in codes if code in catalogue}
