"""The poller's grouped read gives exactly the aggregates of folding the records one by
one (both engines), on a mixed set: purchases approved and declined, other RCs and
processing codes, voids, a settlement, reversals with and without an original,
e-warongs with a usable region and without one (the card's NIK decides), a terminal
the switch does not know, several minutes and several e-warongs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from console.live import reads
from console.live.poller import Poller, PollResult
from console.live.rows import RecordRow
from console.live.snapshot import build
from console.live.state import LiveState
from switch.db.tables import Card, Ewarong, RequestRecord
from switch.protocol.bpnt import BasketLine
from switch.security.keys import pan_token
from terminal_sim.edc import Edc
from terminal_sim.link import Faults
from tests.world import HostWorld, make_world

RICE = BasketLine("BRS005", 1, 6_500_000)
#: e-warong MID -> its region: 6 digits (its first 4 count), none and 1 digit (neither
#: is usable: the NIK decides)
REGIONS = {"EWARONG00000001": "320101", "EWARONG00000002": None, "EWARONG00000003": "3"}


@pytest.fixture(params=["sqlite", "postgresql"])
def mixed_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HostWorld]:
    """Six terminals at three e-warongs (terminal i at e-warong i % 3 + 1)."""
    if request.param == "sqlite":
        yield from make_world(tmp_path, terminal_count=6)
        return
    from tests.postgres.pg import fresh_database

    with fresh_database() as url:
        yield from make_world(tmp_path, url, terminal_count=6)


class Traffic:
    def __init__(self, world: HostWorld) -> None:
        self.world = world
        self.faults = Faults()
        self.edcs: dict[int, Edc] = {}
        self.stans = 900_000  # far from the EDCs' STANs

    def edc(self, terminal: int) -> Edc:
        if terminal not in self.edcs:
            self.edcs[terminal] = self.world.edc(self.world.terminal("ok", terminal),
                                                 self.faults)
        return self.edcs[terminal]

    def buy(self, terminal: int, card: int, *, label: str = "ok",
            wrong_pin: bool = False) -> Any:
        edc, demo = self.edc(terminal), self.world.card(label, card)
        self.world.insert(edc, demo)
        pin = f"{(int(demo.pin) + 1) % 10**6:06d}" if wrong_pin else demo.pin
        return edc.purchase([RICE], pin)

    def card_id(self, card: int) -> int:
        demo = self.world.card("ok", card)
        with self.world.db.transaction() as session:
            found = session.scalar(select(Card.id).where(
                Card.pan_token == pan_token(self.world.keys.pan_token_key, demo.pan)))
        assert found is not None
        return int(found)

    def record(self, tid: str, kind: str, processing_code: str, rc: str, *,
               card_id: int | None = None, original_id: int | None = None,
               at: datetime | None = None) -> int:
        """A record written straight to the table (what no EDC here can make)."""
        self.stans += 1
        at = at or self.world.clock.now()
        with self.world.db.transaction() as session:
            row = RequestRecord(
                tid=tid, local_date="1123", key_date="20261123", stan=f"{self.stans:06d}",
                kind=kind, mti="0410" if kind == "reversal" else "0210",
                processing_code=processing_code, amount_sen=0, request_hash="0" * 64,
                response_code=rc, response_unit=b"", card_id=card_id,
                original_record_id=original_id, created_at=at.astimezone(UTC))
            session.add(row)
            session.flush()
            return int(row.id)


def _make_traffic(world: HostWorld, between: Callable[[], None] = lambda: None) -> None:
    """The mixed set; ``between`` is called whenever the clock has moved on."""

    def advance(delta: timedelta) -> None:
        world.clock.advance(delta)
        between()

    with world.db.transaction() as session:
        for mid, region in REGIONS.items():
            session.execute(update(Ewarong).where(Ewarong.mid == mid).values(region=region))
    t = Traffic(world)
    for minute in range(4):
        for terminal in range(6):
            assert t.buy(terminal, (terminal * 4 + minute) % 12).rc == "00"
        assert t.buy(minute % 6, 8 + minute, wrong_pin=True).rc == "55"
        advance(timedelta(seconds=25))
        if minute % 2:
            assert t.buy(1, 0, label="blocked").rc == "62"
            world.insert(t.edc(2 + minute), world.card("ok", 3))
            assert t.edc(2 + minute).balance_inquiry(world.card("ok", 3).pin).rc == "00"
        advance(timedelta(seconds=50))
    # a void (020000), then a time-out and its reversal (original 00) at e-warong 2
    edc = t.edc(4)
    world.insert(edc, world.card("ok", 4))
    bought = edc.purchase([RICE], world.card("ok", 4).pin)
    assert edc.void(bought.invoice, world.card("ok", 4).pin).rc == "00"
    t.faults.drop_responses = 1
    world.insert(edc, world.card("ok", 5))
    assert edc.purchase([RICE], world.card("ok", 5).pin).timed_out
    assert edc.send_pending_reversal()
    assert t.edc(0).settle().rc is not None
    advance(timedelta(minutes=1))
    # what the EDCs here do not make: reversals without an original and of a declined
    # request, a terminal the switch does not know (no e-warong: the NIK decides, or
    # nothing), records on a minute's very edges
    declined = t.record(world.terminal("ok", 1).tid, "request", "000000", "51",
                        card_id=t.card_id(6))
    t.record(world.terminal("ok", 1).tid, "reversal", "000000", "00", original_id=declined)
    t.record(world.terminal("ok", 2).tid, "reversal", "000000", "00")
    t.record("EDC99999", "request", "000000", "14", card_id=t.card_id(7))
    t.record("EDC99999", "request", "000000", "14")
    edge = world.clock.now().astimezone(UTC).replace(second=0, microsecond=0)
    advance(timedelta(minutes=1))
    t.record(world.terminal("ok", 3).tid, "request", "000000", "05", card_id=t.card_id(8),
             at=edge + timedelta(minutes=1) - timedelta(microseconds=1))
    t.record(world.terminal("ok", 5).tid, "request", "000000", "05", card_id=t.card_id(9),
             at=edge + timedelta(minutes=1))


def _one_by_one(world: HostWorld) -> tuple[LiveState, list[RecordRow]]:
    state = LiveState()
    with reads.read_snapshot(world.db) as c:
        rows = reads.records_after(c, 0, limit=10**6)
    state.add_records(rows)
    return state, rows


def _same(grouped: LiveState, reference: LiveState, now: datetime) -> None:
    assert grouped.window.buckets == reference.window.buckets
    assert grouped.last_seen == reference.last_seen
    assert grouped.last_record_id == reference.last_record_id
    for scope in [None, *sorted(reference.window.ewarong_ids())]:
        assert build(grouped, now, scope) == build(reference, now, scope)


def test_the_grouped_read_counts_exactly_what_folding_each_record_does(
        mixed_world: HostWorld) -> None:
    world = mixed_world
    _make_traffic(world)
    reference, rows = _one_by_one(world)
    now = world.clock.now()

    # the set is as mixed as it says
    assert len({r.minute for r in rows}) >= 6
    assert None in {r.ewarong_id for r in rows}
    assert len({r.ewarong_id for r in rows if r.ewarong_id is not None}) == 3
    assert {r.kind for r in rows} >= {"request", "reversal", "settlement"}
    assert {r.processing_code for r in rows if r.is_request} >= {"000000", "020000"}
    assert len({r.processing_code for r in rows if r.is_request}) >= 3
    assert {r.response_code for r in rows if r.is_request} >= {"00", "55", "62", "51", "14"}
    assert {r.reversal_class for r in rows if r.kind == "reversal"} == \
        {"original_00", "original_51", "no_original"}
    assert {r.ewarong_region for r in rows} == {"320101", None, "3"}
    by_nik = [r for r in rows if r.region and not (r.ewarong_region or "")[1:]]
    assert len({r.region for r in by_nik}) >= 3  # where the NIK decides
    assert any(r.region is None for r in rows)  # no e-warong region and no card

    # one grouped read of everything
    grouped = LiveState()
    with reads.read_snapshot(world.db) as c:
        top = reads.max_record_id(c)
        batch = reads.read_records(c, 0, top, batch_rows=10_000)
    assert batch.records == len(rows) and (batch.after_id, batch.up_to_id) == (0, top)
    assert len(batch.groups) < len(rows)
    grouped.add_batch(batch)
    _same(grouped, reference, now)

    # the same in id ranges of 7 ids
    chunked = LiveState()
    with reads.read_snapshot(world.db) as c:
        chunked.add_batch(reads.read_records(c, 0, top, batch_rows=7))
    _same(chunked, reference, now)


def test_the_poller_over_several_polls_counts_what_folding_each_record_does(
        mixed_world: HostWorld) -> None:
    """Polls along the way (each reading only what is new, some over several id
    ranges) add up to the one-by-one fold of everything."""
    world = mixed_world
    poller = Poller(world.db, clock=world.clock.now, metrics_urls=[], batch_rows=2,
                    max_reads=2)
    poller.poll_once()
    ranges: list[PollResult] = []
    _make_traffic(world, lambda: ranges.append(poller.poll_once()))
    while True:  # at most 4 ids a poll: the rest waits for the next
        result = poller.poll_once()
        ranges.append(result)
        if result.up_to_id == result.after_id:
            break
    reference, rows = _one_by_one(world)
    assert any(r.up_to_id - r.after_id == 4 for r in ranges)
    for before, after in zip(ranges, ranges[1:], strict=False):
        assert after.after_id == before.up_to_id  # nothing missed, nothing twice
    assert sum(r.records for r in ranges) == len(rows)
    # the poller's state also holds presence, alerts, spikes: compare what they share
    state = poller.state
    now = world.clock.now()
    assert state.window.buckets == reference.window.buckets
    assert state.last_seen == reference.last_seen
    assert state.last_record_id == reference.last_record_id == rows[-1].id
    reference.ewarongs = state.ewarongs
    for scope in [None, *sorted(reference.window.ewarong_ids())]:
        mine, theirs = build(state, now, scope), build(reference, now, scope)
        for key in ("series", "regions", "ewarongs", "terminals", "backlog"):
            assert mine[key] == theirs[key], key
        for key in theirs["tiles"]:
            if key not in ("rule_alerts_hour", "spikes_hour"):
                assert mine["tiles"][key] == theirs["tiles"][key], key
