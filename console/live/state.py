"""What one console process knows of the switch right now: the poller fills it, the
snapshot reads it (both under :attr:`LiveState.lock`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from console.live.rows import AlertRow, EwarongRow, PresenceRow, RecordBatch, RecordRow
from console.live.switch_metrics import SwitchMetrics
from console.live.window import Window

KEPT_ALERTS = 200
KEPT_SPIKES = 100


@dataclass(frozen=True)
class SpikeAlert:
    """An in-dashboard alert: a group's failure rate jumped (console.live.spikes)."""

    minute: datetime
    #: "province", "regency" or "ewarong"
    level: str
    code: str
    #: "decline" or "timeout"
    kind: str
    rate: float
    baseline: float
    requests: int
    ewarong_id: int | None


@dataclass(frozen=True)
class LastSeen:
    at: datetime
    ewarong_id: int | None


@dataclass
class LiveState:
    window: Window = field(default_factory=Window)
    metrics: SwitchMetrics = field(default_factory=SwitchMetrics)
    rule_alerts: deque[AlertRow] = field(default_factory=lambda: deque(maxlen=KEPT_ALERTS))
    spike_alerts: deque[SpikeAlert] = field(
        default_factory=lambda: deque(maxlen=KEPT_SPIKES))
    raised: set[tuple[datetime, str, str, str]] = field(default_factory=set)
    presence: list[PresenceRow] = field(default_factory=list)
    ewarongs: dict[int, EwarongRow] = field(default_factory=dict)
    #: TID → when its newest record was written (TCP and serial terminals have no
    #: presence row: their last request is their last sign of life)
    last_seen: dict[str, LastSeen] = field(default_factory=dict)
    last_record_id: int = 0
    last_alert_id: int = 0
    polls: int = 0
    polled_at: datetime | None = None
    database_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_batch(self, batch: RecordBatch) -> None:
        """Fold in a grouped read (what the poller does): the same as
        :meth:`add_records` of the range's records, a group at a time (a TID's last
        sign of life: its newest ``created_at`` in the range, its highest id's while
        the switch's clock moves forward)."""
        for group in batch.groups:
            self.window.add(group)
        for tid, seen in batch.seen.items():
            self.last_seen[tid] = LastSeen(seen.at, seen.ewarong_id)
        self.last_record_id = max(self.last_record_id, batch.up_to_id)

    def add_records(self, rows: Iterable[RecordRow]) -> None:
        """Fold in records one by one (in id order)."""
        for row in rows:
            self.window.add(row)
            self.last_seen[row.tid] = LastSeen(row.created_at, row.ewarong_id)
            self.last_record_id = max(self.last_record_id, row.id)

    def add_alerts(self, rows: list[AlertRow]) -> None:
        for row in rows:
            self.rule_alerts.append(row)
            self.last_alert_id = max(self.last_alert_id, row.id)
