"""``steady``: the load alone, no fault: the control run (and the run a broken switch
must fail)."""

from __future__ import annotations

from ..context import FaultContext
from . import Scenario, register


@register
class Steady(Scenario):
    name = "steady"
    summary = "EDC load and no fault: the baseline every other scenario is read against"

    def inject(self, ctx: FaultContext) -> None:
        ctx.mark("no fault")
