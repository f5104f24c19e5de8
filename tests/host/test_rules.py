"""The programme rules and e-warong stock (issue 14, docs/RULES.md) through a real EDC,
chip card and HostService, on SQLite and PostgreSQL: each rule in each mode, the RC
the EDC shows, that a decline moved neither money nor stock, and the alert row."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from switch.admin.stock import receive_stock
from switch.db.tables import (
    Alert,
    AuditRecord,
    Card,
    Ewarong,
    EwarongZone,
    Kpm,
    ReferencePrice,
    Stock,
)
from switch.host.service import HostService
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from switch.settings import Settings
from terminal_sim.edc import Edc
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)
MID = "EWARONG00000001"  # both terminals of the test world sell here


def _rules(world: HostWorld, **settings: Any) -> None:
    """The world's host with these rule settings (same database and clock)."""
    url = world.db.engine.url.render_as_string(hide_password=False)
    world.host = HostService(world.db, Settings(database_url=url, **settings), world.clock)


def _ewarong_id(world: HostWorld, mid: str = MID) -> int:
    with world.db.transaction() as session:
        found = session.scalar(select(Ewarong.id).where(Ewarong.mid == mid))
    assert found is not None
    return int(found)


def _set_ewarong(world: HostWorld, **values: Any) -> None:
    with world.db.transaction() as session:
        session.execute(update(Ewarong).where(Ewarong.mid == MID).values(**values))


def _alerts(world: HostWorld) -> list[dict[str, Any]]:
    with world.db.transaction() as session:
        rows = session.execute(select(Alert.rule, Alert.action, Alert.tid, Alert.ewarong_id,
                                      Alert.record_id, Alert.card_ids, Alert.detail)
                               .order_by(Alert.id)).all()
    return [{"rule": r, "action": a, "tid": t, "ewarong_id": e, "record_id": rec,
             "card_ids": json.loads(c), "detail": json.loads(d)}
            for r, a, t, e, rec, c, d in rows]


def _shelf(world: HostWorld) -> dict[tuple[int, str], int]:
    with world.db.transaction() as session:
        return {(int(e), i): int(q) for e, i, q in session.execute(
            select(Stock.ewarong_id, Stock.item_code, Stock.quantity))}


def _wallets(world: HostWorld) -> list[int]:
    return [world.balance_sen(card) for card in world.demo.cards_labelled("ok")]


def _card_id(world: HostWorld, index: int) -> int:
    from switch.security.keys import pan_token

    token = pan_token(world.keys.pan_token_key, world.card("ok", index).pan)
    with world.db.transaction() as session:
        found = session.scalar(select(Card.id).where(Card.pan_token == token))
    assert found is not None
    return int(found)


def _buy(world: HostWorld, edc: Edc, index: int, basket: list[BasketLine] | None = None,
         ) -> tuple[str | None, str]:
    card = world.card("ok", index)
    world.insert(edc, card)
    result = edc.purchase(basket or [RICE], card.pin)
    return result.rc, result.display


def _declined_without_moving(world: HostWorld, edc: Edc, index: int, rc: str, display: str,
                             basket: list[BasketLine] | None = None) -> None:
    wallets, shelf = _wallets(world), _shelf(world)
    assert _buy(world, edc, index, basket) == (rc, display)
    assert _wallets(world) == wallets, "a decline moved money"
    assert _shelf(world) == shelf, "a decline moved stock"


# -- dormancy (FAILURES F5) ---------------------------------------------------------


def _age_cards(world: HostWorld, days: int) -> None:
    """Every card last active ``days`` ago."""
    then = world.clock.now().astimezone(UTC) - timedelta(days=days)
    with world.db.transaction() as session:
        session.execute(update(Card).values(issued_at=then, last_used_at=then))


def test_a_card_unused_for_the_dormancy_days_is_62_and_becomes_dormant(
        engine_world: HostWorld) -> None:
    world = engine_world
    _age_cards(world, 90)
    edc = world.edc()
    edc.logon()
    _declined_without_moving(world, edc, 0, codes.RESTRICTED_CARD, "KARTU DIBLOKIR")
    with world.db.transaction() as session:
        statuses = dict(session.execute(select(Card.id, Card.status)).all())
    assert statuses[_card_id(world, 0)] == "dormant"
    assert statuses[_card_id(world, 1)] == "active"  # not presented: not changed
    with world.db.transaction() as session:
        actions = session.scalars(select(AuditRecord.action)).all()
    assert "card.dormant" in actions
    # reactivated (as `bpnt-switch dormancy reactivate` does): usable again
    with world.db.transaction() as session:
        session.execute(update(Card).where(Card.id == _card_id(world, 0)).values(
            status="active", reactivated_at=world.clock.now().astimezone(UTC)))
    assert _buy(world, edc, 0)[0] == codes.APPROVED


def test_the_dormancy_days_are_a_setting(engine_world: HostWorld) -> None:
    world = engine_world
    _age_cards(world, 120)
    _rules(world, dormancy_days=200)
    edc = world.edc()
    edc.logon()
    assert _buy(world, edc, 0)[0] == codes.APPROVED
    _age_cards(world, 89)
    _rules(world)  # 90 days
    assert _buy(world, edc, 1)[0] == codes.APPROVED


# -- velocity and opening hours (F9) ------------------------------------------------


@pytest.mark.parametrize("mode", ["decline", "flag"])
def test_more_distinct_cards_than_the_limit_at_one_terminal(engine_world: HostWorld,
                                                            mode: str) -> None:
    world = engine_world
    _rules(world, velocity=mode, velocity_max_cards=2, velocity_window_minutes=10)
    edc = world.edc()
    edc.logon()
    assert _buy(world, edc, 0)[0] == codes.APPROVED
    assert _buy(world, edc, 1)[0] == codes.APPROVED
    assert _alerts(world) == []
    if mode == "decline":
        _declined_without_moving(world, edc, 2, codes.LIMIT_EXCEEDED,
                                 "BATAS TRANSAKSI TERLAMPAUI")
    else:
        assert _buy(world, edc, 2)[0] == codes.APPROVED
    [alert] = _alerts(world)
    assert (alert["rule"], alert["action"], alert["tid"]) == ("velocity", mode, edc.config.tid)
    assert alert["ewarong_id"] == _ewarong_id(world)
    assert alert["card_ids"] == sorted(_card_id(world, i) for i in range(3))
    assert alert["detail"] == {"cards": 3, "window_minutes": 10, "max_cards": 2}
    assert _buy(world, edc, 0)[0] == codes.APPROVED  # a card of the window is not new
    world.clock.advance(timedelta(minutes=11))
    assert _buy(world, edc, 3)[0] == codes.APPROVED  # the window moved on
    assert len(_alerts(world)) == 1


def test_a_card_seen_earlier_in_the_window_is_not_new_however_many_came_since(
        engine_world: HostWorld) -> None:
    """The rule counts distinct cards: a card the terminal saw earlier in the window
    adds none, even when more than the limit's worth of cards came after it (before
    2026-12-03 only the limit + 1 most recent cards counted as seen, so a terminal
    over the limit flagged every card again on each swipe)."""
    world = engine_world
    _rules(world, velocity="flag", velocity_max_cards=2, velocity_window_minutes=10)
    edc = world.edc()
    edc.logon()
    for index in range(5):  # cards 2, 3 and 4 are hits; 2, 3, 4 are the newest three
        world.clock.advance(timedelta(seconds=1))  # an order of last use without ties
        assert _buy(world, edc, index)[0] == codes.APPROVED
    assert len(_alerts(world)) == 3
    assert _buy(world, edc, 0)[0] == codes.APPROVED  # seen first, 4 cards ago
    assert _buy(world, edc, 1)[0] == codes.APPROVED
    assert len(_alerts(world)) == 3
    world.clock.advance(timedelta(minutes=11))
    for index in range(3):  # the window moved on: 0, 1 are in it again, 2 is new
        assert _buy(world, edc, index)[0] == codes.APPROVED
    assert len(_alerts(world)) == 4


def test_a_card_refused_for_velocity_is_refused_again_on_retry(engine_world: HostWorld) -> None:
    """A card the rule declined does not join the terminal's window: swiping it again
    (the agent's obvious next move, FAILURES F9) is declined again, with its own alert,
    and no money or stock moves either time."""
    world = engine_world
    _rules(world, velocity="decline", velocity_max_cards=2, velocity_window_minutes=10)
    edc = world.edc()
    edc.logon()
    assert _buy(world, edc, 0)[0] == codes.APPROVED
    assert _buy(world, edc, 1)[0] == codes.APPROVED
    for _ in range(2):
        _declined_without_moving(world, edc, 2, codes.LIMIT_EXCEEDED,
                                 "BATAS TRANSAKSI TERLAMPAUI")
    assert [(a["rule"], a["action"]) for a in _alerts(world)] == [("velocity", "decline")] * 2
    assert _buy(world, edc, 1)[0] == codes.APPROVED  # the two admitted cards still buy


@pytest.mark.parametrize("mode", ["decline", "flag", "off"])
def test_a_card_transaction_outside_the_opening_hours(engine_world: HostWorld,
                                                     mode: str) -> None:
    world = engine_world  # the clock says 10:00 WIB
    _set_ewarong(world, open_hhmm="1300", close_hhmm="2100", utc_offset_minutes=420)
    _rules(world, off_hours=mode)
    edc = world.edc()
    edc.logon()
    if mode == "decline":
        _declined_without_moving(world, edc, 0, codes.LIMIT_EXCEEDED,
                                 "BATAS TRANSAKSI TERLAMPAUI")
    else:
        assert _buy(world, edc, 0)[0] == codes.APPROVED
    alerts = _alerts(world)
    if mode == "off":
        assert alerts == []
    else:
        [alert] = alerts
        assert (alert["rule"], alert["action"]) == ("off_hours", mode)
        assert alert["detail"] == {"local_time": "1000", "open": "1300", "close": "2100"}
        assert alert["card_ids"] == [_card_id(world, 0)]
    _set_ewarong(world, utc_offset_minutes=540)  # WIT: 12:00 there, still closed
    world.clock.advance(timedelta(hours=2))  # 12:00 WIB = 14:00 WIT: open
    assert _buy(world, edc, 1)[0] == codes.APPROVED


# -- zoning (F11) ------------------------------------------------------------------


def _kpm_zone(world: HostWorld, index: int) -> str:
    with world.db.transaction() as session:
        zone = session.scalar(select(Kpm.zone).join(Card, Card.kpm_id == Kpm.id)
                              .where(Card.id == _card_id(world, index)))
    assert zone is not None
    return str(zone)


@pytest.mark.parametrize("mode", ["strict", "off"])
def test_a_kpm_outside_the_ewarong_zones(engine_world: HostWorld, mode: str) -> None:
    world = engine_world
    _rules(world, zoning=mode)
    with world.db.transaction() as session:
        session.execute(insert(EwarongZone).values(ewarong_id=_ewarong_id(world),
                                                   zone_prefix="99"))
    edc = world.edc()
    edc.logon()
    if mode == "strict":
        _declined_without_moving(world, edc, 0, codes.NOT_PERMITTED_TERMINAL,
                                 "TERMINAL TIDAK TERDAFTAR")
    else:
        assert _buy(world, edc, 0)[0] == codes.APPROVED
    [alert] = _alerts(world)
    assert (alert["rule"], alert["action"]) == ("zoning", "decline" if mode == "strict"
                                                else "flag")
    assert alert["detail"] == {"zone": _kpm_zone(world, 0), "zones": ["99"]}
    # the KPM's province served: no hit
    with world.db.transaction() as session:
        session.execute(insert(EwarongZone).values(ewarong_id=_ewarong_id(world),
                                                   zone_prefix=_kpm_zone(world, 1)[:2]))
    assert _buy(world, edc, 1)[0] == codes.APPROVED
    assert len(_alerts(world)) == 1
    if not _kpm_zone(world, 0).startswith(_kpm_zone(world, 1)[:2]):
        world.insert(edc, world.card("ok", 0))  # still outside: zoning is a purchase rule
        assert edc.balance_inquiry(world.card("ok", 0).pin).rc == codes.APPROVED


# -- reference prices (F11) --------------------------------------------------------


@pytest.mark.parametrize("cap", ["on", "off"])
def test_a_unit_price_above_the_reference_by_more_than_the_cap(engine_world: HostWorld,
                                                              cap: str) -> None:
    world = engine_world
    _rules(world, price_cap=cap, price_cap_percent=10)
    edc = world.edc()
    edc.logon()
    at_cap = BasketLine("BRS005", 1, 7_150_000)  # reference 6,500,000 + 10 %: allowed
    over = BasketLine("BRS005", 1, 7_150_001)
    assert _buy(world, edc, 0, [at_cap])[0] == codes.APPROVED
    assert _alerts(world) == []
    if cap == "on":
        _declined_without_moving(world, edc, 1, codes.INVALID_AMOUNT, "NOMINAL TIDAK SESUAI",
                                 [over])
    else:
        assert _buy(world, edc, 1, [over])[0] == codes.APPROVED
    [alert] = _alerts(world)
    assert (alert["rule"], alert["action"]) == ("over_price",
                                                "decline" if cap == "on" else "flag")
    assert alert["detail"] == {"item": "BRS005", "unit_price_sen": 7_150_001,
                               "reference_sen": 6_500_000, "percent_over": 10}
    # a regional reference beats the national one
    _set_ewarong(world, region="3273")
    with world.db.transaction() as session:
        session.execute(insert(ReferencePrice).values(item_code="BRS005", region="32",
                                                      unit_price_sen=7_000_000,
                                                      updated_at=world.clock.now()))
    assert _buy(world, edc, 2, [BasketLine("BRS005", 1, 7_700_000)])[0] == codes.APPROVED
    assert len(_alerts(world)) == 1


# -- stock (F15) -------------------------------------------------------------------


def _hold(world: HostWorld, units: int, item: str = "BRS005") -> None:
    """The e-warong's shelf of ``item`` set to ``units`` (an audited adjustment)."""
    key = (_ewarong_id(world), item)
    with world.db.transaction() as session:
        receive_stock(session, world.keys, mid=MID, item_code=item,
                      quantity=units - _shelf(world)[key], actor="test", kind="adjust",
                      clock=world.clock)


def test_out_of_stock_is_st_before_any_money_moves(engine_world: HostWorld) -> None:
    world = engine_world
    _rules(world, low_stock_units=2)
    key = (_ewarong_id(world), "BRS005")
    _hold(world, 3)
    edc = world.edc()
    edc.logon()
    # two lines of one item are summed: 2 + 2 > 3
    _declined_without_moving(world, edc, 0, codes.OUT_OF_STOCK, "STOK BARANG HABIS",
                             [BasketLine("BRS005", 2, 6_500_000)] * 2)
    assert _buy(world, edc, 0, [BasketLine("BRS005", 2, 6_500_000)])[0] == codes.APPROVED
    assert _shelf(world)[key] == 1
    [low] = _alerts(world)  # 3 → 1 crossed the threshold of 2
    assert (low["rule"], low["action"], low["detail"]) == (
        "low_stock", "flag", {"item": "BRS005", "quantity": 1, "threshold": 2})
    assert _buy(world, edc, 1)[0] == codes.APPROVED  # 1 → 0: below already, no new alert
    assert len(_alerts(world)) == 1
    _declined_without_moving(world, edc, 2, codes.OUT_OF_STOCK, "STOK BARANG HABIS")
    with world.db.transaction() as session:
        receive_stock(session, world.keys, mid=MID, item_code="BRS005", quantity=5,
                      actor="test", reference="DO-1", clock=world.clock)
    assert _buy(world, edc, 2)[0] == codes.APPROVED
    assert _shelf(world)[key] == 4


def test_a_void_puts_the_units_back_and_its_reversal_takes_them_again(
        engine_world: HostWorld) -> None:
    world = engine_world
    key = (_ewarong_id(world), "BRS005")
    _hold(world, 2)
    edc = world.edc()
    edc.logon()
    card = world.card("ok", 0)
    world.insert(edc, card)
    bought = edc.purchase([BasketLine("BRS005", 2, 6_500_000)], card.pin)
    assert bought.approved and _shelf(world)[key] == 0
    voided = edc.void(bought.invoice, card.pin)
    assert voided.approved and _shelf(world)[key] == 2
    assert edc.resend(_reversal(edc.last_request)).opt_text(39) == codes.APPROVED
    assert _shelf(world)[key] == 0  # the void undone: the goods are sold again
    assert world.balance_sen(card) == 20_000_000 - 13_000_000


def test_a_reversed_void_stands_when_the_shelf_no_longer_holds_the_goods(
        engine_world: HostWorld) -> None:
    world = engine_world
    key = (_ewarong_id(world), "BRS005")
    _hold(world, 1)
    edc = world.edc()
    edc.logon()
    card = world.card("ok", 0)
    world.insert(edc, card)
    bought = edc.purchase([RICE], card.pin)
    voided = edc.void(bought.invoice, card.pin)
    assert voided.approved and _shelf(world)[key] == 1
    void_request = edc.last_request
    assert _buy(world, edc, 1)[0] == codes.APPROVED  # the unit is sold to another KPM
    wallet = world.balance_sen(card)
    assert edc.resend(_reversal(void_request)).opt_text(39) == codes.APPROVED
    assert _shelf(world)[key] == 0 and world.balance_sen(card) == wallet  # the void stands


def test_a_reversed_purchase_puts_the_units_back(engine_world: HostWorld) -> None:
    world = engine_world
    key = (_ewarong_id(world), "BRS005")
    before = _shelf(world)[key]
    edc = world.edc()
    edc.logon()
    assert _buy(world, edc, 0)[0] == codes.APPROVED
    assert _shelf(world)[key] == before - 1
    assert edc.resend(_reversal(edc.last_request)).opt_text(39) == codes.APPROVED
    assert _shelf(world)[key] == before


def test_with_inventory_off_no_stock_is_checked_or_moved(engine_world: HostWorld) -> None:
    world = engine_world
    _rules(world, inventory="off")
    _hold(world, 0)
    shelf = _shelf(world)
    edc = world.edc()
    edc.logon()
    assert _buy(world, edc, 0)[0] == codes.APPROVED
    assert _shelf(world) == shelf


def test_one_batch_of_many_terminals_shares_the_shelf_exactly(engine_world: HostWorld) -> None:
    """Group commit: purchases of one batch at one e-warong see each other's units."""
    world = engine_world
    key = (_ewarong_id(world), "BRS005")
    _hold(world, 5)
    units = []
    edcs = [world.edc(world.terminal("ok", i)) for i in range(2)]
    for edc in edcs:
        edc.logon()
    for i in range(8):
        edc, card = edcs[i % 2], world.card("ok", i)
        world.insert(edc, card)
        units.append(edc.prepare_purchase([RICE], card.pin))
    answers = world.host.process_batch(units)
    rcs = [_rc_of(answer) for answer in answers]
    assert sorted(rcs) == ["00"] * 5 + ["ST"] * 3
    assert _shelf(world)[key] == 0


def _reversal(request: Message | None) -> Message:
    """The 0400 of ``request`` as the EDC sends it (HOST_SPEC §4)."""
    assert request is not None
    return Message("0400", {k: v for k, v in request.fields.items() if k not in (52, 64)})


def _rc_of(answer: bytes | None) -> str:
    from switch.protocol.unit import decode_unit

    assert answer is not None
    return decode_unit(answer).message.text(39)


def test_no_zones_means_every_zone(engine_world: HostWorld) -> None:
    world = engine_world
    _rules(world, zoning="strict")
    with world.db.transaction() as session:
        session.execute(delete(EwarongZone))
    edc = world.edc()
    edc.logon()
    assert _buy(world, edc, 0)[0] == codes.APPROVED
    assert _alerts(world) == []
