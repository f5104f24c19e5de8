"""The figures of a run, from the history alone: counts, per-second series, and per
fault window the time to the first 91 and the time to the first approval after it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from switch.protocol import codes

from .checker import terminal_views
from .history import ANSWERED, NOT_SENT, PURCHASE, REVERSAL, Exchange, Skip, Window

BUCKET_S = 1.0


@dataclass(frozen=True)
class Second:
    """One BUCKET_S of the run, by when exchanges completed."""

    start_s: float
    approvals_per_s: float
    #: purchases and reversals that got anything but a 00 (time-outs included)
    failures_per_s: float
    #: of every purchase and reversal sent (nan: none)
    p99_ms: float


@dataclass(frozen=True)
class WindowFigures:
    window: Window
    #: seconds from the window's start to the first 91 answered (None: no 91 came)
    first_91_s: float | None
    #: seconds from the start to the first purchase or reversal that did not get a 00
    first_failure_s: float | None
    #: seconds from the window's end to the first approval completed after it, at a
    #: terminal the fault touched
    recovery_s: float | None
    approvals_inside: int
    #: the longest any purchase or reversal sent inside the window waited, in ms
    #: (answered or not)
    max_wait_ms: float
    #: terminals that saw anything but a 00 during the window
    terminals_touched: int
    #: purchases sent inside the window, and those of them not approved by result
    #: (RC, ``91 unsigned``, or the outcome: timeout, link-down...)
    purchases_inside: int = 0
    not_approved_inside: Counter[str] = field(default_factory=Counter)


@dataclass
class Figures:
    purchases: int = 0
    sent: int = 0
    approved: int = 0
    #: answered purchases by RC; an unsigned answer is ``91 unsigned`` etc.
    by_rc: Counter[str] = field(default_factory=Counter)
    #: purchases not answered, by outcome (timeout, link-down, not-sent, bad-response)
    by_outcome: Counter[str] = field(default_factory=Counter)
    #: purchases the load wanted but no terminal started, by reason
    skipped: Counter[str] = field(default_factory=Counter)
    reversals_sent: int = 0
    reversals_answered_00: int = 0
    #: reversals by RC (``91 unsigned`` as for purchases) or, unanswered, by outcome
    reversals_by_result: Counter[str] = field(default_factory=Counter)
    keys_reversed: int = 0
    #: purchases whose reversal was still owed at the end (the checker fails them)
    reversals_pending: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    windows: list[WindowFigures] = field(default_factory=list)
    series: list[Second] = field(default_factory=list)

    @property
    def timeouts(self) -> int:
        return self.by_outcome["timeout"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)]


def figures(exchanges: Sequence[Exchange], windows: Sequence[Window],
            skips: Sequence[Skip] = ()) -> Figures:
    fig = Figures(skipped=Counter(skip.reason for skip in skips))
    purchases = [e for e in exchanges if e.op == PURCHASE]
    reversals = [e for e in exchanges if e.op == REVERSAL]
    fig.purchases = len(purchases)
    fig.sent = sum(e.outcome != NOT_SENT for e in purchases)
    fig.approved = sum(e.approved for e in purchases)
    for e in purchases:
        if e.outcome == ANSWERED:
            fig.by_rc[_result(e)] += 1
        else:
            fig.by_outcome[e.outcome] += 1
    fig.reversals_sent = sum(e.outcome != NOT_SENT for e in reversals)
    fig.reversals_answered_00 = sum(e.approved for e in reversals)
    fig.reversals_by_result.update(_result(e) for e in reversals)
    fig.keys_reversed = len({e.key for e in reversals if e.approved})
    fig.reversals_pending = sum(v.reversal_pending for v in terminal_views(exchanges).values())
    answered = sorted(e.latency_ms for e in purchases if e.outcome == ANSWERED)
    fig.p50_ms, fig.p99_ms = percentile(answered, 0.50), percentile(answered, 0.99)
    fig.max_ms = answered[-1] if answered else math.nan
    fig.windows = [_window(w, purchases, exchanges) for w in windows]
    fig.series = _series(exchanges)
    return fig


def span_figures(exchanges: Sequence[Exchange], start_s: float, end_s: float) -> Figures:
    """The counts of the exchanges *sent* in ``[start_s, end_s)`` (a phase of a run):
    no windows, no series."""
    inside = [e for e in exchanges if start_s <= e.sent_s < end_s]
    fig = figures(inside, [])
    fig.series = []
    return fig


def _result(e: Exchange) -> str:
    """An answer's RC (``91 unsigned`` when it carried no MAC), else the outcome."""
    if e.outcome != ANSWERED:
        return e.outcome
    rc = e.rc or "none"
    return rc if e.signed else f"{rc} unsigned"


def _window(window: Window, purchases: Sequence[Exchange],
            exchanges: Sequence[Exchange]) -> WindowFigures:
    """Recovery is judged on the terminals the fault touched (another switch's terminals
    may never have noticed it); on the whole fleet when it touched none."""
    start, end = window.start_s, window.end_s
    money = [e for e in exchanges if e.op in (PURCHASE, REVERSAL)]
    # a signed 91 (HOST_SPEC §6: the switch holds the terminal's keys): an unsigned one
    # is no answer to a strict terminal, which keeps its reversal pending
    first_91 = min((e.done_s for e in money if e.outcome == ANSWERED and e.signed
                    and e.rc == codes.HOST_UNAVAILABLE and e.done_s >= start), default=None)
    failed = [e for e in money if not e.approved and e.done_s >= start and e.sent_s <= end]
    touched = {e.tid for e in failed}
    recovered = min((e.done_s for e in purchases if e.approved and e.done_s >= end
                     and (not touched or e.tid in touched)), default=None)
    inside = [e for e in money if start <= e.sent_s <= end]
    bought = [e for e in purchases if start <= e.sent_s <= end and e.outcome != NOT_SENT]
    return WindowFigures(
        window,
        None if first_91 is None else first_91 - start,
        None if not failed else min(e.done_s for e in failed) - start,
        None if recovered is None else recovered - end,
        sum(e.approved for e in purchases if start <= e.done_s <= end),
        max((e.latency_ms for e in inside if e.outcome != NOT_SENT), default=0.0),
        len(touched), len(bought), Counter(_result(e) for e in bought if not e.approved))


def _series(exchanges: Sequence[Exchange]) -> list[Second]:
    money = [e for e in exchanges if e.op in (PURCHASE, REVERSAL)]
    if not money:
        return []
    buckets = int(max(e.done_s for e in money) // BUCKET_S) + 1
    approvals = [0] * buckets
    failures = [0] * buckets
    latencies: list[list[float]] = [[] for _ in range(buckets)]
    for e in money:
        at = int(e.done_s // BUCKET_S)
        if e.op == PURCHASE and e.approved:
            approvals[at] += 1
        elif not e.approved:
            failures[at] += 1
        if e.outcome != NOT_SENT:
            latencies[at].append(e.latency_ms)
    return [Second(n * BUCKET_S, approvals[n] / BUCKET_S, failures[n] / BUCKET_S,
                   percentile(sorted(latencies[n]), 0.99)) for n in range(buckets)]
