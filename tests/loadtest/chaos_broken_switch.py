"""A deliberately broken switch, for the chaos checker's FAIL tests only:
``python -m tests.loadtest.chaos_broken_switch serve`` is ``bpnt-switch serve`` with
one bug put in, chosen by ``CHAOS_BROKEN_MODE``:

* ``rollback`` (default): every :data:`EVERY`-th batch that moves money is decided
  and answered as usual, but its transaction is rolled back instead of committed
  (a switch that answers before its commit, then loses the commit).  Terminals see
  approvals the ledger never holds;
* ``decline``: every :data:`EVERY`-th approved purchase is committed (debited) but
  answered 05, properly signed: "gagal tapi saldo terpotong".

Either way nothing in the database is inconsistent: only the terminals' history
against the database can tell.  The breakage lives here, monkeypatched over the
real host at start-up; production code has no flag for it.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from switch.core.effects import Decision, Effect
from switch.core.request import Request
from switch.host import service
from switch.host.store import BatchStore, StoreBatch
from switch.ledger.money import Posting
from switch.protocol.message import decode, encode

EVERY = 5
MODE_VARIABLE = "CHAOS_BROKEN_MODE"
log = logging.getLogger("bpnt.broken")


class _Dropped(Exception):
    """Raised inside the batch's transaction so that it rolls back."""


def install_rollback() -> None:
    real_batch = BatchStore.batch
    real_write = StoreBatch.write
    moved = threading.local()
    batches = itertools.count(1)

    def write(self: StoreBatch, effects: Sequence[Effect], *, now: datetime) -> None:
        moved.money = any(isinstance(effect, Posting) for effect in effects)
        real_write(self, effects, now=now)

    @contextmanager
    def batch(self: BatchStore, requests: Sequence[Request]) -> Iterator[StoreBatch]:
        moved.money = False
        try:
            with real_batch(self, requests) as store_batch:
                yield store_batch
                if moved.money and next(batches) % EVERY == 0:
                    raise _Dropped
        except _Dropped:
            log.warning("BROKEN SWITCH: a batch's answers go out, its commit is dropped")

    setattr(StoreBatch, "write", write)  # noqa: B010 - the breakage is the point
    setattr(BatchStore, "batch", batch)  # noqa: B010


def install_decline() -> None:
    real_answer = service._answer
    purchases = itertools.count(1)

    def answer(tpdu: bytes, decision: Decision) -> bytes | None:
        if decision.response is not None and decision.sign_with is not None:
            response = decode(decision.response)
            if (response.mti, response.opt_text(3), response.opt_text(39)) == \
                    ("0210", "000000", "00") and next(purchases) % EVERY == 0:
                log.warning("BROKEN SWITCH: a committed purchase answered 05")
                declined = response.with_fields(de39="05", de38=None, de54=None)
                decision = replace(decision, response=encode(declined))
        return real_answer(tpdu, decision)

    setattr(service, "_answer", answer)  # noqa: B010


def main(argv: list[str] | None = None) -> int:
    mode = os.environ.get(MODE_VARIABLE, "rollback")
    {"rollback": install_rollback, "decline": install_decline}[mode]()
    from switch.cli import main as switch_main

    return switch_main(argv)


if __name__ == "__main__":
    sys.exit(main())
