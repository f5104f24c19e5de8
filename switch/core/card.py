"""Balance inquiry (0100/310000), purchase (0200/000000) and void (0200/020000),
HOST_SPEC §4.  Pure.

Gate (58/63), then the idempotency record: a repeat replays the stored response
(different content: 94), a request whose reversal came first is 05.  Then the
checks of :mod:`switch.core.rules` in order (the programme rules of docs/RULES.md
among them), the ARQC and PIN verified by :mod:`switch.core.verify`.  The effects:
the card's chip state (PIN tries, block, dormancy, ATC, last use), the purchase
posting (wallet → e-warong payable), the basket's units off the e-warong's shelf
(:mod:`switch.core.stock`), the rules' alerts, the idempotency record with the
stored response, the audit entry and the log line.

A void (§4, "Void") presents the card and PIN again and names the purchase by its
invoice (DE 62) in the terminal's open batch: not there, reversed, or another card's →
25; voided already → 12; DE 4 not the purchase's → 13.  Approved, it pays the
purchase back from the e-warong to the wallet (exactly once: a repeat replays), puts
its units back on the shelf, and marks the purchase voided.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from switch.core import effects, stock
from switch.core.batch import BatchEntry, OpenBatch, parse_n6
from switch.core.effects import (
    AlertRaise,
    AuditEntry,
    CardChange,
    Decision,
    Effect,
    RecordWrite,
    VoidMark,
)
from switch.core.facts import BatchFacts, Card, CardFacts, PinOutcome
from switch.core.gate import Caller, gated
from switch.core.policy import DECLINE, FLAG, OFF
from switch.core.replies import approval_code_for, build_response, replay, rrn_for
from switch.core.request import Request, RequestKey
from switch.core.rules import (
    Hit,
    Verdict,
    check_balance,
    check_basket,
    check_card,
    check_pin,
    off_hours_hit,
    price_hits,
    velocity_hit,
    zoning_hit,
)
from switch.core.verify import Cryptogram, check_arqc
from switch.ledger.money import Posting
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import encode, mask_pan
from switch.protocol.routing import TxnType, response_mti
from switch.security.mac import PLACEHOLDER


@gated
def decide_card_request(request: Request, facts: BatchFacts, caller: Caller) -> Decision:
    """The decision on a balance inquiry, a purchase or a void (see the module)."""
    message = request.message
    key = RequestKey.of(message)
    pan = request.pan  # unusable card data or basket: 30, whatever else is wrong
    purchase = ((int(message.text(4)), request.basket)
                if request.txn in (TxnType.PURCHASE, TxnType.VOID) else None)
    invoice = (parse_n6(message.text(62), 62)
               if request.txn in (TxnType.PURCHASE, TxnType.VOID) else None)
    record_id = facts.next_record_id()
    prior = facts.record(key, "request")
    if prior is not None:
        return replay(request, prior, caller.tak, record_id, facts.now)
    found = facts.card(pan)
    card, card_facts = found if found else (None, None)
    checked = _Checked(Verdict(codes.DO_NOT_HONOUR, reason="reversed before it arrived"))
    original: BatchEntry | None = None
    if facts.record(key, "reversal") is None:
        checked = _check(request, facts, caller, pan, card, card_facts, purchase)
        if request.txn is TxnType.VOID and checked.verdict.rc == codes.APPROVED:
            assert card_facts is not None and invoice is not None and purchase is not None
            checked.verdict, original = _void_verdict(facts.open_batch(key.tid), invoice,
                                                      purchase[0], card_facts)
    verdict = checked.verdict
    out: list[Effect] = []
    if card is not None:
        out += _card_changes(facts, pan, card, verdict, checked.cryptogram, key)
    posting = None
    terminal = caller.terminal
    basket_text = message.text(48) if purchase is not None else None
    stock_ewarong_id = None
    if verdict.rc == codes.APPROVED and verdict.amount_sen > 0:
        assert card is not None and card_facts is not None, "an approved purchase has a card"
        if original is None:
            posting = Posting(facts.next_transfer_id(), key.transfer_key("pur", facts.now),
                              "purchase", card.wallet_account_id,
                              terminal.payable_account_id, verdict.amount_sen,
                              f"{key.tid} {message.text(42)}")
            out.append(posting)
            if facts.policy.inventory:
                stock_ewarong_id = terminal.ewarong_id
                assert purchase is not None
                need = checked.need if checked.need is not None else stock.units_needed(
                    purchase[1])
                out += stock.low_stock_alerts(stock_ewarong_id, need, facts.stock,
                                              facts.policy.low_stock_units, key.tid, record_id)
                out += stock.moves(stock_ewarong_id, need, -1)
        else:
            posting = _void_posting(facts, key, original)
            out += [posting, VoidMark(original.record_id, record_id)]
            basket_text, stock_ewarong_id = original.basket, original.stock_ewarong_id
            if stock_ewarong_id is not None:  # the goods go back on the shelf
                out += stock.moves(stock_ewarong_id, stock.units_needed(basket_text), +1)
    out += [AlertRaise(hit.rule, action, key.tid, terminal.ewarong_id, record_id,
                       hit.card_ids or ((card.card_id,) if card else ()), hit.detail)
            for hit, action in checked.alerts]
    approved = verdict.rc == codes.APPROVED
    balance_after = None
    if card_facts is not None and verdict.rc in (codes.APPROVED, codes.INSUFFICIENT_BALANCE):
        paid_back = original is not None
        balance_after = card_facts.balance_sen + (  # DE 54: what is left
            verdict.amount_sen if paid_back else -verdict.amount_sen)
    response = encode(build_response(
        message, verdict.rc, rrn=rrn_for(record_id),
        approval_code=approval_code_for(record_id) if approved else None,
        balance_sen=balance_after,
        icc_data=(facts.checks.issuer_authentication(pan, checked.cryptogram, verdict.rc)
                  if checked.cryptogram is not None else None),
    ).with_fields(de64=PLACEHOLDER))
    out.append(RecordWrite(
        record_id, key, "request", response_mti(message.mti), message.text(3),
        verdict.amount_sen, request.digest, verdict.rc, response,
        posting.transfer_id if posting else None,
        posting.debit_account_id if posting else None,
        posting.credit_account_id if posting else None, invoice,
        original.record_id if original else None, card.card_id if card else None,
        basket_text, stock_ewarong_id, joins_window=not any(
            hit.rule == "velocity" and action == DECLINE for hit, action in checked.alerts)))
    out.append(AuditEntry(facts.now, f"terminal:{key.tid}", request.txn.value, mask_pan(pan), {
        "rc": verdict.rc, "amount_sen": verdict.amount_sen, "stan": key.stan,
        "local_date": key.local_date, "reason": verdict.reason,
        **({"flags": [hit.rule for hit, action in checked.alerts if action == FLAG]}
           if checked.alerts else {})}))
    out.append(effects.info("%s tid=%s stan=%s pan=%s amount_sen=%d rc=%s %s",
                            request.txn.value, key.tid, key.stan, mask_pan(pan),
                            verdict.amount_sen, verdict.rc, verdict.reason))
    return Decision(response, caller.tak, tuple(out))


@dataclass
class _Checked:
    """The checks' outcome: the verdict, the chip's cryptogram, the rule hits met on the
    way with what was done (``decline`` for the one that declined, ``flag`` else)."""

    verdict: Verdict
    cryptogram: Cryptogram | None = None
    alerts: list[tuple[Hit, str]] = field(default_factory=list)
    #: A purchase's units per item, once the stock check has counted them.
    need: dict[str, int] | None = None


def _check(request: Request, facts: BatchFacts, caller: Caller, pan: str, card: Card | None,
           card_facts: CardFacts | None, purchase: tuple[int, list[BasketLine]] | None,
           ) -> _Checked:
    """The checks in order, first failure wins (the gate passed already)."""
    message, policy = request.message, facts.policy
    refused = check_card(card_facts, facts.now, policy.dormancy_days)
    if refused:
        return _Checked(refused)
    assert card is not None and card_facts is not None
    checked = _Checked(Verdict(codes.APPROVED, PinOutcome.CORRECT))
    if message.has(55):  # magstripe (DE 22 021/801) has no cryptogram to check
        cryptogram = check_arqc(facts.checks, message, pan, card.psn, card.last_atc)
        if isinstance(cryptogram, str):
            return _Checked(Verdict(codes.SECURITY_VIOLATION, reason=cryptogram))
        checked.cryptogram = cryptogram
    tpk = caller.terminal.facts.tpk
    assert tpk is not None, "the gate admits only a terminal that has logged on"
    pin_ok = facts.checks.pin_ok(tpk, message.binary(52), pan, card.pin_offset)
    refused = check_pin(card_facts, pin_ok, facts.max_pin_tries)
    if refused is None and not card_facts.kpm_active:
        refused = Verdict(codes.NOT_PERMITTED_KPM, PinOutcome.CORRECT, reason="KPM inactive")
    if refused is None and request.txn is not TxnType.VOID:
        refused = _programme_rules(request, facts, caller, card, card_facts, purchase,
                                   checked)
    if refused is not None:
        checked.verdict = refused
    elif purchase is not None and request.txn is not TxnType.VOID:
        checked.verdict = check_balance(purchase[0], card_facts)
    return checked


def _programme_rules(request: Request, facts: BatchFacts, caller: Caller, card: Card,
                     card_facts: CardFacts, purchase: tuple[int, list[BasketLine]] | None,
                     checked: _Checked) -> Verdict | None:
    """Hours and velocity (65), then for a purchase zoning (58), the basket (13/57),
    reference prices (13) and stock (ST), docs/RULES.md; hits of rules that only flag
    are added to ``checked``."""
    policy, terminal = facts.policy, caller.terminal
    tid = terminal.facts.tid

    def hit(found: Hit | None, mode: str) -> Verdict | None:
        if found is None or mode == OFF:
            return None
        checked.alerts.append((found, DECLINE if mode == DECLINE else FLAG))
        return (Verdict(found.rc, PinOutcome.CORRECT, reason=found.reason)
                if mode == DECLINE else None)

    refused = (hit(off_hours_hit(terminal.rules, facts.now), policy.off_hours)
               or hit(velocity_hit(facts.recent_cards.get(tid, {}), card.card_id, facts.now_utc,
                                   policy.velocity_max_cards, policy.velocity_window_minutes,
                                   facts.window_counts.get(tid), since=facts.velocity_since)
                      if policy.velocity != OFF else None, policy.velocity))
    if refused or purchase is None:
        return refused
    zoning = DECLINE if policy.zoning == "strict" else FLAG
    refused = hit(zoning_hit(card_facts.zone, terminal.rules.zones), zoning)
    if refused:
        return refused
    amount_sen, basket = purchase
    items = {line.item_code: facts.catalogue[line.item_code] for line in basket
             if line.item_code in facts.catalogue}
    refused = check_basket(amount_sen, basket, items)
    if refused:
        return refused
    for found in price_hits(basket, terminal.rules.region, facts.reference_prices,
                            policy.price_cap_percent):
        declined = hit(found, DECLINE if policy.price_cap else FLAG)  # every line alerts
        refused = refused or declined
    if refused or not policy.inventory:
        return refused
    checked.need = stock.units_needed(basket)
    short = stock.short_items(terminal.ewarong_id, checked.need, facts.stock)
    if short:
        return Verdict(codes.OUT_OF_STOCK, PinOutcome.CORRECT,
                       reason=f"out of stock: {', '.join(short)}")
    return None


def _void_verdict(batch: OpenBatch, invoice: str, amount_sen: int,
                  card: CardFacts) -> tuple[Verdict, BatchEntry | None]:
    """HOST_SPEC §4 "Void": the purchase of the open batch with this invoice."""
    original = batch.purchase_by_invoice(invoice)
    ok = PinOutcome.CORRECT
    if original is None or original.reversed:
        return Verdict(codes.ORIGINAL_NOT_FOUND, ok, reason=f"invoice {invoice} not in the "
                       "open batch" if original is None else f"invoice {invoice} reversed"), None
    if original.debit_account_id != card.wallet_account_id:
        return Verdict(codes.ORIGINAL_NOT_FOUND, ok,
                       reason=f"invoice {invoice} is another KPM's"), None
    if original.voided_by_record_id is not None:
        return Verdict(codes.INVALID_TRANSACTION, ok, reason=f"invoice {invoice} voided "
                       "already"), None
    if amount_sen != original.amount_sen:
        return Verdict(codes.INVALID_AMOUNT, ok, reason="DE 4 is not the purchase's"), None
    return Verdict(codes.APPROVED, ok, original.amount_sen, f"voids invoice {invoice}"), original


def _void_posting(facts: BatchFacts, key: RequestKey, original: BatchEntry) -> Posting:
    """The purchase paid back: e-warong payable → wallet."""
    assert original.debit_account_id is not None and original.credit_account_id is not None
    return Posting(facts.next_transfer_id(), key.transfer_key("void", facts.now), "void",
                   original.credit_account_id, original.debit_account_id,
                   original.amount_sen,
                   f"voids {original.key.transfer_key('pur', facts.now)}")


def _card_changes(facts: BatchFacts, pan: str, card: Card, verdict: Verdict,
                  cryptogram: Cryptogram | None, key: RequestKey) -> list[Effect]:
    """PIN try counter (the third consecutive wrong PIN blocks, HOST_SPEC §5), ATC, and
    a card found dormant (FAILURES F5)."""
    atc = cryptogram.atc if cryptogram is not None else card.last_atc
    status, wrong, used_at = card.status, card.wrong_pin_count, card.last_used_at
    out: list[Effect] = []
    if verdict.card_status is not None:
        status = verdict.card_status
        out.append(AuditEntry(facts.now, "switch", f"card.{status}", card.pan_masked, {
            "reason": verdict.reason, "tid": key.tid, "stan": key.stan}))
    if verdict.pin is PinOutcome.CORRECT:
        wrong, used_at = 0, facts.now
    elif verdict.pin is PinOutcome.WRONG:
        wrong += 1
    elif verdict.pin is PinOutcome.BLOCKED:
        wrong, status = wrong + 1, "blocked"
        out.append(AuditEntry(facts.now, "switch", "card.block", card.pan_masked, {
            "reason": "PIN tries exceeded", "tid": key.tid, "stan": key.stan}))
    if (status, wrong, atc, used_at) != (card.status, card.wrong_pin_count, card.last_atc,
                                         card.last_used_at):
        out.insert(0, CardChange(pan, card.card_id, status, wrong, atc, used_at))
    return out

