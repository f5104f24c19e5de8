"""Single decisions of the pure core, each on hand-built facts (no database)."""

from __future__ import annotations

from switch.clock import FixedClock
from switch.core.decide import decide
from switch.core.effects import AuditEntry, KeysChange
from switch.core.facts import BatchFacts, Terminal, TerminalFacts
from switch.core.request import Request
from switch.core.verify import Checks
from switch.protocol import codes
from switch.protocol.message import Message, decode
from switch.protocol.routing import TxnType
from switch.security.keyring import Keyring
from switch.settings import Settings

KEYS = Keyring.from_settings(Settings())
TID, MID = "EDC00001", "EWARONG00000001"
TMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
NEW_KEYS = (bytes(range(16)), bytes(range(16, 32)))


def _facts(tmk: bytes | None) -> BatchFacts:
    return BatchFacts(now=FixedClock().now(), checks=Checks(KEYS), max_pin_tries=3,
                      terminals={TID: Terminal(TerminalFacts(TID, True, MID, True, None),
                                               900, tmk)},
                      record_ids=list(range(1, 10)))


def _logon() -> Request:
    message = Message("0800", {3: "920000", 11: "000001", 24: "001", 41: TID, 42: MID})
    return Request(message, b"", TxnType.LOGON, new_keys=NEW_KEYS)


def test_a_logon_hands_out_the_keys_it_was_given_under_the_tmk() -> None:
    facts = _facts(TMK)
    decision = decide(_logon(), facts)
    assert decode(decision.response or b"").text(39) == codes.APPROVED
    assert KeysChange(TID, *NEW_KEYS, "000001", facts.now) in decision.effects
    assert facts.terminals[TID].facts.tak is None  # deciding changed nothing
    assert facts.apply(decision.effects).terminals[TID].facts.tak == NEW_KEYS[1]


def test_a_logon_without_a_usable_tmk_is_refused_and_changes_no_key() -> None:
    decision = decide(_logon(), _facts(None))
    assert decode(decision.response or b"").text(39) == codes.NOT_PERMITTED_TERMINAL
    assert not any(isinstance(e, KeysChange) for e in decision.effects)
    audit = [e for e in decision.effects if isinstance(e, AuditEntry)]
    assert [(a.action, a.detail) for a in audit] == [("refused.logon",
                                                      {"reason": "no usable TMK"})]


def test_a_request_from_a_terminal_not_logged_on_is_refused_unsigned() -> None:
    message = Message("0200", {3: "011000", 11: "000002", 13: "1201", 41: TID, 42: MID})
    decision = decide(Request(message, b"", TxnType.CASH_OUT), _facts(TMK))
    assert decode(decision.response or b"").text(39) == codes.SECURITY_VIOLATION
    assert decision.sign_with is None
