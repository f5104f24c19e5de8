"""Reversal (0400/0401), HOST_SPEC §4.  Pure.

A reversal restores its original's money at most once (a repeat replays the stored
answer); an unknown original is answered 00 and remembered, so the original is
declined 05 if it arrives later (:mod:`switch.core.card`).

* a purchase: its debit comes back to the wallet; unless a void stands against it
  (the void paid it back already): then nothing moves;
* a void (DE 3 020000): the purchase's debit is reinstated and the purchase is no
  longer voided; if the wallet no longer covers it, the reversal is still answered
  00, the void stands, and the case is audited for the reconciliation report.

Stock follows the money (docs/RULES.md): a reversed purchase's units go back on the
shelf; a reversed void takes them again, and if the shelf no longer holds them the
void stands, as when the wallet cannot cover it.
"""

from __future__ import annotations

from switch.core import effects, stock
from switch.core.batch import VOID_CODE
from switch.core.effects import AuditEntry, Decision, Effect, RecordWrite, VoidMark
from switch.core.facts import BatchFacts, StoredRecord
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
    record_id = facts.next_record_id()
    prior = facts.record(key, "reversal")
    if prior is not None:
        return replay(request, prior, caller.tak, record_id, facts.now)
    original = facts.record(key, "request")
    out: list[Effect] = []
    restored, state = _restore(facts, key, original)
    if restored is not None:
        assert original is not None
        out.append(restored)
        is_void = original.processing_code == VOID_CODE
        if is_void:
            assert original.original_record_id is not None, "a void names its purchase"
            out.append(VoidMark(original.original_record_id, None))
        if original.stock_ewarong_id is not None:
            out += stock.moves(original.stock_ewarong_id, stock.units_needed(original.basket),
                               -1 if is_void else +1)
    restored_sen = restored.amount_sen if restored else 0
    response = encode(build_response(message, codes.APPROVED, rrn=rrn_for(record_id))
                      .with_fields(de64=PLACEHOLDER))
    out.append(RecordWrite(
        record_id, key, "reversal", "0410", message.text(3), restored_sen, request.digest,
        codes.APPROVED, response, restored.transfer_id if restored else None,
        restored.debit_account_id if restored else None,
        restored.credit_account_id if restored else None,
        original_record_id=original.record_id if original else None))
    out.append(AuditEntry(facts.now, f"terminal:{key.tid}", "reversal", key.stan, {
        "local_date": key.local_date, "processing_code": message.text(3),
        "restored_sen": restored_sen, "original": state}))
    out.append(effects.info("reversal tid=%s stan=%s restored_sen=%d original=%s", key.tid,
                            key.stan, restored_sen, state))
    return Decision(response, caller.tak, tuple(out))


def _restore(facts: BatchFacts, key: RequestKey,
             original: StoredRecord | None) -> tuple[Posting | None, str]:
    """The posting that undoes ``original`` (``None``: nothing to undo) and what it was."""
    if original is None:
        return None, "unknown"
    if original.transfer_id is None:
        return None, "nothing to restore"
    if original.voided_by_record_id is not None:
        return None, "voided: the void paid it back"
    assert original.debit_account_id is not None and original.credit_account_id is not None, \
        "a record that moved money knows its transfer's accounts"
    debited = original.credit_account_id  # what the original credited gives it back
    if facts.balances.get(debited, original.amount_sen) < original.amount_sen:
        return None, "void stands: the wallet no longer covers the purchase"
    if (original.processing_code == VOID_CODE and original.stock_ewarong_id is not None
            and stock.short_items(original.stock_ewarong_id,
                                  stock.units_needed(original.basket), facts.stock)):
        return None, "void stands: the shelf no longer holds the goods"
    prefix = "void" if original.processing_code == VOID_CODE else "pur"
    return Posting(
        facts.next_transfer_id(), key.transfer_key("rev", facts.now), "reversal",
        debit_account_id=debited, credit_account_id=original.debit_account_id,
        amount_sen=original.amount_sen,
        memo=f"reverses {key.transfer_key(prefix, facts.now)}"[:MEMO_CHARS],
        reverses_transfer_id=original.transfer_id), (
            "void reversed" if prefix == "void" else "restored")
