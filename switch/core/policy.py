"""The programme rules' settings as the deciders see them (docs/RULES.md).  Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: What a rule does on a hit: decline the request, only record an alert, or nothing.
DECLINE, FLAG, OFF = "decline", "flag", "off"


@dataclass(frozen=True)
class Policy:
    dormancy_days: int = 90
    velocity: str = FLAG
    velocity_max_cards: int = 20
    velocity_window_minutes: int = 10
    off_hours: str = FLAG
    #: ``strict`` (58) or ``off`` (an alert only).
    zoning: str = OFF
    price_cap: bool = False
    price_cap_percent: int = 10
    inventory: bool = True
    low_stock_units: int = 10

    @classmethod
    def of(cls, settings: Any) -> Policy:
        """From :class:`switch.settings.Settings`."""
        return cls(settings.dormancy_days, settings.velocity, settings.velocity_max_cards,
                   settings.velocity_window_minutes, settings.off_hours, settings.zoning,
                   settings.price_cap == "on", settings.price_cap_percent,
                   settings.inventory == "on", settings.low_stock_units)
