"""The chaos report's figures (loadtest/chaos/metrics.py) over a hand-built history."""

from __future__ import annotations

import math

from loadtest.chaos.history import (
    ANSWERED,
    PURCHASE,
    REVERSAL,
    TIMEOUT,
    Exchange,
    Skip,
    Window,
)
from loadtest.chaos.metrics import figures


def ex(op: str, tid: str, stan: int, sent: float, done: float, outcome: str = ANSWERED,
       rc: str | None = "00", signed: bool = True) -> Exchange:
    if outcome != ANSWERED:
        rc, signed = None, False
    return Exchange(op, tid, f"{tid}/1202/{stan:06d}", "0200" if op == PURCHASE else "0400",
                    500_000, sent, done, outcome, rc, signed)


FAULT = Window("database down", 10.0, 20.0)
SKIPS = [Skip("T1", 11.5, "reversal pending"), Skip("T1", 12.0, "reversal pending"),
         Skip("T2", 17.0, "held up past its tick")]
HISTORY = [
    ex(PURCHASE, "T1", 1, 9.0, 9.01),                                   # before the fault
    ex(PURCHASE, "T1", 2, 10.5, 10.8, rc="91", signed=False),           # unsigned: no answer
    ex(REVERSAL, "T1", 2, 11.0, 11.05, rc="91"),                        # first signed 91: 1.05 s
    ex(PURCHASE, "T2", 3, 12.0, 17.0, TIMEOUT),                         # waited 5 s
    ex(PURCHASE, "T3", 4, 20.2, 20.25),                                 # untouched: not recovery
    ex(REVERSAL, "T1", 2, 21.0, 21.1),                                  # 0400/0401 answered 00
    ex(PURCHASE, "T1", 5, 21.2, 21.5),                                  # recovery at 1.5 s
    ex(REVERSAL, "T2", 3, 22.0, 22.1),
]


def test_window_figures_judge_the_terminals_the_fault_touched() -> None:
    fig = figures(HISTORY, [FAULT], SKIPS)
    (window,) = fig.windows
    assert math.isclose(window.first_91_s or 0, 1.05), "the first 91 that was signed"
    assert math.isclose(window.first_failure_s or 0, 0.8)
    assert window.terminals_touched == 2
    assert math.isclose(window.recovery_s or 0, 1.5), "T3 was never touched"
    assert math.isclose(window.max_wait_ms, 5000.0)
    assert window.approvals_inside == 0


def test_counts() -> None:
    fig = figures(HISTORY, [FAULT], SKIPS)
    assert (fig.purchases, fig.sent, fig.approved) == (5, 5, 3)
    assert fig.skipped == {"reversal pending": 2, "held up past its tick": 1}
    assert fig.by_rc == {"00": 3, "91 unsigned": 1}
    assert fig.timeouts == 1
    assert fig.reversals_by_result == {"91": 1, "00": 2}
    assert (fig.reversals_sent, fig.reversals_answered_00, fig.keys_reversed) == (3, 2, 2)
    assert fig.reversals_pending == 0
    assert figures(HISTORY[:4], [FAULT]).reversals_pending == 2


def test_series_per_second() -> None:
    fig = figures(HISTORY, [FAULT])
    by_second = {int(s.start_s): s for s in fig.series}
    assert by_second[9].approvals_per_s == 1 and by_second[9].failures_per_s == 0
    assert by_second[10].failures_per_s == 1 and by_second[17].failures_per_s == 1
    assert math.isclose(by_second[17].p99_ms, 5000.0)
    assert math.isnan(by_second[15].p99_ms)
