"""Reversal (0400/0401), HOST_SPEC §4.  Pure.

A reversal restores its original's debit at most once (a repeat replays the stored
answer); an unknown original is answered 00 and remembered, so the original is
declined 05 if it arrives later (:mod:`switch.core.card`).
"""

from __future__ import annotations

from switch.core import effects
from switch.core.effects import AuditEntry, Decision, Effect, RecordWrite
from switch.core.facts import BatchFacts
from switch.core.gate import Caller, gated
from switch.core.replies import build_response, replay, rrn_for
from switch.core.request import Request, RequestKey
from switch.ledger.money import Posting
from switch.protocol import codes
from switch.protocol.message import encode
from switch.security.mac import PLACEHOLDER

MEMO_CHARS = 120


@gated
def decide_reversal(request: Request, facts: BatchFacts, caller: Caller) -> Decision:
    message = request.message
    key = RequestKey.of(message)
    prior = facts.record(key, "reversal")
    if prior is not None:
        return replay(request, prior, caller.tak)
    original = facts.record(key, "request")
    out: list[Effect] = []
    restored: Posting | None = None
    if original is not None and original.transfer_id is not None:
        assert original.debit_account_id is not None and original.credit_account_id is not None, \
            "a record that moved money knows its transfer's accounts"
        restored = Posting(
            facts.next_transfer_id(), key.transfer_key("rev"), "reversal",
            debit_account_id=original.credit_account_id,
            credit_account_id=original.debit_account_id, amount_sen=original.amount_sen,
            memo=f"reverses {key.transfer_key('pur')}"[:MEMO_CHARS],
            reverses_transfer_id=original.transfer_id)
        out.append(restored)
    record_id = facts.next_record_id()
    restored_sen = restored.amount_sen if restored else 0
    response = encode(build_response(message, codes.APPROVED, rrn=rrn_for(record_id))
                      .with_fields(de64=PLACEHOLDER))
    out.append(RecordWrite(
        record_id, key, "reversal", "0410", message.text(3), restored_sen, request.digest,
        codes.APPROVED, response, restored.transfer_id if restored else None,
        restored.debit_account_id if restored else None,
        restored.credit_account_id if restored else None))
    state = "unknown" if original is None else ("restored" if restored else "nothing to restore")
    out.append(AuditEntry(facts.now, f"terminal:{key.tid}", "reversal", key.stan, {
        "local_date": key.local_date, "restored_sen": restored_sen, "original": state}))
    out.append(effects.info("reversal tid=%s stan=%s restored_sen=%d original=%s", key.tid,
                            key.stan, restored_sen, state))
    return Decision(response, caller.tak, tuple(out))
