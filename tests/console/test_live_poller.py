"""The dashboard poller against real traffic through the host (both engines): the
aggregates exactly, the incremental read, time-outs, rule alerts and presence."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from console.live.poller import Poller, PollResult
from switch.db.tables import Card, Ewarong, Kpm, RequestRecord
from switch.protocol.bpnt import BasketLine
from switch.security.keys import pan_token
from switch.transports.presence import record_presence
from terminal_sim.edc import Edc
from terminal_sim.link import Faults
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)


def _poller(world: HostWorld) -> Poller:
    return Poller(world.db, clock=world.clock.now, metrics_urls=[])


def _region_of(world: HostWorld, label: str, index: int) -> str:
    """The first 4 digits of the NIK of the KPM holding that demo card."""
    card = world.card(label, index)
    with world.db.transaction() as session:
        nik = session.scalar(select(Kpm.nik).join(Card, Card.kpm_id == Kpm.id).where(
            Card.pan_token == pan_token(world.keys.pan_token_key, card.pan)))
    assert nik is not None
    return str(nik)[:4]


def _record_ids(world: HostWorld, after_id: int = 0) -> list[int]:
    with world.db.transaction() as session:
        return list(session.scalars(select(RequestRecord.id).where(
            RequestRecord.id > after_id).order_by(RequestRecord.id)))


def _reads(result: PollResult, after_id: int, ids: list[int]) -> None:
    """``result`` read the id range from ``after_id`` to the newest record, holding
    exactly the records ``ids`` (all there is after ``after_id``)."""
    assert (result.after_id, result.up_to_id) == (after_id, ids[-1] if ids else after_id)
    assert result.records == len(ids) and all(after_id < i for i in ids)


def _ewarong_ids(world: HostWorld) -> dict[str, int]:
    with world.db.transaction() as session:
        return {mid: int(i) for i, mid in session.execute(select(Ewarong.id, Ewarong.mid))}


_EDCS: dict[tuple[int, int], Edc] = {}


def _edc(world: HostWorld, terminal: int = 0, faults: Faults | None = None) -> Edc:
    """One EDC per terminal of the world (its STANs move on), ``faults`` on its link."""
    key = (id(world), terminal)
    if key not in _EDCS:
        _EDCS[key] = world.edc(world.terminal("ok", terminal), faults)
    return _EDCS[key]


def _buy(world: HostWorld, label: str, index: int, *, terminal: int = 0,
         wrong_pin: bool = False) -> str | None:
    edc = _edc(world, terminal)
    card = world.card(label, index)
    world.insert(edc, card)
    pin = f"{(int(card.pin) + 1) % 10**6:06d}" if wrong_pin else card.pin
    return edc.purchase([RICE], pin).rc


def test_the_aggregates_count_real_traffic_exactly(engine_world: HostWorld) -> None:
    world = engine_world
    poller = _poller(world)
    first = poller.poll_once()
    assert first.backfilled and first.records == 0
    _reads(first, 0, _record_ids(world))
    # 3 approved purchases on terminal 0, 1 wrong PIN (55) on terminal 1, 1 blocked card
    # (62) on terminal 0
    expected_rc: Counter[str] = Counter()
    regions: Counter[tuple[str, bool]] = Counter()
    for index in range(3):
        assert _buy(world, "ok", index) == "00"
        expected_rc["00"] += 1
        regions[(_region_of(world, "ok", index), True)] += 1
    assert _buy(world, "ok", 3, terminal=1, wrong_pin=True) == "55"
    regions[(_region_of(world, "ok", 3), False)] += 1
    assert _buy(world, "blocked", 0) == "62"
    regions[(_region_of(world, "blocked", 0), False)] += 1
    expected_rc.update({"55": 1, "62": 1})

    second = poller.poll_once()
    assert not second.backfilled and second.records == 5
    _reads(second, first.up_to_id, _record_ids(world, first.up_to_id))
    snap = poller.snapshot()
    assert snap["series"]["by_rc"] == {rc: [0] * 59 + [n] for rc, n in expected_rc.items()}
    assert snap["tiles"]["purchases_approved_hour"] == 3
    assert snap["tiles"]["purchases_declined_hour"] == 2
    assert snap["tiles"]["approved_minute"] == 3
    by_region = {(r["level"], r["code"]): r for r in snap["regions"]}
    for level, digits in (("province", 2), ("regency", 4)):
        want: Counter[str] = Counter()
        bad: Counter[str] = Counter()
        for (code, ok), n in regions.items():
            want[code[:digits]] += n
            bad[code[:digits]] += 0 if ok else n
        assert {c: by_region[(level, c)]["requests"] for c in want} == dict(want)
        assert {c: by_region[(level, c)]["declined"] for c in want} == dict(bad)
    # both test terminals sell at the one e-warong of the test world
    [ewarong] = snap["ewarongs"]
    assert (ewarong["mid"], ewarong["requests"], ewarong["declined"]) == \
        ("EWARONG00000001", 5, 2)

    # the next poll reads only the new record
    assert _buy(world, "ok", 4) == "00"
    third = poller.poll_once()
    assert third.records == 1
    _reads(third, second.up_to_id, _record_ids(world, second.up_to_id))
    assert poller.snapshot()["series"]["by_rc"]["00"][-1] == 4
    assert poller.snapshot()["last_record_id"] == third.up_to_id
    _reads(poller.poll_once(), third.up_to_id, [])


def test_a_time_out_is_a_reversal_and_a_rule_alert_appears(engine_world: HostWorld) -> None:
    world = engine_world
    poller = _poller(world)
    first = poller.poll_once()
    faults = Faults()
    edc = _edc(world, 0, faults)
    assert edc.logon().rc == "00"
    faults.drop_responses = 1  # the purchase's answer is lost on the way back
    card = world.card("ok", 0)
    world.insert(edc, card)
    assert edc.purchase([RICE], card.pin).timed_out
    assert edc.send_pending_reversal()
    # an off-hours flag: the e-warong opens at 13:00 and the clock says 10:00 WIB
    with world.db.transaction() as session:
        session.execute(update(Ewarong).values(open_hhmm="1300", close_hhmm="2100"))
    assert _buy(world, "ok", 1) == "00"
    record_presence(world.db, world.terminal().tid, "online", "mqtt", world.clock.now())
    record_presence(world.db, world.terminal("ok", 1).tid, "offline", "mqtt",
                    world.clock.now() - timedelta(minutes=3))

    result = poller.poll_once()
    assert result.records == 3  # the approved purchase, its reversal, the next
    _reads(result, first.up_to_id, _record_ids(world, first.up_to_id))
    assert len(result.alert_ids) == 1
    snap = poller.snapshot()
    assert snap["series"]["reversals"] == {"original_00": [0] * 59 + [1]}
    assert snap["tiles"]["timeouts_hour"] == 1
    assert snap["series"]["failures"]["timeouts"][-1] == 1
    assert snap["backlog"]["reversals_after_approval"] == 1
    assert snap["backlog"]["outstanding"] is None  # no switch metrics: no estimate
    [alert] = snap["rule_alerts"]
    assert (alert["rule"], alert["action"], alert["tid"], alert["mid"]) == \
        ("off_hours", "flag", world.terminal().tid, "EWARONG00000001")
    assert alert["detail"] == {"local_time": "1000", "open": "1300", "close": "2100"}
    terminals = snap["terminals"]
    assert (terminals["online"], terminals["offline"]) == (1, 1)
    listed = {t["tid"]: t["status"] for t in terminals["list"]}
    assert listed == {world.terminal().tid: "online", world.terminal("ok", 1).tid: "offline"}
    assert poller.poll_once().alert_ids == []


def test_the_backfill_reads_the_last_hour_from_the_newest_ids(engine_world: HostWorld
                                                               ) -> None:
    world = engine_world
    assert _buy(world, "ok", 0) == "00"  # two hours ago, by the time the console starts
    world.clock.advance(timedelta(hours=2))
    assert _buy(world, "ok", 1) == "00"
    assert _buy(world, "ok", 2, wrong_pin=True) == "55"
    with world.db.transaction() as session:
        old, recent, declined = session.scalars(
            select(RequestRecord.id).order_by(RequestRecord.id)).all()
    poller = _poller(world)
    poller.batch_rows = 1  # one id range per read
    result = poller.poll_once()
    assert result.backfilled and result.records == 2  # ``recent`` and ``declined``
    assert (result.after_id, result.up_to_id) == (0, declined)  # ``old`` is too old
    snap = poller.snapshot()
    assert snap["tiles"]["approved_hour"] == 1 and snap["tiles"]["declined_hour"] == 1
    _reads(poller.poll_once(), declined, [])
    newest_only = _poller(world)
    newest_only.backfill_ids = 1  # only the newest id, ``max(id)`` back
    result = newest_only.poll_once()
    assert result.records == 1 and (result.after_id, result.up_to_id) == (declined - 1, declined)
    snap = newest_only.snapshot()
    assert snap["tiles"]["approved_hour"] == 0 and snap["tiles"]["declined_hour"] == 1


def test_an_ewarong_sees_only_its_own(engine_world: HostWorld) -> None:
    world = engine_world
    ids = _ewarong_ids(world)
    poller = _poller(world)
    poller.poll_once()
    assert _buy(world, "ok", 0) == "00"
    poller.poll_once()
    mine = poller.snapshot(ids["EWARONG00000001"])
    assert mine["scope"] == {"ewarong_id": ids["EWARONG00000001"], "mid": "EWARONG00000001"}
    assert mine["tiles"]["approved_hour"] == 1 and mine["switch"] is None
    others = [i for mid, i in ids.items() if mid != "EWARONG00000001"]
    for other in others:
        theirs = poller.snapshot(other)
        assert theirs["tiles"]["approved_hour"] == 0
        assert theirs["series"]["by_rc"] == {} and theirs["rule_alerts"] == []
        assert [e["id"] for e in theirs["ewarongs"]] == [other]
