"""Settlement (0500/920000, 0500/960000) and batch upload (0320), HOST_SPEC §4.  Pure.

* 920000 with DE 63 equal to the switch's totals of the terminal's open batch → 00:
  the batch is closed and the terminal's next batch number is DE 60 + 1; totals that
  differ → 95 (the terminal then uploads its batch), the batch stays open.
* 0320: one per approved, unreversed transaction the terminal holds; answered 00 and
  recorded; it never moves money.
* 960000 (after the uploads) → 00: the batch is closed, and every difference between
  the switch's batch and the uploads (on the switch only, on the terminal only, a
  different amount) is recorded for the reconciliation report.

Each is its own idempotency class (§4): a repeat gets the stored answer again.
"""

from __future__ import annotations

from switch.core import effects
from switch.core.batch import UPLOAD_CODES, Totals, Upload, next_batch_number, parse_n6
from switch.core.effects import (
    AuditEntry,
    Decision,
    RecordWrite,
    SettlementWrite,
    UploadWrite,
)
from switch.core.facts import BatchFacts
from switch.core.gate import Caller, gated
from switch.core.replies import build_response, replay, rrn_for
from switch.core.request import Request, RequestKey
from switch.protocol import codes
from switch.protocol.message import encode
from switch.protocol.routing import response_mti
from switch.security.mac import PLACEHOLDER

CLOSE_ON_TOTALS = "920000"
CLOSE_AFTER_UPLOAD = "960000"


@gated
def decide_settlement(request: Request, facts: BatchFacts, caller: Caller) -> Decision:
    message = request.message
    key = RequestKey.of(message)
    record_id = facts.next_record_id()
    if (prior := facts.record(key, "settlement")) is not None:
        return replay(request, prior, caller.tak, record_id, facts.now)
    terminal_totals = Totals.parse(message.text(63))
    batch_number = parse_n6(message.text(60), 60)
    batch = facts.open_batch(key.tid)
    switch_totals = batch.totals()
    method = message.text(3)
    differences = tuple(batch.differences()) if method == CLOSE_AFTER_UPLOAD else ()
    closed = method == CLOSE_AFTER_UPLOAD or terminal_totals == switch_totals
    rc = codes.APPROVED if closed else codes.SETTLEMENT_MISMATCH
    response = encode(build_response(message, rc, rrn=rrn_for(record_id))
                      .with_fields(de64=PLACEHOLDER))
    settlement = SettlementWrite(
        record_id, key.tid, batch_number, method, key.stan, key.local_date, rc, closed,
        terminal_totals, switch_totals, differences,
        tuple(batch.entries) if closed else (),
        tuple(upload.record_id for upload in batch.uploads) if closed else (),
        next_batch_number(batch_number) if closed else None)
    if batch_number != batch.batch_number:
        note = f"DE 60 {batch_number}, the switch expected {batch.batch_number}"
    else:
        note = ""
    return Decision(response, caller.tak, (
        settlement,
        RecordWrite(record_id, key, "settlement", response_mti(message.mti), method, 0,
                    request.digest, rc, response),
        AuditEntry(facts.now, f"terminal:{key.tid}", "settlement", batch_number, {
            "rc": rc, "method": method, "terminal": terminal_totals._asdict(),
            "switch": switch_totals._asdict(), "differences": len(differences),
            "note": note}),
        effects.info("settlement tid=%s batch=%s method=%s rc=%s terminal=%s switch=%s "
                     "differences=%d %s", key.tid, batch_number, method, rc,
                     terminal_totals.encode(), switch_totals.encode(), len(differences),
                     note)))


@gated
def decide_batch_upload(request: Request, facts: BatchFacts, caller: Caller) -> Decision:
    message = request.message
    key = RequestKey.of(message)
    record_id = facts.next_record_id()
    if (prior := facts.record(key, "upload")) is not None:
        return replay(request, prior, caller.tak, record_id, facts.now)
    code = message.text(3)
    if code not in UPLOAD_CODES:
        rc, reason = codes.INVALID_TRANSACTION, f"DE 3 {code} uploads no purchase or void"
    else:
        rc, reason = codes.APPROVED, ""
    amount_sen = int(message.text(4))
    response = encode(build_response(message, rc, rrn=rrn_for(record_id))
                      .with_fields(de64=PLACEHOLDER))
    out: list[effects.Effect] = []
    if rc == codes.APPROVED:
        upload = Upload(record_id, key.tid, parse_n6(message.text(60), 60), code, amount_sen,
                        message.text(37), message.text(38), parse_n6(message.text(62), 62))
        out.append(UploadWrite(upload, key.stan, message.text(12), key.local_date))
    out += [
        RecordWrite(record_id, key, "upload", response_mti(message.mti), code, amount_sen,
                    request.digest, rc, response),
        effects.info("batch upload tid=%s stan=%s code=%s rrn=%s amount_sen=%d rc=%s %s",
                     key.tid, key.stan, code, message.opt_text(37), amount_sen, rc, reason)]
    return Decision(response, caller.tak, tuple(out))
