"""Random sequences of allocations, purchases and reversals keep the money invariant.

Not stateful (that is a later issue): Hypothesis draws a list of operations and we
replay it on a fresh SQLite ledger, checking the invariant after every step and a
model of each wallet at the end.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.ledger.invariants import check_invariants
from switch.ledger.postings import (
    IdempotencyConflict,
    InsufficientFunds,
    allocate_period,
    post_transfer,
)
from tests.ledger.world import build_world

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(1, 3), st.integers(1, 30_000_000)),
        st.tuples(st.just("buy"), st.integers(0, 2), st.integers(1, 30_000_000)),
        st.tuples(st.just("reverse"), st.integers(0, 20), st.just(0)),
        # A repeat of an earlier STAN: same content replays, other content conflicts.
        st.tuples(st.just("repeat"), st.integers(0, 20), st.integers(0, 1)),
    ),
    max_size=20,
)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(ops=OPS)
def test_random_operations_keep_the_invariant(ops: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        world = build_world(Path(directory))
        expected = [0, 0, 0]
        period_amount: dict[str, int] = {}
        bought: list[tuple[int, str, int, int]] = []  # (transfer, stan, who, amount)
        reversed_ids: set[int] = set()
        try:
            for n, (op, a, b) in enumerate(ops):
                if op == "alloc":
                    code = f"2027-{a:02d}"
                    with contextlib.suppress(IdempotencyConflict):
                        allocate_period(world.db, code, b)
                        if code not in period_amount:
                            expected = [e + b for e in expected]
                        period_amount.setdefault(code, b)
                elif op == "buy":
                    stan = f"{n:06d}"
                    with contextlib.suppress(InsufficientFunds):
                        bought.append((world.buy(stan, world.wallets[a], b), stan, a, b))
                        expected[a] -= b
                elif op == "reverse" and bought:
                    transfer_id, stan, who, amount = bought[a % len(bought)]
                    if transfer_id not in reversed_ids:
                        world.reverse(transfer_id, stan)
                        reversed_ids.add(transfer_id)
                        expected[who] += amount
                elif op == "repeat" and bought:
                    _, stan, who, amount = bought[a % len(bought)]
                    with contextlib.suppress(IdempotencyConflict):
                        # b == 0: identical content (no new money, no new record needed);
                        # b == 1: one sen more, must conflict.
                        with world.db.transaction() as s:
                            post_transfer(s, idempotency_key=f"pur:EDC00001:1123:{stan}",
                                          kind="purchase", debit_account_id=world.wallets[who],
                                          credit_account_id=world.payable,
                                          amount_sen=amount + b)
                        assert b == 0, "other content must conflict"
                report = check_invariants(world.db)
                assert report.ok, report.summary()
            assert [world.balance(w) for w in world.wallets] == expected
        finally:
            world.db.dispose()
