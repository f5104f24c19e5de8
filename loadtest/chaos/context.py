"""What a scenario gets to work with while the load runs: the run's clock and
timeline, the switches, the database it may break, and a place for clean-ups."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .history import History, Mark
from .load import Connect
from .postgres import OwnCluster
from .sqlite_volume import TmpfsVolume
from .switches import SwitchFleet


class ChaosAborted(BaseException):
    """``--max-total-s`` ran out, or SIGTERM: unwind, stopping everything started."""


@dataclass(frozen=True)
class Acceptance:
    """One figure a scenario promises (FAILURES F14), measured: ``ok`` and how."""

    name: str
    ok: bool
    measured: str


@dataclass
class FaultContext:
    cfg: RunConfig
    history: History
    switches: SwitchFleet
    #: The run's database URL, and what the scenario may break of it.
    db_url: str
    postgres: OwnCluster | None = None
    volume: TmpfsVolume | None = None
    sqlite_path: Path | None = None
    #: Run-clock seconds the load begins and ends (set before ``inject`` runs).
    load_start_s: float = 0.0
    load_end_s: float = 0.0
    #: Clean-ups of what ``setup`` starts (a proxy, a broker): run on the way out.
    stack: ExitStack = field(default_factory=ExitStack)
    #: ``setup`` may route the terminals elsewhere (a proxy, MQTT, serial).
    connect: Connect | None = None
    notes: list[str] = field(default_factory=list)
    abort: threading.Event = field(default_factory=threading.Event)

    def now_s(self) -> float:
        return self.history.clock.now_s()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (an abort ends the run by exception, not here)."""
        self.abort.wait(max(0.0, seconds))

    def wait_until(self, at_s: float) -> None:
        self.sleep(at_s - self.now_s())

    def at_fraction(self, fraction: float) -> float:
        """The run-clock second ``fraction`` of the way through the load."""
        return self.load_start_s + fraction * (self.load_end_s - self.load_start_s)

    def mark(self, label: str, detail: str = "") -> Mark:
        return self.history.mark(label, detail)

    @contextmanager
    def fault(self, label: str) -> Iterator[None]:
        """A fault window on the timeline: from entering the block until leaving it."""
        start_s = self.now_s()
        self.mark(f"{label}: begins")
        try:
            yield
        finally:
            self.mark(f"{label}: over")
            self.history.window(label, start_s, self.now_s())
