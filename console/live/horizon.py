"""The poller's safe horizon on PostgreSQL: the highest ``request_records`` and
``alerts`` ids below which every id is final (committed, or never to be), although
host batches of several processes commit concurrently.  Why it is safe:
:mod:`console.live.reads` (its docstring); the probes are read there
(:func:`~console.live.reads.probe`, :func:`~console.live.reads.writers`)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: the most probes kept waiting; beyond it the oldest is merged into the next
MAX_PENDING = 32


@dataclass(frozen=True)
class Probe:
    """``max(id)`` of each table, then the writers (``pg_locks.virtualtransaction``)
    read after them: once none of them is a writer any more, every id up to the tops
    is final."""

    records_top: int
    alerts_top: int
    writers: frozenset[str]

    def merged(self, newer: Probe) -> Probe:
        """One probe that is clear only when both are, for the higher tops."""
        return Probe(max(self.records_top, newer.records_top),
                     max(self.alerts_top, newer.alerts_top), self.writers | newer.writers)


@dataclass(frozen=True)
class Tops:
    """The safe horizon: read records ``id <= records``, alerts ``id <= alerts``."""

    records: int
    alerts: int


@dataclass
class Horizon:
    """The probes not yet clear, oldest first, and the horizon so far (``None``: no
    probe was ever clear, nothing is known to be final)."""

    pending: list[Probe] = field(default_factory=list)
    safe: Tops | None = None

    def advance(self, probe: Probe, writers_now: frozenset[str]) -> Tops | None:
        """Add ``probe``; with ``writers_now`` read after it (and before the snapshot
        the horizon is used in), the new horizon: the highest tops of a probe none of
        whose writers is still one (it never moves back)."""
        self.pending.append(probe)
        clear = [p for p in self.pending if not p.writers & writers_now]
        if clear:
            records = max(p.records_top for p in clear)
            alerts = max(p.alerts_top for p in clear)
            if self.safe is not None:
                records = max(records, self.safe.records)
                alerts = max(alerts, self.safe.alerts)
            self.safe = Tops(records, alerts)
            self.pending = [p for p in self.pending
                            if p.records_top > records or p.alerts_top > alerts]
        while len(self.pending) > MAX_PENDING:  # merged, never dropped: dropping is unsafe
            oldest, newer, *rest = self.pending
            self.pending = [oldest.merged(newer), *rest]
        return self.safe
