"""Rolling per-minute aggregates of the last hour, kept in memory by the poller.

A minute is the UTC minute of a record's ``created_at`` (the switch's clock).  Every
record counts in the whole system's scope (``None``) and in its e-warong's scope (its
id); each scope of a minute holds:

* ``by_rc``: card requests (``kind = request``: purchases, voids, inquiries) by RC;
* ``purchases_approved`` / ``purchases_declined``: purchases (DE 3 000000) only;
* ``reversals``: reversals received by class (:attr:`RecordRow.reversal_class`) —
  each one is an EDC that timed out (HOST_SPEC §5);
* ``tally`` and per-province / per-regency tallies: requests, declines and
  time-outs (reversals), for the failure table and the spike rule.

The poller folds in groups of like records (:class:`~console.live.rows.RecordGroup`,
each with its ``count``); a single record (:class:`~console.live.rows.RecordRow`)
folds in the same way as a group of one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from console.live.rows import Classified, minute_of

WINDOW_MINUTES = 60
Scope = int | None


@dataclass
class Tally:
    requests: int = 0
    declined: int = 0
    timeouts: int = 0

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.declined += other.declined
        self.timeouts += other.timeouts


@dataclass
class ScopeMinute:
    by_rc: Counter[str] = field(default_factory=Counter)
    purchases_approved: int = 0
    purchases_declined: int = 0
    reversals: Counter[str] = field(default_factory=Counter)
    tally: Tally = field(default_factory=Tally)
    provinces: dict[str, Tally] = field(default_factory=dict)
    regencies: dict[str, Tally] = field(default_factory=dict)

    def add(self, row: Classified) -> None:
        """Count ``row`` (``row.count`` records)."""
        n = row.count
        one = Tally()
        if row.is_request:
            approved = row.approved
            self.by_rc[row.response_code] += n
            one.requests, one.declined = n, 0 if approved else n
            if row.is_purchase:
                if approved:
                    self.purchases_approved += n
                else:
                    self.purchases_declined += n
        elif row.kind == "reversal":
            self.reversals[row.reversal_class] += n
            one.timeouts = n
        else:
            return
        self.tally.add(one)
        if row.province:
            self.provinces.setdefault(row.province, Tally()).add(one)
        if row.regency:
            self.regencies.setdefault(row.regency, Tally()).add(one)


@dataclass
class Window:
    """Minute → scope → :class:`ScopeMinute`, for the ``minutes`` minutes to ``now``."""

    minutes: int = WINDOW_MINUTES
    buckets: dict[datetime, dict[Scope, ScopeMinute]] = field(default_factory=dict)

    def add(self, row: Classified) -> None:
        scopes = self.buckets.setdefault(row.minute, {})
        scopes.setdefault(None, ScopeMinute()).add(row)
        if row.ewarong_id is not None:
            scopes.setdefault(row.ewarong_id, ScopeMinute()).add(row)

    def labels(self, now: datetime) -> list[datetime]:
        """The window's minutes, oldest first, the last one ``now``'s."""
        last = minute_of(now)
        return [last - timedelta(minutes=n) for n in range(self.minutes - 1, -1, -1)]

    def prune(self, now: datetime) -> None:
        first = self.labels(now)[0]
        for minute in [m for m in self.buckets if m < first]:
            del self.buckets[minute]

    def series(self, scope: Scope, now: datetime) -> list[ScopeMinute]:
        """``scope``'s minutes over the window, oldest first (empty where nothing came)."""
        return [self.buckets.get(m, {}).get(scope) or ScopeMinute() for m in self.labels(now)]

    def ewarong_ids(self) -> set[int]:
        return {s for scopes in self.buckets.values() for s in scopes if s is not None}
