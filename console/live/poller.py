"""The one poller of a console process: every ``interval_s`` it reads what is new in
the switch's database and scrapes the switches' metrics, then publishes a new
snapshot version that every open dashboard (server-sent events) is woken for.

**What a poll reads** (console.live.reads, one read-only snapshot): the records
``last < id <= top`` (``last``: the previous poll's ``top``), grouped by the database
(the grouped read: one row per minute and kind of record, not per record), in id
ranges of ``batch_rows`` ids, up to ``max_reads`` ranges a poll (the rest waits for the
next); new ``alerts`` by id, ``terminal_presence`` whole, and the e-warong registry
every ``registry_every_s``.  ``top`` is ``max(id)`` of ``request_records`` in the
snapshot on SQLite (one writer: ids become visible in order); on PostgreSQL it is the
safe horizon (console.live.horizon, read just before the snapshot; the reasoning is in
console.live.reads), which bounds the alerts too.
**On start** it back-fills the window once: the records among the newest
``backfill_ids`` ids (from ``top`` back) created in the last hour, read the same
way, and the last hour's alerts; the first poll that reads without an error (on
PostgreSQL: once the horizon is known) is the back-fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from console.live import reads
from console.live.horizon import Horizon, Tops
from console.live.rows import AlertRow, RecordBatch
from console.live.snapshot import build, detect_spikes
from console.live.state import LiveState
from console.live.switch_metrics import DEFAULT_METRICS_URLS, Fetch, SwitchMetrics, http_fetch
from console.live.window import Scope
from switch.db.engine import Database

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
BACKFILL_IDS = 200_000
BATCH_ROWS = 10_000
MAX_READS = 10
REGISTRY_EVERY_S = 60.0


def system_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class PollResult:
    """What one poll read: the id range ``after_id < id <= up_to_id`` of
    ``request_records`` (the next poll reads from ``up_to_id``) and how many records it
    held, and the alerts' ids: they prove a poll reads only what is new."""

    after_id: int = 0
    up_to_id: int = 0
    records: int = 0
    alert_ids: list[int] = field(default_factory=list)
    backfilled: bool = False


@dataclass
class Poller:
    db: Database
    interval_s: float = DEFAULT_INTERVAL_S
    metrics_urls: Sequence[str] = DEFAULT_METRICS_URLS
    clock: Callable[[], datetime] = system_now
    fetch: Fetch = http_fetch
    backfill_ids: int = BACKFILL_IDS
    batch_rows: int = BATCH_ROWS
    max_reads: int = MAX_READS
    state: LiveState = field(default_factory=LiveState)
    version: int = 0
    _started: bool = False
    _horizon: Horizon = field(default_factory=Horizon)
    _registry_at: datetime | None = None
    _cache: dict[Scope, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Condition | None = None

    def __post_init__(self) -> None:
        self.state.metrics = SwitchMetrics(list(self.metrics_urls), self.fetch)

    # -- one poll (synchronous: a thread of its own in the web app) -------------------

    def poll_once(self) -> PollResult:
        now = self.clock()
        result = PollResult()
        started = self._started
        try:
            batch, alerts, presence, registry = self._read(now)
        except Exception as exc:  # the database is away: the dashboard says so
            log.warning("dashboard poll failed: %s", exc)
            with self.state.lock:
                self.state.database_error = f"{type(exc).__name__}: {str(exc)[:160]}"
                self.version += 1
            return result
        result.backfilled = self._started and not started
        self.state.metrics.scrape(now)
        with self.state.lock:
            state = self.state
            state.database_error = None
            state.add_batch(batch)
            state.add_alerts(alerts)
            state.presence = presence
            if registry is not None:
                state.ewarongs = {e.id: e for e in registry}
            state.window.prune(now)
            detect_spikes(state, now)
            state.polls += 1
            state.polled_at = now
            self.version += 1
        result.after_id, result.up_to_id = batch.after_id, batch.up_to_id
        result.records = batch.records
        result.alert_ids = [a.id for a in alerts]
        return result

    def _read(self, now: datetime) -> tuple[
            RecordBatch, list[AlertRow], list[Any], list[Any] | None]:
        since = (now - timedelta(minutes=self.state.window.minutes)).astimezone(UTC)
        safe = self._safe_tops() if self.db.is_postgres else None
        reading = safe is not None or not self.db.is_postgres
        with reads.read_snapshot(self.db) as c:
            if not self.db.is_postgres:  # first: the range ends there, in this snapshot
                batch, alerts = self._read_new(c, since, reads.max_record_id(c), None)
            elif safe is not None:
                batch, alerts = self._read_new(c, since, safe.records, safe.alerts)
            else:  # no id is known to be final yet: nothing is read, the back-fill waits
                batch, alerts = RecordBatch(0, 0), []
            presence = reads.presence(c)
            registry = None
            if self._registry_at is None or (now - self._registry_at).total_seconds() \
                    >= REGISTRY_EVERY_S or self._unknown_ewarongs(batch):
                registry = reads.ewarongs(c)
                self._registry_at = now
        self._started = self._started or reading
        return batch, alerts, presence, registry

    def _safe_tops(self) -> Tops | None:
        """PostgreSQL: the horizon after this poll's probe (console.live.reads)."""
        with reads.read_committed(self.db) as c:
            probe = reads.probe(c)
            writers_now = reads.writers(c)
        return self._horizon.advance(probe, writers_now)

    def _read_new(self, c: Connection, since: datetime, records_top: int,
                  alerts_top: int | None) -> tuple[RecordBatch, list[AlertRow]]:
        """The records up to ``records_top`` and the alerts up to ``alerts_top``
        (``None``: no bound); the back-fill until the poller has started."""
        if not self._started:
            batch = reads.read_records(c, max(0, records_top - self.backfill_ids),
                                       records_top, batch_rows=self.batch_rows, since=since)
            # Nothing older than the window counts, but the next poll starts after
            # the top.
            newest_alert = reads.max_alert_id(c) if alerts_top is None else alerts_top
            alerts = reads.alerts_after(
                c, max(0, newest_alert - self.backfill_ids), limit=self.batch_rows,
                up_to_id=alerts_top, since=since)
            return batch, alerts
        after = self.state.last_record_id
        batch = reads.read_records(
            c, after, max(after, min(records_top, after + self.batch_rows * self.max_reads)),
            batch_rows=self.batch_rows)
        alerts = reads.alerts_after(c, self.state.last_alert_id, limit=self.batch_rows,
                                    up_to_id=alerts_top)
        return batch, alerts

    def _unknown_ewarongs(self, batch: RecordBatch) -> bool:
        known = self.state.ewarongs
        return any(g.ewarong_id is not None and g.ewarong_id not in known
                   for g in batch.groups)

    # -- snapshots ---------------------------------------------------------------------

    def snapshot(self, ewarong_id: Scope = None) -> dict[str, Any]:
        """The newest snapshot of ``ewarong_id``'s view (``None``: the whole system),
        built once per poll and scope."""
        with self.state.lock:
            cached = self._cache.get(ewarong_id)
            if cached is not None and cached[0] == self.version:
                return cached[1]
            now = self.state.polled_at or self.clock()
            snapshot = build(self.state, now, ewarong_id)
            self._cache[ewarong_id] = (self.version, snapshot)
            return snapshot

    # -- the background loop (the web app's lifespan) ---------------------------------

    async def start(self) -> None:
        """Start polling on the running loop (again, if the loop it ran on is gone)."""
        task = self._task
        if task is not None and not task.done() \
                and task.get_loop() is asyncio.get_running_loop():
            return
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._loop(), name="dashboard-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._notify()  # every stream waiting is woken and sees the poller gone

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.to_thread(self.poll_once)
            await self._notify()
            await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))

    async def _notify(self) -> None:
        if self._changed is None:
            return
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_version(self, seen: int, timeout_s: float) -> int:
        """Wait until a poll newer than ``seen`` is published (or ``timeout_s``, or the
        poller stops); the current version."""
        if self._changed is None or self.version != seen:
            return self.version
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version != seen or not self.running),
                    timeout_s)
        return self.version
