"""The poller's horizon on PostgreSQL (issue 17: host batches of several processes
commit concurrently): a writer still open with a reserved record id (and an alert
inserted) holds back the read of every higher id until it ends; then every record and
alert is counted exactly once.  The writers here do what the switch's do: the writer
lock shared as the first statement, the record id reserved early, inserted later."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Connection, Table, insert, text

from console.live.horizon import MAX_PENDING, Horizon, Probe
from console.live.poller import Poller
from switch.db.engine import WRITER_LOCK_KEY, lock_key
from switch.db.tables import Alert, RequestRecord
from tests.postgres.pg import fresh_database
from tests.world import HostWorld, make_world

RECORDS = cast(Table, RequestRecord.__table__)
ALERTS = cast(Table, Alert.__table__)
TID = "EDC99999"  # a terminal the switch does not know: no e-warong, no money


@pytest.fixture
def pg_world(tmp_path: Path) -> Iterator[HostWorld]:
    with fresh_database() as url:
        yield from make_world(tmp_path, url)


class Records:
    """Records and alerts written straight to the tables, each with its own STAN."""

    def __init__(self, world: HostWorld) -> None:
        self.world = world
        self.stans = 900_000

    def record(self, connection: Connection, record_id: int | None = None) -> int:
        self.stans += 1
        values = dict(
            tid=TID, local_date="1123", key_date="20261123", stan=f"{self.stans:06d}",
            kind="request", mti="0210", processing_code="000000", amount_sen=0,
            request_hash="0" * 64, response_code="14", response_unit=b"",
            created_at=self.world.clock.now().astimezone(UTC))
        if record_id is not None:
            values["id"] = record_id
        return int(connection.scalar(insert(RECORDS).values(**values)
                                     .returning(RECORDS.c.id)))

    def alert(self, connection: Connection) -> int:
        return int(connection.scalar(insert(ALERTS).values(
            created_at=self.world.clock.now().astimezone(UTC), rule="low_stock",
            action="flag", tid=TID, card_ids="[]", detail="{}").returning(ALERTS.c.id)))

    def committed(self) -> tuple[int, int]:
        """A record and an alert committed by a host batch (the lock shared)."""
        with self.world.db.transaction(keys=[lock_key("T", TID)]) as session:
            connection = session.connection()
            return self.record(connection), self.alert(connection)


def _open_writer(world: HostWorld) -> tuple[Connection, int]:
    """A host batch's transaction left open: the writer lock shared first, then a
    record id reserved (not yet inserted)."""
    connection = world.db.engine.connect()
    connection.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"),
                       {"key": WRITER_LOCK_KEY})
    reserved = connection.scalar(
        text("SELECT nextval(pg_get_serial_sequence('request_records', 'id'))"))
    return connection, int(reserved)


def test_a_lower_id_committed_after_a_higher_one_is_counted(pg_world: HostWorld) -> None:
    world = pg_world
    writes = Records(world)
    poller = Poller(world.db, clock=world.clock.now, metrics_urls=[])
    assert poller.poll_once().backfilled
    start = poller.state.last_record_id
    holder, reserved = _open_writer(world)
    try:
        held_alert = writes.alert(holder)  # an alert id taken, not yet committed
        higher, higher_alert = writes.committed()
        assert higher > reserved and higher_alert > held_alert
        held_back = poller.poll_once()
        assert held_back.records == 0 and held_back.alert_ids == []
        assert poller.state.last_record_id < reserved
        assert poller.state.last_alert_id < held_alert
        assert writes.record(holder, reserved) == reserved
        holder.commit()
    finally:
        holder.close()
    results = [poller.poll_once() for _ in range(2)]
    assert sum(r.records for r in results) == 2
    assert [i for r in results for i in r.alert_ids] == [held_alert, higher_alert]
    assert (results[0].after_id, results[-1].up_to_id) == (start, higher)
    assert poller.state.last_record_id == higher
    assert poller.snapshot()["series"]["by_rc"]["14"][-1] == 2


def test_the_backfill_waits_for_a_writer_open_at_the_start(pg_world: HostWorld) -> None:
    world = pg_world
    writes = Records(world)
    poller = Poller(world.db, clock=world.clock.now, metrics_urls=[])
    holder, reserved = _open_writer(world)
    try:
        higher, _ = writes.committed()
        waiting = poller.poll_once()
        assert not waiting.backfilled and waiting.records == 0
        assert poller.state.last_record_id < reserved
        writes.record(holder, reserved)
        holder.commit()
    finally:
        holder.close()
    backfill = poller.poll_once()
    assert backfill.backfilled and backfill.records == 2
    assert backfill.up_to_id == higher
    assert len(backfill.alert_ids) == 1
    assert poller.poll_once().records == 0


def test_a_long_writer_holds_the_horizon_back_with_the_pending_probes_bounded() -> None:
    """A writer open over many polls is in every probe (the writers are all of them,
    not only those holding an id), and the probes kept are merged, never dropped."""
    horizon = Horizon()
    tops = range(10, 10 + 3 * MAX_PENDING)
    for top in tops:  # "old" stays open; each poll a short batch is open at its probe
        short = frozenset({f"w{top}"})
        assert horizon.advance(Probe(top, top // 2, short | {"old"}), short | {"old"}) is None
        assert len(horizon.pending) <= MAX_PENDING
    # "old" ended; a new batch is open at the probe and still is
    safe = horizon.advance(Probe(500, 250, frozenset({"new"})), frozenset({"new"}))
    assert safe is not None and (safe.records, safe.alerts) == (tops[-1], tops[-1] // 2)
    assert [p.records_top for p in horizon.pending] == [500]
    safe = horizon.advance(Probe(500, 250, frozenset()), frozenset())
    assert safe is not None and (safe.records, safe.alerts) == (500, 250)
    assert horizon.pending == []


def test_a_merged_probe_is_clear_only_when_both_were() -> None:
    older, newer = Probe(5, 9, frozenset({"a"})), Probe(7, 8, frozenset({"b"}))
    assert older.merged(newer) == Probe(7, 9, frozenset({"a", "b"}))
