"""``switch-kill`` (FAILURES F14): ``kill -9`` of a switch under load, restarted on the
same port ``down_s`` (default 2 s) later; ``--repeat K`` kills K times, spread over
the load, switch by switch in turn.  Each window ends when the restarted switch
accepts connections again.  Promised: approvals again within 5 s of that."""

from __future__ import annotations

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..metrics import Figures
from . import Scenario, recovered_within, register

RECOVERY_LIMIT_S = 5.0
#: The kills fall between these fractions of the load (the last leaves time to recover).
FIRST_AT, LAST_AT = 0.2, 0.7


@register
class SwitchKill(Scenario):
    name = "switch-kill"
    summary = "kill -9 a switch, restart it on the same port down_s (2 s) later; --repeat K"
    ci_params = {"down_s": "1.5"}

    def inject(self, ctx: FaultContext) -> None:
        repeat = max(1, ctx.cfg.repeat)
        down_s = ctx.cfg.param_s("down_s", 2.0)
        count = len(ctx.switches.slots)
        for k in range(repeat):
            fraction = FIRST_AT if repeat == 1 else \
                FIRST_AT + (LAST_AT - FIRST_AT) * k / (repeat - 1)
            ctx.wait_until(ctx.at_fraction(fraction))
            index = k % count
            with ctx.fault(f"switch {index} killed"):
                pid = ctx.switches.slots[index].pid
                ctx.switches.kill(index)
                ctx.mark(f"kill -9 switch {index}", f"pid {pid}")
                ctx.sleep(down_s)
                ctx.switches.start(index)
                ctx.mark(f"switch {index} listening again",
                         f"pid {ctx.switches.slots[index].pid}")

    def acceptance(self, cfg: RunConfig, fig: Figures) -> list[Acceptance]:
        return recovered_within(fig, RECOVERY_LIMIT_S, "the restart")
