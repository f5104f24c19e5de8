"""A batch's checks run early, outside the writer lock (``group_commit_precheck``).

The store reads the batch's terminals and cards with a plain read
(:meth:`switch.host.store.BatchStore.precheck`) and :func:`warm` fills the memo of
:class:`~switch.core.verify.Checks`; the decision under the lock then finds its
answers there, or (a key changed in between) computes them afresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from switch.core.facts import Card, Terminal
from switch.core.request import Request
from switch.core.verify import Checks, check_arqc
from switch.protocol.errors import ProtocolError
from switch.security import emv


def warm(checks: Checks, terminals: Mapping[str, Terminal], cards: Mapping[str, Card],
         requests: Sequence[Request]) -> None:
    """Run the checks of ``requests`` (card requests) into the memo, given their
    terminals and cards as read outside the writer lock.

    Best effort: anything unusual (unknown terminal or card, bad fields) is left for
    the decision, which meets it again under the lock and answers it.
    """
    for request in requests:
        try:
            _warm_one(checks, terminals.get(request.message.text(41)), cards, request)
        except (ProtocolError, emv.IccDataError, ValueError, KeyError):
            continue  # the decision meets it again under the lock, and answers it


def _warm_one(checks: Checks, terminal: Terminal | None, cards: Mapping[str, Card],
              request: Request) -> None:
    message = request.message
    if terminal is None or terminal.facts.tak is None or terminal.facts.tpk is None:
        return
    if not checks.mac_ok(terminal.facts.tak, request.raw):
        return
    pan = request.pan
    card = cards.get(pan)
    if card is None:
        return
    if message.has(55):
        check_arqc(checks, message, pan, card.psn, None)
    if message.has(52):
        checks.pin_ok(terminal.facts.tpk, message.binary(52), pan, card.pin_offset)
