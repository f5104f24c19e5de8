"""What one chaos run is asked to do (the command line, or a test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

OUT_DIR = Path("var/chaos")


@dataclass(frozen=True)
class RunConfig:
    scenario: str
    engine: str = "sqlite"
    switches: int = 1
    #: How long the terminals offer purchases; the fault happens inside this.
    duration_s: float = 60.0
    #: Purchases offered per second by the whole fleet.
    rate_per_s: float = 20.0
    #: A fixed number of purchases instead of a rate (``--purchases N``): the fleet's
    #: terminals share them and each sends its share back to back, as fast as the link
    #: takes them (a closed loop); ``duration_s`` then bounds the load.
    purchases: int | None = None
    terminals: int = 8
    #: The EDC's response time-out (HOST_SPEC §5 says 30 s by default; shorter here so
    #: that a run of a minute sees time-outs and reversals).
    timeout_s: float = 5.0
    #: After the load: how long terminals may take to deliver their pending reversals.
    settle_s: float = 30.0
    #: switch-kill: how many kills (and restarts).
    repeat: int = 1
    #: Scenario parameters given as ``--param NAME=VALUE`` (e.g. ``outage_s=10``).
    params: dict[str, str] = field(default_factory=dict)
    ci: bool = False
    out: Path = OUT_DIR
    #: The whole run, set-up and clean-up included, is aborted after this.
    max_total_s: float = 600.0
    #: The switch process: ``python -m <switch_module> serve`` (tests start a broken
    #: one to prove the checker fails it).
    switch_module: str = "switch.cli"

    def param_s(self, name: str, default: float) -> float:
        """A scenario's time parameter in seconds (``--param name=value``)."""
        return float(self.params.get(name, default))
