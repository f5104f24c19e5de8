"""Load the facts of a request from the database (read-only).

The host's hot path reads a whole run of card requests at once
(:func:`read_terminals`, :func:`read_cards`: one statement each), the gate of a
single request (reversal, cash-out) with the same query (:func:`gate_terminal`), and
the goods catalogue once per transaction (:func:`item_facts`).  The ORM loader
(:func:`load_terminal`) serves the logon, which changes the terminal's keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from switch.authorize.facts import CardFacts, ItemFacts, TerminalFacts
from switch.host.keyring import Keyring
from switch.ledger.models import Account, Card, Ewarong, Item, Kpm, Terminal
from switch.ledger.prepared import Prepared, Submitted, in_json_list, json_list
from switch.protocol.bpnt import CardData, card_data
from switch.protocol.errors import ProtocolError
from switch.protocol.message import Message
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


def gate_terminal(connection: Connection, keys: Keyring, tid: str) -> GateTerminal | None:
    """The terminal, its e-warong and its clear working keys (one statement)."""
    return read_terminals(connection, keys, [tid]).get(tid)


def terminal_of(keys: Keyring, tid: str, status: str, tpk_wrapped: bytes | None,
                tak_wrapped: bytes | None, mid: str, ewarong_status: str,
                payable_account_id: int) -> GateTerminal:
    """A terminal row (as :data:`_RUN_TERMINALS` selects it) as gate facts."""
    def clear(wrapped: bytes | None, kind: str) -> bytes | None:
        return _unwrap_cached(keys.kek, bytes(wrapped), f"{kind}:{tid}") if wrapped else None

    facts = TerminalFacts(tid=tid, active=status == "active", mid=mid,
                          ewarong_active=ewarong_status == "active",
                          tpk=clear(tpk_wrapped, "TPK"), tak=clear(tak_wrapped, "TAK"))
    return GateTerminal(facts, payable_account_id)


@dataclass(frozen=True)
class CardRow:
    """A card as the hot path needs it: the decision's facts and the chip's state."""

    facts: CardFacts
    last_atc: int | None
    psn: str
    pan_masked: str


def card_facts_of(card_id: int, status: str, expiry_yymm: str, pin_offset: str,
                  wrong_pin_count: int, last_atc: int | None, psn: str, pan_masked: str,
                  kpm_status: str, wallet_account_id: int, balance_sen: int) -> CardRow:
    """A card row (as :data:`_CARD_ROW` selects it) as the decision's facts."""
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
        catalogue = keep_catalogue(session, submit_catalogue(session))
    assert catalogue is not None
    return {code: catalogue[code] for code in codes if code in catalogue}


def submit_catalogue(session: Session) -> Submitted | None:
    """Read the catalogue with the caller's other reads (a pipeline block), unless this
    transaction has it; pass the result to :func:`keep_catalogue` after the block."""
    if _CATALOGUE_INFO in session.info:
        return None
    return _CATALOGUE.submit(session.connection())


def keep_catalogue(session: Session, read: Submitted | None) -> dict[str, ItemFacts] | None:
    """The catalogue read by :func:`submit_catalogue`, kept for the transaction."""
    if read is not None and _CATALOGUE_INFO not in session.info:
        session.info[_CATALOGUE_INFO] = {code: ItemFacts(code, category, bool(allowed))
                                         for code, category, allowed in read.rows()}
    catalogue: dict[str, ItemFacts] | None = session.info.get(_CATALOGUE_INFO)
    return catalogue


@dataclass
class Wallet:
    """A KPM wallet's balance as a run has left it (shared by all of the KPM's cards)."""

    account_id: int
    balance_sen: int


@dataclass
class CardState:
    """A card as the run has left it so far (starting from the database row)."""

    row: CardRow
    wallet: Wallet
    wrong_pin_count: int
    status: str
    last_atc: int | None
    last_used_at: datetime | None
    changed: bool = False

    def facts(self) -> CardFacts:
        return replace(self.row.facts, status=self.status, balance_sen=self.wallet.balance_sen,
                       wrong_pin_count=self.wrong_pin_count)


_RUN_TERMINALS = Prepared(
    select(Terminal.tid, Terminal.status, Terminal.tpk_wrapped, Terminal.tak_wrapped,
           Ewarong.mid, Ewarong.status, Ewarong.payable_account_id)
    .join(Ewarong, Terminal.ewarong_id == Ewarong.id)
    .where(in_json_list("tids", Terminal.tid))
)
_RUN_CARDS = Prepared(
    select(Card.pan_token, Card.id, Card.status, Card.expiry_yymm, Card.pin_offset,
           Card.wrong_pin_count, Card.last_atc, Card.psn, Card.pan_masked,
           Kpm.status.label("kpm_status"), Account.id.label("wallet_account_id"),
           Account.balance_sen, Card.last_used_at)
    .join(Kpm, Card.kpm_id == Kpm.id)
    .join(Account, Kpm.wallet_account_id == Account.id)
    .where(in_json_list("tokens", Card.pan_token))
)


def read_terminals(connection: Connection, keys: Keyring,
                   tids: Iterable[str]) -> dict[str, GateTerminal]:
    """The terminals named (one statement), as gate facts."""
    return terminals_of(keys, submit_terminals(connection, tids))


def submit_terminals(connection: Connection, tids: Iterable[str]) -> Submitted:
    """:func:`read_terminals` in two steps (to share a pipeline block): send ..."""
    return _RUN_TERMINALS.submit(connection, {"tids": json_list(tids)})


def terminals_of(keys: Keyring, read: Submitted) -> dict[str, GateTerminal]:
    """... then read (after the block)."""
    return {row[0]: terminal_of(keys, *row) for row in read.rows()}


def read_cards(connection: Connection, keys: Keyring,
               requests: Iterable[Message]) -> dict[str, CardState]:
    """The cards of ``requests`` (one statement), by PAN; a request without usable card
    data is skipped here (its decision answers it)."""
    return cards_of(submit_cards(connection, keys, requests))


@dataclass(frozen=True)
class CardsRead:
    """:func:`submit_cards`'s statement and the PANs it asked for, by token."""

    read: Submitted
    pans: dict[str, str]


def submit_cards(connection: Connection, keys: Keyring,
                 requests: Iterable[Message]) -> CardsRead:
    """:func:`read_cards` in two steps (to share a pipeline block): send ..."""
    pans = {}
    for request in requests:
        try:
            pan = card_in_of(request).pan
        except ProtocolError:
            continue
        pans[pan_token(keys.pan_token_key, pan)] = pan
    return CardsRead(_RUN_CARDS.submit(connection, {"tokens": json_list(pans)}), pans)


def cards_of(wanted: CardsRead) -> dict[str, CardState]:
    """... then read (after the block)."""
    pans = wanted.pans
    cards = {}
    wallets: dict[int, Wallet] = {}
    for row in wanted.read.rows():
        token, *columns, last_used_at = row
        card = card_facts_of(*columns)
        wallet_id = card.facts.wallet_account_id
        wallet = wallets.setdefault(wallet_id, Wallet(wallet_id, card.facts.balance_sen))
        cards[pans[token]] = CardState(card, wallet, card.facts.wrong_pin_count,
                                       card.facts.status, card.last_atc, last_used_at)
    return cards


def card_in_of(request: Message) -> CardData:
    """The PAN and expiry of a card request (HOST_SPEC §3: DE 35, or DE 2 + 14)."""
    return card_data(request.opt_text(2), request.opt_text(14), request.opt_text(35))
