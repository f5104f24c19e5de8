"""Failure spikes: a region's (or an e-warong's) decline or time-out rate jumping.

**The rule.**  For one group (a province, a regency, an e-warong) and one kind of
failure (declines, or time-outs: reversals received), with ``latest`` the newest
minute's counts and ``baseline`` the sum of the :data:`BASELINE_MINUTES` minutes before
it, the latest minute is a spike when

* it has at least :data:`MIN_REQUESTS` requests, and so has the baseline (too few and
  there is no verdict: one decline in three requests is not news), and
* its failure rate is at least ``max(3 × baseline rate, baseline rate + 20 points)``.

Rates are compared exactly (fractions, not floats), so a constant rate never flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

MIN_REQUESTS = 20
BASELINE_MINUTES = 15
RATIO = 3
POINTS = Fraction(20, 100)


@dataclass(frozen=True)
class MinuteRate:
    """One minute of one group: requests seen and how many of them failed."""

    requests: int
    failures: int

    def rate(self) -> Fraction:
        return Fraction(self.failures, self.requests) if self.requests else Fraction(0)


@dataclass(frozen=True)
class Spike:
    rate: Fraction
    baseline: Fraction
    requests: int
    baseline_requests: int


def threshold(baseline: Fraction) -> Fraction:
    """The rate from which a minute is a spike over ``baseline``."""
    return max(RATIO * baseline, baseline + POINTS)


def spike(minutes: Sequence[MinuteRate], *, min_requests: int = MIN_REQUESTS,
          baseline_minutes: int = BASELINE_MINUTES) -> Spike | None:
    """The spike of the last of ``minutes`` (oldest first) over the ones before it,
    or ``None``; see the module docstring for the rule."""
    if not minutes:
        return None
    latest = minutes[-1]
    before = minutes[-1 - baseline_minutes:-1]
    base = MinuteRate(sum(m.requests for m in before), sum(m.failures for m in before))
    if latest.requests < min_requests or base.requests < min_requests:
        return None
    if latest.rate() < threshold(base.rate()):
        return None
    return Spike(latest.rate(), base.rate(), latest.requests, base.requests)


KINDS = ("decline", "timeout")


def group_spikes(minutes_by_group: Mapping[str, Sequence[tuple[int, int, int]]], **rule: int
                 ) -> dict[tuple[str, str], Spike]:
    """(group, kind) → spike of the latest minute, for groups given as their minutes
    (oldest first) of ``(requests, declined, timeouts)``; ``kind`` is ``decline`` or
    ``timeout``."""
    out: dict[tuple[str, str], Spike] = {}
    for group, minutes in minutes_by_group.items():
        for index, kind in enumerate(KINDS, start=1):
            found = spike([MinuteRate(m[0], m[index]) for m in minutes], **rule)
            if found is not None:
                out[(group, kind)] = found
    return out
