"""Injectable clocks (DESIGN.md: time from an injectable clock; tests move it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

#: Indonesia Western Time; e-warong terminals print local time.
WIB = timezone(timedelta(hours=7), "WIB")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall clock in WIB."""

    def now(self) -> datetime:
        return datetime.now(UTC).astimezone(WIB)


@dataclass
class FixedClock:
    """A clock that moves only when told to."""

    current: datetime = field(default_factory=lambda: datetime(2026, 11, 23, 10, 0, 0, tzinfo=WIB))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current = self.current + delta
