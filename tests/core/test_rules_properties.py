"""The programme rules of docs/RULES.md (issue 14) as properties of the pure core.

Through the core: a real EDC and chip card (the state machine's, logged on once) make
balance inquiries and purchases; each request is decided over the same facts under
other policies and rule facts (opening hours against the clock, the velocity window,
zones against the KPM's zone, reference prices against the basket's unit prices).  A
rule that only flags never changes an answer, its postings or its stock; a rule that
declines answers 65, 58 or 13 in the order of the checks and moves nothing; the alerts
are exactly the model's.

Then the pure functions of :mod:`switch.core.rules` and :mod:`switch.core.stock` at
their boundaries: the velocity window, overnight opening hours, the longest region
prefix, the price cap's integer arithmetic, dormancy, and a basket's units per item.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from switch.clock import FixedClock
from switch.core.decide import decide
from switch.core.effects import AlertRaise, AuditEntry, Decision, Effect, StockMove
from switch.core.facts import (
    BatchFacts,
    Card,
    CardFacts,
    EwarongRules,
    ItemFacts,
    StockLevel,
    Terminal,
    TerminalFacts,
)
from switch.core.policy import Policy
from switch.core.request import Request
from switch.core.rules import (
    check_card,
    off_hours_hit,
    price_hits,
    reference_price,
    velocity_hit,
)
from switch.core.stock import short_items, units_needed
from switch.core.verify import Checks
from switch.ledger.money import Posting
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine, encode_basket
from switch.protocol.message import decode
from switch.security.pin import pin_offset
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink
from tests.core.test_core_stateful import KEYS, MID, PAYABLE, TID, TMK, PureHost, _cards

EWARONG, WALLET, CARD_ID = 7, 101, 1
ITEMS = {"TMP001": ItemFacts("TMP001", "protein", True),
         "BRS005": ItemFacts("BRS005", "rice", True)}
REGION = "327301"
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Probe(PureHost):
    """The state machine's host, but once ``frozen`` it answers over its facts without
    applying the decisions, and keeps the last request: the facts stay as the logon
    left them, and each request can be decided again over other facts."""

    frozen = False
    request: Request | None = None

    def _decide(self, request: Request) -> Decision:
        if not self.frozen:
            return super()._decide(request)
        self.request = request
        return decide(request, self.facts)


@dataclass
class World:
    host: Probe
    edc: Edc
    pan: str
    pin: str


@functools.cache
def _world() -> World:
    """One logged-on terminal of e-warong 7 and the first family's card (card 1,
    wallet 101)."""
    model = _cards()[0]
    card = Card(CARD_ID, model.pan[:6] + "******" + model.pan[-4:], "00", "2812",
                pin_offset(KEYS.pvk, model.pin, model.pan), True, WALLET, "active", 0, None,
                None)
    facts = BatchFacts(
        now=FixedClock().now(), checks=Checks(KEYS), max_pin_tries=3,
        terminals={TID: Terminal(TerminalFacts(TID, True, MID, True, None, None), PAYABLE,
                                 TMK, EWARONG)},
        cards={model.pan: card}, balances={WALLET: 10**12, PAYABLE: 0}, catalogue=ITEMS,
        record_ids=list(range(1, 100)), transfer_ids=list(range(1, 100)))
    host = Probe(facts)
    reader = EmulatedReader()
    reader.swap(model.kks)
    edc = Edc(EdcConfig(TID, MID, TMK), DirectLink(host.exchange), reader, clock=FixedClock())
    assert edc.logon().approved
    host.frozen = True
    return World(host, edc, model.pan, model.pin)


# -- the draws ------------------------------------------------------------------------

HHMM = st.builds(lambda h, m: f"{h:02d}{m:02d}", st.integers(0, 23), st.sampled_from([0, 30, 59]))
NOW = st.datetimes(datetime(2026, 1, 1), datetime(2028, 12, 1), timezones=st.just(UTC))
ZONE = st.sampled_from(["327301", "327302", "320101", "350101", ""])
ZONES = st.lists(st.sampled_from(["32", "3273", "327301", "35", "3201"]), max_size=3,
                 unique=True).map(tuple)
LINE = st.builds(BasketLine, st.sampled_from(sorted(ITEMS)), st.integers(1, 5),
                 st.integers(1, 20_000))
PRICES = st.dictionaries(
    st.tuples(st.sampled_from(sorted(ITEMS)),
              st.sampled_from(["", "32", "3273", "327301", "35", "3501"])),
    st.integers(1, 20_000), max_size=5)


@dataclass(frozen=True)
class Scene:
    """A request and the rule facts it meets."""

    purchase: bool
    right_pin: bool
    basket: tuple[BasketLine, ...]
    now: datetime
    hours: tuple[str, str] | None
    utc_offset: int
    #: Other cards' (id, seconds before now) in the terminal's window, and whether this
    #: card is in it (how long ago).
    window: tuple[tuple[int, int], ...]
    own_age_s: int | None
    max_cards: int
    window_minutes: int
    zone: str
    zones: tuple[str, ...]
    region: str
    prices: dict[tuple[str, str], int]
    percent: int
    stock: dict[str, int]
    balance_sen: int


@st.composite
def scenes(draw: st.DrawFn) -> Scene:
    minutes = draw(st.integers(1, 15))
    ages = st.one_of(st.integers(0, 2 * minutes * 60), st.sampled_from(
        [minutes * 60, minutes * 60 + 1]))  # the window's edge: in, and just out
    return Scene(
        purchase=draw(st.booleans()),
        right_pin=draw(st.sampled_from([True] * 7 + [False])),
        basket=tuple(draw(st.lists(LINE, min_size=1, max_size=3))),
        now=draw(NOW),
        hours=draw(st.one_of(st.none(), st.tuples(HHMM, HHMM))),
        utc_offset=draw(st.sampled_from([420, 480, 540])),
        window=tuple(draw(st.lists(st.tuples(st.integers(2, 40), ages), max_size=8))),
        own_age_s=draw(st.one_of(st.none(), ages)),
        max_cards=draw(st.integers(1, 6)),
        window_minutes=minutes,
        zone=draw(ZONE), zones=draw(ZONES),
        region=draw(st.sampled_from([REGION, "3273", "350101", ""])),
        prices=draw(PRICES), percent=draw(st.integers(0, 30)),
        stock={item: draw(st.integers(0, 12)) for item in sorted(ITEMS)},
        balance_sen=draw(st.sampled_from([10**12, 10**12, 50_000, 0])))


def _facts(scene: Scene, policy: Policy, *, rules: bool = True) -> BatchFacts:
    """The world's facts with the scene's; ``rules=False``: no hours, zones or prices
    (nothing for those rules to hit)."""
    base = _world().host.facts
    terminal = base.terminals[TID]
    window = {card: scene.now - timedelta(seconds=age) for card, age in scene.window}
    if scene.own_age_s is not None:
        window[CARD_ID] = scene.now - timedelta(seconds=scene.own_age_s)
    hours = scene.hours if rules and scene.hours else (None, None)
    return replace(
        base, now=scene.now, policy=policy,
        terminals={TID: replace(terminal, rules=EwarongRules(
            scene.region if rules else "", hours[0], hours[1], scene.utc_offset,
            scene.zones if rules else ()))},
        # used a moment before the scene's clock: never dormant here, whatever earlier
        # examples left in the shared world's facts
        cards={pan: replace(card, zone=scene.zone, last_used_at=scene.now - timedelta(days=1),
                            issued_at=None, reactivated_at=None)
               for pan, card in base.cards.items()},
        balances={**base.balances, WALLET: scene.balance_sen},
        stock={(EWARONG, item): StockLevel(units) for item, units in scene.stock.items()},
        reference_prices=scene.prices if rules else {},
        recent_cards={TID: window})


def _request(scene: Scene) -> Request:
    """The EDC's request for the scene (answered over the world's own facts)."""
    world = _world()
    pin = world.pin if scene.right_pin else "000000"
    if scene.purchase:
        world.edc.purchase(list(scene.basket), pin)
    else:
        world.edc.balance_inquiry(pin)
    assert world.host.request is not None
    return world.host.request


def _policy(scene: Scene, velocity: str, off_hours: str, zoning: str,
            price_cap: bool) -> Policy:
    return Policy(velocity=velocity, velocity_max_cards=scene.max_cards,
                  velocity_window_minutes=scene.window_minutes, off_hours=off_hours,
                  zoning=zoning, price_cap=price_cap, price_cap_percent=scene.percent)


# -- the model ------------------------------------------------------------------------

def _off_hours(scene: Scene) -> bool:
    if scene.hours is None:
        return False
    local = scene.now + timedelta(minutes=scene.utc_offset)
    at = local.hour * 60 + local.minute
    opened, closed = (int(t[:2]) * 60 + int(t[2:]) for t in scene.hours)
    inside = opened <= at < closed if opened <= closed else at >= opened or at < closed
    return not inside


def _velocity(scene: Scene) -> bool:
    limit = scene.window_minutes * 60
    if scene.own_age_s is not None and scene.own_age_s <= limit:
        return False
    last_age = dict(scene.window)  # a card listed twice: its last entry (as the facts)
    others = {card for card, age in last_age.items() if age <= limit and card != CARD_ID}
    return len(others) + 1 > scene.max_cards


def _zoning(scene: Scene) -> bool:
    return bool(scene.zones) and not any(scene.zone.startswith(z) for z in scene.zones)


def _over_price(scene: Scene) -> list[str]:
    """The items of the lines priced above the cap (in basket order)."""
    out = []
    for line in scene.basket:
        prefixes = [scene.region[:n] for n in (6, 4, 2) if len(scene.region) >= n] + [""]
        refs = [scene.prices[(line.item_code, p)] for p in prefixes
                if (line.item_code, p) in scene.prices]
        if refs and line.unit_price_sen * 100 > refs[0] * (100 + scene.percent):
            out.append(line.item_code)
    return out


def _expected(scene: Scene, velocity: str, off_hours: str, zoning: str,
              price_cap: bool) -> tuple[str | None, list[tuple[str, str]]]:
    """The RC a declining rule answers (``None``: none declined) and the alerts the
    rules raise, ``(rule, action)``, in the order of the checks (docs/RULES.md)."""
    if not scene.right_pin:
        return None, []
    alerts: list[tuple[str, str]] = []
    for rule, mode, hit, rc in (("off_hours", off_hours, _off_hours(scene), "65"),
                                ("velocity", velocity, _velocity(scene), "65")):
        if hit and mode != "off":
            alerts.append((rule, mode))
            if mode == "decline":
                return rc, alerts
    if not scene.purchase:
        return None, alerts
    if _zoning(scene):
        alerts.append(("zoning", "decline" if zoning == "strict" else "flag"))
        if zoning == "strict":
            return codes.NOT_PERMITTED_TERMINAL, alerts
    over = _over_price(scene)
    alerts += [("over_price", "decline" if price_cap else "flag")] * len(over)
    return (codes.INVALID_AMOUNT if over and price_cap else None), alerts


def _rc(decision: Decision) -> str:
    return decode(decision.response or b"").text(39)


def _rules_alerts(decision: Decision) -> list[tuple[str, str]]:
    return [(e.rule, e.action) for e in decision.effects
            if isinstance(e, AlertRaise) and e.rule != "low_stock"]


def _without_rule_alerts(decision: Decision) -> list[Effect | tuple[Any, ...]]:
    """The effects but the rules' alerts, and the audit entry without its ``flags``."""
    out: list[Effect | tuple[Any, ...]] = []
    for e in decision.effects:
        if isinstance(e, AlertRaise) and e.rule != "low_stock":
            continue
        if isinstance(e, AuditEntry):
            out.append((e.at, e.actor, e.action, e.subject,
                        {k: v for k, v in e.detail.items() if k != "flags"}))
        else:
            out.append(e)
    return out


# -- through the core -----------------------------------------------------------------

@SETTINGS
@given(scene=scenes())
def test_a_flagging_rule_never_changes_an_answer(scene: Scene) -> None:
    """Velocity and off-hours at ``flag``, zoning ``off`` and no price cap, over the
    scene's hours, window, zones and prices, answer exactly as with velocity and
    off-hours ``off`` and nothing for zoning or prices to check: the same response,
    postings, stock moves and low-stock alerts; only the rules' alerts (and the audit
    entry's list of them) differ, and they are the model's."""
    request = _request(scene)
    flagged = decide(request, _facts(scene, _policy(scene, "flag", "flag", "off", False)))
    quiet = decide(request, _facts(scene, _policy(scene, "off", "off", "off", False),
                                   rules=False))
    assert flagged.response == quiet.response
    assert _without_rule_alerts(flagged) == _without_rule_alerts(quiet)
    assert _rules_alerts(quiet) == []
    assert _rules_alerts(flagged) == _expected(scene, "flag", "flag", "off", False)[1]
    event(f"rc {_rc(flagged)}")
    for rule in sorted({rule for rule, _ in _rules_alerts(flagged)}):
        event(f"flagged {rule}")
    audit = [e for e in flagged.effects if isinstance(e, AuditEntry)]
    flags = [rule for rule, _ in _rules_alerts(flagged)]
    assert audit[-1].detail.get("flags", []) == flags


@SETTINGS
@given(scene=scenes(), velocity=st.sampled_from(["off", "flag", "decline"]),
       off_hours=st.sampled_from(["off", "flag", "decline"]),
       zoning=st.sampled_from(["off", "strict"]), price_cap=st.booleans())
def test_a_declining_rule_answers_its_code_and_moves_nothing(
        scene: Scene, velocity: str, off_hours: str, zoning: str, price_cap: bool) -> None:
    """In any mix of modes, the first declining rule that hits answers its code (off
    hours and velocity 65, zoning 58, over-price 13) with no posting and no stock moved,
    its alert ``decline`` and the earlier ones' ``flag``; if none declines, the answer is
    the one with no rules at all."""
    request = _request(scene)
    decision = decide(request, _facts(scene, _policy(scene, velocity, off_hours, zoning,
                                                     price_cap)))
    rc, alerts = _expected(scene, velocity, off_hours, zoning, price_cap)
    assert _rules_alerts(decision) == alerts
    event(f"rc {_rc(decision)}")
    if rc is not None:
        assert _rc(decision) == rc
        assert not any(isinstance(e, Posting | StockMove) for e in decision.effects)
        assert not any(isinstance(e, AlertRaise) and e.rule == "low_stock"
                       for e in decision.effects)
    else:
        quiet = decide(request, _facts(scene, _policy(scene, "off", "off", "off", False),
                                       rules=False))
        assert decision.response == quiet.response


# -- the pure functions ---------------------------------------------------------------

NOON = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 12:00 WIB


@given(others=st.sets(st.integers(2, 200), max_size=30), max_cards=st.integers(1, 30),
       minutes=st.integers(1, 60))
def test_a_card_already_in_the_window_is_never_a_velocity_hit(
        others: set[int], max_cards: int, minutes: int) -> None:
    window = dict.fromkeys(others, NOON - timedelta(minutes=minutes))  # on the edge: in
    window[1] = NOON
    assert velocity_hit(window, 1, NOON, max_cards, minutes) is None


@given(max_cards=st.integers(1, 30), minutes=st.integers(1, 60), old=st.integers(0, 5))
def test_velocity_hits_at_exactly_max_cards_plus_one(max_cards: int, minutes: int,
                                                     old: int) -> None:
    """``max_cards`` others in the window (and ``old`` just out of it): the new card
    makes ``max_cards + 1`` and is a hit naming them all; one other fewer is not."""
    window = {100 + n: NOON - timedelta(minutes=minutes) for n in range(max_cards)}
    window |= {500 + n: NOON - timedelta(minutes=minutes, seconds=1) for n in range(old)}
    hit = velocity_hit(window, 1, NOON, max_cards, minutes)
    assert hit is not None and hit.rc == codes.LIMIT_EXCEEDED
    assert hit.card_ids == tuple(sorted({1, *range(100, 100 + max_cards)}))
    assert hit.detail == {"cards": max_cards + 1, "window_minutes": minutes,
                          "max_cards": max_cards}
    del window[100]
    assert velocity_hit(window, 1, NOON, max_cards, minutes) is None


@given(span=st.integers(1, 1439).flatmap(
           lambda opened: st.tuples(st.just(opened), st.integers(0, opened - 1))),
       at=st.integers(0, 1439), offset=st.sampled_from([420, 480, 540]))
def test_off_hours_over_midnight(span: tuple[int, int], at: int, offset: int) -> None:
    """Hours whose close is before the open span midnight: open from the open to the
    end of the day and from midnight to the close (exclusive)."""
    opened, closed = span
    rules = EwarongRules(open_hhmm=f"{opened // 60:02d}{opened % 60:02d}",
                         close_hhmm=f"{closed // 60:02d}{closed % 60:02d}",
                         utc_offset_minutes=offset)
    now = datetime(2026, 11, 23, tzinfo=UTC) + timedelta(minutes=at - offset)
    assert (off_hours_hit(rules, now) is None) == (at >= opened or at < closed)


def test_off_hours_edges() -> None:
    """``[open, close)``: the open minute is in, the close minute out; no hours: open."""
    overnight = EwarongRules(open_hhmm="2200", close_hhmm="0600", utc_offset_minutes=420)
    day = EwarongRules(open_hhmm="0700", close_hhmm="1700", utc_offset_minutes=420)
    at = {t: datetime(2026, 11, 23, tzinfo=UTC) + timedelta(hours=h, minutes=m - 420)
          for t, (h, m) in {"2200": (22, 0), "0559": (5, 59), "0600": (6, 0),
                            "2159": (21, 59), "0700": (7, 0), "1700": (17, 0),
                            "0000": (0, 0)}.items()}
    assert [off_hours_hit(overnight, at[t]) is None for t in
            ("2200", "0000", "0559", "0600", "2159")] == [True, True, True, False, False]
    assert [off_hours_hit(day, at[t]) is None for t in ("0700", "1700")] == [True, False]
    assert off_hours_hit(EwarongRules(), at["0000"]) is None


@given(prices=st.dictionaries(st.sampled_from(["", "32", "3273", "327301", "35", "327"]),
                              st.integers(1, 10**9)),
       region=st.sampled_from(["327301", "3273", "32", "3", ""]))
def test_the_reference_price_is_the_longest_prefix(prices: dict[str, int],
                                                   region: str) -> None:
    """6, 4, 2 digits of the region, then national; other prefixes (3 digits, another
    region's) never count."""
    keyed = {("BRS005", p): v for p, v in prices.items()}
    keyed[("TLR010", "327301")] = 1  # another item's price is not this one's
    wanted = [p for p in (region[:6] if len(region) >= 6 else None,
                          region[:4] if len(region) >= 4 else None,
                          region[:2] if len(region) >= 2 else None, "") if p is not None]
    found = next((prices[p] for p in wanted if p in prices), None)
    assert reference_price("BRS005", region, keyed) == found


def test_a_regional_price_beats_the_national_one() -> None:
    prices = {("BRS005", ""): 10_000, ("BRS005", "32"): 12_000}
    line = [BasketLine("BRS005", 1, 13_000)]
    assert reference_price("BRS005", "327301", prices) == 12_000
    assert price_hits(line, "327301", prices, 10) == []  # 13 000 ≤ 13 200
    assert [h.detail["reference_sen"] for h in price_hits(line, "350101", prices, 10)] == \
        [10_000]  # another province: the national price, 30% over


@given(reference=st.integers(1, 10**9), percent=st.integers(0, 100))
def test_the_price_cap_at_its_exact_boundary(reference: int, percent: int) -> None:
    """The highest unit price with ``unit × 100 ≤ reference × (100 + percent)`` is no
    hit; one sen more is; and where the cap is a whole number of sen, that price itself
    (``unit × 100 == reference × (100 + percent)``) is no hit."""
    cap = reference * (100 + percent) // 100
    line = functools.partial(BasketLine, "BRS005", 2)
    prices = {("BRS005", ""): reference}
    assert price_hits([line(cap)], REGION, prices, percent) == []
    (hit,) = price_hits([line(cap + 1)], REGION, prices, percent)
    assert (hit.rule, hit.rc, hit.detail["unit_price_sen"]) == ("over_price", "13", cap + 1)
    whole = reference * 100  # its cap, reference × (100 + percent) sen, is whole
    assert price_hits([line(reference * (100 + percent))], REGION,
                      {("BRS005", ""): whole}, percent) == []


@given(days=st.integers(1, 400), extra=st.integers(0, 10**6))
def test_dormancy_at_exactly_dormancy_days(days: int, extra: int) -> None:
    """Idle exactly ``dormancy_days`` (or longer) is dormant: 62, status ``dormant``;
    one second less is not; a reactivation since resets the count."""
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    idle = now - timedelta(days=days, seconds=extra)
    dormant = check_card(_card(idle), now, days)
    assert dormant is not None and (dormant.rc, dormant.card_status) == ("62", "dormant")
    assert check_card(_card(now - timedelta(days=days) + timedelta(seconds=1)), now,
                      days) is None
    assert check_card(_card(idle), now, None) is None  # no dormancy rule
    reactivated = Card(1, "603298******0001", "00", "2812", "0000", True, 1, "active", 0,
                       None, idle, issued_at=idle - timedelta(days=1),
                       reactivated_at=now - timedelta(seconds=1))
    assert check_card(reactivated.facts(0), now, days) is None
    again = check_card(replace(reactivated, reactivated_at=None).facts(0), now, days)
    assert again is not None and again.card_status == "dormant"


def _card(active_since: datetime) -> CardFacts:
    return CardFacts(1, "active", "2812", "0000", 0, True, 1, 0, active_since)


@given(lines=st.lists(st.builds(BasketLine, st.sampled_from(["BRS005", "TLR010", "TMP001"]),
                                st.integers(0, 20), st.integers(0, 10**6)),
                      min_size=1, max_size=20),
       shelf=st.dictionaries(st.sampled_from(["BRS005", "TLR010", "TMP001"]),
                             st.integers(0, 60)))
@example(lines=[BasketLine("BRS005", 2, 1), BasketLine("BRS005", 2, 1)], shelf={"BRS005": 3})
def test_a_basket_needs_the_sum_of_its_lines_per_item(lines: list[BasketLine],
                                                      shelf: dict[str, int]) -> None:
    """Several lines of one item are summed (as DE 48 text or as lines); an item is
    short when the shelf (no row: none) holds fewer units than the sum."""
    need = {code: sum(line.quantity for line in lines if line.item_code == code)
            for code in {line.item_code for line in lines}}
    assert units_needed(lines) == need == units_needed(encode_basket(lines))
    assert units_needed(None) == {}
    stock = {(EWARONG, item): StockLevel(units) for item, units in shelf.items()}
    assert short_items(EWARONG, need, stock) == sorted(
        item for item, units in need.items() if shelf.get(item, 0) < units)
    assert short_items(EWARONG + 1, need, stock) == sorted(
        item for item, units in need.items() if units > 0)  # another e-warong's shelf
