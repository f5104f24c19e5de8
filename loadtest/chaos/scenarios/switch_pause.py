"""``switch-pause``: SIGSTOP a switch for ``pause_s`` (default 8 s, longer than the EDC
time-out of 5 s), then SIGCONT.  The kernel keeps accepting and buffering while it is
stopped: purchases time out at the terminals, are then decided and committed when the
switch resumes, and their reversals must give the money back.  Promised: approvals
again within 5 s of SIGCONT."""

from __future__ import annotations

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..metrics import Figures
from . import Scenario, recovered_within, register

RECOVERY_LIMIT_S = 5.0


@register
class SwitchPause(Scenario):
    name = "switch-pause"
    summary = "SIGSTOP a switch for pause_s (8 s), then SIGCONT"
    ci_params = {"pause_s": "7"}

    def inject(self, ctx: FaultContext) -> None:
        pause_s = ctx.cfg.param_s("pause_s", 8.0)
        ctx.wait_until(self.fault_at_s(ctx))
        with ctx.fault("switch 0 stopped"):
            ctx.switches.pause(0)
            ctx.mark("SIGSTOP switch 0", f"pid {ctx.switches.slots[0].pid}")
            ctx.sleep(pause_s)
            ctx.switches.resume(0)
            ctx.mark("SIGCONT switch 0")

    def acceptance(self, cfg: RunConfig, fig: Figures) -> list[Acceptance]:
        return recovered_within(fig, RECOVERY_LIMIT_S, "SIGCONT")
