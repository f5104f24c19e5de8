"""The cryptographic checks of a batch, memoized, and warmed outside the writer lock.

MAC (HOST_SPEC §6), PIN (§6) and ARQC (§7) checks are pure functions of their
inputs.  :class:`Checks` memoizes each one keyed by **all** of its inputs (the
clear keys, the bytes checked, the PIN offset), so an answer taken from the memo
is exactly the answer a fresh computation would give: if a logon changed a key
or an admin changed a PIN offset in between, the key differs and the check runs
again.

:func:`warm` runs the checks of a batch before its database transaction, reading
what they need (terminal keys, PIN offsets) with a plain read that takes no writer
lock.  Several switch processes on one database then do their cryptography in
parallel and hold the lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL's advisory
lock) only for the decision and the writes.  The memo lives for one batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection

from switch.host.facts import CardState, GateTerminal, card_in_of, read_cards, read_terminals
from switch.host.keyring import Keyring
from switch.protocol.errors import ProtocolError
from switch.protocol.message import Message
from switch.protocol.routing import TxnType
from switch.security import emv, mac
from switch.security.pin import verify_pin_block

log = logging.getLogger("bpnt.host")


@dataclass
class Checks:
    """One batch's memo of MAC, PIN and ARQC results."""

    keys: Keyring
    _macs: dict[tuple[bytes, bytes], bool] = field(default_factory=dict)
    _pins: dict[tuple[bytes, bytes, str, str], bool] = field(default_factory=dict)
    _arqcs: dict[tuple[str, str, bytes], bool] = field(default_factory=dict)

    def mac_ok(self, tak: bytes, raw: bytes) -> bool:
        key = (tak, raw)
        if key not in self._macs:
            self._macs[key] = mac.verify(tak, raw)
        return self._macs[key]

    def pin_ok(self, tpk: bytes, pin_block: bytes, pan: str, offset: str) -> bool:
        key = (tpk, pin_block, pan, offset)
        if key not in self._pins:
            self._pins[key] = verify_pin_block(tpk, self.keys.pvk, pin_block, pan, offset)
        return self._pins[key]

    def arqc_ok(self, pan: str, psn: str, de55: bytes, tags: Mapping[str, bytes]) -> bool:
        """``tags`` must be ``emv.parse_icc_data(de55)`` (the memo is keyed by ``de55``)."""
        key = (pan, psn, de55)
        if key not in self._arqcs:
            self._arqcs[key] = emv.verify_arqc(self.keys.imk_ac, pan, psn, tags)
        return self._arqcs[key]


def warm(checks: Checks, connection: Connection,
         requests: list[tuple[Message, bytes, TxnType]]) -> None:
    """Run the checks of the card requests in ``requests`` (message, raw bytes, type),
    reading their terminals and cards in two statements.

    Best effort: anything unusual (unknown terminal or card, bad fields) is left
    for the decision, which meets it again under the lock and answers it.
    """
    cards_wanted = [(request, raw) for request, raw, txn in requests
                    if txn is TxnType.PURCHASE or txn is TxnType.BALANCE]
    if not cards_wanted:
        return
    terminals = read_terminals(connection, checks.keys,
                               (request.text(41) for request, _ in cards_wanted))
    cards = read_cards(connection, checks.keys, (request for request, _ in cards_wanted))
    for request, raw in cards_wanted:
        try:
            _warm_one(checks, terminals.get(request.text(41)), cards, request, raw)
        except (ProtocolError, emv.IccDataError, ValueError, KeyError) as exc:
            log.debug("precheck skipped for %s: %s", request.mti, type(exc).__name__)


def _warm_one(checks: Checks, terminal: GateTerminal | None, cards: Mapping[str, CardState],
              request: Message, raw: bytes) -> None:
    if terminal is None or terminal.facts.tak is None or terminal.facts.tpk is None:
        return
    if not checks.mac_ok(terminal.facts.tak, raw):
        return
    pan = card_in_of(request).pan
    card = cards.get(pan)
    if card is None:
        return
    if request.has(55):
        de55 = request.binary(55)
        psn = (request.opt_text(23) or card.row.psn)[-2:]
        checks.arqc_ok(pan, psn, de55, emv.parse_icc_data(de55))
    if request.has(52):
        checks.pin_ok(terminal.facts.tpk, request.binary(52), pan, card.row.facts.pin_offset)
