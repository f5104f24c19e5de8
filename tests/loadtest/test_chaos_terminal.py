"""The chaos fleet's terminal (loadtest/chaos/terminal.py) against the real host, in
process: the reversal rule of HOST_SPEC §4-§6 as it keeps it, what it writes into
the history, and the checker's verdict on the real ledger afterwards.

The host is the real one (``HostService`` through ``DirectLink``); the only fault is
on the link, one scripted step per exchange: pass, lose the answer after the host
decided, answer with the host's own unsigned 91 without passing the request on
(what a switch that cannot read the terminal's keys sends today), or fail to connect.
"""

from __future__ import annotations

from collections import deque

from loadtest.chaos.checker import check
from loadtest.chaos.history import (
    ANSWERED,
    NOT_SENT,
    PURCHASE,
    REVERSAL,
    TIMEOUT,
    History,
)
from loadtest.chaos.ledger_rows import read_ledger_rows
from loadtest.chaos.terminal import ChaosTerminal, PaymentCard
from switch.core.replies import build_response
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import encode
from switch.protocol.unit import decode_unit
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.link import Link, LinkTimeout, NotConnected
from tests.world import HostWorld

TEMPE = [BasketLine("TMP001", 1, 500_000)]
PASS, LOSE_ANSWER, UNSIGNED_91, NO_CONNECTION = "pass", "lose", "unsigned-91", "down"


class ScriptedLink:
    """One step of ``script`` per exchange (then pass), over the real host's link."""

    def __init__(self, inner: Link, script: list[str]) -> None:
        self.inner = inner
        self.script = deque(script)
        self.seen: list[str] = []

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        step = self.script.popleft() if self.script else PASS
        request = decode_unit(unit)
        if step == NO_CONNECTION:
            raise NotConnected("scripted: no connection")
        self.seen.append(request.message.mti)  # what left the terminal
        if step == UNSIGNED_91:
            return request.tpdu.reply().to_bytes() + encode(
                build_response(request.message, codes.HOST_UNAVAILABLE))
        answer = self.inner.exchange(unit, timeout_s)
        if step == LOSE_ANSWER:
            raise LinkTimeout("scripted: the answer was lost")
        return answer

    def close(self) -> None:
        self.inner.close()


def terminal(world: HostWorld, script: list[str]) -> tuple[ChaosTerminal, ScriptedLink]:
    edc = world.edc()
    assert edc.ensure_logged_on()
    link = ScriptedLink(edc.link, script)
    edc.link = link
    reader = edc.reader
    assert isinstance(reader, EmulatedReader)
    world.insert(edc, world.card())
    chip = world.cards[world.card().pan]
    return ChaosTerminal(edc, reader, [PaymentCard(chip, world.card().pin)], TEMPE, History(),
                         timeout_s=2.0), link


def outcomes(history: History) -> list[tuple[str, str, str | None, bool]]:
    return [(e.op, e.outcome, e.rc, e.signed) for e in history.exchanges]


def test_a_lost_answer_is_reversed_before_the_next_purchase(world: HostWorld) -> None:
    before = world.balance_sen(world.card())
    term, link = terminal(world, [LOSE_ANSWER])
    term.purchase(0.0)
    assert term.pending is not None
    term.purchase(1.0)
    assert term.pending is None
    assert link.seen == ["0200", "0400", "0200"]
    assert outcomes(term.history) == [(PURCHASE, TIMEOUT, None, False),
                                      (REVERSAL, ANSWERED, "00", True),
                                      (PURCHASE, ANSWERED, "00", True)]
    assert world.balance_sen(world.card()) == before - 500_000  # the first debit undone
    assert check(term.history.exchanges, read_ledger_rows(world.db)).ok


def test_an_unsigned_91_keeps_the_reversal_pending(world: HostWorld) -> None:
    term, link = terminal(world, [UNSIGNED_91])
    term.purchase(0.0)
    assert term.pending is not None, "HOST_SPEC §6: an unsigned 91 is no answer"
    assert term.try_reversal()
    assert link.seen == ["0200", "0400"]
    verdict = check(term.history.exchanges, read_ledger_rows(world.db))
    assert verdict.ok, verdict.violations


def test_a_reversal_answered_91_is_repeated_as_0401(world: HostWorld) -> None:
    term, link = terminal(world, [LOSE_ANSWER, UNSIGNED_91, NO_CONNECTION])
    term.purchase(0.0)
    assert not term.try_reversal(), "a 91 reverses nothing"
    term.purchase(1.0)  # the reversal first: no connection, so no purchase either
    assert len(term.history.skips) == 1 and term.pending is not None
    assert term.try_reversal()
    assert link.seen == ["0200", "0400", "0401"]  # the not-connected one never left
    assert [e.outcome for e in term.history.exchanges if e.op == REVERSAL] == \
        [ANSWERED, NOT_SENT, ANSWERED]
    assert check(term.history.exchanges, read_ledger_rows(world.db)).ok


def test_a_request_that_never_left_leaves_nothing_to_reverse(world: HostWorld) -> None:
    term, link = terminal(world, [NO_CONNECTION])
    term.purchase(0.0)
    assert term.pending is None
    assert outcomes(term.history) == [(PURCHASE, NOT_SENT, None, False)]


def test_the_checker_sees_an_undelivered_reversal(world: HostWorld) -> None:
    """The answer lost after the host debited, and the terminal gives up: the ledger
    holds a debit the terminal shows as failed."""
    term, _ = terminal(world, [LOSE_ANSWER])
    term.purchase(0.0)
    verdict = check(term.history.exchanges, read_ledger_rows(world.db))
    assert {v.rule for v in verdict.violations} == \
        {"debit-seen-or-reversed", "no-reversal-pending"}
    assert term.try_reversal()  # (the world's invariant check runs after the test)
