"""Named scenarios of the programme rules (issue 14, docs/RULES.md; FAILURES F5
dormant, F9, F11, F15): ``dormant-card``, ``velocity``, ``off-hours``, ``zoning``,
``over-price``, ``out-of-stock``.

Each sets its scene on the switch's database (:mod:`terminal_sim.rules_setup`), runs
real EDC transactions, and returns steps: the EDC's screen, then the after-state
(balance before/after, stock before/after, card status, the alert row written).  What
each step expects follows the rule modes of the switch it talks to
(:class:`RuleModes`), since the modes are the switch process's ``BPNT_*`` settings:
``make run`` starts a second switch for these with :data:`RULES_SWITCH_ENV`;
``edc-sim scenario NAME`` takes the modes from its own ``BPNT_*`` environment, which
must be the switch's.  Each scenario uses a terminal of its own and puts the hours and
zones it changed back, so they run in any order on one switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from switch.admin.demo import PRICES_SEN, DemoCard, DemoTerminal
from switch.db.engine import Database
from switch.money import rupiah
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.security.keyring import Keyring
from switch.settings import Settings
from terminal_sim import rules_setup as setup
from terminal_sim.edc import Edc
from terminal_sim.scenarios import SCENARIOS, Scenarios, Step
from terminal_sim.world import SimWorld

RICE = BasketLine("BRS005", 1, PRICES_SEN["BRS005"])
TEMPE = BasketLine("TMP001", 1, PRICES_SEN["TMP001"])
POTATOES = "KTG010"


@dataclass(frozen=True)
class RuleModes:
    """The rule settings of the switch the scenarios talk to."""

    dormancy_days: int = 90
    velocity: str = "flag"
    velocity_max_cards: int = 20
    velocity_window_minutes: int = 10
    off_hours: str = "flag"
    zoning: str = "off"
    price_cap: str = "off"
    price_cap_percent: int = 10
    inventory: str = "on"
    low_stock_units: int = 10

    @classmethod
    def of(cls, settings: Settings) -> RuleModes:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})

    def env(self) -> dict[str, str]:
        """The ``BPNT_*`` variables of a switch with these modes."""
        return {f"BPNT_{name.upper()}": str(getattr(self, name))
                for name in self.__dataclass_fields__}

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.env().items())


#: The switch ``make run`` starts for these scenarios: every rule declines, and five
#: cards at one terminal are the most the velocity rule lets through.
RULES_SWITCH_MODES = RuleModes(velocity="decline", velocity_max_cards=5, off_hours="decline",
                               zoning="strict", price_cap="on")


def _money(before: int, after: int) -> str:
    moved = "unchanged" if before == after else f"moved {rupiah(after - before)}"
    return f"balance {rupiah(before)} -> {rupiah(after)} ({moved})"


class RuleScenarios(Scenarios):
    """The rule scenarios on a :class:`SimWorld` whose switch uses ``db`` and ``modes``."""

    #: The ``ok`` terminal (index) of each scenario: one each, so the velocity window
    #: of one holds none of the others' cards.
    TERMINALS = {"velocity": 1, "off-hours": 2, "zoning": 3, "over-price": 4,
                 "out-of-stock": 5, "dormant-card": 6}

    def __init__(self, sim: SimWorld, db: Database, keys: Keyring, modes: RuleModes) -> None:
        super().__init__(sim)
        self.db, self.keys, self.modes = db, keys, modes

    def _terminal_for(self, name: str) -> DemoTerminal:
        ok = [t for t in self.sim.world.terminals if t.label == "ok"]
        return ok[self.TERMINALS[name] % len(ok)]

    def _counter(self, name: str) -> tuple[DemoTerminal, Edc]:
        terminal = self._terminal_for(name)
        return terminal, self.sim.edc(terminal)

    def _card(self, edc: Edc) -> DemoCard:
        card = self.sim.take_spare_card()
        self.sim.insert(edc, card)
        return card

    def _alert_step(self, rule: str, action: str | None, since: int, tid: str) -> Step:
        """The alert of ``rule`` at ``tid`` written since ``since``: with ``action``, or
        none at all when ``action`` is None (the rule is off)."""
        found = [a for a in setup.alerts_after(self.db, since) if a.rule == rule and a.tid == tid]
        if action is None:
            return self._check(f"no {rule} alert (rule off)", not found,
                               "; ".join(a.line() for a in found))
        row = found[-1] if found else None
        return self._check(f"alert {rule}/{action} written", row is not None
                           and row.action == action, row.line() if row else "no alert row")

    # -- the scenarios ---------------------------------------------------------------

    def dormant_card(self) -> list[Step]:
        """F5: a card unused ``BPNT_DORMANCY_DAYS`` is 62, and the switch marks it dormant."""
        _terminal, edc = self._counter("dormant-card")
        card = self._card(edc)
        days = self.modes.dormancy_days + 1
        setup.age_card(self.db, self.keys, card.pan, days)
        before = setup.card_state(self.db, self.keys, card.pan)
        result = edc.purchase([RICE], card.pin)
        after = setup.card_state(self.db, self.keys, card.pan)
        return [
            self._step(f"purchase with a card unused {days} days", codes.RESTRICTED_CARD,
                       result),
            self._check("no money moved", after.balance_sen == before.balance_sen,
                        _money(before.balance_sen, after.balance_sen)),
            self._check("card now dormant in the database", after.status == "dormant",
                        f"status {before.status} -> {after.status}"),
        ]

    def velocity(self) -> list[Step]:
        """F9: one terminal, more distinct cards in the window than the setting allows."""
        terminal, edc = self._counter("velocity")
        limit, minutes = self.modes.velocity_max_cards, self.modes.velocity_window_minutes
        window = setup.distinct_cards_since(self.db, terminal.tid, minutes)
        room = max(0, limit - len(window))
        since = setup.last_alert_id(self.db)
        steps = []
        for n in range(1, room + 1):
            card = self._card(edc)
            steps.append(self._step(f"card {len(window) + n} of {limit} at {terminal.tid}",
                                    codes.APPROVED, edc.purchase([TEMPE], card.pin)))
        card = self._card(edc)
        before = setup.card_state(self.db, self.keys, card.pan)
        declines = self.modes.velocity == "decline"
        result = edc.purchase([TEMPE], card.pin)
        after = setup.card_state(self.db, self.keys, card.pan)
        paid = 0 if declines else TEMPE.total_sen
        steps += [
            self._step(f"card {len(window) + room + 1} within {minutes} min",
                       codes.LIMIT_EXCEEDED if declines else codes.APPROVED, result),
            self._check("no money moved" if declines else "debited once",
                        after.balance_sen == before.balance_sen - paid,
                        _money(before.balance_sen, after.balance_sen)),
            self._alert_step("velocity", None if self.modes.velocity == "off"
                             else self.modes.velocity, since, terminal.tid),
        ]
        return steps

    def off_hours(self) -> list[Step]:
        """F9: a card transaction outside the e-warong's opening hours."""
        terminal, edc = self._counter("off-hours")
        card = self._card(edc)
        saved = setup.hours(self.db, terminal.mid)
        opened, closed = setup.hours_excluding(datetime.now(UTC), saved[2])
        setup.set_hours(self.db, self.keys, terminal.mid, opened, closed)
        try:
            since = setup.last_alert_id(self.db)
            before = setup.card_state(self.db, self.keys, card.pan)
            result = edc.purchase([RICE], card.pin)
            after = setup.card_state(self.db, self.keys, card.pan)
        finally:
            setup.set_hours(self.db, self.keys, terminal.mid, saved[0], saved[1])
        declines = self.modes.off_hours == "decline"
        paid = 0 if declines else RICE.total_sen
        return [
            self._step(f"purchase at {terminal.mid} open {opened}-{closed} local",
                       codes.LIMIT_EXCEEDED if declines else codes.APPROVED, result),
            self._check("no money moved" if declines else "debited once",
                        after.balance_sen == before.balance_sen - paid,
                        _money(before.balance_sen, after.balance_sen)),
            self._alert_step("off_hours", None if self.modes.off_hours == "off"
                             else self.modes.off_hours, since, terminal.tid),
        ]

    def zoning(self) -> list[Step]:
        """F11: a KPM buying at an e-warong that does not serve its zone."""
        terminal, edc = self._counter("zoning")
        card = self._card(edc)
        before = setup.card_state(self.db, self.keys, card.pan)
        other = "98" if before.zone.startswith("99") else "99"
        saved = setup.zones(self.db, terminal.mid)
        setup.set_zones(self.db, self.keys, terminal.mid, [other])
        try:
            since = setup.last_alert_id(self.db)
            result = edc.purchase([RICE], card.pin)
            after = setup.card_state(self.db, self.keys, card.pan)
        finally:
            setup.set_zones(self.db, self.keys, terminal.mid, saved)
        strict = self.modes.zoning == "strict"
        paid = 0 if strict else RICE.total_sen
        return [
            self._step(f"KPM of zone {before.zone} at {terminal.mid} (zones {other})",
                       codes.NOT_PERMITTED_TERMINAL if strict else codes.APPROVED, result),
            self._check("no money moved" if strict else "debited once",
                        after.balance_sen == before.balance_sen - paid,
                        _money(before.balance_sen, after.balance_sen)),
            self._alert_step("zoning", "decline" if strict else "flag", since, terminal.tid),
        ]

    def over_price(self) -> list[Step]:
        """F11: a basket line priced above the reference by more than the cap."""
        terminal, edc = self._counter("over-price")
        card = self._card(edc)
        reference = PRICES_SEN[RICE.item_code]
        unit = reference * (100 + self.modes.price_cap_percent + 10) // 100
        line = BasketLine(RICE.item_code, 1, unit)
        since = setup.last_alert_id(self.db)
        before = setup.card_state(self.db, self.keys, card.pan)
        stock_before = setup.stock_units(self.db, terminal.mid, RICE.item_code)
        result = edc.purchase([line], card.pin)
        after = setup.card_state(self.db, self.keys, card.pan)
        stock_after = setup.stock_units(self.db, terminal.mid, RICE.item_code)
        capped = self.modes.price_cap == "on"
        paid, taken = (0, 0) if capped else (unit, 1)
        return [
            self._step(f"{RICE.item_code} at {rupiah(unit)} (reference {rupiah(reference)}, "
                       f"cap {self.modes.price_cap_percent}%)",
                       codes.INVALID_AMOUNT if capped else codes.APPROVED, result),
            self._check("no money moved" if capped else "debited once",
                        after.balance_sen == before.balance_sen - paid,
                        _money(before.balance_sen, after.balance_sen)),
            self._check("stock unchanged" if capped else "stock taken",
                        stock_after == stock_before - taken,
                        f"{RICE.item_code} stock {stock_before} -> {stock_after}"),
            self._alert_step("over_price", "decline" if capped else "flag", since,
                             terminal.tid),
        ]

    def out_of_stock(self) -> list[Step]:
        """F15: a basket wanting more units than the shelf holds is ST and moves nothing;
        after a delivery the same basket is approved and takes its units."""
        terminal, edc = self._counter("out-of-stock")
        card = self._card(edc)
        basket = [BasketLine(POTATOES, 2, PRICES_SEN[POTATOES])]
        amount = basket[0].total_sen
        shelf = setup.set_stock(self.db, self.keys, terminal.mid, POTATOES, 1)
        before = setup.card_state(self.db, self.keys, card.pan)
        short = edc.purchase(basket, card.pin)
        middle = setup.card_state(self.db, self.keys, card.pan)
        stock_middle = setup.stock_units(self.db, terminal.mid, POTATOES)
        checked = self.modes.inventory == "on"
        reference = f"DO-{terminal.mid[-3:]}-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
        delivered = setup.receive(self.db, self.keys, terminal.mid, POTATOES,
                                  self.modes.low_stock_units, reference)
        since = setup.last_alert_id(self.db)
        bought = edc.purchase(basket, card.pin)
        after = setup.card_state(self.db, self.keys, card.pan)
        stock_after = setup.stock_units(self.db, terminal.mid, POTATOES)
        first_paid = 0 if checked else amount
        second_taken = 2 if checked else 0
        low = checked and delivered >= self.modes.low_stock_units > delivered - 2
        steps = [
            self._step(f"2 x {POTATOES}, shelf holds {shelf}",
                       codes.OUT_OF_STOCK if checked else codes.APPROVED, short),
            self._check("no money moved" if checked else "debited once",
                        middle.balance_sen == before.balance_sen - first_paid,
                        _money(before.balance_sen, middle.balance_sen)),
            self._check("stock unchanged" if checked else "stock not tracked",
                        stock_middle == shelf,
                        f"{POTATOES} stock {shelf} -> {stock_middle}"),
            Step(f"delivery {reference} of {self.modes.low_stock_units} received", "yes", "yes",
                 f"{POTATOES} stock {stock_middle} -> {delivered}"),
            self._step("the same basket again", codes.APPROVED, bought),
            self._check("debited once", after.balance_sen == middle.balance_sen - amount,
                        _money(middle.balance_sen, after.balance_sen)),
            self._check("stock taken", stock_after == delivered - second_taken,
                        f"{POTATOES} stock {delivered} -> {stock_after}"),
        ]
        if low:
            steps.append(self._alert_step("low_stock", "flag", since, terminal.tid))
        return steps


RULE_SCENARIOS: dict[str, Callable[[RuleScenarios], list[Step]]] = {
    "dormant-card": RuleScenarios.dormant_card,
    "velocity": RuleScenarios.velocity,
    "off-hours": RuleScenarios.off_hours,
    "zoning": RuleScenarios.zoning,
    "over-price": RuleScenarios.over_price,
    "out-of-stock": RuleScenarios.out_of_stock,
}


def scenario_names() -> list[str]:
    """Every named scenario ``edc-sim scenario`` knows: the foundation's, then these."""
    return [*SCENARIOS, *RULE_SCENARIOS]
