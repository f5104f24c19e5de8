"""Postings as values: what moves money, and how a batch's balances follow it.

Pure (no database): the decision core applies postings to the balances it holds in
memory with :func:`apply_postings`, and :mod:`switch.ledger.postings` writes the
same postings to the database with the deltas of :func:`net_deltas`.  So the rules
of a posting (positive integer sen, two accounts, a key, money moved and never
made) are checked in one place, whichever side uses it.

>>> p = Posting(7, "pur:EDC00001:1201:000001", "purchase", 10, 20, 1500, "memo")
>>> balances = {10: 2000, 20: 0}
>>> apply_postings(balances, [p])
>>> balances
{10: 500, 20: 1500}
>>> net_deltas([p])
{10: -1500, 20: 1500}
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from switch.money import TRANSFER_KINDS
from switch.protocol.errors import InvariantError

MAX_KEY_CHARS = 80


def require(condition: bool, message: str) -> None:
    """An assertion that survives ``python -O``: a violated one is our bug, not input."""
    if not condition:
        raise InvariantError(message)


def require_amount(amount_sen: object) -> None:
    require(type(amount_sen) is int and amount_sen > 0,
            f"amounts are positive integer sen, not {amount_sen!r}")


@dataclass(frozen=True)
class Posting:
    """One transfer: ``amount_sen`` from the debit account to the credit account, under
    a reserved transfer id and an idempotency key (unique in the ledger)."""

    transfer_id: int
    idempotency_key: str
    kind: str
    debit_account_id: int
    credit_account_id: int
    amount_sen: int
    memo: str
    #: A reversal names the purchase it reverses (and only a reversal does).
    reverses_transfer_id: int | None = None

    def __post_init__(self) -> None:
        check_posting(self.kind, self.debit_account_id, self.credit_account_id,
                      self.amount_sen, self.idempotency_key, self.reverses_transfer_id)


def check_posting(kind: str, debit_account_id: int, credit_account_id: int, amount_sen: int,
                  idempotency_key: str, reverses_transfer_id: int | None) -> None:
    """The rules of every transfer (a broken one is our bug: :class:`InvariantError`)."""
    require_amount(amount_sen)
    require(kind in TRANSFER_KINDS, f"unknown transfer kind {kind!r}")
    require(debit_account_id != credit_account_id, "a transfer needs two accounts")
    require(0 < len(idempotency_key) <= MAX_KEY_CHARS, "idempotency keys are 1-80 characters")
    require((kind == "reversal") == (reverses_transfer_id is not None),
            "a reversal, and only a reversal, names the transfer it reverses")


def net_deltas(postings: Iterable[Posting]) -> dict[int, int]:
    """Each account's change over ``postings`` (they sum to zero: asserted)."""
    deltas: dict[int, int] = {}
    for posting in postings:
        deltas[posting.debit_account_id] = (
            deltas.get(posting.debit_account_id, 0) - posting.amount_sen)
        deltas[posting.credit_account_id] = (
            deltas.get(posting.credit_account_id, 0) + posting.amount_sen)
    require(sum(deltas.values()) == 0, "postings move money, never make it")
    return deltas


def apply_postings(balances: MutableMapping[int, int], postings: Iterable[Posting]) -> None:
    """Move the balances held in ``balances`` (accounts not held are left to the
    database).  A debit below zero is our bug: the decision checked the balance."""
    for posting in postings:
        if posting.debit_account_id in balances:
            left = balances[posting.debit_account_id] - posting.amount_sen
            require(left >= 0, f"account {posting.debit_account_id} debited below zero")
            balances[posting.debit_account_id] = left
        if posting.credit_account_id in balances:
            balances[posting.credit_account_id] += posting.amount_sen
